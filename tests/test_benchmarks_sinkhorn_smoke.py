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
    # every section and method (the quick setting skips none)
    expected = [(s, m) for s, methods in sinkhorn.SECTIONS.items() for m in methods]
    assert [(r["section"], r["method"]) for r in payload["rows"]] == expected
    for section, method in expected:
        assert f"| {section}" in printed and f" {method} " in printed
    for row in payload["rows"]:
        assert row["converged"], row
        assert row["median_s"] > 0 and row["peak_rss_mb"] >= 0 and row["iters"] > 0
        if "cost_err" in row:
            assert row["cost_err"] <= 1e-2, row
    # the online and dense solvers agree, and the online one never builds [n, m]
    online = {r["method"]: r for r in payload["rows"] if r["section"] == "online"}
    assert online["ours-online"]["cost_err"] <= 1e-4
    xla_online, xla_dense = online["ours-online"]["xla"], online["ours-dense"]["xla"]
    if xla_online is not None and xla_dense is not None:
        n = sinkhorn.CONFIGS["quick"]["online"]
        assert xla_dense["xla_temp_mb"] * 2**20 >= 4 * n * n  # the dense cost, at least
        assert xla_online["xla_temp_mb"] < xla_dense["xla_temp_mb"]
