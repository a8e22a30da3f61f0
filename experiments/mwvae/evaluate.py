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
    def __init__(self, pixels: int, hidden: int, *, rngs: nnx.Rngs):
        self.net = m.MLP([pixels, hidden, hidden, N_CLASSES], rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.net(x)


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
    """An MLP classifier of the real training images; ``(model, test accuracy)``.

    Adam (learning rate 1e-3) on batches of 128, trained by :func:`experiments.framework.train`
    in ``run_dir`` (checkpoints and metrics; a rerun restores it).
    """
    model = Classifier(data.x_train.shape[1], hidden, rngs=nnx.Rngs(seed + 1))
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


def _example_metrics(model: m.MultimodalVAE, x, y, eps_gen, eps_is) -> dict:
    """Everything evaluated on one test example; ``eps_gen: [k]``, ``eps_is: [K, joint]``."""
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

    def log_weight(eps):
        z = m.sample(q, eps)
        zi, zl = split(z)
        ll_image = m.bernoulli_log_likelihood(model.image_decoder(zi), x)
        ll_label = m.categorical_log_likelihood(model.label_decoder(zl), y)
        log_w = ll_image + ll_label + m.log_standard_normal(z) - m.log_density_of_sample(q, eps)
        return log_w, ll_image, ll_label

    log_w, ll_image, ll_label = jax.vmap(log_weight)(eps_is)
    q_image, q_label = inputs["image"][0], inputs["label"][1]
    return out | {
        "nll": -(jax.nn.logsumexp(log_w) - jnp.log(eps_is.shape[0])),
        "recon_ll_image": jnp.mean(ll_image),
        "recon_ll_label": jnp.mean(ll_label),
        "kl_image": m.kl_to_prior(q_image),
        "kl_label": m.kl_to_prior(q_label),
        "kl_joint": m.kl_to_prior(q),
        "kl_image_total": m.kl_total(q_image),
    }


def _chunk_metrics(graphdef, params, x, y, key, n_samples):
    model = nnx.merge(graphdef, params)
    k_gen, k_is = jax.random.split(key)
    b = x.shape[0]
    eps_gen = jax.random.normal(k_gen, (b, model.latent), x.dtype)
    eps_is = jax.random.normal(k_is, (b, n_samples, joint_size(model)), x.dtype)
    return jax.vmap(lambda *a: _example_metrics(model, *a))(x, y, eps_gen, eps_is)


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
) -> tuple[dict, dict]:
    """The table's numbers for one trained model, and the figure data of ``figure_indices``.

    One compiled program per model: the test set is processed in chunks of ``CHUNK`` examples
    (the last one padded). The figure data holds the inputs, the reconstructions (a) both
    observed, (b) image only, (c) label only, and the labels decoded in each case.
    """
    key = jax.random.PRNGKey(seed + 2)
    n = data.x_test.shape[0]
    chunk = min(CHUNK, n)
    parts = []
    for i, start in enumerate(range(0, n, chunk)):
        stop = min(start + chunk, n)
        pad = chunk - (stop - start)
        x = np.pad(data.x_test[start:stop], ((0, pad), (0, 0)))
        y = np.pad(data.y_test[start:stop], (0, pad))
        out = _CHUNK_METRICS[fast_compile](
            result.graphdef, result.params, x, y, jax.random.fold_in(key, i), n_samples
        )
        out = jax.device_get(out)
        parts.append({k: np.asarray(v)[: stop - start] for k, v in out.items()})
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    y = data.y_test
    judged = predict(classifier, out["image_label"])
    kl_image = out["kl_image"].mean(axis=0)
    metrics = {
        "model": result.kind,
        "acc_image_to_label": float(np.mean(out["label_image"] == y)),
        "acc_both_to_label": float(np.mean(out["label_both"] == y)),
        "coherence_label_to_image": float(np.mean(judged == y)),
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
        figure = {"input": data.x_test[idx], "labels": y[idx]}
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
