"""Dynamic time warping: exact DTW (value, path, band) and soft-DTW (value, alignment, divergence).

Conventions, shared by every function here:

* The input is a cost matrix ``cost: [t, s]`` between a sequence of length ``t`` and one of
  length ``s`` (build it with a cost function such as ``squared_euclidean``, or use the
  ``*_xy`` helpers that take the sequences and a ``cost_fn``). A path starts at ``(0, 0)``,
  ends at ``(t - 1, s - 1)`` and moves
  by ``(1, 0)``, ``(0, 1)`` or ``(1, 1)``: the boundary, continuity and monotonicity constraints.
* The value is the **sum of the costs on the path** (no normalisation). With the squared
  Euclidean cost (:func:`alignment.squared_euclidean`, not halved) :func:`dtw` is therefore
  DTW *squared*, as in tslearn's ``soft_dtw`` at ``gamma = 0``; take a square root for tslearn's
  ``dtw``.
* ``window`` is a Sakoe-Chiba band that follows the diagonal of the ``t x s`` rectangle (not the
  main diagonal ``i == j``, which leaves no path when ``t != s``). Cell ``(i, j)`` is admitted iff

      ``|i * (s - 1) - j * (t - 1)| <= window * max(t - 1, s - 1)``,

  i.e. its distance to the straight line from ``(0, 0)`` to ``(t - 1, s - 1)``, measured along the
  shorter sequence's axis, is at most ``window``. For ``t == s`` this is ``|i - j| <= window``.
  Every ``window >= 1`` admits a path; ``window = 0`` admits one only when ``t == s`` (the
  diagonal) or one sequence has length 1, and otherwise raises ``ValueError``.
* ``lengths = (t_valid, s_valid)`` declares that only ``cost[:t_valid, :s_valid]`` is real and the
  rest is padding: the value, gradient and alignment are exactly those of the unpadded problem and
  the gradient on padding is zero. With ``window``, the band follows the diagonal of the valid
  rectangle. Use it with ``jax.vmap`` over padded batches.

Algorithm: the dynamic programme runs along anti-diagonals (a wavefront ``lax.scan`` of
``t + s - 1`` steps, each vectorised over the ``min(t, s)`` cells of a diagonal, which it reads
straight from the ``[t, s]`` cost). Gradients use a ``custom_vjp`` that runs the backward
recursion of Cuturi & Blondel (2017): the forward pass stores the DP table (one
``[t + s - 1, min(t, s)]`` array, so value and gradient take ``O(t * s)`` memory, not a stack of
autodiff residuals), and the backward recomputes each cell's soft-argmin transition
probabilities from its three predecessors exactly as the forward did (a stabilised softmax,
bit-identical to the forward's). It never forms ``inf - inf``. For soft-DTW each diagonal is
stored relative to its minimum, so the weights ``exp((R_a - R_b) / gamma)`` are differences of
small numbers, not of accumulated costs in the thousands: float32 gradients stay accurate to
about ``1e-4`` of float64 at ``t = s = 4096`` (autodiff through an absolute table loses ~1e-2).
The derivative in ``gamma`` is computed only when ``gamma`` is differentiated.

inf/NaN policy: costs must be finite (``+inf`` marks a forbidden cell; ``-inf`` is not supported).
A NaN in the admitted part of ``cost`` propagates to the value. Padding (beyond ``lengths``) may
hold anything, NaN included: it is never read. When no admitted path exists under ``jit`` (a
traced ``lengths`` with ``window = 0`` and unequal lengths), the value is ``+inf`` with a zero
gradient; traced ``lengths`` outside ``[1, t] x [1, s]`` give NaN. Concrete bad input raises.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from alignment._src import costs as _costs
from alignment._src.checks import as_float_array, check_matrix, check_positive, is_concrete

__all__ = [
    "alignment_to_path",
    "dtw",
    "dtw_path",
    "dtw_xy",
    "soft_dtw",
    "soft_dtw_alignment",
    "soft_dtw_divergence",
    "soft_dtw_xy",
]

CostFn = Callable[[jax.Array, jax.Array], jax.Array]


# --------------------------------------------------------------------------------------------
# Validation of the inputs (shapes, band, lengths, gamma): clear errors before any tracing.
# --------------------------------------------------------------------------------------------


def _check_window(window) -> int | None:
    if window is None:
        return None
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 0:
        raise ValueError(f"`window` must be None or a non-negative int, got {window!r}.")
    return int(window)


def _check_lengths(lengths, t: int, s: int):
    """Returns ``(t_valid, s_valid, ok)``; ``ok`` is a traced validity flag or None."""
    if lengths is None:
        return t, s, None
    if not isinstance(lengths, tuple | list) or len(lengths) != 2:
        raise ValueError(
            f"`lengths` must be a pair (t_valid, s_valid) of integer scalars, got {lengths!r}."
        )
    out = []
    for name, value, size in (("t_valid", lengths[0], t), ("s_valid", lengths[1], s)):
        if is_concrete(value):
            arr = np.asarray(value)
            if arr.ndim != 0 or not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(
                    f"`lengths` entry {name} must be an integer scalar, got {value!r} "
                    f"(for a batch, jax.vmap over the lengths)."
                )
            if not 1 <= int(arr) <= size:
                raise ValueError(
                    f"`lengths` entry {name}={int(arr)} is outside [1, {size}] for cost of "
                    f"shape {(t, s)}."
                )
            out.append(int(arr))
        else:
            out.append(jnp.asarray(value, jnp.int32))
    tl, sl = out
    ok = None
    if not (isinstance(tl, int) and isinstance(sl, int)):
        ok = (jnp.asarray(tl) >= 1) & (jnp.asarray(tl) <= t)
        ok = ok & (jnp.asarray(sl) >= 1) & (jnp.asarray(sl) <= s)
        tl = jnp.clip(tl, 1, t)
        sl = jnp.clip(sl, 1, s)
    return tl, sl, ok


def _prepare(cost, window, lengths):
    """Validates the inputs. Returns ``(cost, t_valid, s_valid, static, ok)``.

    ``static = (window, dynamic_end)`` is hashable (a ``nondiff_argnum``); ``ok`` is a traced
    validity flag for traced lengths, or None.
    """
    cost = as_float_array(cost, "cost")
    check_matrix(cost, "cost")
    window = _check_window(window)
    t, s = cost.shape
    tl, sl, ok = _check_lengths(lengths, t, s)
    if window == 0 and isinstance(tl, int) and isinstance(sl, int):
        if tl != sl and min(tl, sl) > 1:
            raise ValueError(
                f"`window`=0 admits no warping path for sequences of lengths {tl} and {sl}: "
                "only equal lengths can follow the diagonal exactly. Use window >= 1."
            )
    tl = jnp.asarray(tl, jnp.int32)
    sl = jnp.asarray(sl, jnp.int32)
    return cost, tl, sl, (window, lengths is not None), ok


# --------------------------------------------------------------------------------------------
# The wavefront recursions. Diagonal k holds the cells (i, j) with i + j = k, one per "lane":
# lane l is row i = l when t <= s, column j = l otherwise, so that the shorter sequence spans
# the lanes (min(t, s) of them) and t + s - 1 steps sweep the matrix. Each step gathers its
# cells straight from the [t, s] cost (no skewed copy, no transposes), cells outside the
# matrix, the band or the valid lengths reading +inf.
# --------------------------------------------------------------------------------------------


def _diagonal_cost(flat, k, lane, shape, tl, sl, window):
    """The costs of diagonal ``k`` (``+inf`` where not admitted), one per lane."""
    t, s = shape
    i, j = (k - lane, lane) if t > s else (lane, k - lane)
    valid = (i >= 0) & (j >= 0) & (i < tl) & (j < sl)
    if window is not None:
        tl1, sl1 = tl - 1, sl - 1
        valid = valid & (jnp.abs(i * sl1 - j * tl1) <= window * jnp.maximum(tl1, sl1))
    return jnp.where(valid, flat[jnp.where(valid, i * s + j, 0)], jnp.inf)


def _predecessors(r1, r2, k, inf1, transposed: bool):
    """Predecessors ``(R[i-1, j-1], R[i-1, j], R[i, j-1])`` of diagonal ``k``'s cells, by lane.

    From diagonals ``k - 1`` (``r1``) and ``k - 2`` (``r2``): the diagonal predecessor and one of
    the other two sit one lane down, the third in the same lane.
    """
    start = jnp.where(k == 0, jnp.zeros_like(inf1), inf1)  # R[-1, -1] = 0 starts the path
    d = jnp.concatenate([start, r2[:-1]])
    shifted = jnp.concatenate([inf1, r1[:-1]])
    return (d, r1, shifted) if transposed else (d, shifted, r1)


def _softmin3(d, u, left, gamma, *, soft: bool, probs: bool):
    """Soft-min (or min) of three predecessors, optionally with the transition probabilities.

    Returns ``(softmin, (p_diag, p_up, p_left, entropy))``; the probabilities are the soft-argmin
    weights (one-hot argmin for ``soft=False``, ties to the diagonal, then up), all zero where no
    predecessor is finite. The entropy is that of the weights (``None`` for hard DTW). The same
    function runs in the forward and the backward pass, so both see bit-identical weights.
    """
    dtype = d.dtype
    m = jnp.minimum(jnp.minimum(d, u), left)
    finite = m < jnp.inf
    if not soft:
        if not probs:
            return m, None
        is_d = (d == m) & finite
        is_u = (u == m) & finite & ~is_d
        is_l = finite & ~is_d & ~is_u
        return m, (is_d.astype(dtype), is_u.astype(dtype), is_l.astype(dtype), None)
    inv_gamma = 1.0 / gamma
    ms = jnp.where(finite, m, 0.0)  # no inf - inf where every predecessor is +inf
    ad, au, al = (ms - d) * inv_gamma, (ms - u) * inv_gamma, (ms - left) * inv_gamma  # <= 0
    ed, eu, el = jnp.exp(ad), jnp.exp(au), jnp.exp(al)
    z = ed + eu + el
    logz = jnp.log(z)  # -inf where no predecessor is finite: the soft-min is +inf there
    value = ms - gamma * logz
    if not probs:
        return value, None
    zinv = 1.0 / jnp.where(finite, z, 1.0)
    pd, pu, pl = ed * zinv, eu * zinv, el * zinv
    # exponents clamped so that p * exponent is 0 (not NaN) where p underflows to 0 (exponent -inf)
    lowest = jnp.asarray(jnp.finfo(dtype).min, dtype)
    ad, au, al = jnp.maximum(ad, lowest), jnp.maximum(au, lowest), jnp.maximum(al, lowest)
    entropy = jnp.where(finite, logz - (pd * ad + pu * au + pl * al), 0.0)
    return value, (pd, pu, pl, entropy)


def _end(shape, tl, sl):
    """Diagonal and lane of the last valid cell ``(t_valid - 1, s_valid - 1)``."""
    t, s = shape
    return tl + sl - 2, (sl - 1 if t > s else tl - 1)


def _forward(cost, gamma, tl, sl, static, *, soft: bool, store: bool):
    """Runs the DP over anti-diagonals; returns the value at the last valid cell and residuals.

    For soft-DTW each diagonal is held relative to its own minimum: ``R_k = off_k + rel_k`` with
    ``min(rel_k) = 0``, and only the offset steps ``off_{k-2} - off_{k-1}`` enter the soft-min.
    The transition weights ``exp((R_a - R_b) / gamma)`` then come from differences of numbers of
    the size of the spread along a diagonal, not of the accumulated cost (thousands after a few
    hundred steps, whose float32 spacing divided by gamma would be ~1e-3): this is what keeps
    float32 gradients accurate on long sequences. Hard DTW needs no such care.

    The residuals (``store=True``) are the table itself, ``rel`` by diagonal and lane, emitted
    two diagonals late (``res[k] = rel_{k-2}``, with the offset step used at ``k``) so that the
    backward scan reads the predecessors of diagonal ``k`` at step ``k``; plus the second-to-last
    diagonal. The backward recomputes the transition probabilities from them (one stored array
    instead of four: the recursion is bound by memory traffic, not by exponentials).
    """
    window, dynamic_end = static
    t, s = cost.shape
    n_diag, n_lane, transposed = t + s - 1, min(t, s), t > s
    dtype = cost.dtype
    inf1 = jnp.full((1,), jnp.inf, dtype)
    flat = cost.reshape(-1)
    lane = jnp.arange(n_lane, dtype=jnp.int32)
    k_end, l_end = _end(cost.shape, tl, sl)
    if soft:
        gamma = jnp.asarray(gamma, dtype)

    def step(carry, k):
        r1, r2, delta, offset, value = carry  # rel on diagonals k-1, k-2; off_{k-2} - off_{k-1}
        c = _diagonal_cost(flat, k, lane, cost.shape, tl, sl, window)
        d, u, left = _predecessors(r1, r2, k, inf1, transposed)
        smin, _ = _softmin3(d + delta, u, left, gamma, soft=soft, probs=False)
        r = c + smin  # relative to off_{k-1}
        if soft:
            low = jnp.min(r)
            low = jnp.where(low < jnp.inf, low, 0.0)  # a diagonal with no reachable cell
            r = r - low
            offset = offset + low
            new_delta = -low
        else:
            new_delta = delta
        if dynamic_end:
            value = jnp.where(k == k_end, r[l_end] + offset, value)
        return (r, r1, new_delta, offset, value), ((r2, delta) if store else None)

    inf_l = jnp.full((n_lane,), jnp.inf, dtype)
    zero = jnp.zeros((), dtype)
    init = (inf_l, inf_l, zero, zero, zero)
    ks = jnp.arange(n_diag, dtype=jnp.int32)
    (r_last, r_prev, _, offset, value), res = jax.lax.scan(step, init, ks)
    if not dynamic_end:
        value = r_last[n_lane - 1] + offset
    return value, ((res, r_prev) if store else None)


def _backward(res, gamma, g, tl, sl, static, shape, *, soft: bool, entropy: bool = False):
    """Backward recursion: ``E[cell] = sum over successors of p(successor -> cell) E[successor]``.

    Seeded with ``g`` at the last valid cell. Returns ``E`` as a ``[t, s]`` matrix (the gradient
    of the value with respect to the cost) and, if ``entropy``, ``-sum(E * H)``, the derivative
    in gamma (``H`` the entropy of each cell's soft-min weights).
    """
    _, dynamic_end = static
    (r_lag2, deltas), r_prev = res
    t, s = shape
    n_diag, n_lane, transposed = t + s - 1, min(t, s), t > s
    dtype = r_lag2.dtype
    lane = jnp.arange(n_lane, dtype=jnp.int32)
    zero1 = jnp.zeros((1,), dtype)
    inf1 = jnp.full((1,), jnp.inf, dtype)
    g = jnp.asarray(g, dtype)
    k_end, l_end = _end(shape, tl, sl)
    if soft:
        gamma = jnp.asarray(gamma, dtype)

    def shift_down(v):  # v'[l] = v[l + 1]: from lane l + 1 to its predecessor in lane l
        return jnp.concatenate([v[1:], zero1])

    def step(carry, xs):
        r1, acc_k, acc_km1, g_gamma = carry  # rel_{k-1}; incoming E for diagonals k and k - 1
        r2, delta, k = xs
        d, u, left = _predecessors(r1, r2, k, inf1, transposed)
        _, (pd, pu, pl, h) = _softmin3(d + delta, u, left, gamma, soft=soft, probs=True)
        p_shifted, p_same = (pl, pu) if transposed else (pu, pl)
        e = acc_k
        if dynamic_end:
            e = e + jnp.where((k == k_end) & (lane == l_end), g, 0.0)
        acc_next = acc_km1 + shift_down(p_shifted * e) + p_same * e
        acc_next2 = shift_down(pd * e)
        if entropy:  # summed once at the end: no reduction inside the loop
            g_gamma = g_gamma - e * h
        return (r2, acc_next, acc_next2, g_gamma), e

    zeros_l = jnp.zeros((n_lane,), dtype)
    acc0 = zeros_l if dynamic_end else zeros_l.at[n_lane - 1].set(g)
    init = (r_prev, acc0, zeros_l, zeros_l)
    ks = jnp.arange(n_diag, dtype=jnp.int32)
    (_, _, _, g_gamma), e = jax.lax.scan(step, init, (r_lag2, deltas, ks), reverse=True)
    i = jnp.arange(t, dtype=jnp.int32)[:, None]
    j = jnp.arange(s, dtype=jnp.int32)[None, :]
    grad = e[i + j, j if transposed else i]  # back from (diagonal, lane) to (row, column)
    return grad, jnp.sum(g_gamma)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _soft_dtw_core(cost, gamma, tl, sl, static):
    value, _ = _forward(cost, gamma, tl, sl, static, soft=True, store=False)
    return value


def _soft_dtw_core_fwd(cost, gamma, tl, sl, static):
    # symbolic_zeros: the primals come wrapped with a `perturbed` flag. The entropy term of the
    # derivative in gamma (a third of the backward's work) is skipped unless gamma is perturbed;
    # the flag travels to the backward as the static size of an empty array.
    gamma_flag = jnp.zeros((1 if gamma.perturbed else 0,), jnp.int8)
    cost, gamma, tl, sl = cost.value, gamma.value, tl.value, sl.value
    value, res = _forward(cost, gamma, tl, sl, static, soft=True, store=True)
    shape = jnp.zeros((0, *cost.shape), jnp.int8)  # the shape, statically, for the backward
    return value, (res, gamma, tl, sl, gamma_flag, shape)


def _soft_dtw_core_bwd(static, saved, g):
    res, gamma, tl, sl, gamma_flag, shape = saved
    want_gamma = gamma_flag.shape[0] == 1
    if isinstance(g, jax.custom_derivatives.SymbolicZero):
        g = jnp.zeros((), jnp.result_type(gamma))
    grad, g_gamma = _backward(
        res, gamma, g, tl, sl, static, shape.shape[1:], soft=True, entropy=want_gamma
    )
    g_gamma = g_gamma.astype(jnp.result_type(gamma)) if want_gamma else None
    return grad, g_gamma, None, None


_soft_dtw_core.defvjp(_soft_dtw_core_fwd, _soft_dtw_core_bwd, symbolic_zeros=True)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _dtw_core(cost, tl, sl, static):
    value, _ = _forward(cost, None, tl, sl, static, soft=False, store=False)
    return value


def _dtw_core_fwd(cost, tl, sl, static):
    value, res = _forward(cost, None, tl, sl, static, soft=False, store=True)
    return value, (res, tl, sl, jnp.zeros((0, *cost.shape), jnp.int8))


def _dtw_core_bwd(static, saved, g):
    res, tl, sl, shape = saved
    grad, _ = _backward(res, None, g, tl, sl, static, shape.shape[1:], soft=False)
    return grad, None, None


_dtw_core.defvjp(_dtw_core_fwd, _dtw_core_bwd)


def _flag_invalid(value, ok):
    return value if ok is None else jnp.where(ok, value, jnp.nan)


# --------------------------------------------------------------------------------------------
# Public API.
# --------------------------------------------------------------------------------------------


def dtw(
    cost: jax.typing.ArrayLike,
    *,
    window: int | None = None,
    lengths: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] | None = None,
) -> jax.Array:
    """Exact dynamic time warping: the minimum sum of costs over warping paths.

    Differentiable almost everywhere: the gradient with respect to ``cost`` is the optimal path's
    0/1 indicator (see :func:`dtw_path`).

    Args:
      cost: Array of shape ``[t, s]``, the pairwise cost between the two sequences.
      window: Sakoe-Chiba band half-width along the rectangle's diagonal (static ``int >= 0``),
        or ``None`` for no band. See the module docstring for the exact cells admitted.
      lengths: Optional pair ``(t_valid, s_valid)`` of integer scalars (traced is fine) for padded
        inputs: only ``cost[:t_valid, :s_valid]`` is used.

    Returns:
      Scalar, the cost of the optimal path (DTW squared for a squared Euclidean cost).

    Raises:
      ValueError: ``cost`` is not a non-empty 2-D array, ``window`` is negative or admits no
        path, or concrete ``lengths`` fall outside the array.

    Examples:
      The lecture's example: two utterances 1,1,3,3,2,4 and 1,3,2,2,4,4 align at zero cost.

      >>> import jax.numpy as jnp
      >>> from alignment import absolute_difference
      >>> a = jnp.array([1.0, 1, 3, 3, 2, 4]); b = jnp.array([1.0, 3, 2, 2, 4, 4])
      >>> float(dtw(absolute_difference(a, b)))
      0.0
    """
    cost, tl, sl, static, ok = _prepare(cost, window, lengths)
    return _flag_invalid(_dtw_core(cost, tl, sl, static), ok)


def dtw_path(
    cost: jax.typing.ArrayLike,
    *,
    window: int | None = None,
    lengths: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Exact DTW and its optimal path, as a fixed-shape 0/1 alignment matrix (jittable).

    Ties between predecessors are broken in the order diagonal, ``(i - 1, j)``, ``(i, j - 1)``.
    Use :func:`alignment_to_path` on the host to get the path as index pairs.

    Args:
      cost: Array of shape ``[t, s]``.
      window: As in :func:`dtw`.
      lengths: As in :func:`dtw`; padding cells are 0 in the alignment.

    Returns:
      ``(value, alignment)``: the scalar DTW value and an array of shape ``[t, s]`` (dtype of
      ``cost``) with 1 on the cells of the optimal path and 0 elsewhere.

    Examples:
      >>> import jax.numpy as jnp
      >>> value, a = dtw_path(jnp.array([[0.0, 1.0, 5.0], [4.0, 0.0, 0.0]]))
      >>> float(value), alignment_to_path(a).tolist()
      (0.0, [[0, 0], [1, 1], [1, 2]])
    """
    fn = lambda c: dtw(c, window=window, lengths=lengths)
    return jax.value_and_grad(fn)(as_float_array(cost, "cost"))


def alignment_to_path(alignment: jax.typing.ArrayLike) -> np.ndarray:
    """Host-side helper: the cells of a 0/1 alignment matrix as index pairs in path order.

    Args:
      alignment: Array of shape ``[t, s]``, as returned by :func:`dtw_path` (not jittable: the
        number of pairs depends on the values).

    Returns:
      NumPy integer array of shape ``[l, 2]`` with rows ``(i, j)`` ordered along the path.
    """
    a = np.asarray(alignment)
    if a.ndim != 2:
        raise ValueError(f"`alignment` must be a 2-D array [t, s], got shape {a.shape}.")
    return np.argwhere(a > 0.5)  # row-major order is path order for a monotone path


def soft_dtw(
    cost: jax.typing.ArrayLike,
    *,
    gamma: jax.typing.ArrayLike = 1.0,
    window: int | None = None,
    lengths: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] | None = None,
) -> jax.Array:
    """Soft-DTW (Cuturi & Blondel, 2017): DTW with the min replaced by a soft-min.

    ``R[i, j] = cost[i, j] + softmin_gamma(R[i-1, j-1], R[i-1, j], R[i, j-1])`` with
    ``softmin_gamma(a) = -gamma log sum exp(-a / gamma)``; the value is ``R[t-1, s-1]``.

    Differentiable in ``cost`` (the gradient is :func:`soft_dtw_alignment`) and in ``gamma``, by a
    custom VJP that runs the paper's backward recursion on the transition probabilities stored
    during the forward pass (memory ``O(t s)``, no autodiff through the scan).

    Numerics: the soft-min is a stabilised log-sum-exp, so small ``gamma`` (``1e-3`` on costs of
    ``1e3`` in float32) gives finite values and gradients. ``soft_dtw -> dtw`` as ``gamma -> 0``
    (from below: ``dtw - gamma log(#paths) <= soft_dtw <= dtw``). The value can be negative.
    Under ``jit`` a non-positive gamma is not caught and gives NaN. See the module docstring for
    ``inf``/NaN and padding.

    Args:
      cost: Array of shape ``[t, s]``.
      gamma: Positive smoothing parameter (traced, differentiable).
      window: As in :func:`dtw`.
      lengths: As in :func:`dtw`.

    Returns:
      Scalar soft-DTW value.

    Raises:
      ValueError: bad ``cost``, ``window`` or ``lengths`` (see :func:`dtw`), or a concrete
        ``gamma <= 0``.

    References:
      Cuturi & Blondel, "Soft-DTW: a Differentiable Loss Function for Time-Series", ICML 2017.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from alignment import squared_euclidean
      >>> x = jnp.linspace(0, 1, 5)[:, None]; y = jnp.linspace(0, 1, 7)[:, None] ** 2
      >>> value, grad = jax.value_and_grad(soft_dtw)(squared_euclidean(x, y), gamma=0.1)
      >>> grad.shape
      (5, 7)
    """
    check_positive(gamma, "gamma")
    cost, tl, sl, static, ok = _prepare(cost, window, lengths)
    gamma = jnp.asarray(gamma, cost.dtype)
    return _flag_invalid(_soft_dtw_core(cost, gamma, tl, sl, static), ok)


def soft_dtw_alignment(
    cost: jax.typing.ArrayLike,
    *,
    gamma: jax.typing.ArrayLike = 1.0,
    window: int | None = None,
    lengths: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] | None = None,
) -> jax.Array:
    """The expected alignment matrix of soft-DTW: the gradient of :func:`soft_dtw` in ``cost``.

    Entry ``(i, j)`` is the probability that the Gibbs distribution over warping paths (at
    temperature ``gamma``) passes through cell ``(i, j)``; it tends to the hard path of
    :func:`dtw_path` as ``gamma -> 0``.

    Args:
      cost: Array of shape ``[t, s]``.
      gamma: Positive smoothing parameter.
      window: As in :func:`dtw`.
      lengths: As in :func:`dtw`; padding gets 0.

    Returns:
      Array of shape ``[t, s]`` with entries in ``[0, 1]``; ``(0, 0)`` and the end cell are 1.
    """
    fn = lambda c: soft_dtw(c, gamma=gamma, window=window, lengths=lengths)
    return jax.grad(fn)(as_float_array(cost, "cost"))


def dtw_xy(
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    *,
    cost_fn: CostFn = _costs.squared_euclidean,
    window: int | None = None,
    lengths: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] | None = None,
) -> jax.Array:
    """Exact DTW between two sequences: ``dtw(cost_fn(x, y), ...)``.

    Args:
      x: Array of shape ``[t, d]`` (or ``[t]`` with a 1-D cost such as
        :func:`alignment.absolute_difference`).
      y: Array of shape ``[s, d]``.
      cost_fn: Maps ``(x, y)`` to a ``[t, s]`` cost; squared Euclidean by default.
      window: As in :func:`dtw`.
      lengths: As in :func:`dtw` (valid lengths of ``x`` and ``y``).

    Returns:
      Scalar.
    """
    return dtw(cost_fn(x, y), window=window, lengths=lengths)


def soft_dtw_xy(
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    *,
    gamma: jax.typing.ArrayLike = 1.0,
    cost_fn: CostFn = _costs.squared_euclidean,
    window: int | None = None,
    lengths: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] | None = None,
) -> jax.Array:
    """Soft-DTW between two sequences: ``soft_dtw(cost_fn(x, y), ...)``, differentiable in both.

    Args:
      x: Array of shape ``[t, d]``.
      y: Array of shape ``[s, d]``.
      gamma: Positive smoothing parameter.
      cost_fn: Maps ``(x, y)`` to a ``[t, s]`` cost; squared Euclidean (not halved) by default.
      window: As in :func:`dtw`.
      lengths: As in :func:`dtw` (valid lengths of ``x`` and ``y``): gradients on padded rows of
        ``x`` and ``y`` are zero.

    Returns:
      Scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.zeros((4, 2)); y = jnp.ones((6, 2))
      >>> round(float(soft_dtw_xy(x, y, gamma=1e-3)), 2)  # at least 6 cells of cost 2
      12.0
    """
    return soft_dtw(cost_fn(x, y), gamma=gamma, window=window, lengths=lengths)


def soft_dtw_divergence(
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    *,
    gamma: jax.typing.ArrayLike = 1.0,
    cost_fn: CostFn = _costs.squared_euclidean,
    window: int | None = None,
    lengths: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] | None = None,
) -> jax.Array:
    """Soft-DTW divergence: ``sdtw(x, y) - (sdtw(x, x) + sdtw(y, y)) / 2``.

    Exactly zero when ``x == y`` (plain soft-DTW is not: ``sdtw(x, x) < 0``). For the squared
    Euclidean cost (whose Gibbs kernel ``exp(-cost / gamma)`` is positive definite) it is
    non-negative, up to float rounding; Blondel et al. prove this without a ``window``.

    Args:
      x: Array of shape ``[t, d]``.
      y: Array of shape ``[s, d]``.
      gamma: Positive smoothing parameter.
      cost_fn: Pairwise cost; squared Euclidean (not halved) by default.
      window: As in :func:`dtw`, applied to all three terms.
      lengths: Optional ``(t_valid, s_valid)`` for padded ``x`` and ``y``.

    Returns:
      Scalar divergence.

    References:
      Blondel, Mensch & Vert, "Differentiable Divergences Between Time Series", AISTATS 2021.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.linspace(0.0, 1.0, 6)[:, None]
      >>> float(soft_dtw_divergence(x, x, gamma=0.1))
      0.0
    """
    if lengths is None:
        lxy = lxx = lyy = None
    else:
        if not isinstance(lengths, tuple | list) or len(lengths) != 2:
            raise ValueError(f"`lengths` must be a pair (t_valid, s_valid), got {lengths!r}.")
        tl, sl = lengths
        lxy, lxx, lyy = (tl, sl), (tl, tl), (sl, sl)
    kw = dict(gamma=gamma, window=window)
    xy = soft_dtw(cost_fn(x, y), lengths=lxy, **kw)
    xx = soft_dtw(cost_fn(x, x), lengths=lxx, **kw)
    yy = soft_dtw(cost_fn(y, y), lengths=lyy, **kw)
    return xy - 0.5 * (xx + yy)
