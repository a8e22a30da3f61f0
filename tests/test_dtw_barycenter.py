"""Tests for the soft-DTW barycenter and DBA (alignment._src.dtw_barycenter).

References: tslearn 0.10 ``softdtw_barycenter`` (scipy L-BFGS-B) and ``dtw_barycenter_averaging``
with the same ``init``. Few distinct static configurations, to keep compilation (most of the
time) small.
"""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alignment import ConvergenceWarning
from alignment._src.dtw_barycenter import (
    DTWBarycenterOutput,
    SoftDTWBarycenterOutput,
    dtw_barycenter,
    soft_dtw_barycenter,
)

pytest.importorskip("tslearn")

K, T, D = 4, 8, 2
GAMMA = 1.0
OBJ_RTOL = 1e-5  # float32 objective: ours <= tslearn's (1 + OBJ_RTOL)
BARY_ATOL = 5e-3  # float32 L-BFGS versus scipy L-BFGS-B on a smooth, locally convex problem
DBA_ATOL = 1e-5  # float32 closed-form updates
LENGTHS = np.array([8, 5, 6, 8])
WEIGHTS = np.array([1.0, 2.0, 0.5, 1.5], np.float32)

# tslearn runs in a subprocess with NUMBA_DISABLE_JIT=1: its numba compilation alone takes
# ~40 s of CPU, while its pure-Python code needs well under a second at these sizes (and the
# flag must not leak into other test modules that share this process).
_TSLEARN_SCRIPT = """
import sys, numpy as np
from tslearn.barycenters import softdtw_barycenter, dtw_barycenter_averaging
from tslearn.metrics import dtw
from tslearn.utils import to_time_series_dataset
d = dict(np.load(sys.argv[1]))
xs, init, lengths, w, x1 = d["xs"], d["init"], d["lengths"], d["weights"], d["x1"]
var = to_time_series_dataset([xs[i, :n] for i, n in enumerate(lengths)])
var1 = to_time_series_dataset([x1[:n] for n in lengths])
out = {}
out["soft"] = softdtw_barycenter(xs, gamma=1.0, init=init, max_iter=500, tol=1e-10)
out["soft_var"] = softdtw_barycenter(var, gamma=1.0, init=init, max_iter=500, tol=1e-10)
out["init_var"] = softdtw_barycenter(var1, gamma=1.0, max_iter=0)
for m in (2, 50):
    out[f"dba{m}"] = dtw_barycenter_averaging(xs, init_barycenter=init, max_iter=m, tol=-1)
    out[f"dba{m}_value"] = np.mean([dtw(out[f"dba{m}"], x) ** 2 for x in xs])
out["dba_var"] = dtw_barycenter_averaging(
    var, init_barycenter=init, weights=w, max_iter=50, tol=-1
)
np.savez(sys.argv[2], **out)
"""


def _data():
    rng = np.random.default_rng(1234)
    xs = rng.normal(size=(K, T, D)).astype(np.float32)
    x1 = rng.normal(size=(T, D)).astype(np.float32)
    return xs, xs.mean(axis=0), x1


@pytest.fixture(scope="module")
def tslearn_refs(tmp_path_factory):
    xs, init, x1 = _data()
    tmp = tmp_path_factory.mktemp("tslearn")
    np.savez(
        tmp / "in.npz",
        xs=xs.astype(np.float64),
        init=init.astype(np.float64),
        lengths=LENGTHS,
        weights=WEIGHTS.astype(np.float64),
        x1=x1.astype(np.float64),
    )
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", JAX_PLATFORMS="cpu")
    subprocess.run(
        [sys.executable, "-c", _TSLEARN_SCRIPT, str(tmp / "in.npz"), str(tmp / "out.npz")],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    return dict(np.load(tmp / "out.npz"))


@pytest.fixture
def data():
    xs, init, _ = _data()
    return xs, init


def _soft_dtw_np(z, x, gamma=GAMMA):
    """float64 soft-DTW by the textbook recursion (squared Euclidean cost, not halved)."""
    z, x = np.asarray(z, np.float64), np.asarray(x, np.float64)
    cost = ((z[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    r = np.full((len(z) + 1, len(x) + 1), np.inf)
    r[0, 0] = 0.0
    for i in range(1, len(z) + 1):
        for j in range(1, len(x) + 1):
            prev = np.array([r[i - 1, j - 1], r[i - 1, j], r[i, j - 1]])
            m = prev.min()
            r[i, j] = cost[i - 1, j - 1] + m - gamma * np.log(np.exp(-(prev - m) / gamma).sum())
    return r[-1, -1]


def _objective(z, series, gamma=GAMMA):
    """float64 soft-DTW objective with uniform normalised weights (our ``value``)."""
    return float(np.mean([_soft_dtw_np(z, x, gamma) for x in series]))


def _padded(xs, fill):
    xp = xs.copy()
    for i, n in enumerate(LENGTHS):
        xp[i, n:] = fill
    return xp


# --------------------------------------------------------------------------------------------
# soft_dtw_barycenter
# --------------------------------------------------------------------------------------------


def test_soft_matches_tslearn(data, tslearn_refs):
    xs, init = data
    out = soft_dtw_barycenter(xs, gamma=GAMMA, init=init)
    assert isinstance(out, SoftDTWBarycenterOutput)
    assert out.barycenter.shape == (T, D) and out.barycenter.dtype == jnp.float32
    assert bool(out.converged) and 1 <= int(out.n_iters) <= 100
    ref = tslearn_refs["soft"]
    ours, theirs = _objective(out.barycenter, xs), _objective(ref, xs)
    # tslearn's objective is sum_k sdtw (weights 1): K times ours; same minimiser.
    assert ours <= theirs * (1 + OBJ_RTOL) + 1e-6
    np.testing.assert_allclose(float(out.value), ours, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(out.barycenter), ref, atol=BARY_ATOL)
    # The objective decreased from the init.
    assert ours < _objective(init, xs)


def test_soft_padded_matches_tslearn_and_ignores_padding(data, tslearn_refs):
    xs, init = data
    nan_pad = soft_dtw_barycenter(_padded(xs, np.nan), gamma=GAMMA, lengths=LENGTHS, init=init)
    big_pad = soft_dtw_barycenter(_padded(xs, 1e30), gamma=GAMMA, lengths=LENGTHS, init=init)
    for a, b in zip(nan_pad, big_pad, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.all(np.isfinite(nan_pad.barycenter)) and bool(nan_pad.converged)
    series = [xs[i, :n].astype(np.float64) for i, n in enumerate(LENGTHS)]
    ref = tslearn_refs["soft_var"]
    ours, theirs = _objective(nan_pad.barycenter, series), _objective(ref, series)
    assert ours <= theirs * (1 + OBJ_RTOL) + 1e-6
    np.testing.assert_allclose(np.asarray(nan_pad.barycenter), ref, atol=BARY_ATOL)


def test_soft_default_init_and_identical_series(tslearn_refs):
    _, _, x = _data()
    xs = np.stack([x] * K)
    out = soft_dtw_barycenter(xs, gamma=0.01)
    assert bool(out.converged)
    np.testing.assert_allclose(np.asarray(out.barycenter), x, atol=0.05)
    # The default init is tslearn's (the mean of the series resampled to the padded length).
    ref_init = tslearn_refs["init_var"]
    from alignment._src.dtw_barycenter import _default_init

    ours_init = _default_init(
        jnp.asarray(_padded(np.stack([x] * K), 0.0)), jnp.asarray(LENGTHS), jnp.full((K,), 0.25)
    )
    np.testing.assert_allclose(np.asarray(ours_init), ref_init, atol=1e-6)


def test_soft_jit_vmap_and_traced_bad_gamma(data, rng):
    xs, _ = data
    sets = np.stack([xs, rng.normal(size=(K, T, D)).astype(np.float32), xs])
    inits = sets.mean(axis=1)
    gammas = jnp.array([GAMMA, GAMMA, -1.0])

    @jax.jit
    @jax.vmap
    def batched(s, z0, g):
        return soft_dtw_barycenter(s, gamma=g, init=z0)

    out = batched(sets, inits, gammas)
    for i in range(2):
        one = soft_dtw_barycenter(sets[i], gamma=GAMMA, init=inits[i])
        np.testing.assert_allclose(np.asarray(out.barycenter[i]), one.barycenter, atol=1e-4)
        np.testing.assert_allclose(float(out.value[i]), float(one.value), rtol=1e-5)
    assert np.all(np.isnan(out.barycenter[2])) and np.isnan(out.value[2])
    assert int(out.n_iters[2]) == -1 and not bool(out.converged[2])


# --------------------------------------------------------------------------------------------
# dtw_barycenter (DBA)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_iters", [2, 50])
def test_dba_matches_tslearn(data, tslearn_refs, max_iters):
    xs, init = data
    if max_iters == 2:  # stops before the fixed point: a concrete call warns
        with pytest.warns(ConvergenceWarning):
            out = dtw_barycenter(xs, init=init, max_iters=max_iters, tol=1e-9)
    else:
        out = dtw_barycenter(xs, init=init, max_iters=max_iters, tol=1e-9)
    assert isinstance(out, DTWBarycenterOutput)
    # tslearn with tol=-1 runs exactly max_iter updates (or stops at an increase, never here).
    ref = tslearn_refs[f"dba{max_iters}"]
    np.testing.assert_allclose(np.asarray(out.barycenter), ref, atol=DBA_ATOL)
    if max_iters == 50:
        assert bool(out.converged) and int(out.n_iters) < 50
    else:
        assert int(out.n_iters) == 2
    # value = weighted mean of DTW squared at the returned barycenter.
    expected = tslearn_refs[f"dba{max_iters}_value"]
    np.testing.assert_allclose(float(out.value), expected, rtol=1e-5)


def test_dba_padded_weighted_matches_tslearn(data, tslearn_refs):
    xs, init = data
    w = WEIGHTS
    out = dtw_barycenter(_padded(xs, np.nan), weights=w, lengths=LENGTHS, init=init, tol=1e-9)
    big = dtw_barycenter(_padded(xs, 1e30), weights=w, lengths=LENGTHS, init=init, tol=1e-9)
    for a, b in zip(out, big, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    ref = tslearn_refs["dba_var"]
    assert bool(out.converged)
    np.testing.assert_allclose(np.asarray(out.barycenter), ref, atol=DBA_ATOL)


def test_dba_identical_series_exact():
    _, _, x = _data()
    out = dtw_barycenter(np.stack([x] * K))  # K = 4: the weighted means are exact
    np.testing.assert_array_equal(np.asarray(out.barycenter), x)
    assert float(out.value) == 0.0 and bool(out.converged) and int(out.n_iters) == 1


def test_dba_jit_vmap_and_traced_bad_tol(data, rng):
    xs, _ = data
    sets = np.stack([xs, rng.normal(size=(K, T, D)).astype(np.float32), xs])
    inits = sets.mean(axis=1)
    tols = jnp.array([1e-9, 1e-9, -1.0])
    out = jax.jit(jax.vmap(lambda s, z0, tol: dtw_barycenter(s, init=z0, max_iters=50, tol=tol)))(
        sets, inits, tols
    )
    for i in range(2):
        one = dtw_barycenter(sets[i], init=inits[i], max_iters=50, tol=1e-9)
        np.testing.assert_allclose(np.asarray(out.barycenter[i]), one.barycenter, atol=DBA_ATOL)
        assert int(out.n_iters[i]) == int(one.n_iters)
    assert np.all(np.isnan(out.barycenter[2])) and int(out.n_iters[2]) == -1
    assert not bool(out.converged[2])


def test_dba_nan_data_propagates(data):
    xs, init = data
    xs = xs.copy()
    xs[1, 3, 0] = np.nan
    with pytest.warns(ConvergenceWarning):
        out = dtw_barycenter(xs, init=init, max_iters=50, tol=1e-9)
    assert np.isnan(float(out.value)) and np.all(np.isnan(out.barycenter))


# --------------------------------------------------------------------------------------------
# Bad input (raised at trace time: no compilation needed)
# --------------------------------------------------------------------------------------------

_X = np.zeros((K, T, D), np.float32)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"xs": np.zeros((T, D))}, "xs"),
        ({"xs": np.zeros((0, T, D))}, "xs"),
        ({"xs": _X.astype(np.complex64)}, "xs"),
        ({"xs": None}, "xs"),
        ({"init": np.zeros((T, D + 1))}, "init"),
        ({"init": np.zeros((T,))}, "init"),
        ({"weights": np.ones(K + 1)}, "weights"),
        ({"weights": np.array([1.0, -1.0, 1.0, 1.0])}, "weights"),
        ({"weights": np.array([1.0, np.nan, 1.0, 1.0])}, "weights"),
        ({"lengths": np.array([8, 9, 8, 8])}, "lengths"),
        ({"lengths": np.array([8, 0, 8, 8])}, "lengths"),
        ({"lengths": np.ones(K)}, "lengths"),
        ({"lengths": np.ones(K + 1, int)}, "lengths"),
        ({"tol": 0.0}, "tol"),
        ({"tol": [1e-3, 1e-4]}, "tol"),
        ({"max_iters": 0}, "max_iters"),
        ({"max_iters": 2.5}, "max_iters"),
    ],
)
@pytest.mark.parametrize("fn", ["soft", "dba"])
def test_bad_input(kwargs, name, fn):
    kwargs = dict(kwargs)
    xs = kwargs.pop("xs", _X)
    f = soft_dtw_barycenter if fn == "soft" else dtw_barycenter
    with pytest.raises(ValueError, match=f"`{name}`"):
        f(xs, **kwargs)


@pytest.mark.parametrize("gamma", [0.0, -1.0, np.inf, [1.0, 2.0], 1j, None])
def test_bad_gamma(gamma):
    with pytest.raises(ValueError, match="`gamma`"):
        soft_dtw_barycenter(_X, gamma=gamma)


def test_bad_input_under_jit():
    with pytest.raises(ValueError, match="`init`"):
        jax.jit(lambda x: soft_dtw_barycenter(x, init=jnp.zeros((T, D + 1))))(_X)
    with pytest.raises(ValueError, match="`gamma`"):
        jax.jit(lambda x, g: soft_dtw_barycenter(x, gamma=g))(_X, jnp.ones(2))
    with pytest.raises(ValueError, match="`xs`"):
        jax.jit(dtw_barycenter)(jnp.zeros((T, D)))


def test_zero_weight_series_is_never_read(data):
    """A zero-weight series holding NaN changes nothing (same statics as the padded tests)."""
    xs, init = data
    w = np.array([1.0, 0.0, 1.0, 1.0], np.float32)
    nan_series, zero_series = _padded(xs, np.nan), _padded(xs, np.nan)
    nan_series[1] = np.nan
    zero_series[1] = 0.0
    for f, kw in ((soft_dtw_barycenter, {"gamma": GAMMA}), (dtw_barycenter, {"tol": 1e-9})):
        a = f(nan_series, weights=w, lengths=LENGTHS, init=init, **kw)
        b = f(zero_series, weights=w, lengths=LENGTHS, init=init, **kw)
        assert np.all(np.isfinite(a.barycenter))
        for u, v in zip(a, b, strict=True):
            np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
