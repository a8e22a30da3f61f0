"""k-means clustering (Lloyd's algorithm, k-means++ seeding) and nearest-centroid assignment.

* :func:`kmeans` clusters the rows of ``x: [n, d]`` into ``k`` clusters: greedy k-means++
  seeding (Arthur & Vassilvitskii 2007, with scikit-learn's ``2 + floor(log k)`` candidates per
  step), then Lloyd's iterations in a ``lax.while_loop`` of at most ``max_iters`` steps; the
  best of ``n_init`` seedings (lowest inertia) is kept.
* :func:`kmeans_assign` labels new rows with their nearest centroid: the discretisation of
  features into units (HuBERT's targets are k-means labels of MFCC or hidden features).

The objective is the inertia ``sum_i w_i ||x_i - c_{label_i}||^2`` (weights ``w``, all ones by
default, as scikit-learn's ``sample_weight``). One Lloyd iteration assigns every point to its
nearest centroid (ties to the lowest index) and moves every centroid to the weighted mean of its
points; neither step increases the inertia. The loop stops after the iteration in which no label
changed, or in which the centroids moved by at most ``tol`` times the mean per-feature variance
of the data in total squared distance (scikit-learn's criterion, with the variance weighted by
``w``), or after ``max_iters`` iterations (``converged = False``). The returned labels are then
recomputed from the returned centroids (scikit-learn's final E-step), and the inertia is that of
these labels and centroids, computed from exact differences.

Empty clusters (scikit-learn's rule): when a centroid has no point of positive weight in an
iteration, the points farthest from their own centroid (largest squared distance, positive
weight only) are moved to the empty clusters, the farthest to the empty cluster of lowest index,
so that those clusters restart at a data point; an empty cluster left without such a point keeps
its centroid.

Zero weights: a point of weight 0 is never read by the fit (its value, NaN and inf included,
influences no centroid, no other label, no inertia, no iteration count); it still gets a label,
that of its nearest centroid (``-1`` if it is not finite), as scikit-learn labels points of weight
0.

Differences from scikit-learn's ``KMeans``: the seeding draws from ``jax.random`` (so a given key
does not reproduce scikit-learn's ``random_state``; pass ``init`` to start from given centroids);
the tolerance uses the weighted variance (scikit-learn's ignores the weights); ``n_init`` defaults
to 1, as scikit-learn's ``n_init="auto"`` does for k-means++. Computed in float32 for
float16/bfloat16 inputs (output dtypes follow the input; labels and counts are int32), in float64
when ``x`` is float64. Distances inside the loop are computed as ``|x|^2 + |c|^2 - 2 x.c`` after
subtracting the weighted mean of the data (as scikit-learn does), so near-ties may resolve
differently from a float64 reference in float32.

References: Lloyd, "Least squares quantization in PCM", 1982; Arthur & Vassilvitskii,
"k-means++: the advantages of careful seeding", SODA 2007; Hsu et al., "HuBERT: self-supervised
speech representation learning by masked prediction of hidden units", 2021.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from alignment._src import checks
from alignment._src.costs import _squared_euclidean_core

__all__ = ["KMeansAssignOutput", "KMeansOutput", "kmeans", "kmeans_assign", "minibatch_kmeans"]


class KMeansOutput(NamedTuple):
    """Result of :func:`kmeans`.

    Attributes:
      centroids: Array of shape ``[k, d]``, the cluster centres.
      assignment: Int32 array of shape ``[n]``, the index of each point's nearest centroid (ties
        to the lowest index; ``-1`` for a zero-weight point that is not finite).
      inertia: Scalar, ``sum_i w_i ||x_i - centroids[assignment_i]||^2``.
      n_iters: Int32 scalar, Lloyd iterations run (of the kept initialisation).
      converged: Bool scalar, the loop stopped on its criterion before ``max_iters`` ran out.
    """

    centroids: jax.Array
    assignment: jax.Array
    inertia: jax.Array
    n_iters: jax.Array
    converged: jax.Array


class KMeansAssignOutput(NamedTuple):
    """Result of :func:`kmeans_assign`.

    Attributes:
      assignment: Int32 array of shape ``[m]``, the nearest centroid of each row (ties to the
        lowest index; ``-1`` where the row or a centroid is not finite).
      distances: Array of shape ``[m]``, the squared Euclidean distance to that centroid (NaN
        where the label is ``-1``).
    """

    assignment: jax.Array
    distances: jax.Array


_UNCONVERGED_HINT = "raise max_iters or tol"


# --------------------------------------------------------------------------------------------
# Validation.
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# The algorithm (on centred data; zero-weight rows are zero here).
# --------------------------------------------------------------------------------------------


def _sq_dist(xc: jax.Array, c: jax.Array) -> jax.Array:
    """``||xc_i - c_j||^2`` ``[n, k]`` by the expansion, clamped at 0."""
    xx = jnp.sum(xc * xc, axis=1)[:, None]
    cc = jnp.sum(c * c, axis=1)[None, :]
    return jnp.maximum(xx + cc - 2.0 * (xc @ c.T), 0.0)


def _own_dist(xc: jax.Array, c: jax.Array, labels: jax.Array) -> jax.Array:
    """``||xc_i - c_{labels_i}||^2`` from exact differences."""
    diff = xc - c[labels]
    return jnp.sum(diff * diff, axis=1)


def _kmeans_pp(key, xc, w, pos, k: int) -> jax.Array:
    """Greedy k-means++ (scikit-learn's ``_kmeans_plusplus``): ``[k, d]`` centroids.

    Each new centroid is the best, by resulting potential, of ``2 + floor(log k)`` candidates
    drawn with probability proportional to ``w_i D(x_i)^2`` (inverse CDF of one batch of
    uniforms: one random call, cheap to compile); when that potential is 0 (fewer distinct
    positive-weight points than ``k``) they are drawn proportionally to ``w``. Points of weight
    0 are never drawn.
    """
    n_trials = 2 + int(math.log(k))
    u = jax.random.uniform(key, (1 + (k - 1) * n_trials,), xc.dtype)
    w_cum = jnp.cumsum(w)

    def draw(cum, v):  # first index whose cumulative mass exceeds v * total
        idx = jnp.searchsorted(cum, v * cum[-1], side="right", method="compare_all")
        return jnp.minimum(idx, xc.shape[0] - 1)

    first = draw(w_cum, u[0])
    centroids = jnp.zeros((k, xc.shape[1]), xc.dtype).at[0].set(xc[first])
    closest = jnp.where(pos, jnp.sum((xc - xc[first]) ** 2, axis=1), 0.0)
    trials = u[1:].reshape(max(k - 1, 1), n_trials) if k > 1 else None

    def step(j, carry):
        centroids, closest = carry
        cum = jnp.cumsum(w * closest)
        cum = jnp.where(cum[-1] > 0, cum, w_cum)
        cand = draw(cum, trials[j - 1])
        d_cand = _sq_dist(xc, xc[cand])  # [n, trials]
        d_new = jnp.where(pos[:, None], jnp.minimum(closest[:, None], d_cand), 0.0)
        best = jnp.argmin(w @ d_new)
        return centroids.at[j].set(xc[cand[best]]), d_new[:, best]

    if k == 1:
        return centroids
    centroids, _ = lax.fori_loop(1, k, step, (centroids, closest))
    return centroids


class _LoopState(NamedTuple):
    it: jax.Array
    centroids: jax.Array
    labels: jax.Array
    done: jax.Array
    strict: jax.Array
    shift: jax.Array


def _lloyd(xc, w, pos, c0, tol_abs, max_iters: int):
    """Lloyd's loop from ``c0``: ``(centroids, n_iters, converged)``."""
    n, k = xc.shape[0], c0.shape[0]
    wx = w[:, None] * xc

    def body(s: _LoopState) -> _LoopState:
        d = _sq_dist(xc, s.centroids)
        labels = jnp.argmin(d, axis=1).astype(jnp.int32)
        wsum = jax.ops.segment_sum(w, labels, num_segments=k)
        empty = wsum <= 0
        # scikit-learn's relocation: the farthest positive-weight points move to empty clusters
        far = jnp.where(pos, _own_dist(xc, s.centroids, labels), -jnp.inf)
        far_val, far_idx = lax.top_k(far, k)
        rank = jnp.cumsum(empty) - 1
        target = jnp.take(far_idx, jnp.clip(rank, 0, k - 1))
        usable = empty & (jnp.take(far_val, jnp.clip(rank, 0, k - 1)) > -jnp.inf)
        moved = labels.at[jnp.where(usable, target, n)].set(
            jnp.arange(k, dtype=jnp.int32), mode="drop"
        )
        sums = jax.ops.segment_sum(wx, moved, num_segments=k)
        wsum = jax.ops.segment_sum(w, moved, num_segments=k)
        has = wsum > 0
        new = jnp.where(has[:, None], sums / jnp.where(has, wsum, 1.0)[:, None], s.centroids)
        shift = jnp.sum((new - s.centroids) ** 2)
        strict = jnp.all((labels == s.labels) | ~pos)  # zero-weight rows do not count
        done = strict | (shift <= tol_abs)
        return _LoopState(s.it + 1, new, labels, done, strict, shift)

    s0 = _LoopState(
        jnp.asarray(0, jnp.int32),
        c0,
        jnp.full((n,), -1, jnp.int32),
        jnp.asarray(False),
        jnp.asarray(False),
        jnp.asarray(jnp.inf, xc.dtype),
    )
    s = lax.while_loop(lambda s: (s.it < max_iters) & ~s.done, body, s0)
    return s.centroids, s.it, s.done


def _parse(x, k, weights, init):
    """The checks :func:`kmeans` and :func:`minibatch_kmeans` share.

    Returns ``(x, k, dtype, w, bad, init)``: ``x`` a 2-D float array, ``k`` the static int,
    ``dtype`` the compute dtype, ``w`` the weights (ones by default) and ``bad`` their traced
    flag (with a non-finite traced ``init`` folded in), ``init`` cast to ``dtype`` or None.
    """
    x = checks.as_float_array(x, "x")
    if x.ndim != 2:
        raise ValueError(f"`x` must be a 2-D array [n, d] (points by features), got {x.shape}.")
    n, d = x.shape
    k = checks.static_int(k, "k", minimum=1)
    if k > n:
        raise ValueError(f"`k`={k} must be at most n = {n}, the number of points in x: {x.shape}.")
    dtype = checks.compute_dtype(x.dtype)
    if weights is None:
        w, bad = jnp.ones((n,), dtype), jnp.asarray(False)
    else:
        w, bad = checks.weights(
            weights, n, "weights", dtype, what=f" (one per row of x: {x.shape})"
        )
        if checks.is_concrete(w):
            count = int(jnp.sum(w > 0))
            if count < k:
                raise ValueError(
                    f"`weights` must have at least k = {k} positive entries (one point per "
                    f"cluster), got {count}."
                )
    if init is not None:
        init = checks.as_float_array(init, "init")
        if init.shape != (k, d):
            raise ValueError(
                f"`init` must have shape [k, d] = ({k}, {d}) for k={k} and x: {x.shape}, got "
                f"{init.shape}."
            )
        if checks.is_concrete(init) and not bool(jnp.all(jnp.isfinite(init))):
            raise ValueError("`init` must be finite.")
        bad = bad | ~jnp.all(jnp.isfinite(init))
        init = init.astype(dtype)
    return x, k, dtype, w, bad, init


def _centre(x, w, bad):
    """The fit's view of the data: ``(xc, w, pos, mean, variance, bad)``.

    Weights of rows that are bad, or of a bad problem, become 0 (all ones if none is left: the
    outputs are NaN then anyway); rows of weight 0 are zeroed (never read); the others are
    centred on the weighted mean. ``bad`` gains NaN or inf in a row of positive weight.
    """
    pos = w > 0
    bad = bad | jnp.any(pos & ~jnp.all(jnp.isfinite(x), axis=1))
    w = jnp.where(pos & ~bad, w, 0.0)
    w = jnp.where(jnp.any(w > 0), w, 1.0)  # a stand-in for bad weights (outputs become NaN)
    pos = w > 0
    xz = jnp.where(pos[:, None] & ~bad, x, 0.0)
    total = jnp.sum(w)
    mean = jnp.sum(w[:, None] * xz, axis=0) / total
    xc = jnp.where(pos[:, None], xz - mean, 0.0)
    variance = jnp.sum(w[:, None] * xc * xc, axis=0) / total
    return xc, w, pos, mean, variance, bad


def _stray_labels(x, pos, mean, centred_centroids):
    """Labels of the zero-weight rows (nearest centroid from their own values, ``-1`` if not
    finite), after the fit; positive-weight rows get ``-1`` here (the caller keeps theirs)."""
    stray = jnp.where(pos[:, None], 0.0, x - mean)
    nearest = jnp.argmin(_sq_dist(stray, centred_centroids), axis=1).astype(jnp.int32)
    return jnp.where(jnp.all(jnp.isfinite(stray), axis=1), nearest, -1)


@functools.partial(jax.jit, static_argnames=("k", "n_init", "max_iters"))
def _kmeans(x, w, keys, init, tol, bad, *, k: int, n_init: int, max_iters: int) -> KMeansOutput:
    bad = bad | checks.invalid_scalar(tol, "nonnegative")
    xc, w, pos, mean, variance, bad = _centre(x, w, bad)
    tol_abs = jnp.where(bad, 0.0, tol) * jnp.mean(variance)

    if init is None:
        seeds = jax.vmap(lambda key: _kmeans_pp(key, xc, w, pos, k))(keys)  # [n_init, k, d]
    else:
        seeds = jnp.where(bad, 0.0, init - mean)[None]
    cents, iters, conv = jax.vmap(lambda c0: _lloyd(xc, w, pos, c0, tol_abs, max_iters))(seeds)

    def score(c):
        labels = jnp.argmin(_sq_dist(xc, c), axis=1).astype(jnp.int32)
        return labels, jnp.sum(w * _own_dist(xc, c, labels))

    labels_all, inertias = jax.vmap(score)(cents)
    best = jnp.argmin(jnp.where(jnp.isnan(inertias), jnp.inf, inertias))
    centroids = cents[best] + mean
    labels = labels_all[best]
    labels = jnp.where(pos, labels, _stray_labels(x, pos, mean, cents[best]))
    out = KMeansOutput(centroids, labels, inertias[best], iters[best], conv[best])
    return checks.nan_if(bad, out)


def kmeans(
    x: jax.typing.ArrayLike,
    *,
    k: int,
    key: jax.Array | None = None,
    n_init: int = 1,
    max_iters: int = 300,
    tol: jax.typing.ArrayLike = 1e-4,
    weights: jax.typing.ArrayLike | None = None,
    init: jax.typing.ArrayLike | None = None,
) -> KMeansOutput:
    """k-means: greedy k-means++ seeding, then Lloyd's iterations until the labels settle.

    See the module docstring for the algorithm, the stopping rule, the empty-cluster rule and
    the differences from scikit-learn's ``KMeans`` (same defaults: ``max_iters=300``,
    ``tol=1e-4``, one k-means++ seeding). One dataset per call: ``jax.vmap`` over a batch of
    datasets of equal shape with a batch of keys (a batch runs until its slowest member stops).

    Numerics: never hangs (at most ``n_init * max_iters`` iterations). Each iteration costs
    ``O(n k d)``; the seeding ``O(n k d log k)``.

    Bad input: shapes, ``k``, ``n_init``, ``max_iters``, ``key`` and dtypes are checked at trace
    time (``ValueError`` naming the argument, under ``jit``/``vmap`` too: ``x`` not 2-D,
    complex or ``None``, ``k`` not an int in ``[1, n]``, ``weights`` not of shape ``[n]``,
    ``init`` not ``[k, d]``, ``init`` together with ``n_init > 1``, no ``key`` and no ``init``,
    an array-valued or complex ``tol``). Concrete bad values raise ``ValueError``: negative or
    non-finite ``tol``; negative or non-finite weights, or fewer than ``k`` positive ones;
    non-finite ``init``. Traced bad values (the same, under ``jit``/``vmap``) make
    ``centroids`` and ``inertia`` NaN, ``assignment`` and ``n_iters`` ``-1`` and ``converged``
    False. NaN or inf in a point of positive weight does the same (nothing is silently
    dropped); at weight 0 it is never read. A concrete call that stops before converging warns
    (:class:`alignment.ConvergenceWarning`). See ``docs/conventions.md``.

    Args:
      x: Array of shape ``[n, d]``, the points (rows).
      k: Number of clusters (static int in ``[1, n]``).
      key: A ``jax.random`` key for the seeding (``jax.random.key(0)``); unused with ``init``.
      n_init: Number of seedings (static int ``>= 1``); the lowest inertia wins.
      max_iters: Lloyd iterations at most per seeding (static int ``>= 1``).
      tol: Non-negative tolerance, relative to the mean per-feature variance of ``x``, on the
        total squared movement of the centroids in one iteration (traced).
      weights: Optional non-negative array of shape ``[n]`` (scikit-learn's ``sample_weight``);
        ``None`` means all ones.
      init: Optional array of shape ``[k, d]``, the initial centroids (then ``n_init`` must be
        1 and ``key`` is not needed).

    Returns:
      A :class:`KMeansOutput` ``(centroids [k, d], assignment [n], inertia [], n_iters [],
      converged [])``.

    Raises:
      ValueError: as described under Bad input.

    References:
      Lloyd, "Least squares quantization in PCM", 1982; Arthur & Vassilvitskii, "k-means++: the
      advantages of careful seeding", SODA 2007.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> x = jnp.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]])
      >>> out = kmeans(x, k=2, key=jax.random.key(0))
      >>> sorted(out.centroids.tolist()), float(out.inertia), bool(out.converged)
      ([[0.0, 0.5], [10.0, 0.5]], 1.0, True)
      >>> a = out.assignment
      >>> bool(a[0] == a[1]) and bool(a[0] != a[2])
      True
    """
    x, k, dtype, w, bad, init = _parse(x, k, weights, init)
    n_init = checks.static_int(n_init, "n_init", minimum=1)
    max_iters = checks.static_int(max_iters, "max_iters", minimum=1)
    checks.scalar(tol, "tol", "nonnegative")
    if init is not None:
        if n_init != 1:
            raise ValueError(f"`n_init` must be 1 when `init` is given, got {n_init}.")
        keys = None
    else:
        keys = jax.random.split(
            checks.prng_key(key, " for the k-means++ seeding; or pass `init`"), n_init
        )
    out = _kmeans(x.astype(dtype), w, keys, init, tol, bad, k=k, n_init=n_init, max_iters=max_iters)
    # NaN outputs (bad input) say so themselves: no convergence warning for them
    checks.warn_unconverged(out.converged | (out.n_iters < 0), "kmeans", _UNCONVERGED_HINT)
    return out._replace(
        centroids=out.centroids.astype(x.dtype), inertia=out.inertia.astype(x.dtype)
    )


def kmeans_assign(centroids: jax.typing.ArrayLike, x: jax.typing.ArrayLike) -> KMeansAssignOutput:
    """Nearest-centroid labels and squared distances: discretise features into units.

    ``labels_i = argmin_j ||x_i - centroids_j||^2`` (ties to the lowest index), computed with
    :func:`alignment.squared_euclidean` (robust to large values), and ``distances_i`` the
    squared distance to that centroid from exact differences. This is the assignment of a fitted
    :func:`kmeans` (its ``assignment`` is ``kmeans_assign(centroids, x).assignment`` up to
    near-ties),
    and HuBERT's discrete targets when ``x`` holds frame features.

    Bad input: shapes are checked at trace time (``ValueError`` naming the argument, under
    ``jit``/``vmap`` too: ranks other than 2, different feature sizes, an empty ``centroids``,
    ``None`` or complex input). A row holding NaN or inf gets label ``-1`` and distance NaN,
    and no other row changes; a non-finite centroid makes every label ``-1`` and every distance
    NaN. See ``docs/conventions.md``.

    Args:
      centroids: Array of shape ``[k, d]`` with ``k >= 1``.
      x: Array of shape ``[m, d]``.

    Returns:
      A :class:`KMeansAssignOutput` ``(assignment [m] int32, distances [m])``, the distances in the
      dtype of the inputs.

    Raises:
      ValueError: as described under Bad input.

    Examples:
      >>> import jax.numpy as jnp
      >>> centroids = jnp.array([[0.0, 0.0], [10.0, 0.0]])
      >>> out = kmeans_assign(centroids, jnp.array([[1.0, 1.0], [9.0, 0.0]]))
      >>> out.assignment.tolist(), out.distances.tolist()
      ([0, 1], [2.0, 1.0])
    """
    centroids, x = checks.point_pair(centroids, x, ("centroids", "x"))
    if centroids.shape[0] == 0:
        raise ValueError(f"`centroids` must hold at least one centroid, got {centroids.shape}.")
    return _assign(centroids, x)


@jax.jit
def _assign(centroids, x) -> KMeansAssignOutput:
    dtype = x.dtype
    work = checks.compute_dtype(dtype)
    c, x = centroids.astype(work), x.astype(work)
    labels = jnp.argmin(_squared_euclidean_core(x, c), axis=1).astype(jnp.int32)
    diff = x - c[labels]
    dist = jnp.sum(diff * diff, axis=1)
    ok = jnp.all(jnp.isfinite(x), axis=1) & jnp.all(jnp.isfinite(c))
    return KMeansAssignOutput(jnp.where(ok, labels, -1), jnp.where(ok, dist, jnp.nan).astype(dtype))


# --------------------------------------------------------------------------------------------
# Mini-batch k-means.
# --------------------------------------------------------------------------------------------


class _MiniState(NamedTuple):
    step: jax.Array
    centroids: jax.Array
    counts: jax.Array
    ewa: jax.Array
    best: jax.Array
    no_improve: jax.Array
    since: jax.Array
    done: jax.Array


def _minibatch(key, xc, w, pos, c0, tol_abs, *, batch: int, steps: int, patience: int, ratio):
    """Sculley's updates from ``c0``: ``(centroids, n_steps, converged)``.

    Each step draws ``batch`` rows uniformly with replacement, assigns them to their nearest
    centroid and moves every centroid to the weighted mean of all the points it has ever been
    given (per-centroid learning rate ``batch weight / accumulated weight``). Every ``10 k``
    sampled rows, centroids whose accumulated weight is below ``ratio`` times the largest are
    moved to batch points drawn in proportion to their weights (scikit-learn's reassignment).
    Stops when the centroids moved by at most ``tol_abs > 0`` in one step, or when the exponentially
    weighted average of the batch inertia has not improved for ``patience`` steps.
    """
    n, k = xc.shape[0], c0.shape[0]
    alpha = min(1.0, 2.0 * batch / (n + 1))
    n_new = min(k, batch)

    def body(s: _MiniState) -> _MiniState:
        kb, kr = jax.random.split(jax.random.fold_in(key, s.step))
        idx = jax.random.randint(kb, (batch,), 0, n)
        xb, wb = xc[idx], w[idx]
        d = _sq_dist(xb, s.centroids)
        labels = jnp.argmin(d, axis=1)
        batch_inertia = jnp.sum(wb * jnp.take_along_axis(d, labels[:, None], axis=1)[:, 0])
        bw = jax.ops.segment_sum(wb, labels, num_segments=k)
        bsum = jax.ops.segment_sum(wb[:, None] * xb, labels, num_segments=k)
        counts = s.counts + bw
        safe = jnp.where(counts > 0, counts, 1.0)
        new = jnp.where(
            (bw > 0)[:, None], (s.centroids * s.counts[:, None] + bsum) / safe[:, None], s.centroids
        )
        # reassignment of the centroids that (almost) never win a point
        since = s.since + batch
        due = (since >= 10 * k) & (ratio > 0)
        low = due & (counts < ratio * jnp.max(counts))
        gumbel = jax.random.gumbel(kr, (batch,), xc.dtype)
        score = jnp.where(wb > 0, jnp.log(jnp.where(wb > 0, wb, 1.0)) + gumbel, -jnp.inf)
        _, pick = lax.top_k(score, n_new)
        rank = jnp.clip(jnp.cumsum(low) - 1, 0, n_new - 1)
        low = low & (jnp.cumsum(low) <= n_new) & jnp.take(score[pick] > -jnp.inf, rank)
        new = jnp.where(low[:, None], xb[pick[rank]], new)
        floor = jnp.min(jnp.where(low, jnp.inf, counts))
        counts = jnp.where(low, jnp.where(jnp.isfinite(floor), floor, 1.0), counts)
        since = jnp.where(due, 0, since)

        shift = jnp.sum((new - s.centroids) ** 2)
        per_sample = batch_inertia / jnp.maximum(jnp.sum(wb), jnp.finfo(xc.dtype).tiny)
        ewa = jnp.where(s.step == 0, per_sample, (1.0 - alpha) * s.ewa + alpha * per_sample)
        improved = ewa < s.best
        no_improve = jnp.where(improved, 0, s.no_improve + 1)
        done = ((tol_abs > 0) & (shift <= tol_abs)) | ((patience > 0) & (no_improve >= patience))
        return _MiniState(
            s.step + 1, new, counts, ewa, jnp.minimum(s.best, ewa), no_improve, since, done
        )

    s0 = _MiniState(
        jnp.asarray(0, jnp.int32),
        c0,
        jnp.zeros((k,), xc.dtype),
        jnp.asarray(jnp.inf, xc.dtype),
        jnp.asarray(jnp.inf, xc.dtype),
        jnp.asarray(0, jnp.int32),
        jnp.asarray(0, jnp.int32),
        jnp.asarray(False),
    )
    s = lax.while_loop(lambda s: (s.step < steps) & ~s.done, body, s0)
    return s.centroids, s.step, s.done


@functools.partial(
    jax.jit, static_argnames=("k", "batch_size", "max_steps", "init_size", "patience")
)
def _minibatch_kmeans(
    x, w, key, init, tol, ratio, bad, *, k, batch_size, max_steps, init_size, patience
) -> KMeansOutput:
    n = x.shape[0]
    bad = (
        bad
        | checks.invalid_scalar(tol, "nonnegative")
        | checks.invalid_scalar(ratio, "nonnegative")
    )
    xc, w, pos, mean, variance, bad = _centre(x, w, bad)
    tol_abs = jnp.where(bad, 0.0, tol) * jnp.mean(variance)
    ratio = jnp.where(bad, 0.0, ratio)

    k_init, k_loop = jax.random.split(key)
    if init is None:
        k_sub, k_pp = jax.random.split(k_init)
        # k-means++ on a random subset of init_size rows (scikit-learn's init_size); a subset
        # whose positive weights are too few falls back to the full data's weights
        sub = jax.random.permutation(k_sub, n)[:init_size]
        w_sub = w[sub]
        enough = jnp.sum(w_sub > 0) >= k
        c0 = lax.cond(
            enough,
            lambda: _kmeans_pp(k_pp, xc[sub], w_sub, w_sub > 0, k),
            lambda: _kmeans_pp(k_pp, xc, w, pos, k),
        )
    else:
        c0 = jnp.where(bad, 0.0, init - mean)
    cents, steps, conv = _minibatch(
        k_loop,
        xc,
        w,
        pos,
        c0,
        tol_abs,
        batch=batch_size,
        steps=max_steps,
        patience=patience,
        ratio=ratio,
    )
    labels = jnp.argmin(_sq_dist(xc, cents), axis=1).astype(jnp.int32)
    inertia = jnp.sum(w * _own_dist(xc, cents, labels))
    labels = jnp.where(pos, labels, _stray_labels(x, pos, mean, cents))
    out = KMeansOutput(cents + mean, labels, inertia, steps, conv)
    return checks.nan_if(bad, out)


def minibatch_kmeans(
    x: jax.typing.ArrayLike,
    *,
    k: int,
    key: jax.Array | None = None,
    batch_size: int = 1024,
    max_steps: int | None = None,
    tol: jax.typing.ArrayLike = 0.0,
    max_no_improvement: int | None = 10,
    reassignment_ratio: jax.typing.ArrayLike = 0.01,
    weights: jax.typing.ArrayLike | None = None,
    init: jax.typing.ArrayLike | None = None,
    init_size: int | None = None,
) -> KMeansOutput:
    """Mini-batch k-means (Sculley 2010): k-means for large ``n``, one small batch per step.

    Each step draws ``batch_size`` rows uniformly with replacement, assigns them to their
    nearest centroid and moves each centroid to the weighted mean of every point it has been
    given so far (a per-centroid step size ``batch weight / accumulated weight``), so a step
    costs ``O(batch_size k d)`` whatever ``n``. Seeding is greedy k-means++ on ``init_size``
    random rows (default ``3 * batch_size``, at least ``k``), as scikit-learn's
    ``MiniBatchKMeans``; so are the defaults and the stopping rules: at most ``max_steps`` steps
    (default 100 passes over the data, ``100 * ceil(n / batch_size)``), stopping early when the
    centroids moved by at most ``tol`` times the mean per-feature variance of ``x`` in one step
    (``tol=0``, the default, disables this rule) or when an exponentially weighted average of
    the batch inertia has not improved for ``max_no_improvement`` steps (``None`` disables it).
    Every ``10 k`` sampled rows, centroids whose accumulated weight is below
    ``reassignment_ratio`` times the largest one restart at batch points drawn in proportion to
    their weights (scikit-learn's rule against dead centroids; ``0`` disables it).

    The output is that of :func:`kmeans`, computed on the full data at the end: every row's
    nearest centroid and the inertia ``sum_i w_i ||x_i - c_{label_i}||^2``; ``n_iters`` counts
    the steps and ``converged`` says an early-stopping rule fired. The inertia is usually a few
    percent above that of :func:`kmeans` (measured against scikit-learn in
    ``benchmarks/coordination.py``). Zero-weight rows, bad input and dtypes follow
    :func:`kmeans`. The random batches depend on ``key`` only (also with ``init``), so a call
    is reproducible; ``jax.vmap`` over keys runs independent fits.

    Args:
      x: Array of shape ``[n, d]``, the points (rows).
      k: Number of clusters (static int in ``[1, n]``).
      key: A ``jax.random`` key for the seeding and the batches (required, also with ``init``).
      batch_size: Rows per step (static int ``>= 1``; at most ``n`` are used).
      max_steps: Steps at most (static int ``>= 1``), ``None`` for ``100 * ceil(n / batch)``.
      tol: Non-negative tolerance on the centroids' total squared movement in one step,
        relative to the mean per-feature variance of ``x`` (traced).
      max_no_improvement: Patience of the smoothed-inertia rule (static int ``>= 1``) or
        ``None``.
      reassignment_ratio: Non-negative threshold of the dead-centroid rule (traced).
      weights: Optional non-negative array of shape ``[n]``; ``None`` means all ones.
      init: Optional array of shape ``[k, d]``, the initial centroids.
      init_size: Rows for the k-means++ seeding (static int in ``[k, n]``), ``None`` for
        ``min(n, max(3 * batch_size, k))``.

    Returns:
      A :class:`KMeansOutput` ``(centroids [k, d], assignment [n], inertia [], n_iters [],
      converged [])``.

    Raises:
      ValueError: as :func:`kmeans`, and for a ``batch_size``, ``max_steps``,
        ``max_no_improvement`` or ``init_size`` out of range, or a negative or non-finite
        ``reassignment_ratio``.

    References:
      Sculley, "Web-scale k-means clustering", WWW 2010; scikit-learn's ``MiniBatchKMeans``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> x = jnp.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]] * 50)
      >>> out = minibatch_kmeans(x, k=2, key=jax.random.key(0), batch_size=16)
      >>> sorted((jnp.round(out.centroids, 1) + 0.0).tolist()), round(float(out.inertia))
      ([[0.0, 0.5], [10.0, 0.5]], 50)
    """
    x, k, dtype, w, bad, init = _parse(x, k, weights, init)
    n = x.shape[0]
    batch_size = min(checks.static_int(batch_size, "batch_size", minimum=1), n)
    max_steps = checks.static_int(max_steps, "max_steps", minimum=1, allow_none=True)
    if max_steps is None:
        max_steps = 100 * -(-n // batch_size)
    patience = checks.static_int(
        max_no_improvement, "max_no_improvement", minimum=1, allow_none=True
    )
    init_size = checks.static_int(init_size, "init_size", minimum=1, allow_none=True)
    if init_size is None:
        init_size = min(n, max(3 * batch_size, k))
    elif not k <= init_size <= n:
        raise ValueError(
            f"`init_size`={init_size} must be in [k, n] = [{k}, {n}] for k={k} and x: {x.shape}."
        )
    checks.scalar(tol, "tol", "nonnegative")
    checks.scalar(reassignment_ratio, "reassignment_ratio", "nonnegative")
    key = checks.prng_key(key, " for the mini-batches (and the k-means++ seeding)")
    out = _minibatch_kmeans(
        x.astype(dtype),
        w,
        key,
        init,
        tol,
        reassignment_ratio,
        bad,
        k=k,
        batch_size=batch_size,
        max_steps=max_steps,
        init_size=init_size,
        patience=patience or 0,
    )
    return out._replace(
        centroids=out.centroids.astype(x.dtype), inertia=out.inertia.astype(x.dtype)
    )
