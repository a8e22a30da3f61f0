"""Time-series toolbox: subsequence DTW, Itakura DTW, barycenters and LB_Keogh against peers.

Run from the repository root::

    python -m benchmarks.series_toolbox                  # CPU sizes (about 3 minutes on 2 cores)
    python -m benchmarks.series_toolbox --quick          # tiny sizes: a smoke test
    python -m benchmarks.series_toolbox --out PATH.json  # results as JSON (default under results/)

Data (float32; the same arrays go to ours and to the peer): tslearn's bundled Trace data set
(``CachedDatasets().load_dataset("Trace")``, no download; univariate, ``t = 275``) and seeded
Gaussian random walks. The quick configuration subsamples Trace (every 5th or 11th frame) and
shrinks every set.

1. **subsequence DTW** (``subsequence_dtw``): 8 random-walk queries of 50 frames, each searched
   in one random-walk series of 2000 frames (each query is a noisy, time-warped copy of a stretch
   of the series), squared Euclidean cost.

   * ours: ``jit(vmap(lambda q, s: subsequence_dtw(squared_euclidean(q, s)), in_axes=(0, None)))``
     (value, start, end and the 0/1 alignment matrix);
   * dtw-python: ``dtw.dtw(q, s, dist_method="sqeuclidean", step_pattern=StepPattern(
     symmetric1.mx, hint="N"), open_begin=True, open_end=True)`` in a loop (dtw-python accepts an
     open begin only for a pattern normalised by the query length; the normalisation divides
     every candidate end by the same ``t``, so its ``distance`` is our value; this is what
     ``tests/test_subsequence.py`` compares). It computes the path too (``index2``: start, end).

2. **DTW with the Itakura parallelogram** (``itakura_max_slope=2.0``): 100 pairs (Trace train
   ``[k]`` against test ``[k]``).

   * ours: ``jit(vmap(lambda x, y: dtw_points(x, y, itakura_max_slope=2.0)))``;
   * tslearn: ``metrics.dtw(x, y, global_constraint="itakura", itakura_max_slope=2.0) ** 2`` in a
     loop (tslearn returns the square root of the path's sum of squared distances; our band is
     tslearn's ``itakura_mask`` cell for cell, see ``tests/test_itakura.py``).

3. **DBA barycenter** of 20 Trace series of class 4 (train split), from the same initial
   barycenter (their mean), 10 updates each:

   * ours: ``jit(lambda xs, z: dtw_barycenter(xs, init=z, max_iters=10, tol=1e-12))`` (a tol so
     small that it stops early only at an exact fixed point, where tslearn's updates change
     nothing either);
   * tslearn: ``barycenters.dtw_barycenter_averaging(xs, init_barycenter=z, max_iter=10, tol=-1)``
     (``tol=-1``: exactly ``max_iter`` updates, as in ``tests/test_dtw_barycenter.py``).

4. **soft-DTW barycenter** of the same 20 series, ``gamma = 1``, same init, at most 100
   iterations, ``tol = 1e-6`` for both (relative decrease or gradient max-norm, scipy's L-BFGS-B
   criteria, which tslearn passes on):

   * ours: ``jit(lambda xs, z: soft_dtw_barycenter(xs, gamma=1.0, init=z, max_iters=100,
     tol=1e-6))`` (float32 L-BFGS in ``lax.while_loop``);
   * tslearn: ``barycenters.softdtw_barycenter(xs, gamma=1.0, init=z, max_iter=100, tol=1e-6)``
     (scipy L-BFGS-B, float64).

5. **LB_Keogh**, window 28 (10 % of 275), all 20 x 20 pairs of the first 20 Trace test
   queries and train candidates (not 100 x 100: tslearn's ``lb_keogh`` costs about 10 ms a pair
   in Python overhead, converting and checking its inputs, so 10 000 pairs take minutes a call):

   * ours: ``jit(pairwise(lambda q, c: lb_keogh(q, c, window=28), queries, candidates))``;
   * tslearn: ``metrics.lb_keogh(q, c, radius=28) ** 2`` in a double loop (it returns the square
     root; both recompute the candidate's envelope for every pair).

6. **1-NN under DTW** with the Sakoe-Chiba band ``window = 28`` (10 % of the length), the
   first 50 Trace test queries against the first 50 train references (100 x 100 makes the
   exhaustive search about a minute a call on two cores), ours only (the quick configuration:
   8 x 8 at ``t = 55``, window 5):

   * ours-pruned: ``jit(dtw_nearest_neighbor(queries, references, window=28, chunk_size=4))``
     (LB_Keogh pruning);
   * ours-exhaustive: ``jit`` of ``pairwise(dtw_points(..., window=28))`` then ``argmin`` (the
     "peer" of this section: what the pruning saves).

Timing: each method runs in a fresh subprocess; JAX methods are compiled ahead of time
(``jax.jit(f).lower(*args).compile()``), then one warm-up call, then ``repeats`` timed calls
ending in ``jax.block_until_ready``; peers get the same warm-up call, in which numba compiles
tslearn's kernels. The table shows the median; ``compile+1st s`` is the AOT compilation plus
the warm-up call (for tslearn: numba's compilation plus one call). ``ours/peer`` is our median
over the peer's (below 1: ours is faster). The NumPy peers run with NumPy's BLAS limited to one
thread (``threadpoolctl``), as in ``benchmarks/gaussian.py``: tslearn's tiny vector products
only lose to OpenBLAS's threading on a shared two-core machine; numba code is single-threaded.
The quick configuration runs tslearn with ``NUMBA_DISABLE_JIT=1`` (pure Python, tiny sizes):
numba's compilation alone takes 5 to 15 s per worker, more than the whole smoke run may take, so
the quick timings of tslearn mean nothing.

Errors (``err``: each row against a float64 reference on the same float32-rounded inputs):

1. ``max_i |v_i - ref_i| / |ref_i|`` of the values; the reference is a float64 NumPy dynamic
   programme (open begin and open end, vectorised over anti-diagonals, written here, never our
   code) that also tracks the start; ``check`` counts the queries whose start and end agree.
2. The same relative error; reference: the float64 NumPy DP restricted to tslearn's Itakura mask
   (``metrics.itakura_mask``, returned untimed by the tslearn worker: the band is tslearn's, not
   ours).
3. and 4. The objective ``F(z) = sum_k dtw(z, x_k)`` (3, squared Euclidean cost) or
   ``sum_k soft_dtw_gamma(z, x_k)`` (4), evaluated in float64 by the NumPy DP at each method's
   barycenter: ``(F(z) - F(z_ref)) / |F(z_ref)|`` with ``z_ref`` **tslearn's barycenter
   computed on the float64 inputs** (with the same settings; the inputs are the same
   float32-rounded values, so tslearn's own row differs from it only where tslearn keeps float32
   arrays: not at all for DBA, about 1e-12 relative for the soft barycenter, whose L-BFGS-B
   iterates start from the float32 init). ``check`` gives ``max |z - z_ref|`` and,
   for the soft barycenter, the iterations. The soft objective is negative at ``gamma = 1``
   (``-gamma log`` of the number of paths dominates), which makes relative differences look
   small; ``check`` therefore also gives the gap as a fraction of the decrease from the init,
   ``(F(z) - F(z_ref)) / (F(init) - F(z_ref))``.
5. ``max |lb - ref| / max(|ref|, 1e-6 max |ref|)`` over the pairs (relative, with a
   floor: a pair whose query lies inside the envelope has a bound of exactly 0); reference:
   float64 NumPy envelopes (running min / max by ``sliding_window_view``) and the squared
   distances to them.
6. The neighbour distances against the float64 NumPy banded DP of each query and the neighbour
   the exhaustive search chose; ``check``: how many neighbours agree with the exhaustive search
   and the fraction of the exact DTWs the pruned search computed.

Pass criterion (exit status 1 otherwise), on our float32 errors: ``<= 2e-4`` for sections 1, 2
and 6, ``<= 1e-5`` for 5, ``(F(z) - F(z_ref)) / |F(z_ref)| <= 1e-4`` for DBA (float32 updates; a
near-tie between two DTW paths may flip and move a few frames slightly) and ``<= 1e-4`` for the
soft barycenter (a different optimiser stopping at a relative decrease of ``1e-6``: ours may end
slightly higher or lower); for 1, every start and end must agree, and for 6 every neighbour.
Peers' errors are reported, not checked. Why ``2e-4`` and not ``1e-5`` for the DTW values (1, 2
and 6): ours builds the cost matrix with ``squared_euclidean``, i.e. ``|x|^2 + |y|^2 - 2 x.y``
after centring on the median, whose documented absolute error is about ``eps * max |x -
centre|^2`` per cell (``eps = 6e-8`` in float32), not relative to the cell. A path adds a few
hundred such errors (``t + s`` cells at most) while the value of a good match is small: random
walks of 2000 steps span tens of units (``|x - centre|^2`` in the hundreds) for per-cell costs
of about ``0.1``, and Trace's near neighbours have values of a few units over 275+ cells. That
gives a few 1e-5 relative (measured: 5e-5 to 8e-5 on the cpu sizes, 2e-6 to 1e-5 on the quick
ones); ``2e-4`` leaves a margin of about 3. The dynamic programme itself adds only float32
rounding of the sums (about 1e-7 relative). LB_Keogh uses exact differences: ``1e-5``.

Memory, measured in each method's own process (see ``benchmarks._harness``): ``peak MB`` is the
peak RSS above the RSS after imports and inputs, compilation included (XLA / LLVM, numba);
``call MB`` is the peak RSS during the timed calls above the RSS just before them; ``XLA temp
MB`` is the compiled program's scratch memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import _harness as h

MODULE = "benchmarks.series_toolbox"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "series_toolbox_cpu.json"
SEED = 0
# Our float32 errors against the float64 references (see the module docstring).
TOLS = {
    "subseq": 2e-4,  # expanded squared Euclidean cost: see the module docstring
    "itakura": 2e-4,
    "dba": 1e-4,
    "softbary": 1e-4,
    "lbkeogh": 1e-5,
    "nn": 2e-4,
}

CONFIGS: dict[str, dict[str, Any]] = {
    "cpu": {
        "subseq": {"n_queries": 8, "t": 50, "s": 2000},
        "trace_step": 1,  # every frame of Trace (t = 275)
        "n_pairs": 100,  # Itakura pairs
        "slope": 2.0,
        "n_bary": 20,
        "dba_iters": 10,
        "gamma": 1.0,
        "soft_iters": 100,
        "soft_tol": 1e-6,
        "n_lb": 20,  # LB_Keogh queries and candidates (tslearn: ~10 ms a pair)
        "n_nn": 50,  # 1-NN queries and references (exhaustive 100 x 100: a minute a call)
        "window": 28,
        "chunk_size": 4,
        "numba_jit": True,
        "repeats": {
            "subseq": {"ours": 10, "dtw-python": 5},
            "itakura": {"ours": 10, "tslearn": 5},
            "dba": {"ours": 3, "tslearn": 3},
            "softbary": {"ours": 3, "tslearn": 2},
            "lbkeogh": {"ours": 10, "tslearn": 2},
            "nn": {"ours-pruned": 3, "ours-exhaustive": 1},
        },
    },
    "quick": {
        "subseq": {"n_queries": 2, "t": 10, "s": 200},
        "trace_step": 5,  # t = 55
        "bary_step": 11,  # t = 25 for the barycenters (pure-Python tslearn)
        "n_pairs": 8,
        "slope": 2.0,
        "n_bary": 3,
        "dba_iters": 3,
        "gamma": 1.0,
        "soft_iters": 5,
        "soft_tol": 1e-6,
        "n_lb": 6,
        "n_nn": 8,
        "window": 5,
        "chunk_size": 2,
        "numba_jit": False,
        "repeats": {},  # 1 each
    },
}
SECTIONS = (
    ("subseq", "subsequence DTW", ("ours", "dtw-python")),
    ("itakura", "DTW Itakura", ("ours", "tslearn")),
    ("dba", "DBA barycenter", ("ours", "tslearn")),
    ("softbary", "soft-DTW barycenter", ("ours", "tslearn")),
    ("lbkeogh", "LB_Keogh", ("ours", "tslearn")),
    ("nn", "1-NN DTW", ("ours-pruned", "ours-exhaustive")),
)


# --------------------------------------------------------------------------------------------
# The methods. Each JAX builder maps (inputs, config) to (jitted function, argument tuple,
# function from its output to a dict of arrays); each NumPy method maps (inputs, config) to a
# dict of arrays. Imports are local: a worker imports only its own library.
# --------------------------------------------------------------------------------------------


def _ours_subseq(data, cfg):
    import jax

    import alignment as al

    def one(q, s):
        return al.subsequence_dtw(al.squared_euclidean(q, s))

    fn = jax.jit(jax.vmap(one, in_axes=(0, None)))
    return fn, (data["sub_q"], data["sub_s"]), lambda o: {
        "value": o.value, "start": o.start, "end": o.end
    }  # fmt: skip


def _ours_itakura(data, cfg):
    import jax

    import alignment as al

    slope = cfg["slope"]
    fn = jax.jit(jax.vmap(lambda x, y: al.dtw_points(x, y, itakura_max_slope=slope)))
    return fn, (data["ita_x"], data["ita_y"]), lambda o: {"value": o}


def _ours_dba(data, cfg):
    import jax

    import alignment as al

    iters = cfg["dba_iters"]
    fn = jax.jit(lambda xs, z: al.dtw_barycenter(xs, init=z, max_iters=iters, tol=1e-12))
    return fn, (data["bary_xs"], data["bary_init"]), lambda o: {
        "barycenter": o.barycenter, "n_iters": o.n_iters
    }  # fmt: skip


def _ours_softbary(data, cfg):
    import jax

    import alignment as al

    gamma, iters, tol = cfg["gamma"], cfg["soft_iters"], cfg["soft_tol"]

    def fn(xs, z):
        return al.soft_dtw_barycenter(xs, gamma=gamma, init=z, max_iters=iters, tol=tol)

    return jax.jit(fn), (data["bary_xs"], data["bary_init"]), lambda o: {
        "barycenter": o.barycenter, "n_iters": o.n_iters
    }  # fmt: skip


def _ours_lbkeogh(data, cfg):
    import jax

    import alignment as al

    window = cfg["window"]
    fn = jax.jit(lambda q, c: al.pairwise(lambda a, b: al.lb_keogh(a, b, window=window), q, c))
    return fn, (data["lb_q"], data["lb_c"]), lambda o: {"value": o}


def _ours_nn_pruned(data, cfg):
    import jax

    import alignment as al

    window, chunk = cfg["window"], cfg["chunk_size"]
    fn = jax.jit(lambda q, r: al.dtw_nearest_neighbor(q, r, window=window, chunk_size=chunk))
    return fn, (data["nn_q"], data["nn_r"]), lambda o: {
        "index": o.index, "distance": o.distance, "n_dtw": o.n_dtw
    }  # fmt: skip


def _ours_nn_exhaustive(data, cfg):
    import jax
    import jax.numpy as jnp

    import alignment as al

    window = cfg["window"]

    def fn(q, r):
        dist = al.pairwise(lambda a, b: al.dtw_points(a, b, window=window), q, r)
        return jnp.argmin(dist, axis=1), jnp.min(dist, axis=1)

    return jax.jit(fn), (data["nn_q"], data["nn_r"]), lambda o: {
        "index": o[0], "distance": o[1]
    }  # fmt: skip


def _dtw_python_subseq(data, cfg):
    import dtw

    pattern = dtw.StepPattern(dtw.symmetric1.mx, hint="N")
    series = data["sub_s"]
    out = {"value": [], "start": [], "end": []}
    for q in data["sub_q"]:
        a = dtw.dtw(q, series, dist_method="sqeuclidean", step_pattern=pattern,
                    open_begin=True, open_end=True)  # fmt: skip
        out["value"].append(a.distance)
        out["start"].append(a.index2[0])
        out["end"].append(a.index2[-1])
    return {k: np.asarray(v) for k, v in out.items()}


def _tslearn_itakura(data, cfg):
    from tslearn.metrics import dtw

    x, y, slope = data["ita_x"], data["ita_y"], cfg["slope"]
    values = [
        dtw(x[k], y[k], global_constraint="itakura", itakura_max_slope=slope) ** 2
        for k in range(x.shape[0])
    ]
    return {"value": np.asarray(values)}


def _tslearn_itakura_mask(data, cfg):
    """tslearn's Itakura mask for the shapes of section 2 (untimed; the reference's band)."""
    from tslearn.metrics import itakura_mask

    t, s = data["ita_x"].shape[1], data["ita_y"].shape[1]
    return {"mask": np.asarray(itakura_mask(t, s, cfg["slope"]), bool)}


def _tslearn_dba(data, cfg):
    from tslearn.barycenters import dtw_barycenter_averaging

    z = dtw_barycenter_averaging(
        data["bary_xs"], init_barycenter=data["bary_init"], max_iter=cfg["dba_iters"], tol=-1
    )
    return {"barycenter": np.asarray(z)}


def _tslearn_softbary(data, cfg):
    from tslearn.barycenters import softdtw_barycenter

    z = softdtw_barycenter(
        data["bary_xs"],
        gamma=cfg["gamma"],
        init=data["bary_init"],
        max_iter=cfg["soft_iters"],
        tol=cfg["soft_tol"],
    )
    return {"barycenter": np.asarray(z)}


def _tslearn_lbkeogh(data, cfg):
    from tslearn.metrics import lb_keogh

    q, c, w = data["lb_q"], data["lb_c"], cfg["window"]
    values = [[lb_keogh(a, b, radius=w) ** 2 for b in c] for a in q]
    return {"value": np.asarray(values)}


JAX_BUILDERS = {
    "subseq:ours": _ours_subseq,
    "itakura:ours": _ours_itakura,
    "dba:ours": _ours_dba,
    "softbary:ours": _ours_softbary,
    "lbkeogh:ours": _ours_lbkeogh,
    "nn:ours-pruned": _ours_nn_pruned,
    "nn:ours-exhaustive": _ours_nn_exhaustive,
}
NUMPY_METHODS = {
    "subseq:dtw-python": _dtw_python_subseq,
    "itakura:tslearn": _tslearn_itakura,
    "dba:tslearn": _tslearn_dba,
    "softbary:tslearn": _tslearn_softbary,
    "lbkeogh:tslearn": _tslearn_lbkeogh,
}
# tslearn's barycenters also run on the float64 inputs: that is the reference of 3 and 4
FLOAT64_REFERENCE = {"dba:tslearn", "softbary:tslearn"}
# untimed extra outputs of a worker, after the measurements
EXTRA_OUTPUTS = {"itakura:tslearn": _tslearn_itakura_mask}
# imported before the measurements (the baseline RSS is taken after them)
PEER_IMPORTS = {
    "subseq:dtw-python": ("dtw",),
    "itakura:tslearn": ("tslearn.metrics",),
    "dba:tslearn": ("tslearn.barycenters",),
    "softbary:tslearn": ("tslearn.barycenters",),
    "lbkeogh:tslearn": ("tslearn.metrics",),
}


# --------------------------------------------------------------------------------------------
# Worker: one method on one input file, in its own process.
# --------------------------------------------------------------------------------------------


def _one_blas_thread():
    """Limits NumPy's BLAS to one thread where threadpoolctl is installed (a no-op otherwise)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def run_method(method: str, config: str, inputs: Path, output: Path, repeats: int) -> None:
    """Times ``method`` on the arrays in ``inputs`` and writes ``output`` (.json and .npz)."""
    cfg = CONFIGS[config]
    if not cfg["numba_jit"]:
        os.environ["NUMBA_DISABLE_JIT"] = "1"  # before numba is imported (tslearn imports it)
    with np.load(inputs) as z:
        data = {k: z[k] for k in z.files}
    extra: dict[str, Any] = {}
    if method in JAX_BUILDERS:
        import jax

        jitted, args, to_dict = JAX_BUILDERS[method](data, cfg)
        args = jax.device_put(args)
        jax.block_until_ready(args)
        device_base = h.device_memory_mb()
        holder: dict[str, Any] = {}

        def setup():
            holder["compiled"] = jitted.lower(*args).compile()

        def call():
            return jax.block_until_ready(holder["compiled"](*args))

        out, stats = h.measure(call, repeats=repeats, setup=setup)
        outputs = {k: np.asarray(v) for k, v in to_dict(out).items()}
        stats["xla"] = h.xla_memory_mb(holder["compiled"])
        device_end = h.device_memory_mb()
        if device_base is not None and device_end is not None:
            stats["device_peak_mb"] = device_end["peak_mb"] - device_base["in_use_mb"]
        extra["device"] = h.jax_device_info()
    elif method in NUMPY_METHODS:
        import importlib

        for name in PEER_IMPORTS.get(method, ()):
            importlib.import_module(name)
        fn = NUMPY_METHODS[method]
        with _one_blas_thread():
            outputs, stats = h.measure(lambda: fn(data, cfg), repeats=repeats)
            if method in FLOAT64_REFERENCE:
                data64 = {k: v.astype(np.float64) for k, v in data.items()}
                outputs = outputs | {k + "64": v for k, v in fn(data64, cfg).items()}
            if method in EXTRA_OUTPUTS:
                outputs = outputs | EXTRA_OUTPUTS[method](data, cfg)
    else:
        raise ValueError(f"unknown method {method!r}")
    np.savez(output.with_suffix(".npz"), **outputs)
    output.with_suffix(".json").write_text(json.dumps({**stats, **extra}))


# --------------------------------------------------------------------------------------------
# Inputs and the float64 references (NumPy, never our code).
# --------------------------------------------------------------------------------------------


def _walks(rng, shape):
    """Standard Gaussian random walks along axis 1, float64."""
    return np.cumsum(rng.standard_normal(shape), axis=1)


def load_trace() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``CachedDatasets().load_dataset("Trace")``: the npz file it reads, without importing tslearn.

    (Importing ``tslearn.datasets`` costs the driver about 3 s of CPU: tslearn, scikit-learn and
    numba.)
    """
    import importlib.util

    spec = importlib.util.find_spec("tslearn")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("tslearn is not installed: its bundled Trace data set is needed")
    path = Path(next(iter(spec.submodule_search_locations))) / ".cached_datasets" / "Trace.npz"
    with np.load(path) as z:
        return z["X_train"], z["y_train"], z["X_test"], z["y_test"]


def make_inputs(config: str, seed: int = SEED) -> dict[str, np.ndarray]:
    """Every section's float32 inputs (Trace subsets and seeded random walks)."""
    cfg = CONFIGS[config]
    x_train, y_train, x_test, _ = load_trace()
    step = cfg["trace_step"]
    train, test = x_train[:, ::step], x_test[:, ::step]
    bary_step = cfg.get("bary_step", step)
    bary = x_train[y_train == 4][: cfg["n_bary"], ::bary_step]
    rng = np.random.default_rng([seed, cfg["subseq"]["s"]])
    sub = cfg["subseq"]
    series = _walks(rng, (1, sub["s"], 1))[0]
    # each query: a stretch of the series, warped (resampled at a random speed) plus noise
    queries = []
    for _ in range(sub["n_queries"]):
        span = int(sub["t"] * rng.uniform(0.7, 1.5))
        a = int(rng.integers(0, sub["s"] - span))
        pos = np.sort(rng.uniform(a, a + span - 1, sub["t"]))
        q = np.interp(pos, np.arange(sub["s"]), series[:, 0])
        queries.append(q + 0.3 * rng.standard_normal(sub["t"]))
    n, m, k = cfg["n_pairs"], cfg["n_lb"], cfg["n_nn"]
    f32 = np.float32
    return {
        "sub_q": np.asarray(queries, f32)[..., None],
        "sub_s": series.astype(f32),
        "ita_x": train[:n].astype(f32),
        "ita_y": test[:n].astype(f32),
        "bary_xs": bary.astype(f32),
        "bary_init": bary.astype(f32).mean(axis=0),
        "lb_q": test[:m].astype(f32),
        "lb_c": train[:m].astype(f32),
        "nn_q": test[:k].astype(f32),
        "nn_r": train[:k].astype(f32),
    }


def _sq_cost(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """float64 squared Euclidean costs of batches ``[b, t, d]`` and ``[b, s, d]``: ``[b, t, s]``."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return ((x[:, :, None, :] - y[:, None, :, :]) ** 2).sum(-1)


def dp64(cost, mask=None, gamma=0.0, open_begin=False):
    """float64 (soft-)DTW table of a batch of costs ``[b, t, s]`` over anti-diagonals.

    Steps (1, 0), (0, 1), (1, 1); cells outside ``mask`` ``[t, s]`` are forbidden. With
    ``open_begin`` the path may start in any column of the first row; the start column of the
    best path into each cell is tracked. Returns ``(R [b, t + 1, s + 1], start or None)``.
    """
    b, t, s = cost.shape
    c = cost if mask is None else np.where(mask, cost, np.inf)
    r = np.full((b, t + 1, s + 1), np.inf)
    start = None
    if open_begin:
        r[:, 0, :] = 0.0
        start = np.full((b, t + 1, s + 1), -1, np.int64)
    else:
        r[:, 0, 0] = 0.0
    for k in range(2, t + s + 1):
        i = np.arange(max(1, k - s), min(t, k - 1) + 1)
        j = k - i
        prev = np.stack([r[:, i - 1, j - 1], r[:, i - 1, j], r[:, i, j - 1]])
        low = prev.min(axis=0)
        if gamma == 0.0:
            best = low
        else:
            finite = np.isfinite(low)
            shift = np.where(finite, low, 0.0)
            total = np.exp(-(prev - shift) / gamma).sum(axis=0)
            with np.errstate(divide="ignore"):
                best = np.where(finite, shift - gamma * np.log(total), np.inf)
        r[:, i, j] = c[:, i - 1, j - 1] + best
        if start is not None:
            arg = prev.argmin(axis=0)
            cand = np.stack([start[:, i - 1, j - 1], start[:, i - 1, j], start[:, i, j - 1]])
            chosen = np.take_along_axis(cand, arg[None], axis=0)[0]
            start[:, i, j] = np.where(chosen < 0, j - 1, chosen)
    return r, start


def _dtw64(x, y, mask=None, gamma=0.0):
    """float64 (soft-)DTW values of a batch of pairs (squared Euclidean cost)."""
    r, _ = dp64(_sq_cost(x, y), mask=mask, gamma=gamma)
    return r[:, -1, -1]


def _objective(z, xs, gamma=0.0):
    """``sum_k dtw(z, xs[k])`` (gamma = 0) or ``sum_k soft_dtw_gamma(z, xs[k])``, float64."""
    zs = np.broadcast_to(np.asarray(z, np.float64), (len(xs), *np.shape(z)))
    return float(_dtw64(zs, xs, gamma=gamma).sum())


def _envelope64(c: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """float64 running min and max of ``c [m, t]`` over ``[i - window, i + window]``."""
    from numpy.lib.stride_tricks import sliding_window_view

    c = np.asarray(c, np.float64)
    pad = ((0, 0), (window, window))
    lo = sliding_window_view(np.pad(c, pad, constant_values=np.inf), 2 * window + 1, axis=1)
    up = sliding_window_view(np.pad(c, pad, constant_values=-np.inf), 2 * window + 1, axis=1)
    return lo.min(axis=-1), up.max(axis=-1)


def reference(
    data: dict[str, np.ndarray], cfg: dict[str, Any], itakura_mask: np.ndarray
) -> dict[str, np.ndarray]:
    """The float64 references of sections 1, 2 and 5 (3, 4 and 6 need the methods' outputs).

    ``itakura_mask`` is tslearn's (returned by its worker).
    """
    q, s = data["sub_q"], data["sub_s"]
    r, start = dp64(_sq_cost(q, np.broadcast_to(s, (len(q), *s.shape))), open_begin=True)
    last = r[:, -1, 1:]
    end = last.argmin(axis=1)
    lower, upper = _envelope64(data["lb_c"][..., 0], cfg["window"])
    qq = data["lb_q"][..., 0].astype(np.float64)[:, None, :]
    lb = (np.maximum(qq - upper[None], 0.0) ** 2 + np.maximum(lower[None] - qq, 0.0) ** 2).sum(-1)
    return {
        "subseq_value": last.min(axis=1),
        "subseq_start": start[np.arange(len(q)), -1, end + 1],
        "subseq_end": end,
        "itakura_value": _dtw64(data["ita_x"], data["ita_y"], mask=itakura_mask),
        "lbkeogh_value": lb,
    }


# --------------------------------------------------------------------------------------------
# Errors of one section.
# --------------------------------------------------------------------------------------------


def _rel_floor(values, ref) -> float:
    """``max |v - ref| / max(|ref|, 1e-6 max |ref|)`` (relative, floored for zero bounds)."""
    a, b = np.asarray(values, np.float64), np.asarray(ref, np.float64)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("nan")
    floor = max(1e-6 * float(np.max(np.abs(b))), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), floor)))


def _section_errors(section, results, data, ref, cfg) -> dict[str, dict[str, Any]]:
    """``{method: {"err": float, "check": str, "ok": bool (extra condition), ...}}``."""
    out: dict[str, dict[str, Any]] = {}
    if section == "subseq":
        for name, (_, o) in results.items():
            agree = int(
                np.sum((o["start"] == ref["subseq_start"]) & (o["end"] == ref["subseq_end"]))
            )
            n = len(ref["subseq_end"])
            out[name] = {
                "err": h.max_rel_err(o["value"], ref["subseq_value"]),
                "check": f"start/end {agree}/{n}",
                "start_end_agree": agree,
                "ok": agree == n,
            }
    elif section == "itakura":
        for name, (_, o) in results.items():
            out[name] = {"err": h.max_rel_err(o["value"], ref["itakura_value"]), "check": "-"}
    elif section in ("dba", "softbary"):
        gamma = cfg["gamma"] if section == "softbary" else 0.0
        xs = data["bary_xs"].astype(np.float64)
        z_ref = results["tslearn"][1]["barycenter64"]
        f_ref = _objective(z_ref, xs, gamma)
        f_init = _objective(data["bary_init"], xs, gamma)
        for name, (_, o) in results.items():
            z = o["barycenter"]
            f = _objective(z, xs, gamma)
            dz = float(np.max(np.abs(np.asarray(z, np.float64) - z_ref)))
            check = f"max|z-z_ref| {dz:.1e}"
            if section == "softbary":
                gap = (f - f_ref) / (f_init - f_ref)
                check += f", gap/decrease {gap:.1e}"
            if "n_iters" in o:
                check += f", {int(o['n_iters'])} iters"
            out[name] = {
                "err": (f - f_ref) / abs(f_ref),
                "check": check,
                "objective": f,
                "objective_ref": f_ref,
                "objective_init": f_init,
                "max_abs_diff_barycenter": dz,
            }
    elif section == "lbkeogh":
        for name, (_, o) in results.items():
            out[name] = {"err": _rel_floor(o["value"], ref["lbkeogh_value"]), "check": "-"}
    elif section == "nn":
        idx = results["ours-exhaustive"][1]["index"]
        w = cfg["window"]
        t = data["nn_q"].shape[1]
        band = np.abs(np.arange(t)[:, None] - np.arange(t)[None, :]) <= w
        ref_dist = _dtw64(data["nn_q"], data["nn_r"][idx], mask=band)
        for name, (_, o) in results.items():
            same = int(np.sum(o["index"] == idx))
            check = f"same NN {same}/{len(idx)}"
            if "n_dtw" in o:
                frac = float(np.sum(o["n_dtw"])) / (len(idx) * data["nn_r"].shape[0])
                check += f", DTWs computed {frac:.1%}"
            out[name] = {
                "err": h.max_rel_err(o["distance"], ref_dist),
                "check": check,
                "ok": same == len(idx),
            }
    return out


# --------------------------------------------------------------------------------------------
# Driver.
# --------------------------------------------------------------------------------------------


def _plan(config: str, tmpdir: Path) -> tuple[list[dict[str, Any]], Path]:
    """Writes the input file and lists the worker runs (one per section and method)."""
    cfg = CONFIGS[config]
    inputs = tmpdir / "inputs.npz"
    np.savez(inputs, **make_inputs(config))
    tasks = []
    for section, title, methods in SECTIONS:
        for name in methods:
            repeats = cfg["repeats"].get(section, {}).get(name, 1)
            stem = tmpdir / f"{section}_{name}"
            argv = ["--worker", f"{section}:{name}", "--config", config, "--inputs", str(inputs),
                    "--result", str(stem), "--repeats", str(repeats)]  # fmt: skip
            tasks.append(
                {"section": section, "title": title, "method": name, "repeats": repeats,
                 "stem": stem, "argv": argv}
            )  # fmt: skip
    return tasks, inputs


def _case_label(section: str, data: dict[str, np.ndarray], cfg: dict[str, Any]) -> str:
    if section == "subseq":
        (n, t, _), s = data["sub_q"].shape, data["sub_s"].shape[0]
        return f"{n} queries t={t} in s={s}"
    if section == "itakura":
        n, t, _ = data["ita_x"].shape
        return f"{n} pairs t=s={t} slope={cfg['slope']:g}"
    if section == "dba":
        k, t, _ = data["bary_xs"].shape
        return f"k={k} t={t} {cfg['dba_iters']} updates"
    if section == "softbary":
        k, t, _ = data["bary_xs"].shape
        return f"k={k} t={t} gamma={cfg['gamma']:g}"
    key = "lb" if section == "lbkeogh" else "nn"
    n, t, _ = data[f"{key}_q"].shape
    m = data[f"{key}_{'c' if key == 'lb' else 'r'}"].shape[0]
    return f"{n}x{m} t={t} window={cfg['window']}"


def run_benchmark(config: str, out: Path, jobs: int | None = None) -> dict[str, Any]:
    """Runs every section of ``config``, prints the table and writes the JSON to ``out``.

    ``jobs`` is the number of workers run at once (default 1, or 2 for ``quick``; more than one
    skews the timings). Returns the JSON payload; ``payload["passed"]`` is the pass criterion.
    """
    if jobs is None:
        jobs = 2 if config == "quick" else 1
    cfg = CONFIGS[config]
    device_info = None
    results: dict[str, dict[str, tuple[dict, dict]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_series_toolbox_") as tmp:
        tasks, inputs = _plan(config, Path(tmp))
        h.run_workers(
            MODULE,
            [(f"[{t['title']}] {t['method']}", t["argv"]) for t in tasks],
            jobs,
            timeout=600.0,
        )
        for task in tasks:
            stats = json.loads(task["stem"].with_suffix(".json").read_text())
            with np.load(task["stem"].with_suffix(".npz")) as z:
                outputs = {k: z[k] for k in z.files}
            device_info = stats.pop("device", device_info)
            results.setdefault(task["section"], {})[task["method"]] = (stats, outputs)
        with np.load(inputs) as z:
            data = {k: z[k] for k in z.files}
    ref = reference(data, cfg, results["itakura"]["tslearn"][1]["mask"])
    rows: list[dict[str, Any]] = []
    for section, title, methods in SECTIONS:
        errs = _section_errors(section, results[section], data, ref, cfg)
        ours_median = results[section][methods[0]][0]["median_s"]
        for name in methods:
            stats = results[section][name][0]
            task = next(t for t in tasks if t["section"] == section and t["method"] == name)
            info = errs[name]
            row = {
                "section": title,
                "case": _case_label(section, data, cfg),
                "method": name,
                "repeats": task["repeats"],
                "parallel_jobs": jobs,
                **stats,
                "compile_and_first_call_s": stats["setup_s"] + (stats["first_call_s"] or 0.0),
                "error": info["err"],
                "check": info["check"],
                "details": {k: v for k, v in info.items() if k not in ("err", "check", "ok")},
            }
            if name != methods[0]:
                row["ratio_ours_over_peer"] = ours_median / stats["median_s"]
            if name.startswith("ours"):
                e = info["err"]
                err_ok = (
                    not np.isnan(e) and (e if section == "softbary" else abs(e)) <= TOLS[section]
                )
                row["tolerance"] = TOLS[section]
                row["within_tol"] = bool(err_ok and info.get("ok", True))
            rows.append(row)
    passed = all(r.get("within_tol", True) for r in rows)
    table = format_table(rows)
    print(f"\n## Time-series toolbox benchmark ({config}, float32, device: {device_info})\n")
    print(table)
    verdict = "PASS" if passed else "FAIL"
    tols = ", ".join(f"{k} {v:g}" for k, v in TOLS.items())
    print(
        f"\n{verdict}: our float32 errors vs the float64 references within ({tols}); every "
        "subsequence start/end and every 1-NN neighbour agrees (peers' errors are reported, "
        "not checked)."
    )
    payload = {
        "benchmark": MODULE,
        "config": config,
        "tolerances": TOLS,
        "passed": passed,
        "settings": {k: v for k, v in cfg.items() if k != "repeats"},
        "environment": h.environment(
            ["jax", "jaxlib", "numpy", "tslearn", "numba", "dtw-python", "threadpoolctl"]
        )
        | {"jax_device": device_info},
        "rows": rows,
        "table_markdown": table,
    }
    h.save_results(out, payload)
    return payload


def format_table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table (one line per section and method)."""
    headers = ["section", "case", "method", "median s", "ours/peer", "compile+1st s",
               "err vs f64", "check", *h.MEMORY_HEADERS]  # fmt: skip
    lines = [
        [
            r["section"],
            r["case"],
            r["method"],
            h.fmt(r["median_s"], ".4f"),
            h.fmt(r.get("ratio_ours_over_peer"), ".2f"),
            h.fmt(r["compile_and_first_call_s"], ".2f"),
            h.fmt(r["error"], ".1e"),
            r["check"],
            *h.memory_cells(r, ".1f"),
        ]
        for r in rows
    ]
    return h.markdown_table(headers, lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 if the accuracy checks fail)."""
    parser = h.cli_parser(__doc__, CONFIGS, DEFAULT_OUT)
    parser.add_argument(
        "--jobs", type=int, default=None, help="workers at once (default 1; 2 for --quick)"
    )
    args = parser.parse_args(argv)
    if args.worker:
        run_method(args.worker, args.config, args.inputs, args.result, args.repeats)
        return 0
    config = "quick" if args.quick else args.config
    payload = run_benchmark(config, h.output_path(args.out, config, DEFAULT_OUT), jobs=args.jobs)
    return 0 if payload["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
