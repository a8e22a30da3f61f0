"""Smoke test of the scaling curves (benchmarks/scaling.py) and of the generated benchmark page
(benchmarks/page.py): the curves run, plot and merge; the committed page is the rendering of
the committed results. Nothing here asserts speed."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("scipy")

from benchmarks import _harness, page, scaling


def test_scaling_curve_runs_in_fresh_processes_plots_and_merges(tmp_path, monkeypatch):
    monkeypatch.setenv(_harness.IN_PROCESS_ENV, "0")  # the published path: fresh processes
    out = tmp_path / "scaling.json"
    status = scaling.main(
        ["--quick", "--only", "assignment_n", "--out", str(out), "--fig-dir", str(tmp_path)]
    )
    payload = json.loads(out.read_text())
    assert status == 0 and payload["passed"]
    rows = payload["rows"]
    sizes = scaling.CURVES["assignment_n"].sizes["quick"]
    methods = list(scaling.CURVES["assignment_n"].methods)
    assert [(r["size"], r["method"]) for r in rows] == [(s, m) for s in sizes for m in methods]
    assert all(r["median_s"] > 0 and r["memory_mb"] >= 0 for r in rows)
    assert (tmp_path / "scaling_assignment_n.png").stat().st_size > 5000
    assert (
        "| assignment_n" in payload["table_markdown"] and "ours/optax" in payload["table_markdown"]
    )
    # a rerun of another curve keeps this one
    monkeypatch.setenv(_harness.IN_PROCESS_ENV, "1")
    scaling.main(["--quick", "--only", "gaussian_d", "--out", str(out), "--fig-dir",
                  str(tmp_path), "--merge"])  # fmt: skip
    merged = json.loads(out.read_text())
    assert [c for c in merged["curves"]] == ["assignment_n", "gaussian_d"]
    assert {r["curve"] for r in merged["rows"]} == {"assignment_n", "gaussian_d"}
    assert [r for r in merged["rows"] if r["curve"] == "assignment_n"] == rows


def test_ratio_table_and_plot_of_synthetic_rows(tmp_path):
    rows = [
        {"curve": "sinkhorn", "size": n, "method": m, "median_s": t * n, "memory_mb": mb}
        for n in (16, 32)
        for m, t, mb in (("ours", 1e-3, 0.0), ("ott-jax", 2e-3, 5.0), ("POT", 4e-3, 2.0))
    ]
    table = scaling.ratio_table(rows)
    assert table.count("| sinkhorn") == 2 and "0.50" in table and "0.25" in table
    path = scaling.plot_curve("sinkhorn", rows, tmp_path / "s.png", "CPU, 2 cores")
    assert path.stat().st_size > 5000


def test_committed_benchmark_page_is_the_rendering_of_the_committed_results():
    assert page.main(["--check"]) == 0


def test_every_missed_target_says_what_limits_it():
    results = page.Results()
    for target in page.TARGETS:
        value = target.measure(results)
        assert value > 0
        if value > target.bound:
            assert target.limit, target.what
            assert target.limit in page.targets(results)


def test_unknown_placeholder_is_an_error(tmp_path):
    template = tmp_path / "t.md"
    template.write_text("{{nonsense}}")
    with pytest.raises(ValueError, match="unknown placeholder"):
        page.render(page.Results(), template)
