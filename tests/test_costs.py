"""Tests for alignment._src.costs against independent references.

References: ``scipy.spatial.distance.cdist`` ('sqeuclidean', 'euclidean', 'cosine', 'cityblock')
and ``sklearn.metrics.pairwise`` (linear, polynomial and RBF kernels, cosine similarity), all in
float64 on the same (possibly float32-rounded) inputs; ``check_grads`` for derivatives.
"""

from __future__ import annotations

import contextlib
import functools

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from jax.test_util import check_grads
from scipy.spatial.distance import cdist
from sklearn.metrics import pairwise as skp

import alignment as al
from tests.conftest import x64

F32_RTOL = 1e-5  # float32 closed forms vs a float64 reference, relative
F32_ATOL = 1e-5  # ... and absolute, in units of the reference's largest entry
F64_RTOL = 1e-10
F64_ATOL = 1e-10
GRAD_X64 = 1e-6  # check_grads under x64
GRAD_EPS = 1e-5  # its finite-difference step (the default 1e-4 is too coarse for order 2)
GRAD_ZERO_F32 = 1e-5  # a float32 gradient that should vanish

SIZES = [(1, 4, 3), (8, 5, 1), (5, 7, 16)]  # (n, m, d): n = 1, n != m, d = 1, wider d

# Every public function (and non-default hyperparameters) with its float64 reference.
REFERENCES = {
    "squared_euclidean": (al.squared_euclidean, lambda x, y: cdist(x, y, "sqeuclidean")),
    "euclidean": (al.euclidean, lambda x, y: cdist(x, y, "euclidean")),
    "cosine_similarity": (al.cosine_similarity, skp.cosine_similarity),
    "cosine_distance": (al.cosine_distance, lambda x, y: cdist(x, y, "cosine")),
    "absolute_difference": (al.absolute_difference, lambda x, y: cdist(x, y, "cityblock")),
    "linear_kernel": (al.linear_kernel, skp.linear_kernel),
    "polynomial_kernel": (al.polynomial_kernel, skp.polynomial_kernel),
    "polynomial_kernel[2,0.3,0.5]": (
        functools.partial(al.polynomial_kernel, degree=2, gamma=0.3, coef0=0.5),
        functools.partial(skp.polynomial_kernel, degree=2, gamma=0.3, coef0=0.5),
    ),
    "rbf_kernel": (al.rbf_kernel, skp.rbf_kernel),
    "rbf_kernel[0.7]": (
        functools.partial(al.rbf_kernel, gamma=0.7),
        functools.partial(skp.rbf_kernel, gamma=0.7),
    ),
}
NAMES = list(REFERENCES)
FUNCTIONS = {name: REFERENCES[name][0] for name in NAMES if "[" not in name}
# Compiled once per module and reused, so every (shape, dtype) compiles once across all tests:
# on CPU, op-by-op (eager) dispatch compiles each primitive and dominates the runtime.
JITTED = {name: jax.jit(fn) for name, (fn, _) in REFERENCES.items()}
# Functions that are well defined (and should have finite gradients) at x[i] == y[j].
AT_EQUAL_ROWS = [
    "squared_euclidean",
    "euclidean",
    "rbf_kernel",
    "cosine_similarity",
    "cosine_distance",
    "absolute_difference",
]


def _points(rng, n, m, d, dtype=np.float64):
    return rng.normal(size=(n, d)).astype(dtype), rng.normal(size=(m, d)).astype(dtype)


def _assert_f32_close(actual, expected):
    """float32 against float64: relative, with an absolute floor at the reference's scale."""
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=F32_RTOL, atol=F32_ATOL * scale)


def test_all_public_functions_covered():
    assert sorted(al._src.costs.__all__) == sorted(FUNCTIONS)


# ------------------------------------------------------------------------------------------
# (a) Agreement with SciPy and scikit-learn.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m", "d"), SIZES)
@pytest.mark.parametrize("name", NAMES)
def test_matches_reference_float64(name, n, m, d, rng, enable_x64):
    x, y = _points(rng, n, m, d)
    out = JITTED[name](x, y)
    assert out.shape == (n, m)
    assert out.dtype == jnp.float64
    np.testing.assert_allclose(out, REFERENCES[name][1](x, y), rtol=F64_RTOL, atol=F64_ATOL)


@pytest.mark.parametrize(("n", "m", "d"), SIZES)
@pytest.mark.parametrize("name", NAMES)
def test_matches_reference_float32(name, n, m, d, rng):
    x, y = _points(rng, n, m, d, np.float32)
    out = JITTED[name](x, y)
    assert out.shape == (n, m)
    assert out.dtype == jnp.float32
    _assert_f32_close(out, REFERENCES[name][1](x.astype(np.float64), y.astype(np.float64)))


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_jit_and_eager_match_reference(name, jit, rng):
    fn, reference = REFERENCES[name]
    x, y = _points(rng, 3, 4, 2, np.float32)
    out = JITTED[name](x, y) if jit else fn(x, y)
    assert out.shape == (3, 4)
    assert out.dtype == jnp.float32
    _assert_f32_close(out, reference(x.astype(np.float64), y.astype(np.float64)))


def test_absolute_difference_1d_matches_outer_and_cdist(rng):
    x, y = rng.normal(size=7), rng.normal(size=4)
    expected = np.abs(np.subtract.outer(x, y))
    out = al.absolute_difference(x.astype(np.float32), y.astype(np.float32))
    assert out.shape == (7, 4)
    _assert_f32_close(out, expected)
    np.testing.assert_allclose(expected, cdist(x[:, None], y[:, None], "cityblock"))


def test_zero_vectors_cosine_convention(rng):
    """A zero vector has similarity 0 (distance 1) with everything, scikit-learn's convention."""
    x = np.zeros((2, 3), np.float32)
    x[1] = rng.normal(size=3)
    y = np.concatenate([np.zeros((1, 3)), rng.normal(size=(2, 3))]).astype(np.float32)
    sim = al.cosine_similarity(x, y)
    _assert_f32_close(sim, skp.cosine_similarity(x, y))
    np.testing.assert_array_equal(np.asarray(sim)[0], 0.0)
    np.testing.assert_array_equal(np.asarray(sim)[:, 0], 0.0)
    np.testing.assert_allclose(al.cosine_distance(x, y), 1.0 - np.asarray(sim))


@pytest.mark.parametrize(
    ("dtype", "offset", "noise"),
    [(np.float32, 1e3, 1e-2), (np.float32, 1e4, 1.0), (np.float64, 1e6, 1e-4)],
)
def test_squared_euclidean_accurate_for_large_offset_small_spread(dtype, offset, noise, rng):
    """Points far from the origin but close to each other: the naive |x|^2 + |y|^2 - 2 x.y
    cancels catastrophically (it goes negative); the centred expansion does not."""
    x = (offset + noise * rng.normal(size=(6, 4))).astype(dtype)
    y = (offset + noise * rng.normal(size=(5, 4))).astype(dtype)
    expected = cdist(x.astype(np.float64), y.astype(np.float64), "sqeuclidean")
    naive = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    assert np.abs(naive - expected).max() > 0.1 * expected.max()  # the test has teeth
    with x64() if dtype == np.float64 else contextlib.nullcontext():
        for other, ref in [(y, expected), (x, cdist(x, x, "sqeuclidean"))]:
            out = np.asarray(JITTED["squared_euclidean"](x, other))
            assert out.dtype == dtype
            assert (out >= 0).all()
            np.testing.assert_allclose(out, ref, rtol=0, atol=F32_RTOL * expected.max())
            # sqrt amplifies the absolute error near 0: |error| <= sqrt(atol of the square).
            np.testing.assert_allclose(
                JITTED["euclidean"](x, other),
                np.sqrt(ref),
                rtol=0,
                atol=np.sqrt(F32_RTOL * expected.max()),
            )


# ------------------------------------------------------------------------------------------
# (b) Shapes and dtypes (the reference tests above also pin shapes for n = 1, n != m, d = 1).
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), [(0, 3), (3, 0)])
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_empty_input_gives_empty_output(name, n, m):
    out = jax.eval_shape(FUNCTIONS[name], jnp.zeros((n, 2)), jnp.zeros((m, 2)))
    assert out.shape == (n, m)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_dtype_follows_input(name):
    fn = FUNCTIONS[name]
    f32, f64 = np.ones((3, 2), np.float32), np.ones((4, 2), np.float64)
    assert jax.eval_shape(fn, f32, f32).dtype == jnp.float32
    with x64():
        assert jax.eval_shape(fn, f32, f32).dtype == jnp.float32  # x64 on: float32 stays
        assert jax.eval_shape(fn, f64, f64).dtype == jnp.float64
        assert jax.eval_shape(fn, f32, f64).dtype == jnp.float64  # mixed: promoted


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_integer_inputs_promoted_to_float(name, rng):
    x = rng.integers(-3, 4, size=(3, 2)).astype(np.int32)
    y = rng.integers(-3, 4, size=(4, 2)).astype(np.int32)
    out = JITTED[name](x, y)
    assert out.dtype == jnp.float32
    _assert_f32_close(out, REFERENCES[name][1](x.astype(np.float64), y.astype(np.float64)))
    with x64():
        assert jax.eval_shape(FUNCTIONS[name], x, y).dtype == jnp.float64


def test_absolute_difference_accepts_1d_and_column_vectors():
    x, y = jnp.array([1.0, 3.0]), jnp.array([2.0, 2.0, 4.0])
    expected = np.array([[1.0, 1.0, 3.0], [1.0, 1.0, 1.0]])
    fn = JITTED["absolute_difference"]
    np.testing.assert_array_equal(fn(x, y), expected)
    np.testing.assert_array_equal(fn(x[:, None], y), expected)
    np.testing.assert_array_equal(fn(x, y[:, None]), expected)
    np.testing.assert_array_equal(fn(np.array([1, 3]), np.array([2, 2, 4])), expected)


# ------------------------------------------------------------------------------------------
# (c) jit and vmap.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_vmap_equals_loop(name, jit, rng):
    fn = REFERENCES[name][0]
    xs = rng.normal(size=(3, 4, 2)).astype(np.float32)
    ys = rng.normal(size=(3, 5, 2)).astype(np.float32)
    batched = jax.vmap(fn)
    batched = (jax.jit(batched) if jit else batched)(xs, ys)
    looped = np.stack([JITTED[name](x, y) for x, y in zip(xs, ys, strict=True)])
    assert batched.shape == (3, 4, 5)
    np.testing.assert_allclose(batched, looped, rtol=F32_RTOL, atol=F32_ATOL)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("fn", [al.rbf_kernel, al.polynomial_kernel], ids=["rbf", "poly"])
def test_vmap_over_traced_gamma_equals_loop(fn, jit, rng):
    x, y = _points(rng, 4, 5, 2, np.float32)
    gammas = jnp.array([0.1, 0.5, 2.0])
    batched = jax.vmap(lambda g: fn(x, y, gamma=g))
    batched = (jax.jit(batched) if jit else batched)(gammas)
    one = jax.jit(lambda g: fn(x, y, gamma=g))  # traced gamma: one compile for all values
    looped = np.stack([one(g) for g in gammas])
    np.testing.assert_allclose(batched, looped, rtol=F32_RTOL, atol=F32_ATOL)


# ------------------------------------------------------------------------------------------
# (d) Gradients.
# ------------------------------------------------------------------------------------------

# Second order costs seconds per function on CPU (cosine alone ~4 s): kept for the square root
# (safe_sqrt), the exponential of a distance and the polynomial.
SECOND_ORDER = {"euclidean", "rbf_kernel[0.7]", "polynomial_kernel[2,0.3,0.5]"}


@pytest.mark.parametrize("name", NAMES)
def test_check_grads_generic_points(name, rng, enable_x64):
    x, y = _points(rng, 3, 4, 2)
    order = 2 if name in SECOND_ORDER else 1
    check_grads(
        REFERENCES[name][0],
        (x, y),
        order=order,
        modes=("fwd", "rev"),
        eps=GRAD_EPS,
        atol=GRAD_X64,
        rtol=GRAD_X64,
    )


def test_check_grads_hyperparameters(rng, enable_x64):
    x, y = _points(rng, 3, 4, 2)
    check_grads(
        lambda g: al.rbf_kernel(x, y, gamma=g),
        (0.7,),
        order=1,
        modes=("fwd", "rev"),
        eps=GRAD_EPS,
        atol=GRAD_X64,
        rtol=GRAD_X64,
    )
    check_grads(
        lambda g, c: al.polynomial_kernel(x, y, degree=3, gamma=g, coef0=c),
        (0.3, 0.5),
        order=1,
        modes=("fwd", "rev"),
        eps=GRAD_EPS,
        atol=GRAD_X64,
        rtol=GRAD_X64,
    )


@pytest.mark.parametrize("name", AT_EQUAL_ROWS)
def test_gradient_finite_at_equal_rows(name, rng):
    """x[0] == y[0]: each function is at an optimum of entry (0, 0), so its gradient vanishes,
    except the L1 cost, whose kink gives a subgradient (JAX takes d|t|/dt = 1 at t = 0)."""
    fn = FUNCTIONS[name]
    x, y = _points(rng, 3, 4, 2, np.float32)
    y[0] = x[0]
    gx, gy = jax.jit(jax.grad(lambda a, b: fn(a, b)[0, 0], argnums=(0, 1)))(x, y)
    if name == "absolute_difference":
        assert (np.abs(gx) <= 1).all() and (np.abs(gy) <= 1).all()
    else:
        np.testing.assert_allclose(gx, 0.0, atol=GRAD_ZERO_F32)
        np.testing.assert_allclose(gy, 0.0, atol=GRAD_ZERO_F32)
    # A whole loss over identical sets, and its second derivatives, stay finite as well.
    gx, gy = jax.jit(jax.grad(lambda a, b: fn(a, b).sum(), argnums=(0, 1)))(x, x)
    hess = jax.jit(jax.hessian(lambda a: fn(a, x).sum()))(x)
    assert np.isfinite(gx).all() and np.isfinite(gy).all() and np.isfinite(hess).all()


@pytest.mark.parametrize("name", ["cosine_similarity", "cosine_distance"])
def test_cosine_gradient_finite_at_zero_vector(name, rng):
    fn = FUNCTIONS[name]
    x, y = _points(rng, 3, 4, 2, np.float32)
    x[0] = 0.0
    y[1] = 0.0
    grad = jax.jit(jax.grad(lambda a, b: fn(a, b).sum(), argnums=(0, 1)))
    for a, b in [(x, y), (np.zeros((1, 2), np.float32), np.zeros((1, 2), np.float32))]:
        ga, gb = grad(a, b)
        assert np.isfinite(ga).all() and np.isfinite(gb).all()
    hess = jax.jit(jax.hessian(lambda a: fn(a, y).sum()))(x)
    assert np.isfinite(hess).all()


@pytest.mark.parametrize("name", ["squared_euclidean", "euclidean", "rbf_kernel"])
def test_rows_outside_the_loss_get_exactly_zero_gradient(name, rng):
    """The centring is stop-gradient'ed, so padding rows receive no spurious gradient."""
    fn = FUNCTIONS[name]
    x, y = _points(rng, 5, 4, 3, np.float32)
    gx, gy = jax.jit(jax.grad(lambda a, b: fn(a, b)[:2, :3].sum(), argnums=(0, 1)))(x, y)
    np.testing.assert_array_equal(gx[2:], 0.0)
    np.testing.assert_array_equal(gy[3:], 0.0)


# ------------------------------------------------------------------------------------------
# (e) Bad input. (Shape checks run at trace time, so eval_shape exercises them without compiling.)
# ------------------------------------------------------------------------------------------

TWO_D_ONLY = [name for name in FUNCTIONS if name != "absolute_difference"]


@pytest.mark.parametrize("name", TWO_D_ONLY)
def test_1d_input_raises(name):
    fn = FUNCTIONS[name]
    with pytest.raises(ValueError, match=r"`x`.*2-D.*\(3,\)"):
        fn(np.ones(3), np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"`y`.*2-D.*\(3,\)"):
        fn(np.ones((2, 3)), np.ones(3))


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_mismatched_feature_size_raises(name):
    with pytest.raises(ValueError, match=r"feature size.*x: \(2, 3\).*y: \(4, 2\)"):
        FUNCTIONS[name](np.ones((2, 3)), np.ones((4, 2)))


def test_absolute_difference_1d_against_multifeature_raises():
    with pytest.raises(ValueError, match="feature size"):
        al.absolute_difference(np.ones(3), np.ones((4, 2)))


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_3d_input_raises(name):
    fn = FUNCTIONS[name]
    with pytest.raises(ValueError, match=r"`x`.*2-D.*\(2, 3, 1\)"):
        fn(np.ones((2, 3, 1)), np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"`y`.*2-D.*\(2, 3, 1\)"):
        fn(np.ones((2, 3)), np.ones((2, 3, 1)))


@pytest.mark.parametrize("degree", [0, -1, 2.0, None])
def test_polynomial_bad_degree_raises(degree):
    with pytest.raises(ValueError, match="`degree`"):
        al.polynomial_kernel(np.ones((2, 3)), np.ones((2, 3)), degree=degree)


# ------------------------------------------------------------------------------------------
# (f) Properties. Shapes are fixed so that each jitted function compiles once.
# ------------------------------------------------------------------------------------------


def _set(n, d=3):
    return hnp.arrays(np.float32, (n, d), elements=st.floats(-3, 3, width=32))


@settings(max_examples=25, deadline=None)
@given(_set(4), _set(5), st.floats(-1e3, 1e3, width=32))
def test_property_squared_euclidean_nonnegative_symmetric_shift_invariant(x, y, shift):
    sqeuclidean = JITTED["squared_euclidean"]
    expected = cdist(x.astype(np.float64), y.astype(np.float64), "sqeuclidean")
    out = np.asarray(sqeuclidean(x, y))
    tol = F32_RTOL * (1.0 + expected.max())
    assert (out >= 0).all()
    np.testing.assert_allclose(out, expected, rtol=0, atol=tol)
    np.testing.assert_allclose(out, np.asarray(sqeuclidean(y, x)).T, rtol=0, atol=tol)
    # Translating both sets changes nothing beyond the rounding of the shifted inputs.
    xs, ys = (x + shift).astype(np.float32), (y + shift).astype(np.float32)
    shifted = cdist(xs.astype(np.float64), ys.astype(np.float64), "sqeuclidean")
    np.testing.assert_allclose(sqeuclidean(xs, ys), shifted, rtol=0, atol=tol)


_RBF = jax.jit(lambda x, y, gamma: al.rbf_kernel(x, y, gamma=gamma))


@settings(max_examples=25, deadline=None)
@given(_set(4), _set(5), st.sampled_from([0.1, 1.0 / 3.0, 1.0]))
def test_property_rbf_in_unit_interval_symmetric_one_on_diagonal(x, y, gamma):
    k = np.asarray(_RBF(x, y, gamma))
    # exp(-gamma * 36 * d) can underflow to 0 in float32 (d = 3, gamma = 1: exp(-108)).
    assert ((k >= 0) & (k <= 1)).all()
    np.testing.assert_allclose(k, np.asarray(_RBF(y, x, gamma)).T, rtol=0, atol=F32_ATOL)
    np.testing.assert_allclose(np.diag(np.asarray(_RBF(x, x, gamma))), 1.0, rtol=0, atol=F32_ATOL)


@settings(max_examples=25, deadline=None)
@given(_set(4), _set(5))
def test_property_cosine_bounded(x, y):
    sim = np.asarray(JITTED["cosine_similarity"](x, y))
    assert (np.abs(sim) <= 1 + 1e-6).all()  # rounding may overshoot 1 by a few ulps
    np.testing.assert_allclose(JITTED["cosine_distance"](x, y), 1.0 - sim, rtol=0, atol=1e-6)


def test_euclidean_is_exactly_zero_on_identical_rows(rng):
    x = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
    assert np.all(np.diag(np.asarray(al.euclidean(x, x))) == 0.0)


def test_cosine_stays_in_documented_range(rng):
    x = jnp.asarray(rng.normal(size=(50, 3)), jnp.float32)
    sim = np.asarray(al.cosine_similarity(x, x))
    assert sim.max() <= 1.0 and sim.min() >= -1.0
    assert np.asarray(al.cosine_distance(x, x)).min() >= 0.0


def test_polynomial_degree_accepts_numpy_ints_and_rejects_bools():
    x = jnp.ones((2, 3))
    np.testing.assert_allclose(
        al.polynomial_kernel(x, x, degree=np.int64(2)), al.polynomial_kernel(x, x, degree=2)
    )
    with pytest.raises(ValueError, match="`degree`"):
        al.polynomial_kernel(x, x, degree=True)


# ------------------------------------------------------------------------------------------
# (g) Issue 9: non-finite rows, float32 range, hyperparameter policy, dtypes.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e30])
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_one_bad_row_changes_only_its_own_entries(name, bad, rng):
    """A non-finite or huge row of x used to poison every pair (global mean, augmented
    product); now entry (i, j) depends on x[i] and y[j] only."""
    x, y = _points(rng, 4, 5, 3, np.float32)
    xb = x.copy()
    xb[2, 1] = bad
    clean = np.asarray(JITTED[name](x, y))
    out = np.asarray(JITTED[name](xb, y))
    rows = [0, 1, 3]
    _assert_f32_close(out[rows], clean[rows])
    if np.isnan(bad):
        assert np.isnan(out[2]).all()


@pytest.mark.parametrize(
    "name", ["squared_euclidean", "euclidean", "rbf_kernel", "cosine_distance"]
)
def test_nan_in_real_row_propagates_to_gradient(name, rng):
    x, y = _points(rng, 3, 4, 2, np.float32)
    x[1, 0] = np.nan
    gx = jax.grad(lambda a: FUNCTIONS[name](a, y).sum())(x)
    assert np.isnan(np.asarray(gx[1])).any()


def test_squared_euclidean_overflow_is_inf_not_nan():
    """Near 1e30 the true squared distance overflows float32: inf, never NaN; coinciding huge
    points are at distance 0 and moderately huge ones get the right (finite) value."""
    x = np.array([[1e30, 0.0], [3e18, 0.0]], np.float32)
    y = np.array([[1e30, 0.0], [0.0, 0.0], [-1e30, 1.0], [3.5e18, 0.0]], np.float32)
    out = np.asarray(al.squared_euclidean(x, y))
    assert not np.isnan(out).any()
    assert out[0, 0] == 0.0 and np.isinf(out[0, 1]) and np.isinf(out[0, 2])
    expected = cdist(x.astype(np.float64), y.astype(np.float64), "sqeuclidean")
    np.testing.assert_allclose(al.euclidean(x, y), np.sqrt(expected), rtol=1e-5)
    expected = np.where(expected > np.finfo(np.float32).max, np.inf, expected)  # float32 range
    np.testing.assert_allclose(out[1], expected[1], rtol=1e-5)


def test_euclidean_propagates_nan_and_handles_extreme_scales():
    out = np.asarray(al.euclidean(np.array([[np.nan, 0.0]]), np.array([[1.0, 0.0]])))
    assert np.isnan(out).all()  # used to be 0 (safe_sqrt mapped NaN to 0)
    for scale in [1e30, 1e-30]:
        got = al.euclidean(np.array([[3.0, 0.0]]) * scale, np.array([[0.0, 4.0]]) * scale)
        np.testing.assert_allclose(got, [[5.0 * scale]], rtol=1e-6)


@pytest.mark.parametrize("scale", [1e30, 1e20, 1e-6])
def test_cosine_similarity_of_huge_and_tiny_vectors(scale, rng):
    """It used to return 0 for huge vectors (the norm overflowed before normalising). Norms
    below ``eps`` follow the zero-vector convention instead (tested above)."""
    x, y = _points(rng, 3, 4, 5, np.float64)
    expected = skp.cosine_similarity(x, y)
    got = al.cosine_similarity((x * scale).astype(np.float32), (y * scale).astype(np.float32))
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize(
    ("fn", "kw"),
    [
        (al.rbf_kernel, "gamma"),
        (al.polynomial_kernel, "gamma"),
        (al.cosine_similarity, "eps"),
        (al.cosine_distance, "eps"),
    ],
)
@pytest.mark.parametrize("value", [0.0, -1.0, np.nan, np.inf])
def test_bad_hyperparameter_raises_eagerly_and_is_nan_under_jit(fn, kw, value):
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=f"`{kw}`"):
        fn(x, x, **{kw: value})
    out = jax.jit(lambda v: fn(x, x, **{kw: v}))(value)
    assert np.isnan(np.asarray(out)).all()
    with pytest.raises(ValueError, match=f"`{kw}`"):
        jax.jit(lambda v: fn(x, x, **{kw: v}))(jnp.array([1.0, 2.0]))


def test_polynomial_coef0_must_be_finite():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="`coef0`"):
        al.polynomial_kernel(x, x, coef0=np.nan)
    assert np.isnan(
        np.asarray(jax.jit(lambda c: al.polynomial_kernel(x, x, coef0=c))(np.inf))
    ).all()


def test_zero_features_accepted_by_every_function():
    """d = 0: the kernels used to raise ZeroDivisionError (gamma = 1 / d); every vector is now
    the zero vector, and the default gamma is 1."""
    x, y = np.zeros((2, 0), np.float32), np.zeros((3, 0), np.float32)
    expected = {
        "squared_euclidean": 0.0,
        "euclidean": 0.0,
        "cosine_similarity": 0.0,
        "cosine_distance": 1.0,
        "absolute_difference": 0.0,
        "linear_kernel": 0.0,
        "polynomial_kernel": 1.0,
        "rbf_kernel": 1.0,
    }
    for name, value in expected.items():
        out = FUNCTIONS[name](x, y)
        assert out.shape == (2, 3)
        np.testing.assert_array_equal(out, value)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_complex_inputs_raise(name):
    z = np.ones((2, 3), np.complex64)
    with pytest.raises(ValueError, match="complex"):
        FUNCTIONS[name](z, np.ones((2, 3)))
    with pytest.raises(ValueError, match="complex"):
        jax.jit(FUNCTIONS[name])(np.ones((2, 3)), z)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_half_precision_computed_in_float32_and_returned_in_input_dtype(name, dtype, rng):
    x, y = _points(rng, 3, 4, 5, np.float32)
    xh, yh = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    out = FUNCTIONS[name](xh, yh)
    assert out.dtype == dtype
    want = FUNCTIONS[name](np.asarray(xh, np.float32), np.asarray(yh, np.float32))
    np.testing.assert_allclose(np.asarray(out, np.float32), want, rtol=1e-2, atol=1e-2)
