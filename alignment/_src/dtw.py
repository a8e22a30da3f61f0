"""Dynamic time warping: exact DTW (value, alignment, band) and soft-DTW (value, alignment,
divergence).

Conventions, shared by every function here:

* The input is a cost matrix ``cost: [t, s]`` between a sequence of length ``t`` and one of
  length ``s`` (build it with a cost function such as ``squared_euclidean``, or use the
  ``*_points`` forms that take the sequences and a ``cost_fn``). A path starts at ``(0, 0)``,
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
* ``itakura_max_slope = S`` is the Itakura parallelogram (tslearn's
  ``global_constraint="itakura"``), the other band; pass at most one of the two. Column ``j``
  admits the rows ``i`` with

      ``max(j t / (S s), (t - 1) - S t (s - 1 - j) / s) - 1/200 <= i``
      ``i <= min(S t j / s, (t - 1) - t (s - 1 - j) / (S s)) + 1/200``,

  the parallelogram through ``(0, 0)`` and ``(t - 1, s - 1)`` whose sides have slopes
  ``S t / s`` and ``t / (S s)``. The ``1/200`` is tslearn's rounding of the bounds to two
  decimals: the cells are those of ``tslearn.metrics.itakura_mask(t, s, S)`` (except where a
  bound falls exactly half-way between two hundredths, where tslearn's float rounding decides).
  ``S`` is a static Python float ``>= 1``, used as the nearest fraction ``p / q`` with
  ``q <= 100`` (``2``, ``1.5``, ``4 / 3`` exactly), and the band is computed in exact integer
  arithmetic (int32, or int64 under ``jax_enable_x64`` for costs with
  ``max(t s, 200 s) max(p, q) >= 2**31``, which otherwise raise ``ValueError``). It admits a
  path only if ``S`` is at least about ``max(t / s, s / t)``; otherwise ``ValueError``.
* ``lengths = (t_valid, s_valid)`` declares that only ``cost[:t_valid, :s_valid]`` is real and the
  rest is padding: the value, gradient and alignment are exactly those of the unpadded problem and
  the gradient on padding is zero. With ``window`` or ``itakura_max_slope``, the band is that
  of the valid rectangle (``t, s`` above are the valid lengths). Use it with ``jax.vmap`` over
  padded batches. The ``*_points`` forms and the divergence zero the padded rows of ``x`` and
  ``y`` before calling ``cost_fn``, so whatever the padding holds (NaN, inf, 1e30) changes
  neither values nor gradients.
* ``gamma`` is the soft-min temperature of ``docs/conventions.md``:
  ``softmin_gamma(a) = -gamma log sum exp(-a / gamma)``; larger is smoother.

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
The derivative in ``gamma`` is computed only when ``gamma`` is differentiated. float16 and
bfloat16 costs are computed in float32 and the result is cast back.

Bad input (``docs/conventions.md``): shapes, ``window`` (a static int), ``itakura_max_slope``
(a static float) and the form of ``lengths`` are checked at trace time and raise
``ValueError``, also under ``jit``; concrete ``gamma <= 0`` / non-finite and concrete
``lengths`` outside ``[1, t] x [1, s]`` raise; traced ones give NaN outputs (every floating
output, alignments included). Costs must otherwise be finite (``+inf`` marks a forbidden cell;
``-inf`` is not supported). A NaN in the admitted part of ``cost`` propagates to the value.
Padding (beyond ``lengths``) is never read. When no admitted path exists under ``jit`` (a
traced ``lengths`` with ``window = 0`` and unequal lengths, or with an Itakura band too narrow
for them), the value is ``+inf`` with a zero gradient.
"""

from __future__ import annotations

import fractions
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from alignment._src import checks
from alignment._src import costs as _costs
from alignment._src.checks import as_float_array, check_matrix

__all__ = [
    "alignment_to_path",
    "dtw",
    "dtw_alignment",
    "dtw_points",
    "soft_dtw",
    "soft_dtw_alignment",
    "soft_dtw_divergence",
    "soft_dtw_points",
]

CostFn = Callable[[jax.Array, jax.Array], jax.Array]


# --------------------------------------------------------------------------------------------
# Validation of the inputs (shapes, band, lengths, gamma): clear errors before any tracing.
# --------------------------------------------------------------------------------------------


def _check_window_zero(window, tl, sl) -> None:
    if window == 0 and isinstance(tl, int) and isinstance(sl, int):
        if tl != sl and min(tl, sl) > 1:
            raise ValueError(
                f"`window`=0 admits no warping path for sequences of lengths {tl} and {sl}: "
                "only equal lengths can follow the diagonal exactly. Use window >= 1."
            )


_ITAKURA_MAX_DENOMINATOR = 100  # the slope is used as the nearest fraction p / q with q <= 100
_INT32_MAX = 2**31 - 1


def _itakura_fraction(value) -> tuple[int, int]:
    """``itakura_max_slope`` (a static real number ``>= 1``) as the fraction ``(p, q)`` used."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(
            "`itakura_max_slope` must be None or a Python float >= 1 (static), got "
            f"{value!r} of type {type(value).__name__}."
        )
    v = float(value)
    if not math.isfinite(v) or v < 1.0:
        raise ValueError(
            f"`itakura_max_slope` must be a finite number >= 1 (the steepest local slope of a "
            f"path; 1 admits only the diagonal), got {v!r}."
        )
    f = fractions.Fraction(v).limit_denominator(_ITAKURA_MAX_DENOMINATOR)
    return f.numerator, f.denominator


def _band_spec(window, itakura_max_slope):
    """The static band: ``None``, ``("window", r)`` or ``("itakura", p, q)``."""
    window = checks.static_int(window, "window", minimum=0, allow_none=True)
    if itakura_max_slope is None:
        return None if window is None else ("window", window)
    if window is not None:
        raise ValueError(
            "`window` (a Sakoe-Chiba band) and `itakura_max_slope` (an Itakura parallelogram) "
            f"are two different bands: pass at most one, got window={window!r} and "
            f"itakura_max_slope={itakura_max_slope!r}."
        )
    return ("itakura", *_itakura_fraction(itakura_max_slope))


def _itakura_int_dtype(shape, p: int, q: int):
    """The integer dtype in which the Itakura bounds of a ``shape`` cost are exact."""
    t, s = shape
    largest = max(t * s, 200 * s) * max(p, q)
    if largest <= _INT32_MAX:
        return jnp.int32
    if jax.config.read("jax_enable_x64"):
        return jnp.int64
    raise ValueError(
        f"`itakura_max_slope`={p}/{q} on a cost of shape {tuple(shape)}: the exact band needs "
        f"integers up to {largest}, beyond int32. Enable float64/int64 "
        "(jax.config.update('jax_enable_x64', True)) or use a slope with a smaller denominator."
    )


def _itakura_bounds_host(t: int, s: int, p: int, q: int) -> tuple[np.ndarray, np.ndarray]:
    """First and last admitted row of each column, exactly (Python integers); see _band_bounds."""
    j = np.arange(s, dtype=np.int64)
    k = s - 1 - j
    lo = np.maximum(_ceil_slack(j * t * q, p * s), (t - 1) - _floor_slack(k * t * p, q * s))
    hi = np.minimum(_floor_slack(j * t * p, q * s), (t - 1) - _ceil_slack(k * t * q, p * s))
    return lo, hi


@functools.lru_cache(maxsize=1024)
def _itakura_feasible(t: int, s: int, p: int, q: int) -> bool:
    """Whether the Itakura band of slope ``p / q`` on a ``t x s`` grid admits a warping path.

    Each column admits an interval of rows, so the rows reachable from ``(0, 0)`` in column ``j``
    form an interval ``[a_j, hi_j]``: entered from column ``j - 1`` by a horizontal or diagonal
    step, then extended downwards.
    """
    lo, hi = _itakura_bounds_host(t, s, p, q)
    lo, hi = np.maximum(lo, 0), np.minimum(hi, t - 1)
    if lo[0] > 0 or hi[0] < 0:
        return False
    a = 0
    for j in range(1, s):
        a = max(a, int(lo[j]))
        if a > min(int(hi[j - 1]) + 1, int(hi[j])):
            return False
    return a <= t - 1 <= int(hi[s - 1])


def _check_band(band, tl, sl, itakura_max_slope) -> None:
    """Raises ``ValueError`` when a band admits no path for concrete valid lengths."""
    if band is None or not (isinstance(tl, int) and isinstance(sl, int)):
        return
    if band[0] == "window":
        _check_window_zero(band[1], tl, sl)
    elif not _itakura_feasible(tl, sl, band[1], band[2]):
        raise ValueError(
            f"`itakura_max_slope`={itakura_max_slope!r} admits no warping path for sequences of "
            f"lengths {tl} and {sl}: the parallelogram from (0, 0) to ({tl - 1}, {sl - 1}) is "
            "too narrow for their ratio (the cells of tslearn's itakura_mask). Use a larger "
            f"slope, about max(t/s, s/t) = {max(tl / sl, sl / tl):.3g} or more."
        )


def _bad(flag):
    return jnp.asarray(False) if flag is None else flag


def _prepare(cost, window, itakura_max_slope, lengths):
    """Validates the inputs. Returns ``(cost, t_valid, s_valid, band, dynamic_end, bad)``.

    ``bad`` is a traced flag for traced lengths out of range (``False`` otherwise).
    """
    cost = as_float_array(cost, "cost")
    check_matrix(cost, "cost")
    band = _band_spec(window, itakura_max_slope)
    t, s = cost.shape
    if band is not None and band[0] == "itakura":
        _itakura_int_dtype((t, s), band[1], band[2])
    tl, sl, bad = checks.lengths_pair(lengths, (t, s))
    _check_band(band, tl, sl, itakura_max_slope)
    tl = jnp.asarray(tl, jnp.int32)
    sl = jnp.asarray(sl, jnp.int32)
    return cost, tl, sl, band, lengths is not None, _bad(bad)


_TWO_D_COSTS = (
    _costs.squared_euclidean,
    _costs.euclidean,
    _costs.cosine_similarity,
    _costs.cosine_distance,
    _costs.linear_kernel,
    _costs.polynomial_kernel,
    _costs.rbf_kernel,
)


def _sequence(v, name: str, cost_fn) -> jax.Array:
    v = as_float_array(v, name)
    if v.ndim not in (1, 2):
        raise ValueError(
            f"`{name}` must be a sequence of shape [length, d] (or [length] for a 1-D series), "
            f"got shape {v.shape}."
        )
    if v.shape[0] == 0:
        raise ValueError(f"`{name}` must be non-empty, got shape {v.shape} (an empty sequence).")
    if v.ndim == 1 and any(cost_fn is f for f in _TWO_D_COSTS):
        v = v[:, None]  # a 1-D series is a sequence of 1-D points for the built-in costs
    return v


def _row_mask(v, valid):
    mask = jnp.arange(v.shape[0]) < valid
    return mask.reshape((-1,) + (1,) * (v.ndim - 1))


def _masked_cost(x, y, cost_fn, tl, sl, padded: bool) -> jax.Array:
    """``cost_fn`` on the valid rows: padded rows are zeroed before the call (a ``where``, so
    neither their values nor their gradients reach anything) and the padded part of the cost is
    zeroed after it."""
    t, s = x.shape[0], y.shape[0]
    if padded:
        x = jnp.where(_row_mask(x, tl), x, jnp.zeros((), x.dtype))
        y = jnp.where(_row_mask(y, sl), y, jnp.zeros((), y.dtype))
    if cost_fn is None or not callable(cost_fn):
        raise ValueError(f"`cost_fn` must be a callable (x, y) -> [t, s] cost, got {cost_fn!r}.")
    cost = as_float_array(cost_fn(x, y), "cost_fn(x, y)")
    if cost.shape != (t, s):
        raise ValueError(
            f"`cost_fn(x, y)` must return a cost of shape [t, s] = {(t, s)} for x: {x.shape} "
            f"and y: {y.shape}, got shape {cost.shape}."
        )
    if padded:
        valid = (jnp.arange(t)[:, None] < tl) & (jnp.arange(s)[None, :] < sl)
        cost = jnp.where(valid, cost, jnp.zeros((), cost.dtype))
    return cost


def _prepare_points(x, y, cost_fn, window, itakura_max_slope, lengths):
    x = _sequence(x, "x", cost_fn)
    y = _sequence(y, "y", cost_fn)
    band = _band_spec(window, itakura_max_slope)
    t, s = x.shape[0], y.shape[0]
    if band is not None and band[0] == "itakura":
        _itakura_int_dtype((t, s), band[1], band[2])
        _itakura_int_dtype((t, t), band[1], band[2])  # the divergence's self terms
        _itakura_int_dtype((s, s), band[1], band[2])
    tl, sl, bad = checks.lengths_pair(lengths, (t, s))
    _check_band(band, tl, sl, itakura_max_slope)
    return x, y, tl, sl, band, lengths is not None, _bad(bad)


# --------------------------------------------------------------------------------------------
# The wavefront recursions. Diagonal k holds the cells (i, j) with i + j = k, one per "lane":
# lane l is row i = l when t <= s, column j = l otherwise, so that the shorter sequence spans
# the lanes (min(t, s) of them) and t + s - 1 steps sweep the matrix. Each step gathers its
# cells straight from the [t, s] cost (no skewed copy, no transposes), cells outside the
# matrix, the band or the valid lengths reading +inf.
# --------------------------------------------------------------------------------------------


def _ceil_slack(n, d):
    """``ceil(n / d - 1 / 200)`` for integers ``n >= 0``, ``d > 0``, exactly (NumPy or JAX)."""
    quotient, rest = n // d, n % d
    return quotient + (200 * rest > d).astype(quotient.dtype)


def _floor_slack(n, d):
    """``floor(n / d + 1 / 200)`` for integers ``n >= 0``, ``d > 0``, exactly (NumPy or JAX)."""
    quotient, rest = n // d, n % d
    return quotient + (200 * rest >= 199 * d).astype(quotient.dtype)


def _band_bounds(shape, tl, sl, band):
    """Per-column row bounds ``(lo, hi)``, int arrays ``[s]``, of the Itakura band (else None).

    With ``T, U`` the valid lengths and slope ``S = p / q``, column ``j`` admits the rows ``i``
    with ``max(j T / (S U), (T-1) - S T (U-1-j) / U) - 1/200 <= i
    <= min(S T j / U, (T-1) - T (U-1-j) / (S U)) + 1/200``: tslearn's ``itakura_mask``, whose
    bounds are rounded to two decimals before ``ceil`` / ``floor`` (the ``1/200`` slack). Each
    bound is ``n / d`` for integers ``n, d``, so the band is computed in exact integer
    arithmetic (no float rounding, whatever the lengths).
    """
    if band is None or band[0] != "itakura":
        return None
    _, p, q = band
    s = shape[1]
    itype = _itakura_int_dtype(shape, p, q)
    big_t, big_u = jnp.asarray(tl).astype(itype), jnp.asarray(sl).astype(itype)
    j = jnp.minimum(jnp.arange(s, dtype=itype), big_u - 1)  # columns past s_valid: unused
    k = big_u - 1 - j
    lo = jnp.maximum(
        _ceil_slack(j * big_t * q, p * big_u),
        (big_t - 1) - _floor_slack(k * big_t * p, q * big_u),
    )
    hi = jnp.minimum(
        _floor_slack(j * big_t * p, q * big_u),
        (big_t - 1) - _ceil_slack(k * big_t * q, p * big_u),
    )
    return lo.astype(jnp.int32), hi.astype(jnp.int32)


def _admitted(i, j, shape, tl, sl, band, bounds):
    """Whether cells ``(i, j)`` lie in the valid rectangle and the band (int arrays, any shape)."""
    valid = (i >= 0) & (j >= 0) & (i < tl) & (j < sl)
    if band is None:
        return valid
    if band[0] == "window":
        tl1, sl1 = tl - 1, sl - 1
        return valid & (jnp.abs(i * sl1 - j * tl1) <= band[1] * jnp.maximum(tl1, sl1))
    lo, hi = bounds
    jc = jnp.clip(j, 0, shape[1] - 1)
    return valid & (i >= lo[jc]) & (i <= hi[jc])


def _band_mask(shape, tl, sl, band) -> jax.Array:
    """The admitted cells of a ``shape`` cost as a bool ``[t, s]`` array (for tests and docs)."""
    t, s = shape
    tl, sl = jnp.asarray(tl, jnp.int32), jnp.asarray(sl, jnp.int32)
    i = jnp.arange(t, dtype=jnp.int32)[:, None]
    j = jnp.arange(s, dtype=jnp.int32)[None, :]
    return _admitted(i, j, shape, tl, sl, band, _band_bounds(shape, tl, sl, band))


def _diagonal_cost(flat, k, lane, shape, tl, sl, band, bounds):
    """The costs of diagonal ``k`` (``+inf`` where not admitted), one per lane."""
    t, s = shape
    i, j = (k - lane, lane) if t > s else (lane, k - lane)
    valid = _admitted(i, j, shape, tl, sl, band, bounds)
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
    band, dynamic_end = static
    t, s = cost.shape
    n_diag, n_lane, transposed = t + s - 1, min(t, s), t > s
    dtype = cost.dtype
    inf1 = jnp.full((1,), jnp.inf, dtype)
    flat = cost.reshape(-1)
    bounds = _band_bounds(cost.shape, tl, sl, band)
    lane = jnp.arange(n_lane, dtype=jnp.int32)
    k_end, l_end = _end(cost.shape, tl, sl)
    if soft:
        gamma = jnp.asarray(gamma, dtype)

    def step(carry, k):
        r1, r2, delta, offset, value = carry  # rel on diagonals k-1, k-2; off_{k-2} - off_{k-1}
        c = _diagonal_cost(flat, k, lane, cost.shape, tl, sl, band, bounds)
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
    return value, (res, gamma, tl, sl, gamma_flag, shape, value)


def _unreachable_zero(g, value):
    """The incoming cotangent, zeroed where no admitted path exists (value ``+inf``)."""
    return jnp.where(value == jnp.inf, jnp.zeros_like(g), g)


def _soft_dtw_core_bwd(static, saved, g):
    res, gamma, tl, sl, gamma_flag, shape, value = saved
    want_gamma = gamma_flag.shape[0] == 1
    if isinstance(g, jax.custom_derivatives.SymbolicZero):
        g = jnp.zeros((), jnp.result_type(gamma))
    g = _unreachable_zero(g, value)
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
    return value, (res, tl, sl, jnp.zeros((0, *cost.shape), jnp.int8), value)


def _dtw_core_bwd(static, saved, g):
    res, tl, sl, shape, value = saved
    grad, _ = _backward(
        res, None, _unreachable_zero(g, value), tl, sl, static, shape.shape[1:], soft=False
    )
    return grad, None, None


_dtw_core.defvjp(_dtw_core_fwd, _dtw_core_bwd)


# --------------------------------------------------------------------------------------------
# Jitted cores: the public functions validate in Python and call these, so that eager calls
# hit the compile cache; they compose with the caller's jit, vmap and grad.
# --------------------------------------------------------------------------------------------


def _soft_gamma(gamma, dtype):
    bad = checks.invalid_scalar(gamma, "positive")
    return jnp.where(bad, 1.0, gamma).astype(dtype), bad


@functools.partial(jax.jit, static_argnames=("band", "dynamic_end", "mode"))
def _run(cost, gamma, tl, sl, bad, *, band, dynamic_end, mode):
    """One of ``dtw``, ``dtw_alignment``, ``soft_dtw``, ``soft_dtw_alignment`` on a validated
    cost, with the NaN policy for traced bad values (``bad``, or a bad traced ``gamma``)."""
    dtype = cost.dtype
    cost = cost.astype(checks.compute_dtype(dtype))
    static = (band, dynamic_end)
    if mode == "dtw":
        out = _dtw_core(cost, tl, sl, static)
    elif mode == "dtw_alignment":
        value, grad = jax.value_and_grad(_dtw_core)(cost, tl, sl, static)
        # A NaN cost on the path makes the value NaN; the alignment says so too (the
        # derivative in the end cell's own cost would otherwise hide it).
        out = (value, checks.nan_if(jnp.isnan(value), grad))
    else:
        gamma, bad_gamma = _soft_gamma(gamma, cost.dtype)
        bad = bad | bad_gamma
        if mode == "soft_dtw":
            out = _soft_dtw_core(cost, gamma, tl, sl, static)
        else:
            value, grad = jax.value_and_grad(_soft_dtw_core)(cost, gamma, tl, sl, static)
            out = checks.nan_if(jnp.isnan(value), grad)
    out = checks.nan_if(bad, out)
    return jax.tree.map(lambda v: v.astype(dtype), out)


@functools.partial(jax.jit, static_argnames=("band", "dynamic_end"))
def _divergence_core(cxy, cxx, cyy, gamma, tl, sl, bad, same, *, band, dynamic_end):
    dtype = cxy.dtype
    work = checks.compute_dtype(dtype)
    gamma, bad_gamma = _soft_gamma(gamma, work)
    static = (band, dynamic_end)
    xy = _soft_dtw_core(cxy.astype(work), gamma, tl, sl, static)
    xx = _soft_dtw_core(cxx.astype(work), gamma, tl, tl, static)
    yy = _soft_dtw_core(cyy.astype(work), gamma, sl, sl, static)
    div = xy - 0.5 * (xx + yy)
    # Never negative (rounding, or vmap batching the three terms differently, can leave -1e-6
    # at x == y) and exactly 0 for identical inputs; NaN stays NaN. Both wheres have finite
    # gradients on both sides (the true gradient at x == y is 0: the minimum).
    div = jnp.where(same | (div < 0), jnp.zeros((), work), div)
    return checks.nan_if(bad | bad_gamma, div).astype(dtype)


# --------------------------------------------------------------------------------------------
# Public API.
# --------------------------------------------------------------------------------------------


def dtw(
    cost: jax.typing.ArrayLike,
    *,
    window: int | None = None,
    itakura_max_slope: float | None = None,
    lengths: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] | None = None,
) -> jax.Array:
    """Exact dynamic time warping: the minimum sum of costs over warping paths.

    Differentiable almost everywhere: the gradient with respect to ``cost`` is the optimal path's
    0/1 indicator (see :func:`dtw_alignment`).

    Bad input: ``cost`` that is ``None``, complex, not 2-D or empty, a ``window`` that is not a
    Python int ``>= 0`` (``1.5``, ``True``, arrays) or admits no path, an ``itakura_max_slope``
    that is not a real number ``>= 1`` (arrays, complex, NaN) or admits no path, both bands at
    once, and ``lengths`` that are not a pair of integer scalars raise ``ValueError``, also under
    ``jit``; concrete ``lengths`` outside ``[1, t] x [1, s]`` raise, traced ones give NaN.
    Padding is never read. See ``docs/conventions.md``.

    Args:
      cost: Array of shape ``[t, s]``, the pairwise cost between the two sequences.
      window: Sakoe-Chiba band half-width along the rectangle's diagonal (static ``int >= 0``),
        or ``None`` for no band. See the module docstring for the exact cells admitted.
      itakura_max_slope: Itakura parallelogram of maximum local slope ``S >= 1`` (static float,
        tslearn's ``itakura_max_slope``), or ``None``. Not together with ``window``; see the
        module docstring for the exact cells admitted.
      lengths: Optional pair ``(t_valid, s_valid)`` of integer scalars (traced is fine) for padded
        inputs: only ``cost[:t_valid, :s_valid]`` is used.

    Returns:
      Scalar, the cost of the optimal path (DTW squared for a squared Euclidean cost).

    Raises:
      ValueError: ``cost`` is not a non-empty 2-D array, ``window`` is negative or admits no
        path, ``itakura_max_slope`` is below 1 or admits no path, both bands are given, or
        concrete ``lengths`` fall outside the array.

    Examples:
      The lecture's example: two utterances 1,1,3,3,2,4 and 1,3,2,2,4,4 align at zero cost.

      >>> import jax.numpy as jnp
      >>> from alignment import absolute_difference
      >>> a = jnp.array([1.0, 1, 3, 3, 2, 4]); b = jnp.array([1.0, 3, 2, 2, 4, 4])
      >>> float(dtw(absolute_difference(a, b)))
      0.0

      An Itakura band (slopes between 1/2 and 2) forbids the long vertical and horizontal runs
      that absorb the two tempos, and the cost rises:

      >>> float(dtw(absolute_difference(a, b), itakura_max_slope=2.0))
      5.0
    """
    cost, tl, sl, band, dynamic_end, bad = _prepare(cost, window, itakura_max_slope, lengths)
    return _run(cost, None, tl, sl, bad, band=band, dynamic_end=dynamic_end, mode="dtw")


def dtw_alignment(
    cost: jax.typing.ArrayLike,
    *,
    window: int | None = None,
    itakura_max_slope: float | None = None,
    lengths: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Exact DTW and its optimal path, as a fixed-shape 0/1 alignment matrix (jittable).

    The hard counterpart of :func:`soft_dtw_alignment`. Ties between predecessors are broken in
    the order diagonal, ``(i - 1, j)``, ``(i, j - 1)``. Use :func:`alignment_to_path` on the host
    to get the path as index pairs.

    Bad input: as :func:`dtw`. Under ``jit``, traced ``lengths`` out of range make both outputs
    all NaN (the alignment matrix is a float array, so the NaN policy applies to it as well;
    :func:`alignment_to_path` rejects it); a NaN in the admitted cost makes both NaN. See
    ``docs/conventions.md``.

    Args:
      cost: Array of shape ``[t, s]``.
      window: As in :func:`dtw`.
      itakura_max_slope: As in :func:`dtw`.
      lengths: As in :func:`dtw`; padding cells are 0 in the alignment.

    Returns:
      ``(value, alignment)``: the scalar DTW value and an array of shape ``[t, s]`` (dtype of
      ``cost``) with 1 on the cells of the optimal path and 0 elsewhere.

    Examples:
      >>> import jax.numpy as jnp
      >>> value, a = dtw_alignment(jnp.array([[0.0, 1.0, 5.0], [4.0, 0.0, 0.0]]))
      >>> float(value), alignment_to_path(a).tolist()
      (0.0, [[0, 0], [1, 1], [1, 2]])
    """
    cost, tl, sl, band, dynamic_end, bad = _prepare(cost, window, itakura_max_slope, lengths)
    return _run(cost, None, tl, sl, bad, band=band, dynamic_end=dynamic_end, mode="dtw_alignment")


def alignment_to_path(alignment: jax.typing.ArrayLike) -> np.ndarray:
    """Host-side helper: the cells of a 0/1 alignment matrix as index pairs in path order.

    Bad input: ``ValueError`` for ``None``, complex or non-2-D input, NaN entries (what a traced
    bad call of :func:`dtw_alignment` returns), entries other than 0 and 1 (a soft alignment),
    and ones that do not form a warping path from ``(0, 0)`` with steps ``(1, 0)``, ``(0, 1)``,
    ``(1, 1)``. It is a host function (not jittable), so these are always checked. See
    ``docs/conventions.md``.

    Args:
      alignment: Array of shape ``[t, s]``, as returned by :func:`dtw_alignment` (not jittable:
        the number of pairs depends on the values).

    Returns:
      NumPy integer array of shape ``[l, 2]`` with rows ``(i, j)`` ordered along the path.
    """
    if alignment is None:
        raise ValueError("`alignment` must be a 2-D array [t, s], got None.")
    if isinstance(alignment, jax.core.Tracer):
        raise ValueError(
            "`alignment_to_path` runs on the host: call it outside jit/vmap on a concrete "
            "alignment matrix."
        )
    a = np.asarray(alignment)
    if np.iscomplexobj(a):
        raise ValueError(f"`alignment` must be real, got complex dtype {a.dtype}.")
    if a.ndim != 2:
        raise ValueError(f"`alignment` must be a 2-D array [t, s], got shape {a.shape}.")
    a = a.astype(np.float64)
    if np.isnan(a).any():
        raise ValueError(
            f"`alignment` contains NaN ({int(np.isnan(a).sum())} of {a.size} entries): the call "
            "that produced it had bad input (see docs/conventions.md)."
        )
    if not np.isin(a, (0.0, 1.0)).all():
        bad = a[~np.isin(a, (0.0, 1.0))][:3]
        raise ValueError(
            f"`alignment` must be a 0/1 matrix (from dtw_alignment), got entries such as "
            f"{bad.tolist()}; for a soft alignment, threshold or take the hard path first."
        )
    path = np.argwhere(a == 1.0)  # row-major order is path order for a monotone path
    steps = np.diff(path, axis=0)
    ok_steps = np.isin(steps, (0, 1)).all(axis=1) & (steps.sum(axis=1) >= 1)
    if len(path) == 0 or tuple(path[0]) != (0, 0) or not ok_steps.all():
        raise ValueError(
            "`alignment` is not a warping path: its 1s must start at (0, 0) and move by (1, 0), "
            f"(0, 1) or (1, 1), got cells {path[:6].tolist()}{' ...' if len(path) > 6 else ''}."
        )
    return path


def soft_dtw(
    cost: jax.typing.ArrayLike,
    *,
    gamma: jax.typing.ArrayLike = 1.0,
    window: int | None = None,
    itakura_max_slope: float | None = None,
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

    Bad input: as :func:`dtw` (including the band), plus ``gamma``: ``None``, complex or
    array-valued (``[1, 2]``) raises ``ValueError`` even under ``jit``; a concrete ``gamma``
    that is not finite and positive raises; under ``jit`` it gives NaN (as do traced
    ``lengths`` out of range). See ``docs/conventions.md``.

    Args:
      cost: Array of shape ``[t, s]``.
      gamma: Positive smoothing parameter (traced, differentiable): the soft-min temperature of
        ``docs/conventions.md`` (larger is smoother).
      window: As in :func:`dtw`.
      itakura_max_slope: As in :func:`dtw`.
      lengths: As in :func:`dtw`.

    Returns:
      Scalar soft-DTW value.

    Raises:
      ValueError: bad ``cost``, band or ``lengths`` (see :func:`dtw`), or a concrete
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
    checks.scalar(gamma, "gamma", "positive")
    cost, tl, sl, band, dynamic_end, bad = _prepare(cost, window, itakura_max_slope, lengths)
    return _run(cost, gamma, tl, sl, bad, band=band, dynamic_end=dynamic_end, mode="soft_dtw")


def soft_dtw_alignment(
    cost: jax.typing.ArrayLike,
    *,
    gamma: jax.typing.ArrayLike = 1.0,
    window: int | None = None,
    itakura_max_slope: float | None = None,
    lengths: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] | None = None,
) -> jax.Array:
    """The expected alignment matrix of soft-DTW: the gradient of :func:`soft_dtw` in ``cost``.

    Entry ``(i, j)`` is the probability that the Gibbs distribution over warping paths (at
    temperature ``gamma``) passes through cell ``(i, j)``; it tends to the hard path of
    :func:`dtw_alignment` as ``gamma -> 0``.

    Bad input: as :func:`soft_dtw`; under ``jit`` a bad ``gamma`` or ``lengths`` makes the whole
    matrix NaN, and so does a NaN in the admitted cost (a NaN value). See
    ``docs/conventions.md``.

    Args:
      cost: Array of shape ``[t, s]``.
      gamma: Positive smoothing parameter (the soft-min temperature of ``docs/conventions.md``).
      window: As in :func:`dtw`.
      itakura_max_slope: As in :func:`dtw`.
      lengths: As in :func:`dtw`; padding gets 0.

    Returns:
      Array of shape ``[t, s]`` with entries in ``[0, 1]``; ``(0, 0)`` and the end cell are 1.
    """
    checks.scalar(gamma, "gamma", "positive")
    cost, tl, sl, band, dynamic_end, bad = _prepare(cost, window, itakura_max_slope, lengths)
    return _run(
        cost, gamma, tl, sl, bad, band=band, dynamic_end=dynamic_end, mode="soft_dtw_alignment"
    )


def dtw_points(
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    *,
    cost_fn: CostFn = _costs.squared_euclidean,
    window: int | None = None,
    itakura_max_slope: float | None = None,
    lengths: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] | None = None,
) -> jax.Array:
    """Exact DTW between two sequences: ``dtw(cost_fn(x, y), ...)``.

    Bad input: ``x``/``y`` that are ``None``, complex, empty or not of rank 1 or 2, and a
    ``cost_fn`` whose result is not ``[t, s]``, raise ``ValueError``; ``window``,
    ``itakura_max_slope`` and ``lengths`` as in :func:`dtw`. Padded rows (past ``lengths``)
    are zeroed before ``cost_fn`` sees them, so NaN, inf or 1e30 there changes neither the
    value nor the gradient. See ``docs/conventions.md``.

    Args:
      x: Array of shape ``[t, d]``, or ``[t]`` for a 1-D series (the built-in costs treat it as
        ``[t, 1]``; a custom ``cost_fn`` receives it as is).
      y: Array of shape ``[s, d]`` (or ``[s]``).
      cost_fn: Maps ``(x, y)`` to a ``[t, s]`` cost; squared Euclidean by default.
      window: As in :func:`dtw`.
      itakura_max_slope: As in :func:`dtw`.
      lengths: As in :func:`dtw` (valid lengths of ``x`` and ``y``).

    Returns:
      Scalar.
    """
    x, y, tl, sl, band, padded, bad = _prepare_points(
        x, y, cost_fn, window, itakura_max_slope, lengths
    )
    cost = _masked_cost(x, y, cost_fn, tl, sl, padded)
    tl, sl = jnp.asarray(tl, jnp.int32), jnp.asarray(sl, jnp.int32)
    return _run(cost, None, tl, sl, bad, band=band, dynamic_end=padded, mode="dtw")


def soft_dtw_points(
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    *,
    gamma: jax.typing.ArrayLike = 1.0,
    cost_fn: CostFn = _costs.squared_euclidean,
    window: int | None = None,
    itakura_max_slope: float | None = None,
    lengths: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] | None = None,
) -> jax.Array:
    """Soft-DTW between two sequences: ``soft_dtw(cost_fn(x, y), ...)``, differentiable in both.

    Bad input: as :func:`dtw_points` for the sequences, ``cost_fn``, the band and
    ``lengths``, and as :func:`soft_dtw` for ``gamma`` (concrete bad values raise, traced ones
    give NaN). Padded rows never influence the value or the gradient. See
    ``docs/conventions.md``.

    Args:
      x: Array of shape ``[t, d]``, or ``[t]`` for a 1-D series (see :func:`dtw_points`).
      y: Array of shape ``[s, d]`` (or ``[s]``).
      gamma: Positive smoothing parameter (the soft-min temperature of ``docs/conventions.md``).
      cost_fn: Maps ``(x, y)`` to a ``[t, s]`` cost; squared Euclidean (not halved) by default.
      window: As in :func:`dtw`.
      itakura_max_slope: As in :func:`dtw`.
      lengths: As in :func:`dtw` (valid lengths of ``x`` and ``y``): gradients on padded rows of
        ``x`` and ``y`` are zero.

    Returns:
      Scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.zeros((4, 2)); y = jnp.ones((6, 2))
      >>> round(float(soft_dtw_points(x, y, gamma=1e-3)), 2)  # at least 6 cells of cost 2
      12.0
    """
    checks.scalar(gamma, "gamma", "positive")
    x, y, tl, sl, band, padded, bad = _prepare_points(
        x, y, cost_fn, window, itakura_max_slope, lengths
    )
    cost = _masked_cost(x, y, cost_fn, tl, sl, padded)
    tl, sl = jnp.asarray(tl, jnp.int32), jnp.asarray(sl, jnp.int32)
    return _run(cost, gamma, tl, sl, bad, band=band, dynamic_end=padded, mode="soft_dtw")


def soft_dtw_divergence(
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    *,
    gamma: jax.typing.ArrayLike = 1.0,
    cost_fn: CostFn = _costs.squared_euclidean,
    window: int | None = None,
    itakura_max_slope: float | None = None,
    lengths: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] | None = None,
) -> jax.Array:
    """Soft-DTW divergence: ``sdtw(x, y) - (sdtw(x, x) + sdtw(y, y)) / 2``, clamped at 0.

    Exactly zero when ``x == y`` (on the valid rows, with equal lengths); plain soft-DTW is not:
    ``sdtw(x, x) < 0``. For the squared Euclidean cost (whose Gibbs kernel ``exp(-cost / gamma)``
    is positive definite) it is non-negative (Blondel et al. prove this without a ``window``);
    the result is clamped at 0 so that float rounding never makes it negative (its square root
    stays defined), with a zero gradient where the clamp acts. For a cost whose kernel is not
    positive definite, the clamp hides negative values.

    Bad input: as :func:`soft_dtw_points` (shapes, the band and the form of ``lengths`` raise
    ``ValueError`` even under ``jit``; concrete bad ``gamma``/``lengths`` raise, traced ones give
    NaN). Padded rows never influence the value or the gradient; NaN in valid rows propagates.
    See ``docs/conventions.md``.

    Args:
      x: Array of shape ``[t, d]`` (or ``[t]``, see :func:`dtw_points`).
      y: Array of shape ``[s, d]`` (or ``[s]``).
      gamma: Positive smoothing parameter (the soft-min temperature of ``docs/conventions.md``).
      cost_fn: Pairwise cost; squared Euclidean (not halved) by default.
      window: As in :func:`dtw`, applied to all three terms.
      itakura_max_slope: As in :func:`dtw`, applied to all three terms.
      lengths: Optional ``(t_valid, s_valid)`` for padded ``x`` and ``y``.

    Returns:
      Scalar divergence, ``>= 0``.

    References:
      Blondel, Mensch & Vert, "Differentiable Divergences Between Time Series", AISTATS 2021.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.linspace(0.0, 1.0, 6)[:, None]
      >>> float(soft_dtw_divergence(x, x, gamma=0.1))
      0.0
    """
    checks.scalar(gamma, "gamma", "positive")
    x, y, tl, sl, band, padded, bad = _prepare_points(
        x, y, cost_fn, window, itakura_max_slope, lengths
    )
    cxy = _masked_cost(x, y, cost_fn, tl, sl, padded)
    cxx = _masked_cost(x, x, cost_fn, tl, tl, padded)
    cyy = _masked_cost(y, y, cost_fn, sl, sl, padded)
    if x.shape == y.shape:
        rows = _row_mask(x, tl) if padded else True
        same = jnp.all(jnp.where(rows, x == y, True)) & (jnp.asarray(tl) == jnp.asarray(sl))
    else:
        same = jnp.asarray(False)
    tl, sl = jnp.asarray(tl, jnp.int32), jnp.asarray(sl, jnp.int32)
    return _divergence_core(cxy, cxx, cyy, gamma, tl, sl, bad, same, band=band, dynamic_end=padded)
