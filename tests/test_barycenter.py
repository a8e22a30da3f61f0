"""Tests for alignment._src.barycenter against independent references.

References: POT (``ot.bregman.barycenter(..., method="sinkhorn_log")``,
``ot.lp.free_support_barycenter``, ``ot.bregman.free_support_sinkhorn_barycenter``), plain
(non-log) iterative Bregman projections in NumPy for a non-square cost, closed forms (identical
histograms: ``K^T (a / K 1)``, tending to ``a`` as epsilon -> 0; the W2 barycenter of 1-D
Gaussians; the barycenter of a point cloud and its image by an SPD affine map, which is exact OT
between the clouds), and directional finite differences under float64.

Compile time dominates: each solver is compiled once as a jitted value-and-gradient on one
shape (``K`` histograms on ``NB`` grid points; ``K`` clouds of ``NP`` points padded to ``MP``),
which the float64 tests share.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import ot as pot
import pytest

from alignment._src.barycenter import (
    FreeSupportBarycenterOutput,
    SinkhornBarycenterOutput,
    free_support_barycenter,
    sinkhorn_barycenter,
)
from alignment._src.checks import ConvergenceWarning

K, NB = 3, 40  # histograms, grid points
NP, MP, D = 6, 8, 2  # barycenter points, padded cloud size, dimension
TIGHT = 1e-12  # solver threshold of float64 comparisons
ITERS = 20_000
F64 = 1e-9  # float64 agreement of converged solvers
FD = 1e-5  # directional finite differences, float64, relative
LAM = np.array([0.2, 0.3, 0.5])
GRID = np.linspace(0.0, 1.0, NB)
COST = (GRID[:, None] - GRID[None, :]) ** 2
PROBE = np.sin(np.arange(NB) * 1.3)
PROBE_X = np.cos(np.arange(NP * D) * 0.7).reshape(NP, D)


def _bary_loss(weights, cost, lam, eps, tol):
    out = sinkhorn_barycenter(weights, cost, lambdas=lam, epsilon=eps, tol=tol, max_iters=ITERS)
    return jnp.sum(PROBE * out.barycenter), out


bary = jax.jit(jax.value_and_grad(_bary_loss, argnums=(0, 1, 2, 3), has_aux=True))


def _exact_loss(ys, a, init, lam):
    out = free_support_barycenter(ys, a, init=init, lambdas=lam, tol=1e-20, max_iters=50)
    return jnp.sum(PROBE_X * out.barycenter), out


exact = jax.jit(jax.value_and_grad(_exact_loss, argnums=(0, 3), has_aux=True))


def _entropic_loss(clouds, weights, init, b, eps):
    out = free_support_barycenter(
        clouds, weights, init=init, b=b, epsilon=eps, lambdas=jnp.array([0.4, 0.6]),
        tol=1e-14, max_iters=200, ot_tol=1e-12, ot_max_iters=5000,
    )  # fmt: skip
    value = jnp.sum(jnp.where((b > 0)[:, None], PROBE_X * out.barycenter, 0.0))
    return value, out


entropic = jax.jit(jax.value_and_grad(_entropic_loss, argnums=(0, 4), has_aux=True))


def _histograms(rng, k=K, n=NB):
    w = rng.uniform(0.05, 1.0, (k, n))
    return w / w.sum(axis=1, keepdims=True)


def _gaussian(mean, std):
    w = np.exp(-0.5 * ((GRID - mean) / std) ** 2)
    return w / w.sum()


def _ibp_numpy(hists, cost, lam, eps, iters):
    """Plain (non-log) iterative Bregman projections (Benamou et al., 2015), any [n, m]."""
    kernel = np.exp(-cost / eps)
    v = np.ones((hists.shape[0], cost.shape[1]))
    for _ in range(iters):
        u = hists / (v @ kernel.T)
        ktu = u @ kernel
        p = np.exp(lam @ np.log(ktu))
        v = p / ktu
    return p


# ------------------------------------------------------------------------------------------
# sinkhorn_barycenter
# ------------------------------------------------------------------------------------------


def test_sinkhorn_barycenter_matches_pot(enable_x64, rng):
    hists = _histograms(rng)
    for lam in (LAM, np.full(K, 1.0 / K)):
        (_, out), _ = bary(hists, COST, lam, 0.01, TIGHT)
        assert isinstance(out, SinkhornBarycenterOutput) and bool(out.converged)
        ref = pot.bregman.barycenter(
            hists.T, COST, 0.01, lam, method="sinkhorn_log", stopThr=1e-15, numItermax=ITERS
        )
        np.testing.assert_allclose(out.barycenter, ref, atol=F64 * ref.max())
        assert float(out.marginal_error) < TIGHT and 0 < int(out.n_iters) < ITERS


def test_identical_histograms_closed_form(enable_x64, rng):
    a = _histograms(rng, 1)[0]
    hists = np.stack([a] * K)
    kernel = np.exp(-COST / 0.01)
    (_, out), _ = bary(hists, COST, LAM, 0.01, TIGHT)
    np.testing.assert_allclose(out.barycenter, kernel.T @ (a / (kernel @ np.ones(NB))), rtol=1e-12)
    # epsilon -> 0 (far below the squared grid step; log domain): the histogram itself
    (_, out), _ = bary(hists, COST, LAM, 1e-5, TIGHT)
    np.testing.assert_allclose(out.barycenter, a, rtol=1e-12)


def test_gaussians_closed_form_and_zero_lambda_never_read(enable_x64):
    # the W2 barycenter of N(m1, s1^2) and N(m2, s2^2) is N((m1 + m2) / 2, ((s1 + s2) / 2)^2)
    hists = np.stack([_gaussian(0.3, 0.06), _gaussian(0.7, 0.1), np.full(NB, np.nan)])
    lam = np.array([0.5, 0.5, 0.0])  # the third histogram is never read
    (_, out), grads = bary(hists, COST, lam, 2e-4, 1e-10)
    p = np.asarray(out.barycenter)
    mean = np.sum(p * GRID)
    std = np.sqrt(np.sum(p * (GRID - mean) ** 2))
    assert abs(mean - 0.5) < 1e-3 and abs(std - 0.08) < 3e-3, (mean, std)
    assert all(np.all(np.isfinite(g)) for g in grads)
    assert np.all(np.asarray(grads[0])[2] == 0.0)


def test_padding_is_never_read_and_nan_propagates(enable_x64, rng):
    hists = _histograms(rng)
    hists[:, :5] = 0.0  # rows 0..4 of the cost carry no mass
    hists /= hists.sum(axis=1, keepdims=True)
    lam = np.array([0.5, 0.5, 0.0])
    (ref_value, ref_out), ref_grads = bary(hists, COST, lam, 0.02, TIGHT)
    for junk in (np.nan, np.inf, 1e30):
        h, c = hists.copy(), COST.copy()
        h[2] = junk  # measure of zero lambda
        c[:5] = junk  # rows no measure puts mass on
        (value, out), grads = bary(h, c, lam, 0.02, TIGHT)
        assert float(value) == float(ref_value), junk
        np.testing.assert_array_equal(out.barycenter, ref_out.barycenter)
        assert np.all(np.asarray(grads[0])[2] == 0.0) and np.all(np.asarray(grads[1])[:5] == 0)
        np.testing.assert_array_equal(grads[1][5:], ref_grads[1][5:])
    c = COST.copy()
    c[7, 3] = np.nan  # a real entry
    (value, out), grads = bary(hists, c, lam, 0.02, TIGHT)
    assert np.all(np.isnan(out.barycenter)) and np.isnan(value) and not bool(out.converged)
    assert np.any(np.isnan(grads[1]))


def test_sinkhorn_barycenter_gradients_match_finite_differences(enable_x64, rng):
    hists = _histograms(rng)
    args = [hists, COST, LAM, 0.05]
    _, grads = bary(*args, TIGHT)
    directions = [rng.normal(size=hists.shape), rng.normal(size=COST.shape), rng.normal(size=K)]
    directions[0] -= directions[0].mean(axis=1, keepdims=True)  # stay on the simplex
    directions[2] -= directions[2].mean()
    directions.append(1.0)
    h = 1e-6
    for i, d in enumerate(directions):
        plus, minus = list(args), list(args)
        plus[i] = args[i] + h * d
        minus[i] = args[i] - h * d
        fd = (bary(*plus, TIGHT)[0][0] - bary(*minus, TIGHT)[0][0]) / (2 * h)
        np.testing.assert_allclose(np.sum(np.asarray(grads[i]) * d), fd, rtol=FD, err_msg=str(i))


def test_sinkhorn_barycenter_vmap_equals_loop_and_traced_bad_values(enable_x64, rng):
    batch = np.stack([_histograms(rng) for _ in range(4)])
    batch[2, 0] *= 2.0  # does not sum to 1: NaN for that problem only
    lams = np.stack([LAM, LAM, LAM, np.array([0.5, 0.6, -0.1])])  # negative lambda
    run = jax.jit(
        jax.vmap(
            lambda w, lam: sinkhorn_barycenter(
                w, COST, lambdas=lam, epsilon=0.05, tol=TIGHT, max_iters=ITERS
            )
        )
    )
    out = run(batch, lams)
    for i in (0, 1):
        (_, single), _ = bary(batch[i], COST, lams[i], 0.05, TIGHT)
        np.testing.assert_allclose(out.barycenter[i], single.barycenter, rtol=1e-12)
        assert int(out.n_iters[i]) == int(single.n_iters)
    for i in (2, 3):
        assert np.all(np.isnan(out.barycenter[i])) and np.isnan(out.marginal_error[i])
        assert int(out.n_iters[i]) == -1 and not bool(out.converged[i])


def test_non_square_cost_matches_plain_ibp_and_unconverged_warns(enable_x64, rng):
    hists = _histograms(rng, 2, 30)
    support = np.linspace(0.1, 0.9, 20)
    cost = (np.linspace(0.0, 1.0, 30)[:, None] - support[None, :]) ** 2
    lam = np.array([0.3, 0.7])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = sinkhorn_barycenter(hists, cost, lambdas=lam, epsilon=0.05, tol=TIGHT, max_iters=3000)
    assert out.barycenter.shape == (20,) and bool(out.converged)
    ref = _ibp_numpy(hists, cost, lam, 0.05, 3000)
    np.testing.assert_allclose(out.barycenter, ref, rtol=1e-10)
    with pytest.warns(ConvergenceWarning, match="sinkhorn_barycenter"):
        out = sinkhorn_barycenter(hists, cost, lambdas=lam, epsilon=1e-4, tol=TIGHT, max_iters=3000)
    assert not bool(out.converged) and int(out.n_iters) == 3000


def test_sinkhorn_barycenter_low_precision_runs_in_float32(rng):
    hists = _histograms(rng).astype(np.float32)
    out = sinkhorn_barycenter(
        jnp.asarray(hists, jnp.bfloat16), jnp.asarray(COST, jnp.bfloat16), epsilon=0.05
    )
    assert out.barycenter.dtype == jnp.bfloat16 and out.marginal_error.dtype == jnp.bfloat16
    assert bool(out.converged)
    ref = pot.bregman.barycenter(
        hists.T.astype(np.float64), COST, 0.05, method="sinkhorn_log", stopThr=1e-8
    )
    np.testing.assert_allclose(np.float32(out.barycenter), ref, atol=2e-2 * ref.max())


@pytest.mark.parametrize(
    ("weights", "cost", "kwargs", "match"),
    [
        (np.ones(4) / 4, np.ones((4, 4)), {}, "`weights_list` must be a 2-D array"),
        (np.ones((2, 4)) / 4, np.ones(4), {}, "`cost` must be a 2-D array"),
        (np.ones((2, 4)) / 4, np.ones((3, 4)), {}, "`cost` must have shape"),
        (np.ones((2, 4)) / 4 * 1j, np.ones((4, 4)), {}, "`weights_list` must be real"),
        (np.ones((2, 4)) / 4, np.ones((4, 4)) * 1j, {}, "`cost` must be real"),
        (np.ones((2, 4)) / 3, np.ones((4, 4)), {}, "`weights_list` row 0 must sum to 1"),
        (np.array([[0.5, 0.5, 0.5, -0.5], [0.25] * 4]), np.ones((4, 4)), {}, "non-negative"),
        (np.array([[np.nan, 0.5, 0.5, 0], [0.25] * 4]), np.ones((4, 4)), {}, "must be finite"),
        (np.ones((2, 4)) / 4, np.ones((4, 4)), {"lambdas": [1.0]}, "`lambdas` must have shape"),
        (np.ones((2, 4)) / 4, np.ones((4, 4)), {"lambdas": [0.5, 0.6]}, "`lambdas` must sum"),
        (np.ones((2, 4)) / 4, np.ones((4, 4)), {"lambdas": [1.5, -0.5]}, "non-negative"),
        (np.ones((2, 4)) / 4, np.ones((4, 4)), {"epsilon": 0.0}, "`epsilon` must be a finite"),
        (np.ones((2, 4)) / 4, np.ones((4, 4)), {"epsilon": -1.0}, "`epsilon` must be a finite"),
        (np.ones((2, 4)) / 4, np.ones((4, 4)), {"epsilon": [0.1, 0.2]}, "`epsilon` must be a sc"),
        (np.ones((2, 4)) / 4, np.ones((4, 4)), {"epsilon": 1j}, "`epsilon` must be real"),
        (np.ones((2, 4)) / 4, np.ones((4, 4)), {"tol": np.nan}, "`tol` must be a finite"),
        (np.ones((2, 4)) / 4, np.ones((4, 4)), {"max_iters": 0}, "`max_iters` must be an int"),
        (np.ones((2, 4)) / 4, np.ones((4, 4)), {"inner_iters": 1.5}, "`inner_iters` must be"),
        (None, np.ones((4, 4)), {}, "`weights_list` must be an array"),
        ([np.ones(4) / 4, np.ones(3) / 3], np.ones((4, 4)), {}, "must share one shape"),
    ],
)
def test_sinkhorn_barycenter_bad_input_raises(weights, cost, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sinkhorn_barycenter(weights, cost, **({"epsilon": 0.1} | kwargs))


def test_sinkhorn_barycenter_shape_errors_raise_under_jit():
    w = np.ones((2, 4)) / 4
    with pytest.raises(ValueError, match="`epsilon` must be a scalar"):
        jax.jit(lambda e: sinkhorn_barycenter(w, np.ones((4, 4)), epsilon=e))(np.ones(2))
    with pytest.raises(ValueError, match="`cost` must have shape"):
        jax.jit(lambda c: sinkhorn_barycenter(w, c, epsilon=0.1))(np.ones((3, 4)))
    with pytest.raises(ValueError, match="`lambdas` must have shape"):
        jax.jit(lambda lam: sinkhorn_barycenter(w, np.ones((4, 4)), lambdas=lam, epsilon=0.1))(
            np.ones(3) / 3
        )


# ------------------------------------------------------------------------------------------
# free_support_barycenter
# ------------------------------------------------------------------------------------------


def _padded_clouds(rng, junk=np.nan):
    """Three clouds of NP points padded to MP (padding holds ``junk``), uniform weights."""
    clouds = [rng.normal(size=(NP, D)) * (1 + i) + i for i in range(K)]
    ys = np.full((K, MP, D), junk)
    a = np.zeros((K, MP))
    for i, c in enumerate(clouds):
        slots = np.sort(rng.choice(MP, NP, replace=False))
        ys[i, slots], a[i, slots] = c, 1.0 / NP
    return clouds, ys, a


def test_exact_matches_pot_and_padding_is_never_read(enable_x64, rng):
    clouds, ys, a = _padded_clouds(rng)
    init = rng.normal(size=(NP, D))
    ref = pot.lp.free_support_barycenter(
        clouds, [np.full(NP, 1.0 / NP)] * K, init, weights=LAM, stopThr=1e-20, numItermax=50
    )
    results = []
    for junk in (np.nan, np.inf, 1e30):
        ys_j = np.where(a[:, :, None] > 0, ys, junk)
        (_, out), grads = exact(ys_j, a, init, LAM)
        assert isinstance(out, FreeSupportBarycenterOutput) and bool(out.converged)
        np.testing.assert_allclose(out.barycenter, ref, atol=1e-12)
        assert np.all(np.asarray(grads[0])[a == 0] == 0.0)
        results.append(np.asarray(out.barycenter))
    np.testing.assert_array_equal(results[0], results[2])
    # NaN in a real point: NaN out
    ys_nan = np.where(a[:, :, None] > 0, ys, 0.0)
    ys_nan[1, np.flatnonzero(a[1])[2], 0] = np.nan
    (value, out), _ = exact(ys_nan, a, init, LAM)
    assert np.isnan(value) and np.any(np.isnan(out.barycenter)) and not bool(out.converged)
    # eager call, list input (padded internally), default uniform weights
    out = free_support_barycenter(clouds, init=init, lambdas=LAM, tol=1e-20, max_iters=50)
    np.testing.assert_allclose(out.barycenter, ref, atol=1e-12)


def test_exact_gaussian_clouds_closed_form(enable_x64, rng):
    # y = A x + m with A SPD is the optimal map from x to y (the gradient of a convex function),
    # for the empirical clouds too: the barycenter is ((1 - t) I + t A) x + t m, which is also
    # the W2 barycenter of the Gaussians N(0, I) and N(m, A^2) applied to the sample
    x = rng.normal(size=(NP, D))
    mat, shift = np.array([[2.0, 0.5], [0.5, 1.0]]), np.array([3.0, -1.0])
    y = x @ mat + shift
    ys = np.zeros((K, MP, D))
    ys[0, :NP], ys[1, :NP], ys[2] = x, y, np.nan
    a = np.zeros((K, MP))
    a[:2, :NP] = 1.0 / NP
    lam = np.array([0.3, 0.7, 0.0])  # the third measure is never read
    perm = rng.permutation(NP)
    (_, out), grads = exact(ys, a, x[perm], lam)
    expected = x @ (0.3 * np.eye(D) + 0.7 * mat) + 0.7 * shift
    np.testing.assert_allclose(out.barycenter, expected[perm], atol=1e-12)
    # the gradient: lambda_k times the probe at the assigned points
    gy = np.asarray(grads[0])
    np.testing.assert_allclose(gy[0, perm], 0.3 * PROBE_X, atol=1e-12)
    np.testing.assert_allclose(gy[1, perm], 0.7 * PROBE_X, atol=1e-12)
    assert np.all(gy[2] == 0.0) and np.all(np.isfinite(grads[1]))


def test_exact_gradients_match_finite_differences(enable_x64, rng):
    _, ys, a = _padded_clouds(rng, junk=0.0)
    init = rng.normal(size=(NP, D))
    _, (gy, glam) = exact(ys, a, init, LAM)
    dy, dlam = rng.normal(size=ys.shape), rng.normal(size=K)
    dlam -= dlam.mean()
    h = 1e-6
    fd = (
        exact(ys + h * dy, a, init, LAM + h * dlam)[0][0]
        - exact(ys - h * dy, a, init, LAM - h * dlam)[0][0]
    ) / (2 * h)
    np.testing.assert_allclose(np.sum(gy * dy) + np.dot(glam, dlam), fd, rtol=FD)


def test_exact_vmap_equals_loop_and_traced_bad_values(enable_x64, rng):
    problems = [_padded_clouds(rng, junk=0.0)[1:] for _ in range(3)]
    ys, a = (np.stack(t) for t in zip(*problems, strict=True))
    a[2, 1] = np.where(a[2, 1] > 0, 1.0 / (NP - 1), 0.0)
    a[2, 1, np.flatnonzero(a[2, 1])[0]] = 0.0  # NP - 1 points: not an assignment
    init = rng.normal(size=(NP, D))
    run = jax.jit(
        jax.vmap(lambda y, w: free_support_barycenter(y, w, init=init, lambdas=LAM, tol=1e-20))
    )
    out = run(ys, a)
    for i in (0, 1):
        (_, single), _ = exact(ys[i], a[i], init, LAM)
        np.testing.assert_allclose(out.barycenter[i], single.barycenter, atol=1e-12)
    assert np.all(np.isnan(out.barycenter[2])) and int(out.n_iters[2]) == -1
    assert not bool(out.converged[2])


def _entropic_problem(rng):
    """Two clouds of 5 and MP points (non-uniform weights) at a scale where epsilon = 2 leaves
    structure (larger relative epsilons collapse the barycenter to one point, intermediate ones
    converge slowly) and where POT's kernel Sinkhorn converges in a few seconds."""
    scale = 5.0
    clouds = [rng.normal(size=(5, D)) * scale, rng.normal(size=(MP, D)) * scale + 2.0 * scale]
    weights = [rng.uniform(0.2, 1.0, 5), rng.uniform(0.2, 1.0, MP)]
    weights = [w / w.sum() for w in weights]
    return clouds, weights, rng.normal(size=(NP, D)) * scale


def _pot_entropic(clouds, weights, init, b=None):
    return pot.bregman.free_support_sinkhorn_barycenter(
        clouds, weights, init, reg=2.0, b=b, weights=np.array([0.4, 0.6]), numItermax=200,
        numInnerItermax=5000, stopThr=1e-14, method="sinkhorn",
    )  # fmt: skip


def test_entropic_matches_pot_with_unequal_sizes_and_padded_support(enable_x64, rng):
    clouds, weights, init = _entropic_problem(rng)
    b = np.full(NP, 1.0 / NP)
    (_, out), _ = entropic(clouds, weights, init, b, 2.0)
    assert bool(out.converged) and np.ptp(np.asarray(out.barycenter)[:, 0]) > 1.0
    np.testing.assert_allclose(out.barycenter, _pot_entropic(clouds, weights, init), atol=1e-7)
    # a barycenter point of zero weight is padding: it keeps init, the others are unchanged
    b_pad = np.append(np.full(NP - 1, 1.0 / (NP - 1)), 0.0)
    init_pad = init.copy()
    init_pad[-1] = np.nan
    (value, out), grads = entropic(clouds, weights, init_pad, b_pad, 2.0)
    ref = _pot_entropic(clouds, weights, init[:-1], b_pad[:-1])
    np.testing.assert_allclose(out.barycenter[:-1], ref, atol=1e-7)
    assert np.all(np.isnan(out.barycenter[-1])) and np.isfinite(value)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_entropic_gradients_match_finite_differences(enable_x64, rng):
    clouds, weights, init = _entropic_problem(rng)
    b = np.full(NP, 1.0 / NP)
    _, (gclouds, geps) = entropic(clouds, weights, init, b, 2.0)
    d0 = rng.normal(size=(5, D))
    h = 1e-5
    shift = lambda s: [clouds[0] + s * d0, clouds[1]]
    fd = (entropic(shift(h), weights, init, b, 2.0)[0][0]
          - entropic(shift(-h), weights, init, b, 2.0)[0][0]) / (2 * h)  # fmt: skip
    np.testing.assert_allclose(np.sum(gclouds[0] * d0), fd, rtol=FD)
    fd = (entropic(clouds, weights, init, b, 2.0 + h)[0][0]
          - entropic(clouds, weights, init, b, 2.0 - h)[0][0]) / (2 * h)  # fmt: skip
    np.testing.assert_allclose(geps, fd, rtol=FD)
    assert abs(float(geps)) > 1e-3  # not the collapsed regime


@pytest.mark.parametrize(
    ("points", "kwargs", "match"),
    [
        (np.ones((2, 3)), {}, "`points_list` must be a non-empty 3-D array"),
        (np.ones((2, 3, 2)), {"init": np.ones((3, 3))}, "`init` must be a non-empty 2-D"),
        (np.ones((2, 3, 2)), {"init": np.ones(3)}, "`init` must be a non-empty 2-D"),
        (np.ones((2, 3, 2)) * 1j, {}, "`points_list` must be real"),
        (np.ones((2, 3, 2)), {"weights_list": np.ones((2, 4)) / 4}, "`weights_list` must have"),
        (np.ones((2, 3, 2)), {"weights_list": np.ones((2, 3)) / 2}, "row 0 must sum to 1"),
        (np.ones((2, 3, 2)), {"weights_list": [[1, 0, 0], [2, -1, 0]]}, "row 1 must be non-neg"),
        (np.ones((2, 3, 2)), {"lambdas": [0.2, 0.3, 0.5]}, "`lambdas` must have shape"),
        (np.ones((2, 3, 2)), {"lambdas": [0.2, 0.3]}, "`lambdas` must sum to 1"),
        (np.ones((2, 3, 2)), {"b": np.ones(2) / 2}, "`b` must have shape"),
        (np.ones((2, 3, 2)), {"b": np.array([0.5, 0.6, -0.1])}, "`b` must be non-negative"),
        (np.ones((2, 3, 2)), {"epsilon": 0.0}, "`epsilon` must be a finite positive"),
        (np.ones((2, 3, 2)), {"epsilon": [0.1]}, "`epsilon` must be a scalar"),
        (np.ones((2, 3, 2)), {"epsilon": 0.1, "ot_tol": -1.0}, "`ot_tol` must be"),
        (np.ones((2, 3, 2)), {"tol": 0.0}, "`tol` must be a finite positive"),
        (np.ones((2, 3, 2)), {"max_iters": 0}, "`max_iters` must be an int"),
        (np.ones((2, 2, 2)), {}, r"exact mode \(epsilon=None\) assigns"),
        (np.ones((2, 4, 2)), {}, "measure 0 must hold exactly n = 3 points"),
        (np.ones((2, 3, 2)), {"b": np.array([0.5, 0.25, 0.25])}, "needs uniform `b`"),
        ([np.ones((3, 2)), np.ones((3, 3))], {}, "must share the feature size d"),
        ([np.ones((3, 2)), np.ones((4, 2))], {"weights_list": [None]}, "a list of 2 arrays"),
        ([np.ones((3, 2)), np.ones(3)], {}, r"`points_list\[1\]` must be a non-empty 2-D"),
    ],
)
def test_free_support_bad_input_raises(points, kwargs, match):
    kw = {"init": np.ones((3, 2))} | kwargs
    with pytest.raises(ValueError, match=match):
        free_support_barycenter(points, **kw)
