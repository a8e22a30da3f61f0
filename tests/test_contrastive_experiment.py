"""experiments/contrastive: the paired halves, the optimiser clamp, a smoke run end to end, and
data-parallel training on 8 simulated devices against one device."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("mlxtend")

from experiments.contrastive import data as d
from experiments.contrastive import models
from experiments.contrastive.config import get_config

REPO = Path(__file__).resolve().parents[1]


def test_halves_are_the_two_parts_of_one_digit():
    data = d.build(n_train=40, n_val=20, n_test=20, seed=2, cut=12)
    images, labels = d.load_mnist5k()
    again = d.build(n_train=40, n_val=20, n_test=20, seed=2, cut=12)
    for split, n in zip(d.SPLITS, (40, 20, 20), strict=True):
        p = getattr(data, split)
        assert p.a.shape == (n, 12 * 28) and p.b.shape == (n, 16 * 28)
        assert p.a.dtype == p.b.dtype == np.float32
        # row i of A and row i of B put back together are digit source[i]
        whole = np.concatenate([p.a.reshape(n, 12, 28), p.b.reshape(n, 16, 28)], axis=1)
        np.testing.assert_array_equal(whole.reshape(n, -1), images[p.source])
        np.testing.assert_array_equal(p.y, labels[p.source])
        np.testing.assert_array_equal(p.a, getattr(again, split).a)  # fixed by the seed
    used = [set(getattr(data, s).source) for s in d.SPLITS]
    assert not (used[0] & used[1]) and not (used[0] & used[2]) and not (used[1] & used[2])
    with pytest.raises(ValueError, match="cut"):
        d.split_halves(images[:2], 28)


def test_clip_optimizer_clips_the_logit_scale_and_nothing_else():
    import jax.numpy as jnp
    import optax

    opt = models.make_optimizer("clip", learning_rate=0.5, scale_learning_rate=10.0)
    params = {"encoders": {"w": jnp.ones(3)}, "logit_scale": jnp.asarray(4.5)}
    grads = {"encoders": {"w": jnp.ones(3)}, "logit_scale": jnp.asarray(-1.0)}  # push it up
    updates, _ = opt.update(grads, opt.init(params), params)
    new = optax.apply_updates(params, updates)
    assert float(new["logit_scale"]) == pytest.approx(math.log(100.0))  # CLIP_MAX_SCALE
    np.testing.assert_allclose(new["encoders"]["w"], 0.5, rtol=1e-4)  # Adam's first step: lr


def test_bad_settings_raise():
    config = get_config("smoke")
    for bad in (
        {"losses": ("clip", "nope")},
        {"batch_size": 1000},
        {"devices": 3},
        {"cut": 0},
        {"optimised": ("nope",)},
    ):
        with pytest.raises(ValueError):
            dataclasses.replace(config, **bad).validate()


def test_smoke_run_end_to_end(tmp_path):
    from experiments.contrastive.__main__ import main
    from experiments.framework import read_metrics

    record = main(["--smoke", "--run-dir", str(tmp_path)])
    for name in ("results.json", "results.md", "scales.png", "training_curves.png"):
        assert (tmp_path / name).is_file() and (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert record["summary"] == saved["summary"]
    assert set(saved["summary"]) == set(models.LOSSES)
    n = saved["config"]["n_test"]
    for loss, s in saved["summary"].items():
        for key, value in s.items():
            if isinstance(value, dict):
                assert math.isfinite(value["mean"]) and math.isfinite(value["std"]), (loss, key)
        for way in ("a_to_b", "b_to_a"):
            r1, r5, r10 = (s[f"r{k}_{way}"]["mean"] for k in (1, 5, 10))
            assert 0.0 <= r1 <= r5 <= r10 <= 1.0, loss
            # a top-1 instance hit is a class hit
            assert r1 <= s[f"class_r1_{way}"]["mean"] <= 1.0, loss
            if loss in ("clip", "siglip", "siglip_prior"):  # class R@1: 3x chance (0.1)
                assert s[f"class_r1_{way}"]["mean"] > 0.3, (loss, way)
            assert 1.0 <= s[f"median_rank_{way}"]["mean"] <= n
            # even 30 steps find the true partner among 100 well above chance (R@10 = 0.1)
            assert r10 > 0.2, (loss, way, r10)
            assert s[f"median_rank_{way}"]["mean"] < n / 4, loss  # chance: about n / 2
    # the learned scale (and SigLIP's bias) are logged every record and end where results say
    clip = read_metrics(tmp_path / "clip" / "seed0")
    assert [r["step"] for r in clip if "temperature" in r] == [10, 20, 30]
    assert clip[-1]["scale"] == pytest.approx(saved["summary"]["clip"]["scale"]["mean"], rel=0.05)
    siglip = read_metrics(tmp_path / "siglip_prior" / "seed0")
    assert siglip[0]["bias"] == pytest.approx(-math.log(63.0), abs=0.05)  # -log(b - 1), b = 64
    assert "bias" not in saved["summary"]["clip"] and "scale" not in saved["summary"]["vse"]
    table = (tmp_path / "results.md").read_text()
    assert all(f"| {loss} |" in table for loss in models.LOSSES)


def test_a_run_dir_of_other_settings_is_not_resumed(tmp_path):
    from experiments.contrastive.run import _signature
    from experiments.framework import check_signature

    config = get_config("smoke")
    check_signature(tmp_path, _signature("clip", 0, config))
    more = dataclasses.replace(config, steps=99, chunk_size=8)  # steps may grow; clip: no chunks
    check_signature(tmp_path, _signature("clip", 0, more))
    with pytest.raises(ValueError, match="other settings"):
        check_signature(tmp_path, _signature("clip", 0, dataclasses.replace(config, k=16)))


EIGHT_DEVICES = textwrap.dedent(
    """
    import dataclasses, tempfile
    import jax, numpy as np
    from experiments import framework
    from experiments.contrastive import data as d, models, run
    from experiments.contrastive.config import get_config

    assert jax.device_count() == 8, jax.devices()
    rng = np.random.default_rng(0)

    def split(n):  # synthetic pairs (no MNIST load): B is a noisy linear image of A
        a = rng.random((n, 14 * 28), dtype=np.float32)
        b = (a @ rng.normal(size=(14 * 28, 14 * 28)).astype(np.float32) / 20.0
             + 0.1 * rng.normal(size=(n, 14 * 28)).astype(np.float32))
        return d.HalfPairs(a, b, rng.integers(0, 10, n).astype(np.int32), np.arange(n))

    data = d.PairData(split(64), split(16), split(16))
    base = dataclasses.replace(
        get_config("smoke"), hidden=(16,), k=8, steps=3, batch_size=32, chunked_steps=3,
        chunked_batch_size=64, chunk_size=16, n_train=64, n_val=16, n_test=16, log_every=3)

    seen = []  # (loss, axis_name, rows per call) of every traced loss
    original = models.contrastive_loss
    def recording(loss, za, zb, params, **kw):
        seen.append((loss, kw["axis_name"], za.shape[0]))
        return original(loss, za, zb, params, **kw)
    models.contrastive_loss = recording

    mesh = framework.make_mesh(8)
    # the sharded CLIP and SigLIP forms inside shard_map (siglip runs the code of siglip_prior,
    # with another bias init), and a loss without a sharded form partitioned by jit (as vse)
    for loss in ("clip", "siglip_prior", "siglip_chunked"):
        config = dataclasses.replace(base, run_dir=tempfile.mkdtemp())
        _, init = models.init_params(loss, d_a=392, d_b=392, hidden=(16,), k=8,
                                     batch_size=config.batch_of(loss), seed=0)
        one = run.train_one(loss, 0, config, data, None)
        config = dataclasses.replace(base, run_dir=tempfile.mkdtemp(), devices=8)
        many = run.train_one(loss, 0, config.validate(), data, mesh)
        leaves = lambda r: jax.tree.leaves(r["_params"])
        for x1, x8, x0 in zip(leaves(one), leaves(many), jax.tree.leaves(init), strict=True):
            np.testing.assert_allclose(x8, x1, rtol=1e-5, atol=1e-6, err_msg=loss)
            assert x1.size == 1 or not np.allclose(x1, x0), loss  # it trained
        for h1, h8 in zip(one["history"], many["history"], strict=True):
            np.testing.assert_allclose(h8["loss"], h1["loss"], rtol=1e-5, err_msg=loss)
        assert many["r1_a_to_b"] == one["r1_a_to_b"], loss
    b = base.batch_size
    expected = {("clip", None, b), ("clip", "data", b // 8),
                ("siglip_prior", None, b), ("siglip_prior", "data", b // 8),
                ("siglip_chunked", None, base.chunked_batch_size)}
    assert set(seen) == expected, set(seen)
    print("EIGHT DEVICES OK")
    """
)


def test_eight_devices_match_one_device():
    """Three steps on 8 simulated CPU devices (the sharded losses inside shard_map, the chunked
    loss partitioned by jit) give the parameters of three steps on one device."""
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    env["XLA_FLAGS"] = flags.strip()  # read when jax starts: it needs a new process
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", EIGHT_DEVICES],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "EIGHT DEVICES OK" in proc.stdout
