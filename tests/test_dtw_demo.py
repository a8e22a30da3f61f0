"""experiments/dtw_demo.py: the smoke command writes its results and figures; the CLI; bad input."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("tslearn")
pytest.importorskip("tyro")

from experiments import dtw_demo
from experiments.framework import parse_config

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


def test_smoke_command_writes_results_and_figures(tmp_path, capsys):
    record = dtw_demo.main(["--smoke", "--run-dir", str(tmp_path)])
    config = dtw_demo.get_config("smoke")

    # figures, results.json and results.md on disk; results.md is what was printed
    assert record["figures"]
    for name in record["figures"]:
        assert (tmp_path / name).stat().st_size > 0, name
    assert len(record["figures"]) == 1 + 3 * config.pairs
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["figures"] == record["figures"]
    assert on_disk["config"]["run_dir"] == str(tmp_path)
    table = (tmp_path / "results.md").read_text()
    assert table in capsys.readouterr().out
    assert "| dtw_window |" in table and table.count("\n| 1 | train[") == 1

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


def test_command_line_reaches_every_field():
    argv = [
        "--run-dir", "runs/x", "--gamma", "0.5", "--window", "5", "--pairs", "1",
        "--length", "40", "--nn-per-class", "1", "--nn-queries", "3", "--seed", "2",
    ]  # fmt: skip
    config = parse_config(dtw_demo.get_config, argv)
    default = dtw_demo.get_config("default")
    assert all(
        getattr(config, f.name) != getattr(default, f.name)
        for f in dataclasses.fields(dtw_demo.Config)
    )
    assert config == dtw_demo.Config("runs/x", 0.5, 5, 1, 40, 1, 3, 2)
    assert parse_config(dtw_demo.get_config, ["--smoke"]) == dtw_demo.get_config("smoke")
    assert parse_config(dtw_demo.get_config, ["--full"]).nn_queries == 100
    with pytest.raises(SystemExit):
        parse_config(dtw_demo.get_config, ["--out-dir", "x"])  # renamed --run-dir


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"gamma": 0.0}, "`gamma` must be finite and > 0"),
        ({"nn_queries": 0}, "`nn_queries` must be an integer >= 1"),
        ({"length": 1}, "`length` must be >= 2"),
        ({"nn_queries": 1000}, "`nn_queries` 1000 exceeds the 100 series"),
    ],
)
def test_bad_input_fails_before_writing(tmp_path, overrides, message):
    config = dataclasses.replace(dtw_demo.get_config("smoke"), run_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match=message):
        dtw_demo.run(dataclasses.replace(config, **overrides))
    assert not (tmp_path / "run").exists()
