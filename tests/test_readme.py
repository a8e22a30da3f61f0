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


def _run(code: str, namespace: dict) -> dict:
    exec(compile(code, "README.md", "exec"), namespace)
    return dict(namespace)


def test_readme_is_an_entry_point():
    """At most 200 lines, links into the documentation, no notes about how the work was done."""
    lines = README.splitlines()
    assert len(lines) <= 200
    for page in re.findall(r"\]\(((?:docs|notebooks)/[^)#]*|CHANGELOG.md)\)", README):
        assert (ROOT / page).exists(), page
    assert "issue" not in README.lower()


def test_readme_tour_runs_and_says_what_it_gives():
    """The tour's ```python blocks run in order in one namespace, as a reader pastes them."""
    namespace: dict = {}
    states = [_run(code, namespace) for code in _blocks("python")]
    assert len(states) == 4
    dtw, lap, coordination, temporal = states
    al = dtw["al"]
    assert al.alignment_to_path(dtw["path"]).tolist() == [
        [0, 0], [1, 0], [2, 1], [3, 1], [4, 2], [4, 3], [5, 4], [5, 5]
    ]  # fmt: skip
    assert float(dtw["value"]) == 0.0
    assert np.isfinite(float(dtw["loss"]))
    assert dtw["grad_x"].shape == (50, 1)
    assert lap["cols"].tolist() == [2, 1, 0]
    assert float(lap["out"].cost) == 107.0
    assert lap["batch"][1].shape == (2, 3)
    assert lap["ot"].plan.shape == (64, 48) and bool(lap["ot"].converged)
    np.testing.assert_allclose(float(lap["w2"]), 3.0, rtol=1e-6)
    np.testing.assert_allclose(coordination["fit"].correlations, [1.0, 1.0], atol=1e-3)
    assert float(coordination["clip"]) < 0.1
    assert temporal["warp"].alignment.shape == (30, 30) and bool(temporal["warp"].converged)
