"""Exact linear assignment against SciPy's ``linear_sum_assignment``, brute force over
permutations, the lecture's worked example and the LP dual certificate."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from alignment._src import assignment as A
from alignment._src.assignment import hungarian, linear_assignment
from tests.conftest import count_compiles, x64

TOL = 1e-4  # float32 sums of O(100) entries of size O(1)

_solve = jax.jit(linear_assignment, static_argnames=("maximize", "init_rounds"))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _solve_batch(cost, maximize, init_rounds):
    return jax.vmap(lambda c: linear_assignment(c, maximize=maximize, init_rounds=init_rounds))(
        cost
    )


def _batch(cost, maximize=False, init_rounds=4):
    return _solve_batch(jnp.asarray(cost), maximize, init_rounds)


def _member(out, b):
    return jax.tree.map(lambda x: x[b], out)


def _brute_force(cost: np.ndarray, maximize: bool = False) -> float:
    """Best total over every injective map of the smaller side into the larger."""
    c = cost if cost.shape[0] <= cost.shape[1] else cost.T
    n, m = c.shape
    totals = [c[np.arange(n), list(p)].sum() for p in itertools.permutations(range(m), n)]
    return max(totals) if maximize else min(totals)


def _check_certificate(cost: np.ndarray, out, maximize: bool = False, tol: float = TOL) -> None:
    """The LP dual certificate: feasible, tight on the assignment, same objective."""
    c = -cost if maximize else cost
    u = np.asarray(out.row_potentials, np.float64) * (-1 if maximize else 1)
    v = np.asarray(out.col_potentials, np.float64) * (-1 if maximize else 1)
    rows, cols = np.asarray(out.rows), np.asarray(out.cols)
    finite = np.isfinite(c)
    slack = np.where(finite, c - u[:, None] - v[None, :], np.inf)
    scale = 1.0 + np.abs(c[finite]).max()
    assert slack.min() >= -tol * scale
    np.testing.assert_allclose(slack[rows, cols], 0.0, atol=tol * scale)
    n, m = c.shape
    longer, other = (v, cols) if n <= m else (u, rows)
    assert (longer <= tol * scale).all()
    unassigned = np.setdiff1d(np.arange(max(n, m)), other)
    np.testing.assert_allclose(longer[unassigned], 0.0, atol=tol * scale)
    np.testing.assert_allclose(u.sum() + v.sum(), c[rows, cols].sum(), rtol=tol, atol=tol * scale)


def _check_against_scipy(cost: np.ndarray, out, maximize: bool = False) -> None:
    rows, cols = linear_sum_assignment(cost, maximize=maximize)
    ref = cost[rows, cols].sum()
    assert int(out.status) == A.STATUS_OPTIMAL
    np.testing.assert_array_equal(np.asarray(out.rows), rows)
    ours_rows, ours_cols = np.asarray(out.rows), np.asarray(out.cols)
    assert len(np.unique(ours_cols)) == len(ours_cols) == min(cost.shape)
    np.testing.assert_allclose(cost[ours_rows, ours_cols].sum(), ref, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(float(out.cost), ref, rtol=TOL, atol=TOL)


# --------------------------------------------------------------------------------------------
# The lecture's worked example.
# --------------------------------------------------------------------------------------------

SEED_COST = [[8, 25, 50], [50, 35, 75], [22, 48, 150]]


@pytest.mark.parametrize("jit", [False, True])
def test_seed_example(jit):
    """Cost 107 with (u3, v1), (u1, v3), (u2, v2): rows 0, 1, 2 take columns 2, 1, 0."""
    fn = jax.jit(hungarian) if jit else hungarian
    rows, cols = fn(jnp.array(SEED_COST))
    assert rows.tolist() == [0, 1, 2]
    assert cols.tolist() == [2, 1, 0]
    out = linear_assignment(jnp.array(SEED_COST))
    assert float(out.cost) == 107.0
    _check_certificate(np.array(SEED_COST, float), out)


def test_seed_example_maximize():
    cost = np.array(SEED_COST, float)
    out = linear_assignment(cost, maximize=True)
    _check_against_scipy(cost, out, maximize=True)
    _check_certificate(cost, out, maximize=True)


# --------------------------------------------------------------------------------------------
# Agreement with SciPy and brute force.
# --------------------------------------------------------------------------------------------

CASES = [((1, 1), False), ((1, 5), True), ((5, 1), False), ((6, 11), False), ((11, 6), True)]
CASES += [((40, 40), False), ((40, 40), True), ((30, 70), False), ((70, 30), False)]


@pytest.mark.parametrize(("shape", "maximize"), CASES)
def test_matches_scipy(rng, shape, maximize):
    costs = rng.normal(size=(4, *shape)).astype(np.float32)
    batch = _batch(costs, maximize)
    for b, cost in enumerate(costs):
        single = _solve(jnp.asarray(cost), maximize=maximize)
        for out in (single, _member(batch, b)):
            _check_against_scipy(cost, out, maximize)
            _check_certificate(cost, out, maximize)


def test_integer_costs_with_ties(rng):
    """Small integer costs (many optimal assignments): same optimum, valid certificate."""
    costs = rng.integers(0, 4, size=(6, 25, 25))
    batch = _batch(costs)
    for b, cost in enumerate(costs):
        for out in (_solve(jnp.asarray(cost)), _member(batch, b)):
            _check_against_scipy(cost.astype(float), out)
            _check_certificate(cost.astype(float), out)


def test_constant_cost_terminates():
    """Every assignment is optimal: the bidding stalls on ties and the paths finish the job."""
    cost = np.full((50, 60), 3.0, np.float32)
    out = _solve(jnp.asarray(cost))
    assert float(out.cost) == 150.0
    _check_certificate(cost, out)


@pytest.mark.parametrize("init_rounds", [0, 1, 50])
def test_init_rounds_do_not_change_the_optimum(rng, init_rounds):
    cost = rng.random((30, 45)).astype(np.float32)
    _check_against_scipy(cost, _solve(jnp.asarray(cost), init_rounds=init_rounds))
    _check_against_scipy(cost, _member(_batch(cost[None], False, init_rounds), 0))


@settings(max_examples=40, deadline=None)
@given(
    shape=st.sampled_from([(1, 3), (3, 3), (2, 5), (5, 2), (5, 5)]),  # few shapes: few compiles
    maximize=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_optimal_against_brute_force(shape, maximize, seed):
    """Small integer costs (ties) in [-5, 5]: the optimum of every injective assignment."""
    cost = np.random.default_rng(seed).integers(-5, 6, size=shape).astype(np.float32)
    out = _solve(jnp.asarray(cost), maximize=maximize)
    assert float(out.cost) == _brute_force(cost, maximize)
    _check_certificate(cost, out, maximize)


def test_brute_force_seven(rng):
    """n = 7 (5040 permutations), continuous costs, single and batched."""
    costs = rng.random((3, 7, 7))
    batch = _batch(costs.astype(np.float32))
    for b, cost in enumerate(costs):
        ref = _brute_force(cost)
        np.testing.assert_allclose(float(_solve(jnp.asarray(cost)).cost), ref, rtol=1e-6)
        np.testing.assert_allclose(float(batch.cost[b]), ref, rtol=1e-6)


def test_float64(enable_x64, rng):
    cost = rng.normal(size=(60, 45)) * 1e3
    out = linear_assignment(jnp.asarray(cost))
    assert out.cost.dtype == jnp.float64 and out.row_potentials.dtype == jnp.float64
    rows, cols = linear_sum_assignment(cost)
    np.testing.assert_allclose(float(out.cost), cost[rows, cols].sum(), rtol=1e-12)
    _check_certificate(cost, out, tol=1e-10)


# --------------------------------------------------------------------------------------------
# Forbidden pairs, infeasible and invalid input.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("maximize", [False, True])
def test_forbidden_pairs_match_scipy(rng, maximize):
    """``inf`` entries (``-inf`` when maximising) are never assigned."""
    forbidden = -np.inf if maximize else np.inf
    costs = rng.random((4, 12, 15)).astype(np.float32)
    costs[rng.random(costs.shape) < 0.6] = forbidden
    for cost in costs:  # keep each problem feasible: one finite diagonal
        np.fill_diagonal(cost, rng.random(12))
    batch = _batch(costs, maximize)
    for b, cost in enumerate(costs):
        for out in (_solve(jnp.asarray(cost), maximize=maximize), _member(batch, b)):
            _check_against_scipy(cost, out, maximize)
            assert np.isfinite(cost[np.asarray(out.rows), np.asarray(out.cols)]).all()
            _check_certificate(cost, out, maximize)


def _infeasible_costs():
    row_of_inf = np.ones((4, 4))
    row_of_inf[2] = np.inf
    hall = np.ones((4, 5))  # rows 0-2 share columns 0-1 only: Hall's condition fails
    hall[:3, 2:] = np.inf
    col_short = np.ones((5, 3))
    col_short[:, 1] = np.inf
    return [row_of_inf, hall, col_short]


@pytest.mark.parametrize("cost", _infeasible_costs())
def test_infeasible_raises_when_concrete(cost):
    with pytest.raises(ValueError, match="infeasible"):
        hungarian(cost)


@pytest.mark.parametrize("cost", _infeasible_costs())
def test_infeasible_status_under_jit_and_vmap(cost):
    for out in (_solve(jnp.asarray(cost)), _member(_batch(cost[None]), 0)):
        assert int(out.status) == A.STATUS_INFEASIBLE
        assert (np.asarray(out.cols) == -1).all()
        assert np.isnan(float(out.cost))
        assert np.isnan(np.asarray(out.row_potentials)).all()
        assert np.isnan(np.asarray(out.col_potentials)).all()
        if cost.shape[0] > cost.shape[1]:
            assert (np.asarray(out.rows) == -1).all()


@pytest.mark.parametrize(
    ("value", "maximize"), [(np.nan, False), (np.nan, True), (-np.inf, False), (np.inf, True)]
)
def test_invalid_entries(value, maximize):
    cost = np.ones((4, 6))
    cost[1, 3] = value
    with pytest.raises(ValueError, match=r"`cost` of shape \(4, 6\) contains"):
        linear_assignment(cost, maximize=maximize)
    for out in (
        _solve(jnp.asarray(cost), maximize=maximize),
        _member(_batch(cost[None], maximize), 0),
    ):
        assert int(out.status) == A.STATUS_INVALID
        assert (np.asarray(out.cols) == -1).all()
        assert np.isnan(float(out.cost))


def test_batch_with_bad_members(rng):
    """Each member of a batch gets its own status; the good ones are still solved exactly."""
    costs = rng.random((4, 8, 8)).astype(np.float32)
    costs[1, 3, :] = np.inf  # infeasible
    costs[2, 0, 0] = np.nan  # invalid
    out = _batch(costs)
    assert out.status.tolist() == [0, 1, 2, 0]
    for b in (0, 3):
        _check_against_scipy(costs[b], _member(out, b))


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"`cost`.*2-D array of shape \[n, m\], got \(3,\)"):
        hungarian(jnp.ones(3))
    with pytest.raises(ValueError, match="init_rounds"):
        linear_assignment(jnp.ones((2, 2)), init_rounds=-1)


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0, 0)])
def test_empty(shape):
    out = linear_assignment(jnp.ones(shape))
    assert out.rows.shape == out.cols.shape == (0,)
    assert float(out.cost) == 0.0 and int(out.status) == 0
    assert out.row_potentials.shape == (shape[0],) and out.col_potentials.shape == (shape[1],)


# --------------------------------------------------------------------------------------------
# Transformations.
# --------------------------------------------------------------------------------------------


def test_grad_of_cost_is_the_assignment_matrix(rng):
    cost = jnp.asarray(rng.random((5, 7)).astype(np.float32))
    grad = jax.grad(lambda c: linear_assignment(c).cost)(cost)
    rows, cols = linear_sum_assignment(np.asarray(cost))
    expected = np.zeros((5, 7), np.float32)
    expected[rows, cols] = 1.0
    np.testing.assert_array_equal(np.asarray(grad), expected)
    # Composes with vmap, and with maximize (the gradient of the maximised total).
    grads = jax.vmap(jax.grad(lambda c: linear_assignment(c, maximize=True).cost))(cost[None])
    rows, cols = linear_sum_assignment(np.asarray(cost), maximize=True)
    expected = np.zeros((5, 7), np.float32)
    expected[rows, cols] = 1.0
    np.testing.assert_array_equal(np.asarray(grads[0]), expected)


def test_nested_vmap_equals_loop(rng):
    costs = rng.random((2, 3, 9, 6)).astype(np.float32)
    outs = jax.jit(jax.vmap(jax.vmap(hungarian)))(jnp.asarray(costs))
    for a, b in itertools.product(range(2), range(3)):
        rows, cols = linear_sum_assignment(costs[a, b])
        np.testing.assert_array_equal(np.asarray(outs[0][a, b]), rows)
        ref = costs[a, b][rows, cols].sum()
        np.testing.assert_allclose(
            costs[a, b][rows, np.asarray(outs[1][a, b])].sum(), ref, rtol=TOL
        )


def test_vmap_of_jit_and_unbatched_argument(rng):
    cost = jnp.asarray(rng.random((6, 6)).astype(np.float32))
    # vmap over a batch axis the cost does not have (in_axes=None): broadcast, every member equal.
    outs = jax.vmap(lambda _, c: jax.jit(hungarian)(c)[1], in_axes=(0, None))(jnp.arange(3), cost)
    single = hungarian(cost)[1]
    for b in range(3):
        np.testing.assert_array_equal(np.asarray(outs[b]), np.asarray(single))


def test_float64_batch(rng):
    with x64():
        costs = rng.normal(size=(3, 20, 20))
        out = _batch(costs)
        for b, cost in enumerate(costs):
            rows, cols = linear_sum_assignment(cost)
            np.testing.assert_allclose(float(out.cost[b]), cost[rows, cols].sum(), rtol=1e-12)


# --------------------------------------------------------------------------------------------
# Issue 9: compile cache, static options, dtypes and the bad-input policy.
# --------------------------------------------------------------------------------------------


def test_eager_calls_hit_the_compile_cache(rng):
    """Issue 9: eager ``hungarian`` compiled its loops on every call (0.75 s at n = 100)."""
    cost = rng.random((100, 100)).astype(np.float32)
    first = hungarian(cost)
    size = A._assignment_core._cache_size()
    assert count_compiles(lambda: hungarian(cost)) == 0
    assert count_compiles(lambda: linear_assignment(rng.random((100, 100)))) == 0
    assert A._assignment_core._cache_size() == size
    np.testing.assert_array_equal(np.asarray(first[1]), linear_sum_assignment(cost)[1])


@pytest.mark.parametrize("bad", [1.5, True, -1, np.ones(2, int), None])
def test_init_rounds_must_be_a_static_int(bad):
    with pytest.raises(ValueError, match="init_rounds"):
        linear_assignment(np.ones((2, 2)), init_rounds=bad)
    with pytest.raises(ValueError, match="init_rounds"):
        jax.jit(lambda c: linear_assignment(c, init_rounds=bad))(jnp.ones((2, 2)))


@pytest.mark.parametrize("maximize", [1, "yes", None])
def test_maximize_must_be_a_bool(maximize):
    with pytest.raises(ValueError, match="maximize"):
        linear_assignment(np.ones((2, 2)), maximize=maximize)


def test_none_and_complex_cost_raise():
    with pytest.raises(ValueError, match=r"`cost`.*None"):
        hungarian(None)
    with pytest.raises(ValueError, match=r"`cost`.*complex"):
        linear_assignment(np.ones((2, 2)) + 1j)
    with pytest.raises(ValueError, match=r"`cost`.*complex"):
        jax.jit(hungarian)(jnp.ones((2, 2), jnp.complex64))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_solved_in_float32(dtype, rng):
    cost = rng.random((6, 9)).astype(np.float32)
    out = linear_assignment(jnp.asarray(cost, dtype))
    assert out.cost.dtype == out.row_potentials.dtype == out.col_potentials.dtype == dtype
    c16 = np.asarray(jnp.asarray(cost, dtype).astype(jnp.float32))
    rows, cols = linear_sum_assignment(c16)
    np.testing.assert_allclose(float(out.cost), c16[rows, cols].sum(), rtol=1e-2)


def test_int_and_bool_costs_become_float():
    out = linear_assignment(np.array([[True, False], [False, True]]))
    assert jnp.issubdtype(out.cost.dtype, jnp.floating) and float(out.cost) == 0.0


def test_traced_nan_gives_nan_cost_and_gradient():
    cost = jnp.ones((3, 4)).at[1, 2].set(jnp.nan)
    grad = jax.jit(jax.grad(lambda c: linear_assignment(c).cost))(cost)
    assert np.isnan(np.asarray(grad)).all()
    # A valid member of the same batch keeps its exact gradient (no NaN leaks through `where`).
    good = jnp.asarray(np.arange(12.0).reshape(3, 4) % 5)
    grads = jax.vmap(jax.grad(lambda c: linear_assignment(c).cost))(jnp.stack([good, cost]))
    assert np.isfinite(np.asarray(grads[0])).all() and np.asarray(grads[0]).sum() == 3.0
    assert np.isnan(np.asarray(grads[1])).all()
