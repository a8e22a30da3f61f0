"""``python -m experiments.mwvae [--smoke | --full] [--run-dir DIR] [--field value ...]``."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from experiments.framework import NonFiniteLossError, parse_config
from experiments.mwvae.config import get_config


def main(argv: list[str] | None = None) -> dict:
    from experiments.mwvae import __doc__ as doc
    from experiments.mwvae.compare import run_comparison
    from experiments.mwvae.poly_run import run_polymnist
    from experiments.mwvae.run import train_and_evaluate

    args = list(sys.argv[1:] if argv is None else argv)
    config = parse_config(
        functools.partial(get_config, data=_data_flag(args)),
        args,
        description=(doc or "").split("\n\n")[0],
        prog="python -m experiments.mwvae",
    )
    try:
        if config.data == "polymnist":
            summary = run_polymnist(config)
        elif config.comparison:
            summary = run_comparison(config)
        else:
            summary = train_and_evaluate(config)
    except (ValueError, NonFiniteLossError) as err:
        sys.exit(f"error: {err}")
    run_dir = Path(config.run_dir)
    name = "results_polymnist.md" if config.data == "polymnist" else "results.md"
    print((run_dir / name).read_text())
    if summary["figures"]:
        print(f"figures: {', '.join(str(run_dir / f) for f in summary['figures'])}")
    print(f"done in {summary['seconds']:.0f} s; results in {(run_dir / name).resolve()}")
    return summary


def _data_flag(args: list[str]) -> str | None:
    """The value of ``--data`` on the command line (it selects the presets), or None."""
    for i, a in enumerate(args):
        if a == "--data" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--data="):
            return a.split("=", 1)[1]
    return None


if __name__ == "__main__":
    main()
