"""Evaluation spread over devices: a per-item map and the pairwise matrix, sharded on a mesh.

:func:`sharded_map` applies a function of one item to every item of a large batch, the batch
split evenly over the devices of a :class:`jax.sharding.Mesh` (padded to a multiple of the
device count with copies of its last item, the padding dropped afterwards).
:func:`sharded_pairwise` is :func:`alignment.pairwise` with its blocks dealt out over the
devices: every device holds both sets and evaluates an equal share of the block pairs.

Both use ``jax.shard_map``: each device runs the same program on its own share with no
communication until the results are gathered, so the values equal the single-device values
(the same computation per item or per block). Several hosts: start one process per host, call
``jax.distributed.initialize()`` in each before any other JAX call, and pass (or default to) a
mesh over ``jax.devices()``, which then spans the devices of every process; every process calls
the function with the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from alignment._src.checks import static_int
from alignment._src.pairwise import _assemble, _block_fn, _leading, _pad, _padded_grid, _parse

__all__ = ["sharded_map", "sharded_pairwise"]


def _shard_map(f, mesh: Mesh, in_specs, out_specs):
    """``jax.shard_map`` (JAX >= 0.6) or its experimental predecessor, without replication checks.

    The checks are off because the mapped function is arbitrary (it may hold ``custom_vjp``
    rules and loops the checker cannot type); every output is declared sharded along the mesh,
    so nothing relies on them.
    """
    if hasattr(jax, "shard_map"):
        return jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    from jax.experimental.shard_map import shard_map  # pragma: no cover - JAX < 0.6

    return shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)


def _mesh(mesh) -> tuple[Mesh, tuple[str, ...]]:
    """The mesh (default: one axis over ``jax.devices()``) and the axes the batch is split on."""
    if mesh is None:
        mesh = Mesh(np.asarray(jax.devices()), ("devices",))
    if not isinstance(mesh, Mesh):
        raise ValueError(
            f"`mesh` must be a jax.sharding.Mesh or None (all devices), got {type(mesh).__name__}."
        )
    return mesh, tuple(mesh.axis_names)


def sharded_map(fn: Callable, xs, *, mesh: Mesh | None = None, batch_size: int | None = None):
    """``fn`` applied to every item of ``xs``, the items split evenly over the devices of a mesh.

    ``xs`` is a pytree whose leaves share a leading batch axis of size ``n`` (the convention of
    :func:`alignment.pairwise`): item ``i`` is the pytree of the ``i``-th slices, so ``(X,
    lengths)`` with ``X: [n, t, d]`` and ``lengths: [n]`` is a batch of padded sequences. The
    batch is padded to a multiple of the number of devices ``D`` with copies of its last item
    (a valid item, so padding adds no new failure point), each device maps ``fn`` over its
    ``ceil(n / D)`` items (``vmap``, or ``lax.map`` in chunks of ``batch_size`` to bound the
    memory), and the padded rows are dropped. The values equal ``jax.vmap(fn)(xs)`` on one
    device. Under ``jit`` and ``grad`` (gradients flow to ``xs``); call it outside ``vmap``.

    Args:
      fn: ``fn(item) -> array or pytree of arrays``, traceable (it is vmapped).
      xs: Pytree of arrays with leading axis ``n``.
      mesh: The devices, as a :class:`jax.sharding.Mesh`; the batch is split over all of its
        axes. ``None``: a 1-D mesh over ``jax.devices()``.
      batch_size: ``None`` (each device vmaps over all of its items at once) or a static
        ``int >= 1``: items evaluated together per step on each device (``lax.map``).

    Returns:
      ``fn``'s outputs stacked along a leading axis ``n``: each output leaf of shape ``s``
      becomes ``[n, *s]`` (one global array; JAX places it).

    Bad input: checked at trace time (ValueError): a non-callable ``fn``, ``None`` or empty
    ``xs``, leaves without or disagreeing on the leading axis (the message names the leaf
    shapes), a ``mesh`` that is not a Mesh, a ``batch_size`` that is not an int ``>= 1``.
    Values are ``fn``'s business: each item follows ``fn``'s own policy.

    Example:
      >>> import jax.numpy as jnp, numpy as np
      >>> import alignment as al
      >>> X = jnp.asarray(np.random.default_rng(0).normal(size=(10, 16, 2)), jnp.float32)
      >>> Y = X[::-1]
      >>> values = al.sharded_map(lambda xy: al.soft_dtw_points(*xy, gamma=0.1), (X, Y))
      >>> values.shape
      (10,)
    """
    if not callable(fn):
        raise ValueError(f"`fn` must be a callable fn(item) -> array, got {fn!r}.")
    batch_size = static_int(batch_size, "batch_size", minimum=1, allow_none=True)
    mesh, axes = _mesh(mesh)
    leaves, treedef, n = _leading(xs, "xs")
    devices = mesh.size
    padded = -(-n // devices) * devices
    leaves = _pad(leaves, n, padded)

    def local(*local_leaves):
        items = jax.tree.unflatten(treedef, list(local_leaves))
        if batch_size is None:
            return jax.vmap(fn)(items)
        return jax.lax.map(fn, items, batch_size=min(batch_size, padded // devices))

    spec = PartitionSpec(axes)
    out = _shard_map(local, mesh, in_specs=(spec,) * len(leaves), out_specs=spec)(*leaves)
    return jax.tree.map(lambda leaf: leaf[:n], out)


def sharded_pairwise(
    fn: Callable,
    xs,
    ys=None,
    *,
    mesh: Mesh | None = None,
    block_size: int = 64,
    symmetric: bool | None = None,
    checkpoint: bool = True,
):
    """:func:`alignment.pairwise` with the block pairs dealt out over the devices of a mesh.

    The arguments and the result are those of :func:`alignment.pairwise` (``D[i, j] =
    fn(xs[i], ys[j])``, ``[n, m]``, exactly symmetric with ``ys`` omitted), plus ``mesh``. Both
    sets are copied to every device; the list of block pairs (the upper triangle with ``ys``
    omitted, every pair otherwise) is padded to a multiple of the device count with copies of
    its last pair and split evenly, so every device evaluates the same number of blocks of
    ``block_size ** 2`` calls, one block at a time. The values equal :func:`alignment.pairwise`
    on one device; gradients flow to ``xs``, ``ys`` and anything ``fn`` closes over. Call it
    outside ``vmap``.

    Args:
      fn: ``fn(x_item, y_item) -> scalar`` (or a pytree of arrays), on one item of each set.
      xs: Pytree of arrays with leading axis ``n`` (the rows).
      ys: Pytree of arrays with leading axis ``m`` (the columns), or ``None`` for ``xs``
        against itself.
      mesh: A :class:`jax.sharding.Mesh` (the block pairs are split over all of its axes);
        ``None``: a 1-D mesh over ``jax.devices()``.
      block_size: Static int ``>= 1``: items per block (clipped to ``n`` and ``m``). With
        ``D`` devices, choose it so that there are at least ``D`` block pairs.
      symmetric: As in :func:`alignment.pairwise`.
      checkpoint: Recompute each block in the backward pass (bounded gradient memory).

    Returns:
      Array ``[n, m]`` (``[n, n]`` with ``ys`` omitted), or a pytree of ``[n, m, ...]`` arrays.

    Bad input: the checks of :func:`alignment.pairwise` (ValueError naming ``xs``/``ys`` and the
    leaf shapes), plus a ``mesh`` that is not a Mesh.

    Example:
      >>> import jax.numpy as jnp, numpy as np
      >>> import alignment as al
      >>> X = jnp.asarray(np.random.default_rng(0).normal(size=(12, 16, 2)), jnp.float32)
      >>> fn = lambda x, y: al.soft_dtw_divergence(x, y, gamma=0.1)
      >>> D = al.sharded_pairwise(fn, X, block_size=4)
      >>> D.shape, bool(jnp.allclose(D, al.pairwise(fn, X, block_size=4)))
      ((12, 12), True)
    """
    symmetric, xl, xdef, n, yl, ydef, m, bx, by = _parse(
        fn, xs, ys, block_size, symmetric, checkpoint
    )
    mesh, axes = _mesh(mesh)
    xl, yl, rows, cols = _padded_grid(n, m, bx, by, symmetric, xl, yl)
    count = len(rows)
    padded = -(-count // mesh.size) * mesh.size
    pairs = np.stack([rows, cols], axis=1).astype(np.int32)
    pairs = np.concatenate([pairs, np.repeat(pairs[-1:], padded - count, axis=0)])
    block = _block_fn(fn, xdef, ydef, bx, by, checkpoint)

    def local(xl, yl, local_pairs):
        return jax.lax.map(lambda ij: block(xl, yl, ij[0], ij[1]), local_pairs)

    replicated, split = PartitionSpec(), PartitionSpec(axes)
    out = _shard_map(
        local,
        mesh,
        in_specs=(replicated, replicated, split),
        out_specs=split,
    )(xl, yl, jnp.asarray(pairs))
    out = jax.tree.map(lambda leaf: leaf[:count], out)
    return _assemble(out, n, m, bx, by, symmetric, rows, cols)
