"""1-NN under DTW on Trace: the LB_Keogh-pruned search against the exhaustive one.

Run from the repository root::

    python -m benchmarks.lb_keogh            # 100 queries x 100 references, t = 275, window 28
    python -m benchmarks.lb_keogh --quick    # 20 x 20, every 5th frame: a smoke run

Data: tslearn's bundled Trace data set (``CachedDatasets().load_dataset("Trace")``, no download):
the test split as queries, the train split as references, float32, ``window`` = ``round(0.1 * t)``
(10 % of the length: 28 for t = 275). Both methods are jitted and compiled first (one untimed call),
then timed over 3 calls each ending in ``jax.block_until_ready``; the medians are printed, with
their ratio and the fraction of the exact DTWs the pruned search computed. The two must agree on
every neighbour (the script exits with status 1 otherwise).

* exhaustive: ``alignment.pairwise(lambda x, y: dtw_points(x, y, window=window), queries,
  references)`` then ``argmin`` over the references;
* pruned: ``dtw_nearest_neighbor(queries, references, window=window, chunk_size=c)``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import alignment as al
from alignment._src.lower_bounds import dtw_nearest_neighbor


def _median_time(fn, *args, repeats: int = 3) -> float:
    jax.block_until_ready(fn(*args))  # compile + warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 x 20 series, every 5th frame")
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args(argv)

    from tslearn.datasets import CachedDatasets

    x_train, _, x_test, _ = CachedDatasets().load_dataset("Trace")
    if args.quick:
        x_train, x_test = x_train[:20, ::5], x_test[:20, ::5]
    queries = jnp.asarray(x_test, jnp.float32)
    references = jnp.asarray(x_train, jnp.float32)
    q, t, d = queries.shape
    m = references.shape[0]
    window = max(1, round(0.1 * t))
    print(f"Trace: {q} queries x {m} references, t={t}, d={d}, window={window}")
    print(f"backend: {jax.default_backend()} ({jax.devices()[0].device_kind})")

    @jax.jit
    def exhaustive(qs, rs):
        dist = al.pairwise(lambda x, y: al.dtw_points(x, y, window=window), qs, rs)
        return jnp.argmin(dist, axis=1), jnp.min(dist, axis=1)

    t_ex = _median_time(exhaustive, queries, references)
    idx_ex, dist_ex = (np.asarray(a) for a in exhaustive(queries, references))
    print(f"exhaustive: {t_ex:.3f} s (median of 3), {q * m} DTWs")
    ok = True
    for chunk in args.chunks:
        pruned = jax.jit(
            lambda qs, rs, c=chunk: dtw_nearest_neighbor(qs, rs, window=window, chunk_size=c)
        )
        t_pr = _median_time(pruned, queries, references)
        out = pruned(queries, references)
        same = bool(np.array_equal(np.asarray(out.index), idx_ex))
        close = bool(np.allclose(np.asarray(out.distance), dist_ex, rtol=1e-5))
        ok &= same and close
        n = np.asarray(out.n_dtw)
        print(
            f"pruned (chunk_size={chunk}): {t_pr:.3f} s (median of 3), "
            f"speed-up x{t_ex / t_pr:.2f}; "
            f"DTWs computed {n.sum()} / {q * m} = {n.sum() / (q * m):.3f} "
            f"(per query: mean {n.mean():.1f}, max {n.max()}); same neighbours: {same}, "
            f"distances allclose: {close}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
