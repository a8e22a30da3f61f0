"""``python -m experiments.contrastive [--smoke | --full] [--run-dir DIR] [--field value ...]``."""

from __future__ import annotations

import sys
from pathlib import Path

from experiments.contrastive.config import get_config
from experiments.framework import NonFiniteLossError, parse_config


def main(argv: list[str] | None = None) -> dict:
    from experiments.contrastive import __doc__ as doc
    from experiments.contrastive.run import run

    config = parse_config(
        get_config,
        argv,
        description=(doc or "").split("\n\n")[0],
        prog="python -m experiments.contrastive",
    )
    try:
        record = run(config)
    except (ValueError, NonFiniteLossError) as err:
        sys.exit(f"error: {err}")
    run_dir = Path(config.run_dir)
    print((run_dir / "results.md").read_text())
    print(f"figures: {', '.join(record['figures'].values())}")
    print(
        f"done in {record['seconds']:.0f} s ({record['cpu_seconds']:.0f} s CPU); results in "
        f"{(run_dir / 'results.json').resolve()}"
    )
    return record


if __name__ == "__main__":
    main()
