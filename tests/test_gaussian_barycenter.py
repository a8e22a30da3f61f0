"""Tests for alignment._src.gaussian_barycenter against independent references.

References: POT's ``ot.gaussian.bures_wasserstein_barycenter`` (float64, its own fixed point;
ott-jax's ``Bures.barycenter`` agrees to 1e-5, but importing ott costs ~8 s, so it is not run);
closed forms (commuting covariances, identical Gaussians, two 1-D Gaussians whose standard
deviation interpolates linearly); optimality (``sum_k w_k W2^2`` with ``alignment.gaussian_w2``
is larger at perturbed barycenters); directional central finite differences under float64 for
the implicit gradients, at generic, equal and isotropic covariances.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest
from jax.test_util import check_grads

from alignment._src import checks
from alignment._src.gaussian import gaussian_w2
from alignment._src.gaussian_barycenter import (
    gaussian_w2_barycenter,
    gaussian_w2_barycenter_diag,
)

F32_RTOL = 1e-5  # float32 closed forms
ITER_RTOL = 1e-4  # float32 fixed point (tol 1e-6) against a float64 reference
X64_RTOL = 1e-8  # float64 fixed point (tol 1e-12) against POT
FD = 1e-6  # directional finite differences, float64, relative
K, D = 3, 3  # the one full-covariance shape most tests use


def _spd(rng, k, d):
    a = rng.normal(size=(k, d, d))
    return a @ np.swapaxes(a, 1, 2) / d + 0.5 * np.eye(d)


def _problem(rng, k=K, d=D):
    means = rng.normal(size=(k, d))
    covs = _spd(rng, k, d)
    w = rng.uniform(0.2, 1.0, size=k)
    return means, covs, w / w.sum()


def _pot(means, covs, w):
    m, c = ot.gaussian.bures_wasserstein_barycenter(
        np.asarray(means, np.float64),
        np.asarray(covs, np.float64),
        weights=np.asarray(w, np.float64),
        num_iter=10000,
        eps=1e-14,
    )
    return m, c


# --------------------------------------------------------------------------------------------
# References and closed forms.
# --------------------------------------------------------------------------------------------


def test_matches_pot_x64(rng, enable_x64):
    means, covs, w = _problem(rng)
    out = gaussian_w2_barycenter(means, covs, weights=w, tol=1e-12, max_iters=500)
    m_ref, c_ref = _pot(means, covs, w)
    assert out.cov.dtype == jnp.float64 and bool(out.converged)
    np.testing.assert_allclose(out.mean, m_ref, rtol=X64_RTOL, atol=1e-12)
    np.testing.assert_allclose(out.cov, c_ref, rtol=X64_RTOL, atol=1e-10)


@pytest.mark.parametrize("jit", [False, True])
def test_matches_pot_float32(rng, jit):
    means, covs, w = _problem(rng)
    fn = jax.jit(gaussian_w2_barycenter) if jit else gaussian_w2_barycenter
    out = fn(jnp.asarray(means, jnp.float32), jnp.asarray(covs, jnp.float32), weights=w)
    m_ref, c_ref = _pot(means, covs, w)
    assert out.cov.dtype == jnp.float32 and out.cov.shape == (D, D)
    assert out.n_iters.dtype == jnp.int32 and bool(out.converged)
    np.testing.assert_allclose(out.mean, m_ref, rtol=F32_RTOL, atol=1e-6)
    np.testing.assert_allclose(out.cov, c_ref, rtol=ITER_RTOL, atol=1e-5)


def test_diag_matches_pot(rng):
    means = rng.normal(size=(K, D))
    var = rng.uniform(0.1, 3.0, size=(K, D))
    w = np.array([0.2, 0.3, 0.5])
    out = gaussian_w2_barycenter_diag(means, var, weights=w)
    m_ref, c_ref = _pot(means, np.stack([np.diag(v) for v in var]), w)
    np.testing.assert_allclose(out.mean, m_ref, rtol=F32_RTOL, atol=1e-6)
    np.testing.assert_allclose(out.variance, np.diag(c_ref), rtol=F32_RTOL)


def test_commuting_full_equals_diag(rng):
    means = rng.normal(size=(K, D))
    var = rng.uniform(0.1, 3.0, size=(K, D))
    covs = np.stack([np.diag(v) for v in var])
    full = gaussian_w2_barycenter(means, covs, weights=jnp.array([0.5, 0.25, 0.25]))
    diag = gaussian_w2_barycenter_diag(means, var, weights=jnp.array([0.5, 0.25, 0.25]))
    np.testing.assert_allclose(full.mean, diag.mean, rtol=F32_RTOL)
    np.testing.assert_allclose(full.cov, np.diag(diag.variance), rtol=F32_RTOL, atol=1e-6)
    # commuting covariances: the default start is already the answer
    assert int(full.n_iters) <= 2


def test_identical_gaussians(rng):
    means, covs, _ = _problem(rng)
    m = np.repeat(means[:1], K, axis=0)
    c = np.repeat(covs[:1], K, axis=0)
    out = gaussian_w2_barycenter(m, c, init=jnp.eye(D))  # from a start far from the answer
    np.testing.assert_allclose(out.mean, means[0], rtol=F32_RTOL)
    np.testing.assert_allclose(out.cov, covs[0], rtol=ITER_RTOL, atol=1e-5)
    diag = gaussian_w2_barycenter_diag(m, np.abs(m) + 0.5)
    np.testing.assert_allclose(diag.variance, np.abs(means[0]) + 0.5, rtol=F32_RTOL)


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0])
def test_two_gaussians_1d_std_interpolates(t):
    means = jnp.array([[-1.0], [3.0]])
    std = np.array([0.5, 2.0])
    w = jnp.array([1.0 - t, t])
    expected_std = (1.0 - t) * std[0] + t * std[1]
    full = gaussian_w2_barycenter(means, jnp.asarray(std**2)[:, None, None], weights=w)
    diag = gaussian_w2_barycenter_diag(means, jnp.asarray(std**2)[:, None], weights=w)
    np.testing.assert_allclose(full.cov[0, 0], expected_std**2, rtol=F32_RTOL)
    np.testing.assert_allclose(diag.variance[0], expected_std**2, rtol=F32_RTOL)
    np.testing.assert_allclose(full.mean[0], -1.0 + 4.0 * t, rtol=F32_RTOL, atol=1e-6)


def test_minimises_weighted_w2(rng, enable_x64):
    means, covs, w = _problem(rng)
    out = gaussian_w2_barycenter(means, covs, weights=w, tol=1e-12)

    def objective(m, s):
        return sum(w[i] * float(gaussian_w2(m, s, means[i], covs[i])) for i in range(K))

    best = objective(out.mean, out.cov)
    for _ in range(4):
        e = rng.normal(size=(D, D))
        for h in (1e-1, 1e-3):
            s = out.cov + h * (e + e.T) / 2
            assert objective(out.mean, s) > best
            assert objective(out.mean + h * rng.normal(size=D), out.cov) > best


# --------------------------------------------------------------------------------------------
# jit / vmap / dtypes.
# --------------------------------------------------------------------------------------------


def test_vmap_equals_loop(rng):
    problems = [_problem(rng) for _ in range(3)]
    means, covs, w = (np.stack(p).astype(np.float32) for p in zip(*problems, strict=True))
    batched = jax.vmap(lambda m, c, ww: gaussian_w2_barycenter(m, c, weights=ww))(means, covs, w)
    diag_b = jax.vmap(lambda m, v, ww: gaussian_w2_barycenter_diag(m, v, weights=ww))(
        means, np.abs(means), w
    )
    for i in range(3):
        one = gaussian_w2_barycenter(means[i], covs[i], weights=w[i])
        np.testing.assert_allclose(batched.cov[i], one.cov, rtol=ITER_RTOL, atol=1e-6)
        np.testing.assert_allclose(batched.mean[i], one.mean, rtol=F32_RTOL, atol=1e-6)
        d1 = gaussian_w2_barycenter_diag(means[i], np.abs(means[i]), weights=w[i])
        np.testing.assert_allclose(diag_b.variance[i], d1.variance, rtol=F32_RTOL)
    assert batched.n_iters.shape == (3,) and bool(jnp.all(batched.converged))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision(rng, dtype):
    means, covs, _ = _problem(rng)
    out = gaussian_w2_barycenter(jnp.asarray(means, dtype), jnp.asarray(covs, dtype))
    diag = gaussian_w2_barycenter_diag(jnp.asarray(means, dtype), jnp.asarray(means**2, dtype))
    assert out.cov.dtype == dtype and out.mean.dtype == dtype and diag.variance.dtype == dtype
    _, c_ref = _pot(
        np.asarray(jnp.asarray(means, dtype), np.float64),
        np.asarray(jnp.asarray(covs, dtype), np.float64),
        np.full(K, 1 / K),
    )
    np.testing.assert_allclose(np.asarray(out.cov, np.float64), c_ref, rtol=2e-2, atol=2e-2)


def test_unconverged_warns(rng):
    means, covs, w = _problem(rng)
    with pytest.warns(checks.ConvergenceWarning):
        out = gaussian_w2_barycenter(means, covs, weights=w, init=jnp.eye(D), max_iters=1)
    assert int(out.n_iters) == 1 and not bool(out.converged)


# --------------------------------------------------------------------------------------------
# Gradients.
# --------------------------------------------------------------------------------------------


def _fd(fn, args, i, direction, h=1e-5):
    plus = list(args)
    minus = list(args)
    plus[i] = args[i] + h * direction
    minus[i] = args[i] - h * direction
    return (fn(*plus) - fn(*minus)) / (2 * h)


def _loss(means, covs, w):
    out = gaussian_w2_barycenter(means, covs, weights=w, tol=1e-13, max_iters=1000)
    probe = jnp.arange(1.0, 1.0 + D * D).reshape(D, D) / (D * D)
    return jnp.sum(out.cov * probe) + jnp.sum(out.cov @ out.cov) + jnp.sum(out.mean**2)


@pytest.mark.parametrize("case", ["generic", "equal", "isotropic"])
def test_grad_finite_differences(rng, enable_x64, case):
    means, covs, w = _problem(rng)
    if case == "equal":
        covs = np.repeat(covs[:1], K, axis=0)
    elif case == "isotropic":
        covs = np.stack([s * np.eye(D) for s in (1.0, 2.0, 0.5)])
    args = (jnp.asarray(means), jnp.asarray(covs), jnp.asarray(w))
    grads = jax.grad(_loss, argnums=(0, 1, 2))(*args)
    for g in grads:
        assert bool(jnp.all(jnp.isfinite(g)))
    for i in range(3):
        e = rng.normal(size=args[i].shape)
        if i == 1:
            e = (e + np.swapaxes(e, 1, 2)) / 2  # symmetric directions
        if i == 2:
            e = e - e.mean()  # stay on sum(w) == 1
        fd = _fd(_loss, args, i, jnp.asarray(e))
        np.testing.assert_allclose(jnp.sum(grads[i] * e), fd, rtol=FD, atol=FD)


def test_diag_check_grads(rng, enable_x64):
    means = jnp.asarray(rng.normal(size=(K, D)))
    var = jnp.asarray(rng.uniform(0.5, 2.0, size=(K, D)))
    w = jnp.array([0.2, 0.3, 0.5])

    def f(m, v, ww):
        out = gaussian_w2_barycenter_diag(m, v, weights=ww / jnp.sum(ww))  # on the simplex
        return jnp.sum(out.mean**2) + jnp.sum(out.variance * jnp.arange(1.0, D + 1))

    check_grads(f, (means, var, w), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)


def test_diag_grad_finite_at_zero_variance():
    var = jnp.array([[0.0, 1.0], [0.0, 4.0]])
    g = jax.grad(lambda v: jnp.sum(gaussian_w2_barycenter_diag(jnp.zeros((2, 2)), v).variance))(var)
    assert bool(jnp.all(jnp.isfinite(g)))
    np.testing.assert_allclose(g[:, 0], 0.0)
    np.testing.assert_allclose(g[:, 1], [1.5 / 1.0 * 0.5, 1.5 / 2.0 * 0.5], rtol=F32_RTOL)


# --------------------------------------------------------------------------------------------
# Bad input.
# --------------------------------------------------------------------------------------------

_M = np.zeros((2, 2))
_C = np.stack([np.eye(2), 2 * np.eye(2)])
_V = np.ones((2, 2))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"means": np.zeros(2)}, "means"),
        ({"means": None}, "means"),
        ({"means": np.zeros((2, 2), complex)}, "means"),
        ({"means": np.zeros((0, 2))}, "means"),
        ({"covs": np.eye(2)}, "covs"),
        ({"covs": np.stack([np.eye(3)] * 2)}, "covs"),
        ({"covs": np.stack([np.eye(2)] * 3)}, "covs"),
        ({"covs": np.stack([np.eye(2), [[1.0, 2.0], [0.0, 1.0]]])}, "covs"),
        ({"covs": np.stack([np.eye(2), -np.eye(2)])}, "covs"),
        ({"covs": _C.astype(complex)}, "covs"),
        ({"weights": np.array([0.5, 0.4])}, "weights"),
        ({"weights": np.array([1.5, -0.5])}, "weights"),
        ({"weights": np.ones(3) / 3}, "weights"),
        ({"init": np.eye(3)}, "init"),
        ({"init": -np.eye(2)}, "init"),
        ({"tol": np.array([1e-6, 1e-6])}, "tol"),
        ({"tol": 0.0}, "tol"),
        ({"max_iters": 1.5}, "max_iters"),
    ],
)
def test_bad_input_full(kwargs, name):
    args = {"means": _M, "covs": _C, **kwargs}
    means, covs = args.pop("means"), args.pop("covs")
    with pytest.raises(ValueError, match=f"`{name}`"):
        gaussian_w2_barycenter(means, covs, **args)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"means": np.zeros((2, 2, 1))}, "means"),
        ({"variances": np.ones((3, 2))}, "variances"),
        ({"variances": np.ones((2, 3))}, "variances"),
        ({"variances": -np.ones((2, 2))}, "variances"),
        ({"variances": _V.astype(complex)}, "variances"),
        ({"weights": np.array([0.7, 0.7])}, "weights"),
        ({"weights": np.array([[0.5, 0.5]])}, "weights"),
        ({"weights": np.array([2.0, -1.0])}, "weights"),
    ],
)
def test_bad_input_diag(kwargs, name):
    args = {"means": _M, "variances": _V, **kwargs}
    means, var = args.pop("means"), args.pop("variances")
    with pytest.raises(ValueError, match=f"`{name}`"):
        gaussian_w2_barycenter_diag(means, var, **args)


def test_shape_errors_under_jit():
    with pytest.raises(ValueError, match="`covs`"):
        jax.jit(gaussian_w2_barycenter)(_M, np.stack([np.eye(3)] * 2))
    with pytest.raises(ValueError, match="`variances`"):
        jax.jit(gaussian_w2_barycenter_diag)(_M, np.ones((2, 3)))


def test_traced_bad_values_give_nan():
    full = jax.jit(lambda c, w, tol: gaussian_w2_barycenter(_M, c, weights=w, tol=tol))
    for c, w, tol in [
        (np.stack([np.eye(2), -np.eye(2)]), np.array([0.5, 0.5]), 1e-6),
        (_C, np.array([0.5, 0.4]), 1e-6),
        (_C, np.array([1.5, -0.5]), 1e-6),
        (_C, np.array([0.5, 0.5]), -1.0),
    ]:
        out = full(c, w, tol)
        assert bool(jnp.all(jnp.isnan(out.cov))) and bool(jnp.all(jnp.isnan(out.mean)))
        assert int(out.n_iters) == -1 and not bool(out.converged)
    diag = jax.jit(lambda v, w: gaussian_w2_barycenter_diag(_M, v, weights=w))
    for v, w in [(-_V, np.array([0.5, 0.5])), (_V, np.array([0.7, 0.7]))]:
        out = diag(v, w)
        assert bool(jnp.all(jnp.isnan(out.variance))) and bool(jnp.all(jnp.isnan(out.mean)))


def test_nan_propagates_and_stops():
    covs = _C.copy()
    covs[1, 0, 0] = np.nan
    out = jax.jit(lambda c: gaussian_w2_barycenter(_M, c, max_iters=50))(covs)
    assert bool(jnp.all(jnp.isnan(out.cov))) and not bool(out.converged)
    assert int(out.n_iters) <= 1
