"""Sinkhorn: ours against ott-jax and POT's log-domain Sinkhorn, on the same problems.

Run from the repository root::

    python -m benchmarks.sinkhorn                  # CPU sizes (several minutes on 2 cores)
    python -m benchmarks.sinkhorn --quick          # tiny sizes: a smoke test
    python -m benchmarks.sinkhorn --out PATH.json  # results as JSON (default under results/)

Inputs (float32, seeded): standard-normal points ``x: [n, d]``, ``y: [m, d]``, ``d = 16``,
uniform weights, balanced, ``epsilon = 0.1`` (absolute: ott-jax's ``Geometry(epsilon=0.1)``
with its default ``relative_epsilon=None`` and ``scale_cost=1`` uses exactly 0.1; POT's
``reg=0.1``), ``threshold = 1e-3``.

Sections:

1. **single**, the issue's problem: ``n = m = 2048`` points *not* rescaled, so the cost
   ``C = ||x_i - y_j||^2`` (not halved; mean about ``2 d = 32``) is computed once in float64,
   rounded to float32 and handed to every dense method; ``epsilon = 0.1`` is then small
   against the cost (a few hundred iterations).

   * ours: ``jit(lambda C: alignment.sinkhorn(C, epsilon=0.1, tol=1e-3))`` (while
     loop, L1 column error checked every 10 iterations; blocks of iterations by absorption);
   * ours-online: ``jit(sinkhorn_points(x, y, epsilon=0.1, chunk_size=256))``, the cost
     recomputed in blocks at every iteration (never ``[n, m]``);
   * ott-jax: ``jit(linear.solve(Geometry(cost_matrix=C, epsilon=0.1), threshold=1e-3))``
     (defaults: log domain, L1 column error checked every 10 iterations, 2000 iterations
     at most): the same criterion, threshold and checking period as ours;
   * POT: ``ot.bregman.sinkhorn_log(a, b, C, 0.1, stopThr=1e-3)`` (NumPy, float64; its
     criterion is the L2 norm of the column error, checked every 10 iterations: looser than
     L1, so it may stop earlier). One timed call (nothing to compile).

2. **batch**: ``jit(vmap(...))`` over ``b = 256`` problems ``n = m = 64`` drawn the same way:

   * ours-while: ``sinkhorn(..., tol=1e-3)`` (under ``vmap`` the loop runs until the
     slowest member converges, each member frozen once converged, like ott-jax's);
   * ours-scan: ``sinkhorn(..., tol=None, max_iters=FIXED_ITERS)``: a fixed
     number of iterations, no convergence test (``FIXED_ITERS`` above the slowest member's
     count, so every member meets the threshold; reported);
   * ott-jax: ``linear.solve(...)`` at ``threshold=1e-3``.

3. **online**: ``n = m = 20,000`` (a dense float32 cost would take 1.6 GB), points scaled by
   ``1 / sqrt(2 d)`` (cost mean about 1; ten iterations, so the section takes a minute or two):

   * ours-online: ``jit(sinkhorn_points(x, y, epsilon=0.1, chunk_size=256))``;
   * ours-dense: ``jit(sinkhorn(squared_euclidean(x, y), epsilon=0.1))``, the dense solver on
     the same points (the ``[n, m]`` cost built inside the program): the memory to compare with;
   * pot-online: ``ot.bregman.empirical_sinkhorn(x, y, 0.1, isLazy=True, batchSize=256,
     stopThr=1e-3)`` (NumPy, float64, cost blocks of 256 rows; L1 error of the rows checked
     every 10 iterations). One timed call. ``--quick`` only: it took 618 s at ``n = 20,000``.

   ott-jax's online mode, ``PointCloud(x, y, batch_size=256)``, is not in the table: with
   ott-jax 0.6.0 and jax 0.10 it raises ``AttributeError: module 'jax.interpreters.batching'
   has no attribute 'is_vmappable'`` (its ``batched_vmap`` uses a removed JAX internal).

Figures: ``median s`` (median over ``repeats`` calls after one warm-up; JAX methods compiled
ahead of time), ``iters`` (iterations run; max over the batch), ``marg err`` (our L1 column
error of the returned solution; max over the batch), ``cost err`` (relative error of the
regularised cost ``<P, C> + eps KL(P | a b^T)`` against the section's reference: ours (single),
ott-jax (batch), ours-dense (online); for POT evaluated from its plan in float64; max over the
batch), ``peak MB`` / ``call MB`` / ``XLA temp MB`` as in ``benchmarks._harness`` (peak RSS
over compilation and calls, and the scratch memory of the compiled program). ``ours/peer`` is
our median over the peer's (single: ours; batch: ours-while; online: ours-online). Each method
runs in its own fresh process. The pass criterion (exit status 1 otherwise) is every ``cost
err <= 1e-2`` (ten times the threshold) and every method converged.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import _harness as h

MODULE = "benchmarks.sinkhorn"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "sinkhorn_cpu.json"
D = 16
EPSILON = 0.1
THRESHOLD = 1e-3
CHUNK = 256
TOL = 1e-2
SEED = 0

CONFIGS: dict[str, dict[str, Any]] = {
    "cpu": {"single": 2048, "batch": (256, 64), "online": 20_000, "fixed_iters": 1500,
            "repeats": {"single": 3, "batch": 5, "online": 1},
            "skip": ("pot-online",)},  # about 10 minutes at n = 20,000 (618 s measured)
    "quick": {"single": 128, "batch": (8, 16), "online": 600, "fixed_iters": 2500,
              "repeats": {"single": 2, "batch": 2, "online": 1}, "skip": ()},
    # for an accelerator (python -m benchmarks --gpu); POT's NumPy solvers are left out
    "gpu": {"single": 16_384, "batch": (1024, 128), "online": 40_000, "fixed_iters": 1500,
            "repeats": {"single": 3, "batch": 3, "online": 1}, "skip": ("pot", "pot-online")},
}  # fmt: skip
SECTIONS: dict[str, tuple[str, ...]] = {
    "single": ("ours", "ours-online", "ott-jax", "pot"),
    "batch": ("ours-while", "ours-scan", "ott-jax"),
    "online": ("ours-online", "ours-dense", "pot-online"),
}
REFERENCE = {"single": "ours", "batch": "ott-jax", "online": "ours-dense"}
OURS = {"single": "ours", "batch": "ours-while", "online": "ours-online"}


def make_points(b: int, n: int, *, scaled: bool, seed: int = SEED) -> tuple[np.ndarray, ...]:
    """``x, y: [b, n, D]`` float32 standard-normal points (``/ sqrt(2 D)`` when ``scaled``)."""
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(2 * D) if scaled else 1.0
    x = rng.normal(size=(b, n, D)) * scale
    y = rng.normal(size=(b, n, D)) * scale
    return x.astype(np.float32), y.astype(np.float32)


def make_cost(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``[b, n, m]`` float32 squared Euclidean costs, computed in float64 from float32 points."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    sq = lambda z: (z * z).sum(-1)
    cost = sq(x)[:, :, None] + sq(y)[:, None, :] - 2 * np.einsum("bid,bjd->bij", x, y)
    return np.maximum(cost, 0.0).astype(np.float32)


def regularized_cost_np(plan: np.ndarray, cost: np.ndarray, eps: float) -> float:
    """``<P, C> + eps KL(P | a b^T)`` (generalised KL, uniform weights) in float64."""
    plan = plan.astype(np.float64)
    n, m = plan.shape
    ref = 1.0 / (n * m)
    pos = plan > 0
    kl = np.sum(np.where(pos, plan * np.log(np.where(pos, plan, 1.0) / ref), 0.0) - plan + ref)
    return float(np.sum(plan * cost) + eps * kl)


# --------------------------------------------------------------------------------------------
# Methods (imports are local: a worker imports only its own library).
# --------------------------------------------------------------------------------------------


def _summary(out):
    return out.regularized_cost, out.n_iters, out.marginal_error, out.converged


def _ours(batch: bool, fixed_iters: int | None):
    import jax

    from alignment import sinkhorn

    def one(c):
        kw = {"tol": None, "max_iters": fixed_iters} if fixed_iters else {}
        return _summary(sinkhorn(c, epsilon=EPSILON, **({"tol": THRESHOLD} | kw)))

    return jax.jit(jax.vmap(one) if batch else one)


def _ours_online():
    import jax

    from alignment import sinkhorn_points

    def one(x, y):
        out = sinkhorn_points(x, y, epsilon=EPSILON, tol=THRESHOLD, chunk_size=CHUNK)
        return _summary(out)

    return jax.jit(one)


def _ours_dense():
    import jax

    from alignment import sinkhorn, squared_euclidean

    def one(x, y):
        out = sinkhorn(squared_euclidean(x, y), epsilon=EPSILON, tol=THRESHOLD)
        return _summary(out)

    return jax.jit(one)


def _ott_summary(out, err):
    return out.reg_ot_cost, out.n_iters, err, out.converged


def _ott(batch: bool):
    import jax
    import jax.numpy as jnp
    from ott.geometry import geometry
    from ott.solvers import linear

    def one(c):
        out = linear.solve(geometry.Geometry(cost_matrix=c, epsilon=EPSILON), threshold=THRESHOLD)
        # our column error of ott's solution (its potentials are ours + eps log(1/n))
        n, m = c.shape
        f = out.f + EPSILON * jnp.log(n)
        g = out.g + EPSILON * jnp.log(m)
        plan = jnp.exp((f[:, None] + g[None, :] - c) / EPSILON) / (n * m)
        err = jnp.sum(jnp.abs(plan.sum(0) - 1.0 / m))
        return _ott_summary(out, err)

    return jax.jit(jax.vmap(one) if batch else one)


def _pot_online(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    import ot

    n, m = x.shape[0], y.shape[0]
    a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    xs, ys = x.astype(np.float64), y.astype(np.float64)
    f, g, log = ot.bregman.empirical_sinkhorn(
        xs, ys, EPSILON, a, b, metric="sqeuclidean", numIterMax=2000, stopThr=THRESHOLD,
        isLazy=True, batchSize=CHUNK, log=True,
    )  # fmt: skip
    # POT's lazy potentials are ours / eps + log(weights); its last update is g, so the
    # columns are exact, the plan's mass is 1 and D = <a, f> + <b, g> (ours)
    value = EPSILON * (np.dot(a, f - np.log(a)) + np.dot(b, g - np.log(b)))
    err = float(log["err"][-1]) if log["err"] else float("inf")  # L1 error of the rows
    return {
        "value": np.array([value]),
        "iters": np.array([log["niter"] + 1]),
        "marginal_error": np.array([err]),
        "converged": np.array([err < THRESHOLD]),
    }


def _pot(cost: np.ndarray) -> dict[str, np.ndarray]:
    import ot

    n, m = cost.shape
    a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    plan, log = ot.bregman.sinkhorn_log(
        a, b, cost.astype(np.float64), EPSILON, stopThr=THRESHOLD, numItermax=2000, log=True
    )
    return {
        "value": np.array([regularized_cost_np(plan, cost, EPSILON)]),
        "iters": np.array([log["niter"]]),
        "marginal_error": np.array([np.abs(plan.sum(0) - b).sum()]),
        "converged": np.array([log["err"][-1] < THRESHOLD]),
    }


def run_method(spec: str, inputs: Path, result: Path, repeats: int, fixed_iters: int) -> None:
    """Worker: runs one method on one input file; writes ``result``.json/.npz."""
    section, name = spec.split(":")
    with np.load(inputs) as z:
        data = {k: z[k] for k in z.files}
    stats: dict[str, Any] = {}
    if name.startswith("pot"):
        import ot  # noqa: F401  (imported before the baseline: its import is not the method's)
    if name == "pot":
        outputs, stats = h.measure(lambda: _pot(data["cost"][0]), repeats=1, warmup=0)
    elif name == "pot-online":
        outputs, stats = h.measure(
            lambda: _pot_online(data["x"][0], data["y"][0]), repeats=1, warmup=0
        )
    else:
        import jax

        if name in ("ours-online", "ours-dense"):
            fn = _ours_online() if name == "ours-online" else _ours_dense()
            args = (jax.numpy.asarray(data["x"][0]), jax.numpy.asarray(data["y"][0]))
        else:
            batch = section == "batch"
            if name == "ott-jax":
                fn = _ott(batch)
            else:
                fn = _ours(batch, fixed_iters if name == "ours-scan" else None)
            args = (jax.numpy.asarray(data["cost"] if batch else data["cost"][0]),)
        compiled = fn.lower(*args).compile()
        stats["xla"] = h.xla_memory_mb(compiled)
        out, timing = h.measure(lambda: jax.block_until_ready(compiled(*args)), repeats=repeats)
        stats |= timing
        stats["device"] = h.jax_device_info()
        stats["device_memory"] = h.device_memory_mb()
        value, iters, err, conv = (np.atleast_1d(np.asarray(v)) for v in out)
        outputs = {"value": value, "iters": iters, "marginal_error": err, "converged": conv}
    result.with_suffix(".json").write_text(json.dumps(stats, default=h._json_default))
    np.savez(result.with_suffix(".npz"), **outputs)


# --------------------------------------------------------------------------------------------
# Driver.
# --------------------------------------------------------------------------------------------


def _inputs(section: str, cfg: dict[str, Any]) -> tuple[str, dict[str, np.ndarray]]:
    if section == "single":
        n = cfg["single"]
        x, y = make_points(1, n, scaled=False)
        return f"n=m={n} d={D}", {"x": x, "y": y, "cost": make_cost(x, y)}
    if section == "batch":
        b, n = cfg["batch"]
        x, y = make_points(b, n, scaled=False)
        return f"b={b} n=m={n} d={D}", {"cost": make_cost(x, y)}
    n = cfg["online"]
    x, y = make_points(1, n, scaled=True)
    return f"n=m={n} d={D} scaled", {"x": x, "y": y}


def run_benchmark(config: str, out: Path) -> dict[str, Any]:
    """Runs every section of ``config`` one worker at a time, prints the table, writes JSON."""
    cfg = CONFIGS[config]
    rows: list[dict[str, Any]] = []
    device = None
    with tempfile.TemporaryDirectory(prefix="bench_sinkhorn_") as tmp:
        tmpdir = Path(tmp)
        for section, all_methods in SECTIONS.items():
            methods = tuple(m for m in all_methods if m not in cfg["skip"])
            label, data = _inputs(section, cfg)
            inputs = tmpdir / f"{section}.npz"
            np.savez(inputs, **data)
            del data
            results = {}
            for name in methods:
                print(f"[{section} {label}] {name} ...", file=sys.stderr, flush=True)
                stem = tmpdir / f"{section}_{name}"
                reps = cfg["repeats"][section]
                argv = ["--worker", f"{section}:{name}", "--inputs", str(inputs),
                        "--result", str(stem), "--repeats", str(reps),
                        "--fixed-iters", str(cfg["fixed_iters"])]  # fmt: skip
                h.run_worker(MODULE, argv, timeout=1800.0)
                stats = json.loads(stem.with_suffix(".json").read_text())
                device = stats.pop("device", device)
                with np.load(stem.with_suffix(".npz")) as z:
                    results[name] = (stats, {k: z[k] for k in z.files})
            ref_name, ours_name = REFERENCE[section], OURS[section]
            for name in methods:
                stats, o = results[name]
                converged = bool(np.all(o["converged"]))
                if name == "ours-scan":  # no criterion of its own: held to the threshold
                    converged &= bool(np.all(o["marginal_error"] < THRESHOLD))
                row = {
                    "section": section,
                    "config": label,
                    "method": name,
                    "iters": int(np.max(o["iters"])),
                    "marginal_error": float(np.max(o["marginal_error"])),
                    "converged": converged,
                    **stats,
                }
                if name != ref_name:
                    row["cost_err"] = h.max_rel_err(o["value"], results[ref_name][1]["value"])
                if name != ours_name:
                    row["ratio_ours_over_peer"] = (
                        results[ours_name][0]["median_s"] / stats["median_s"]
                    )
                rows.append(row)
    passed = all(
        r["converged"] and (r.get("cost_err") is None or r["cost_err"] <= TOL) for r in rows
    )
    table = format_table(rows)
    print(f"\n## Sinkhorn benchmark ({config}, eps={EPSILON}, threshold={THRESHOLD}, {device})\n")
    print(table)
    n_online = cfg["online"]
    print(f"\n(a dense float32 cost at n = m = {n_online} takes {4 * n_online**2 / 1e6:.0f} MB)")
    print(f"\n{'PASS' if passed else 'FAIL'}: every method converged and cost err <= {TOL:g}.")
    payload = {
        "benchmark": MODULE,
        "config": config,
        "epsilon": EPSILON,
        "threshold": THRESHOLD,
        "fixed_iterations": cfg["fixed_iters"],
        "chunk_size": CHUNK,
        "cost": "squared_euclidean(x, y), x, y ~ N(0, I_16) (online section: / sqrt(32)), float32",
        "dense_cost_mb_online": 4 * n_online**2 / 1e6,
        "passed": passed,
        "environment": h.environment(["jax", "jaxlib", "numpy", "ott-jax", "pot"])
        | {"jax_device": device},
        "rows": rows,
        "table_markdown": table,
    }
    h.save_results(out, payload)
    return payload


def format_table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table, one line per section and method."""
    headers = ["section", "config", "method", "median s", "ours/peer", "iters", "marg err",
               "cost err", "converged", *h.MEMORY_HEADERS]  # fmt: skip
    lines = []
    for r in rows:
        lines.append(
            [
                r["section"],
                r["config"],
                r["method"],
                h.fmt(r["median_s"], ".4f"),
                h.fmt(r.get("ratio_ours_over_peer"), ".2f"),
                r["iters"],
                h.fmt(r["marginal_error"], ".1e"),
                h.fmt(r.get("cost_err"), ".1e"),
                r["converged"],
                *h.memory_cells(r, ".0f"),
            ]
        )
    return h.markdown_table(headers, lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 if the checks fail)."""
    parser = h.cli_parser(__doc__, CONFIGS, DEFAULT_OUT)
    parser.add_argument("--fixed-iters", type=int, default=1500, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        run_method(args.worker, args.inputs, args.result, args.repeats, args.fixed_iters)
        return 0
    config = "quick" if args.quick else args.config
    payload = run_benchmark(config, h.output_path(args.out, config, DEFAULT_OUT))
    return 0 if payload["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
