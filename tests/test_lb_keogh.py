"""LB_Keogh, its envelope and the pruned 1-NN DTW search (alignment._src.lower_bounds)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import alignment as al
from alignment._src.lower_bounds import dtw_nearest_neighbor, keogh_envelope, lb_keogh
from tests.conftest import x64

tslearn_metrics = pytest.importorskip("tslearn.metrics")

RTOL = 1e-5  # float32 closed forms
LB_SLACK = 1e-9  # lb <= dtw in float64, up to rounding


# --------------------------------------------------------------------------------------------
# Envelope and LB_Keogh against tslearn.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("window", [0, 1, 3, 20])
@pytest.mark.parametrize("d", [1, 3])
def test_envelope_matches_tslearn(rng, window, d):
    c = rng.normal(size=(12, d))
    lower, upper = keogh_envelope(jnp.asarray(c, jnp.float32), window=window)
    ref_lo, ref_up = tslearn_metrics.lb_envelope(c, radius=window)
    np.testing.assert_allclose(lower, ref_lo, rtol=RTOL)
    np.testing.assert_allclose(upper, ref_up, rtol=RTOL)


def test_envelope_1d_shape_and_none(rng):
    c = jnp.asarray(rng.normal(size=9), jnp.float32)
    lower, upper = keogh_envelope(c, window=2)
    assert lower.shape == upper.shape == (9,) and lower.dtype == jnp.float32
    lo_all, up_all = keogh_envelope(c, window=None)
    np.testing.assert_array_equal(lo_all, np.full(9, c.min()))
    np.testing.assert_array_equal(up_all, np.full(9, c.max()))


@pytest.mark.parametrize("window", [0, 1, 2, 5, 30])
def test_lb_keogh_matches_tslearn_squared(rng, window):
    # tslearn's lb_keogh is univariate only and returns the square root.
    for _ in range(3):
        q, c = rng.normal(size=15), rng.normal(size=15)
        ours = lb_keogh(jnp.asarray(q, jnp.float32), jnp.asarray(c, jnp.float32), window=window)
        ref = tslearn_metrics.lb_keogh(q, c, radius=window) ** 2
        np.testing.assert_allclose(ours, ref, rtol=RTOL, atol=1e-6)
        ours_2d = lb_keogh(
            q[:, None].astype(np.float32), c[:, None].astype(np.float32), window=window
        )
        np.testing.assert_allclose(ours_2d, ours, rtol=RTOL)


def test_lb_keogh_multivariate_is_sum_over_features(rng):
    q, c = rng.normal(size=(10, 3)), rng.normal(size=(10, 3))
    ours = lb_keogh(q, c, window=2)
    per_feature = sum(tslearn_metrics.lb_keogh(q[:, k], c[:, k], radius=2) ** 2 for k in range(3))
    np.testing.assert_allclose(ours, per_feature, rtol=RTOL)


# --------------------------------------------------------------------------------------------
# The laws: lower bound of DTW, zero on equal series, exact at window 0.
# --------------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    st.sampled_from([1, 2]),
    st.sampled_from([0, 2, 7]),
    st.floats(-2, 2),
    st.integers(0, 2**31 - 1),
)
def test_lb_keogh_is_a_lower_bound_of_dtw(d, window, log_scale, seed):
    # few shapes (t = 7), so that few programs compile; the values vary freely
    r = np.random.default_rng(seed)
    scale = 10.0**log_scale
    q, c = scale * r.normal(size=(2, 7, d))
    if r.uniform() < 0.3:  # random walks: bounds far from zero
        q, c = np.cumsum(q, axis=0), np.cumsum(c, axis=0)
    with x64():
        q64, c64 = jnp.asarray(q, jnp.float64), jnp.asarray(c, jnp.float64)
        exact = float(al.dtw_points(q64, c64, window=window))
        for a, b in ((q64, c64), (c64, q64)):
            lb = float(lb_keogh(a, b, window=window))
            assert 0.0 <= lb <= exact * (1 + LB_SLACK) + LB_SLACK * scale**2


@pytest.mark.parametrize("window", [0, 2, None])
def test_lb_keogh_zero_on_identical_series(rng, window):
    x = jnp.asarray(rng.normal(size=(11, 2)), jnp.float32)
    assert float(lb_keogh(x, x, window=window)) == 0.0


def test_window_zero_is_lockstep_euclidean_and_dtw(rng):
    q, c = rng.normal(size=(2, 13, 2)).astype(np.float32)
    lb = lb_keogh(q, c, window=0)
    np.testing.assert_allclose(lb, np.sum((q - c) ** 2), rtol=RTOL)
    np.testing.assert_allclose(lb, al.dtw_points(q, c, window=0), rtol=1e-4)


def test_dtypes_follow_input(rng):
    q, c = rng.normal(size=(2, 8))
    assert lb_keogh(q.astype(np.float16), c.astype(np.float16), window=1).dtype == jnp.float16
    assert lb_keogh(q.astype(np.float32), c.astype(np.float32), window=1).dtype == jnp.float32
    assert lb_keogh(np.arange(4), np.arange(4), window=1).dtype == jnp.float32  # ints: default


# --------------------------------------------------------------------------------------------
# jit, vmap, NaN.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("jit", [False, True])
def test_jit_and_vmap_match_loop(rng, jit):
    qs = jnp.asarray(rng.normal(size=(4, 10, 2)), jnp.float32)
    cs = jnp.asarray(rng.normal(size=(4, 10, 2)), jnp.float32)

    def f(q, c):
        return lb_keogh(q, c, window=2)

    fn = jax.jit(jax.vmap(f)) if jit else jax.vmap(f)
    loop = np.array([float(f(q, c)) for q, c in zip(qs, cs, strict=True)])
    np.testing.assert_allclose(fn(qs, cs), loop, rtol=RTOL)
    env = jax.vmap(lambda c: keogh_envelope(c, window=2))(cs)
    np.testing.assert_array_equal(env[1][0], keogh_envelope(cs[0], window=2)[1])


def test_gradient_matches_finite_differences(rng, enable_x64):
    from jax.test_util import check_grads

    q, c = rng.normal(size=(2, 9, 2))  # generic values: no ties in the running max/min
    check_grads(lambda a, b: lb_keogh(a, b, window=2), (q, c), order=1, modes=("rev",), atol=1e-6)
    # by hand: envelope of [1, 2, 3, 2.5, 1] at window 1 is lower = [1, 1, 2, 1, 1]; the query
    # 0 lies below it, so d lb / d lower = 2 * lower, routed to the arg-min of each window
    c = jnp.array([1.0, 2, 3, 2.5, 1])
    g = jax.grad(lambda c: lb_keogh(jnp.zeros(5), c, window=1))(c)
    assert g.tolist() == [4.0, 4.0, 0.0, 0.0, 4.0]


def test_nan_propagates(rng):
    q, c = rng.normal(size=(2, 9)).astype(np.float32)
    q_nan = q.copy()
    q_nan[4] = np.nan
    assert np.isnan(lb_keogh(q_nan, c, window=1))
    assert np.isnan(lb_keogh(c, q_nan, window=1))
    assert np.isnan(jax.jit(lambda a, b: lb_keogh(a, b, window=1))(q_nan, c))
    lower, upper = keogh_envelope(q_nan, window=1)
    assert np.isnan(lower[3:6]).all() and np.isnan(upper[3:6]).all()
    assert not np.isnan(lower[:3]).any() and not np.isnan(upper[6:]).any()


# --------------------------------------------------------------------------------------------
# Bad input.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize(
    ("query", "candidate", "window", "match"),
    [
        (np.zeros(5), np.zeros(6), 1, "`query` and `candidate`"),
        (np.zeros((5, 2)), np.zeros((5, 3)), 1, "`query` and `candidate`"),
        (np.zeros((2, 5, 1)), np.zeros((2, 5, 1)), 1, "`query`"),
        (np.zeros(()), np.zeros(5), 1, "`query`"),
        (np.zeros(5), np.zeros((0,)), 1, "`candidate`"),
        (np.zeros(5), np.zeros(5), -1, "`window`"),
        (np.zeros(5), np.zeros(5), 1.5, "`window`"),
        (np.zeros(5), np.zeros(5), True, "`window`"),
        (np.zeros(5, np.complex64), np.zeros(5), 1, "`query`"),
        (None, np.zeros(5), 1, "`query`"),
    ],
)
def test_bad_input_raises(query, candidate, window, match, jit):
    def f(q, c):
        return lb_keogh(q, c, window=window)

    if jit and query is not None:
        f = jax.jit(f)
    with pytest.raises(ValueError, match=match):
        f(query, candidate)


def test_bad_input_envelope_and_search():
    with pytest.raises(ValueError, match="`candidate`"):
        keogh_envelope(np.zeros((2, 3, 4)), window=1)
    with pytest.raises(ValueError, match="`window`"):
        keogh_envelope(np.zeros(4), window=-2)
    with pytest.raises(ValueError, match="`queries` and `references`"):
        dtw_nearest_neighbor(np.zeros((2, 5)), np.zeros((3, 6)), window=1)
    with pytest.raises(ValueError, match="`queries` and `references`"):
        dtw_nearest_neighbor(np.zeros((2, 5, 1)), np.zeros((3, 5)), window=1)
    with pytest.raises(ValueError, match="`references`"):
        dtw_nearest_neighbor(np.zeros((2, 5)), np.zeros((0, 5)), window=1)
    with pytest.raises(ValueError, match="`queries`"):
        jax.jit(lambda q: dtw_nearest_neighbor(q, np.zeros((3, 5)), window=1))(np.zeros(5))
    with pytest.raises(ValueError, match="`window`"):
        dtw_nearest_neighbor(np.zeros((2, 5)), np.zeros((3, 5)), window=2.0)
    with pytest.raises(ValueError, match="`chunk_size`"):
        dtw_nearest_neighbor(np.zeros((2, 5)), np.zeros((3, 5)), window=1, chunk_size=0)
    with pytest.raises(ValueError, match="`references`"):
        dtw_nearest_neighbor(np.zeros((2, 5)), np.zeros((3, 5), np.complex64), window=1)


# --------------------------------------------------------------------------------------------
# Pruned 1-NN search equals the exhaustive one.
# --------------------------------------------------------------------------------------------


def _exhaustive(queries, references, window):
    dist = al.pairwise(lambda x, y: al.dtw_points(x, y, window=window), queries, references)
    return np.asarray(jnp.argmin(dist, axis=1)), np.asarray(jnp.min(dist, axis=1))


# The search tests share shapes and static options (queries [3, 12], references [5, 12],
# window 1, chunk_size 2) so that they reuse one compiled program.
_Q, _M, _T = 3, 5, 12


def _search(qs, rs):
    return dtw_nearest_neighbor(qs, rs, window=1, chunk_size=2)


def test_search_matches_exhaustive_random(rng):
    qs = rng.normal(size=(_Q, _T)).astype(np.float32)
    # references: random walks, so that the bounds differ and pruning happens
    rs = np.cumsum(rng.normal(size=(_M, _T)), axis=1).astype(np.float32)
    rs = np.concatenate([rs[:2], qs[:1] + 0.1, rs[3:]])  # one close neighbour
    out = _search(qs, rs)
    idx, dist = _exhaustive(qs, rs, 1)
    np.testing.assert_array_equal(out.index, idx)
    np.testing.assert_allclose(out.distance, dist, rtol=1e-5)
    assert out.index.dtype == jnp.int32 and out.distance.dtype == jnp.float32
    assert out.n_dtw.dtype == jnp.int32 and ((out.n_dtw >= 1) & (out.n_dtw <= _M)).all()
    assert int(out.n_dtw[0]) < _M  # the close neighbour prunes the random walks


def test_search_ties_lowest_index_and_self_match(rng):
    rs = rng.normal(size=(_M, _T)).astype(np.float32)
    rs[3] = rs[1]  # duplicate: tie, lowest index wins
    out = _search(rs[[3, 0, 4]], rs)
    assert out.index.tolist() == [1, 0, 4]
    assert out.distance.tolist() == [0.0, 0.0, 0.0]


def test_search_non_finite_gives_nan_and_minus_one(rng):
    qs = rng.normal(size=(_Q, _T)).astype(np.float32)
    rs = rng.normal(size=(_M, _T)).astype(np.float32)
    qs[1, 2] = np.nan
    out = _search(qs, rs)
    assert out.index.tolist()[1] == -1 and np.isnan(out.distance[1])
    assert np.isfinite(np.asarray(out.distance)[[0, 2]]).all()
    assert (np.asarray(out.index)[[0, 2]] >= 0).all()
    rs[2, 0] = np.inf
    out = _search(np.nan_to_num(qs), rs)
    assert out.index.tolist() == [-1, -1, -1] and np.isnan(out.distance).all()


def test_search_vmap_over_batches(rng):
    qs = rng.normal(size=(2, _Q, _T)).astype(np.float32)  # 2 batches of 3 1-D queries
    rs = np.cumsum(rng.normal(size=(_M, _T)), axis=1).astype(np.float32)
    batched = jax.vmap(lambda q: _search(q, rs))(qs)
    for b in range(2):
        one = _search(qs[b], rs)
        np.testing.assert_array_equal(batched.index[b], one.index)
        np.testing.assert_allclose(batched.distance[b], one.distance, rtol=RTOL)
        np.testing.assert_array_equal(batched.n_dtw[b], one.n_dtw)


def test_search_trace_subset():
    datasets = pytest.importorskip("tslearn.datasets")
    x_train, _, x_test, _ = datasets.CachedDatasets().load_dataset("Trace")
    qs = jnp.asarray(x_test[:8, ::5], jnp.float32)  # [8, 55, 1]: every 5th frame, small
    rs = jnp.asarray(x_train[:20, ::5], jnp.float32)  # [20, 55, 1]
    window = 5
    out = jax.jit(lambda q, r: dtw_nearest_neighbor(q, r, window=window))(qs, rs)
    idx, dist = _exhaustive(qs, rs, window)
    np.testing.assert_array_equal(out.index, idx)
    np.testing.assert_allclose(out.distance, dist, rtol=1e-5)
    assert int(out.n_dtw.sum()) < qs.shape[0] * rs.shape[0]  # LB_Keogh pruned something
