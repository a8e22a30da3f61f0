"""The fair comparison (``python -m experiments.mwvae --full``): tune on validation, test once.

The protocol, the same for every model:

1. **Search.** A validation split (``validation_fraction`` of each class's training images, fixed
   by the first seed) is held out. Each model gets ``tune_runs`` training runs, the same budget
   for all. A run's settings are drawn without replacement, by a seeded generator, from the
   model's grid: ``grid_kl_anneal_epochs`` x ``grid_label_weight``, times ``grid_w2_weight`` for
   the coupled models (``kl_coupled`` and the W2 models). Each run is evaluated on validation
   after each of ``grid_epochs`` (training resumes between them), so a run contributes
   ``len(grid_epochs)`` candidates. An uncoupled model's grid (8 points with the defaults) is
   covered whole; a coupled model's (24) is sampled, which favours the baselines, not ours.
2. **Selection.** The candidate with the highest validation score wins, the score being the
   mean of image->label accuracy and label->image coherence (the two directions of
   cross-modal prediction this experiment is about), ties broken by the validation joint NLL.
   The score was declared before any run; the diversity and Frechet measures are reported
   beside it so that a model that wins by collapsing its samples shows it.
3. **Test.** Each model's chosen settings are trained with every seed of ``seeds`` (each seed its
   own data split, validation held out as in the search, initialisation and noise) and
   evaluated once on that seed's test split, with ``nll_samples`` importance samples. The table
   gives the mean and standard deviation over seeds, and marks where two models' intervals
   overlap.

Everything is written to ``<run_dir>/``: ``results.json`` (the grid, every candidate's validation
numbers, the choices, every seed's test numbers, the aggregates), ``results.md`` (the tables)
and the run directories (``search/run<i>/<model>/``, ``seed<s>/<model>/``), which a rerun
resumes.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import platform
import time
from pathlib import Path

import jax
import numpy as np

from experiments import framework
from experiments.mwvae import evaluate
from experiments.mwvae.config import MODEL_DESCRIPTIONS, Config
from experiments.mwvae.data import Dataset, load_dataset, with_validation

COUPLED = ("kl_coupled", "wvae", "wvae_full", "wvae_shared")
# (key, header, format) of the test table; every cell is mean ± std over seeds
TEST_COLUMNS = (
    ("acc_image_to_label", "image→label acc", "{:.3f}"),
    ("coherence_label_to_image", "label→image coherence", "{:.3f}"),
    ("diversity_label_to_image", "label→image spread", "{:.2f}"),
    ("frechet_label_to_image", "label→image FD", "{:.1f}"),
    ("joint_nll", "joint NLL", "{:.1f}"),
    ("w2_modalities", "W2² img↔label", "{:.2f}"),
    ("train_seconds", "train s", "{:.0f}"),
)


def search_space(model: str, config: Config) -> list[dict]:
    """The model's grid: every combination of the declared values (W2 weight if coupled)."""
    axes = {
        "kl_anneal_epochs": config.grid_kl_anneal_epochs,
        "label_weight": config.grid_label_weight,
    }
    if model in COUPLED:
        axes["w2_weight"] = config.grid_w2_weight
    names = list(axes)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*axes.values())]


def draw_runs(model: str, config: Config) -> list[dict]:
    """``tune_runs`` settings drawn without replacement from :func:`search_space` (seeded)."""
    space = search_space(model, config)
    rng = np.random.default_rng([config.seeds[0], sum(map(ord, model))])
    picks = rng.permutation(len(space))[: min(config.tune_runs, len(space))]
    return [space[i] for i in sorted(picks)]


def selection_score(metrics: dict) -> float:
    """The declared criterion: mean of image->label accuracy and label->image coherence."""
    return 0.5 * (metrics["acc_image_to_label"] + metrics["coherence_label_to_image"])


def _data(config: Config, seed: int) -> Dataset:
    data = load_dataset(config.source, data_dir=config.data_dir, seed=seed)
    data = with_validation(data, fraction=config.validation_fraction, seed=seed)
    if data.x_train.shape[0] < config.batch_size:
        raise ValueError(
            f"`batch_size` {config.batch_size} exceeds the {data.x_train.shape[0]} training "
            f"examples of {data.name} left after the validation split."
        )
    return data


def _judge(config: Config, data: Dataset, seed: int, run_dir: Path):
    signature = {"model": "classifier-cnn", "data": config.source, "data_dir": config.data_dir,
                 "seed": seed, "validation_fraction": config.validation_fraction}  # fmt: skip
    judge_dir = run_dir / "classifier"
    framework.check_signature(judge_dir, signature, overwrite=config.overwrite)
    return evaluate.train_classifier(
        data,
        epochs=config.classifier_epochs,
        seed=seed,
        run_dir=judge_dir,
        fast_compile=config.fast_compile,
        progress=config.progress,
    )


def _train_and_measure(model, config, data, judge, *, split, n_samples):
    from experiments.mwvae.run import train_one  # run imports this module's callers

    trained, _ = train_one(model, config, data)
    metrics, _ = evaluate.evaluate_model(
        trained,
        data,
        judge,
        n_samples=n_samples,
        seed=config.seed,
        fast_compile=config.fast_compile,
        split=split,
    )
    return {k: v for k, v in metrics.items() if not k.endswith("_per_dim")}


def search(config: Config, log=print) -> dict:
    """Step 1 and 2: every model's candidates on validation and the chosen settings."""
    seed = config.seeds[0]
    data = _data(config, seed)
    root = Path(config.run_dir) / "search"
    judge, judge_acc = _judge(config, data, seed, root)
    out = {"judge_accuracy_validation_seed": judge_acc, "models": {}}
    for model in config.models:
        candidates = []
        for i, settings in enumerate(draw_runs(model, config)):
            run_config = dataclasses.replace(
                config, run_dir=str(root / f"run{i}"), seed=seed, **settings
            )
            for epochs in sorted(config.grid_epochs):
                metrics = _train_and_measure(
                    model,
                    dataclasses.replace(run_config, epochs=epochs),
                    data,
                    judge,
                    split="val",
                    n_samples=config.selection_nll_samples,
                )
                candidate = settings | {"epochs": epochs, "score": selection_score(metrics)}
                candidates.append(candidate | {"validation": metrics})
                log(f"[search] {model} run {i} {settings} epochs {epochs}: "
                    f"score {candidate['score']:.3f}")  # fmt: skip
        best = max(candidates, key=lambda c: (c["score"], -c["validation"]["joint_nll"]))
        chosen = {k: best[k] for k in (*search_space(model, config)[0], "epochs")}
        out["models"][model] = {"candidates": candidates, "chosen": chosen, "score": best["score"]}
    return out


def final_runs(config: Config, chosen: dict[str, dict], log=print) -> dict:
    """Step 3: every model's chosen settings, trained and tested with every seed."""
    per_seed = {}
    for seed in config.seeds:
        data = _data(config, seed)
        root = Path(config.run_dir) / f"seed{seed}"
        judge, judge_acc = _judge(config, data, seed, root)
        frechet_real = evaluate.frechet_distance(
            evaluate.judge_features(judge, data.x_train),
            evaluate.judge_features(judge, data.x_test),
        )
        results = {}
        for model in config.models:
            run_config = dataclasses.replace(config, run_dir=str(root), seed=seed, **chosen[model])
            results[model] = _train_and_measure(
                model, run_config, data, judge, split="test", n_samples=config.nll_samples
            )
            shown = ", ".join(f"{k} {results[model][k]:.3f}" for k, _, _ in TEST_COLUMNS[:2])
            log(f"[test] seed {seed} {model}: {shown}")
        per_seed[seed] = {"judge_accuracy": judge_acc, "frechet_real_train_test": frechet_real,
                          "results": results}  # fmt: skip
    return per_seed


def aggregate(per_seed: dict, models) -> dict:
    """Mean and standard deviation (ddof 1) over seeds of every numeric test metric."""
    out = {}
    for model in models:
        runs = [per_seed[s]["results"][model] for s in per_seed]
        keys = [k for k, v in runs[0].items() if isinstance(v, int | float)]
        out[model] = {k: mean_std([r[k] for r in runs]) for k in keys}
    return out


def mean_std(values) -> dict:
    """``{"mean", "std"}`` over the first axis of ``values`` (runs): floats for scalars, lists
    for vectors; the standard deviation with ddof 1, 0 for a single run."""
    v = np.asarray(values, float)
    std = v.std(0, ddof=1) if v.shape[0] > 1 else np.zeros(v.shape[1:])
    return {"mean": v.mean(0).tolist(), "std": std.tolist()}


def _std(values) -> float:
    return mean_std(values)["std"]


def _within_noise(stats: dict, key: str, a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` differ by less than the larger of their standard deviations."""
    x, y = stats[a][key], stats[b][key]
    return abs(x["mean"] - y["mean"]) < max(x["std"], y["std"])


def results_markdown(config: Config, searched: dict, per_seed: dict, stats: dict) -> str:
    seeds = list(per_seed)
    lines = [
        f"Mean ± standard deviation over {len(seeds)} seeds ({', '.join(map(str, seeds))}) on "
        "each seed's test split; every model's settings chosen on validation (below).",
        "",
        "| model | " + " | ".join(h for _, h, _ in TEST_COLUMNS) + " |",
        "|" + "---|" * (len(TEST_COLUMNS) + 1),
    ]
    for model in config.models:
        cells = [
            f"{fmt.format(stats[model][k]['mean'])} ± {fmt.format(stats[model][k]['std'])}"
            for k, _, fmt in TEST_COLUMNS
        ]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    judge = [per_seed[s]["judge_accuracy"] for s in seeds]
    real = [per_seed[s]["frechet_real_train_test"] for s in seeds]
    lines += [
        "",
        f"Judge (CNN) test accuracy {np.mean(judge):.3f} ± {_std(judge):.3f}; "
        f"FD between real training and real test images {np.mean(real):.1f}. Joint NLL with "
        f"K = {config.nll_samples} importance samples. Spread: within-class distance of the "
        "images generated from labels over that of real images (collapse gives 0).",
        "",
        "Pairs of models whose coherence means differ by less than one standard deviation "
        "(within noise):",
        "",
    ]
    pairs = [
        f"{a} / {b}"
        for a, b in itertools.combinations(config.models, 2)
        if _within_noise(stats, "coherence_label_to_image", a, b)
    ]
    lines.append(", ".join(pairs) if pairs else "none")
    lines += ["", "Chosen on validation (score: mean of the two cross-modal accuracies):", ""]
    lines += ["| model | settings | validation score | candidates |", "|---|---|---|---|"]
    for model in config.models:
        s = searched["models"][model]
        settings = ", ".join(f"{k} {v}" for k, v in s["chosen"].items())
        lines.append(f"| {model} | {settings} | {s['score']:.3f} | {len(s['candidates'])} |")
    lines += ["", *(f"- `{m}`: {MODEL_DESCRIPTIONS[m]}" for m in config.models)]
    return "\n".join(lines) + "\n"


def run_comparison(config: Config, log=print) -> dict:
    """Runs the whole protocol in ``config.run_dir``; returns (and writes) the summary."""
    t0 = time.perf_counter()
    config.validate()
    _data(config, config.seeds[0])  # data errors before any training
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    searched = search(config, log)
    chosen = {m: searched["models"][m]["chosen"] for m in config.models}
    per_seed = final_runs(config, chosen, log)
    stats = aggregate(per_seed, config.models)
    summary = {
        "config": config.as_dict(),
        "protocol": __doc__,
        "grid": {m: search_space(m, config) for m in config.models},
        "search": searched,
        "chosen": chosen,
        "test": {str(s): v for s, v in per_seed.items()},
        "aggregate": stats,
        "seconds": time.perf_counter() - t0,
        "platform": {"jax": jax.__version__, "backend": jax.default_backend(),
                     "machine": platform.machine(), "python": platform.python_version()},
    }  # fmt: skip
    (run_dir / "results.md").write_text(results_markdown(config, searched, per_seed, stats))
    (run_dir / "results.json").write_text(json.dumps(summary, indent=2, default=_plain))
    summary["figures"] = []
    return summary


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value)}")
