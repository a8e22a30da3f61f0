"""The training loop: one jitted step, optional data parallelism, metrics, checkpoints, resume."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, SingleDeviceSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from experiments.framework.mesh import DATA_AXIS
from experiments.framework.writers import (
    JsonlWriter,
    MetricWriter,
    TensorBoardWriter,
    read_metrics,
    to_python,
    truncate_metrics,
)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; nothing past the last finite step was saved.

    Attributes:
      step: The step index whose loss was not finite (the ``step`` given to ``batch_fn`` and
        folded into the key; that step was the ``step + 1``-th update).
      metrics: That step's metrics, ``{"loss": float, **aux}``.
    """

    def __init__(self, message: str, step: int | None = None, metrics: dict | None = None):
        super().__init__(message)
        self.step = step
        self.metrics = metrics


class TrainResult(NamedTuple):
    """What :func:`train` returns.

    Attributes:
      params: The final parameters (the pytree given to :func:`train`, as ``jax.Array`` s;
        replicated over the mesh when one was given).
      opt_state: The final optimiser state.
      history: Every record of ``<run_dir>/metrics.jsonl``, earlier sessions of a resumed run
        included: ``{"step": completed steps, "loss": mean over the steps since the previous
        record, <aux means>, "steps_per_second", "seconds", "eval/<name>": ...}``.
      steps_per_second: Steps per second of this call, the first step (compilation) excluded;
        ``0.0`` when there was nothing left to train.
    """

    params: Any
    opt_state: Any
    history: list[dict]
    steps_per_second: float


def _varying_axes(x) -> frozenset:
    """The mesh axes along which ``x`` may differ between devices (inside ``shard_map``)."""
    aval = jax.typeof(x)
    vma = getattr(aval, "vma", None)
    if vma is None:
        manual = getattr(aval, "manual_axis_type", None)
        vma = getattr(manual, "varying", None) if manual is not None else None
    return frozenset(vma or ())


def _place(x, sharding) -> jax.Array:
    """A fresh ``jax.Array`` holding ``x`` with ``sharding`` (every process passes all of ``x``)."""
    host = np.asarray(jax.numpy.asarray(x)) if not isinstance(x, np.ndarray) else x
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _fetch(tree):
    """Host copies of the (replicated) arrays in ``tree``, also when the mesh spans processes."""

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            x = x.addressable_data(0)
        return np.asarray(x)

    return jax.tree.map(one, tree)


def _check_positive(name: str, value, allow_none: bool = False, allow_zero: bool = False):
    if value is None and allow_none:
        return
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}.")


def _make_step(
    loss_fn, optimizer, seed: int, mesh: Mesh | None, shard_map: bool, replicated, compiler_options
):
    """``step(params, opt_state, batch, step) -> (params, opt_state, metrics)``, jitted."""

    def grads(params, batch, step, **kwargs):
        rng = jax.random.fold_in(jax.random.key(seed), step)

        def objective(p):
            loss, aux = loss_fn(p, batch, rng, **kwargs)
            return loss, aux

        (loss, aux), g = jax.value_and_grad(objective, has_aux=True)(params)
        aux = dict(aux)
        if "loss" in aux:
            raise ValueError("loss_fn's aux dict must not have a key 'loss' (it is the loss).")
        return loss, aux, g

    if shard_map:

        def local(params, batch, step):
            loss, aux, g = grads(params, batch, step, axis_name=DATA_AXIS)
            if DATA_AXIS in _varying_axes(loss):
                raise ValueError(
                    "with shard_map=True, loss_fn must return the loss of the GLOBAL batch, the "
                    "same on every device (e.g. alignment.sharded_clip_loss(..., axis_name="
                    "axis_name), or jax.lax.pmean(local_mean, axis_name) for a mean over "
                    "examples); it returned a value that differs between devices."
                )
            # Aux values computed from the local shard are averaged over the devices.
            aux = {
                k: jax.lax.pmean(v, DATA_AXIS) if DATA_AXIS in _varying_axes(v) else v
                for k, v in aux.items()
            }
            # The parameters enter replicated (invariant over DATA_AXIS): JAX's transpose of
            # their implicit broadcast to the devices sums the per-device cotangents, so `g` is
            # already the gradient of the global loss (psum-ing it again would scale it).
            return loss, aux, g

        compute = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(DATA_AXIS), P()), out_specs=P())
    else:
        compute = grads

    def step_fn(params, opt_state, batch, step):
        loss, aux, g = compute(params, batch, step)
        updates, opt_state = optimizer.update(g, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, {"loss": loss, **aux}

    out_shardings = None if mesh is None else replicated
    return jax.jit(
        step_fn,
        donate_argnums=(0, 1),
        out_shardings=out_shardings,
        compiler_options=compiler_options,
    )


def train(
    *,
    params,
    optimizer: optax.GradientTransformation,
    loss_fn: Callable,
    batch_fn: Callable[[int], Any],
    num_steps: int,
    seed: int,
    run_dir: str | os.PathLike,
    mesh: Mesh | None = None,
    shard_map: bool = False,
    log_every: int = 50,
    checkpoint_every: int | None = None,
    eval_fn: Callable[[Any, int], dict] | None = None,
    eval_every: int | None = None,
    desc: str = "train",
    progress: bool = True,
    keep_checkpoints: int | None = 2,
    writers: Sequence[MetricWriter] = (),
    compiler_options: dict | None = None,
) -> TrainResult:
    """Trains ``params`` for ``num_steps`` steps of ``optimizer`` on ``loss_fn``, or resumes.

    Step ``s`` (``0 <= s < num_steps``) computes ``loss_fn(params, batch_fn(s), rng)`` with
    ``rng = jax.random.fold_in(jax.random.key(seed), s)``, its gradient, and one optimiser
    update, in one jitted function that donates ``params`` and ``opt_state`` (the arrays given
    here are copied first, so they stay valid). As the batch and the key depend on ``s`` alone,
    a run resumed from a checkpoint ends with the same parameters, bit for bit, as one that
    never stopped.

    Devices:

    * ``mesh=None``: everything on one device (``jax.local_devices()[0]``).
    * ``mesh`` (from :func:`make_mesh`), ``shard_map=False``: the batch is split along its
      leading axis over the mesh (``NamedSharding(mesh, P(DATA_AXIS))``), ``params`` and
      ``opt_state`` are replicated (``NamedSharding(mesh, P())``), and ``jax.jit`` partitions the
      step (GSPMD). ``loss_fn`` is written as for one device and sees the global batch.
    * ``mesh``, ``shard_map=True``: the gradient is taken inside ``jax.shard_map``; each device
      calls ``loss_fn(params, local_batch, rng, axis_name=DATA_AXIS)`` on its
      ``[B / n, ...]`` shard and must return the loss of the GLOBAL batch, the same on every
      device (``alignment.sharded_clip_loss(za, zb, axis_name=axis_name)``, or
      ``jax.lax.pmean(local_mean, axis_name)``); a loss that differs between devices is an
      error. The gradient in the replicated parameters is then that of the global loss (JAX
      sums the devices' parts), so the update equals the one-device update on the global
      batch. Aux values that differ between devices are averaged (``pmean``). ``rng`` is the
      same on every device (fold in ``jax.lax.axis_index(axis_name)`` for per-device noise).

    Outputs in ``run_dir``:

    * ``metrics.jsonl``: a record every ``log_every`` steps, at every checkpoint and
      evaluation, and at the end: ``{"step": completed steps, "loss": mean over the steps since
      the previous record, <aux means>, "steps_per_second", "seconds" (since this call
      began)}``, with ``"eval/<name>"`` at evaluations. (A record at each checkpoint keeps the
      means of a resumed run equal to those of an uninterrupted one.) ``tensorboard/``: the
      same scalars, by ``tensorboardX``, at the same steps.
    * ``checkpoints/``: orbax checkpoints of ``{"step", "params", "opt_state"}`` every
      ``checkpoint_every`` steps and at the end (the last ``keep_checkpoints`` kept). When one
      exists, training resumes from the latest and ``metrics.jsonl`` is cut back to its step.

    The host reads the metrics only when it writes a record (no sync per step); every step's
    loss is checked then, and before any checkpoint, so a non-finite loss raises
    :class:`NonFiniteLossError` before its state can be saved.

    Several processes (``jax.distributed.initialize()``): every process calls ``train`` with
    the same arguments and ``batch_fn`` returns the same global batch in each (each process
    places only its devices' rows); process 0 alone writes the metrics and the progress bar.

    Args:
      params: Pytree of arrays, the initial parameters (used only without a checkpoint).
      optimizer: An ``optax.GradientTransformation``; ``opt_state = optimizer.init(params)``.
      loss_fn: ``loss_fn(params, batch, rng) -> (loss, aux)``: a scalar loss and a dict of
        scalar metrics (``{}`` for none; no key ``"loss"``). With ``shard_map=True`` it gets
        the keyword argument ``axis_name=DATA_AXIS`` as well.
      batch_fn: ``batch_fn(step) -> pytree of NumPy arrays``, the global batch of step
        ``step``; deterministic in ``step``. With a mesh the leading axis of every leaf is
        split over the devices and must be a multiple of their number.
      num_steps: Total steps of the run (a resumed run trains from its checkpoint up to here).
      seed: The seed of ``rng``.
      run_dir: Directory of the run (created).
      mesh: ``None`` (one device) or a 1-D mesh with the axis :data:`DATA_AXIS`.
      shard_map: Run the step inside ``jax.shard_map`` (needs ``mesh``).
      log_every: Steps between metric records.
      checkpoint_every: Steps between checkpoints (``None``: only at the end).
      eval_fn: ``eval_fn(params, step) -> dict of scalars``, logged as ``"eval/<key>"``. It must
        not keep ``params``: the next step donates (deletes) them.
      eval_every: Steps between evaluations (``None``: only at the end); needs ``eval_fn``.
      desc: The progress bar's label.
      progress: Show a ``tqdm`` progress bar (loss, steps/s, ETA) on stderr.
      keep_checkpoints: How many checkpoints to keep (``None``: all).
      writers: More :class:`~experiments.framework.writers.MetricWriter` s fed every record.
      compiler_options: XLA options for ``jax.jit`` of the step (e.g.
        ``{"xla_backend_optimization_level": 0}`` to compile faster).

    Returns:
      :class:`TrainResult` ``(params, opt_state, history, steps_per_second)``.

    Raises:
      NonFiniteLossError: a step's loss was NaN or infinite (``err.step`` names it).
      ValueError: bad settings, a batch that does not split over the mesh, a checkpoint past
        ``num_steps``, or (``shard_map=True``) a loss that differs between devices.

    Example:
      >>> import tempfile
      >>> import jax.numpy as jnp, numpy as np, optax
      >>> x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
      >>> y = x @ np.array([1.0, -2.0, 0.5], np.float32)
      >>> def loss_fn(params, batch, rng):
      ...     xb, yb = batch
      ...     return jnp.mean((xb @ params["w"] - yb) ** 2), {}
      >>> result = train(params={"w": jnp.zeros(3)}, optimizer=optax.sgd(0.1),
      ...                loss_fn=loss_fn, batch_fn=lambda step: (x, y), num_steps=100, seed=0,
      ...                run_dir=tempfile.mkdtemp(), progress=False)
      >>> np.round(np.asarray(result.params["w"]), 3).tolist()
      [1.0, -2.0, 0.5]
    """
    _check_positive("num_steps", num_steps, allow_zero=True)
    _check_positive("log_every", log_every)
    _check_positive("checkpoint_every", checkpoint_every, allow_none=True)
    _check_positive("eval_every", eval_every, allow_none=True)
    _check_positive("keep_checkpoints", keep_checkpoints, allow_none=True)
    if eval_every is not None and eval_fn is None:
        raise ValueError("`eval_every` needs an `eval_fn`.")
    if shard_map and mesh is None:
        raise ValueError("shard_map=True needs a `mesh` (make_mesh()).")
    if mesh is not None and tuple(mesh.axis_names) != (DATA_AXIS,):
        raise ValueError(
            f"the mesh must be 1-D with the axis {DATA_AXIS!r} (make_mesh()), got axes "
            f"{tuple(mesh.axis_names)}."
        )
    num_steps = int(num_steps)
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    lead = jax.process_index() == 0

    if mesh is None:
        replicated = batch_sharding = SingleDeviceSharding(jax.local_devices()[0])
        n_shards = 1
    else:
        replicated = NamedSharding(mesh, P())
        batch_sharding = NamedSharding(mesh, P(DATA_AXIS))
        n_shards = mesh.devices.size

    def place_batch(step: int):
        batch = batch_fn(step)
        for path, leaf in jax.tree_util.tree_leaves_with_path(batch):
            shape = np.shape(leaf)
            if mesh is not None and (len(shape) == 0 or shape[0] % n_shards):
                raise ValueError(
                    f"batch_fn({step}) leaf {jax.tree_util.keystr(path) or '(root)'} has shape "
                    f"{shape}: its leading axis must be a multiple of the {n_shards} devices."
                )
        return jax.tree.map(lambda leaf: _place(leaf, batch_sharding), batch)

    def place_step(step: int):
        return _place(np.int32(step), replicated)

    params = jax.tree.map(lambda leaf: _place(leaf, replicated), params)
    opt_state = jax.jit(optimizer.init, out_shardings=replicated)(params)
    state = {"step": place_step(0), "params": params, "opt_state": opt_state}
    step_fn = _make_step(loss_fn, optimizer, seed, mesh, shard_map, replicated, compiler_options)

    metrics_path = run_dir / "metrics.jsonl"
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep_checkpoints, enable_async_checkpointing=False, create=True
    )
    session_records: list[dict] = []
    with ocp.CheckpointManager(run_dir / "checkpoints", options=options) as mngr:
        latest = mngr.latest_step()
        if latest is not None:
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
            state = mngr.restore(latest, args=ocp.args.StandardRestore(abstract))
        start = int(_fetch(state["step"]))
        if start > num_steps:
            raise ValueError(
                f"{run_dir} holds a checkpoint at step {start}, past num_steps={num_steps}; "
                "raise num_steps or use another run_dir."
            )
        params, opt_state = state["params"], state["opt_state"]
        del state
        if lead:
            truncate_metrics(metrics_path, start)
        if start == num_steps:
            history = read_metrics(metrics_path) if lead else []
            return TrainResult(params, opt_state, history, 0.0)

        all_writers: list[MetricWriter] = list(writers)
        if lead:
            all_writers += [
                JsonlWriter(metrics_path),
                TensorBoardWriter(
                    run_dir / "tensorboard", purge_step=start + 1 if start > 0 else None
                ),
            ]
        bar = tqdm(
            total=num_steps,
            initial=start,
            desc=desc,
            unit="step",
            file=sys.stderr,
            disable=not (progress and lead),
            dynamic_ncols=True,
        )
        pending_device: list[tuple[int, dict]] = []
        pending_host: list[dict] = []
        t_call = t_interval = time.perf_counter()
        t_first = None

        def check() -> None:
            """Moves the pending metrics to the host, raising on a non-finite loss."""
            if not pending_device:
                return
            values = _fetch([m for _, m in pending_device])
            for (s, _), m in zip(pending_device, values, strict=True):
                loss = float(m["loss"])
                if not math.isfinite(loss):
                    record = {k: to_python(v) for k, v in m.items()}
                    saved = mngr.latest_step()
                    where = "no checkpoint" if saved is None else f"the checkpoint at step {saved}"
                    pending_device.clear()
                    raise NonFiniteLossError(
                        f"{desc}: the loss is {loss} at step {s} (the {s + 1}-th update; "
                        f"metrics {record}); stopped, nothing after it saved ({where} in "
                        f"{run_dir / 'checkpoints'}). Lower the learning rate or check the data.",
                        step=s,
                        metrics=record,
                    )
            pending_host.extend(values)
            pending_device.clear()

        def write(step: int, evaluate: bool) -> None:
            nonlocal t_interval
            check()
            record: dict = {"step": step}
            if pending_host:
                now = time.perf_counter()
                for key in pending_host[0]:
                    record[key] = to_python(np.mean([r[key] for r in pending_host], axis=0))
                record["steps_per_second"] = len(pending_host) / max(now - t_interval, 1e-9)
                record["seconds"] = now - t_call
                t_interval = now
                bar.set_postfix(loss=f"{record['loss']:.4g}", refresh=False)
                pending_host.clear()
            if evaluate:
                out = eval_fn(params, step)
                record.update({f"eval/{k}": to_python(v) for k, v in dict(out).items()})
            for w in all_writers:
                w.write(record)
            session_records.append(record)

        try:
            for s in range(start, num_steps):
                batch = place_batch(s)
                params, opt_state, metrics = step_fn(params, opt_state, batch, place_step(s))
                pending_device.append((s, metrics))
                if t_first is None:
                    jax.block_until_ready(metrics)
                    t_first = time.perf_counter()
                bar.update(1)
                done = s + 1
                last = done == num_steps
                ckpt = last or (checkpoint_every is not None and done % checkpoint_every == 0)
                evaluate = eval_fn is not None and (
                    last or (eval_every is not None and done % eval_every == 0)
                )
                if ckpt or evaluate or last or done % log_every == 0:
                    write(done, evaluate)
                if ckpt:
                    saved = {"step": place_step(done), "params": params, "opt_state": opt_state}
                    mngr.save(done, args=ocp.args.StandardSave(saved))
            jax.block_until_ready(params)
            t_end = time.perf_counter()
        finally:
            bar.close()
            for w in all_writers:
                w.close()
        mngr.wait_until_finished()

    run = num_steps - start
    if run > 1:
        steps_per_second = (run - 1) / max(t_end - t_first, 1e-9)
    else:
        steps_per_second = run / max(t_end - t_call, 1e-9)
    history = read_metrics(metrics_path) if lead else session_records
    return TrainResult(params, opt_state, history, steps_per_second)
