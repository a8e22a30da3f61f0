"""Averaging time series under DTW: the soft-DTW barycenter and DTW barycenter averaging (DBA).

Both take a padded set of series ``xs: [k, t_k, d]`` (``k`` series, padded length ``t_k``,
``d`` features) with optional ``lengths: [k]`` (series ``i`` is ``xs[i, :lengths[i]]``; the
padding is never read, whatever it holds) and ``weights: [k]`` (non-negative, normalised to sum
to 1; a zero-weight series is never read either). The barycenter ``z: [t, d]`` has the length of
``init`` (default: ``t = t_k``, the padded length).

The cost between frames is the squared Euclidean distance ``||z_i - x_j||^2``, **not halved**,
computed from exact differences. This is tslearn's convention too (``cdist(Z, X) ** 2`` in
``tslearn.barycenters.softdtw_barycenter``, ``dtw ** 2`` in its DBA cost), so for the same
barycenter our ``value`` is tslearn's objective divided by the sum of the weights: tslearn's
soft-DTW barycenter minimises ``sum_k w_k sdtw`` with ``w_k = 1`` by default (``k`` times ours,
the same minimiser) and its DBA reports the weighted mean of ``dtw ** 2`` (equal to ours).

Default ``init``: the weighted mean of the series, each linearly resampled from its valid
length to ``t_k`` (tslearn's ``TimeSeriesResampler`` followed by ``numpy.average``; for equal
lengths the plain weighted mean, as tslearn's ``euclidean_barycenter``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from alignment._src import checks
from alignment._src import dtw as _dtw

_LBFGS_MEMORY = 10
_MAX_HALVINGS = 30
_ARMIJO = 1e-4


class SoftDTWBarycenterOutput(NamedTuple):
    """Result of :func:`soft_dtw_barycenter`.

    Attributes:
      barycenter: Array ``[t, d]``, the minimiser found.
      value: Scalar, ``sum_k w_k soft_dtw(z, xs[k])`` at ``barycenter`` (normalised weights).
      n_iters: Number of L-BFGS iterations run (int32).
      converged: Whether the stopping criterion was met (bool).
    """

    barycenter: jax.Array
    value: jax.Array
    n_iters: jax.Array
    converged: jax.Array


class DTWBarycenterOutput(NamedTuple):
    """Result of :func:`dtw_barycenter`.

    Attributes:
      barycenter: Array ``[t, d]``, the DBA barycenter.
      value: Scalar, ``sum_k w_k dtw(z, xs[k])`` at ``barycenter`` (squared Euclidean cost,
        normalised weights: the weighted mean of DTW squared).
      n_iters: Number of DBA updates run (int32).
      converged: Whether the value stopped decreasing by more than ``tol`` (relative) (bool).
    """

    barycenter: jax.Array
    value: jax.Array
    n_iters: jax.Array
    converged: jax.Array


# --------------------------------------------------------------------------------------------
# Validation.
# --------------------------------------------------------------------------------------------


def _prepare(xs, lengths, weights, init, max_iters, tol):
    xs = checks.as_float_array(xs, "xs", ndim=3, what="[k, t, d]")
    if any(n == 0 for n in xs.shape):
        raise ValueError(
            f"`xs` must be non-empty ([k, t, d] with k, t, d >= 1), got shape {xs.shape}."
        )
    k, t_pad, d = xs.shape
    dtype = xs.dtype
    if init is not None:
        init = checks.as_float_array(init, "init", ndim=2, what="[t, d]")
        if init.shape[0] == 0 or init.shape[1] != d:
            raise ValueError(
                f"`init` must have shape [t, d] with t >= 1 and the feature size d of `xs`, got "
                f"init: {init.shape} and xs: {xs.shape}."
            )
        dtype = jnp.result_type(xs, init)
        init = init.astype(dtype)
    xs = xs.astype(dtype)
    bad = jnp.asarray(False)
    if lengths is None:
        lens = jnp.full((k,), t_pad, jnp.int32)
        padded = False
    else:
        lens = checks.as_int_array(
            lengths, "lengths", shape=(k,), what=f"[k] = ({k},)", note=" of valid lengths"
        )
        if checks.is_concrete(lens):
            arr = np.asarray(lens)
            if np.any((arr < 1) | (arr > t_pad)):
                raise ValueError(
                    f"`lengths` must lie in [1, {t_pad}] for xs of shape {xs.shape}, got "
                    f"{arr.tolist()}."
                )
        lens = lens.astype(jnp.int32)
        bad = bad | jnp.any((lens < 1) | (lens > t_pad))
        lens = jnp.clip(lens, 1, t_pad)
        padded = True
    w, bad_w = checks.weights(weights, k, "weights", checks.compute_dtype(dtype), what=" ([k])")
    checks.scalar(tol, "tol", "positive")
    max_iters = checks.static_int(max_iters, "max_iters", minimum=1)
    return xs, lens, padded, w, bad | bad_w, init, max_iters


# --------------------------------------------------------------------------------------------
# Shared pieces.
# --------------------------------------------------------------------------------------------


def _clean(xs, lens, w):
    """Zeroes padded rows and zero-weight series (a ``where``: nothing there reaches anything)."""
    rows = jnp.arange(xs.shape[1])[None, :] < lens[:, None]
    keep = rows & (w > 0)[:, None]
    return jnp.where(keep[..., None], xs, jnp.zeros((), xs.dtype))


def _normalise(w, bad):
    w = jnp.where(bad, jnp.ones_like(w), w)
    return w / jnp.sum(w)


def _resample(x, length, size: int):
    """``x[:length]`` linearly resampled to ``size`` frames (``numpy.interp`` on linspaces).

    Integer arithmetic for the positions, so equal lengths give ``x`` exactly.
    """
    i = jnp.arange(size, dtype=jnp.int32)
    num = i * (length - 1)
    den = max(size - 1, 1)
    lo = num // den
    frac = ((num % den) / den).astype(x.dtype)[:, None]
    hi = jnp.minimum(lo + 1, length - 1)
    return x[lo] * (1 - frac) + x[hi] * frac


def _default_init(xs, lens, w):
    resampled = jax.vmap(_resample, in_axes=(0, 0, None))(xs, lens, xs.shape[1])
    return jnp.einsum("k,ktd->td", w, resampled)


def _sq_cost(z, x):
    """``||z_i - x_j||^2`` from exact differences: ``[t, d], [s, d] -> [t, s]``."""
    return jnp.sum((z[:, None, :] - x[None, :, :]) ** 2, axis=-1)


def _lengths(t: int, length, padded: bool):
    return (t, length) if padded else None


# --------------------------------------------------------------------------------------------
# L-BFGS with a backtracking (Armijo) line search, all in lax.while_loop: jittable, vmappable.
# --------------------------------------------------------------------------------------------


class _LBFGSState(NamedTuple):
    v: jax.Array
    f: jax.Array
    g: jax.Array
    s_hist: jax.Array
    y_hist: jax.Array
    rho: jax.Array
    n_stored: jax.Array
    head: jax.Array
    n_iters: jax.Array
    converged: jax.Array
    stop: jax.Array


def _direction(state: _LBFGSState, memory: int):
    """Two-loop recursion: ``-H g`` with the stored pairs (newest at ``head - 1``)."""

    def first(j, carry):
        q, alphas = carry
        idx = (state.head - 1 - j) % memory
        use = j < state.n_stored
        a = state.rho[idx] * jnp.vdot(state.s_hist[idx], q)
        a = jnp.where(use, a, 0.0)
        return q - a * state.y_hist[idx], alphas.at[j].set(a)

    q, alphas = lax.fori_loop(0, memory, first, (state.g, jnp.zeros((memory,), state.g.dtype)))
    newest = (state.head - 1) % memory
    sy = jnp.vdot(state.s_hist[newest], state.y_hist[newest])
    yy = jnp.vdot(state.y_hist[newest], state.y_hist[newest])
    scale = jnp.where(state.n_stored > 0, sy / jnp.where(yy > 0, yy, 1.0), 1.0)
    r = scale * q

    def second(jj, r):
        j = memory - 1 - jj
        idx = (state.head - 1 - j) % memory
        use = j < state.n_stored
        b = state.rho[idx] * jnp.vdot(state.y_hist[idx], r)
        return r + jnp.where(use, alphas[j] - b, 0.0) * state.s_hist[idx]

    r = lax.fori_loop(0, memory, second, r)
    return -r


def _lbfgs(fun, v0, tol, max_iters: int, memory: int = _LBFGS_MEMORY):
    """Minimises ``fun`` (returning ``(f, grad)``) from ``v0``; returns the final state.

    Stops when the relative decrease ``(f_old - f) <= tol * max(|f_old|, |f|, 1)`` or the largest
    gradient entry is ``<= tol`` (scipy's L-BFGS-B ``ftol``/``gtol`` criteria, which tslearn uses
    with ``tol``), after ``max_iters`` iterations, or when the line search finds no decrease
    (``converged`` is then whether the gradient criterion holds).
    """
    f0, g0 = fun(v0)
    n, dt = v0.shape[0], v0.dtype
    state = _LBFGSState(
        v0,
        f0,
        g0,
        jnp.zeros((memory, n), dt),
        jnp.zeros((memory, n), dt),
        jnp.zeros((memory,), dt),
        jnp.asarray(0, jnp.int32),
        jnp.asarray(0, jnp.int32),
        jnp.asarray(0, jnp.int32),
        jnp.max(jnp.abs(g0)) <= tol,
        ~jnp.isfinite(f0) | (jnp.max(jnp.abs(g0)) <= tol),
    )

    def cond(st):
        return (~st.stop) & (st.n_iters < max_iters)

    def body(st):
        d = _direction(st, memory)
        slope = jnp.vdot(st.g, d)
        descent = (slope < 0) & jnp.all(jnp.isfinite(d))
        d = jnp.where(descent, d, -st.g)
        slope = jnp.where(descent, slope, -jnp.vdot(st.g, st.g))
        gnorm = jnp.sqrt(jnp.vdot(st.g, st.g))
        step0 = jnp.where(st.n_stored > 0, 1.0, jnp.minimum(1.0, 1.0 / gnorm)).astype(dt)

        def ls_cond(c):
            step, f_new, _, tries = c
            ok = f_new <= st.f + _ARMIJO * step * slope
            return (~ok) & (tries < _MAX_HALVINGS)

        def ls_body(c):
            step, _, _, tries = c
            step = step * 0.5
            f_new, g_new = fun(st.v + step * d)
            return step, f_new, g_new, tries + 1

        f1, g1 = fun(st.v + step0 * d)
        step, f_new, g_new, _ = lax.while_loop(
            ls_cond, ls_body, (step0, f1, g1, jnp.asarray(0, jnp.int32))
        )
        found = f_new <= st.f + _ARMIJO * step * slope
        v_new = st.v + step * d
        s = v_new - st.v
        y = g_new - st.g
        sy = jnp.vdot(s, y)
        store = found & (sy > 1e-10 * jnp.vdot(y, y))
        s_hist = jnp.where(store, st.s_hist.at[st.head].set(s), st.s_hist)
        y_hist = jnp.where(store, st.y_hist.at[st.head].set(y), st.y_hist)
        rho = jnp.where(store, st.rho.at[st.head].set(1.0 / jnp.where(store, sy, 1.0)), st.rho)
        head = jnp.where(store, (st.head + 1) % memory, st.head)
        n_stored = jnp.where(store, jnp.minimum(st.n_stored + 1, memory), st.n_stored)
        v = jnp.where(found, v_new, st.v)
        f = jnp.where(found, f_new, st.f)
        g = jnp.where(found, g_new, st.g)
        small_grad = jnp.max(jnp.abs(g)) <= tol
        scale = jnp.maximum(jnp.maximum(jnp.abs(st.f), jnp.abs(f)), 1.0)
        small_step = found & (st.f - f <= tol * scale)
        converged = small_grad | small_step
        return _LBFGSState(
            v,
            f,
            g,
            s_hist,
            y_hist,
            rho,
            n_stored,
            head,
            st.n_iters + 1,
            converged,
            converged | ~found,
        )

    return lax.while_loop(cond, body, state)


# --------------------------------------------------------------------------------------------
# Jitted cores.
# --------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("max_iters", "padded", "has_init"))
def _soft_core(xs, lens, w, bad, init, gamma, tol, *, max_iters, padded, has_init):
    dtype = xs.dtype
    work = checks.compute_dtype(dtype)
    xs = xs.astype(work)
    bad = bad | checks.invalid_scalar(gamma) | checks.invalid_scalar(tol)
    gamma = jnp.where(checks.invalid_scalar(gamma), 1.0, gamma).astype(work)
    tol = jnp.where(checks.invalid_scalar(tol), 1.0, tol).astype(work)
    w = _normalise(w.astype(work), bad)
    xs = _clean(xs, lens, w)
    z0 = init.astype(work) if has_init else _default_init(xs, lens, w)
    shape = z0.shape

    def objective(z):
        def one(x, length):
            cost = _sq_cost(z, x)
            return _dtw.soft_dtw(cost, gamma=gamma, lengths=_lengths(shape[0], length, padded))

        return jnp.sum(w * jax.vmap(one)(xs, lens))

    value_and_grad = jax.value_and_grad(lambda v: objective(v.reshape(shape)))
    st = _lbfgs(value_and_grad, z0.reshape(-1), tol, max_iters)
    z = st.v.reshape(shape)
    value = st.f
    out = SoftDTWBarycenterOutput(
        checks.nan_if(jnp.isnan(value), z), value, st.n_iters, st.converged
    )
    out = checks.nan_if(bad, out)
    return out._replace(barycenter=out.barycenter.astype(dtype), value=out.value.astype(dtype))


@functools.partial(jax.jit, static_argnames=("max_iters", "padded", "has_init"))
def _dba_core(xs, lens, w, bad, init, tol, *, max_iters, padded, has_init):
    dtype = xs.dtype
    work = checks.compute_dtype(dtype)
    xs = xs.astype(work)
    bad = bad | checks.invalid_scalar(tol)
    tol = jnp.where(checks.invalid_scalar(tol), 1.0, tol).astype(work)
    w = _normalise(w.astype(work), bad)
    xs = _clean(xs, lens, w)
    z0 = init.astype(work) if has_init else _default_init(xs, lens, w)
    t = z0.shape[0]

    def assign(z):
        """Value at ``z`` and the DBA update ``sum_k w_k A_k x_k / sum_k w_k A_k 1``."""

        def one(x, length):
            return _dtw.dtw_alignment(_sq_cost(z, x), lengths=_lengths(t, length, padded))

        values, paths = jax.vmap(one)(xs, lens)  # [k], [k, t, t_k]
        value = jnp.sum(w * values)
        num = jnp.einsum("k,kts,ksd->td", w, paths, xs)
        den = jnp.einsum("k,kts->t", w, paths)
        return value, num / den[:, None]

    v0, u0 = assign(z0)

    def cond(c):
        _, _, _, n, done = c
        return (~done) & (n < max_iters)

    def body(c):
        _, value, update, n, _ = c
        new_value, new_update = assign(update)
        # DBA never increases the value; stop on a relative decrease <= tol (or an increase,
        # from rounding), keeping the new barycenter (as tslearn does).
        done = value - new_value <= tol * jnp.abs(value)
        return update, new_value, new_update, n + 1, done

    z, value, _, n, done = lax.while_loop(
        cond, body, (z0, v0, u0, jnp.asarray(0, jnp.int32), ~jnp.isfinite(v0))
    )
    done = done & jnp.isfinite(value)
    out = DTWBarycenterOutput(checks.nan_if(jnp.isnan(value), z), value, n, done)
    out = checks.nan_if(bad, out)
    return out._replace(barycenter=out.barycenter.astype(dtype), value=out.value.astype(dtype))


# --------------------------------------------------------------------------------------------
# Public API.
# --------------------------------------------------------------------------------------------


def soft_dtw_barycenter(
    xs: jax.typing.ArrayLike,
    *,
    gamma: jax.typing.ArrayLike = 1.0,
    weights: jax.typing.ArrayLike | None = None,
    lengths: jax.typing.ArrayLike | None = None,
    init: jax.typing.ArrayLike | None = None,
    max_iters: int = 100,
    tol: jax.typing.ArrayLike = 1e-5,
) -> SoftDTWBarycenterOutput:
    """Soft-DTW barycenter (Cuturi & Blondel, 2017): the series closest to a set under soft-DTW.

    Minimises over ``z: [t, d]``

        ``F(z) = sum_k w_k soft_dtw(C(z, xs[k]), gamma)``,  ``C(z, x)[i, j] = ||z_i - x_j||^2``

    with normalised weights (``sum_k w_k = 1``), by L-BFGS (memory 10, backtracking Armijo line
    search) inside ``lax.while_loop``. The gradient is ``jax.grad`` of :func:`soft_dtw`, whose
    custom VJP is the expected alignment: ``dF/dz_i = sum_k w_k sum_j E_k[i, j] 2 (z_i - x_j)``.
    ``F`` is not convex; the result is a local minimiser near ``init``.

    Stopping: after an iteration whose relative decrease ``F_old - F <= tol * max(|F_old|,
    |F|, 1)``, or when ``max |dF/dz| <= tol`` (scipy's L-BFGS-B criteria, which tslearn's
    ``softdtw_barycenter(..., tol)`` uses), else after ``max_iters`` iterations; when the line
    search finds no decrease (float precision) it stops with ``converged`` the gradient test.

    Relation to tslearn: ``softdtw_barycenter(X, gamma, weights)`` minimises the same objective
    with unnormalised weights (``1`` each by default), i.e. ``sum(weights)`` times ``F``; the
    cost is the same squared Euclidean (not halved). See the module docstring for ``init``.

    Numerics: each evaluation costs ``k`` soft-DTW forward and backward passes (``O(k t t_k)``);
    float16/bfloat16 are computed in float32. As ``gamma -> 0`` the objective approaches the
    DTW barycenter problem (non-smooth; prefer :func:`dtw_barycenter` there). For ``k``
    identical series the minimiser is close to the series (exactly it only as ``gamma -> 0``).
    The solver is a ``lax.while_loop``: ``jit`` and ``vmap`` work, reverse-mode ``jax.grad``
    through the solver does not (JAX cannot differentiate a while loop in reverse mode).

    Bad input: ``xs`` that is ``None``, complex, not 3-D or empty; ``init`` not ``[t, d]`` with
    the ``d`` of ``xs``; ``lengths`` not an integer array ``[k]``; ``weights`` not ``[k]``;
    array-valued or complex ``gamma``/``tol``; ``max_iters`` not a Python int ``>= 1`` raise
    ``ValueError`` naming the argument, also under ``jit``. Concrete ``gamma <= 0``, ``tol <= 0``
    (or non-finite), negative, NaN or all-zero ``weights`` and ``lengths`` outside ``[1, t_k]``
    raise; the same values traced make every floating output NaN, ``n_iters`` ``-1`` and
    ``converged`` False. Padding and zero-weight series are never read; NaN in a valid frame
    makes the value and the barycenter NaN. A concrete call that ends with ``converged=False``
    warns with :class:`alignment.ConvergenceWarning`. See ``docs/conventions.md``.

    Args:
      xs: Array of shape ``[k, t_k, d]``: ``k`` series padded to length ``t_k``.
      gamma: Positive soft-min temperature (traced), as in :func:`soft_dtw`.
      weights: Optional non-negative array ``[k]`` (normalised to sum 1); uniform by default.
      lengths: Optional integer array ``[k]`` of valid lengths in ``[1, t_k]`` (traced is fine).
      init: Optional starting barycenter ``[t, d]``; its length ``t`` is the barycenter's.
        Default: the weighted mean of the series resampled to ``t_k`` (see the module docstring).
      max_iters: Maximum number of L-BFGS iterations (static int ``>= 1``).
      tol: Positive stopping tolerance (traced), see above.

    Returns:
      :class:`SoftDTWBarycenterOutput` ``(barycenter [t, d], value [], n_iters, converged)``.

    Raises:
      ValueError: see "Bad input".

    References:
      Cuturi & Blondel, "Soft-DTW: a Differentiable Loss Function for Time-Series", ICML 2017.

    Examples:
      >>> import jax.numpy as jnp
      >>> xs = jnp.array([[0.0, 1.0, 2.0, 2.0], [0.0, 0.0, 1.0, 2.0]])[..., None]
      >>> out = soft_dtw_barycenter(xs, gamma=0.01)
      >>> out.barycenter[:, 0].round(2).tolist(), bool(out.converged)
      ([0.0, 1.0, 1.0, 2.0], True)
    """
    checks.scalar(gamma, "gamma", "positive")
    xs, lens, padded, w, bad, init, max_iters = _prepare(xs, lengths, weights, init, max_iters, tol)
    out = _soft_core(
        xs,
        lens,
        w,
        bad,
        init,
        gamma,
        tol,
        max_iters=max_iters,
        padded=padded,
        has_init=init is not None,
    )
    checks.warn_unconverged(out.converged, "soft_dtw_barycenter", "raise max_iters or loosen tol")
    return out


def dtw_barycenter(
    xs: jax.typing.ArrayLike,
    *,
    weights: jax.typing.ArrayLike | None = None,
    lengths: jax.typing.ArrayLike | None = None,
    init: jax.typing.ArrayLike | None = None,
    max_iters: int = 30,
    tol: jax.typing.ArrayLike = 1e-5,
) -> DTWBarycenterOutput:
    """DTW barycenter averaging, DBA (Petitjean et al., 2011).

    Alternates, from ``z = init``: align every series to ``z`` by exact DTW on
    ``C(z, x)[i, j] = ||z_i - x_j||^2`` (:func:`dtw_alignment`, a 0/1 path ``A_k: [t, t_k]``),
    then move every barycenter frame to the weighted mean of the frames aligned to it,

        ``z_i = sum_k w_k sum_j A_k[i, j] xs[k, j] / sum_k w_k sum_j A_k[i, j]``.

    The value ``V(z) = sum_k w_k dtw(C(z, xs[k]))`` (normalised weights) never increases. It
    stops after the first update whose decrease is ``<= tol * V`` (relative; an exact fixed point
    gives 0), keeping that update, or after ``max_iters`` updates; ``lax.while_loop``, never
    hangs. ``value`` is ``V`` at the returned barycenter.

    Relation to tslearn: ``dtw_barycenter_averaging(X, init_barycenter=init)`` runs the same
    updates (its ``tol`` is absolute and it stops one update later); from the same ``init``,
    once both reach the fixed point, the barycenters agree to float rounding, and its returned
    cost (the weighted mean of ``dtw ** 2``) is our ``value``. Ties between DTW paths are broken
    as :func:`dtw_alignment` does (diagonal first), which may differ from tslearn.

    Numerics: each update costs ``k`` exact DTW alignments (``O(k t t_k)``); float16/bfloat16
    are computed in float32. Every barycenter frame lies on every path, so the update never
    divides by zero. ``k`` identical series are a fixed point: the barycenter is the series.

    Bad input: as :func:`soft_dtw_barycenter` (without ``gamma``). See ``docs/conventions.md``.

    Args:
      xs: Array of shape ``[k, t_k, d]``: ``k`` series padded to length ``t_k``.
      weights: Optional non-negative array ``[k]`` (normalised to sum 1); uniform by default.
      lengths: Optional integer array ``[k]`` of valid lengths in ``[1, t_k]`` (traced is fine).
      init: Optional starting barycenter ``[t, d]``; its length ``t`` is the barycenter's.
        Default: the weighted mean of the series resampled to ``t_k`` (see the module docstring).
      max_iters: Maximum number of DBA updates (static int ``>= 1``).
      tol: Positive relative tolerance on the decrease of the value (traced).

    Returns:
      :class:`DTWBarycenterOutput` ``(barycenter [t, d], value [], n_iters, converged)``.

    Raises:
      ValueError: see "Bad input".

    References:
      Petitjean, Ketterlin & Gancarski, "A global averaging method for dynamic time warping,
      with applications to clustering", Pattern Recognition 44(3), 2011.

    Examples:
      >>> import jax.numpy as jnp
      >>> xs = jnp.array([[0.0, 1.0, 2.0, 2.0], [0.0, 0.0, 1.0, 2.0]])[..., None]
      >>> out = dtw_barycenter(xs)
      >>> out.barycenter[:, 0].tolist(), float(out.value), int(out.n_iters)
      ([0.0, 0.5, 1.5, 2.0], 0.5, 1)
    """
    xs, lens, padded, w, bad, init, max_iters = _prepare(xs, lengths, weights, init, max_iters, tol)
    out = _dba_core(
        xs,
        lens,
        w,
        bad,
        init,
        tol,
        max_iters=max_iters,
        padded=padded,
        has_init=init is not None,
    )
    checks.warn_unconverged(out.converged, "dtw_barycenter", "raise max_iters or loosen tol")
    return out
