"""Canonical correlation analysis: closed-form linear CCA and the Deep CCA objectives.

* :func:`cca` fits linear CCA between two views ``x: [n, dx]`` and ``y: [n, dy]`` of the same
  ``n`` samples, in closed form: each view is whitened by its (ridge-regularised) covariance and
  the whitened cross-covariance is factored by an SVD. :func:`cca_transform` projects new data.
* :func:`dcca_loss` is the Deep CCA objective of Andrew et al. (2013): minus the sum of the top
  ``k`` canonical correlations of a batch of features (the trace norm of
  ``T = Sxx^-1/2 Sxy Syy^-1/2`` when ``k`` is ``None``). :func:`dcca_squared_loss` is the
  variant of cca-zoo's ``CCALoss``: minus the sum of the top ``k`` *squared* correlations (the
  squared Frobenius norm of ``T`` when ``k`` is ``None``). The two differ; neither is the
  Frobenius norm ``||T||_F`` that some published DCCA code returns under the name "trace norm".

Conventions, shared by every function here: covariances use the unbiased ``1 / (n - 1)``
normalisation (as Andrew et al.) and ``reg`` is an absolute ridge ``reg * I`` added to both
within-view covariances (Andrew et al.'s ``r1 = r2``). Canonical correlations are the singular
values of ``T``, in decreasing order; with ``reg > 0`` they are shrunk towards 0 (each is below
1). Sign convention of :func:`cca`: in each canonical pair the entry of largest magnitude of the
``x`` direction is positive (ties to the first), and the ``y`` direction follows, so that every
correlation is non-negative.

Units. Correlations do not depend on the units of the data, but float32 covariances do: data
in units of 1e30 (or 1e-30) would square to inf (or 0). Every function therefore centres each
view and divides it by a power of two ``2 ** e`` (one per view, from its largest magnitude;
exact in binary floating point) before forming covariances, and divides the ridge by ``2 ** 2e``
to match (``Dx^-1 (Sxx + reg I) Dx^-1``, again exact unless it overflows, in which case the ridge
swamps the covariance and the correlations are 0 as in exact arithmetic). ``reg`` thus keeps its
meaning, an absolute ridge on the covariance of the data as given, at every scale: rescaling the
data by ``c`` and ``reg`` by ``c ** 2`` changes no correlation, even where ``c ** 2 reg`` itself
is outside float32 (a concrete ``reg`` is carried as mantissa and exponent).

Numerics. :func:`cca` whitens by ``eigh`` with a pseudo-inverse (eigenvalues below NumPy's rank
tolerance ``d * eps * max`` count as zero), so ``reg = 0`` is safe on rank-deficient views
(fewer samples than features, constant features): those directions get zero weights. It is a
fitting routine, not a loss: its derivatives (through ``eigh`` and an SVD with vectors) are NaN
wherever eigenvalues or correlations repeat. The losses are written for gradients: they whiten
by a Cholesky factor (any whitening gives the same singular values; Cholesky's derivative has no
eigenvalue gaps in it) and differentiate the singular values by a ``custom_jvp`` with the
closed form ``d sigma_i = u_i^T dT v_i``, which has no ``1 / (sigma_i^2 - sigma_j^2)`` term:
gradients are finite when correlations repeat (for instance identical or rotated views, where
autodiff through ``eigh`` of the covariances, as in cca-zoo, gives NaN) and when a batch is
rank-deficient (``reg > 0`` keeps the Cholesky factor well defined). When ``k`` cuts through a
group of equal correlations the loss is not differentiable there and the gradient is one of its
subgradients. Output dtypes follow the inputs.

References: Hotelling, "Relations between two sets of variates" (1936); Andrew, Arora, Bilmes &
Livescu, "Deep Canonical Correlation Analysis", ICML 2013; Chapman & Wang, "CCA-Zoo" (2021).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from alignment._src import checks
from alignment._src import numerics as nm

__all__ = [
    "CCAOutput",
    "CCATransformOutput",
    "cca",
    "cca_transform",
    "dcca_loss",
    "dcca_squared_loss",
]


class CCAOutput(NamedTuple):
    """Result of :func:`cca`: the canonical directions, correlations and centring.

    The canonical variates of the training data are ``(x - mean_x) @ wx`` and
    ``(y - mean_y) @ wy`` (:func:`cca_transform`); each has covariance ``I`` (plus the ``reg``
    shrinkage) and their cross-covariance is ``diag(correlations)``.

    Attributes:
      wx: Array of shape ``[dx, k]``, the canonical directions of ``x``, one per column.
      wy: Array of shape ``[dy, k]``, the canonical directions of ``y``.
      correlations: Array of shape ``[k]``, the canonical correlations in decreasing order, in
        ``[0, 1]``.
      mean_x: Array of shape ``[dx]``, the mean of ``x`` removed before projecting.
      mean_y: Array of shape ``[dy]``, the mean of ``y``.
    """

    wx: jax.Array
    wy: jax.Array
    correlations: jax.Array
    mean_x: jax.Array
    mean_y: jax.Array


class CCATransformOutput(NamedTuple):
    """Result of :func:`cca_transform`: the canonical variates of both views.

    Attributes:
      zx: Array of shape ``[m, k]`` (``[k]`` for one sample), ``(x - mean_x) @ wx``.
      zy: Array of shape ``[m', k]`` (``[k]``), ``(y - mean_y) @ wy``.
    """

    zx: jax.Array
    zy: jax.Array


# --------------------------------------------------------------------------------------------
# Validation.
# --------------------------------------------------------------------------------------------


def _check_views(x, y, names: tuple[str, str] = ("x", "y")) -> tuple[jax.Array, jax.Array]:
    """Two 2-D float arrays with the same number of rows (>= 2), in a common dtype."""
    x = checks.as_float_array(x, names[0])
    y = checks.as_float_array(y, names[1])
    for name, arr in zip(names, (x, y), strict=True):
        if arr.ndim != 2:
            raise ValueError(
                f"`{name}` must be a 2-D array [n, d] (samples by features), got shape "
                f"{arr.shape}; for one feature use {name}[:, None]."
            )
        if arr.shape[1] == 0:
            raise ValueError(f"`{name}` must have at least one feature, got shape {arr.shape}.")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"`{names[0]}` and `{names[1]}` must have the same number of samples (paired rows), "
            f"got shapes {x.shape} and {y.shape}."
        )
    if x.shape[0] < 2:
        raise ValueError(
            f"CCA needs at least 2 samples to estimate covariances, got shapes {x.shape} and "
            f"{y.shape}."
        )
    dtype = jnp.result_type(x, y)
    return x.astype(dtype), y.astype(dtype)


def _reg_parts(reg, domain: str, dtype) -> tuple[jax.Array, jax.Array]:
    """Validates ``reg`` and splits it as ``mantissa * 2 ** exponent`` (see ``_covariances``)."""
    checks.scalar(reg, "reg", domain)
    mantissa, exponent = checks.split_pow2(reg)
    return jnp.asarray(mantissa, dtype), jnp.asarray(exponent, jnp.int32)


# --------------------------------------------------------------------------------------------
# Shared numerics.
# --------------------------------------------------------------------------------------------


def _scaled_ridge(reg_m, reg_e, e, dtype) -> jax.Array:
    """``reg * 2 ** (-2 e)``: the absolute ridge in the units ``2 ** e`` of a view, exactly.

    Clamped below ``2 ** (maxexp - 4)`` (where the ridge already swamps a unit covariance, and
    ``inf`` would give ``inf - inf``): the result is then the exact one rounded to 0.
    """
    ridge = nm.scale_pow2(jnp.asarray(reg_m, dtype), reg_e - 2 * e)
    big = jnp.asarray(2.0 ** (jnp.finfo(dtype).maxexp - 4), dtype)
    return jnp.minimum(ridge, big)


def _covariances(x: jax.Array, y: jax.Array, reg_m, reg_e) -> tuple[jax.Array, ...]:
    """Means, and ``Sxx + reg I``, ``Syy + reg I``, ``Sxy`` (``1 / (n - 1)``) in exact units.

    Each view is centred and expressed in a power-of-two unit ``2 ** e`` of its own
    (:func:`~alignment._src.numerics.center_pow2`): ``x - mean_x = xs 2 ** ex``. The returned
    matrices are those of ``xs``, ``ys`` with the ridge ``reg 2 ** (-2 ex)``, i.e. exactly
    ``Dx^-1 (Sxx + reg I) Dx^-1`` with ``Dx = 2 ** ex I`` (and ``Dx^-1 Sxy Dy^-1``): the same
    canonical correlations and, mapped back by ``2 ** -ex``, the same directions, with nothing
    to overflow or underflow in float32 for data in units of 1e30 or 1e-30.
    """
    n = x.shape[0]
    mx, xs, ex = nm.center_pow2(x)
    my, ys, ey = nm.center_pow2(y)
    scale = 1.0 / (n - 1)
    rx = _scaled_ridge(reg_m, reg_e, ex, x.dtype)
    ry = _scaled_ridge(reg_m, reg_e, ey, y.dtype)
    sxx = scale * (xs.T @ xs) + rx * jnp.eye(x.shape[1], dtype=x.dtype)
    syy = scale * (ys.T @ ys) + ry * jnp.eye(y.shape[1], dtype=y.dtype)
    sxy = scale * (xs.T @ ys)
    return mx, my, sxx, syy, sxy, ex, ey


def _inv_sqrt_factor(cov: jax.Array) -> jax.Array:
    """``K = V diag(lam^-1/2)`` with ``K^T cov K = I`` on the range of ``cov`` (pseudo-inverse).

    Eigenvalues at or below NumPy's rank tolerance
    (:func:`~alignment._src.numerics.rank_tolerance`) get a zero column. Not for differentiation
    (autodiff through ``eigh`` is NaN at repeated eigenvalues).
    """
    lam, vecs = jnp.linalg.eigh(0.5 * (cov + cov.T))
    kept = lam > nm.rank_tolerance(lam, cov.shape[0])
    inv = jnp.where(kept, 1.0 / jnp.sqrt(jnp.where(kept, lam, 1.0)), 0.0)
    return vecs * inv


def _whitened_cross(zx: jax.Array, zy: jax.Array, reg_m, reg_e) -> jax.Array:
    """``T = Lx^-1 Sxy Ly^-T`` from Cholesky factors ``Sxx + reg I = Lx Lx^T`` (and ``y``)."""
    _, _, sxx, syy, sxy, _, _ = _covariances(zx, zy, reg_m, reg_e)
    lx = jnp.linalg.cholesky(sxx)
    ly = jnp.linalg.cholesky(syy)
    t = lax.linalg.triangular_solve(lx, sxy, left_side=True, lower=True)  # Lx^-1 Sxy
    return lax.linalg.triangular_solve(ly, t, left_side=False, lower=True, transpose_a=True)


# --------------------------------------------------------------------------------------------
# Public functions.
# --------------------------------------------------------------------------------------------


def cca(
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    *,
    k: int | None = None,
    reg: jax.typing.ArrayLike = 0.0,
) -> CCAOutput:
    """Linear canonical correlation analysis in closed form (whitening + SVD).

    Finds directions ``wx[:, i]``, ``wy[:, i]`` maximising the correlation of ``x @ wx[:, i]``
    and ``y @ wy[:, i]`` subject to ``wx^T (Sxx + reg I) wx = wy^T (Syy + reg I) wy = I``: the
    solution of the generalised eigenproblem ``[[0, Sxy], [Syx, 0]] w = rho [[Sxx, 0], [0, Syy]]
    w``. Computed as ``T = Kx^T Sxy Ky`` with ``Kx^T Sxx Kx = I`` (``eigh``), ``T = U S V^T``,
    ``wx = Kx U``, ``wy = Ky V``. Deterministic signs (module docstring).

    Numerics: the whitening is a pseudo-inverse, so ``reg = 0`` (classical CCA) works on
    rank-deficient views; with ``n - 1 < k`` the trailing correlations are 0 and their
    directions arbitrary. Each view is first expressed in an exact power-of-two unit (module
    docstring), so the result does not depend on the units of the data: ``cca(c x, c y,
    reg=c**2 reg)`` gives the same correlations (and ``wx / c``) for any ``c``, 1e30 or 1e-30
    included, in float32. Correlations are clipped to ``[0, 1]`` against rounding. Not meant to
    be differentiated (use :func:`dcca_loss`). float16/bfloat16 inputs are computed in float32
    and returned in their dtype.

    Bad input: shapes, ``k`` and dtypes are checked at trace time (``ValueError``, under
    ``jit``/``vmap`` too; array-valued or complex ``reg`` included); a concrete ``reg`` that is
    negative or not finite raises; under ``jit`` such a ``reg`` makes every output NaN. NaN in
    the data propagates. See ``docs/conventions.md``.

    Args:
      x: Array of shape ``[n, dx]``, the first view (rows are samples).
      y: Array of shape ``[n, dy]``, the second view, row-paired with ``x``.
      k: Number of canonical pairs (static int in ``[1, min(dx, dy)]``); ``None`` for all.
      reg: Absolute ridge ``>= 0`` added to both within-view covariances, ``Sxx + reg I``, in
        the units of the data as given (traced).

    Returns:
      A :class:`CCAOutput` ``(wx [dx, k], wy [dy, k], correlations [k], mean_x [dx],
      mean_y [dy])``.

    Raises:
      ValueError: ``x`` or ``y`` is not 2-D, complex or ``None``, their numbers of rows differ
        or are below 2, ``k`` is not an int in ``[1, min(dx, dy)]``, ``reg`` is not a scalar, or
        a concrete ``reg`` is negative or not finite.

    References:
      Hotelling, "Relations between two sets of variates", Biometrika 1936.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> x = jax.random.normal(jax.random.key(0), (200, 3))
      >>> y = jnp.stack([x[:, 0] + x[:, 1], -x[:, 2], jnp.ones(200)], axis=1)  # a linear view
      >>> out = cca(x, y, k=2)
      >>> out.wx.shape, out.correlations.round(3).tolist()
      ((3, 2), [1.0, 1.0])
    """
    x, y = _check_views(x, y)
    k = checks.static_k(k, x.shape[1], y.shape[1], f"x: {x.shape} and y: {y.shape}")
    dtype = checks.compute_dtype(x.dtype)
    reg_m, reg_e = _reg_parts(reg, "nonnegative", dtype)
    out = _cca(x.astype(dtype), y.astype(dtype), reg_m, reg_e, k)
    return jax.tree.map(lambda a: a.astype(x.dtype), out)


@functools.partial(jax.jit, static_argnums=(4,))
def _cca(x, y, reg_m, reg_e, k: int) -> CCAOutput:
    mx, my, sxx, syy, sxy, ex, ey = _covariances(x, y, reg_m, reg_e)
    kx, ky = _inv_sqrt_factor(sxx), _inv_sqrt_factor(syy)
    u, s, vt = jnp.linalg.svd(kx.T @ sxy @ ky, full_matrices=False)
    # back to the units of the data: x - mean_x = xs 2**ex, so wx = wx_s 2**-ex (exact)
    wx = nm.scale_pow2(kx @ u[:, :k], -ex)
    wy = nm.scale_pow2(ky @ vt[:k].T, -ey)
    wx, wy = nm.canonical_signs(wx, wy)
    out = CCAOutput(wx, wy, jnp.clip(s[:k], 0.0, 1.0), mx, my)
    return checks.nan_if(checks.invalid_scalar(reg_m, "nonnegative"), out)


def cca_transform(
    result: CCAOutput,
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
) -> CCATransformOutput:
    """Projects (new) data on the canonical directions of a fitted :func:`cca`.

    Both views are required (no output field is ever ``None``); for one view alone, the
    variates are ``(x - result.mean_x) @ result.wx``.

    Bad input: shapes and dtypes are checked at trace time (``ValueError``, under
    ``jit``/``vmap`` too). NaN in the data propagates. See ``docs/conventions.md``.

    Args:
      result: The :class:`CCAOutput` of :func:`cca`.
      x: Array of shape ``[m, dx]`` (or ``[dx]`` for one sample).
      y: Array of shape ``[m', dy]`` (or ``[dy]``).

    Returns:
      A :class:`CCATransformOutput` ``(zx, zy)``: ``(x - mean_x) @ wx`` of shape ``[m, k]`` and
      ``(y - mean_y) @ wy`` of shape ``[m', k]``, in the dtype of the inputs.

    Raises:
      ValueError: ``result`` is not a :class:`CCAOutput`, a view is ``None``, complex, of rank
        other than 1 or 2, or its last dimension does not match the fitted one.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> x = jax.random.normal(jax.random.key(1), (100, 2)); y = x @ jnp.array([[1.0, 2.0]]).T
      >>> zx, zy = cca_transform(cca(x, y), x[:5], y[:5])
      >>> bool(jnp.allclose(zx, zy, atol=1e-4))  # perfectly correlated: equal variates
      True
    """
    if not isinstance(result, CCAOutput):
        raise ValueError(f"`result` must be the CCAOutput of cca(), got {type(result).__name__}.")
    out = []
    for name, view, w, mean in (
        ("x", x, result.wx, result.mean_x),
        ("y", y, result.wy, result.mean_y),
    ):
        view = checks.as_float_array(view, name)
        if view.ndim not in (1, 2) or view.shape[-1] != w.shape[0]:
            raise ValueError(
                f"`{name}` must have shape [m, {w.shape[0]}] (or [{w.shape[0]}]) to match the "
                f"fitted w{name} of shape {w.shape}, got shape {view.shape}."
            )
        dtype = jnp.result_type(view, w)
        cdtype = checks.compute_dtype(dtype)
        z = _project(view.astype(cdtype), w.astype(cdtype), jnp.asarray(mean, cdtype))
        out.append(z.astype(dtype))
    return CCATransformOutput(out[0], out[1])


@jax.jit
def _project(view, w, mean):
    return (view - mean) @ w


def dcca_loss(
    zx: jax.typing.ArrayLike,
    zy: jax.typing.ArrayLike,
    *,
    k: int | None = None,
    reg: jax.typing.ArrayLike = 1e-3,
) -> jax.Array:
    """The Deep CCA objective: minus the sum of the top ``k`` canonical correlations of a batch.

    ``-sum_{i < k} sigma_i(T)`` with ``T = (Szx + reg I)^-1/2 Sxy (Szy + reg I)^-1/2``, the
    covariances of the batch ``(zx, zy)`` (``1 / (b - 1)``); for ``k = None`` this is minus the
    trace (nuclear) norm ``||T||_* = tr (T^T T)^1/2`` of Andrew et al. (2013). Minimise it over
    the parameters of the networks producing ``zx`` and ``zy``.

    Numerics: Cholesky whitening and a closed-form singular-value derivative (module docstring):
    gradients are finite when correlations repeat and for rank-deficient batches (``b <= d``)
    thanks to ``reg > 0``. Each view is expressed in an exact power-of-two unit first, so
    ``dcca_loss(c zx, c zy, reg=c**2 reg)`` equals ``dcca_loss(zx, zy, reg=reg)`` for any ``c``
    (1e30, 1e-30) in float32, and the absolute ``reg`` keeps its meaning at every scale.
    float16/bfloat16 inputs are computed in float32; the result has their dtype.

    Bad input: shapes, ``k`` and dtypes are checked at trace time (``ValueError``, under
    ``jit``/``vmap`` too; array-valued or complex ``reg`` included); a concrete ``reg <= 0`` or
    non-finite ``reg`` raises; under ``jit`` it gives NaN (value and gradient). NaN in the data
    propagates. See ``docs/conventions.md``.

    Args:
      zx: Array of shape ``[b, dx]``, features of the first view for a batch.
      zy: Array of shape ``[b, dy]``, features of the second view, row-paired with ``zx``.
      k: Number of correlations summed (static int in ``[1, min(dx, dy)]``); ``None`` for all.
      reg: Positive absolute ridge added to both within-view covariances (Andrew et al.'s
        ``r1 = r2``), in the units of ``zx`` and ``zy`` squared (traced, differentiable).

    Returns:
      Scalar in ``[-k, 0]``.

    Raises:
      ValueError: bad shapes or dtypes (see :func:`cca`), ``k`` out of range or not an int,
        ``reg`` not a scalar, or a concrete ``reg`` that is not finite and positive.

    References:
      Andrew, Arora, Bilmes & Livescu, "Deep Canonical Correlation Analysis", ICML 2013.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> zx = jax.random.normal(jax.random.key(0), (64, 4))
      >>> zy = zx @ jax.random.normal(jax.random.key(1), (4, 4))  # a linear copy
      >>> loss, grad = jax.value_and_grad(dcca_loss)(zx, zy, reg=1e-6)
      >>> round(float(loss), 3), bool(jnp.all(jnp.isfinite(grad)))
      (-4.0, True)
    """
    return _dcca_public(zx, zy, k, reg, squared=False)


def _dcca_public(zx, zy, k, reg, *, squared: bool) -> jax.Array:
    zx, zy = _check_views(zx, zy, ("zx", "zy"))
    k = checks.static_k(k, zx.shape[1], zy.shape[1], f"zx: {zx.shape} and zy: {zy.shape}")
    dtype = checks.compute_dtype(zx.dtype)
    reg_m, reg_e = _reg_parts(reg, "positive", dtype)
    out = _dcca(zx.astype(dtype), zy.astype(dtype), reg_m, reg_e, k, squared)
    return out.astype(zx.dtype)


@functools.partial(jax.jit, static_argnums=(4, 5))
def _dcca(zx, zy, reg_m, reg_e, k: int, squared: bool) -> jax.Array:
    """Both objectives, compiled once per shape (eager calls included)."""
    bad = checks.invalid_scalar(reg_m, "positive")
    # a bad (traced) reg gets a harmless stand-in, then the value is multiplied by NaN: the value
    # and every gradient (data and reg) are NaN, as documented (a `where` would zero the gradient)
    safe_m = jnp.where(bad, jnp.ones_like(reg_m), reg_m)
    t = _whitened_cross(zx, zy, safe_m, reg_e)
    if squared and k == min(t.shape):
        value = -jnp.sum(t * t)
    else:
        value = -nm.top_singular_sum(t, k, squared)
    poison = jnp.where(bad, jnp.asarray(jnp.nan, value.dtype), jnp.asarray(1.0, value.dtype))
    # (the second term is 0 in value; it carries the NaN to the gradient in reg, which the
    # stand-in's `where` would otherwise zero)
    return value * poison + (reg_m - jax.lax.stop_gradient(reg_m)) * (poison - 1.0)


def dcca_squared_loss(
    zx: jax.typing.ArrayLike,
    zy: jax.typing.ArrayLike,
    *,
    k: int | None = None,
    reg: jax.typing.ArrayLike = 1e-3,
) -> jax.Array:
    """Minus the sum of the top ``k`` *squared* canonical correlations (cca-zoo's variant).

    ``-sum_{i < k} sigma_i(T)^2`` with ``T`` as in :func:`dcca_loss`; for ``k = None`` it is
    ``-||T||_F^2 = -tr(Sxx^-1 Sxy Syy^-1 Syx)``, a smooth function computed without any
    decomposition. It weights strong correlations more than :func:`dcca_loss` (its gradient in
    ``sigma_i`` is ``2 sigma_i``, not 1), so weak canonical pairs learn more slowly. This is the
    quantity cca-zoo's ``CCALoss`` returns; it is not Andrew et al.'s objective. Scale-free in
    the same sense as :func:`dcca_loss`.

    Bad input: as :func:`dcca_loss` (``ValueError`` for shapes, dtypes, ``k`` and concrete
    ``reg <= 0``; NaN under ``jit`` for a bad traced ``reg``; NaN in the data propagates). See
    ``docs/conventions.md``.

    Args:
      zx: Array of shape ``[b, dx]``.
      zy: Array of shape ``[b, dy]``, row-paired with ``zx``.
      k: Number of squared correlations summed (static int in ``[1, min(dx, dy)]``); ``None``
        for all.
      reg: Positive absolute ridge added to both within-view covariances.

    Returns:
      Scalar in ``[-k, 0]``.

    Raises:
      ValueError: as :func:`dcca_loss`.

    References:
      Chapman & Wang, "CCA-Zoo: A collection of Regularized, Deep Learning based, Kernel, and
      Probabilistic CCA methods in a scikit-learn style framework", JOSS 2021.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> zx = jax.random.normal(jax.random.key(0), (64, 3))
      >>> zy = jnp.concatenate([zx[:, :1], jax.random.normal(jax.random.key(1), (64, 2))], 1)
      >>> round(float(dcca_squared_loss(zx, zy, k=1, reg=1e-6)), 3)  # one shared feature
      -1.0
    """
    return _dcca_public(zx, zy, k, reg, squared=True)
