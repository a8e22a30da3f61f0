"""Smoke test for experiments/dtw_demo.py: one small run writes its figures and a finite summary."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("tslearn")

from experiments import dtw_demo

LECTURE_PATH = [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2), (4, 3), (5, 4), (5, 5)]


def _numbers(tree):
    """Every int or float leaf of a JSON-like tree (bools excluded)."""
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _numbers(value)
    elif isinstance(tree, list | tuple):
        for value in tree:
            yield from _numbers(value)
    elif isinstance(tree, int | float) and not isinstance(tree, bool):
        yield tree


def test_run_smoke(tmp_path):
    config = dtw_demo.smoke_config(str(tmp_path))
    summary = dtw_demo.run(config)

    # figures and summary on disk
    assert summary["figures"]
    for name in summary["figures"]:
        assert (tmp_path / name).stat().st_size > 0, name
    assert len(summary["figures"]) == 1 + 3 * config.pairs
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["figures"] == summary["figures"]

    # the lecture's worked example
    assert on_disk["lecture"]["dtw"] == 0.0
    assert [tuple(p) for p in on_disk["lecture"]["path"]] == LECTURE_PATH

    # every number finite; one record per pair, alternating same/different class
    numbers = list(_numbers(on_disk))
    assert numbers and all(math.isfinite(v) for v in numbers)
    assert [p["same_class"] for p in on_disk["pairs"]] == [k % 2 == 0 for k in range(config.pairs)]
    for pair in on_disk["pairs"]:
        assert pair["dtw_window"] >= pair["dtw"] - 1e-4  # a band can only remove paths
        assert pair["soft_dtw"] <= pair["dtw"] + 1e-4  # soft-min <= min
        assert pair["dtw"] <= pair["euclidean"] + 1e-4  # the diagonal is one warping path
    nn = on_disk["nearest_neighbour"]
    assert nn["n_queries"] == config.nn_queries
    assert 0.0 <= nn["accuracy_1nn_dtw"] <= 1.0
