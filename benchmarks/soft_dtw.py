"""Soft-DTW and exact DTW: ours against ott-jax, tslearn and dtw-python, on the same inputs.

Run from the repository root::

    python -m benchmarks.soft_dtw                  # CPU sizes (a few minutes on 2 cores)
    python -m benchmarks.soft_dtw --gpu            # b=64, t=s=1024 (meant for a GPU machine)
    python -m benchmarks.soft_dtw --quick          # tiny sizes, no long section: a smoke test
    python -m benchmarks.soft_dtw --out PATH.json  # results as JSON (default under results/)

Sections (float32 inputs, seeded standard-normal ``x: [b, t, d]`` and ``y: [b, s, d]``, ``d = 8``,
``gamma = 0.1``; the same arrays are handed to every method):

1. **soft-DTW value + gradient in x** with the squared Euclidean cost (not halved; the
   convention of tslearn and of ott-jax's ``SoftDTW`` with its default ``SqEuclidean``):

   * ours: ``jit(vmap(value_and_grad(lambda x, y: alignment.soft_dtw_points(x, y, gamma=gamma))))``;
   * ott-jax: the same with ``ott.geometry.costs.SoftDTW(gamma=gamma)(x, y)`` (plain autodiff
     through its ``lax.scan``);
   * tslearn: a Python loop over the batch of ``SoftDTW(SquaredEuclidean(x, y), gamma)``:
     ``.compute()`` (value), ``.grad()`` (gradient in the cost matrix) and
     ``SquaredEuclidean.jacobian_product`` (chain rule to x); numba, float64 throughout.

2. **exact DTW value** (sum of squared Euclidean costs on the best path): ours
   ``jit(vmap(lambda x, y: alignment.dtw(alignment.squared_euclidean(x, y))))`` against
   dtw-python's ``dtw(x, y, dist_method="sqeuclidean", step_pattern="symmetric1",
   distance_only=True).distance`` (``symmetric1``: steps (1,0), (0,1), (1,1) with unit weights,
   our path set) and tslearn's ``metrics.dtw(x, y) ** 2`` (tslearn returns the square root).

3. **long sequences**: section 1 at ``b = 1``, ``t = s = 4096`` (ours, and the peers for scale).

Timing: each method runs in a fresh subprocess; JAX methods are compiled ahead of time
(``jit(...).lower(x, y).compile()``), then one warm-up call (numba compiles tslearn's kernels
there), then ``repeats`` timed calls, each ending in ``jax.block_until_ready`` for JAX. The
table shows the median. ``ours/peer`` is our median divided by the peer's (below 1: ours is
faster). On a GPU machine the JAX methods run on the GPU and tslearn / dtw-python on the CPU.

Errors (``err`` columns, on each peer's row: ours against that peer; see ``benchmarks._harness``):
values use ``max_i |v_i - ref_i| / |ref_i|`` over the batch, gradients the per-example max-norm
error relative to the max-norm of the reference gradient (entry-wise relative errors are
meaningless for gradient entries near zero). ``f32`` compares the timed float32 outputs (tslearn
and dtw-python compute in float64 whatever the input); ``f64`` reruns the JAX methods with
``jax_enable_x64`` on the same inputs cast to float64, which checks the algorithm rather than the
rounding. The pass criterion (exit status 1 otherwise) is ``<= 1e-4`` for every float64 error,
every float32 *value* error, and our float32 gradient against our own float64 run (a second table
shows each JAX method's float32 run against its own float64 run). Peers' float32 gradients are
reported, not checked: at this gamma the soft-min weights are ``exp((R_a - R_b) / gamma)`` of
accumulated costs ``R`` in the thousands, whose float32 spacing divided by gamma is ~1e-3 when
the table is stored as is (ott-jax); ours stores each anti-diagonal relative to its minimum.

Memory, measured in each method's own fresh process (details in ``benchmarks._harness``):
``peak MB`` is the peak RSS over the process's life minus the RSS after imports and input
creation, so it includes compilation (XLA / LLVM for JAX, numba for tslearn: tens to hundreds of
MB that dominate at small sizes); ``call MB`` is the peak RSS during the timed calls minus the RSS
just before them, the working memory of one call. ``XLA temp MB`` is the scratch memory of the
compiled JAX program (``compiled.memory_analysis().temp_size_in_bytes``); on a GPU the JSON also
holds the device allocator's peak above the inputs (``device_peak_mb``).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import _harness as h

MODULE = "benchmarks.soft_dtw"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "soft_dtw_cpu.json"
TOL = 1e-4
D = 8
GAMMA = 0.1
SEED = 0

CONFIGS: dict[str, dict[str, Any]] = {
    "cpu": {"sizes": [(32, 128), (32, 512)], "long": (1, 4096)},
    "gpu": {"sizes": [(64, 1024)], "long": (1, 4096)},
    # the long section repeats section 1's code path: skipped here to keep the smoke test short
    "quick": {"sizes": [(4, 16)], "long": None},
}
# timed calls per sequence length (after the warm-up call)
REPEATS = {16: 2, 128: 10, 512: 5, 1024: 5, 4096: 3}

SOFT_METHODS = ("ours", "ott-jax", "tslearn")
DTW_METHODS = ("ours", "dtw-python", "tslearn")
SECTIONS = (
    ("soft", "soft-DTW value+grad", SOFT_METHODS),
    ("dtw", "DTW value", DTW_METHODS),
    ("long", "long soft-DTW value+grad", SOFT_METHODS),
)
JAX_METHODS = ("ours", "ott-jax")


# --------------------------------------------------------------------------------------------
# The methods. Each JAX builder returns the jitted batched function; each NumPy method maps
# (x, y) to a dict of outputs. Imports are local: a worker imports only its own library.
# --------------------------------------------------------------------------------------------


def _ours_soft(gamma: float):
    """Our soft-DTW value and gradient in x, batched: ``(x, y) -> (values [b], grads [b, t, d])``.

    (``gamma`` is closed over: a Python float, so it is not differentiated.)
    """
    import jax

    import alignment

    def loss(x, y):
        return alignment.soft_dtw_points(x, y, gamma=gamma)

    return jax.jit(jax.vmap(jax.value_and_grad(loss)))


def _ott_soft(gamma: float):
    """ott-jax's soft-DTW (default squared Euclidean ground cost), same signature as ours."""
    import jax
    from ott.geometry.costs import SoftDTW

    sdtw = SoftDTW(gamma=gamma)

    def loss(x, y):
        return sdtw(x, y)

    return jax.jit(jax.vmap(jax.value_and_grad(loss)))


def _ours_dtw(gamma: float):
    """Our exact DTW value with the squared Euclidean cost, batched (``gamma`` unused)."""
    del gamma
    import jax

    import alignment

    def value(x, y):
        return alignment.dtw(alignment.squared_euclidean(x, y))

    return jax.jit(jax.vmap(value))


def _tslearn_soft(x: np.ndarray, y: np.ndarray, gamma: float) -> dict[str, np.ndarray]:
    """tslearn's soft-DTW value and gradient in x, one pair at a time (float64 internally)."""
    from tslearn.metrics import SoftDTW, SquaredEuclidean

    values = np.empty(x.shape[0])
    grads = np.empty(x.shape, np.float64)
    for k in range(x.shape[0]):
        cost = SquaredEuclidean(x[k], y[k])
        sdtw = SoftDTW(cost, gamma=gamma)
        values[k] = sdtw.compute()
        grads[k] = cost.jacobian_product(sdtw.grad())
    return {"value": values, "grad": grads}


def _tslearn_dtw(x: np.ndarray, y: np.ndarray, gamma: float) -> dict[str, np.ndarray]:
    """tslearn's DTW, squared (tslearn returns the root of the sum of squared distances)."""
    del gamma
    from tslearn.metrics import dtw

    return {"value": np.array([dtw(x[k], y[k]) ** 2 for k in range(x.shape[0])])}


def _dtw_python(x: np.ndarray, y: np.ndarray, gamma: float) -> dict[str, np.ndarray]:
    """dtw-python's DTW with squared Euclidean local costs and the ``symmetric1`` step pattern."""
    del gamma
    import dtw

    values = [
        dtw.dtw(
            x[k], y[k], dist_method="sqeuclidean", step_pattern="symmetric1", distance_only=True
        ).distance
        for k in range(x.shape[0])
    ]
    return {"value": np.array(values)}


JAX_BUILDERS = {"soft:ours": _ours_soft, "soft:ott-jax": _ott_soft, "dtw:ours": _ours_dtw}
NUMPY_METHODS = {
    "soft:tslearn": _tslearn_soft,
    "dtw:tslearn": _tslearn_dtw,
    "dtw:dtw-python": _dtw_python,
}


# --------------------------------------------------------------------------------------------
# Worker: one method on one input file, in its own process.
# --------------------------------------------------------------------------------------------


def _outputs_dict(out: Any) -> dict[str, np.ndarray]:
    """Normalises a JAX method's output to ``{"value": ..., "grad": ...}`` NumPy arrays."""
    if isinstance(out, tuple):
        return {"value": np.asarray(out[0]), "grad": np.asarray(out[1])}
    return {"value": np.asarray(out)}


def run_method(method: str, inputs: Path, output: Path, repeats: int, gamma: float) -> None:
    """Times ``method`` on the arrays in ``inputs`` and writes ``output`` (.json and .npz).

    For JAX methods the outputs are also recomputed in float64 (``value64``, ``grad64``) after
    the measurements.
    """
    data = np.load(inputs)
    x, y = data["x"], data["y"]
    stats: dict[str, Any]
    extra: dict[str, Any] = {}
    if method in JAX_BUILDERS:
        import jax

        jitted = JAX_BUILDERS[method](gamma)
        xd, yd = jax.device_put(x), jax.device_put(y)
        jax.block_until_ready((xd, yd))
        device_base = h.device_memory_mb()
        holder: dict[str, Any] = {}

        def setup():
            holder["compiled"] = jitted.lower(xd, yd).compile()

        def call():
            return jax.block_until_ready(holder["compiled"](xd, yd))

        out, stats = h.measure(call, repeats=repeats, setup=setup)
        outputs = _outputs_dict(out)
        stats["xla"] = h.xla_memory_mb(holder["compiled"])
        device_end = h.device_memory_mb()
        if device_base is not None and device_end is not None:
            stats["device_peak_mb"] = device_end["peak_mb"] - device_base["in_use_mb"]
        extra["device"] = h.jax_device_info()
        del out, holder
        # float64 rerun on the same inputs: checks the algorithm, not float32 rounding
        previous = jax.config.read("jax_enable_x64")
        jax.config.update("jax_enable_x64", True)
        try:
            out64 = JAX_BUILDERS[method](gamma)(x.astype(np.float64), y.astype(np.float64))
            for key, val in _outputs_dict(out64).items():
                outputs[key + "64"] = val
        finally:
            jax.config.update("jax_enable_x64", previous)
    elif method in NUMPY_METHODS:
        fn = NUMPY_METHODS[method]
        outputs, stats = h.measure(lambda: fn(x, y, gamma), repeats=repeats)
    else:
        raise ValueError(f"unknown method {method!r}")
    np.savez(output.with_suffix(".npz"), **outputs)
    output.with_suffix(".json").write_text(json.dumps({**stats, **extra}))


# --------------------------------------------------------------------------------------------
# Driver.
# --------------------------------------------------------------------------------------------


def make_inputs(b: int, t: int, d: int = D, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Seeded float32 standard-normal ``x: [b, t, d]`` and ``y: [b, t, d]``."""
    rng = np.random.default_rng([seed, b, t, d])
    x = rng.standard_normal((b, t, d)).astype(np.float32)
    y = rng.standard_normal((b, t, d)).astype(np.float32)
    return x, y


def _errors(ours: dict, peer: dict, peer_is_jax: bool) -> dict[str, float | None]:
    """Our errors against a peer: float32 (timed outputs) and float64 (x64 reruns)."""
    ref64 = (
        {k[:-2]: v for k, v in peer.items() if k.endswith("64")} if peer_is_jax else peer
    )  # tslearn / dtw-python compute in float64 already
    errs: dict[str, float | None] = {
        "value_f32": h.max_rel_err(ours["value"], peer["value"]),
        "value_f64": h.max_rel_err(ours["value64"], ref64["value"]),
        "grad_f32": None,
        "grad_f64": None,
    }
    if "grad" in ours:
        errs["grad_f32"] = h.max_rel_err_rows(ours["grad"], peer["grad"])
        errs["grad_f64"] = h.max_rel_err_rows(ours["grad64"], ref64["grad"])
    return errs


def _self_errors(out: dict) -> dict[str, float | None]:
    """A JAX method's float32 run against its own float64 run (pure float32 rounding)."""
    errs: dict[str, float | None] = {"value": h.max_rel_err(out["value"], out["value64"])}
    errs["grad"] = h.max_rel_err_rows(out["grad"], out["grad64"]) if "grad" in out else None
    return errs


def _within_tol(errs: dict[str, float | None]) -> bool:
    """The pass criterion: float64 errors and float32 value errors at most ``TOL``."""
    checked = [errs["value_f32"], errs["value_f64"], errs["grad_f64"]]
    return all(e is None or (not np.isnan(e) and e <= TOL) for e in checked)


def _plan(config: str, tmpdir: Path, gamma: float) -> list[dict[str, Any]]:
    """Writes the input files and lists the worker runs (one per section, size and method)."""
    cfg = CONFIGS[config]
    tasks = []
    for section, title, methods in SECTIONS:
        if section == "long":
            sizes = [cfg["long"]] if cfg["long"] else []
        else:
            sizes = cfg["sizes"]
        kind = "dtw" if section == "dtw" else "soft"
        for b, t in sizes:
            inputs = tmpdir / f"inputs_{b}_{t}.npz"
            if not inputs.exists():
                x, y = make_inputs(b, t)
                np.savez(inputs, x=x, y=y)
            for name in methods:
                stem = tmpdir / f"{section}_{b}_{t}_{name}"
                argv = [
                    "--worker", f"{kind}:{name}", "--inputs", str(inputs), "--result", str(stem),
                    "--repeats", str(REPEATS.get(t, 3)), "--gamma", str(gamma),
                ]  # fmt: skip
                tasks.append(
                    {
                        "section": title,
                        "kind": kind,
                        "b": b,
                        "t": t,
                        "method": name,
                        "repeats": REPEATS.get(t, 3),
                        "stem": stem,
                        "argv": argv,
                    }
                )
    return tasks


def run_benchmark(
    config: str, out: Path, gamma: float = GAMMA, jobs: int | None = None
) -> dict[str, Any]:
    """Runs every section of ``config``, prints the tables and writes the JSON to ``out``.

    ``jobs`` is the number of workers run at once (default 1, or 2 for ``quick``; more than one
    skews the timings). Returns the JSON payload; ``payload["passed"]`` is the pass criterion.
    """
    if jobs is None:
        jobs = 2 if config == "quick" else 1
    rows: list[dict[str, Any]] = []
    rounding: list[dict[str, Any]] = []
    device_info = None
    with tempfile.TemporaryDirectory(prefix="bench_soft_dtw_") as tmp:
        tasks = _plan(config, Path(tmp), gamma)
        h.run_workers(
            MODULE,
            [(f"[{t['section']} b={t['b']} t=s={t['t']}] {t['method']}", t["argv"]) for t in tasks],
            jobs,
        )
        results: dict[tuple, tuple[dict, dict]] = {}
        for task in tasks:
            stats = json.loads(task["stem"].with_suffix(".json").read_text())
            with np.load(task["stem"].with_suffix(".npz")) as z:
                outputs = {k: z[k] for k in z.files}
            device_info = stats.pop("device", device_info)
            results[(task["section"], task["b"], task["t"], task["method"])] = (stats, outputs)
    for task in tasks:
        title, b, t, name = task["section"], task["b"], task["t"], task["method"]
        stats, outputs = results[(title, b, t, name)]
        ours_stats, ours_out = results[(title, b, t, "ours")]
        label = f"b={b} t=s={t} d={D}"
        row = {
            "section": title,
            "config": label,
            "b": b,
            "t": t,
            "s": t,
            "d": D,
            "gamma": gamma if task["kind"] == "soft" else None,
            "method": name,
            "repeats": task["repeats"],
            "parallel_jobs": jobs,
            **stats,
        }
        if name != "ours":
            row["ratio_ours_over_peer"] = ours_stats["median_s"] / stats["median_s"]
            row["errors"] = _errors(ours_out, outputs, name in JAX_METHODS)
            row["within_tol"] = _within_tol(row["errors"])
        if name in JAX_METHODS:
            rounding.append(
                {"section": title, "config": label, "method": name} | _self_errors(outputs)
            )
        rows.append(row)
    ours_rounding_ok = all(
        e is None or (not np.isnan(e) and e <= TOL)
        for r in rounding
        if r["method"] == "ours"
        for e in (r["value"], r["grad"])
    )
    passed = all(r.get("within_tol", True) for r in rows) and ours_rounding_ok
    table = format_table(rows)
    rounding_table = h.markdown_table(
        ["section", "config", "method", "value err f32 vs own f64", "grad err f32 vs own f64"],
        [
            [r["section"], r["config"], r["method"], h.fmt(r["value"]), h.fmt(r["grad"])]
            for r in rounding
        ],
    )
    print(f"\n## soft-DTW / DTW benchmark ({config}, gamma={gamma}, device: {device_info})\n")
    print(table)
    print("\nfloat32 rounding of each JAX method (its float32 run vs its own float64 run):\n")
    print(rounding_table)
    verdict = "PASS" if passed else "FAIL"
    print(
        f"\n{verdict}: float64 errors, float32 value errors and our float32 gradients (vs our "
        f"float64 run) <= {TOL:g} (peers' float32 gradients are reported, not checked)."
    )
    payload = {
        "benchmark": MODULE,
        "config": config,
        "gamma": gamma,
        "tolerance": TOL,
        "passed": passed,
        "environment": h.environment(
            ["jax", "jaxlib", "numpy", "ott-jax", "tslearn", "numba", "dtw-python"]
        )
        | {"jax_device": device_info},
        "rows": rows,
        "float32_rounding": rounding,
        "table_markdown": table,
    }
    h.save_results(out, payload)
    return payload


def format_table(rows: list[dict[str, Any]]) -> str:
    """The main Markdown table (one line per method and configuration)."""
    headers = [
        "section",
        "config",
        "method",
        "median s",
        "ours/peer",
        "value err f32",
        "grad err f32",
        "value err f64",
        "grad err f64",
        *h.MEMORY_HEADERS,
    ]
    on_device = any(r.get("device_peak_mb") is not None for r in rows)
    if on_device:
        headers.append("device peak MB")
    lines = []
    for r in rows:
        errs = r.get("errors", {})
        lines.append(
            [
                r["section"],
                r["config"],
                r["method"],
                h.fmt(r["median_s"], ".4f"),
                h.fmt(r.get("ratio_ours_over_peer"), ".2f"),
                h.fmt(errs.get("value_f32"), ".1e"),
                h.fmt(errs.get("grad_f32"), ".1e"),
                h.fmt(errs.get("value_f64"), ".1e"),
                h.fmt(errs.get("grad_f64"), ".1e"),
                *h.memory_cells(r, ".0f"),
            ]
        )
        if on_device:
            lines[-1].append(h.fmt(r.get("device_peak_mb"), ".0f"))
    return h.markdown_table(headers, lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 if the accuracy checks fail)."""
    parser = h.cli_parser(__doc__, CONFIGS, DEFAULT_OUT)
    parser.add_argument("--gpu", action="store_true", help="shorthand for --config gpu")
    parser.add_argument("--gamma", type=float, default=GAMMA)
    parser.add_argument(
        "--jobs", type=int, default=None, help="workers at once (default 1; 2 for --quick)"
    )
    args = parser.parse_args(argv)
    if args.worker:
        run_method(args.worker, args.inputs, args.result, args.repeats, args.gamma)
        return 0
    if args.gpu and args.quick:
        parser.error("--gpu and --quick are exclusive")
    config = "gpu" if args.gpu else "quick" if args.quick else args.config
    out = h.output_path(args.out, config, DEFAULT_OUT)
    payload = run_benchmark(config, out, gamma=args.gamma, jobs=args.jobs)
    return 0 if payload["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
