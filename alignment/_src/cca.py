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
import numpy as np
from jax import lax

from alignment._src.checks import as_float_array, is_concrete

__all__ = [
    "CCAOutput",
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


# --------------------------------------------------------------------------------------------
# Validation.
# --------------------------------------------------------------------------------------------


def _check_views(x, y, names: tuple[str, str] = ("x", "y")) -> tuple[jax.Array, jax.Array]:
    """Two 2-D float arrays with the same number of rows (>= 2), in a common dtype."""
    x = as_float_array(x, names[0])
    y = as_float_array(y, names[1])
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


def _check_k(k, dx: int, dy: int, shapes: str) -> int:
    """``k`` as an int in ``[1, min(dx, dy)]`` (``None`` gives ``min(dx, dy)``), else raises."""
    kmax = min(dx, dy)
    if k is None:
        return kmax
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ValueError(f"`k` must be None or a positive int (static), got {k!r}.")
    if not 1 <= int(k) <= kmax:
        raise ValueError(
            f"`k`={int(k)} must be between 1 and min(dx, dy) = {kmax} for {shapes}: there are "
            f"only {kmax} canonical pairs."
        )
    return int(k)


def _check_reg(reg, *, positive: bool) -> None:
    """Raises ``ValueError`` if a concrete ``reg`` is negative (or 0 when ``positive``)."""
    if reg is None:
        raise ValueError("`reg` must be a number, got None.")
    if not is_concrete(reg):
        return
    arr = np.asarray(reg)
    if arr.ndim != 0:
        raise ValueError(f"`reg` must be a scalar, got an array of shape {arr.shape}.")
    bad = not np.isfinite(arr) or (arr <= 0 if positive else arr < 0)
    if bad:
        need = "a finite positive number" if positive else "a finite number >= 0"
        raise ValueError(f"`reg` must be {need}, got {arr.item()!r}.")


# --------------------------------------------------------------------------------------------
# Shared numerics.
# --------------------------------------------------------------------------------------------


def _covariances(x: jax.Array, y: jax.Array, reg) -> tuple[jax.Array, ...]:
    """Means and the ``1 / (n - 1)`` covariances ``Sxx + reg I``, ``Syy + reg I``, ``Sxy``."""
    n = x.shape[0]
    mx, my = jnp.mean(x, axis=0), jnp.mean(y, axis=0)
    xc, yc = x - mx, y - my
    scale = 1.0 / (n - 1)
    reg = jnp.asarray(reg, x.dtype)
    sxx = scale * (xc.T @ xc) + reg * jnp.eye(x.shape[1], dtype=x.dtype)
    syy = scale * (yc.T @ yc) + reg * jnp.eye(y.shape[1], dtype=y.dtype)
    sxy = scale * (xc.T @ yc)
    return mx, my, sxx, syy, sxy


def _inv_sqrt_factor(cov: jax.Array) -> jax.Array:
    """``K = V diag(lam^-1/2)`` with ``K^T cov K = I`` on the range of ``cov`` (pseudo-inverse).

    Eigenvalues below NumPy's rank tolerance ``d * eps * max(lam)`` get a zero column. Not for
    differentiation (autodiff through ``eigh`` is NaN at repeated eigenvalues).
    """
    lam, vecs = jnp.linalg.eigh(0.5 * (cov + cov.T))
    tol = cov.shape[0] * jnp.finfo(cov.dtype).eps * jnp.max(lam)
    kept = lam > tol
    inv = jnp.where(kept, 1.0 / jnp.sqrt(jnp.where(kept, lam, 1.0)), 0.0)
    return vecs * inv


def _sign_convention(wx: jax.Array, wy: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Flips canonical pairs so that each column of ``wx`` has its largest-magnitude entry > 0."""
    idx = jnp.argmax(jnp.abs(wx), axis=0)
    pivot = jnp.take_along_axis(wx, idx[None, :], axis=0)[0]
    sign = jnp.where(pivot < 0, -1.0, 1.0).astype(wx.dtype)
    return wx * sign, wy * sign


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _top_singular_sum(t: jax.Array, k: int, squared: bool) -> jax.Array:
    """``sum_{i < k} sigma_i(t)`` (or ``sigma_i^2``), with ``d sigma_i = u_i^T dt v_i``."""
    s = jnp.linalg.svd(t, compute_uv=False)[:k]
    return jnp.sum(s * s) if squared else jnp.sum(s)


@_top_singular_sum.defjvp
def _top_singular_sum_jvp(k, squared, primals, tangents):
    (t,), (dt,) = primals, tangents
    u, s, vt = jnp.linalg.svd(t, full_matrices=False)
    u, s, vt = u[:, :k], s[:k], vt[:k]
    # d sigma_i = u_i^T dt v_i: no division by differences of singular values anywhere.
    dsigma = jnp.sum(u * (dt @ vt.T), axis=0)
    if squared:
        return jnp.sum(s * s), jnp.sum(2.0 * s * dsigma)
    return jnp.sum(s), jnp.sum(dsigma)


def _whitened_cross(zx: jax.Array, zy: jax.Array, reg) -> jax.Array:
    """``T = Lx^-1 Sxy Ly^-T`` from Cholesky factors ``Sxx + reg I = Lx Lx^T`` (and ``y``)."""
    _, _, sxx, syy, sxy = _covariances(zx, zy, reg)
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
    directions arbitrary. Correlations are clipped to ``[0, 1]`` against rounding. Not meant to
    be differentiated (use :func:`dcca_loss`). Works under ``jit`` and ``vmap``.

    Args:
      x: Array of shape ``[n, dx]``, the first view (rows are samples).
      y: Array of shape ``[n, dy]``, the second view, row-paired with ``x``.
      k: Number of canonical pairs (static int in ``[1, min(dx, dy)]``); ``None`` for all.
      reg: Ridge ``>= 0`` added to both within-view covariances.

    Returns:
      A :class:`CCAOutput` ``(wx [dx, k], wy [dy, k], correlations [k], mean_x [dx],
      mean_y [dy])``.

    Raises:
      ValueError: ``x`` or ``y`` is not 2-D, their numbers of rows differ or are below 2, ``k``
        is outside ``[1, min(dx, dy)]``, or a concrete ``reg`` is negative.

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
    k = _check_k(k, x.shape[1], y.shape[1], f"x: {x.shape} and y: {y.shape}")
    _check_reg(reg, positive=False)
    return _cca(x, y, jnp.asarray(reg, x.dtype), k)


@functools.partial(jax.jit, static_argnums=(3,))
def _cca(x, y, reg, k: int) -> CCAOutput:
    mx, my, sxx, syy, sxy = _covariances(x, y, reg)
    kx, ky = _inv_sqrt_factor(sxx), _inv_sqrt_factor(syy)
    u, s, vt = jnp.linalg.svd(kx.T @ sxy @ ky, full_matrices=False)
    wx, wy = _sign_convention(kx @ u[:, :k], ky @ vt[:k].T)
    return CCAOutput(wx, wy, jnp.clip(s[:k], 0.0, 1.0), mx, my)


def cca_transform(
    result: CCAOutput,
    x: jax.typing.ArrayLike | None = None,
    y: jax.typing.ArrayLike | None = None,
) -> tuple[jax.Array | None, jax.Array | None]:
    """Projects (new) data on the canonical directions of a fitted :func:`cca`.

    Args:
      result: The :class:`CCAOutput` of :func:`cca`.
      x: Array of shape ``[m, dx]`` (or ``[dx]`` for one sample), or ``None``.
      y: Array of shape ``[m', dy]`` (or ``[dy]``), or ``None``.

    Returns:
      ``(zx, zy)``: ``(x - mean_x) @ wx`` of shape ``[m, k]`` and ``(y - mean_y) @ wy`` of shape
      ``[m', k]``; ``None`` for a view not given.

    Raises:
      ValueError: a view's last dimension does not match the fitted one.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> x = jax.random.normal(jax.random.key(1), (100, 2)); y = x @ jnp.array([[1.0, 2.0]]).T
      >>> zx, zy = cca_transform(cca(x, y), x[:5], y[:5])
      >>> bool(jnp.allclose(zx, zy, atol=1e-4))  # perfectly correlated: equal variates
      True
    """
    out = []
    for name, view, w, mean in (
        ("x", x, result.wx, result.mean_x),
        ("y", y, result.wy, result.mean_y),
    ):
        if view is None:
            out.append(None)
            continue
        view = as_float_array(view, name)
        if view.ndim not in (1, 2) or view.shape[-1] != w.shape[0]:
            raise ValueError(
                f"`{name}` must have shape [m, {w.shape[0]}] (or [{w.shape[0]}]) to match the "
                f"fitted w{name} of shape {w.shape}, got shape {view.shape}."
            )
        out.append((view - mean) @ w)
    return out[0], out[1]


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
    thanks to ``reg > 0``. Under ``jit`` a non-positive ``reg`` is not caught and may give NaN.

    Args:
      zx: Array of shape ``[b, dx]``, features of the first view for a batch.
      zy: Array of shape ``[b, dy]``, features of the second view, row-paired with ``zx``.
      k: Number of correlations summed (static int in ``[1, min(dx, dy)]``); ``None`` for all.
      reg: Positive ridge added to both within-view covariances (Andrew et al.'s ``r1 = r2``).

    Returns:
      Scalar in ``[-k, 0]``.

    Raises:
      ValueError: bad shapes (see :func:`cca`), ``k`` out of range, or a concrete ``reg <= 0``.

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
    zx, zy = _check_views(zx, zy, ("zx", "zy"))
    k = _check_k(k, zx.shape[1], zy.shape[1], f"zx: {zx.shape} and zy: {zy.shape}")
    _check_reg(reg, positive=True)
    return _dcca(zx, zy, jnp.asarray(reg, zx.dtype), k, False)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _dcca(zx, zy, reg, k: int, squared: bool) -> jax.Array:
    """Both objectives, compiled once per shape (eager calls included)."""
    t = _whitened_cross(zx, zy, reg)
    if squared and k == min(t.shape):
        return -jnp.sum(t * t)
    return -_top_singular_sum(t, k, squared)


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
    quantity cca-zoo's ``CCALoss`` returns; it is not Andrew et al.'s objective.

    Args:
      zx: Array of shape ``[b, dx]``.
      zy: Array of shape ``[b, dy]``, row-paired with ``zx``.
      k: Number of squared correlations summed (static int in ``[1, min(dx, dy)]``); ``None``
        for all.
      reg: Positive ridge added to both within-view covariances.

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
    zx, zy = _check_views(zx, zy, ("zx", "zy"))
    k = _check_k(k, zx.shape[1], zy.shape[1], f"zx: {zx.shape} and zy: {zy.shape}")
    _check_reg(reg, positive=True)
    return _dcca(zx, zy, jnp.asarray(reg, zx.dtype), k, True)
