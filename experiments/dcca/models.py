"""Flax NNX networks and the objectives of Deep CCA, its squared variant and DCCAE.

Every method has one MLP encoder per view, ``f: view 1 -> R^k`` and ``g: view 2 -> R^k``
(``k = 10``); DCCAE adds one MLP decoder per view that reconstructs the view from its own code.
The objectives, on a batch ``(x1, x2)`` of ``b`` pairs:

* ``dcca`` (Andrew et al. 2013): ``alignment.dcca_loss(f(x1), g(x2), k, reg)``, minus the sum of
  the top ``k`` canonical correlations of the batch;
* ``dcca_squared``: ``alignment.dcca_squared_loss``, minus the sum of their squares (cca-zoo);
* ``dccae`` (Wang et al. 2015): ``dcca`` plus ``lambda`` times the squared reconstruction error of
  both views, summed over pixels and averaged over the batch,
  ``lambda / b * sum_i (||x1_i - p(f(x1_i))||^2 + ||x2_i - q(g(x2_i))||^2)``.

As in :mod:`experiments.mwvae`, the model is split once (``nnx.split``) into a static graph
definition and a pure pytree of parameters; the loss merges them inside the jitted step.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

import alignment as al

DEEP_METHODS = ("dcca", "dcca_squared", "dccae")
METHODS = ("cca", *DEEP_METHODS)
METHOD_DESCRIPTIONS = {
    "cca": "linear CCA on the raw pixels (ridge chosen on validation)",
    "dcca": "Deep CCA: minus the sum of the top-k canonical correlations",
    "dcca_squared": "Deep CCA, squared variant: minus the sum of the top-k squared correlations",
    "dccae": "DCCAE: Deep CCA plus lambda times the reconstruction error of both views",
}


class MLP(nnx.Module):
    """``Linear -> relu -> ... -> Linear`` through the given widths (no activation at the end)."""

    def __init__(self, widths: list[int], *, rngs: nnx.Rngs):
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(widths)])

    def __call__(self, x: jax.Array, key: jax.Array | None = None, rate: float = 0.0) -> jax.Array:
        """``key`` and ``rate > 0``: inverted dropout on every hidden layer (training only)."""
        for layer in self.layers[:-1]:
            x = jax.nn.relu(layer(x))
            if key is not None and rate > 0.0:
                key, sub = jax.random.split(key)
                x = jnp.where(jax.random.bernoulli(sub, 1.0 - rate, x.shape), x / (1.0 - rate), 0)
        return self.layers[-1](x)


class TwoViewModel(nnx.Module):
    """Encoders ``f``, ``g`` to ``k`` outputs, and (``decoders=True``) decoders back to pixels."""

    def __init__(
        self,
        *,
        d1: int,
        d2: int,
        hidden: tuple[int, ...],
        k: int,
        decoders: bool,
        rngs: nnx.Rngs,
    ):
        self.f = MLP([d1, *hidden, k], rngs=rngs)
        self.g = MLP([d2, *hidden, k], rngs=rngs)
        self.decoders = decoders
        if decoders:
            self.p = MLP([k, *reversed(hidden), d1], rngs=rngs)
            self.q = MLP([k, *reversed(hidden), d2], rngs=rngs)

    def __call__(
        self, x1: jax.Array, x2: jax.Array, key: jax.Array | None = None, rate: float = 0.0
    ) -> tuple[jax.Array, jax.Array]:
        k1, k2 = (None, None) if key is None else jax.random.split(key)
        return self.f(x1, k1, rate), self.g(x2, k2, rate)


def init_model(method: str, *, d1: int, d2: int, hidden, k: int, seed: int):
    """``(graphdef, params)`` of a fresh model for ``method`` (one of :data:`DEEP_METHODS`)."""
    if method not in DEEP_METHODS:
        raise ValueError(f"unknown deep method {method!r}; expected one of {DEEP_METHODS}.")
    model = TwoViewModel(
        d1=d1,
        d2=d2,
        hidden=tuple(hidden),
        k=k,
        decoders=method == "dccae",
        rngs=nnx.Rngs(seed),
    )
    return nnx.split(model, nnx.Param)


def make_loss_fn(
    method: str, graphdef, *, k: int, reg: float, ae_weight: float, dropout: float = 0.0
) -> Callable:
    """``loss_fn(params, batch, rng) -> (loss, aux)`` for the framework's ``train``.

    ``batch`` is ``{"x1": [b, d1], "x2": [b, d2]}``. ``aux`` holds minus the correlation objective
    (``corr``: the sum of the top ``k`` canonical correlations of the batch with the ridge
    ``reg``, or of their squares for ``dcca_squared``) and, for DCCAE, the reconstruction error
    (``recon``).
    """
    corr_fn = al.dcca_squared_loss if method == "dcca_squared" else al.dcca_loss

    def loss_fn(params, batch, rng):
        model = nnx.merge(graphdef, params)
        z1, z2 = model(batch["x1"], batch["x2"], rng, dropout)
        objective = corr_fn(z1, z2, k=k, reg=reg)
        aux = {"corr": -objective}
        loss = objective
        if method == "dccae":
            r1 = jnp.mean(jnp.sum((model.p(z1) - batch["x1"]) ** 2, axis=-1))
            r2 = jnp.mean(jnp.sum((model.q(z2) - batch["x2"]) ** 2, axis=-1))
            aux["recon"] = r1 + r2
            loss = loss + ae_weight * (r1 + r2)
        return loss, aux

    return loss_fn


def make_encode_fn(graphdef) -> Callable:
    """``encode(params, x1, x2) -> (f(x1), g(x2))``, jitted."""

    @jax.jit
    def encode(params, x1, x2):
        return nnx.merge(graphdef, params)(x1, x2)

    return encode
