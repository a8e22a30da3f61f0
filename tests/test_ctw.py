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
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from tslearn.datasets import CachedDatasets

import alignment as al
from alignment._src import ctw as cw
from alignment._src.costs import squared_euclidean
from alignment._src.dtw import dtw
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


# ctw compiles itself (static k, max_iters, window): every call below with these settings and
# the Trace shapes reuses one compiled program.
CTW = functools.partial(cw.ctw, k=K, relative_reg=REG)
RAW_DTW = jax.jit(lambda x, y: jax.value_and_grad(dtw)(squared_euclidean(x, y)))


# ------------------------------------------------------------------------------------------
# Recovery of a known warp.
# ------------------------------------------------------------------------------------------


def test_ctw_recovers_warp_better_than_dtw_on_raw_features(trace_pairs):
    raw, ctw_err = [], []
    for p in trace_pairs:
        _, raw_path = RAW_DTW(p["x"], p["y"])
        out = CTW(p["x"], p["y"])
        assert bool(out.converged) and _is_warping_path(out.alignment)
        n = int(out.n_iters)
        obj = np.asarray(out.objective)
        assert n >= 2 and np.all(obj[n:] == obj[n - 1]) and np.all(np.isfinite(obj))
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
    out = cw.ctw(p["x"], p["y5"], k=K, relative_reg=REG)
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
    np.testing.assert_allclose(out.objective[int(out.n_iters) - 1], value, rtol=1e-4)
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
        assert int(batched.n_iters[i]) == int(single.n_iters)


def test_ctw_init_and_window(trace_pairs):
    p = trace_pairs[1]
    out = CTW(p["x"], p["y"])
    # started from its own fixed point, CTW stops after one iteration with the same path
    again = cw.ctw(p["x"], p["y"], k=K, relative_reg=REG, init=out.alignment)
    assert int(again.n_iters) == 1 and bool(again.converged)
    np.testing.assert_array_equal(again.alignment, out.alignment)
    with pytest.warns(al.ConvergenceWarning, match="ctw stopped before converging") as record:
        banded = cw.ctw(p["x"], p["y"], k=K, relative_reg=REG, window=3, max_iters=3)
    assert record[0].filename == __file__  # points at the caller
    assert not bool(banded.converged) and int(banded.n_iters) == 3
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
    kw = dict(gamma=0.3, k=2, relative_reg=0.05, max_iters=300, tol=0.0)

    with x64():

        def value(x, y):
            out = cw.soft_ctw(x, y, **kw)
            return out.value, out

        vg = jax.jit(jax.value_and_grad(value, argnums=(0, 1), has_aux=True))
        (v, out), (gx, gy) = vg(x, y)
        n = int(out.n_iters)
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
    with pytest.raises(ValueError, match="`reg` must be a finite non-negative number"):
        cw.ctw(x, y, reg=-1.0)
    with pytest.raises(ValueError, match="cannot both be 0"):
        cw.ctw(x, y, reg=0.0, relative_reg=0.0)
    with pytest.raises(ValueError, match="`gamma` must be a finite positive number"):
        cw.soft_ctw(x, y, gamma=0.0)
    with pytest.raises(ValueError, match="`max_iters` must be an int >= 1"):
        cw.ctw(x, y, max_iters=0)
    with pytest.raises(ValueError, match=r"`init` must be an alignment of shape \[t, s\]"):
        cw.soft_ctw(x, y, init=np.ones((3, 3)))
    with pytest.raises(ValueError, match="`window` must be an int >= 0"):
        cw.ctw(x, y, window=-1)
    with pytest.raises(ValueError, match="non-empty"):
        cw.ctw(x[:0], y)


# ------------------------------------------------------------------------------------------
# Issue 9: one output type, reg absolute / relative_reg relative, units, bad values, dtypes.
# ------------------------------------------------------------------------------------------

SMALL = dict(k=2, max_iters=30)


def test_one_output_type_with_value():
    x, y = _small_pair(np.float32)
    hard = cw.ctw(x, y, **SMALL)
    soft = cw.soft_ctw(x, y, gamma=0.1, **SMALL)
    for out in (hard, soft):
        assert isinstance(out, cw.CTWOutput) and out.n_iters.dtype == jnp.int32
        n = int(out.n_iters)
        np.testing.assert_allclose(out.value, out.objective[n - 1], rtol=1e-5)
    grad = jax.grad(lambda a: cw.ctw(a, y, **SMALL).value)(x)
    assert grad.shape == x.shape and np.all(np.isfinite(np.asarray(grad)))


def test_reg_is_absolute_and_relative_reg_is_scale_free():
    x, y = _small_pair(np.float64)
    with x64():
        out = cw.ctw(x, y, k=2, reg=0.05, relative_reg=0.0)
        # the whitening is S + reg I (absolute, 1/t covariance): Vx = Lx^T Wx is orthonormal
        xc = x - x.mean(0)
        chol = np.linalg.cholesky(xc.T @ xc / len(x) + 0.05 * np.eye(3))
        vx = chol.T @ np.asarray(out.wx)
        np.testing.assert_allclose(vx.T @ vx, np.eye(2), atol=1e-10)
    for c in (1e30, 1e-30):
        xc, yc = (x * c).astype(np.float32), (y * c).astype(np.float32)
        x32, y32 = x.astype(np.float32), y.astype(np.float32)
        # relative_reg (the default) is scale-free
        base, scaled = cw.ctw(x32, y32, **SMALL), cw.ctw(xc, yc, **SMALL)
        np.testing.assert_array_equal(scaled.alignment, base.alignment)
        np.testing.assert_allclose(scaled.value, base.value, rtol=1e-4)
        np.testing.assert_allclose(np.asarray(scaled.wx, np.float64) * c, base.wx, rtol=1e-3)
        # an absolute reg rescaled by c**2 (outside float32 itself) gives the same result
        base = cw.soft_ctw(x32, y32, gamma=0.1, reg=0.05, relative_reg=0.0, **SMALL)
        scaled = cw.soft_ctw(xc, yc, gamma=0.1, reg=0.05 * c**2, relative_reg=0.0, **SMALL)
        np.testing.assert_allclose(scaled.value, base.value, rtol=1e-4)
        np.testing.assert_allclose(scaled.alignment, base.alignment, atol=1e-3)


def test_traced_bad_values_give_nan():
    x, y = _small_pair(np.float32)
    init = np.asarray(cw._straight_path(len(x), len(y), np.float32))
    soft = jax.jit(
        lambda g, r, rr, tol, a: cw.soft_ctw(
            x, y, gamma=g, reg=r, relative_reg=rr, tol=tol, init=a, **SMALL
        )
    )
    hard = jax.jit(lambda r, rr, a: cw.ctw(x, y, reg=r, relative_reg=rr, init=a, **SMALL))
    good = dict(g=0.1, r=0.0, rr=1e-3, tol=1e-6, a=init)
    assert np.isfinite(float(soft(**good).value))
    bad_cases = [
        dict(g=-1.0),
        dict(g=np.nan),
        dict(tol=np.nan),
        dict(tol=-1.0),
        dict(r=-1.0),
        dict(rr=np.inf),
        dict(r=0.0, rr=0.0),
        dict(a=-init),
    ]
    for case in bad_cases:
        outs = [soft(**{**good, **case})]
        if "g" not in case and "tol" not in case:
            outs.append(hard(good["r"], good["rr"], good["a"]) if False else None)
            outs[-1] = hard(case.get("r", 0.0), case.get("rr", 1e-3), case.get("a", init))
        for out in outs:
            for name, leaf in out._asdict().items():
                leaf = np.asarray(leaf)
                if name == "n_iters":
                    assert leaf == -1, case
                elif name == "converged":
                    assert not leaf, case
                else:
                    assert np.all(np.isnan(leaf)), (case, name)


def test_concrete_bad_values_raise():
    x, y = _small_pair(np.float32)
    init = np.ones((len(x), len(y)), np.float32)
    with pytest.raises(ValueError, match="`init` must be a non-negative alignment"):
        cw.ctw(x, y, init=-init)
    with pytest.raises(ValueError, match="`init` must be finite"):
        cw.soft_ctw(x, y, init=init * np.nan)
    with pytest.raises(ValueError, match="`tol` must be a finite non-negative number"):
        cw.soft_ctw(x, y, tol=np.nan)
    with pytest.raises(ValueError, match="`relative_reg` must be a finite non-negative"):
        cw.ctw(x, y, relative_reg=-1.0)
    for name in ("gamma", "tol", "reg", "relative_reg"):
        with pytest.raises(ValueError, match=f"`{name}` must be a scalar"):
            jax.jit(lambda v, name=name: cw.soft_ctw(x, y, **{name: v}))(jnp.ones(2))
    with pytest.raises(ValueError, match="`x` must be real"):
        cw.ctw(x.astype(np.complex64), y)
    with pytest.raises(ValueError, match="`gamma` must be real"):
        cw.soft_ctw(x, y, gamma=1.0 + 1.0j)
    for k in (1.5, True, np.array(1)):
        with pytest.raises(ValueError, match="`k` must be None or a Python int"):
            cw.ctw(x, y, k=k)
    with pytest.raises(ValueError, match="`max_iters` must be a Python int"):
        cw.soft_ctw(x, y, max_iters=2.0)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_low_precision_is_computed_in_float32(dtype):
    x, y = _small_pair(np.float32)
    xl, yl = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    out = cw.soft_ctw(xl, yl, gamma=0.1, **SMALL)
    ref = cw.soft_ctw(np.asarray(xl, np.float32), np.asarray(yl, np.float32), gamma=0.1, **SMALL)
    for name, leaf in out._asdict().items():
        if name not in ("n_iters", "converged"):
            assert leaf.dtype == dtype, name
    np.testing.assert_allclose(float(out.value), float(ref.value), rtol=2e-2)
    assert cw.ctw(xl, yl, **SMALL).alignment.dtype == dtype


def test_nan_in_data_propagates_and_unconverged_warns():
    x, y = _small_pair(np.float32)
    x = x.copy()
    x[2, 0] = np.nan
    for fn in (cw.ctw, functools.partial(cw.soft_ctw, gamma=0.1)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", al.ConvergenceWarning)
            out = fn(x, y, **SMALL)
        assert np.isnan(float(out.value))
    x, y = _small_pair(np.float32)
    with pytest.warns(al.ConvergenceWarning, match="soft_ctw stopped before converging"):
        out = cw.soft_ctw(x, y, gamma=0.1, k=2, max_iters=1, tol=0.0)
    assert not bool(out.converged)
