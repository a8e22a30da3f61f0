"""Tests for alignment._src.sinkhorn against independent references.

References: POT (``ot.bregman.sinkhorn_log``, ``ot.unbalanced.sinkhorn_unbalanced``), ott-jax
(``ott.solvers.linear.solve`` on a ``Geometry``, ``ott.tools.sinkhorn_divergence``), SciPy's
``linear_sum_assignment`` (the small-epsilon limit), the primal objective evaluated in NumPy, and
directional finite differences under float64.
"""

from __future__ import annotations

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import ot as pot
import pytest
from hypothesis import given, settings
from ott.geometry import geometry, pointcloud
from ott.solvers import linear
from ott.tools import sinkhorn_divergence as ott_divergence
from scipy.optimize import linear_sum_assignment

from alignment._src import sinkhorn as aot
from alignment._src.costs import euclidean, squared_euclidean
from tests.conftest import x64

TIGHT = 1e-10  # solver threshold for float64 reference comparisons
ITERS = 20_000
F64 = 1e-8  # float64 agreement of converged solvers
F32_ITER = 1e-2  # float32, threshold 1e-3: about ten times the threshold
FD = 1e-5  # directional finite differences, float64, relative


def _problem(rng, n, m, d=2, *, dtype=np.float64):
    x, y = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    cost = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1) / d
    a, b = rng.uniform(0.2, 1.0, n), rng.uniform(0.2, 1.0, m)
    return cost.astype(dtype), (a / a.sum()).astype(dtype), (b / b.sum()).astype(dtype)


def _kl(p, q):
    p, q = np.asarray(p), np.asarray(q)
    return np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / q), 0.0) - p + q)


def _primal(plan, cost, a, b, eps, rho_a=np.inf, rho_b=np.inf):
    """``<P, C> + eps KL(P | ab^T) + rho_a KL(P1 | a) + rho_b KL(P^T 1 | b)`` in NumPy."""
    value = np.sum(plan * cost) + eps * _kl(plan, np.outer(a, b))
    if np.isfinite(rho_a):
        value += rho_a * _kl(plan.sum(1), a)
    if np.isfinite(rho_b):
        value += rho_b * _kl(plan.sum(0), b)
    return value


_STATIC = (
    "max_iters",
    "inner_iters",
    "implicit_diff",
    "implicit_solver",
    "cg_max_iters",
    "relative_epsilon",
)
# jitted once per shape and static options, so that repeated calls (finite differences, property
# tests) reuse the compiled solver; eager calls are tested where validation matters
sk = jax.jit(aot.sinkhorn, static_argnames=_STATIC)
div = jax.jit(aot.sinkhorn_divergence, static_argnames=(*_STATIC, "cost_fn", "chunk_size"))
skp = jax.jit(
    aot.sinkhorn_points,
    static_argnames=(
        "cost_fn",
        "chunk_size",
        "max_iters",
        "inner_iters",
        "cg_max_iters",
        "relative_epsilon",
    ),
)


def _fd(fn, x, direction, h=1e-5):
    return (fn(x + h * direction) - fn(x - h * direction)) / (2 * h)


# ------------------------------------------------------------------------------------------
# Agreement with POT and ott-jax.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m", "eps"), [(7, 4, 0.05), (7, 4, 0.3), (3, 9, 1.0)])
def test_balanced_matches_pot(enable_x64, rng, n, m, eps):
    # jitted (one compile per shape); the eager path runs in the doctests and the error tests
    cost, a, b = _problem(rng, n, m)
    out = sk(cost, a, b, epsilon=eps, tol=TIGHT, max_iters=ITERS)
    plan = pot.bregman.sinkhorn_log(a, b, cost, eps, stopThr=1e-14, numItermax=100_000)
    np.testing.assert_allclose(out.plan, plan, atol=F64)
    np.testing.assert_allclose(out.transport_cost, np.sum(plan * cost), rtol=F64)
    np.testing.assert_allclose(out.regularized_cost, _primal(plan, cost, a, b, eps), rtol=F64)
    assert bool(out.converged) and out.marginal_error < TIGHT


@pytest.mark.parametrize(("n", "m", "eps"), [(7, 4, 0.1), (7, 4, 0.03)])
def test_balanced_matches_ott(enable_x64, rng, n, m, eps):
    cost, a, b = _problem(rng, n, m)
    out = sk(cost, a, b, epsilon=eps, tol=TIGHT, max_iters=ITERS)
    geom = geometry.Geometry(cost_matrix=jnp.asarray(cost), epsilon=eps)
    ref = linear.solve(geom, a, b, threshold=TIGHT, max_iterations=ITERS)
    np.testing.assert_allclose(out.plan, ref.matrix, atol=F64)
    np.testing.assert_allclose(out.regularized_cost, ref.reg_ot_cost, rtol=F64)
    # ott's potentials are ours + eps log(weights), up to the balanced shift (f + c, g - c)
    df = out.f + eps * np.log(a) - ref.f
    dg = out.g + eps * np.log(b) - ref.g
    np.testing.assert_allclose(df, df[0], atol=1e-7)
    np.testing.assert_allclose(dg, -df[0], atol=1e-7)


@pytest.mark.parametrize(("tau_a", "tau_b"), [(0.8, 0.6), (1.0, 0.5), (0.3, 1.0)])
def test_unbalanced_matches_pot(enable_x64, rng, tau_a, tau_b):
    cost, a, b = _problem(rng, 7, 4)
    b = 2.0 * b  # unequal masses
    eps = 0.05
    rho_a, rho_b = (eps * t / (1 - t) if t < 1 else np.inf for t in (tau_a, tau_b))
    out = sk(cost, a, b, epsilon=eps, tau_a=tau_a, tau_b=tau_b, tol=TIGHT, max_iters=ITERS)
    plan = pot.unbalanced.sinkhorn_unbalanced(
        a, b, cost, eps, (rho_a, rho_b), method="sinkhorn_stabilized", stopThr=1e-14,
        numItermax=100_000,
    )  # fmt: skip
    np.testing.assert_allclose(out.plan, plan, atol=1e-8)
    primal = _primal(plan, cost, a, b, eps, rho_a, rho_b)
    np.testing.assert_allclose(out.regularized_cost, primal, rtol=1e-8)
    np.testing.assert_allclose(out.transport_cost, np.sum(plan * cost), rtol=1e-8)


def test_unbalanced_matches_ott(enable_x64, rng):
    # ott-jax 0.6's unbalanced iterations use the entropy -eps H(P) (reference measure 1 1^T),
    # not the KL(P | a b^T) of its documentation; the two problems differ by the linear term
    # eps <P, log a_i + log b_j>, so ott on ``cost`` is ours on ``cost + eps (log a + log b)``.
    cost, a, b = _problem(rng, 7, 4)
    b = 1.5 * b
    eps, tau_a, tau_b = 0.1, 0.7, 0.9
    shifted = cost + eps * (np.log(a)[:, None] + np.log(b)[None, :])
    out = sk(shifted, a, b, epsilon=eps, tau_a=tau_a, tau_b=tau_b, tol=TIGHT, max_iters=ITERS)
    geom = geometry.Geometry(cost_matrix=jnp.asarray(cost), epsilon=eps)
    ref = linear.solve(geom, a, b, tau_a=tau_a, tau_b=tau_b, threshold=TIGHT, max_iterations=ITERS)
    np.testing.assert_allclose(out.plan, ref.matrix, atol=F64)
    # on the shifted cost our potentials are ott's: a b^T exp(-eps (log a + log b) / eps) = 1
    np.testing.assert_allclose(out.f, ref.f, atol=1e-7)
    np.testing.assert_allclose(out.g, ref.g, atol=1e-7)


def test_issue_regime_matches_ott(rng):
    # standard-normal points, unscaled cost (mean 2 d = 16) and eps = 0.1: the potentials move
    # by hundreds of eps at first, where blocks of absorbed iterations are cut short
    x, y = rng.normal(size=(32, 8)), rng.normal(size=(32, 8))
    cost = ((x[:, None] - y[None]) ** 2).sum(-1)
    out = sk(cost.astype(np.float32), epsilon=0.1)
    geom = geometry.Geometry(cost_matrix=jnp.asarray(cost, jnp.float32), epsilon=0.1)
    ref = linear.solve(geom, threshold=1e-3)
    assert bool(out.converged) and out.marginal_error < 1e-3 and int(out.n_iters) > 200
    # the iterations of the log-domain solver, checked every 10 (a block of ours cut short by
    # absorption ends with a check, so ours may stop a few iterations earlier)
    assert abs(int(out.n_iters) - int(ref.n_iters)) <= 10
    np.testing.assert_allclose(out.regularized_cost, ref.reg_ot_cost, rtol=1e-5)
    with x64():  # the same iterates as ott's log-domain ones, mid-convergence too
        ours = sk(cost, epsilon=0.1, tol=None, max_iters=1000)
        geom = geometry.Geometry(cost_matrix=jnp.asarray(cost), epsilon=0.1)
        ref = linear.solve(geom, threshold=0.0, max_iterations=1000)
        assert int(ref.n_iters) == 1000 and ours.marginal_error > 1e-6
        np.testing.assert_allclose(ours.regularized_cost, ref.reg_ot_cost, rtol=1e-12)
        np.testing.assert_allclose(ours.plan, ref.matrix, atol=1e-12)


def test_float32_default_threshold_matches_float64(rng):
    cost, a, b = _problem(rng, 40, 30, dtype=np.float32)
    out = sk(cost, a, b, epsilon=0.05)
    assert out.plan.dtype == jnp.float32 and out.f.dtype == jnp.float32
    with x64():
        ref = sk(cost.astype(np.float64), a, b, epsilon=0.05, tol=TIGHT, max_iters=ITERS)
        ref_cost, ref_plan = float(ref.regularized_cost), np.asarray(ref.plan)
    assert bool(out.converged) and out.marginal_error < 1e-3
    np.testing.assert_allclose(out.regularized_cost, ref_cost, rtol=F32_ITER)
    assert np.abs(np.asarray(out.plan) - ref_plan).sum() < F32_ITER


# ------------------------------------------------------------------------------------------
# Laws: marginals, small-epsilon limit, divergence.
# ------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 6),
    m=st.integers(1, 6),
    eps=st.floats(0.05, 2.0),
    seed=st.integers(0, 2**16),
)
def test_plan_marginals_property(n, m, eps, seed):
    # every (n, m) padded to [6, 6] with zero weights: one compiled solver for all examples
    cost6, a6, b6 = _problem(np.random.default_rng(seed), 6, 6, dtype=np.float32)
    a, b = np.zeros(6, np.float32), np.zeros(6, np.float32)
    a[:n], b[:m] = a6[:n] / a6[:n].sum(), b6[:m] / b6[:m].sum()
    out = sk(cost6, a, b, epsilon=eps, tol=1e-4)
    plan = np.asarray(out.plan)
    assert np.all(plan >= 0) and np.all(plan[n:] == 0) and np.all(plan[:, m:] == 0)
    np.testing.assert_allclose(plan.sum(1), a, atol=1e-5)  # rows: exact after the f update
    assert np.abs(plan.sum(0) - b).sum() < 1e-3  # columns: ten times the threshold
    assert bool(out.converged)


def test_small_epsilon_and_scaling(enable_x64, rng):
    n = 10
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    cost = ((x[:, None] - y[None]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    exact = cost[rows, cols].sum() / n
    kw = {"tol": 1e-9, "max_iters": 20_000}
    out = sk(cost, epsilon=1e-3, epsilon_init=1.0, **kw)
    assert bool(out.converged)
    assert abs(float(out.transport_cost) - exact) < 1e-3 * max(1.0, exact)
    perm = np.zeros((n, n))
    perm[rows, cols] = 1.0 / n
    np.testing.assert_allclose(out.plan, perm, atol=1e-3)
    # epsilon scaling: the same solution as without, in fewer iterations
    plain = sk(cost, epsilon=0.2, **kw)
    scaled = sk(cost, epsilon=0.2, epsilon_init=1.0, epsilon_decay=0.8, **kw)
    assert bool(plain.converged) and bool(scaled.converged)
    np.testing.assert_allclose(scaled.plan, plain.plan, atol=1e-7)
    assert int(scaled.n_iters) <= int(plain.n_iters)


def test_sinkhorn_divergence_matches_ott(enable_x64, rng):
    x, y = rng.normal(size=(7, 2)), rng.normal(size=(4, 2)) + 0.5
    a, b = rng.uniform(0.5, 1, 7), rng.uniform(0.5, 1, 4)
    a, b = a / a.sum(), b / b.sum()
    kw = {"epsilon": 0.1, "tol": TIGHT, "max_iters": ITERS}
    ours = div(x, y, a, b, **kw)  # default cost: ott's PointCloud default is SqEuclidean
    ref, _ = ott_divergence.sinkhorn_divergence(
        pointcloud.PointCloud, jnp.asarray(x), jnp.asarray(y), a=a, b=b, epsilon=0.1,
        solve_kwargs={"threshold": TIGHT, "max_iterations": ITERS},
    )  # fmt: skip
    np.testing.assert_allclose(ours, ref, rtol=1e-7)
    assert ours > 0  # exactly 0 on equal inputs: the doctest and the gradient test below
    # the online mode gives the same divergence
    online = div(x, y, a, b, chunk_size=3, **kw)
    np.testing.assert_allclose(online, ref, rtol=1e-7)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), shift=st.floats(0.0, 2.0))
def test_sinkhorn_divergence_nonnegative(seed, shift):
    r = np.random.default_rng(seed)
    x = r.normal(size=(5, 2)).astype(np.float32)
    y = (r.normal(size=(7, 2)) + shift).astype(np.float32)
    assert float(div(x, y, epsilon=0.5, tol=1e-5)) > -1e-4


# ------------------------------------------------------------------------------------------
# Gradients: envelope theorem and finite differences, both modes.
# ------------------------------------------------------------------------------------------


MODES = [
    pytest.param({"implicit_diff": True, "implicit_solver": "direct"}, id="implicit-direct"),
    pytest.param({"implicit_diff": True, "implicit_solver": "cg"}, id="implicit-cg"),
    pytest.param({"implicit_diff": False, "max_iters": 80}, id="unroll"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("taus", [(1.0, 1.0), (0.7, 0.8)], ids=["balanced", "unbalanced"])
def test_grads_match_finite_differences(enable_x64, rng, mode, taus):
    n, m = 5, 4
    cost, a, b = _problem(rng, n, m)
    tau_a, tau_b = taus
    eps = 0.2
    kw = {"tol": TIGHT, "max_iters": ITERS, "tau_a": tau_a, "tau_b": tau_b, **mode}

    def loss(c, a, b, eps, tau_a, weight=1.0):
        out = sk(c, a, b, epsilon=eps, **{**kw, "tau_a": tau_a})
        # a loss using the plan too, so that implicit gradients of the potentials matter
        sines = jnp.sin(jnp.arange(n * m).reshape(n, m))
        return out.regularized_cost + weight * jnp.sum(out.plan * sines)

    grads = jax.grad(loss, argnums=(0, 1, 2, 3, 4))(cost, a, b, eps, tau_a)
    dc = rng.normal(size=(n, m))
    # zero-sum directions for the weights keep balanced problems balanced
    da, db = rng.normal(size=n), rng.normal(size=m)
    if tau_a == 1.0:
        da, db = da - da.mean(), db - db.mean()
    checks = [
        (grads[0], dc, lambda t: loss(cost + t * dc, a, b, eps, tau_a)),
        (grads[1], da, lambda t: loss(cost, a + t * da, b, eps, tau_a)),
        (grads[2], db, lambda t: loss(cost, a, b + t * db, eps, tau_a)),
        (grads[3], 1.0, lambda t: loss(cost, a, b, eps + t, tau_a)),
    ]
    if tau_a < 1.0:
        checks.append((grads[4], 1.0, lambda t: loss(cost, a, b, eps, tau_a + t)))
    for grad, direction, fn in checks:
        expected = _fd(fn, 0.0, 1.0, h=1e-5)
        got = float(np.sum(np.asarray(grad) * direction))
        np.testing.assert_allclose(got, expected, rtol=FD, atol=1e-8)
    # envelope theorem: d regularized_cost / d C = P
    grad_c = jax.grad(lambda c: loss(c, a, b, eps, tau_a, weight=0.0))(cost)
    np.testing.assert_allclose(grad_c, sk(cost, a, b, epsilon=eps, **kw).plan, atol=1e-8)


def test_grad_regularized_cost_in_weights_is_potential(enable_x64, rng):
    cost, a, b = _problem(rng, 5, 4)
    kw = {"epsilon": 0.2, "tol": TIGHT, "max_iters": ITERS}
    out = sk(cost, a, b, **kw)
    ga, gb = jax.grad(lambda a, b: sk(cost, a, b, **kw).regularized_cost, argnums=(0, 1))(a, b)
    # up to the balanced shift: grad_a = f + c, grad_b = g - c
    np.testing.assert_allclose(ga - out.f, (ga - out.f)[0], atol=1e-8)
    np.testing.assert_allclose(gb - out.g, -(ga - out.f)[0], atol=1e-8)


def test_grad_sinkhorn_divergence_in_points(enable_x64, rng):
    x, y = rng.normal(size=(5, 2)), rng.normal(size=(5, 2))  # one shape: one compile
    fn = lambda x: div(x, y, epsilon=0.3, tol=TIGHT, max_iters=ITERS)
    grad = jax.grad(fn)(x)
    dx = rng.normal(size=x.shape)
    np.testing.assert_allclose(np.sum(grad * dx), _fd(fn, x, dx), rtol=FD)
    # at equal inputs the divergence is minimal: the gradient is zero and finite
    assert float(fn(y)) == 0.0
    np.testing.assert_allclose(jax.grad(fn)(y), 0.0, atol=1e-7)


# ------------------------------------------------------------------------------------------
# jit / vmap / fixed iterations / padding.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tol", [1e-3, None], ids=["while", "fixed"])
def test_vmap_equals_loop(rng, tol):
    probs = [_problem(rng, 6, 5, dtype=np.float32) for _ in range(3)]
    costs, aa, bb = (np.stack(t) for t in zip(*probs, strict=True))
    kw = {"epsilon": 0.1, "tol": tol, "max_iters": 200}
    batched = jax.jit(jax.vmap(lambda c, a, b: sk(c, a, b, **kw)))(costs, aa, bb)
    for k in range(3):
        single = sk(costs[k], aa[k], bb[k], **kw)
        np.testing.assert_allclose(batched.plan[k], single.plan, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(batched.regularized_cost[k], single.regularized_cost, rtol=1e-5)
        assert int(batched.n_iters[k]) == int(single.n_iters)
    if tol is None:  # exactly max_iters, and as converged as a tight threshold
        assert np.all(np.asarray(batched.n_iters) == 200)
        ref = sk(costs[0], aa[0], bb[0], epsilon=0.1, tol=1e-6)
        np.testing.assert_allclose(batched.plan[0], ref.plan, atol=1e-6)


def test_fixed_iterations_grads_both_modes(rng):
    cost, a, b = _problem(rng, 6, 5, dtype=np.float32)
    costs = np.stack([cost, cost + 0.1, cost * 2])
    # implicit and unrolled gradients at 100 iterations against the plans at 2000
    plans = jax.vmap(lambda c: sk(c, a, b, epsilon=0.1, tol=None).plan)
    for implicit in (True, False):
        fn = lambda c, implicit=implicit: (
            sk(
                c, a, b, epsilon=0.1, tol=None, max_iters=100, implicit_diff=implicit
            ).regularized_cost
        )
        grads = jax.jit(jax.vmap(jax.grad(fn)))(costs)
        np.testing.assert_allclose(grads, plans(costs), atol=1e-4)


def test_padding_with_zero_weights_gives_unpadded_result(rng):
    cost, a, b = _problem(rng, 5, 4, dtype=np.float32)
    padded = np.full((7, 6), 3.0, np.float32)
    padded[:5, :4] = cost
    pa, pb = np.zeros(7, np.float32), np.zeros(6, np.float32)
    pa[:5], pb[:4] = a, b
    for tol in (1e-3, None):
        kw = {"epsilon": 0.1, "tol": tol, "max_iters": 500}
        ref = sk(cost, a, b, **kw)
        out = sk(padded, pa, pb, **kw)
        np.testing.assert_allclose(out.plan[:5, :4], ref.plan, rtol=1e-6, atol=1e-9)
        assert np.all(np.asarray(out.plan)[5:] == 0) and np.all(np.asarray(out.plan)[:, 4:] == 0)
        np.testing.assert_allclose(out.f[:5], ref.f, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(out.regularized_cost, ref.regularized_cost, rtol=1e-6)
        assert int(out.n_iters) == int(ref.n_iters)
    # gradients in the padded problem: the real part equals the unpadded gradient, padding 0
    fn = lambda c, a, b: sk(c, a, b, epsilon=0.1).regularized_cost
    g_ref = jax.grad(fn, argnums=(0, 1))(cost, a, b)
    g_pad = jax.grad(fn, argnums=(0, 1))(padded, pa, pb)
    np.testing.assert_allclose(g_pad[0][:5, :4], g_ref[0], atol=1e-6)
    assert np.all(np.asarray(g_pad[0])[5:] == 0)
    assert np.all(np.isfinite(g_pad[1]))


# ------------------------------------------------------------------------------------------
# Online mode: sinkhorn_points never builds the [n, m] cost.
# ------------------------------------------------------------------------------------------


def _clouds(rng, n=7, m=4, d=3, dtype=np.float64):
    x, y = rng.normal(size=(n, d)), rng.normal(size=(m, d)) + 0.3
    a, b = rng.uniform(0.2, 1.0, n), rng.uniform(0.2, 1.0, m)
    return (
        x.astype(dtype),
        y.astype(dtype),
        (a / a.sum()).astype(dtype),
        (b / b.sum()).astype(dtype),
    )


@pytest.mark.parametrize(
    ("cost_fn", "taus", "extra"),
    [
        (squared_euclidean, (1.0, 1.0), {}),
        (euclidean, (0.8, 0.6), {"epsilon_init": 2.0}),
    ],
    ids=["sqeuclidean-balanced", "euclidean-unbalanced-scaling"],
)
def test_points_equals_dense_and_ott(enable_x64, rng, cost_fn, taus, extra):
    x, y, a, b = _clouds(rng)
    if taus != (1.0, 1.0):
        b = 2.0 * b
    kw = {"epsilon": 0.1, "tol": TIGHT, "max_iters": ITERS, "tau_a": taus[0],
          "tau_b": taus[1], **extra}  # fmt: skip
    out = skp(x, y, a, b, cost_fn=cost_fn, chunk_size=3, **kw)  # 7 = 3 + 3 + 1: a padded block
    dense = sk(cost_fn(x, y), a, b, **kw)
    assert isinstance(out, aot.SinkhornPointsOutput) and bool(out.converged)
    for name in ("f", "g", "transport_cost", "regularized_cost"):
        np.testing.assert_allclose(getattr(out, name), getattr(dense, name), rtol=1e-9, atol=1e-12)
    assert int(out.n_iters) == int(dense.n_iters)
    assert out.marginal_error < TIGHT and dense.marginal_error < TIGHT
    if taus == (1.0, 1.0) and cost_fn is squared_euclidean:  # an independent reference
        geom = pointcloud.PointCloud(jnp.asarray(x), jnp.asarray(y), epsilon=0.1)
        ref = linear.solve(geom, a, b, threshold=TIGHT, max_iterations=ITERS)
        np.testing.assert_allclose(out.regularized_cost, ref.reg_ot_cost, rtol=F64)
        df = out.f + 0.1 * np.log(a) - ref.f
        np.testing.assert_allclose(df, df[0], atol=1e-7)


def test_points_grads_match_dense_and_finite_differences(enable_x64, rng):
    x, y, a, b = _clouds(rng)
    kw = {"tol": TIGHT, "max_iters": ITERS}

    def loss(x, y, a, b, eps, online=True):
        if online:
            out = skp(x, y, a, b, epsilon=eps, chunk_size=3, **kw)
        else:
            out = sk(squared_euclidean(x, y), a, b, epsilon=eps, **kw)
        # every output: regularized cost (envelope), transport cost and potentials (implicit;
        # f_i + g_j, invariant to the balanced shift (f + c, g - c))
        pairs = jnp.sin(out.f[:, None] + out.g[None, :])
        return out.regularized_cost + 0.5 * out.transport_cost + jnp.sum(pairs)

    args = (x, y, a, b, 0.2)
    grads = jax.grad(loss, argnums=(0, 1, 2, 3, 4))(*args)
    dense = jax.grad(lambda *t: loss(*t, online=False), argnums=(0, 1, 2, 3, 4))(*args)
    for got, want in zip(grads, dense, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    dirs = [rng.normal(size=x.shape), rng.normal(size=y.shape), rng.normal(size=7),
            rng.normal(size=4), 1.0]  # fmt: skip
    # zero-sum (stay balanced) and small against the weights (about 0.1), where the loss curves
    dirs[2], dirs[3] = 0.02 * (dirs[2] - dirs[2].mean()), 0.02 * (dirs[3] - dirs[3].mean())
    for k, direction in enumerate(dirs):
        shifted = lambda t, k=k, direction=direction: loss(
            *(v + t * direction if i == k else v for i, v in enumerate(args))
        )
        expected = _fd(shifted, 0.0, 1.0)
        got = float(np.sum(np.asarray(grads[k]) * direction))
        np.testing.assert_allclose(got, expected, rtol=FD, atol=1e-8)
    # the regularized cost alone: sum_ij P_ij dC_ij/dx (no linear solve)
    reg_x = jax.grad(lambda x: skp(x, y, a, b, epsilon=0.2, chunk_size=3, **kw).regularized_cost)
    plan = sk(squared_euclidean(x, y), a, b, epsilon=0.2, **kw).plan
    envelope = 2 * (x * plan.sum(1)[:, None] - plan @ y)
    np.testing.assert_allclose(reg_x(x), envelope, atol=1e-9)


def _largest_intermediate(closed_jaxpr) -> int:
    """The largest array size produced anywhere in a jaxpr, nested jaxprs included."""

    def walk(jaxpr):
        size = 0
        for eqn in jaxpr.eqns:
            for var in eqn.outvars:
                size = max(size, int(np.prod(getattr(var.aval, "shape", ()))))
            for param in eqn.params.values():
                for sub in param if isinstance(param, list | tuple) else [param]:
                    if isinstance(sub, jax.extend.core.ClosedJaxpr):
                        size = max(size, walk(sub.jaxpr))
                    elif isinstance(sub, jax.extend.core.Jaxpr):
                        size = max(size, walk(sub))
        return size

    return walk(closed_jaxpr.jaxpr)


def test_points_never_builds_the_cost_value_or_gradient(rng):
    n, m, chunk = 96, 80, 8
    x, y, a, b = _clouds(rng, n, m, d=4, dtype=np.float32)

    def loss(x, y, a, b):
        out = aot.sinkhorn_points(x, y, a, b, epsilon=0.5, chunk_size=chunk)
        return out.regularized_cost + out.transport_cost + jnp.sum(out.f)

    for fn in (loss, jax.grad(loss, argnums=(0, 1, 2, 3))):
        biggest = _largest_intermediate(jax.make_jaxpr(fn)(x, y, a, b))
        assert biggest <= chunk * max(n, m) < n * m


def test_points_vmap_jit_and_fixed_iterations(rng):
    clouds = [_clouds(rng, 6, 5, dtype=np.float32) for _ in range(3)]
    xs, ys, aa, bb = (np.stack(t) for t in zip(*clouds, strict=True))
    kw = {"epsilon": 0.5, "max_iters": 100, "chunk_size": 4}
    batched = jax.jit(jax.vmap(lambda *t: skp(*t, tol=1e-4, **kw)))(xs, ys, aa, bb)
    for k in range(3):
        single = skp(xs[k], ys[k], aa[k], bb[k], tol=1e-4, **kw)
        np.testing.assert_allclose(batched.f[k], single.f, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(batched.regularized_cost[k], single.regularized_cost, rtol=1e-5)
        assert int(batched.n_iters[k]) == int(single.n_iters)
    # tol=None: exactly max_iters, no convergence test, under vmap
    fixed = jax.jit(jax.vmap(lambda *t: skp(*t, tol=None, **kw)))(xs, ys, aa, bb)
    assert np.all(np.asarray(fixed.n_iters) == 100)
    assert np.all(np.asarray(fixed.marginal_error) < 1e-4)
    np.testing.assert_allclose(fixed.regularized_cost, batched.regularized_cost, rtol=1e-4)


# ------------------------------------------------------------------------------------------
# Edge cases and errors.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), [(1, 1), (1, 5), (4, 1), (3, 7)])
def test_shapes_and_degenerate_sizes(rng, n, m):
    cost, a, b = _problem(rng, n, m, dtype=np.float32)
    out = sk(cost, a, b, epsilon=0.1)
    assert out.plan.shape == (n, m) and out.f.shape == (n,) and out.g.shape == (m,)
    assert out.regularized_cost.shape == () and out.n_iters.dtype == jnp.int32
    if n == 1 or m == 1:  # the plan is forced
        np.testing.assert_allclose(out.plan, np.outer(a, b), rtol=1e-5)
    if n == 3:
        grad = jax.grad(lambda c: sk(c, a, b, epsilon=0.1).regularized_cost)(cost)
        assert np.all(np.isfinite(grad))


def test_zero_weights_exact_zero_rows_no_nan(rng):
    cost, a, b = _problem(rng, 5, 4, dtype=np.float32)
    a = np.array([0.5, 0.0, 0.3, 0.2, 0.0], np.float32)
    b = np.array([0.0, 0.6, 0.4, 0.0], np.float32)
    out = sk(cost, a, b, epsilon=0.1, tau_a=1.0)
    plan = np.asarray(out.plan)
    assert np.all(plan[[1, 4]] == 0) and np.all(plan[:, [0, 3]] == 0)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in out[:5])
    for mode in ({}, {"implicit_diff": False, "max_iters": 50}):
        fn = lambda c, a, b, mode=mode: sk(c, a, b, epsilon=0.1, **mode).regularized_cost
        grads = jax.grad(fn, argnums=(0, 1, 2))(cost, a, b)
        assert all(np.all(np.isfinite(g)) for g in grads)


def test_tiny_epsilon_float32_stays_finite(rng):
    cost = rng.uniform(0, 1, (20, 15)).astype(np.float32)
    out = sk(cost, epsilon=1e-3, max_iters=300)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in out[:7])
    np.testing.assert_allclose(np.asarray(out.plan).sum(1), 1 / 20, rtol=1e-3)
    grad = jax.grad(lambda c: sk(c, epsilon=1e-3, max_iters=300).regularized_cost)(cost)
    assert np.all(np.isfinite(grad))
    unb = sk(cost, epsilon=1e-3, tau_a=0.9, tau_b=0.9, max_iters=300)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in unb[:7])


def test_traced_epsilon_and_tau_do_not_recompile(rng):
    cost, a, b = _problem(rng, 4, 4, dtype=np.float32)
    fn = jax.jit(lambda c, e, t: sk(c, a, b, epsilon=e, tau_a=t, tau_b=t).plan)
    fn(cost, 0.1, 0.9)
    fn(cost, 0.2, 0.5)
    assert fn._cache_size() == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cost": np.ones(3)}, "`cost` must be a 2-D"),
        ({"a": np.ones(2) / 2}, r"`a` must have shape \(3,\) \[n\] to match `cost`"),
        ({"b": np.ones(5) / 5}, r"`b` must have shape \(4,\) \[m\]"),
        ({"a": np.array([0.5, 0.7, -0.2])}, "`a` must be non-negative"),
        ({"b": np.zeros(4)}, "`b` must have at least one positive"),
        ({"a": np.ones(3)}, r"sum\(a\) = 3.0 and sum\(b\) = 1.0"),
        ({"epsilon": 0.0}, "`epsilon` must be a finite positive"),
        ({"epsilon": -1.0}, "`epsilon` must be a finite positive"),
        ({"tau_a": 1.5}, "`tau_a` must be a number in"),
        ({"tau_b": 0.0}, "`tau_b` must be a number in"),
        ({"tol": -1.0}, "`tol` must be"),
        ({"max_iters": 0}, "`max_iters` must be an int >= 1"),
        ({"implicit_solver": "lu"}, "`implicit_solver` must be"),
    ],
)
def test_bad_input_raises(kwargs, match):
    args = {"cost": np.ones((3, 4)), "a": None, "b": None, "epsilon": 0.1, **kwargs}
    cost, a, b = args.pop("cost"), args.pop("a"), args.pop("b")
    with pytest.raises(ValueError, match=match):
        aot.sinkhorn(cost, a, b, **args)


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "match"),
    [
        (np.ones(3), np.ones((4, 2)), {}, r"`x` and `y` must be 2-D arrays"),
        (np.ones((3, 2)), np.ones((4, 3)), {}, "same feature size d"),
        (np.ones((0, 2)), np.ones((4, 2)), {}, "must be non-empty"),
        (np.ones((3, 2)), np.ones((4, 2)), {"chunk_size": 0}, "`chunk_size` must be an int >= 1"),
        (np.ones((3, 2)), np.ones((4, 2)), {"a": np.ones(4) / 4}, r"to match `x` / `y`"),
        (np.ones((3, 2)), np.ones((4, 2)), {"epsilon": -1.0}, "`epsilon` must be"),
    ],
)
def test_points_bad_input_raises(x, y, kwargs, match):
    with pytest.raises(ValueError, match=match):
        aot.sinkhorn_points(x, y, **({"epsilon": 0.1} | kwargs))


def test_unbalanced_accepts_unequal_masses_and_divergence_rejects_tau():
    out = aot.sinkhorn(np.ones((3, 4)), np.ones(3), None, epsilon=0.1, tau_a=0.9)
    assert bool(out.converged)
    with pytest.raises(ValueError, match="balanced"):
        aot.sinkhorn_divergence(np.ones((3, 2)), np.ones((4, 2)), epsilon=0.1, tau_a=0.5)


# ------------------------------------------------------------------------------------------
# Issue 9 regressions.
# ------------------------------------------------------------------------------------------

_ISSUE_X = np.array([[1.0, -2.0], [3.0, 0.0], [0.0, 1.0]], np.float32)


def test_gradients_finite_at_nearly_permutation_plans():
    # the self-transport plan of well separated points is a permutation up to 1e-8: the implicit
    # system was singular in float32 and the adjoint solve gave 0 / 0 = NaN
    div_grad = jax.jit(jax.grad(lambda x, e: div(x, x, epsilon=e), argnums=(0, 1)))
    gx, ge = div_grad(_ISSUE_X, 0.5)
    assert float(div(_ISSUE_X, _ISSUE_X, epsilon=0.5)) == 0.0
    np.testing.assert_allclose(gx, 0.0, atol=1e-5)
    assert np.isfinite(ge) and abs(float(ge)) < 1e-5
    cost = squared_euclidean(_ISSUE_X, _ISSUE_X)
    out = sk(cost, epsilon=0.5)
    for field in ("regularized_cost", "transport_cost"):
        grad = jax.grad(lambda c, field=field: getattr(sk(c, epsilon=0.5), field))(cost)
        assert np.all(np.isfinite(grad)), field
    np.testing.assert_allclose(
        jax.grad(lambda c: sk(c, epsilon=0.5).regularized_cost)(cost), out.plan, atol=1e-6
    )
    # many random small point sets, float32: every gradient finite (about one in ten was NaN)
    rng = np.random.default_rng(9)
    sets = rng.normal(size=(50, 2, 4, 2)).astype(np.float32) * 2.0

    def grads(x, y):
        terms = (
            lambda x, e: div(x, y, epsilon=e),
            lambda x, e: div(x, x, epsilon=e),
            lambda x, e: sk(squared_euclidean(x, x), epsilon=e).transport_cost,
            lambda x, e: jnp.sum(sk(squared_euclidean(x, y), epsilon=e).f ** 2),
        )
        return [jax.grad(t, argnums=(0, 1))(x, 0.5) for t in terms]

    for leaf in jax.tree.leaves(jax.jit(jax.vmap(grads))(sets[:, 0], sets[:, 1])):
        assert np.all(np.isfinite(leaf))


def test_divergence_gradients_match_finite_differences_on_random_sets(enable_x64):
    rng = np.random.default_rng(19)
    fn = jax.jit(lambda x, y, e: div(x, y, epsilon=e, tol=1e-12, max_iters=5000))
    grad = jax.jit(jax.grad(lambda x, y, e: fn(x, y, e), argnums=(0, 2)))
    for _ in range(50):
        x, y = rng.normal(size=(4, 2)) * 2.0, rng.normal(size=(3, 2)) * 2.0
        y = x[:3] if rng.uniform() < 0.3 else y  # sometimes nearly equal measures
        gx, ge = grad(x, y, 0.5)
        assert np.all(np.isfinite(gx)) and np.isfinite(ge)
        dx = rng.normal(size=x.shape)
        np.testing.assert_allclose(
            np.sum(gx * dx), _fd(lambda t, y=y: fn(t, y, 0.5), x, dx), atol=1e-6
        )
        fd_e = (fn(x, y, 0.5 + 1e-4) - fn(x, y, 0.5 - 1e-4)) / 2e-4
        np.testing.assert_allclose(ge, fd_e, rtol=1e-5, atol=1e-6)


def test_infinite_cost_entries_are_forbidden_pairs(rng):
    cost, a, b = _problem(rng, 5, 4, dtype=np.float32)
    forbidden = cost.copy()
    forbidden[0, 1] = forbidden[3, 2] = np.inf
    big = np.where(np.isinf(forbidden), 1e3, forbidden).astype(np.float32)  # exp(-1e4): zero
    out, ref = sk(forbidden, a, b, epsilon=0.1), sk(big, a, b, epsilon=0.1)
    assert float(out.plan[0, 1]) == 0.0 and float(out.plan[3, 2]) == 0.0
    for name in ("plan", "f", "g", "transport_cost", "regularized_cost"):
        np.testing.assert_allclose(getattr(out, name), getattr(ref, name), rtol=1e-5, atol=1e-7)
    grad = jax.grad(lambda c: sk(c, a, b, epsilon=0.1).transport_cost)(forbidden)
    assert np.all(np.isfinite(grad)) and float(grad[0, 1]) == 0.0
    grad_eps = jax.grad(lambda e: sk(forbidden, a, b, epsilon=e).regularized_cost)(0.1)
    assert np.isfinite(grad_eps)  # 0 * inf in d/d eps of the masked exponent


def test_nan_in_padding_changes_nothing_and_real_nan_propagates(rng):
    cost, a, b = _problem(rng, 5, 4, dtype=np.float32)
    pa, pb = np.r_[a, 0, 0].astype(np.float32), np.r_[b, 0].astype(np.float32)
    fn = lambda c, a, b: sk(c, a, b, epsilon=0.1)
    loss = jax.grad(lambda c, a, b: fn(c, a, b).regularized_cost + fn(c, a, b).transport_cost)
    clean = np.full((7, 5), 1.0, np.float32)
    clean[:5, :4] = cost
    ref, ref_grad = fn(clean, pa, pb), loss(clean, pa, pb)
    for garbage in (np.nan, np.inf, -np.inf, 1e30):
        padded = np.full((7, 5), garbage, np.float32)
        padded[:5, :4] = cost
        out = fn(padded, pa, pb)
        for name in ("plan", "transport_cost", "regularized_cost", "n_iters", "converged"):
            np.testing.assert_array_equal(getattr(out, name), getattr(ref, name))
        np.testing.assert_array_equal(out.f[:5], ref.f[:5])
        np.testing.assert_array_equal(loss(padded, pa, pb), ref_grad)
    real = cost.copy()
    real[2, 1] = np.nan
    out = fn(real, a, b)
    assert np.isnan(out.transport_cost) and np.isnan(out.regularized_cost)
    assert not bool(out.converged)
    assert np.isnan(jax.grad(lambda c: fn(c, a, b).regularized_cost)(real)).any()


def test_zero_weight_potentials_are_exact_c_transforms(rng):
    cost, _, b = _problem(rng, 6, 4, dtype=np.float32)
    a = np.array([0.3, 0.0, 0.4, 0.0, 0.3, 0.0], np.float32)
    for kw in ({}, {"implicit_diff": False, "max_iters": 300}, {"tau_a": 0.9, "tau_b": 0.8}):
        out = sk(cost, a, b, epsilon=0.1, **kw)
        tau_a = kw.get("tau_a", 1.0)
        lse = jax.nn.logsumexp(np.log(b)[None, :] + (out.g[None, :] - cost) / 0.1, axis=1)
        zero = np.array([1, 3, 5])
        np.testing.assert_allclose(
            np.asarray(out.f)[zero], np.asarray(-tau_a * 0.1 * lse)[zero], atol=1e-6
        )


def test_bfloat16_and_float16_run_in_float32():
    cost = np.abs(squared_euclidean(_ISSUE_X, _ISSUE_X[::-1] + 0.3)).astype(np.float32)
    ref = sk(cost, epsilon=0.5)
    for dtype in (jnp.bfloat16, jnp.float16):
        out = aot.sinkhorn(cost.astype(dtype), epsilon=0.5)  # default uniform weights
        assert out.plan.dtype == dtype and out.regularized_cost.dtype == dtype
        assert bool(out.converged)
        np.testing.assert_allclose(
            np.float32(out.regularized_cost), ref.regularized_cost, rtol=1e-2
        )
    weights = jnp.full((3,), 1 / 3, jnp.bfloat16)  # sums to 1.0078 in bfloat16
    assert bool(aot.sinkhorn(cost, weights, weights, epsilon=0.5).converged)


def test_points_output_has_no_plan_field(rng):
    x, y, a, b = _clouds(rng, 5, 4, dtype=np.float32)
    out = skp(x, y, a, b, epsilon=0.5, chunk_size=2)
    assert isinstance(out, aot.SinkhornPointsOutput) and "plan" not in out._fields
    assert all(v is not None for v in out)


def test_traced_bad_values_give_nan_and_not_converged(rng):
    cost, a, b = _problem(rng, 3, 4, dtype=np.float32)
    run = jax.jit(lambda e, t, a, b: sk(cost, a, b, epsilon=e, tau_a=t))
    cases = [
        (0.0, 1.0, a, b), (-0.1, 1.0, a, b), (np.nan, 1.0, a, b), (0.1, 1.5, a, b),
        (0.1, 0.0, a, b), (0.1, np.nan, a, b), (0.1, 1.0, -a, b), (0.1, 1.0, np.nan * a, b),
        (0.1, 1.0, 2.0 * a, b),  # unequal masses, balanced
    ]  # fmt: skip
    for e, t, wa, wb in cases:
        out = run(np.float32(e), np.float32(t), wa.astype(np.float32), wb)
        for leaf in (out.plan, out.f, out.g, out.transport_cost, out.regularized_cost):
            assert np.all(np.isnan(leaf)), (e, t)
        assert not bool(out.converged) and int(out.n_iters) == -1
    # unequal masses in a divergence under jit: NaN (was 700.1)
    x, y = rng.normal(size=(3, 2)), rng.normal(size=(4, 2))
    value = jax.jit(lambda wa: div(x, y, wa, None, epsilon=0.5))(np.ones(3) * 100.0)
    assert np.isnan(value)
    run_tol = jax.jit(lambda t: sk(cost, a, b, epsilon=0.1, tol=t).regularized_cost)
    assert np.isnan(run_tol(np.float32(np.nan))) and np.isnan(run_tol(np.float32(-1.0)))


@pytest.mark.parametrize("name", ["epsilon", "tau_a", "tau_b", "tol", "epsilon_decay"])
def test_array_valued_scalars_raise_even_under_jit(name):
    kwargs = {"epsilon": 0.1, "epsilon_init": 1.0} if name == "epsilon_decay" else {"epsilon": 0.1}
    fn = lambda v: aot.sinkhorn(np.ones((3, 4)), **(kwargs | {name: v})).plan
    with pytest.raises(ValueError, match=f"`{name}` must be a scalar"):
        fn(np.full(2, 0.5))
    with pytest.raises(ValueError, match=f"`{name}` must be a scalar"):
        jax.jit(fn)(np.full(2, 0.5))
    with pytest.raises(ValueError, match="`tol` must be a finite positive"):
        aot.sinkhorn(np.ones((3, 4)), epsilon=0.1, tol=np.nan)


def test_relative_epsilon_scales_by_the_cost(rng):
    cost, a, b = _problem(rng, 5, 4, dtype=np.float32)
    big = 1e3 * cost
    for kind, scale in ((True, np.abs(big).mean()), ("mean", np.abs(big).mean()),
                        ("max", np.abs(big).max())):  # fmt: skip
        out = sk(big, a, b, epsilon=0.05, relative_epsilon=kind)
        ref = sk(big, a, b, epsilon=0.05 * float(scale))
        np.testing.assert_allclose(out.plan, ref.plan, rtol=1e-4, atol=1e-7)
        assert bool(out.converged)
    # the same blur whatever the units
    np.testing.assert_allclose(
        sk(big, a, b, epsilon=0.05, relative_epsilon=True).plan,
        sk(cost, a, b, epsilon=0.05, relative_epsilon=True).plan,
        rtol=1e-4,
        atol=1e-7,
    )
    x, y, pa, pb = _clouds(rng, 5, 4, dtype=np.float32)
    pts = skp(x, y, pa, pb, epsilon=0.05, relative_epsilon="max", chunk_size=2)
    dense = sk(squared_euclidean(x, y), pa, pb, epsilon=0.05, relative_epsilon="max")
    np.testing.assert_allclose(pts.regularized_cost, dense.regularized_cost, rtol=1e-4)
    with pytest.raises(ValueError, match="`relative_epsilon` must be one of"):
        aot.sinkhorn(cost, epsilon=0.1, relative_epsilon="median")


def test_unconverged_concrete_call_warns():
    cost = 1e3 * np.random.default_rng(3).uniform(size=(6, 5)).astype(np.float32)
    with pytest.warns(aot.checks.ConvergenceWarning, match="sinkhorn stopped before converging"):
        out = aot.sinkhorn(cost, epsilon=0.1, max_iters=20)
    assert not bool(out.converged)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jax.jit(lambda c: aot.sinkhorn(c, epsilon=0.1, max_iters=20).plan)(cost)  # traced: silent


def test_barycentric_projection_matches_numpy_and_pot(rng):
    cost, a, b = _problem(rng, 5, 4, dtype=np.float64)
    y = rng.normal(size=(4, 3))
    plan = np.asarray(pot.bregman.sinkhorn_log(a, b, cost, 0.1))
    plan[2] = 0.0  # a row without mass
    got = np.asarray(aot.barycentric_projection(plan, y))
    want = (plan / plan.sum(1, keepdims=True)) @ y  # POT's ot.da formula (NaN at empty rows)
    keep = [0, 1, 3, 4]
    np.testing.assert_allclose(got[keep], want[keep], rtol=1e-5)
    assert np.all(np.isnan(got[2]))
    got1 = np.asarray(aot.barycentric_projection(plan, y[:, 0]))
    np.testing.assert_allclose(got1[keep], want[keep, 0], rtol=1e-5)
    grad = jax.grad(lambda p: jnp.nansum(aot.barycentric_projection(p, y)))(plan)
    assert np.all(np.isfinite(grad))
    with pytest.raises(ValueError, match="`y` must have shape"):
        aot.barycentric_projection(plan, y[:3])
    with pytest.raises(ValueError, match="`plan` must be non-negative"):
        aot.barycentric_projection(-plan, y)
