"""The whole experiment: check the settings and data, train every model, evaluate, write results."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import jax
import optax
from flax import nnx

from experiments import framework
from experiments.mwvae import evaluate, models, plots
from experiments.mwvae.config import MODEL_DESCRIPTIONS, Config, compiler_options
from experiments.mwvae.data import Dataset, load_dataset, make_batch_fn

# Markdown table columns: (key, header, format); "\|" is a literal bar inside a table cell.
COLUMNS = (
    ("acc_image_to_label", "image→label acc", "{:.3f}"),
    ("coherence_label_to_image", "label→image coherence", "{:.3f}"),
    ("diversity_label_to_image", "label→image spread", "{:.2f}"),
    ("frechet_label_to_image", "label→image FD", "{:.1f}"),
    ("recon_ll_image", r"log p(x\|z) image", "{:.1f}"),
    ("recon_ll_label", r"log p(y\|z) label", "{:.3f}"),
    ("joint_nll", "joint NLL (IS)", "{:.1f}"),
    ("w2_modalities", "mean W2² img↔label", "{:.2f}"),
    ("active_dims_image", r"active dims q(z\|x)", "{}"),
    ("kl_image", r"KL q(z\|x)", "{:.1f}"),
    ("train_seconds", "train s", "{:.0f}"),
)


def prepare(config: Config) -> Dataset:
    """Validates ``config`` and loads its data: every input error surfaces before training."""
    config.validate()
    data = load_dataset(config.source, data_dir=config.data_dir, seed=config.seed)
    if data.x_train.shape[0] < config.batch_size:
        raise ValueError(
            f"`batch_size` {config.batch_size} exceeds the {data.x_train.shape[0]} training "
            f"examples of {data.name}."
        )
    return data


def train_one(kind: str, config: Config, data: Dataset) -> tuple[evaluate.TrainedModel, list]:
    """Trains (or resumes, or restores) model ``kind`` in ``<run_dir>/<kind>/``.

    Returns the trained model and its metric records (``metrics.jsonl``).
    """
    model_dir = Path(config.run_dir) / kind
    if (model_dir / "train_config.json").exists() and not config.overwrite:
        raise ValueError(
            f"{model_dir} holds a run of the earlier trainer, whose checkpoints this one cannot "
            "read; delete it, or pass --overwrite."
        )
    signature = config.training_signature(kind)
    framework.check_signature(model_dir, signature, overwrite=config.overwrite)
    model = models.MultimodalVAE(
        kind,
        pixels=data.x_train.shape[1],
        latent=config.latent_size,
        shared=config.shared,
        hidden=config.hidden,
        label_hidden=config.label_hidden,
        rngs=nnx.Rngs(config.seed),
    )
    graphdef, params = nnx.split(model, nnx.Param)
    steps_per_epoch = data.x_train.shape[0] // config.batch_size
    t0 = time.perf_counter()
    result = framework.train(
        params=nnx.to_pure_dict(params),
        optimizer=optax.adam(config.learning_rate),
        loss_fn=models.make_loss_fn(
            graphdef, w2_weight=config.w2_weight, label_weight=config.label_weight
        ),
        batch_fn=models.annealed_batch_fn(
            make_batch_fn(
                data.x_train, data.y_train, seed=config.seed, batch_size=config.batch_size
            ),
            config.kl_anneal_epochs * steps_per_epoch,
        ),
        num_steps=config.epochs * steps_per_epoch,
        seed=config.seed,
        run_dir=model_dir,
        log_every=config.log_every_steps,
        checkpoint_every=config.checkpoint_every_epochs * steps_per_epoch,
        desc=kind,
        progress=config.progress,
        compiler_options=compiler_options(config.fast_compile),
    )
    seconds = time.perf_counter() - t0
    if result.steps_per_second == 0.0 and result.history:  # restored a finished run
        seconds = float(result.history[-1].get("seconds", seconds))
    trained = evaluate.TrainedModel(
        kind, graphdef, jax.device_get(result.params), seconds, config.epochs * steps_per_epoch
    )
    return trained, result.history


def results_markdown(
    results: list[dict], classifier_accuracy: float, frechet_real: float, config: Config, data
) -> str:
    header = "| model | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 1)]
    for r in results:
        cells = []
        for key, _, fmt in COLUMNS:
            cell = fmt.format(r[key])
            if key == "active_dims_image":
                cell = f"{r[key]}/{r['latent_dims']}"
            cells.append(cell)
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    n_samples = results[0]["nll_samples"] if results else config.nll_samples
    lines += [
        "",
        f"Data: {data.name}, {data.x_train.shape[0]} train / {data.x_test.shape[0]} test; "
        f"latent size {config.latent_size}, lambda = {config.w2_weight}, label weight "
        f"{config.label_weight}, KL annealed over {config.kl_anneal_epochs} epochs, "
        f"{config.epochs} epochs of batch {config.batch_size}, seed "
        f"{config.seed}. Coherence judged by a CNN classifier trained on the real training "
        f"images, test accuracy {classifier_accuracy:.3f}. Spread: mean within-class distance "
        "between the images generated from the labels over that of the real test images (1 for "
        "as varied as the data; collapse to one prototype per class gives 0). FD: Frechet "
        "distance between the generated and the real test images in the judge's features "
        f"(real training against real test images: {frechet_real:.1f}). Joint NLL and "
        "log-likelihoods in "
        f"nats per test example (importance sampling with K = {n_samples}); W2² for "
        "wvae_shared on the shared part only; active dims: KL > 0.01 nats.",
        "",
    ]
    lines += [f"- `{r['model']}`: {MODEL_DESCRIPTIONS[r['model']]}" for r in results]
    return "\n".join(lines) + "\n"


def train_and_evaluate(config: Config) -> dict:
    """Runs the experiment in ``config.run_dir``; returns the results (also in results.json).

    Writes ``results.md``, ``results.json``, ``figures/*.png`` and one sub-directory per model
    (checkpoints, metrics), and ``classifier/`` for the judge. A run directory that already
    holds checkpoints resumes from them.
    """
    t0 = time.perf_counter()
    data = prepare(config)
    run_dir = Path(config.run_dir)
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)

    trained, histories = [], {}
    for kind in config.models:
        model, histories[kind] = train_one(kind, config, data)
        trained.append(model)
    judge_dir = run_dir / "classifier"
    signature = {"model": "classifier-cnn", "data": config.source, "data_dir": config.data_dir}
    framework.check_signature(
        judge_dir, signature | {"seed": config.seed}, overwrite=config.overwrite
    )
    classifier, classifier_accuracy = evaluate.train_classifier(
        data,
        epochs=config.classifier_epochs,
        seed=config.seed,
        run_dir=judge_dir,
        fast_compile=config.fast_compile,
        progress=config.progress,
    )
    frechet_real = evaluate.frechet_distance(
        evaluate.judge_features(classifier, data.x_train),
        evaluate.judge_features(classifier, data.x_test),
    )
    indices = evaluate.figure_examples(
        data.y_test, rows=config.figure_rows, columns=config.figure_columns
    )
    results, per_model = [], {}
    for result in trained:
        metrics, per_model[result.kind] = evaluate.evaluate_model(
            result,
            data,
            classifier,
            n_samples=config.nll_samples,
            seed=config.seed,
            figure_indices=indices,
            fast_compile=config.fast_compile,
        )
        results.append(metrics)

    shape, rows, cols = data.image_shape, config.figure_rows, config.figure_columns
    figures = []
    for kind, fig_data in per_model.items():
        name = f"reconstructions_{kind}.png"
        plots.plot_reconstructions(
            fig_dir / name, fig_data, f"{kind}: {MODEL_DESCRIPTIONS[kind]}", shape, rows, cols
        )
        figures.append(name)
    plots.plot_all_reconstructions(
        fig_dir / "reconstructions_all.png", per_model, shape, rows, cols
    )
    plots.plot_kl_per_dim(fig_dir / "kl_per_dim.png", results, evaluate.ACTIVE_KL)
    plots.plot_training_curves(fig_dir / "training_curves.png", histories)
    figures += ["reconstructions_all.png", "kl_per_dim.png", "training_curves.png"]

    summary = {
        "config": config.as_dict(),
        "data": {
            "name": data.name,
            "n_train": int(data.x_train.shape[0]),
            "n_test": int(data.x_test.shape[0]),
            "image_shape": list(data.image_shape),
        },
        "classifier_accuracy": classifier_accuracy,
        "frechet_real_train_test": frechet_real,
        "results": results,
        "figures": [f"figures/{f}" for f in figures],
        "seconds": time.perf_counter() - t0,
        "platform": {"jax": jax.__version__, "backend": jax.default_backend(),
                     "machine": platform.machine(), "python": platform.python_version()},
    }  # fmt: skip
    (run_dir / "results.md").write_text(
        results_markdown(results, classifier_accuracy, frechet_real, config, data)
    )
    (run_dir / "results.json").write_text(json.dumps(summary, indent=2))
    return summary
