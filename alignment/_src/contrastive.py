"""Contrastive losses between two embedding spaces: hinge (VSE), InfoNCE / CLIP, sigmoid (SigLIP).

Every loss takes a batch of paired embeddings ``za: [b, k]`` and ``zb: [b, k]`` (row ``i`` of
``za`` goes with row ``i`` of ``zb``) and scores pairs by the dot product ``za @ zb.T``. None of
them normalises: pass L2-normalised embeddings for cosine similarities, as CLIP, SigLIP and VSE++
do (``z / jnp.linalg.norm(z, axis=-1, keepdims=True)``), or use unnormalised ones on purpose.

* :func:`vse_loss`: the hinge (triplet) loss of visual-semantic embeddings, both directions,
  summed over negatives (Kiros et al. 2014) or on the hardest negative only (VSE++, Faghri et
  al. 2018).
* :func:`infonce_loss` (one direction) and :func:`clip_loss` (symmetric, the mean of both
  directions) with a learnable temperature, and :func:`infonce_mi_lower_bound`, the mutual
  information lower bound ``log b - infonce_loss``.
* :func:`siglip_loss`: the pairwise sigmoid loss with learnable temperature and bias, and
  :func:`chunked_siglip_loss`, the same value and gradient with ``O(b * chunk_size)`` memory.
* :func:`sharded_infonce_loss`, :func:`sharded_clip_loss`, :func:`sharded_siglip_loss`: the same
  losses on a batch split across devices, to call inside ``jax.shard_map`` (or ``pmap``) with the
  name of the batch axis; every device sees the negatives of the whole global batch and the value
  and gradient are those of the single-device loss on the global batch.

Learnable parameters are plain arguments (the losses are pure): keep them in your parameter tree
and initialise them with the constants below.

* CLIP (Radford et al. 2021): ``logit_scale`` is the log of the inverse temperature, initialised
  at :data:`CLIP_LOGIT_SCALE_INIT` ``= log(1 / 0.07)``; the scale ``exp(logit_scale)`` is
  clamped at :data:`CLIP_MAX_SCALE` ``= 100`` in the loss (``jnp.minimum``: zero gradient in
  ``logit_scale`` beyond the clamp). CLIP and open_clip also clamp the parameter itself after each
  optimiser step (open_clip: ``logit_scale.clamp_(0, log(100))``); do the same with
  ``jnp.clip(logit_scale, 0.0, jnp.log(CLIP_MAX_SCALE))`` so that it cannot drift above the clamp
  where its gradient is zero. For a fixed temperature ``tau`` pass ``logit_scale = log(1 / tau)``.
* SigLIP (Zhai et al. 2023): logits ``exp(logit_scale) * za @ zb.T + logit_bias`` with
  :data:`SIGLIP_LOGIT_SCALE_INIT` ``= log 10`` and :data:`SIGLIP_LOGIT_BIAS_INIT` ``= -10``
  (no clamp). The bias init makes the initial predicted probability of a pair ``sigmoid(-10)``
  about ``4.5e-5``, the prior ``1 / b`` of a positive for ``b`` about 22,000 (``-log(b - 1)``).
  For small batches the prior is far from that (``b = 32``: ``-log 31 = -3.4``); ``-10`` still
  trains (the paper uses it down to small batches) but starts with a loss dominated by the
  positives; ``logit_bias = -log(b - 1)`` starts at the prior.

More than one positive per anchor: pass ``positives: [b, b]`` (boolean, ``positives[i, j]``
true when ``zb[j]`` is a positive for ``za[i]``; default the identity) or integer ``ids: [b]``
(pairs with equal ids are positives; default each row its own id). Every loss accepts ``ids``;
the dense ones also accept ``positives`` (the chunked and sharded forms take ``ids`` only, which
never materialise a ``[b, b]`` array). The hinge and InfoNCE losses average over each anchor's
positives (for InfoNCE the ``L_out`` form of Khosla et al. 2020: ``-mean_p log softmax_p``);
anchors without a positive are left out of the mean over anchors. The b-to-a direction uses
``positives.T``. (``mask`` is the attention module's word, True = may attend; it never means
positives here.)

Reduction: every loss is a mean over anchors (SigLIP: the sum over all ``b^2`` pairs divided by
``b``, as in the paper and big_vision). VSE++'s published code sums over the batch instead:
multiply :func:`vse_loss` by ``b`` to compare.

Numerics: float16 and bfloat16 embeddings are computed and accumulated in float32 (the ``b^2``
pair terms of SigLIP overflow float16 otherwise) and the loss is returned in the input dtype.
Dot products are taken on rows rescaled by exact powers of two, so huge embeddings (``1e30`` in
float32) give the true (possibly infinite) loss, never the NaN of ``inf - inf``; a logit whose
magnitude would pass ``finfo.max / (4 k)`` is clamped there.

Bad input (see ``docs/conventions.md``): shapes, dtypes (complex), ``None`` for an array,
array-valued ``logit_scale``/``logit_bias``/``margin``/``max_scale`` and non-int ``chunk_size``
raise ``ValueError`` naming the argument, eagerly and under ``jit``/``vmap``. Concrete bad values
raise too: a non-finite ``logit_scale`` or ``logit_bias``, a negative or non-finite ``margin``,
``max_scale <= 0``, ``positives`` without any positive pair. Under ``jit`` the same bad values
give a NaN loss. NaN in the embeddings propagates to the loss and its gradient.

References: Kiros, Salakhutdinov & Zemel, "Unifying Visual-Semantic Embeddings with Multimodal
Neural Language Models" (2014); Faghri et al., "VSE++: Improving Visual-Semantic Embeddings
with Hard Negatives", BMVC 2018; van den Oord, Li & Vinyals, "Representation Learning with
Contrastive Predictive Coding" (2018); Poole et al., "On Variational Bounds of Mutual
Information", ICML 2019; Radford et al., "Learning Transferable Visual Models From Natural
Language Supervision", ICML 2021; Zhai et al., "Sigmoid Loss for Language Image Pre-Training",
ICCV 2023; Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from alignment._src import checks
from alignment._src.numerics import pow2_products, pow2_rows

__all__ = [
    "CLIP_LOGIT_SCALE_INIT",
    "CLIP_MAX_SCALE",
    "SIGLIP_LOGIT_BIAS_INIT",
    "SIGLIP_LOGIT_SCALE_INIT",
    "VSE_MARGIN",
    "chunked_siglip_loss",
    "clip_loss",
    "infonce_loss",
    "infonce_mi_lower_bound",
    "sharded_clip_loss",
    "sharded_infonce_loss",
    "sharded_siglip_loss",
    "siglip_loss",
    "vse_loss",
]

CLIP_LOGIT_SCALE_INIT: float = math.log(1.0 / 0.07)
"""Initial ``logit_scale`` of CLIP: ``log(1 / 0.07)``, a temperature of 0.07 (about 2.659)."""

CLIP_MAX_SCALE: float = 100.0
"""CLIP's clamp on the logit scale ``exp(logit_scale)``: logits are never scaled by more."""

SIGLIP_LOGIT_SCALE_INIT: float = math.log(10.0)
"""Initial ``logit_scale`` of SigLIP: ``log 10`` (a scale of 10)."""

SIGLIP_LOGIT_BIAS_INIT: float = -10.0
"""Initial ``logit_bias`` of SigLIP: ``-10`` (the prior log-odds of a positive for large b)."""

VSE_MARGIN: float = 0.2
"""Margin of VSE++ (Faghri et al. 2018)."""


# --------------------------------------------------------------------------------------------
# Validation.
# --------------------------------------------------------------------------------------------


def _check_pair(za, zb, names=("za", "zb")) -> tuple[jax.Array, jax.Array]:
    za = checks.as_float_array(za, names[0])
    zb = checks.as_float_array(zb, names[1])
    for name, z in zip(names, (za, zb), strict=True):
        if z.ndim != 2:
            raise ValueError(
                f"`{name}` must be a 2-D array [b, k] (a batch of embeddings), got shape {z.shape}."
            )
    if za.shape != zb.shape:
        raise ValueError(
            f"`{names[0]}` and `{names[1]}` must have the same shape [b, k] (row i of one is "
            f"paired with row i of the other), got {za.shape} and {zb.shape}."
        )
    if za.shape[0] == 0 or za.shape[1] == 0:
        raise ValueError(
            f"`{names[0]}` and `{names[1]}` must be non-empty [b, k], got shape {za.shape}."
        )
    dtype = jnp.result_type(za, zb)
    return za.astype(dtype), zb.astype(dtype)


def _check_positives(positives, b: int) -> jax.Array:
    """The ``[b, b]`` boolean positives (concrete: at least one positive pair)."""
    positives = jnp.asarray(positives)
    if positives.shape != (b, b):
        raise ValueError(
            f"`positives` must have shape [b, b] = {(b, b)} (positives[i, j] true when zb[j] is "
            f"a positive for za[i]), got shape {positives.shape}."
        )
    if not (
        jnp.issubdtype(positives.dtype, jnp.bool_) or jnp.issubdtype(positives.dtype, jnp.integer)
    ):
        raise ValueError(f"`positives` must be boolean, got dtype {positives.dtype}.")
    positives = positives.astype(bool)
    if checks.is_concrete(positives) and not bool(np.any(np.asarray(positives))):
        raise ValueError("`positives` has no positive pair: at least one anchor needs one.")
    return positives


def _check_ids(ids, b: int, name: str = "ids") -> jax.Array | None:
    if ids is None:
        return None
    return checks.as_int_array(
        ids, name, shape=(b,), what=f"[b] = ({b},)", note=" (pairs with equal ids are positives)"
    )


def _pairs(positives, ids, b: int) -> tuple[jax.Array | None, jax.Array | None]:
    """``(positives, ids)`` validated; at most one of them is given (both None: the identity)."""
    if positives is not None and ids is not None:
        raise ValueError("pass either `positives` ([b, b]) or `ids` ([b]), not both.")
    if ids is not None:
        return None, _check_ids(ids, b)
    if positives is not None:
        return _check_positives(positives, b), None
    return None, None


def _positive_matrix(positives, ids, b: int) -> jax.Array:
    if positives is not None:
        return positives
    if ids is not None:
        return ids[:, None] == ids[None, :]
    return jnp.eye(b, dtype=bool)


def _scale_args(logit_scale, max_scale):
    checks.scalar(logit_scale, "logit_scale", "finite")
    checks.scalar(max_scale, "max_scale", "positive", allow_none=True)


def _log_scale(logit_scale, max_scale, dtype) -> tuple[jax.Array, jax.Array]:
    """``log c`` with ``c = min(exp(logit_scale), max_scale)``, and the traced bad-value flag."""
    ls = jnp.asarray(logit_scale, dtype)
    bad = checks.invalid_scalar(ls, "finite")
    if max_scale is not None:
        ms = jnp.asarray(max_scale, dtype)
        bad = bad | checks.invalid_scalar(ms, "positive")
        ls = jnp.minimum(ls, jnp.log(ms))  # zero derivative in logit_scale beyond the clamp
    return ls, bad


def _logits(za: jax.Array, zb: jax.Array, log_scale) -> jax.Array:
    """``exp(log_scale) * za @ zb.T`` without overflow in the middle (see the module docstring)."""
    xa, ea = pow2_rows(za)
    xb, eb = pow2_rows(zb)
    return pow2_products(xa @ xb.T, ea, eb, log_scale, za.shape[1])


# --------------------------------------------------------------------------------------------
# Per-anchor terms, shared by the dense, sharded and chunked forms.
# --------------------------------------------------------------------------------------------


def _masked_mean(values: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sum of ``values`` over anchors with ``weights`` (1 if the anchor counts) and the count."""
    return jnp.sum(jnp.where(weights > 0, values, 0.0)), jnp.sum(weights)


def _infonce_rows(logits: jax.Array, pos: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sum over anchors (rows) of ``-mean_{p in pos} log softmax(row)_p``, and the anchor count."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    n_pos = jnp.sum(pos, axis=-1)
    has = (n_pos > 0).astype(logits.dtype)
    per_row = -jnp.sum(jnp.where(pos, logp, 0.0), axis=-1) / jnp.maximum(n_pos, 1)
    return _masked_mean(per_row, has)


def _siglip_sum(logits: jax.Array, pos: jax.Array) -> jax.Array:
    """``-sum log sigmoid(z * logits)`` with ``z = +1`` on positives and ``-1`` elsewhere."""
    return -jnp.sum(jax.nn.log_sigmoid(jnp.where(pos, logits, -logits)))


def _hinge_rows(sim: jax.Array, pos: jax.Array, margin, hardest: bool, identity: bool):
    """Sum over anchors (rows) of the mean over positives of the hinge against the negatives."""
    neg = ~pos
    if identity:  # one positive per row, on the diagonal: an O(b^2) form
        d = jnp.diagonal(sim)[:, None]
        viol = jnp.where(neg, jax.nn.relu(margin - d + sim), 0.0)
        per_row = jnp.max(viol, axis=-1) if hardest else jnp.sum(viol, axis=-1)
        return jnp.sum(per_row), jnp.asarray(sim.shape[0], sim.dtype)
    n_pos = jnp.sum(pos, axis=-1)
    has = (n_pos > 0).astype(sim.dtype)
    if hardest:
        # relu is monotone: the hardest negative maximises the violation for every positive.
        low = jnp.finfo(sim.dtype).min
        h = jnp.max(jnp.where(neg, sim, low), axis=-1, keepdims=True)
        any_neg = jnp.any(neg, axis=-1, keepdims=True)
        viol = jnp.where(pos & any_neg, jax.nn.relu(margin - sim + h), 0.0)  # [b, b(positive)]
    else:
        # [b, positive p, negative n]
        v = jax.nn.relu(margin - sim[:, :, None] + sim[:, None, :])
        viol = jnp.sum(jnp.where(pos[:, :, None] & neg[:, None, :], v, 0.0), axis=-1)
        viol = jnp.where(pos, viol, 0.0)
    per_row = jnp.sum(viol, axis=-1) / jnp.maximum(n_pos, 1)
    return _masked_mean(per_row, has)


def _mean(total: jax.Array, count: jax.Array) -> jax.Array:
    return total / jnp.maximum(count, 1)


# --------------------------------------------------------------------------------------------
# Dense losses.
# --------------------------------------------------------------------------------------------


def _cast_out(loss: jax.Array, bad, dtype) -> jax.Array:
    return checks.nan_if(bad, loss).astype(dtype)


@functools.partial(jax.jit, static_argnames=("hardest",))
def _vse_core(za, zb, margin, positives, ids, hardest):
    dtype = za.dtype
    ct = checks.compute_dtype(dtype)
    za, zb = za.astype(ct), zb.astype(ct)
    margin = jnp.asarray(margin, ct)
    b = za.shape[0]
    identity = positives is None and ids is None
    pos = _positive_matrix(positives, ids, b)
    bad = checks.invalid_scalar(margin, "nonnegative") | ~jnp.any(pos)
    sim = _logits(za, zb, None)
    a_sum, a_n = _hinge_rows(sim, pos, margin, hardest, identity)
    b_sum, b_n = _hinge_rows(sim.T, pos.T, margin, hardest, identity)
    return _cast_out(_mean(a_sum, a_n) + _mean(b_sum, b_n), bad, dtype)


def vse_loss(
    za: jax.typing.ArrayLike,
    zb: jax.typing.ArrayLike,
    *,
    margin: jax.typing.ArrayLike = VSE_MARGIN,
    hardest: bool = False,
    positives: jax.typing.ArrayLike | None = None,
    ids: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """Hinge (visual-semantic embedding) loss in both directions, VSE / VSE++.

    With ``s = za @ zb.T`` and one positive per anchor (the diagonal),

        ``(1/b) sum_i sum_{j != i} ([margin - s_ii + s_ij]_+ + [margin - s_ii + s_ji]_+)``

    (the a-to-b direction ranks the ``zb`` of each ``za``, the b-to-a direction the ``za`` of each
    ``zb``). ``hardest=True`` keeps only the largest violation of each anchor (VSE++'s
    ``max_violation``). With ``positives`` (or ``ids``) each anchor's hinge is averaged over its
    positives, the negatives being the other pairs (``O(b^3)`` memory for the sum over
    negatives; the default identity and ``hardest=True`` need ``O(b^2)``).

    Args:
      za: Array of shape ``[b, k]`` (L2-normalise it for cosine similarities).
      zb: Array of shape ``[b, k]``, row-paired with ``za``.
      margin: Margin ``>= 0`` (VSE++: :data:`VSE_MARGIN` = 0.2); traced.
      hardest: Static bool: hardest negative only (VSE++) instead of the sum over negatives.
      positives: Optional boolean ``[b, b]``, ``positives[i, j]`` true when ``zb[j]`` is a
        positive for ``za[i]``; the identity by default.
      ids: Optional integer ``[b]`` instead of ``positives``: pairs with equal ids are positives.

    Returns:
      Scalar in the input dtype, the mean over anchors of the two directions' hinge terms
      (VSE++'s code returns the sum over the batch: ``b`` times this).

    Bad input: shapes, complex or ``None`` embeddings, an array-valued ``margin``, a non-bool
    ``hardest``, ``positives`` of the wrong shape and ``ids`` that are not integer ``[b]`` raise
    ``ValueError`` (also under ``jit``); a concrete negative or non-finite ``margin`` or
    ``positives`` without any positive raise; under ``jit`` they give NaN. NaN embeddings
    propagate. See ``docs/conventions.md``.

    References:
      Faghri, Fleet, Kiros & Fidler, "VSE++: Improving Visual-Semantic Embeddings with Hard
      Negatives", BMVC 2018.

    Examples:
      >>> import jax.numpy as jnp
      >>> z = jnp.eye(3)  # each pair identical, orthogonal to the others
      >>> float(vse_loss(z, z, margin=0.2)), float(vse_loss(z, z, margin=1.5, hardest=True))
      (0.0, 1.0)
    """
    za, zb = _check_pair(za, zb)
    checks.scalar(margin, "margin", "nonnegative")
    checks.static_choice(hardest, "hardest", (False, True))
    positives, ids = _pairs(positives, ids, za.shape[0])
    return _vse_core(za, zb, margin, positives, ids, bool(hardest))


def _infonce_value(za, zb, logit_scale, max_scale, positives, ids, symmetric):
    """The (symmetric) InfoNCE loss in the compute dtype, and the bad-value flag."""
    ct = checks.compute_dtype(za.dtype)
    za, zb = za.astype(ct), zb.astype(ct)
    ls, bad = _log_scale(logit_scale, max_scale, ct)
    pos = _positive_matrix(positives, ids, za.shape[0])
    bad = bad | ~jnp.any(pos)
    logits = _logits(za, zb, ls)
    loss = _mean(*_infonce_rows(logits, pos))
    if symmetric:
        loss = 0.5 * (loss + _mean(*_infonce_rows(logits.T, pos.T)))
    return loss, bad


@functools.partial(jax.jit, static_argnames=("symmetric",))
def _infonce_core(za, zb, logit_scale, max_scale, positives, ids, symmetric):
    loss, bad = _infonce_value(za, zb, logit_scale, max_scale, positives, ids, symmetric)
    return _cast_out(loss, bad, za.dtype)


@jax.jit
def _mi_core(za, zb, logit_scale, max_scale):
    loss, bad = _infonce_value(za, zb, logit_scale, max_scale, None, None, False)
    bound = jnp.log(jnp.asarray(za.shape[0], loss.dtype)) - loss
    return _cast_out(bound, bad, za.dtype)


def infonce_loss(
    za: jax.typing.ArrayLike,
    zb: jax.typing.ArrayLike,
    *,
    logit_scale: jax.typing.ArrayLike = CLIP_LOGIT_SCALE_INIT,
    max_scale: float | None = CLIP_MAX_SCALE,
    positives: jax.typing.ArrayLike | None = None,
    ids: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """InfoNCE, one direction: classify each ``za[i]``'s partner among all the ``zb``.

    ``-(1/b) sum_i log softmax_j(c * za_i . zb_j)_i`` with ``c = min(exp(logit_scale),
    max_scale)``; with ``positives`` (or ``ids``), ``-mean_{p positive} log softmax_p`` per
    anchor (the denominator runs over every ``zb``, positives included).

    Args:
      za: Array of shape ``[b, k]``, the anchors.
      zb: Array of shape ``[b, k]``, the candidates, row-paired with ``za``.
      logit_scale: Log of the inverse temperature (learnable, traced; CLIP initialises it at
        :data:`CLIP_LOGIT_SCALE_INIT`). The temperature-like parameters of the library are
        compared side by side in ``docs/conventions.md``.
      max_scale: Clamp on ``exp(logit_scale)`` (:data:`CLIP_MAX_SCALE` = 100), or ``None``.
      positives: Optional boolean ``[b, b]`` of positives (identity by default).
      ids: Optional integer ``[b]`` instead of ``positives``: pairs with equal ids are positives.

    Returns:
      Scalar ``>= 0`` in the input dtype (``log b`` for uninformative embeddings).

    Bad input: shapes, complex or ``None`` embeddings, array-valued ``logit_scale`` or
    ``max_scale``, ``positives`` of the wrong shape and ``ids`` that are not integer ``[b]``
    raise ``ValueError`` (also under ``jit``); a concrete non-finite ``logit_scale``,
    ``max_scale <= 0`` or ``positives`` without any positive raise; under ``jit`` they give NaN.
    NaN embeddings propagate. See ``docs/conventions.md``.

    References:
      van den Oord, Li & Vinyals, "Representation Learning with Contrastive Predictive Coding",
      2018.

    Examples:
      >>> import jax.numpy as jnp
      >>> round(float(infonce_loss(jnp.zeros((4, 2)), jnp.zeros((4, 2)))), 4)  # log 4
      1.3863
    """
    za, zb = _check_pair(za, zb)
    _scale_args(logit_scale, max_scale)
    positives, ids = _pairs(positives, ids, za.shape[0])
    return _infonce_core(za, zb, logit_scale, max_scale, positives, ids, False)


def clip_loss(
    za: jax.typing.ArrayLike,
    zb: jax.typing.ArrayLike,
    *,
    logit_scale: jax.typing.ArrayLike = CLIP_LOGIT_SCALE_INIT,
    max_scale: float | None = CLIP_MAX_SCALE,
    positives: jax.typing.ArrayLike | None = None,
    ids: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """Symmetric InfoNCE of CLIP: the mean of the a-to-b and b-to-a cross-entropies.

    ``(infonce_loss(za, zb, positives) + infonce_loss(zb, za, positives.T)) / 2`` from one
    ``[b, b]`` logit matrix ``c * za @ zb.T``, ``c = min(exp(logit_scale), max_scale)``.

    Args:
      za: Array of shape ``[b, k]`` (e.g. normalised image embeddings).
      zb: Array of shape ``[b, k]`` (e.g. normalised text embeddings), row-paired with ``za``.
      logit_scale: Log of the inverse temperature (traced); initialise at
        :data:`CLIP_LOGIT_SCALE_INIT`. See ``docs/conventions.md`` for the temperature-like
        parameters side by side.
      max_scale: Clamp on ``exp(logit_scale)`` (:data:`CLIP_MAX_SCALE` = 100), or ``None``.
      positives: Optional boolean ``[b, b]`` of positives (identity by default).
      ids: Optional integer ``[b]`` instead of ``positives``: pairs with equal ids are positives.

    Returns:
      Scalar ``>= 0`` in the input dtype.

    Bad input: as :func:`infonce_loss` (``ValueError`` for shapes, dtypes and array-valued
    parameters even under ``jit``; concrete bad values raise, traced ones give NaN; NaN
    embeddings propagate). See ``docs/conventions.md``.

    References:
      Radford et al., "Learning Transferable Visual Models From Natural Language Supervision",
      ICML 2021.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> z = jax.random.normal(jax.random.key(0), (8, 16))
      >>> z = z / jnp.linalg.norm(z, axis=1, keepdims=True)
      >>> loss, g = jax.value_and_grad(clip_loss, argnums=(0, 1))(z, z, logit_scale=jnp.log(100.0))
      >>> bool(loss < 0.01), g[0].shape
      (True, (8, 16))
    """
    za, zb = _check_pair(za, zb)
    _scale_args(logit_scale, max_scale)
    positives, ids = _pairs(positives, ids, za.shape[0])
    return _infonce_core(za, zb, logit_scale, max_scale, positives, ids, True)


def infonce_mi_lower_bound(
    za: jax.typing.ArrayLike,
    zb: jax.typing.ArrayLike,
    *,
    logit_scale: jax.typing.ArrayLike = 0.0,
    max_scale: float | None = None,
) -> jax.Array:
    """The InfoNCE lower bound on mutual information: ``log b - infonce_loss(za, zb)``.

    For ``b`` pairs drawn from the joint distribution of two variables ``A`` and ``B``, and any
    critic ``f(a, b)``, here ``c * za . zb`` with ``za``, ``zb`` functions of ``a`` and ``b``,
    ``E[log b - L_InfoNCE] <= I(A; B)`` (van den Oord et al. 2018; Poole et al. 2019). The bound
    is tight only for the optimal critic (the log density ratio, up to terms in ``a`` alone) and
    when ``I(A; B) << log b``: it can never exceed ``log b``, so large mutual information needs
    large batches. One batch gives a noisy, downward-biased estimate: average over batches.

    Args:
      za: Array of shape ``[b, k]``, features of ``b`` samples of ``A``.
      zb: Array of shape ``[b, k]``, features of the paired samples of ``B``.
      logit_scale: Log of the critic's scale ``c`` (0: the plain dot product); see
        ``docs/conventions.md``.
      max_scale: Optional clamp on ``exp(logit_scale)``.

    Returns:
      Scalar in nats (in the input dtype), at most ``log b``.

    Bad input: as :func:`infonce_loss`. See ``docs/conventions.md``.

    References:
      Poole, Ozair, van den Oord, Alemi & Tucker, "On Variational Bounds of Mutual
      Information", ICML 2019.

    Examples:
      >>> import jax.numpy as jnp
      >>> z = 10.0 * jnp.eye(4)  # perfectly identifiable pairs: the bound reaches log 4
      >>> round(float(infonce_mi_lower_bound(z, z)), 4)
      1.3863
    """
    za, zb = _check_pair(za, zb)
    _scale_args(logit_scale, max_scale)
    return _mi_core(za, zb, logit_scale, max_scale)


def _siglip_args(logit_scale, logit_bias):
    checks.scalar(logit_scale, "logit_scale", "finite")
    checks.scalar(logit_bias, "logit_bias", "finite")


def _siglip_params(logit_scale, logit_bias, dtype):
    ls = jnp.asarray(logit_scale, dtype)
    bias = jnp.asarray(logit_bias, dtype)
    bad = checks.invalid_scalar(ls, "finite") | checks.invalid_scalar(bias, "finite")
    return ls, bias, bad


@jax.jit
def _siglip_core(za, zb, logit_scale, logit_bias, positives, ids):
    dtype = za.dtype
    ct = checks.compute_dtype(dtype)
    za, zb = za.astype(ct), zb.astype(ct)
    ls, bias, bad = _siglip_params(logit_scale, logit_bias, ct)
    pos = _positive_matrix(positives, ids, za.shape[0])
    bad = bad | ~jnp.any(pos)
    loss = _siglip_sum(_logits(za, zb, ls) + bias, pos) / za.shape[0]
    return _cast_out(loss, bad, dtype)


def siglip_loss(
    za: jax.typing.ArrayLike,
    zb: jax.typing.ArrayLike,
    *,
    logit_scale: jax.typing.ArrayLike = SIGLIP_LOGIT_SCALE_INIT,
    logit_bias: jax.typing.ArrayLike = SIGLIP_LOGIT_BIAS_INIT,
    positives: jax.typing.ArrayLike | None = None,
    ids: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """Pairwise sigmoid loss of SigLIP: every pair is an independent binary classification.

    ``-(1/b) sum_{i, j} log sigmoid(z_ij (exp(logit_scale) za_i . zb_j + logit_bias))`` with
    ``z_ij = +1`` for positive pairs (the diagonal, ``positives`` or equal ``ids``) and ``-1``
    otherwise. The ``b^2`` terms are summed in float32 for float16/bfloat16 input.

    Args:
      za: Array of shape ``[b, k]``.
      zb: Array of shape ``[b, k]``, row-paired with ``za``.
      logit_scale: Log of the scale (learnable, traced; init :data:`SIGLIP_LOGIT_SCALE_INIT` =
        log 10). See ``docs/conventions.md`` for the temperature-like parameters side by side.
      logit_bias: The bias (learnable, traced; init :data:`SIGLIP_LOGIT_BIAS_INIT` = -10; see
        the module docstring for small batches).
      positives: Optional boolean ``[b, b]`` of positives (identity by default).
      ids: Optional integer ``[b]`` instead of ``positives``: pairs with equal ids are positives.

    Returns:
      Scalar ``>= 0`` in the input dtype.

    Bad input: shapes, complex or ``None`` embeddings, array-valued ``logit_scale`` or
    ``logit_bias``, bad ``positives``/``ids`` shapes raise ``ValueError`` (also under ``jit``);
    a concrete non-finite ``logit_scale``/``logit_bias`` or ``positives`` without any positive
    raise; under ``jit`` they give NaN. NaN embeddings propagate. See ``docs/conventions.md``.

    References:
      Zhai, Mustafa, Kolesnikov & Beyer, "Sigmoid Loss for Language Image Pre-Training",
      ICCV 2023.

    Examples:
      >>> import jax.numpy as jnp
      >>> z = jnp.eye(2)
      >>> loss = siglip_loss(z, z, logit_scale=0.0, logit_bias=0.0)
      >>> round(float(loss), 4)  # (2 softplus(-1) + 2 log 2) / 2
      1.0064
    """
    za, zb = _check_pair(za, zb)
    _siglip_args(logit_scale, logit_bias)
    positives, ids = _pairs(positives, ids, za.shape[0])
    return _siglip_core(za, zb, logit_scale, logit_bias, positives, ids)


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def _chunked_core(za, zb, logit_scale, logit_bias, ids, chunk_size):
    dtype = za.dtype
    ct = checks.compute_dtype(dtype)
    za, zb = za.astype(ct), zb.astype(ct)
    ls, bias, bad = _siglip_params(logit_scale, logit_bias, ct)
    b, k = za.shape
    row_ids = jnp.arange(b) if ids is None else ids
    n_chunks = -(-b // chunk_size)
    pad = n_chunks * chunk_size - b
    xa, ea = pow2_rows(za)
    xb, eb = pow2_rows(zb)
    xb_p = jnp.pad(xb, ((0, pad), (0, 0))).reshape(n_chunks, chunk_size, k)
    eb_p = jnp.pad(eb, (0, pad)).reshape(n_chunks, chunk_size)
    col_ids = jnp.pad(row_ids, (0, pad)).reshape(n_chunks, chunk_size)
    valid = (jnp.arange(n_chunks * chunk_size) < b).reshape(n_chunks, chunk_size)

    @jax.checkpoint
    def block(xa, ls, bias, xb_c, eb_c, ids_c, valid_c):
        logits = pow2_products(xa @ xb_c.T, ea, eb_c, ls, k) + bias
        pos = row_ids[:, None] == ids_c[None, :]
        terms = -jax.nn.log_sigmoid(jnp.where(pos, logits, -logits))
        return jnp.sum(jnp.where(valid_c[None, :], terms, 0.0))

    def step(total, xs):
        return total + block(xa, ls, bias, *xs), None

    total, _ = jax.lax.scan(step, jnp.zeros((), ct), (xb_p, eb_p, col_ids, valid))
    return _cast_out(total / b, bad, dtype)


def chunked_siglip_loss(
    za: jax.typing.ArrayLike,
    zb: jax.typing.ArrayLike,
    *,
    chunk_size: int,
    logit_scale: jax.typing.ArrayLike = SIGLIP_LOGIT_SCALE_INIT,
    logit_bias: jax.typing.ArrayLike = SIGLIP_LOGIT_BIAS_INIT,
    ids: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """:func:`siglip_loss` without the ``[b, b]`` logits: ``O(b * chunk_size)`` memory.

    A ``lax.scan`` over blocks of ``chunk_size`` columns (rows of ``zb``, padded up to a multiple
    of ``chunk_size`` and masked out), each block's logits recomputed in the backward pass
    (``jax.checkpoint``), so neither the value nor the gradient stores a ``[b, b]`` array. The
    value and gradient equal :func:`siglip_loss` up to the order of float summation (float32
    for float16/bfloat16 input).

    Args:
      za: Array of shape ``[b, k]``.
      zb: Array of shape ``[b, k]``, row-paired with ``za``.
      chunk_size: Static positive int, the number of ``zb`` rows per block.
      logit_scale: As in :func:`siglip_loss` (see ``docs/conventions.md``).
      logit_bias: As in :func:`siglip_loss`.
      ids: Optional integer ``[b]``: pairs ``(i, j)`` with ``ids[i] == ids[j]`` are positives
        (default: the diagonal only).

    Returns:
      Scalar in the input dtype, equal to ``siglip_loss(za, zb, ids=ids)``.

    Bad input: as :func:`siglip_loss`; a ``chunk_size`` that is not a Python int ``>= 1``
    (``1.5``, ``True``, an array) raises ``ValueError``. See ``docs/conventions.md``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> za, zb = jax.random.normal(jax.random.key(0), (2, 10, 4))
      >>> bool(jnp.allclose(chunked_siglip_loss(za, zb, chunk_size=3), siglip_loss(za, zb)))
      True
    """
    za, zb = _check_pair(za, zb)
    chunk_size = checks.static_int(chunk_size, "chunk_size", minimum=1)
    _siglip_args(logit_scale, logit_bias)
    ids = _check_ids(ids, za.shape[0])
    return _chunked_core(za, zb, logit_scale, logit_bias, ids, min(chunk_size, za.shape[0]))


# --------------------------------------------------------------------------------------------
# Sharded losses: inside shard_map, with the batch split over the named axis.
# --------------------------------------------------------------------------------------------


def _gather(z: jax.Array, axis_name) -> jax.Array:
    return jax.lax.all_gather(z, axis_name, axis=0, tiled=True)


def _local_positives(b_local: int, axis_name, ids, ids_all, total: int) -> jax.Array:
    """``[b_local, B]`` positives of this device's rows against the global batch."""
    if ids is None:
        rows = jax.lax.axis_index(axis_name) * b_local + jnp.arange(b_local)
        return rows[:, None] == jnp.arange(total)[None, :]
    return ids[:, None] == ids_all[None, :]


def _global_mean(total: jax.Array, count: jax.Array, axis_name) -> jax.Array:
    return _mean(jax.lax.psum(total, axis_name), jax.lax.psum(count, axis_name))


@functools.partial(jax.jit, static_argnames=("axis_name", "kind"))
def _sharded_core(za, zb, logit_scale, max_scale, logit_bias, ids, axis_name, kind):
    """``kind``: "infonce", "clip" or "siglip"; every device returns the global batch's loss."""
    dtype = za.dtype
    ct = checks.compute_dtype(dtype)
    za, zb = za.astype(ct), zb.astype(ct)
    za_all, zb_all = _gather(za, axis_name), _gather(zb, axis_name)
    ids_all = None if ids is None else _gather(ids, axis_name)
    pos = _local_positives(za.shape[0], axis_name, ids, ids_all, za_all.shape[0])
    if kind == "siglip":
        ls, bias, bad = _siglip_params(logit_scale, logit_bias, ct)
        total = jax.lax.psum(_siglip_sum(_logits(za, zb_all, ls) + bias, pos), axis_name)
        return _cast_out(total / za_all.shape[0], bad, dtype)
    ls, bad = _log_scale(logit_scale, max_scale, ct)
    loss = _global_mean(*_infonce_rows(_logits(za, zb_all, ls), pos), axis_name)
    if kind == "clip":
        other = _global_mean(*_infonce_rows(_logits(zb, za_all, ls), pos), axis_name)
        loss = 0.5 * (loss + other)
    return _cast_out(loss, bad, dtype)


def _sharded(za, zb, axis_name, ids, kind, logit_scale, max_scale=None, logit_bias=0.0):
    za, zb = _check_pair(za, zb)
    ids = _check_ids(ids, za.shape[0])
    if kind == "siglip":
        _siglip_args(logit_scale, logit_bias)
    else:
        _scale_args(logit_scale, max_scale)
    if isinstance(axis_name, list):
        axis_name = tuple(axis_name)
    return _sharded_core(za, zb, logit_scale, max_scale, logit_bias, ids, axis_name, kind)


def sharded_infonce_loss(
    za: jax.typing.ArrayLike,
    zb: jax.typing.ArrayLike,
    *,
    axis_name,
    logit_scale: jax.typing.ArrayLike = CLIP_LOGIT_SCALE_INIT,
    max_scale: float | None = CLIP_MAX_SCALE,
    ids: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """:func:`infonce_loss` of the global batch, from this device's shard (inside ``shard_map``).

    Each device gathers ``zb`` over ``axis_name`` (``all_gather``, differentiable), computes the
    terms of its own anchors against all ``B`` candidates (a ``[b_local, B]`` block: the "local
    loss"), and the sums are ``psum``-ed: every device returns the same global loss. Autodiff
    transposes the gather into a reduce-scatter, so each device receives exactly the gradient
    of the single-device loss on the global batch for its shard. Taken inside ``shard_map``
    (default ``check_vma=True``), ``jax.grad`` in replicated parameters (the logit scale, the
    encoders' weights) already returns the global batch's gradient: do not ``psum`` it again.
    The pitfall this avoids: computing the whole ``[B, B]`` loss on every device from gathered
    features (no local loss) gives the right value but, differentiated inside ``shard_map``,
    gradients multiplied by the number of devices (``tests/test_contrastive.py`` pins both).

    Args:
      za: Array of shape ``[b_local, k]``, this device's anchors (rows of the global batch in
        device order along ``axis_name``).
      zb: Array of shape ``[b_local, k]``, their partners.
      axis_name: The mesh axis name (or tuple of names) the batch is split over.
      logit_scale: As in :func:`infonce_loss` (pass it replicated).
      max_scale: As in :func:`infonce_loss`.
      ids: Optional integer ``[b_local]`` ids of this shard's rows; pairs with equal ids are
        positives (default: only a row's own partner).

    Returns:
      Scalar, the same on every device.

    Bad input: as :func:`infonce_loss` (``ids``, not ``positives``). See
    ``docs/conventions.md``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jax.sharding import PartitionSpec as P
      >>> mesh = jax.sharding.Mesh(jax.devices()[:1], ("batch",))  # one device per shard
      >>> f = jax.jit(jax.shard_map(lambda a, b: sharded_infonce_loss(a, b, axis_name="batch"),
      ...                   mesh=mesh, in_specs=(P("batch"), P("batch")), out_specs=P()))
      >>> za, zb = jax.random.normal(jax.random.key(0), (2, 8, 4))
      >>> bool(jnp.allclose(f(za, zb), infonce_loss(za, zb)))
      True
    """
    return _sharded(za, zb, axis_name, ids, "infonce", logit_scale, max_scale)


def sharded_clip_loss(
    za: jax.typing.ArrayLike,
    zb: jax.typing.ArrayLike,
    *,
    axis_name,
    logit_scale: jax.typing.ArrayLike = CLIP_LOGIT_SCALE_INIT,
    max_scale: float | None = CLIP_MAX_SCALE,
    ids: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """:func:`clip_loss` of the global batch, from this device's shard (inside ``shard_map``).

    Both directions as in :func:`sharded_infonce_loss`: this device's ``za`` rows against the
    gathered ``zb`` and its ``zb`` rows against the gathered ``za`` (two ``[b_local, B]``
    blocks), summed over devices. Value and gradient equal :func:`clip_loss` on the global batch.

    Args:
      za: Array of shape ``[b_local, k]``, this device's shard.
      zb: Array of shape ``[b_local, k]``.
      axis_name: The mesh axis name (or tuple of names) the batch is split over.
      logit_scale: As in :func:`clip_loss` (pass it replicated).
      max_scale: As in :func:`clip_loss`.
      ids: Optional integer ``[b_local]`` ids; pairs with equal ids are positives.

    Returns:
      Scalar, the same on every device.

    Bad input: as :func:`clip_loss` (``ids``, not ``positives``). See ``docs/conventions.md``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jax.sharding import PartitionSpec as P
      >>> mesh = jax.sharding.Mesh(jax.devices()[:1], ("batch",))  # one device per shard
      >>> f = jax.jit(jax.shard_map(lambda a, b: sharded_clip_loss(a, b, axis_name="batch"),
      ...                   mesh=mesh, in_specs=(P("batch"), P("batch")), out_specs=P()))
      >>> za, zb = jax.random.normal(jax.random.key(0), (2, 8, 4))
      >>> bool(jnp.allclose(f(za, zb), clip_loss(za, zb)))
      True
    """
    return _sharded(za, zb, axis_name, ids, "clip", logit_scale, max_scale)


def sharded_siglip_loss(
    za: jax.typing.ArrayLike,
    zb: jax.typing.ArrayLike,
    *,
    axis_name,
    logit_scale: jax.typing.ArrayLike = SIGLIP_LOGIT_SCALE_INIT,
    logit_bias: jax.typing.ArrayLike = SIGLIP_LOGIT_BIAS_INIT,
    ids: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """:func:`siglip_loss` of the global batch, from this device's shard (inside ``shard_map``).

    This device's ``za`` rows against the gathered ``zb`` (a ``[b_local, B]`` block covers each
    pair of the global batch exactly once over the devices), ``psum``-ed and divided by ``B``.
    Value and gradient equal :func:`siglip_loss` on the global batch.

    Args:
      za: Array of shape ``[b_local, k]``, this device's shard.
      zb: Array of shape ``[b_local, k]``.
      axis_name: The mesh axis name (or tuple of names) the batch is split over.
      logit_scale: As in :func:`siglip_loss` (pass it replicated).
      logit_bias: As in :func:`siglip_loss`.
      ids: Optional integer ``[b_local]`` ids; pairs with equal ids are positives.

    Returns:
      Scalar, the same on every device.

    Bad input: as :func:`siglip_loss` (``ids``, not ``positives``). See
    ``docs/conventions.md``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jax.sharding import PartitionSpec as P
      >>> mesh = jax.sharding.Mesh(jax.devices()[:1], ("batch",))  # one device per shard
      >>> f = jax.jit(jax.shard_map(lambda a, b: sharded_siglip_loss(a, b, axis_name="batch"),
      ...                   mesh=mesh, in_specs=(P("batch"), P("batch")), out_specs=P()))
      >>> za, zb = jax.random.normal(jax.random.key(0), (2, 8, 4))
      >>> bool(jnp.allclose(f(za, zb), siglip_loss(za, zb)))
      True
    """
    return _sharded(za, zb, axis_name, ids, "siglip", logit_scale, logit_bias=logit_bias)
