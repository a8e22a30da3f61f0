"""Tests for alignment.minibatch_kmeans (Sculley's mini-batch k-means).

References: a float64 NumPy implementation of Sculley's update rule fed the same batches (the
batch indices are drawn from the same keys); scikit-learn's ``KMeans`` (the full-batch optimum)
and ``MiniBatchKMeans`` (the peer) on well-separated blobs, where both should reach the optimum
within a few percent.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.datasets import make_blobs

from alignment._src import kmeans as km

K = 6


@pytest.fixture(scope="module")
def blobs():
    x, _ = make_blobs(3000, n_features=4, centers=K, cluster_std=0.6, random_state=1)
    return x.astype(np.float32)


def _sculley_numpy(x, w, init, key, batch, steps):
    """Sculley's update in float64 NumPy on the batches our implementation draws from ``key``."""
    n = x.shape[0]
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    c = np.asarray(init, np.float64).copy()
    counts = np.zeros(len(c))
    k_loop = jax.random.split(key)[1]
    for step in range(steps):
        kb, _ = jax.random.split(jax.random.fold_in(k_loop, step))
        idx = np.asarray(jax.random.randint(kb, (batch,), 0, n))
        xb, wb = x[idx], w[idx]
        labels = ((xb[:, None] - c[None]) ** 2).sum(-1).argmin(1)
        for j in range(len(c)):
            m = labels == j
            bw = wb[m].sum()
            if bw > 0:
                c[j] = (c[j] * counts[j] + (wb[m, None] * xb[m]).sum(0)) / (counts[j] + bw)
                counts[j] += bw
    return c


def test_update_rule_matches_a_numpy_reference(blobs, rng):
    x = blobs[:400]
    w = rng.uniform(0.5, 2.0, size=len(x)).astype(np.float32)
    init = x[:K] + 0.5  # a poor start: the centroids move a lot
    key = jax.random.key(7)
    out = km.minibatch_kmeans(
        x,
        k=K,
        key=key,
        init=init,
        weights=w,
        batch_size=32,
        max_steps=12,
        max_no_improvement=None,
        reassignment_ratio=0.0,
    )
    ref = _sculley_numpy(x, w, init, key, batch=32, steps=12)
    assert int(out.n_iters) == 12 and not bool(out.converged)
    np.testing.assert_allclose(out.centroids, ref, rtol=1e-4, atol=1e-4)
    d = ((x.astype(np.float64)[:, None] - ref[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(out.assignment, d.argmin(1))
    np.testing.assert_allclose(out.inertia, (w * d.min(1)).sum(), rtol=1e-4)


def test_reaches_the_optimum_like_sklearn(blobs):
    """Inertia within 2 % of full k-means (best of 10), as scikit-learn's MiniBatchKMeans."""
    best = KMeans(K, n_init=10, random_state=0).fit(blobs.astype(np.float64)).inertia_
    ours = [
        float(km.minibatch_kmeans(blobs, k=K, key=jax.random.key(s), batch_size=256).inertia)
        for s in range(3)
    ]
    theirs = [
        MiniBatchKMeans(K, batch_size=256, n_init=1, random_state=s).fit(blobs).inertia_
        for s in range(3)
    ]
    assert np.median(theirs) <= 1.02 * best  # the peer reaches it here
    assert np.median(ours) <= 1.02 * best, (ours, best)


def test_dead_centroids_are_reassigned(blobs):
    """Two centroids start far from the data and never win a point without the reassignment."""
    init = np.asarray(KMeans(K, n_init=4, random_state=0).fit(blobs).cluster_centers_, np.float32)
    init[:2] = 1e3
    kw = dict(k=K, key=jax.random.key(0), init=init, batch_size=128, max_steps=300)
    fixed = km.minibatch_kmeans(blobs, reassignment_ratio=0.0, **kw)
    moved = km.minibatch_kmeans(blobs, **kw)
    assert set(np.unique(fixed.assignment)) == set(range(2, K))  # dead without it
    assert set(np.unique(moved.assignment)) == set(range(K))
    assert float(moved.inertia) < 0.5 * float(fixed.inertia)


def test_zero_weights_never_matter(blobs):
    x = blobs[:600]
    w = np.ones(len(x), np.float32)
    w[::5] = 0.0
    outs = []
    for garbage in (np.nan, 1e30, 0.0):
        xg = x.copy()
        xg[::5] = garbage
        outs.append(km.minibatch_kmeans(xg, k=K, key=jax.random.key(0), weights=w, batch_size=64))
    for out in outs[1:]:
        for field in ("centroids", "inertia", "n_iters", "converged"):
            np.testing.assert_array_equal(getattr(out, field), getattr(outs[0], field))
    assert np.all(np.asarray(outs[0].assignment)[::5] == -1)  # NaN at weight 0: label -1


def test_jit_vmap_determinism_and_traced_bad_values(blobs):
    x = blobs[:500]
    keys = jax.random.split(jax.random.key(3), 2)
    fit = jax.jit(
        lambda x, key, r: km.minibatch_kmeans(x, k=K, key=key, batch_size=64, reassignment_ratio=r)
    )
    batched = jax.vmap(fit, in_axes=(None, 0, None))(x, keys, 0.01)
    for b in range(2):
        single = km.minibatch_kmeans(x, k=K, key=keys[b], batch_size=64)
        for a, r in zip(batched, single, strict=True):
            np.testing.assert_allclose(a[b], r, rtol=1e-5, atol=1e-4)
    again = km.minibatch_kmeans(x, k=K, key=keys[0], batch_size=64)
    np.testing.assert_array_equal(again.centroids, batched.centroids[0])
    for r in (-1.0, np.nan):
        out = fit(x, keys[0], r)
        assert np.all(np.isnan(np.asarray(out.centroids))) and np.isnan(float(out.inertia))
        assert np.all(np.asarray(out.assignment) == -1) and not bool(out.converged)
    xn = x.copy()
    xn[3, 0] = np.nan  # NaN at positive weight: never silently dropped
    out = km.minibatch_kmeans(xn, k=K, key=keys[0], batch_size=64)
    assert np.isnan(float(out.inertia)) and int(out.n_iters) == -1


def test_low_precision_accumulates_in_float32(blobs):
    xl = jnp.asarray(blobs[:500], jnp.bfloat16)
    out = km.minibatch_kmeans(xl, k=K, key=jax.random.key(0), batch_size=64)
    ref = km.minibatch_kmeans(np.asarray(xl, np.float32), k=K, key=jax.random.key(0), batch_size=64)
    assert out.centroids.dtype == jnp.bfloat16 and out.inertia.dtype == jnp.bfloat16
    np.testing.assert_array_equal(out.assignment, ref.assignment)


def test_bad_input_raises(blobs):
    x = blobs[:100]
    key = jax.random.key(0)
    cases = [
        (dict(k=0), "`k` must be an int >= 1"),
        (dict(k=101), r"`k`=101 must be at most n = 100"),
        (dict(k=K, batch_size=0), "`batch_size` must be an int >= 1"),
        (dict(k=K, max_steps=0), "`max_steps` must be an int >= 1"),
        (dict(k=K, max_no_improvement=0), "`max_no_improvement` must be an int >= 1"),
        (dict(k=K, init_size=K - 1), r"`init_size`=5 must be in \[k, n\] = \[6, 100\]"),
        (dict(k=K, init_size=101), r"`init_size`=101 must be in \[k, n\]"),
        (dict(k=K, tol=-1.0), "`tol` must be a finite non-negative number"),
        (dict(k=K, reassignment_ratio=-0.1), "`reassignment_ratio` must be a finite non-neg"),
        (dict(k=K, reassignment_ratio=np.ones(2)), "`reassignment_ratio` must be a scalar"),
        (dict(k=K, weights=np.ones(99)), r"`weights` must have shape \(100,\)"),
        (dict(k=K, weights=np.r_[np.ones(2), np.zeros(98)]), "at least k = 6 positive"),
        (dict(k=K, init=np.zeros((2, 4))), r"`init` must have shape \[k, d\] = \(6, 4\)"),
        (dict(k=K, init=np.full((K, 4), np.inf)), "`init` must be finite"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            km.minibatch_kmeans(x, key=key, **kwargs)
    with pytest.raises(ValueError, match=r"`key` must be a jax\.random key"):
        km.minibatch_kmeans(x, k=K)
    with pytest.raises(ValueError, match="`x` must be a 2-D array"):
        km.minibatch_kmeans(x[:, 0], k=K, key=key)
    with pytest.raises(ValueError, match="`x` must be real"):
        km.minibatch_kmeans(x.astype(np.complex64), k=K, key=key)
    with pytest.raises(ValueError, match="`reassignment_ratio` must be a scalar"):  # under jit
        jax.jit(lambda r: km.minibatch_kmeans(x, k=K, key=key, reassignment_ratio=r))(np.ones(2))
