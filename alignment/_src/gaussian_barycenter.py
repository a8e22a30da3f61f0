"""Wasserstein-2 barycenters of Gaussians, diagonal (closed form) and full (fixed point).

The W2 barycenter of ``N(m_k, C_k)`` with weights ``w_k`` (``k = 1..K``, ``w_k >= 0``,
``sum w_k = 1``) minimises ``sum_k w_k W2^2(N, N(m_k, C_k))`` over Gaussians ``N``. Its mean is
``sum_k w_k m_k``; its covariance ``S`` is the unique positive definite solution (if one ``C_k``
is positive definite) of

    ``S = sum_k w_k (S^1/2 C_k S^1/2)^1/2``.

* :func:`gaussian_w2_barycenter_diag`: diagonal covariances (given by their **variances**); they
  commute, and the barycenter has the closed form ``std = sum_k w_k sqrt(var_k)``.
* :func:`gaussian_w2_barycenter`: full covariances, by the fixed-point iteration of
  Alvarez-Esteban, del Barrio, Cuesta-Albertos & Matran (2016)

    ``S <- S^-1/2 (sum_k w_k (S^1/2 C_k S^1/2)^1/2)^2 S^-1/2``,

  in a ``lax.while_loop`` (at most ``max_iters`` iterations, never hangs).

Gradients of the full form are implicit (the loop is not differentiated): ``S`` minimises the
convex function ``f(S) = tr S - 2 sum_k w_k tr (C_k^1/2 S C_k^1/2)^1/2``, whose gradient is
``I - sum_k w_k T_k`` with ``T_k = S^-1/2 (S^1/2 C_k S^1/2)^1/2 S^-1/2`` (the optimal map to
``N(0, C_k)``). A ``custom_vjp`` solves ``H u = g`` (``H`` the Hessian of ``f``, symmetric
positive definite) by conjugate gradients on Hessian-vector products, then pulls ``u`` back
through ``sum_k w_k T_k`` to ``covs`` and ``weights``. The matrix square roots in that residual
have ``custom_jvp`` derivatives from ``eigh`` with the Sylvester form ``dX_ij / (r_i + r_j)``
(no eigenvalue gaps ``1 / (lam_i - lam_j)``), so gradients stay finite at equal and isotropic
covariances, where autodiff through ``eigh`` is NaN.

References: Agueh & Carlier, "Barycenters in the Wasserstein space" (2011); Alvarez-Esteban,
del Barrio, Cuesta-Albertos & Matran, "A fixed-point approach to barycenters in Wasserstein
space" (2016).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from alignment._src import checks
from alignment._src.checks import as_float_array, compute_dtype, is_concrete
from alignment._src.gaussian import _check_psd, _sqrt_variance, _symmetrise
from alignment._src.numerics import rank_tolerance

__all__ = [
    "GaussianBarycenterDiagOutput",
    "GaussianBarycenterOutput",
    "gaussian_w2_barycenter",
    "gaussian_w2_barycenter_diag",
]


class GaussianBarycenterDiagOutput(NamedTuple):
    """The result of :func:`gaussian_w2_barycenter_diag`.

    Attributes:
      mean: Array ``[d]``, ``sum_k w_k means[k]``.
      variance: Array ``[d]``, ``(sum_k w_k sqrt(variances[k]))**2``.
    """

    mean: jax.Array
    variance: jax.Array


class GaussianBarycenterOutput(NamedTuple):
    """The result of :func:`gaussian_w2_barycenter`.

    Attributes:
      mean: Array ``[d]``, ``sum_k w_k means[k]``.
      cov: Array ``[d, d]``, the barycenter covariance (symmetric positive semi-definite).
      n_iters: Int scalar, fixed-point iterations run.
      converged: Bool scalar, the last relative change ``||S_new - S||_F / ||S_new||_F`` was
        ``<= max(tol, d * eps)``.
    """

    mean: jax.Array
    cov: jax.Array
    n_iters: jax.Array
    converged: jax.Array


# --------------------------------------------------------------------------------------------
# Validation.
# --------------------------------------------------------------------------------------------


def _check_stack(means, second, second_name: str, full: bool):
    m = as_float_array(means, "means", ndim=2, what="[k, d]")
    k, d = m.shape
    if k == 0 or d == 0:
        raise ValueError(f"`means` must have k >= 1 and d >= 1, got shape {m.shape}.")
    expected, what = ((k, d, d), "[k, d, d]") if full else ((k, d), "[k, d]")
    s = as_float_array(second, second_name)
    if s.shape != expected:
        raise ValueError(
            f"`{second_name}` must have shape {what} = {expected} to match `means` of shape "
            f"{m.shape}, got shape {s.shape}."
        )
    dtype = jnp.result_type(m, s)
    return m.astype(dtype), s.astype(dtype)


def _check_weights(weights, k: int, dtype) -> tuple[jax.Array, jax.Array]:
    """Weights ``[k]``, non-negative, summing to 1 (uniform when ``None``); ``(w, bad)``.

    The sum is checked to ``max(1e-4, 8 eps)`` of the coarser of ``dtype`` and the weights'
    own dtype (float16 weights round ``1/3`` visibly). Returned in the compute dtype.
    """
    work = compute_dtype(dtype)
    if weights is None:
        return jnp.full((k,), 1.0 / k, work), jnp.asarray(False)
    given = as_float_array(weights, "weights")
    rtol = max(checks.mass_rtol(dtype), checks.mass_rtol(given.dtype))
    w, bad = checks.weights(given, k, "weights", work, what=" (one weight per Gaussian)")
    if is_concrete(w):
        total = float(np.sum(np.asarray(w, np.float64)))
        if abs(total - 1.0) > rtol:
            raise ValueError(f"`weights` must sum to 1, got a sum of {total!r}.")
    bad = bad | (jnp.abs(jnp.sum(w) - 1.0) > rtol)
    return w, bad


def _check_symmetric(cov: jax.Array, name: str) -> None:
    """Raises if a concrete, finite ``cov`` (``[..., d, d]``) is clearly not symmetric."""
    if not is_concrete(cov):
        return
    c = np.asarray(cov, np.float64)
    if not np.all(np.isfinite(c)):
        return
    asym = np.abs(c - np.swapaxes(c, -1, -2)).max(initial=0.0)
    scale = np.abs(c).max(initial=0.0)
    tol = np.sqrt(float(jnp.finfo(compute_dtype(cov.dtype)).eps))
    if asym > tol * scale:
        raise ValueError(
            f"`{name}` must be symmetric, got a largest |C - C^T| of {asym:.3g} against a "
            f"largest |entry| of {scale:.3g}."
        )


# --------------------------------------------------------------------------------------------
# Matrix square roots with gap-free derivatives (finite at repeated eigenvalues).
# --------------------------------------------------------------------------------------------


def _eig(a: jax.Array):
    vecs, lam = lax.linalg.eigh(_symmetrise(a), symmetrize_input=False, sort_eigenvalues=False)
    root = jnp.sqrt(jnp.maximum(lam, 0.0))
    return vecs, root


def _rebuild(vecs, diag):
    return (vecs * diag[..., None, :]) @ jnp.swapaxes(vecs, -1, -2)


def _in_basis(vecs, da):
    return jnp.swapaxes(vecs, -1, -2) @ _symmetrise(da) @ vecs


def _pinv_root(root: jax.Array) -> jax.Array:
    """``1 / root`` above NumPy's rank tolerance (on the eigenvalues ``root**2``), 0 below."""
    lam = root * root
    keep = lam > rank_tolerance(lam, lam.shape[-1])
    return jnp.where(keep, 1.0 / jnp.where(keep, root, 1.0), 0.0)


@jax.custom_jvp
def _sqrtm(a: jax.Array) -> jax.Array:
    """``A^1/2`` of PSD matrices ``[..., d, d]`` (negative eigenvalues clamped at 0)."""
    vecs, root = _eig(a)
    return _rebuild(vecs, root)


@_sqrtm.defjvp
def _sqrtm_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    vecs, root = _eig(a)
    den = root[..., :, None] + root[..., None, :]
    ok = den > 0
    x = jnp.where(ok, _in_basis(vecs, da) / jnp.where(ok, den, 1.0), 0.0)
    return _rebuild(vecs, root), vecs @ x @ jnp.swapaxes(vecs, -1, -2)


@jax.custom_jvp
def _sqrt_pair(s: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(S^1/2, S^+1/2)``: the square root and the pseudo-inverse square root, one ``eigh``."""
    vecs, root = _eig(s)
    return _rebuild(vecs, root), _rebuild(vecs, _pinv_root(root))


@_sqrt_pair.defjvp
def _sqrt_pair_jvp(primals, tangents):
    (s,), (ds,) = primals, tangents
    vecs, root = _eig(s)
    inv = _pinv_root(root)
    den = root[..., :, None] + root[..., None, :]
    ok = den > 0
    x = jnp.where(ok, _in_basis(vecs, ds) / jnp.where(ok, den, 1.0), 0.0)
    vt = jnp.swapaxes(vecs, -1, -2)
    d_root = vecs @ x @ vt
    d_inv = vecs @ (-x * inv[..., :, None] * inv[..., None, :]) @ vt
    return (_rebuild(vecs, root), _rebuild(vecs, inv)), (d_root, d_inv)


def _mean_map(s: jax.Array, w: jax.Array, covs: jax.Array) -> jax.Array:
    """``sum_k w_k T_k = S^-1/2 (sum_k w_k (S^1/2 C_k S^1/2)^1/2) S^-1/2`` (symmetrised)."""
    half, inv_half = _sqrt_pair(s)
    roots = _sqrtm(half @ covs @ half)
    avg = jnp.einsum("k,kij->ij", w, roots)
    return _symmetrise(inv_half @ avg @ inv_half)


# --------------------------------------------------------------------------------------------
# The fixed point and its implicit derivative.
# --------------------------------------------------------------------------------------------


def _step(s: jax.Array, w: jax.Array, covs: jax.Array) -> jax.Array:
    vecs, root = _eig(s)
    half = _rebuild(vecs, root)
    inv_half = _rebuild(vecs, _pinv_root(root))
    v2, r2 = _eig(half @ covs @ half)
    avg = jnp.einsum("k,kij->ij", w, _rebuild(v2, r2))
    return _symmetrise(inv_half @ (avg @ avg) @ inv_half)


def _loop(w, covs, init, tol, max_iters: int):
    def cond(state):
        _, it, err = state
        return (it < max_iters) & ~(err <= tol) & ~jnp.isnan(err)

    def body(state):
        s, it, _ = state
        new = _step(s, w, covs)
        err = jnp.linalg.norm(new - s) / jnp.linalg.norm(new)
        return new, it + 1, err

    # One iteration's rounding moves S by about d * eps (relative): a smaller tol is unreachable.
    tol = jnp.maximum(tol, init.shape[-1] * jnp.finfo(init.dtype).eps)
    inf = jnp.asarray(jnp.inf, init.dtype)
    s, it, err = lax.while_loop(cond, body, (init, jnp.asarray(0, jnp.int32), inf))
    return s, it, err <= tol


@jax.custom_vjp
def _implicit(s_star, w, covs):
    """``s_star`` (the fixed point for ``w``, ``covs``), with its implicit derivative."""
    return s_star


def _implicit_fwd(s_star, w, covs):
    return s_star, (s_star, w, covs)


def _implicit_bwd(res, g):
    s, w, covs = res
    d = s.shape[-1]
    g = _symmetrise(g)

    def hess(u):  # H u = -d/dS (sum_k w_k T_k) [u], symmetric positive definite on symmetric u
        return -jax.jvp(lambda x: _mean_map(x, w, covs), (s,), (_symmetrise(u),))[1]

    eps = float(jnp.finfo(s.dtype).eps)
    size = d * (d + 1) // 2
    u, _ = jax.scipy.sparse.linalg.cg(hess, g, tol=eps**0.75, maxiter=4 * size + 20)
    u = _symmetrise(u)
    _, pull = jax.vjp(lambda ww, cc: _mean_map(s, ww, cc), w, covs)
    dw, dcovs = pull(u)
    return jnp.zeros_like(s), dw, dcovs


_implicit.defvjp(_implicit_fwd, _implicit_bwd)


@functools.partial(jax.jit, static_argnames=("max_iters", "has_init"))
def _barycenter_core(means, covs, w, bad, init, tol, *, max_iters: int, has_init: bool):
    dtype = means.dtype
    work = compute_dtype(dtype)
    means, covs, w, init = (a.astype(work) for a in (means, covs, w, init))
    tol = jnp.asarray(tol, work)
    covs = _symmetrise(covs)
    # One eigh of the covariances: the traced PSD check and the default start (sum w C^1/2)^2,
    # exact when the covariances commute.
    vecs, lam = lax.linalg.eigh(covs, symmetrize_input=False, sort_eigenvalues=False)
    slack = jnp.sqrt(jnp.finfo(work).eps) * jnp.max(jnp.abs(lam), axis=-1, keepdims=True)
    bad = bad | jnp.any(lam < -slack) | checks.invalid_scalar(tol, "positive")
    if has_init:
        start = _symmetrise(init)
    else:
        avg = jnp.einsum("k,kij->ij", w, _rebuild(vecs, jnp.sqrt(jnp.maximum(lam, 0.0))))
        start = _symmetrise(avg @ avg)
    const = lax.stop_gradient
    s, n_iters, converged = _loop(const(w), const(covs), const(start), const(tol), max_iters)
    cov = _implicit(s, w, covs)
    mean = jnp.einsum("k,kd->d", w, means)
    out = GaussianBarycenterOutput(mean.astype(dtype), cov.astype(dtype), n_iters, converged)
    return checks.nan_if(bad, out)


@jax.jit
def _diag_core(means, variances, w, bad):
    dtype = means.dtype
    work = compute_dtype(dtype)
    means, variances, w = (a.astype(work) for a in (means, variances, w))
    mean = jnp.einsum("k,kd->d", w, means)
    std = jnp.einsum("k,kd->d", w, _sqrt_variance(variances))
    out = GaussianBarycenterDiagOutput(mean.astype(dtype), (std * std).astype(dtype))
    return checks.nan_if(bad, out)


# --------------------------------------------------------------------------------------------
# Public functions.
# --------------------------------------------------------------------------------------------


def gaussian_w2_barycenter_diag(
    means: jax.typing.ArrayLike,
    variances: jax.typing.ArrayLike,
    *,
    weights: jax.typing.ArrayLike | None = None,
) -> GaussianBarycenterDiagOutput:
    """W2 barycenter of ``k`` Gaussians with diagonal covariances, in closed form.

    Diagonal covariances commute, so the barycenter is coordinate-wise: ``mean = sum_k w_k
    means[k]``, ``std = sum_k w_k sqrt(variances[k])`` and ``variance = std**2``. It minimises
    ``sum_k w_k gaussian_w2_diag(mean, variance, means[k], variances[k])``. The inputs are
    **variances** (from a VAE's log-variance pass ``jnp.exp(logvar)``). One problem: ``jax.vmap``
    it for a batch.

    Numerics: no iteration, no cancellation. Gradients are finite everywhere: at a zero variance
    the square root's derivative is taken as 0 (double ``where``, as in
    :func:`alignment.gaussian_w2_diag`), a convention (the exact one is ``+inf``).

    Bad input: shapes are checked at trace time (``ValueError`` naming the argument, also under
    ``jit``; ``None``, complex dtypes, wrong rank, mismatched ``k`` or ``d``, ``k == 0`` or
    ``d == 0``). Concrete weights that are negative, non-finite, all zero or do not sum to 1
    (within ``max(1e-4, 8 eps)``), and concrete negative variances, raise; traced, they make
    every output NaN. NaN in a mean or a variance propagates. float16/bfloat16 are computed in
    float32 and returned in the input dtype. See ``docs/conventions.md``.

    Args:
      means: Array of shape ``[k, d]``.
      variances: Array of shape ``[k, d]``, the variances (``>= 0``).
      weights: Array of shape ``[k]``, non-negative, summing to 1; ``None`` for uniform.

    Returns:
      A :class:`GaussianBarycenterDiagOutput` (``mean [d]``, ``variance [d]``).

    References:
      Agueh & Carlier, "Barycenters in the Wasserstein space" (2011).

    Examples:
      >>> import jax.numpy as jnp
      >>> out = gaussian_w2_barycenter_diag(
      ...     jnp.array([[0.0, 0.0], [2.0, 4.0]]), jnp.array([[1.0, 4.0], [9.0, 4.0]]))
      >>> out.mean.tolist(), out.variance.tolist()  # std: (1 + 3) / 2 and (2 + 2) / 2
      ([1.0, 2.0], [4.0, 4.0])
    """
    m, v = _check_stack(means, variances, "variances", full=False)
    if is_concrete(v) and np.any(np.asarray(v, np.float64) < 0):
        raise ValueError(
            f"`variances` must hold variances (>= 0), got a minimum of "
            f"{float(np.nanmin(np.asarray(v, np.float64)))}; for a log-variance pass "
            "jnp.exp(logvar), for a standard deviation std**2."
        )
    w, bad = _check_weights(weights, m.shape[0], m.dtype)
    bad = bad | jnp.any(v < 0)
    return _diag_core(m, v, w, bad)


def gaussian_w2_barycenter(
    means: jax.typing.ArrayLike,
    covs: jax.typing.ArrayLike,
    *,
    weights: jax.typing.ArrayLike | None = None,
    init: jax.typing.ArrayLike | None = None,
    max_iters: int = 100,
    tol: jax.typing.ArrayLike = 1e-6,
) -> GaussianBarycenterOutput:
    """W2 barycenter of ``k`` Gaussians with full covariances, by a fixed-point iteration.

    The mean is ``sum_k w_k means[k]``; the covariance ``S`` solves
    ``S = sum_k w_k (S^1/2 covs[k] S^1/2)^1/2``, found by the iteration of Alvarez-Esteban et
    al. (2016), ``S <- S^-1/2 (sum_k w_k (S^1/2 covs[k] S^1/2)^1/2)^2 S^-1/2``, from ``init``
    (default ``(sum_k w_k covs[k]^1/2)^2``, the exact answer when the covariances commute). It
    stops when ``||S_new - S||_F <= max(tol, d * eps) * ||S_new||_F`` (``d * eps``: the rounding
    floor of one iteration, about ``8e-6`` in float32 at ``d = 64``) or after ``max_iters``
    iterations.
    Each iteration costs ``k + 1`` ``eigh`` of ``[d, d]`` matrices. One problem: ``jax.vmap`` it
    for a batch. For diagonal covariances use :func:`gaussian_w2_barycenter_diag`.

    Numerics: the covariances must be symmetric positive semi-definite, and at least one of
    them (with positive weight) positive definite for a unique, positive definite barycenter;
    eigenvalues below 0 from rounding are clamped, and ``S^-1/2`` is a pseudo-inverse (NumPy's
    rank tolerance). Gradients (reverse mode only: a ``custom_vjp``) are implicit, by conjugate
    gradients on the Hessian of ``sum_k w_k W2^2``; they do not flow through ``init``, ``tol``
    or the loop, assume the loop converged, and stay finite at equal and isotropic covariances.
    At singular barycenters the Hessian is singular and gradients are not reliable.

    Bad input: shapes are checked at trace time (``ValueError`` naming the argument, also under
    ``jit``; ``None``, complex dtypes, wrong rank, mismatched ``k`` or ``d``, ``k == 0`` or
    ``d == 0``, array-valued ``tol``, non-int ``max_iters``). Concrete covariances (or
    ``init``) that are clearly not symmetric or not positive semi-definite raise; so do concrete
    weights that are negative, non-finite, all zero or do not sum to 1, and a concrete
    non-positive ``tol``. Traced, non-PSD covariances, bad weights or a bad ``tol`` give NaN
    ``mean`` and ``cov``, ``n_iters = -1`` and ``converged = False``; traced non-symmetric
    covariances are replaced by their symmetric part. NaN in a mean or a covariance propagates
    (the loop stops at once, unconverged). A concrete call that ends unconverged warns with
    :class:`alignment.ConvergenceWarning`. float16/bfloat16 are computed in float32 and returned
    in the input dtype. See ``docs/conventions.md``.

    Args:
      means: Array of shape ``[k, d]``.
      covs: Array of shape ``[k, d, d]``, symmetric positive semi-definite.
      weights: Array of shape ``[k]``, non-negative, summing to 1; ``None`` for uniform.
      init: Array of shape ``[d, d]``, symmetric positive definite start; ``None`` for the
        default above.
      max_iters: Python int ``>= 1`` (static), the most fixed-point iterations.
      tol: Positive scalar (traced), the relative Frobenius change that stops the loop.

    Returns:
      A :class:`GaussianBarycenterOutput` (``mean [d]``, ``cov [d, d]``, ``n_iters``,
      ``converged``).

    References:
      Agueh & Carlier, "Barycenters in the Wasserstein space" (2011); Alvarez-Esteban, del
      Barrio, Cuesta-Albertos & Matran, "A fixed-point approach to barycenters in Wasserstein
      space", J. Math. Anal. Appl. 441 (2016).

    Examples:
      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> covs = jnp.array([[[2.0, 1.0], [1.0, 2.0]], [[1.0, 0.0], [0.0, 4.0]]])
      >>> out = gaussian_w2_barycenter(jnp.zeros((2, 2)), covs)
      >>> np.asarray(out.cov, np.float64).round(3).tolist(), bool(out.converged)
      ([[1.414, 0.554], [0.554, 2.893]], True)
    """
    m, c = _check_stack(means, covs, "covs", full=True)
    k, d = m.shape
    max_iters = checks.static_int(max_iters, "max_iters", minimum=1)
    checks.scalar(tol, "tol", "positive")
    _check_symmetric(c, "covs")
    _check_psd(c, "covs")
    if init is not None:
        s0 = as_float_array(init, "init")
        if s0.shape != (d, d):
            raise ValueError(
                f"`init` must have shape [d, d] = {(d, d)} to match `means` of shape {m.shape}, "
                f"got shape {s0.shape}."
            )
        _check_symmetric(s0, "init")
        _check_psd(s0, "init")
        s0 = s0.astype(m.dtype)
    else:
        s0 = jnp.zeros((d, d), m.dtype)
    w, bad = _check_weights(weights, k, m.dtype)
    out = _barycenter_core(m, c, w, bad, s0, tol, max_iters=max_iters, has_init=init is not None)
    checks.warn_unconverged(
        out.converged, "gaussian_w2_barycenter", "raise max_iters or loosen tol"
    )
    return out
