"""Gaussian algebra, the Flax NNX networks and the per-example objectives of the five models.

Every function of one example is written for one example (``x: [p]`` pixels in ``[0, 1]``,
``y: []`` an integer label) and batched with ``jax.vmap`` by the caller. All W2 values come
from :mod:`alignment`: :func:`alignment.gaussian_w2_diag` (with **variances**) for diagonal
posteriors and :func:`alignment.gaussian_w2_scale` (with the Cholesky factors the encoder
outputs) for full covariances.

Models (``kind``):

* ``poe``: the encoders output Gaussian experts; ``q(z | x, y)`` is the precision-weighted product
  of the prior ``N(0, I)`` and the experts present (Wu & Goodman 2018). Trained with the joint ELBO
  plus the two unimodal ELBOs (each reconstructs its own modality).
* ``factorized``: the encoders output posteriors ``q(z | x)`` and ``q(z | y)``; each modality's
  ELBO reconstructs that modality. Nothing couples the two posteriors.
* ``wvae``: ``factorized`` plus ``lambda * W2^2(q(z | x), q(z | y))``, averaged per example like
  the ELBO. ``wvae_full``: the same with full covariances.
* ``kl_coupled``: ``factorized`` plus ``lambda`` times the symmetric KL divergence
  ``(KL(q(z | x) || q(z | y)) + KL(q(z | y) || q(z | x))) / 2``: the same architecture coupled
  by a KL term instead of W2^2 (in the spirit of JMVAE-kl, Suzuki et al. 2016, which has a joint
  encoder this architecture lacks), to test whether W2 or any posterior-matching term matters.
* ``mmvae``: a mixture of experts, ``q(z | x, y) = (q(z | x) + q(z | y)) / 2`` (Shi et al. 2019),
  trained with the stratified ELBO: one sample from each expert, each decoded into both
  modalities, weighted by ``p(z) / q_mix(z)``.
* ``mopoe``: a mixture of products of experts (Sutter et al. 2021): one posterior per non-empty
  subset of the modalities, the product of the prior and the subset's experts; ``q(z | x, y)``
  is their uniform mixture. Trained with one sample from every subset's posterior, each decoded
  into both modalities, and the mean of the subsets' KL terms (the authors' bound on the KL of
  the mixture).
* ``wvae_shared``: each posterior is split into a shared part (the first ``shared`` coordinates)
  and a private part; the W2 term acts on the shared parts only. When a modality is missing, its
  private part is drawn from the prior, and the objective trains exactly that: besides its own
  ELBO, each modality is reconstructed from the other's shared part and a private part drawn
  from the prior. Without these cross terms the image decoder reads the class from the image's
  private part and generation from the label alone is at chance (label -> image coherence 0.12 in
  a run without them, and also 0.12 with the cross terms of Lee & Pavlovic's DMVAE, 2021, which
  take the private part from the modality's own encoder).

Every model's KL term carries a weight ``kl_weight`` (``beta``), annealed from 0 to 1 by the
training loop when the configuration asks for it (Wu & Goodman's recipe for the MVAE).

With both modalities observed, ``mmvae`` and ``mopoe`` infer ``z`` from their mixture (samples;
its moment-matched Gaussian where one Gaussian is needed, e.g. the posterior mean), ``poe`` from
the product of experts, and ``factorized``, ``kl_coupled`` and the W2 models ``z`` from the W2
barycentre (midpoint of the displacement interpolation) of the two posteriors: for diagonal
Gaussians ``N((m1 + m2) / 2, ((s1 + s2) / 2)^2)``; with full covariances the scale
``(L1 + L2 U V^T) / 2`` where ``U S V^T = svd(L2^T L1)`` (``L2 U V^T = T L1`` for the optimal map
``T`` from the first Gaussian to the second).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

import alignment as al
from experiments.mwvae.data import N_CLASSES

LOG_2PI = math.log(2.0 * math.pi)


# ------------------------------------------------------------------------------------------
# Gaussians (one example each).
# ------------------------------------------------------------------------------------------


class DiagGaussian(NamedTuple):
    """``N(mean, diag(var))``; ``mean``, ``var``: ``[k]``."""

    mean: jax.Array
    var: jax.Array


class FullGaussian(NamedTuple):
    """``N(mean, scale @ scale.T)``; ``mean``: ``[k]``, ``scale``: ``[k, k]`` (invertible).

    ``log_det`` is ``log |det scale|`` (half the log-determinant of the covariance), computed by
    whoever builds the Gaussian: free for the encoder's triangular factor, one LU for the
    barycentre. Keeping it out of the consumers keeps each compiled program to one chain of
    LAPACK calls: two independent batched LAPACK calls in one program can deadlock jaxlib's
    CPU thread pool (see `alignment._src.gaussian`; observed here with jaxlib 0.10 on two cores).
    """

    mean: jax.Array
    scale: jax.Array
    log_det: jax.Array


Gaussian = DiagGaussian | FullGaussian


class Mixture(NamedTuple):
    """The uniform mixture of diagonal Gaussians ``components`` (each ``[k]``)."""

    components: tuple[DiagGaussian, ...]


def moment_match(q: Gaussian | Mixture) -> Gaussian:
    """The Gaussian with the mean and (diagonal) variance of ``q``; ``q`` itself if Gaussian."""
    if not isinstance(q, Mixture):
        return q
    means = jnp.stack([c.mean for c in q.components])
    second = jnp.stack([c.var + c.mean**2 for c in q.components])
    mean = jnp.mean(means, axis=0)
    return DiagGaussian(mean, jnp.mean(second, axis=0) - mean**2)


def log_density(g: DiagGaussian, z: jax.Array) -> jax.Array:
    """``log N(z; mean, diag(var))``, ``[]``."""
    return -0.5 * jnp.sum((z - g.mean) ** 2 / g.var + jnp.log(g.var) + LOG_2PI)


def log_mixture_density(q: Mixture, z: jax.Array) -> jax.Array:
    """``log (1/C) sum_c N(z; component c)``, ``[]``."""
    logs = jnp.stack([log_density(c, z) for c in q.components])
    return jax.nn.logsumexp(logs) - jnp.log(len(q.components))


def kl_diag(g1: DiagGaussian, g2: DiagGaussian) -> jax.Array:
    """``KL(g1 || g2)`` between diagonal Gaussians, ``[]``."""
    return 0.5 * jnp.sum(
        g1.var / g2.var + (g1.mean - g2.mean) ** 2 / g2.var - 1.0 + jnp.log(g2.var / g1.var)
    )


def standard_normal(k: int, dtype=jnp.float32) -> DiagGaussian:
    return DiagGaussian(jnp.zeros(k, dtype), jnp.ones(k, dtype))


def product_of_experts(means: jax.Array, variances: jax.Array) -> DiagGaussian:
    """The normalised product of diagonal Gaussian experts ``[e, k]`` (precision-weighted).

    ``var = 1 / sum_e (1 / var_e)``, ``mean = var * sum_e (mean_e / var_e)``.
    """
    precision = 1.0 / variances
    var = 1.0 / jnp.sum(precision, axis=0)
    return DiagGaussian(var * jnp.sum(means * precision, axis=0), var)


def barycenter(g1: Gaussian, g2: Gaussian) -> Gaussian:
    """The W2 barycentre with equal weights (midpoint of McCann's interpolation)."""
    mean = 0.5 * (g1.mean + g2.mean)
    if isinstance(g1, DiagGaussian):
        return DiagGaussian(mean, (0.5 * (jnp.sqrt(g1.var) + jnp.sqrt(g2.var))) ** 2)
    # the inputs pass an optimisation barrier so that this SVD waits for any LAPACK call that
    # produced them (see FullGaussian)
    s1, s2 = lax.optimization_barrier((g1.scale, g2.scale))
    u, _, vt = jnp.linalg.svd(s2.T @ s1, full_matrices=False)
    scale = 0.5 * (s1 + s2 @ u @ vt)
    return FullGaussian(mean, scale, jnp.linalg.slogdet(scale)[1])


def concat(*parts: DiagGaussian) -> DiagGaussian:
    """The product distribution of independent diagonal Gaussians, as one ``DiagGaussian``."""
    return DiagGaussian(
        jnp.concatenate([p.mean for p in parts]), jnp.concatenate([p.var for p in parts])
    )


def take(g: DiagGaussian, start: int, stop: int) -> DiagGaussian:
    """The marginal of coordinates ``start:stop``."""
    return DiagGaussian(g.mean[start:stop], g.var[start:stop])


def sample(g: Gaussian, eps: jax.Array) -> jax.Array:
    """``mean + scale @ eps`` for standard normal noise ``eps: [k]`` (the reparameterisation).

    The noise is drawn by the caller for the whole batch at once: one random-bits computation
    per step instead of one per example keeps the compiled program small.
    """
    if isinstance(g, DiagGaussian):
        return g.mean + jnp.sqrt(g.var) * eps
    return g.mean + g.scale @ eps


def log_density_of_sample(g: Gaussian, eps: jax.Array) -> jax.Array:
    """``log q(z)`` at ``z = sample(g, eps)``, ``[]`` (no linear solve needed)."""
    k = eps.shape[-1]
    if isinstance(g, DiagGaussian):
        return -0.5 * jnp.sum(eps**2 + jnp.log(g.var) + LOG_2PI)
    return -0.5 * jnp.sum(eps**2) - g.log_det - 0.5 * k * LOG_2PI


def log_standard_normal(z: jax.Array) -> jax.Array:
    """``log N(z; 0, I)``, ``[]``."""
    return -0.5 * jnp.sum(z**2 + LOG_2PI)


def kl_to_prior(g: Gaussian) -> jax.Array:
    """``KL(g || N(0, I))`` per coordinate ``[k]`` (of the marginals, for a full covariance).

    For a full covariance, the per-coordinate values are those of the marginals
    ``N(m_i, S_ii)``; their sum is the KL of the product of the marginals, not of ``g`` (use
    :func:`kl_total`).
    """
    var = g.var if isinstance(g, DiagGaussian) else jnp.sum(g.scale**2, axis=1)
    return 0.5 * (var + g.mean**2 - 1.0 - jnp.log(var))


def kl_total(g: Gaussian) -> jax.Array:
    """``KL(g || N(0, I))``, ``[]``."""
    if isinstance(g, DiagGaussian):
        return jnp.sum(kl_to_prior(g))
    k = g.mean.shape[-1]
    return (
        0.5 * (jnp.sum(g.scale**2) + jnp.sum(g.mean**2) - k) - g.log_det
    )  # log_det = 1/2 log det S


def w2_squared(g1: Gaussian, g2: Gaussian) -> jax.Array:
    """``W2^2`` between two posteriors of one example, from :mod:`alignment`."""
    if isinstance(g1, DiagGaussian):
        return al.gaussian_w2_diag(g1.mean, g1.var, g2.mean, g2.var)
    return al.gaussian_w2_scale(g1.mean, g1.scale, g2.mean, g2.scale)


# ------------------------------------------------------------------------------------------
# Likelihoods.
# ------------------------------------------------------------------------------------------


def bernoulli_log_likelihood(logits: jax.Array, x: jax.Array) -> jax.Array:
    """``sum_p x log sigmoid(l) + (1 - x) log sigmoid(-l)``, ``[]`` (targets in ``[0, 1]``)."""
    return jnp.sum(x * jax.nn.log_sigmoid(logits) + (1.0 - x) * jax.nn.log_sigmoid(-logits))


def categorical_log_likelihood(logits: jax.Array, y: jax.Array) -> jax.Array:
    """``log softmax(logits)[y]``, ``[]``."""
    return jax.nn.log_softmax(logits)[y]


# ------------------------------------------------------------------------------------------
# Networks (Flax NNX).
# ------------------------------------------------------------------------------------------


class MLP(nnx.Module):
    """``Linear -> relu -> ... -> Linear`` through the given widths."""

    def __init__(self, widths: list[int], *, rngs: nnx.Rngs):
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(widths)])

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers[:-1]:
            x = jax.nn.relu(layer(x))
        return self.layers[-1](x)


class Encoder(nnx.Module):
    """An MLP body and a Gaussian head: ``(mean, log-variance)`` or ``(mean, Cholesky factor)``.

    The full head outputs the ``k (k - 1) / 2`` entries below the diagonal and the log of the
    diagonal of ``L`` (positive diagonal: ``L L^T`` is positive definite).
    """

    def __init__(self, widths: list[int], latent: int, *, full: bool, rngs: nnx.Rngs):
        self.body = MLP(widths, rngs=rngs)
        self.latent = latent
        self.full = full
        extra = latent * (latent - 1) // 2 if full else 0
        self.head = nnx.Linear(widths[-1], 2 * latent + extra, rngs=rngs)

    def __call__(self, x: jax.Array) -> Gaussian:
        h = self.head(jax.nn.relu(self.body(x)))
        k = self.latent
        mean, log_diag = h[:k], h[k : 2 * k]
        if not self.full:
            return DiagGaussian(mean, jnp.exp(log_diag))  # log_diag is the log-variance
        # below the diagonal: a gather from the head's outputs (a scatter is 4x slower on CPU)
        rows, cols = np.tril_indices(k, -1)
        index = np.full((k, k), len(rows))
        index[rows, cols] = np.arange(len(rows))
        scale = jnp.concatenate([h[2 * k :], jnp.zeros(1, h.dtype)])[index]
        return FullGaussian(mean, scale + jnp.diag(jnp.exp(log_diag)), jnp.sum(log_diag))


class MultimodalVAE(nnx.Module):
    """Image and label encoders and decoders for one ``kind`` of model (see the module doc)."""

    def __init__(
        self,
        kind: str,
        *,
        pixels: int,
        latent: int,
        shared: int,
        hidden: int,
        label_hidden: int,
        rngs: nnx.Rngs,
    ):
        self.kind = kind
        self.latent = latent
        self.shared = shared
        full = kind == "wvae_full"
        self.image_encoder = Encoder([pixels, hidden, hidden], latent, full=full, rngs=rngs)
        self.label_encoder = Encoder([N_CLASSES, label_hidden], latent, full=full, rngs=rngs)
        self.image_decoder = MLP([latent, hidden, hidden, pixels], rngs=rngs)
        self.label_decoder = MLP([latent, label_hidden, N_CLASSES], rngs=rngs)

    def encode(self, x: jax.Array, y: jax.Array) -> tuple[Gaussian, Gaussian]:
        """The two encoders' outputs (experts for ``poe``, posteriors otherwise)."""
        return self.image_encoder(x), self.label_encoder(jax.nn.one_hot(y, N_CLASSES))


# ------------------------------------------------------------------------------------------
# Inference: which Gaussian feeds each decoder, given what is observed.
# ------------------------------------------------------------------------------------------

CONDITIONS = ("both", "image", "label")


def unimodal_posteriors(
    model: MultimodalVAE, e1: Gaussian, e2: Gaussian
) -> tuple[Gaussian, Gaussian]:
    """``q(z | x)`` and ``q(z | y)`` from the encoders' outputs ``e1, e2 = model.encode(x, y)``."""
    if model.kind in ("poe", "mopoe"):
        prior = standard_normal(model.latent, e1.mean.dtype)
        return _poe(prior, e1), _poe(prior, e2)
    return e1, e2


def _poe(*experts: DiagGaussian) -> DiagGaussian:
    return product_of_experts(
        jnp.stack([g.mean for g in experts]), jnp.stack([g.var for g in experts])
    )


def joint_posterior(model: MultimodalVAE, e1: Gaussian, e2: Gaussian) -> Gaussian | Mixture:
    """``q(z | x, y)`` over the decoders' ``[k]`` input (its shared part for ``wvae_shared``).

    The product of experts for ``poe``; the mixture of the two experts for ``mmvae``; the
    mixture of the subset posteriors ``{x}``, ``{y}``, ``{x, y}`` for ``mopoe``; the W2
    barycentre of the two posteriors otherwise. Compute it once per example and pass it on (it
    holds an SVD for full covariances).
    """
    if model.kind == "poe":
        return _poe(standard_normal(model.latent, e1.mean.dtype), e1, e2)
    if model.kind == "mmvae":
        return Mixture((e1, e2))
    if model.kind == "mopoe":
        prior = standard_normal(model.latent, e1.mean.dtype)
        return Mixture((_poe(prior, e1), _poe(prior, e2), _poe(prior, e1, e2)))
    if model.kind == "wvae_shared":
        s = model.shared
        return barycenter(take(e1, 0, s), take(e2, 0, s))
    return barycenter(e1, e2)


def decoder_inputs(
    model: MultimodalVAE,
    e1: Gaussian,
    e2: Gaussian,
    condition: str,
    joint: Gaussian | None = None,
) -> tuple[Gaussian, Gaussian]:
    """The distributions of the image decoder's and the label decoder's inputs, each ``[k]``.

    ``e1, e2 = model.encode(x, y)``; ``condition`` says what is observed: ``"both"``,
    ``"image"`` or ``"label"`` (the other encoder's output is then ignored); ``joint`` is
    :func:`joint_posterior` (computed here if not given and needed; a mixture is replaced by
    its moment-matched Gaussian). For every model but
    ``wvae_shared`` both are the one posterior ``q(z | observed)``. For ``wvae_shared`` they share
    the shared coordinates; a missing modality's private part is the prior's.
    """
    if condition not in CONDITIONS:
        raise ValueError(f"`condition` must be one of {CONDITIONS}, got {condition!r}.")
    if condition == "both" and joint is None:
        joint = joint_posterior(model, e1, e2)
    if model.kind != "wvae_shared":
        if condition == "both":
            joint = moment_match(joint)
            return joint, joint
        q1, q2 = unimodal_posteriors(model, e1, e2)
        q = q1 if condition == "image" else q2
        return q, q
    k, s = model.latent, model.shared
    prior = standard_normal(k - s, e1.mean.dtype)
    shared = {"both": joint, "image": take(e1, 0, s), "label": take(e2, 0, s)}[condition]
    private1 = take(e1, s, k) if condition in ("both", "image") else prior
    private2 = take(e2, s, k) if condition in ("both", "label") else prior
    return concat(shared, private1), concat(shared, private2)


def joint_proposal(
    model: MultimodalVAE, e1: Gaussian, e2: Gaussian, joint: Gaussian | Mixture
) -> tuple[Gaussian | Mixture, Callable[[jax.Array], tuple[jax.Array, jax.Array]]]:
    """``q(z | x, y)`` over the model's whole latent, and ``z -> (image input, label input)``.

    ``joint`` is :func:`joint_posterior` (a :class:`Mixture` for ``mmvae`` and ``mopoe``).
    The latent is ``[k]`` except for ``wvae_shared``,
    whose latent is ``[shared, private image, private label]`` (``shared + 2 * (k - shared)``
    coordinates); the prior is ``N(0, I)`` over all of it.
    """
    if model.kind != "wvae_shared":
        return joint, lambda z: (z, z)
    k, s = model.latent, model.shared
    q = concat(joint, take(e1, s, k), take(e2, s, k))
    p = k - s
    split = lambda z: (z[:k], jnp.concatenate([z[:s], z[k : k + p]]))
    return q, split


# ------------------------------------------------------------------------------------------
# Objectives (one example).
# ------------------------------------------------------------------------------------------


def example_loss(
    model: MultimodalVAE,
    x: jax.Array,
    y: jax.Array,
    eps: jax.Array,
    *,
    w2_weight: jax.Array,
    label_weight: jax.Array,
    kl_weight: jax.Array = 1.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The training loss of one example (a negative, label-weighted ELBO plus the coupling).

    ``eps: [3, k]`` is standard normal noise for the reparameterised samples; ``w2_weight`` is
    the coupling weight ``lambda`` (of W2^2, or of the symmetric KL for ``kl_coupled``);
    ``kl_weight`` multiplies the KL terms (``beta``, annealed by the caller; 1 is the ELBO).

    Returns ``(loss, metrics)`` with the image and label log-likelihood terms, the KL terms
    (for ``mmvae`` the sample estimate ``log q_mix(z) - log p(z)``) and ``w2`` = ``W2^2``
    between the two unimodal posteriors (reported for every model; in the loss only for the W2
    models, times ``w2_weight``).
    """
    image_ll = lambda z: bernoulli_log_likelihood(model.image_decoder(z), x)
    label_ll = lambda z: categorical_log_likelihood(model.label_decoder(z), y)
    e1, e2 = model.encode(x, y)
    q1, q2 = unimodal_posteriors(model, e1, e2)
    w2 = w2_squared(q1, q2) if model.kind != "wvae_shared" else None
    coupling = None
    if model.kind == "poe":
        qj = joint_posterior(model, e1, e2)
        zj, z1, z2 = sample(qj, eps[0]), sample(q1, eps[1]), sample(q2, eps[2])
        rec_image = image_ll(zj) + image_ll(z1)
        rec_label = label_ll(zj) + label_ll(z2)
        kl = kl_total(qj) + kl_total(q1) + kl_total(q2)
    elif model.kind in ("mmvae", "mopoe"):
        # stratified: one sample from every component, each decoded into both modalities
        mix = joint_posterior(model, e1, e2)
        zs = [sample(c, eps[i]) for i, c in enumerate(mix.components)]
        rec_image = jnp.mean(jnp.stack([image_ll(z) for z in zs]))
        rec_label = jnp.mean(jnp.stack([label_ll(z) for z in zs]))
        if model.kind == "mmvae":
            log_ratio = [log_mixture_density(mix, z) - log_standard_normal(z) for z in zs]
            kl = jnp.mean(jnp.stack(log_ratio))
        else:
            kl = jnp.mean(jnp.stack([kl_total(c) for c in mix.components]))
    else:
        z1, z2 = sample(q1, eps[0]), sample(q2, eps[1])
        rec_image, rec_label = image_ll(z1), label_ll(z2)
        kl = kl_total(q1) + kl_total(q2)
        if model.kind == "wvae_shared":
            s = model.shared
            w2 = w2_squared(take(q1, 0, s), take(q2, 0, s))
            # cross terms, as used when a modality is missing: each modality also decoded from
            # the other's shared part and a private part drawn from the prior, so that the
            # decoders must read the class from the shared part
            private = eps[2, s:]
            rec_image = rec_image + image_ll(jnp.concatenate([z2[:s], private]))
            rec_label = rec_label + label_ll(jnp.concatenate([z1[:s], private]))
        if model.kind == "kl_coupled":
            coupling = 0.5 * (kl_diag(q1, q2) + kl_diag(q2, q1))
        elif model.kind != "factorized":
            coupling = w2
    loss = -(rec_image + label_weight * rec_label) + kl_weight * kl
    if coupling is not None:
        loss = loss + w2_weight * coupling
    return loss, {"loss": loss, "rec_image": rec_image, "rec_label": rec_label, "kl": kl, "w2": w2}


def batch_loss(model, x, y, key, *, w2_weight, label_weight, kl_weight=None):
    """Mean of :func:`example_loss` over a batch ``x: [b, p]``, ``y: [b]``; metrics averaged.

    ``kl_weight``: ``[b]`` (one value per example, as the batch carries it) or None for 1.
    """
    eps = jax.random.normal(key, (x.shape[0], 3, model.latent), x.dtype)
    beta = jnp.ones(x.shape[0], x.dtype) if kl_weight is None else kl_weight
    fn = lambda x, y, e, b: example_loss(
        model, x, y, e, w2_weight=w2_weight, label_weight=label_weight, kl_weight=b
    )
    losses, metrics = jax.vmap(fn)(x, y, eps, beta)
    return jnp.mean(losses), jax.tree.map(jnp.mean, metrics)


def make_loss_fn(graphdef, *, w2_weight: float, label_weight: float) -> Callable:
    """``loss_fn(params, batch, rng) -> (loss, metrics)`` for :func:`experiments.framework.train`.

    ``params`` is the pure dict of ``nnx.split(model, nnx.Param)``, merged with ``graphdef``
    inside the step; ``batch`` is ``{"x": [b, p], "y": [b]}`` and optionally ``"beta": [b]``,
    the KL weight of the step (see :func:`annealed_batch_fn`); ``rng`` the step's key (the
    noise of the reparameterised samples). ``metrics`` are the batch means of
    :func:`example_loss`'s terms (``rec_image``, ``rec_label``, ``kl``, ``w2``).
    """
    hyper = {
        "w2_weight": jnp.asarray(w2_weight, jnp.float32),
        "label_weight": jnp.asarray(label_weight, jnp.float32),
    }

    def loss_fn(params, batch, rng):
        model = nnx.merge(graphdef, params)
        loss, metrics = batch_loss(
            model, batch["x"], batch["y"], rng, kl_weight=batch.get("beta"), **hyper
        )
        return loss, {k: v for k, v in metrics.items() if k != "loss"}

    return loss_fn


def kl_weight_at(step: int, anneal_steps: int) -> float:
    """``beta`` at ``step``: ``min(1, (step + 1) / anneal_steps)``, 1 when ``anneal_steps`` is 0."""
    if anneal_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / anneal_steps)


def annealed_batch_fn(batch_fn: Callable, anneal_steps: int) -> Callable:
    """``batch_fn`` whose batches also carry ``"beta": [b]``, the KL weight of the step.

    The weight travels with the batch (one value per example, so that it shards with it) and
    depends only on the step: a resumed run anneals exactly as an uninterrupted one.
    """

    def fn(step: int) -> dict:
        batch = batch_fn(step)
        beta = kl_weight_at(int(step), anneal_steps)
        return batch | {"beta": np.full(batch["y"].shape[0], beta, np.float32)}

    return fn
