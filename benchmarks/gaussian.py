"""Gaussian W2 (Bures-Wasserstein): ours against ott-jax and POT, on the same inputs.

Run from the repository root::

    python -m benchmarks.gaussian                  # n = 256 pairs, d = 64 (about a minute)
    python -m benchmarks.gaussian --quick          # n = 8, d = 8: a smoke test
    python -m benchmarks.gaussian --out PATH.json  # results as JSON (default under results/)

Inputs (float32, seeded): ``n`` pairs of Gaussians with means ``N(0, I)`` and covariances
``A A^T / d + 0.1 I`` (``A`` standard normal ``[d, d]``); the same arrays go to every method.
All values are the **squared** distance ``W2^2``.

1. **full W2 value**, batched over the pairs:

   * ours: ``jit(vmap(alignment.gaussian_w2))``;
   * ott-jax: ``jit(vmap(ott.geometry.costs.Bures(dimension=d)))`` on the concatenated
     ``[mean, cov.ravel()]`` vectors (its ``__call__`` is the full ``W2^2``; matrix square roots
     by Newton-Schulz iterations at their default tolerance ``1e-6``);
   * POT (loop): ``ot.gaussian.bures_wasserstein_distance(m1, m2, C1, C2) ** 2`` one pair at a
     time (NumPy backend: ``eigh``-based square roots, in float32 for float32 inputs);
   * POT (paired): the same function on the whole batch with ``paired=True``.

   POT runs with NumPy's BLAS limited to one thread (``threadpoolctl``): with OpenBLAS's default
   threading its small products are about 30 times slower on a two-core machine (9 s instead of
   0.2 s for the loop here). JAX's LAPACK kernels are unaffected by that setting (measured).

2. **full W2 value + gradient** in both means and covariances: ours only. ott-jax's gradient
   (a Sylvester solve by Bartels-Stewart for each square root, that is independent batched
   LAPACK calls) deadlocks jaxlib 0.10's CPU thread pool on two cores at this batch size
   (the threads wait on each other inside ``ParallelBatchMap``), so it is not timed here.

3. **diagonal W2 value** (variances = the diagonals of the same covariances): ours
   ``jit(vmap(gaussian_w2_diag))`` against ours full on ``diag(var)`` (what the fast path saves).

Timing: each method runs in a fresh subprocess; JAX methods are compiled ahead of time, then one
warm-up call, then ``repeats`` timed calls ending in ``jax.block_until_ready``; the table shows
the median. ``ours/peer`` is our median over the peer's (below 1: ours is faster).

Errors: ``max_i |v_i - ref_i| / |ref_i|`` over the pairs, against a float64 reference computed
with SciPy's ``sqrtm`` on the same (float32-rounded) inputs. ``W2^2 err`` is on the value;
``Bures^2 err`` on the covariance part alone, from an untimed second call of the same program
with ``m2 = m1`` (the part that cancels, so the harder one; the mean term is about four times the
covariance term here). ``err f64`` reruns the JAX methods under ``jax_enable_x64`` on the same
inputs (the algorithm's error, not float32 rounding). The gradient error is the max-norm error
per pair relative to that pair's max-norm, against the closed form ``d/dm1 = 2 (m1 - m2)``,
``d/dS1 = I - T12``, ``d/dS2 = I - T21`` (``T`` the optimal maps, from SciPy). The pass
criterion (exit status 1 otherwise): our float32 value errors (both columns) at most ``1e-5``,
our float64 errors at most ``1e-9``, our float32 gradient error at most ``1e-4``. The row
``ours-full`` of section 3 is a contrast: on these nearly equal diagonal covariances the
covariance part is a small difference of traces, so only its ``W2^2`` error is checked.

Memory, measured in each method's own process (see ``benchmarks._harness``): ``peak MB`` is the
peak RSS above the RSS after imports and inputs, compilation included; ``call MB`` is the peak
RSS during the timed calls above the RSS just before them; ``XLA temp MB`` is the compiled
program's scratch memory.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import _harness as h

MODULE = "benchmarks.gaussian"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "gaussian_cpu.json"
TOL = 1e-5  # float32 value errors (ours), relative
TOL_F64 = 1e-9  # float64 value errors (ours)
GRAD_TOL = 1e-4  # float32 gradient errors (ours)
SPEED_TARGET = 0.5  # the target: ours/ott-jax at most this on the full value
SEED = 0

CONFIGS: dict[str, dict[str, Any]] = {
    "cpu": {"n": 256, "d": 64, "repeats": {"ours": 20, "ott-jax": 10, "default": 5}},
    "quick": {"n": 8, "d": 8, "repeats": {"default": 2}},
}
SECTIONS = (
    ("value", "full W2 value", ("ours", "ott-jax", "pot-loop", "pot-paired")),
    ("grad", "full W2 value+grad", ("ours",)),
    ("diag", "diagonal W2 value", ("ours-diag", "ours-full")),
)
JAX_METHODS = {"value:ours", "value:ott-jax", "grad:ours", "diag:ours-diag", "diag:ours-full"}


# --------------------------------------------------------------------------------------------
# The methods. Each JAX builder returns ``(jitted batched function, its argument tuple)`` from
# the input arrays; each NumPy method maps the inputs to the values. Imports are local: a
# worker imports only its own library.
# --------------------------------------------------------------------------------------------


def _ours_value(data):
    import jax

    from alignment import gaussian_w2

    return jax.jit(jax.vmap(gaussian_w2)), (data["m1"], data["c1"], data["m2"], data["c2"])


def _ott_value(data):
    import jax
    from ott.geometry.costs import Bures

    n, d = data["m1"].shape
    bures = Bures(dimension=d)
    x = np.concatenate([data["m1"], data["c1"].reshape(n, d * d)], axis=1)
    y = np.concatenate([data["m2"], data["c2"].reshape(n, d * d)], axis=1)
    return jax.jit(jax.vmap(bures)), (x, y)


def _ours_grad(data):
    import jax

    from alignment import gaussian_w2

    fn = jax.jit(jax.vmap(jax.value_and_grad(gaussian_w2, argnums=(0, 1, 2, 3))))
    return fn, (data["m1"], data["c1"], data["m2"], data["c2"])


def _ours_diag(data):
    import jax

    from alignment import gaussian_w2_diag

    return jax.jit(jax.vmap(gaussian_w2_diag)), (data["m1"], data["v1"], data["m2"], data["v2"])


def _ours_full_on_diag(data):
    import jax
    import jax.numpy as jnp

    from alignment import gaussian_w2

    def fn(m1, v1, m2, v2):
        return gaussian_w2(m1, jnp.diag(v1), m2, jnp.diag(v2))

    return jax.jit(jax.vmap(fn)), (data["m1"], data["v1"], data["m2"], data["v2"])


def _pot_loop(data):
    from ot.gaussian import bures_wasserstein_distance

    m1, c1, m2, c2 = data["m1"], data["c1"], data["m2"], data["c2"]
    return np.array(
        [bures_wasserstein_distance(m1[i], m2[i], c1[i], c2[i]) ** 2 for i in range(len(m1))]
    )


def _pot_paired(data):
    from ot.gaussian import bures_wasserstein_distance

    w = bures_wasserstein_distance(data["m1"], data["m2"], data["c1"], data["c2"], paired=True)
    return np.asarray(w) ** 2


JAX_BUILDERS = {
    "value:ours": _ours_value,
    "value:ott-jax": _ott_value,
    "grad:ours": _ours_grad,
    "diag:ours-diag": _ours_diag,
    "diag:ours-full": _ours_full_on_diag,
}
NUMPY_METHODS = {"value:pot-loop": _pot_loop, "value:pot-paired": _pot_paired}


# --------------------------------------------------------------------------------------------
# Worker: one method on one input file, in its own process.
# --------------------------------------------------------------------------------------------


def _outputs_dict(out: Any) -> dict[str, np.ndarray]:
    """``{"value": ...}`` plus ``grad_m1, grad_c1, grad_m2, grad_c2`` for value-and-grad."""
    if isinstance(out, tuple):
        value, grads = out
        names = ("grad_m1", "grad_c1", "grad_m2", "grad_c2")
        return {"value": np.asarray(value)} | {
            k: np.asarray(g) for k, g in zip(names, grads, strict=True)
        }
    return {"value": np.asarray(out)}


def _equal_means(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inputs with ``m2 = m1``: the value is then the covariance (Bures) part alone."""
    return data | {"m2": data["m1"]}


def _one_blas_thread():
    """Limits NumPy's BLAS to one thread where threadpoolctl is installed (a no-op otherwise).

    OpenBLAS's default threading makes POT's small (64 x 64) products about 30 times slower on
    a two-core machine; jaxlib's LAPACK kernels are not affected either way.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def run_method(method: str, inputs: Path, output: Path, repeats: int) -> None:
    """Times ``method`` on the arrays in ``inputs`` and writes ``output`` (.json and .npz).

    JAX methods are rerun in float64 after the measurements (outputs suffixed ``64``).
    """
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

        out, stats = h.measure(call, repeats=repeats, setup=setup)
        outputs = _outputs_dict(out)
        # the covariance part alone: the same program on the inputs with mean2 := mean1
        args_eq = jax.device_put(JAX_BUILDERS[method](_equal_means(data))[1])
        outputs["bures"] = _outputs_dict(holder["compiled"](*args_eq))["value"]
        stats["xla"] = h.xla_memory_mb(holder["compiled"])
        device_end = h.device_memory_mb()
        if device_base is not None and device_end is not None:
            stats["device_peak_mb"] = device_end["peak_mb"] - device_base["in_use_mb"]
        extra["device"] = h.jax_device_info()
        del out, holder, args
        previous = jax.config.read("jax_enable_x64")
        jax.config.update("jax_enable_x64", True)
        try:
            data64 = {k: v.astype(np.float64) for k, v in data.items()}
            jitted64, args64 = JAX_BUILDERS[method](data64)
            for key, val in _outputs_dict(jitted64(*args64)).items():
                outputs[key + "64"] = val
        finally:
            jax.config.update("jax_enable_x64", previous)
    elif method in NUMPY_METHODS:
        fn = NUMPY_METHODS[method]
        with _one_blas_thread():
            value, stats = h.measure(lambda: fn(data), repeats=repeats)
            outputs = {"value": np.asarray(value), "bures": np.asarray(fn(_equal_means(data)))}
    else:
        raise ValueError(f"unknown method {method!r}")
    np.savez(output.with_suffix(".npz"), **outputs)
    output.with_suffix(".json").write_text(json.dumps({**stats, **extra}))


# --------------------------------------------------------------------------------------------
# Inputs and the float64 reference.
# --------------------------------------------------------------------------------------------


def make_inputs(n: int, d: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """Seeded float32 means ``[n, d]``, covariances ``A A^T / d + 0.1 I`` and their diagonals."""
    rng = np.random.default_rng([seed, n, d])
    a = rng.standard_normal((2, n, d, d))
    covs = (a @ np.swapaxes(a, -1, -2) / d + 0.1 * np.eye(d)).astype(np.float32)
    means = rng.standard_normal((2, n, d)).astype(np.float32)
    variances = np.diagonal(covs, axis1=-2, axis2=-1).copy()
    return {
        "m1": means[0],
        "c1": covs[0],
        "m2": means[1],
        "c2": covs[1],
        "v1": variances[0],
        "v2": variances[1],
    }


def reference(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """float64 values, covariance parts and gradients from SciPy's ``sqrtm`` (never our code)."""
    import scipy.linalg

    def sqrtm(a):
        return np.real(scipy.linalg.sqrtm(a))

    m1, c1, m2, c2 = (data[k].astype(np.float64) for k in ("m1", "c1", "m2", "c2"))
    v1, v2 = data["v1"].astype(np.float64), data["v2"].astype(np.float64)
    n, d = m1.shape
    mean_term = np.sum((m1 - m2) ** 2, axis=1)
    bures = np.empty(n)
    grad_c1 = np.empty((n, d, d))
    grad_c2 = np.empty((n, d, d))
    for i in range(n):
        r1 = sqrtm(c1[i])
        mid = sqrtm(r1 @ c2[i] @ r1)
        bures[i] = np.trace(c1[i] + c2[i] - 2.0 * mid)
        r1_inv = np.linalg.inv(r1)
        t12 = r1_inv @ mid @ r1_inv  # the optimal map from N(0, S1) to N(0, S2)
        grad_c1[i] = np.eye(d) - t12
        grad_c2[i] = np.eye(d) - np.linalg.inv(t12)
    diag_bures = np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2, axis=1)
    return {
        "value": mean_term + bures,
        "bures": bures,
        "grad_m1": 2.0 * (m1 - m2),
        "grad_c1": grad_c1,
        "grad_m2": 2.0 * (m2 - m1),
        "grad_c2": grad_c2,
        "diag_value": mean_term + diag_bures,
        "diag_bures": diag_bures,
    }


def _errors(section: str, out: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict:
    """Errors of one method's outputs against the float64 reference."""
    prefix = "diag_" if section == "diag" else ""
    value_ref, bures_ref = ref[prefix + "value"], ref[prefix + "bures"]
    errs: dict[str, float | None] = {
        "value_f32": h.max_rel_err(out["value"], value_ref),
        "bures_f32": h.max_rel_err(out["bures"], bures_ref),
        "value_f64": h.max_rel_err(out["value64"], value_ref) if "value64" in out else None,
        "grad_f32": None,
        "grad_f64": None,
    }
    if "grad_c1" in out:
        keys = ("grad_m1", "grad_c1", "grad_m2", "grad_c2")
        errs["grad_f32"] = max(h.max_rel_err_rows(out[k], ref[k]) for k in keys)
        errs["grad_f64"] = max(h.max_rel_err_rows(out[k + "64"], ref[k]) for k in keys)
    return errs


def _ours_ok(errs: dict[str, float | None], check_bures: bool = True) -> bool:
    def ok(e, tol):
        return e is None or (not np.isnan(e) and e <= tol)

    return (
        ok(errs["value_f32"], TOL)
        and (ok(errs["bures_f32"], TOL) or not check_bures)
        and ok(errs["value_f64"], TOL_F64)
        and ok(errs["grad_f32"], GRAD_TOL)
        and ok(errs["grad_f64"], TOL_F64)
    )


# --------------------------------------------------------------------------------------------
# Driver.
# --------------------------------------------------------------------------------------------


def _plan(config: str, tmpdir: Path) -> tuple[list[dict[str, Any]], Path]:
    """Writes the input file and lists the worker runs (one per section and method)."""
    cfg = CONFIGS[config]
    inputs = tmpdir / "inputs.npz"
    np.savez(inputs, **make_inputs(cfg["n"], cfg["d"]))
    tasks = []
    for section, title, methods in SECTIONS:
        for name in methods:
            repeats = cfg["repeats"].get(name, cfg["repeats"]["default"])
            stem = tmpdir / f"{section}_{name}"
            argv = ["--worker", f"{section}:{name}", "--inputs", str(inputs),
                    "--result", str(stem), "--repeats", str(repeats)]  # fmt: skip
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
    label = f"n={cfg['n']} d={cfg['d']}"
    device_info = None
    results: dict[tuple[str, str], tuple[dict, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_gaussian_") as tmp:
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
            results[(task["section"], task["method"])] = (stats, outputs)
        with np.load(inputs) as z:
            ref = reference({k: z[k] for k in z.files})  # after the timings: no BLAS threads
    rows: list[dict[str, Any]] = []
    for task in tasks:
        section, name = task["section"], task["method"]
        stats, outputs = results[(section, name)]
        first = SECTIONS[[s[0] for s in SECTIONS].index(section)][2][0]
        row = {
            "section": task["title"],
            "config": label,
            "n": cfg["n"],
            "d": cfg["d"],
            "method": name,
            "repeats": task["repeats"],
            "parallel_jobs": jobs,
            **stats,
            "errors": _errors(section, outputs, ref),
        }
        if name != first:
            row["ratio_ours_over_peer"] = (
                results[(section, first)][0]["median_s"] / stats["median_s"]
            )
        if name.startswith("ours"):
            # ours-full on diagonal covariances is a contrast row: its covariance part is
            # small next to the traces it is computed from (cancellation), so only its value
            # is checked
            check_bures = (section, name) != ("diag", "ours-full")
            row["within_tol"] = _ours_ok(row["errors"], check_bures)
        rows.append(row)
    passed = all(r.get("within_tol", True) for r in rows)
    ott = next(r for r in rows if r["method"] == "ott-jax")
    speed_ratio = ott["ratio_ours_over_peer"]
    table = format_table(rows)
    print(f"\n## Gaussian W2 benchmark ({config}, {label}, float32, device: {device_info})\n")
    print(table)
    print(
        f"\nours/ott-jax on the full value: {speed_ratio:.2f} (target <= {SPEED_TARGET}: "
        f"{'met' if speed_ratio <= SPEED_TARGET else 'NOT met'}; at {label} only)."
    )
    verdict = "PASS" if passed else "FAIL"
    print(
        f"{verdict}: our float32 value errors (W2^2 and Bures^2) <= {TOL:g}, float64 <= "
        f"{TOL_F64:g}, float32 gradient <= {GRAD_TOL:g} (peers' errors are reported, not checked)."
    )
    payload = {
        "benchmark": MODULE,
        "config": config,
        "n": cfg["n"],
        "d": cfg["d"],
        "tolerance": TOL,
        "passed": passed,
        "ratio_ours_over_ott": speed_ratio,
        "speed_target_met": speed_ratio <= SPEED_TARGET,
        "environment": h.environment(["jax", "jaxlib", "numpy", "scipy", "ott-jax", "pot"])
        | {"jax_device": device_info},
        "rows": rows,
        "table_markdown": table,
    }
    h.save_results(out, payload)
    return payload


def format_table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table (one line per section and method)."""
    headers = [
        "section",
        "config",
        "method",
        "median s",
        "ours/peer",
        "W2^2 err f32",
        "Bures^2 err f32",
        "W2^2 err f64",
        "grad err f32",
        *h.MEMORY_HEADERS,
    ]
    lines = []
    for r in rows:
        errs = r["errors"]
        lines.append(
            [
                r["section"],
                r["config"],
                r["method"],
                h.fmt(r["median_s"], ".4f"),
                h.fmt(r.get("ratio_ours_over_peer"), ".2f"),
                h.fmt(errs["value_f32"], ".1e"),
                h.fmt(errs["bures_f32"], ".1e"),
                h.fmt(errs["value_f64"], ".1e"),
                h.fmt(errs["grad_f32"], ".1e"),
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
        run_method(args.worker, args.inputs, args.result, args.repeats)
        return 0
    config = "quick" if args.quick else args.config
    payload = run_benchmark(config, h.output_path(args.out, config, DEFAULT_OUT), jobs=args.jobs)
    return 0 if payload["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
