"""experiments/mwvae end to end on the 8x8 digits: the smoke command, batch order, CLI, bad input.

The training loop itself (exact resume, the non-finite-loss stop, metrics, checkpoints) is
experiments/framework's, tested in tests/test_framework.py.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("orbax.checkpoint")
pytest.importorskip("matplotlib")
pytest.importorskip("tyro")

from experiments.framework import parse_config, read_metrics
from experiments.mwvae import MODELS, Config, get_config, train_and_evaluate
from experiments.mwvae import __main__ as cli
from experiments.mwvae.data import load_digits8x8, make_batch_fn
from experiments.mwvae.run import train_one


def _smoke(run_dir, **overrides) -> Config:
    return dataclasses.replace(get_config("smoke"), run_dir=str(run_dir), **overrides)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("smoke")
    summary = cli.main(["--smoke", "--run-dir", str(run_dir)])
    return run_dir, summary


def test_smoke_command_trains_every_model_and_writes_table_and_figures(smoke_run):
    run_dir, summary = smoke_run
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["figures"] == summary["figures"]
    assert on_disk["config"]["run_dir"] == str(run_dir) and on_disk["config"]["data"] == "digits"
    assert [r["model"] for r in on_disk["results"]] == list(MODELS)
    table = (run_dir / "results.md").read_text()
    for r in on_disk["results"]:
        assert f"| {r['model']} |" in table
        for key in ("acc_image_to_label", "coherence_label_to_image", "joint_nll"):
            assert math.isfinite(r[key]), (r["model"], key)
        assert 0.0 <= r["acc_image_to_label"] <= 1.0
        assert r["w2_modalities"] >= 0.0
        assert len(r["kl_image_per_dim"]) == 8
        assert min(r["kl_image_per_dim"]) >= -1e-5
        # log-likelihood terms are log-probabilities; the IS estimate of -log p is positive
        assert r["recon_ll_label"] <= 0.0 and r["joint_nll"] > 0.0
        # the framework's metrics: two epochs of 22 steps; the losses fall
        history = read_metrics(run_dir / r["model"])
        assert history[-1]["step"] == r["train_steps"] == 2 * (1438 // 64)
        assert history[-1]["loss"] < history[0]["loss"], r["model"]
        assert {"rec_image", "rec_label", "kl", "w2"} <= set(history[-1])
        assert r["train_seconds"] > 0
    assert 0.5 < on_disk["classifier_accuracy"] <= 1.0
    for name in on_disk["figures"]:
        assert (run_dir / name).stat().st_size > 1000, name
    assert {f"figures/reconstructions_{m}.png" for m in MODELS} <= set(on_disk["figures"])
    assert {"figures/reconstructions_all.png", "figures/training_curves.png"} <= set(
        on_disk["figures"]
    )


def test_batch_fn_shuffles_every_epoch_and_is_deterministic_in_the_step():
    x = np.arange(10, dtype=np.float32)[:, None]
    y = np.arange(10, dtype=np.int32)
    batch_fn = make_batch_fn(x, y, seed=3, batch_size=3)  # 3 steps an epoch, one example left
    epochs = [np.concatenate([batch_fn(e * 3 + i)["y"] for i in range(3)]) for e in range(2)]
    for seen in epochs:
        assert len(set(seen.tolist())) == 9  # each example at most once an epoch
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled
    fresh = make_batch_fn(x, y, seed=3, batch_size=3)
    for step in (4, 0, 5):  # any order, as after a resume
        np.testing.assert_array_equal(fresh(step)["x"], batch_fn(step)["x"])
    np.testing.assert_array_equal(batch_fn(4)["x"][:, 0], batch_fn(4)["y"])
    with pytest.raises(ValueError, match="exceeds the 10 training examples"):
        make_batch_fn(x, y, seed=0, batch_size=11)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"models": ("poe", "vqvae")}, "unknown model"),
        ({"kl_anneal_epochs": -1}, "`kl_anneal_epochs` must be an integer >= 0"),
        ({"latent_size": 0}, "`latent_size` must be an integer >= 1"),
        ({"data": "idx", "data_dir": "/nonexistent/mnist"}, "is not a directory"),
        ({"data": "idx"}, "needs `data_dir`"),
        ({"w2_weight": -1.0}, "`w2_weight` must be finite and >= 0"),
        ({"shared_size": 8}, "`shared_size` must be in"),
        ({"batch_size": 5000}, "exceeds the 1438 training examples"),
    ],
)
def test_bad_input_fails_before_training(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        train_and_evaluate(_smoke(tmp_path / "run", **overrides))
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


def test_data_dir_without_idx_files_fails_before_training(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="lacks the IDX file"):
        cli.main(
            ["--smoke", "--run-dir", str(tmp_path / "run"), "--data-dir", str(tmp_path / "empty")]
        )
    assert not (tmp_path / "run").exists()


def test_command_line_reaches_every_field():
    argv = [
        "--run-dir", "runs/x", "--models", "poe", "wvae", "--data", "idx", "--data-dir", "/d",
        "--seed", "7", "--latent-size", "16", "--shared-size", "4", "--hidden", "8",
        "--label-hidden", "4", "--w2-weight", "2.5", "--label-weight", "10", "--epochs", "3",
        "--kl-anneal-epochs", "2", "--comparison", "--validation-fraction", "0.2",
        "--seeds", "3", "4", "--tune-runs", "2", "--grid-kl-anneal-epochs", "0", "1",
        "--grid-label-weight", "5", "--grid-w2-weight", "2", "--grid-epochs", "4",
        "--selection-nll-samples", "8", "--modalities", "4", "--poly-source", "digits",
        "--poly-models", "poe", "wvae_bary", "--kl-weight", "0.5", "--poly-arch", "mlp",
        "--batch-size", "32", "--learning-rate", "0.01", "--checkpoint-every-epochs", "2",
        "--log-every-steps", "7", "--nll-samples", "3", "--nll-examples", "9",
        "--classifier-epochs", "1",
        "--figure-columns", "5", "--figure-rows", "1", "--overwrite", "--no-progress",
        "--fast-compile",
    ]  # fmt: skip
    config = parse_config(get_config, argv)
    default = get_config("default")
    unchanged = [
        f.name
        for f in dataclasses.fields(Config)
        if getattr(config, f.name) == getattr(default, f.name)
    ]
    assert unchanged == []  # every field has a flag
    assert config.models == ("poe", "wvae") and config.w2_weight == 2.5 and config.shared == 4
    # --data-dir alone selects the IDX files
    assert parse_config(get_config, ["--data-dir", "/d"]).source == "idx"
    smoke = parse_config(get_config, ["--smoke", "--epochs", "1"])
    assert smoke.data == "digits" and smoke.epochs == 1 and smoke.models == MODELS
    assert parse_config(get_config, ["--full"]).comparison
    with pytest.raises(SystemExit):
        parse_config(get_config, ["--lambda", "2"])  # not a field: an error, not ignored


def test_a_model_directory_of_other_settings_is_not_resumed(tmp_path):
    digits = load_digits8x8(seed=0)
    config = _smoke(tmp_path)
    (tmp_path / "wvae").mkdir()
    signature = config.training_signature("wvae") | {"w2_weight": 9.0}
    (tmp_path / "wvae" / "signature.json").write_text(json.dumps(signature))
    with pytest.raises(ValueError, match=r"holds a run with other settings \(w2_weight"):
        train_one("wvae", config, digits)
    # a directory of the earlier trainer (other checkpoint layout) is refused as well
    (tmp_path / "poe").mkdir()
    (tmp_path / "poe" / "train_config.json").write_text("{}")
    with pytest.raises(ValueError, match="earlier trainer"):
        train_one("poe", config, digits)
