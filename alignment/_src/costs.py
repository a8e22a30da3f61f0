"""Pairwise costs, similarities and kernels between two sets of vectors.

Every function maps ``x: [n, d]`` and ``y: [m, d]`` to a matrix ``[n, m]`` whose entry ``(i, j)``
compares ``x[i]`` with ``y[j]``. They are pure JAX: ``jit``, ``vmap`` and ``grad`` work, and the
gradients stay finite at ``x[i] == y[j]`` and at zero vectors. The output dtype follows the inputs
(float16/bfloat16 are computed in float32 and cast back). Entry ``(i, j)`` depends on ``x[i]``
and ``y[j]`` only: a NaN or inf in one row affects that row's entries and no others. Empty sets
(``n = 0`` or ``m = 0``) give an empty matrix and ``d = 0`` is accepted (every vector is the
zero vector).

Costs (to minimise): :func:`squared_euclidean`, :func:`euclidean`, :func:`cosine_distance`,
:func:`absolute_difference`. Similarities and kernels (to maximise): :func:`cosine_similarity`,
:func:`linear_kernel`, :func:`polynomial_kernel`, :func:`rbf_kernel`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from alignment._src import checks
from alignment._src.checks import as_float_array, point_pair

__all__ = [
    "absolute_difference",
    "cosine_distance",
    "cosine_similarity",
    "euclidean",
    "linear_kernel",
    "polynomial_kernel",
    "rbf_kernel",
    "squared_euclidean",
]


def _work(x, y):
    """``x, y`` in the dtype to compute in (float32 for float16/bfloat16) and the output dtype."""
    dtype = x.dtype
    work = checks.compute_dtype(dtype)
    return x.astype(work), y.astype(work), dtype


def _nan_sqrt(v):
    """``sqrt(max(v, 0))`` with a zero derivative at 0 and NaN kept NaN (``safe_sqrt`` maps NaN
    to 0)."""
    positive = v > 0
    root = jnp.sqrt(jnp.where(positive, v, jnp.ones_like(v)))
    return jnp.where(positive, root, jnp.where(jnp.isnan(v), v, jnp.zeros_like(v)))


def _row_scale(v):
    """Largest absolute coordinate of each row (0 for ``d = 0``), without gradient."""
    return jax.lax.stop_gradient(jnp.max(jnp.abs(v), axis=1, initial=0.0))


# --------------------------------------------------------------------------------------------
# Squared Euclidean distance.
# --------------------------------------------------------------------------------------------


def _sq_scaled(xc, yc, ax, ay, okx, oky):
    """``|xc_i - yc_j|^2`` for rows of any finite size: each row is divided by its largest
    coordinate and each pair rescaled by the larger of the two, so nothing overflows before the
    final product (which overflows to ``inf`` only where the distance itself does)."""
    ax_s = jnp.where(okx & (ax > 0), ax, 1.0)
    ay_s = jnp.where(oky & (ay > 0), ay, 1.0)
    u = jnp.where(okx[:, None], xc / ax_s[:, None], 0.0)
    v = jnp.where(oky[:, None], yc / ay_s[:, None], 0.0)
    ax0, ay0 = jnp.where(okx, ax, 0.0), jnp.where(oky, ay, 0.0)
    big = jnp.maximum(ax0[:, None], ay0[None, :])
    big_s = jnp.where(big > 0, big, 1.0)
    p, q = ax0[:, None] / big_s, ay0[None, :] / big_s
    nu = jnp.sum(u * u, axis=1)[:, None]
    nv = jnp.sum(v * v, axis=1)[None, :]
    inner = jnp.maximum(p * p * nu + q * q * nv - 2.0 * p * q * (u @ v.T), 0.0)
    return (big * inner) * big  # 0 (not inf * 0) where the rows coincide


@jax.jit
def _squared_euclidean_core(x, y):
    x, y, dtype = _work(x, y)
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    if n == 0 or m == 0:
        return jnp.zeros((n, m), dtype)
    finite_x = jnp.all(jnp.isfinite(x), axis=1)
    finite_y = jnp.all(jnp.isfinite(y), axis=1)
    # Centre on the coordinate-wise median of the finite rows: it removes most of the
    # cancellation of the expansion below, and (unlike a mean) one huge or non-finite row cannot
    # move it. No gradient flows through it (the result does not depend on it).
    pts = jnp.concatenate(
        [jnp.where(finite_x[:, None], x, jnp.nan), jnp.where(finite_y[:, None], y, jnp.nan)]
    )
    center = jnp.nanmedian(pts, axis=0) if d else jnp.zeros((0,), x.dtype)
    center = jax.lax.stop_gradient(jnp.where(jnp.isnan(center), 0.0, center))
    xc, yc = x - center, y - center
    ax, ay = _row_scale(xc), _row_scale(yc)
    nan_x, nan_y = jnp.any(jnp.isnan(x), axis=1), jnp.any(jnp.isnan(y), axis=1)
    inf_x, inf_y = ~finite_x & ~nan_x, ~finite_y & ~nan_y
    # Rows this large could overflow |xc|^2 + |yc|^2 - 2 xc.yc: they take the scaled path.
    limit = jnp.sqrt(jnp.finfo(x.dtype).max) / (4.0 * max(d, 1) ** 0.5)
    big_x, big_y = finite_x & (ax > limit), finite_y & (ay > limit)
    # One product of augmented matrices, [xc, |xc|^2, 1] . [-2 yc, 1, |yc|^2], gives all three
    # terms; its reverse-mode derivative is two products with the cotangent (the norms'
    # gradients ride along). Big and infinite rows are zeroed here (double where: their entries
    # come from elsewhere and their gradient stays finite); NaN rows are kept, so NaN
    # propagates to their entries and gradients.
    xf = jnp.where((big_x | inf_x)[:, None], 0.0, xc)
    yf = jnp.where((big_y | inf_y)[:, None], 0.0, yc)
    ones_x, ones_y = jnp.ones((n, 1), x.dtype), jnp.ones((m, 1), y.dtype)
    xa = jnp.concatenate([xf, jnp.sum(xf * xf, axis=1, keepdims=True), ones_x], axis=1)
    ya = jnp.concatenate([-2.0 * yf, ones_y, jnp.sum(yf * yf, axis=1, keepdims=True)], axis=1)
    out = jnp.maximum(xa @ ya.T, 0.0)  # NaN stays NaN
    pair_nan = nan_x[:, None] | nan_y[None, :]
    pair_big = (big_x[:, None] | big_y[None, :]) & ~pair_nan
    out = jax.lax.cond(
        jnp.any(pair_big),
        lambda o: jnp.where(pair_big, _sq_scaled(xc, yc, ax, ay, finite_x, finite_y), o),
        lambda o: o,
        out,
    )
    pair_inf = (inf_x[:, None] | inf_y[None, :]) & ~pair_nan
    out = jnp.where(pair_inf, jnp.inf, out)
    return out.astype(dtype)


def squared_euclidean(x: jax.typing.ArrayLike, y: jax.typing.ArrayLike) -> jax.Array:
    """Squared Euclidean distances ``||x_i - y_j||^2`` (not halved).

    Computed as ``|x|^2 + |y|^2 - 2 x.y`` (one matrix product) after centring both sets on the
    coordinate-wise median of their finite rows, which removes most of the cancellation of that
    expansion; the result is clamped at zero, so it is never negative. Rows too large for that
    expansion (coordinates beyond about ``1e18`` in float32) are rescaled pair by pair, so the
    result is ``inf`` only where the distance itself overflows.

    Numerics: the absolute error is about ``eps * max |x - centre|^2`` over the two rows (``eps``
    the dtype's precision), so distances far below that scale round to zero; :func:`euclidean`
    uses exact differences instead.

    Bad input: shapes are checked at trace time (``ValueError`` naming ``x``/``y`` for ``None``,
    complex dtypes, rank other than 2 or different feature sizes, also under ``jit``). A NaN in
    row ``x[i]`` makes row ``i`` of the result NaN (value and gradient) and nothing else; an
    ``inf`` gives ``inf`` entries. See ``docs/conventions.md``.

    Args:
      x: Array of shape ``[n, d]``.
      y: Array of shape ``[m, d]``.

    Returns:
      Array of shape ``[n, m]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> d = squared_euclidean(jnp.array([[0.0, 0.0], [1.0, 2.0]]), jnp.array([[1.0, 0.0]]))
      >>> d.shape, d.round(4).tolist()
      ((2, 1), [[1.0], [4.0]])
    """
    x, y = point_pair(x, y)
    return _squared_euclidean_core(x, y)


# --------------------------------------------------------------------------------------------
# Euclidean distance and the L1 cost.
# --------------------------------------------------------------------------------------------


@jax.jit
def _euclidean_core(x, y):
    x, y, dtype = _work(x, y)
    diff = x[:, None, :] - y[None, :, :]
    # Divide by the largest |difference| of each pair so that the squares cannot overflow (or
    # underflow); the scale carries no gradient (the result does not depend on it).
    scale = jax.lax.stop_gradient(jnp.max(jnp.abs(diff), axis=-1, initial=0.0))
    scale = jnp.where(jnp.isfinite(scale) & (scale > 0), scale, 1.0)
    scaled = diff / scale[..., None]
    return (scale * _nan_sqrt(jnp.sum(scaled * scaled, axis=-1))).astype(dtype)


def euclidean(x: jax.typing.ArrayLike, y: jax.typing.ArrayLike) -> jax.Array:
    """Euclidean distances ``||x_i - y_j||``, with a zero (finite) gradient where they vanish.

    Computed from the differences ``x_i - y_j`` (an ``[n, m, d]`` intermediate that ``jit``
    fuses away), each pair scaled by its largest coordinate difference, not from the expansion
    of :func:`squared_euclidean`: the square root would magnify the expansion's rounding near
    zero (``euclidean(x, x)`` is exactly 0), and distances up to the dtype's maximum are
    representable.

    Bad input: shapes are checked at trace time (``ValueError``, as :func:`squared_euclidean`).
    NaN in a row propagates to that row's entries (value and gradient); ``inf`` gives ``inf``.
    See ``docs/conventions.md``.

    Args:
      x: Array of shape ``[n, d]``.
      y: Array of shape ``[m, d]``.

    Returns:
      Array of shape ``[n, m]``.
    """
    x, y = point_pair(x, y)
    return _euclidean_core(x, y)


@jax.jit
def _absolute_difference_core(x, y):
    x, y, dtype = _work(x, y)
    return jnp.sum(jnp.abs(x[:, None, :] - y[None, :, :]), axis=-1).astype(dtype)


def absolute_difference(x: jax.typing.ArrayLike, y: jax.typing.ArrayLike) -> jax.Array:
    """Absolute differences ``|x_i - y_j|`` between two 1-D series (the L1 / cityblock cost).

    Bad input: ``ValueError`` (at trace time) for ``None``, complex dtypes, ranks other than 1
    or 2, or different feature sizes. NaN in a row propagates to that row's entries. See
    ``docs/conventions.md``.

    Args:
      x: Array of shape ``[n]`` or ``[n, d]``.
      y: Array of shape ``[m]`` or ``[m, d]``; for ``d > 1`` the absolute differences are summed
        over features (the cityblock distance).

    Returns:
      Array of shape ``[n, m]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> absolute_difference(jnp.array([1.0, 3.0]), jnp.array([2.0, 2.0, 4.0]))
      Array([[1., 1., 3.],
             [1., 1., 1.]], dtype=float32)
    """
    x = as_float_array(x, "x")
    y = as_float_array(y, "y")
    if x.ndim == 1:
        x = x[:, None]
    if y.ndim == 1:
        y = y[:, None]
    x, y = point_pair(x, y)
    return _absolute_difference_core(x, y)


# --------------------------------------------------------------------------------------------
# Cosine similarity and distance.
# --------------------------------------------------------------------------------------------


def _unit_rows(v, eps):
    """``v_i / max(|v_i|, eps)``, with each row first divided by its largest coordinate so that
    the norm cannot overflow (or underflow) on the way."""
    scale = _row_scale(v)
    ok = jnp.isfinite(scale) & (scale > 0)
    scale = jnp.where(ok, scale, 1.0)
    scaled = v / scale[:, None]
    norm_scaled = _nan_sqrt(jnp.sum(scaled * scaled, axis=1))  # in [1, sqrt(d)] where ok
    norm = scale * norm_scaled
    large = norm >= eps
    unit = scaled / jnp.where(large, norm_scaled, 1.0)[:, None]
    small = v / eps
    # NaN rows stay NaN: the comparison is False and v / eps is NaN.
    return jnp.where(large[:, None], unit, small)


@jax.jit
def _cosine_similarity_core(x, y, eps):
    x, y, dtype = _work(x, y)
    bad = checks.invalid_scalar(eps, "positive")
    eps = jnp.where(bad, 1.0, eps).astype(x.dtype)
    sim = jnp.clip(_unit_rows(x, eps) @ _unit_rows(y, eps).T, -1.0, 1.0)  # rounding
    return checks.nan_if(bad, sim).astype(dtype)


def cosine_similarity(
    x: jax.typing.ArrayLike, y: jax.typing.ArrayLike, *, eps: jax.typing.ArrayLike = 1e-8
) -> jax.Array:
    """Cosine similarities ``<x_i, y_j> / (max(|x_i|, eps) max(|y_j|, eps))`` in ``[-1, 1]``.

    Each row is normalised before the product (after dividing it by its largest coordinate), so
    vectors up to the largest finite magnitude (``1e30`` in float32) get their true similarity;
    vectors with a norm below ``eps`` are divided by ``eps`` instead (a zero vector has
    similarity 0 with everything, scikit-learn's convention).

    Bad input: shapes are checked at trace time (``ValueError``, as :func:`squared_euclidean`);
    a concrete ``eps`` that is not a finite positive number, or an array-valued one, raises
    ``ValueError``; under ``jit`` a bad ``eps`` gives an all-NaN result. NaN in a row propagates
    to that row's entries. See ``docs/conventions.md``.

    Args:
      x: Array of shape ``[n, d]``.
      y: Array of shape ``[m, d]``.
      eps: Positive floor on the norms, so that a zero vector has similarity 0 with everything
        (and a finite gradient) instead of NaN.

    Returns:
      Array of shape ``[n, m]``.
    """
    checks.scalar(eps, "eps", "positive")
    x, y = point_pair(x, y)
    return _cosine_similarity_core(x, y, eps)


def cosine_distance(
    x: jax.typing.ArrayLike, y: jax.typing.ArrayLike, *, eps: jax.typing.ArrayLike = 1e-8
) -> jax.Array:
    """Cosine distances ``1 - cosine_similarity(x, y)`` in ``[0, 2]``.

    Bad input: as :func:`cosine_similarity` (a bad ``eps`` raises when concrete and gives NaN
    under ``jit``). See ``docs/conventions.md``.

    Args:
      x: Array of shape ``[n, d]``.
      y: Array of shape ``[m, d]``.
      eps: Positive floor on the norms (see :func:`cosine_similarity`).

    Returns:
      Array of shape ``[n, m]``.
    """
    sim = cosine_similarity(x, y, eps=eps)
    return (1.0 - sim.astype(checks.compute_dtype(sim.dtype))).astype(sim.dtype)


# --------------------------------------------------------------------------------------------
# Kernels.
# --------------------------------------------------------------------------------------------


@jax.jit
def _linear_kernel_core(x, y):
    x, y, dtype = _work(x, y)
    return (x @ y.T).astype(dtype)


def linear_kernel(x: jax.typing.ArrayLike, y: jax.typing.ArrayLike) -> jax.Array:
    """Linear kernel ``<x_i, y_j>``.

    Bad input: shapes are checked at trace time (``ValueError``, as :func:`squared_euclidean`).
    NaN in a row propagates to that row's entries. See ``docs/conventions.md``.

    Args:
      x: Array of shape ``[n, d]``.
      y: Array of shape ``[m, d]``.

    Returns:
      Array of shape ``[n, m]``.
    """
    x, y = point_pair(x, y)
    return _linear_kernel_core(x, y)


def _default_gamma(gamma, d: int):
    """``1 / d``, and 1 for ``d = 0`` (where the inner products and distances are all 0)."""
    return 1.0 / max(d, 1) if gamma is None else gamma


@functools.partial(jax.jit, static_argnames=("degree",))
def _polynomial_kernel_core(x, y, gamma, coef0, *, degree):
    x, y, dtype = _work(x, y)
    bad = checks.invalid_scalar(gamma, "positive") | checks.invalid_scalar(coef0, "finite")
    gamma = jnp.asarray(gamma, x.dtype)
    coef0 = jnp.asarray(coef0, x.dtype)
    return checks.nan_if(bad, (gamma * (x @ y.T) + coef0) ** degree).astype(dtype)


def polynomial_kernel(
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    *,
    degree: int = 3,
    gamma: jax.typing.ArrayLike | None = None,
    coef0: jax.typing.ArrayLike = 1.0,
) -> jax.Array:
    """Polynomial kernel ``(gamma <x_i, y_j> + coef0) ** degree`` (scikit-learn's convention).

    Bad input: shapes are checked at trace time (``ValueError``, as :func:`squared_euclidean`);
    ``degree`` must be a Python int ``>= 1``; a concrete ``gamma`` that is not finite and
    positive, a non-finite ``coef0`` or array-valued ones raise ``ValueError``; under ``jit``
    bad values give an all-NaN result. See ``docs/conventions.md``.

    Args:
      x: Array of shape ``[n, d]``.
      y: Array of shape ``[m, d]``.
      degree: Positive integer power (static).
      gamma: Positive scale of the inner product (the ``gamma`` of ``docs/conventions.md``'s
        table of temperature-like parameters); ``None`` means ``1 / d`` (1 when ``d = 0``).
      coef0: Finite additive constant.

    Returns:
      Array of shape ``[n, m]``.
    """
    degree = checks.static_int(degree, "degree", minimum=1)
    checks.scalar(gamma, "gamma", "positive", allow_none=True)
    checks.scalar(coef0, "coef0", "finite")
    x, y = point_pair(x, y)
    return _polynomial_kernel_core(x, y, _default_gamma(gamma, x.shape[1]), coef0, degree=degree)


@jax.jit
def _rbf_kernel_core(x, y, gamma):
    dtype = x.dtype
    bad = checks.invalid_scalar(gamma, "positive")
    work = checks.compute_dtype(dtype)
    gamma = jnp.asarray(gamma, work)
    out = jnp.exp(-gamma * _squared_euclidean_core(x.astype(work), y.astype(work)))
    return checks.nan_if(bad, out).astype(dtype)


def rbf_kernel(
    x: jax.typing.ArrayLike, y: jax.typing.ArrayLike, *, gamma: jax.typing.ArrayLike | None = None
) -> jax.Array:
    """Gaussian (RBF) kernel ``exp(-gamma ||x_i - y_j||^2)`` (scikit-learn's convention).

    Bad input: shapes are checked at trace time (``ValueError``, as :func:`squared_euclidean`);
    a concrete ``gamma`` that is not finite and positive, or an array-valued one, raises
    ``ValueError``; under ``jit`` a bad ``gamma`` gives an all-NaN result. NaN in a row
    propagates to that row's entries. See ``docs/conventions.md``.

    Args:
      x: Array of shape ``[n, d]``.
      y: Array of shape ``[m, d]``.
      gamma: Positive inverse squared length scale (the ``gamma`` of ``docs/conventions.md``'s
        table of temperature-like parameters); ``None`` means ``1 / d`` (1 when ``d = 0``).

    Returns:
      Array of shape ``[n, m]`` with entries in ``[0, 1]`` (0 only by underflow).
    """
    checks.scalar(gamma, "gamma", "positive", allow_none=True)
    x, y = point_pair(x, y)
    return _rbf_kernel_core(x, y, _default_gamma(gamma, x.shape[1]))
