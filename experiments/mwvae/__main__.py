"""``python -m experiments.mwvae [options]``: parse the command line, then run the experiment."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from experiments.mwvae.config import MODELS, Config, smoke_config
from experiments.mwvae.data import SOURCES
from experiments.mwvae.run import train_and_evaluate
from experiments.mwvae.train import NonFiniteLossError


def parse_config(argv: list[str] | None = None) -> tuple[Config, bool]:
    """The :class:`Config` the command line asks for, and whether to overwrite old runs."""
    d = Config()
    p = argparse.ArgumentParser(
        prog="python -m experiments.mwvae",
        description="Multimodal Wasserstein VAE on MNIST (image + label) and its baselines.",
    )
    p.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        help=f"of {', '.join(MODELS)}; default {' '.join(d.models)}",
    )
    p.add_argument("--epochs", type=int, help=f"default {d.epochs}")
    p.add_argument(
        "--lambda", dest="w2_weight", type=float, help=f"W2 weight, default {d.w2_weight}"
    )
    p.add_argument("--latent-size", type=int, help=f"default {d.latent_size}")
    p.add_argument("--shared-size", type=int, help="shared part in wvae_shared; default latent/2")
    p.add_argument("--label-weight", type=float, help=f"default {d.label_weight}")
    p.add_argument("--batch-size", type=int, help=f"default {d.batch_size}")
    p.add_argument("--lr", dest="learning_rate", type=float, help=f"default {d.learning_rate}")
    p.add_argument("--seed", type=int, help=f"default {d.seed}")
    p.add_argument("--data", choices=SOURCES, help=f"default {d.data}")
    p.add_argument("--data-dir", help="directory of MNIST IDX files (implies --data idx)")
    p.add_argument("--run-dir", help=f"default {d.run_dir}")
    p.add_argument("--nll-samples", type=int, help=f"default {d.nll_samples}")
    p.add_argument("--smoke", action="store_true", help="tiny settings on the 8x8 digits")
    p.add_argument("--overwrite", action="store_true", help="discard checkpoints in the run dir")
    args = p.parse_args(argv)
    config = smoke_config(args.run_dir or "runs/mwvae_smoke") if args.smoke else d
    overrides = {
        k: v
        for k, v in vars(args).items()
        if k not in ("smoke", "overwrite", "models") and v is not None
    }
    if args.models is not None:
        overrides["models"] = tuple(args.models)
    if args.data_dir is not None and args.data is None:
        overrides["data"] = "idx"
    return dataclasses.replace(config, **overrides), args.overwrite


def main(argv: list[str] | None = None) -> None:
    config, overwrite = parse_config(argv)
    try:
        summary = train_and_evaluate(config, overwrite=overwrite)
    except (ValueError, NonFiniteLossError) as err:
        sys.exit(f"error: {err}")
    run_dir = Path(config.run_dir)
    print((run_dir / "results.md").read_text())
    print(f"figures: {', '.join(str(run_dir / f) for f in summary['figures'])}")
    print(f"done in {summary['seconds']:.0f} s; results in {(run_dir / 'results.md').resolve()}")


if __name__ == "__main__":
    main()
