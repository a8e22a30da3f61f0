"""Smoke test of the OT toolbox benchmark: every method runs at tiny sizes and is accurate.

It asserts nothing about speed.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ot")

from benchmarks import ot_toolbox


def test_ot_toolbox_benchmark_quick(tmp_path, capsys):
    out = tmp_path / "ot_toolbox_quick.json"
    status = ot_toolbox.main(["--quick", "--out", str(out)])
    printed = capsys.readouterr().out
    payload = json.loads(out.read_text())

    assert status == 0
    assert payload["passed"]
    expected = [(title, m) for _, title, m in ot_toolbox.methods("quick")]
    assert [(r["section"], r["method"]) for r in payload["rows"]] == expected
    for row in payload["rows"]:
        assert f"| {row['case']}" in printed and f" {row['method']} " in printed
    titles = {title for _, title, _ in ot_toolbox.methods("quick")}
    assert titles == {title for _, title, _ in ot_toolbox.SECTIONS}
    for section, title, method in ot_toolbox.methods("quick"):
        row = next(r for r in payload["rows"] if (r["section"], r["method"]) == (title, method))
        assert row["median_s"] > 0 and row["peak_rss_mb"] >= 0
        tol = ot_toolbox.TOLS[section]
        if method.startswith("ours"):
            assert row["within_tol"] and row["error"] <= tol, row
        else:  # peers: reported by the benchmark, held here to a looser tolerance
            assert row["error"] <= ot_toolbox.PEER_FACTOR * tol, row
