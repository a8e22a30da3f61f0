"""The benchmark suite: every family against its peers, one Markdown table and one JSON.

Run:
    python -m benchmarks            # the CPU configuration of every family (about 35 minutes)
    python -m benchmarks --quick    # tiny sizes, a few minutes: checks that everything runs
    python -m benchmarks --gpu      # the families with a GPU configuration (soft-DTW, b = 64,
                                    # t = s = 1024; Sinkhorn, n = m = 16,384; batched
                                    # assignment), on the accelerator JAX finds
    python -m benchmarks --only soft_dtw sinkhorn --out-dir runs/bench

Each family is a module of this package (``benchmarks/<family>.py``, also runnable alone as
``python -m benchmarks.<family>``) that runs every method, ours and the peers', in a fresh
process on the same inputs: medians of timed calls after a warm-up call (compilation time
reported separately), peak memory, and the error against a float64 reference, so that a fast
wrong answer cannot look good. This entry point runs the families one after the other and writes
``OUT_DIR/suite_<config>.md`` (every family's tables, in order) and ``OUT_DIR/suite_<config>.json``
(``{"config", "passed", "families": {family: payload}}``), plus each family's own JSON beside
them. The exit status is 1 if any family's accuracy checks failed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import sys
import time
from pathlib import Path

from benchmarks import FAMILIES
from benchmarks import _harness as h

GPU_FAMILIES = ("soft_dtw", "sinkhorn", "assignment")  # families with a "gpu" configuration
DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "results"


class _Tee(io.TextIOBase):
    """Writes to the terminal and keeps a copy (the family's printed tables)."""

    def __init__(self, stream):
        self.stream = stream
        self.copy = io.StringIO()

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.copy.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def run_suite(config: str, families: list[str], out_dir: Path) -> dict:
    """Runs ``families`` in ``config``; writes and returns the combined payload."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sections, payloads, seconds = [], {}, {}
    for family in families:
        module = importlib.import_module(f"benchmarks.{family}")
        family_config = config if config != "gpu" or family in GPU_FAMILIES else "cpu"
        out = out_dir / f"{family}_{family_config}.json"
        args = ["--config", family_config, "--out", str(out)]
        print(f"\n# {family} ({family_config})", flush=True)
        tee = _Tee(sys.stdout)
        start = time.perf_counter()
        with contextlib.redirect_stdout(tee):
            status = module.main(args)
        seconds[family] = round(time.perf_counter() - start, 1)
        payloads[family] = json.loads(out.read_text())
        payloads[family]["exit_status"] = status
        printed = tee.copy.getvalue()
        start_of_tables = printed.find("\n## ")
        sections.append(printed[start_of_tables:].strip() if start_of_tables >= 0 else printed)
    passed = all(p.get("passed", False) and p["exit_status"] == 0 for p in payloads.values())
    payload = {
        "config": config,
        "passed": passed,
        "seconds": seconds,
        "environment": h.environment(["jax", "jaxlib", "numpy"]),
        "families": payloads,
    }
    h.write_json(out_dir / f"suite_{config}.json", payload)
    lines = [
        f"# Benchmark suite ({config})",
        "",
        "Written by `python -m benchmarks"
        + {"quick": " --quick", "gpu": " --gpu"}.get(config, "")
        + "`; each section is one family's table (ours against its peers, same inputs).",
        "",
        *(f"{section}\n" for section in sections),
        f"{'PASS' if passed else 'FAIL'}: "
        + ", ".join(f"{f} {'ok' if payloads[f]['passed'] else 'FAILED'}" for f in families),
        "",
    ]
    (out_dir / f"suite_{config}.md").write_text("\n".join(lines))
    print(f"\nsuite written to {out_dir / f'suite_{config}.md'} and .json")
    return payload


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns 1 if any family's accuracy checks failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="tiny sizes (CI)")
    mode.add_argument("--gpu", action="store_true", help="the GPU configuration where one exists")
    parser.add_argument("--only", nargs="+", choices=FAMILIES, default=None, metavar="FAMILY")
    parser.add_argument("--out-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    config = "quick" if args.quick else "gpu" if args.gpu else "cpu"
    default = GPU_FAMILIES if config == "gpu" else FAMILIES
    families = list(args.only) if args.only else list(default)
    out_dir = args.out_dir
    if out_dir is None:  # the quick run never overwrites the published figures
        out_dir = DEFAULT_OUT_DIR / "quick" if config == "quick" else DEFAULT_OUT_DIR
    return 0 if run_suite(config, families, out_dir)["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
