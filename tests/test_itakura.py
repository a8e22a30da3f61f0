"""Tests for the Itakura parallelogram band (``itakura_max_slope``) of alignment._src.dtw.

References: tslearn's ``itakura_mask`` (the cells, exactly, square and not), tslearn's ``dtw``
with ``global_constraint="itakura"`` (the value), and a float64 NumPy dynamic programme written
here on tslearn's mask (hard and soft values, the optimal path's cost, the support of the
expected alignment). tslearn's numba functions compile on first use (seconds): only
``itakura_mask`` and ``dtw`` are called.
Shapes are few on purpose: most calls go through one padded shape with ``lengths``, so each slope
compiles once.
"""

from __future__ import annotations

import functools
import math
import warnings
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tslearn.metrics import dtw as tslearn_dtw
from tslearn.metrics import itakura_mask

import alignment as al
from alignment._src import dtw as dtw_module

F32 = 1e-5  # float32 against a float64 reference, relative
F64 = 1e-10
SLOPES = [4 / 3, 1.5, 2.0, 3.0]
PAD = 16  # the padded shape [PAD, PAD] that carries most checks


def _tslearn_mask(t, s, slope):
    """tslearn's mask, or None where tslearn declares the constraint infeasible."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(itakura_mask(t, s, slope), bool)
    except RuntimeWarning:
        return None


def _reachable(mask) -> bool:
    """Whether some warping path from (0, 0) to (t-1, s-1) stays in ``mask`` (plain loops)."""
    t, s = mask.shape
    ok = np.zeros((t, s), bool)
    for i in range(t):
        for j in range(s):
            if not mask[i, j]:
                continue
            if i == 0 and j == 0:
                ok[i, j] = True
            else:
                ok[i, j] = (
                    (i > 0 and j > 0 and ok[i - 1, j - 1])
                    or (i > 0 and ok[i - 1, j])
                    or (j > 0 and ok[i, j - 1])
                )
    return bool(ok[-1, -1])


def _masked_dtw(cost, mask, gamma=0.0):
    """Float64 (soft-)DTW restricted to ``mask``, row by row (the textbook recursion)."""
    t, s = cost.shape
    r = np.full((t + 1, s + 1), math.inf)
    r[0, 0] = 0.0
    for i in range(1, t + 1):
        for j in range(1, s + 1):
            if not mask[i - 1, j - 1]:
                continue
            prev = [v for v in (r[i - 1, j - 1], r[i - 1, j], r[i, j - 1]) if v < math.inf]
            if not prev:
                continue
            if gamma == 0.0:
                best = min(prev)
            else:
                m = min(prev)
                best = m - gamma * math.log(sum(math.exp(-(v - m) / gamma) for v in prev))
            r[i, j] = cost[i - 1, j - 1] + best
    return r[t, s]


def _on_some_path(mask):
    """Cells of ``mask`` reachable from (0, 0) and co-reachable from the end."""
    fwd = np.zeros_like(mask)
    t, s = mask.shape
    for i in range(t):
        for j in range(s):
            if mask[i, j]:
                fwd[i, j] = (i == 0 and j == 0) or any(
                    fwd[a, b] for a, b in ((i - 1, j - 1), (i - 1, j), (i, j - 1)) if min(a, b) >= 0
                )
    bwd = np.zeros_like(mask)
    for i in reversed(range(t)):
        for j in reversed(range(s)):
            if mask[i, j]:
                bwd[i, j] = (i == t - 1 and j == s - 1) or any(
                    bwd[a, b]
                    for a, b in ((i + 1, j + 1), (i + 1, j), (i, j + 1))
                    if a < t and b < s
                )
    return fwd & bwd


# ------------------------------------------------------------------------------------------
# The cells: tslearn's itakura_mask exactly.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("slope", SLOPES)
def test_band_mask_equals_tslearn_itakura_mask_for_every_size_up_to_16(slope):
    """All t, s in [1, 16] (square and not), through one padded shape with traced lengths."""
    band = dtw_module._band_spec(None, slope)
    pairs = [(t, s) for t in range(1, PAD + 1) for s in range(1, PAD + 1)]
    tl = jnp.array([p[0] for p in pairs])
    sl = jnp.array([p[1] for p in pairs])
    masks = jax.jit(jax.vmap(lambda a, b: dtw_module._band_mask((PAD, PAD), a, b, band)))(tl, sl)
    masks = np.asarray(masks)
    compared = 0
    for k, (t, s) in enumerate(pairs):
        assert not masks[k, t:].any() and not masks[k, :, s:].any()  # nothing past the lengths
        expected = _tslearn_mask(t, s, slope)
        if expected is None:  # tslearn: some row or column is empty, so no path can exist
            assert not dtw_module._itakura_feasible(t, s, *band[1:])
            continue
        np.testing.assert_array_equal(masks[k, :t, :s], expected, err_msg=f"{(t, s, slope)}")
        assert dtw_module._itakura_feasible(t, s, *band[1:]) == _reachable(expected), (t, s)
        compared += 1
    assert compared > 60


def test_band_mask_equals_tslearn_on_larger_shapes():
    """Square and not, up to 500 rows, through one padded [500, 400] shape (one compile)."""
    band = dtw_module._band_spec(None, 2.0)
    mask_fn = jax.jit(lambda a, b: dtw_module._band_mask((500, 400), a, b, band))
    for t, s in [(300, 300), (257, 351), (500, 260), (123, 230)]:
        ours = np.asarray(mask_fn(t, s))
        np.testing.assert_array_equal(ours[:t, :s], _tslearn_mask(t, s, 2.0), err_msg=f"{t, s}")
        assert not ours[t:].any() and not ours[:, s:].any()


def test_half_hundredth_ties_are_admitted_where_tslearn_float_rounding_excludes_them():
    """The one documented difference: a bound exactly at i + 1/200. tslearn rounds the bounds to
    two decimals in float64, and 17.005 lands on either side; in exact arithmetic round-half-even
    gives 17.00, so the cell is admitted."""
    t, s, slope, cell = 39, 60, 1.7, (17, 40)
    ours = np.asarray(dtw_module._band_mask((t, s), t, s, dtw_module._band_spec(None, slope)))
    theirs = _tslearn_mask(t, s, slope)
    assert [tuple(c) for c in np.argwhere(ours != theirs)] == [cell]
    i, j = cell
    lower = (t - 1) - Fraction(17, 10) * t * (s - 1 - j) / s  # the binding lower bound
    assert lower == i + Fraction(1, 200)
    assert ours[cell] and not theirs[cell]


def test_slope_is_the_nearest_fraction_with_denominator_at_most_100():
    assert dtw_module._band_spec(None, 2.0) == ("itakura", 2, 1)
    assert dtw_module._band_spec(None, 3) == ("itakura", 3, 1)
    assert dtw_module._band_spec(None, 4 / 3) == ("itakura", 4, 3)
    assert dtw_module._band_spec(None, np.float32(1.5)) == ("itakura", 3, 2)
    assert dtw_module._band_spec(None, math.sqrt(2)) == ("itakura", 140, 99)


# ------------------------------------------------------------------------------------------
# Values and paths: tslearn's dtw / dtw_path, and a float64 DP on tslearn's mask.
# ------------------------------------------------------------------------------------------

SHAPES = [(16, 16), (9, 13), (14, 8), (11, 11), (5, 16)]  # (5, 16) admits no path at slope 2


def test_dtw_matches_tslearn_dtw_with_itakura_and_path_is_optimal_in_its_mask(rng):
    """tslearn's dtw is the square root of the path sum of squared distances."""
    slope = 2.0
    xs = np.zeros((len(SHAPES), PAD, 2), np.float32)
    ys = np.zeros((len(SHAPES), PAD, 2), np.float32)
    raw = []
    for k, (t, s) in enumerate(SHAPES):
        x, y = rng.normal(size=(t, 2)), rng.normal(size=(s, 2))
        xs[k, :t], ys[k, :s] = x, y
        raw.append((x, y))
    tl = jnp.array([t for t, _ in SHAPES])
    sl = jnp.array([s for _, s in SHAPES])

    def one(x, y, a, b):
        cost = al.squared_euclidean(x, y)
        return al.dtw_alignment(cost, itakura_max_slope=slope, lengths=(a, b))

    values, alignments = jax.jit(jax.vmap(one))(jnp.asarray(xs), jnp.asarray(ys), tl, sl)
    for k, (x, y) in enumerate(raw):
        t, s = x.shape[0], y.shape[0]
        mask = _tslearn_mask(t, s, slope)
        if mask is None or not _reachable(mask):
            assert float(values[k]) == math.inf  # traced lengths: no admitted path
            continue
        expected = tslearn_dtw(x, y, global_constraint="itakura", itakura_max_slope=slope)
        np.testing.assert_allclose(math.sqrt(float(values[k])), expected, rtol=F32)
        cost = ((x[:, None] - y[None]) ** 2).sum(-1)
        a = np.asarray(alignments[k], np.float64)
        al.alignment_to_path(a[:t, :s])  # a warping path from (0, 0) ...
        assert a[t - 1, s - 1] == 1.0  # ... to the end cell,
        assert not a[:t, :s][~mask].any()  # inside tslearn's mask,
        assert not a[t:].any() and not a[:, s:].any()  # nothing on the padding,
        np.testing.assert_allclose((a[:t, :s] * cost).sum(), _masked_dtw(cost, mask), rtol=F32)


def test_unpadded_calls_match_float64_dp_on_tslearn_mask(rng, enable_x64):
    """Every function of the family takes the band; values against the float64 DP."""
    t, s, slope, gamma = 9, 13, 2.0, 0.3
    x, y = rng.normal(size=(t, 3)), rng.normal(size=(s, 3))
    cost = ((x[:, None] - y[None]) ** 2).sum(-1)
    mask = _tslearn_mask(t, s, slope)
    hard, soft = _masked_dtw(cost, mask), _masked_dtw(cost, mask, gamma)
    kw = {"itakura_max_slope": slope}
    np.testing.assert_allclose(float(al.dtw(cost, **kw)), hard, rtol=F64)
    np.testing.assert_allclose(float(al.dtw_points(x, y, **kw)), hard, rtol=F64)
    np.testing.assert_allclose(float(al.soft_dtw(cost, gamma=gamma, **kw)), soft, rtol=F64)
    np.testing.assert_allclose(float(al.soft_dtw_points(x, y, gamma=gamma, **kw)), soft, rtol=F64)
    value, alignment = al.dtw_alignment(cost, **kw)
    assert float(value) == pytest.approx(hard, rel=F64)
    assert np.asarray(alignment)[~mask].sum() == 0.0
    # The expected alignment is positive exactly on the cells of some admitted path.
    expected = np.asarray(al.soft_dtw_alignment(jnp.zeros((t, s)), gamma=1.0, **kw))
    np.testing.assert_array_equal(expected > 0, _on_some_path(mask))
    assert float(al.soft_dtw_divergence(x, y, gamma=gamma, **kw)) > 0.0


def test_padding_changes_nothing_and_band_follows_the_valid_rectangle(rng):
    t, s, slope = 7, 12, 2.0
    cost = jnp.asarray(rng.uniform(size=(t, s)), jnp.float32)
    padded = jnp.full((PAD, PAD), jnp.nan, jnp.float32).at[:t, :s].set(cost)  # garbage padding
    kw = {"itakura_max_slope": slope}

    def soft(c, a, b):
        return al.soft_dtw(c, gamma=0.2, lengths=(a, b), **kw)

    v_pad, g_pad = jax.jit(jax.value_and_grad(soft))(padded, t, s)
    v, g = jax.jit(jax.value_and_grad(soft))(cost, t, s)  # lengths = the shape: unpadded
    np.testing.assert_allclose(float(v_pad), float(v), rtol=F32)
    np.testing.assert_allclose(np.asarray(g_pad[:t, :s]), np.asarray(g), atol=1e-6)
    assert not np.asarray(g_pad[t:]).any() and not np.asarray(g_pad[:, s:]).any()
    assert np.isfinite(np.asarray(g_pad)).all()


# ------------------------------------------------------------------------------------------
# Bad input and infeasible bands.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "slope",
    [0.5, 0.999, 0.0, -2.0, float("nan"), float("inf"), 1 + 2j, "2", True, np.array([2.0, 3.0])],
)
def test_bad_slope_raises_naming_the_argument(slope):
    with pytest.raises(ValueError, match="`itakura_max_slope`"):
        al.dtw(jnp.zeros((4, 4)), itakura_max_slope=slope)


def test_bad_slope_and_both_bands_raise_also_under_jit():
    cost = jnp.zeros((5, 5))
    with pytest.raises(ValueError, match="`itakura_max_slope`"):
        jax.jit(lambda c: al.soft_dtw(c, itakura_max_slope=0.5))(cost)
    with pytest.raises(ValueError, match=r"`window`.*`itakura_max_slope`"):
        jax.jit(lambda c: al.dtw(c, window=1, itakura_max_slope=2.0))(cost)
    for fn in (al.dtw_points, al.soft_dtw_points, al.soft_dtw_divergence):
        with pytest.raises(ValueError, match=r"`window`.*`itakura_max_slope`"):
            fn(cost, cost, window=2, itakura_max_slope=2.0)
    with pytest.raises(ValueError, match="`itakura_max_slope`"):  # traced slope: not static
        jax.jit(lambda c, g: al.dtw(c, itakura_max_slope=g))(cost, 2.0)


def test_infeasible_band_raises_for_concrete_lengths_and_gives_inf_when_traced():
    """Lengths 3 and 12 need slope >= 4 or so: ValueError naming the argument; traced, +inf."""
    with pytest.raises(ValueError, match=r"`itakura_max_slope`.*no warping path"):
        al.dtw(jnp.zeros((3, 12)), itakura_max_slope=2.0)
    with pytest.raises(ValueError, match=r"`itakura_max_slope`.*no warping path"):
        al.dtw(jnp.zeros((PAD, PAD)), itakura_max_slope=2.0, lengths=(3, 12))
    assert float(al.dtw(jnp.zeros((PAD, PAD)), itakura_max_slope=5.0, lengths=(3, 12))) == 0.0
    value, grad = jax.jit(
        jax.value_and_grad(lambda c, a, b: al.soft_dtw(c, itakura_max_slope=2.0, lengths=(a, b)))
    )(jnp.zeros((PAD, PAD)), 3, 12)
    assert float(value) == math.inf
    assert np.isfinite(np.asarray(grad)).all()


def test_public_feasibility_agrees_with_reachability_in_tslearn_mask():
    """al.dtw raises exactly when tslearn's mask holds no warping path (one compiled shape)."""
    slope, zeros = 2.0, jnp.zeros((PAD, PAD))
    for t in range(1, 11):
        for s in range(1, 11):
            mask = _tslearn_mask(t, s, slope)
            if mask is not None and _reachable(mask):
                out = al.dtw(zeros, itakura_max_slope=slope, lengths=(t, s))
                assert float(out) == 0.0, (t, s)
            else:
                with pytest.raises(ValueError, match="`itakura_max_slope`"):
                    al.dtw(zeros, itakura_max_slope=slope, lengths=(t, s))


def test_sizes_beyond_exact_int32_raise_without_x64():
    """Slope 1.01 = 101/100 on 5000 x 5000 needs integers past 2**31 (checked at trace time)."""
    spec = jax.ShapeDtypeStruct((5000, 5000), jnp.float32)
    with pytest.raises(ValueError, match=r"`itakura_max_slope`.*int32"):
        jax.eval_shape(lambda c: al.dtw(c, itakura_max_slope=1.01), spec)
    jax.eval_shape(lambda c: al.dtw(c, itakura_max_slope=2.0), spec)  # 2/1 fits in int32


def test_none_is_the_default_and_window_is_unchanged(rng):
    cost = jnp.asarray(rng.uniform(size=(6, 9)), jnp.float32)
    assert float(al.dtw(cost, itakura_max_slope=None)) == float(al.dtw(cost))
    assert float(al.dtw(cost, window=1, itakura_max_slope=None)) == float(al.dtw(cost, window=1))


def test_no_admitted_path_under_jit_gives_inf_and_an_exactly_zero_gradient():
    # window = 0 with traced unequal lengths, and an Itakura band too narrow for them: the value
    # is +inf and the cotangent is not seeded at the (unreachable) end cell.
    cost = jnp.zeros((6, 6))
    fns = {
        "soft_dtw": lambda c, s, **band: al.soft_dtw(c, gamma=0.5, lengths=(3, s), **band),
        "dtw": lambda c, s, **band: al.dtw(c, lengths=(3, s), **band),
    }
    for name, fn in fns.items():
        for band in ({"window": 0}, {"itakura_max_slope": 1.0}):
            run = jax.jit(jax.value_and_grad(functools.partial(fn, **band)))
            value, grad = run(cost, 5)
            assert float(value) == np.inf, (name, band)
            assert float(jnp.abs(grad).max()) == 0.0, (name, band)
            value, grad = run(cost, 3)
            assert float(value) == 0.0 and float(grad.sum()) >= 3.0, (name, band)
