"""Tests for alignment._src.gaussian against independent references.

References: closed forms (1-D Gaussians, commuting and diagonal covariances, isotropic pairs and
their derivatives); SciPy's ``scipy.linalg.sqrtm`` in float64 for full covariances (value, and
the derivatives ``I - T`` with ``T`` the optimal transport map between the centred Gaussians);
POT's ``ot.gaussian.bures_wasserstein_distance`` (which returns ``W2``, not its square) and
ott-jax's ``Bures`` cost; ``check_grads`` for derivatives at generic points.
"""

from __future__ import annotations

import contextlib
import functools

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from jax.test_util import check_grads

from alignment._src import gaussian as ga
from tests.conftest import count_compiles, x64

F32_RTOL = 1e-5  # float32 closed forms vs a float64 reference, relative
F64_RTOL = 1e-9  # float64 vs SciPy's sqrtm (a Schur method with its own ~1e-12 rounding)
GRAD_X64 = 1e-6  # x64 gradients: check_grads tolerance, and against closed forms
PEER_RTOL = 1e-4  # ott-jax's Newton-Schulz square roots stop at a 1e-6 residual

PUBLIC = {
    "gaussian_w2": ga.gaussian_w2,
    "gaussian_w2_scale": ga.gaussian_w2_scale,
    "gaussian_w2_diag": ga.gaussian_w2_diag,
    "gaussian_w2_pairwise": ga.gaussian_w2_pairwise,
    "gaussian_w2_diag_pairwise": ga.gaussian_w2_diag_pairwise,
}
# Compiled once per module and reused: every (shape, dtype) compiles once across all tests.
JITTED = {name: jax.jit(fn) for name, fn in PUBLIC.items()}
# Gradients in all four arguments (of the sum, for the pairwise functions).
GRAD_ALL = {
    name: jax.jit(jax.grad(lambda *args, fn=fn: jnp.sum(fn(*args)), argnums=(0, 1, 2, 3)))
    for name, fn in PUBLIC.items()
}
W2_BATCH = jax.jit(jax.vmap(ga.gaussian_w2))
SCALE_BATCH = jax.jit(jax.vmap(ga.gaussian_w2_scale))
DIAG_BATCH = jax.jit(jax.vmap(ga.gaussian_w2_diag))


# ------------------------------------------------------------------------------------------
# Inputs and float64 references (NumPy / SciPy only, never our code).
# ------------------------------------------------------------------------------------------


def _spd(rng, d, *, batch=(), floor=0.1, dtype=np.float64):
    """Random SPD ``A A^T / d + floor I`` (the benchmark's family)."""
    a = rng.normal(size=(*batch, d, d))
    return (a @ np.swapaxes(a, -1, -2) / d + floor * np.eye(d)).astype(dtype)


def _rotation(rng, d):
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return q


def _psd_with_spectrum(rng, eigenvalues):
    q = _rotation(rng, len(eigenvalues))
    return q @ np.diag(eigenvalues) @ q.T


def _sqrtm(a):
    return np.real(scipy.linalg.sqrtm(np.asarray(a, np.float64)))


def _ref_w2(m1, c1, m2, c2):
    """``||m1 - m2||^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)`` with SciPy's sqrtm."""
    m1, c1, m2, c2 = (np.asarray(a, np.float64) for a in (m1, c1, m2, c2))
    r1 = _sqrtm(c1)
    return float(np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2.0 * _sqrtm(r1 @ c2 @ r1)))


def _ref_grad_cov(c1, c2):
    """``d W2^2 / d S1 = I - T12`` with ``T12 = S1^-1/2 (S1^1/2 S2 S1^1/2)^1/2 S1^-1/2``."""
    r1 = _sqrtm(c1)
    r1_inv = np.linalg.inv(r1)
    return np.eye(len(c1)) - r1_inv @ _sqrtm(r1 @ c2 @ r1) @ r1_inv


def _gaussians(rng, d, dtype=np.float64):
    m1, m2 = rng.normal(size=d).astype(dtype), rng.normal(size=d).astype(dtype)
    return m1, _spd(rng, d, dtype=dtype), m2, _spd(rng, d, dtype=dtype)


def _assert_f32_close(actual, expected, scale=None):
    """float32 against float64: relative, with an absolute floor at the inputs' scale."""
    scale = max(1.0, float(np.abs(expected).max()) if scale is None else scale)
    np.testing.assert_allclose(actual, expected, rtol=F32_RTOL, atol=F32_RTOL * scale)


def test_all_public_functions_covered():
    assert sorted(ga.__all__) == sorted(PUBLIC)


# ------------------------------------------------------------------------------------------
# (a) Agreement with closed forms, SciPy, POT and ott-jax.
# ------------------------------------------------------------------------------------------


def test_one_dimensional_closed_form_float32(rng):
    """1-D: ``(m1 - m2)^2 + (s1 - s2)^2``, for every form (the square is on the mean term)."""
    m1, m2 = rng.normal(size=2)
    s1, s2 = rng.uniform(0.5, 2.0, size=2)
    expected = (m1 - m2) ** 2 + (s1 - s2) ** 2
    f32 = functools.partial(np.asarray, dtype=np.float32)
    mean1, mean2 = f32([m1]), f32([m2])
    outs = [
        JITTED["gaussian_w2"](mean1, f32([[s1**2]]), mean2, f32([[s2**2]])),
        JITTED["gaussian_w2_scale"](mean1, f32([[s1]]), mean2, f32([[-s2]])),  # sign-free
        JITTED["gaussian_w2_diag"](mean1, f32([s1**2]), mean2, f32([s2**2])),
        JITTED["gaussian_w2_pairwise"](
            f32([[m1]]), f32([[[s1**2]]]), f32([[m2]]), f32([[[s2**2]]])
        ),
        JITTED["gaussian_w2_diag_pairwise"](
            f32([[m1]]), f32([[s1**2]]), f32([[m2]]), f32([[s2**2]])
        ),
    ]
    for out in outs:
        assert out.dtype == jnp.float32
        _assert_f32_close(np.asarray(out).reshape(()), expected)


@pytest.mark.parametrize("d", [2, 5])
def test_commuting_covariances_closed_form(d, rng):
    """Covariances sharing eigenvectors: ``sum (sqrt(a) - sqrt(b))^2`` over the eigenvalues."""
    q = _rotation(rng, d)
    a, b = rng.uniform(0.1, 3.0, size=d), rng.uniform(0.1, 3.0, size=d)
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    c1, c2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    f32 = functools.partial(np.asarray, dtype=np.float32)
    scale = np.sum(a + b) + np.sum((m1 - m2) ** 2)
    _assert_f32_close(JITTED["gaussian_w2"](f32(m1), f32(c1), f32(m2), f32(c2)), expected, scale)
    scale1, scale2 = f32(q * np.sqrt(a)), f32(q * np.sqrt(b))
    _assert_f32_close(
        JITTED["gaussian_w2_scale"](f32(m1), scale1, f32(m2), scale2), expected, scale
    )
    _assert_f32_close(JITTED["gaussian_w2_diag"](f32(m1), f32(a), f32(m2), f32(b)), expected)
    with x64():
        np.testing.assert_allclose(ga.gaussian_w2(m1, c1, m2, c2), expected, rtol=F64_RTOL)
        np.testing.assert_allclose(_ref_w2(m1, c1, m2, c2), expected, rtol=F64_RTOL)


@pytest.mark.parametrize("d", [1, 3, 8])
def test_full_matches_scipy_float64(d, rng, enable_x64):
    m1, c1, m2, c2 = _gaussians(rng, d)
    out = JITTED["gaussian_w2"](m1, c1, m2, c2)
    assert out.shape == () and out.dtype == jnp.float64
    np.testing.assert_allclose(out, _ref_w2(m1, c1, m2, c2), rtol=F64_RTOL)


def test_full_matches_scipy_float32_batch(rng):
    n, d = 6, 16
    m1, m2 = rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(n, d)).astype(np.float32)
    c1 = _spd(rng, d, batch=(n,), dtype=np.float32)
    c2 = _spd(rng, d, batch=(n,), dtype=np.float32)
    out = np.asarray(W2_BATCH(m1, c1, m2, c2))
    assert out.dtype == np.float32
    expected = np.array([_ref_w2(*args) for args in zip(m1, c1, m2, c2, strict=True)])
    np.testing.assert_allclose(out, expected, rtol=F32_RTOL)
    # covariance part alone (means equal): the harder, cancelling part of the formula
    bures = np.asarray(W2_BATCH(m1, c1, m1, c2))
    expected = np.array([_ref_w2(m, a, m, b) for m, a, b in zip(m1, c1, c2, strict=True)])
    np.testing.assert_allclose(bures, expected, rtol=F32_RTOL)


def test_matches_pot(rng, enable_x64):
    """POT returns W2 (not squared): its square is our value, one pair and all pairs."""
    ot_gaussian = pytest.importorskip("ot.gaussian")
    d, n, m = 4, 3, 2
    means1, means2 = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    covs1, covs2 = _spd(rng, d, batch=(n,)), _spd(rng, d, batch=(m,))
    pot = ot_gaussian.bures_wasserstein_distance(means1, means2, covs1, covs2) ** 2
    assert pot.shape == (n, m)
    np.testing.assert_allclose(
        JITTED["gaussian_w2_pairwise"](means1, covs1, means2, covs2), pot, rtol=F64_RTOL
    )
    single = ot_gaussian.bures_wasserstein_distance(means1[0], means2[1], covs1[0], covs2[1])
    np.testing.assert_allclose(
        JITTED["gaussian_w2"](means1[0], covs1[0], means2[1], covs2[1]), single**2, rtol=F64_RTOL
    )


def test_matches_ott_bures(rng):
    costs = pytest.importorskip("ott.geometry.costs")
    d = 3
    m1, c1, m2, c2 = _gaussians(rng, d, np.float32)
    bures = costs.Bures(dimension=d)
    x = np.concatenate([m1, c1.ravel()])
    y = np.concatenate([m2, c2.ravel()])
    np.testing.assert_allclose(JITTED["gaussian_w2"](m1, c1, m2, c2), bures(x, y), rtol=PEER_RTOL)


def test_diag_equals_full_with_diagonal_covariances(rng):
    d = 6
    m1, m2 = rng.normal(size=d).astype(np.float32), rng.normal(size=d).astype(np.float32)
    v1, v2 = rng.uniform(0.1, 3.0, size=(2, d)).astype(np.float32)
    full = JITTED["gaussian_w2"](m1, np.diag(v1), m2, np.diag(v2))
    _assert_f32_close(JITTED["gaussian_w2_diag"](m1, v1, m2, v2), np.asarray(full, np.float64))
    scale = JITTED["gaussian_w2_scale"](m1, np.diag(np.sqrt(v1)), m2, np.diag(np.sqrt(v2)))
    _assert_f32_close(scale, np.asarray(full, np.float64))


@pytest.mark.parametrize("k", [None, 2, 7])  # None: square Cholesky factors
def test_scale_equals_full_with_cov_from_scale(k, rng, enable_x64):
    d = 4
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    if k is None:
        l1, l2 = np.linalg.cholesky(_spd(rng, d)), np.linalg.cholesky(_spd(rng, d))
    else:  # low rank (k < d) and wide (k > d) factors
        l1, l2 = rng.normal(size=(d, k)), rng.normal(size=(d, k + 1))
    out = JITTED["gaussian_w2_scale"](m1, l1, m2, l2)
    # SciPy's sqrtm loses digits on singular matrices (k < d): about 1e-8 relative here
    rtol = F64_RTOL if k is None else 1e-7
    np.testing.assert_allclose(out, _ref_w2(m1, l1 @ l1.T, m2, l2 @ l2.T), rtol=rtol)


def test_singular_covariances_value(rng):
    """Cholesky fails on singular covariances: the value falls back to eigh, in a batch too."""
    q = _rotation(rng, 3)
    a, b = np.array([0.0, 1.0, 2.0]), np.array([0.0, 4.0, 0.5])
    c1, c2 = (q @ np.diag(a) @ q.T).astype(np.float32), (q @ np.diag(b) @ q.T).astype(np.float32)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    zero = np.zeros(3, np.float32)
    _assert_f32_close(JITTED["gaussian_w2"](zero, c1, zero, c2), expected)
    # one singular pair in a batch of regular ones: every entry still right
    spd = _spd(rng, 3, batch=(3,), dtype=np.float32)
    covs1, covs2 = np.stack([spd[0], c1, spd[1]]), np.stack([spd[2], c2, spd[0]])
    means = np.zeros((3, 3), np.float32)
    out = np.asarray(W2_BATCH(means, covs1, means, covs2))
    expected_batch = [_ref_w2(zero, a, zero, b) for a, b in zip(covs1, covs2, strict=True)]
    expected_batch[1] = expected
    _assert_f32_close(out, np.array(expected_batch))
    pairwise = JITTED["gaussian_w2_pairwise"](means, covs1, means, covs2)
    _assert_f32_close(np.diag(np.asarray(pairwise)), np.array(expected_batch))


# ------------------------------------------------------------------------------------------
# (b) Shapes, dtypes, pairwise == loop, vmap == loop, jit == eager.
# ------------------------------------------------------------------------------------------


def _args(name, rng, d=3, n=4, m=2, dtype=np.float32):
    """Arguments of a public function: one pair or two sets, at (n, m, d)."""
    if name == "gaussian_w2":
        return _gaussians(rng, d, dtype)
    if name == "gaussian_w2_scale":
        m1, _, m2, _ = _gaussians(rng, d, dtype)
        return m1, rng.normal(size=(d, d)).astype(dtype), m2, rng.normal(size=(d, 2)).astype(dtype)
    if name == "gaussian_w2_diag":
        m1, m2 = rng.normal(size=(2, d)).astype(dtype)
        v1, v2 = rng.uniform(0.1, 2.0, size=(2, d)).astype(dtype)
        return m1, v1, m2, v2
    if name == "gaussian_w2_pairwise":
        return (
            rng.normal(size=(n, d)).astype(dtype),
            _spd(rng, d, batch=(n,), dtype=dtype),
            rng.normal(size=(m, d)).astype(dtype),
            _spd(rng, d, batch=(m,), dtype=dtype),
        )
    return (
        rng.normal(size=(n, d)).astype(dtype),
        rng.uniform(0.1, 2.0, size=(n, d)).astype(dtype),
        rng.normal(size=(m, d)).astype(dtype),
        rng.uniform(0.1, 2.0, size=(m, d)).astype(dtype),
    )


def _reference(name, args):
    """float64 reference of any public function, from ``_ref_w2`` (SciPy)."""
    a = [np.asarray(x, np.float64) for x in args]
    if name == "gaussian_w2":
        return _ref_w2(*a)
    if name == "gaussian_w2_scale":
        return _ref_w2(a[0], a[1] @ a[1].T, a[2], a[3] @ a[3].T)
    if name == "gaussian_w2_diag":
        return _ref_w2(a[0], np.diag(a[1]), a[2], np.diag(a[3]))
    if name == "gaussian_w2_pairwise":
        return np.array([[_ref_w2(a[0][i], a[1][i], a[2][j], a[3][j]) for j in range(len(a[2]))]
                         for i in range(len(a[0]))])  # fmt: skip
    return np.array([[_ref_w2(a[0][i], np.diag(a[1][i]), a[2][j], np.diag(a[3][j]))
                      for j in range(len(a[2]))] for i in range(len(a[0]))])  # fmt: skip


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("name", list(PUBLIC))
def test_jit_and_eager_match_reference(name, jit, rng):
    args = _args(name, rng)
    out = JITTED[name](*args) if jit else PUBLIC[name](*args)
    expected = _reference(name, args)
    assert out.shape == np.shape(expected)
    assert out.dtype == jnp.float32
    _assert_f32_close(out, expected)


@pytest.mark.parametrize(("n", "m"), [(1, 1), (1, 3), (4, 2)])
@pytest.mark.parametrize("name", ["gaussian_w2_pairwise", "gaussian_w2_diag_pairwise"])
def test_pairwise_equals_loop(name, n, m, rng):
    args = _args(name, rng, n=n, m=m)
    out = np.asarray(JITTED[name](*args))
    assert out.shape == (n, m)
    single = JITTED[name.replace("_pairwise", "")]
    loop = np.array([[single(args[0][i], args[1][i], args[2][j], args[3][j]) for j in range(m)]
                     for i in range(n)])  # fmt: skip
    np.testing.assert_allclose(out, loop, rtol=F32_RTOL, atol=F32_RTOL * loop.max())


@pytest.mark.parametrize(("name", "batched"), [
    ("gaussian_w2", W2_BATCH), ("gaussian_w2_scale", SCALE_BATCH), ("gaussian_w2_diag", DIAG_BATCH)
])  # fmt: skip
def test_vmap_equals_loop(name, batched, rng):
    pairs = [_args(name, rng) for _ in range(5)]
    stacked = [np.stack(a) for a in zip(*pairs, strict=True)]
    out = np.asarray(batched(*stacked))
    loop = np.array([JITTED[name](*args) for args in pairs])
    np.testing.assert_allclose(out, loop, rtol=F32_RTOL, atol=F32_RTOL * loop.max())


@pytest.mark.filterwarnings("ignore:Matrix is singular")  # SciPy's sqrtm in the reference
@pytest.mark.parametrize("name", ["gaussian_w2_pairwise", "gaussian_w2_diag_pairwise"])
def test_vmap_of_pairwise_equals_loop(name, rng):
    """A batch of set pairs; one covariance singular, so the batch takes the eigh fallback."""
    batches = [_args(name, rng, n=3, m=2) for _ in range(2)]
    if name == "gaussian_w2_pairwise":
        batches[1][1][0] = np.diag([0.0, 1.0, 2.0]).astype(np.float32)
    stacked = [np.stack(a) for a in zip(*batches, strict=True)]
    out = np.asarray(jax.jit(jax.vmap(PUBLIC[name]))(*stacked))
    loop = np.stack([JITTED[name](*args) for args in batches])
    assert out.shape == (2, 3, 2)
    np.testing.assert_allclose(out, loop, rtol=F32_RTOL, atol=F32_RTOL * loop.max())
    _assert_f32_close(out[1], _reference(name, batches[1]))


def test_vmap_with_one_unbatched_gaussian(rng):
    """A VAE's prior N(0, I) against a batch of posteriors: in_axes=None for the prior."""
    n, d = 4, 3
    means = rng.normal(size=(n, d)).astype(np.float32)
    covs = _spd(rng, d, batch=(n,), dtype=np.float32)
    zero, eye = np.zeros(d, np.float32), np.eye(d, dtype=np.float32)
    out = jax.vmap(ga.gaussian_w2, in_axes=(0, 0, None, None))(means, covs, zero, eye)
    expected = [_ref_w2(a, b, zero, eye) for a, b in zip(means, covs, strict=True)]
    _assert_f32_close(out, np.array(expected))


@pytest.mark.parametrize("name", list(PUBLIC))
def test_dtype_follows_input(name, rng):
    args = _args(name, rng, dtype=np.float64)
    f32 = [a.astype(np.float32) for a in args]
    assert jax.eval_shape(PUBLIC[name], *f32).dtype == jnp.float32
    with x64():
        assert jax.eval_shape(PUBLIC[name], *f32).dtype == jnp.float32
        assert jax.eval_shape(PUBLIC[name], *args).dtype == jnp.float64
        mixed = [f32[0], args[1], f32[2], f32[3]]
        assert jax.eval_shape(PUBLIC[name], *mixed).dtype == jnp.float64


@pytest.mark.parametrize(("n", "m"), [(0, 2), (2, 0)])
@pytest.mark.parametrize("name", ["gaussian_w2_pairwise", "gaussian_w2_diag_pairwise"])
def test_pairwise_empty_sets(name, n, m, rng):
    args = _args(name, rng, n=max(n, 1), m=max(m, 1))
    args = (args[0][:n], args[1][:n], args[2][:m], args[3][:m])
    assert PUBLIC[name](*args).shape == (n, m)


def test_symmetrises_covariances(rng):
    """Only the symmetric part of a covariance counts: (S + S^T) / 2."""
    m1, c1, m2, c2 = _gaussians(rng, 3, np.float32)
    skew = rng.normal(size=(3, 3)).astype(np.float32)
    skew = skew - skew.T
    out = JITTED["gaussian_w2"](m1, c1 + skew, m2, c2)
    _assert_f32_close(out, _ref_w2(m1, c1, m2, c2))


def test_nan_input_gives_nan():
    zero, eye = np.zeros(3, np.float32), np.eye(3, dtype=np.float32)
    bad = eye.copy()
    bad[0, 1] = np.nan
    assert np.isnan(JITTED["gaussian_w2"](zero, bad, zero, eye))
    assert np.isnan(JITTED["gaussian_w2_scale"](zero, bad, zero, eye))


# ------------------------------------------------------------------------------------------
# (c) Gradients: check_grads at generic points, closed forms at the awkward ones.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PUBLIC))
def test_check_grads_x64(name, rng, enable_x64):
    args = _args(name, rng, dtype=np.float64)
    check_grads(JITTED[name], args, order=1, modes=("fwd", "rev"), atol=GRAD_X64, rtol=GRAD_X64)


@pytest.mark.parametrize("argnums", [(1,), (3,), (1, 3)])
def test_gradient_matches_transport_maps(argnums, rng, enable_x64):
    """``dW2^2/dS1 = I - T12`` and ``dW2^2/dS2 = I - T21``; each subset of covariances
    differentiated (the rule computes only what is asked for)."""
    m1, c1, m2, c2 = _gaussians(rng, 4)
    grads = jax.grad(ga.gaussian_w2, argnums=argnums)(m1, c1, m2, c2)
    expected = {1: _ref_grad_cov(c1, c2), 3: _ref_grad_cov(c2, c1)}
    for i, g in zip(argnums, grads, strict=True):
        np.testing.assert_allclose(g, expected[i], rtol=GRAD_X64, atol=GRAD_X64)
    g_means = jax.grad(ga.gaussian_w2, argnums=(0, 2))(m1, c1, m2, c2)
    np.testing.assert_allclose(g_means[0], 2 * (m1 - m2), rtol=GRAD_X64)
    np.testing.assert_allclose(g_means[1], 2 * (m2 - m1), rtol=GRAD_X64)


def test_pairwise_gradient_matches_transport_maps(rng, enable_x64):
    n, m, d = 2, 3, 3
    means1, means2 = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    covs1, covs2 = _spd(rng, d, batch=(n,)), _spd(rng, d, batch=(m,))
    weights = rng.normal(size=(n, m))  # a generic cotangent

    def loss(c1, c2):
        return jnp.sum(weights * ga.gaussian_w2_pairwise(means1, c1, means2, c2))

    g1, g2 = jax.jit(jax.grad(loss, argnums=(0, 1)))(covs1, covs2)
    for i in range(n):
        expected = sum(weights[i, j] * _ref_grad_cov(covs1[i], covs2[j]) for j in range(m))
        np.testing.assert_allclose(g1[i], expected, rtol=GRAD_X64, atol=GRAD_X64)
    for j in range(m):
        expected = sum(weights[i, j] * _ref_grad_cov(covs2[j], covs1[i]) for i in range(n))
        np.testing.assert_allclose(g2[j], expected, rtol=GRAD_X64, atol=GRAD_X64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_isotropic_covariances_value_and_gradient(dtype):
    """``2 I`` vs ``3 I``: repeated eigenvalues (autodiff through eigh is NaN there).

    ``W2^2 = d (sqrt2 - sqrt3)^2``, ``dW/dS1 = (1 - sqrt(3/2)) I``, ``dW/dS2 = (1 - sqrt(2/3)) I``;
    scale form with ``sqrt2 I``, ``sqrt3 I``: ``dW/dL1 = 2 (sqrt2 - sqrt3) I``.
    """
    d = 4
    tol = GRAD_X64 if dtype == np.float64 else F32_RTOL
    zero, eye = np.zeros(d, dtype), np.eye(d, dtype=dtype)
    with x64() if dtype == np.float64 else contextlib.nullcontext():
        value = JITTED["gaussian_w2"](zero, 2 * eye, zero, 3 * eye)
        np.testing.assert_allclose(value, d * (np.sqrt(2) - np.sqrt(3)) ** 2, rtol=tol)
        grads = GRAD_ALL["gaussian_w2"](zero, 2 * eye, zero, 3 * eye)
        np.testing.assert_allclose(grads[1], (1 - np.sqrt(1.5)) * eye, atol=tol)
        np.testing.assert_allclose(grads[3], (1 - np.sqrt(2 / 3)) * eye, atol=tol)
        np.testing.assert_allclose(grads[0], 0.0, atol=tol)
        grads = GRAD_ALL["gaussian_w2_scale"](zero, np.sqrt(2) * eye, zero, np.sqrt(3) * eye)
        np.testing.assert_allclose(grads[1], 2 * (np.sqrt(2) - np.sqrt(3)) * eye, atol=tol)
        np.testing.assert_allclose(grads[3], 2 * (np.sqrt(3) - np.sqrt(2)) * eye, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("isotropic", [False, True])
@pytest.mark.parametrize("name", ["gaussian_w2", "gaussian_w2_scale", "gaussian_w2_pairwise"])
def test_identical_gaussians_zero_value_zero_gradient(name, isotropic, dtype, rng):
    d = 4
    tol = GRAD_X64 if dtype == np.float64 else 10 * F32_RTOL
    mean = rng.normal(size=d)
    cov = 2.0 * np.eye(d) if isotropic else _spd(rng, d)
    if name == "gaussian_w2_scale":
        cov = np.linalg.cholesky(cov)
    args = [mean.astype(dtype), cov.astype(dtype)] * 2
    if name == "gaussian_w2_pairwise":
        args = [a[None] for a in args]
    with x64() if dtype == np.float64 else contextlib.nullcontext():
        value = JITTED[name](*args)
        grads = GRAD_ALL[name](*args)
    np.testing.assert_allclose(value, 0.0, atol=tol * d)
    for g in grads:
        assert np.all(np.isfinite(g))
        np.testing.assert_allclose(g, 0.0, atol=tol)


@pytest.mark.parametrize("which", [1, 3])
def test_near_singular_gradient_matches_closed_form(which, rng, enable_x64):
    """One covariance with an eigenvalue 1e-6: large but finite and exact derivatives."""
    d = 4
    m1, _, m2, c_other = _gaussians(rng, d)
    c_small = _psd_with_spectrum(rng, [1e-6, 0.5, 1.0, 2.0])
    c1, c2 = (c_small, c_other) if which == 1 else (c_other, c_small)
    np.testing.assert_allclose(JITTED["gaussian_w2"](m1, c1, m2, c2), _ref_w2(m1, c1, m2, c2),
                               rtol=1e-8)  # fmt: skip
    grads = GRAD_ALL["gaussian_w2"](m1, c1, m2, c2)
    for i, expected in ((1, _ref_grad_cov(c1, c2)), (3, _ref_grad_cov(c2, c1))):
        scale = np.abs(expected).max()
        np.testing.assert_allclose(grads[i], expected, rtol=0, atol=GRAD_X64 * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_singular_covariances_finite_gradients(dtype, rng):
    """Exactly singular covariances: finite gradients, with the documented conventions."""
    q = _rotation(rng, 3)
    a, b = np.array([0.0, 1.0, 2.0]), np.array([0.0, 4.0, 0.5])
    c1, c2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    zero = np.zeros(3, dtype)
    tol = GRAD_X64 if dtype == np.float64 else 10 * F32_RTOL
    with x64() if dtype == np.float64 else contextlib.nullcontext():
        grads = GRAD_ALL["gaussian_w2"](zero, c1.astype(dtype), zero, c2.astype(dtype))
        assert all(np.all(np.isfinite(g)) for g in grads)
        # in the common eigenbasis: 1 - sqrt(b / a) on the shared support, and 1 (the trace
        # term alone) on the common null direction, where both covariances vanish
        expected = np.concatenate([[1.0], 1.0 - np.sqrt(b[1:] / a[1:])])
        np.testing.assert_allclose(np.diag(q.T @ grads[1] @ q), expected, atol=tol)
        scale_grads = GRAD_ALL["gaussian_w2_scale"](
            zero, (q * np.sqrt(a)).astype(dtype), zero, (q * np.sqrt(b)).astype(dtype)
        )
        assert all(np.all(np.isfinite(g)) for g in scale_grads)


def test_diag_gradients_at_equal_and_zero_variances(rng):
    """Finite at ``var1 == var2`` (zero there) and at zero variance (sqrt's derivative 0)."""
    grad = GRAD_ALL["gaussian_w2_diag"]
    mean = rng.normal(size=3).astype(np.float32)
    var = np.array([0.0, 1.0, 2.5], np.float32)
    g = grad(mean, var, mean, var)
    for gi in g:
        np.testing.assert_array_equal(gi, 0.0)
    other = np.array([1.0, 0.0, 2.5], np.float32)
    g = grad(mean, var, mean, other)
    assert all(np.all(np.isfinite(gi)) for gi in g)
    # d/dv1 (sqrt(v1) - sqrt(v2))^2 = 1 - sqrt(v2 / v1) where v1 > 0; 0 at v1 = 0
    np.testing.assert_allclose(g[1], [0.0, 1.0, 0.0], atol=F32_RTOL)
    np.testing.assert_allclose(g[3], [1.0, 0.0, 0.0], atol=F32_RTOL)
    gp = GRAD_ALL["gaussian_w2_diag_pairwise"](mean[None], var[None], mean[None], other[None])
    np.testing.assert_allclose(gp[1][0], g[1], atol=F32_RTOL)
    np.testing.assert_allclose(gp[3][0], g[3], atol=F32_RTOL)


def test_logvar_example_gradient(rng, enable_x64):
    """The VAE pattern: variances from log-variances; d/dlogvar through exp is finite."""
    mu, logvar = rng.normal(size=5), rng.normal(size=5)

    def kl_like(mu, logvar):
        return ga.gaussian_w2_diag(mu, jnp.exp(logvar), jnp.zeros(5), jnp.ones(5))

    check_grads(kl_like, (mu, logvar), order=1, modes=("fwd", "rev"), atol=GRAD_X64)


# ------------------------------------------------------------------------------------------
# (d) Properties. Shapes are fixed so that each jitted function compiles once.
# ------------------------------------------------------------------------------------------

_D = 3
_means = hnp.arrays(np.float32, (_D,), elements=st.floats(-3, 3, width=32))
_factors = hnp.arrays(np.float32, (_D, _D), elements=st.floats(-2, 2, width=32))
_variances = hnp.arrays(np.float32, (_D,), elements=st.floats(0, 4, width=32))


def _check_laws(fn, g1, g2, scale):
    """Symmetric, zero on equal inputs, non-negative: up to float32 rounding at ``scale``."""
    tol = F32_RTOL * (1.0 + scale)
    ab, ba = float(fn(*g1, *g2)), float(fn(*g2, *g1))
    assert ab >= 0.0 and ba >= 0.0
    assert abs(ab - ba) <= tol
    assert 0.0 <= float(fn(*g1, *g1)) <= tol


@settings(max_examples=25, deadline=None)
@given(_means, _factors, _means, _factors)
def test_property_full_and_scale(m1, a1, m2, a2):
    c1, c2 = a1 @ a1.T, a2 @ a2.T  # PSD, singular for some draws
    scale = float(np.trace(c1) + np.trace(c2) + np.sum((m1 - m2) ** 2))
    _check_laws(JITTED["gaussian_w2"], (m1, c1), (m2, c2), scale)
    _check_laws(JITTED["gaussian_w2_scale"], (m1, a1), (m2, a2), scale)


@settings(max_examples=25, deadline=None)
@given(_means, _variances, _means, _variances)
def test_property_diag(m1, v1, m2, v2):
    scale = float(np.sum(v1 + v2) + np.sum((m1 - m2) ** 2))
    _check_laws(JITTED["gaussian_w2_diag"], (m1, v1), (m2, v2), scale)


# ------------------------------------------------------------------------------------------
# (e) Bad input raises a clear error.
# ------------------------------------------------------------------------------------------


def test_bad_shapes_raise():
    m, c = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match=r"`mean1`.*1-D.*\(1, 3\)"):
        ga.gaussian_w2(m[None], c, m, c)
    with pytest.raises(ValueError, match=r"`mean1` and `mean2`.*same dimension.*\(3,\).*\(2,\)"):
        ga.gaussian_w2(m, c, m[:2], c[:2, :2])
    with pytest.raises(ValueError, match=r"`cov2`.*\[d, d\] = \(3, 3\).*\(3, 2\)"):
        ga.gaussian_w2(m, c, m, c[:, :2])
    with pytest.raises(ValueError, match=r"`mean2`.*d >= 1"):
        ga.gaussian_w2(m, c, m[:0], c[:0, :0])
    with pytest.raises(ValueError, match=r"`scale1`.*\[d, k\].*d = 3.*\(2, 3\)"):
        ga.gaussian_w2_scale(m, c[:2], m, c)
    with pytest.raises(ValueError, match=r"`var2`.*\[d\] = \(3,\).*\(3, 3\)"):
        ga.gaussian_w2_diag(m, m, m, c)
    with pytest.raises(ValueError, match=r"`means1`.*2-D.*\(3,\)"):
        ga.gaussian_w2_pairwise(m, c, m[None], c[None])
    with pytest.raises(ValueError, match=r"`covs1`.*\[n, d, d\] = \(2, 3, 3\).*\(1, 3, 3\)"):
        ga.gaussian_w2_pairwise(np.zeros((2, 3)), c[None], m[None], c[None])
    with pytest.raises(ValueError, match=r"`vars2`.*\[m, d\] = \(1, 3\).*\(1, 2\)"):
        ga.gaussian_w2_diag_pairwise(m[None], m[None], m[None], m[None, :2])


def test_negative_variance_raises_with_hint():
    m = np.zeros(2)
    with pytest.raises(ValueError, match=r"`var1`.*variances.*exp\(logvar\)"):
        ga.gaussian_w2_diag(m, np.array([-0.5, 1.0]), m, np.ones(2))
    with pytest.raises(ValueError, match=r"`vars2`.*variances"):
        ga.gaussian_w2_diag_pairwise(m[None], np.ones((1, 2)), m[None], -np.ones((1, 2)))


# ------------------------------------------------------------------------------------------
# (f) Issue 9: NaN propagation, traced bad values, dtypes, the compile cache.
# ------------------------------------------------------------------------------------------


def _grad_all_finite_free(grads) -> bool:
    return all(np.isnan(np.asarray(g)).any() for g in grads)


@pytest.mark.parametrize("jit", [False, True])
def test_diag_nan_variance_propagates(jit):
    """Issue 9: a NaN variance counted as 0 (``safe_sqrt``), giving a finite distance."""
    fn = JITTED["gaussian_w2_diag"] if jit else ga.gaussian_w2_diag
    zero, one = np.zeros(3, np.float32), np.ones(3, np.float32)
    bad = one.copy()
    bad[0] = np.nan
    assert np.isnan(fn(zero, bad, zero, one))
    assert np.isnan(fn(zero, one, zero, bad))
    grads = GRAD_ALL["gaussian_w2_diag"](zero, bad, zero, one)
    assert np.isnan(grads[1][0])
    fnp = JITTED["gaussian_w2_diag_pairwise"] if jit else ga.gaussian_w2_diag_pairwise
    out = np.asarray(fnp(np.zeros((2, 3), np.float32), np.stack([one, bad]), zero[None], one[None]))
    assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()
    g = GRAD_ALL["gaussian_w2_diag_pairwise"](zero[None], bad[None], zero[None], one[None])
    assert np.isnan(np.asarray(g[1])).any()


def test_traced_negative_variance_gives_nan():
    zero, one = np.zeros(2, np.float32), np.ones(2, np.float32)
    neg = np.array([-0.5, 1.0], np.float32)
    assert np.isnan(JITTED["gaussian_w2_diag"](zero, neg, zero, one))
    assert np.isnan(np.asarray(GRAD_ALL["gaussian_w2_diag"](zero, neg, zero, one)[1])[0])
    out = JITTED["gaussian_w2_diag_pairwise"](zero[None], neg[None], zero[None], one[None])
    assert np.isnan(np.asarray(out)).all()


@pytest.mark.parametrize("where", ["mean1", "cov1", "mean2", "cov2"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_full_forms_propagate_nan(where, value, rng):
    """NaN / inf in a mean or covariance: NaN value and NaN gradients, never a finite number."""
    for name in ("gaussian_w2", "gaussian_w2_scale"):
        args = [np.array(a, np.float32) for a in _args(name, rng)]
        k = ["mean1", "cov1", "mean2", "cov2"].index(where)
        args[k].flat[1] = value
        assert np.isnan(JITTED[name](*args)), name
        assert np.isnan(PUBLIC[name](*args)), name
        assert _grad_all_finite_free(GRAD_ALL[name](*args)), name


def test_pairwise_nan_poisons_its_row_only(rng):
    args = [np.array(a, np.float32) for a in _args("gaussian_w2_pairwise", rng, n=3, m=2)]
    args[1][1, 0, 1] = np.nan
    out = np.asarray(JITTED["gaussian_w2_pairwise"](*args))
    assert np.isnan(out[1]).all() and np.isfinite(out[[0, 2]]).all()
    args[1][1, 0, 1] = 0.0
    args[2][0, 0] = np.nan
    out = np.asarray(ga.gaussian_w2_pairwise(*args))
    assert np.isnan(out[:, 0]).all() and np.isfinite(out[:, 1]).all()


def test_not_psd_covariance():
    """Concrete: ValueError; traced: NaN value and gradient. Rounding-level negatives pass."""
    zero, eye = np.zeros(3, np.float32), np.eye(3, dtype=np.float32)
    bad = np.diag([1.0, -0.5, 2.0]).astype(np.float32)
    with pytest.raises(ValueError, match=r"`cov1`.*positive semi-definite"):
        ga.gaussian_w2(zero, bad, zero, eye)
    with pytest.raises(ValueError, match=r"`covs2`.*positive semi-definite"):
        ga.gaussian_w2_pairwise(zero[None], eye[None], zero[None], bad[None])
    assert np.isnan(JITTED["gaussian_w2"](zero, bad, zero, eye))
    assert _grad_all_finite_free(GRAD_ALL["gaussian_w2"](zero, bad, zero, eye)[1:2])
    out = JITTED["gaussian_w2_pairwise"](np.zeros((2, 3), np.float32), np.stack([eye, bad]),
                                         zero[None], eye[None])  # fmt: skip
    assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()
    rounding = np.diag([1.0, -1e-7, 2.0]).astype(np.float32)
    assert np.isfinite(ga.gaussian_w2(zero, rounding, zero, eye))


def test_none_and_complex_raise():
    m, c = np.zeros(2), np.eye(2)
    with pytest.raises(ValueError, match=r"`cov2`.*None"):
        ga.gaussian_w2(m, c, m, None)
    with pytest.raises(ValueError, match=r"`mean1`.*None"):
        ga.gaussian_w2_diag(None, m, m, m)
    with pytest.raises(ValueError, match=r"`scale1`.*complex"):
        ga.gaussian_w2_scale(m, c + 1j, m, c)
    with pytest.raises(ValueError, match=r"`vars1`.*complex"):
        JITTED["gaussian_w2_diag_pairwise"](m[None], m[None] + 1j, m[None], m[None])


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize("name", list(PUBLIC))
def test_half_precision_computed_in_float32(name, dtype, rng):
    args = _args(name, rng, dtype=np.float32)
    half = [jnp.asarray(a, dtype) for a in args]
    out = PUBLIC[name](*half)
    assert out.dtype == dtype
    ref = PUBLIC[name](*[a.astype(jnp.float32) for a in half])
    np.testing.assert_allclose(np.asarray(out, np.float32), ref, rtol=2e-2, atol=2e-2)


def test_eager_calls_hit_the_compile_cache(rng):
    """Public functions call module-level jitted cores: a repeated eager call compiles nothing."""
    for name in PUBLIC:
        args = _args(name, rng, dtype=np.float32)
        jax.block_until_ready(PUBLIC[name](*args))
        again = functools.partial(PUBLIC[name], *_args(name, rng, dtype=np.float32))
        assert count_compiles(again) == 0, name
