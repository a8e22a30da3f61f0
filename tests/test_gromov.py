"""Tests for alignment._src.gromov: entropic Gromov-Wasserstein, fused GW, the points form.

References: POT (``ot.gromov.entropic_gromov_wasserstein`` / ``entropic_gromov_wasserstein2``,
``entropic_fused_gromov_wasserstein`` / ``2``, all with ``solver="PGD"`` from ``a b^T``, and
``ot.sinkhorn`` for ``alpha = 0``), ott-jax's ``GromovWasserstein`` (whose epsilon is half of
ours), the closed-form GW2 gradient of POT's ``gromov_wasserstein2``, directional finite
differences under float64, and a worked example on scikit-learn's digits.

Compile time dominates: every test reuses a few jitted wrappers, shapes ([7, 7]) and keyword
sets (a jitted function recompiles when a keyword is passed or omitted); n != m is compared with
POT through zero-weight padding ([5, 4] inside [7, 7]).
"""

from __future__ import annotations

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import ot as pot
import pytest
from hypothesis import given, settings

from alignment._src import checks
from alignment._src.gromov import (
    GromovWassersteinOutput,
    fused_gromov_wasserstein,
    gromov_wasserstein,
    gromov_wasserstein_points,
)

TIGHT = {"tol": 1e-12, "sinkhorn_tol": 1e-13, "max_iters": 300, "sinkhorn_max_iters": 3000}
POT_TIGHT = {"max_iter": 1000, "tol": 1e-11, "numItermax": 10_000, "stopThr": 1e-12}
DEFAULT = {"tol": 1e-5, "sinkhorn_tol": 1e-4}  # passed explicitly: one compiled solver
F64 = 1e-9  # float64 agreement of converged solvers
FD = 1e-6  # directional finite differences, float64, relative
F32 = 1e-4  # float32 plans, default thresholds (tol 1e-5, sinkhorn_tol 1e-4)
EPS = 0.1  # float64 problems have costs of unit mean

_STATIC = ("loss", "max_iters", "sinkhorn_max_iters")
# jitted once per shape and static options, reused by every test below
gw = jax.jit(gromov_wasserstein, static_argnames=_STATIC)
fgw = jax.jit(fused_gromov_wasserstein, static_argnames=_STATIC)
gwp = jax.jit(gromov_wasserstein_points, static_argnames=("max_iters", "sinkhorn_max_iters"))


def _sqdist(z):
    return ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)


def _weights(rng, n):
    w = rng.uniform(0.2, 1.0, n)
    return w / w.sum()


def _problem64(rng, n=7, m=7):
    """Two clouds in different dimensions, costs of unit mean, random weights (float64)."""
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(m, 3))
    cx, cy = _sqdist(x), _sqdist(y)
    return x, y, cx / cx.mean(), cy / cy.mean(), _weights(rng, n), _weights(rng, m)


def _kl_np(p, q):
    pos = p > 0
    return np.sum(np.where(pos, p * np.log(np.where(pos, p, 1) / q), 0.0)) - p.sum() + q.sum()


# ------------------------------------------------------------------------------------------
# References (float64).
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["square", "square-asymmetric", "kl"])
def test_matches_pot(enable_x64, rng, case):
    _, _, cx, cy, a, b = _problem64(rng)
    loss = "kl" if case == "kl" else "square"
    if case == "kl":  # positive similarity matrices, where KL is finite
        cx, cy = np.exp(-cx), np.exp(-cy)
    if case == "square-asymmetric":  # a directed graph: POT then symmetrises its gradient
        cx = cx + 0.3 * rng.uniform(size=cx.shape)
    out = gw(cx, cy, a, b, epsilon=EPS, **({"loss": "kl"} if loss == "kl" else {}), **TIGHT)
    pot_loss = {"square": "square_loss", "kl": "kl_loss"}[loss]
    # entropic_gromov_wasserstein2 runs entropic_gromov_wasserstein; its log holds the plan
    value, log = pot.gromov.entropic_gromov_wasserstein2(
        cx, cy, a, b, pot_loss, epsilon=EPS, solver="PGD", log=True, **POT_TIGHT
    )
    plan = log["T"]
    assert bool(out.converged) and int(out.n_iters) > 1
    np.testing.assert_allclose(out.plan, plan, atol=F64)
    np.testing.assert_allclose(out.cost, value, rtol=F64)
    # the regularised value adds eps KL(P | a b^T); the marginals hold
    np.testing.assert_allclose(
        out.regularized_cost, value + EPS * _kl_np(plan, np.outer(a, b)), rtol=F64
    )
    np.testing.assert_allclose(np.asarray(out.plan).sum(1), a, atol=1e-12)
    np.testing.assert_allclose(np.asarray(out.plan).sum(0), b, atol=1e-12)


def test_fused_matches_pot_and_its_limits(enable_x64, rng):
    x, y, cx, cy, a, b = _problem64(rng)
    feat = ((x[:, None, :2] - y[None, :, :2]) ** 2).sum(-1)
    out = fgw(feat, cx, cy, a, b, alpha=0.3, epsilon=EPS, **TIGHT)
    value, log = pot.gromov.entropic_fused_gromov_wasserstein2(
        feat, cx, cy, a, b, "square_loss", epsilon=EPS, alpha=0.3, solver="PGD", log=True,
        **POT_TIGHT,
    )  # fmt: skip
    assert bool(out.converged)
    np.testing.assert_allclose(out.plan, log["T"], atol=F64)
    np.testing.assert_allclose(out.cost, value, rtol=F64)
    # alpha = 0: entropic OT on the feature cost; alpha = 1: GW, the features ignored
    zero = fgw(feat, cx, cy, a, b, alpha=0.0, epsilon=EPS, **TIGHT)
    ref = pot.sinkhorn(a, b, feat, EPS, method="sinkhorn_log", numItermax=10_000, stopThr=1e-13)
    np.testing.assert_allclose(zero.plan, ref, atol=F64)
    np.testing.assert_allclose(zero.cost, np.sum(ref * feat), rtol=F64)
    one = fgw(feat, cx, cy, a, b, alpha=1.0, epsilon=EPS, **TIGHT)
    pure = gw(cx, cy, a, b, epsilon=EPS, **TIGHT)
    np.testing.assert_allclose(one.plan, pure.plan, atol=F64)
    np.testing.assert_allclose(one.cost, pure.cost, rtol=F64)
    # traced alpha outside [0, 1]: NaN, never a plausible number
    bad = fgw(feat, cx, cy, a, b, alpha=1.5, epsilon=EPS, **TIGHT)
    assert np.all(np.isnan(bad.plan)) and np.isnan(bad.cost) and not bool(bad.converged)


def test_points_equal_dense_and_are_rotation_invariant(enable_x64, rng):
    x, y, _, _, a, b = _problem64(rng)
    x, y = x / np.sqrt(_sqdist(x).mean()), y / np.sqrt(_sqdist(y).mean())
    out = gwp(x + 5.0, y, a, b, epsilon=EPS, **TIGHT)  # a translation changes nothing
    dense = gw(_sqdist(x), _sqdist(y), a, b, epsilon=EPS, **TIGHT)
    assert bool(out.converged)
    np.testing.assert_allclose(out.plan, dense.plan, atol=F64)
    np.testing.assert_allclose(out.cost, dense.cost, rtol=F64)
    np.testing.assert_allclose(out.regularized_cost, dense.regularized_cost, rtol=F64)
    np.testing.assert_allclose(out.f - out.f[0], dense.f - dense.f[0], atol=1e-8)
    rot, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    turned = gwp(x, y @ rot, a, b, epsilon=EPS, **TIGHT)
    np.testing.assert_allclose(turned.plan, out.plan, atol=F64)
    np.testing.assert_allclose(turned.cost, out.cost, rtol=F64)
    # points of zero weight are never read: NaN there, POT on the 5 x 4 problem
    pa, pb = a.copy(), b.copy()
    pa[5:], pb[4:] = 0.0, 0.0
    pa, pb = pa / pa.sum(), pb / pb.sum()
    px, py = x.copy(), y.copy()
    px[5:], py[4:] = np.nan, np.nan
    padded = gwp(px, py, pa, pb, epsilon=EPS, **TIGHT)
    value, log = pot.gromov.entropic_gromov_wasserstein2(
        _sqdist(x[:5]), _sqdist(y[:4]), pa[:5], pb[:4], epsilon=EPS, log=True, **POT_TIGHT
    )
    np.testing.assert_allclose(np.asarray(padded.plan)[:5, :4], log["T"], atol=F64)
    np.testing.assert_allclose(padded.cost, value, rtol=F64)
    assert np.all(np.asarray(padded.plan)[5:] == 0) and np.all(np.asarray(padded.plan)[:, 4:] == 0)


@pytest.mark.slow  # ott-jax compiles for over 10 s (16 s CPU measured): `pytest -m slow`
def test_matches_ott(enable_x64, rng):
    pytest.importorskip("ott")
    from ott.geometry import geometry
    from ott.problems.quadratic import quadratic_problem
    from ott.solvers.linear import sinkhorn as ott_sinkhorn
    from ott.solvers.quadratic import gromov_wasserstein as ott_gw

    _, _, cx, cy, a, b = _problem64(rng)
    prob = quadratic_problem.QuadraticProblem(
        geometry.Geometry(cost_matrix=cx), geometry.Geometry(cost_matrix=cy), a=a, b=b
    )
    # ott-jax linearises with half our gradient: its epsilon is half of ours
    solver = ott_gw.GromovWasserstein(
        ott_sinkhorn.Sinkhorn(threshold=1e-13, max_iterations=20_000),
        epsilon=EPS / 2, threshold=1e-14, max_iterations=500,
    )  # fmt: skip
    ref = jax.jit(solver)(prob)
    out = gw(cx, cy, a, b, epsilon=EPS, **TIGHT)
    assert bool(ref.converged)
    np.testing.assert_allclose(out.plan, ref.matrix, atol=1e-7)  # ott stops on the cost
    np.testing.assert_allclose(out.cost, ref.primal_cost, rtol=1e-7)


# ------------------------------------------------------------------------------------------
# Gradients: envelope theorem, against finite differences of the converged value.
# ------------------------------------------------------------------------------------------


def _values(cx, cy, a, b, eps):
    out = gw(cx, cy, a, b, epsilon=eps, **TIGHT)
    return out.regularized_cost, out.cost


_grads = jax.jit(jax.jacrev(_values, argnums=(0, 1, 2, 3, 4)))


def _fd(fn, args, i, direction, h=1e-5):
    plus, minus = list(args), list(args)
    plus[i] = args[i] + h * direction
    minus[i] = args[i] - h * direction
    return (float(fn(*plus)) - float(fn(*minus))) / (2 * h)


def test_gradients_match_finite_differences(enable_x64, rng):
    _, _, cx, cy, a, b = _problem64(rng)
    args = (cx, cy, a, b, EPS)
    g_reg, g_cost = _grads(*args)
    reg = lambda *z: _values(*z)[0]
    for i, name in enumerate(["cost_x", "cost_y", "a", "b", "epsilon"]):
        d = rng.normal(size=np.shape(args[i]))
        if name in ("a", "b"):  # zero-sum: the problem stays balanced
            d = d - d.mean()
        fd = _fd(reg, args, i, d)
        np.testing.assert_allclose(np.sum(np.asarray(g_reg[i]) * d), fd, rtol=FD, err_msg=name)
    # `cost` holds the plan constant: POT's gromov_wasserstein2 gradient in the costs (the same
    # as the regularised cost's), zero in epsilon
    plan = np.asarray(gw(cx, cy, a, b, epsilon=EPS, **TIGHT).plan)
    np.testing.assert_allclose(
        g_cost[0], 2 * cx * np.outer(a, a) - 2 * plan @ cy @ plan.T, atol=1e-12
    )
    np.testing.assert_allclose(
        g_cost[1], 2 * cy * np.outer(b, b) - 2 * plan.T @ cx @ plan, atol=1e-12
    )
    np.testing.assert_allclose(g_cost[0], g_reg[0], atol=1e-12)
    assert float(g_cost[4]) == 0.0


def test_points_and_fused_gradients_match_finite_differences(enable_x64, rng):
    x, y, cx, cy, a, b = _problem64(rng)
    x, y = x / 2, y / 2
    reg = lambda x, y: gwp(x, y, a, b, epsilon=EPS, **TIGHT).regularized_cost
    grads = jax.jit(jax.grad(reg, argnums=(0, 1)))(x, y)
    for i, g in enumerate(grads):
        d = rng.normal(size=g.shape)
        np.testing.assert_allclose(np.sum(np.asarray(g) * d), _fd(reg, (x, y), i, d), rtol=FD)
    # fused: the feature cost and alpha (d / d alpha = GW(P) - <C, P> at the plan)
    feat = rng.uniform(size=(7, 7))
    freg = lambda c, alpha: fgw(c, cx, cy, a, b, alpha=alpha, epsilon=EPS, **TIGHT).regularized_cost
    g_feat, g_alpha = jax.jit(jax.grad(freg, argnums=(0, 1)))(feat, 0.4)
    d = rng.normal(size=feat.shape)
    np.testing.assert_allclose(
        np.sum(np.asarray(g_feat) * d), _fd(freg, (feat, 0.4), 0, d), rtol=FD
    )
    np.testing.assert_allclose(g_alpha, _fd(freg, (feat, 0.4), 1, 1.0), rtol=FD)


# ------------------------------------------------------------------------------------------
# Padding by zero weights (float64, compared with POT on the unpadded problem, n != m).
# ------------------------------------------------------------------------------------------


def test_padding_with_zero_weights_is_never_read(enable_x64, rng):
    _, _, cx, cy, a, b = _problem64(rng, 5, 4)
    value, log = pot.gromov.entropic_gromov_wasserstein2(
        cx, cy, a, b, epsilon=EPS, log=True, **POT_TIGHT
    )
    first = None
    for garbage in (3.0, np.nan, 1e30):
        px, py = np.full((7, 7), garbage), np.full((7, 7), garbage)
        px[:5, :5], py[:4, :4] = cx, cy
        pa, pb = np.zeros(7), np.zeros(7)
        pa[:5], pb[:4] = a, b
        out = gw(px, py, pa, pb, epsilon=EPS, **TIGHT)
        plan = np.asarray(out.plan)
        np.testing.assert_allclose(plan[:5, :4], log["T"], atol=F64)
        np.testing.assert_allclose(out.cost, value, rtol=F64)
        assert np.all(plan[5:] == 0) and np.all(plan[:, 4:] == 0)
        assert all(np.all(np.isfinite(np.asarray(v))) for v in out[:5])
        g_reg, _ = _grads(px, py, pa, pb, EPS)
        assert np.all(np.asarray(g_reg[0])[5:] == 0) and np.all(np.asarray(g_reg[0])[:, 5:] == 0)
        assert np.all(np.asarray(g_reg[1])[4:] == 0) and np.all(np.asarray(g_reg[1])[:, 4:] == 0)
        assert all(np.all(np.isfinite(np.asarray(g))) for g in g_reg)
        if first is None:
            first = (plan, g_reg)
        else:  # NaN or 1e30 in the padding changes nothing at all
            np.testing.assert_array_equal(plan, first[0])
            for g, g0 in zip(g_reg, first[1], strict=True):
                np.testing.assert_array_equal(g, g0)


# ------------------------------------------------------------------------------------------
# The two losses (float64).
# ------------------------------------------------------------------------------------------


def test_square_and_kl_losses(enable_x64, rng):
    x, _, cx, cy, a, b = _problem64(rng)  # the problem of test_matches_pot
    # on unrelated spaces the two losses are different problems (each matches POT above)
    sq = gw(cx, cy, a, b, epsilon=EPS, **TIGHT)
    kl = gw(np.exp(-cx), np.exp(-cy), a, b, epsilon=EPS, loss="kl", **TIGHT)
    assert bool(sq.converged) and bool(kl.converged)
    assert np.abs(np.asarray(sq.plan) - np.asarray(kl.plan)).max() > 1e-3
    # an isometric pair: both losses find the permutation (the KL loss on similarities
    # exp(-C), whose values are smaller, with a smaller epsilon). Near-permutation plans make
    # Sinkhorn slow, so the thresholds are looser than TIGHT (traced: no recompilation).
    u = np.full(7, 1 / 7)
    perm = rng.permutation(7)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    y = (np.concatenate([x, np.zeros((7, 1))], 1) @ q)[perm]
    cz = _sqdist(y) / _sqdist(y).mean()
    loose = TIGHT | {"tol": 1e-6, "sinkhorn_tol": 1e-7}
    sq = gw(cx, cz, u, u, epsilon=EPS, **loose)
    kl = gw(np.exp(-cx), np.exp(-cz), u, u, epsilon=2e-3, loss="kl", **loose)
    for out in (sq, kl):
        np.testing.assert_array_equal(np.asarray(out.plan).argmax(1), np.argsort(perm))
    # traced negative costs with the KL loss: NaN, never a plausible number
    bad = gw(cx - 0.5, cy, a, b, epsilon=EPS, loss="kl", **TIGHT)
    assert np.all(np.isnan(bad.plan)) and np.isnan(bad.cost) and int(bad.n_iters) == -1


# ------------------------------------------------------------------------------------------
# jit / vmap, shapes and dtypes, traced bad values (float32, [7, 7]).
# ------------------------------------------------------------------------------------------


def _cloud32(rng, n=7, d=2):
    c = _sqdist(rng.normal(size=(n, d)))
    return (c / c.mean()).astype(np.float32)


_U7 = np.full(7, 1 / 7, np.float32)


def gw32(cx, cy, a=_U7, b=_U7, *, epsilon, **kw):
    """The float32 [7, 7] solver, always with the same keywords (one compilation)."""
    return gw(cx, cy, a, b, epsilon=epsilon, **(DEFAULT | kw))


@pytest.mark.parametrize("jit", [False, True])
def test_rotated_copy_and_permutations(rng, jit):
    fn = gw32 if jit else lambda *args, **kw: gromov_wasserstein(*args, **(DEFAULT | kw))
    x = rng.normal(size=(7, 2))
    cx = (_sqdist(x) / _sqdist(x).mean()).astype(np.float32)
    # the same cloud rotated into 3-D and shuffled: the plan is the (blurred) permutation,
    # and the same as with the shuffled cloud itself
    perm = rng.permutation(7)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    y = (np.concatenate([x, np.zeros((7, 1))], 1) @ q)[perm]
    cy = (_sqdist(y) / _sqdist(y).mean()).astype(np.float32)
    out = fn(cx, cy, _U7, _U7, epsilon=0.01)
    assert isinstance(out, GromovWassersteinOutput) and bool(out.converged)
    assert out.plan.dtype == jnp.float32 and out.n_iters.dtype == jnp.int32
    assert out.plan.shape == (7, 7) and out.f.shape == (7,) and out.cost.shape == ()
    np.testing.assert_array_equal(np.asarray(out.plan).argmax(1), np.argsort(perm))
    itself = fn(cx, cx[perm][:, perm], _U7, _U7, epsilon=0.01)
    np.testing.assert_allclose(out.plan, itself.plan, atol=F32)
    assert abs(float(out.cost)) < 1e-3
    # permuting y permutes the columns of the plan (and changes no value)
    cz = _cloud32(rng)
    ref = fn(cx, cz, _U7, _U7, epsilon=0.05)
    moved = fn(cx, cz[perm][:, perm], _U7, _U7, epsilon=0.05)
    np.testing.assert_allclose(moved.plan, np.asarray(ref.plan)[:, perm], atol=F32)
    np.testing.assert_allclose(moved.cost, ref.cost, atol=1e-5)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_plan_marginals(seed):
    rng = np.random.default_rng(seed)
    cx, cy = (rng.uniform(0, 1, (7, 7)).astype(np.float32) for _ in range(2))
    a, b = _weights(rng, 7).astype(np.float32), _weights(rng, 7).astype(np.float32)
    out = gw32(cx, cy, a, b, epsilon=0.1)
    plan = np.asarray(out.plan, np.float64)
    assert np.all(plan >= 0)
    assert np.abs(plan.sum(1) - a).sum() < 1e-5  # rows are exact after the f update
    assert np.abs(plan.sum(0) - b).sum() <= float(out.marginal_error) + 1e-6
    assert float(out.marginal_error) < 1e-4


def test_vmap_equals_loop(rng):
    costs = np.stack([_cloud32(rng) for _ in range(3)])
    others = np.stack([_cloud32(rng) for _ in range(3)])
    eps = np.array([0.02, 0.05, 0.1], np.float32)
    batched = jax.jit(jax.vmap(lambda cx, cy, e: gw32(cx, cy, epsilon=e)))(costs, others, eps)
    for k in range(3):
        single = gw32(costs[k], others[k], epsilon=eps[k])
        np.testing.assert_allclose(batched.plan[k], single.plan, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(batched.cost[k], single.cost, atol=1e-5)
        assert int(batched.n_iters[k]) == int(single.n_iters)


def test_single_point_in_bfloat16(rng):
    # one compiled solver for both: n = 1 forces the plan, bfloat16 runs in float32
    cy = _cloud32(rng, 3).astype(jnp.bfloat16)
    one = gromov_wasserstein(np.zeros((1, 1), jnp.bfloat16), cy, epsilon=0.1)
    assert one.plan.dtype == jnp.bfloat16 and one.cost.dtype == jnp.bfloat16
    assert one.f.dtype == jnp.bfloat16 and one.n_iters.dtype == jnp.int32
    np.testing.assert_allclose(np.asarray(one.plan, np.float32), np.full((1, 3), 1 / 3), rtol=1e-2)
    # GW of one point against three: sum_jl (0 - C_jl)^2 / 9
    cy32 = np.asarray(cy, np.float32)
    np.testing.assert_allclose(float(one.cost), np.sum(cy32**2) / 9, rtol=1e-2)


def test_traced_bad_values_give_nan_and_nan_propagates(rng):
    cx = _cloud32(rng)
    cases = {
        "epsilon": gw32(cx, cx, epsilon=-1.0),
        "tol": gw32(cx, cx, epsilon=0.1, tol=np.nan),
        "negative weight": gw32(cx, cx, np.r_[-0.1, _U7[1:] + 0.1 / 6], epsilon=0.1),
        "unequal masses": gw32(cx, cx, _U7, 2 * _U7, epsilon=0.1),
    }
    for name, out in cases.items():
        assert np.all(np.isnan(out.plan)), name
        assert np.isnan(out.cost) and np.isnan(out.regularized_cost), name
        assert int(out.n_iters) == -1 and not bool(out.converged), name
    # NaN in a real cost entry: NaN out, and the outer loop stops at once
    dirty = cx.copy()
    dirty[2, 3] = np.nan
    out = gw32(dirty, cx, epsilon=0.1)
    assert np.all(np.isnan(out.plan)) and np.isnan(out.cost) and not bool(out.converged)
    assert int(out.n_iters) == 1


def test_unconverged_concrete_call_warns(rng):
    cx = _cloud32(rng)
    with pytest.warns(checks.ConvergenceWarning, match="gromov_wasserstein stopped"):
        out = gromov_wasserstein(cx, cx[::-1, ::-1], _U7, _U7, epsilon=0.05, tol=1e-30,
                                 sinkhorn_tol=1e-4)  # fmt: skip
    assert int(out.n_iters) == 100 and not bool(out.converged)


# ------------------------------------------------------------------------------------------
# Bad input raises ValueError naming the argument (eagerly and under jit).
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cost_x": np.ones(3)}, r"`cost_x` must be a square 2-D array of shape \[n, n\]"),
        ({"cost_x": np.ones((3, 4))}, r"`cost_x` must be a square .* got shape \(3, 4\)"),
        ({"cost_y": np.ones((2, 2, 2))}, r"`cost_y` must be a square"),
        ({"cost_x": np.ones((0, 0))}, "`cost_x` must be non-empty"),
        ({"cost_x": np.ones((3, 3)) * 1j}, "`cost_x` must be real, got complex"),
        ({"cost_y": None}, "`cost_y` must be an array"),
        ({"a": np.ones(2) / 2}, r"`a` must have shape \(3,\) \[n\] to match `cost_x`"),
        ({"b": np.ones(3) / 3}, r"`b` must have shape \(4,\) \[m\] to match `cost_y`"),
        ({"a": np.array([0.5, 0.7, -0.2])}, "`a` must be non-negative"),
        ({"b": np.zeros(4)}, "`b` must have at least one positive"),
        ({"a": np.ones(3)}, r"equal mass .* sum\(a\) = 3.0 and sum\(b\) = 1.0"),
        ({"epsilon": 0.0}, "`epsilon` must be a finite positive"),
        ({"epsilon": -1.0}, "`epsilon` must be a finite positive"),
        ({"epsilon": np.array([0.1, 0.2])}, "`epsilon` must be a scalar"),
        ({"epsilon": 0.1 + 1j}, "`epsilon` must be real"),
        ({"tol": 0.0}, "`tol` must be"),
        ({"sinkhorn_tol": -1.0}, "`sinkhorn_tol` must be"),
        ({"loss": "l1"}, "`loss` must be one of"),
        ({"max_iters": 0}, "`max_iters` must be an int >= 1"),
        ({"sinkhorn_max_iters": 2.5}, "`sinkhorn_max_iters` must be a Python int"),
        ({"loss": "kl", "cost_x": -np.ones((3, 3))}, '`cost_x` must be non-negative for loss="kl"'),
    ],
)
def test_bad_input_raises(kwargs, match):
    args = {"cost_x": np.ones((3, 3)), "cost_y": np.ones((4, 4)), "a": None, "b": None,
            "epsilon": 0.1, **kwargs}  # fmt: skip
    cx, cy, a, b = (args.pop(k) for k in ("cost_x", "cost_y", "a", "b"))
    with pytest.raises(ValueError, match=match):
        gromov_wasserstein(cx, cy, a, b, **args)


def test_bad_input_raises_for_points_and_fused_and_under_jit():
    with pytest.raises(ValueError, match=r"`x` and `y` must be 2-D arrays"):
        gromov_wasserstein_points(np.ones(3), np.ones((4, 2)), epsilon=0.1)
    with pytest.raises(ValueError, match=r"`b` must have shape \(4,\) \[m\] to match `y`"):
        gromov_wasserstein_points(np.ones((3, 2)), np.ones((4, 5)), b=np.ones(3), epsilon=0.1)
    with pytest.raises(ValueError, match=r"`cost` must have shape \[n, m\] = \(3, 4\)"):
        fused_gromov_wasserstein(np.ones((4, 3)), np.ones((3, 3)), np.ones((4, 4)), alpha=0.5,
                                 epsilon=0.1)  # fmt: skip
    for alpha, match in ((1.5, r"`alpha` must be a number in \[0, 1\]"),
                         (-0.1, r"`alpha` must be a number in \[0, 1\]"),
                         (np.nan, "`alpha` must be a finite number"),
                         (np.ones(2), "`alpha` must be a scalar")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            fused_gromov_wasserstein(np.ones((3, 4)), np.ones((3, 3)), np.ones((4, 4)),
                                     alpha=alpha, epsilon=0.1)  # fmt: skip
    # shapes and array-valued scalars are static: the same errors at trace time
    with pytest.raises(ValueError, match=r"`cost_x` must be a square"):
        jax.jit(lambda c: gromov_wasserstein(c, jnp.ones((4, 4)), epsilon=0.1))(jnp.ones((3, 4)))
    with pytest.raises(ValueError, match="`epsilon` must be a scalar"):
        jax.jit(lambda e: gromov_wasserstein(jnp.ones((3, 3)), jnp.ones((4, 4)), epsilon=e))(
            jnp.ones(2)
        )


# ------------------------------------------------------------------------------------------
# Worked example: two modalities in different spaces (scikit-learn's 8x8 digits).
# ------------------------------------------------------------------------------------------


def test_digits_aligned_across_spaces(rng):
    """Digits (64-D) against a noisy isometric embedding in 80-D and against their 10-D PCA.

    The two sides share no coordinates, only their intra-domain distances. The alignment
    accuracy is the fraction of points whose plan row peaks at the true partner. Measured with
    this seed: 1.0 for the noisy 80-D embedding (noise std 1 per coordinate, pixels in [0, 16])
    and 1.0 for the 10-D PCA, at epsilon = 0.01 on unit-mean squared distances. (PCA to 2-D
    or 5-D keeps too little of the geometry: accuracy falls to 0.0 and 0.16.)
    """
    datasets = pytest.importorskip("sklearn.datasets")
    images = datasets.load_digits().data
    n = 100
    x = images[rng.choice(len(images), n, replace=False)]
    x = x - x.mean(0)
    perm = rng.permutation(n)
    q, _ = np.linalg.qr(rng.normal(size=(80, 64)))
    embedded = x @ q.T + rng.normal(size=(n, 80))
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    pca = x @ vt[:10].T
    cx = _sqdist(x)
    for y in (embedded, pca):
        cy = _sqdist(y[perm])
        out = gw((cx / cx.mean()).astype(np.float32), (cy / cy.mean()).astype(np.float32),
                 epsilon=1e-2, max_iters=300)  # fmt: skip
        accuracy = np.mean(np.asarray(out.plan).argmax(1) == np.argsort(perm))
        assert bool(out.converged) and accuracy >= 0.95, accuracy
