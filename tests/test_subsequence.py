"""Tests for alignment._src.subsequence (subsequence DTW, exact and soft).

References, all independent of the library: a float64 NumPy DTW and soft-DTW written here with
plain loops, run on every slice ``cost[:, a:b + 1]`` (brute force over all starts and ends, hard
and soft); dtw-python's ``open_begin=True, open_end=True`` with the ``symmetric1`` steps (its
open begin needs a pattern normalised by the query length, hint "N": we give it symmetric1's
step matrix with that hint; the normalisation divides every candidate end by the same ``t``, so
its ``distance`` is the unnormalised minimum); finite differences of the NumPy soft brute force;
``check_grads``. Most checks go through one padded shape with ``lengths`` (one compile each).
"""

from __future__ import annotations

import math

import dtw as dtw_python
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from jax.test_util import check_grads

import alignment as al
from alignment._src.subsequence import (
    SubsequenceDTWOutput,
    soft_subsequence_dtw,
    subsequence_dtw,
)

F32 = 1e-5
F64 = 1e-10
GRAD_X64 = 1e-6
PAD = (6, 12)  # the padded [t, s] shape that carries the reference comparisons
SIZES = [(1, 1), (1, 5), (2, 12), (3, 7), (4, 4), (5, 3), (6, 12)]  # all fit in PAD


# ------------------------------------------------------------------------------------------
# Float64 references with plain loops (never calling the library).
# ------------------------------------------------------------------------------------------


def _np_dtw(cost, gamma=0.0):
    """DTW (gamma = 0) or soft-DTW of ``cost`` with the steps (1,0), (0,1), (1,1)."""
    t, s = cost.shape
    r = np.full((t + 1, s + 1), math.inf)
    r[0, 0] = 0.0
    for i in range(1, t + 1):
        for j in range(1, s + 1):
            prev = [r[i - 1, j - 1], r[i - 1, j], r[i, j - 1]]
            if gamma == 0.0:
                best = min(prev)
            else:
                m = min(prev)
                best = m - gamma * math.log(sum(math.exp(-(v - m) / gamma) for v in prev))
            r[i, j] = cost[i - 1, j - 1] + best
    return r[t, s]


def _brute(cost):
    """``(value, start, end)``: min over every slice ``a..b`` of the NumPy DTW."""
    s = cost.shape[1]
    return min((_np_dtw(cost[:, a : b + 1]), a, b) for a in range(s) for b in range(a, s))


def _brute_soft(cost, gamma):
    """Soft-min over every slice of the NumPy soft-DTW."""
    s = cost.shape[1]
    values = np.array(
        [_np_dtw(cost[:, a : b + 1], gamma) for a in range(s) for b in range(a, s)], np.float64
    )
    m = values.min()
    return m - gamma * math.log(np.exp(-(values - m) / gamma).sum())


def _n_triples(t, s):
    """Number of (start, end, warping path) triples: sum of Delannoy numbers over the slices."""

    def delannoy(m, n):
        return sum(math.comb(m, k) * math.comb(n, k) * 2**k for k in range(min(m, n) + 1))

    return sum(delannoy(t - 1, b - a) for a in range(s) for b in range(a, s))


def _pad(cost, fill=np.nan):
    out = np.full(PAD, fill, cost.dtype)
    out[: cost.shape[0], : cost.shape[1]] = cost
    return out


def _maybe_jit(fn, jit):
    return jax.jit(fn) if jit else fn


def _check_path(out, cost, t, s):
    """The alignment is a warping path from (0, start) to (t-1, end) whose cost is the value."""
    a = np.asarray(out.alignment, np.float64)
    start, end = int(out.start), int(out.end)
    assert not a[t:].any() and not a[:, s:].any()
    assert not a[:, :start].any() and not a[:, end + 1 :].any()
    path = al.alignment_to_path(a[:t, start : end + 1])  # raises unless a warping path
    assert tuple(path[-1]) == (t - 1, end - start)
    return float((a[:t, :s] * cost).sum())


# ------------------------------------------------------------------------------------------
# Exact subsequence DTW.
# ------------------------------------------------------------------------------------------


def test_matches_brute_force_over_every_start_and_end(rng, enable_x64):
    """Every size up to [6, 12] (costs of both signs) through one padded shape."""
    fn = jax.jit(lambda c, a, b: subsequence_dtw(c, lengths=(a, b)))
    for t, s in SIZES:
        cost = rng.normal(size=(t, s))
        value, start, end = _brute(cost)
        out = fn(jnp.asarray(_pad(cost)), t, s)
        np.testing.assert_allclose(float(out.value), value, rtol=F64, atol=F64)
        assert (int(out.start), int(out.end)) == (start, end), (t, s)
        np.testing.assert_allclose(_check_path(out, cost, t, s), value, rtol=F64, atol=F64)


@pytest.mark.parametrize("jit", [False, True])
def test_matches_dtw_python_open_begin_open_end_symmetric1(rng, jit):
    symmetric1_n = dtw_python.StepPattern(dtw_python.symmetric1.mx, hint="N")
    for t, s in [(4, 15), (4, 15), (4, 15)]:  # one shape: compiled once per jit mode
        x, y = rng.normal(size=(t, 2)), rng.normal(size=(s, 2))
        cost = ((x[:, None] - y[None]) ** 2).sum(-1)
        ref = dtw_python.dtw(cost, step_pattern=symmetric1_n, open_begin=True, open_end=True)
        out = _maybe_jit(subsequence_dtw, jit)(jnp.asarray(cost, jnp.float32))
        assert isinstance(out, SubsequenceDTWOutput)
        np.testing.assert_allclose(float(out.value), ref.distance, rtol=F32)
        assert (int(out.start), int(out.end)) == (ref.index2[0], ref.index2[-1])
        rows, cols = np.nonzero(np.asarray(out.alignment))
        assert list(zip(rows, cols, strict=True)) == list(zip(ref.index1, ref.index2, strict=True))
        assert out.value.dtype == jnp.float32 and out.alignment.shape == (t, s)
        assert out.start.dtype == jnp.int32 and out.end.dtype == jnp.int32


def test_lecture_style_example_and_gradient_is_the_alignment():
    query = jnp.array([1.0, 3.0, 2.0])
    series = jnp.array([0.0, 5.0, 1.0, 3.0, 3.0, 2.0, 6.0, 0.0])
    cost = al.absolute_difference(query, series)
    out = subsequence_dtw(cost)
    assert (float(out.value), int(out.start), int(out.end)) == (0.0, 2, 5)
    grad = jax.grad(lambda c: subsequence_dtw(c).value)(cost)
    np.testing.assert_array_equal(np.asarray(grad), np.asarray(out.alignment))


def test_reversing_both_sequences_mirrors_the_match(rng):
    cost = jnp.asarray(rng.uniform(size=(4, 15)), jnp.float32)
    out = subsequence_dtw(cost)
    rev = subsequence_dtw(cost[::-1, ::-1])
    np.testing.assert_allclose(float(rev.value), float(out.value), rtol=F32)
    assert (int(rev.start), int(rev.end)) == (14 - int(out.end), 14 - int(out.start))
    soft = soft_subsequence_dtw(cost, gamma=0.3)
    np.testing.assert_allclose(
        float(soft_subsequence_dtw(cost[::-1, ::-1], gamma=0.3)), float(soft), rtol=F32
    )


@settings(max_examples=25, deadline=None)
@given(cost=hnp.arrays(np.float64, (3, 7), elements=st.floats(-5.0, 5.0, allow_nan=False)))
def test_property_value_is_the_brute_force_minimum_and_soft_is_below(cost):
    out = subsequence_dtw(jnp.asarray(cost, jnp.float32))
    value, _, _ = _brute(cost)
    np.testing.assert_allclose(float(out.value), value, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(_check_path(out, cost, 3, 7), value, rtol=1e-5, atol=1e-4)
    assert float(soft_subsequence_dtw(jnp.asarray(cost, jnp.float32), gamma=0.5)) <= value + 1e-4


# ------------------------------------------------------------------------------------------
# Soft subsequence DTW.
# ------------------------------------------------------------------------------------------


def test_soft_matches_brute_force_soft_min_over_slices(rng, enable_x64):
    fn = jax.jit(lambda c, g, a, b: soft_subsequence_dtw(c, gamma=g, lengths=(a, b)))
    for t, s in SIZES:
        cost = rng.normal(size=(t, s))
        for gamma in (0.1, 1.0):
            ours = float(fn(jnp.asarray(_pad(cost)), gamma, t, s))
            np.testing.assert_allclose(ours, _brute_soft(cost, gamma), rtol=F64, atol=F64)
    cost = rng.normal(size=(4, 9))  # and without lengths
    ours = float(soft_subsequence_dtw(cost, gamma=0.5))
    np.testing.assert_allclose(ours, _brute_soft(cost, 0.5), rtol=F64)


def test_soft_gradient_against_finite_differences_of_the_reference_and_check_grads(rng, enable_x64):
    t, s, gamma, h = 3, 5, 0.4, 1e-6
    cost = rng.normal(size=(t, s))
    grad_c, grad_g = jax.grad(lambda c, g: soft_subsequence_dtw(c, gamma=g), argnums=(0, 1))(
        jnp.asarray(cost), gamma
    )
    fd = np.zeros((t, s))
    for i in range(t):
        for j in range(s):
            e = np.zeros((t, s))
            e[i, j] = h
            fd[i, j] = (_brute_soft(cost + e, gamma) - _brute_soft(cost - e, gamma)) / (2 * h)
    np.testing.assert_allclose(np.asarray(grad_c), fd, rtol=1e-6, atol=1e-8)
    fd_g = (_brute_soft(cost, gamma + h) - _brute_soft(cost, gamma - h)) / (2 * h)
    np.testing.assert_allclose(float(grad_g), fd_g, rtol=1e-6)
    assert np.all((np.asarray(grad_c) >= 0) & (np.asarray(grad_c) <= 1 + 1e-12))
    check_grads(
        lambda c, g: soft_subsequence_dtw(c, gamma=g),
        (jnp.asarray(cost), gamma),
        order=1,
        modes=("rev",),
        atol=GRAD_X64,
        rtol=GRAD_X64,
    )


def test_soft_tends_to_hard_within_the_bound_and_stays_finite_for_tiny_gamma(rng):
    t, s = 4, 15
    cost = jnp.asarray(rng.uniform(0.0, 3.0, size=(t, s)), jnp.float32)
    hard = subsequence_dtw(cost)
    log_n = math.log(_n_triples(t, s))
    fn = jax.jit(jax.value_and_grad(lambda c, g: soft_subsequence_dtw(c, gamma=g)))
    for gamma in (1.0, 0.1, 0.01, 1e-3, 1e-4):
        value, grad = fn(cost, gamma)
        assert float(hard.value) - gamma * log_n - 1e-4 <= float(value) <= float(hard.value) + 1e-4
        assert np.isfinite(np.asarray(grad)).all()
    np.testing.assert_allclose(float(value), float(hard.value), atol=1e-3)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(hard.alignment), atol=1e-3)


# ------------------------------------------------------------------------------------------
# Batching, padding, dtypes.
# ------------------------------------------------------------------------------------------


def test_vmap_over_a_padded_batch_equals_unpadded_problems_and_padding_is_never_read(rng):
    sizes = [(4, 15), (2, 9), (4, 6)]
    costs = [rng.uniform(size=size).astype(np.float32) for size in sizes]
    tl = jnp.array([t for t, _ in sizes])
    sl = jnp.array([s for _, s in sizes])

    def batch(fill):
        out = np.full((3, 4, 15), fill, np.float32)
        for k, c in enumerate(costs):
            out[k, : c.shape[0], : c.shape[1]] = c
        return jnp.asarray(out)

    @jax.jit
    @jax.vmap
    def both(c, a, b):
        hard = subsequence_dtw(c, lengths=(a, b))
        soft = jax.value_and_grad(lambda c: soft_subsequence_dtw(c, gamma=0.2, lengths=(a, b)))
        return hard, soft(c)

    out, (soft, grads) = both(batch(np.nan), tl, sl)  # NaN padding: must never be read
    out_big, (soft_big, grads_big) = both(batch(1e30), tl, sl)
    for x, y in zip(
        jax.tree.leaves((out, soft, grads)),
        jax.tree.leaves((out_big, soft_big, grads_big)),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    for k, ((t, s), c) in enumerate(zip(sizes, costs, strict=True)):
        value, start, end = _brute(c.astype(np.float64))
        np.testing.assert_allclose(float(out.value[k]), value, rtol=F32)
        assert (int(out.start[k]), int(out.end[k])) == (start, end)
        one = SubsequenceDTWOutput(*(leaf[k] for leaf in out))
        np.testing.assert_allclose(_check_path(one, c, t, s), value, rtol=F32)
        np.testing.assert_allclose(float(soft[k]), _brute_soft(c.astype(np.float64), 0.2), rtol=F32)
        assert not np.asarray(grads[k, t:]).any() and not np.asarray(grads[k, :, s:]).any()
    assert np.isfinite(np.asarray(grads)).all()
    # The gradient of a padded problem is that of the unpadded one.
    ref_g = jax.grad(lambda c: soft_subsequence_dtw(c, gamma=0.2))(costs[2])
    np.testing.assert_allclose(np.asarray(grads[2, :4, :6]), np.asarray(ref_g), atol=1e-6)
    # vmap over an unpadded batch equals the loop, too.
    same = np.stack([rng.uniform(size=(4, 15)).astype(np.float32) for _ in range(3)])
    batched = jax.vmap(subsequence_dtw)(jnp.asarray(same))
    for k in range(3):
        ref = subsequence_dtw(same[k])
        np.testing.assert_allclose(float(batched.value[k]), float(ref.value), rtol=F32)
        assert int(batched.start[k]) == int(ref.start) and int(batched.end[k]) == int(ref.end)
        np.testing.assert_array_equal(np.asarray(batched.alignment[k]), np.asarray(ref.alignment))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_computed_in_float32(rng, dtype):
    cost32 = jnp.asarray(rng.uniform(size=(4, 15)), jnp.float32)
    cost = cost32.astype(dtype)
    out = subsequence_dtw(cost)
    assert out.value.dtype == dtype and out.alignment.dtype == dtype
    ref = subsequence_dtw(cost.astype(jnp.float32))
    np.testing.assert_allclose(float(out.value), float(ref.value), rtol=1e-2)
    soft = soft_subsequence_dtw(cost, gamma=0.1)
    assert soft.dtype == dtype
    np.testing.assert_allclose(
        float(soft), float(soft_subsequence_dtw(cost.astype(jnp.float32), gamma=0.1)), rtol=1e-2
    )
    assert subsequence_dtw(np.arange(6).reshape(2, 3)).value.dtype == jnp.float32  # ints promoted


# ------------------------------------------------------------------------------------------
# Bad input, NaN, inf.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cost",
    [
        None,
        np.zeros(5),
        np.zeros((2, 3, 4)),
        np.zeros((0, 5)),
        np.zeros((3, 0)),
        np.ones((2, 3)) * 1j,
    ],
    ids=["none", "rank1", "rank3", "empty_query", "empty_series", "complex"],
)
def test_bad_cost_raises_naming_it_also_under_jit(cost):
    for fn in (subsequence_dtw, lambda c: soft_subsequence_dtw(c, gamma=0.5)):
        with pytest.raises(ValueError, match="`cost`"):
            fn(cost)
        if cost is not None:
            with pytest.raises(ValueError, match="`cost`"):
                jax.jit(fn)(jnp.asarray(cost))


@pytest.mark.parametrize("gamma", [0.0, -1.0, float("nan"), float("inf"), None, 1 + 1j, [0.1, 1.0]])
def test_bad_gamma_raises_naming_it(gamma):
    with pytest.raises(ValueError, match="`gamma`"):
        soft_subsequence_dtw(jnp.zeros((2, 4)), gamma=gamma)


def test_array_gamma_and_bad_lengths_raise_also_under_jit():
    cost = jnp.zeros((3, 6))
    with pytest.raises(ValueError, match="`gamma`"):
        jax.jit(lambda c, g: soft_subsequence_dtw(c, gamma=g))(cost, jnp.array([0.1, 1.0]))
    with pytest.raises(ValueError, match="`lengths`"):
        jax.jit(lambda c, a: subsequence_dtw(c, lengths=(a, a)))(cost, jnp.array([1, 2]))
    with pytest.raises(ValueError, match="`lengths`"):
        subsequence_dtw(cost, lengths=(4, 6))
    with pytest.raises(ValueError, match="`lengths`"):
        soft_subsequence_dtw(cost, lengths=(2, 2.5))


def test_traced_bad_values_give_nan_and_minus_one():
    @jax.jit
    def both(c, a, b, g):
        return subsequence_dtw(c, lengths=(a, b)), soft_subsequence_dtw(c, gamma=g, lengths=(a, b))

    cost = jnp.zeros((3, 6))
    for a, b, g in [(4, 6, 0.5), (3, 0, 0.5), (0, 2, 0.5)]:
        out, soft = both(cost, a, b, g)
        assert np.isnan(float(out.value)) and np.isnan(np.asarray(out.alignment)).all()
        assert int(out.start) == -1 and int(out.end) == -1
        assert np.isnan(float(soft))
    for g in (0.0, -1.0, np.nan, np.inf):
        out, soft = both(cost, 3, 6, g)
        assert np.isnan(float(soft)) and float(out.value) == 0.0


def test_nan_in_the_cost_propagates_and_never_disappears(rng):
    cost = rng.uniform(size=(4, 15)).astype(np.float32)
    cost[0, 0] = np.nan  # far from any cheap match: a min over slices would skip it silently
    out = subsequence_dtw(cost)
    assert np.isnan(float(out.value)) and np.isnan(np.asarray(out.alignment)).all()
    assert int(out.start) == -1 and int(out.end) == -1
    value, grad = jax.value_and_grad(lambda c: soft_subsequence_dtw(c, gamma=0.2))(
        jnp.asarray(cost)
    )
    assert np.isnan(float(value)) and np.isnan(np.asarray(grad)).any()


def test_forbidden_everywhere_gives_inf_and_minus_one():
    out = subsequence_dtw(jnp.full((4, 15), jnp.inf))
    assert float(out.value) == math.inf
    assert int(out.start) == -1 and int(out.end) == -1
    assert not np.asarray(out.alignment).any()
    # A single admitted column is found whatever the walls around it.
    cost = np.full((4, 15), np.inf, np.float32)
    cost[:, 9] = 1.0
    out = subsequence_dtw(cost)
    assert (float(out.value), int(out.start), int(out.end)) == (4.0, 9, 9)
