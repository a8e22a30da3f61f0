"""The suite entry point (python -m benchmarks), run on the linear-assignment family.

The other families' smoke tests (tests/test_benchmarks_*_smoke.py) check their own rows; this
checks the suite's combined table and JSON and, on the way, the assignment benchmark's rows (every
method runs at tiny sizes and is optimal). It asserts nothing about speed.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("optax")

from benchmarks import __main__ as suite
from benchmarks import _harness, assignment


def test_quick_suite_writes_one_table_and_one_json(tmp_path, capsys):
    status = suite.main(["--quick", "--only", "assignment", "--out-dir", str(tmp_path)])
    printed = capsys.readouterr().out
    combined = json.loads((tmp_path / "suite_quick.json").read_text())
    markdown = (tmp_path / "suite_quick.md").read_text()

    assert status == 0
    assert combined["config"] == "quick" and combined["passed"] is True
    assert list(combined["families"]) == ["assignment"]
    payload = combined["families"]["assignment"]
    assert payload == {
        **json.loads((tmp_path / "assignment_quick.json").read_text()),
        "exit_status": 0,
    }
    assert markdown.startswith("# Benchmark suite (quick)")
    assert "## Linear assignment benchmark" in markdown and "PASS: assignment ok" in markdown
    assert "suite written to" in printed

    # The assignment family's rows: every method, peers included, finds the optimum.
    assert payload["passed"]
    expected = [(c[0], m) for c in assignment.CONFIGS["quick"] for m in assignment.METHODS]
    assert [(r["config"], r["method"]) for r in payload["rows"]] == expected
    for label, method in expected:
        assert f"| {label}" in markdown and f" {method} " in markdown
    for row in payload["rows"]:
        assert row["cost_rel_err"] <= 1e-6, row
        assert row["median_s"] > 0 and row["peak_rss_mb"] >= 0


def test_unknown_family_is_a_usage_error():
    with pytest.raises(SystemExit):
        suite.main(["--quick", "--only", "nonsense"])


def test_every_gpu_family_has_a_gpu_configuration():
    import importlib

    assert {"soft_dtw", "sinkhorn", "assignment"} <= set(suite.GPU_FAMILIES)
    for family in suite.GPU_FAMILIES:
        module = importlib.import_module(f"benchmarks.{family}")
        assert "gpu" in module.CONFIGS, family
        # the family's own command line accepts it (what the suite passes with --gpu)
        parser = _harness.cli_parser(module.__doc__, module.CONFIGS, module.DEFAULT_OUT)
        assert parser.parse_args(["--config", "gpu"]).config == "gpu"
    sinkhorn = importlib.import_module("benchmarks.sinkhorn")
    assert sinkhorn.CONFIGS["gpu"]["single"] == 16_384
