"""Canonical time warping: DTW and CCA alternated, for sequences with different features.

Plain DTW needs both sequences in one feature space. Canonical Time Warping (Zhou & De la Torre
2009) aligns ``x: [t, dx]`` and ``y: [s, dy]`` whose features differ (two modalities, two
views, a rotated sensor) by alternating a spatial alignment, CCA projections ``Vx``, ``Vy`` onto
``k`` shared dimensions, with a temporal alignment, DTW on the projected sequences, until the
warping path stops changing.

The objective. Each sequence is centred and whitened once by its own covariance over its frames
(``1 / t`` normalisation) plus a ridge, ``Sx + (reg + relative_reg * tr(Sx) / dx) I = Lx Lx^T``:
``xw_i = Lx^-1 (x_i - mean_x)``, likewise ``yw_j``. ``reg`` is the library's absolute ridge (in
the squared units of the data, as in :func:`alignment.cca`); ``relative_reg`` is relative to the
mean variance of the sequence, hence scale-free (the default, ``1e-3``, damps noise directions
whatever the units). A floor of the smallest normal float keeps a constant sequence finite. As
in :func:`alignment.cca`, each sequence is first divided by an exact power of two, so data in
units of 1e30 or 1e-30 work in float32.
With projections ``Vx: [dx, k]``, ``Vy: [dy, k]`` having orthonormal columns (in the whitened
coordinates) and a warping path ``P``,

    ``J(V, P) = sum_{(i, j) in P} ||xw_i||^2 + ||yw_j||^2 - 2 <Vx^T xw_i, Vy^T yw_j>``
    ``        = sum_{(i, j) in P} ||Vx^T xw_i - Vy^T yw_j||^2 + r_x(i) + r_y(j)``,

the DTW cost of the projected sequences plus, per visited cell, the energy ``r`` of each frame
outside the projection (zero for ``k = dx = dy``, where ``J`` is DTW after the best rotation).
Both steps minimise ``J`` exactly: for a fixed path the best projections are the top ``k``
singular vectors of the whitened cross-covariance along the path ``xw^T A yw`` (CCA on the
aligned pairs, ``A`` the path's 0/1 matrix; von Neumann's trace inequality), and for fixed
projections the best path is DTW's. So the objective per iteration never increases (up to
float rounding) and the loop stops when the path repeats. Whitening each sequence by its own
covariance keeps the constraint on ``V`` the same in both steps; the original paper whitens by
the covariance of the warped sequences, a constraint that moves with the path, under which the
alternation has no such guarantee. (tslearn's ``ctw_path`` compares the new path with itself,
so its loop never iterates: it returns the path of its first DTW.)

:func:`ctw` starts from the straight path from ``(0, 0)`` to ``(t - 1, s - 1)`` (the uniform
warping of the paper). :func:`soft_ctw` is the differentiable variant: the hard path is replaced
by soft-DTW's expected alignment ``E`` (:func:`alignment.soft_dtw_alignment`), the CCA step
takes the singular vectors of ``xw^T E yw``, and the objective is the soft-DTW value of the cost
above. Soft-DTW is concave in the cost (a soft minimum of linear functions), so this is a
majorise-minimise loop and its objective also never increases. Its ``value`` is differentiable
in ``x``, ``y`` and ``gamma``: the projections are held at the loop's fixed point (envelope
theorem: the derivative through the projections vanishes at an optimum), the whitening is
differentiated.

Shapes and dtypes: one pair of sequences per call (``jax.vmap`` over equal-shaped batches works;
there is no ``lengths`` for padding); outputs follow the input dtype (float16/bfloat16 computed
in float32). Both functions return a :class:`CTWOutput`. Both loops are ``lax.while_loop``s
with a static ``max_iters``: jittable and ``vmap``-able (a batch runs until its slowest member
stops).

References: Zhou & De la Torre, "Canonical Time Warping for Alignment of Human Behavior", NeurIPS
2009; Cuturi & Blondel, "Soft-DTW", ICML 2017; Trigeorgis et al., "Deep Canonical Time Warping",
CVPR 2016.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from alignment._src import checks
from alignment._src import costs as _costs
from alignment._src import numerics as nm
from alignment._src.dtw import dtw, soft_dtw

__all__ = ["CTWOutput", "ctw", "soft_ctw"]


class CTWOutput(NamedTuple):
    """Result of :func:`ctw` and :func:`soft_ctw`.

    The aligned projections are ``(x - mean_x) @ wx`` and ``(y - mean_y) @ wy`` (``[t, k]`` and
    ``[s, k]``); ``alignment`` pairs their frames.

    Attributes:
      value: Scalar, the objective at the returned projections: the DTW value (:func:`ctw`) or
        the soft-DTW value (:func:`soft_ctw`) of the cost of the module docstring. Differentiable
        in ``x`` and ``y`` (and ``gamma``), with the projections held at the loop's fixed point
        and the whitening differentiated; equals ``objective[n_iters - 1]``.
      wx: Array of shape ``[dx, k]``, the projection of ``x`` (whitening included; no gradient).
      wy: Array of shape ``[dy, k]``, the projection of ``y``.
      mean_x: Array of shape ``[dx]``, the mean of ``x`` over its frames.
      mean_y: Array of shape ``[dy]``.
      alignment: Array of shape ``[t, s]``: for :func:`ctw` the 0/1 warping path
        (:func:`alignment.alignment_to_path` gives the index pairs), for :func:`soft_ctw`
        soft-DTW's expected alignment (entries in ``[0, 1]``).
      objective: Array of shape ``[max_iters]``, the objective after each iteration
        (non-increasing); entries past ``n_iters`` repeat the last value.
      n_iters: Integer scalar, the number of iterations run (``1 <= n_iters <= max_iters``).
      converged: Boolean scalar: the last iteration left the path unchanged (:func:`ctw`) or
        decreased the objective by at most ``tol * |objective|`` (:func:`soft_ctw`).
    """

    value: jax.Array
    wx: jax.Array
    wy: jax.Array
    mean_x: jax.Array
    mean_y: jax.Array
    alignment: jax.Array
    objective: jax.Array
    n_iters: jax.Array
    converged: jax.Array


# --------------------------------------------------------------------------------------------
# Validation.
# --------------------------------------------------------------------------------------------


def _check_sequences(x, y, k) -> tuple[jax.Array, jax.Array, int]:
    x = checks.as_float_array(x, "x")
    y = checks.as_float_array(y, "y")
    for name, arr, shape in (("x", x, "[t, dx]"), ("y", y, "[s, dy]")):
        if arr.ndim != 2:
            raise ValueError(
                f"`{name}` must be a 2-D array {shape} (frames by features), got shape "
                f"{arr.shape}; for a 1-D series use {name}[:, None]."
            )
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError(f"`{name}` must be non-empty, got shape {arr.shape}.")
    k = checks.static_k(k, x.shape[1], y.shape[1], f"x: {x.shape} and y: {y.shape}")
    dtype = jnp.result_type(x, y)
    return x.astype(dtype), y.astype(dtype), k


def _check_ridges(reg, relative_reg) -> None:
    checks.scalar(reg, "reg", "nonnegative")
    checks.scalar(relative_reg, "relative_reg", "nonnegative")
    if checks.is_concrete(reg) and checks.is_concrete(relative_reg):
        if float(np.asarray(reg)) == 0 and float(np.asarray(relative_reg)) == 0:
            raise ValueError(
                "`reg` and `relative_reg` cannot both be 0: the whitening needs a ridge (a "
                "sequence with fewer frames than features, or a constant feature, has a singular "
                "covariance)."
            )


def _check_init(init, t: int, s: int) -> jax.Array | None:
    """The initial alignment ``[t, s]`` (``None``: the straight path), checked when concrete."""
    if init is None:
        return None
    init = checks.as_float_array(init, "init")
    if init.shape != (t, s):
        raise ValueError(
            f"`init` must be an alignment of shape [t, s] = {(t, s)} (x: [t, dx], y: [s, dy]), "
            f"got shape {init.shape}."
        )
    if checks.is_concrete(init):
        arr = np.asarray(init, np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"`init` must be finite, got {arr[~np.isfinite(arr)][:3]}.")
        if np.any(arr < 0):
            raise ValueError(
                f"`init` must be a non-negative alignment (a 0/1 path or weights), got min "
                f"{arr.min()!r}."
            )
    return init


# --------------------------------------------------------------------------------------------
# Shared numerics.
# --------------------------------------------------------------------------------------------


def _whiten(x: jax.Array, reg_m, reg_e, relative_reg):
    """``(xw, mean, L, e)``: ``x - mean = xs 2**e``, ``xw = xs L^-T``, ``L L^T = Ss + ridge I``.

    ``Ss`` is the ``1 / t`` covariance of ``xs``; the ridge is ``reg 2**(-2e)`` (the absolute
    ``reg`` in the units of ``xs``, exact) plus ``relative_reg tr(Ss) / d`` plus the smallest
    normal float, so that ``Ss + ridge I = 2**(-2e) (S + (reg + relative_reg tr(S) / d) I)``.
    """
    t, d = x.shape
    mean, xs, e = nm.center_pow2(x)
    cov = (xs.T @ xs) / t
    big = jnp.asarray(2.0 ** (jnp.finfo(x.dtype).maxexp - 4), x.dtype)
    absolute = jnp.minimum(nm.scale_pow2(jnp.asarray(reg_m, x.dtype), reg_e - 2 * e), big)
    relative = jnp.asarray(relative_reg, x.dtype) * jnp.trace(cov) / d
    ridge = absolute + relative + jnp.finfo(x.dtype).tiny
    chol = jnp.linalg.cholesky(cov + ridge * jnp.eye(d, dtype=x.dtype))
    xw = lax.linalg.triangular_solve(chol, xs, left_side=False, lower=True, transpose_a=True)
    return xw, mean, chol, e


def _projections(xw, yw, a, k: int) -> tuple[jax.Array, jax.Array]:
    """Top ``k`` singular vectors of the whitened cross-covariance ``xw^T a yw`` along ``a``."""
    u, _, vt = jnp.linalg.svd(xw.T @ a @ yw, full_matrices=False)
    return u[:, :k], vt[:k].T


def _cost(xw, yw, vx, vy) -> jax.Array:
    """``||xw_i||^2 + ||yw_j||^2 - 2 <Vx^T xw_i, Vy^T yw_j>``, as projected distance + residuals."""
    px, py = xw @ vx, yw @ vy
    rx = jnp.maximum(jnp.sum(xw * xw, axis=1) - jnp.sum(px * px, axis=1), 0.0)
    ry = jnp.maximum(jnp.sum(yw * yw, axis=1) - jnp.sum(py * py, axis=1), 0.0)
    return _costs.squared_euclidean(px, py) + rx[:, None] + ry[None, :]


def _straight_path(t: int, s: int, dtype) -> jax.Array:
    """The 0/1 path that follows the straight line from ``(0, 0)`` to ``(t - 1, s - 1)``.

    Along the longer sequence, each frame is paired with the nearest frame of the shorter one
    (steps of 0 or 1): a valid path inside every Sakoe-Chiba band that admits one.
    """
    if t >= s:
        j = jnp.round(jnp.arange(t) * ((s - 1) / max(t - 1, 1))).astype(jnp.int32)
        return (j[:, None] == jnp.arange(s)[None, :]).astype(dtype)
    return _straight_path(s, t, dtype).T


def _outputs(vx, vy, lx, ly, ex, ey):
    """``W = 2**-e L^-T V``, so ``(x - mean) @ W = xw @ V``; the signs of :func:`alignment.cca`."""
    solve = lambda chol, v: lax.linalg.triangular_solve(
        chol, v, left_side=True, lower=True, transpose_a=True
    )
    wx = nm.scale_pow2(solve(lx, vx), -ex)
    wy = nm.scale_pow2(solve(ly, vy), -ey)
    return nm.canonical_signs(wx, wy)


def _prepare(x, y, reg, relative_reg, init, extra_bad):
    """Common start of both cores: bad-value flag, safe stand-ins, whitening, initial path."""
    reg_m, reg_e = reg
    bad = (
        checks.invalid_scalar(reg_m, "nonnegative")
        | checks.invalid_scalar(relative_reg, "nonnegative")
        | ((reg_m == 0) & (relative_reg == 0))
        | extra_bad
    )
    straight = _straight_path(x.shape[0], y.shape[0], x.dtype)
    if init is None:
        a0 = straight
    else:
        bad = bad | ~jnp.all(jnp.isfinite(init) & (init >= 0))
        a0 = jnp.where(bad, straight, init)
    # a bad (traced) value gets a harmless stand-in: the loop runs normally, nan_if flags it
    reg_m = jnp.where(bad, jnp.zeros_like(reg_m), reg_m)
    relative_reg = jnp.where(bad, jnp.full_like(relative_reg, 1e-3), relative_reg)
    xw, mx, lx, ex = _whiten(x, reg_m, reg_e, relative_reg)
    yw, my, ly, ey = _whiten(y, reg_m, reg_e, relative_reg)
    return bad, a0, (xw, mx, lx, ex), (yw, my, ly, ey)


def _ridge_args(reg, relative_reg, dtype):
    reg_m, reg_e = checks.split_pow2(reg)
    return (jnp.asarray(reg_m, dtype), jnp.asarray(reg_e, jnp.int32)), jnp.asarray(
        relative_reg, dtype
    )


def _fill_tail(history, n_iters):
    """Entries past the last iteration repeat its value (finite; NaN only from the data)."""
    ran = jnp.arange(history.shape[0]) < n_iters
    return jnp.where(ran, history, history[n_iters - 1])


_HINT = "raise max_iters (or tol), or pass a better init"


def _cast(out: CTWOutput, dtype) -> CTWOutput:
    floats = lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a
    return jax.tree.map(floats, out)


# --------------------------------------------------------------------------------------------
# Public functions.
# --------------------------------------------------------------------------------------------


class _Validated(NamedTuple):
    """Validated inputs shared by :func:`ctw` and :func:`soft_ctw`, in the compute dtype."""

    x: jax.Array
    y: jax.Array
    k: int
    max_iters: int
    window: int | None
    init: jax.Array | None
    reg_parts: tuple[jax.Array, jax.Array]
    rel: jax.Array
    in_dtype: jnp.dtype


def _validate(x, y, k, reg, relative_reg, max_iters, window, init) -> _Validated:
    x, y, k = _check_sequences(x, y, k)
    _check_ridges(reg, relative_reg)
    max_iters = checks.static_int(max_iters, "max_iters", minimum=1)
    window = checks.static_int(window, "window", minimum=0, allow_none=True)
    init = _check_init(init, x.shape[0], y.shape[0])
    dtype = checks.compute_dtype(x.dtype)
    reg_parts, rel = _ridge_args(reg, relative_reg, dtype)
    init = None if init is None else init.astype(dtype)
    return _Validated(
        x.astype(dtype), y.astype(dtype), k, max_iters, window, init, reg_parts, rel, x.dtype
    )


def ctw(
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    *,
    k: int | None = None,
    reg: jax.typing.ArrayLike = 0.0,
    relative_reg: jax.typing.ArrayLike = 1e-3,
    max_iters: int = 20,
    window: int | None = None,
    init: jax.typing.ArrayLike | None = None,
) -> CTWOutput:
    """Canonical time warping: alternate CCA on the aligned pairs and DTW on the projections.

    Starting from the straight path, each iteration takes the CCA projections of the frames
    paired by the current path (whitened cross-covariance, SVD) and then the DTW path of the
    projected sequences, until the path repeats or ``max_iters`` iterations. Both steps minimise
    the same objective exactly (module docstring), so ``objective`` is non-increasing. A
    concrete call that stops before the path repeats warns (:class:`alignment.ConvergenceWarning`).

    Bad input: shapes, ``k``, ``max_iters``, ``window`` and dtypes are checked at trace time
    (``ValueError``, under ``jit``/``vmap`` too; array-valued or complex ``reg`` and
    ``relative_reg`` included); concrete ``reg < 0``, ``relative_reg < 0``, both 0, or an
    ``init`` with negative or non-finite entries raise; under ``jit`` such values make every
    floating output NaN, ``n_iters`` -1 and ``converged`` False. NaN in the data propagates.
    See ``docs/conventions.md``.

    Args:
      x: Array of shape ``[t, dx]``, the first sequence (frames by features).
      y: Array of shape ``[s, dy]``, the second; ``dy`` may differ from ``dx``.
      k: Number of shared dimensions (static int in ``[1, min(dx, dy)]``); ``None`` for all.
      reg: Absolute ridge ``>= 0`` added to each sequence's covariance before whitening
        (``S + reg I``, in the squared units of the data; traced).
      relative_reg: Ridge ``>= 0`` relative to each sequence's mean variance
        (``relative_reg * tr(S) / d``, added to ``reg``; scale-free; traced). Whitening scales
        weak directions (often noise) up to unit variance; a larger value (``0.1``) damps them.
      max_iters: Static positive int, the most iterations (each one SVD and one DTW).
      window: Sakoe-Chiba band for the DTW steps, as in :func:`alignment.dtw`.
      init: Optional initial alignment ``[t, s]`` (a 0/1 path, or any non-negative weights)
        for the first CCA step; the straight path by default. Like the paper's algorithm this
        is a local method: a better start (say, DTW on features known to match) helps.

    Returns:
      A :class:`CTWOutput` ``(value, wx, wy, mean_x, mean_y, alignment, objective, n_iters,
      converged)``; ``alignment`` is the 0/1 warping path.

    Raises:
      ValueError: ``x`` or ``y`` is not a non-empty 2-D real array, ``k`` is not an int in
        range, a bad ``reg``, ``relative_reg``, ``max_iters``, ``window`` or ``init``.

    References:
      Zhou & De la Torre, "Canonical Time Warping for Alignment of Human Behavior", NeurIPS 2009.

    Examples:
      A 2-D trajectory against a rotated, time-warped copy in 3-D (an extra constant feature):

      >>> import jax.numpy as jnp
      >>> u = jnp.linspace(0, 1, 30)
      >>> x = jnp.stack([jnp.sin(6 * u), jnp.cos(4 * u)], 1)
      >>> w = u**1.5  # the warp
      >>> y = jnp.stack([jnp.cos(4 * w), -jnp.sin(6 * w), jnp.ones(30)], 1)
      >>> out = ctw(x, y, k=2)
      >>> out.wx.shape, out.wy.shape, bool(out.converged)
      ((2, 2), (3, 2), True)
      >>> obj = out.objective[: int(out.n_iters)]
      >>> bool(jnp.all(obj[1:] <= obj[:-1] * (1 + 1e-5)))
      True
    """
    p = _validate(x, y, k, reg, relative_reg, max_iters, window, init)
    out = _ctw(p.x, p.y, p.reg_parts, p.rel, p.init, k=p.k, max_iters=p.max_iters, window=p.window)
    checks.warn_unconverged(out.converged, "ctw", _HINT)
    return _cast(out, p.in_dtype)


@functools.partial(jax.jit, static_argnames=("k", "max_iters", "window"))
def _ctw(x, y, reg, relative_reg, init, *, k, max_iters, window) -> CTWOutput:
    bad, a0, (xw, mx, lx, ex), (yw, my, ly, ey) = _prepare(
        x, y, reg, relative_reg, init, jnp.asarray(False)
    )
    xs, ys = lax.stop_gradient(xw), lax.stop_gradient(yw)
    path = jax.value_and_grad(lambda c: dtw(c, window=window))

    def step(a):
        vx, vy = _projections(xs, ys, a, k)
        value, a_new = path(_cost(xs, ys, vx, vy))
        return vx, vy, value, a_new

    # The first iteration always runs: the "previous path" starts as all zeros.
    vx0, vy0 = jnp.zeros((x.shape[1], k), x.dtype), jnp.zeros((y.shape[1], k), x.dtype)
    history = jnp.full((max_iters,), jnp.nan, x.dtype)
    state = (0, jnp.zeros_like(a0), a0, vx0, vy0, history)

    def cond(state):
        i, a_old, a, *_ = state
        return (i < max_iters) & jnp.any(a != a_old)

    def body(state):
        i, _, a, _, _, history = state
        vx, vy, value, a_new = step(a)
        return i + 1, a, a_new, vx, vy, history.at[i].set(value)

    n_iters, a_old, a, vx, vy, history = lax.while_loop(cond, body, state)
    history = _fill_tail(history, n_iters)
    value = dtw(_cost(xw, yw, lax.stop_gradient(vx), lax.stop_gradient(vy)), window=window)
    wx, wy = _outputs(vx, vy, lax.stop_gradient(lx), lax.stop_gradient(ly), ex, ey)
    converged = jnp.all(a == a_old)
    out = CTWOutput(value, wx, wy, mx, my, a, history, jnp.asarray(n_iters, jnp.int32), converged)
    return checks.nan_if(bad, out)


def soft_ctw(
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    *,
    gamma: jax.typing.ArrayLike = 1.0,
    k: int | None = None,
    reg: jax.typing.ArrayLike = 0.0,
    relative_reg: jax.typing.ArrayLike = 1e-3,
    max_iters: int = 50,
    tol: jax.typing.ArrayLike = 1e-6,
    window: int | None = None,
    init: jax.typing.ArrayLike | None = None,
) -> CTWOutput:
    """Differentiable canonical time warping with soft-DTW's expected alignment.

    As :func:`ctw` with the hard path replaced by the expected alignment ``E`` of soft-DTW on
    the projected cost: each iteration takes the top singular vectors of ``xw^T E yw``, then the
    soft-DTW value and alignment of the new cost. The objective (soft-DTW of the cost of the
    module docstring) never increases; the loop stops when it decreases by at most
    ``tol * |objective|`` or after ``max_iters`` iterations (a concrete call that ends there
    unconverged warns). ``value`` is then recomputed with the projections held fixed
    (``stop_gradient``) and the whitening differentiated: its gradient is the derivative of the
    converged objective in ``x``, ``y`` and ``gamma`` (exact at a stationary point; the
    projections' contribution vanishes there).

    Numerics: as :func:`alignment.soft_dtw` (the value can be negative; ``gamma -> 0``
    approaches :func:`ctw`'s objective from below).

    Bad input: as :func:`ctw`, plus ``gamma`` (concrete ``gamma <= 0`` or non-finite raises)
    and ``tol`` (concrete negative or non-finite raises); under ``jit`` such values make every
    floating output NaN, ``n_iters`` -1 and ``converged`` False. See ``docs/conventions.md``.

    Args:
      x: Array of shape ``[t, dx]``.
      y: Array of shape ``[s, dy]``.
      gamma: Positive soft-DTW smoothing (traced, differentiable).
      k: Number of shared dimensions (static int in ``[1, min(dx, dy)]``); ``None`` for all.
      reg: Absolute ridge ``>= 0``, as in :func:`ctw`.
      relative_reg: Relative ridge ``>= 0``, as in :func:`ctw`.
      max_iters: Static positive int, the most iterations.
      tol: Relative decrease of the objective ``>= 0`` below which the loop stops (traced).
      window: Sakoe-Chiba band, as in :func:`alignment.soft_dtw`.
      init: Optional initial alignment ``[t, s]`` (non-negative); the straight path by default.

    Returns:
      A :class:`CTWOutput` ``(value, wx, wy, mean_x, mean_y, alignment, objective, n_iters,
      converged)``; ``alignment`` is soft-DTW's expected alignment.

    Raises:
      ValueError: as :func:`ctw`, or a bad ``gamma`` or ``tol``.

    References:
      Zhou & De la Torre, NeurIPS 2009; Cuturi & Blondel, "Soft-DTW: a Differentiable Loss
      Function for Time-Series", ICML 2017.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> u = jnp.linspace(0, 1, 20)
      >>> x = jnp.stack([jnp.sin(6 * u), jnp.cos(4 * u)], 1)
      >>> y = jnp.stack([jnp.cos(4 * u**1.5), jnp.sin(6 * u**1.5)], 1)
      >>> grad = jax.grad(lambda x: soft_ctw(x, y, gamma=0.1).value)(x)
      >>> grad.shape, bool(jnp.all(jnp.isfinite(grad)))
      ((20, 2), True)
    """
    p = _validate(x, y, k, reg, relative_reg, max_iters, window, init)
    checks.scalar(gamma, "gamma", "positive")
    checks.scalar(tol, "tol", "nonnegative")
    out = _soft_ctw(
        p.x, p.y, jnp.asarray(gamma, p.x.dtype), p.reg_parts, p.rel, jnp.asarray(tol, p.x.dtype),
        p.init, k=p.k, max_iters=p.max_iters, window=p.window,
    )  # fmt: skip
    checks.warn_unconverged(out.converged, "soft_ctw", _HINT)
    return _cast(out, p.in_dtype)


@functools.partial(jax.jit, static_argnames=("k", "max_iters", "window"))
def _soft_ctw(x, y, gamma, reg, relative_reg, tol, init, *, k, max_iters, window) -> CTWOutput:
    bad_gt = checks.invalid_scalar(gamma, "positive") | checks.invalid_scalar(tol, "nonnegative")
    bad, e0, (xw, mx, lx, ex), (yw, my, ly, ey) = _prepare(x, y, reg, relative_reg, init, bad_gt)
    gamma = jnp.where(bad, jnp.ones_like(gamma), gamma)
    tol = jnp.where(bad, jnp.zeros_like(tol), tol)
    xs, ys, gs = lax.stop_gradient(xw), lax.stop_gradient(yw), lax.stop_gradient(gamma)
    soft = jax.value_and_grad(lambda c: soft_dtw(c, gamma=gs, window=window))

    def step(a):
        vx, vy = _projections(xs, ys, a, k)
        value, e = soft(_cost(xs, ys, vx, vy))
        return vx, vy, value, e

    # The first iteration always runs (previous = +inf).
    vx0, vy0 = jnp.zeros((x.shape[1], k), x.dtype), jnp.zeros((y.shape[1], k), x.dtype)
    history = jnp.full((max_iters,), jnp.nan, x.dtype)
    inf = jnp.asarray(jnp.inf, x.dtype)
    state = (0, inf, inf, e0, vx0, vy0, history)

    def stalled(previous, value):
        return previous - value <= tol * jnp.abs(value)

    def cond(state):
        i, previous, value, *_ = state
        return (i == 0) | ((i < max_iters) & ~stalled(previous, value))

    def body(state):
        i, _, value, e, _, _, history = state
        vx, vy, new, e_new = step(e)
        return i + 1, value, new, e_new, vx, vy, history.at[i].set(new)

    n_iters, previous, _, e, vx, vy, history = lax.while_loop(cond, body, state)
    converged = stalled(previous, history[n_iters - 1])
    history = _fill_tail(history, n_iters)
    value = soft_dtw(
        _cost(xw, yw, lax.stop_gradient(vx), lax.stop_gradient(vy)), gamma=gamma, window=window
    )
    wx, wy = _outputs(vx, vy, lax.stop_gradient(lx), lax.stop_gradient(ly), ex, ey)
    out = CTWOutput(value, wx, wy, mx, my, e, history, jnp.asarray(n_iters, jnp.int32), converged)
    return checks.nan_if(bad, out)
