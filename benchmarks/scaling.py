"""Scaling curves: time and memory against problem size, ours and the peers, as PNG and JSON.

Run:
    python -m benchmarks.scaling              # every curve on this machine (about 20 minutes)
    python -m benchmarks.scaling --quick      # two tiny sizes per curve (checks that it runs)
    python -m benchmarks.scaling --only sinkhorn gw --out benchmarks/results/scaling_cpu.json

Each point is one method at one size in a fresh process, through the worker of the family that
owns the method (``benchmarks.soft_dtw``, ``benchmarks.sinkhorn``, ``benchmarks.ot_toolbox``,
``benchmarks.assignment``, ``benchmarks.gaussian``), so a curve measures exactly what the
family's table measures at one size: the median of timed calls after compilation, and the peak
RSS increase of the process during those calls (``call_peak_rss_mb``: the memory the computation
itself takes, compilation excluded; the resolution is that of the kernel's RSS counter, so
points below about 1 MB are drawn at 1 MB). Accuracy is not re-checked here: the families'
tables check every method against a float64 reference at their sizes.

The curves (``CURVES``):

* ``soft_dtw``: soft-DTW value and gradient, ``b = 8`` pairs, ``d = 8``, against length ``t = s``
  (ours, ott-jax, tslearn);
* ``dtw``: exact DTW value, ``b = 8``, against length (ours, tslearn, dtw-python);
* ``sinkhorn``: entropic OT between ``n = m`` standard-normal points in ``d = 16`` (epsilon 0.1,
  threshold 1e-3; ours, ott-jax, POT);
* ``gw``: entropic Gromov-Wasserstein between ``n = m`` points in 2-D and 3-D (ours, ott-jax,
  POT);
* ``assignment_n``: one ``n x n`` assignment problem (ours, optax, SciPy);
* ``assignment_batch``: a batch of ``n = 64`` problems against the batch size (SciPy loops);
* ``gaussian_d``: full-covariance Gaussian W2 for 64 pairs against dimension (ours, ott-jax,
  a POT loop);
* ``gaussian_batch``: the same at ``d = 16`` against the number of pairs.

Writes ``OUT`` (default ``benchmarks/results/scaling_cpu.json``) and one PNG per curve, two
panels (time, memory; log-log), in ``--fig-dir`` (default ``docs/benchmarks/``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from benchmarks import _harness as h

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "scaling_cpu.json"
DEFAULT_FIG_DIR = ROOT / "docs" / "benchmarks"
MEMORY_FLOOR_MB = 1.0  # RSS resolution: smaller increases are drawn at this value
OURS_STYLE = {"color": "C3", "marker": "o", "linewidth": 2.0}


class Curve(NamedTuple):
    """One scaling curve: the family worker that runs it and how to build each size's inputs.

    ``methods`` maps the label drawn to the worker's method key; ``inputs(size)`` returns the
    arrays of the input file and the extra worker arguments; ``sizes`` per configuration.
    """

    title: str
    xlabel: str
    module: str
    methods: dict[str, str]
    inputs: Callable[[int], tuple[dict[str, np.ndarray], list[str]]]
    sizes: dict[str, tuple[int, ...]]
    repeats: Callable[[int], int]


def _soft_dtw_inputs(kind: str) -> Callable:
    def build(t: int):
        from benchmarks import soft_dtw

        x, y = soft_dtw.make_inputs(8, t)
        return {"x": x, "y": y}, ["--gamma", str(soft_dtw.GAMMA)]

    return build


def _sinkhorn_inputs(n: int):
    from benchmarks import sinkhorn

    x, y = sinkhorn.make_points(1, n, scaled=False)
    return {"x": x, "y": y, "cost": sinkhorn.make_cost(x, y)}, ["--fixed-iters", "1500"]


def _gw_inputs(n: int):
    from benchmarks import ot_toolbox

    cfg = {"gw_n": n, "bary_k": 2, "bary_bins": 4, "fs_k": 2, "fs_n": 2, "sw_n": 2, "sw_d": 2,
           "sw_l": 2}  # fmt: skip
    data = ot_toolbox.make_inputs(cfg)
    return {k: v for k, v in data.items() if k.startswith("gw_")}, []


def _assignment_inputs(batch: int | None) -> Callable:
    def build(size: int):
        from benchmarks import assignment

        b, n = (0, size) if batch is None else (size, batch)
        return {"costs": assignment.make_costs(b, n)}, ["--batch", str(b)]

    return build


def _gaussian_inputs(fixed: str) -> Callable:
    def build(size: int):
        from benchmarks import gaussian

        n, d = (64, size) if fixed == "n" else (size, 16)
        return gaussian.make_inputs(n, d), []

    return build


def _repeats(seconds_hint: Callable[[int], float]) -> Callable[[int], int]:
    """More repeats for fast points, one or two for slow ones (bounded total time)."""
    return lambda size: int(np.clip(2.0 / max(seconds_hint(size), 1e-4), 3, 20))


CURVES: dict[str, Curve] = {
    "soft_dtw": Curve(
        "soft-DTW value + gradient (b = 8, d = 8)",
        "length t = s",
        "benchmarks.soft_dtw",
        {"ours": "soft:ours", "ott-jax": "soft:ott-jax", "tslearn": "soft:tslearn"},
        _soft_dtw_inputs("soft"),
        {"cpu": (64, 128, 256, 512, 1024), "quick": (8, 16)},
        _repeats(lambda t: 1e-6 * t * t),
    ),
    "dtw": Curve(
        "exact DTW value (b = 8, d = 8)",
        "length t = s",
        "benchmarks.soft_dtw",
        {"ours": "dtw:ours", "tslearn": "dtw:tslearn", "dtw-python": "dtw:dtw-python"},
        _soft_dtw_inputs("dtw"),
        {"cpu": (64, 128, 256, 512, 1024, 2048), "quick": (8, 16)},
        _repeats(lambda t: 1e-7 * t * t),
    ),
    "sinkhorn": Curve(
        "entropic OT, Sinkhorn (d = 16, epsilon = 0.1, threshold 1e-3)",
        "points n = m",
        "benchmarks.sinkhorn",
        {"ours": "single:ours", "ott-jax": "single:ott-jax", "POT": "single:pot"},
        _sinkhorn_inputs,
        {"cpu": (256, 512, 1024, 2048, 4096), "quick": (16, 32)},
        lambda n: 3 if n <= 1024 else 1,
    ),
    "gw": Curve(
        "entropic Gromov-Wasserstein (2-D against 3-D points)",
        "points n = m",
        "benchmarks.ot_toolbox",
        {"ours": "gw:ours", "ott-jax": "gw:ott-jax", "POT": "gw:pot"},
        _gw_inputs,
        {"cpu": (50, 100, 200, 400, 800), "quick": (10, 20)},
        _repeats(lambda n: 2e-7 * n * n),
    ),
    "assignment_n": Curve(
        "exact assignment, one n x n problem",
        "n",
        "benchmarks.assignment",
        {"ours": "ours", "optax": "optax", "SciPy": "scipy"},
        _assignment_inputs(None),
        {"cpu": (16, 32, 64, 128, 256, 512, 1024), "quick": (8, 16)},
        _repeats(lambda n: 1e-7 * n**2.5),
    ),
    "assignment_batch": Curve(
        "exact assignment, a batch of n = 64 problems",
        "batch size",
        "benchmarks.assignment",
        {"ours": "ours", "optax": "optax", "SciPy (loop)": "scipy"},
        _assignment_inputs(64),
        {"cpu": (1, 4, 16, 64, 256), "quick": (1, 4)},
        _repeats(lambda b: 2e-4 * b),
    ),
    "gaussian_d": Curve(
        "Gaussian W2, full covariances, 64 pairs",
        "dimension d",
        "benchmarks.gaussian",
        {"ours": "value:ours", "ott-jax": "value:ott-jax", "POT (loop)": "value:pot-loop"},
        _gaussian_inputs("n"),
        {"cpu": (2, 4, 8, 16, 32, 64, 128), "quick": (2, 4)},
        _repeats(lambda d: 1e-6 * d**3),
    ),
    "gaussian_batch": Curve(
        "Gaussian W2, full covariances, d = 16",
        "pairs",
        "benchmarks.gaussian",
        {"ours": "value:ours", "ott-jax": "value:ott-jax", "POT (loop)": "value:pot-loop"},
        _gaussian_inputs("d"),
        {"cpu": (16, 64, 256, 1024, 4096), "quick": (4, 8)},
        _repeats(lambda n: 1e-4 * n),
    ),
}


def run_curve(name: str, config: str, tmpdir: Path) -> list[dict[str, Any]]:
    """Runs every method of curve ``name`` at each size of ``config``; one row per point."""
    curve = CURVES[name]
    rows = []
    for size in curve.sizes[config]:
        data, extra = curve.inputs(size)
        inputs = tmpdir / f"{name}_{size}.npz"
        np.savez(inputs, **data)
        repeats = 2 if config == "quick" else curve.repeats(size)
        for label, key in curve.methods.items():
            print(f"[{name} {size}] {label} ...", file=sys.stderr, flush=True)
            stem = tmpdir / f"{name}_{size}_{key.replace(':', '_')}"
            argv = ["--worker", key, "--inputs", str(inputs), "--result", str(stem),
                    "--repeats", str(repeats), *extra]  # fmt: skip
            h.run_worker(curve.module, argv, timeout=1800.0)
            stats = json.loads(stem.with_suffix(".json").read_text())
            call_mb = stats.get("call_peak_rss_mb")
            rows.append(
                {
                    "curve": name,
                    "size": size,
                    "method": label,
                    "repeats": repeats,
                    "median_s": stats["median_s"],
                    "min_s": stats["min_s"],
                    "setup_s": stats.get("setup_s"),
                    "peak_rss_mb": stats["peak_rss_mb"],
                    "call_peak_rss_mb": call_mb,
                    "memory_mb": call_mb if call_mb is not None else stats["peak_rss_mb"],
                    "xla": stats.get("xla"),
                }
            )
    return rows


def plot_curve(name: str, rows: list[dict[str, Any]], path: Path, device: str) -> Path:
    """Two log-log panels (median time, memory) of one curve's rows; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = CURVES[name]
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6), constrained_layout=True)
    for i, label in enumerate(curve.methods):
        points = sorted((r["size"], r) for r in rows if r["method"] == label)
        if not points:
            continue
        sizes = [s for s, _ in points]
        style = OURS_STYLE if label == "ours" else {"color": f"C{i}", "marker": "s"}
        times = [r["median_s"] for _, r in points]
        memory = [max(r["memory_mb"], MEMORY_FLOOR_MB) for _, r in points]
        axes[0].plot(sizes, times, label=label, **style)
        axes[1].plot(sizes, memory, label=label, **style)
    ylabels = ("median time per call (s)", "peak RSS increase (MB)")
    for ax, ylabel in zip(axes, ylabels, strict=True):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(curve.xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{curve.title}; {device}", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ratio_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per curve and size, our median and ours / peer for each peer."""
    out = []
    for name in dict.fromkeys(r["curve"] for r in rows):
        curve = CURVES[name]
        peers = [m for m in curve.methods if m != "ours"]
        table_rows = []
        for size in sorted({r["size"] for r in rows if r["curve"] == name}):
            at = {r["method"]: r for r in rows if r["curve"] == name and r["size"] == size}
            ours = at.get("ours")
            cells = [name, size, h.fmt(ours["median_s"]) if ours else "-"]
            for peer in peers:
                ok = ours is not None and peer in at and at[peer]["median_s"] > 0
                cells.append(h.fmt(ours["median_s"] / at[peer]["median_s"], ".2f") if ok else "-")
            table_rows.append(cells)
        headers = ["curve", curve.xlabel, "ours s", *(f"ours/{p}" for p in peers)]
        out.append(h.markdown_table(headers, table_rows))
    return "\n\n".join(out)


def device_label(environment: dict[str, Any]) -> str:
    """``"CPU, 2 cores"`` or the accelerator's name, for figure titles."""
    device = environment.get("jax_device") or {}
    kind = device.get("device_kind") or device.get("platform") or "cpu"
    if str(device.get("platform", "cpu")).lower() == "cpu":
        return f"CPU, {environment.get('cpu_count')} cores"
    return str(kind)


def run_benchmark(
    config: str, names: list[str], out: Path, fig_dir: Path, *, merge: bool = False
) -> dict[str, Any]:
    """Runs the curves ``names``; writes ``out`` and the PNGs; returns the payload.

    With ``merge``, the other curves of an existing ``out`` are kept (a rerun of some curves).
    """
    import jax

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_scaling_") as tmp:
        for name in names:
            rows += run_curve(name, config, Path(tmp))
    if merge and out.exists():
        kept = [r for r in json.loads(out.read_text())["rows"] if r["curve"] not in names]
        names = list(dict.fromkeys([*(r["curve"] for r in kept), *names]))
        names = [n for n in CURVES if n in names]
        rows = sorted(kept + rows, key=lambda r: names.index(r["curve"]))
    environment = h.environment(["jax", "jaxlib", "numpy", "ott-jax", "pot", "tslearn",
                                 "dtw-python", "optax", "scipy"])  # fmt: skip
    environment["jax_device"] = {"platform": jax.default_backend(),
                                 "device_kind": jax.devices()[0].device_kind}  # fmt: skip
    label = device_label(environment)
    figures = {}
    for name in names:
        own = [r for r in rows if r["curve"] == name]
        path = plot_curve(name, own, fig_dir / f"scaling_{name}.png", label)
        figures[name] = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    table = ratio_table(rows)
    payload = {
        "benchmark": "scaling",
        "config": config,
        "curves": {
            n: {
                "title": CURVES[n].title,
                "xlabel": CURVES[n].xlabel,
                "methods": list(CURVES[n].methods),
            }
            for n in names
        },
        "figures": figures,
        "passed": all(r["median_s"] > 0 for r in rows),
        "environment": environment,
        "rows": rows,
        "table_markdown": table,
    }
    print("\n## Scaling curves\n")
    print(table)
    h.save_results(out, payload)
    return payload


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns 0 when every point ran."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two tiny sizes per curve")
    parser.add_argument("--only", nargs="+", choices=sorted(CURVES), default=None)
    parser.add_argument("--out", type=Path, default=None, help=f"JSON (default {DEFAULT_OUT})")
    parser.add_argument("--fig-dir", type=Path, default=None, help="PNG folder")
    parser.add_argument(
        "--merge", action="store_true", help="keep the other curves of an existing --out"
    )
    args = parser.parse_args(argv)
    config = "quick" if args.quick else "cpu"
    quick_out = DEFAULT_OUT.with_name("scaling_quick.json")
    out = args.out or (DEFAULT_OUT if config == "cpu" else quick_out)
    fig_dir = args.fig_dir or (DEFAULT_FIG_DIR if config == "cpu" else out.parent / "figures")
    names = list(args.only) if args.only else list(CURVES)
    payload = run_benchmark(config, names, out, fig_dir, merge=args.merge)
    return 0 if payload["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
