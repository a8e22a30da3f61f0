"""Tests for alignment.pairwise: blocked all-pairs matrices (cdist) over sets of items."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tslearn.metrics import cdist_dtw, cdist_soft_dtw

import alignment as al


def _sdtw(gamma):
    def fn(x, y):
        return al.soft_dtw(al.squared_euclidean(x, y), gamma=gamma)

    return fn


def _dtw(x, y):
    return al.dtw(al.squared_euclidean(x, y))


def _padded_sdtw_div(a, b):
    (x, tx), (y, ty) = a, b
    return al.soft_dtw_divergence(x, y, gamma=0.3, lengths=(tx, ty))


def _loop(fn, xs, ys, n, m):
    item = lambda tree, i: jax.tree.map(lambda leaf: leaf[i], tree)
    return np.array([[float(fn(item(xs, i), item(ys, j))) for j in range(m)] for i in range(n)])


SDTW = _sdtw(0.5)


@jax.jit
def _all_pairs(X, Y):
    """Reference without blocks or mirroring: every pair ``(i, j)`` in one flat vmap."""
    n, m = X.shape[0], Y.shape[0]
    i, j = jnp.divmod(jnp.arange(n * m), m)
    return jax.vmap(lambda i, j: SDTW(X[i], Y[j]))(i, j).reshape(n, m)


_RNG = np.random.default_rng(7)
_X7 = jnp.asarray(_RNG.normal(size=(7, 5, 2)), jnp.float32)
_Y5 = jnp.asarray(_RNG.normal(size=(5, 4, 2)), jnp.float32)


@functools.cache
def _double_loops():
    """Python double loops over (X7, Y5) and (X7, X7), computed once for the module."""
    return _loop(SDTW, _X7, _Y5, 7, 5), _loop(SDTW, _X7, _X7, 7, 7)


@pytest.mark.parametrize("gamma", [0.1, 1.0])
def test_soft_dtw_matches_tslearn_cdist_soft_dtw(rng, enable_x64, gamma):
    X = rng.normal(size=(5, 6, 2))
    Y = rng.normal(size=(3, 4, 2))
    got = al.pairwise(_sdtw(gamma), jnp.asarray(X), jnp.asarray(Y), block_size=4)
    np.testing.assert_allclose(got, cdist_soft_dtw(X, Y, gamma=gamma), rtol=1e-9, atol=1e-9)
    got_sym = al.pairwise(_sdtw(gamma), jnp.asarray(X), block_size=4)
    np.testing.assert_allclose(got_sym, cdist_soft_dtw(X, gamma=gamma), rtol=1e-9, atol=1e-9)


def test_dtw_matches_tslearn_cdist_dtw_squared(rng, enable_x64):
    X = rng.normal(size=(5, 6, 3))
    Y = rng.normal(size=(3, 7, 3))
    got = al.pairwise(_dtw, jnp.asarray(X), jnp.asarray(Y), block_size=2)
    np.testing.assert_allclose(got, cdist_dtw(X, Y) ** 2, rtol=1e-9, atol=1e-9)
    got_sym = al.pairwise(_dtw, jnp.asarray(X), block_size=3)
    np.testing.assert_allclose(got_sym, cdist_dtw(X) ** 2, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("block_size", [1, 3, 4, 64])
def test_block_sizes_that_do_not_divide_n_match_double_loop(block_size):
    want, want_sym = _double_loops()
    got = al.pairwise(SDTW, _X7, _Y5, block_size=block_size)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    got_sym = al.pairwise(SDTW, _X7, block_size=block_size)
    np.testing.assert_allclose(got_sym, want_sym, rtol=1e-5, atol=1e-5)
    assert np.array_equal(np.asarray(got_sym), np.asarray(got_sym).T)


def test_symmetric_equals_non_symmetric(rng):
    X = jnp.asarray(rng.normal(size=(9, 6, 2)), jnp.float32)
    sym = al.pairwise(SDTW, X, block_size=4)
    full = al.pairwise(SDTW, X, block_size=4, symmetric=False)
    explicit = al.pairwise(SDTW, X, X, block_size=4)
    np.testing.assert_allclose(sym, full, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(full, explicit)


def test_symmetric_computes_only_upper_blocks():
    def fn(x, y):
        return x[0] - y[0]

    # A non-symmetric fn shows which triangle was computed: the lower one is the mirror.
    X = jnp.arange(5.0)[:, None]
    got = np.asarray(al.pairwise(fn, X, block_size=2))
    diff = np.arange(5.0)[:, None] - np.arange(5.0)[None, :]
    upper = np.triu(np.ones((5, 5), bool))
    np.testing.assert_array_equal(got[upper], diff[upper])
    np.testing.assert_array_equal(got[~upper], diff.T[~upper])
    full = np.asarray(al.pairwise(fn, X, block_size=2, symmetric=False))
    np.testing.assert_array_equal(full, diff)


def test_symmetric_does_half_the_work():
    """The symmetric jaxpr maps over nb (nb + 1) / 2 block pairs, the full one over nb^2."""
    X = jnp.zeros((8, 3))

    def lengths_of_map(symmetric):
        jaxpr = jax.make_jaxpr(
            lambda X: al.pairwise(lambda a, b: a @ b, X, block_size=2, symmetric=symmetric)
        )(X)
        return [e.params["length"] for e in _eqns(jaxpr.jaxpr) if e.primitive.name == "scan"]

    assert lengths_of_map(None) == [10]
    assert lengths_of_map(False) == [16]


def _eqns(jaxpr):
    for e in jaxpr.eqns:
        yield e
        for value in e.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                sub = getattr(sub, "jaxpr", sub)
                if hasattr(sub, "eqns"):
                    yield from _eqns(sub)


def test_padded_sequences_with_lengths_ignore_garbage(rng):
    n, t, d = 4, 5, 2
    lengths = np.array([5, 2, 5, 1])
    X = rng.normal(size=(n, t, d)).astype(np.float32)
    want = np.array(
        [
            [
                float(al.soft_dtw_divergence(X[i, : lengths[i]], X[j, : lengths[j]], gamma=0.3))
                for j in range(n)
            ]
            for i in range(n)
        ]
    )
    L = jnp.asarray(lengths)
    grad_fn = jax.jit(jax.grad(lambda Z: al.pairwise(_padded_sdtw_div, (Z, L), block_size=3).sum()))
    for garbage in (np.nan, np.inf, -np.inf, 1e30):
        Xg = X.copy()
        for i, length in enumerate(lengths):
            Xg[i, length:] = garbage
        got = al.pairwise(_padded_sdtw_div, (jnp.asarray(Xg), L), block_size=3)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        grad = np.asarray(grad_fn(jnp.asarray(Xg)))
        assert np.all(np.isfinite(grad))
        for i, length in enumerate(lengths):
            assert np.all(grad[i, length:] == 0)


def test_under_jit_and_vmap(rng):
    X = jnp.asarray(rng.normal(size=(5, 4, 2)), jnp.float32)
    Y = jnp.asarray(rng.normal(size=(3, 4, 2)), jnp.float32)
    eager = al.pairwise(SDTW, X, Y, block_size=4)
    jitted = jax.jit(lambda X, Y: al.pairwise(SDTW, X, Y, block_size=4))(X, Y)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6)
    batched = jax.vmap(lambda X: al.pairwise(SDTW, X, Y, block_size=4))(jnp.stack([X, 2 * X]))
    np.testing.assert_allclose(batched[0], eager, rtol=1e-6)
    np.testing.assert_allclose(batched[1], al.pairwise(SDTW, 2 * X, Y, block_size=4), rtol=1e-6)


@pytest.mark.parametrize("symmetric, checkpoint", [(None, True), (None, False), (False, True)])
def test_gradient_matches_unblocked_reference(rng, enable_x64, symmetric, checkpoint):
    X = jnp.asarray(rng.normal(size=(5, 4, 2)))
    W = jnp.asarray(rng.normal(size=(5, 5)))

    def blocked(X):
        D = al.pairwise(SDTW, X, block_size=2, symmetric=symmetric, checkpoint=checkpoint)
        return jnp.sum(W * D)

    def reference(X):
        return jnp.sum(W * _all_pairs(X, X))

    np.testing.assert_allclose(jax.grad(blocked)(X), jax.grad(reference)(X), rtol=1e-9, atol=1e-9)


def test_gradient_through_closed_over_hyperparameter(rng, enable_x64):
    X = jnp.asarray(rng.normal(size=(4, 5, 2)))

    def blocked(gamma):
        return al.pairwise(_sdtw(gamma), X, block_size=3).sum()

    def reference(gamma):
        i, j = jnp.divmod(jnp.arange(16), 4)
        return jnp.sum(jax.vmap(lambda i, j: _sdtw(gamma)(X[i], X[j]))(i, j))

    np.testing.assert_allclose(jax.grad(blocked)(0.7), jax.grad(reference)(0.7), rtol=1e-9)


def test_sinkhorn_divergence_and_gaussian_w2(rng):
    P = jnp.asarray(rng.normal(size=(3, 5, 2)), jnp.float32)
    A = jnp.asarray(rng.uniform(0.5, 1.0, size=(3, 5)), jnp.float32)
    A = A / A.sum(1, keepdims=True)

    def sdiv(a, b):
        return al.sinkhorn_divergence(a[0], b[0], a[1], b[1], epsilon=0.5)

    got = al.pairwise(sdiv, (P, A), block_size=2)
    want = _loop(sdiv, (P, A), (P, A), 3, 3)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

    means = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
    root = rng.normal(size=(5, 3, 3))
    covs = jnp.asarray(root @ root.transpose(0, 2, 1) + 0.1 * np.eye(3), jnp.float32)
    w2 = al.pairwise(lambda a, b: al.gaussian_w2(*a, *b), (means, covs), (means[:3], covs[:3]))
    ref = al.gaussian_w2_pairwise(means, covs, means[:3], covs[:3])
    np.testing.assert_allclose(w2, ref, rtol=1e-4, atol=1e-4)


def test_pytree_items_and_outputs():
    xs = {"a": jnp.arange(4.0), "b": jnp.arange(8.0).reshape(4, 2)}
    ys = (jnp.arange(3.0), jnp.ones((3, 2)))

    def fn(x, y):
        return {"sum": x["a"] + y[0], "vec": x["b"] * y[0]}

    out = al.pairwise(fn, xs, ys, block_size=2)
    assert out["sum"].shape == (4, 3) and out["vec"].shape == (4, 3, 2)
    np.testing.assert_array_equal(out["sum"], np.arange(4.0)[:, None] + np.arange(3.0)[None])
    np.testing.assert_array_equal(
        out["vec"], np.arange(8.0).reshape(4, 1, 2) * np.arange(3.0)[None, :, None]
    )


def test_output_dtype_follows_fn():
    X = jnp.ones((3, 2), jnp.bfloat16)
    assert al.pairwise(lambda a, b: a @ b, X).dtype == jnp.bfloat16
    assert al.pairwise(lambda a, b: (a @ b).astype(jnp.float32), X).dtype == jnp.float32


def test_unhashable_callable_still_works():
    class Fn:
        __hash__ = None

        def __call__(self, a, b):
            return jnp.sum((a - b) ** 2)

    X = jnp.arange(6.0).reshape(3, 2)
    np.testing.assert_allclose(al.pairwise(Fn(), X), 2 * (X[:, None, 0] - X[None, :, 0]) ** 2)


def test_eager_calls_hit_the_compile_cache():
    X = jnp.arange(6.0).reshape(3, 2)

    def fn(a, b):
        return jnp.sum(a * b)

    al.pairwise(fn, X)
    from alignment._src import pairwise as module

    before = module._core._cache_size()
    al.pairwise(fn, X + 1.0)
    assert module._core._cache_size() == before


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda f, X: al.pairwise(f, (X, jnp.ones(4))), "xs"),
        (lambda f, X: al.pairwise(f, X, (X, jnp.ones(4))), "ys"),
        (lambda f, X: al.pairwise(f, None), "xs"),
        (lambda f, X: al.pairwise(f, X[:0]), "xs"),
        (lambda f, X: al.pairwise(f, X, X[:0]), "ys"),
        (lambda f, X: al.pairwise(f, ()), "xs"),
        (lambda f, X: al.pairwise(f, (X, jnp.asarray(1.0))), "xs"),
        (lambda f, X: al.pairwise(f, X, block_size=0), "block_size"),
        (lambda f, X: al.pairwise(f, X, block_size=1.5), "block_size"),
        (lambda f, X: al.pairwise(f, X, block_size=True), "block_size"),
        (lambda f, X: al.pairwise(f, X, block_size=jnp.asarray(2)), "block_size"),
        (lambda f, X: al.pairwise(f, X, X, symmetric=True), "symmetric"),
        (lambda f, X: al.pairwise(f, X, symmetric="yes"), "symmetric"),
        (lambda f, X: al.pairwise(None, X), "fn"),
        (lambda f, X: al.pairwise(f, X, checkpoint=None), "checkpoint"),
    ],
)
def test_bad_input_raises_eagerly_and_under_jit(call, match):
    X = jnp.ones((3, 2))
    f = lambda a, b: jnp.sum(a * b)
    with pytest.raises(ValueError, match=match):
        call(f, X)
    with pytest.raises(ValueError, match=match):
        jax.jit(lambda X: call(f, X))(X)


def test_mismatched_leading_axes_message_names_shapes():
    with pytest.raises(ValueError, match=r"xs.*\(3, 2\).*\(4,\)"):
        al.pairwise(lambda a, b: 0.0, (jnp.ones((3, 2)), jnp.ones(4)))


def test_nan_item_propagates_to_its_row_and_column_only(rng):
    X = np.asarray(_X7, np.float32).copy()[:5]
    X[2, 1, 0] = np.nan
    D = np.asarray(al.pairwise(SDTW, jnp.asarray(X), block_size=3))
    assert np.all(np.isnan(D[2])) and np.all(np.isnan(D[:, 2]))
    keep = np.array([0, 1, 3, 4])
    assert np.all(np.isfinite(D[np.ix_(keep, keep)]))


def test_checkpoint_bounds_gradient_memory():
    """With checkpoint=True the backward pass stores no per-block soft-DTW tables."""
    X = jnp.zeros((32, 16, 2), jnp.float32)

    def temp_bytes(checkpoint):
        loss = lambda X: al.pairwise(SDTW, X, block_size=4, checkpoint=checkpoint).sum()
        compiled = jax.jit(jax.grad(loss)).lower(X).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    bounded, stored = temp_bytes(True), temp_bytes(False)
    # 36 block pairs x 16 pairs x (16 x 16) tables: storing them costs >= 36 * 16 * 256 * 4 bytes.
    assert stored - bounded > 36 * 16 * 256 * 4 / 2
    assert bounded < stored / 4
