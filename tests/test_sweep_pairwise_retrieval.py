"""Bad-input sweep for alignment.pairwise and alignment.retrieval_metrics (docs/conventions.md).

Each case runs eagerly, under ``jit`` and under ``vmap``; ``tests/sweep.py`` counts the checks.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import alignment as al
from tests.sweep import (
    POSITIVE_SCALAR_CASES,
    SHAPE_SCALAR_CASES,
    all_nan,
    any_nan,
    finite,
    garbage_values,
    raises,
    same,
)

PW = "pairwise"
RM = "retrieval_metrics"
MODES = ["eager", "jit", "vmap"]

# ----------------------------------------------------------------------------------------------
# pairwise: one module-level fn per case family, so every call reuses the compiled core.

N, T, D = 5, 4, 2
_X = np.asarray(np.random.default_rng(0).normal(size=(N, T, D)), np.float32)
_LEN = np.array([4, 2, 3, 1, 4], np.int32)


def _div(a, b):
    (x, tx), (y, ty) = a, b
    return al.soft_dtw_divergence(x, y, gamma=0.5, lengths=(tx, ty))


def _sdtw(x, y):
    return al.soft_dtw(al.squared_euclidean(x, y), gamma=0.5)


def _div_gamma(gamma):
    def fn(a, b):
        return al.soft_dtw_divergence(a, b, gamma=gamma)

    return fn


def _in_mode(mode, fn, *args):
    """``fn(*args)`` eagerly, under jit, or under vmap over a batch of two copies of ``args``."""
    if mode == "eager":
        return fn(*args)
    if mode == "jit":
        return jax.jit(fn)(*args)
    stacked = jax.tree.map(lambda leaf: jnp.stack([leaf, leaf]), args)
    return jax.vmap(fn)(*stacked)


@functools.cache
def _compiled(mode, fn, block_size=2, symmetric=None):
    """``pairwise(fn, X, block_size=...)`` in ``mode``; vmap returns the first problem's matrix.

    Cached, so that every case of a family reuses one compiled function per shape.
    """

    def call(X):
        return al.pairwise(fn, X, block_size=block_size, symmetric=symmetric)

    if mode == "eager":
        return call
    if mode == "jit":
        return jax.jit(call)
    batched = jax.jit(jax.vmap(call))
    return lambda X: jax.tree.map(lambda leaf: leaf[0], batched(jax.tree.map(_twice, X)))


def _twice(leaf):
    return jnp.stack([leaf, leaf])


def _pw(mode, xs, ys=None, **kwargs):
    return _in_mode(mode, lambda xs, ys: al.pairwise(_sdtw, xs, ys, block_size=2, **kwargs), xs, ys)


PAIRWISE_BAD = [
    ("xs none", lambda: (None, None), {}, "xs"),
    ("xs empty", lambda: (_X[:0], None), {}, "xs"),
    ("ys empty", lambda: (_X, _X[:0]), {}, "ys"),
    ("xs leaves disagree", lambda: ((_X, _LEN[:3]), None), {}, "xs"),
    ("ys leaves disagree", lambda: (_X, (_X, _LEN[:3])), {}, "ys"),
    ("xs scalar leaf", lambda: ((_X, np.float32(1.0)), None), {}, "xs"),
    ("xs empty pytree", lambda: ((), None), {}, "xs"),
    ("block 0", lambda: (_X, None), {"block_size": 0}, "block_size"),
    ("block -1", lambda: (_X, None), {"block_size": -1}, "block_size"),
    ("block 1.5", lambda: (_X, None), {"block_size": 1.5}, "block_size"),
    ("block True", lambda: (_X, None), {"block_size": True}, "block_size"),
    ("block None", lambda: (_X, None), {"block_size": None}, "block_size"),
    ("block array", lambda: (_X, None), {"block_size": np.array(2)}, "block_size"),
    ("symmetric with ys", lambda: (_X, _X), {"symmetric": True}, "symmetric"),
    ("symmetric str", lambda: (_X, None), {"symmetric": "yes"}, "symmetric"),
    ("checkpoint int", lambda: (_X, None), {"checkpoint": 1}, "checkpoint"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "label, make, kwargs, match", PAIRWISE_BAD, ids=[c[0] for c in PAIRWISE_BAD]
)
def test_pairwise_static_problems_raise(mode, label, make, kwargs, match):
    xs, ys = make()
    if mode == "eager" or xs is None or (isinstance(xs, tuple) and not xs):
        # None / empty pytrees cannot be traced: they fail before any transformation.
        raises(PW, lambda: al.pairwise(_sdtw, xs, ys, **{"block_size": 2, **kwargs}), match=match)
        return
    if mode == "jit":
        raises(
            PW,
            lambda: jax.jit(
                lambda xs, ys: al.pairwise(_sdtw, xs, ys, **{"block_size": 2, **kwargs})
            )(xs, ys),
            match=match,
        )
        return
    stacked = jax.tree.map(lambda leaf: np.stack([leaf, leaf]), (xs, ys))
    raises(
        PW,
        lambda: jax.vmap(lambda xs, ys: al.pairwise(_sdtw, xs, ys, **{"block_size": 2, **kwargs}))(
            *stacked
        ),
        match=match,
    )


@pytest.mark.parametrize("fn", [None, 1.0, "soft_dtw"])
def test_pairwise_non_callable_fn_raises(fn):
    raises(PW, lambda: al.pairwise(fn, _X), match="fn")
    raises(PW, lambda: jax.jit(lambda X: al.pairwise(fn, X))(_X), match="fn")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_pairwise_nan_in_data_propagates(mode, value):
    X = _X.copy()
    X[1, 0, 0] = value
    out = np.asarray(_compiled(mode, _sdtw)(X))
    # The bad item's row and column are not finite (NaN stays NaN; inf gives fn's inf).
    assert not np.any(np.isfinite(out[1])) and not np.any(np.isfinite(out[:, 1]))
    if np.isnan(value):
        any_nan(PW, lambda: out)
    keep = [0, 2, 3, 4]
    finite(PW, lambda: out[np.ix_(keep, keep)])


@functools.cache
def _padding_reference():
    return al.pairwise(_div, (_X, _LEN), block_size=2)


_PADDED_GRAD = jax.jit(
    jax.grad(lambda Z: al.pairwise(_div, (Z, jnp.asarray(_LEN)), block_size=2).sum())
)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("label, value", garbage_values())
def test_pairwise_garbage_in_padding_changes_nothing(mode, label, value):
    X = _X.copy()
    for i, length in enumerate(_LEN):
        X[i, length:] = value
    same(PW, lambda: _compiled(mode, _div)((X, _LEN)), _padding_reference(), atol=1e-5)
    if mode == "jit":
        grad = finite(PW, lambda: _PADDED_GRAD(jnp.asarray(X)))
        for i, length in enumerate(_LEN):
            assert np.all(np.asarray(grad)[i, length:] == 0)


_DIV_GAMMA_JIT = jax.jit(lambda g, X: al.pairwise(_div_gamma(g), X))
_DIV_GAMMA_VMAP = jax.jit(jax.vmap(lambda g, X: al.pairwise(_div_gamma(g), X), in_axes=(0, None)))


@pytest.mark.parametrize("label, value, eager, traced", POSITIVE_SCALAR_CASES)
def test_pairwise_bad_closed_over_hyperparameter_follows_fn(label, value, eager, traced):
    X = _X[:3]
    # Eagerly, fn's own validation raises through pairwise.
    raises(PW, lambda: al.pairwise(_div_gamma(value), X), match="gamma")
    # Traced (gamma an argument of jit / vmap): NaN, never a plausible number.
    all_nan(PW, lambda: _DIV_GAMMA_JIT(jnp.float32(value), X))
    all_nan(PW, lambda: _DIV_GAMMA_VMAP(jnp.full(2, value, jnp.float32), X))


@pytest.mark.parametrize("label, value", SHAPE_SCALAR_CASES)
def test_pairwise_array_valued_closed_over_hyperparameter_raises(label, value):
    raises(PW, lambda: al.pairwise(_div_gamma(value), _X[:2]), match="gamma")
    raises(PW, lambda: jax.jit(lambda X: al.pairwise(_div_gamma(value), X))(_X[:2]), match="gamma")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "dtype", [np.int32, np.bool_, np.float16, jnp.bfloat16, np.float32], ids=str
)
def test_pairwise_dtypes(mode, dtype):
    X = np.asarray(_X > 0 if dtype == np.bool_ else np.round(3 * _X)).astype(dtype)
    out = finite(PW, lambda: _compiled(mode, _sdtw)(X))
    assert out.dtype == _sdtw(X[0], X[1]).dtype  # pairwise keeps fn's output dtype


@pytest.mark.parametrize("mode", MODES)
def test_pairwise_complex_leaves_raise_from_fn(mode):
    raises(PW, lambda: _pw(mode, _X.astype(np.complex64)), match="complex")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scale", [1e-20, 1e15])
def test_pairwise_huge_and_tiny_magnitudes(mode, scale):
    X = (_X * scale).astype(np.float32)
    out = np.asarray(_compiled(mode, _sdtw)(X))
    finite(PW, lambda: out)
    np.testing.assert_array_equal(out, out.T)


_DIV_05 = _div_gamma(0.5)
_DIV_TINY = _div_gamma(1e-4)


@pytest.mark.parametrize("symmetric", [None, False])
@pytest.mark.parametrize("fn", [_DIV_05, _DIV_TINY], ids=["gamma=0.5", "gamma=1e-4"])
def test_pairwise_gradient_finite_at_identical_items(symmetric, fn):
    X = jnp.asarray(np.repeat(_X[:1], 3, axis=0))  # every pair is (x, x): divergence 0
    grad = jax.jit(jax.grad(lambda X: al.pairwise(fn, X, block_size=2, symmetric=symmetric).sum()))
    finite(PW, lambda: grad(X))


@jax.jit
def _sdtw_all_pairs(X):
    """Reference without blocks: every pair ``(i, j)`` in one flat vmap."""
    n = X.shape[0]
    i, j = jnp.divmod(jnp.arange(n * n), n)
    return jax.vmap(lambda i, j: _sdtw(X[i], X[j]))(i, j).reshape(n, n)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_pairwise_block_sizes_and_tiny_sets(mode, n):
    X = _X[:n]
    ref = _sdtw_all_pairs(X)
    for block in (1, 2, 4):
        same(PW, lambda block=block: _compiled(mode, _sdtw, block)(X), ref, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# retrieval_metrics

B, K = 6, 3
_ZA = np.asarray(np.random.default_rng(1).normal(size=(B, K)), np.float32)
_ZB = (_ZA + np.random.default_rng(2).normal(size=(B, K))).astype(np.float32)


def _rm(mode, za, zb, **kwargs):
    kwargs = {"ks": (1, 2), **kwargs}
    return _in_mode(mode, lambda a, b: al.retrieval_metrics(a, b, **kwargs), za, zb)


RETRIEVAL_BAD = [
    ("b mismatch", _ZA, _ZB[:4], {}, "zb"),
    ("d mismatch", _ZA, _ZB[:, :2], {}, "zb"),
    ("rank 1", _ZA[0], _ZB[0], {}, "za"),
    ("rank 3", _ZA[None], _ZB[None], {}, "za"),
    ("empty b", _ZA[:0], _ZB[:0], {}, "non-empty"),
    ("empty d", _ZA[:, :0], _ZB[:, :0], {}, "non-empty"),
    ("complex za", _ZA.astype(np.complex64), _ZB, {}, "complex"),
    ("complex zb", _ZA, _ZB.astype(np.complex64), {}, "complex"),
    ("ks > b", _ZA, _ZB, {"ks": (1, B + 1)}, "ks"),
    ("ks 0", _ZA, _ZB, {"ks": (0,)}, "ks"),
    ("ks negative", _ZA, _ZB, {"ks": (-1,)}, "ks"),
    ("ks float", _ZA, _ZB, {"ks": (1.5,)}, "ks"),
    ("ks bool", _ZA, _ZB, {"ks": (True,)}, "ks"),
    ("ks empty", _ZA, _ZB, {"ks": ()}, "ks"),
    ("ks none", _ZA, _ZB, {"ks": None}, "ks"),
    ("ks array", _ZA, _ZB, {"ks": np.array([1, 2])}, "ks"),
    ("ks string", _ZA, _ZB, {"ks": "1"}, "ks"),
    ("similarity", _ZA, _ZB, {"similarity": "l2"}, "similarity"),
    ("similarity none", _ZA, _ZB, {"similarity": None}, "similarity"),
    ("ids short", _ZA, _ZB, {"ids": np.arange(B - 1)}, "ids"),
    ("ids float", _ZA, _ZB, {"ids": np.arange(B, dtype=np.float32)}, "ids"),
    ("ids bool", _ZA, _ZB, {"ids": np.ones(B, bool)}, "ids"),
    ("ids 2-D", _ZA, _ZB, {"ids": np.zeros((B, B), np.int32)}, "ids"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "label, za, zb, kwargs, match", RETRIEVAL_BAD, ids=[c[0] for c in RETRIEVAL_BAD]
)
def test_retrieval_static_problems_raise(mode, label, za, zb, kwargs, match):
    raises(RM, lambda: _rm(mode, za, zb, **kwargs), match=match)


@pytest.mark.parametrize("which", ["za", "zb"])
def test_retrieval_none_raises(which):
    args = {"za": _ZA, "zb": _ZB, which: None}
    raises(RM, lambda: al.retrieval_metrics(**args, ks=(1,)), match=which)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("similarity", ["cosine", "dot"])
@pytest.mark.parametrize("label, value", [("nan", np.nan), ("inf", np.inf), ("-inf", -np.inf)])
@pytest.mark.parametrize("which", ["za", "zb"])
def test_retrieval_bad_values_give_nan(mode, similarity, label, value, which):
    za, zb = _ZA.copy(), _ZB.copy()
    (za if which == "za" else zb)[3, 0] = value
    all_nan(RM, lambda: _rm(mode, za, zb, similarity=similarity))


def test_retrieval_vmap_nan_stays_in_its_problem():
    za = np.stack([_ZA, _ZA])
    za[1, 0, 0] = np.nan
    out = jax.vmap(lambda a, b: al.retrieval_metrics(a, b, ks=(1,)))(za, np.stack([_ZB, _ZB]))
    all_nan(RM, lambda: [leaf[1] for leaf in out])
    finite(RM, lambda: [leaf[0] for leaf in out])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "dtype", [np.int32, np.bool_, np.float16, jnp.bfloat16, np.float64], ids=str
)
def test_retrieval_dtypes(mode, dtype):
    za = (_ZA > 0) if dtype == np.bool_ else np.round(3 * _ZA)
    zb = (_ZB > 0) if dtype == np.bool_ else np.round(3 * _ZB)
    out = finite(RM, lambda: _rm(mode, za.astype(dtype), zb.astype(dtype)))
    assert all(jnp.issubdtype(leaf.dtype, jnp.floating) for leaf in out)
    if dtype in (np.float16, jnp.bfloat16):
        assert all(leaf.dtype == jnp.float32 for leaf in out)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1e20, 1e30])
def test_retrieval_cosine_huge_and_tiny_magnitudes(mode, scale):
    ref = al.retrieval_metrics(_ZA, _ZB, ks=(1, 2))

    def call():
        out = _rm(mode, (_ZA * scale).astype(np.float32), _ZB)
        return out if mode != "vmap" else [leaf[0] for leaf in out]

    same(RM, call, ref)


@pytest.mark.parametrize("mode", MODES)
def test_retrieval_dot_overflow_is_nan(mode):
    za = (_ZA * 1e30).astype(np.float32)
    all_nan(RM, lambda: _rm(mode, za, za * 10, similarity="dot"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("similarity", ["cosine", "dot"])
@pytest.mark.parametrize("label", ["zeros", "ones"])
def test_retrieval_degenerate_embeddings_rank_last(mode, similarity, label):
    # All similarities tie (zero rows: 0 to everything; equal rows: the same value).
    za = np.zeros((B, K), np.float32) if label == "zeros" else np.ones((B, K), np.float32)
    zb = _ZB if label == "zeros" else za
    out = finite(RM, lambda: _rm(mode, za, zb, ks=(1, B), similarity=similarity))
    median = np.asarray(out.median_rank_a_to_b).reshape(-1)
    np.testing.assert_array_equal(median, B)  # every tie counted against the true match


@pytest.mark.parametrize("mode", MODES)
def test_retrieval_under_grad_is_zero_not_nan(mode):
    def loss(za):
        out = al.retrieval_metrics(za, _ZB, ks=(1, 2))
        return out.mean_rank_a_to_b + out.recall_a_to_b.sum()

    f = {"eager": jax.grad(loss), "jit": jax.jit(jax.grad(loss))}.get(mode)
    if f is None:
        grads = jax.vmap(jax.grad(loss))(np.stack([_ZA, _ZA]))
    else:
        grads = f(jnp.asarray(_ZA))
    g = finite(RM, lambda: grads)
    assert np.all(np.asarray(g) == 0)
