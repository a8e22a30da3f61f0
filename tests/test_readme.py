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


def test_readme_python_example_runs():
    (code,) = _blocks("python")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    al = namespace["al"]
    assert al.alignment_to_path(namespace["path"]).tolist() == [
        [0, 0], [1, 0], [2, 1], [3, 1], [4, 2], [4, 3], [5, 4], [5, 5]
    ]  # fmt: skip
    assert float(namespace["value"]) == 0.0
    assert np.isfinite(float(namespace["loss"]))
    assert namespace["grad_x"].shape == (50, 1)
