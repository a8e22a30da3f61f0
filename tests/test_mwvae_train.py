"""experiments/mwvae end to end on the 8x8 digits: smoke run, exact resume, NaN guard, bad input."""

from __future__ import annotations

import dataclasses
import io
import json
import math

import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("orbax.checkpoint")
pytest.importorskip("matplotlib")

import jax

from experiments.mwvae import MODELS, NonFiniteLossError, smoke_config, train, train_and_evaluate
from experiments.mwvae import __main__ as cli
from experiments.mwvae.data import load_digits8x8


class Killed(Exception):
    """Stands for the process being killed between two checkpoints."""


@pytest.fixture(scope="module")
def digits():
    return load_digits8x8(seed=0)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("smoke")
    summary = train_and_evaluate(smoke_config(str(run_dir)), progress_stream=io.StringIO())
    return run_dir, summary


def test_smoke_run_trains_every_model_and_writes_table_and_figures(smoke_run):
    run_dir, summary = smoke_run
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert on_disk["figures"] == summary["figures"]
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
        # the losses fall: the last logged interval below the first
        history = train.read_metrics(run_dir / r["model"])
        assert history[-1]["step"] == r["train_steps"]
        assert history[-1]["loss"] < history[0]["loss"], r["model"]
    assert 0.5 < on_disk["classifier_accuracy"] <= 1.0
    for name in on_disk["figures"]:
        assert (run_dir / name).stat().st_size > 1000, name
    assert {f"figures/reconstructions_{m}.png" for m in MODELS} <= set(on_disk["figures"])
    assert "figures/reconstructions_all.png" in on_disk["figures"]


def test_resume_after_kill_gives_the_same_parameters(tmp_path, digits, smoke_run):
    config = dataclasses.replace(smoke_config(str(tmp_path / "a")), epochs=3)
    quiet = io.StringIO()
    whole = train.train_model("wvae", config, digits, progress_stream=quiet)

    killed = dataclasses.replace(config, run_dir=str(tmp_path / "b"))
    steps_per_epoch = digits.x_train.shape[0] // config.batch_size

    def kill(step):
        if step == 2 * steps_per_epoch + 3:  # 3 steps past the checkpoint of epoch 2
            raise Killed

    with pytest.raises(Killed):
        train.train_model("wvae", killed, digits, on_step=kill, progress_stream=quiet)
    resumed = train.train_model("wvae", killed, digits, progress_stream=quiet)
    assert resumed.steps == whole.steps
    jax.tree.map(np.testing.assert_array_equal, resumed.params, whole.params)
    # the metrics log reads as if the run had never stopped
    timing = ("steps_per_sec", "train_seconds")
    strip = lambda h: [{k: v for k, v in r.items() if k not in timing} for r in h]
    assert strip(train.read_metrics(tmp_path / "b" / "wvae")) == strip(
        train.read_metrics(tmp_path / "a" / "wvae")
    )
    # restarting a finished run only restores it
    again = train.train_model("wvae", killed, digits, progress_stream=quiet)
    jax.tree.map(np.testing.assert_array_equal, again.params, whole.params)
    assert again.seconds == resumed.seconds > 0  # training time summed over the sessions


def test_non_finite_loss_stops_with_a_clear_message(tmp_path, digits):
    # NaN pixels (past the loader's checks) are the cheapest way to a NaN loss with the
    # compiled step of the smoke config
    x = digits.x_train.copy()
    x[:] = np.nan
    bad = digits._replace(x_train=x)
    config = smoke_config(str(tmp_path))
    with pytest.raises(NonFiniteLossError, match=r"wvae: the training loss is nan at step 1"):
        train.train_model("wvae", config, bad, progress_stream=io.StringIO())
    assert not list((tmp_path / "wvae" / "checkpoints").glob("*/"))  # nothing saved


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"models": ("poe", "mmvae")}, "unknown model"),
        ({"latent_size": 0}, "`latent_size` must be an integer >= 1"),
        ({"data": "idx", "data_dir": "/nonexistent/mnist"}, "is not a directory"),
        ({"data": "idx"}, "needs `data_dir`"),
        ({"w2_weight": -1.0}, "`w2_weight` must be finite and >= 0"),
        ({"shared_size": 8}, "`shared_size` must be in"),
        ({"batch_size": 5000}, "exceeds the 1438 training examples"),
    ],
)
def test_bad_input_fails_before_training(tmp_path, overrides, message):
    config = dataclasses.replace(smoke_config(str(tmp_path / "run")), **overrides)
    with pytest.raises(ValueError, match=message):
        train_and_evaluate(config)
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


def test_data_dir_without_idx_files_fails_before_training(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="lacks the IDX file"):
        cli.main(
            ["--smoke", "--run-dir", str(tmp_path / "run"), "--data-dir", str(tmp_path / "empty")]
        )
    assert not (tmp_path / "run").exists()


def test_command_line_overrides():
    config, overwrite = cli.parse_config(
        ["--models", "poe", "wvae", "--epochs", "3", "--lambda", "2.5", "--latent-size", "16",
         "--seed", "7", "--data-dir", "/data", "--run-dir", "runs/x", "--overwrite"]
    )  # fmt: skip
    assert config.models == ("poe", "wvae") and config.epochs == 3 and config.w2_weight == 2.5
    assert config.latent_size == 16 and config.seed == 7 and config.run_dir == "runs/x"
    assert config.data == "idx" and config.data_dir == "/data" and overwrite
    smoke, _ = cli.parse_config(["--smoke", "--epochs", "1"])
    assert smoke.data == "digits" and smoke.epochs == 1


def test_resume_refuses_other_settings(tmp_path, digits):
    config = smoke_config(str(tmp_path))
    (tmp_path / "wvae").mkdir()
    signature = config.training_signature("wvae") | {"w2_weight": 9.0}
    (tmp_path / "wvae" / "train_config.json").write_text(json.dumps(signature))
    with pytest.raises(ValueError, match="holds a run with different settings"):
        train.train_model("wvae", config, digits)
