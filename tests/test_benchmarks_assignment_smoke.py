"""Smoke test of the linear-assignment benchmark: every method runs at tiny sizes and is optimal.

It asserts nothing about speed.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("optax")

from benchmarks import assignment


def test_assignment_benchmark_quick(tmp_path, capsys):
    out = tmp_path / "assignment_quick.json"
    status = assignment.main(["--quick", "--out", str(out)])
    printed = capsys.readouterr().out
    payload = json.loads(out.read_text())

    assert status == 0 and payload["passed"]
    expected = [(c[0], m) for c in assignment.CONFIGS["quick"] for m in assignment.METHODS]
    assert [(r["config"], r["method"]) for r in payload["rows"]] == expected
    for label, method in expected:
        assert f"| {label}" in printed and f" {method} " in printed
    for row in payload["rows"]:  # every method, peers included, finds the optimum
        assert row["cost_rel_err"] <= 1e-6, row
        assert row["median_s"] > 0 and row["peak_rss_mb"] >= 0
