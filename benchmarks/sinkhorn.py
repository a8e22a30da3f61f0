"""Sinkhorn: ours against ott-jax and POT's log-domain Sinkhorn, on the same cost matrices.

Run from the repository root::

    python -m benchmarks.sinkhorn                  # CPU sizes (a minute or two on 2 cores)
    python -m benchmarks.sinkhorn --quick          # tiny sizes: a smoke test
    python -m benchmarks.sinkhorn --out PATH.json  # results as JSON (default under results/)

Inputs (float32, seeded): standard-normal points ``x: [n, d]``, ``y: [m, d]`` with ``d = 16``,
scaled by ``1 / sqrt(2 d)``, and the cost ``C = squared_euclidean(x, y)`` (not halved), whose
mean is then about 1. ``C`` is computed once and the same matrix is handed to every method.
``epsilon = 0.1``, uniform weights, balanced.

Sections:

1. **single problem** ``n = m = 2048``, ``threshold = 1e-3``:

   * ours: ``jit(lambda C: alignment.ot.sinkhorn(C, epsilon=eps, threshold=1e-3))`` (while loop,
     check every 10 iterations, L1 column error);
   * ott-jax: ``jit(linear.solve(Geometry(cost_matrix=C, epsilon=eps), threshold=1e-3))``
     (defaults: log domain, check every 10 iterations, L1 column error, ``max_iterations=2000``);
   * POT: ``ot.bregman.sinkhorn_log(a, b, C, eps, stopThr=1e-3)`` (NumPy, float64 inside; its
     criterion is the L2 norm of the column error, checked every 10 iterations).

2. **vmapped batch** of ``b = 256`` problems ``n = m = 64`` (each its own points):

   * ours (scan): ``jit(vmap(sinkhorn(..., threshold=None, max_iterations=FIXED_ITERS)))``: a
     fixed number of iterations, no convergence test;
   * ours (while): ``jit(vmap(sinkhorn(..., threshold=1e-3)))``;
   * ott-jax: ``jit(vmap(linear.solve(...)))`` at ``threshold=1e-3`` (runs until the slowest
     member converges).

Figures: ``median s`` (median over ``repeats`` calls after one warm-up; JAX methods compiled
ahead of time), ``iters`` (iterations run; max over the batch), ``marg err`` (our L1 column
error of the returned solution; max over the batch), ``cost err`` (relative error of the
regularised cost ``<P, C> + eps KL(P | a b^T)`` against ours (scan rows: against ott-jax), max over
the batch; for POT it is evaluated from its plan in float64), ``peak MB`` / ``call MB`` / ``XLA
temp MB`` as in ``benchmarks._harness``. ``ours/peer`` is our median over the peer's. Each method
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
FIXED_ITERS = 30  # scan mode: enough here to beat the threshold on every member (reported)
TOL = 1e-2
SEED = 0

CONFIGS: dict[str, dict[str, Any]] = {
    "cpu": {"single": 2048, "batch": (256, 64), "repeats": 5},
    "quick": {"single": 128, "batch": (8, 16), "repeats": 2},
}
SINGLE_METHODS = ("ours", "ott-jax", "pot")
BATCH_METHODS = ("ours-scan", "ours-while", "ott-jax")


def make_cost(b: int, n: int, seed: int = SEED) -> np.ndarray:
    """``[b, n, n]`` float32 squared Euclidean costs of scaled standard-normal points."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, n, D)) / np.sqrt(2 * D)
    y = rng.normal(size=(b, n, D)) / np.sqrt(2 * D)
    sq = lambda z: (z * z).sum(-1)  # the expansion, in float64 (no cancellation at this scale)
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


def _ours(batch: bool, fixed: bool):
    import jax

    from alignment.ot import sinkhorn

    def one(c):
        kw = {"threshold": None, "max_iterations": FIXED_ITERS} if fixed else {}
        out = sinkhorn(c, epsilon=EPSILON, **({"threshold": THRESHOLD} | kw))
        return out.regularized_cost, out.n_iterations, out.marginal_error, out.converged

    return jax.jit(jax.vmap(one) if batch else one)


def _ott(batch: bool, fixed: bool):
    del fixed
    import jax
    import jax.numpy as jnp
    from ott.geometry import geometry
    from ott.solvers import linear

    def one(c):
        out = linear.solve(geometry.Geometry(cost_matrix=c, epsilon=EPSILON), threshold=THRESHOLD)
        n_it = jnp.sum(out.errors > -1) * out.inner_iterations
        # our column error of ott's solution (its potentials are ours + eps log(1/n))
        n, m = c.shape
        f = out.f + EPSILON * jnp.log(n)
        g = out.g + EPSILON * jnp.log(m)
        plan = jnp.exp((f[:, None] + g[None, :] - c) / EPSILON) / (n * m)
        err = jnp.sum(jnp.abs(plan.sum(0) - 1.0 / m))
        return out.reg_ot_cost, n_it, err, out.converged

    return jax.jit(jax.vmap(one) if batch else one)


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


def run_method(spec: str, inputs: Path, result: Path, repeats: int) -> None:
    """Worker: runs one method on one input file; writes ``result``.json/.npz."""
    section, name = spec.split(":")
    with np.load(inputs) as z:
        cost = z["cost"]
    batch = section == "batch"
    stats: dict[str, Any] = {}
    if name == "pot":
        out, stats = h.measure(lambda: _pot(cost[0]), repeats=repeats)
        outputs = out
    else:
        import jax

        builder = _ott if name == "ott-jax" else _ours
        fn = builder(batch, fixed=name == "ours-scan")
        arg = jax.numpy.asarray(cost if batch else cost[0])
        compiled = fn.lower(arg).compile()
        stats["xla"] = h.xla_memory_mb(compiled)
        out, timing = h.measure(lambda: jax.block_until_ready(compiled(arg)), repeats=repeats)
        stats |= timing
        stats["device"] = h.jax_device_info()
        value, iters, err, conv = (np.atleast_1d(np.asarray(v)) for v in out)
        outputs = {"value": value, "iters": iters, "marginal_error": err, "converged": conv}
    result.with_suffix(".json").write_text(json.dumps(stats, default=h._json_default))
    np.savez(result.with_suffix(".npz"), **outputs)


# --------------------------------------------------------------------------------------------
# Driver.
# --------------------------------------------------------------------------------------------


def run_benchmark(config: str, out: Path) -> dict[str, Any]:
    """Runs both sections of ``config`` one worker at a time, prints the table, writes JSON."""
    cfg = CONFIGS[config]
    rows: list[dict[str, Any]] = []
    device = None
    with tempfile.TemporaryDirectory(prefix="bench_sinkhorn_") as tmp:
        tmpdir = Path(tmp)
        plan = [
            ("single", 1, cfg["single"], SINGLE_METHODS, "ours"),
            ("batch", *cfg["batch"], BATCH_METHODS, "ott-jax"),
        ]
        for section, b, n, methods, _ in plan:
            inputs = tmpdir / f"{section}.npz"
            np.savez(inputs, cost=make_cost(b, n))
            results = {}
            for name in methods:
                print(f"[{section} b={b} n=m={n}] {name} ...", file=sys.stderr, flush=True)
                stem = tmpdir / f"{section}_{name}"
                argv = ["--worker", f"{section}:{name}", "--inputs", str(inputs),
                        "--result", str(stem), "--repeats", str(cfg["repeats"])]  # fmt: skip
                h.run_worker(MODULE, argv)
                stats = json.loads(stem.with_suffix(".json").read_text())
                device = stats.pop("device", device)
                with np.load(stem.with_suffix(".npz")) as z:
                    results[name] = (stats, {k: z[k] for k in z.files})
            ref_name = "ours" if section == "single" else "ott-jax"
            ours_name = "ours" if section == "single" else "ours-scan"
            for name in methods:
                stats, o = results[name]
                row = {
                    "section": section,
                    "config": f"b={b} n=m={n} d={D}",
                    "method": name,
                    "iters": int(np.max(o["iters"])),
                    "marginal_error": float(np.max(o["marginal_error"])),
                    "converged": bool(np.all(o["converged"])),
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
    print(f"\n{'PASS' if passed else 'FAIL'}: every method converged and cost err <= {TOL:g}.")
    payload = {
        "benchmark": MODULE,
        "config": config,
        "epsilon": EPSILON,
        "threshold": THRESHOLD,
        "fixed_iterations": FIXED_ITERS,
        "cost": "squared_euclidean(x, y), x, y ~ N(0, I_16) / sqrt(32), float32",
        "passed": passed,
        "environment": h.environment(["jax", "jaxlib", "numpy", "ott-jax", "pot"])
        | {"jax_device": device},
        "rows": rows,
        "table_markdown": table,
    }
    path = h.write_json(out, payload)
    print(f"results written to {path}")
    return payload


def format_table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table, one line per section and method."""
    headers = ["section", "config", "method", "median s", "ours/peer", "iters", "marg err",
               "cost err", "converged", "peak MB", "call MB", "XLA temp MB"]  # fmt: skip
    lines = []
    for r in rows:
        xla = r.get("xla") or {}
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
                h.fmt(r["peak_rss_mb"], ".0f"),
                h.fmt(r.get("call_peak_rss_mb"), ".0f"),
                h.fmt(xla.get("xla_temp_mb"), ".0f"),
            ]
        )
    return h.markdown_table(headers, lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 if the checks fail)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="cpu")
    parser.add_argument("--quick", action="store_true", help="shorthand for --config quick")
    parser.add_argument("--out", type=Path, default=None, help=f"JSON path (default {DEFAULT_OUT})")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        run_method(args.worker, args.inputs, args.result, args.repeats)
        return 0
    config = "quick" if args.quick else args.config
    out = args.out
    if out is None:
        out = DEFAULT_OUT if config == "cpu" else DEFAULT_OUT.with_name(f"sinkhorn_{config}.json")
    payload = run_benchmark(config, out)
    return 0 if payload["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
