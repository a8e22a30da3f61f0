"""Tests for alignment._src.kmeans (k-means and nearest-centroid assignment).

References: scikit-learn's ``KMeans`` (Lloyd, float64) started from the same centroids
(``init=``): labels, inertia, centroids and iteration counts, with weights and with an empty
cluster; brute-force NumPy nearest centroids for :func:`kmeans_assign`; the monotone decrease
of the inertia along Lloyd's iterations.
"""

from __future__ import annotations

import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans

from alignment._src import checks
from alignment._src import kmeans as km
from tests.conftest import x64

N, D, K = 60, 2, 3  # one shape for most tests (compile time dominates)
CENTRES = np.array([[0.0, 0.0], [4.0, 4.0], [0.0, 5.0]])
KMEANS_JIT = jax.jit(lambda x, w, tol: km.kmeans(x, k=K, key=jax.random.key(0), weights=w, tol=tol))


def _blobs(rng, n=N, spread=1.0, dtype=np.float32):
    labels = np.arange(n) % len(CENTRES)
    return (CENTRES[labels] + spread * rng.normal(size=(n, D))).astype(dtype)


def _sklearn(x, init, weights=None, tol=1e-4, max_iter=300):
    return KMeans(K, init=np.asarray(init, np.float64), n_init=1, tol=tol, max_iter=max_iter).fit(
        np.asarray(x, np.float64), sample_weight=weights
    )


def _assert_same_as_sklearn(out, sk, rtol=1e-10):
    np.testing.assert_array_equal(out.assignment, sk.labels_)
    np.testing.assert_allclose(out.inertia, sk.inertia_, rtol=rtol)
    np.testing.assert_allclose(out.centroids, sk.cluster_centers_, rtol=rtol, atol=rtol)
    assert int(out.n_iters) == sk.n_iter_
    assert bool(out.converged)


# ------------------------------------------------------------------------------------------
# kmeans against scikit-learn
# ------------------------------------------------------------------------------------------


def test_kmeans_matches_sklearn_from_the_same_init_x64(rng):
    """Overlapping blobs (many iterations), plain and weighted, in float64."""
    x = _blobs(rng, spread=1.6, dtype=np.float64)
    init = x[[0, 1, 3]]  # two seeds in one blob: Lloyd has work to do
    weights = rng.uniform(0.0, 2.0, size=N)
    weights[::7] = 0.0
    with x64():
        out = km.kmeans(x, k=K, init=init, tol=0.0)
        out_w = km.kmeans(x, k=K, init=init, tol=0.0, weights=weights)
    sk = _sklearn(x, init, tol=0.0)
    assert sk.n_iter_ > 2
    _assert_same_as_sklearn(out, sk)
    _assert_same_as_sklearn(out_w, _sklearn(x, init, weights, tol=0.0))
    # the default tol (relative to the mean variance, as scikit-learn's): same stopping iteration
    with x64():
        out_tol = km.kmeans(x, k=K, init=init)
    _assert_same_as_sklearn(out_tol, _sklearn(x, init))


def test_kmeans_float32_and_seeding(rng):
    x = _blobs(rng)
    init = x[[0, 1, 2]]
    out = km.kmeans(x, k=K, init=init)
    sk = _sklearn(x, init)
    np.testing.assert_array_equal(out.assignment, sk.labels_)
    np.testing.assert_allclose(out.inertia, sk.inertia_, rtol=1e-5)
    np.testing.assert_allclose(out.centroids, sk.cluster_centers_, rtol=1e-5, atol=1e-5)
    assert out.centroids.dtype == jnp.float32 and out.assignment.dtype == jnp.int32
    # k-means++ from a key finds the three blobs (scikit-learn's best of 10 runs)
    best = KMeans(K, n_init=10, random_state=0).fit(x)
    for seed in range(3):
        fit = km.kmeans(x, k=K, key=jax.random.key(seed))
        np.testing.assert_allclose(fit.inertia, best.inertia_, rtol=1e-5)
        assert bool(fit.converged)
    # n_init keeps the lowest inertia of its seedings; a raw uint32 key works too
    many = km.kmeans(x, k=K, key=jax.random.PRNGKey(1), n_init=4)
    np.testing.assert_allclose(many.inertia, best.inertia_, rtol=1e-5)


@pytest.mark.filterwarnings("ignore::alignment.ConvergenceWarning")
def test_kmeans_empty_cluster_is_reseeded_like_sklearn_x64(rng):
    """A centroid far from every point: scikit-learn's rule moves the farthest point to it."""
    x = _blobs(rng, dtype=np.float64)
    init = np.array([[0.0, 0.0], [2.0, 2.5], [100.0, 100.0]])
    with x64():
        out = km.kmeans(x, k=K, init=init)
        first = km.kmeans(x, k=K, init=init, max_iters=1)
    _assert_same_as_sklearn(out, _sklearn(x, init))
    sk1 = _sklearn(x, init, max_iter=1)
    np.testing.assert_allclose(first.centroids, sk1.cluster_centers_, rtol=1e-12)
    assert not np.any(np.all(np.asarray(first.centroids) == init[2], axis=1))  # reseeded
    assert len(set(np.asarray(out.assignment).tolist())) == K  # every cluster in use


# ------------------------------------------------------------------------------------------
# Properties
# ------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::alignment.ConvergenceWarning")
def test_inertia_never_increases_along_lloyd(rng):
    x = _blobs(rng, spread=2.0)
    c = x[[0, 1, 3]]
    inertias = []
    for _ in range(8):  # one Lloyd step at a time (one compile)
        out = km.kmeans(x, k=K, init=c, max_iters=1)
        inertias.append(float(out.inertia))
        c = out.centroids
    assert all(b <= a * (1 + 1e-6) for a, b in itertools.pairwise(inertias)), inertias
    assert inertias[-1] < inertias[0]


def test_zero_weights_never_matter(rng):
    x = _blobs(rng)
    w = np.ones(N, np.float32)
    w[::5] = 0.0
    outs = []
    for garbage in (np.nan, 1e30, -np.inf, 0.0):
        xg = x.copy()
        xg[::5] = garbage
        outs.append(km.kmeans(xg, k=K, key=jax.random.key(0), weights=w))
    for out in outs[1:]:
        for field in ("centroids", "inertia", "n_iters", "converged"):
            np.testing.assert_array_equal(getattr(out, field), getattr(outs[0], field))
        np.testing.assert_array_equal(out.assignment[w > 0], outs[0].assignment[w > 0])
    assert np.all(np.asarray(outs[0].assignment)[::5] == -1)  # NaN at weight 0: label -1
    ref = outs[3]  # zero-weight points at the origin still get their nearest centroid
    origin = km.kmeans_assign(ref.centroids, np.zeros((1, D), np.float32)).assignment[0]
    assert np.all(np.asarray(ref.assignment)[::5] == int(origin))
    # and the result is scikit-learn's on the positive-weight points alone
    sk = _sklearn(x[w > 0], np.asarray(ref.centroids), tol=0.0)
    np.testing.assert_array_equal(ref.assignment[w > 0], sk.labels_)


def test_jit_vmap_and_traced_bad_values(rng):
    xs = np.stack([_blobs(rng), _blobs(rng, spread=0.5)])
    keys = jax.random.split(jax.random.key(3), 2)
    batched = jax.vmap(lambda x, key: km.kmeans(x, k=K, key=key))(xs, keys)
    for b in range(2):
        single = km.kmeans(xs[b], k=K, key=keys[b])
        for a, r in zip(batched, single, strict=True):
            np.testing.assert_allclose(a[b], r, rtol=1e-5, atol=1e-5)
    ones = np.ones(N, np.float32)
    jitted = KMEANS_JIT(xs[0], ones, 1e-4)
    eager = km.kmeans(xs[0], k=K, key=jax.random.key(0), weights=ones)
    for a, r in zip(jitted, eager, strict=True):
        np.testing.assert_allclose(a, r, rtol=1e-6, atol=1e-6)
    # traced bad values: NaN floats, -1 integers, converged False (never a plausible result)
    bad_w = ones.copy()
    bad_w[4] = -1.0
    for w, tol in ((bad_w, 1e-4), (ones, -1.0), (ones, np.nan), (np.zeros(N, np.float32), 1e-4)):
        out = KMEANS_JIT(xs[0], w, tol)
        assert np.all(np.isnan(np.asarray(out.centroids))) and np.isnan(float(out.inertia))
        assert np.all(np.asarray(out.assignment) == -1) and int(out.n_iters) == -1
        assert not bool(out.converged)
    # NaN in a point of positive weight: the same, eagerly too
    xn = xs[0].copy()
    xn[7, 1] = np.nan
    out = km.kmeans(xn, k=K, key=jax.random.key(0), weights=ones)
    assert np.isnan(float(out.inertia)) and np.all(np.asarray(out.assignment) == -1)
    assert np.all(np.isnan(np.asarray(KMEANS_JIT(xn, ones, 1e-4).centroids)))


def test_convergence_warning_and_low_precision(rng):
    x = _blobs(rng, spread=2.0)
    with pytest.warns(checks.ConvergenceWarning, match="kmeans stopped before converging"):
        out = km.kmeans(x, k=K, init=x[[0, 1, 3]], max_iters=1)
    assert not bool(out.converged) and int(out.n_iters) == 1
    for dtype in (jnp.float16, jnp.bfloat16):
        xl = jnp.asarray(x, dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = km.kmeans(xl, k=K, key=jax.random.key(0))
        assert out.centroids.dtype == dtype and out.inertia.dtype == dtype
        ref = km.kmeans(np.asarray(xl, np.float32), k=K, key=jax.random.key(0))
        np.testing.assert_array_equal(out.assignment, ref.assignment)
        assert km.kmeans_assign(out.centroids, xl).distances.dtype == dtype


# ------------------------------------------------------------------------------------------
# kmeans_assign
# ------------------------------------------------------------------------------------------


def test_kmeans_assign_brute_force(rng):
    x = _blobs(rng)
    fit = km.kmeans(x, k=K, key=jax.random.key(0))
    out = km.kmeans_assign(fit.centroids, x)
    c = np.asarray(fit.centroids, np.float64)
    d = ((x.astype(np.float64)[:, None] - c[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(out.assignment, d.argmin(1))
    np.testing.assert_allclose(out.distances, d.min(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out.assignment, fit.assignment)
    np.testing.assert_allclose(np.sum(out.distances), fit.inertia, rtol=1e-5)
    # ties go to the lowest index; a NaN row gets -1 and NaN, and no other row changes
    tie = km.kmeans_assign(np.array([[1.0, 0.0], [-1.0, 0.0]]), np.zeros((1, 2)))
    assert tie.assignment.tolist() == [0]
    xn = x.copy()
    xn[3] = [np.nan, 0.0]
    nan_out = km.kmeans_assign(fit.centroids, xn)
    assert int(nan_out.assignment[3]) == -1 and np.isnan(float(nan_out.distances[3]))
    keep = np.arange(N) != 3
    np.testing.assert_array_equal(
        np.asarray(nan_out.assignment)[keep], np.asarray(out.assignment)[keep]
    )
    bad_c = np.asarray(fit.centroids).copy()
    bad_c[1, 0] = np.inf
    assert np.all(np.asarray(km.kmeans_assign(bad_c, x).assignment) == -1)
    # under vmap (a batch of frame sequences)
    vm = jax.vmap(km.kmeans_assign, in_axes=(None, 0))(fit.centroids, np.stack([x, x[::-1]]))
    np.testing.assert_array_equal(vm.assignment[1], np.asarray(out.assignment)[::-1])


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------


def test_bad_input_raises(rng):
    x = _blobs(rng)
    key = jax.random.key(0)
    cases = [
        (dict(k=0), "`k` must be an int >= 1"),
        (dict(k=N + 1), r"`k`=61 must be at most n = 60"),
        (dict(k=1.5), "`k` must be a Python int"),
        (dict(k=K, n_init=0), "`n_init` must be an int >= 1"),
        (dict(k=K, max_iters=0), "`max_iters` must be an int >= 1"),
        (dict(k=K, tol=-1.0), "`tol` must be a finite non-negative number"),
        (dict(k=K, tol=np.ones(2)), "`tol` must be a scalar"),
        (dict(k=K, tol=1e-4 + 1j), "`tol` must be real"),
        (dict(k=K, weights=np.ones(N - 1)), r"`weights` must have shape \(60,\)"),
        (dict(k=K, weights=-np.ones(N)), "`weights` must be non-negative"),
        (dict(k=K, weights=np.r_[np.ones(2), np.zeros(N - 2)]), "at least k = 3 positive"),
        (dict(k=K, init=np.zeros((2, D))), r"`init` must have shape \[k, d\] = \(3, 2\)"),
        (dict(k=K, init=np.full((K, D), np.nan)), "`init` must be finite"),
        (dict(k=K, init=np.zeros((K, D)), n_init=2), "`n_init` must be 1 when `init`"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            km.kmeans(x, key=key, **kwargs)
    with pytest.raises(ValueError, match=r"`key` must be a jax\.random key"):
        km.kmeans(x, k=K)
    with pytest.raises(ValueError, match=r"`key` must be a single jax\.random key"):
        km.kmeans(x, k=K, key=jax.random.split(key, 2))
    with pytest.raises(ValueError, match="`x` must be real"):
        km.kmeans(x.astype(np.complex64), k=K, key=key)
    with pytest.raises(ValueError, match="`x` must be a 2-D array"):
        km.kmeans(x[:, 0], k=K, key=key)
    with pytest.raises(ValueError, match="`x` must be an array"):
        km.kmeans(None, k=K, key=key)
    with pytest.raises(ValueError, match="`tol` must be a scalar"):  # under jit as well
        jax.jit(lambda t: km.kmeans(x, k=K, key=key, tol=t))(np.ones(2))
    with pytest.raises(ValueError, match="same feature size"):
        km.kmeans_assign(np.zeros((K, 3)), x)
    with pytest.raises(ValueError, match="`centroids` must hold at least one"):
        km.kmeans_assign(np.zeros((0, D)), x)
    with pytest.raises(ValueError, match="`centroids` must be real"):
        km.kmeans_assign(np.zeros((K, D), np.complex64), x)
