"""Tests for alignment._src.dtw against independent references.

References: a float64 row-major NumPy dynamic programme and brute force over every warping path
(tests/references.py), dtw-python (exact DTW and its path), tslearn (soft-DTW value and gradient),
the lecture's worked example, finite differences and ``check_grads``.
"""

from __future__ import annotations

import functools

import dtw as dtw_python
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from jax.test_util import check_grads
from tslearn.metrics import SoftDTW as TslearnSoftDTW

import alignment as al
from tests import references as ref
from tests.conftest import x64

F32_CLOSED = 1e-5  # float32 vs a float64 reference, relative
F32_ITER = 1e-4  # float32 recursions over a few hundred cells
F64 = 1e-10
GRAD_X64 = 1e-6

SIZES = [(1, 1), (1, 4), (4, 1), (3, 3), (5, 7), (8, 5)]


def _cost(rng, t, s, d=3):
    x = rng.normal(size=(t, d))
    y = rng.normal(size=(s, d))
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1), x, y


def _tslearn_grad(cost, gamma):
    sdtw = TslearnSoftDTW(cost, gamma=gamma)
    sdtw.compute()
    return sdtw.grad()


def _maybe_jit(fn, jit):
    return jax.jit(fn) if jit else fn


# ------------------------------------------------------------------------------------------
# The lecture's worked example.
# ------------------------------------------------------------------------------------------

LECTURE_A = [1.0, 1, 3, 3, 2, 4]
LECTURE_B = [1.0, 3, 2, 2, 4, 4]
LECTURE_PATH = [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2), (4, 3), (5, 4), (5, 5)]


@pytest.mark.parametrize("jit", [False, True])
def test_lecture_example_cost_zero_and_path(jit):
    cost = al.absolute_difference(jnp.array(LECTURE_A), jnp.array(LECTURE_B))
    # The lecture's distance table, row B(i), column A(j): |B_i - A_j|.
    np.testing.assert_array_equal(
        np.asarray(cost).T[0], [0, 0, 2, 2, 1, 3]
    )  # B(1)=1 against A = 1,1,3,3,2,4
    value, alignment = _maybe_jit(al.dtw_alignment, jit)(cost)
    assert float(value) == 0.0
    assert [tuple(p) for p in al.alignment_to_path(alignment)] == LECTURE_PATH
    assert float(_maybe_jit(al.dtw, jit)(cost)) == 0.0


def test_lecture_example_matches_dtw_python():
    cost = np.abs(np.subtract.outer(LECTURE_A, LECTURE_B))
    res = dtw_python.dtw(cost, step_pattern="symmetric1")
    assert res.distance == 0.0
    assert list(zip(res.index1, res.index2, strict=True)) == LECTURE_PATH


# ------------------------------------------------------------------------------------------
# Exact DTW.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize(("t", "s"), SIZES)
def test_dtw_matches_numpy_dp_and_dtw_python(rng, t, s, jit):
    cost, _, _ = _cost(rng, t, s)
    ours = float(_maybe_jit(al.dtw, jit)(jnp.asarray(cost, jnp.float32)))
    expected = ref.dtw_value(cost)
    np.testing.assert_allclose(ours, expected, rtol=F32_CLOSED)
    assert dtw_python.dtw(cost, step_pattern="symmetric1").distance == pytest.approx(expected)


@pytest.mark.parametrize(("t", "s"), [(5, 7), (9, 6), (12, 12), (1, 6)])
def test_dtw_path_matches_dtw_python(rng, t, s):
    cost, _, _ = _cost(rng, t, s)
    value, alignment = al.dtw_alignment(jnp.asarray(cost, jnp.float32))
    res = dtw_python.dtw(cost, step_pattern="symmetric1")
    np.testing.assert_allclose(float(value), res.distance, rtol=F32_CLOSED)
    expected = list(zip(res.index1.tolist(), res.index2.tolist(), strict=True))
    assert [tuple(p) for p in al.alignment_to_path(alignment).tolist()] == expected
    assert set(np.unique(np.asarray(alignment))) <= {0.0, 1.0}


@pytest.mark.parametrize("window", [0, 1, 3])
def test_dtw_window_matches_dtw_python_sakoe_chiba_for_equal_lengths(rng, window):
    cost, _, _ = _cost(rng, 10, 10)
    ours = float(al.dtw(jnp.asarray(cost, jnp.float32), window=window))
    res = dtw_python.dtw(
        cost,
        step_pattern="symmetric1",
        window_type="sakoechiba",
        window_args={"window_size": window},
    )
    np.testing.assert_allclose(ours, res.distance, rtol=F32_CLOSED)


@pytest.mark.parametrize(("t", "s"), [(2, 2), (3, 4), (4, 3), (4, 5), (5, 5), (2, 5)])
@pytest.mark.parametrize("window", [None, 0, 1, 2])
def test_dtw_and_soft_dtw_against_brute_force(rng, t, s, window, enable_x64):
    cost, _, _ = _cost(rng, t, s)
    mask = ref.admissible(t, s, window)
    feasible = any(all(mask[i, j] for i, j in p) for p in ref.all_paths(t, s))
    if not feasible:
        with pytest.raises(ValueError, match="window"):
            al.dtw(cost, window=window)
        return
    gamma = 0.7
    best, soft, expected, _, best_path = ref.brute_force(cost, gamma, window)
    np.testing.assert_allclose(float(al.dtw(cost, window=window)), best, rtol=F64)
    _, alignment = al.dtw_alignment(cost, window=window)
    assert [tuple(p) for p in al.alignment_to_path(alignment).tolist()] == best_path
    np.testing.assert_allclose(float(al.soft_dtw(cost, gamma=gamma, window=window)), soft, rtol=F64)
    np.testing.assert_allclose(
        np.asarray(al.soft_dtw_alignment(cost, gamma=gamma, window=window)),
        expected,
        atol=1e-10,
    )
    np.testing.assert_allclose(
        float(al.soft_dtw(cost, gamma=gamma, window=window)),
        ref.dtw_value(cost, gamma=gamma, window=window),
        rtol=F64,
    )


def test_window_admits_documented_cells_and_every_positive_window_is_feasible():
    """The band claim of the docstring: window >= 1 always has a path; 0 only if t == s."""
    for t in range(1, 7):
        for s in range(1, 7):
            for window in (0, 1, 2):
                mask = ref.admissible(t, s, window)
                feasible = np.isfinite(ref.dtw_value(np.where(mask, 0.0, np.inf)))
                expected = window >= 1 or t == s or min(t, s) == 1
                assert feasible == expected, (t, s, window)
                if feasible:
                    value = al.dtw(jnp.zeros((t, s)), window=window)
                    assert float(value) == 0.0
                else:
                    with pytest.raises(ValueError, match="window"):
                        al.dtw(jnp.zeros((t, s)), window=window)


def test_window_follows_rectangle_diagonal_for_unequal_lengths(rng):
    """A cheap corridor along the rectangle's diagonal stays reachable when t != s."""
    t, s = 6, 12
    cost = np.full((t, s), 10.0)
    for j in range(s):
        cost[round(j * (t - 1) / (s - 1)), j] = 0.0
    value = float(al.dtw(jnp.asarray(cost), window=1))
    assert value == pytest.approx(ref.dtw_value(cost, window=1))
    assert value <= 10.0 * (t + s)  # finite, and uses the corridor
    assert np.isfinite(value)


def test_dtw_gradient_is_the_path(rng):
    cost, _, _ = _cost(rng, 6, 9)
    grad = jax.grad(al.dtw)(jnp.asarray(cost, jnp.float32))
    _, alignment = al.dtw_alignment(jnp.asarray(cost, jnp.float32))
    np.testing.assert_array_equal(np.asarray(grad), np.asarray(alignment))


def test_dtw_vmap_equals_loop(rng):
    costs = np.stack([_cost(rng, 5, 7)[0] for _ in range(4)]).astype(np.float32)
    batched = jax.vmap(al.dtw_alignment)(jnp.asarray(costs))
    for k in range(4):
        v, a = al.dtw_alignment(jnp.asarray(costs[k]))
        np.testing.assert_allclose(batched[0][k], v, rtol=F32_CLOSED)
        np.testing.assert_array_equal(batched[1][k], a)


def test_dtw_is_symmetric_under_transposition(rng):
    cost, _, _ = _cost(rng, 7, 4)
    c = jnp.asarray(cost, jnp.float32)
    assert float(al.dtw(c)) == pytest.approx(float(al.dtw(c.T)), rel=F32_CLOSED)
    np.testing.assert_array_equal(
        np.asarray(al.dtw_alignment(c)[1]).T, np.asarray(al.dtw_alignment(c.T)[1])
    )


def test_dtw_dtype_follows_input(rng, enable_x64):
    cost, _, _ = _cost(rng, 4, 6)
    assert al.dtw(jnp.asarray(cost, jnp.float32)).dtype == jnp.float32
    assert al.dtw(jnp.asarray(cost, jnp.float64)).dtype == jnp.float64
    assert al.dtw_alignment(jnp.asarray(cost, jnp.float64))[1].dtype == jnp.float64
    assert al.soft_dtw(jnp.asarray(cost, jnp.float32)).dtype == jnp.float32
    assert al.dtw(np.arange(6).reshape(2, 3)).dtype == jnp.float64  # ints promoted


def test_alignment_to_path_rejects_non_matrix():
    with pytest.raises(ValueError, match="alignment"):
        al.alignment_to_path(np.zeros(3))


# ------------------------------------------------------------------------------------------
# Soft-DTW.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize(("t", "s"), SIZES)
@pytest.mark.parametrize("gamma", [0.01, 0.1, 1.0])
def test_soft_dtw_value_and_gradient_match_tslearn(rng, t, s, gamma, jit):
    cost, _, _ = _cost(rng, t, s)
    sdtw = TslearnSoftDTW(cost, gamma=gamma)
    expected_value, expected_grad = sdtw.compute(), sdtw.grad()
    fn = _maybe_jit(jax.value_and_grad(lambda c: al.soft_dtw(c, gamma=gamma)), jit)
    value, grad = fn(jnp.asarray(cost, jnp.float32))
    np.testing.assert_allclose(float(value), expected_value, rtol=F32_ITER, atol=1e-5)
    np.testing.assert_allclose(np.asarray(grad), expected_grad, rtol=F32_ITER, atol=1e-5)


def test_soft_dtw_matches_numpy_dp_float64(rng, enable_x64):
    cost, _, _ = _cost(rng, 9, 13)
    for gamma in (0.05, 0.5, 5.0):
        np.testing.assert_allclose(
            float(al.soft_dtw(cost, gamma=gamma)), ref.dtw_value(cost, gamma), rtol=F64
        )


def test_soft_dtw_check_grads_in_cost_and_gamma(rng, enable_x64):
    cost, _, _ = _cost(rng, 5, 6)
    check_grads(
        lambda c, g: al.soft_dtw(c, gamma=g),
        (jnp.asarray(cost), 0.3),
        order=1,
        modes=("rev",),
        atol=GRAD_X64,
        rtol=GRAD_X64,
    )


def test_soft_dtw_gamma_gradient_against_finite_differences_of_reference(rng, enable_x64):
    cost, _, _ = _cost(rng, 6, 8)
    gamma, h = 0.4, 1e-6
    fd = (ref.dtw_value(cost, gamma + h) - ref.dtw_value(cost, gamma - h)) / (2 * h)
    ours = float(jax.grad(lambda g: al.soft_dtw(cost, gamma=g))(gamma))
    np.testing.assert_allclose(ours, fd, rtol=1e-6)


def test_soft_dtw_xy_gradient_matches_tslearn_chain_rule(rng, enable_x64):
    """d/dx through the squared Euclidean cost: 2 sum_j E_ij (x_i - y_j)."""
    cost, x, y = _cost(rng, 6, 9)
    e = _tslearn_grad(cost, 0.2)
    expected = 2 * (e.sum(1)[:, None] * x - e @ y)
    grad = jax.grad(lambda x: al.soft_dtw_points(x, y, gamma=0.2))(x)
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-8)


def test_soft_dtw_tends_to_dtw_with_documented_bounds(rng, enable_x64):
    cost, _, _ = _cost(rng, 7, 9)
    hard = ref.dtw_value(cost)
    n_paths = ref.count_paths(7, 9)
    for gamma in (1.0, 0.1, 0.01, 0.001):
        soft = float(al.soft_dtw(cost, gamma=gamma))
        assert hard - gamma * np.log(n_paths) - 1e-9 <= soft <= hard + 1e-9
    assert float(al.soft_dtw(cost, gamma=1e-4)) == pytest.approx(hard, abs=1e-3)


def test_soft_alignment_tends_to_hard_path(rng):
    cost, _, _ = _cost(rng, 8, 6)
    c = jnp.asarray(cost, jnp.float32)
    soft = al.soft_dtw_alignment(c, gamma=1e-3)
    np.testing.assert_allclose(np.asarray(soft), np.asarray(al.dtw_alignment(c)[1]), atol=1e-3)


def test_small_gamma_large_costs_float32_stay_finite(rng):
    cost = jnp.asarray(rng.uniform(0, 1e3, size=(64, 48)), jnp.float32)
    value, (g_cost, g_gamma) = jax.value_and_grad(
        lambda c, g: al.soft_dtw(c, gamma=g), argnums=(0, 1)
    )(cost, jnp.float32(1e-3))
    assert np.isfinite(float(value))
    assert np.all(np.isfinite(np.asarray(g_cost)))
    assert np.isfinite(float(g_gamma))
    np.testing.assert_allclose(float(value), ref.dtw_value(np.asarray(cost)), rtol=F32_ITER)


@pytest.mark.parametrize("jit", [False, True])
def test_soft_dtw_alignment_is_gradient_and_probability(rng, jit):
    cost, _, _ = _cost(rng, 6, 8)
    c = jnp.asarray(cost, jnp.float32)
    a = _maybe_jit(lambda c: al.soft_dtw_alignment(c, gamma=0.5), jit)(c)
    np.testing.assert_allclose(np.asarray(a), _tslearn_grad(cost, 0.5), atol=1e-5)
    assert float(a[0, 0]) == pytest.approx(1.0) and float(a[-1, -1]) == pytest.approx(1.0)
    assert np.all((np.asarray(a) >= -1e-6) & (np.asarray(a) <= 1 + 1e-6))


def test_soft_dtw_vmap_over_cost_and_gamma_equals_loop(rng):
    costs = jnp.asarray(np.stack([_cost(rng, 5, 8)[0] for _ in range(3)]), jnp.float32)
    gammas = jnp.array([0.1, 0.5, 2.0], jnp.float32)
    fn = jax.vmap(jax.value_and_grad(lambda c, g: al.soft_dtw(c, gamma=g), argnums=(0, 1)))
    values, (g_costs, g_gammas) = fn(costs, gammas)
    for k in range(3):
        v, (gc, gg) = jax.value_and_grad(lambda c, g: al.soft_dtw(c, gamma=g), argnums=(0, 1))(
            costs[k], gammas[k]
        )
        np.testing.assert_allclose(values[k], v, rtol=F32_CLOSED)
        np.testing.assert_allclose(g_costs[k], gc, rtol=F32_CLOSED, atol=1e-7)
        np.testing.assert_allclose(g_gammas[k], gg, rtol=F32_CLOSED)


def test_soft_dtw_with_window_and_gradient(rng, enable_x64):
    cost, _, _ = _cost(rng, 7, 11)
    for window in (1, 2):
        np.testing.assert_allclose(
            float(al.soft_dtw(cost, gamma=0.3, window=window)),
            ref.dtw_value(cost, 0.3, window),
            rtol=F64,
        )
        grad = al.soft_dtw_alignment(cost, gamma=0.3, window=window)
        assert np.all(np.asarray(grad)[~ref.admissible(7, 11, window)] == 0.0)
        check_grads(
            lambda c, w=window: al.soft_dtw(c, gamma=0.3, window=w),
            (jnp.asarray(cost),),
            order=1,
            modes=("rev",),
            atol=GRAD_X64,
            rtol=GRAD_X64,
        )


def test_long_sequences_value_and_gradient_run():
    """t = s = 4096 (value and gradient) must fit comfortably: O(t s) residuals."""
    t = 4096
    x = jnp.sin(jnp.linspace(0.0, 20.0, t))[:, None]
    y = jnp.sin(jnp.linspace(0.5, 20.5, t))[:, None]
    value, grad = jax.jit(jax.value_and_grad(lambda x: al.soft_dtw_points(x, y, gamma=0.1)))(x)
    assert np.isfinite(float(value))
    assert grad.shape == (t, 1) and np.all(np.isfinite(np.asarray(grad)))


# ------------------------------------------------------------------------------------------
# Padded batches.
# ------------------------------------------------------------------------------------------


def _padded_batch(rng, lengths_t, lengths_s, t_max, s_max, d=2):
    xs = np.zeros((len(lengths_t), t_max, d), np.float32)
    ys = np.zeros((len(lengths_t), s_max, d), np.float32)
    for k, (lt, ls) in enumerate(zip(lengths_t, lengths_s, strict=True)):
        xs[k, :lt] = rng.normal(size=(lt, d))
        ys[k, :ls] = rng.normal(size=(ls, d))
    return jnp.asarray(xs), jnp.asarray(ys)


@pytest.mark.parametrize("window", [None, 1])
def test_padded_batch_equals_unpadded_values_and_gradients(rng, window):
    lt = jnp.array([3, 7, 5, 1])
    ls = jnp.array([9, 4, 5, 6])
    xs, ys = _padded_batch(rng, lt.tolist(), ls.tolist(), 7, 9)

    def loss(x, y, a, b):
        return al.soft_dtw_points(x, y, gamma=0.2, window=window, lengths=(a, b))

    values, (gx, gy) = jax.jit(jax.vmap(jax.value_and_grad(loss, argnums=(0, 1))))(xs, ys, lt, ls)
    hard = jax.vmap(lambda x, y, a, b: al.dtw_points(x, y, window=window, lengths=(a, b)))(
        xs, ys, lt, ls
    )
    for k in range(4):
        a, b = int(lt[k]), int(ls[k])
        x, y = xs[k, :a], ys[k, :b]
        v, (ex, ey) = jax.value_and_grad(
            lambda x, y: al.soft_dtw_points(x, y, gamma=0.2, window=window), argnums=(0, 1)
        )(x, y)
        np.testing.assert_allclose(values[k], v, rtol=F32_CLOSED)
        np.testing.assert_allclose(gx[k, :a], ex, rtol=F32_CLOSED, atol=1e-6)
        np.testing.assert_allclose(gy[k, :b], ey, rtol=F32_CLOSED, atol=1e-6)
        assert np.all(np.asarray(gx[k, a:]) == 0.0) and np.all(np.asarray(gy[k, b:]) == 0.0)
        np.testing.assert_allclose(hard[k], al.dtw_points(x, y, window=window), rtol=F32_CLOSED)


def test_padded_dtw_path_and_alignment_zero_on_padding(rng):
    cost, _, _ = _cost(rng, 6, 8)
    c = jnp.asarray(cost, jnp.float32)
    padded = jnp.full((9, 10), jnp.nan).at[:6, :8].set(c)  # garbage in the padding
    v, a = jax.jit(lambda c: al.dtw_alignment(c, lengths=(6, 8)))(padded)
    v0, a0 = al.dtw_alignment(c)
    assert float(v) == pytest.approx(float(v0))
    np.testing.assert_array_equal(np.asarray(a[:6, :8]), np.asarray(a0))
    assert float(jnp.abs(a).sum()) == float(a0.sum())
    sa = al.soft_dtw_alignment(padded, gamma=0.3, lengths=(6, 8))
    np.testing.assert_allclose(sa[:6, :8], al.soft_dtw_alignment(c, gamma=0.3), atol=1e-6)
    assert np.all(np.asarray(sa[6:]) == 0) and np.all(np.asarray(sa[:, 8:]) == 0)


def test_traced_lengths_out_of_range_give_nan_and_traced_window_zero_gives_inf(rng):
    cost = jnp.asarray(_cost(rng, 5, 5)[0], jnp.float32)
    fn = jax.jit(lambda c, a, b: al.soft_dtw(c, gamma=0.1, lengths=(a, b)))
    assert np.isnan(float(fn(cost, 6, 5)))
    assert np.isnan(float(fn(cost, 0, 5)))
    fn0 = jax.jit(lambda c, a, b: al.dtw(c, window=0, lengths=(a, b)))
    assert float(fn0(cost, 4, 5)) == np.inf
    assert np.isfinite(float(fn0(cost, 4, 4)))


# ------------------------------------------------------------------------------------------
# Divergence.
# ------------------------------------------------------------------------------------------


def test_divergence_zero_on_equal_and_matches_definition(rng, enable_x64):
    x = rng.normal(size=(7, 2))
    y = rng.normal(size=(5, 2))
    assert float(al.soft_dtw_divergence(x, x, gamma=0.5)) == 0.0
    sq = lambda a, b: ((a[:, None] - b[None]) ** 2).sum(-1)
    expected = ref.dtw_value(sq(x, y), 0.5) - 0.5 * (
        ref.dtw_value(sq(x, x), 0.5) + ref.dtw_value(sq(y, y), 0.5)
    )
    np.testing.assert_allclose(float(al.soft_dtw_divergence(x, y, gamma=0.5)), expected, rtol=F64)
    check_grads(
        lambda x, y: al.soft_dtw_divergence(x, y, gamma=0.5),
        (x, y),
        order=1,
        modes=("rev",),
        atol=GRAD_X64,
        rtol=GRAD_X64,
    )


def test_divergence_padded_batch_equals_unpadded(rng):
    lt, ls = jnp.array([4, 6]), jnp.array([6, 3])
    xs, ys = _padded_batch(rng, lt.tolist(), ls.tolist(), 6, 6)
    div = jax.vmap(lambda x, y, a, b: al.soft_dtw_divergence(x, y, gamma=0.3, lengths=(a, b)))
    values = div(xs, ys, lt, ls)
    for k in range(2):
        a, b = int(lt[k]), int(ls[k])
        expected = al.soft_dtw_divergence(xs[k, :a], ys[k, :b], gamma=0.3)
        np.testing.assert_allclose(values[k], expected, rtol=F32_CLOSED)


# ------------------------------------------------------------------------------------------
# Properties.
# ------------------------------------------------------------------------------------------

_cost_matrices = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 6), st.integers(1, 6)),
    elements=st.floats(0.0, 10.0, allow_nan=False),
)


@settings(max_examples=30, deadline=None)
@given(_cost_matrices)
def test_property_dtw_symmetric_bounds_and_soft_below_hard(cost):
    c = jnp.asarray(cost, jnp.float32)
    t, s = cost.shape
    hard = float(al.dtw(c))
    assert hard == pytest.approx(float(al.dtw(c.T)), rel=F32_CLOSED, abs=1e-5)
    # Every path visits both corners and has max(t, s) to t + s - 1 cells.
    lower = cost[0, 0] + (cost[-1, -1] if (t, s) != (1, 1) else 0.0)
    upper = cost[:, 0].sum() + cost[-1, 1:].sum()  # down the first column, then along the last row
    assert lower - 1e-4 <= hard <= upper + 1e-4
    soft = float(al.soft_dtw(c, gamma=0.5))
    assert soft <= hard + 1e-4
    assert soft >= hard - 0.5 * np.log(ref.count_paths(t, s)) - 1e-4


@settings(max_examples=25, deadline=None)
@given(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.just(2)), elements=st.floats(-3, 3)),
    hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.just(2)), elements=st.floats(-3, 3)),
    st.sampled_from([0.1, 1.0, 10.0]),
)
def test_property_divergence_non_negative(x, y, gamma):
    with x64():
        value = float(al.soft_dtw_divergence(jnp.asarray(x), jnp.asarray(y), gamma=gamma))
    assert value >= -1e-9


# ------------------------------------------------------------------------------------------
# Bad input.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn",
    [
        al.dtw,
        lambda c, **kw: al.dtw_alignment(c, **kw),
        lambda c, **kw: al.soft_dtw(c, gamma=0.1, **kw),
        lambda c, **kw: al.soft_dtw_alignment(c, gamma=0.1, **kw),
    ],
)
def test_bad_input_raises_clear_errors(fn):
    with pytest.raises(ValueError, match=r"`cost`.*2-D"):
        fn(jnp.zeros(5))
    with pytest.raises(ValueError, match=r"`cost`.*2-D"):
        fn(jnp.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"`cost`.*non-empty"):
        fn(jnp.zeros((0, 3)))
    with pytest.raises(ValueError, match="`window`"):
        fn(jnp.zeros((3, 3)), window=-1)
    with pytest.raises(ValueError, match="`window`"):
        fn(jnp.zeros((3, 3)), window=1.5)
    with pytest.raises(ValueError, match=r"`window`=0 admits no warping path"):
        fn(jnp.zeros((3, 5)), window=0)
    with pytest.raises(ValueError, match=r"`lengths`.*outside"):
        fn(jnp.zeros((3, 5)), lengths=(4, 5))
    with pytest.raises(ValueError, match=r"`lengths`.*outside"):
        fn(jnp.zeros((3, 5)), lengths=(0, 5))
    with pytest.raises(ValueError, match=r"`lengths`.*integer"):
        fn(jnp.zeros((3, 5)), lengths=(2.5, 5))
    with pytest.raises(ValueError, match=r"`lengths`.*pair"):
        fn(jnp.zeros((3, 5)), lengths=3)


@pytest.mark.parametrize("gamma", [0.0, -1.0, float("nan"), float("inf")])
def test_non_positive_gamma_raises(gamma):
    with pytest.raises(ValueError, match="`gamma`"):
        al.soft_dtw(jnp.ones((3, 3)), gamma=gamma)
    with pytest.raises(ValueError, match="`gamma`"):
        al.soft_dtw_divergence(jnp.ones((3, 2)), jnp.ones((4, 2)), gamma=gamma)


def test_sequence_shape_errors_name_the_arguments():
    with pytest.raises(ValueError, match="`x` and `y`"):
        al.soft_dtw_points(jnp.ones((3, 2)), jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="`x` and `y`"):
        al.dtw_points(jnp.ones((3, 2)), jnp.ones(4))


# ------------------------------------------------------------------------------------------
# Every public function under jit and vmap.
# ------------------------------------------------------------------------------------------

_ON_COST = {
    "dtw": lambda c: al.dtw(c, window=2),
    "dtw_alignment": lambda c: al.dtw_alignment(c)[1],
    "soft_dtw": lambda c: al.soft_dtw(c, gamma=0.3),
    "soft_dtw_alignment": lambda c: al.soft_dtw_alignment(c, gamma=0.3, window=2),
}
_ON_SEQUENCES = {
    "dtw_points": lambda x, y: al.dtw_points(x, y),
    "soft_dtw_points": lambda x, y: al.soft_dtw_points(x, y, gamma=0.3),
    "soft_dtw_divergence": lambda x, y: al.soft_dtw_divergence(x, y, gamma=0.3),
    "soft_dtw_xy_grad": jax.grad(lambda x, y: al.soft_dtw_points(x, y, gamma=0.3)),
    "soft_dtw_divergence_grad": jax.grad(lambda x, y: al.soft_dtw_divergence(x, y, gamma=0.3)),
}


@pytest.mark.parametrize("name", sorted(_ON_COST))
def test_cost_functions_jit_and_vmap_equal_eager_loop(rng, name):
    fn = _ON_COST[name]
    costs = jnp.asarray(np.stack([_cost(rng, 5, 7)[0] for _ in range(3)]), jnp.float32)
    batched = jax.jit(jax.vmap(fn))(costs)
    for k in range(3):
        np.testing.assert_allclose(batched[k], fn(costs[k]), rtol=F32_CLOSED, atol=1e-6)


@pytest.mark.parametrize("name", sorted(_ON_SEQUENCES))
def test_sequence_functions_jit_and_vmap_equal_eager_loop(rng, name):
    fn = _ON_SEQUENCES[name]
    xs = jnp.asarray(rng.normal(size=(3, 6, 2)), jnp.float32)
    ys = jnp.asarray(rng.normal(size=(3, 4, 2)), jnp.float32)
    batched = jax.jit(jax.vmap(fn))(xs, ys)
    for k in range(3):
        np.testing.assert_allclose(batched[k], fn(xs[k], ys[k]), rtol=F32_CLOSED, atol=1e-6)


# ------------------------------------------------------------------------------------------
# Issue 9: padding garbage, divergence sign, alignment_to_path, renames, traced bad values,
# half precision.
# ------------------------------------------------------------------------------------------

_POINT_FNS = {
    "soft_dtw_points": lambda x, y, **kw: al.soft_dtw_points(x, y, gamma=0.3, **kw),
    "dtw_points": lambda x, y, **kw: al.dtw_points(x, y, **kw),
    "soft_dtw_divergence": lambda x, y, **kw: al.soft_dtw_divergence(x, y, gamma=0.3, **kw),
}


@functools.cache
def _padded_value_and_grad(name):
    """One compiled value-and-gradient with lengths=(3, 5) per function, for every garbage."""
    fn = _POINT_FNS[name]
    return jax.jit(jax.value_and_grad(lambda a, b: fn(a, b, lengths=(3, 5)), argnums=(0, 1)))


@pytest.mark.parametrize("garbage", [np.nan, np.inf, -np.inf, 1e30])
@pytest.mark.parametrize("name", sorted(_POINT_FNS))
def test_padding_garbage_changes_neither_value_nor_gradient(rng, name, garbage):
    """lengths=(3, 5) with NaN/inf/1e30 in a padded row used to give NaN (the squared
    Euclidean cost spread one bad row into every pair)."""
    fn = _POINT_FNS[name]
    x = rng.normal(size=(6, 2)).astype(np.float32)
    y = rng.normal(size=(7, 2)).astype(np.float32)
    x[4] = garbage
    y[6, 1] = garbage
    value, (gx, gy) = _padded_value_and_grad(name)(x, y)
    v0, (gx0, gy0) = jax.value_and_grad(fn, argnums=(0, 1))(x[:3], y[:5])
    np.testing.assert_allclose(value, v0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gx[:3], gx0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gy[:5], gy0, rtol=1e-4, atol=1e-5)
    assert np.all(np.asarray(gx[3:]) == 0.0) and np.all(np.asarray(gy[5:]) == 0.0)


def test_divergence_never_negative_and_exactly_zero_at_equal_under_nested_vmap(rng):
    """Nested vmap batches the three soft-DTW terms differently: x == y gave -1e-6 and a NaN
    square root. Now it is exactly 0 with a finite (zero) gradient."""
    xs = jnp.asarray(rng.normal(size=(2, 3, 9, 2)), jnp.float32)
    div = lambda x, y: al.soft_dtw_divergence(x, y, gamma=0.01)
    nested = jax.jit(jax.vmap(jax.vmap(div)))
    out = np.asarray(nested(xs, xs))
    assert np.all(out == 0.0)
    root = jax.vmap(jax.vmap(jax.grad(lambda x, y: jnp.sqrt(div(x, y) + 1e-12))))(xs, xs)
    assert np.isfinite(np.asarray(root)).all()
    g = jax.vmap(jax.vmap(jax.grad(div)))(xs, xs)
    np.testing.assert_array_equal(g, 0.0)
    ys = xs + 1e-4 * jnp.asarray(rng.normal(size=xs.shape), jnp.float32)
    assert np.all(np.asarray(nested(xs, ys)) >= 0.0)


def test_divergence_propagates_nan_in_real_data(rng):
    x = rng.normal(size=(4, 2)).astype(np.float32)
    y = x.copy()
    x[1, 0] = np.nan
    assert np.isnan(float(al.soft_dtw_divergence(x, y)))
    assert np.isnan(float(al.soft_dtw_divergence(x, x)))


def test_alignment_to_path_rejects_nan_soft_and_broken_paths():
    good = np.eye(3, dtype=np.float32)
    assert al.alignment_to_path(good).tolist() == [[0, 0], [1, 1], [2, 2]]
    with pytest.raises(ValueError, match="NaN"):
        al.alignment_to_path(np.full((3, 3), np.nan))
    nan_cell = good.copy()
    nan_cell[0, 2] = np.nan  # used to be dropped silently
    with pytest.raises(ValueError, match="NaN"):
        al.alignment_to_path(nan_cell)
    with pytest.raises(ValueError, match="0/1"):
        al.alignment_to_path(0.9 * good)
    with pytest.raises(ValueError, match="warping path"):
        al.alignment_to_path(np.array([[1.0, 0, 0], [0, 0, 0], [0, 0, 1]]))
    with pytest.raises(ValueError, match="warping path"):
        al.alignment_to_path(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="complex"):
        al.alignment_to_path(good.astype(np.complex64))
    with pytest.raises(ValueError, match="None"):
        al.alignment_to_path(None)


def test_renamed_functions_and_1d_series():
    a = jnp.array([1.0, 1, 3, 3, 2, 4])
    b = jnp.array([1.0, 3, 2, 2, 4, 4])
    assert float(al.dtw_points(a, b, cost_fn=al.absolute_difference)) == 0.0
    # 1-D series work with the default cost too (as [t, 1]), and soft-DTW accepts them.
    np.testing.assert_allclose(
        al.soft_dtw_points(a, b, gamma=0.1), al.soft_dtw_points(a[:, None], b[:, None], gamma=0.1)
    )
    assert float(al.dtw_points(a, b)) == 0.0
    value, alignment = al.dtw_alignment(al.absolute_difference(a, b))
    assert float(value) == 0.0 and [tuple(p) for p in al.alignment_to_path(alignment)] == (
        LECTURE_PATH
    )


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"gamma": [1.0, 2.0]}, "`gamma`"),
        ({"gamma": None}, "`gamma`"),
        ({"gamma": 1.0 + 1.0j}, "`gamma`"),
        ({"window": 1.5}, "`window`"),
        ({"window": True}, "`window`"),
        ({"window": np.array(2)}, "`window`"),
        ({"lengths": np.array([3, 3])}, "`lengths`"),
        ({"lengths": (np.array([3, 3]), 3)}, "`lengths`"),
        ({"lengths": (3.0, 3)}, "`lengths`"),
    ],
)
def test_static_problems_raise_also_under_jit(kw, match):
    cost = jnp.ones((3, 3))
    x = jnp.ones((3, 2))
    calls = [
        lambda c, a: al.soft_dtw(c, **{"gamma": 0.5, **kw}),
        lambda c, a: al.soft_dtw_alignment(c, **{"gamma": 0.5, **kw}),
        lambda c, a: al.soft_dtw_points(a, a, **{"gamma": 0.5, **kw}),
        lambda c, a: al.soft_dtw_divergence(a, a, **{"gamma": 0.5, **kw}),
    ]
    if "gamma" not in kw:
        calls += [
            lambda c, a: al.dtw(c, **kw),
            lambda c, a: al.dtw_alignment(c, **kw),
            lambda c, a: al.dtw_points(a, a, **kw),
        ]
    for call in calls:
        with pytest.raises(ValueError, match=match):
            call(cost, x)
        with pytest.raises(ValueError, match=match):
            jax.jit(call)(cost, x)


def test_none_arrays_raise():
    with pytest.raises(ValueError, match="`cost`"):
        al.dtw(None)
    with pytest.raises(ValueError, match="`x`"):
        al.soft_dtw_points(None, jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="`y`"):
        al.soft_dtw_divergence(jnp.ones((3, 2)), None)


@pytest.mark.parametrize("gamma", [0.0, -1.0, np.nan, np.inf])
def test_traced_bad_gamma_gives_nan_everywhere(gamma):
    cost = jnp.ones((3, 4))
    x, y = jnp.ones((3, 2)), jnp.zeros((4, 2))
    outs = jax.jit(
        lambda g: (
            al.soft_dtw(cost, gamma=g),
            al.soft_dtw_alignment(cost, gamma=g),
            al.soft_dtw_points(x, y, gamma=g),
            al.soft_dtw_divergence(x, y, gamma=g),
        )
    )(gamma)
    for out in outs:
        assert np.isnan(np.asarray(out)).all()


def test_traced_bad_lengths_give_nan_in_every_output():
    cost = jnp.ones((3, 4))
    x, y = jnp.ones((3, 2)), jnp.zeros((4, 2))
    fn = jax.jit(
        lambda a, b: (
            al.dtw(cost, lengths=(a, b)),
            al.dtw_alignment(cost, lengths=(a, b)),
            al.soft_dtw_alignment(cost, lengths=(a, b)),
            al.dtw_points(x, y, lengths=(a, b)),
            al.soft_dtw_points(x, y, lengths=(a, b)),
            al.soft_dtw_divergence(x, y, lengths=(a, b)),
        )
    )
    for out in jax.tree.leaves(fn(4, 4)):
        assert np.isnan(np.asarray(out)).all()
    for out in jax.tree.leaves(fn(3, 4)):
        assert not np.isnan(np.asarray(out)).any()


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_inputs_computed_in_float32(rng, dtype):
    cost32 = jnp.asarray(_cost(rng, 5, 6)[0], jnp.float32)
    cost = cost32.astype(dtype)
    ref32 = cost.astype(jnp.float32)
    for fn in [al.dtw, lambda c: al.soft_dtw(c, gamma=0.1)]:
        out = fn(cost)
        assert out.dtype == dtype
        np.testing.assert_allclose(float(out), float(fn(ref32)), rtol=1e-2)
    grad = jax.grad(lambda c: al.soft_dtw(c, gamma=0.1))(cost)
    assert grad.dtype == dtype
    np.testing.assert_allclose(
        np.asarray(grad, np.float32), al.soft_dtw_alignment(ref32, gamma=0.1), atol=1e-2
    )
    value, alignment = al.dtw_alignment(cost)
    assert value.dtype == dtype and alignment.dtype == dtype
    x = jnp.asarray(rng.normal(size=(4, 2)), dtype)
    assert al.soft_dtw_divergence(x, x).dtype == dtype
    assert float(al.soft_dtw_divergence(x, x)) == 0.0


def test_eager_calls_hit_the_compile_cache(rng):
    cost = jnp.asarray(_cost(rng, 5, 6)[0], jnp.float32)
    al.soft_dtw(cost, gamma=0.3)
    from alignment._src import dtw as dtw_module

    before = dtw_module._run._cache_size()
    for gamma in [0.1, 0.2, 0.5]:
        al.soft_dtw(cost, gamma=gamma)
    assert dtw_module._run._cache_size() == before
