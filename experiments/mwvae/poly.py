"""More than two modalities: the W-VAE coupled through a W2 barycenter, and its baselines.

M image modalities (``experiments.mwvae.polymnist``), one Gaussian encoder and one Bernoulli
decoder per modality, latent ``[k]``. Models (``kind``, ``POLY_MODELS``):

* ``wvae_bary``: every modality's ELBO (each reconstructs itself from its own posterior) plus
  ``lambda * sum_m W2^2(q_m, q_bar)``, ``q_bar`` the W2 barycenter of the M posteriors
  (:func:`alignment.gaussian_w2_barycenter_diag`): M terms.
* ``wvae_pairwise``: the same ELBOs plus ``lambda / M * sum_{m < n} W2^2(q_m, q_n)``, the
  ``M (M - 1) / 2`` pairwise terms of the talk. For diagonal Gaussians W2 is the Euclidean
  distance between ``(mean, std)`` vectors and the barycenter is their average, so
  ``sum_{m<n} W2^2(q_m, q_n) = M sum_m W2^2(q_m, q_bar)``: the two objectives are equal (the
  ``1 / M`` makes them so) and differ only in cost, which is what the experiment measures.
* ``poe``: the product of the prior and the experts present (Wu & Goodman 2018), trained on the
  joint ELBO plus the unimodal ELBOs.
* ``mmvae``: the uniform mixture of the experts present (Shi et al. 2019), stratified ELBO: one
  sample from each expert, decoded into every modality, weighted by ``p(z) / q_mix(z)``.
* ``mopoe``: the mixture, over the non-empty subsets of the modalities present, of the products
  of the prior and the subset's experts (Sutter et al. 2021). Trained as its authors do: one
  subset drawn per example, its sample decoded into every modality, plus the mean of the KL terms
  of all ``2^M - 1`` subset posteriors.

Inference from a subset ``S`` of observed modalities (:func:`subset_posterior`): the barycenter
of ``S``'s posteriors for the W-VAEs, the product of experts for ``poe``, the mixtures above for
``mmvae`` and ``mopoe``.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import alignment as al
from experiments.mwvae import models as m

POLY_MODELS = ("wvae_bary", "wvae_pairwise", "poe", "mmvae", "mopoe")


class ConvEncoder(nnx.Module):
    """``[h * w * c]`` pixels to ``N(mean, diag(var))``: two 4x4 convolutions of stride 2
    (``channels``, relu) and a linear Gaussian head. ``h`` and ``w`` divisible by 4."""

    def __init__(self, image_shape, latent: int, *, channels=(16, 32), rngs: nnx.Rngs):
        h, w, c = image_shape
        self.image_shape, self.latent = tuple(image_shape), latent
        self.conv1 = nnx.Conv(c, channels[0], (4, 4), strides=2, rngs=rngs)
        self.conv2 = nnx.Conv(channels[0], channels[1], (4, 4), strides=2, rngs=rngs)
        self.head = nnx.Linear(channels[1] * (h // 4) * (w // 4), 2 * latent, rngs=rngs)

    def __call__(self, x: jax.Array) -> m.DiagGaussian:
        h = jax.nn.relu(self.conv1(x.reshape(self.image_shape)))
        out = self.head(jax.nn.relu(self.conv2(h)).reshape(-1))
        return m.DiagGaussian(out[: self.latent], jnp.exp(out[self.latent :]))


class ConvDecoder(nnx.Module):
    """``[k]`` to ``[h * w * c]`` logits: a linear layer to ``h/4 x w/4 x channels[1]`` and two
    4x4 transposed convolutions of stride 2 (the mirror of :class:`ConvEncoder`)."""

    def __init__(self, image_shape, latent: int, *, channels=(16, 32), rngs: nnx.Rngs):
        h, w, c = image_shape
        self.base = (h // 4, w // 4, channels[1])
        self.linear = nnx.Linear(latent, math.prod(self.base), rngs=rngs)
        self.deconv1 = nnx.ConvTranspose(channels[1], channels[0], (4, 4), strides=2, rngs=rngs)
        self.deconv2 = nnx.ConvTranspose(channels[0], c, (4, 4), strides=2, rngs=rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        h = jax.nn.relu(self.linear(z)).reshape(self.base)
        return self.deconv2(jax.nn.relu(self.deconv1(h))).reshape(-1)


class PolyVAE(nnx.Module):
    """M encoders ``[pixels] -> N(mean, diag(var))`` and M decoders ``[k] -> [pixels]`` logits.

    With ``image_shape=(h, w, c)`` (``h``, ``w`` divisible by 4) they are small CNNs
    (:class:`ConvEncoder`, :class:`ConvDecoder`, as the MoPoE paper's PolyMNIST networks, with
    fewer channels); without it, MLPs with two hidden layers of ``hidden`` units.
    """

    def __init__(self, kind: str, *, modalities: int, pixels: int, latent: int, hidden: int,
                 rngs: nnx.Rngs, image_shape: tuple[int, int, int] | None = None):  # fmt: skip
        if kind not in POLY_MODELS:
            raise ValueError(f"unknown model {kind!r}; expected one of {POLY_MODELS}.")
        self.kind = kind
        self.modalities = modalities
        self.latent = latent
        if image_shape is not None:
            h, w, c = image_shape
            if h * w * c != pixels or h % 4 or w % 4:
                raise ValueError(
                    f"`image_shape` {image_shape} must have h and w divisible by 4 and "
                    f"h * w * c == pixels ({pixels})."
                )
            self.encoders = nnx.List(
                [ConvEncoder(image_shape, latent, rngs=rngs) for _ in range(modalities)]
            )
            self.decoders = nnx.List(
                [ConvDecoder(image_shape, latent, rngs=rngs) for _ in range(modalities)]
            )
            return
        widths = [pixels, hidden, hidden]
        self.encoders = nnx.List(
            [m.Encoder(widths, latent, full=False, rngs=rngs) for _ in range(modalities)]
        )
        self.decoders = nnx.List(
            [m.MLP([latent, hidden, hidden, pixels], rngs=rngs) for _ in range(modalities)]
        )

    def encode(self, xs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``xs: [M, pixels]`` to the experts' means and variances, each ``[M, k]``."""
        outs = [enc(x) for enc, x in zip(self.encoders, xs, strict=True)]
        return jnp.stack([g.mean for g in outs]), jnp.stack([g.var for g in outs])

    def log_likelihood(self, i: int, z: jax.Array, x: jax.Array) -> jax.Array:
        """``log p(x_i | z)`` for modality ``i`` alone (one decoder)."""
        return m.bernoulli_log_likelihood(self.decoders[i](z), x)

    def log_likelihoods(self, z: jax.Array, xs: jax.Array) -> jax.Array:
        """``log p(x_m | z)`` for every modality, ``[M]``."""
        return jnp.stack(
            [
                m.bernoulli_log_likelihood(dec(z), x)
                for dec, x in zip(self.decoders, xs, strict=True)
            ]
        )


def subsets(modalities: int) -> list[tuple[int, ...]]:
    """The non-empty subsets of ``range(modalities)``, by size then lexicographically."""
    return [
        s for r in range(1, modalities + 1) for s in itertools.combinations(range(modalities), r)
    ]


def _poe(means, variances, mask):
    """The product of the prior and the experts where ``mask`` (``[M]`` of 0/1) is 1."""
    precision = 1.0 + jnp.sum(mask[:, None] / variances, axis=0)
    var = 1.0 / precision
    return m.DiagGaussian(var * jnp.sum(mask[:, None] * means / variances, axis=0), var)


def _bary(means, variances, mask):
    out = al.gaussian_w2_barycenter_diag(means, variances, weights=mask / jnp.sum(mask))
    return m.DiagGaussian(out.mean, out.variance)


def subset_posterior(kind: str, means, variances, observed: tuple[int, ...]):
    """``q(z | x_S)`` for the observed modalities ``S`` (a Gaussian or a :class:`Mixture`)."""
    n = means.shape[0]
    mask = jnp.zeros(n, means.dtype).at[jnp.asarray(observed)].set(1.0)
    if kind in ("wvae_bary", "wvae_pairwise"):
        return _bary(means, variances, mask)
    if kind == "poe":
        return _poe(means, variances, mask)
    if kind == "mmvae":
        return m.Mixture(tuple(m.DiagGaussian(means[i], variances[i]) for i in observed))
    parts = [s for s in subsets(n) if set(s) <= set(observed)]
    return m.Mixture(
        tuple(_poe(means, variances, jnp.zeros(n, means.dtype).at[jnp.asarray(s)].set(1.0))
              for s in parts)
    )  # fmt: skip


def w2_to_barycenter(means, variances) -> jax.Array:
    """``sum_m W2^2(q_m, q_bar)``, ``[]``."""
    bary = _bary(means, variances, jnp.ones(means.shape[0], means.dtype))
    return jnp.sum(jax.vmap(lambda mu, v: al.gaussian_w2_diag(mu, v, bary.mean, bary.var))(
        means, variances))  # fmt: skip


def w2_pairwise(means, variances) -> jax.Array:
    """``sum_{m < n} W2^2(q_m, q_n)``, ``[]`` (``M (M - 1) / 2`` terms)."""
    n = means.shape[0]
    rows, cols = np.triu_indices(n, 1)
    terms = jax.vmap(al.gaussian_w2_diag)(
        means[rows], variances[rows], means[cols], variances[cols]
    )
    return jnp.sum(terms)


def example_loss(model: PolyVAE, xs, eps, subset_index, *, w2_weight, kl_weight=1.0):
    """The training loss of one example ``xs: [M, pixels]``; ``eps: [max(M, 1) + 1, k]`` noise;
    ``subset_index`` the subset MoPoE samples from. Returns ``(loss, metrics)``."""
    n = model.modalities
    means, variances = model.encode(xs)
    experts = [m.DiagGaussian(means[i], variances[i]) for i in range(n)]
    coupling = jnp.zeros((), xs.dtype)
    if model.kind in ("wvae_bary", "wvae_pairwise"):
        # each modality decoded from its own posterior only (one decoder per sample, not M)
        rec = sum(
            model.log_likelihood(i, m.sample(q, eps[i]), xs[i]) for i, q in enumerate(experts)
        )
        kl = sum(m.kl_total(q) for q in experts)
        coupling = (w2_to_barycenter(means, variances) if model.kind == "wvae_bary"
                    else w2_pairwise(means, variances) / n)  # fmt: skip
    elif model.kind == "poe":
        ones = jnp.ones(n, xs.dtype)
        qj = _poe(means, variances, ones)
        rec = jnp.sum(model.log_likelihoods(m.sample(qj, eps[n]), xs))
        kl = m.kl_total(qj)
        for i in range(n):
            qi = _poe(means, variances, jnp.zeros(n, xs.dtype).at[i].set(1.0))
            rec = rec + model.log_likelihood(i, m.sample(qi, eps[i]), xs[i])
            kl = kl + m.kl_total(qi)
    elif model.kind == "mmvae":
        mix = m.Mixture(tuple(experts))
        zs = [m.sample(q, eps[i]) for i, q in enumerate(experts)]
        rec = jnp.mean(jnp.stack([jnp.sum(model.log_likelihoods(z, xs)) for z in zs]))
        kl = jnp.mean(jnp.stack(
            [m.log_mixture_density(mix, z) - m.log_standard_normal(z) for z in zs]))  # fmt: skip
    else:  # mopoe: one subset per example, every subset's KL
        masks = jnp.asarray(
            [[1.0 if i in s else 0.0 for i in range(n)] for s in subsets(n)], xs.dtype
        )
        posts = jax.vmap(lambda mask: _poe(means, variances, mask))(masks)
        chosen = m.DiagGaussian(posts.mean[subset_index], posts.var[subset_index])
        rec = jnp.sum(model.log_likelihoods(m.sample(chosen, eps[n]), xs))
        kl = jnp.mean(jax.vmap(m.kl_total)(posts))
    loss = -rec + kl_weight * kl + w2_weight * coupling
    return loss, {"loss": loss, "rec": rec, "kl": kl, "coupling": coupling}


def make_loss_fn(graphdef, *, w2_weight: float, kl_weight: float = 1.0):
    """``loss_fn(params, batch, rng)`` for the framework; ``batch = {"x": [b, M, p], "y": [b]}``
    and optionally ``"beta": [b]`` (the annealing factor). The KL terms are weighted by
    ``kl_weight * beta``, the coupling by ``w2_weight``."""
    w2 = jnp.asarray(w2_weight, jnp.float32)

    def loss_fn(params, batch, rng):
        model = nnx.merge(graphdef, params)
        xs = batch["x"]
        b, n = xs.shape[0], model.modalities
        k_eps, k_sub = jax.random.split(rng)
        eps = jax.random.normal(k_eps, (b, n + 1, model.latent), xs.dtype)
        sub = jax.random.randint(k_sub, (b,), 0, 2**n - 1)
        beta = kl_weight * batch.get("beta", jnp.ones(b, xs.dtype))
        fn = lambda x, e, s, bt: example_loss(model, x, e, s, w2_weight=w2, kl_weight=bt)
        losses, metrics = jax.vmap(fn)(xs, eps, sub, beta)
        return jnp.mean(losses), {k: jnp.mean(v) for k, v in metrics.items() if k != "loss"}

    return loss_fn


def n_pairwise_terms(modalities: int) -> int:
    return math.comb(modalities, 2)
