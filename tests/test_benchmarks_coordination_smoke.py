"""Smoke test of the clustering and multi-view CCA benchmark: every method runs at tiny sizes.

It checks that our rows are within the benchmark's tolerances and the peers' rows agree with
them; it asserts nothing about speed.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sklearn")

from benchmarks import coordination


def test_coordination_benchmark_quick(tmp_path, capsys):
    out = tmp_path / "coordination_quick.json"
    status = coordination.main(["--quick", "--out", str(out)])
    printed = capsys.readouterr().out
    payload = json.loads(out.read_text())

    assert status == 0
    assert payload["passed"]
    skip = coordination.CONFIGS["quick"].get("skip", ())
    expected = [(m.title, m.name) for m in coordination.METHODS if (m.case, m.name) not in skip]
    assert [(r["case"], r["method"]) for r in payload["rows"]] == expected
    for title, method in expected:
        assert f"| {title}" in printed and f" {method} " in printed
    for row in payload["rows"]:
        errs = row["errors"]
        assert row["median_s"] > 0 and row["peak_rss_mb"] >= 0
        if row["method"] == "ours":
            assert row["within_tol"], row
        else:
            assert row["ratio_ours_over_peer"] > 0
        case = row["case"]
        if case == "kmeans (same init)":  # ours and scikit-learn in float32, same optimum
            assert errs["err"] <= coordination.KMEANS_INERTIA_TOL, row
            assert errs["check"] >= coordination.KMEANS_LABEL_AGREEMENT, row
            assert row["n_iter"] >= 1
        elif case == "kmeans++":
            assert errs["check"] <= coordination.KMEANS_PP_RATIO, row
        elif case == "minibatch kmeans":
            assert errs["check"] <= coordination.MINIBATCH_RATIO, row
        elif row["method"] != "ours":  # the float64 peers are the references themselves
            assert errs["err"] <= 1e-12, row
    mcca = next(r for r in payload["rows"] if r["case"].startswith("mcca"))
    assert mcca["errors"]["check"] <= coordination.MCCA_ANGLE_TOL
