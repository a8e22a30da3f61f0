"""Smoke test of the Gaussian W2 benchmark: every method runs at tiny sizes and is accurate.

It asserts nothing about speed.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ott")
pytest.importorskip("ot")

from benchmarks import gaussian

OURS_TOL = 1e-5  # the target for our float32 values
# ott-jax stops its Newton-Schulz square roots at a 1e-6 residual: about 1e-5 relative on W2^2
# and up to 1e-4 on the covariance part alone, so the peers are held to 1e-4.
PEER_TOL = 1e-4


def test_gaussian_benchmark_quick(tmp_path, capsys):
    out = tmp_path / "gaussian_quick.json"
    status = gaussian.main(["--quick", "--out", str(out)])
    printed = capsys.readouterr().out
    payload = json.loads(out.read_text())

    assert status == 0
    assert payload["passed"]
    expected = [(title, m) for _, title, methods in gaussian.SECTIONS for m in methods]
    assert [(r["section"], r["method"]) for r in payload["rows"]] == expected
    for title, method in expected:
        assert f"| {title}" in printed and f" {method} " in printed
    for row in payload["rows"]:
        errs = row["errors"]
        assert row["median_s"] > 0 and row["peak_rss_mb"] >= 0
        tol = OURS_TOL if row["method"].startswith("ours") else PEER_TOL
        assert errs["value_f32"] <= tol, row
        if (row["section"], row["method"]) != ("diagonal W2 value", "ours-full"):
            assert errs["bures_f32"] <= tol, row
        if errs["value_f64"] is not None and row["method"].startswith("ours"):
            assert errs["value_f64"] <= 1e-9, row
        if errs["grad_f32"] is not None:
            assert errs["grad_f32"] <= 1e-4, row
