"""Shared benchmark helpers: timing, memory, fresh-process workers, errors, tables and JSON.

Each benchmark module (``benchmarks/<family>.py``) runs every method in a fresh subprocess (a
*worker*, started with :func:`run_worker`) so that its memory figure is not polluted by the other
methods' imports, caches or compiled code. Inside the worker, :func:`measure` times the call and
tracks the resident set size:

* ``baseline_rss_mb``: RSS after the imports and the input data are in memory, before anything is
  compiled or run;
* ``peak_rss_mb``: the peak RSS over the rest of the process's life (compilation, warm-up call,
  timed calls) minus that baseline: everything running the method costs in a fresh process,
  the compiler's transient memory (XLA / LLVM, numba) included;
* ``call_peak_rss_mb``: the peak RSS during the timed calls minus the RSS just before them (the
  high-water mark is reset there through ``/proc/self/clear_refs``): the working memory one call
  adds on top of what is already resident (large buffers are returned to the OS between calls,
  so each call allocates them afresh; memory a library keeps cached is not counted again);
* ``setup_peak_rss_mb``: the same as ``peak_rss_mb`` but up to the end of the warm-up call.

Where the high-water mark cannot be reset (not Linux), the peaks fall back to ``ru_maxrss``, the
process-lifetime peak, ``call_peak_rss_mb`` is None and ``peak_reset_supported`` is false.

For JAX methods the XLA figure ``xla_temp_mb`` (``compiled.memory_analysis()``) is the scratch
memory the compiled program allocates besides its arguments and outputs, and on an accelerator
``device_peak_mb`` is the allocator's ``peak_bytes_in_use`` in excess of the inputs.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import gc
import importlib
import importlib.metadata
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


# --------------------------------------------------------------------------------------------
# Memory.
# --------------------------------------------------------------------------------------------


def _status_mb(field: str) -> float | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in MiB, or None."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _maxrss_mb() -> float:
    """``ru_maxrss`` of this process in MiB (kilobytes on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def rss_mb() -> float:
    """Current resident set size in MiB (the lifetime peak where the current one is unknown)."""
    value = _status_mb("VmRSS")
    return _maxrss_mb() if value is None else value


def peak_rss_mb() -> float:
    """Peak resident set size in MiB since the start or the last :func:`reset_peak_rss`."""
    value = _status_mb("VmHWM")
    return _maxrss_mb() if value is None else value


def reset_peak_rss() -> bool:
    """Resets the kernel's RSS high-water mark to the current RSS; True where supported."""
    try:
        with _CLEAR_REFS.open("w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# Timing.
# --------------------------------------------------------------------------------------------


def measure(
    fn: Callable[[], Any],
    *,
    repeats: int,
    setup: Callable[[], Any] | None = None,
    warmup: int = 1,
) -> tuple[Any, dict[str, Any]]:
    """Times ``fn`` and tracks the peak RSS of this process around it.

    ``fn`` must block until its result is ready (wrap JAX calls in ``jax.block_until_ready``).
    The order is: baseline RSS, ``setup()`` (e.g. compilation; timed as ``setup_s``), ``warmup``
    untimed-for-the-median calls (the first one timed as ``first_call_s``, it includes any lazy
    JIT such as numba's), then ``repeats`` timed calls.

    Args:
      fn: The call to time, without arguments.
      repeats: Number of timed calls; the median is the headline figure.
      setup: Optional preparation run once before the warm-up, e.g. ahead-of-time compilation.
      warmup: Number of warm-up calls; 0 for methods with nothing to compile that are too slow
        to run twice (the one timed call is then also the first).

    Returns:
      ``(result of the last call, stats)``; ``stats`` holds ``times_s``, ``median_s``,
      ``min_s``, ``setup_s``, ``first_call_s``, ``baseline_rss_mb``, ``peak_rss_mb``,
      ``setup_peak_rss_mb``, ``call_peak_rss_mb`` and ``peak_reset_supported`` (see the module
      docstring).
    """
    gc.collect()
    baseline = rss_mb()
    reset_ok = reset_peak_rss()
    t0 = time.perf_counter()
    if setup is not None:
        setup()
    setup_s = time.perf_counter() - t0
    first_call_s = None
    out = None
    for i in range(warmup):
        t0 = time.perf_counter()
        out = fn()
        if i == 0:
            first_call_s = time.perf_counter() - t0
    setup_peak = peak_rss_mb() - baseline
    del out
    gc.collect()
    before_calls = rss_mb()
    if reset_ok:
        reset_peak_rss()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    run_peak = peak_rss_mb()
    stats = {
        "times_s": times,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "setup_s": setup_s,
        "first_call_s": first_call_s,
        "baseline_rss_mb": baseline,
        "peak_rss_mb": max(setup_peak, run_peak - baseline),
        "setup_peak_rss_mb": setup_peak,
        "call_peak_rss_mb": (run_peak - before_calls) if reset_ok else None,
        "peak_reset_supported": reset_ok,
    }
    return out, stats


# --------------------------------------------------------------------------------------------
# JAX-specific figures (imported lazily: the NumPy-only workers never import JAX).
# --------------------------------------------------------------------------------------------


def xla_memory_mb(compiled: Any) -> dict[str, float] | None:
    """Argument, output and temp sizes (MiB) of a ``jax.stages.Compiled``, or None if unknown."""
    try:
        ma = compiled.memory_analysis()
    except Exception:  # not implemented on every backend / version
        return None
    if ma is None:
        return None
    mib = 1024.0 * 1024.0
    return {
        "xla_temp_mb": ma.temp_size_in_bytes / mib,
        "xla_argument_mb": ma.argument_size_in_bytes / mib,
        "xla_output_mb": ma.output_size_in_bytes / mib,
    }


def device_memory_mb() -> dict[str, float] | None:
    """``bytes_in_use`` and ``peak_bytes_in_use`` (MiB) of the default JAX device, or None.

    The CPU backend reports nothing; GPUs and TPUs do.
    """
    import jax

    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:
        return None
    if not stats:
        return None
    mib = 1024.0 * 1024.0
    return {
        "in_use_mb": stats.get("bytes_in_use", 0) / mib,
        "peak_mb": stats.get("peak_bytes_in_use", 0) / mib,
    }


def jax_device_info() -> dict[str, str]:
    """Platform and kind of the default JAX device."""
    import jax

    dev = jax.devices()[0]
    return {"platform": dev.platform, "device_kind": getattr(dev, "device_kind", "")}


# --------------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------------


def cli_parser(doc: str, configs: Sequence[str], default_out: Path) -> argparse.ArgumentParser:
    """The arguments every benchmark takes; a module adds its own before ``parse_args``.

    ``--config`` (default ``cpu``), ``--quick`` (shorthand for ``--config quick``), ``--out``,
    and the hidden ``--worker``, ``--inputs``, ``--result``, ``--repeats`` with which the driver
    starts one method in a fresh process (:func:`run_worker`).
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--config", choices=sorted(configs), default="cpu")
    parser.add_argument("--quick", action="store_true", help="shorthand for --config quick")
    parser.add_argument("--out", type=Path, default=None, help=f"JSON path (default {default_out})")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
    return parser


def output_path(out: Path | None, config: str, default_out: Path) -> Path:
    """``out`` if given, else ``default_out`` (cpu) or ``<family>_<config>.json`` beside it."""
    if out is not None:
        return out
    if config == "cpu":
        return default_out
    family = default_out.stem.rsplit("_", 1)[0]
    return default_out.with_name(f"{family}_{config}.json")


# --------------------------------------------------------------------------------------------
# Workers.
# --------------------------------------------------------------------------------------------


IN_PROCESS_ENV = "ALIGNMENT_BENCH_INPROCESS"


def in_process() -> bool:
    """Whether workers run inside this process (``ALIGNMENT_BENCH_INPROCESS=1``).

    The tests set it: their smoke runs check that every method runs and agrees, which needs no
    fresh process, and each fresh process costs seconds of imports. Timings and memory figures
    of such a run mean nothing; published runs always use fresh processes.
    """
    return os.environ.get(IN_PROCESS_ENV) == "1"


def run_worker(module: str, args: Sequence[str], *, timeout: float = 900.0) -> None:
    """Runs ``python -m module *args`` in a fresh process; raises with its stderr on failure.

    The worker communicates through files named in ``args`` (not stdout, which libraries may
    write to). With :func:`in_process` it calls ``module.main(args)`` here instead.
    """
    if in_process():
        with contextlib.redirect_stdout(io.StringIO()):
            status = importlib.import_module(module).main(list(args))
        if status:
            raise RuntimeError(f"worker {module} {' '.join(args)} failed ({status})")
        return
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise RuntimeError(f"worker {module} {' '.join(args)} failed ({proc.returncode}):\n{tail}")


def run_workers(
    module: str, runs: Sequence[tuple[str, Sequence[str]]], jobs: int, *, timeout: float = 900.0
) -> None:
    """:func:`run_worker` for each ``(label, args)`` of ``runs``, ``jobs`` at a time (1 for
    meaningful timings; always 1 :func:`in_process`), printing each label to stderr as it
    starts."""

    def one(run):
        label, args = run
        print(f"{label} ...", file=sys.stderr, flush=True)
        run_worker(module, args, timeout=timeout)

    if jobs <= 1 or in_process():
        for run in runs:
            one(run)
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in [pool.submit(one, run) for run in runs]:
            future.result()


# --------------------------------------------------------------------------------------------
# Errors.
# --------------------------------------------------------------------------------------------


def max_rel_err(values: np.ndarray, reference: np.ndarray) -> float:
    """``max_i |values_i - reference_i| / |reference_i|`` over a batch of scalars.

    NaN (returned as such) if either side holds a NaN or an infinity.
    """
    a = np.asarray(values, np.float64).reshape(-1)
    b = np.asarray(reference, np.float64).reshape(-1)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("nan")
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), np.finfo(np.float64).tiny)))


def max_rel_err_rows(values: np.ndarray, reference: np.ndarray) -> float:
    """Largest per-example error of a batch of arrays, relative to that example's largest entry.

    ``max_i max|values_i - reference_i| / max|reference_i|`` with ``i`` the leading (batch) axis.
    Entry-wise relative errors are meaningless for arrays such as gradients whose entries can be
    arbitrarily close to zero; this is the max-norm error relative to the max-norm. NaN if either
    side is not finite.
    """
    a = np.asarray(values, np.float64)
    b = np.asarray(reference, np.float64)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("nan")
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    num = np.max(np.abs(a - b), axis=1)
    den = np.maximum(np.max(np.abs(b), axis=1), np.finfo(np.float64).tiny)
    return float(np.max(num / den))


# --------------------------------------------------------------------------------------------
# Reporting.
# --------------------------------------------------------------------------------------------


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table with columns padded to a common width."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), sep, *(line(r) for r in cells[1:])])


def fmt(value: float | None, spec: str = ".3g") -> str:
    """Formats a number for a table; ``-`` for None, ``nan`` for NaN."""
    if value is None:
        return "-"
    if isinstance(value, float) and np.isnan(value):
        return "nan"
    return format(value, spec)


def environment(packages: Sequence[str]) -> dict[str, Any]:
    """Python, platform, CPU count and the installed versions of ``packages`` (None if absent)."""
    versions = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
    }


MEMORY_HEADERS = ["peak MB", "call MB", "XLA temp MB"]


def memory_cells(row: dict[str, Any], xla_spec: str = ".1f") -> list[str]:
    """The table cells under :data:`MEMORY_HEADERS` for one result row of :func:`measure`."""
    xla = row.get("xla") or {}
    return [
        fmt(row["peak_rss_mb"], ".0f"),
        fmt(row.get("call_peak_rss_mb"), ".0f"),
        fmt(xla.get("xla_temp_mb"), xla_spec),
    ]


def save_results(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """:func:`write_json` and say where."""
    path = write_json(path, payload)
    print(f"results written to {path}")
    return path


def write_json(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Writes ``payload`` as indented JSON, creating the parent folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n")
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
