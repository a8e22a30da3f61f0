"""experiments/framework: config CLI, training loop, metrics, exact resume, NaN guard, devices."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("optax")
pytest.importorskip("orbax.checkpoint")
pytest.importorskip("tyro")
pytest.importorskip("tqdm")
pytest.importorskip("tensorboardX")

import jax
import jax.numpy as jnp
import optax

from experiments import framework
from experiments.framework import NonFiniteLossError, parse_config, read_metrics, train

REPO = Path(__file__).resolve().parents[1]


# --- parse_config ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    """A config with one field of each kind the experiments use."""

    run_dir: str = "runs/toy"
    seed: int = 0
    devices: int | None = None
    seeds: tuple[int, ...] = (0, 1)
    views: tuple[str, ...] = ("a", "b")
    learning_rate: float = 1e-3
    batch_size: int = 64
    hidden: int = 32
    shuffle: bool = True
    note: str | None = None


def get_toy_config(preset: str) -> ToyConfig:
    return {
        "smoke": ToyConfig(run_dir="runs/toy_smoke", batch_size=8, hidden=4),
        "default": ToyConfig(),
        "full": ToyConfig(batch_size=512, hidden=256, seeds=(0, 1, 2, 3, 4)),
    }[preset]


def test_parse_config_presets():
    assert parse_config(get_toy_config, []) == ToyConfig()
    assert parse_config(get_toy_config, ["--smoke"]) == get_toy_config("smoke")
    assert parse_config(get_toy_config, ["--full"]) == get_toy_config("full")
    # An override applies on top of the chosen preset, wherever --smoke stands.
    config = parse_config(get_toy_config, ["--hidden", "7", "--smoke"])
    assert config == dataclasses.replace(get_toy_config("smoke"), hidden=7)


def test_parse_config_every_field_is_a_flag():
    new_values = {
        "run_dir": ("--run-dir", ["/tmp/elsewhere"], "/tmp/elsewhere"),
        "seed": ("--seed", ["3"], 3),
        "devices": ("--devices", ["2"], 2),
        "seeds": ("--seeds", ["0", "1", "2"], (0, 1, 2)),
        "views": ("--views", ["x", "y", "z"], ("x", "y", "z")),
        "learning_rate": ("--learning-rate", ["0.5"], 0.5),
        "batch_size": ("--batch-size", ["16"], 16),
        "hidden": ("--hidden", ["9"], 9),
        "shuffle": ("--no-shuffle", [], False),
        "note": ("--note", ["hello"], "hello"),
    }
    assert set(new_values) == {f.name for f in dataclasses.fields(ToyConfig)}
    argv = []
    for name, (flag, values, expected) in new_values.items():
        one = parse_config(get_toy_config, [flag, *values])
        assert getattr(one, name) == expected, name
        assert one == dataclasses.replace(ToyConfig(), **{name: expected})
        argv += [flag, *values]
    everything = parse_config(get_toy_config, ["--smoke", *argv])
    assert everything == ToyConfig(**{k: v[2] for k, v in new_values.items()})
    assert isinstance(everything.seeds, tuple)


def test_parse_config_errors(capsys):
    with pytest.raises(SystemExit) as err:
        parse_config(get_toy_config, ["--no-such-flag", "1"])
    assert err.value.code == 2
    with pytest.raises(SystemExit) as err:
        parse_config(get_toy_config, ["--batch-size", "many"])
    assert err.value.code == 2
    with pytest.raises(SystemExit) as err:
        parse_config(get_toy_config, ["--smoke", "--full"])
    assert err.value.code == 2
    with pytest.raises(SystemExit) as err:
        parse_config(get_toy_config, ["--help"], description="Toy experiment.", prog="toy")
    assert err.value.code == 0
    out = capsys.readouterr().out
    assert "usage: toy" in out and "Toy experiment." in out
    assert "--smoke" in out and "--run-dir" in out and "--seeds" in out


# --- a tiny regression problem ----------------------------------------------------------------

D_IN, HIDDEN, BATCH = 4, 8, 16
X = np.random.default_rng(0).normal(size=(256, D_IN)).astype(np.float32)
Y = np.sin(X @ np.array([1.0, -0.5, 0.3, 2.0], np.float32))[:, None]


def init_params(seed: int = 0) -> dict:
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {
        "w1": jax.random.normal(k1, (D_IN, HIDDEN)) / np.sqrt(D_IN),
        "b1": jnp.zeros(HIDDEN),
        "w2": jax.random.normal(k2, (HIDDEN, 1)) / np.sqrt(HIDDEN),
    }


def batch_fn(step: int) -> dict:
    idx = np.random.default_rng([0, step]).integers(0, len(X), BATCH)
    return {"x": X[idx], "y": Y[idx]}


def loss_fn(params, batch, rng):
    h = jnp.tanh(batch["x"] @ params["w1"] + params["b1"])
    # A little noise from rng, so that resuming must reproduce the keys too.
    h = h * (1.0 + 0.01 * jax.random.normal(rng, h.shape))
    err = h @ params["w2"] - batch["y"]
    return jnp.mean(err**2), {"mae": jnp.mean(jnp.abs(err))}


# XLA's backend optimisations off: these tiny steps compile in half the time.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def run(run_dir, num_steps, **kwargs):
    kwargs = {"log_every": 5, "progress": False, "compiler_options": FAST_COMPILE, **kwargs}
    kwargs.setdefault("batch_fn", batch_fn)
    return train(
        params=init_params(),
        optimizer=optax.adam(1e-2),
        loss_fn=loss_fn,
        num_steps=num_steps,
        seed=0,
        run_dir=run_dir,
        **kwargs,
    )


def test_train_one_device_decreases_loss_and_writes_metrics(tmp_path, capfd):
    result = run(tmp_path, 60, log_every=10)
    assert capfd.readouterr() == ("", "")  # progress=False: nothing on stdout or stderr
    history = result.history
    assert [r["step"] for r in history] == [10, 20, 30, 40, 50, 60]
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]
    assert all({"loss", "mae", "steps_per_second", "seconds"} <= set(r) for r in history)
    assert read_metrics(tmp_path) == history
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0]) == history[0]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "checkpoints" / "60").is_dir()  # saved at the end
    assert result.steps_per_second > 0
    assert set(result.params) == {"w1", "b1", "w2"}
    assert np.all(np.isfinite(np.asarray(result.params["w1"])))


def test_progress_bar_goes_to_stderr(tmp_path, capfd):
    run(tmp_path, 3, progress=True, desc="toy")
    out, err = capfd.readouterr()
    assert out == ""
    assert "toy" in err and "3/3" in err


def read_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` from the TFRecord event files (tensorboardX's protos)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4  # length, its CRC, the record, its CRC
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_tensorboard_event_file_holds_the_scalars(tmp_path):
    history = run(tmp_path, 10).history
    scalars = read_scalars(tmp_path / "tensorboard")
    assert {"loss", "mae", "steps_per_second"} <= set(scalars)
    assert [step for step, _ in scalars["loss"]] == [5, 10]
    np.testing.assert_allclose([v for _, v in scalars["loss"]], [r["loss"] for r in history])


class Killed(Exception):
    """Stands for the process being killed between two checkpoints."""


def recording(seen: list, kill_at: int | None = None):
    """``batch_fn`` that records the steps asked for (and dies at ``kill_at``)."""

    def fn(step):
        if step == kill_at:
            raise Killed
        seen.append(step)
        return batch_fn(step)

    return fn


def assert_same_state(a, b):
    for x, y in zip(
        jax.tree.leaves((a.params, a.opt_state)),
        jax.tree.leaves((b.params, b.opt_state)),
        strict=True,
    ):
        np.testing.assert_array_equal(x, y)


def test_resume_is_bit_identical(tmp_path):
    n, k = 23, 10
    whole = run(tmp_path / "whole", n, checkpoint_every=k, log_every=4)
    steps = [4, 8, 10, 12, 16, 20, 23]  # every log_every steps, at checkpoints, at the end
    assert [r["step"] for r in whole.history] == steps

    # K steps, then the same run asked for N: it resumes at K.
    part = run(tmp_path / "part", k, checkpoint_every=k, log_every=4)
    assert [r["step"] for r in part.history] == [4, 8, 10]
    seen = []
    resumed = run(tmp_path / "part", n, checkpoint_every=k, log_every=4, batch_fn=recording(seen))
    assert seen == list(range(k, n))
    assert_same_state(resumed, whole)
    assert [r["step"] for r in resumed.history] == steps
    for a, b in zip(resumed.history, whole.history, strict=True):
        assert a["loss"] == b["loss"] and a["mae"] == b["mae"]

    # Killed at step 15, after the checkpoint at 10 and a record at 12: the record goes, the
    # rerun starts from 10 and ends where the uninterrupted run did.
    seen = []
    with pytest.raises(Killed):
        run(tmp_path / "killed", n, checkpoint_every=k, log_every=4, batch_fn=recording(seen, 15))
    assert [r["step"] for r in read_metrics(tmp_path / "killed")] == [4, 8, 10, 12]
    seen = []
    rerun = run(tmp_path / "killed", n, checkpoint_every=k, log_every=4, batch_fn=recording(seen))
    assert seen == list(range(k, n))
    assert_same_state(rerun, whole)
    assert [r["step"] for r in rerun.history] == steps  # no step twice

    # A finished run is restored, not retrained.
    seen = []
    again = run(tmp_path / "part", n, batch_fn=recording(seen))
    assert seen == [] and again.steps_per_second == 0.0 and again.history == resumed.history
    assert_same_state(again, whole)
    with pytest.raises(ValueError, match="past num_steps"):
        run(tmp_path / "part", n - 1)


def test_non_finite_loss_raises_with_the_step_and_saves_nothing_after(tmp_path):
    def bad_batch_fn(step):
        batch = batch_fn(step)
        if step == 7:
            batch["x"] = np.full_like(batch["x"], np.nan)
        return batch

    with pytest.raises(NonFiniteLossError, match="at step 7") as err:
        train(
            params=init_params(),
            optimizer=optax.adam(1e-2),
            loss_fn=loss_fn,
            batch_fn=bad_batch_fn,
            num_steps=20,
            seed=0,
            run_dir=tmp_path,
            log_every=100,  # found by the check before the checkpoint at step 10
            checkpoint_every=5,
            progress=False,
        )
    assert err.value.step == 7 and not np.isfinite(err.value.metrics["loss"])
    assert isinstance(err.value, FloatingPointError)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["5"]
    assert [r["step"] for r in read_metrics(tmp_path)] == [5]


def test_eval_fn_is_called_and_logged(tmp_path):
    calls = []

    def eval_fn(params, step):
        calls.append(step)
        err = jnp.tanh(X @ params["w1"] + params["b1"]) @ params["w2"] - Y
        return {"mse": jnp.mean(err**2), "n": len(X)}

    result = run(tmp_path, 12, log_every=5, eval_fn=eval_fn, eval_every=4)
    assert calls == [4, 8, 12]
    by_step = {r["step"]: r for r in result.history}
    assert sorted(by_step) == [4, 5, 8, 10, 12]
    assert {r["step"] for r in result.history if "eval/mse" in r} == {4, 8, 12}
    assert by_step[12]["eval/n"] == len(X) and by_step[12]["eval/mse"] > 0
    assert by_step[12]["eval/mse"] < by_step[4]["eval/mse"]


def test_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="log_every"):
        run(tmp_path, 5, log_every=0)
    with pytest.raises(ValueError, match="eval_fn"):
        run(tmp_path, 5, eval_every=2)
    with pytest.raises(ValueError, match="mesh"):
        run(tmp_path, 5, shard_map=True)


def test_make_mesh_one_device():
    mesh = framework.make_mesh()
    assert mesh.axis_names == (framework.DATA_AXIS,) == ("data",)
    assert list(mesh.devices) == jax.devices()
    assert framework.make_mesh(1).devices.shape == (1,)
    with pytest.raises(ValueError, match="devices"):
        framework.make_mesh(len(jax.devices()) + 1)
    with pytest.raises(ValueError, match="devices"):
        framework.make_mesh(0)


def test_one_device_mesh_matches_no_mesh(tmp_path):
    """make_mesh(1) (what `--devices 1` gives) in both modes: the update of mesh=None."""

    def global_loss_fn(params, batch, rng, axis_name):
        loss, aux = loss_fn(params, batch, rng)
        return jax.lax.pmean(loss, axis_name), aux  # the mean over the devices' equal shards

    plain = run(tmp_path / "plain", 4)
    mesh = framework.make_mesh(1)
    gspmd = run(tmp_path / "gspmd", 4, mesh=mesh)
    mapped = train(
        params=init_params(),
        optimizer=optax.adam(1e-2),
        loss_fn=global_loss_fn,
        batch_fn=batch_fn,
        num_steps=4,
        seed=0,
        run_dir=tmp_path / "mapped",
        mesh=mesh,
        shard_map=True,
        log_every=5,
        progress=False,
        compiler_options=FAST_COMPILE,
    )
    for other in (gspmd, mapped):
        for name in plain.params:
            np.testing.assert_allclose(other.params[name], plain.params[name], rtol=1e-6)
        assert [r["step"] for r in other.history] == [4]


# --- data parallel, on 8 simulated CPU devices ------------------------------------------------

PRELUDE = textwrap.dedent(
    """
    import tempfile
    import jax, jax.numpy as jnp, numpy as np, optax
    import alignment
    from experiments import framework

    assert jax.device_count() == 8, jax.devices()
    mesh = framework.make_mesh()
    assert mesh.devices.shape == (8,) and mesh.axis_names == ("data",)
    assert list(mesh.devices) == jax.devices()
    mesh2 = framework.make_mesh(devices=2)
    assert mesh2.devices.shape == (2,) and list(mesh2.devices) == jax.devices()[:2]
    N, B, D, K = 6, 32, 5, 4
    rng = np.random.default_rng(0)
    XA = rng.normal(size=(512, D)).astype(np.float32)
    XB = (XA @ rng.normal(size=(D, D)) + 0.1 * rng.normal(size=(512, D))).astype(np.float32)

    def batch_fn(step):
        idx = np.random.default_rng([1, step]).integers(0, 512, B)
        return {"a": XA[idx], "b": XB[idx]}

    def init():
        k1, k2 = jax.random.split(jax.random.key(0))
        return {"wa": jax.random.normal(k1, (D, K)), "wb": jax.random.normal(k2, (D, K)),
                "scale": jnp.asarray(alignment.CLIP_LOGIT_SCALE_INIT, jnp.float32)}

    def fit(loss_fn, **kw):
        return framework.train(params=init(), optimizer=optax.adam(1e-2), loss_fn=loss_fn,
                               batch_fn=batch_fn, num_steps=N, seed=0, log_every=2,
                               run_dir=tempfile.mkdtemp(), progress=False,
                               compiler_options={"xla_backend_optimization_level": 0}, **kw)

    def close(r1, r2):
        for name in r1.params:
            np.testing.assert_allclose(r2.params[name], r1.params[name], rtol=1e-5, atol=1e-6)
        for h1, h2 in zip(r1.history, r2.history, strict=True):
            np.testing.assert_allclose(h2["loss"], h1["loss"], rtol=1e-5)
    """
)

GSPMD = textwrap.dedent(
    """
    # A plain loss, written as on one device, over the global batch; jit partitions the step.
    def plain(params, batch, rng):
        assert batch["a"].shape == (B, D)  # the global batch
        err = batch["a"] @ params["wa"] - batch["b"][:, :K] * params["scale"]
        noise = 1.0 + 0.01 * jax.random.normal(rng, err.shape)
        return jnp.mean((err * noise) ** 2), {"max": jnp.max(jnp.abs(err))}

    one = fit(plain)
    many = fit(plain, mesh=mesh)
    assert many.params["wa"].sharding.is_fully_replicated
    assert len(many.params["wa"].sharding.device_set) == 8
    close(one, many)
    np.testing.assert_allclose(many.history[-1]["max"], one.history[-1]["max"], rtol=1e-5)
    assert not np.allclose(many.params["wa"], init()["wa"])  # it trained

    # A batch that does not split over the devices.
    try:
        framework.train(params=init(), optimizer=optax.sgd(0.1), loss_fn=plain,
                        batch_fn=lambda s: {"a": XA[:12], "b": XB[:12]}, num_steps=1, seed=0,
                        run_dir=tempfile.mkdtemp(), mesh=mesh, progress=False)
    except ValueError as err:
        assert "multiple of the 8 devices" in str(err)
    else:
        raise AssertionError("no error for a batch of 12 on 8 devices")
    print("GSPMD OK")
    """
)

SHARD_MAP = textwrap.dedent(
    """
    # A CLIP loss over the global batch from each device's shard, against clip_loss on one.
    def embed(params, batch):
        za = batch["a"] @ params["wa"]
        zb = batch["b"] @ params["wb"]
        unit = lambda z: z / jnp.linalg.norm(z, axis=-1, keepdims=True)
        return unit(za), unit(zb)

    def clip(params, batch, rng):
        za, zb = embed(params, batch)
        cos = jnp.mean(jnp.sum(za * zb, -1))
        return alignment.clip_loss(za, zb, logit_scale=params["scale"]), {"cos": cos}

    def sharded_clip(params, batch, rng, axis_name):
        za, zb = embed(params, batch)
        assert za.shape[0] in (B // 8, B // 2)  # this device's shard
        loss = alignment.sharded_clip_loss(za, zb, axis_name=axis_name,
                                           logit_scale=params["scale"])
        return loss, {"cos": jnp.mean(jnp.sum(za * zb, -1))}  # a local mean: train averages it

    one = fit(clip)
    many = fit(sharded_clip, mesh=mesh, shard_map=True)
    close(one, many)
    np.testing.assert_allclose(many.history[-1]["cos"], one.history[-1]["cos"], rtol=1e-5)
    assert abs(float(many.params["scale"]) - float(init()["scale"])) > 1e-3  # it trained
    close(one, fit(sharded_clip, mesh=mesh2, shard_map=True))

    # A loss that differs between devices: an error, not a silently scaled gradient.
    def local_only(params, batch, rng, axis_name):
        za, zb = embed(params, batch)
        return alignment.clip_loss(za, zb), {}

    try:
        fit(local_only, mesh=mesh, shard_map=True)
    except ValueError as err:
        assert "GLOBAL" in str(err)
    else:
        raise AssertionError("no error for a per-device loss")
    print("SHARD_MAP OK")
    """
)


def run_on_8_cpu_devices(code: str) -> str:
    """Runs ``code`` in a fresh interpreter whose JAX sees 8 CPU devices; returns its stdout."""
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    env["XLA_FLAGS"] = flags.strip()  # read when jax starts: it needs a new process
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + code],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_data_parallel_gspmd_matches_one_device():
    assert "GSPMD OK" in run_on_8_cpu_devices(GSPMD)


def test_data_parallel_shard_map_clip_matches_one_device():
    assert "SHARD_MAP OK" in run_on_8_cpu_devices(SHARD_MAP)
