"""Tests for alignment._src.cca (CCA, Deep CCA) against independent float64 references.

References: the generalised symmetric eigenproblem ``[[0, Sxy], [Syx, 0]] w = rho [[Sxx, 0],
[0, Syy]] w`` solved by ``scipy.linalg.eigh`` in float64; the Linnerud data of scikit-learn
(exercise vs physiological measurements) and, loosely, scikit-learn's iterative ``CCA`` on its
first component; ``scipy.linalg.sqrtm`` whitening and NumPy's SVD for the DCCA objectives;
``check_grads`` (finite differences) under x64, including at repeated correlations and on
rank-deficient batches, where autodiff through ``eigh`` (cca-zoo's whitening) gives NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from jax.test_util import check_grads
from sklearn.cross_decomposition import CCA as SkCCA
from sklearn.datasets import load_linnerud

from alignment._src import cca as cc
from tests.conftest import x64

F32_RTOL = 1e-5  # float32 closed forms vs a float64 reference
F64_RTOL = 1e-9
GRAD_X64 = 1e-6  # check_grads tolerance under x64


# ------------------------------------------------------------------------------------------
# Float64 references (NumPy / SciPy only).
# ------------------------------------------------------------------------------------------


def _ref_cov(x, y, reg):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = x.shape[0]
    xc, yc = x - x.mean(0), y - y.mean(0)
    sxx = xc.T @ xc / (n - 1) + reg * np.eye(x.shape[1])
    syy = yc.T @ yc / (n - 1) + reg * np.eye(y.shape[1])
    return sxx, syy, xc.T @ yc / (n - 1)


def _ref_cca(x, y, k, reg=0.0):
    """Top-k generalised eigenpairs; directions normalised to ``w^T Sxx w = 1``."""
    sxx, syy, sxy = _ref_cov(x, y, reg)
    dx, dy = sxx.shape[0], syy.shape[0]
    a = np.block([[np.zeros((dx, dx)), sxy], [sxy.T, np.zeros((dy, dy))]])
    b = scipy.linalg.block_diag(sxx, syy)
    vals, vecs = scipy.linalg.eigh(a, b)
    order = np.argsort(vals)[::-1][:k]
    vecs = vecs[:, order] * np.sqrt(2.0)  # eigh normalises v^T B v = 1: half in each view
    return vals[order], vecs[:dx], vecs[dx:]


def _ref_t(zx, zy, reg):
    """``Sxx^-1/2 Sxy Syy^-1/2`` with SciPy's matrix square roots."""
    sxx, syy, sxy = _ref_cov(zx, zy, reg)
    ix = np.linalg.inv(np.real(scipy.linalg.sqrtm(sxx)))
    iy = np.linalg.inv(np.real(scipy.linalg.sqrtm(syy)))
    return ix @ sxy @ iy


def _ref_corr(zx, zy, reg):
    return np.linalg.svd(_ref_t(zx, zy, reg), compute_uv=False)


def _views(rng, n=60, dx=4, dy=3, dtype=np.float32):
    z = rng.normal(size=(n, 2))
    x = np.concatenate([z, rng.normal(size=(n, dx - 2))], 1) @ rng.normal(size=(dx, dx))
    y = np.concatenate([z @ [[1.0, 0.5], [0.0, 1.0]], rng.normal(size=(n, dy - 2))], 1)
    y = y + 0.5 * rng.normal(size=y.shape)
    return x.astype(dtype), y.astype(dtype)


def _orthonormal_batch(rng, b, d):
    """Centred columns with ``Z^T Z / (b - 1) = I`` exactly: every eigenvalue repeated."""
    a = rng.normal(size=(b, d))
    a -= a.mean(0)
    q, _ = np.linalg.qr(a)
    return q * np.sqrt(b - 1)


def _rotation(rng, d):
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return q


# ------------------------------------------------------------------------------------------
# cca
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reg", [0.0, 0.3])
def test_cca_matches_generalised_eigenproblem_x64(rng, reg):
    x, y = _views(rng, dtype=np.float64)
    with x64():
        out = cc.cca(x, y, k=3, reg=reg)
    rho, wx_ref, wy_ref = _ref_cca(x, y, 3, reg)
    np.testing.assert_allclose(out.correlations, rho, rtol=F64_RTOL)
    for i in range(3):  # directions up to the pair's sign
        sign = np.sign(wx_ref[:, i] @ np.asarray(out.wx[:, i]))
        np.testing.assert_allclose(out.wx[:, i], sign * wx_ref[:, i], rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(out.wy[:, i], sign * wy_ref[:, i], rtol=1e-7, atol=1e-9)
    # the constraints and the canonical cross-covariance, in NumPy
    sxx, syy, sxy = _ref_cov(x, y, reg)
    wx, wy = np.asarray(out.wx), np.asarray(out.wy)
    np.testing.assert_allclose(wx.T @ sxx @ wx, np.eye(3), atol=1e-10)
    np.testing.assert_allclose(wy.T @ syy @ wy, np.eye(3), atol=1e-10)
    np.testing.assert_allclose(wx.T @ sxy @ wy, np.diag(rho), atol=1e-10)
    np.testing.assert_allclose(out.mean_x, x.mean(0), rtol=F64_RTOL)


@pytest.mark.parametrize("jit", [False, True])
def test_cca_linnerud_float32(jit):
    data = load_linnerud()
    x, y = data.data.astype(np.float32), data.target.astype(np.float32)  # exercise, physiology
    fn = jax.jit(cc.cca) if jit else cc.cca
    out = fn(x, y)
    rho, _, _ = _ref_cca(x, y, 3)
    assert out.correlations.dtype == jnp.float32 and out.wx.shape == (3, 3)
    np.testing.assert_allclose(out.correlations, rho, rtol=1e-4)
    assert np.all(np.diff(np.asarray(out.correlations)) <= 0)
    # the variates reproduce the correlations (float64 NumPy on our directions)
    zx, zy = (np.asarray(v, np.float64) for v in cc.cca_transform(out, x, y))
    corr = [np.corrcoef(zx[:, i], zy[:, i])[0, 1] for i in range(3)]
    np.testing.assert_allclose(corr, rho, rtol=1e-4)
    # scikit-learn's NIPALS CCA (iterative, to its tolerance) gives the same three correlations.
    sk = SkCCA(n_components=3, max_iter=2000, tol=1e-10).fit(x, y)
    sx, sy = sk.transform(x, y)
    sk_rho = [np.corrcoef(sx[:, i], sy[:, i])[0, 1] for i in range(3)]
    np.testing.assert_allclose(sk_rho, rho, atol=1e-3)


def test_cca_sign_convention_and_determinism(rng):
    x, y = _views(rng)
    out = cc.cca(x, y)
    wx = np.asarray(out.wx)
    pivots = wx[np.argmax(np.abs(wx), axis=0), np.arange(wx.shape[1])]
    assert np.all(pivots > 0)
    zx, zy = cc.cca_transform(out, x, y)
    cross = np.sum(np.asarray(zx) * np.asarray(zy), axis=0)
    assert np.all(cross > 0)  # every canonical pair positively correlated
    # flipping the sign of y changes nothing but wy's sign
    flipped = cc.cca(x, -y)
    np.testing.assert_allclose(flipped.wx, out.wx, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(flipped.wy, -out.wy, rtol=1e-4, atol=1e-6)
    # the same under jit
    jitted = jax.jit(cc.cca)(x, y)
    np.testing.assert_allclose(jitted.wx, out.wx, rtol=1e-4, atol=1e-6)


def test_cca_vmap_equals_loop(rng):
    xs, ys = zip(*[_views(rng) for _ in range(3)], strict=True)
    xs, ys = np.stack(xs), np.stack(ys)
    fit = lambda x, y: cc.cca(x, y, k=2)
    batched = jax.jit(jax.vmap(fit))(xs, ys)
    single = jax.jit(fit)
    for i in range(3):
        for a, b in zip(batched, single(xs[i], ys[i]), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-4, atol=1e-5)


def test_cca_rank_deficient_views_are_finite():
    # n = 3 samples span a 2-D centred space: two perfect correlations, then zeros.
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(3, 5)), rng.normal(size=(3, 4))
    with x64():
        out = cc.cca(x, y, reg=0.0)
    assert all(np.all(np.isfinite(np.asarray(a))) for a in out)
    np.testing.assert_allclose(out.correlations, [1.0, 1.0, 0.0, 0.0], atol=1e-8)


def test_cca_transform_shapes_and_errors(rng):
    x, y = _views(rng)
    out = cc.cca(x, y, k=2)
    res = cc.cca_transform(out, x[:7], y[:4])
    assert isinstance(res, cc.CCATransformOutput)
    assert res.zx.shape == (7, 2) and res.zy.shape == (4, 2)
    np.testing.assert_allclose(res.zx, (x[:7] - np.asarray(out.mean_x)) @ out.wx, rtol=1e-5)
    one = cc.cca_transform(out, x[0], y[0])
    np.testing.assert_allclose(one.zx, res.zx[0], rtol=1e-6)
    with pytest.raises(ValueError, match=r"`y` must have shape \[m, 3\]"):
        cc.cca_transform(out, x, x)
    with pytest.raises(ValueError, match="`y` must be an array"):
        cc.cca_transform(out, x, None)
    with pytest.raises(ValueError, match="`result` must be the CCAOutput"):
        cc.cca_transform(tuple(out), x, y)


def test_cca_bad_input(rng):
    x, y = _views(rng)
    with pytest.raises(ValueError, match="same number of samples"):
        cc.cca(x, y[:-1])
    with pytest.raises(ValueError, match=r"`k`=4 must be between 1 and min\(dx, dy\) = 3"):
        cc.cca(x, y, k=4)
    with pytest.raises(ValueError, match="`k`"):
        cc.cca(x, y, k=0)
    with pytest.raises(ValueError, match="`reg` must be a finite non-negative number"):
        cc.cca(x, y, reg=-1.0)
    with pytest.raises(ValueError, match="2-D array"):
        cc.cca(x[:, 0], y)
    with pytest.raises(ValueError, match="at least 2 samples"):
        cc.cca(x[:1], y[:1])


# ------------------------------------------------------------------------------------------
# dcca_loss and dcca_squared_loss
# ------------------------------------------------------------------------------------------


def test_dcca_equals_linear_cca_on_linear_features(rng):
    """Invertible linear features leave the canonical correlations unchanged."""
    x, y = _views(rng, n=80, dx=4, dy=4, dtype=np.float64)
    zx, zy = x @ rng.normal(size=(4, 4)), y @ rng.normal(size=(4, 4))
    rho, _, _ = _ref_cca(x, y, 4)
    with x64():
        np.testing.assert_allclose(cc.dcca_loss(zx, zy, reg=1e-12), -rho.sum(), rtol=1e-8)
        np.testing.assert_allclose(cc.dcca_loss(zx, zy, k=2, reg=1e-12), -rho[:2].sum(), rtol=1e-8)
        np.testing.assert_allclose(
            cc.dcca_squared_loss(zx, zy, reg=1e-12), -np.sum(rho**2), rtol=1e-8
        )
        np.testing.assert_allclose(
            cc.dcca_squared_loss(zx, zy, k=1, reg=1e-12), -(rho[0] ** 2), rtol=1e-8
        )


@pytest.mark.parametrize("jit", [False, True])
def test_dcca_float32_against_sqrtm_reference(rng, jit):
    zx, zy = _views(rng, n=40, dx=5, dy=3)
    reg = 1e-2
    loss = jax.jit(cc.dcca_loss, static_argnames="k") if jit else cc.dcca_loss
    sq = jax.jit(cc.dcca_squared_loss, static_argnames="k") if jit else cc.dcca_squared_loss
    rho = _ref_corr(zx, zy, reg)
    assert loss(zx, zy, reg=reg).dtype == jnp.float32
    np.testing.assert_allclose(loss(zx, zy, reg=reg), -rho.sum(), rtol=F32_RTOL * 10)
    np.testing.assert_allclose(loss(zx, zy, k=2, reg=reg), -rho[:2].sum(), rtol=F32_RTOL * 10)
    np.testing.assert_allclose(sq(zx, zy, reg=reg), -np.sum(rho**2), rtol=F32_RTOL * 10)
    np.testing.assert_allclose(sq(zx, zy, k=2, reg=reg), -np.sum(rho[:2] ** 2), rtol=1e-4)


def test_dcca_is_the_trace_norm_not_the_frobenius_norm(rng):
    """Published DCCA code returns ``||T||_F`` under the trace norm's name: a different number."""
    zx, zy = _views(rng, n=50, dx=3, dy=3, dtype=np.float64)
    t = _ref_t(zx, zy, 1e-3)
    with x64():
        value = float(cc.dcca_loss(zx, zy, reg=1e-3))
    np.testing.assert_allclose(value, -np.linalg.norm(t, "nuc"), rtol=1e-9)
    assert abs(value + np.linalg.norm(t, "fro")) > 0.1


def test_dcca_vmap_equals_loop(rng):
    pairs = [_views(rng, n=20, dx=3, dy=2) for _ in range(3)]
    zx, zy = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    value_and_grad = jax.value_and_grad(lambda a, b: cc.dcca_loss(a, b, reg=1e-3))
    batched, grads = jax.jit(jax.vmap(value_and_grad))(zx, zy)
    single = jax.jit(value_and_grad)
    for i in range(3):
        value, grad = single(zx[i], zy[i])
        np.testing.assert_allclose(batched[i], value, rtol=1e-5)
        np.testing.assert_allclose(grads[i], grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("loss", "k", "modes"),
    [
        (cc.dcca_loss, None, ("fwd", "rev")),
        (cc.dcca_loss, 1, ("rev",)),
        (cc.dcca_squared_loss, 1, ("rev",)),  # k = None is a smooth closed form
    ],
)
def test_dcca_gradients_x64_generic(rng, loss, k, modes):
    zx, zy = _views(rng, n=12, dx=3, dy=3, dtype=np.float64)
    with x64():
        fn = jax.jit(lambda a, b: loss(a, b, k=k, reg=1e-2))
        check_grads(fn, (zx, zy), order=1, atol=GRAD_X64, modes=modes)


def test_dcca_gradients_finite_at_repeated_correlations():
    """Rotated whitened views: every correlation equal, and ``Sxx`` exactly isotropic."""
    rng = np.random.default_rng(3)
    zx = scipy.linalg.hadamard(8)[:, 1:4].astype(np.float64)  # centred, Z^T Z = 8 I exactly
    zy = zx @ _rotation(rng, 3)
    with x64():
        rho = _ref_corr(zx, zy, 1e-3)
        np.testing.assert_allclose(rho, rho[0], rtol=1e-10)  # the point has repeated values
        for loss in (cc.dcca_loss, cc.dcca_squared_loss):
            fn = jax.jit(lambda a, b, loss=loss: loss(a, b, reg=1e-3))
            grads = jax.grad(fn, argnums=(0, 1))(zx, zy)
            assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)
            check_grads(fn, (zx, zy), order=1, atol=GRAD_X64, modes=("rev",))

        # The pitfall these gradients avoid: whitening by autodiff through eigh (cca-zoo's way).
        def eigh_whitened_trace_norm(a, b):
            a, b = a - a.mean(0), b - b.mean(0)
            lam, vec = jnp.linalg.eigh(a.T @ a / 7 + 1e-3 * jnp.eye(3))
            inv_sqrt = vec @ jnp.diag(lam**-0.5) @ vec.T
            return -jnp.sum(jnp.linalg.svd(inv_sqrt @ (a.T @ b / 7), compute_uv=False))

        bad = jax.jit(jax.grad(eigh_whitened_trace_norm))(zx, zy)
        assert not np.all(np.isfinite(np.asarray(bad)))


def test_dcca_gradients_rank_deficient_batch():
    """Fewer samples than features: the ridge keeps the value and gradients finite and exact."""
    rng = np.random.default_rng(4)
    zx, zy = rng.normal(size=(4, 6)), rng.normal(size=(4, 5))
    zx[:, 5] = zx[:, 4] + 1e-9 * rng.normal(size=4)  # and a nearly duplicated feature
    fn = jax.jit(lambda a, b: cc.dcca_loss(a, b, reg=1e-2))
    with x64():
        value = float(fn(zx, zy))
        np.testing.assert_allclose(value, -_ref_corr(zx, zy, 1e-2).sum(), rtol=1e-8)
        check_grads(fn, (zx, zy), order=1, atol=GRAD_X64, eps=1e-5, modes=("rev",))
    g32 = jax.grad(fn)(zx.astype(np.float32), zy.astype(np.float32))
    assert np.all(np.isfinite(np.asarray(g32)))


def test_dcca_bad_input(rng):
    zx, zy = _views(rng, n=10, dx=3, dy=2)
    with pytest.raises(ValueError, match="same number of samples"):
        cc.dcca_loss(zx, zy[:5])
    with pytest.raises(ValueError, match="`k`=3 must be between 1 and min"):
        cc.dcca_loss(zx, zy, k=3)
    with pytest.raises(ValueError, match="`reg` must be a finite positive number"):
        cc.dcca_loss(zx, zy, reg=0.0)
    with pytest.raises(ValueError, match="`reg` must be a finite positive number"):
        cc.dcca_squared_loss(zx, zy, reg=-1e-3)


# ------------------------------------------------------------------------------------------
# Issue 9: units, bad values, dtypes, shared numerics.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("c", [1e30, 1e-30])
def test_cca_is_scale_free_in_float32(rng, c):
    """Data in units of 1e30 / 1e-30: the covariances would overflow / underflow in float32."""
    x, y = _views(rng, n=40, dx=4, dy=3)
    xc, yc = x * np.float32(c), y * np.float32(c)
    x64_, y64_ = x.astype(np.float64) * c, y.astype(np.float64) * c  # the data as given
    base = cc.cca(x, y)
    out = cc.cca(xc, yc)
    rho, _, _ = _ref_cca(x64_, y64_, 3)  # float64 reference on the rescaled data itself
    np.testing.assert_allclose(out.correlations, rho, rtol=1e-4)
    np.testing.assert_allclose(out.correlations, base.correlations, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(out.wx, np.float64) * c, base.wx, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(np.asarray(out.mean_x, np.float64) / c, x.mean(0), atol=1e-6)
    z = cc.cca_transform(out, xc, yc)
    np.testing.assert_allclose(z.zx, cc.cca_transform(base, x, y).zx, rtol=1e-3, atol=1e-3)
    # reg is absolute: rescaling it by c**2 (outside float32 itself) changes nothing
    scaled = cc.cca(xc, yc, reg=0.3 * c**2)
    rho_reg, _, _ = _ref_cca(x64_, y64_, 3, reg=0.3 * c**2)
    np.testing.assert_allclose(scaled.correlations, rho_reg, rtol=1e-4)
    np.testing.assert_allclose(scaled.correlations, cc.cca(x, y, reg=0.3).correlations, rtol=1e-4)


@pytest.mark.parametrize("c", [1e30, 1e-30])
@pytest.mark.parametrize("loss", [cc.dcca_loss, cc.dcca_squared_loss])
def test_dcca_is_scale_free_in_float32(rng, c, loss):
    x, y = _views(rng, n=40, dx=4, dy=3)
    xc, yc = x * np.float32(c), y * np.float32(c)
    x64_, y64_ = x.astype(np.float64) * c, y.astype(np.float64) * c
    power = 2 if loss is cc.dcca_squared_loss else 1
    ref = -np.sum(_ref_corr(x64_, y64_, 1e-2 * c**2) ** power)
    value = loss(xc, yc, reg=1e-2 * c**2)
    np.testing.assert_allclose(value, ref, rtol=1e-5)
    np.testing.assert_allclose(value, loss(x, y, reg=1e-2), rtol=1e-5)
    g = jax.grad(loss)(xc, yc, reg=1e-2 * c**2)
    g0 = jax.grad(loss)(x, y, reg=1e-2)
    np.testing.assert_allclose(np.asarray(g, np.float64) * c, g0, rtol=1e-3, atol=1e-5)
    # a fixed absolute reg: negligible at 1e30, dominant at 1e-30, as in float64
    ref_fixed = -np.sum(_ref_corr(x64_, y64_, 1e-3) ** power)
    np.testing.assert_allclose(loss(xc, yc), ref_fixed, rtol=1e-5, atol=1e-30)
    assert np.all(np.isfinite(np.asarray(jax.grad(loss)(xc, yc))))


def test_cca_traced_bad_reg_gives_nan(rng):
    x, y = _views(rng, n=20)
    for reg in (-1.0, np.nan, np.inf):
        out = jax.jit(lambda a, b, r: cc.cca(a, b, reg=r))(x, y, reg)
        assert all(np.all(np.isnan(np.asarray(leaf))) for leaf in out)
    for loss in (cc.dcca_loss, cc.dcca_squared_loss):
        for reg in (0.0, -1.0, np.nan):
            fn = jax.jit(
                jax.value_and_grad(lambda a, b, r, loss=loss: loss(a, b, reg=r), argnums=(0, 2))
            )
            value, (grad_x, grad_reg) = fn(x, y, reg)
            assert np.isnan(float(value))
            assert np.all(np.isnan(np.asarray(grad_x))) and np.isnan(float(grad_reg))
        with pytest.raises(ValueError, match="`reg` must be a finite positive number"):
            loss(x, y, reg=np.nan)


def test_bad_static_input_raises_under_jit(rng):
    x, y = _views(rng, n=20)
    for fn in (cc.cca, cc.dcca_loss, cc.dcca_squared_loss):
        with pytest.raises(ValueError, match="`reg` must be a scalar"):
            jax.jit(lambda a, b, fn=fn: fn(a, b, reg=jnp.ones(2)))(x, y)
        with pytest.raises(ValueError, match="`reg` must be real"):
            fn(x, y, reg=1.0 + 1.0j)
        with pytest.raises(ValueError, match="must be real"):
            fn(x.astype(np.complex64), y)
        for k in (1.5, True, np.array(2)):
            with pytest.raises(ValueError, match="`k` must be None or a Python int"):
                fn(x, y, k=k)
        with pytest.raises(ValueError, match="got None"):
            fn(None, y)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_low_precision_is_computed_in_float32(rng, dtype):
    x, y = _views(rng, n=40)
    xl, yl = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    x32, y32 = np.asarray(xl, np.float32), np.asarray(yl, np.float32)
    out = cc.cca(xl, yl)
    assert all(leaf.dtype == dtype for leaf in out)
    np.testing.assert_allclose(
        np.asarray(out.correlations, np.float32), cc.cca(x32, y32).correlations, rtol=1e-2
    )
    for loss in (cc.dcca_loss, cc.dcca_squared_loss):
        value = loss(xl, yl)
        assert value.dtype == dtype
        np.testing.assert_allclose(float(value), float(loss(x32, y32)), rtol=1e-2)
        assert jax.grad(loss)(xl, yl).dtype == dtype
    assert cc.cca_transform(out, xl, yl).zx.dtype == dtype


def test_nan_in_data_propagates(rng):
    x, y = _views(rng, n=20)
    x = x.copy()
    x[3, 1] = np.nan
    assert np.all(np.isnan(np.asarray(cc.cca(x, y).correlations)))
    for loss in (cc.dcca_loss, cc.dcca_squared_loss):
        value, grad = jax.value_and_grad(loss)(x, y)
        assert np.isnan(float(value)) and np.any(np.isnan(np.asarray(grad)))


def test_shared_numerics():
    """numerics.rank_tolerance is numpy.linalg.pinv's rule; top_singular_sum's derivative."""
    from alignment._src import numerics as nm

    s = np.array([3.0, 1.0, 1e-9], np.float32)
    tol = float(nm.rank_tolerance(jnp.asarray(s), 3)[0])
    assert tol == pytest.approx(3 * np.finfo(np.float32).eps * 3.0)
    t = np.random.default_rng(0).normal(size=(4, 3))
    with x64():
        for squared in (False, True):
            value = nm.top_singular_sum(jnp.asarray(t), 2, squared)
            sv = np.linalg.svd(t, compute_uv=False)[:2]
            np.testing.assert_allclose(value, np.sum(sv**2 if squared else sv), rtol=1e-12)
            check_grads(lambda a, sq=squared: nm.top_singular_sum(a, 2, sq), (t,), order=1)
        # exact powers of two, also past the float32 range in two factors
        np.testing.assert_array_equal(nm.scale_pow2(jnp.asarray([3.0]), jnp.asarray(-5)), [3 / 32])
    big = nm.scale_pow2(jnp.asarray([2.0**-100], jnp.float32), jnp.asarray(200))
    np.testing.assert_array_equal(big, np.float32(2.0**100))
