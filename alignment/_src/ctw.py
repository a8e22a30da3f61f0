"""Canonical time warping: DTW and CCA alternated, for sequences with different features.

Plain DTW needs both sequences in one feature space. Canonical Time Warping (Zhou & De la Torre
2009) aligns ``x: [t, dx]`` and ``y: [s, dy]`` whose features differ (two modalities, two
views, a rotated sensor) by alternating a spatial alignment, CCA projections ``Vx``, ``Vy`` onto
``k`` shared dimensions, with a temporal alignment, DTW on the projected sequences, until the
warping path stops changing.

The objective. Each sequence is centred and whitened once by its own covariance over its frames,
with a ridge relative to its scale (``Sx + reg * tr(Sx) / dx * I``, a Cholesky factor ``Lx``):
``xw_i = Lx^-1 (x_i - mean_x)``, likewise ``yw_j``.
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

Shapes and dtypes: one pair of sequences per call (``jax.vmap`` over padded batches is not
supported: no ``lengths``); outputs follow the input dtype. Both loops are ``lax.while_loop``s
with a static ``max_iter``: jittable and ``vmap``-able (a batch runs until its slowest member
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
from jax import lax

from alignment._src import costs as _costs
from alignment._src.cca import _check_k, _check_reg, _sign_convention
from alignment._src.checks import as_float_array, check_positive, is_concrete
from alignment._src.dtw import dtw_path, soft_dtw

__all__ = ["CTWOutput", "SoftCTWOutput", "ctw", "soft_ctw"]


class CTWOutput(NamedTuple):
    """Result of :func:`ctw`.

    The aligned projections are ``(x - mean_x) @ wx`` and ``(y - mean_y) @ wy`` (``[t, k]`` and
    ``[s, k]``); ``alignment`` is the DTW path between them.

    Attributes:
      wx: Array of shape ``[dx, k]``, the projection of ``x`` (whitening included).
      wy: Array of shape ``[dy, k]``, the projection of ``y``.
      mean_x: Array of shape ``[dx]``, the mean of ``x`` over its frames.
      mean_y: Array of shape ``[dy]``.
      alignment: Array of shape ``[t, s]``, 1 on the cells of the warping path and 0 elsewhere
        (:func:`alignment.alignment_to_path` gives the index pairs).
      objective: Array of shape ``[max_iter]``, the objective ``J`` after each iteration
        (non-increasing), NaN after the last one.
      n_iter: Integer scalar, the number of iterations run (``1 <= n_iter <= max_iter``).
      converged: Boolean scalar, true if the last iteration left the path unchanged.
    """

    wx: jax.Array
    wy: jax.Array
    mean_x: jax.Array
    mean_y: jax.Array
    alignment: jax.Array
    objective: jax.Array
    n_iter: jax.Array
    converged: jax.Array


class SoftCTWOutput(NamedTuple):
    """Result of :func:`soft_ctw`.

    Attributes:
      value: Scalar, the soft-DTW objective at the returned projections; differentiable in
        ``x``, ``y`` and ``gamma``.
      wx: Array of shape ``[dx, k]``, the projection of ``x`` (whitening included; no gradient).
      wy: Array of shape ``[dy, k]``, the projection of ``y``.
      mean_x: Array of shape ``[dx]``.
      mean_y: Array of shape ``[dy]``.
      alignment: Array of shape ``[t, s]``, soft-DTW's expected alignment (entries in [0, 1]).
      objective: Array of shape ``[max_iter]``, the soft-DTW objective after each iteration
        (non-increasing), NaN after the last one.
      n_iter: Integer scalar, the number of iterations run.
      converged: Boolean scalar, true if the last decrease was within ``tol``.
    """

    value: jax.Array
    wx: jax.Array
    wy: jax.Array
    mean_x: jax.Array
    mean_y: jax.Array
    alignment: jax.Array
    objective: jax.Array
    n_iter: jax.Array
    converged: jax.Array


# --------------------------------------------------------------------------------------------
# Shared pieces.
# --------------------------------------------------------------------------------------------


def _check_sequences(x, y, k, reg, max_iter) -> tuple[jax.Array, jax.Array, int]:
    x = as_float_array(x, "x")
    y = as_float_array(y, "y")
    for name, arr, shape in (("x", x, "[t, dx]"), ("y", y, "[s, dy]")):
        if arr.ndim != 2:
            raise ValueError(
                f"`{name}` must be a 2-D array {shape} (frames by features), got shape "
                f"{arr.shape}; for a 1-D series use {name}[:, None]."
            )
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError(f"`{name}` must be non-empty, got shape {arr.shape}.")
    k = _check_k(k, x.shape[1], y.shape[1], f"x: {x.shape} and y: {y.shape}")
    _check_reg(reg, positive=True)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"`max_iter` must be a positive int (static), got {max_iter!r}.")
    dtype = jnp.result_type(x, y)
    return x.astype(dtype), y.astype(dtype), k


def _check_window(window) -> None:
    """Raises early (before tracing) for a band that is not a non-negative int."""
    if window is None:
        return
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ValueError(f"`window` must be None or a non-negative int, got {window!r}.")


def _check_init(init, t: int, s: int, dtype) -> jax.Array:
    """The initial alignment ``[t, s]``: the straight path by default."""
    if init is None:
        return _straight_path(t, s, dtype)
    init = as_float_array(init, "init")
    if init.shape != (t, s):
        raise ValueError(
            f"`init` must be an alignment of shape [t, s] = {(t, s)} (x: [t, dx], y: [s, dy]), "
            f"got shape {init.shape}."
        )
    return init.astype(dtype)


def _whiten(x: jax.Array, reg) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(xw, mean, L)``: ``xw = (x - mean) L^-T``, ``L L^T = S + reg tr(S) / d I`` (S: cov)."""
    mean = jnp.mean(x, axis=0)
    xc = x - mean
    cov = (xc.T @ xc) / x.shape[0]
    # The ridge is relative to the mean variance (a scale-free whitening); the tiny absolute
    # floor keeps a constant sequence (zero covariance) finite.
    ridge = jnp.asarray(reg, x.dtype) * jnp.trace(cov) / x.shape[1] + jnp.finfo(x.dtype).tiny
    cov = cov + ridge * jnp.eye(x.shape[1], dtype=x.dtype)
    chol = jnp.linalg.cholesky(cov)
    xw = lax.linalg.triangular_solve(chol, xc, left_side=False, lower=True, transpose_a=True)
    return xw, mean, chol


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


def _outputs(vx, vy, lx, ly):
    """``W = L^-T V``, so ``(x - mean) @ W = xw @ V``; the signs of :func:`~.coordination.cca`."""
    solve = lambda chol, v: lax.linalg.triangular_solve(
        chol, v, left_side=True, lower=True, transpose_a=True
    )
    return _sign_convention(solve(lx, vx), solve(ly, vy))


# --------------------------------------------------------------------------------------------
# Public functions.
# --------------------------------------------------------------------------------------------


def ctw(
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    *,
    k: int | None = None,
    reg: jax.typing.ArrayLike = 1e-3,
    max_iter: int = 20,
    window: int | None = None,
    init: jax.typing.ArrayLike | None = None,
) -> CTWOutput:
    """Canonical time warping: alternate CCA on the aligned pairs and DTW on the projections.

    Starting from the straight path, each iteration takes the CCA projections of the frames
    paired by the current path (whitened cross-covariance, SVD) and then the DTW path of the
    projected sequences, until the path repeats or ``max_iter`` iterations. Both steps minimise
    the same objective exactly (module docstring), so ``objective`` is non-increasing.

    Args:
      x: Array of shape ``[t, dx]``, the first sequence (frames by features).
      y: Array of shape ``[s, dy]``, the second; ``dy`` may differ from ``dx``.
      k: Number of shared dimensions (static int in ``[1, min(dx, dy)]``); ``None`` for all.
      reg: Positive ridge added to each sequence's covariance before whitening, relative to
        its mean variance (``reg * tr(S) / d``). Whitening scales weak directions (often noise)
        up to unit variance; a larger ``reg`` (``0.1``) damps them.
      max_iter: Static positive int, the most iterations (each one SVD and one DTW).
      window: Sakoe-Chiba band for the DTW steps, as in :func:`alignment.dtw`.
      init: Optional initial alignment ``[t, s]`` (a 0/1 path, or any non-negative weights)
        for the first CCA step; the straight path by default. Like the paper's algorithm this
        is a local method: a better start (say, DTW on features known to match) helps.

    Returns:
      A :class:`CTWOutput` ``(wx, wy, mean_x, mean_y, alignment, objective, n_iter,
      converged)``.

    Raises:
      ValueError: ``x`` or ``y`` is not a non-empty 2-D array, ``k`` is out of range, a
        concrete ``reg <= 0``, a bad ``max_iter``, ``window`` or ``init``.

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
      >>> obj = out.objective[: int(out.n_iter)]
      >>> bool(jnp.all(obj[1:] <= obj[:-1] * (1 + 1e-5)))
      True
    """
    x, y, k = _check_sequences(x, y, k, reg, max_iter)
    _check_window(window)
    init = _check_init(init, x.shape[0], y.shape[0], x.dtype)
    reg = jnp.asarray(reg, x.dtype)
    return _ctw(x, y, reg, init, k=k, max_iter=max_iter, window=window)


@functools.partial(jax.jit, static_argnames=("k", "max_iter", "window"))
def _ctw(x, y, reg, a0, *, k, max_iter, window) -> CTWOutput:
    xw, mx, lx = _whiten(x, reg)
    yw, my, ly = _whiten(y, reg)

    def step(a):
        vx, vy = _projections(xw, yw, a, k)
        value, a_new = dtw_path(_cost(xw, yw, vx, vy), window=window)
        return vx, vy, value, a_new

    # The first iteration always runs: the "previous path" starts as all zeros.
    vx0, vy0 = jnp.zeros((x.shape[1], k), x.dtype), jnp.zeros((y.shape[1], k), x.dtype)
    history = jnp.full((max_iter,), jnp.nan, x.dtype)
    state = (0, jnp.zeros_like(a0), a0, vx0, vy0, history)

    def cond(state):
        i, a_old, a, *_ = state
        return (i < max_iter) & jnp.any(a != a_old)

    def body(state):
        i, _, a, _, _, history = state
        vx, vy, value, a_new = step(a)
        return i + 1, a, a_new, vx, vy, history.at[i].set(value)

    n_iter, a_old, a, vx, vy, history = lax.while_loop(cond, body, state)
    wx, wy = _outputs(vx, vy, lx, ly)
    converged = jnp.all(a == a_old)
    return CTWOutput(wx, wy, mx, my, a, history, jnp.asarray(n_iter, jnp.int32), converged)


def soft_ctw(
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    *,
    gamma: jax.typing.ArrayLike = 1.0,
    k: int | None = None,
    reg: jax.typing.ArrayLike = 1e-3,
    max_iter: int = 50,
    tol: jax.typing.ArrayLike = 1e-6,
    window: int | None = None,
    init: jax.typing.ArrayLike | None = None,
) -> SoftCTWOutput:
    """Differentiable canonical time warping with soft-DTW's expected alignment.

    As :func:`ctw` with the hard path replaced by the expected alignment ``E`` of soft-DTW on
    the projected cost: each iteration takes the top singular vectors of ``xw^T E yw``, then the
    soft-DTW value and alignment of the new cost. The objective (soft-DTW of the cost of the
    module docstring) never increases; the loop stops when it decreases by at most
    ``tol * |objective|`` or after ``max_iter`` iterations. ``value`` is then recomputed with
    the projections held fixed (``stop_gradient``) and the whitening differentiated: its
    gradient is the derivative of the converged objective in ``x``, ``y`` and ``gamma`` (exact
    at a stationary point; the projections' contribution vanishes there).

    Numerics: as :func:`alignment.soft_dtw` (the value can be negative; ``gamma -> 0``
    approaches :func:`ctw`'s objective from below). Under ``jit`` a non-positive ``gamma`` or
    ``reg`` is not caught and gives NaN.

    Args:
      x: Array of shape ``[t, dx]``.
      y: Array of shape ``[s, dy]``.
      gamma: Positive soft-DTW smoothing (traced, differentiable).
      k: Number of shared dimensions (static int in ``[1, min(dx, dy)]``); ``None`` for all.
      reg: Positive relative ridge, as in :func:`ctw`.
      max_iter: Static positive int, the most iterations.
      tol: Relative decrease of the objective below which the loop stops.
      window: Sakoe-Chiba band, as in :func:`alignment.soft_dtw`.
      init: Optional initial alignment ``[t, s]``; the straight path by default.

    Returns:
      A :class:`SoftCTWOutput` ``(value, wx, wy, mean_x, mean_y, alignment, objective, n_iter,
      converged)``.

    Raises:
      ValueError: as :func:`ctw`, or a concrete ``gamma <= 0`` or ``tol < 0``.

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
    check_positive(gamma, "gamma")
    if tol is None or (is_concrete(tol) and float(tol) < 0):
        raise ValueError(f"`tol` must be >= 0, got {tol!r}.")
    x, y, k = _check_sequences(x, y, k, reg, max_iter)
    _check_window(window)
    dtype = x.dtype
    return _soft_ctw(
        x,
        y,
        jnp.asarray(gamma, dtype),
        jnp.asarray(reg, dtype),
        jnp.asarray(tol, dtype),
        _check_init(init, x.shape[0], y.shape[0], dtype),
        k=k,
        max_iter=max_iter,
        window=window,
    )


@functools.partial(jax.jit, static_argnames=("k", "max_iter", "window"))
def _soft_ctw(x, y, gamma, reg, tol, e0, *, k, max_iter, window) -> SoftCTWOutput:
    xw, mx, lx = _whiten(x, reg)
    yw, my, ly = _whiten(y, reg)
    xs, ys, gs = lax.stop_gradient(xw), lax.stop_gradient(yw), lax.stop_gradient(gamma)
    soft = jax.value_and_grad(lambda c: soft_dtw(c, gamma=gs, window=window))

    def step(a):
        vx, vy = _projections(xs, ys, a, k)
        value, e = soft(_cost(xs, ys, vx, vy))
        return vx, vy, value, e

    # The first iteration always runs (previous = +inf).
    vx0, vy0 = jnp.zeros((x.shape[1], k), x.dtype), jnp.zeros((y.shape[1], k), x.dtype)
    history = jnp.full((max_iter,), jnp.nan, x.dtype)
    inf = jnp.asarray(jnp.inf, x.dtype)
    state = (0, inf, inf, e0, vx0, vy0, history)

    def stalled(previous, value):
        return previous - value <= tol * jnp.abs(value)

    def cond(state):
        i, previous, value, *_ = state
        return (i == 0) | ((i < max_iter) & ~stalled(previous, value))

    def body(state):
        i, _, value, e, _, _, history = state
        vx, vy, new, e_new = step(e)
        return i + 1, value, new, e_new, vx, vy, history.at[i].set(new)

    n_iter, previous, _, e, vx, vy, history = lax.while_loop(cond, body, state)
    value = soft_dtw(
        _cost(xw, yw, lax.stop_gradient(vx), lax.stop_gradient(vy)), gamma=gamma, window=window
    )
    wx, wy = _outputs(vx, vy, lax.stop_gradient(lx), lax.stop_gradient(ly))
    converged = stalled(previous, history[n_iter - 1])
    return SoftCTWOutput(
        value, wx, wy, mx, my, e, history, jnp.asarray(n_iter, jnp.int32), converged
    )
