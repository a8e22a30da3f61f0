"""``python -m experiments.mwvae --data polymnist``: M modalities, barycenter against pairwise.

It generates the PolyMNIST-style set of ``seed`` (:mod:`experiments.mwvae.polymnist`: the
split, partner digits and crops; cached in ``<run_dir>/data``) and trains one CNN judge per
modality on its real training images (``<run_dir>/judges``); the data and the judges are the
same for every model and seed. Then, for every seed of ``seeds`` (initialisation, batch order
and noise), it trains every model of ``poly_models`` (:data:`experiments.mwvae.poly.POLY_MODELS`)
with the same settings and evaluates, on the test split:

* ``coherence_by_size``: for every non-empty proper subset ``S`` of the modalities, a latent is
  sampled from ``q(z | x_S)`` and every modality outside ``S`` is generated from it (pixel
  means); the judge of that modality must give the sample's class. The accuracies are averaged
  over the subsets of each size ``1 .. M - 1`` (the MoPoE paper's protocol);
* ``coherence_self``: each modality regenerated from its own posterior ``q(z | x_m)`` and
  judged: whether the latent carries the class at all (a check of the pipeline; a model can
  reconstruct its class without any cross-modal coherence);
* ``coherence_unconditional``: ``z`` from the prior, all M modalities generated; coherent when
  the M judges agree;
* ``joint_nll``: ``-log p(x_1, ..., x_M)`` by importance sampling from ``q(z | x_1..M)``, on
  the first ``nll_examples`` test examples (the same for every model; all when ``None``);
* ``seconds_per_step``: training time per step, also measured for the two W-VAEs at
  ``M = 2 .. modalities`` on random inputs (``step_time_by_m``), the cost of M barycenter terms
  against ``M (M - 1) / 2`` pairwise ones.

A run whose loss stops being finite is recorded as diverged (``diverged_at_step``) and the
comparison goes on; the means and standard deviations are over the seeds whose runs finished,
and the table says how many did. ``results_polymnist.md`` /
``.json`` and ``figures/coherence_by_subset_size.png`` go to ``run_dir``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from experiments import framework
from experiments.mwvae import evaluate, poly
from experiments.mwvae import models as m
from experiments.mwvae.compare import mean_std
from experiments.mwvae.config import Config, compiler_options
from experiments.mwvae.data import Dataset, make_batch_fn
from experiments.mwvae.polymnist import MultiDataset, load_polymnist

CHUNK = 100  # test examples per evaluation call


def batch_fn_multi(data: MultiDataset, *, seed: int, batch_size: int, anneal_steps: int):
    """:func:`~experiments.mwvae.data.make_batch_fn` over samples ``[n, M, p]`` with the KL weight
    of :func:`~experiments.mwvae.models.annealed_batch_fn`: ``{"x": [b, M, p], "y", "beta"}``."""
    xs = np.ascontiguousarray(np.swapaxes(data.x_train, 0, 1))  # [n, M, p]
    base = make_batch_fn(xs, data.y_train, seed=seed, batch_size=batch_size)
    return m.annealed_batch_fn(base, anneal_steps)


def _judges(config: Config, data: MultiDataset, seed: int, run_dir: Path):
    judges, accuracies = [], []
    for i in range(data.x_train.shape[0]):
        single = Dataset(data.x_train[i], data.y_train, data.x_test[i], data.y_test,
                         data.image_shape, f"{data.name}, modality {i}")  # fmt: skip
        judge_dir = run_dir / f"classifier{i}"
        signature = {"model": "classifier-cnn", "data": data.name, "modality": i, "seed": seed,
                     "epochs": config.classifier_epochs}  # fmt: skip
        framework.check_signature(judge_dir, signature, overwrite=config.overwrite)
        judge, acc = evaluate.train_classifier(
            single, epochs=config.classifier_epochs, seed=seed + 10 * i, run_dir=judge_dir,
            fast_compile=config.fast_compile, progress=config.progress,
        )  # fmt: skip
        judges.append(judge)
        accuracies.append(acc)
    return judges, accuracies


def _train(kind: str, config: Config, data: MultiDataset, seed: int, run_dir: Path):
    n_mod, pixels = data.x_train.shape[0], data.x_train.shape[2]
    model = poly.PolyVAE(kind, modalities=n_mod, pixels=pixels, latent=config.latent_size,
                         hidden=config.hidden, rngs=nnx.Rngs(seed),
                         image_shape=_image_shape(config, data.image_shape))  # fmt: skip
    graphdef, params = nnx.split(model, nnx.Param)
    steps_per_epoch = data.y_train.shape[0] // config.batch_size
    signature = config.training_signature(kind) | {"modalities": n_mod, "seed": seed,
                                                   "kl_weight": config.kl_weight,
                                                   "arch": config.poly_arch}  # fmt: skip
    framework.check_signature(run_dir / kind, signature, overwrite=config.overwrite)
    t0 = time.perf_counter()
    result = framework.train(
        params=nnx.to_pure_dict(params),
        optimizer=optax.adam(config.learning_rate),
        loss_fn=poly.make_loss_fn(graphdef, w2_weight=config.w2_weight,
                                  kl_weight=config.kl_weight),
        batch_fn=batch_fn_multi(data, seed=seed, batch_size=config.batch_size,
                                anneal_steps=config.kl_anneal_epochs * steps_per_epoch),
        num_steps=config.epochs * steps_per_epoch,
        seed=seed,
        run_dir=run_dir / kind,
        log_every=config.log_every_steps,
        checkpoint_every=config.checkpoint_every_epochs * steps_per_epoch,
        desc=f"{kind} (M={n_mod})",
        progress=config.progress,
        compiler_options=compiler_options(config.fast_compile),
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    return graphdef, jax.device_get(result.params), seconds, config.epochs * steps_per_epoch


def _cross_pairs(n: int) -> list[tuple[tuple[int, ...], int]]:
    """``(observed subset, generated modality)`` for every proper subset and missing modality,
    in the order :func:`_generate_chunk` generates them."""
    return [(s, t) for s in poly.subsets(n) if len(s) < n for t in range(n) if t not in s]


def _classify(judge, images):
    return jnp.argmax(judge(images), axis=-1)


def _generate_chunk(graphdef, params, judge_graph, judge_params, xs, key):
    """Per example of ``xs: [b, M, p]``: the judged classes of every cross-modal generation
    ``[b, n_pairs]`` (in :func:`_cross_pairs` order), of each modality regenerated from its own
    posterior ``[b, M]`` (the same latent sample as its cross-modal generations) and of the
    unconditional ones ``[b, M]``."""
    model = nnx.merge(graphdef, params)
    judges = [nnx.merge(judge_graph, p) for p in judge_params]
    n = model.modalities
    pairs = _cross_pairs(n)
    k_gen, k_prior = jax.random.split(key)
    b = xs.shape[0]

    def per_example(x, kg):
        means, variances = model.encode(x)
        generated, own = [], []
        for j, s in enumerate(poly.subsets(n)[:-1]):
            q = poly.subset_posterior(model.kind, means, variances, s)
            kj = jax.random.fold_in(kg, j)
            if isinstance(q, m.Mixture):  # a sample of the mixture: a random component
                c = jax.random.randint(jax.random.fold_in(kj, 1), (), 0, len(q.components))
                q = m.DiagGaussian(jnp.stack([g.mean for g in q.components])[c],
                                   jnp.stack([g.var for g in q.components])[c])  # fmt: skip
            z = m.sample(q, jax.random.normal(kj, (model.latent,)))
            generated += [jax.nn.sigmoid(model.decoders[t](z)) for t in range(n) if t not in s]
            if len(s) == 1:
                own.append(jax.nn.sigmoid(model.decoders[s[0]](z)))
        return jnp.stack(generated), jnp.stack(own)

    gen, own = jax.vmap(per_example)(xs, jax.random.split(k_gen, b))
    cross = jnp.stack(
        [_classify(judges[t], gen[:, i]) for i, (_, t) in enumerate(pairs)], axis=1
    )  # [b, n_pairs]
    self_classes = jnp.stack([_classify(judges[t], own[:, t]) for t in range(n)], axis=1)
    z = jax.random.normal(k_prior, (b, model.latent))
    uncond = jnp.stack(
        [_classify(judges[t], jax.nn.sigmoid(jax.vmap(model.decoders[t])(z))) for t in range(n)],
        axis=1,
    )  # [b, M]
    return cross, self_classes, uncond


def _nll_chunk(graphdef, params, xs, key, n_samples):
    """``-log p(x_1..M)`` ``[b]`` of each example of ``xs: [b, M, p]``, importance-sampled from
    the joint posterior ``q(z | x_1..M)`` with ``n_samples`` samples."""
    model = nnx.merge(graphdef, params)
    n = model.modalities

    def per_example(x, ki):
        means, variances = model.encode(x)
        q_all = poly.subset_posterior(model.kind, means, variances, tuple(range(n)))

        def log_lik(z):
            return (jnp.sum(model.log_likelihoods(z, x)),)

        (nll,) = evaluate.importance_sampled_nll(log_lik, q_all, model.latent, ki, n_samples)
        return nll

    return jax.vmap(per_example)(xs, jax.random.split(key, xs.shape[0]))


_GENERATE, _NLL = (
    {
        fast: jax.jit(fn, static_argnums=static, compiler_options=compiler_options(fast))
        for fast in (False, True)
    }
    for fn, static in ((_generate_chunk, (0, 2)), (_nll_chunk, (0, 4)))
)


def evaluate_poly(graphdef, params, judges, data: MultiDataset, *, n_samples, seed, fast_compile,
                  nll_examples=None):  # fmt: skip
    """The metrics of one trained model on the test split (see the module's docstring).

    Coherence uses every test example; the joint NLL the first ``nll_examples`` of them (all
    when ``None``), the same ones for every model, as ``K = n_samples`` samples times ``M``
    decoders per example make it the costliest part."""
    n = data.x_test.shape[0]  # M
    pairs = _cross_pairs(n)
    judge_graph = nnx.split(judges[0], nnx.Param)[0]
    judge_params = [nnx.to_pure_dict(nnx.split(j, nnx.Param)[1]) for j in judges]
    xs_all = np.swapaxes(data.x_test, 0, 1)
    y_all = data.y_test
    n_test = y_all.shape[0]
    n_nll = n_test if nll_examples is None else min(nll_examples, n_test)
    k_gen, k_nll = jax.random.split(jax.random.key(seed + 2))
    generate, nll_fn = _GENERATE[fast_compile], _NLL[fast_compile]

    def gen_fn(xs, i):
        return generate(
            graphdef, params, judge_graph, judge_params, xs, jax.random.fold_in(k_gen, i)
        )

    def nll_of(xs, i):
        return nll_fn(graphdef, params, xs, jax.random.fold_in(k_nll, i), n_samples)

    # a fixed chunk (the last one padded): each function compiles once per model
    cross, own, uncond = evaluate.map_chunks(gen_fn, (xs_all,), n_test, CHUNK)
    nll = evaluate.map_chunks(nll_of, (xs_all,), n_nll, CHUNK)
    correct = cross == y_all[:, None]
    by_size = [
        float(np.mean([correct[:, i].mean() for i, (s, _) in enumerate(pairs) if len(s) == k]))
        for k in range(1, n)
    ]
    return {
        "coherence_by_size": by_size,
        "coherence_conditional": float(np.mean(by_size)),
        "coherence_unconditional": float(np.mean(np.all(uncond == uncond[:, :1], axis=1))),
        "coherence_self": float(np.mean(own == y_all[:, None])),
        "joint_nll": float(nll.mean()),
        "joint_nll_std": float(nll.std(ddof=1)) if n_nll > 1 else 0.0,
        "nll_samples": n_samples,
        "nll_examples": n_nll,
    }


def _image_shape(config: Config, image_shape):
    return tuple(image_shape) if config.poly_arch == "cnn" else None


def step_time(kind: str, modalities: int, image_shape, config: Config, *, steps: int = 10) -> float:
    """Seconds per training step (gradient only, after compilation) on random inputs."""
    pixels = math.prod(image_shape)
    model = poly.PolyVAE(kind, modalities=modalities, pixels=pixels, latent=config.latent_size,
                         hidden=config.hidden, rngs=nnx.Rngs(0),
                         image_shape=_image_shape(config, image_shape))  # fmt: skip
    graphdef, params = nnx.split(model, nnx.Param)
    loss_fn = poly.make_loss_fn(graphdef, w2_weight=1.0)
    grad = jax.jit(jax.grad(lambda p, b, k: loss_fn(p, b, k)[0]),
                   compiler_options=compiler_options(config.fast_compile))  # fmt: skip
    rng = np.random.default_rng(0)
    batch = {"x": rng.uniform(size=(config.batch_size, modalities, pixels)).astype(np.float32),
             "y": np.zeros(config.batch_size, np.int32)}  # fmt: skip
    params = nnx.to_pure_dict(params)
    jax.block_until_ready(grad(params, batch, jax.random.key(0)))
    t0 = time.perf_counter()
    for i in range(steps):
        jax.block_until_ready(grad(params, batch, jax.random.key(i)))
    return (time.perf_counter() - t0) / steps


def run_polymnist(config: Config, log=print) -> dict:
    """The whole M-modality experiment in ``config.run_dir``; returns the summary."""
    t0 = time.perf_counter()
    config.validate()
    run_dir = Path(config.run_dir)
    results: dict[str, dict[int, dict]] = {k: {} for k in config.poly_models}
    data = load_polymnist(config.poly_source, modalities=config.modalities, seed=config.seed,
                          cache_dir=str(run_dir / "data"))  # fmt: skip
    judges, judges_acc = _judges(config, data, config.seed, run_dir / "judges")
    log(f"[polymnist] judges' test accuracy {', '.join(f'{a:.3f}' for a in judges_acc)}")
    for seed in config.seeds:
        seed_dir = run_dir / f"seed{seed}"
        for kind in config.poly_models:
            try:
                graphdef, params, seconds, steps = _train(kind, config, data, seed, seed_dir)
            except framework.NonFiniteLossError as err:
                # a run whose loss stops being finite is a result (reported as diverged, out of
                # the means), not the end of the comparison
                results[kind][seed] = {"diverged_at_step": err.step}
                log(
                    f"[polymnist] seed {seed} {kind}: diverged (loss not finite at step {err.step})"
                )
                continue
            metrics = evaluate_poly(graphdef, params, judges, data, n_samples=config.nll_samples,
                                    seed=seed, fast_compile=config.fast_compile,
                                    nll_examples=config.nll_examples)  # fmt: skip
            metrics |= {"train_seconds": seconds, "seconds_per_step": seconds / steps}
            results[kind][seed] = metrics
            coherence, nll = metrics["coherence_conditional"], metrics["joint_nll"]
            log(
                f"[polymnist] seed {seed} {kind}: conditional coherence {coherence:.3f}, "
                f"NLL {nll:.1f}"
            )
    steps = 2 if config.fast_compile else 10  # the smoke preset only checks that it runs
    timing = {
        kind: {
            n: step_time(kind, n, data.image_shape, config, steps=steps)
            for n in range(2, config.modalities + 1)
        }
        for kind in ("wvae_bary", "wvae_pairwise")
    }
    summary = {
        "config": config.as_dict(),
        "judge_accuracy": judges_acc,
        "results": {k: {str(s): v for s, v in r.items()} for k, r in results.items()},
        "aggregate": {k: _aggregate(list(r.values())) for k, r in results.items()},
        "step_time_by_m": timing,
        "seconds": time.perf_counter() - t0,
    }
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    _plot(fig_dir / "coherence_by_subset_size.png", summary["aggregate"], config.modalities)
    summary["figures"] = ["figures/coherence_by_subset_size.png"]
    (run_dir / "results_polymnist.md").write_text(_markdown(summary, config))
    (run_dir / "results_polymnist.json").write_text(json.dumps(summary, indent=2))
    return summary


_STATS = ("coherence_conditional", "coherence_self", "coherence_unconditional", "joint_nll",
          "seconds_per_step")  # fmt: skip


def _aggregate(all_runs: list[dict]) -> dict:
    """Means and standard deviations over the runs that finished; ``finished`` and ``diverged``
    count the runs (the statistics are NaN when none finished)."""
    runs = [r for r in all_runs if "diverged_at_step" not in r]
    out: dict = {"finished": len(runs), "diverged": len(all_runs) - len(runs)}
    if not runs:
        nan = {"mean": float("nan"), "std": float("nan")}
        return out | dict.fromkeys(_STATS, nan) | {"coherence_by_size": {"mean": [], "std": []}}
    return out | {key: mean_std([r[key] for r in runs]) for key in (*_STATS, "coherence_by_size")}


def _plot(path: Path, aggregate: dict, modalities: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8), constrained_layout=True)
    sizes = np.arange(1, modalities)
    for kind, stats in aggregate.items():
        mean = np.array(stats["coherence_by_size"]["mean"])
        std = np.array(stats["coherence_by_size"]["std"])
        if mean.size == 0:  # every run diverged
            continue
        ax.errorbar(sizes, mean, yerr=std, marker="o", capsize=3, label=kind)
    ax.set_xlabel("number of observed modalities")
    ax.set_ylabel("coherence of the generated modalities")
    ax.set_xticks(sizes)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown(summary: dict, config: Config) -> str:
    n = config.modalities
    agg = summary["aggregate"]
    pm = lambda s, f="{:.3f}": f"{f.format(s['mean'])} ± {f.format(s['std'])}"
    head = ["model", *(f"coherence, {k} observed" for k in range(1, n)),
            "self", "unconditional", "joint NLL", "s / step", "runs"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for kind, s in agg.items():
        by = s["coherence_by_size"]
        cells = [f"{a:.3f} ± {b:.3f}" for a, b in zip(by["mean"], by["std"], strict=True)]
        cells = cells or ["diverged"] * (n - 1)
        cells += [pm(s["coherence_self"]), pm(s["coherence_unconditional"]),
                  pm(s["joint_nll"], "{:.1f}"),
                  pm(s["seconds_per_step"], "{:.4f}"),
                  f"{s['finished']} of {s['finished'] + s['diverged']}"]  # fmt: skip
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines += ["", "Seconds per training step against M (random inputs, after compilation):", ""]
    ms = list(range(2, n + 1))
    lines += [
        "| model | " + " | ".join(f"M = {k}" for k in ms) + " |",
        "|" + "---|" * (len(ms) + 1),
    ]
    for kind, by_m in summary["step_time_by_m"].items():
        lines.append(f"| {kind} | " + " | ".join(f"{by_m[k]:.4f}" for k in ms) + " |")
    acc = summary["judge_accuracy"]
    lines += [
        "",
        f"Data and judges of seed {config.seed}; model seeds {list(config.seeds)}. The judges' "
        f"test accuracy per modality: {', '.join(f'{a:.3f}' for a in acc)}.",
        "",
    ]
    return "\n".join(lines)
