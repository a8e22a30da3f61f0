"""Tests for alignment._src.sliced against independent references.

References: POT (``ot.sliced_wasserstein_distance`` given our projection matrix,
``ot.wasserstein_1d``), ``scipy.stats.wasserstein_distance`` (1-D, ``p = 1``), the closed form of a
translation (``W_2^2`` of a projected translate is ``<theta, t>^2``) and directional finite
differences under float64.

Compile time dominates: the float64 tests share one jitted value-and-gradient per ``p`` on clouds
``[7, 3]`` (unequal sizes are covered by zero-weight padding, checked against POT on the unpadded
clouds, and by the 1-D test on ``[7, 1]`` against ``[5, 1]``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import ot as pot
import pytest
import scipy.stats

from alignment._src.sliced import random_projections, sliced_wasserstein

N, D, L = 7, 3, 16
F64 = 1e-12  # float64 agreement of two exact computations
FD = 1e-6  # directional finite differences, float64, relative
KEY = jax.random.key(0)

sw_grad = jax.jit(
    jax.value_and_grad(
        lambda x, y, a, b, p: sliced_wasserstein(x, y, a, b, n_projections=L, key=KEY, p=p),
        argnums=(0, 1, 2, 3),
    ),
    static_argnames=("p",),
)


def _clouds(rng, dtype=np.float64):
    x, y = rng.normal(size=(N, D)), rng.normal(size=(N, D)) * 1.5 + 0.7
    a, b = rng.uniform(0.2, 1.0, N), rng.uniform(0.2, 1.0, N)
    return (
        x.astype(dtype),
        y.astype(dtype),
        (a / a.sum()).astype(dtype),
        (b / b.sum()).astype(dtype),
    )


def _theta():
    return np.asarray(random_projections(KEY, D, L, jnp.float64))


@pytest.mark.parametrize("p", [1, 2])
def test_matches_pot_with_the_same_projections(enable_x64, rng, p):
    x, y, a, b = _clouds(rng)
    ref = pot.sliced_wasserstein_distance(x, y, a, b, p=p, projections=_theta())
    value, _ = sw_grad(x, y, a, b, p)
    np.testing.assert_allclose(value, ref, rtol=F64)
    # unequal sizes: zero weights are padding, POT gets the unpadded clouds
    keep_x, keep_y = np.array([0, 2, 3, 5, 6]), np.array([1, 2, 3, 4, 5, 6])
    ap, bp = np.zeros(N), np.zeros(N)
    ap[keep_x], bp[keep_y] = a[keep_x] / a[keep_x].sum(), b[keep_y] / b[keep_y].sum()
    ref = pot.sliced_wasserstein_distance(
        x[keep_x], y[keep_y], ap[keep_x], bp[keep_y], p=p, projections=_theta()
    )
    np.testing.assert_allclose(sw_grad(x, y, ap, bp, p)[0], ref, rtol=F64)


@pytest.mark.parametrize("p", [1, 2, 3.5])
def test_uniform_equal_size_fast_path(enable_x64, rng, p):
    """a = b = None with n = m sorts once per cloud: POT's value, and the general path's value
    and gradients (explicit uniform weights take the general path)."""
    x, y, _, _ = _clouds(rng)
    y[2] = y[5]  # ties in every projection of y
    uniform = np.full(N, 1.0 / N)
    ref = pot.sliced_wasserstein_distance(x, y, p=p, projections=_theta())

    def fast(x, y):
        return sliced_wasserstein(x, y, n_projections=L, key=KEY, p=p)

    def general(x, y):
        return sliced_wasserstein(x, y, uniform, uniform, n_projections=L, key=KEY, p=p)

    np.testing.assert_allclose(fast(x, y), ref, rtol=F64)
    np.testing.assert_allclose(fast(x, y), general(x, y), rtol=1e-12)
    for got, want in zip(
        jax.grad(fast, (0, 1))(x, y), jax.grad(general, (0, 1))(x, y), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert float(fast(x, x)) == 0.0
    assert np.all(np.asarray(jax.grad(fast)(x, x)) == 0.0)


def test_projections_are_unit_columns_and_key_dependent():
    theta = random_projections(KEY, D, L)
    assert theta.shape == (D, L) and theta.dtype == jnp.float32
    np.testing.assert_allclose(np.sum(np.asarray(theta) ** 2, axis=0), 1.0, rtol=1e-6)
    assert not np.allclose(theta, random_projections(jax.random.key(1), D, L))
    assert random_projections(jax.random.PRNGKey(0), D, L).shape == (D, L)  # raw uint32 key


def test_one_dimension_is_exact_wasserstein(enable_x64, rng):
    x, y = rng.normal(size=(N, 1)), rng.normal(size=(5, 1)) * 2.0
    a, b = rng.uniform(0.2, 1.0, N), rng.uniform(0.2, 1.0, 5)
    a, b = a / a.sum(), b / b.sum()
    both = jax.jit(
        lambda *args: [
            sliced_wasserstein(*args, n_projections=3, key=KEY, p=p) for p in (1, 2, 1.5)
        ]
    )
    w1, w2, w15 = both(x, y, a, b)
    np.testing.assert_allclose(w1, scipy.stats.wasserstein_distance(x[:, 0], y[:, 0], a, b), F64)
    np.testing.assert_allclose(w2, np.sqrt(pot.wasserstein_1d(x[:, 0], y[:, 0], a, b, p=2)), F64)
    ref15 = pot.wasserstein_1d(x[:, 0], y[:, 0], a, b, p=1.5) ** (1 / 1.5)
    np.testing.assert_allclose(w15, ref15, F64)


def test_translation_closed_form(enable_x64, rng):
    # the projected translate is the translate of the projection: W_2^2 = <theta, t>^2 exactly
    x, _, a, _ = _clouds(rng)
    t = np.array([1.0, -2.0, 0.5])
    value, (gx, gy, _, _) = sw_grad(x, x + t, a, a, 2)
    np.testing.assert_allclose(value, np.sqrt(np.mean((t @ _theta()) ** 2)), rtol=F64)
    # moving both clouds together changes nothing
    np.testing.assert_allclose(np.sum(gx, 0) + np.sum(gy, 0), 0.0, atol=1e-12)


def test_gradients_match_finite_differences(enable_x64, rng):
    x, y, a, b = _clouds(rng)
    h = 1e-6
    for p in (1, 2):
        _, grads = sw_grad(x, y, a, b, p)
        dx, dy = rng.normal(size=x.shape), rng.normal(size=y.shape)
        da, db = rng.normal(size=N), rng.normal(size=N)
        da, db = da - da.mean(), db - db.mean()  # tangent to the simplex
        plus = sw_grad(x + h * dx, y + h * dy, a + h * da, b + h * db, p)[0]
        minus = sw_grad(x - h * dx, y - h * dy, a - h * da, b - h * db, p)[0]
        expected = sum(np.sum(g * d) for g, d in zip(grads, (dx, dy, da, db), strict=True))
        np.testing.assert_allclose(expected, (plus - minus) / (2 * h), rtol=FD)


def test_gradients_finite_at_equal_inputs_and_ties(enable_x64, rng):
    x, y, a, b = _clouds(rng)
    for p in (1, 2):
        value, grads = sw_grad(x, x, a, a, p)
        assert float(value) == 0.0
        for g in grads:
            assert np.all(np.asarray(g) == 0.0), p  # finite: the minimal-norm subgradient
        tied = np.repeat(x[:1], N, axis=0)  # every point equal: all projections tie
        value, grads = sw_grad(tied, y, a, b, p)
        assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)
        value, grads = sw_grad(tied, tied, a, b, p)  # two equal Diracs, different weights
        assert float(value) == 0.0 and all(np.all(np.isfinite(g)) for g in grads)


def test_zero_weight_points_are_never_read_and_nan_propagates(enable_x64, rng):
    x, y, a, b = _clouds(rng)
    a_pad = a.copy()
    a_pad[[1, 4]] = 0.0
    a_pad /= a_pad.sum()
    ref_value, ref_grads = sw_grad(x, y, a_pad, b, 2)
    for junk in (np.nan, np.inf, 1e30, -1e30):
        xj = x.copy()
        xj[[1, 4]] = junk
        value, grads = sw_grad(xj, y, a_pad, b, 2)
        assert float(value) == float(ref_value), junk
        assert np.all(np.asarray(grads[0])[[1, 4]] == 0.0)
        for g, r in zip(grads, ref_grads, strict=True):
            np.testing.assert_array_equal(g, r)
    # NaN in a real point: NaN value and gradient
    xn = x.copy()
    xn[2, 0] = np.nan
    value, grads = sw_grad(xn, y, a, b, 2)
    assert np.isnan(value) and np.any(np.isnan(grads[0]))


def test_jit_vmap_keys_and_traced_bad_weights(rng):
    xs, ys, aa, bb = (
        np.stack(t) for t in zip(*[_clouds(rng, np.float32) for _ in range(3)], strict=True)
    )
    aa[2] *= 2.0  # traced bad weights (not summing to 1): NaN for that problem only
    keys = jax.random.split(jax.random.key(3), 3)
    fn = lambda x, y, a, b, k: sliced_wasserstein(x, y, a, b, n_projections=L, key=k)
    batched = jax.jit(jax.vmap(fn))(xs, ys, aa, bb, keys)
    assert np.isnan(batched[2]) and np.all(np.isfinite(batched[:2]))
    for i in range(2):
        single = fn(xs[i], ys[i], aa[i], bb[i], keys[i])
        np.testing.assert_allclose(batched[i], single, rtol=1e-5)
    # another key, another estimate
    assert float(fn(xs[0], ys[0], aa[0], bb[0], keys[1])) != float(batched[0])


def test_low_precision_runs_in_float32(rng):
    x, y, a, b = _clouds(rng, np.float32)
    ref = sliced_wasserstein(x, y, a, b, n_projections=L, key=KEY)
    out = sliced_wasserstein(x.astype(jnp.bfloat16), y.astype(jnp.bfloat16), n_projections=L,
                             key=KEY)  # fmt: skip
    assert out.dtype == jnp.bfloat16
    uniform = sliced_wasserstein(x, y, n_projections=L, key=KEY)
    np.testing.assert_allclose(np.float32(out), uniform, rtol=2e-2)
    assert ref.dtype == jnp.float32 and float(ref) != float(uniform)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((np.ones(3), np.ones((4, 2))), {}, "`x` and `y` must be 2-D"),
        ((np.ones((3, 2)), np.ones((4, 3))), {}, "same feature size d"),
        ((np.ones((0, 2)), np.ones((4, 2))), {}, "must be non-empty"),
        ((np.ones((3, 0)), np.ones((4, 0))), {}, "at least one feature"),
        ((np.ones((3, 2)) * 1j, np.ones((4, 2))), {}, "`x` must be real"),
        ((np.ones((3, 2)), np.ones((4, 2)), np.ones(4) / 4), {}, "`a` must have shape"),
        ((np.ones((3, 2)), np.ones((4, 2)), np.ones(3)), {}, "`a` must sum to 1"),
        ((np.ones((3, 2)), np.ones((4, 2)), None, np.ones(4) / 2), {}, "`b` must sum to 1"),
        ((np.ones((3, 2)), np.ones((4, 2)), np.array([1.5, -0.5, 0])), {}, "non-negative"),
        ((np.ones((3, 2)), np.ones((4, 2)), np.array([np.nan, 0.5, 0.5])), {}, "finite"),
        ((np.ones((3, 2)), np.ones((4, 2))), {"n_projections": 0}, "`n_projections` must be"),
        ((np.ones((3, 2)), np.ones((4, 2))), {"n_projections": 2.0}, "`n_projections` must"),
        ((np.ones((3, 2)), np.ones((4, 2))), {"key": None}, "`key` must be a jax.random key"),
        ((np.ones((3, 2)), np.ones((4, 2))), {"key": 0}, "`key` must be a jax.random key"),
        ((np.ones((3, 2)), np.ones((4, 2))), {"p": 0.5}, "`p` must be a finite number >= 1"),
        ((np.ones((3, 2)), np.ones((4, 2))), {"p": np.array([1, 2])}, "`p` must be a Python"),
        ((np.ones((3, 2)), np.ones((4, 2))), {"p": jnp.asarray(2.0)}, "`p` must be a Python"),
        ((np.ones((3, 2)), np.ones((4, 2))), {"p": True}, "`p` must be a Python"),
    ],
)
def test_bad_input_raises(args, kwargs, match):
    kw = {"n_projections": 4, "key": KEY} | kwargs
    with pytest.raises(ValueError, match=match):
        sliced_wasserstein(*args, **kw)


def test_bad_input_raises_under_jit():
    x, y = np.ones((3, 2)), np.ones((4, 2))
    with pytest.raises(ValueError, match="`x` and `y` must have the same feature size"):
        jax.jit(lambda x: sliced_wasserstein(x, np.ones((4, 3)), n_projections=4, key=KEY))(x)
    with pytest.raises(ValueError, match=r"`key` must be a single jax\.random key"):
        jax.jit(lambda k: sliced_wasserstein(x, y, n_projections=4, key=k))(
            jax.random.split(KEY, 2)
        )
    with pytest.raises(ValueError, match="`a` must have shape"):
        jax.jit(lambda a: sliced_wasserstein(x, y, a, n_projections=4, key=KEY))(np.ones(4))
