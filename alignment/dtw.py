"""Dynamic time warping: exact DTW (value, path, band) and soft-DTW (value, alignment, divergence).

Conventions, shared by every function here:

* The input is a cost matrix ``cost: [t, s]`` between a sequence of length ``t`` and one of
  length ``s`` (build it with :mod:`alignment.costs`, or use the ``*_xy`` helpers that take the
  sequences and a ``cost_fn``). A path starts at ``(0, 0)``, ends at ``(t - 1, s - 1)`` and moves
  by ``(1, 0)``, ``(0, 1)`` or ``(1, 1)``: the boundary, continuity and monotonicity constraints.
* The value is the **sum of the costs on the path** (no normalisation). With the squared
  Euclidean cost (:func:`alignment.costs.squared_euclidean`, not halved) :func:`dtw` is therefore
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
``t + s - 1`` steps, each vectorised over the diagonal; the shorter sequence is put on the
diagonal). Gradients use a ``custom_vjp`` that runs the backward recursion of Cuturi & Blondel
(2017): the forward pass stores the DP table ``R`` (one ``[t + s - 1, min(t, s)]`` array, so value
and gradient take ``O(t * s)`` memory, not a stack of autodiff residuals), and the backward
recomputes each cell's soft-argmin transition probabilities from its three predecessors exactly as
the forward did (a stabilised softmax, bit-identical to the forward's). It never forms
``inf - inf`` nor exponentiates a difference of two large accumulated costs.

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

from alignment import costs as _costs
from alignment._checks import as_float_array, check_matrix, check_positive, is_concrete

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
# Preparation: validation, masks (band, padding), transposition and the anti-diagonal layout.
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


def _band_mask(t: int, s: int, window: int, tl, sl) -> jax.Array:
    """Boolean ``[t, s]``: the cells admitted by the band of the valid ``tl x sl`` rectangle."""
    i = jnp.arange(t, dtype=jnp.int32)[:, None]
    j = jnp.arange(s, dtype=jnp.int32)[None, :]
    tl1 = jnp.asarray(tl, jnp.int32) - 1
    sl1 = jnp.asarray(sl, jnp.int32) - 1
    return jnp.abs(i * sl1 - j * tl1) <= window * jnp.maximum(tl1, sl1)


def _prepare(cost, window, lengths):
    """Validates and lays out ``cost`` for the wavefront.

    Returns ``(skew, (k_end, i_end, dynamic_end), ok)``.
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
    mask = None
    if window is not None:
        mask = _band_mask(t, s, window, tl, sl)
    whole = isinstance(tl, int) and isinstance(sl, int) and (tl, sl) == (t, s)
    if not whole:
        valid = (jnp.arange(t)[:, None] < tl) & (jnp.arange(s)[None, :] < sl)
        mask = valid if mask is None else mask & valid
    if mask is not None:
        cost = jnp.where(mask, cost, jnp.inf)
    if t > s:  # put the shorter sequence along the anti-diagonals
        cost, tl, sl = cost.T, sl, tl
    k_end = jnp.asarray(tl, jnp.int32) + jnp.asarray(sl, jnp.int32) - 2
    i_end = jnp.asarray(tl, jnp.int32) - 1
    return _skew(cost), (k_end, i_end, lengths is not None), ok


def _skew(cost: jax.Array) -> jax.Array:
    """``[t, s] -> [t + s - 1, t]`` with ``out[k, i] = cost[i, k - i]`` (``+inf`` off the matrix).

    A pad-and-reshape (no gather): row ``i`` of the padded ``[t, s + t]`` matrix read with row
    length ``s + t - 1`` is shifted right by ``i``. Its transpose (the gradient) is the inverse.
    """
    t, s = cost.shape
    padded = jnp.pad(cost, ((0, 0), (0, t)), constant_values=jnp.inf)
    flat = padded.reshape(-1)[: t * (s + t - 1)]
    return flat.reshape(t, s + t - 1).T


# --------------------------------------------------------------------------------------------
# The wavefront recursions.
# --------------------------------------------------------------------------------------------


def _predecessors(r1, r2, k, inf1):
    """The three predecessors of the cells of diagonal ``k``, from diagonals ``k-1``, ``k-2``."""
    start = jnp.where(k == 0, jnp.zeros_like(inf1), inf1)  # R[-1, -1] = 0 starts the path
    d = jnp.concatenate([start, r2[:-1]])  # R[i - 1, j - 1]
    u = jnp.concatenate([inf1, r1[:-1]])  # R[i - 1, j]
    return d, u, r1  # and R[i, j - 1]


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


def _forward(skew, gamma, k_end, i_end, *, soft: bool, store: bool):
    """Runs the DP over anti-diagonals; returns the value at ``(k_end, i_end)`` and residuals.

    ``k_end = i_end = None`` means the last cell. The residuals (``store=True``) are the DP table
    itself, ``R`` in the skewed layout, emitted two diagonals late (``res[k] = R[k - 2]``) so that
    the backward scan reads the predecessors of diagonal ``k`` at step ``k``; plus the
    second-to-last diagonal. The backward recomputes the transition probabilities from them
    (one stored array instead of four: the forward is bound by memory traffic, not by exp).
    """
    n_diag, t = skew.shape
    dtype = skew.dtype
    inf1 = jnp.full((1,), jnp.inf, dtype)
    if soft:
        gamma = jnp.asarray(gamma, dtype)
    dynamic_end = k_end is not None

    def step(carry, xs):
        r1, r2, value = carry  # R on diagonals k - 1 and k - 2
        c, k = xs
        d, u, left = _predecessors(r1, r2, k, inf1)
        smin, _ = _softmin3(d, u, left, gamma, soft=soft, probs=False)
        r = c + smin
        if dynamic_end:
            value = jnp.where(k == k_end, r[i_end], value)
        return (r, r1, value), (r2 if store else None)

    inf_t = jnp.full((t,), jnp.inf, dtype)
    init = (inf_t, inf_t, jnp.zeros((), dtype))
    ks = jnp.arange(n_diag, dtype=jnp.int32)
    (r_last, r_prev, value), res = jax.lax.scan(step, init, (skew, ks))
    if not dynamic_end:
        value = r_last[t - 1]
    return value, ((res, r_prev) if store else None)


def _backward(res, gamma, g, k_end, i_end, *, soft: bool, entropy: bool = False):
    """Backward recursion: ``E[cell] = sum over successors of p(successor -> cell) E[successor]``.

    Seeded with ``g`` at ``(k_end, i_end)`` (``None``: the last cell). Returns ``E`` in the skewed
    layout (the gradient of the value with respect to the skewed cost) and, if ``entropy``,
    ``-sum(E * H)``, the derivative in gamma (``H`` the entropy of each cell's soft-min weights).
    """
    r_lag2, r_prev = res
    n_diag, t = r_lag2.shape
    dtype = r_lag2.dtype
    iota = jnp.arange(t, dtype=jnp.int32)
    zero1 = jnp.zeros((1,), dtype)
    inf1 = jnp.full((1,), jnp.inf, dtype)
    g = jnp.asarray(g, dtype)
    dynamic_end = k_end is not None
    if soft:
        gamma = jnp.asarray(gamma, dtype)

    def shift_left(v):  # v'[i] = v[i + 1]: from cell i + 1 to its predecessor in row i
        return jnp.concatenate([v[1:], zero1])

    def step(carry, xs):
        r1, acc_k, acc_km1, g_gamma = carry  # R[k-1]; incoming E for diagonals k and k - 1
        r2, k = xs
        d, u, left = _predecessors(r1, r2, k, inf1)
        _, (pd, pu, pl, h) = _softmin3(d, u, left, gamma, soft=soft, probs=True)
        e = acc_k
        if dynamic_end:
            e = e + jnp.where((k == k_end) & (iota == i_end), g, 0.0)
        acc_next = acc_km1 + shift_left(pu * e) + pl * e
        acc_next2 = shift_left(pd * e)
        if entropy:  # summed once at the end: no reduction inside the loop
            g_gamma = g_gamma - e * h
        return (r2, acc_next, acc_next2, g_gamma), e

    zeros_t = jnp.zeros((t,), dtype)
    acc0 = zeros_t if dynamic_end else zeros_t.at[t - 1].set(g)
    init = (r_prev, acc0, zeros_t, zeros_t)
    ks = jnp.arange(n_diag, dtype=jnp.int32)
    (_, _, _, g_gamma), e = jax.lax.scan(step, init, (r_lag2, ks), reverse=True)
    return e, jnp.sum(g_gamma)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _soft_dtw_core(skew, gamma, k_end, i_end, dynamic_end):
    ends = (k_end, i_end) if dynamic_end else (None, None)
    value, _ = _forward(skew, gamma, *ends, soft=True, store=False)
    return value


def _soft_dtw_core_fwd(skew, gamma, k_end, i_end, dynamic_end):
    # symbolic_zeros: the primals come wrapped with a `perturbed` flag. The entropy term of the
    # derivative in gamma (a third of the backward's work) is skipped unless gamma is perturbed;
    # the flag travels to the backward as the static size of an empty array.
    gamma_flag = jnp.zeros((1 if gamma.perturbed else 0,), jnp.int8)
    skew, gamma, k_end, i_end = skew.value, gamma.value, k_end.value, i_end.value
    ends = (k_end, i_end) if dynamic_end else (None, None)
    value, res = _forward(skew, gamma, *ends, soft=True, store=True)
    return value, (res, gamma, k_end, i_end, gamma_flag)


def _soft_dtw_core_bwd(dynamic_end, saved, g):
    res, gamma, k_end, i_end, gamma_flag = saved
    want_gamma = gamma_flag.shape[0] == 1
    if isinstance(g, jax.custom_derivatives.SymbolicZero):
        g = jnp.zeros((), res[0].dtype)
    ends = (k_end, i_end) if dynamic_end else (None, None)
    e, g_gamma = _backward(res, gamma, g, *ends, soft=True, entropy=want_gamma)
    g_gamma = g_gamma.astype(jnp.result_type(gamma)) if want_gamma else None
    return e, g_gamma, None, None


_soft_dtw_core.defvjp(_soft_dtw_core_fwd, _soft_dtw_core_bwd, symbolic_zeros=True)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _dtw_core(skew, k_end, i_end, dynamic_end):
    ends = (k_end, i_end) if dynamic_end else (None, None)
    value, _ = _forward(skew, None, *ends, soft=False, store=False)
    return value


def _dtw_core_fwd(skew, k_end, i_end, dynamic_end):
    ends = (k_end, i_end) if dynamic_end else (None, None)
    value, res = _forward(skew, None, *ends, soft=False, store=True)
    return value, (res, k_end, i_end)


def _dtw_core_bwd(dynamic_end, saved, g):
    res, k_end, i_end = saved
    ends = (k_end, i_end) if dynamic_end else (None, None)
    e, _ = _backward(res, None, g, *ends, soft=False)
    return e, None, None


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
      >>> from alignment.costs import absolute_difference
      >>> a = jnp.array([1.0, 1, 3, 3, 2, 4]); b = jnp.array([1.0, 3, 2, 2, 4, 4])
      >>> float(dtw(absolute_difference(a, b)))
      0.0
    """
    skew, ends, ok = _prepare(cost, window, lengths)
    return _flag_invalid(_dtw_core(skew, *ends), ok)


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
      >>> from alignment.costs import squared_euclidean
      >>> x = jnp.linspace(0, 1, 5)[:, None]; y = jnp.linspace(0, 1, 7)[:, None] ** 2
      >>> value, grad = jax.value_and_grad(soft_dtw)(squared_euclidean(x, y), gamma=0.1)
      >>> grad.shape
      (5, 7)
    """
    check_positive(gamma, "gamma")
    skew, ends, ok = _prepare(cost, window, lengths)
    gamma = jnp.asarray(gamma, skew.dtype)
    return _flag_invalid(_soft_dtw_core(skew, gamma, *ends), ok)


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
        :func:`alignment.costs.absolute_difference`).
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
