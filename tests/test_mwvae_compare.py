"""experiments/mwvae/compare.py: the fair comparison's protocol (search space, equal budget,
selection on validation, seeds on test), end to end on the 8x8 digits at smoke sizes."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("orbax.checkpoint")
pytest.importorskip("tyro")

from experiments.mwvae import __main__ as cli
from experiments.mwvae import compare, get_config
from experiments.mwvae.data import load_digits8x8, with_validation


def test_search_space_and_equal_budget():
    config = get_config("full")
    assert config.comparison and config.nll_samples >= 1000 and len(config.seeds) >= 5
    assert "wvae_full" not in config.models
    assert len(compare.search_space("poe", config)) == 4
    assert len(compare.search_space("wvae", config)) == 12
    assert {"w2_weight"} <= set(compare.search_space("kl_coupled", config)[0])
    for model in config.models:
        runs = compare.draw_runs(model, config)
        assert len(runs) == config.tune_runs  # the same budget for every model
        assert all(r in compare.search_space(model, config) for r in runs)
        assert len({tuple(sorted(r.items())) for r in runs}) == len(runs)  # no repeats
        assert runs == compare.draw_runs(model, config)  # seeded


def test_validation_split_is_taken_from_training_and_stratified():
    data = load_digits8x8(seed=0)
    split = with_validation(data, fraction=0.1, seed=0)
    assert split.x_val.shape[0] + split.x_train.shape[0] == data.x_train.shape[0]
    np.testing.assert_array_equal(split.x_test, data.x_test)  # the test split is untouched
    counts = np.bincount(split.y_val, minlength=10)
    assert counts.min() >= 13 and counts.max() <= 15
    rows = {r.tobytes() for r in split.x_train}
    assert not any(r.tobytes() in rows for r in split.x_val)


def test_aggregate_is_mean_and_sample_std_over_seeds():
    per_seed = {s: {"results": {"a": {"x": v, "name": "a"}}} for s, v in enumerate([1.0, 2.0, 4.0])}
    stats = compare.aggregate(per_seed, ["a"])
    assert stats["a"]["x"]["mean"] == pytest.approx(7 / 3)
    assert stats["a"]["x"]["std"] == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))
    assert "name" not in stats["a"]


def test_bad_comparison_settings_fail_before_training(tmp_path):
    base = dataclasses.replace(get_config("smoke"), run_dir=str(tmp_path / "run"), comparison=True)
    for overrides, message in [
        ({"validation_fraction": 0.0}, "validation_fraction"),
        ({"seeds": ()}, "seeds"),
        ({"seeds": (1, 1)}, "seeds"),
        ({"grid_epochs": (0,)}, "grid_epochs"),
        ({"grid_label_weight": ()}, "grid_label_weight"),
        ({"tune_runs": 0}, "tune_runs"),
    ]:
        with pytest.raises(ValueError, match=message):
            compare.run_comparison(dataclasses.replace(base, **overrides))
    assert not (tmp_path / "run").exists()


def test_smoke_comparison_end_to_end(tmp_path, capsys):
    run_dir = tmp_path / "cmp"
    argv = ["--smoke", "--comparison", "--models", "poe", "wvae", "--seeds", "0", "1",
            "--tune-runs", "1", "--grid-epochs", "1", "2", "--run-dir", str(run_dir)]  # fmt: skip
    cli.main(argv)
    printed = capsys.readouterr().out
    summary = json.loads((run_dir / "results.json").read_text())
    assert set(summary["chosen"]) == {"poe", "wvae"}
    for model in ("poe", "wvae"):
        searched = summary["search"]["models"][model]
        assert len(searched["candidates"]) == 2  # one run, evaluated after 1 and 2 epochs
        best = max(c["score"] for c in searched["candidates"])
        assert searched["score"] == best
        assert summary["chosen"][model]["epochs"] in (1, 2)
        for c in searched["candidates"]:
            v = c["validation"]
            assert c["score"] == pytest.approx(
                0.5 * (v["acc_image_to_label"] + v["coherence_label_to_image"])
            )
    assert "w2_weight" in summary["chosen"]["wvae"] and "w2_weight" not in summary["chosen"]["poe"]
    assert set(summary["test"]) == {"0", "1"}
    for seed in ("0", "1"):
        for model in ("poe", "wvae"):
            r = summary["test"][seed]["results"][model]
            assert r["nll_samples"] == 4 and np.isfinite(r["joint_nll"])
            assert 0.0 <= r["diversity_label_to_image"] and np.isfinite(r["frechet_label_to_image"])
    stats = summary["aggregate"]["wvae"]["coherence_label_to_image"]
    values = [summary["test"][s]["results"]["wvae"]["coherence_label_to_image"] for s in "01"]
    assert stats["mean"] == pytest.approx(np.mean(values))
    table = (run_dir / "results.md").read_text()
    assert "| poe |" in table and "±" in table and "Chosen on validation" in table
    assert "Chosen on validation" in printed
