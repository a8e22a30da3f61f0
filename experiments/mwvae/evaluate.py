"""Evaluation on the test set: the numbers of the results table and the figures' contents.

Per model (all on the test set, per example, then averaged):

* ``acc_image_to_label``: the label decoded from the image alone (posterior mean of ``q(z | x)``,
  argmax of the label decoder). ``acc_both_to_label``: the same with both observed.
* ``coherence_label_to_image``: an image generated from the label alone (``z ~ q(z | y)``; a
  missing private part from the prior; pixel means of the decoder), classified by a classifier
  trained on the real training images; the fraction given the conditioning label. The
  classifier's own test accuracy is reported alongside (``classifier_accuracy``).
* ``recon_ll_image``, ``recon_ll_label``: ``E_q(z|x,y) log p(x | z)`` and ``log p(y | z)`` in nats
  (the mean over the importance samples below).
* ``joint_nll``: ``-log p(x, y)`` estimated by importance sampling with ``K = nll_samples``
  draws from ``q(z | x, y)``: ``-log mean_k p(x, y | z_k) p(z_k) / q(z_k | x, y)``. An upper bound
  in expectation (it tightens as K grows). The image term is the Bernoulli likelihood of grey
  levels in ``[0, 1]`` (the usual, unnormalised convention for MNIST pixel intensities).
* ``w2_modalities``: ``W2^2`` between ``q(z | x)`` and ``q(z | y)`` (their shared parts for
  ``wvae_shared``), from :mod:`alignment`.
* ``kl_image_per_dim`` etc.: ``KL(q || N(0, 1))`` per latent coordinate for ``q(z | x)``,
  ``q(z | y)`` and ``q(z | x, y)``; ``active_dims_image`` counts coordinates of ``q(z | x)``
  with a mean KL above ``ACTIVE_KL`` nats (a collapsed coordinate carries none).
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import lax

from experiments import framework
from experiments.mwvae import models as m
from experiments.mwvae.config import compiler_options
from experiments.mwvae.data import N_CLASSES, Dataset, make_batch_fn

ACTIVE_KL = 0.01  # nats; a coordinate with less mean KL counts as collapsed
CHUNK = 250  # test examples per evaluation call (bounds memory at K importance samples)


# ------------------------------------------------------------------------------------------
# The judge: a classifier trained on real training images.
# ------------------------------------------------------------------------------------------


class Classifier(nnx.Module):
    """A small CNN judge: two 3x3 convolutions (16 and 32 channels) each followed by 2x2 average
    pooling, a hidden dense layer (its activations are the judge's features), ten logits.
    ``image_shape`` is ``(h, w)`` (grey) or ``(h, w, channels)``."""

    def __init__(self, image_shape: tuple[int, ...], hidden: int, *, rngs: nnx.Rngs):
        self.image_shape = tuple(image_shape) if len(image_shape) == 3 else (*image_shape, 1)
        h, w, c = self.image_shape
        self.conv1 = nnx.Conv(c, 16, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(16, 32, (3, 3), rngs=rngs)
        self.dense = nnx.Linear(32 * (h // 4) * (w // 4), hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, N_CLASSES, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        """``[b, h * w * channels]`` images to ``[b, hidden]`` features."""
        x = x.reshape(x.shape[0], *self.image_shape)
        x = nnx.avg_pool(jax.nn.relu(self.conv1(x)), (2, 2), strides=(2, 2))
        x = nnx.avg_pool(jax.nn.relu(self.conv2(x)), (2, 2), strides=(2, 2))
        return jax.nn.relu(self.dense(x.reshape(x.shape[0], -1)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(self.features(x))


def train_classifier(
    data: Dataset,
    *,
    epochs: int,
    seed: int,
    run_dir: str | os.PathLike,
    hidden: int = 256,
    fast_compile: bool = False,
    progress: bool = False,
):
    """The CNN judge trained on the real training images; ``(model, test accuracy)``.

    Adam (learning rate 1e-3) on batches of 128, trained by :func:`experiments.framework.train`
    in ``run_dir`` (checkpoints and metrics; a rerun restores it).
    """
    model = Classifier(data.image_shape, hidden, rngs=nnx.Rngs(seed + 1))
    graphdef, params = nnx.split(model, nnx.Param)
    batch = min(128, data.x_train.shape[0])

    def loss_fn(params, batch, rng):
        del rng
        logits = nnx.merge(graphdef, params)(batch["x"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean(), {}

    result = framework.train(
        params=nnx.to_pure_dict(params),
        optimizer=optax.adam(1e-3),
        loss_fn=loss_fn,
        batch_fn=make_batch_fn(data.x_train, data.y_train, seed=seed + 1, batch_size=batch),
        num_steps=epochs * (data.x_train.shape[0] // batch),
        seed=seed + 1,
        run_dir=run_dir,
        log_every=100,
        desc="classifier",
        progress=progress,
        compiler_options=compiler_options(fast_compile),
    )
    model = nnx.merge(graphdef, jax.device_get(result.params))
    accuracy = float(np.mean(predict(model, data.x_test) == data.y_test))
    return model, accuracy


@nnx.jit
def _classify(model: Classifier, x: jax.Array) -> jax.Array:
    return jnp.argmax(model(x), axis=-1)


def predict(model: Classifier, x: np.ndarray) -> np.ndarray:
    return np.asarray(_classify(model, jnp.asarray(x)))


@nnx.jit
def _features(model: Classifier, x: jax.Array) -> jax.Array:
    return model.features(x)


def judge_features(model: Classifier, x: np.ndarray) -> np.ndarray:
    """The judge's hidden features ``[n, hidden]`` of images ``[n, h * w]`` (float64)."""
    return np.asarray(_features(model, jnp.asarray(x)), np.float64)


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """The Frechet distance (``W2^2`` of the Gaussian fits) between feature sets ``[n, d]``.

    The Frechet Inception Distance of Heusel et al. (2017), with the judge's features in place of
    Inception's; float64, with ``tr (C1^1/2 C2 C1^1/2)^1/2`` from symmetric eigendecompositions
    (exact for the singular covariances of dead features, where ``sqrtm(C1 C2)`` is not).
    """
    m1, m2 = f1.mean(0), f2.mean(0)
    c1, c2 = np.atleast_2d(np.cov(f1, rowvar=False)), np.atleast_2d(np.cov(f2, rowvar=False))
    lam, vecs = np.linalg.eigh(c1)
    root = (vecs * np.sqrt(np.clip(lam, 0.0, None))) @ vecs.T
    cross = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(root @ c2 @ root), 0.0, None)))
    return float(np.sum((m1 - m2) ** 2) + np.trace(c1) + np.trace(c2) - 2.0 * cross)


def within_class_spread(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per class ``c``, the mean Euclidean distance between two images of class ``c``, ``[10]``.

    NaN for a class with fewer than two images.
    """
    spread = np.full(N_CLASSES, np.nan)
    for c in range(N_CLASSES):
        xc = x[y == c].astype(np.float64)
        n = xc.shape[0]
        if n < 2:
            continue
        sq = np.sum(xc**2, axis=1)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * xc @ xc.T, 0.0)
        spread[c] = np.sqrt(d2)[np.triu_indices(n, 1)].mean()
    return spread


class TrainedModel(NamedTuple):
    """A trained model to evaluate: ``kind``, ``graphdef`` and ``params`` (a pure dict), its
    training time in seconds and its number of steps."""

    kind: str
    graphdef: Any
    params: Any
    seconds: float
    steps: int


# ------------------------------------------------------------------------------------------
# Per-example quantities (vmapped, jitted per chunk).
# ------------------------------------------------------------------------------------------


def joint_size(model: m.MultimodalVAE) -> int:
    """Coordinates of the model's whole latent (see :func:`models.joint_proposal`)."""
    if model.kind == "wvae_shared":
        return model.shared + 2 * (model.latent - model.shared)
    return model.latent


def _example_metrics(model: m.MultimodalVAE, x, y, eps_gen, key_is, n_samples: int) -> dict:
    """Everything evaluated on one test example; ``eps_gen: [k]``, ``key_is`` for the ``K =
    n_samples`` importance samples."""
    e1, e2 = model.encode(x, y)
    # W2 between the modality posteriors (their shared parts for wvae_shared), first: the
    # barrier makes the rest wait for it, so that the LAPACK calls of full covariances (this
    # SVD, the barycentre's SVD and LU) run one after the other (see models.FullGaussian)
    q1, q2 = m.unimodal_posteriors(model, e1, e2)
    if model.kind == "wvae_shared":
        q1, q2 = m.take(q1, 0, model.shared), m.take(q2, 0, model.shared)
    w2 = m.w2_squared(q1, q2)
    e1, e2, w2 = lax.optimization_barrier((e1, e2, w2))
    joint = m.joint_posterior(model, e1, e2)
    decode_image = lambda z: jax.nn.sigmoid(model.image_decoder(z))
    decode_label = lambda z: jnp.argmax(model.label_decoder(z))
    # (a) both, (b) image only: posterior means; (c) label only: a sample (missing private
    # parts from the prior), also the image judged for coherence
    out = {"w2": w2}
    inputs = {}
    for cond in m.CONDITIONS:
        qi, ql = inputs[cond] = m.decoder_inputs(model, e1, e2, cond, joint)
        zi = m.sample(qi, eps_gen) if cond == "label" else qi.mean
        out["image_" + cond] = decode_image(zi)
        out["label_" + cond] = decode_label(ql.mean)
    # importance-sampled joint log-likelihood and reconstructions
    q, split = m.joint_proposal(model, e1, e2, joint)
    nll, ll_image, ll_label = two_modality_nll(model, x, y, q, split, key_is, n_samples)
    q_image, q_label = inputs["image"][0], inputs["label"][1]
    return out | {
        "nll": nll,
        "recon_ll_image": ll_image,
        "recon_ll_label": ll_label,
        "kl_image": m.kl_to_prior(q_image),
        "kl_label": m.kl_to_prior(q_label),
        "kl_joint": m.kl_to_prior(m.moment_match(q)),
        "kl_image_total": m.kl_total(q_image),
    }


def sample_chunk(n_samples: int, limit: int = 128) -> int:
    """The largest divisor of ``n_samples`` that is at most ``limit``: samples per pass."""
    return max(c for c in range(1, min(n_samples, limit) + 1) if n_samples % c == 0)


def importance_sampled_nll(log_lik, q, size: int, key, n_samples: int):
    """``-log p(x)`` by importance sampling from ``q``, and the means of ``log_lik``'s outputs.

    ``log_lik(z) -> (log p(x | z), *parts)`` for a latent ``z: [size]`` (``parts``: terms to
    average over the samples, e.g. per-modality log-likelihoods). ``q`` is a Gaussian or a
    :class:`models.Mixture`; mixtures are sampled stratified (sample ``k`` from component
    ``k % C``) and weighted by the mixture density, and the estimate is ``-log (1/C) sum_c
    mean_{k in c} w_k``, unbiased for ``p(x)`` like the plain one. With fewer samples than
    components (``K < C``), each sample's component is drawn at random instead and the plain
    mean of the weights is used (also unbiased). The samples are drawn and
    decoded :func:`sample_chunk` at a time (``lax.map``), so memory does not grow with
    ``n_samples``. Returns ``(nll, *means of parts)``.
    """
    comps = q.components if isinstance(q, m.Mixture) else None
    n_comp = 1 if comps is None else len(comps)
    chunk = sample_chunk(n_samples)

    stratified = n_samples >= n_comp

    def one(eps, index):
        if comps is None:
            z, log_q = m.sample(q, eps), m.log_density_of_sample(q, eps)
        else:
            c = index % n_comp if stratified else index
            mean = jnp.stack([g.mean for g in comps])[c]
            var = jnp.stack([g.var for g in comps])[c]
            z = m.sample(m.DiagGaussian(mean, var), eps)
            log_q = m.log_mixture_density(q, z)
        total, *parts = log_lik(z)
        return (total + m.log_standard_normal(z) - log_q, *parts)

    def block(i):
        k_eps, k_comp = jax.random.split(jax.random.fold_in(key, i))
        eps = jax.random.normal(k_eps, (chunk, size), jnp.float32)
        index = i * chunk + jnp.arange(chunk)
        if not stratified:
            index = jax.random.randint(k_comp, (chunk,), 0, n_comp)
        return jax.vmap(one)(eps, index)

    log_w, *parts = (a.reshape(-1) for a in lax.map(block, jnp.arange(n_samples // chunk)))
    if not stratified:
        return (-(jax.nn.logsumexp(log_w) - jnp.log(n_samples)), *(jnp.mean(p) for p in parts))
    component = jnp.arange(n_samples) % n_comp
    per_component = jnp.stack(
        [
            jax.nn.logsumexp(jnp.where(component == c, log_w, -jnp.inf))
            - jnp.log(jnp.sum(component == c))
            for c in range(n_comp)
        ]
    )
    log_p = jax.nn.logsumexp(per_component) - jnp.log(n_comp)
    return (-log_p, *(jnp.mean(p) for p in parts))


def two_modality_nll(model, x, y, q, split, key, n_samples: int):
    """:func:`importance_sampled_nll` of the image-and-label model: ``(nll, mean log p(x | z),
    mean log p(y | z))``; ``q, split = models.joint_proposal(...)``."""

    def log_lik(z):
        zi, zl = split(z)
        ll_image = m.bernoulli_log_likelihood(model.image_decoder(zi), x)
        ll_label = m.categorical_log_likelihood(model.label_decoder(zl), y)
        return ll_image + ll_label, ll_image, ll_label

    size = joint_size(model) if not isinstance(q, m.Mixture) else q.components[0].mean.shape[-1]
    return importance_sampled_nll(log_lik, q, size, key, n_samples)


def map_chunks(fn, arrays: tuple, n: int, chunk: int):
    """``fn(*chunk_of_each_array, i)`` over the first ``n`` rows of ``arrays`` in chunks of
    ``chunk`` rows, ``i`` the chunk's index; its outputs (any pytree of arrays with a leading
    batch axis) cut back to the real rows and concatenated. The last chunk is zero-padded to
    ``chunk`` rows, so a jitted ``fn`` compiles once."""
    if n < 1 or chunk < 1:
        raise ValueError(f"`n` ({n}) and `chunk` ({chunk}) must be positive.")
    short = [a.shape for a in arrays if a.ndim == 0 or a.shape[0] < n]
    if short:
        raise ValueError(f"`arrays` must have at least n = {n} rows; got shapes {short}.")
    parts = []
    for i, start in enumerate(range(0, n, chunk)):
        stop = min(start + chunk, n)
        padded = [
            np.pad(a[start:stop], [(0, chunk - (stop - start))] + [(0, 0)] * (a.ndim - 1))
            for a in arrays
        ]
        out = fn(*padded, i)
        parts.append(jax.tree.map(lambda v, k=stop - start: np.asarray(v)[:k], out))
    return jax.tree.map(lambda *vs: np.concatenate(vs), *parts)


def _chunk_metrics(graphdef, params, x, y, key, n_samples):
    model = nnx.merge(graphdef, params)
    k_gen, k_is = jax.random.split(key)
    b = x.shape[0]
    eps_gen = jax.random.normal(k_gen, (b, model.latent), x.dtype)
    keys = jax.random.split(k_is, b)
    fn = lambda x, y, e, k: _example_metrics(model, x, y, e, k, n_samples)
    return jax.vmap(fn)(x, y, eps_gen, keys)


_CHUNK_METRICS = {
    fast: jax.jit(_chunk_metrics, static_argnums=(0, 5), compiler_options=compiler_options(fast))
    for fast in (False, True)
}


def evaluate_model(
    result: TrainedModel,
    data: Dataset,
    classifier: Classifier,
    *,
    n_samples: int,
    seed: int,
    figure_indices: np.ndarray | None = None,
    fast_compile: bool = False,
    split: str = "test",
) -> tuple[dict, dict]:
    """The table's numbers for one trained model, and the figure data of ``figure_indices``.

    ``split``: ``"test"`` (the results table) or ``"val"`` (model selection; needs a data set
    from :func:`experiments.mwvae.data.with_validation`).

    One compiled program per model: the test set is processed in chunks of ``CHUNK`` examples
    (the last one padded). The figure data holds the inputs, the reconstructions (a) both
    observed, (b) image only, (c) label only, and the labels decoded in each case.
    """
    key = jax.random.PRNGKey(seed + 2)
    x_eval, y_eval = (data.x_test, data.y_test) if split == "test" else (data.x_val, data.y_val)
    if x_eval is None:
        raise ValueError(f"{data.name} has no {split!r} split.")
    n = x_eval.shape[0]
    out = map_chunks(
        lambda x, y, i: _CHUNK_METRICS[fast_compile](
            result.graphdef, result.params, x, y, jax.random.fold_in(key, i), n_samples
        ),
        (x_eval, y_eval),
        n,
        min(CHUNK, n),
    )
    y = y_eval
    generated = out["image_label"]
    judged = predict(classifier, generated)
    kl_image = out["kl_image"].mean(axis=0)
    spread = within_class_spread(generated, y) / within_class_spread(x_eval, y)
    metrics = {
        "model": result.kind,
        "acc_image_to_label": float(np.mean(out["label_image"] == y)),
        "acc_both_to_label": float(np.mean(out["label_both"] == y)),
        "coherence_label_to_image": float(np.mean(judged == y)),
        "diversity_label_to_image": float(np.nanmean(spread)),
        "frechet_label_to_image": frechet_distance(
            judge_features(classifier, generated), judge_features(classifier, x_eval)
        ),
        "recon_ll_image": float(out["recon_ll_image"].mean()),
        "recon_ll_label": float(out["recon_ll_label"].mean()),
        "joint_nll": float(out["nll"].mean()),
        "nll_samples": n_samples,
        "w2_modalities": float(out["w2"].mean()),
        "active_dims_image": int(np.sum(kl_image > ACTIVE_KL)),
        "latent_dims": int(kl_image.shape[0]),
        "kl_image": float(out["kl_image_total"].mean()),
        "kl_image_per_dim": kl_image.tolist(),
        "kl_label_per_dim": out["kl_label"].mean(axis=0).tolist(),
        "kl_joint_per_dim": out["kl_joint"].mean(axis=0).tolist(),
        "train_seconds": result.seconds,
        "train_steps": result.steps,
    }
    figure = {}
    if figure_indices is not None:
        idx = np.asarray(figure_indices)
        figure = {"input": x_eval[idx], "labels": y[idx]}
        for cond in m.CONDITIONS:
            figure[cond] = out["image_" + cond][idx]
            figure[cond + "_label"] = out["label_" + cond][idx]
    return metrics, figure


def figure_examples(y: np.ndarray, *, rows: int, columns: int) -> np.ndarray:
    """Test indices for a ``rows x columns`` grid: column ``j`` holds digits of class ``j % 10``."""
    picks = np.zeros((rows, columns), np.int64)
    for j in range(columns):
        idx = np.flatnonzero(y == j % N_CLASSES)
        offset = (j // N_CLASSES) * rows
        picks[:, j] = idx[(offset + np.arange(rows)) % len(idx)]
    return picks.reshape(-1)
