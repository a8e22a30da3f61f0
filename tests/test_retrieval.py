"""Tests for alignment.retrieval_metrics: recall@k, median and mean rank of paired embeddings."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import top_k_accuracy_score

import alignment as al


def _sim(za, zb, similarity):
    za, zb = np.asarray(za, np.float64), np.asarray(zb, np.float64)
    if similarity == "cosine":
        za = za / np.linalg.norm(za, axis=1, keepdims=True)
        zb = zb / np.linalg.norm(zb, axis=1, keepdims=True)
    return za @ zb.T


def _brute_ranks(sim, ids=None):
    """Pessimistic 1-based ranks, one query at a time, by sorting (ties: matches last)."""
    b = sim.shape[0]
    ids = np.arange(b) if ids is None else np.asarray(ids)
    ranks = []
    for i in range(b):
        match = ids == ids[i]
        # Sort by decreasing similarity; among equal similarities put matches after the rest.
        order = np.lexsort((match, -sim[i]))
        ranks.append(1 + int(np.flatnonzero(match[order])[0]))
    return np.array(ranks)


def _reference(za, zb, ks, similarity="cosine", ids=None):
    sim = _sim(za, zb, similarity)
    out = []
    for s in (sim, sim.T):
        r = _brute_ranks(s, ids)
        out.append((np.array([np.mean(r <= k) for k in ks]), np.median(r), np.mean(r)))
    (ra, meda, meana), (rb, medb, meanb) = out
    return al.RetrievalOutput(ra, rb, meda, medb, meana, meanb)


def _assert_close(got, want, rtol=1e-6):
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g, np.float64), w, rtol=rtol, atol=1e-7)


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_recall_matches_sklearn_top_k_accuracy(rng, similarity):
    b, d = 40, 6
    za = rng.normal(size=(b, d)).astype(np.float32)
    zb = (za + 0.8 * rng.normal(size=(b, d))).astype(np.float32)
    ks = (1, 3, 5, 10)
    out = al.retrieval_metrics(za, zb, ks=ks, similarity=similarity)
    sim = _sim(za, zb, similarity)
    labels = np.arange(b)
    for direction, s in ((out.recall_a_to_b, sim), (out.recall_b_to_a, sim.T)):
        want = [top_k_accuracy_score(labels, s, k=k, labels=labels) for k in ks]
        np.testing.assert_allclose(direction, want, rtol=1e-6)


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
@pytest.mark.parametrize("b", [1, 2, 7, 30])
def test_matches_brute_force_argsort(rng, similarity, b):
    za = rng.normal(size=(b, 4)).astype(np.float32)
    zb = (za + rng.normal(size=(b, 4))).astype(np.float32)
    ks = tuple(k for k in (1, 2, 5, 10) if k <= b)
    out = al.retrieval_metrics(za, zb, ks=ks, similarity=similarity)
    _assert_close(out, _reference(za, zb, ks, similarity))
    assert isinstance(out, al.RetrievalOutput)
    assert out.recall_a_to_b.shape == (len(ks),) and out.median_rank_a_to_b.shape == ()


def test_median_rank_is_1_based_and_even_b_averages():
    za = jnp.eye(4)
    assert float(al.retrieval_metrics(za, za, ks=(1,)).median_rank_a_to_b) == 1.0
    zb = za[jnp.array([0, 1, 3, 2])]  # ranks 1, 1, 2, 2 (each wrong item is orthogonal: a tie)
    out = al.retrieval_metrics(za, zb, ks=(1,))
    # za[2] vs zb: [0, 0, 0, 1] -> its match zb[2] = e_3 ties the other zeros: rank 4.
    np.testing.assert_allclose(out.median_rank_a_to_b, np.median([1, 1, 4, 4]))
    np.testing.assert_allclose(out.mean_rank_a_to_b, 2.5)


def test_ties_are_pessimistic():
    b = 5
    z = jnp.ones((b, 3))
    out = al.retrieval_metrics(z, z, ks=(1, b - 1, b))
    np.testing.assert_array_equal(out.recall_a_to_b, [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(out.recall_b_to_a, [0.0, 0.0, 1.0])
    assert float(out.median_rank_a_to_b) == b and float(out.mean_rank_b_to_a) == b
    # Zero embeddings under cosine: similarity 0 to everything, the same worst rank.
    zero = al.retrieval_metrics(jnp.zeros((b, 3)), jnp.ones((b, 3)), ks=(1,))
    assert float(zero.median_rank_a_to_b) == b and float(zero.recall_a_to_b[0]) == 0.0


def test_partial_ties_against_brute_force(rng):
    # Integer-valued embeddings produce many exact ties in the dot product.
    za = rng.integers(-1, 2, size=(25, 3)).astype(np.float32)
    zb = rng.integers(-1, 2, size=(25, 3)).astype(np.float32)
    ks = (1, 5, 10)
    _assert_close(
        al.retrieval_metrics(za, zb, ks=ks, similarity="dot"), _reference(za, zb, ks, "dot")
    )


def test_ids_make_every_equal_id_a_match(rng):
    b = 20
    ids = rng.integers(0, 6, size=b)
    za = rng.normal(size=(b, 4)).astype(np.float32)
    zb = rng.normal(size=(b, 4)).astype(np.float32)
    ks = (1, 3, 5)
    out = al.retrieval_metrics(za, zb, ks=ks, ids=ids)
    _assert_close(out, _reference(za, zb, ks, ids=ids))
    # All-distinct ids are the default pairing.
    _assert_close(
        al.retrieval_metrics(za, zb, ks=ks, ids=np.arange(b)), al.retrieval_metrics(za, zb, ks=ks)
    )
    # One shared id: every item is a match, every rank is 1.
    same = al.retrieval_metrics(za, zb, ks=(1,), ids=np.zeros(b, np.int32))
    assert float(same.recall_a_to_b[0]) == 1.0 and float(same.mean_rank_b_to_a) == 1.0


def test_jit_and_vmap(rng):
    za = rng.normal(size=(3, 12, 4)).astype(np.float32)
    zb = (za + rng.normal(size=(3, 12, 4))).astype(np.float32)
    ids = rng.integers(0, 4, size=(3, 12))
    f = lambda a, b, i: al.retrieval_metrics(a, b, ks=(1, 5), ids=i)
    eager = [f(za[j], zb[j], ids[j]) for j in range(3)]
    jitted = jax.jit(f)(za[0], zb[0], ids[0])
    _assert_close(jitted, [np.asarray(v) for v in eager[0]])
    batched = jax.vmap(f)(za, zb, ids)
    for j in range(3):
        _assert_close([v[j] for v in batched], [np.asarray(v) for v in eager[j]])


def test_cosine_is_scale_invariant_even_at_huge_magnitudes(rng):
    za = rng.normal(size=(10, 3)).astype(np.float32)
    zb = (za + rng.normal(size=(10, 3))).astype(np.float32)
    ref = al.retrieval_metrics(za, zb, ks=(1, 5))
    for scale in (1e-30, 1e30):
        _assert_close(al.retrieval_metrics(za * scale, zb, ks=(1, 5)), [np.asarray(v) for v in ref])


@pytest.mark.parametrize("where", ["za", "zb"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_nan_or_inf_embedding_gives_nan_metrics(rng, where, value, similarity):
    za = rng.normal(size=(6, 3)).astype(np.float32)
    zb = rng.normal(size=(6, 3)).astype(np.float32)
    (za if where == "za" else zb)[2, 1] = value
    f = lambda a, b: al.retrieval_metrics(a, b, ks=(1, 2), similarity=similarity)
    for out in (f(za, zb), jax.jit(f)(za, zb)):
        for leaf in out:
            assert np.all(np.isnan(leaf)), out


def test_dot_overflow_gives_nan_not_a_plausible_rank(rng):
    za = (1e30 * rng.normal(size=(5, 3))).astype(np.float32)
    out = al.retrieval_metrics(za, za, ks=(1,), similarity="dot")
    assert all(np.all(np.isnan(leaf)) for leaf in out)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_computes_and_returns_float32(rng, dtype):
    za = rng.normal(size=(300, 4)).astype(np.float32)
    zb = (za + 0.5 * rng.normal(size=(300, 4))).astype(np.float32)
    za_h, zb_h = jnp.asarray(za, dtype), jnp.asarray(zb, dtype)
    out = al.retrieval_metrics(za_h, zb_h, ks=(1, 10))
    assert all(leaf.dtype == jnp.float32 for leaf in out)
    ref = al.retrieval_metrics(za_h.astype(jnp.float32), zb_h.astype(jnp.float32), ks=(1, 10))
    _assert_close(out, [np.asarray(v) for v in ref])


def test_integer_and_bool_inputs_are_promoted():
    za = np.eye(3, dtype=np.int32)
    out = al.retrieval_metrics(za, za, ks=(1,))
    assert out.recall_a_to_b.dtype == jnp.result_type(float)
    assert float(out.recall_a_to_b[0]) == 1.0
    assert float(al.retrieval_metrics(za.astype(bool), za, ks=(1,)).recall_b_to_a[0]) == 1.0


def test_single_int_k():
    z = jnp.eye(3)
    assert al.retrieval_metrics(z, z, ks=2).recall_a_to_b.shape == (1,)


BAD = [
    (dict(za=np.ones((4, 3)), zb=np.ones((5, 3))), "za"),
    (dict(za=np.ones((4, 3)), zb=np.ones((4, 2))), "zb"),
    (dict(za=np.ones(4), zb=np.ones(4)), "za"),
    (dict(za=np.ones((2, 4, 3)), zb=np.ones((2, 4, 3))), "za"),
    (dict(za=np.ones((0, 3)), zb=np.ones((0, 3))), "non-empty"),
    (dict(za=np.ones((4, 0)), zb=np.ones((4, 0))), "non-empty"),
    (dict(za=None, zb=np.ones((4, 3))), "za"),
    (dict(za=np.ones((4, 3)), zb=None), "zb"),
    (dict(za=np.ones((4, 3)) * 1j, zb=np.ones((4, 3))), "complex"),
    (dict(ks=(1, 5)), "ks"),
    (dict(ks=(0,)), "ks"),
    (dict(ks=(1.5,)), "ks"),
    (dict(ks=(True,)), "ks"),
    (dict(ks=()), "ks"),
    (dict(ks=np.array([1, 2])), "ks"),
    (dict(ks=None), "ks"),
    (dict(similarity="euclidean"), "similarity"),
    (dict(similarity=None), "similarity"),
    (dict(ids=np.arange(3)), "ids"),
    (dict(ids=np.arange(4.0)), "ids"),
    (dict(ids=np.ones(4, bool)), "ids"),
]


@pytest.mark.parametrize("kwargs, match", BAD)
def test_bad_input_raises_eagerly_and_under_jit(kwargs, match):
    args = dict(za=np.ones((4, 3)), zb=np.ones((4, 3)), ks=(1, 2))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        al.retrieval_metrics(**args)
    arrays = {k: v for k, v in args.items() if k in ("za", "zb") and v is not None}
    rest = {k: v for k, v in args.items() if k not in arrays}

    def traced(**arrs):
        return al.retrieval_metrics(**arrs, **rest)

    with pytest.raises(ValueError, match=match):
        jax.jit(traced)(**arrays)
