"""Wasserstein-2 (Bures-Wasserstein) distances between Gaussians, full and diagonal.

Every function returns the **squared** distance

    ``W2^2 = ||m1 - m2||^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)``

between ``N(m1, S1)`` and ``N(m2, S2)`` (the square is on the mean term too: slides that write
``||m1 - m2||`` there are wrong; take ``jnp.sqrt`` of the result for ``W2`` itself). The second
term is the squared Bures distance between the covariances.

* :func:`gaussian_w2`: one pair, full covariances ``[d, d]`` (batch with ``jax.vmap``);
  :func:`gaussian_w2_pairwise`: all pairs of two sets, ``[n, m]``.
* :func:`gaussian_w2_scale`: covariances given as ``scale @ scale.T`` (a Cholesky factor, or any
  ``[d, k]`` factor: what a VAE encoder with a full covariance outputs).
* :func:`gaussian_w2_diag`: diagonal covariances given by their **variances** (for a VAE's
  ``logvar`` pass ``jnp.exp(logvar)``; for a standard deviation ``std`` pass ``std**2``);
  :func:`gaussian_w2_diag_pairwise`: all pairs.

Method (full covariances). No matrix square root is formed. For any factors ``L1 L1^T = S1``
and ``L2 L2^T = S2``, ``tr (S1^1/2 S2 S1^1/2)^1/2 = ||L2^T L1||_*``, the sum of the singular
values of ``L2^T L1`` (its squares are the eigenvalues of ``S1 S2``). The value takes Cholesky
factors (a tenth of the cost of ``eigh``; if any matrix of the batch is not numerically positive
definite, the whole batch falls back to ``L = V diag(sqrt(max(lam, 0)))`` from ``eigh``) and one
values-only SVD: singular values of the factors' product are accurate to ``eps * ||L2^T L1||``,
where square roots of eigenvalues of a product of covariances lose half the digits of the small
ones. The derivative is a ``custom_jvp`` with the closed form

    ``d/dS2 tr(...)^1/2 = 1/2 L1 M^{+1/2} L1^T`` with ``M = L1^T S2 L1`` (half the optimal map
    from ``N(0, S2)`` to ``N(0, S1)``), and symmetrically ``d/dS1`` from a factor of ``S2``,

computed from ``eigh`` of ``S1``, ``S2`` and the two ``M``. Each is a product
"small x pseudo-inverse x small" that stays finite wherever the value is finite, with no
eigenvalue gaps: autodiff through ``eigh`` divides by ``lam_i - lam_j`` and is NaN at repeated
eigenvalues (isotropic covariances, ``S1 == S2``), and the Sylvester derivative of a ``sqrtm``
divides by ``sqrt(lam_i) + sqrt(lam_j)``, which vanishes when ``S1`` is singular even where the
derivative in ``S2`` is finite. Newton-Schulz iterations (ott-jax's ``sqrtm``) use only matrix
products, but need tens of iterations per square root to converge on ill-conditioned matrices,
two square roots per pair, and autodiff through every iteration: for 256 pairs at ``d = 64`` on
a two-core CPU, ott-jax takes four times as long for the value, with a relative error of
``1e-4`` at its default tolerance against ``4e-7`` here (``benchmarks/gaussian.py``). Cost per
pair: a value, two Cholesky and one values-only SVD; a value and gradient, four ``eigh`` (two
if only one covariance is differentiated).

The scale form (:func:`gaussian_w2_scale`) is the same nuclear norm on the given factors (one
SVD); its derivative, the polar factor ``U V^T``, is bounded, so its gradients stay bounded even
at singular covariances: the better choice for learning covariances.

Numerics, shared by the full-covariance functions: covariances must be symmetric positive
semi-definite; they are symmetrised as ``(S + S^T) / 2`` (only the symmetric part is read) and
eigenvalues below 0 from rounding are clamped at 0. A covariance that is clearly not PSD (an
eigenvalue below ``-sqrt(eps)`` times its largest ``|eigenvalue|``) raises ``ValueError`` when
concrete and gives NaN (value and gradient) when traced. ``tr S1 + tr S2 - 2 tr(...)^1/2`` cancels
when the two Gaussians are close: the absolute error is about ``eps * (tr S1 + tr S2)``; the result
is clamped at 0 in value (the gradient is that of the unclamped expression, so rounding below 0 does
not zero it). In the derivative, eigenvalues of ``M`` below NumPy's rank tolerance (``k * eps *
max``) count as exact zeros (a pseudo-inverse), so gradients stay finite at singular covariances.
There they are a convention: the exact derivative along the null space of a singular covariance is
``-inf`` unless the other covariance vanishes there too (then both agree, e.g. ``1`` on the diagonal
for commuting covariances). :func:`gaussian_w2_diag` has its own convention at zero variance. Second
derivatives come from autodiff through the derivative's ``eigh`` and are NaN at repeated
eigenvalues. The output dtype follows the inputs; float16 and bfloat16 inputs are computed in
float32.

Bad input (every function; see ``docs/conventions.md``): shapes are checked at trace time,
eagerly and under ``jit``/``vmap`` (``ValueError`` naming the argument for ``None``, complex
dtypes, wrong rank, mismatched ``d`` and ``d == 0``). NaN or ``inf`` in a mean, covariance,
factor or variance gives a NaN (or ``inf``) result and NaN gradients: never a finite number.
Negative variances and clearly non-PSD covariances raise when concrete and give NaN when traced.
The public functions validate in Python and call module-level jitted cores, so eager calls hit
the compile cache.

References: Dowson & Landau, "The Frechet distance between multivariate normal distributions"
(1982); Givens & Shortt, "A class of Wasserstein metrics for probability distributions" (1984);
Peyre & Cuturi, "Computational Optimal Transport", Remark 2.31 (2019).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_batching import custom_vmap
from jax.custom_derivatives import SymbolicZero

from alignment._src import costs as _costs
from alignment._src.checks import as_float_array, compute_dtype, is_concrete, point_pair
from alignment._src.numerics import rank_tolerance

__all__ = [
    "gaussian_w2",
    "gaussian_w2_diag",
    "gaussian_w2_diag_pairwise",
    "gaussian_w2_pairwise",
    "gaussian_w2_scale",
]


# --------------------------------------------------------------------------------------------
# Validation.
# --------------------------------------------------------------------------------------------


def _common_dtype(*arrays) -> list[jax.Array]:
    dtype = jnp.result_type(*arrays)
    return [a.astype(dtype) for a in arrays]


def _check_means(mean1, mean2, names=("mean1", "mean2"), ndim=1) -> tuple[jax.Array, jax.Array]:
    """Means ``[d]`` (``ndim=1``) or sets of means ``[n, d]``, ``[m, d]`` (``ndim=2``)."""
    if ndim == 2:
        m1, m2 = point_pair(mean1, mean2, names, feature="dimension")
    else:
        m1 = as_float_array(mean1, names[0], ndim=1, what="[d]")
        m2 = as_float_array(mean2, names[1], ndim=1, what="[d]")
    for name, m in zip(names, (m1, m2), strict=True):
        if m.shape[-1] == 0:
            raise ValueError(f"`{name}` must have a dimension d >= 1, got shape {m.shape}.")
    if m1.shape[-1] != m2.shape[-1]:
        raise ValueError(
            f"`{names[0]}` and `{names[1]}` must have the same dimension d, got shapes "
            f"{m1.shape} and {m2.shape}."
        )
    return m1, m2


def _check_like(arr, name: str, expected: tuple[int, ...], what: str, ref: str) -> jax.Array:
    arr = as_float_array(arr, name)
    if arr.shape != expected:
        raise ValueError(
            f"`{name}` must have shape {what} = {expected} to match `{ref}`, got shape {arr.shape}."
        )
    return arr


def _check_variances(var: jax.Array, name: str) -> None:
    """Raises if a concrete ``var`` has a negative entry (a log-variance passed by mistake).

    NaN entries pass (NaN data propagates to the result); traced negative entries give NaN.
    """
    if is_concrete(var):
        values = np.asarray(var, np.float64)
        if np.any(values < 0):
            raise ValueError(
                f"`{name}` must hold variances (>= 0), got a minimum of {float(np.nanmin(values))};"
                " for a log-variance pass jnp.exp(logvar), for a standard deviation std**2."
            )


def _check_psd(cov: jax.Array, name: str) -> None:
    """Raises if a concrete, finite covariance (``[..., d, d]``) is clearly not PSD.

    "Clearly": the symmetric part has an eigenvalue below ``-sqrt(eps) * max |eigenvalue|``
    (rounding of a PSD matrix stays far above that). Non-finite covariances are left to the NaN
    policy; traced ones are not checked (negative eigenvalues are clamped at 0).
    """
    if not is_concrete(cov):
        return
    c = np.asarray(cov, np.float64)
    if not np.all(np.isfinite(c)):
        return
    c = 0.5 * (c + np.swapaxes(c, -1, -2))
    try:
        np.linalg.cholesky(c)  # positive definite: the common case, and cheap
        return
    except np.linalg.LinAlgError:
        pass
    lam = np.linalg.eigvalsh(c)
    tol = np.sqrt(float(jnp.finfo(compute_dtype(cov.dtype)).eps))
    low = lam.min(axis=-1)
    high = np.abs(lam).max(axis=-1)
    bad = low < -tol * high
    if np.any(bad):
        where = f" (matrix {int(np.argmax(bad))})" if c.ndim == 3 else ""
        raise ValueError(
            f"`{name}` must be positive semi-definite, got an eigenvalue "
            f"{float(low[bad].min()):.3g} against a largest |eigenvalue| of "
            f"{float(high[bad].max()):.3g}{where}."
        )


def _sqrt_variance(var: jax.Array) -> jax.Array:
    """``sqrt(var)`` with derivative 0 at ``var == 0``; NaN (value and gradient) for ``var < 0``
    or NaN (the double-``where`` trick, on ``var == 0`` only, so bad values propagate)."""
    zero = var == 0
    return jnp.where(zero, 0.0, jnp.sqrt(jnp.where(zero, 1.0, var)))


def _poison(*arrays, axis=None) -> jax.Array:
    """``1`` where every entry of ``arrays`` (summed over ``axis``) is finite, NaN elsewhere.

    Multiplying a result by it makes any NaN or ``inf`` input show in the value and in every
    gradient (``0 * sum`` has derivative 0 at finite inputs and value NaN otherwise), whatever
    the linear algebra in between returns for non-finite matrices.
    """
    total = sum(0.0 * jnp.sum(a, axis=axis) for a in arrays)
    return 1.0 + total


def _symmetrise(cov: jax.Array) -> jax.Array:
    return 0.5 * (cov + jnp.swapaxes(cov, -1, -2))


def _clamp(value: jax.Array) -> jax.Array:
    """``max(value, 0)`` in value, with the gradient of ``value`` (rounding below 0 is no kink)."""
    return value + lax.stop_gradient(jnp.maximum(value, 0.0) - value)


# --------------------------------------------------------------------------------------------
# The cross term tr (S1^1/2 S2 S1^1/2)^1/2 and its derivative.
# --------------------------------------------------------------------------------------------


def _batched_by_itself(fun):
    """``fun`` (written for arrays with any leading batch axes) run whole under ``jax.vmap``.

    A ``custom_vmap`` whose rule calls ``fun`` on the batched arrays (unbatched ones are
    broadcast) instead of letting ``vmap`` batch its body. Two reasons: a ``lax.cond`` on a
    whole-batch predicate stays a ``cond`` (a batched one runs both branches), and the LAPACK
    calls see contiguous batches (``vmap`` of a stacked pair moves the pair axis inside, and the
    layout copies cost about a third of the value's time on CPU). The rule calls ``fun``, not
    the wrapped function, so outer levels of a nested ``vmap`` batch ``fun``'s body as usual.
    Only for functions that are never differentiated: ``custom_vmap``'s JVP fails under
    batching in JAX 0.10 (and recursion in the rule makes it recurse without end).
    """
    wrapped = custom_vmap(fun)

    @wrapped.def_vmap
    def rule(axis_size, in_batched, *args):
        args = [
            a if batched else jnp.broadcast_to(a, (axis_size, *a.shape))
            for a, batched in zip(args, in_batched, strict=True)
        ]
        out = fun(*args)
        return out, jax.tree.map(lambda _: True, out)

    return wrapped


def _eigh_factor(cov: jax.Array) -> jax.Array:
    """``L = V diag(sqrt(max(lam, 0)))`` with ``L L^T = cov`` (``[..., d, d]``), by ``eigh``.

    Eigenvalues below 0 from rounding are clamped; a matrix that is clearly not PSD (an
    eigenvalue below ``-sqrt(eps) * max |lam|``, as :func:`_check_psd` raises for concrete
    input) gets a NaN factor, so its results are NaN (the traced bad-value policy).
    """
    vecs, lam = lax.linalg.eigh(cov, symmetrize_input=False, sort_eigenvalues=False)
    tol = jnp.sqrt(jnp.finfo(lam.dtype).eps) * jnp.max(jnp.abs(lam), axis=-1, keepdims=True)
    root = jnp.where(lam < -tol, jnp.nan, jnp.sqrt(jnp.maximum(lam, 0.0)))
    return vecs * root[..., None, :]


def _psd_factor(cov: jax.Array) -> jax.Array:
    """A factor ``L`` with ``L L^T = cov`` for a batch ``[..., d, d]`` of PSD matrices.

    The Cholesky factor (a tenth of the cost of ``eigh``) when every matrix of the batch is
    numerically positive definite; otherwise (a singular or indefinite matrix, where Cholesky
    gives NaN) :func:`_eigh_factor` for the whole batch. Used where no derivative is taken.
    """
    chol = lax.linalg.cholesky(cov, symmetrize_input=False)
    return lax.cond(jnp.all(jnp.isfinite(chol)), lambda: chol, lambda: _eigh_factor(cov))


def _factors(cov1: jax.Array, cov2: jax.Array, pairwise: bool, factor) -> tuple[jax.Array, ...]:
    """``factor`` of ``cov1`` and of ``cov2`` from one batched decomposition.

    One call, not two: two independent batched LAPACK calls in one program can deadlock
    jaxlib's CPU thread pool (observed with jaxlib 0.10 on two cores).
    """
    if pairwise:
        f1, f2 = jnp.split(factor(jnp.concatenate([cov1, cov2])), [cov1.shape[0]])
        return f1, f2
    both = factor(jnp.stack([cov1, cov2]))
    return both[0], both[1]


def _pairs(x1: jax.Array, x2: jax.Array, pairwise: bool) -> tuple[jax.Array, jax.Array]:
    """``[n, ...]`` and ``[m, ...]`` as ``[n, 1, ...]`` and ``[1, m, ...]`` when ``pairwise``."""
    return (x1[:, None], x2[None]) if pairwise else (x1, x2)


def _congruence(factor: jax.Array, cov: jax.Array) -> jax.Array:
    """``factor^T cov factor``, broadcasting over leading axes."""
    return jnp.swapaxes(factor, -1, -2) @ cov @ factor


def _trace_sqrt_and_grad(factor: jax.Array, mat: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``tr M^1/2`` and ``1/2 L M^{+1/2} L^T`` for ``M = L^T S L`` (given), by ``eigh``.

    The second is the derivative of the first in ``S`` (for any factor ``L L^T`` of the other
    covariance). The pseudo-inverse drops the eigenvalues below NumPy's rank tolerance
    (``k * eps * max``).
    """
    vecs, mu = lax.linalg.eigh(_symmetrise(mat), symmetrize_input=False, sort_eigenvalues=False)
    # A clearly negative eigenvalue (not rounding): ``S`` is not PSD, the results are NaN.
    slack = jnp.sqrt(jnp.finfo(mu.dtype).eps) * jnp.max(jnp.abs(mu), axis=-1)
    not_psd = jnp.any(mu < -slack[..., None], axis=-1)
    mu = jnp.maximum(mu, 0.0)
    root = jnp.sqrt(mu)
    tol = rank_tolerance(mu, mu.shape[-1])
    kept = mu > tol
    inv_root = jnp.where(kept, 1.0 / jnp.where(kept, root, 1.0), 0.0)
    b = factor @ vecs
    grad = 0.5 * (b * inv_root[..., None, :]) @ jnp.swapaxes(b, -1, -2)
    value = jnp.where(not_psd, jnp.nan, jnp.sum(root, axis=-1))
    return value, jnp.where(not_psd[..., None, None], jnp.nan, grad)


def _cross_value(cov1: jax.Array, cov2: jax.Array, pairwise: bool) -> jax.Array:
    """``tr (S1^1/2 S2 S1^1/2)^1/2 = ||L2^T L1||_*`` (the singular values of ``L2^T L1``)."""
    f1, f2 = _factors(cov1, cov2, pairwise, _psd_factor)
    x = jnp.einsum("mka,nkb->nmab", f2, f1) if pairwise else jnp.swapaxes(f2, -1, -2) @ f1
    return jnp.sum(jnp.linalg.svd(x, compute_uv=False), axis=-1)


def _cross_grad2(cov1: jax.Array, cov2: jax.Array, pairwise: bool):
    """The cross term and its derivative in ``cov2``, from a factor of ``cov1``."""
    f1 = _pairs(_eigh_factor(cov1), cov2, pairwise)[0]
    return _trace_sqrt_and_grad(f1, _congruence(f1, _pairs(cov1, cov2, pairwise)[1]))


def _cross_grad1(cov1: jax.Array, cov2: jax.Array, pairwise: bool):
    """The cross term and its derivative in ``cov1``, from a factor of ``cov2``."""
    f2 = _pairs(cov1, _eigh_factor(cov2), pairwise)[1]
    return _trace_sqrt_and_grad(f2, _congruence(f2, _pairs(cov1, cov2, pairwise)[0]))


def _cross_grads(cov1: jax.Array, cov2: jax.Array, pairwise: bool):
    """The cross term and both derivatives: two factors, then one batched ``eigh``."""
    f1, f2 = _pairs(*_factors(cov1, cov2, pairwise, _eigh_factor), pairwise)
    c1, c2 = _pairs(cov1, cov2, pairwise)
    shape = jnp.broadcast_shapes(f1.shape, f2.shape)
    factors = jnp.stack([jnp.broadcast_to(f1, shape), jnp.broadcast_to(f2, shape)])
    mats = jnp.stack([_congruence(f1, c2), _congruence(f2, c1)])
    values, grads = _trace_sqrt_and_grad(factors, mats)
    return values[0], grads[1], grads[0]


# The value of one pair runs whole under ``jax.vmap`` (see ``_batched_by_itself``). The
# derivative helpers are left to ``vmap`` (``custom_vmap`` has no reliable JVP, which second
# derivatives would need) and factor by ``eigh`` (a batched ``cond`` would run both branches).
_cross_value_single = _batched_by_itself(functools.partial(_cross_value, pairwise=False))


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _bures_cross(cov1: jax.Array, cov2: jax.Array, pairwise: bool) -> jax.Array:
    """``tr (S1^1/2 S2 S1^1/2)^1/2``, one pair ``[]`` or all pairs ``[n, m]``."""
    return _cross_value(cov1, cov2, True) if pairwise else _cross_value_single(cov1, cov2)


@functools.partial(_bures_cross.defjvp, symbolic_zeros=True)
def _bures_cross_jvp(pairwise, primals, tangents):
    """``d tr(...)^1/2 = <G1, dS1> + <G2, dS2>`` with ``G2 = 1/2 L1 (L1^T S2 L1)^{+1/2} L1^T``.

    ``G1`` is the same formula with the roles swapped (the cross term is symmetric). Only the
    derivatives whose tangents are not symbolic zeros are computed.
    """
    cov1, cov2 = primals
    dcov1, dcov2 = tangents
    need1 = not isinstance(dcov1, SymbolicZero)
    need2 = not isinstance(dcov2, SymbolicZero)
    grad1 = grad2 = None
    if need1 and need2:
        value, grad1, grad2 = _cross_grads(cov1, cov2, pairwise)
    elif need2:
        value, grad2 = _cross_grad2(cov1, cov2, pairwise)
    elif need1:
        value, grad1 = _cross_grad1(cov1, cov2, pairwise)
    else:
        value = _bures_cross(cov1, cov2, pairwise)
    out = jnp.zeros_like(value)
    if grad1 is not None:
        out = out + jnp.einsum("nmij,nij->nm" if pairwise else "ij,ij->", grad1, dcov1)
    if grad2 is not None:
        out = out + jnp.einsum("nmij,mij->nm" if pairwise else "ij,ij->", grad2, dcov2)
    return value, out


def _svd(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Thin SVD. On CPU by the QR algorithm (``gesvd``): jaxlib's default divide and conquer
    (``gesdd``) with vectors is 25 times slower on batches of 64 x 64 matrices (jaxlib 0.10)."""
    return lax.platform_dependent(
        x,
        cpu=functools.partial(
            lax.linalg.svd, full_matrices=False, algorithm=lax.linalg.SvdAlgorithm.QR
        ),
        default=functools.partial(lax.linalg.svd, full_matrices=False),
    )


@jax.custom_jvp
def _nuclear_norm(x: jax.Array) -> jax.Array:
    """Sum of the singular values of ``x`` (``[k2, k1]``), with the derivative ``U V^T``."""
    return jnp.sum(jnp.linalg.svd(x, compute_uv=False), axis=-1)


@_nuclear_norm.defjvp
def _nuclear_norm_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    u, s, vt = _svd(x)
    # Singular values below NumPy's rank tolerance count as zeros: the minimal-norm subgradient.
    tol = rank_tolerance(s, max(x.shape[-2:]))
    polar = (u * (s > tol).astype(s.dtype)[..., None, :]) @ vt
    return jnp.sum(s, axis=-1), jnp.sum(polar * dx, axis=(-2, -1))


# --------------------------------------------------------------------------------------------
# Jitted cores: validated inputs of a common dtype; computed in float32 for half precision.
# --------------------------------------------------------------------------------------------


def _work(*arrays) -> tuple[jnp.dtype, list[jax.Array]]:
    dtype = arrays[0].dtype
    work = compute_dtype(dtype)
    return dtype, [a.astype(work) for a in arrays]


@jax.jit
def _w2_core(m1, c1, m2, c2):
    dtype, (m1, c1, m2, c2) = _work(m1, c1, m2, c2)
    c1, c2 = _symmetrise(c1), _symmetrise(c2)
    diff = m1 - m2
    value = jnp.sum(diff * diff) + jnp.trace(c1) + jnp.trace(c2) - 2.0 * _bures_cross(c1, c2, False)
    return (_clamp(value) * _poison(m1, c1, m2, c2)).astype(dtype)


@jax.jit
def _w2_scale_core(m1, s1, m2, s2):
    dtype, (m1, s1, m2, s2) = _work(m1, s1, m2, s2)
    diff = m1 - m2
    value = jnp.sum(diff * diff) + jnp.sum(s1 * s1) + jnp.sum(s2 * s2)
    value = value - 2.0 * _nuclear_norm(s2.T @ s1)
    return (_clamp(value) * _poison(m1, s1, m2, s2)).astype(dtype)


@jax.jit
def _w2_diag_core(m1, v1, m2, v2):
    dtype, (m1, v1, m2, v2) = _work(m1, v1, m2, v2)
    dm = m1 - m2
    ds = _sqrt_variance(v1) - _sqrt_variance(v2)
    return (jnp.sum(dm * dm) + jnp.sum(ds * ds)).astype(dtype)


@jax.jit
def _w2_pairwise_core(mu1, c1, mu2, c2):
    dtype, (mu1, c1, mu2, c2) = _work(mu1, c1, mu2, c2)
    c1, c2 = _symmetrise(c1), _symmetrise(c2)
    traces = jnp.trace(c1, axis1=-2, axis2=-1)[:, None] + jnp.trace(c2, axis1=-2, axis2=-1)
    value = _costs.squared_euclidean(mu1, mu2) + traces - 2.0 * _bures_cross(c1, c2, True)
    poison = _poison(mu1, c1.reshape(c1.shape[0], -1), axis=1)[:, None]
    poison = poison + _poison(mu2, c2.reshape(c2.shape[0], -1), axis=1)[None, :] - 1.0
    return (_clamp(value) * poison).astype(dtype)


@jax.jit
def _w2_diag_pairwise_core(mu1, v1, mu2, v2):
    dtype, (mu1, v1, mu2, v2) = _work(mu1, v1, mu2, v2)
    x = jnp.concatenate([mu1, _sqrt_variance(v1)], axis=1)
    y = jnp.concatenate([mu2, _sqrt_variance(v2)], axis=1)
    poison = _poison(x, axis=1)[:, None] + _poison(y, axis=1)[None, :] - 1.0
    return (_costs.squared_euclidean(x, y) * poison).astype(dtype)


# --------------------------------------------------------------------------------------------
# Public functions.
# --------------------------------------------------------------------------------------------


def gaussian_w2(
    mean1: jax.typing.ArrayLike,
    cov1: jax.typing.ArrayLike,
    mean2: jax.typing.ArrayLike,
    cov2: jax.typing.ArrayLike,
) -> jax.Array:
    """Squared 2-Wasserstein distance between ``N(mean1, cov1)`` and ``N(mean2, cov2)``.

    ``W2^2 = ||mean1 - mean2||^2 + tr(cov1 + cov2 - 2 (cov1^1/2 cov2 cov1^1/2)^1/2)``: the mean
    term is the **squared** Euclidean distance (some slides write ``||m1 - m2||``, without the
    square; that is a typo). Take ``jnp.sqrt`` for ``W2`` itself (its derivative is infinite at
    0). One pair: ``jax.vmap`` it for a batch, or use :func:`gaussian_w2_pairwise` for all pairs.

    Numerics: see the module docstring. The covariances must be symmetric positive semi-definite
    (they are symmetrised, and negative eigenvalues from rounding clamped at 0). Gradients are
    finite at identical, isotropic (repeated eigenvalues) and singular covariances; near a singular
    covariance they are as large as the exact derivative (which is infinite at a singular ``cov1``
    along its null space unless ``cov2`` vanishes there too), and at an exactly singular one they
    are a finite convention (module docstring). The result is clamped at 0 (in value; the gradient
    is the unclamped one) and has an absolute error of about ``eps * (tr cov1 + tr cov2)``.

    Bad input: shapes are checked at trace time (``ValueError`` naming the argument, also under
    ``jit``; ``None`` and complex dtypes too). A concrete covariance that is clearly not positive
    semi-definite raises; traced, it gives NaN. NaN or ``inf`` in a mean or a covariance gives a
    NaN result with NaN gradients. A non-symmetric covariance is replaced by its symmetric part.
    float16/bfloat16 are computed in float32 and returned in the input dtype. See
    ``docs/conventions.md``.

    Args:
      mean1: Array of shape ``[d]``.
      cov1: Array of shape ``[d, d]``, symmetric positive semi-definite.
      mean2: Array of shape ``[d]``.
      cov2: Array of shape ``[d, d]``, symmetric positive semi-definite.

    Returns:
      Array of shape ``[]``: the squared distance, ``>= 0``.

    References:
      Dowson & Landau, "The Frechet distance between multivariate normal distributions" (1982);
      Peyre & Cuturi, "Computational Optimal Transport", Remark 2.31 (2019).

    Examples:
      >>> import jax.numpy as jnp
      >>> w2 = gaussian_w2(jnp.zeros(2), jnp.eye(2), jnp.array([1.0, 0.0]), 4.0 * jnp.eye(2))
      >>> round(float(w2), 4)  # 1 + 2 * (1 - 2)^2
      3.0
    """
    m1, m2 = _check_means(mean1, mean2)
    d = m1.shape[0]
    c1 = _check_like(cov1, "cov1", (d, d), "[d, d]", "mean1")
    c2 = _check_like(cov2, "cov2", (d, d), "[d, d]", "mean2")
    _check_psd(c1, "cov1")
    _check_psd(c2, "cov2")
    return _w2_core(*_common_dtype(m1, c1, m2, c2))


def gaussian_w2_scale(
    mean1: jax.typing.ArrayLike,
    scale1: jax.typing.ArrayLike,
    mean2: jax.typing.ArrayLike,
    scale2: jax.typing.ArrayLike,
) -> jax.Array:
    """Squared 2-Wasserstein distance between Gaussians with covariances ``scale @ scale.T``.

    The same quantity as :func:`gaussian_w2` with ``cov = scale @ scale.T``, computed from the
    factors: ``||mean1 - mean2||^2 + ||scale1||_F^2 + ||scale2||_F^2 - 2 ||scale2^T scale1||_*``
    (``||.||_*`` the nuclear norm, the sum of singular values: one SVD, no matrix square root).
    ``scale`` may be a Cholesky factor (lower triangular ``[d, d]``, as a VAE encoder with a full
    covariance outputs it), any square root, or a low-rank ``[d, k]`` factor.

    Numerics: more accurate than forming the covariances (singular values of the factors'
    product, not square roots of eigenvalues of a product of covariances), and the gradient is
    bounded everywhere (the derivative of the nuclear norm is the polar factor ``U V^T``; at a
    rank-deficient ``scale2^T scale1`` the singular values below NumPy's rank tolerance get a
    zero derivative, the minimal-norm subgradient). The result is clamped at 0 (in value).

    Bad input: shapes are checked at trace time (``ValueError`` naming the argument, also under
    ``jit``; ``None``, complex dtypes and ``k == 0`` too). NaN or ``inf`` in a mean or a scale
    gives a NaN result with NaN gradients. float16/bfloat16 are computed in float32 and returned
    in the input dtype. See ``docs/conventions.md``.

    Args:
      mean1: Array of shape ``[d]``.
      scale1: Array of shape ``[d, k1]``; the covariance is ``scale1 @ scale1.T``.
      mean2: Array of shape ``[d]``.
      scale2: Array of shape ``[d, k2]``; the covariance is ``scale2 @ scale2.T``.

    Returns:
      Array of shape ``[]``: the squared distance, ``>= 0``.

    References:
      Dowson & Landau (1982); Bhatia, Jain & Lim, "On the Bures-Wasserstein distance between
      positive definite matrices" (2019) for the factor form.

    Examples:
      >>> import jax.numpy as jnp
      >>> chol = jnp.array([[1.0, 0.0], [0.5, 1.0]])  # cov = chol @ chol.T
      >>> round(float(gaussian_w2_scale(jnp.zeros(2), chol, jnp.zeros(2), 2.0 * chol)), 4)
      2.25
    """
    m1, m2 = _check_means(mean1, mean2)
    d = m1.shape[0]
    s1 = as_float_array(scale1, "scale1")
    s2 = as_float_array(scale2, "scale2")
    for name, s, ref in (("scale1", s1, "mean1"), ("scale2", s2, "mean2")):
        if s.ndim != 2 or s.shape[0] != d or s.shape[1] == 0:
            raise ValueError(
                f"`{name}` must have shape [d, k] with d = {d} (to match `{ref}`) and k >= 1, "
                f"got shape {s.shape}."
            )
    return _w2_scale_core(*_common_dtype(m1, s1, m2, s2))


def gaussian_w2_diag(
    mean1: jax.typing.ArrayLike,
    var1: jax.typing.ArrayLike,
    mean2: jax.typing.ArrayLike,
    var2: jax.typing.ArrayLike,
) -> jax.Array:
    """Squared 2-Wasserstein distance between Gaussians with diagonal covariances.

    ``||mean1 - mean2||^2 + ||sqrt(var1) - sqrt(var2)||^2``, the closed form of
    :func:`gaussian_w2` for ``cov = diag(var)``. The inputs are **variances** (the diagonal of
    the covariance), not standard deviations: from a VAE's log-variance pass
    ``jnp.exp(logvar)``, from a standard deviation ``std**2``.

    Numerics: computed from exact differences (no cancellation). Gradients are finite
    everywhere: at ``var1 == var2`` they vanish, and at a zero variance the square root's
    derivative is taken as 0 (double ``where``), so the derivative in that variance is 0, a
    convention (the exact one-sided derivative is ``-inf`` if the other variance is positive,
    ``1`` if it is 0 too).

    Bad input: shapes are checked at trace time (``ValueError`` naming the argument, also under
    ``jit``; ``None`` and complex dtypes too). Negative variances raise for concrete inputs (the
    message suggests ``jnp.exp(logvar)``); traced, they give NaN (value and gradient). A NaN in
    a mean or a variance gives a NaN result and a NaN gradient; ``inf`` gives ``inf``.
    float16/bfloat16 are computed in float32 and returned in the input dtype. See
    ``docs/conventions.md``.

    Args:
      mean1: Array of shape ``[d]``.
      var1: Array of shape ``[d]``, the variances (``>= 0``).
      mean2: Array of shape ``[d]``.
      var2: Array of shape ``[d]``, the variances (``>= 0``).

    Returns:
      Array of shape ``[]``: the squared distance, ``>= 0``.

    References:
      Dowson & Landau (1982); Peyre & Cuturi, "Computational Optimal Transport" (2019).

    Examples:
      >>> import jax.numpy as jnp
      >>> logvar = jnp.log(jnp.array([4.0, 1.0]))
      >>> w2 = gaussian_w2_diag(jnp.zeros(2), jnp.exp(logvar), jnp.ones(2), jnp.ones(2))
      >>> round(float(w2), 4)  # (0-1)^2 + (0-1)^2 + (2-1)^2 + (1-1)^2
      3.0
    """
    m1, m2 = _check_means(mean1, mean2)
    v1 = _check_like(var1, "var1", m1.shape, "[d]", "mean1")
    v2 = _check_like(var2, "var2", m2.shape, "[d]", "mean2")
    _check_variances(v1, "var1")
    _check_variances(v2, "var2")
    return _w2_diag_core(*_common_dtype(m1, v1, m2, v2))


def gaussian_w2_pairwise(
    means1: jax.typing.ArrayLike,
    covs1: jax.typing.ArrayLike,
    means2: jax.typing.ArrayLike,
    covs2: jax.typing.ArrayLike,
) -> jax.Array:
    """Squared 2-Wasserstein distances between all pairs of two sets of Gaussians.

    Entry ``(i, j)`` is ``gaussian_w2(means1[i], covs1[i], means2[j], covs2[j])``. Each
    covariance is factored once (``n + m`` factorisations, not ``2 n m``), then one values-only
    SVD per pair; the mean term is :func:`alignment.squared_euclidean`.

    Numerics: as :func:`gaussian_w2`. Memory is ``O(n * m * d^2)`` (one ``[d, d]`` matrix per
    pair; about six of them in a gradient, with two ``eigh`` per pair): split large sets into
    blocks.

    Bad input: shapes are checked at trace time (``ValueError`` naming the argument, also under
    ``jit``; ``None`` and complex dtypes too). A concrete covariance that is clearly not positive
    semi-definite raises; traced, it gives NaN. NaN or ``inf`` in ``means1[i]`` or ``covs1[i]``
    makes row ``i`` NaN (value and gradients). A non-symmetric covariance is replaced by its
    symmetric part. Empty sets (``n == 0`` or ``m == 0``) give an empty ``[n, m]`` result.
    float16/bfloat16 are computed in float32 and returned in the input dtype. See
    ``docs/conventions.md``.

    Args:
      means1: Array of shape ``[n, d]``.
      covs1: Array of shape ``[n, d, d]``, symmetric positive semi-definite.
      means2: Array of shape ``[m, d]``.
      covs2: Array of shape ``[m, d, d]``, symmetric positive semi-definite.

    Returns:
      Array of shape ``[n, m]``, ``>= 0``.

    Examples:
      >>> import jax.numpy as jnp
      >>> covs = jnp.stack([jnp.eye(2), 4.0 * jnp.eye(2)])
      >>> gaussian_w2_pairwise(jnp.zeros((2, 2)), covs, jnp.zeros((1, 2)), covs[:1]).round(4)
      Array([[0.],
             [2.]], dtype=float32)
    """
    mu1, mu2 = _check_means(means1, means2, names=("means1", "means2"), ndim=2)
    (n, d), m = mu1.shape, mu2.shape[0]
    c1 = _check_like(covs1, "covs1", (n, d, d), "[n, d, d]", "means1")
    c2 = _check_like(covs2, "covs2", (m, d, d), "[m, d, d]", "means2")
    mu1, c1, mu2, c2 = _common_dtype(mu1, c1, mu2, c2)
    if n == 0 or m == 0:
        return jnp.zeros((n, m), mu1.dtype)
    _check_psd(c1, "covs1")
    _check_psd(c2, "covs2")
    return _w2_pairwise_core(mu1, c1, mu2, c2)


def gaussian_w2_diag_pairwise(
    means1: jax.typing.ArrayLike,
    vars1: jax.typing.ArrayLike,
    means2: jax.typing.ArrayLike,
    vars2: jax.typing.ArrayLike,
) -> jax.Array:
    """Squared 2-Wasserstein distances between all pairs of two sets of diagonal Gaussians.

    Entry ``(i, j)`` is ``gaussian_w2_diag(means1[i], vars1[i], means2[j], vars2[j])``: the
    squared Euclidean distance between the vectors ``[mean, sqrt(var)]``, computed by
    :func:`alignment.squared_euclidean` (one matrix product, no ``[n, m, d]``
    intermediate). Inputs are **variances**, as in :func:`gaussian_w2_diag`.

    Numerics: the expansion ``|x|^2 + |y|^2 - 2 x.y`` runs on inputs centred on their common
    mean and is clamped at 0 (never negative); its absolute error is about ``eps`` times the
    squared spread of the ``[mean, sqrt(var)]`` vectors, so distances far below that scale round
    to 0 (use ``jax.vmap`` of :func:`gaussian_w2_diag` for exact differences). Gradients are
    finite, zero variances included.

    Bad input: shapes are checked at trace time (``ValueError`` naming the argument, also under
    ``jit``; ``None`` and complex dtypes too). Negative variances raise for concrete inputs;
    traced, they make their row (or column) NaN, as does a NaN or ``inf`` in ``means1[i]`` or
    ``vars1[i]`` (value and gradients). Empty sets give an empty ``[n, m]`` result.
    float16/bfloat16 are computed in float32 and returned in the input dtype. See
    ``docs/conventions.md``.

    Args:
      means1: Array of shape ``[n, d]``.
      vars1: Array of shape ``[n, d]``, the variances (``>= 0``).
      means2: Array of shape ``[m, d]``.
      vars2: Array of shape ``[m, d]``, the variances (``>= 0``).

    Returns:
      Array of shape ``[n, m]``, ``>= 0``.

    Examples:
      >>> import jax.numpy as jnp
      >>> w2 = gaussian_w2_diag_pairwise(
      ...     jnp.zeros((2, 1)), jnp.array([[1.0], [9.0]]), jnp.ones((1, 1)), jnp.ones((1, 1)))
      >>> w2.round(4).tolist()  # 1 + (1 - 1)^2 and 1 + (3 - 1)^2
      [[1.0], [5.0]]
    """
    mu1, mu2 = _check_means(means1, means2, names=("means1", "means2"), ndim=2)
    v1 = _check_like(vars1, "vars1", mu1.shape, "[n, d]", "means1")
    v2 = _check_like(vars2, "vars2", mu2.shape, "[m, d]", "means2")
    _check_variances(v1, "vars1")
    _check_variances(v2, "vars2")
    mu1, v1, mu2, v2 = _common_dtype(mu1, v1, mu2, v2)
    if mu1.shape[0] == 0 or mu2.shape[0] == 0:
        return jnp.zeros((mu1.shape[0], mu2.shape[0]), mu1.dtype)
    return _w2_diag_pairwise_core(mu1, v1, mu2, v2)
