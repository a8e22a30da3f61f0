"""Lower bounds of DTW (LB_Keogh) and the 1-nearest-neighbour search they prune.

LB_Keogh (Keogh & Ratanamahatana, 2005) bounds the exact DTW of :func:`alignment.dtw_points`
(squared Euclidean cost, not halved; Sakoe-Chiba band ``|i - j| <= window``) from below with
``O(t * window)`` independent operations (no sequential dynamic programme). The *envelope*
of ``candidate`` is its running maximum and minimum over ``±window`` frames,

    ``upper[i] = max(candidate[i - window : i + window + 1])``,
    ``lower[i] = min(candidate[i - window : i + window + 1])`` (per feature, clipped at the ends),

and the bound is the squared distance of ``query`` to that tube,

    ``gap[i, k] = max(query[i, k] - upper[i, k], 0) + max(lower[i, k] - query[i, k], 0)``,
    ``lb_keogh = sum_i sum_k gap[i, k] ** 2``.

It is a lower bound because every frame ``i`` of ``query`` lies on the optimal warping path,
matched to some frame ``j`` of ``candidate`` with ``|i - j| <= window`` at a cost
``||query[i] - candidate[j]||^2 = sum_k (query[i, k] - candidate[j, k]) ** 2`` that is at least
its distance to the envelope, feature by feature (for ``d > 1`` this is the multivariate bound
LB_MV of Rath & Manmatha, 2002, with one envelope per feature). Costs are non-negative, so the
other cells of the path only add to it.

Both series must have the same length ``t`` (the band ``|i - j| <= window`` is that of
:func:`alignment.dtw` for ``t == s``); unequal lengths raise ``ValueError``.

Algorithm: the envelope is one ``lax.reduce_window`` max and one min (window ``2 * window + 1``
along time, padded with ``-inf`` / ``+inf``), so everything here is a fixed-shape, jittable and
vmappable computation. float16 and bfloat16 inputs are computed in float32 and cast back.

Bad input (``docs/conventions.md``): ``None``, complex, empty, wrong-rank or mismatched arrays and
a ``window`` that is not a Python ``int >= 0`` (or ``None``) raise ``ValueError`` naming the
argument and the shapes, also under ``jit``. There is no traced hyperparameter, so the only
value policy is that of the data: a NaN in ``query`` or ``candidate`` makes the bound NaN.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from alignment._src import checks
from alignment._src import dtw as _dtw

__all__ = ["DTWNeighborOutput", "dtw_nearest_neighbor", "keogh_envelope", "lb_keogh"]


# --------------------------------------------------------------------------------------------
# Validation.
# --------------------------------------------------------------------------------------------


def _series(v, name: str) -> jax.Array:
    v = checks.as_float_array(v, name)
    if v.ndim not in (1, 2):
        raise ValueError(
            f"`{name}` must be a series of shape [t, d] (or [t] for a 1-D series), got shape "
            f"{v.shape}."
        )
    if any(n == 0 for n in v.shape):
        raise ValueError(f"`{name}` must be non-empty, got shape {v.shape}.")
    return v


def _window(window) -> int | None:
    return checks.static_int(window, "window", minimum=0, allow_none=True)


def _pair(query, candidate, qname: str = "query", cname: str = "candidate"):
    q = _series(query, qname)
    c = _series(candidate, cname)
    if q.shape != c.shape:
        raise ValueError(
            f"`{qname}` and `{cname}` must have the same shape [t, d] (LB_Keogh needs equal "
            f"lengths and feature sizes), got {qname}: {q.shape} and {cname}: {c.shape}."
        )
    dtype = jnp.result_type(q, c)
    return q.astype(dtype), c.astype(dtype)


# --------------------------------------------------------------------------------------------
# Cores (on [t, d] arrays in the working dtype).
# --------------------------------------------------------------------------------------------


def _envelope(c: jax.Array, window: int | None) -> tuple[jax.Array, jax.Array]:
    """Running (min, max) of ``c: [t, d]`` over ``±window`` frames (None: the whole series)."""
    t = c.shape[0]
    r = t - 1 if window is None else min(int(window), t - 1)
    if r == 0:
        return c, c
    dims, strides, pad = (2 * r + 1, 1), (1, 1), ((r, r), (0, 0))
    # Python-float identities: lax recognises the max/min monoids (differentiable primitives)
    upper = jax.lax.reduce_window(c, -float("inf"), jax.lax.max, dims, strides, pad)
    lower = jax.lax.reduce_window(c, float("inf"), jax.lax.min, dims, strides, pad)
    return lower, upper


def _lb_from_envelope(q: jax.Array, lower: jax.Array, upper: jax.Array) -> jax.Array:
    """``sum (max(q - upper, 0) + max(lower - q, 0)) ** 2``: NaN anywhere gives NaN."""
    zero = jnp.zeros((), q.dtype)
    gap = jnp.maximum(q - upper, zero) + jnp.maximum(lower - q, zero)  # at most one term > 0
    return jnp.sum(gap * gap)


def _as_2d(v: jax.Array) -> jax.Array:
    return v[:, None] if v.ndim == 1 else v


@functools.partial(jax.jit, static_argnames=("window",))
def _envelope_core(c, *, window):
    work = checks.compute_dtype(c.dtype)
    lower, upper = _envelope(_as_2d(c).astype(work), window)
    return lower.reshape(c.shape).astype(c.dtype), upper.reshape(c.shape).astype(c.dtype)


@functools.partial(jax.jit, static_argnames=("window",))
def _lb_core(q, c, *, window):
    work = checks.compute_dtype(q.dtype)
    q2, c2 = _as_2d(q).astype(work), _as_2d(c).astype(work)
    lower, upper = _envelope(c2, window)
    return _lb_from_envelope(q2, lower, upper).astype(q.dtype)


# --------------------------------------------------------------------------------------------
# Public functions.
# --------------------------------------------------------------------------------------------


def keogh_envelope(
    candidate: jax.typing.ArrayLike, *, window: int | None
) -> tuple[jax.Array, jax.Array]:
    """The LB_Keogh envelope of a series: its running minimum and maximum over ``±window``.

    ``lower[i] = min(candidate[max(i - window, 0) : i + window + 1])`` and ``upper[i]`` the
    maximum, feature by feature (tslearn's ``lb_envelope(candidate, radius=window)``). Computed
    by ``lax.reduce_window`` in ``O(t * window)``.

    Bad input: ``None``, complex, empty or not of rank 1 or 2 ``candidate``, and a ``window``
    that is not a Python ``int >= 0`` or ``None``, raise ``ValueError`` (also under ``jit``). A
    NaN in ``candidate`` makes every envelope entry whose window contains it NaN. See
    ``docs/conventions.md``.

    Args:
      candidate: Array of shape ``[t, d]``, or ``[t]`` for a 1-D series.
      window: Sakoe-Chiba half-width (static ``int >= 0``): the ``window`` of
        :func:`alignment.dtw` for equal lengths. ``None`` means no band (the envelope is the
        global minimum and maximum); values ``>= t - 1`` give the same.

    Returns:
      ``(lower, upper)``, two arrays of the shape and dtype of ``candidate``.

    References:
      Keogh & Ratanamahatana, "Exact indexing of dynamic time warping", Knowledge and
      Information Systems 7(3), 2005.

    Examples:
      >>> import jax.numpy as jnp
      >>> lower, upper = keogh_envelope(jnp.array([1.0, 2, 3, 2, 1]), window=1)
      >>> lower.tolist(), upper.tolist()
      ([1.0, 1.0, 2.0, 1.0, 1.0], [2.0, 3.0, 3.0, 3.0, 2.0])
    """
    window = _window(window)
    c = _series(candidate, "candidate")
    return _envelope_core(c, window=window)


def lb_keogh(
    query: jax.typing.ArrayLike, candidate: jax.typing.ArrayLike, *, window: int | None
) -> jax.Array:
    """LB_Keogh: a lower bound of ``dtw_points(query, candidate, window=window)``, in O(t window).

    The squared Euclidean distance from ``query`` to the envelope of ``candidate``
    (:func:`keogh_envelope`):

        ``sum_{i, k} (max(query[i, k] - upper[i, k], 0) + max(lower[i, k] - query[i, k], 0)) ** 2``.

    It never exceeds the exact DTW with the squared Euclidean cost (not halved) and the same
    Sakoe-Chiba band (up to the rounding of the two computations); with ``window=0`` the envelope is
    ``candidate`` itself and the bound *is* that DTW, the lock-step squared Euclidean distance.
    Differentiable in both series (the envelope's derivative goes to the frame that attains each
    running maximum or minimum). It is not symmetric: ``max(lb_keogh(x, y), lb_keogh(y, x))`` is a
    tighter bound of the (symmetric) DTW. tslearn's ``lb_keogh(query, candidate, radius=window)``
    (1-D series only) is the square root of this value. For ``d > 1`` each feature has its own
    envelope (the multivariate bound LB_MV), which is still a lower bound.

    Equal lengths only: ``query`` and ``candidate`` must have the same shape.

    Bad input: ``None``, complex, empty, not of rank 1 or 2, or of different shapes ``query``
    and ``candidate``, and a ``window`` that is not a Python ``int >= 0`` (or ``None``), raise
    ``ValueError`` naming the argument and the shapes, also under ``jit``. NaN in either series
    propagates to the bound. See ``docs/conventions.md``.

    Args:
      query: Array of shape ``[t, d]``, or ``[t]`` for a 1-D series.
      candidate: Array of the same shape as ``query``.
      window: Sakoe-Chiba half-width (static ``int >= 0``; ``None``: no band), as in
        :func:`alignment.dtw` for equal lengths (``|i - j| <= window``).

    Returns:
      Scalar ``>= 0``, in the dtype of the inputs.

    References:
      Keogh & Ratanamahatana, "Exact indexing of dynamic time warping", Knowledge and
      Information Systems 7(3), 2005. Rath & Manmatha, "Lower-bounding of dynamic time warping
      distances for multivariate time series", Tech. Rep. MM-40, U. Massachusetts, 2002.

    Examples:
      >>> import jax.numpy as jnp
      >>> from alignment import dtw_points
      >>> query = jnp.zeros(5); candidate = jnp.array([1.0, 2, 3, 2, 1])
      >>> float(lb_keogh(query, candidate, window=1))  # 1 + 1 + 4 + 1 + 1
      8.0
      >>> float(dtw_points(query, candidate, window=1))  # 1 + 4 + 9 + 4 + 1
      19.0
    """
    window = _window(window)
    q, c = _pair(query, candidate)
    return _lb_core(q, c, window=window)


class DTWNeighborOutput(NamedTuple):
    """Result of :func:`dtw_nearest_neighbor`, one entry per query.

    Attributes:
      index: int32 ``[q]``, the index in ``references`` of the nearest neighbour (the lowest
        index among exact ties); ``-1`` where the distance is NaN.
      distance: ``[q]``, its DTW value ``dtw_points(query, references[index], window=window)``
        (squared Euclidean cost, not halved), in the dtype of the inputs.
      n_dtw: int32 ``[q]``, how many exact DTWs the query needed (between 1 and ``m``); the rest
        were pruned by LB_Keogh.
    """

    index: jax.Array
    distance: jax.Array
    n_dtw: jax.Array


def _sequences(v, name: str) -> jax.Array:
    v = checks.as_float_array(v, name)
    if v.ndim not in (2, 3):
        raise ValueError(
            f"`{name}` must be a set of series of shape [n, t, d] (or [n, t] for 1-D series), "
            f"got shape {v.shape}."
        )
    if any(n == 0 for n in v.shape):
        raise ValueError(f"`{name}` must be non-empty, got shape {v.shape}.")
    return v


def _prune_rtol(dtype) -> float:
    """Relative slack of the pruning test, for the rounding of DTW's squared Euclidean cost."""
    return 1e3 * float(jnp.finfo(dtype).eps)


@functools.partial(jax.jit, static_argnames=("window", "chunk_size"))
def _nn_core(queries, references, *, window, chunk_size):
    dtype = queries.dtype
    work = checks.compute_dtype(dtype)
    qs = queries.astype(work)
    rs = references.astype(work)
    if qs.ndim == 2:
        qs, rs = qs[..., None], rs[..., None]
    m = rs.shape[0]
    chunk = min(chunk_size, m)
    n_chunks = -(-m // chunk)
    rtol = _prune_rtol(work)
    inf = jnp.asarray(jnp.inf, work)

    env = jax.vmap(lambda c: _envelope(c, window))
    r_lo, r_up = env(rs)  # [m, t, d]
    q_lo, q_up = env(qs)  # [q, t, d]
    refs_finite = jnp.all(jnp.isfinite(rs))

    def one(q, lo, up):
        # max of the two LB_Keogh directions: both bound the symmetric DTW from below.
        lb = jnp.maximum(
            jax.vmap(_lb_from_envelope, (None, 0, 0))(q, r_lo, r_up),
            jax.vmap(_lb_from_envelope, (0, None, None))(rs, lo, up),
        )  # [m]
        order = jnp.argsort(lb, stable=True).astype(jnp.int32)
        lb_sorted = lb[order]
        pad = n_chunks * chunk - m
        order = jnp.concatenate([order, jnp.full((pad,), order[-1], jnp.int32)])
        lb_sorted = jnp.concatenate([lb_sorted, jnp.full((pad,), inf)])

        def cond(state):
            k, best, _, _ = state
            nxt = jax.lax.dynamic_index_in_dim(lb_sorted, k * chunk, keepdims=False)
            return (k < n_chunks) & (nxt * (1 - rtol) <= best)

        def body(state):
            k, best, best_idx, n = state
            start = k * chunk
            idx = jax.lax.dynamic_slice_in_dim(order, start, chunk)
            valid = start + jnp.arange(chunk) < m
            d = jax.vmap(lambda j: _dtw.dtw_points(q, rs[j], window=window))(idx)
            d = jnp.where(valid, d, inf)
            # lexicographic minimum of (distance, index) over the chunk and the best so far
            d_all = jnp.concatenate([d, best[None]])
            i_all = jnp.concatenate([jnp.where(valid, idx, m), best_idx[None]])
            dmin = jnp.min(d_all)
            imin = jnp.min(jnp.where(d_all == dmin, i_all, m))
            return k + 1, dmin, imin, n + jnp.sum(valid, dtype=jnp.int32)

        init = (jnp.int32(0), inf, jnp.int32(m), jnp.int32(0))
        _, best, best_idx, n = jax.lax.while_loop(cond, body, init)
        bad = ~(jnp.all(jnp.isfinite(q)) & refs_finite)
        best, best_idx = checks.nan_if(bad, (best, best_idx))
        return best_idx, best.astype(dtype), n

    index, distance, n = jax.vmap(one)(qs, q_lo, q_up)
    return DTWNeighborOutput(index=index, distance=distance, n_dtw=n)


def dtw_nearest_neighbor(
    queries: jax.typing.ArrayLike,
    references: jax.typing.ArrayLike,
    *,
    window: int | None,
    chunk_size: int = 1,
) -> DTWNeighborOutput:
    """Exact 1-nearest neighbour under DTW with a Sakoe-Chiba band, pruned by LB_Keogh.

    For each query, the bound ``max(lb_keogh(query, ref), lb_keogh(ref, query))`` is computed
    against every reference (vectorised, ``O(m t window)``), the references are visited in
    increasing order of it, and the exact ``dtw_points(query, ref, window=window)`` is computed
    only while the next bound does not exceed the best DTW found so far: every reference left
    has a bound, hence a DTW, at least that large. The result is that of the exhaustive search
    ``argmin_j dtw_points(queries[i], references[j], window=window)`` (ties: the lowest index),
    up to the rounding of DTW: the pruning test keeps a relative slack of ``1000 eps`` (``1.2e-4``
    in float32) so that rounding never prunes the true neighbour.

    The search is a ``lax.while_loop`` per query, vmapped over the queries. Under ``vmap`` (and
    on accelerators) the loop runs until the slowest query of the batch is done, so the time
    follows ``q * max(n_dtw)`` DTWs, not ``sum(n_dtw)``; ``chunk_size > 1`` computes that many
    DTWs per iteration and query (better vectorised, fewer iterations, a little less pruning).

    Equal-length series only: every query and every reference has ``t`` frames of ``d``
    features. For padded series of different lengths use the exhaustive
    :func:`alignment.pairwise` with :func:`alignment.dtw_points` and ``lengths``.

    Bad input: ``None``, complex or empty arrays, ranks other than 2 or 3, different ``t`` or
    ``d`` between ``queries`` and ``references``, a ``window`` that is not a Python ``int >= 0``
    (or ``None``) and a ``chunk_size`` that is not a Python ``int >= 1`` raise ``ValueError``
    naming the argument and the shapes, also under ``jit``. A non-finite value (NaN, inf) in a
    query or in any reference gives that query ``distance`` NaN and ``index`` ``-1`` (a minimum
    over a set holding NaN is NaN). See ``docs/conventions.md``.

    Args:
      queries: Array of shape ``[q, t, d]`` (or ``[q, t]`` for 1-D series).
      references: Array of shape ``[m, t, d]`` (or ``[m, t]``).
      window: Sakoe-Chiba half-width (static ``int >= 0``; ``None``: no band, where LB_Keogh
        prunes little), as in :func:`alignment.dtw` for equal lengths.
      chunk_size: How many references each loop iteration compares exactly (static
        ``int >= 1``).

    Returns:
      :class:`DTWNeighborOutput` ``(index [q], distance [q], n_dtw [q])``.

    References:
      Keogh & Ratanamahatana, "Exact indexing of dynamic time warping", Knowledge and
      Information Systems 7(3), 2005.

    Examples:
      >>> import jax.numpy as jnp
      >>> refs = jnp.array([[0.0, 0, 0, 0], [0, 1, 2, 1], [5, 5, 5, 5]])
      >>> out = dtw_nearest_neighbor(jnp.array([[0.0, 1, 1, 2]]), refs, window=1)
      >>> out.index.tolist(), out.distance.tolist(), out.n_dtw.tolist()
      ([1], [1.0], [1])
    """
    window = _window(window)
    chunk_size = checks.static_int(chunk_size, "chunk_size", minimum=1)
    qs = _sequences(queries, "queries")
    rs = _sequences(references, "references")
    if qs.ndim != rs.ndim or qs.shape[1:] != rs.shape[1:]:
        raise ValueError(
            "`queries` and `references` must be sets of series of one shape [t, d] (equal "
            f"lengths), got queries: {qs.shape} and references: {rs.shape}."
        )
    dtype = jnp.result_type(qs, rs)
    return _nn_core(qs.astype(dtype), rs.astype(dtype), window=window, chunk_size=chunk_size)
