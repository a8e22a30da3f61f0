"""Smoke test of the Sinkhorn benchmark: every method runs at tiny sizes and agrees with ours.

It asserts nothing about speed.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ott")
pytest.importorskip("ot")

from benchmarks import sinkhorn


def test_sinkhorn_benchmark_quick(tmp_path, capsys):
    out = tmp_path / "sinkhorn_quick.json"
    status = sinkhorn.main(["--quick", "--out", str(out)])
    printed = capsys.readouterr().out
    payload = json.loads(out.read_text())

    assert status == 0
    assert payload["passed"]
    expected = [("single", m) for m in sinkhorn.SINGLE_METHODS]
    expected += [("batch", m) for m in sinkhorn.BATCH_METHODS]
    assert [(r["section"], r["method"]) for r in payload["rows"]] == expected
    for section, method in expected:
        assert f"| {section}" in printed and f" {method} " in printed
    for row in payload["rows"]:
        assert row["converged"], row
        assert row["median_s"] > 0 and row["peak_rss_mb"] >= 0 and row["iters"] > 0
        if "cost_err" in row:
            assert row["cost_err"] <= 1e-2, row
