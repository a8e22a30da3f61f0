"""Smoke test of the time-series toolbox benchmark: every method runs at tiny sizes and is accurate.

It asserts nothing about speed.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tslearn")
pytest.importorskip("dtw")

from benchmarks import series_toolbox

# The peers compute in float64 (tslearn, dtw-python) on the same float32-rounded inputs, so
# they match the float64 references to rounding; tslearn's soft-DTW barycenter is its own
# reference (error 0). A looser bound than ours, as in the other smoke tests.
PEER_TOL = 1e-4


def test_series_toolbox_benchmark_quick(tmp_path, capsys, monkeypatch):
    # fresh processes: tslearn's numba functions fail to type inside a process that has run
    # the other workers (AttributeError 'get_call_template' in numba's dispatcher)
    monkeypatch.setenv("ALIGNMENT_BENCH_INPROCESS", "0")
    out = tmp_path / "series_toolbox_quick.json"
    status = series_toolbox.main(["--quick", "--out", str(out)])
    printed = capsys.readouterr().out
    payload = json.loads(out.read_text())

    assert status == 0
    assert payload["passed"]
    expected = [(title, m) for _, title, methods in series_toolbox.SECTIONS for m in methods]
    assert [(r["section"], r["method"]) for r in payload["rows"]] == expected
    for title, method in expected:
        assert f"| {title}" in printed and f" {method} " in printed
    tols = {title: series_toolbox.TOLS[key] for key, title, _ in series_toolbox.SECTIONS}
    for row in payload["rows"]:
        assert row["median_s"] > 0 and row["peak_rss_mb"] >= 0
        err = row["error"]
        if row["method"].startswith("ours"):
            assert row["within_tol"], row
            # signed for the soft barycenter (ours may end lower than the reference)
            bound = err if row["section"] == "soft-DTW barycenter" else abs(err)
            assert bound <= tols[row["section"]], row
        else:
            assert abs(err) <= PEER_TOL, row
            assert row["ratio_ours_over_peer"] > 0
    by_section = {r["section"]: r for r in payload["rows"] if r["method"].startswith("ours")}
    sub = by_section["subsequence DTW"]["check"].split()[-1].split("/")
    assert sub[0] == sub[1]  # every start and end agrees with the float64 reference
    nn = [r for r in payload["rows"] if r["section"] == "1-NN DTW"]
    for row in nn:
        same = row["check"].split(",")[0].split()[-1].split("/")
        assert same[0] == same[1], row  # the pruned search finds the exhaustive neighbours
