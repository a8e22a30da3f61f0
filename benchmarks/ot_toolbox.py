"""OT toolbox: Gromov-Wasserstein, barycenters and sliced W2, ours against POT and ott-jax.

Run from the repository root::

    python -m benchmarks.ot_toolbox                  # n = 200 clouds, 200 bins, ... (~3 min)
    python -m benchmarks.ot_toolbox --quick          # tiny sizes: a smoke test
    python -m benchmarks.ot_toolbox --out PATH.json  # results as JSON (default under results/)

Inputs (float32, seeded); the same arrays go to every method of a section.

1. **entropic GW** (square loss): two point clouds of ``n = m`` points (200 cpu, 20 quick), ``x``
   standard normal in 2-D and ``y`` normal in 3-D with scales ``(1, 0.7, 0.4)``, uniform weights;
   intra-domain costs ``|x_i - x_k|^2`` divided by their max (``[0, 1]``); ``epsilon = 0.05``
   (the plan's largest entry is about half of ``1 / n``: a sharp but not degenerate plan).

   * ours: ``jit(alignment.gromov_wasserstein)`` at its defaults (outer ``tol = 1e-5`` on
     ``sum |P_k - P_{k-1}|``, ``sinkhorn_tol = 1e-4`` on the L1 column error);
   * ours-points: ``jit(alignment.gromov_wasserstein_points)`` (the low-rank factorised form,
     the ``[n, n]`` costs never built) on the points scaled by ``1 / sqrt(max)``, whose squared
     distances are exactly the normalised costs: the same problem;
   * POT: ``ot.gromov.entropic_gromov_wasserstein(..., "square_loss", epsilon, solver="PGD")``,
     the same projected mirror descent from ``a b^T`` with the same ``epsilon`` (see
     ``alignment/_src/gromov.py``), with ``tol = 1e-5`` (Frobenius norm of the plan change,
     checked every 10 outer iterations) and inner Sinkhorn ``stopThr = 1e-4`` (L2 column
     error), ``numItermax = 1000``: criteria at least as loose as ours (L2 and Frobenius norms
     are below L1). Its inner solver is POT's plain (non-log) Sinkhorn, cold-started;
   * ott-jax: ``jit`` of ``ott.solvers.quadratic.gromov_wasserstein.GromovWasserstein`` with
     ``epsilon / 2`` (ott-jax linearises with half our gradient, so this is the same problem,
     as in ``tests/test_gromov.py``), outer ``threshold = 1e-5`` (on its cost change), inner
     ``Sinkhorn(threshold=1e-4)``, ``max_iterations = 100``. It compiles in about 5 s and runs
     in tens of milliseconds at n = 200, so it is timed in the cpu configuration; the quick
     configuration (the CI smoke test, under 40 s in all) leaves it out, as its compilation
     alone would be a sixth of that budget for a row whose accuracy the cpu run already shows.

2. **entropic fused GW**: the costs of section 1, a feature cost ``|x_i - y_j[:2]|^2`` (the
   first two coordinates of ``y``, as ``tests/test_gromov.py``) divided by its max,
   ``alpha = 0.5``, ``epsilon = 0.05``: ours ``jit(fused_gromov_wasserstein)`` at its defaults
   against POT ``ot.gromov.entropic_fused_gromov_wasserstein(..., alpha, solver="PGD")`` with
   the tolerances of section 1.

3. **Sinkhorn barycenter**: ``k = 8`` histograms (mixtures of three random Gaussian bumps plus
   a 1e-3 floor, normalised) on a grid of ``[0, 1]`` with 200 bins (30 quick), squared
   Euclidean cost, ``epsilon = 0.005``, uniform ``lambdas``: ours ``jit(sinkhorn_barycenter)``
   with ``tol = 1e-5`` (L1 marginal error) against POT ``ot.bregman.barycenter(A.T, M,
   epsilon, lambdas, method="sinkhorn_log")`` with ``stopThr = 1e-5`` (its own criterion, the
   spread of the marginals across histograms), the pairing of ``tests/test_barycenter.py``.

4. **free-support barycenter** (exact OT): ``k = 4`` clouds of 100 points (10 quick) in 2-D,
   cloud ``i`` normal with scale ``1 + i / 2`` and offset ``i``, uniform weights, ``init`` a
   standard normal cloud of the same size, uniform ``lambdas``: ours
   ``jit(free_support_barycenter)`` (``epsilon=None``: assignments) against POT
   ``ot.lp.free_support_barycenter`` (network simplex), both with ``tol = stopThr = 1e-7`` on
   the squared displacement and at most 100 iterations.

5. **sliced W2**: clouds ``n = m = 2000`` in ``d = 32`` (200 in 8-D quick), ``x`` standard
   normal, ``y`` normal with scale 1.5 and offset 0.3, 128 projections (16 quick): ours
   ``jit(sliced_wasserstein(..., n_projections, key=key(0)))`` against POT
   ``ot.sliced_wasserstein_distance(x, y, projections=theta)`` with ``theta =
   alignment.random_projections(key(0), d, L)`` (float32), the same directions.

Timing: each method runs in a fresh subprocess; JAX methods are compiled ahead of time
(``jax.jit(f).lower(*args).compile()``), then one warm-up call, then ``repeats`` timed calls
ending in ``jax.block_until_ready``; POT gets one warm-up call too. The table shows the median.
``ours/peer`` is the section's first ``ours`` median over the peer's (below 1: ours is faster);
on the ``ours-points`` row it is ours-points over POT. POT runs with NumPy's BLAS limited to
one thread (``threadpoolctl``), as in ``benchmarks.gaussian``: on this two-core machine (shared
with other jobs) OpenBLAS's default threading makes POT slower, not faster (measured, medians of
3 at the cpu sizes, one thread against the default: GW 0.030 s against 0.078 s, FGW 0.031 s
against 0.054 s, sliced W2 0.084 s against 0.156 s, free-support barycenter 0.030 s against
0.025 s, within noise). JAX is not affected by the setting. ``import ot`` (several seconds:
it imports scikit-learn) happens before the measurements.

Errors (``err``), against float64 references that do not use our code, on the same
(float32-rounded) inputs:

* GW, FGW: ``max |P - P_ref| / max P_ref`` over the plan, ``P_ref`` from POT in float64 (the
  same PGD problem, same ``epsilon``) run to ``tol = 1e-11``, ``stopThr = 1e-12``,
  ``numItermax = 10000``, ``max_iter = 1000`` (``POT_TIGHT`` of ``tests/test_gromov.py``);
* Sinkhorn barycenter: ``max |p - p_ref| / max p_ref``, ``p_ref`` from plain kernel-domain
  Bregman projections in NumPy float64 (``_ibp_reference``) run until the barycenter moves by
  less than ``1e-14`` of its max (732 iterations, 0.2 s at 200 bins). POT's float64
  ``sinkhorn_log`` is not used as the reference: at 200 bins it takes about 40 ms an
  iteration here and had not met ``stopThr = 1e-9`` after 3000 iterations (130 s); it agrees
  with this reference to ``2e-6`` at ``stopThr = 1e-6``, and the log-domain float64 version of
  the same iterations to ``2e-14``;
* free-support barycenter: ``max |X - X_ref| / max |X_ref|``, ``X_ref`` from POT's
  ``free_support_barycenter`` in float64 (same ``init``, ``stopThr = 1e-20``);
* sliced W2: ``|SW - SW_ref| / SW_ref``, ``SW_ref`` computed in NumPy float64 by sorting the
  projections on the same directions (``n = m``, uniform weights: the sorted matching is the
  exact 1-D optimum).

Pass criterion (exit status 1 otherwise), on our float32 errors: ``<= 1e-3`` for the GW, FGW
and Sinkhorn-barycenter plans, ``<= 1e-4`` for the free-support barycenter and sliced W2.
Justification: stopping at an L1 plan change of ``1e-5`` (GW) or an L1 marginal error of
``1e-5`` (barycenter) leaves an error of that order on entries of size ``~1 / n`` (measured at
the cpu sizes: ``4e-5`` relative to the max for GW, ``1.5e-6`` for FGW, ``3e-5`` for the
barycenter; ours stops after 7 outer GW iterations, POT, which checks every 10, after 11 to 20,
hence its smaller ``1.3e-6``), so ``1e-3`` leaves a margin of 25 or more; a wrong problem is
far above it: another ``epsilon`` (ott-jax's halved convention, or 0.1 instead of 0.05) moves
the float64 plan by 2.0 (0.7) times its max, as would another stationary point. The
free-support barycenter and the sliced distance are exact up to float32 rounding of sums of
``n`` terms (``~1e-7`` measured): ``1e-4`` catches a single wrong assignment (one point moves
by ``O(1)``) or a wrong normalisation. Peers' errors are reported and (in the smoke test) held
to ten times these tolerances. The ``iters`` field of the JSON rows is the outer (GW, FGW,
fixed-point) or Bregman iteration count; for POT's GW and FGW it is rounded up to the next
multiple of 10 (its check interval), for ott-jax it is -1 (not recorded by ott-jax).

Memory, measured in each method's own process (see ``benchmarks._harness``): ``peak MB`` is the
peak RSS above the RSS after imports and inputs, compilation included; ``call MB`` is the peak
RSS during the timed calls above the RSS just before them; ``XLA temp MB`` is the compiled
program's scratch memory.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import _harness as h

MODULE = "benchmarks.ot_toolbox"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "ot_toolbox_cpu.json"
SEED = 0
EPS_GW = 0.05  # entropic GW / FGW, costs in [0, 1]
ALPHA = 0.5  # FGW trade-off (POT's convention)
EPS_BARY = 0.005  # Sinkhorn barycenter, squared distances on [0, 1]
GW_TOL, GW_SINKHORN_TOL = 1e-5, 1e-4  # ours (defaults) and POT's tol / stopThr
BARY_TOL = 1e-5  # ours tol and POT's stopThr
FS_TOL, FS_ITERS = 1e-7, 100  # free-support: squared displacement, iterations
# our float32 errors must be at most these (see the module docstring)
TOLS = {"gw": 1e-3, "fgw": 1e-3, "sbary": 1e-3, "fsbary": 1e-4, "sliced": 1e-4}
PEER_FACTOR = 10.0  # peers' tolerance: this times ours (checked by the smoke test only)

CONFIGS: dict[str, dict[str, Any]] = {
    "cpu": {
        "gw_n": 200, "bary_k": 8, "bary_bins": 200, "fs_k": 4, "fs_n": 100,
        "sw_n": 2000, "sw_d": 32, "sw_l": 128,
        "repeats": {"default": 10, "gw:pot": 5, "fgw:pot": 5, "sbary:pot": 2, "fsbary:pot": 5},
    },
    "quick": {
        "gw_n": 20, "bary_k": 8, "bary_bins": 30, "fs_k": 4, "fs_n": 10,
        "sw_n": 200, "sw_d": 8, "sw_l": 16,
        "repeats": {"default": 2, "sbary:pot": 1},  # POT's log IBP: ~1 s a call here
        "skip": ("gw:ott-jax",),
    },
}  # fmt: skip
SECTIONS = (
    ("gw", "entropic GW", ("ours", "ours-points", "pot", "ott-jax")),
    ("fgw", "entropic fused GW", ("ours", "pot")),
    ("sbary", "Sinkhorn barycenter", ("ours", "pot")),
    ("fsbary", "free-support barycenter", ("ours", "pot")),
    ("sliced", "sliced W2", ("ours", "pot")),
)


def methods(config: str) -> list[tuple[str, str, str]]:
    """``(section, title, method)`` of every row of ``config``, in order."""
    skip = CONFIGS[config].get("skip", ())
    return [
        (section, title, name)
        for section, title, names in SECTIONS
        for name in names
        if f"{section}:{name}" not in skip
    ]


def _case(section: str, cfg: dict[str, Any]) -> str:
    """The ``case`` cell of the table: the section and its sizes."""
    return {
        "gw": f"GW n=m={cfg['gw_n']}",
        "fgw": f"FGW n=m={cfg['gw_n']}",
        "sbary": f"Sinkhorn bary k={cfg['bary_k']} bins={cfg['bary_bins']}",
        "fsbary": f"free-support bary k={cfg['fs_k']} n={cfg['fs_n']}",
        "sliced": f"sliced W2 n=m={cfg['sw_n']} d={cfg['sw_d']} L={cfg['sw_l']}",
    }[section]


# --------------------------------------------------------------------------------------------
# The methods. Each JAX builder returns ``(jitted function, its argument tuple)``; the function
# returns ``(result array, iteration count)``. Each NumPy method maps the inputs to the same
# pair. Imports are local: a worker imports only its own library.
# --------------------------------------------------------------------------------------------


def _ours_gw(data):
    import jax

    from alignment import gromov_wasserstein

    def fn(cx, cy):
        out = gromov_wasserstein(cx, cy, epsilon=EPS_GW, tol=GW_TOL, sinkhorn_tol=GW_SINKHORN_TOL)
        return out.plan, out.n_iters

    return jax.jit(fn), (data["gw_cx"], data["gw_cy"])


def _ours_gw_points(data):
    import jax

    from alignment import gromov_wasserstein_points

    def fn(x, y):
        out = gromov_wasserstein_points(
            x, y, epsilon=EPS_GW, tol=GW_TOL, sinkhorn_tol=GW_SINKHORN_TOL
        )
        return out.plan, out.n_iters

    return jax.jit(fn), (data["gw_x"], data["gw_y"])


def _ott_gw(data):
    import jax
    from ott.geometry import geometry
    from ott.problems.quadratic import quadratic_problem
    from ott.solvers.linear import sinkhorn as ott_sinkhorn
    from ott.solvers.quadratic import gromov_wasserstein as ott_gw

    def fn(cx, cy):
        prob = quadratic_problem.QuadraticProblem(
            geometry.Geometry(cost_matrix=cx), geometry.Geometry(cost_matrix=cy)
        )
        # ott-jax linearises with half our gradient: its epsilon is half of ours
        solver = ott_gw.GromovWasserstein(
            ott_sinkhorn.Sinkhorn(threshold=GW_SINKHORN_TOL),
            epsilon=EPS_GW / 2, threshold=GW_TOL, max_iterations=100,
        )  # fmt: skip
        out = solver(prob)
        return out.matrix, out.n_iters

    return jax.jit(fn), (data["gw_cx"], data["gw_cy"])


def _ours_fgw(data):
    import jax

    from alignment import fused_gromov_wasserstein

    def fn(m, cx, cy):
        out = fused_gromov_wasserstein(
            m, cx, cy, alpha=ALPHA, epsilon=EPS_GW, tol=GW_TOL, sinkhorn_tol=GW_SINKHORN_TOL
        )
        return out.plan, out.n_iters

    return jax.jit(fn), (data["fgw_m"], data["gw_cx"], data["gw_cy"])


def _ours_sbary(data):
    import jax

    from alignment import sinkhorn_barycenter

    def fn(hists, cost):
        out = sinkhorn_barycenter(hists, cost, epsilon=EPS_BARY, tol=BARY_TOL)
        return out.barycenter, out.n_iters

    return jax.jit(fn), (data["sb_hists"], data["sb_cost"])


def _ours_fsbary(data):
    import jax

    from alignment import free_support_barycenter

    def fn(clouds, init):
        out = free_support_barycenter(clouds, init=init, tol=FS_TOL, max_iters=FS_ITERS)
        return out.barycenter, out.n_iters

    return jax.jit(fn), (data["fs_clouds"], data["fs_init"])


def _ours_sliced(data):
    import jax

    from alignment import sliced_wasserstein

    n_proj = data["sw_theta"].shape[1]

    def fn(x, y, key):
        return sliced_wasserstein(x, y, n_projections=n_proj, key=key), 0

    return jax.jit(fn), (data["sw_x"], data["sw_y"], jax.random.key(SEED))


def _pot_gw(data):
    import ot

    plan, log = ot.gromov.entropic_gromov_wasserstein(
        data["gw_cx"], data["gw_cy"], loss_fun="square_loss", epsilon=EPS_GW, solver="PGD",
        tol=GW_TOL, numItermax=1000, stopThr=GW_SINKHORN_TOL, log=True,
    )  # fmt: skip
    return plan, 10 * len(log["err"])  # checked every 10 outer iterations


def _pot_fgw(data):
    import ot

    plan, log = ot.gromov.entropic_fused_gromov_wasserstein(
        data["fgw_m"], data["gw_cx"], data["gw_cy"], loss_fun="square_loss", epsilon=EPS_GW,
        alpha=ALPHA, solver="PGD", tol=GW_TOL, numItermax=1000, stopThr=GW_SINKHORN_TOL,
        log=True,
    )  # fmt: skip
    return plan, 10 * len(log["err"])


def _pot_sbary(data):
    import ot

    k = data["sb_hists"].shape[0]
    bary, log = ot.bregman.barycenter(
        data["sb_hists"].T, data["sb_cost"], EPS_BARY, np.full(k, 1.0 / k, np.float32),
        method="sinkhorn_log", stopThr=BARY_TOL, numItermax=10_000, log=True, warn=False,
    )  # fmt: skip
    return bary, log.get("niter", 0)


def _pot_fsbary(data):
    import ot

    clouds = list(data["fs_clouds"])
    n = clouds[0].shape[0]
    weights = [np.full(n, 1.0 / n, clouds[0].dtype)] * len(clouds)
    bary, log = ot.lp.free_support_barycenter(
        clouds, weights, data["fs_init"], stopThr=FS_TOL, numItermax=FS_ITERS, log=True
    )
    return bary, len(log["displacement_square_norms"])


def _pot_sliced(data):
    import ot

    return ot.sliced_wasserstein_distance(
        data["sw_x"], data["sw_y"], projections=data["sw_theta"]
    ), 0


JAX_BUILDERS = {
    "gw:ours": _ours_gw,
    "gw:ours-points": _ours_gw_points,
    "gw:ott-jax": _ott_gw,
    "fgw:ours": _ours_fgw,
    "sbary:ours": _ours_sbary,
    "fsbary:ours": _ours_fsbary,
    "sliced:ours": _ours_sliced,
}
NUMPY_METHODS = {
    "gw:pot": _pot_gw,
    "fgw:pot": _pot_fgw,
    "sbary:pot": _pot_sbary,
    "fsbary:pot": _pot_fsbary,
    "sliced:pot": _pot_sliced,
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


def run_method(method: str, inputs: Path, output: Path, repeats: int) -> None:
    """Times ``method`` on the arrays in ``inputs`` and writes ``output`` (.json and .npz)."""
    with np.load(inputs) as z:
        data = {k: z[k] for k in z.files}
    extra: dict[str, Any] = {}
    if method in JAX_BUILDERS:
        import jax

        jitted, args = JAX_BUILDERS[method](data)
        args = jax.device_put(args)
        jax.block_until_ready(args)
        device_base = h.device_memory_mb()
        holder: dict[str, Any] = {}

        def setup():
            holder["compiled"] = jitted.lower(*args).compile()

        def call():
            return jax.block_until_ready(holder["compiled"](*args))

        (result, iters), stats = h.measure(call, repeats=repeats, setup=setup)
        stats["xla"] = h.xla_memory_mb(holder["compiled"])
        device_end = h.device_memory_mb()
        if device_base is not None and device_end is not None:
            stats["device_peak_mb"] = device_end["peak_mb"] - device_base["in_use_mb"]
        extra["device"] = h.jax_device_info()
    elif method in NUMPY_METHODS:
        import ot  # noqa: F401  (seconds of imports: before the baseline, outside the timing)

        fn = NUMPY_METHODS[method]
        with _one_blas_thread(), contextlib.redirect_stdout(sys.stderr):
            (result, iters), stats = h.measure(lambda: fn(data), repeats=repeats)
    else:
        raise ValueError(f"unknown method {method!r}")
    result = np.asarray(result)
    stats["iters"] = int(np.asarray(iters))
    stats["dtype"] = str(result.dtype)
    np.savez(output.with_suffix(".npz"), result=result)
    output.with_suffix(".json").write_text(json.dumps({**stats, **extra}))


# --------------------------------------------------------------------------------------------
# Inputs and the float64 references.
# --------------------------------------------------------------------------------------------


def _sqdist(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return ((u[:, None, :] - v[None, :, :]) ** 2).sum(-1)


def make_inputs(cfg: dict[str, Any], seed: int = SEED) -> dict[str, np.ndarray]:
    """Every section's seeded float32 inputs (see the module docstring)."""
    import jax

    from alignment import random_projections

    rng = np.random.default_rng([seed, cfg["gw_n"], cfg["bary_bins"], cfg["sw_n"]])
    f32 = np.float32
    # GW / FGW
    n = cfg["gw_n"]
    x = rng.normal(size=(n, 2))
    y = rng.normal(size=(n, 3)) * np.array([1.0, 0.7, 0.4])
    cx, cy = _sqdist(x, x), _sqdist(y, y)
    sx, sy = cx.max(), cy.max()
    feat = _sqdist(x, y[:, :2])
    # Sinkhorn barycenter
    k, nb = cfg["bary_k"], cfg["bary_bins"]
    grid = np.linspace(0.0, 1.0, nb)
    centres = rng.uniform(0.1, 0.9, (k, 3))
    widths = rng.uniform(0.03, 0.1, (k, 3))
    bumps = np.exp(-0.5 * ((grid[None, None, :] - centres[..., None]) / widths[..., None]) ** 2)
    hists = bumps.sum(1) + 1e-3
    hists = (hists / hists.sum(1, keepdims=True)).astype(f32)
    hists = hists / hists.sum(1, keepdims=True)  # sums to 1 in float32
    # free-support barycenter
    fk, fn_ = cfg["fs_k"], cfg["fs_n"]
    clouds = np.stack([rng.normal(size=(fn_, 2)) * (1 + i / 2) + i for i in range(fk)])
    init = rng.normal(size=(fn_, 2))
    # sliced
    sn, sd, sl = cfg["sw_n"], cfg["sw_d"], cfg["sw_l"]
    theta = np.asarray(random_projections(jax.random.key(SEED), sd, sl, np.float32))
    return {
        "gw_cx": (cx / sx).astype(f32),
        "gw_cy": (cy / sy).astype(f32),
        "gw_x": (x / np.sqrt(sx)).astype(f32),
        "gw_y": (y / np.sqrt(sy)).astype(f32),
        "fgw_m": (feat / feat.max()).astype(f32),
        "sb_hists": hists.astype(f32),
        "sb_cost": ((grid[:, None] - grid[None, :]) ** 2).astype(f32),
        "fs_clouds": clouds.astype(f32),
        "fs_init": init.astype(f32),
        "sw_x": rng.normal(size=(sn, sd)).astype(f32),
        "sw_y": (rng.normal(size=(sn, sd)) * 1.5 + 0.3).astype(f32),
        "sw_theta": theta,
    }


def _ibp_reference(hists, cost, eps, tol=1e-14, max_iters=100_000):
    """Uniform-``lambda`` entropic barycenter by plain (kernel-domain) Bregman projections.

    float64 NumPy, independent of both our log-domain code and POT's: ``u_k = a_k / K v_k``,
    ``p = prod_k (v_k K^T u_k)^(1 / k)``, ``v_k = p / K^T u_k`` until ``p`` moves by less than
    ``tol`` relative to its max. No underflow here: ``K >= exp(-1 / eps) ~ 1e-87``.
    """
    kern = np.exp(-cost / eps)
    k = hists.shape[0]
    lam = np.full(k, 1.0 / k)
    v = np.ones((k, kern.shape[1]))
    bary = None
    for _ in range(max_iters):
        u = hists / (v @ kern.T)
        ktu = u @ kern
        new = np.exp(lam @ np.log(v * ktu))
        v = new[None] / ktu
        if bary is not None and np.max(np.abs(new - bary)) <= tol * new.max():
            return new
        bary = new
    return bary


def reference(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """float64 references by POT (tight tolerances) and NumPy, never our code."""
    import ot

    d64 = {k: v.astype(np.float64) for k, v in data.items()}
    tight = {"max_iter": 1000, "tol": 1e-11, "numItermax": 10_000, "stopThr": 1e-12}
    ref = {}
    with contextlib.redirect_stdout(sys.stderr):
        ref["gw"] = ot.gromov.entropic_gromov_wasserstein(
            d64["gw_cx"], d64["gw_cy"], loss_fun="square_loss", epsilon=EPS_GW, solver="PGD",
            **tight,
        )  # fmt: skip
        ref["fgw"] = ot.gromov.entropic_fused_gromov_wasserstein(
            d64["fgw_m"], d64["gw_cx"], d64["gw_cy"], loss_fun="square_loss", epsilon=EPS_GW,
            alpha=ALPHA, solver="PGD", **tight,
        )  # fmt: skip
        clouds = list(d64["fs_clouds"])
        n = clouds[0].shape[0]
        ref["fsbary"] = ot.lp.free_support_barycenter(
            clouds, [np.full(n, 1.0 / n)] * len(clouds), d64["fs_init"], stopThr=1e-20,
            numItermax=FS_ITERS,
        )  # fmt: skip
    ref["sbary"] = _ibp_reference(d64["sb_hists"], d64["sb_cost"], EPS_BARY)
    theta = d64["sw_theta"]
    px = np.sort(d64["sw_x"] @ theta, axis=0)
    py = np.sort(d64["sw_y"] @ theta, axis=0)
    ref["sliced"] = np.sqrt(np.mean((px - py) ** 2))
    return ref


def error(section: str, result: np.ndarray, ref: np.ndarray) -> float:
    """The error of one result against its float64 reference (module docstring)."""
    r = np.asarray(ref, np.float64)
    v = np.asarray(result, np.float64)
    if not np.all(np.isfinite(v)):
        return float("nan")
    if section == "sliced":
        return float(abs(float(v) - float(r)) / abs(float(r)))
    return float(np.max(np.abs(v - r)) / np.max(np.abs(r)))


# --------------------------------------------------------------------------------------------
# Driver.
# --------------------------------------------------------------------------------------------


def _plan(config: str, tmpdir: Path) -> tuple[list[dict[str, Any]], Path]:
    """Writes the input file and lists the worker runs (one per section and method)."""
    cfg = CONFIGS[config]
    inputs = tmpdir / "inputs.npz"
    np.savez(inputs, **make_inputs(cfg))
    tasks = []
    for section, title, name in methods(config):
        key = f"{section}:{name}"
        repeats = cfg["repeats"].get(key, cfg["repeats"]["default"])
        stem = tmpdir / f"{section}_{name}"
        argv = ["--worker", key, "--inputs", str(inputs), "--result", str(stem),
                "--repeats", str(repeats)]  # fmt: skip
        tasks.append(
            {"section": section, "title": title, "method": name, "repeats": repeats,
             "stem": stem, "argv": argv}
        )  # fmt: skip
    return tasks, inputs


def run_benchmark(config: str, out: Path, jobs: int | None = None) -> dict[str, Any]:
    """Runs every section of ``config``, prints the table and writes the JSON to ``out``.

    ``jobs`` is the number of workers run at once (default 1, or 2 for ``quick``; more than one
    skews the timings). Returns the JSON payload; ``payload["passed"]`` is the pass criterion.
    """
    if jobs is None:
        jobs = 2 if config == "quick" else 1
    cfg = CONFIGS[config]
    device_info = None
    results: dict[tuple[str, str], tuple[dict, np.ndarray]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_ot_toolbox_") as tmp:
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
                result = z["result"]
            device_info = stats.pop("device", device_info)
            results[(task["section"], task["method"])] = (stats, result)
        with np.load(inputs) as z:
            ref = reference({k: z[k] for k in z.files})  # after the timings
    rows: list[dict[str, Any]] = []
    for task in tasks:
        section, name = task["section"], task["method"]
        stats, result = results[(section, name)]
        first = SECTIONS[[s[0] for s in SECTIONS].index(section)][2][0]
        row = {
            "section": task["title"],
            "case": _case(section, cfg),
            "method": name,
            "repeats": task["repeats"],
            "parallel_jobs": jobs,
            **stats,
            "error": error(section, result, ref[section]),
            "tolerance": TOLS[section],
        }
        if not name.startswith("ours"):
            row["ratio_ours_over_peer"] = (
                results[(section, first)][0]["median_s"] / stats["median_s"]
            )
        elif name != first:  # a second "ours" row: against POT
            row["ratio_ours_over_peer"] = (
                stats["median_s"] / results[(section, "pot")][0]["median_s"]
            )
        if name.startswith("ours"):
            err = row["error"]
            row["within_tol"] = bool(not np.isnan(err) and err <= TOLS[section])
        rows.append(row)
    passed = all(r.get("within_tol", True) for r in rows)
    table = format_table(rows)
    print(f"\n## OT toolbox benchmark ({config}, float32, device: {device_info})\n")
    print(table)
    verdict = "PASS" if passed else "FAIL"
    tols = ", ".join(f"{title} {TOLS[s]:g}" for s, title, _ in SECTIONS)
    print(f"\n{verdict}: our float32 errors within ({tols}); peers' errors are reported.")
    payload = {
        "benchmark": MODULE,
        "config": config,
        "sizes": {k: v for k, v in cfg.items() if k not in ("repeats", "skip")},
        "tolerances": TOLS,
        "peer_factor": PEER_FACTOR,
        "passed": passed,
        "environment": h.environment(
            ["jax", "jaxlib", "numpy", "scipy", "ott-jax", "pot", "threadpoolctl"]
        )
        | {"jax_device": device_info},
        "rows": rows,
        "table_markdown": table,
    }
    h.save_results(out, payload)
    return payload


def format_table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table (one line per section and method)."""
    headers = ["case", "method", "median s", "ours/peer", "err", *h.MEMORY_HEADERS]
    lines = [
        [
            r["case"],
            r["method"],
            h.fmt(r["median_s"], ".4f"),
            h.fmt(r.get("ratio_ours_over_peer"), ".2f"),
            h.fmt(r["error"], ".1e"),
            *h.memory_cells(r, ".2f"),
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
        run_method(args.worker, args.inputs, args.result, args.repeats)
        return 0
    config = "quick" if args.quick else args.config
    payload = run_benchmark(config, h.output_path(args.out, config, DEFAULT_OUT), jobs=args.jobs)
    return 0 if payload["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
