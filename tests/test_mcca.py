"""Tests for alignment._src.mcca (multi-view CCA, deep MCCA, kernel CCA).

References: the generalised symmetric eigenproblem ``(A + D) w = lambda D w`` (MAXVAR) solved by
``scipy.linalg.eigh(A, B)`` in float64; our own :func:`alignment.cca` and
:func:`alignment.dcca_loss` for two views; scikit-learn's iterative ``CCA`` (first component);
for kernel CCA, Hardoon et al.'s ``(Kx + c I)^-1 Ky (Ky + c I)^-1 Kx`` eigenvalues and
``scipy.linalg.eigh`` of the dual pencil in float64, and linear CCA with the linear kernel;
cca-zoo's ``MCCA``, ``GCCA`` and ``KCCA`` when it is installed; ``check_grads`` under x64.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from jax.test_util import check_grads
from sklearn.cross_decomposition import CCA as SkCCA

import alignment as al
from alignment._src import cca as cc
from alignment._src import mcca as mc
from tests.conftest import x64

F32_RTOL = 1e-5  # float32 closed forms vs a float64 reference
F64_RTOL = 1e-9
GRAD_X64 = 1e-6  # check_grads tolerance under x64
N = 40  # samples: one shape for most tests (compile time dominates)
RBF = functools.partial(al.rbf_kernel, gamma=0.5)  # the library's kernel, in a few tests


@jax.jit
def _rbf(a, b, gamma=0.5):
    """The same RBF kernel written plainly: cheap to compile, used where the kernel is incidental
    (al.rbf_kernel's robust distance core costs seconds to compile per shape)."""
    return jnp.exp(-gamma * jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1))


# Jitted with a traced reg, shared by the jit and the traced-bad-value tests (one compile each).
MCCA_JIT = jax.jit(lambda vs, r: mc.mcca(vs, k=3, reg=r))
DMCCA_JIT = jax.jit(lambda vs, r: mc.dmcca_loss(vs, reg=r))
KCCA_JIT = jax.jit(lambda a, b, r: mc.kernel_cca(a, b, k=3, reg=r, kernel=_rbf))


# ------------------------------------------------------------------------------------------
# Data and float64 references (NumPy / SciPy only).
# ------------------------------------------------------------------------------------------


def _views(rng, n=N, dims=(4, 3, 5), dtype=np.float32):
    """Views sharing a 2-D latent signal (the third view only its first coordinate)."""
    z = rng.normal(size=(n, 2))
    x1 = np.concatenate([z, rng.normal(size=(n, dims[0] - 2))], 1) @ rng.normal(size=(dims[0],) * 2)
    x2 = np.concatenate([z @ [[1.0, 0.5], [0.0, 1.0]], rng.normal(size=(n, dims[1] - 2))], 1)
    x2 = x2 + 0.5 * rng.normal(size=x2.shape)
    out = [x1, x2]
    if len(dims) > 2:
        x3 = np.concatenate([z[:, :1], rng.normal(size=(n, dims[2] - 1))], 1)
        out.append(x3 + 0.3 * rng.normal(size=x3.shape))
    return [v.astype(dtype) for v in out]


def _ref_blocks(views, reg):
    """Full covariance ``S`` of the concatenated centred views, ``A`` (off-diagonal blocks) and
    ``D = blockdiag(S_ii + reg I)``, all ``1 / (n - 1)``."""
    views = [np.asarray(v, np.float64) for v in views]
    n = views[0].shape[0]
    z = np.concatenate([v - v.mean(0) for v in views], 1)
    s = z.T @ z / (n - 1)
    d = scipy.linalg.block_diag(
        *[np.cov(v.T, ddof=1).reshape(v.shape[1], -1) + reg * np.eye(v.shape[1]) for v in views]
    )
    owner = np.repeat(np.arange(len(views)), [v.shape[1] for v in views])
    a = np.where(owner[:, None] != owner[None, :], s, 0.0)
    return a, d


def _ref_mcca(views, k, reg=0.0):
    """Top-k eigenpairs of ``(A + D) w = lambda D w``; ``w`` scaled to ``w^T D w = J``."""
    a, d = _ref_blocks(views, reg)
    lam, w = scipy.linalg.eigh(a + d, d)
    order = np.argsort(lam)[::-1][:k]
    n_views = len(views)
    w = w[:, order] * np.sqrt(n_views)
    edges = np.cumsum([0] + [v.shape[1] for v in views])
    return (lam[order] - 1) / (n_views - 1), [w[i:j] for i, j in itertools.pairwise(edges)]


def _np_rbf(a, b, gamma=0.5):
    return np.exp(-gamma * ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def _np_linear(a, b):
    return a @ b.T


def _centred_gram(kernel, x):
    """``H kernel(x, x) H`` in float64 NumPy."""
    x = np.asarray(x, np.float64)
    h = np.eye(x.shape[0]) - 1.0 / x.shape[0]
    return h @ kernel(x, x) @ h


def _ref_kcca_hardoon(kx, ky, reg, k):
    """Square roots of the top eigenvalues of ``(Kx + c I)^-1 Ky (Ky + c I)^-1 Kx``."""
    n = kx.shape[0]
    c = (n - 1) * reg
    m = np.linalg.solve(kx + c * np.eye(n), ky) @ np.linalg.solve(ky + c * np.eye(n), kx)
    ev = np.sort(np.real(np.linalg.eigvals(m)))[::-1][:k]
    return np.sqrt(np.maximum(ev, 0.0))


def _ref_kcca_pencil(kx, ky, reg, k):
    """``scipy.linalg.eigh(A, B)`` on the dual pencil ``A = [[0, Kx Ky], [Ky Kx, 0]]``, ``B =
    blockdiag(Kx^2 + c Kx, Ky^2 + c Ky)`` (``c = (n - 1) reg``), made definite on the constant
    vector (a null vector of both centred Grams, eigenvalue 0 of the pencil) by ``11^T / n``."""
    n = kx.shape[0]
    c = (n - 1) * reg
    one = np.ones((n, n)) / n
    a = np.block([[np.zeros((n, n)), kx @ ky], [ky @ kx, np.zeros((n, n))]])
    b = scipy.linalg.block_diag(kx @ kx + c * kx + one, ky @ ky + c * ky + one)
    return np.sort(scipy.linalg.eigh(a, b, eigvals_only=True))[::-1][:k]


def _rotation(rng, d):
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return q


def _up_to_sign(a, b, **tol):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    sign = np.sign(np.sum(a * b, axis=0))
    np.testing.assert_allclose(a * sign, b, **tol)


# ------------------------------------------------------------------------------------------
# mcca
# ------------------------------------------------------------------------------------------


def test_mcca_matches_generalised_eigenproblem_x64(rng):
    views = _views(rng, dtype=np.float64)
    for reg in (0.0, 0.3):
        with x64():
            out = mc.mcca(views, k=3, reg=reg)
        rho, w_ref = _ref_mcca(views, 3, reg)
        np.testing.assert_allclose(out.correlations, rho, rtol=F64_RTOL)
        w = [np.asarray(v) for v in out.weights]
        sign = np.sign(np.sum(w[0] * w_ref[0], axis=0))  # a pair keeps one sign in every view
        for wi, ri in zip(w, w_ref, strict=True):
            np.testing.assert_allclose(wi * sign, ri, rtol=1e-7, atol=1e-9)
        # normalisation W^T D W = J I and W^T (A + D) W = J diag(lambda)
        a, d = _ref_blocks(views, reg)
        wcat = np.concatenate(w, 0)
        np.testing.assert_allclose(wcat.T @ d @ wcat, 3 * np.eye(3), atol=1e-9)
        np.testing.assert_allclose(wcat.T @ a @ wcat, 3 * np.diag(2 * rho), atol=1e-9)
        for mean, view in zip(out.means, views, strict=True):
            np.testing.assert_allclose(mean, view.mean(0), rtol=F64_RTOL)


def test_mcca_two_views_is_cca(rng):
    x, y, _ = _views(rng)
    for reg in (0.0, 0.3):
        out = mc.mcca([x, y], k=3, reg=reg)
        ref = cc.cca(x, y, k=3, reg=reg)
        np.testing.assert_allclose(out.correlations, ref.correlations, rtol=F32_RTOL, atol=1e-6)
        # the same directions with the same signs (cca's rule on the first view)
        np.testing.assert_allclose(out.weights[0], ref.wx, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out.weights[1], ref.wy, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out.means[0], ref.mean_x, rtol=1e-6)
    # scikit-learn's iterative CCA (NIPALS) on its first component
    sk = SkCCA(n_components=1, scale=False, max_iter=5000, tol=1e-12).fit(x, y)
    sx, sy = sk.transform(x, y)
    rho = mc.mcca([x, y], k=3).correlations[0]
    np.testing.assert_allclose(rho, np.corrcoef(sx[:, 0], sy[:, 0])[0, 1], rtol=1e-4)


def test_mcca_against_cca_zoo(rng):
    """cca-zoo's MCCA (shrinkage c = reg / (1 + reg)) and, at reg = 0, its GCCA (MAXVAR)."""
    linear = pytest.importorskip("cca_zoo.linear")
    views = _views(rng, dtype=np.float64)
    c = 0.2
    reg = c / (1 - c)
    with x64():
        out = mc.mcca(views, k=3, reg=reg)
        out0 = mc.mcca(views, k=3)
    zoo = linear.MCCA(3, shrinkage=c, pca=False).fit(views)
    for w_zoo, w in zip(zoo.weights_, out.weights, strict=True):  # zoo's B is (1 - c) times ours
        _up_to_sign(w_zoo * np.sqrt(1 - c), w, rtol=1e-6, atol=1e-9)
    gcca = linear.GCCA(3).fit(views)
    ratio = [
        np.asarray(g) / np.asarray(w) for g, w in zip(gcca.weights_, out0.weights, strict=True)
    ]
    for r in ratio:  # the same directions, scaled per component
        np.testing.assert_allclose(r, np.broadcast_to(ratio[0][0], r.shape), rtol=1e-6)


def test_mcca_transform_variates(rng):
    views = _views(rng)
    out = mc.mcca(views, k=3)
    z = [np.asarray(v, np.float64) for v in mc.mcca_transform(out, views)]
    assert [v.shape for v in z] == [(N, 3)] * 3
    # average variance 1 and average cross-covariance rho over the ordered pairs of views
    cov = np.cov(np.concatenate(z, 1).T)
    blocks = [[cov[3 * i : 3 * i + 3, 3 * j : 3 * j + 3] for j in range(3)] for i in range(3)]
    np.testing.assert_allclose(sum(np.diag(blocks[i][i]) for i in range(3)) / 3, 1.0, rtol=1e-4)
    cross = sum(np.diag(blocks[i][j]) for i in range(3) for j in range(3) if i != j) / 6
    np.testing.assert_allclose(cross, out.correlations, rtol=1e-4)
    # one sample, and bad input
    single = mc.mcca_transform(out, [v[0] for v in views])
    np.testing.assert_allclose(single[1], z[1][0], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="`views` must be a list or tuple of the 3 fitted"):
        mc.mcca_transform(out, views[:2])
    with pytest.raises(ValueError, match=r"`views\[1\]` must have shape \[m, 3\]"):
        mc.mcca_transform(out, [views[0], views[0], views[2]])
    with pytest.raises(ValueError, match="`result` must be the MCCAOutput"):
        mc.mcca_transform(cc.cca(views[0], views[1]), views)


def test_mcca_jit_and_vmap(rng):
    views = _views(rng)
    eager = mc.mcca(views, k=3, reg=0.1)
    jitted = MCCA_JIT(views, 0.1)
    for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    batch = [np.stack([v, v[::-1] ** 2]) for v in views]  # two datasets, [2, n, d_i]
    out = jax.vmap(lambda vs: mc.mcca(vs, k=3, reg=0.1))(batch)
    for b in range(2):
        ref = mc.mcca([v[b] for v in batch], k=3, reg=0.1)
        np.testing.assert_allclose(out.correlations[b], ref.correlations, rtol=1e-5, atol=1e-6)
        for w, wr in zip(out.weights, ref.weights, strict=True):
            np.testing.assert_allclose(w[b], wr, rtol=1e-4, atol=1e-5)


def test_mcca_rank_deficient_and_scale_free(rng):
    views = _views(rng)
    deficient = [v.copy() for v in views]
    deficient[1][:, 2] = deficient[1][:, 0]  # a duplicated feature, reg = 0: pseudo-inverse
    out = mc.mcca(deficient, k=3)
    rho, _ = _ref_mcca([views[0], views[1][:, :2], views[2]], 3)  # the same problem, full rank
    np.testing.assert_allclose(out.correlations, rho, rtol=1e-4)
    for c in (1e30, 1e-30):  # float32 covariances would overflow / underflow
        scaled = mc.mcca([v * np.float32(c) for v in views], k=3, reg=0.3 * c**2)
        base = mc.mcca(views, k=3, reg=0.3)
        np.testing.assert_allclose(scaled.correlations, base.correlations, rtol=1e-4)
        np.testing.assert_allclose(
            np.asarray(scaled.weights[2], np.float64) * c, base.weights[2], rtol=1e-3, atol=1e-4
        )


# ------------------------------------------------------------------------------------------
# dmcca_loss
# ------------------------------------------------------------------------------------------


def test_dmcca_loss_values(rng):
    views = _views(rng)
    with x64():
        v64 = [v.astype(np.float64) for v in views]
        np.testing.assert_allclose(
            mc.dmcca_loss(v64, reg=1e-3), -_ref_mcca(v64, 3, 1e-3)[0].sum(), rtol=F64_RTOL
        )
    # two views: Deep CCA itself, value and gradient
    x, y = views[0], views[1]
    value, grads = jax.value_and_grad(mc.dmcca_loss)([x, y], reg=1e-3)
    ref_value, ref_grads = jax.value_and_grad(cc.dcca_loss, argnums=(0, 1))(x, y, reg=1e-3)
    np.testing.assert_allclose(value, ref_value, rtol=F32_RTOL)
    for g, gr in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(g, gr, rtol=1e-3, atol=1e-6)


def test_dmcca_gradients_x64(rng):
    views = _views(rng, n=12, dims=(3, 2, 4), dtype=np.float64)
    with x64():
        fn = jax.jit(lambda vs, r: mc.dmcca_loss(vs, k=2, reg=r))
        check_grads(fn, (views, 1e-2), order=1, atol=GRAD_X64, modes=("rev",))


def test_dmcca_gradients_finite_at_repeated_correlations():
    """Three rotations of one whitened batch: every generalised correlation equal (singular
    covariances: see test_nan_policy)."""
    rng = np.random.default_rng(3)
    z = scipy.linalg.hadamard(16)[:, 1:4].astype(np.float64)  # centred, Z^T Z = 16 I
    views = [z, z @ _rotation(rng, 3), z @ _rotation(rng, 3)]
    with x64():
        rho = _ref_mcca(views, 3, 1e-3)[0]
        np.testing.assert_allclose(rho, rho[0], rtol=1e-10)  # the point has repeated values
        fn = jax.jit(lambda vs: mc.dmcca_loss(vs, reg=1e-3))
        grads = jax.grad(fn)(views)
        assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)
        check_grads(fn, (views,), order=1, atol=GRAD_X64, modes=("rev",))


def test_dmcca_vmap_equals_loop(rng):
    views = _views(rng)
    batch = [np.stack([v, v + 0.1 * rng.normal(size=v.shape).astype(np.float32)]) for v in views]
    out = jax.vmap(lambda vs: mc.dmcca_loss(vs, reg=1e-3))(batch)
    for b in range(2):
        np.testing.assert_allclose(out[b], mc.dmcca_loss([v[b] for v in batch]), rtol=1e-5)


# ------------------------------------------------------------------------------------------
# kernel_cca
# ------------------------------------------------------------------------------------------


def test_kernel_cca_linear_kernel_is_linear_cca_x64(rng):
    """With the linear kernel, kernel CCA is ridge CCA with the same reg: equal correlations,
    ``wx = (x - mean_x)^T alpha_x`` and equal variates, for any n and d once reg > 0."""
    x, y, _ = _views(rng, dtype=np.float64)
    with x64():
        for reg in (1e-3, 0.3):
            out = mc.kernel_cca(x, y, k=3, reg=reg)
            ref = cc.cca(x, y, k=3, reg=reg)
            np.testing.assert_allclose(out.correlations, ref.correlations, rtol=1e-8)
            _up_to_sign((x - x.mean(0)).T @ np.asarray(out.alpha_x), ref.wx, rtol=1e-6, atol=1e-9)
            _up_to_sign((y - y.mean(0)).T @ np.asarray(out.alpha_y), ref.wy, rtol=1e-6, atol=1e-9)
            z = mc.kernel_cca_transform(out, x[:7], y[:7], kernel=None)
            zr = cc.cca_transform(ref, x[:7], y[:7])
            _up_to_sign(z.zx, zr.zx, rtol=1e-6, atol=1e-9)
            _up_to_sign(z.zy, zr.zy, rtol=1e-6, atol=1e-9)


def test_kernel_cca_rbf_against_dual_references(rng):
    x, y, _ = _views(rng, dtype=np.float64)
    y = np.tanh(y)  # a nonlinear view
    kx, ky = _centred_gram(_np_rbf, x), _centred_gram(_np_rbf, y)
    reg = 0.01
    hardoon = _ref_kcca_hardoon(kx, ky, reg, 3)
    np.testing.assert_allclose(_ref_kcca_pencil(kx, ky, reg, 3), hardoon, rtol=1e-8)
    with x64():
        out = mc.kernel_cca(x, y, k=3, reg=reg, kernel=_rbf)
    np.testing.assert_allclose(out.correlations, hardoon, rtol=1e-8)
    # the constraints on the training variates: alpha^T (K^2 / (n - 1) + reg K) alpha = I and
    # zx^T zy / (n - 1) = diag(rho)
    ax, ay = np.asarray(out.alpha_x), np.asarray(out.alpha_y)
    np.testing.assert_allclose(ax.T @ (kx @ kx / (N - 1) + reg * kx) @ ax, np.eye(3), atol=1e-7)
    np.testing.assert_allclose(ay.T @ (ky @ ky / (N - 1) + reg * ky) @ ay, np.eye(3), atol=1e-7)
    np.testing.assert_allclose(ax.T @ kx @ ky @ ay / (N - 1), np.diag(hardoon), atol=1e-7)
    with x64():
        z = mc.kernel_cca_transform(out, x, y, kernel=_rbf)
    np.testing.assert_allclose(z.zx, kx @ ax, atol=1e-9)
    # float32 (the library's default precision) with the library's RBF kernel
    out32 = mc.kernel_cca(x.astype(np.float32), y.astype(np.float32), k=3, reg=reg, kernel=RBF)
    np.testing.assert_allclose(out32.correlations, hardoon, rtol=1e-4)
    assert out32.alpha_x.dtype == jnp.float32


def test_kernel_cca_nystrom_approaches_exact_x64(rng):
    x, y, _ = _views(rng, dtype=np.float64)
    y = np.tanh(y)
    with x64():
        exact = np.asarray(mc.kernel_cca(x, y, k=3, reg=0.01, kernel=_rbf).correlations)
        errors = []
        for rank in (10, 20, N):
            out = mc.kernel_cca(x, y, k=3, reg=0.01, kernel=_rbf, rank=rank)
            assert out.alpha_x.shape == (rank, 3) and out.points_x.shape == (rank, 4)
            errors.append(np.max(np.abs(np.asarray(out.correlations) - exact)))
        np.testing.assert_array_less(errors[-1], 1e-8)  # rank n: exact kernel CCA
        assert errors[2] < errors[1] < errors[0], errors
        # the Nyström transform of the training data pairs up with the correlations
        z = mc.kernel_cca_transform(out, x, y, kernel=_rbf)
        np.testing.assert_allclose(
            np.sum(np.asarray(z.zx) * np.asarray(z.zy), 0) / (N - 1), exact, rtol=1e-6
        )
        # random landmarks (a key)
        keyed = mc.kernel_cca(x, y, k=3, reg=0.01, kernel=_rbf, rank=20, key=jax.random.key(0))
        assert np.all(np.abs(np.asarray(keyed.correlations) - exact) < 0.2)


def test_kernel_cca_against_cca_zoo(rng):
    nonparametric = pytest.importorskip("cca_zoo.nonparametric")
    x, y, _ = _views(rng, dtype=np.float64)
    c = 0.2  # cca-zoo's shrinkage; our reg = c / (1 - c)
    zoo = nonparametric.KCCA(3, shrinkage=c, kernel="rbf", gamma=0.5).fit([x, y])
    with x64():
        out = mc.kernel_cca(x, y, k=3, reg=c / (1 - c), kernel=RBF)
        z = mc.kernel_cca_transform(out, x, y, kernel=RBF)
    zx, zy = zoo.transform([x, y])
    for i in range(3):  # the same canonical variates, up to scale and sign
        np.testing.assert_allclose(abs(np.corrcoef(z.zx[:, i], zx[:, i])[0, 1]), 1.0, rtol=1e-8)
        np.testing.assert_allclose(abs(np.corrcoef(z.zy[:, i], zy[:, i])[0, 1]), 1.0, rtol=1e-8)


def test_kernel_cca_correlation_gradients_x64(rng):
    x, y = _views(rng, n=16, dims=(3, 3), dtype=np.float64)  # the shapes of the case below
    with x64():
        fn = jax.jit(lambda a, b, r: mc.kernel_cca(a, b, k=3, reg=r, kernel=_rbf).correlations)
        check_grads(fn, (x, y, 0.05), order=1, atol=GRAD_X64, modes=("rev",))
        # and through the kernel's own parameter
        gamma_fn = lambda g: mc.kernel_cca(
            x, y, k=3, reg=0.05, kernel=functools.partial(_rbf, gamma=g)
        ).correlations.sum()
        check_grads(gamma_fn, (0.5,), order=1, atol=GRAD_X64, modes=("rev",))
        # repeated correlations (a rotated whitened view, linear kernel): finite and exact
        z = scipy.linalg.hadamard(16)[:, 1:4].astype(np.float64)
        zr = z @ _rotation(rng, 3)
        rep = lambda a, b: mc.kernel_cca(a, b, k=3, reg=1e-2).correlations.sum()
        rho = np.asarray(mc.kernel_cca(z, zr, k=3, reg=1e-2).correlations)
        np.testing.assert_allclose(rho, rho[0], rtol=1e-10)
        grads = jax.grad(rep, argnums=(0, 1))(z, zr)
        assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)
        check_grads(rep, (z, zr), order=1, atol=GRAD_X64, modes=("rev",))


def test_kernel_cca_vmap_and_pair_of_kernels(rng):
    x, y, _ = _views(rng)
    xs, ys = np.stack([x, x[::-1]]), np.stack([y, y**2])
    fit = lambda a, b: mc.kernel_cca(a, b, k=3, reg=0.05, kernel=_rbf)
    out = jax.vmap(fit)(xs, ys)
    for b in range(2):
        np.testing.assert_allclose(out.correlations[b], fit(xs[b], ys[b]).correlations, rtol=1e-5)
    pair = mc.kernel_cca(x, y, k=3, reg=0.05, kernel=(_rbf, al.linear_kernel))
    ref = _ref_kcca_hardoon(_centred_gram(_np_rbf, x), _centred_gram(_np_linear, y), 0.05, 3)
    np.testing.assert_allclose(pair.correlations, ref, rtol=1e-4)


# ------------------------------------------------------------------------------------------
# Bad input, NaN, dtypes.
# ------------------------------------------------------------------------------------------


def test_bad_input_raises(rng):
    views = _views(rng)
    x, y = views[0], views[1]
    for fn in (mc.mcca, mc.dmcca_loss):
        with pytest.raises(ValueError, match="same number of samples"):
            fn([x, y[:5]])
        with pytest.raises(ValueError, match="at least 2 views"):
            fn([x])
        with pytest.raises(ValueError, match="must be a list or tuple"):
            fn(np.stack([x, x]))
        with pytest.raises(ValueError, match=r"`k`=4 must be between 1 and min_i d_i = 3"):
            fn(views, k=4)
        with pytest.raises(ValueError, match="`k` must be None or a Python int"):
            fn(views, k=1.5)
        with pytest.raises(ValueError, match=r"`views\[1\]` must be real"):
            fn([x, y.astype(np.complex64)])
        with pytest.raises(ValueError, match=r"`views\[0\]` must be a 2-D array"):
            fn([x[:, 0], y])
        with pytest.raises(ValueError, match=r"`views\[1\]` must be an array"):
            fn([x, None])
        with pytest.raises(ValueError, match="`reg` must be a scalar"):
            jax.jit(lambda vs, fn=fn: fn(vs, reg=jnp.ones(2)))(views)
        with pytest.raises(ValueError, match="`reg` must be real"):
            fn(views, reg=1.0 + 1.0j)
    with pytest.raises(ValueError, match="`reg` must be a finite non-negative number"):
        mc.mcca(views, reg=-1.0)
    with pytest.raises(ValueError, match="`reg` must be a finite positive number"):
        mc.dmcca_loss(views, reg=0.0)
    # kernel_cca
    with pytest.raises(ValueError, match="`reg` must be a finite positive number"):
        mc.kernel_cca(x, y, reg=0.0)
    with pytest.raises(ValueError, match="same number of samples"):
        mc.kernel_cca(x, y[:5], reg=0.1)
    with pytest.raises(ValueError, match=r"`k`=41 must be between 1 and n = 40"):
        mc.kernel_cca(x, y, reg=0.1, k=41)
    with pytest.raises(ValueError, match=r"`k`=4 must be between 1 and rank = 3"):
        mc.kernel_cca(x, y, reg=0.1, k=4, rank=3)
    with pytest.raises(ValueError, match=r"`rank`=41 must be at most n = 40"):
        mc.kernel_cca(x, y, reg=0.1, rank=41)
    with pytest.raises(ValueError, match="`key` draws Nyström landmarks"):
        mc.kernel_cca(x, y, reg=0.1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="`kernel` must be a callable"):
        mc.kernel_cca(x, y, reg=0.1, kernel="rbf")
    with pytest.raises(ValueError, match="`kernel` must map arrays"):
        mc.kernel_cca(x, y, reg=0.1, kernel=lambda a, b: a @ a.T[:, :3])
    with pytest.raises(ValueError, match="`x` must be real"):
        mc.kernel_cca(x.astype(np.complex64), y, reg=0.1)
    with pytest.raises(ValueError, match="`reg` must be a scalar"):
        mc.kernel_cca(x, y, reg=np.ones(2))
    fit = mc.kernel_cca(x, y, reg=0.1, k=3)
    with pytest.raises(ValueError, match=r"`y` must have shape \[m, 3\]"):
        mc.kernel_cca_transform(fit, x, x, kernel=None)
    with pytest.raises(ValueError, match="`result` must be the KernelCCAOutput"):
        mc.kernel_cca_transform(cc.cca(x, y), x, y, kernel=None)


def test_nan_policy(rng):
    views = _views(rng)
    bad = [v.copy() for v in views]
    bad[2][3, 1] = np.nan
    out = mc.mcca(bad, k=3)
    assert all(np.all(np.isnan(np.asarray(leaf))) for leaf in jax.tree.leaves(out))
    loss_and_grads = jax.value_and_grad(lambda vs, r: mc.dmcca_loss(vs, reg=r), argnums=(0, 1))
    value, (grads, _) = loss_and_grads(bad, 1e-3)
    assert np.isnan(float(value)) and np.any(np.isnan(np.asarray(grads[2])))
    # (the same compiled gradient) singular covariances: duplicated features, constant ones
    singular = [v.copy() for v in views]
    singular[0][:, 3] = singular[0][:, 0]
    singular[2][:, 4] = 1.0
    value, grads = loss_and_grads(singular, 1e-3)
    assert np.isfinite(float(value))
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))
    # a traced bad reg: NaN gradients in the data and in reg (not a plausible 0)
    value, grads = loss_and_grads(views, -1.0)
    assert np.isnan(float(value))
    assert all(np.all(np.isnan(np.asarray(g))) for g in jax.tree.leaves(grads))
    kout = mc.kernel_cca(bad[0], bad[2], reg=0.1, k=3, kernel=_rbf)
    for leaf in (kout.alpha_x, kout.alpha_y, kout.correlations):
        assert np.all(np.isnan(np.asarray(leaf)))
    nys = mc.kernel_cca(bad[0], bad[2], reg=0.1, k=3, kernel=_rbf, rank=10)
    assert np.all(np.isnan(np.asarray(nys.correlations)))
    # traced bad reg: NaN, never a plausible number
    for reg in (-1.0, np.nan):
        out = MCCA_JIT(views, reg)
        assert all(np.all(np.isnan(np.asarray(leaf))) for leaf in jax.tree.leaves(out))
    for reg in (0.0, -1.0, np.nan):
        assert np.isnan(float(DMCCA_JIT(views, reg)))
        kout = KCCA_JIT(views[0], views[2], reg)
        assert np.all(np.isnan(np.asarray(kout.correlations)))
    np.testing.assert_allclose(
        KCCA_JIT(views[0], views[2], 0.1).correlations,
        mc.kernel_cca(views[0], views[2], k=3, reg=0.1, kernel=_rbf).correlations,
        rtol=1e-5,
    )
    np.testing.assert_allclose(DMCCA_JIT(views, 1e-3), mc.dmcca_loss(views), rtol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_low_precision_is_computed_in_float32(rng, dtype):
    views = [jnp.asarray(v, dtype) for v in _views(rng)]
    v32 = [np.asarray(v, np.float32) for v in views]
    out = mc.mcca(views, k=3)
    assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(out))
    np.testing.assert_allclose(
        np.asarray(out.correlations, np.float32), mc.mcca(v32, k=3).correlations, rtol=2e-2
    )
    assert all(z.dtype == dtype for z in mc.mcca_transform(out, views))
    value = mc.dmcca_loss(views)
    assert value.dtype == dtype
    np.testing.assert_allclose(float(value), float(mc.dmcca_loss(v32)), rtol=2e-2)
    kout = mc.kernel_cca(views[0], views[1], k=3, reg=0.05, kernel=_rbf)
    assert kout.correlations.dtype == dtype
    np.testing.assert_allclose(
        np.asarray(kout.correlations, np.float32),
        mc.kernel_cca(v32[0], v32[1], k=3, reg=0.05, kernel=_rbf).correlations,
        rtol=2e-2,
    )
