"""The dual encoder (Flax NNX), its parameters, the five training objectives and the optimiser.

Two MLP encoders, ``f: A -> R^k`` (top halves) and ``g: B -> R^k`` (bottom halves), with ReLU
hidden layers (:class:`experiments.dcca.models.MLP`), each followed by L2 normalisation, so that
``za @ zb.T`` holds cosine similarities. The objectives, on a batch of ``b`` pairs
``za, zb: [b, k]`` (row ``i`` of one paired with row ``i`` of the other):

* ``vse``: VSE++ (Faghri et al. 2018), :func:`alignment.vse_loss` with ``hardest=True``: the
  hinge ``[margin - s_ii + s_ij]_+`` on each anchor's hardest negative, both directions.
* ``clip``: CLIP's symmetric InfoNCE (Radford et al. 2021), :func:`alignment.clip_loss`, with a
  learnable ``logit_scale`` (the log inverse temperature) initialised at
  :data:`alignment.CLIP_LOGIT_SCALE_INIT` (temperature 0.07), the scale clamped at
  :data:`alignment.CLIP_MAX_SCALE` in the loss and the parameter clipped to
  ``[0, log CLIP_MAX_SCALE]`` after every step (:func:`clamp_logit_scale`, as CLIP does).
* ``siglip``: SigLIP's pairwise sigmoid loss (Zhai et al. 2023), :func:`alignment.siglip_loss`,
  with learnable ``logit_scale`` (init :data:`alignment.SIGLIP_LOGIT_SCALE_INIT` = log 10) and
  ``logit_bias`` at the paper's :data:`alignment.SIGLIP_LOGIT_BIAS_INIT` = -10.
* ``siglip_prior``: the same with the bias initialised at the prior log-odds of a positive pair,
  ``-log(b - 1)`` (-5.54 for ``b = 256``).
* ``siglip_chunked``: :func:`alignment.chunked_siglip_loss` (bias -10) at a large batch, whose
  ``[b, b]`` logits are never materialised (blocks of ``chunk_size`` columns).

Data parallel (a mesh from ``--devices N``): ``clip``, ``siglip`` and ``siglip_prior`` run inside
``jax.shard_map`` with :func:`alignment.sharded_clip_loss` / :func:`alignment.sharded_siglip_loss`
(every device scores its shard against the whole gathered batch); ``vse`` and
``siglip_chunked``, which have no sharded form in the library, are written for the global batch
and partitioned by ``jax.jit`` (GSPMD). Both give the single-device update (tested).

As in :mod:`experiments.dcca`, the model is split once (``nnx.split``) into a static graph
definition and a pure pytree of parameters; the loss merges them inside the jitted step. The
parameter tree is ``{"encoders": nnx.State, "logit_scale": [], "logit_bias": []}`` (the scalars
only for the losses that learn them).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import alignment as al
from experiments.dcca.models import MLP

LOSSES = ("vse", "clip", "siglip", "siglip_prior", "siglip_chunked")
SHARDED_LOSSES = ("clip", "siglip", "siglip_prior")  # shard_map with the sharded loss forms
LOSS_DESCRIPTIONS = {
    "vse": "VSE++ hinge on the hardest negative (alignment.vse_loss, hardest=True)",
    "clip": "CLIP symmetric InfoNCE, learnable temperature (alignment.clip_loss)",
    "siglip": "SigLIP sigmoid loss, learnable scale and bias init -10 (alignment.siglip_loss)",
    "siglip_prior": "SigLIP with the bias initialised at the prior -log(b - 1)",
    "siglip_chunked": (
        "SigLIP (bias init -10) in column blocks at a large batch (alignment.chunked_siglip_loss)"
    ),
}


def l2_normalise(z: jax.Array) -> jax.Array:
    """Rows of ``z`` ``[b, k]`` scaled to unit norm; a zero row stays zero, gradient finite."""
    sq = jnp.sum(z * z, axis=-1, keepdims=True)
    safe = jnp.where(sq > 0, sq, 1.0)  # double where: no NaN in the gradient at zero
    return jnp.where(sq > 0, z * jax.lax.rsqrt(safe), 0.0)


class DualEncoder(nnx.Module):
    """Encoders ``f: [b, d_a] -> [b, k]`` and ``g: [b, d_b] -> [b, k]``, L2-normalised rows."""

    def __init__(self, *, d_a: int, d_b: int, hidden: tuple[int, ...], k: int, rngs: nnx.Rngs):
        self.f = MLP([d_a, *hidden, k], rngs=rngs)
        self.g = MLP([d_b, *hidden, k], rngs=rngs)

    def __call__(self, a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
        return l2_normalise(self.f(a)), l2_normalise(self.g(b))


def initial_bias(loss: str, batch_size: int) -> float:
    """The initial ``logit_bias`` of a SigLIP variant: -10, or ``-log(b - 1)`` for the prior."""
    if loss == "siglip_prior":
        return -math.log(max(batch_size - 1, 1))
    return al.SIGLIP_LOGIT_BIAS_INIT


def init_params(loss: str, *, d_a: int, d_b: int, hidden, k: int, batch_size: int, seed: int):
    """``(graphdef, params)`` of a fresh dual encoder for ``loss`` (one of :data:`LOSSES`).

    The encoders' initial weights depend on ``seed`` alone (the same for every loss).
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}.")
    model = DualEncoder(d_a=d_a, d_b=d_b, hidden=tuple(hidden), k=k, rngs=nnx.Rngs(seed))
    graphdef, state = nnx.split(model, nnx.Param)
    params = {"encoders": state}
    if loss == "clip":
        params["logit_scale"] = jnp.asarray(al.CLIP_LOGIT_SCALE_INIT, jnp.float32)
    elif loss != "vse":
        params["logit_scale"] = jnp.asarray(al.SIGLIP_LOGIT_SCALE_INIT, jnp.float32)
        params["logit_bias"] = jnp.asarray(initial_bias(loss, batch_size), jnp.float32)
    return graphdef, params


def scale_metrics(loss: str, params) -> dict:
    """``{"scale", "temperature"[, "bias"]}`` of the learnable parameters (``{}`` for vse).

    ``scale`` is the factor the loss applies to the cosine similarities, ``exp(logit_scale)``
    (clamped at :data:`alignment.CLIP_MAX_SCALE` for CLIP), and ``temperature = 1 / scale``.
    """
    if "logit_scale" not in params:
        return {}
    ls = params["logit_scale"]
    if loss == "clip":
        ls = jnp.minimum(ls, math.log(al.CLIP_MAX_SCALE))
    out = {"scale": jnp.exp(ls), "temperature": jnp.exp(-ls)}
    if "logit_bias" in params:
        out["bias"] = params["logit_bias"]
    return out


def contrastive_loss(
    loss: str, za: jax.Array, zb: jax.Array, params, *, margin: float, chunk_size: int, axis_name
) -> jax.Array:
    """The scalar objective ``loss`` on ``za, zb: [b, k]``.

    ``axis_name`` is ``None`` on one device (or under GSPMD, where ``za, zb`` are the global
    batch); otherwise the name of the mesh axis, ``za, zb`` are this device's ``[b / n, k]`` shard,
    and the sharded form returns the loss of the global batch (the losses of
    :data:`SHARDED_LOSSES` only).
    """
    if loss == "vse":
        return al.vse_loss(za, zb, margin=margin, hardest=True)
    if loss == "clip":
        kw = {"logit_scale": params["logit_scale"], "max_scale": al.CLIP_MAX_SCALE}
        if axis_name is None:
            return al.clip_loss(za, zb, **kw)
        return al.sharded_clip_loss(za, zb, axis_name=axis_name, **kw)
    kw = {"logit_scale": params["logit_scale"], "logit_bias": params["logit_bias"]}
    if loss == "siglip_chunked":
        return al.chunked_siglip_loss(za, zb, chunk_size=chunk_size, **kw)
    if axis_name is None:
        return al.siglip_loss(za, zb, **kw)
    return al.sharded_siglip_loss(za, zb, axis_name=axis_name, **kw)


def make_loss_fn(loss: str, graphdef, *, margin: float, chunk_size: int) -> Callable:
    """``loss_fn(params, batch, rng[, axis_name]) -> (loss, aux)`` for the framework's ``train``.

    ``batch`` is ``{"a": [b, d_a], "b": [b, d_b]}`` (with ``axis_name``: this device's shard).
    ``aux`` holds ``pos_cos``, the mean cosine of the positive pairs (averaged over devices by
    the framework), and :func:`scale_metrics` of the current parameters, so that the learned
    temperature, scale and bias are logged every record.
    """

    def loss_fn(params, batch, rng, axis_name=None):
        del rng
        za, zb = nnx.merge(graphdef, params["encoders"])(batch["a"], batch["b"])
        value = contrastive_loss(
            loss, za, zb, params, margin=margin, chunk_size=chunk_size, axis_name=axis_name
        )
        aux = {"pos_cos": jnp.mean(jnp.sum(za * zb, axis=-1)), **scale_metrics(loss, params)}
        return value, aux

    return loss_fn


@functools.partial(jax.jit, static_argnums=0)
def _encode(graphdef, params, a, b):
    return nnx.merge(graphdef, params["encoders"])(a, b)


def make_encode_fn(graphdef) -> Callable:
    """``encode(params, a, b) -> (za, zb)``, ``[n, k]`` each, L2-normalised; jitted.

    One compiled function per graph definition and shapes, shared by every run and seed (the
    graph definition is a static, hashable argument).
    """
    return functools.partial(_encode, graphdef)


def clamp_logit_scale(low: float, high: float) -> optax.GradientTransformation:
    """Clips ``params["logit_scale"]`` to ``[low, high]`` after the update (CLIP, open_clip).

    Chain it last: it rewrites the update ``u`` of ``logit_scale`` to
    ``clip(logit_scale + u, low, high) - logit_scale`` and leaves every other leaf alone. (The
    framework's ``train`` has no post-step hook; this is the same projection as an optax step.)
    """

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params):
        if params is None:
            raise ValueError("clamp_logit_scale needs `params` in update().")
        ls = params["logit_scale"]
        updates = dict(updates)
        updates["logit_scale"] = jnp.clip(ls + updates["logit_scale"], low, high) - ls
        return updates, state

    return optax.GradientTransformation(init, update)


def make_optimizer(
    loss: str, *, learning_rate: float, scale_learning_rate: float
) -> optax.GradientTransformation:
    """Adam at ``learning_rate`` on the encoders and ``scale_learning_rate`` on the logit scale
    and bias; for ``clip``, then :func:`clamp_logit_scale` to ``[0, log CLIP_MAX_SCALE]``."""

    def labels(params):
        return {
            key: jax.tree.map(lambda _, key=key: "enc" if key == "encoders" else "scale", value)
            for key, value in params.items()
        }

    opt = optax.multi_transform(
        {"enc": optax.adam(learning_rate), "scale": optax.adam(scale_learning_rate)}, labels
    )
    if loss == "clip":
        opt = optax.chain(opt, clamp_logit_scale(0.0, math.log(al.CLIP_MAX_SCALE)))
    return opt
