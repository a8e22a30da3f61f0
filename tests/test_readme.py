"""The README is part of the interface: its commands are CI's and its example runs."""

from __future__ import annotations

import pathlib
import re

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_readme_commands_are_exactly_what_ci_runs():
    commands = [b.strip() for b in _blocks("bash")[:2]]
    assert len(commands) == 2
    assert "experiments" in commands[0] and "pytest" in commands[1]
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command in ci_lines


def _run(code: str) -> dict:
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


def test_readme_python_examples_run():
    """Every ```python block runs; the DTW and assignment ones are checked."""
    blocks = _blocks("python")
    namespaces = [_run(code) for code in blocks]
    by_code = list(zip(blocks, namespaces, strict=True))
    dtw = next(ns for code, ns in by_code if "al.dtw_alignment" in code)
    al = dtw["al"]
    assert al.alignment_to_path(dtw["path"]).tolist() == [
        [0, 0], [1, 0], [2, 1], [3, 1], [4, 2], [4, 3], [5, 4], [5, 5]
    ]  # fmt: skip
    assert float(dtw["value"]) == 0.0
    assert np.isfinite(float(dtw["loss"]))
    assert dtw["grad_x"].shape == (50, 1)
    (lap,) = [ns for code, ns in by_code if "hungarian(" in code]
    assert lap["cols"].tolist() == [2, 1, 0]
    assert float(lap["out"].cost) == 107.0
    assert lap["batch"][1].shape == (2, 3)
