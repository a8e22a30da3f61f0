"""Smoke test of the benchmarks: the soft-DTW / DTW comparison runs end to end at tiny sizes.

It checks that every method ran and agrees with ours; it asserts nothing about speed.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ott")
pytest.importorskip("tslearn")
pytest.importorskip("dtw")

from benchmarks import soft_dtw


def test_soft_dtw_benchmark_quick(tmp_path, capsys):
    out = tmp_path / "soft_dtw_quick.json"
    status = soft_dtw.main(["--quick", "--out", str(out)])
    printed = capsys.readouterr().out
    payload = json.loads(out.read_text())

    assert status == 0
    assert payload["passed"]
    sections = [s for s in soft_dtw.SECTIONS if s[0] != "long"]  # --quick skips the long one
    for _, title, methods in sections:
        for method in methods:
            assert any(r["section"] == title and r["method"] == method for r in payload["rows"])
            assert f"| {title}" in printed and f" {method} " in printed
    peers = [r for r in payload["rows"] if r["method"] != "ours"]
    assert len(peers) == sum(len(m) - 1 for _, _, m in sections)
    for row in peers:
        errs = row["errors"]
        assert errs["value_f32"] <= 1e-4, row
        assert errs["value_f64"] <= 1e-4, row
        if errs["grad_f64"] is not None:  # soft-DTW rows
            assert errs["grad_f64"] <= 1e-4, row
            # float32 gradients: at these tiny sizes the rounding is far below 1e-4 too
            assert errs["grad_f32"] <= 1e-4, row
        assert row["median_s"] > 0 and row["peak_rss_mb"] >= 0
