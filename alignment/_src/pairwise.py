"""Pairwise matrices over two sets of items (sequences, point clouds, Gaussians), in blocks.

:func:`pairwise` turns any function of one pair, ``fn(x_item, y_item) -> scalar``, into the
``[n, m]`` matrix ``D[i, j] = fn(xs[i], ys[j])`` over two sets, as tslearn's ``cdist_dtw`` and
``cdist_soft_dtw`` do for DTW: one helper for DTW, soft-DTW, the divergences, Sinkhorn and the
Gaussian W2 distance. An item is a pytree (a padded sequence with its length, a point cloud
with its weights, a mean with its covariance): the sets are pytrees whose leaves carry a leading
batch axis, and ``fn`` receives the ``i``-th slice of every leaf.

The matrix is computed block by block (``lax.map`` over pairs of blocks, ``vmap`` inside a
block), so the memory in flight is that of ``block_size ** 2`` pairs whatever ``n`` and ``m``;
with ``ys`` omitted the matrix is taken as symmetric and only the blocks on and above the
diagonal are computed (about half the work), then mirrored.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from alignment._src.checks import static_choice, static_int

__all__ = ["pairwise"]


def _leading(tree, name: str) -> tuple[list, object, int]:
    """The leaves of ``tree`` as arrays, its structure and their common leading size."""
    if tree is None:
        raise ValueError(
            f"`{name}` must be an array or a pytree of arrays with a leading batch axis, got None."
        )
    leaves, treedef = jax.tree.flatten(tree)
    if not leaves:
        raise ValueError(
            f"`{name}` must hold at least one array with a leading batch axis, got an empty "
            f"pytree {tree!r}."
        )
    arrays = []
    for leaf in leaves:
        if not isinstance(leaf, jax.Array | np.ndarray | jax.core.Tracer):
            try:
                leaf = np.asarray(leaf)
            except (ValueError, TypeError) as err:
                raise ValueError(
                    f"`{name}` leaves must be arrays with a leading batch axis, got {leaf!r}."
                ) from err
        if np.dtype(leaf.dtype).kind in "OSUMm":  # object, strings, dates: not numeric
            raise ValueError(
                f"`{name}` leaves must be numeric arrays with a leading batch axis, got an "
                f"array of dtype {leaf.dtype} and shape {leaf.shape}."
            )
        arrays.append(leaf)
    shapes = [tuple(leaf.shape) for leaf in arrays]
    if any(len(shape) == 0 for shape in shapes):
        raise ValueError(
            f"every leaf of `{name}` must have a leading batch axis (one item per row), got leaf "
            f"shapes {shapes}."
        )
    sizes = {shape[0] for shape in shapes}
    if len(sizes) != 1:
        raise ValueError(
            f"the leaves of `{name}` must agree on the leading (batch) axis, got leaf shapes "
            f"{shapes}."
        )
    size = sizes.pop()
    if size == 0:
        raise ValueError(f"`{name}` must hold at least one item, got leaf shapes {shapes}.")
    return arrays, treedef, size


def _pad(leaves: list, size: int, padded: int) -> list:
    """Pads the leading axis to ``padded`` with copies of the last item (a valid one)."""
    if padded == size:
        return list(leaves)
    out = []
    for leaf in leaves:
        leaf = jnp.asarray(leaf)
        fill = jnp.broadcast_to(leaf[-1:], (padded - size, *leaf.shape[1:]))
        out.append(jnp.concatenate([leaf, fill], axis=0))
    return out


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5, 6, 7, 8))
def _core(fn, xdef, ydef, n, m, bx, by, symmetric, checkpoint, xl, yl):
    return _blocks(fn, xdef, ydef, n, m, bx, by, symmetric, checkpoint, xl, yl)


def _blocks(fn, xdef, ydef, n, m, bx, by, symmetric, checkpoint, xl, yl):
    xl, yl, rows, cols = _padded_grid(n, m, bx, by, symmetric, xl, yl)
    pairs = (jnp.asarray(rows, jnp.int32), jnp.asarray(cols, jnp.int32))
    block = _block_fn(fn, xdef, ydef, bx, by, checkpoint)
    out = jax.lax.map(lambda ij: block(xl, yl, ij[0], ij[1]), pairs)
    return _assemble(out, n, m, bx, by, symmetric, rows, cols)


def _padded_grid(n, m, bx, by, symmetric, xl, yl):
    """The leaves padded to whole blocks and the (static) block pairs to evaluate."""
    nbx, nby = -(-n // bx), -(-m // by)
    xl = _pad(xl, n, nbx * bx)
    yl = xl if symmetric else _pad(yl, m, nby * by)
    if symmetric:
        rows, cols = np.triu_indices(nbx)
    else:
        rows, cols = np.divmod(np.arange(nbx * nby), nby)
    return xl, yl, rows, cols


def _block_fn(fn, xdef, ydef, bx, by, checkpoint):
    """``block(xl, yl, i, j)``: the ``[bx, by]`` values of block pair ``(i, j)``."""

    def one(x_item, y_item):
        return fn(jax.tree.unflatten(xdef, x_item), jax.tree.unflatten(ydef, y_item))

    def block(xl, yl, i, j):
        xb = [jax.lax.dynamic_slice_in_dim(leaf, i * bx, bx) for leaf in xl]
        yb = [jax.lax.dynamic_slice_in_dim(leaf, j * by, by) for leaf in yl]
        return jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None))(xb, yb)

    return jax.checkpoint(block) if checkpoint else block


def _assemble(out, n, m, bx, by, symmetric, rows, cols):
    """The ``[n, m, ...]`` matrices from the stacked block values ``[pairs, bx, by, ...]``."""
    nbx, nby = -(-n // bx), -(-m // by)
    pairs = (jnp.asarray(rows, jnp.int32), jnp.asarray(cols, jnp.int32))

    def assemble(leaf):
        tail = leaf.shape[3:]
        if symmetric:
            grid = jnp.zeros((nbx, nbx, bx, bx, *tail), leaf.dtype).at[pairs].set(leaf)
        else:
            grid = leaf.reshape((nbx, nby, bx, by, *tail))
        full = jnp.swapaxes(grid, 1, 2).reshape((nbx * bx, nby * by, *tail))[:n, :m]
        if symmetric:
            r = jnp.arange(n)
            upper = (r[:, None] <= r[None, :]).reshape((n, n) + (1,) * len(tail))
            full = jnp.where(upper, full, jnp.swapaxes(full, 0, 1))
        return full

    return jax.tree.map(assemble, out)


def _parse(fn, xs, ys, block_size, symmetric, checkpoint):
    """Validates the arguments of :func:`pairwise` (and its sharded form).

    Returns ``(symmetric, xl, xdef, n, yl, ydef, m, bx, by)``: the resolved ``symmetric``, the
    leaves, structure and size of each set, and the block sizes clipped to ``n`` and ``m``.
    """
    if not callable(fn):
        raise ValueError(f"`fn` must be a callable fn(x_item, y_item) -> scalar, got {fn!r}.")
    block_size = static_int(block_size, "block_size", minimum=1)
    static_choice(symmetric, "symmetric", (None, True, False))
    static_choice(checkpoint, "checkpoint", (True, False))
    xl, xdef, n = _leading(xs, "xs")
    if ys is None:
        symmetric = True if symmetric is None else symmetric
        yl, ydef, m = xl, xdef, n
    else:
        if symmetric:
            raise ValueError(
                "`symmetric=True` is for one set against itself: omit `ys` (got `ys` as well)."
            )
        symmetric = False
        yl, ydef, m = _leading(ys, "ys")
    return symmetric, xl, xdef, n, yl, ydef, m, min(block_size, n), min(block_size, m)


def pairwise(
    fn: Callable,
    xs,
    ys=None,
    *,
    block_size: int = 64,
    symmetric: bool | None = None,
    checkpoint: bool = True,
):
    """All pairs ``D[i, j] = fn(xs[i], ys[j])`` of two sets, computed in blocks (``cdist``).

    ``xs`` and ``ys`` are pytrees (an array, a tuple, a dict, ...) whose leaves all have a
    leading batch axis, of size ``n`` for ``xs`` and ``m`` for ``ys``; item ``i`` is the pytree
    of the ``i``-th slices, so ``(X, lengths)`` with ``X: [n, t, d]`` and ``lengths: [n]`` is a
    set of padded sequences and ``fn`` receives ``(x, t_valid)``. ``fn`` maps one pair of items
    to a scalar (or to a pytree of arrays: each output leaf of shape ``s`` becomes
    ``[n, m, *s]``) and must be traceable (``vmap`` is applied to it).

    Blocks: the rows and columns are split into blocks of ``block_size`` items; one block pair
    at a time (``lax.map``) evaluates its ``block_size ** 2`` pairs together (``vmap``), so the
    memory in flight is that of ``block_size ** 2`` calls of ``fn`` (with ``checkpoint=True``
    also in reverse-mode autodiff, which recomputes each block in the backward pass instead of
    storing its intermediates). When ``n`` or ``m`` is not a multiple of ``block_size`` the
    last block is filled with copies of the last item and those entries are dropped: every
    padded pair repeats a real pair, so padding adds no new failure point (NaN, degenerate
    gradient) and changes neither values nor gradients.

    Symmetric: with ``ys`` omitted (``symmetric=None`` then means ``True``) ``fn`` is assumed
    symmetric, ``fn(a, b) == fn(b, a)``; only the blocks on and above the diagonal are computed
    and the upper triangle is mirrored, so the result is exactly symmetric and the diagonal is
    ``fn(xs[i], xs[i])``. Pass ``symmetric=False`` for a non-symmetric ``fn`` on one set (every
    block is computed).

    Works under ``jit``, ``vmap`` and ``grad`` (gradients flow to ``xs``, ``ys`` and anything
    ``fn`` closes over). ``fn`` is a static argument of a jitted core: eager calls with the same
    ``fn`` object reuse the compiled computation (a new ``lambda`` per call recompiles).

    Args:
      fn: ``fn(x_item, y_item) -> scalar`` (or a pytree of arrays), on one item of each set.
      xs: Pytree of arrays with leading axis ``n`` (the rows).
      ys: Pytree of arrays with leading axis ``m`` (the columns), or ``None`` for ``xs``
        against itself.
      block_size: Static int ``>= 1``: items per block (clipped to ``n`` and ``m``).
      symmetric: ``None`` (default: ``True`` iff ``ys`` is omitted), ``True`` (only with ``ys``
        omitted) or ``False``.
      checkpoint: Recompute each block in the backward pass (bounded gradient memory).

    Returns:
      Array ``[n, m]`` (``[n, n]`` with ``ys`` omitted) in ``fn``'s output dtype, or a pytree
      of ``[n, m, ...]`` arrays if ``fn`` returns one.

    Bad input: checked at trace time (ValueError), eagerly and under ``jit``/``vmap``: a
    non-callable ``fn``, ``None`` or empty sets, leaves without a leading axis or disagreeing on
    it (the message names ``xs``/``ys`` and the leaf shapes), a non-int or ``< 1``
    ``block_size``, a non-bool ``symmetric`` or ``symmetric=True`` with ``ys``. Values are
    ``fn``'s business: each entry follows ``fn``'s own bad-input policy (NaN where ``fn`` gives
    NaN). See docs/conventions.md.

    Examples:
      >>> import jax.numpy as jnp, numpy as np
      >>> import alignment as al
      >>> rng = np.random.default_rng(0)

      Soft-DTW divergences between padded sequences ``X: [n, t, d]`` of lengths ``[n]``:

      >>> X = jnp.asarray(rng.normal(size=(5, 8, 2)), jnp.float32)
      >>> lengths = jnp.array([8, 6, 7, 5, 8])
      >>> def sdtw_div(a, b):
      ...     (x, tx), (y, ty) = a, b
      ...     return al.soft_dtw_divergence(x, y, gamma=0.1, lengths=(tx, ty))
      >>> D = al.pairwise(sdtw_div, (X, lengths), block_size=2)  # symmetric: ys omitted
      >>> D.shape, bool(jnp.all(D == D.T)), float(jnp.abs(jnp.diag(D)).max())
      ((5, 5), True, 0.0)

      Sinkhorn divergences between weighted point clouds ``P: [n, k, d]``, ``W: [n, k]``:

      >>> P = jnp.asarray(rng.normal(size=(3, 6, 2)), jnp.float32)
      >>> W = jnp.full((3, 6), 1.0 / 6)
      >>> def sinkhorn_div(a, b):
      ...     (x, wx), (y, wy) = a, b
      ...     return al.sinkhorn_divergence(x, y, wx, wy, epsilon=0.5)
      >>> S = al.pairwise(sinkhorn_div, (P, W))
      >>> S.shape
      (3, 3)

      Gaussian W2 between two sets of Gaussians (means ``[n, d]``, covariances ``[n, d, d]``):

      >>> means, covs = jnp.zeros((4, 2)), jnp.stack([jnp.eye(2) * s for s in (1.0, 2.0, 3.0, 4.0)])
      >>> G = al.pairwise(lambda a, b: al.gaussian_w2(*a, *b), (means, covs), (means[:2], covs[:2]))
      >>> G.shape
      (4, 2)
    """
    symmetric, xl, xdef, n, yl, ydef, m, bx, by = _parse(
        fn, xs, ys, block_size, symmetric, checkpoint
    )
    args = (fn, xdef, ydef, n, m, bx, by, symmetric, checkpoint, xl, None if symmetric else yl)
    try:
        hash(fn)
    except TypeError:
        return _blocks(*args)
    return _core(*args)
