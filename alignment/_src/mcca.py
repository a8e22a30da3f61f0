"""Multi-view CCA (MAXVAR), its deep objective, and regularised kernel CCA.

* :func:`mcca` fits linear CCA between ``J >= 2`` views ``views[i]: [n, d_i]`` of the same ``n``
  samples, in closed form; :func:`mcca_transform` projects new data.
* :func:`dmcca_loss` is the deep multi-view objective: minus the sum of the top ``k``
  generalised correlations of a batch of features from ``J`` encoders.
* :func:`kernel_cca` fits regularised kernel CCA between two views (exactly, or with a Nyström
  approximation of rank ``rank``); :func:`kernel_cca_transform` projects new data.

The multi-view problem. With the covariances of :func:`alignment.cca` (centred views,
``1 / (n - 1)``, the absolute ridge ``reg``), ``S_ij`` the cross-covariance of views ``i`` and
``j`` and ``D = blockdiag(S_ii + reg I)``, the canonical directions ``w = [w_1; ...; w_J]``
solve the generalised eigenproblem

    ``(A + D) w = lambda D w``,  ``A`` the block matrix of the ``S_ij``, ``i != j`` (zero diagonal).

This is MAXVAR generalised CCA (Carroll 1968; Kettenring 1971): with ``reg = 0`` the
eigenvalue ``lambda`` is the largest possible sum over views of the squared multiple
correlation of a shared variable with each view, in ``[0, J]``, and the directions are the
principal axes of the concatenated whitened views. It is also cca-zoo's ``MCCA`` (which solves
``A w = (lambda - 1) D w``) and, at ``reg = 0``, its ``GCCA`` (same directions, another scale).
The *generalised correlation* reported here is ``rho = (lambda - 1) / (J - 1)``: for two views
it is the canonical correlation of :func:`alignment.cca` (and :func:`mcca` with two views
returns :func:`alignment.cca`'s directions), it is 1 for a direction shared perfectly by all
views and about 0 for independent views; for ``J > 2`` it lies in ``[-1 / (J - 1), 1]``. The
directions are normalised by ``sum_i w_i^T (S_ii + reg I) w_i = J`` (cca-zoo's ``MCCA``
normalisation; for two views each view's variate has unit variance). Computation: each view
is whitened by the pseudo-inverse square root of its regularised covariance (``eigh``, NumPy's
rank tolerance, so ``reg = 0`` is safe on rank-deficient views), and the whitened block matrix
``M`` (identity blocks dropped) is diagonalised by ``eigh``: ``rho_i = mu_i(M) / (J - 1)``.

Kernel CCA. With centred Gram matrices ``Kx = H kernel(x, x) H`` (``H = I - 11^T / n``) and
``Ky``, regularised kernel CCA (Bach & Jordan 2002; Hardoon et al. 2004) finds dual coefficients
``alpha_x``, ``alpha_y`` maximising ``alpha_x^T Kx Ky alpha_y`` under ``alpha_x^T (Kx^2 / (n - 1)
+ reg Kx) alpha_x = 1`` (same for ``y``). It is exactly linear ridge CCA (:func:`alignment.cca`
with the same ``reg``) in the kernel's feature space: with the linear kernel it reproduces
:func:`alignment.cca` (correlations equal; ``wx = (x - mean_x)^T alpha_x``) for any ``n`` and
``d`` once ``reg > 0``. ``reg`` must be positive: in a feature space with as many dimensions as
samples (an RBF kernel), unregularised kernel CCA correlates any two views perfectly. This is
cca-zoo's ``KCCA`` parametrisation with its ``shrinkage c`` equal to ``reg / (1 + reg)``
(its correlations are ours times ``1 - c``); Bach & Jordan's ``(K + kappa I)^2`` differs from
it by ``kappa^2 I``. The correlations are the singular values of ``Rx^1/2 Ry^1/2`` with ``Rx =
Kx (Kx + (n - 1) reg I)^-1``, computed from ``eigh`` of each Gram matrix.

Derivatives. :func:`mcca` and the Nyström path of :func:`kernel_cca` are fitting routines, not
losses (as :func:`alignment.cca`). :func:`dmcca_loss` whitens by Cholesky factors and
differentiates the eigenvalue sum in closed form (``d mu_i = v_i^T dM v_i``, no eigenvalue gaps,
as :func:`alignment.dcca_loss`), so its gradients are finite where correlations repeat. The
``correlations`` of the exact :func:`kernel_cca` carry derivatives in ``x``, ``y``, the kernel's
parameters and ``reg`` by the generalised-eigenvalue formula ``d rho = alpha^T (dA - rho dB)
alpha / alpha^T B alpha`` (again no gaps); its dual coefficients carry none
(``stop_gradient``).

Conventions shared with :mod:`alignment._src.cca`: covariances ``1 / (n - 1)``, absolute ridge
``reg * I``, exact power-of-two units per view (data in units of 1e30 or 1e-30 work in float32
for :func:`mcca` and :func:`dmcca_loss`), float16/bfloat16 computed in float32, outputs in the
input dtype. Signs: in each canonical pair the largest-magnitude entry of the first view's
direction (``weights[0]``, ``alpha_x``) is positive, and the other views follow.

References: Carroll, "Generalization of canonical correlation analysis to three or more sets of
variables" (1968); Kettenring, "Canonical analysis of several sets of variables", Biometrika
1971; Bach & Jordan, "Kernel independent component analysis", JMLR 2002; Hardoon, Szedmak &
Shawe-Taylor, "Canonical correlation analysis: an overview with application to learning
methods", Neural Computation 2004; Williams & Seeger, "Using the Nyström method to speed up
kernel machines", NeurIPS 2001; Chapman & Wang, "CCA-Zoo" (2021).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jax import lax

from alignment._src import cca as _cca_mod
from alignment._src import checks
from alignment._src import numerics as nm
from alignment._src.cca import CCATransformOutput
from alignment._src.costs import linear_kernel

__all__ = [
    "KernelCCAOutput",
    "MCCAOutput",
    "dmcca_loss",
    "kernel_cca",
    "kernel_cca_transform",
    "mcca",
    "mcca_transform",
]


class MCCAOutput(NamedTuple):
    """Result of :func:`mcca`: one canonical direction matrix and one mean per view.

    The canonical variates of view ``i`` are ``(views[i] - means[i]) @ weights[i]``
    (:func:`mcca_transform`).

    Attributes:
      weights: Tuple of ``J`` arrays of shapes ``[d_i, k]``, the canonical directions of each
        view, one per column, with ``sum_i w_i^T (S_ii + reg I) w_i = J`` per column.
      means: Tuple of ``J`` arrays of shapes ``[d_i]``, the means removed before projecting.
      correlations: Array of shape ``[k]``, the generalised correlations ``(lambda - 1) /
        (J - 1)`` in decreasing order (the canonical correlations for two views).
    """

    weights: tuple[jax.Array, ...]
    means: tuple[jax.Array, ...]
    correlations: jax.Array


class KernelCCAOutput(NamedTuple):
    """Result of :func:`kernel_cca`: dual coefficients on stored points, and the correlations.

    A new sample ``x_new`` has the canonical variates ``(kernel(x_new, points_x) -
    kernel_mean_x) @ alpha_x`` (:func:`kernel_cca_transform`). ``p`` is ``n`` (exact; the
    points are the training samples) or ``rank`` (Nyström; the points are the landmarks).

    Attributes:
      alpha_x: Array of shape ``[p, k]``, the dual coefficients of ``x``, one pair per column.
      alpha_y: Array of shape ``[p, k]``, the dual coefficients of ``y``.
      correlations: Array of shape ``[k]``, the kernel canonical correlations in decreasing
        order, in ``[0, 1]``.
      points_x: Array of shape ``[p, dx]``, the points the kernel is evaluated against.
      points_y: Array of shape ``[p, dy]``.
      kernel_mean_x: Array of shape ``[p]``, ``kernel(x_train, points_x).mean(0)``: the
        centring of new kernel rows.
      kernel_mean_y: Array of shape ``[p]``.
    """

    alpha_x: jax.Array
    alpha_y: jax.Array
    correlations: jax.Array
    points_x: jax.Array
    points_y: jax.Array
    kernel_mean_x: jax.Array
    kernel_mean_y: jax.Array


# --------------------------------------------------------------------------------------------
# Validation.
# --------------------------------------------------------------------------------------------


def _check_view_list(views, name: str = "views") -> tuple[jax.Array, ...]:
    """At least two 2-D float arrays with the same number of rows (>= 2), in a common dtype."""
    if not isinstance(views, list | tuple):
        raise ValueError(
            f"`{name}` must be a list or tuple of at least 2 arrays [n, d_i] (one per view), "
            f"got {type(views).__name__}."
        )
    if len(views) < 2:
        raise ValueError(
            f"`{name}` must hold at least 2 views [n, d_i], got {len(views)}; multi-view CCA "
            "correlates views with each other."
        )
    arrs = [checks.as_float_array(v, f"{name}[{i}]") for i, v in enumerate(views)]
    shapes = [tuple(a.shape) for a in arrs]
    for i, a in enumerate(arrs):
        if a.ndim != 2:
            raise ValueError(
                f"`{name}[{i}]` must be a 2-D array [n, d] (samples by features), got shape "
                f"{a.shape}; for one feature use {name}[{i}][:, None]."
            )
        if a.shape[1] == 0:
            raise ValueError(f"`{name}[{i}]` must have at least one feature, got shape {a.shape}.")
    if len({a.shape[0] for a in arrs}) != 1:
        raise ValueError(
            f"`{name}` must have the same number of samples (paired rows) in every view, got "
            f"shapes {shapes}."
        )
    if arrs[0].shape[0] < 2:
        raise ValueError(
            f"Multi-view CCA needs at least 2 samples to estimate covariances, got shapes {shapes}."
        )
    dtype = jnp.result_type(*arrs)
    return tuple(a.astype(dtype) for a in arrs)


def _blocks(dims: Sequence[int]) -> list[slice]:
    edges = np.cumsum([0, *dims])
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def _off_diagonal_mask(dims: Sequence[int]) -> np.ndarray:
    """Boolean ``[D, D]``: True outside the diagonal blocks ``d_i x d_i``."""
    owner = np.repeat(np.arange(len(dims)), dims)
    return owner[:, None] != owner[None, :]


# --------------------------------------------------------------------------------------------
# Shared numerics.
# --------------------------------------------------------------------------------------------


def _multi_covariances(views, reg_m, reg_e):
    """Means, exponents, the full covariance ``[D, D]`` of the concatenated views in exact
    power-of-two units (one per view, as :func:`alignment.cca`) and the per-view ridges."""
    n = views[0].shape[0]
    parts = [nm.center_pow2(v) for v in views]
    means = tuple(p[0] for p in parts)
    exps = [p[2] for p in parts]
    z = jnp.concatenate([p[1] for p in parts], axis=1)
    s = (z.T @ z) / (n - 1)
    ridges = [_cca_mod._scaled_ridge(reg_m, reg_e, e, z.dtype) for e in exps]
    return means, exps, s, ridges


def _poison(bad, value: jax.Array, reg: jax.Array) -> jax.Array:
    """``value`` made NaN where ``bad``, in the value *and* in its gradients.

    ``checks.nan_if`` (a ``where``) would give the plausible gradient 0; here the value is
    multiplied by NaN, and a term that is 0 in value carries a NaN derivative in ``reg``
    (whose stand-in behind a ``where`` has none).
    """
    factor = jnp.where(bad, jnp.nan, 1.0).astype(value.dtype)
    leak = (reg - lax.stop_gradient(reg)) * jnp.where(bad, jnp.nan, 0.0).astype(value.dtype)
    return value * factor + leak


def _top_eigen_sum_fn(m: jax.Array, k: int) -> jax.Array:
    """Sum of the ``k`` largest eigenvalues of the symmetric ``m``."""
    return jnp.sum(jnp.linalg.eigvalsh(m)[-k:])


_top_eigen_sum = jax.custom_jvp(_top_eigen_sum_fn, nondiff_argnums=(1,))


@_top_eigen_sum.defjvp
def _top_eigen_sum_jvp(k, primals, tangents):
    """``d mu_i = v_i^T dm v_i``: no ``1 / (mu_i - mu_j)`` term, finite at repeated values."""
    (m,), (dm,) = primals, tangents
    mu, vecs = jnp.linalg.eigh(m)
    top = vecs[:, -k:]
    return jnp.sum(mu[-k:]), jnp.sum(top * (dm @ top))


# --------------------------------------------------------------------------------------------
# Multi-view CCA.
# --------------------------------------------------------------------------------------------


def mcca(
    views: Sequence[jax.typing.ArrayLike],
    *,
    k: int | None = None,
    reg: jax.typing.ArrayLike = 0.0,
) -> MCCAOutput:
    """Multi-view (MAXVAR) CCA in closed form: per-view whitening + ``eigh``.

    Solves ``(A + D) w = lambda D w`` (module docstring): ``A`` the cross-covariances of the
    ``J`` views, ``D = blockdiag(S_ii + reg I)``; returns the top ``k`` directions and the
    generalised correlations ``(lambda - 1) / (J - 1)``. With two views this is
    :func:`alignment.cca`: the same correlations and, up to rounding, the same directions and
    signs.

    Numerics: as :func:`alignment.cca` (pseudo-inverse whitening, so ``reg = 0`` works on
    rank-deficient views; exact power-of-two units per view, so the result does not depend on
    the units of any view; correlations clipped to their range against rounding: ``[0, 1]``
    for two views, ``[-1 / (J - 1), 1]`` otherwise). When ``n - 1`` is below the total
    dimension the trailing correlations are not meaningful (any views are perfectly correlated
    in enough dimensions); use ``reg > 0``. Not meant to be differentiated (use
    :func:`dmcca_loss`). float16/bfloat16 inputs are computed in float32 and returned in their
    dtype.

    Bad input: the views, ``k`` and dtypes are checked at trace time (``ValueError`` naming the
    argument, under ``jit``/``vmap`` too: fewer than 2 views, ragged ``n``, a view that is not
    2-D, complex or ``None``, ``k`` out of range, an array-valued or complex ``reg``); a
    concrete ``reg`` that is negative or not finite raises; under ``jit`` such a ``reg`` makes
    every output NaN. NaN or inf in the data makes every output NaN. See
    ``docs/conventions.md``.

    Args:
      views: List or tuple of ``J >= 2`` arrays of shapes ``[n, d_i]``, row-paired.
      k: Number of canonical directions (static int in ``[1, min_i d_i]``); ``None`` for all.
      reg: Absolute ridge ``>= 0`` added to every within-view covariance, ``S_ii + reg I``, in
        the units of the data as given (traced).

    Returns:
      An :class:`MCCAOutput` ``(weights: J x [d_i, k], means: J x [d_i], correlations [k])``.

    Raises:
      ValueError: as described under Bad input.

    References:
      Kettenring, "Canonical analysis of several sets of variables", Biometrika 1971; Carroll,
      "Generalization of canonical correlation analysis to three or more sets of variables",
      1968.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> z = jax.random.normal(jax.random.key(0), (200, 1))  # one shared signal
      >>> noise = jax.random.normal(jax.random.key(1), (200, 5))
      >>> views = [jnp.concatenate([z, noise[:, :1]], 1), jnp.concatenate([-z, noise[:, 1:3]], 1),
      ...          jnp.concatenate([2 * z, noise[:, 3:]], 1)]
      >>> out = mcca(views, k=1)
      >>> [w.shape for w in out.weights], out.correlations.round(3).tolist()
      ([(2, 1), (3, 1), (3, 1)], [1.0])
    """
    views = _check_view_list(views)
    dims = [v.shape[1] for v in views]
    k = checks.static_k_at_most(
        k, min(dims), "min_i d_i", f"views of shapes {[v.shape for v in views]}"
    )
    dtype = checks.compute_dtype(views[0].dtype)
    reg_m, reg_e = _cca_mod._reg_parts(reg, "nonnegative", dtype)
    out = _mcca(tuple(v.astype(dtype) for v in views), reg_m, reg_e, k)
    return jax.tree.map(lambda a: a.astype(views[0].dtype), out)


@functools.partial(jax.jit, static_argnums=(3,))
def _mcca(views, reg_m, reg_e, k: int) -> MCCAOutput:
    n_views = len(views)
    dims = [v.shape[1] for v in views]
    blocks = _blocks(dims)
    means, exps, s, ridges = _multi_covariances(views, reg_m, reg_e)
    factors = [
        _cca_mod._inv_sqrt_factor(s[b, b] + r * jnp.eye(d, dtype=s.dtype))
        for b, r, d in zip(blocks, ridges, dims, strict=True)
    ]
    kb = jsl.block_diag(*factors)
    m = jnp.where(_off_diagonal_mask(dims), kb.T @ s @ kb, 0.0)
    mu, vecs = jnp.linalg.eigh(0.5 * (m + m.T))
    mu, vecs = mu[::-1][:k], vecs[:, ::-1][:, :k]
    scale = jnp.sqrt(jnp.asarray(n_views, s.dtype))  # sum_i w_i^T (S_ii + reg I) w_i = J
    weights = [
        nm.scale_pow2(scale * (f @ vecs[b]), -e)
        for f, b, e in zip(factors, blocks, exps, strict=True)
    ]
    idx = jnp.argmax(jnp.abs(weights[0]), axis=0)
    pivot = jnp.take_along_axis(weights[0], idx[None, :], axis=0)[0]
    sign = jnp.where(pivot < 0, -1.0, 1.0).astype(s.dtype)
    weights = tuple(w * sign for w in weights)
    low = 0.0 if n_views == 2 else -1.0 / (n_views - 1)
    corr = jnp.clip(mu / (n_views - 1), low, 1.0)
    bad = checks.invalid_scalar(reg_m, "nonnegative") | ~jnp.all(jnp.isfinite(s))
    return checks.nan_if(bad, MCCAOutput(weights, means, corr))


def mcca_transform(
    result: MCCAOutput, views: Sequence[jax.typing.ArrayLike]
) -> tuple[jax.Array, ...]:
    """Projects (new) data of every view on the canonical directions of a fitted :func:`mcca`.

    The generalisation of :func:`alignment.cca_transform` to ``J`` views. A shared
    representation of a sample is the mean of its ``J`` variates (at ``reg = 0``, MAXVAR's
    group configuration up to scale).

    Bad input: shapes and dtypes are checked at trace time (``ValueError``, under
    ``jit``/``vmap`` too). NaN in a view propagates to that view's variates. See
    ``docs/conventions.md``.

    Args:
      result: The :class:`MCCAOutput` of :func:`mcca`.
      views: List or tuple of ``J`` arrays (as many as fitted) of shapes ``[m_i, d_i]`` (or
        ``[d_i]`` for one sample); the ``m_i`` may differ.

    Returns:
      Tuple of ``J`` arrays ``(views[i] - means[i]) @ weights[i]`` of shapes ``[m_i, k]`` (or
      ``[k]``), in the dtype of the inputs.

    Raises:
      ValueError: ``result`` is not an :class:`MCCAOutput`, ``views`` is not a list or tuple of
        as many views as fitted, or a view is ``None``, complex, of rank other than 1 or 2, or
        its last dimension does not match the fitted one.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> x = jax.random.normal(jax.random.key(1), (100, 2))
      >>> views = [x, x @ jnp.array([[1.0], [2.0]]), -x]
      >>> z = mcca_transform(mcca(views, k=1), [v[:5] for v in views])
      >>> [a.shape for a in z], bool(jnp.allclose(z[0], z[1], atol=1e-4))
      ([(5, 1), (5, 1), (5, 1)], True)
    """
    if not isinstance(result, MCCAOutput):
        raise ValueError(f"`result` must be the MCCAOutput of mcca(), got {type(result).__name__}.")
    n_views = len(result.weights)
    if not isinstance(views, list | tuple) or len(views) != n_views:
        got = len(views) if isinstance(views, list | tuple) else type(views).__name__
        raise ValueError(
            f"`views` must be a list or tuple of the {n_views} fitted views, got {got}."
        )
    out = []
    for i, (view, w, mean) in enumerate(zip(views, result.weights, result.means, strict=True)):
        view = checks.as_float_array(view, f"views[{i}]")
        if view.ndim not in (1, 2) or view.shape[-1] != w.shape[0]:
            raise ValueError(
                f"`views[{i}]` must have shape [m, {w.shape[0]}] (or [{w.shape[0]}]) to match "
                f"the fitted weights[{i}] of shape {w.shape}, got shape {view.shape}."
            )
        dtype = jnp.result_type(view, w)
        cdtype = checks.compute_dtype(dtype)
        z = _cca_mod._project(view.astype(cdtype), w.astype(cdtype), jnp.asarray(mean, cdtype))
        out.append(z.astype(dtype))
    return tuple(out)


def dmcca_loss(
    views: Sequence[jax.typing.ArrayLike],
    *,
    k: int | None = None,
    reg: jax.typing.ArrayLike = 1e-3,
) -> jax.Array:
    """Deep multi-view CCA objective: minus the sum of the top ``k`` generalised correlations.

    ``-sum_{i < k} rho_i`` with ``rho_i = mu_i(M) / (J - 1)``, ``M`` the block matrix of the
    whitened cross-covariances ``Li^-1 S_ij Lj^-T`` (``S_ii + reg I = Li Li^T``, zero diagonal
    blocks) of a batch of features from ``J`` encoders: the MAXVAR objective of :func:`mcca`.
    For two views it equals :func:`alignment.dcca_loss` (value and gradient). Minimise it over
    the parameters of the encoders.

    Numerics: Cholesky whitening and the closed-form eigenvalue derivative ``d mu_i = v_i^T dM
    v_i`` (no ``1 / (mu_i - mu_j)`` term), so gradients are finite when correlations repeat
    (identical or rotated views) and for rank-deficient batches (``reg > 0``); where ``k``
    cuts through a group of equal values the gradient is a subgradient. Exact power-of-two
    units per view, as :func:`alignment.dcca_loss`. float16/bfloat16 inputs are computed in
    float32; the result has their dtype.

    Bad input: the views, ``k`` and dtypes are checked at trace time (``ValueError``, under
    ``jit``/``vmap`` too, as :func:`mcca`); a concrete ``reg <= 0`` or non-finite ``reg``
    raises; under ``jit`` it gives NaN (value and gradient). NaN in the data propagates to the
    value and the gradient. See ``docs/conventions.md``.

    Args:
      views: List or tuple of ``J >= 2`` arrays of shapes ``[b, d_i]``, features of one batch,
        row-paired.
      k: Number of generalised correlations summed (static int in ``[1, min_i d_i]``);
        ``None`` for all ``min_i d_i``.
      reg: Positive absolute ridge added to every within-view covariance (traced,
        differentiable).

    Returns:
      Scalar in ``[-k, k / (J - 1)]`` (``[-k, 0]`` for two views).

    Raises:
      ValueError: as described under Bad input.

    References:
      Andrew et al., "Deep Canonical Correlation Analysis", ICML 2013; Somandepalli, Kumar,
      Travadi & Narayanan, "Multimodal representation learning using deep multiset canonical
      correlation", 2019.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> z = jax.random.normal(jax.random.key(0), (64, 2))
      >>> views = [z, z @ jnp.array([[1.0, 2.0], [0.0, 1.0]]), -z]  # three linear copies
      >>> loss, grads = jax.value_and_grad(dmcca_loss)(views, reg=1e-6)
      >>> round(float(loss), 3), all(bool(jnp.all(jnp.isfinite(g))) for g in grads)
      (-2.0, True)
    """
    views = _check_view_list(views)
    dims = [v.shape[1] for v in views]
    k = checks.static_k_at_most(
        k, min(dims), "min_i d_i", f"views of shapes {[v.shape for v in views]}"
    )
    dtype = checks.compute_dtype(views[0].dtype)
    reg_m, reg_e = _cca_mod._reg_parts(reg, "positive", dtype)
    out = _dmcca(tuple(v.astype(dtype) for v in views), reg_m, reg_e, k)
    return out.astype(views[0].dtype)


@functools.partial(jax.jit, static_argnums=(3,))
def _dmcca(views, reg_m, reg_e, k: int) -> jax.Array:
    bad = checks.invalid_scalar(reg_m, "positive")
    safe_m = jnp.where(bad, jnp.ones_like(reg_m), reg_m)
    dims = [v.shape[1] for v in views]
    _, _, s, ridges = _multi_covariances(views, safe_m, reg_e)
    chol = [
        jnp.linalg.cholesky(s[b, b] + r * jnp.eye(d, dtype=s.dtype))
        for b, r, d in zip(_blocks(dims), ridges, dims, strict=True)
    ]
    lb = jsl.block_diag(*chol)  # block-diagonal lower triangular
    a = jnp.where(_off_diagonal_mask(dims), s, 0.0)
    t = lax.linalg.triangular_solve(lb, a, left_side=True, lower=True)  # L^-1 A
    t = lax.linalg.triangular_solve(lb, t, left_side=False, lower=True, transpose_a=True)
    value = -_top_eigen_sum(0.5 * (t + t.T), k) / (len(views) - 1)
    return _poison(bad, value, reg_m)


# --------------------------------------------------------------------------------------------
# Kernel CCA.
# --------------------------------------------------------------------------------------------


def _kernels(kernel) -> tuple[Callable, Callable]:
    """``kernel`` as a pair (for ``x``, for ``y``): ``None`` is the linear kernel."""
    if kernel is None:
        return linear_kernel, linear_kernel
    if isinstance(kernel, tuple | list):
        if len(kernel) != 2 or not all(callable(f) for f in kernel):
            raise ValueError(
                "`kernel` must be a callable kernel(a, b) -> [n, m] or a pair (kernel_x, "
                f"kernel_y) of them, got {kernel!r}."
            )
        return kernel[0], kernel[1]
    if not callable(kernel):
        raise ValueError(
            "`kernel` must be a callable kernel(a, b) -> [n, m] (for instance "
            f"functools.partial(alignment.rbf_kernel, gamma=0.5)) or None, got {kernel!r}."
        )
    return kernel, kernel


def _gram(kernel: Callable, a, b, which: str, dtype) -> jax.Array:
    """``kernel(a, b)`` checked to be a real ``[len(a), len(b)]`` array, in ``dtype``."""
    g = checks.as_float_array(kernel(a, b), f"kernel output for {which}")
    if g.shape != (a.shape[0], b.shape[0]):
        raise ValueError(
            f"`kernel` must map arrays [n, d] and [m, d] to [n, m]; for {which} of shapes "
            f"{a.shape} and {b.shape} it returned shape {g.shape}."
        )
    return g.astype(dtype)


def kernel_cca(
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    *,
    reg: jax.typing.ArrayLike,
    k: int | None = None,
    kernel: Callable | tuple[Callable, Callable] | None = None,
    rank: int | None = None,
    key: jax.Array | None = None,
) -> KernelCCAOutput:
    """Regularised kernel CCA between two views (exact, or Nyström of rank ``rank``).

    Exact (``rank=None``): the dual problem on the centred Gram matrices ``Kx``, ``Ky`` ``[n,
    n]`` (module docstring), solved by ``eigh`` of each and an SVD; ``O(n^3)`` time, ``O(n^2)``
    memory. The stored points are the training samples.

    Nyström (``rank=r``): ``r`` landmark rows ``L`` (the same rows in both views) give features
    ``F = kernel(x, L) kernel(L, L)^-1/2`` ``[n, r]`` (pseudo-inverse square root) with ``F
    F^T`` the Nyström approximation of the Gram matrix, and linear ridge CCA
    (:func:`alignment.cca`, same ``reg``) runs on them: ``O(n r^2)`` time, ``O(n r)`` memory.
    With ``r = n`` it is exact kernel CCA; the stored points are the landmarks. Landmarks are
    evenly spaced rows (``round(linspace(0, n - 1, r))``) or, with ``key``, ``r`` distinct rows
    drawn uniformly.

    The kernel: any JAX-traceable ``kernel(a, b) -> [len(a), len(b)]``, for instance
    ``functools.partial(alignment.rbf_kernel, gamma=0.5)``; ``None`` (the default, as
    cca-zoo's ``KCCA``) is :func:`alignment.linear_kernel`, which reproduces
    :func:`alignment.cca` with the same ``reg``; a pair ``(kernel_x, kernel_y)`` uses one per
    view. Keep the kernel: :func:`kernel_cca_transform` needs it again.

    Numerics: eigenvalues of a Gram matrix below NumPy's rank tolerance count as zero.
    Correlations clipped to ``[0, 1]``. The exact path's ``correlations`` are differentiable
    (module docstring); its ``alpha_*`` are not (``stop_gradient``). The Nyström path is not
    meant to be differentiated. float16/bfloat16 inputs are computed in float32 and returned
    in their dtype.

    Bad input: shapes, ``k``, ``rank``, ``kernel`` and dtypes are checked at trace time
    (``ValueError`` naming the argument, under ``jit``/``vmap`` too: ``x``, ``y`` not 2-D or
    with different ``n``, ``k`` outside ``[1, n]`` (``[1, rank]``), ``rank`` outside ``[1,
    n]``, ``key`` without ``rank``, a kernel that is not callable or returns the wrong shape,
    an array-valued or complex ``reg``); a concrete ``reg`` that is not finite and positive
    raises; under ``jit`` it makes every floating output NaN. NaN or inf in the data (in a Gram
    matrix) makes every floating output NaN. See ``docs/conventions.md``.

    Args:
      x: Array of shape ``[n, dx]``, the first view.
      y: Array of shape ``[n, dy]``, the second view, row-paired with ``x``.
      reg: Positive absolute ridge on the covariances in the kernel's feature space (required:
        there is no default good for every kernel; see the module docstring).
      k: Number of canonical pairs (static int in ``[1, n]``, ``[1, rank]`` with Nyström);
        ``None`` for all of them.
      kernel: ``kernel(a, b) -> [n, m]``, a pair of them, or ``None`` for the linear kernel.
      rank: ``None`` for exact kernel CCA, or the number of Nyström landmarks (static int in
        ``[1, n]``).
      key: Optional ``jax.random`` key to draw the landmarks (only with ``rank``).

    Returns:
      A :class:`KernelCCAOutput` ``(alpha_x [p, k], alpha_y [p, k], correlations [k],
      points_x [p, dx], points_y [p, dy], kernel_mean_x [p], kernel_mean_y [p])`` with ``p =
      n`` (exact) or ``rank``.

    Raises:
      ValueError: as described under Bad input.

    References:
      Bach & Jordan, "Kernel independent component analysis", JMLR 2002; Hardoon, Szedmak &
      Shawe-Taylor, Neural Computation 2004; Williams & Seeger, NeurIPS 2001.

    Examples:
      >>> import functools, jax, jax.numpy as jnp
      >>> import alignment as al
      >>> s = jax.random.uniform(jax.random.key(0), (100, 1), minval=-1.0, maxval=1.0)
      >>> x, y = s, s**2  # a nonlinear relation: linear CCA sees nothing
      >>> round(float(al.cca(x, y).correlations[0]), 2)
      0.08
      >>> out = kernel_cca(x, y, k=1, reg=1e-3, kernel=functools.partial(al.rbf_kernel, gamma=2.0))
      >>> out.alpha_x.shape, bool(out.correlations[0] > 0.95)
      ((100, 1), True)
    """
    x, y = _cca_mod._check_views(x, y)
    n = x.shape[0]
    kern_x, kern_y = _kernels(kernel)
    if rank is not None:
        rank = checks.static_int(rank, "rank", minimum=1)
        if rank > n:
            raise ValueError(
                f"`rank`={rank} must be at most n = {n} (the number of samples) for x: "
                f"{x.shape} and y: {y.shape}."
            )
    elif key is not None:
        raise ValueError("`key` draws Nyström landmarks: pass it only together with `rank`.")
    kmax = n if rank is None else rank
    k = checks.static_k_at_most(
        k, kmax, "n" if rank is None else "rank", f"x: {x.shape} and y: {y.shape}, rank={rank}"
    )
    dtype = checks.compute_dtype(x.dtype)
    checks.scalar(reg, "reg", "positive")
    xc, yc = x.astype(dtype), y.astype(dtype)
    if rank is None:
        kxx = _gram(kern_x, xc, xc, "x", dtype)
        kyy = _gram(kern_y, yc, yc, "y", dtype)
        out = _kcca_exact(xc, yc, kxx, kyy, jnp.asarray(reg, dtype), k)
    else:
        if key is None:
            idx = jnp.asarray(np.round(np.linspace(0, n - 1, rank)).astype(np.int32))
        else:
            idx = jax.random.choice(checks.prng_key(key), n, (rank,), replace=False)
        lx, ly = xc[idx], yc[idx]
        reg_m, reg_e = _cca_mod._reg_parts(reg, "positive", dtype)
        out = _kcca_nystrom(
            lx,
            ly,
            _gram(kern_x, xc, lx, "x", dtype),
            _gram(kern_x, lx, lx, "x", dtype),
            _gram(kern_y, yc, ly, "y", dtype),
            _gram(kern_y, ly, ly, "y", dtype),
            reg_m,
            reg_e,
            k,
        )
    return jax.tree.map(lambda a: a.astype(x.dtype), out)


def _center_gram(g: jax.Array) -> jax.Array:
    """``H g H`` of the symmetrised ``g``."""
    g = 0.5 * (g + g.T)
    col = jnp.mean(g, axis=0)
    return g - col[None, :] - col[:, None] + jnp.mean(col)


def _kcca_solve(kcx, kcy, reg, k: int):
    """Exact kernel CCA on centred Grams.

    Returns ``(rho [k], alpha_x [n, k], alpha_y [n, k], full_x [n, k], full_y [n, k])``:
    ``alpha`` the minimum-norm dual coefficients (in the range of the Gram matrix, signs
    fixed), ``full_x = (Kx + c I)^-1 zy / rho`` the solution of the dual stationarity equation
    with its null-space part (equal to ``alpha_x`` on the range; used by the derivative).
    """
    n = kcx.shape[0]
    c = (n - 1) * reg
    root = jnp.sqrt(jnp.asarray(n - 1, kcx.dtype))

    def factors(kc):
        lam, u = jnp.linalg.eigh(kc)
        kept = lam > nm.rank_tolerance(lam, n)
        lam = jnp.maximum(lam, 0.0)  # a PSD matrix, up to rounding
        shrink = jnp.sqrt(lam / (lam + c))  # continuous at 0: no rank cut-off needed (c > 0)
        safe = jnp.where(kept, lam, 1.0)
        dual = jnp.where(kept, 1.0 / jnp.sqrt(safe * (safe + c)), 0.0)  # minimum-norm alpha
        return u, lam, shrink, dual

    ux, lx, ax, bx = factors(kcx)
    uy, ly, ay, by = factors(kcy)
    t = ax[:, None] * (ux.T @ uy) * ay[None, :]
    p, s, qt = jnp.linalg.svd(t, full_matrices=False)
    p, s, q = p[:, :k], s[:k], qt[:k].T
    alpha_x = root * (ux @ (bx[:, None] * p))
    alpha_y = root * (uy @ (by[:, None] * q))
    # in the range of the centred Grams: orthogonal to the constant vector (exact arithmetic)
    alpha_x = alpha_x - jnp.mean(alpha_x, axis=0)
    alpha_y = alpha_y - jnp.mean(alpha_y, axis=0)
    zx = root * (ux @ (ax[:, None] * p))  # Kx alpha_x, the canonical variates
    zy = root * (uy @ (ay[:, None] * q))
    inv_rho = jnp.where(s > 0, 1.0 / jnp.where(s > 0, s, 1.0), 0.0)
    full_x = (ux @ ((ux.T @ zy) / (lx + c)[:, None])) * inv_rho
    full_y = (uy @ ((uy.T @ zx) / (ly + c)[:, None])) * inv_rho
    idx = jnp.argmax(jnp.abs(alpha_x), axis=0)
    pivot = jnp.take_along_axis(alpha_x, idx[None, :], axis=0)[0]
    sign = jnp.where(pivot < 0, -1.0, 1.0).astype(alpha_x.dtype)
    return jnp.clip(s, 0.0, 1.0), alpha_x * sign, alpha_y * sign, full_x, full_y


@jax.custom_jvp
def _kcca_rho(kcx, kcy, reg, full_x, full_y, rho):
    """``rho`` (computed with the dual vectors ``full_*``), with a gap-free derivative."""
    del kcx, kcy, reg, full_x, full_y
    return rho


@_kcca_rho.defjvp
def _kcca_rho_jvp(primals, tangents):
    """``rho^2`` is an eigenvalue of ``Rx Ry`` with ``R = K (K + c I)^-1`` (``c = (n - 1)
    reg``), right eigenvector ``zx`` and left ``zy``; with ``dR = c S dK S - dc S R``, ``S = (K
    + c I)^-1``, this gives ``d rho = rho [c (fx^T dKx fx + fy^T dKy fy) - dc (fx^T zx + fy^T
    zy)] / (2 (n - 1))``, ``f = S z' / rho``: no eigenvalue gaps (finite where correlations
    repeat), and exact for rank-deficient Gram matrices, whose null space the dual vectors
    ``f`` include."""
    kcx, kcy, reg, fx, fy, rho = primals
    dkx, dky, dreg = tangents[:3]
    n = kcx.shape[0]
    c = (n - 1) * reg
    quad = jnp.sum(fx * (dkx @ fx), axis=0) + jnp.sum(fy * (dky @ fy), axis=0)
    norm = jnp.sum(fx * (kcx @ fx), axis=0) + jnp.sum(fy * (kcy @ fy), axis=0)
    drho = rho * (c * quad - (n - 1) * dreg * norm) / (2 * (n - 1))
    return rho, drho


@functools.partial(jax.jit, static_argnums=(5,))
def _kcca_exact(x, y, kxx, kyy, reg, k: int) -> KernelCCAOutput:
    bad_reg = checks.invalid_scalar(reg, "positive")
    bad = bad_reg | ~jnp.all(jnp.isfinite(kxx)) | ~jnp.all(jnp.isfinite(kyy))
    safe_reg = jnp.where(bad_reg, jnp.ones_like(reg), reg)
    kcx, kcy = _center_gram(kxx), _center_gram(kyy)
    rho, ax, ay, fx, fy = lax.stop_gradient(_kcca_solve(kcx, kcy, safe_reg, k))
    rho = _poison(bad, _kcca_rho(kcx, kcy, safe_reg, fx, fy, rho), reg)
    out = KernelCCAOutput(ax, ay, rho, x, y, jnp.mean(kxx, axis=0), jnp.mean(kyy, axis=0))
    return checks.nan_if(bad, out)._replace(correlations=rho)


@functools.partial(jax.jit, static_argnums=(8,))
def _kcca_nystrom(lx, ly, kxl, kll_x, kyl, kll_y, reg_m, reg_e, k: int) -> KernelCCAOutput:
    bad = checks.invalid_scalar(reg_m, "positive")
    for g in (kxl, kll_x, kyl, kll_y):
        bad = bad | ~jnp.all(jnp.isfinite(g))
    safe_m = jnp.where(bad, jnp.ones_like(reg_m), reg_m)
    clean = lambda g: jnp.where(bad, jnp.zeros_like(g), g)  # finite input to the eigh
    root_x = _cca_mod._inv_sqrt_factor(clean(kll_x))  # R^T K_LL R = I on its range
    root_y = _cca_mod._inv_sqrt_factor(clean(kll_y))
    fit = _cca_mod._cca(clean(kxl) @ root_x, clean(kyl) @ root_y, safe_m, reg_e, k)
    ax, ay = nm.canonical_signs(root_x @ fit.wx, root_y @ fit.wy)
    out = KernelCCAOutput(
        ax, ay, fit.correlations, lx, ly, jnp.mean(kxl, axis=0), jnp.mean(kyl, axis=0)
    )
    return checks.nan_if(bad, out)


def kernel_cca_transform(
    result: KernelCCAOutput,
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    *,
    kernel: Callable | tuple[Callable, Callable] | None,
) -> CCATransformOutput:
    """Canonical variates of (new) data under a fitted :func:`kernel_cca`.

    ``zx = (kernel_x(x, points_x) - kernel_mean_x) @ alpha_x`` (and ``zy``): the centred
    kernel rows against the stored points (the training samples, or the Nyström landmarks).
    ``kernel`` is required (``None`` meaning the linear kernel, as in :func:`kernel_cca`) and
    must be the one used to fit: the output cannot hold a function and stay a pytree of arrays.

    Bad input: shapes and dtypes are checked at trace time (``ValueError``, under
    ``jit``/``vmap`` too). NaN in a row propagates to that row's variates. See
    ``docs/conventions.md``.

    Args:
      result: The :class:`KernelCCAOutput` of :func:`kernel_cca`.
      x: Array of shape ``[m, dx]`` (or ``[dx]`` for one sample).
      y: Array of shape ``[m', dy]`` (or ``[dy]``).
      kernel: The kernel (or pair of kernels) passed to :func:`kernel_cca`; ``None`` for the
        linear kernel.

    Returns:
      A :class:`alignment.CCATransformOutput` ``(zx [m, k], zy [m', k])`` (``[k]`` for one
      sample), in the dtype of the inputs.

    Raises:
      ValueError: ``result`` is not a :class:`KernelCCAOutput`, a view is ``None``, complex,
        of rank other than 1 or 2, or its last dimension does not match the fitted one, or the
        kernel is not callable or returns the wrong shape.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> x = jax.random.normal(jax.random.key(1), (50, 2)); y = x @ jnp.array([[1.0], [2.0]])
      >>> zx, zy = kernel_cca_transform(kernel_cca(x, y, k=1, reg=1e-6), x[:5], y[:5],
      ...                               kernel=None)
      >>> zx.shape, bool(jnp.allclose(zx, zy, atol=1e-3))  # perfectly correlated
      ((5, 1), True)
    """
    if not isinstance(result, KernelCCAOutput):
        raise ValueError(
            f"`result` must be the KernelCCAOutput of kernel_cca(), got {type(result).__name__}."
        )
    kernels = _kernels(kernel)
    out = []
    for name, view, pts, alpha, mean, kern in (
        ("x", x, result.points_x, result.alpha_x, result.kernel_mean_x, kernels[0]),
        ("y", y, result.points_y, result.alpha_y, result.kernel_mean_y, kernels[1]),
    ):
        view = checks.as_float_array(view, name)
        if view.ndim not in (1, 2) or view.shape[-1] != pts.shape[1]:
            raise ValueError(
                f"`{name}` must have shape [m, {pts.shape[1]}] (or [{pts.shape[1]}]) to match "
                f"the fitted points_{name} of shape {pts.shape}, got shape {view.shape}."
            )
        dtype = jnp.result_type(view, alpha)
        cdtype = checks.compute_dtype(dtype)
        rows = view.astype(cdtype)
        rows = rows[None] if view.ndim == 1 else rows
        g = _gram(kern, rows, pts.astype(cdtype), name, cdtype)
        z = _cca_mod._project(g, alpha.astype(cdtype), jnp.asarray(mean, cdtype))
        z = z[0] if view.ndim == 1 else z
        out.append(z.astype(dtype))
    return CCATransformOutput(out[0], out[1])
