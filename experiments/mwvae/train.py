"""Training: one jitted step, deterministic data order, orbax checkpoints, JSONL metrics.

A run of one model lives in ``<run_dir>/<model>/``: ``checkpoints/`` (orbax; params, optimiser
state, step and RNG key, saved every ``checkpoint_every_epochs`` epochs and at the end),
``metrics.jsonl`` (one record per ``log_every_steps`` steps: means over those steps, and the
training time so far, summed over resumed sessions) and
``train_config.json`` (the settings that must match for a resume).

Resuming is exact: the batches of epoch ``e`` are a permutation drawn from
``default_rng([seed, e])`` and the noise of step ``s`` from ``fold_in(key, s)``, so a run killed
after its last checkpoint and restarted ends with the same parameters as one that never stopped.
The host reads the metrics only every ``log_every_steps`` steps (no sync per step); a non-finite
loss then stops the run with :class:`NonFiniteLossError` before anything is checkpointed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx

from experiments.mwvae.config import Config
from experiments.mwvae.data import Dataset
from experiments.mwvae.models import MultimodalVAE, batch_loss


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class TrainResult:
    """A trained model: ``graphdef``, ``params`` (a pure dict) and where its run lives."""

    def __init__(self, kind: str, graphdef, params, model_dir: Path, seconds: float, steps: int):
        self.kind = kind
        self.graphdef = graphdef
        self.params = params
        self.model_dir = model_dir
        self.seconds = seconds
        self.steps = steps

    @property
    def model(self) -> MultimodalVAE:
        return nnx.merge(self.graphdef, self.params)


def create_model(kind: str, config: Config, pixels: int) -> MultimodalVAE:
    return MultimodalVAE(
        kind,
        pixels=pixels,
        latent=config.latent_size,
        shared=config.shared,
        hidden=config.hidden,
        label_hidden=config.label_hidden,
        rngs=nnx.Rngs(config.seed),
    )


FAST_COMPILE = {"xla_backend_optimization_level": 0}


def compiler_options(fast_compile: bool) -> dict | None:
    """XLA options for ``jax.jit``: backend optimisations off when ``fast_compile``."""
    return FAST_COMPILE if fast_compile else None


@functools.lru_cache(maxsize=16)
def cached_train_step(graphdef, learning_rate: float, fast_compile: bool = False):
    """:func:`make_train_step` with Adam, one per model structure and learning rate.

    Runs of the same model in one process (a resumed run, a test) reuse the compiled step.
    """
    return make_train_step(graphdef, optax.adam(learning_rate), fast_compile=fast_compile)


def make_train_step(
    graphdef, optimizer: optax.GradientTransformation, *, fast_compile: bool = False
):
    """``train_step(state, hyper, x_all, y_all, idx) -> (state, metrics)``, jitted, state donated.

    ``state`` is ``{"params", "opt_state", "step", "key"}``; ``hyper`` holds the traced loss
    weights; the batch is ``x_all[idx], y_all[idx]`` (the data set stays on the device).
    """

    def train_step(state, hyper, x_all, y_all, idx):
        x, y = x_all[idx], y_all[idx]
        key = jax.random.fold_in(state["key"], state["step"])

        def loss_fn(params):
            model = nnx.merge(graphdef, params)
            return batch_loss(model, x, y, key, **hyper)

        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        new = {"params": params, "opt_state": opt_state, "step": state["step"] + 1}
        return new | {"key": state["key"]}, metrics

    return jax.jit(train_step, donate_argnums=0, compiler_options=compiler_options(fast_compile))


def epoch_order(seed: int, epoch: int, n: int, batch_size: int) -> np.ndarray:
    """The batches of epoch ``epoch``: ``[n // batch_size, batch_size]`` indices (rest dropped)."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    steps = n // batch_size
    return perm[: steps * batch_size].reshape(steps, batch_size).astype(np.int32)


class Progress:
    """A one-line progress bar on a terminal (``\\r``); a few plain lines in a log."""

    def __init__(self, name: str, total: int, start: int, stream=None):
        self.name, self.total, self.start = name, total, start
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()
        self.next_plain = start + max(1, total // 5)

    def update(self, step: int, epoch: int, epochs: int, loss: float) -> None:
        elapsed = time.perf_counter() - self.t0
        rate = (step - self.start) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        width = 24
        filled = int(width * step / max(self.total, 1))
        line = (
            f"[{self.name:<11}] |{'#' * filled}{'.' * (width - filled)}| {step}/{self.total} "
            f"epoch {epoch}/{epochs} loss {loss:9.3f} {rate:6.1f} step/s ETA {eta:5.0f}s"
        )
        if self.tty:
            self.stream.write("\r" + line)
            self.stream.flush()
        elif step >= self.next_plain or step == self.total:
            self.stream.write(line + "\n")
            self.next_plain = step + max(1, self.total // 5)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _check_signature(model_dir: Path, signature: dict) -> None:
    path = model_dir / "train_config.json"
    if path.exists():
        saved = json.loads(path.read_text())
        diff = sorted(k for k in signature.keys() | saved.keys() if saved.get(k) != signature[k])
        if diff:
            raise ValueError(
                f"{model_dir} holds a run with different settings ({', '.join(diff)}: "
                f"{ {k: saved.get(k) for k in diff} } there, { {k: signature[k] for k in diff} } "
                "now); pass another --run-dir, or --overwrite to start afresh."
            )
    else:
        path.write_text(json.dumps(signature, indent=2))


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Drops the records past ``last_step`` (written by a run that died after its checkpoint)."""
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln)["step"] <= last_step]
    path.write_text("".join(ln + "\n" for ln in kept))


def read_metrics(model_dir: Path) -> list[dict]:
    path = Path(model_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def train_model(
    kind: str,
    config: Config,
    data: Dataset,
    *,
    overwrite: bool = False,
    on_step: Callable[[int], None] | None = None,
    progress_stream=None,
) -> TrainResult:
    """Trains (or resumes, or just restores) model ``kind``; returns its final parameters.

    Args:
      kind: a model name (:data:`experiments.mwvae.config.MODELS`).
      config: the run's settings (validated by the caller).
      data: the data set.
      overwrite: delete ``<run_dir>/<kind>`` first.
      on_step: called with the step count after each step is dispatched (tests use it to
        simulate a kill).
      progress_stream: where the progress bar goes (default ``sys.stderr``).

    Raises:
      NonFiniteLossError: the loss became NaN or infinite.
      ValueError: ``<run_dir>/<kind>`` holds a run with other settings.
    """
    model_dir = Path(config.run_dir) / kind
    if overwrite and model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    _check_signature(model_dir, config.training_signature(kind))

    n = data.x_train.shape[0]
    steps_per_epoch = n // config.batch_size
    total = steps_per_epoch * config.epochs
    model = create_model(kind, config, data.x_train.shape[1])
    graphdef, params = nnx.split(model, nnx.Param)
    params = nnx.to_pure_dict(params)
    optimizer = optax.adam(config.learning_rate)
    state = {
        "params": params,
        "opt_state": optimizer.init(params),
        "step": jnp.asarray(0, jnp.int32),
        "key": jax.random.PRNGKey(config.seed),
    }

    options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False)
    metrics_path = model_dir / "metrics.jsonl"
    with ocp.CheckpointManager((model_dir / "checkpoints").resolve(), options=options) as mngr:
        latest = mngr.latest_step()
        if latest is not None:
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
            state = mngr.restore(latest, args=ocp.args.StandardRestore(abstract))
        start = int(state["step"])
        _truncate_metrics(metrics_path, start)
        history = read_metrics(model_dir)
        seconds_before = history[-1].get("train_seconds", 0.0) if history else 0.0
        if start > total:
            raise ValueError(
                f"{model_dir} holds a checkpoint at step {start}, past this run's {total} steps "
                f"({config.epochs} epochs); raise --epochs or pass --overwrite."
            )

        step_fn = cached_train_step(graphdef, config.learning_rate, config.fast_compile)
        hyper = {
            "w2_weight": jnp.asarray(config.w2_weight, jnp.float32),
            "label_weight": jnp.asarray(config.label_weight, jnp.float32),
        }
        x_all, y_all = jax.device_put(data.x_train), jax.device_put(data.y_train)
        progress = Progress(kind, total, start, progress_stream)
        pending: list = []
        t_train = time.perf_counter()
        t_interval = time.perf_counter()

        def flush(step: int, epoch: int) -> None:
            nonlocal t_interval
            if not pending:
                return
            values = jax.device_get(pending)
            first = step - len(values) + 1
            for i, record in enumerate(values):
                if not math.isfinite(float(record["loss"])):
                    latest = mngr.latest_step()
                    saved = "no checkpoint yet" if latest is None else f"checkpoint {latest}"
                    raise NonFiniteLossError(
                        f"{kind}: the training loss is {float(record['loss'])} at step "
                        f"{first + i} (epoch {epoch}); stopped ({saved} in {model_dir}, with "
                        "finite parameters). Lower --lr, or check the data."
                    )
            now = time.perf_counter()
            mean = {k: float(np.mean([r[k] for r in values])) for k in values[0]}
            record = {"model": kind, "step": step, "epoch": epoch, **mean}
            record["steps_per_sec"] = len(values) / max(now - t_interval, 1e-9)
            record["train_seconds"] = seconds_before + now - t_train
            with metrics_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            progress.update(step, epoch, config.epochs, mean["loss"])
            pending.clear()
            t_interval = now

        try:
            step = start
            while step < total:
                epoch = step // steps_per_epoch
                order = epoch_order(config.seed, epoch, n, config.batch_size)
                for i in range(step % steps_per_epoch, steps_per_epoch):
                    state, metrics = step_fn(state, hyper, x_all, y_all, order[i])
                    pending.append(metrics)
                    step += 1
                    if on_step is not None:
                        on_step(step)
                    if step % config.log_every_steps == 0:
                        flush(step, epoch + 1)
                flush(step, epoch + 1)
                if (epoch + 1) % config.checkpoint_every_epochs == 0 or step == total:
                    mngr.save(step, args=ocp.args.StandardSave(state))
        finally:
            progress.close()
        history = read_metrics(model_dir)
        seconds = history[-1].get("train_seconds", 0.0) if history else 0.0
    return TrainResult(kind, graphdef, state["params"], model_dir, seconds, total)


def config_dict(config: Config) -> dict:
    out = dataclasses.asdict(config)
    out["shared_size"] = config.shared
    return out
