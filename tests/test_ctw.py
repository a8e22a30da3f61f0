"""Tests for alignment._src.ctw: canonical time warping, hard and soft.

References: a real series (tslearn's bundled ``Trace`` data, delay-embedded in 3-D) and a copy
of it warped by a known monotone map, rotated (or mixed into 5 features) and noised: the
recovered path is scored against the known warp and against DTW on the raw features. The
fixed point is checked in float64 NumPy: the path is an optimal DTW path (the textbook
recursion of ``tests/references.py``) for the returned projections, and the projections are
optimal for the path (the top singular values of the whitened cross-covariance along it,
von Neumann's bound). The objective is checked to be non-increasing. Soft CTW's gradient is
compared with finite differences of the whole procedure (re-run to convergence) under x64.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from tslearn.datasets import CachedDatasets

from alignment._src import ctw as cw
from alignment._src.costs import squared_euclidean
from alignment._src.dtw import dtw_path
from tests import references
from tests.conftest import x64

OBJ_RTOL = 1e-5  # float32 rounding allowed in "non-increasing"
N_SERIES = 6
K, REG = 2, 0.1


def _embed(series, lags=(0, 6, 12), step=3):
    n = len(series) - max(lags)
    return np.stack([series[lag : lag + n] for lag in lags], 1)[::step]


def _warp(t, s, amplitude=0.15):
    """A smooth monotone map from the s frames of the copy to positions in the original."""
    u = np.linspace(0.0, 1.0, s)
    tau = u + amplitude * np.sin(np.pi * u)
    return (tau - tau[0]) / (tau[-1] - tau[0]) * (t - 1)


def _warped_copy(x, tau):
    return np.stack([np.interp(tau, np.arange(len(x)), x[:, c]) for c in range(x.shape[1])], 1)


def _path_error(alignment, tau):
    """Mean distance, in frames of x, between the path's cells and the true warp."""
    ij = np.argwhere(np.asarray(alignment) > 0.5)
    return float(np.mean(np.abs(ij[:, 0] - tau[ij[:, 1]])))


def _is_warping_path(alignment):
    ij = np.argwhere(np.asarray(alignment) > 0.5)
    t, s = np.shape(alignment)
    steps = np.diff(ij, axis=0)
    ok_steps = {(0, 1), (1, 0), (1, 1)}
    return (
        tuple(ij[0]) == (0, 0)
        and tuple(ij[-1]) == (t - 1, s - 1)
        and all(tuple(d) in ok_steps for d in steps)
    )


@pytest.fixture(scope="module")
def trace_pairs():
    """Delay-embedded Trace series with rotated, noisy, warped copies (and 5-D mixtures)."""
    data, _, _, _ = CachedDatasets().load_dataset("Trace")
    pairs = []
    for idx in range(N_SERIES):
        x = _embed(data[idx, :, 0])
        tau = _warp(len(x), 70)
        warped = _warped_copy(x, tau)
        rng = np.random.default_rng(idx)
        rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        noise = 0.05 * x.std() * rng.normal(size=warped.shape)
        mixing = rng.normal(size=(3, 5))
        noise5 = 0.05 * x.std() * rng.normal(size=(len(tau), 5))
        pairs.append(
            {
                "x": x.astype(np.float32),
                "y": (warped @ rotation + noise).astype(np.float32),
                "y5": (warped @ mixing + noise5).astype(np.float32),
                "tau": tau,
            }
        )
    return pairs


# ctw compiles itself (static k, max_iter, window): every call below with these settings and
# the Trace shapes reuses one compiled program.
CTW = functools.partial(cw.ctw, k=K, reg=REG)
RAW_DTW = jax.jit(lambda x, y: dtw_path(squared_euclidean(x, y)))


# ------------------------------------------------------------------------------------------
# Recovery of a known warp.
# ------------------------------------------------------------------------------------------


def test_ctw_recovers_warp_better_than_dtw_on_raw_features(trace_pairs):
    raw, ctw_err = [], []
    for p in trace_pairs:
        _, raw_path = RAW_DTW(p["x"], p["y"])
        out = CTW(p["x"], p["y"])
        assert bool(out.converged) and _is_warping_path(out.alignment)
        n = int(out.n_iter)
        obj = np.asarray(out.objective)
        assert n >= 2 and np.all(np.isnan(obj[n:])) and np.all(np.isfinite(obj[:n]))
        assert np.all(obj[1:n] <= obj[: n - 1] * (1 + OBJ_RTOL))
        raw.append(_path_error(raw_path, p["tau"]))
        ctw_err.append(_path_error(out.alignment, p["tau"]))
    raw, ctw_err = np.array(raw), np.array(ctw_err)
    # DTW on rotated features is lost (errors of 10-30 frames on 88); CTW is within a few.
    assert np.mean(ctw_err) < np.mean(raw) / 3, (ctw_err, raw)
    assert np.median(ctw_err) < 5.0, ctw_err
    assert np.sum(ctw_err < raw) >= N_SERIES - 1, (ctw_err, raw)


def test_ctw_different_feature_dimensions(trace_pairs):
    """3 features against 5: plain DTW cannot compare them, CTW aligns them."""
    p = trace_pairs[3]
    with pytest.raises(ValueError, match="same feature size"):
        squared_euclidean(p["x"], p["y5"])
    out = cw.ctw(p["x"], p["y5"], k=K, reg=REG)
    assert out.wx.shape == (3, K) and out.wy.shape == (5, K)
    assert bool(out.converged) and _is_warping_path(out.alignment)
    assert _path_error(out.alignment, p["tau"]) < 5.0


def test_ctw_fixed_point_in_float64_numpy(trace_pairs):
    """At convergence: DTW-optimal path for the projections, CCA-optimal projections for it."""
    p = trace_pairs[0]
    out = CTW(p["x"], p["y"])
    x, y = (np.asarray(v, np.float64) for v in (p["x"], p["y"]))
    a = np.asarray(out.alignment, np.float64)

    def whiten(v):
        c = v - v.mean(0)
        cov = c.T @ c / len(v)
        chol = scipy.linalg.cholesky(cov + REG * np.trace(cov) / v.shape[1] * np.eye(v.shape[1]))
        return scipy.linalg.solve_triangular(chol, c.T, trans="T").T, chol  # c @ U^-1

    (xw, ux), (yw, uy) = whiten(x), whiten(y)
    vx, vy = ux @ np.asarray(out.wx, np.float64), uy @ np.asarray(out.wy, np.float64)
    np.testing.assert_allclose(vx.T @ vx, np.eye(K), atol=1e-4)  # orthonormal, whitened
    np.testing.assert_allclose(vy.T @ vy, np.eye(K), atol=1e-4)
    px, py = xw @ vx, yw @ vy
    cost = (xw**2).sum(1)[:, None] + (yw**2).sum(1)[None, :] - 2 * px @ py.T
    value = references.dtw_table(cost)[-1, -1]
    np.testing.assert_allclose(np.sum(a * cost), value, rtol=1e-4)  # the path is DTW-optimal
    np.testing.assert_allclose(out.objective[int(out.n_iter) - 1], value, rtol=1e-4)
    # the projections attain von Neumann's bound for this path: sum of the top-k singular values
    top = np.linalg.svd(xw.T @ a @ yw, compute_uv=False)[:K].sum()
    np.testing.assert_allclose(np.trace(vx.T @ xw.T @ a @ yw @ vy), top, rtol=1e-4)
    np.testing.assert_allclose(out.mean_x, x.mean(0), rtol=1e-5, atol=1e-6)


def test_ctw_vmap_equals_loop(trace_pairs):
    xs = np.stack([p["x"] for p in trace_pairs[:2]])
    ys = np.stack([p["y"] for p in trace_pairs[:2]])
    batched = jax.vmap(lambda x, y: CTW(x, y))(xs, ys)
    for i in range(2):
        single = CTW(xs[i], ys[i])
        np.testing.assert_array_equal(batched.alignment[i], single.alignment)
        np.testing.assert_allclose(batched.wx[i], single.wx, rtol=1e-4, atol=1e-5)
        assert int(batched.n_iter[i]) == int(single.n_iter)


def test_ctw_init_and_window(trace_pairs):
    p = trace_pairs[1]
    out = CTW(p["x"], p["y"])
    # started from its own fixed point, CTW stops after one iteration with the same path
    again = cw.ctw(p["x"], p["y"], k=K, reg=REG, init=out.alignment)
    assert int(again.n_iter) == 1 and bool(again.converged)
    np.testing.assert_array_equal(again.alignment, out.alignment)
    banded = cw.ctw(p["x"], p["y"], k=K, reg=REG, window=3, max_iter=3)
    a = np.asarray(banded.alignment)
    mask = references.admissible(*a.shape, 3)
    assert _is_warping_path(a) and np.all(a[~mask] == 0)


# ------------------------------------------------------------------------------------------
# Soft CTW.
# ------------------------------------------------------------------------------------------


def _small_pair(dtype=np.float64):
    u = np.linspace(0.0, 1.0, 14)
    w = np.linspace(0.0, 1.0, 11) ** 1.4
    x = np.stack([np.sin(5 * u), np.cos(3 * u), u], 1)
    rng = np.random.default_rng(0)
    y = np.stack([np.cos(3 * w), np.sin(5 * w)], 1) @ rng.normal(size=(2, 2))
    return x.astype(dtype), (y + 0.01 * rng.normal(size=y.shape)).astype(dtype)


def test_soft_ctw_objective_and_gradient_by_finite_differences_x64():
    x, y = _small_pair()
    kw = dict(gamma=0.3, k=2, reg=0.05, max_iter=300, tol=0.0)

    with x64():

        def value(x, y):
            out = cw.soft_ctw(x, y, **kw)
            return out.value, out

        vg = jax.jit(jax.value_and_grad(value, argnums=(0, 1), has_aux=True))
        (v, out), (gx, gy) = vg(x, y)
        n = int(out.n_iter)
        obj = np.asarray(out.objective)[:n]
        assert n > 3 and np.all(np.diff(obj) <= 1e-12 * np.abs(obj[1:]))
        np.testing.assert_allclose(v, obj[-1], rtol=1e-12)
        e = np.asarray(out.alignment)
        assert e[0, 0] == pytest.approx(1.0) and e[-1, -1] == pytest.approx(1.0)
        # directional finite differences of the whole procedure (projections re-fitted)
        rng = np.random.default_rng(1)
        dx, dy = rng.normal(size=x.shape), rng.normal(size=y.shape)
        eps = 1e-5
        (vp, _), _ = vg(x + eps * dx, y + eps * dy)
        (vm, _), _ = vg(x - eps * dx, y - eps * dy)
        fd = (float(vp) - float(vm)) / (2 * eps)
        analytic = float(np.sum(np.asarray(gx) * dx) + np.sum(np.asarray(gy) * dy))
        np.testing.assert_allclose(analytic, fd, rtol=1e-5)


def test_soft_ctw_float32_vmap_and_grad_finite():
    x, y = _small_pair(np.float32)
    fn = jax.jit(jax.vmap(jax.value_and_grad(lambda x, y: cw.soft_ctw(x, y, gamma=0.1).value)))
    values, grads = fn(np.stack([x, x[::-1]]), np.stack([y, y]))
    assert values.dtype == jnp.float32 and grads.shape == (2, *x.shape)
    assert np.all(np.isfinite(np.asarray(grads)))
    np.testing.assert_allclose(values[0], cw.soft_ctw(x, y, gamma=0.1).value, rtol=1e-4)


# ------------------------------------------------------------------------------------------
# Bad input.
# ------------------------------------------------------------------------------------------


def test_bad_input():
    x, y = _small_pair(np.float32)
    with pytest.raises(ValueError, match=r"`x` must be a 2-D array \[t, dx\]"):
        cw.ctw(x[:, 0], y)
    with pytest.raises(ValueError, match=r"`k`=3 must be between 1 and min\(dx, dy\) = 2"):
        cw.ctw(x, y, k=3)
    with pytest.raises(ValueError, match="`reg` must be a finite positive number"):
        cw.ctw(x, y, reg=0.0)
    with pytest.raises(ValueError, match="`gamma` must be a finite positive number"):
        cw.soft_ctw(x, y, gamma=0.0)
    with pytest.raises(ValueError, match="`max_iter` must be a positive int"):
        cw.ctw(x, y, max_iter=0)
    with pytest.raises(ValueError, match=r"`init` must be an alignment of shape \[t, s\]"):
        cw.soft_ctw(x, y, init=np.ones((3, 3)))
    with pytest.raises(ValueError, match="`window` must be None or a non-negative int"):
        cw.ctw(x, y, window=-1)
    with pytest.raises(ValueError, match="non-empty"):
        cw.ctw(x[:0], y)
