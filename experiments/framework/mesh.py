"""The device mesh of data-parallel training: one axis, :data:`DATA_AXIS`, over the devices."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh

DATA_AXIS = "data"
"""The name of the mesh axis the batch is split over (pass it as ``axis_name`` to collectives)."""


def make_mesh(devices: int | None = None) -> Mesh:
    """A 1-D :class:`jax.sharding.Mesh` of shape ``[n]`` with the axis name :data:`DATA_AXIS`.

    In one process (the usual case) the mesh holds the first ``devices`` of this process's
    devices, ``jax.local_devices()`` (the same list as ``jax.devices()`` there), in that order;
    ``devices=None`` takes them all.

    After ``jax.distributed.initialize()`` in several processes, ``jax.devices()`` lists the
    devices of every process and the mesh is global: ``devices=None`` takes all of
    ``jax.devices()`` (``jax.device_count()`` of them, process by process), and ``devices=n``
    takes the first ``n / jax.process_count()`` local devices of every process (``n`` must be a
    multiple of the number of processes, so that each process keeps a share of the batch).

    Args:
      devices: How many devices; ``None`` for all of them.

    Returns:
      ``Mesh`` with ``mesh.axis_names == (DATA_AXIS,)`` and ``mesh.devices.shape == (n,)``.

    Raises:
      ValueError: ``devices`` is below 1, above the number available, or (several processes)
        not a multiple of ``jax.process_count()``.

    Example:
      >>> mesh = make_mesh(1)
      >>> mesh.axis_names, mesh.devices.shape
      (('data',), (1,))
    """
    processes = jax.process_count()
    available = jax.device_count()
    if devices is None:
        chosen = list(jax.devices())
    else:
        if isinstance(devices, bool) or not isinstance(devices, int | np.integer):
            raise ValueError(f"`devices` must be an integer or None, got {devices!r}.")
        devices = int(devices)
        if not 1 <= devices <= available:
            raise ValueError(
                f"`devices` must be in [1, {available}] (the devices JAX sees: "
                f"{jax.default_backend()}), got {devices}."
            )
        if processes == 1:
            chosen = list(jax.local_devices())[:devices]
        else:
            if devices % processes:
                raise ValueError(
                    f"`devices` must be a multiple of the {processes} processes (each process "
                    f"keeps the same number of its devices), got {devices}."
                )
            per_process = devices // processes
            chosen = []
            for p in range(processes):
                local = [d for d in jax.devices() if d.process_index == p]
                chosen.extend(local[:per_process])
    return Mesh(np.array(chosen), (DATA_AXIS,))
