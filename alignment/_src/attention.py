"""Attention as alignment: soft (additive, scaled dot-product) and hard attention, and the
doubly-stochastic penalty of Show, Attend and Tell.

Every function is pure and takes its parameters as explicit arrays (no module system): a model
holds ``w``, ``u``, ``v`` wherever it likes and passes them in. Shapes, for one example (batch
with ``jax.vmap``):

* ``queries: [n, d_q]``: the decoder states ``s_i`` (one row per output step ``i``);
* ``keys: [m, d_k]``: the annotations ``f_j`` (image regions, encoder states);
* ``values: [m, d_v]``: what is averaged; defaults to ``keys`` (Show, Attend and Tell's
  ``z_i = sum_j alpha_ij f_j``);
* ``mask``: ``[m]`` (padded keys) or ``[n, m]`` booleans, **True where a key may be attended**
  (the convention of ``jax.nn.dot_product_attention`` and flax).

The alignment matrix ``alpha: [n, m]`` is a row-wise softmax of the energies ``e: [n, m]`` over
the unmasked keys: each row sums to 1, and ``context = alpha @ values``.

Fully masked rows: a query with no key to attend gets ``alpha[i] = 0`` (the row sums to 0, not
1), ``context[i] = 0``, and zero gradients, never NaN. (A softmax over all ``-inf`` is NaN; the
large-negative fill used by ``jax.nn.dot_product_attention`` and most frameworks instead spreads
the row uniformly over the padding, which silently averages padded values into the context.)

Numerics: the softmax is stabilised by the row maximum over the unmasked keys (held constant in
the derivative, as in ``jax.nn.softmax``); masked energies never enter an ``exp``, so a masked
energy of any size (``inf`` included) cannot overflow into a NaN gradient. A NaN energy at an
unmasked position propagates to its row. Outputs follow the inputs' dtype.

References:
  Bahdanau, Cho & Bengio, "Neural Machine Translation by Jointly Learning to Align and
  Translate", ICLR 2015 (additive attention). Xu et al., "Show, Attend and Tell: Neural Image
  Caption Generation with Visual Attention", ICML 2015 (soft and hard attention, the
  doubly-stochastic penalty). Vaswani et al., "Attention Is All You Need", NeurIPS 2017 (scaled
  dot-product attention). Bengio, Leonard & Courville, 2013 (the straight-through estimator).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from alignment._src.checks import as_float_array, check_positive, is_concrete

__all__ = [
    "AttentionOutput",
    "HardAttentionOutput",
    "additive_attention",
    "dot_product_attention",
    "doubly_stochastic_penalty",
    "hard_attention",
    "masked_softmax",
]


class AttentionOutput(NamedTuple):
    """Output of :func:`additive_attention` and :func:`dot_product_attention`.

    Attributes:
      context: ``[n, d_v]`` context vectors ``z_i = sum_j alpha_ij values_j``.
      alpha: ``[n, m]`` alignment matrix; each row sums to 1 over the unmasked keys (0 for a
        fully masked row).
      energies: ``[n, m]`` the scores ``e_ij`` before masking and softmax (masked entries hold
        their unmasked value; they do not enter ``alpha``).
    """

    context: jax.Array
    alpha: jax.Array
    energies: jax.Array


class HardAttentionOutput(NamedTuple):
    """Output of :func:`hard_attention`.

    Attributes:
      context: ``[n, d_v]`` the selected value per query (0 for a fully masked row).
      alpha: ``[n, m]`` one-hot selection (all zeros for a fully masked row). With
        ``straight_through=True`` its derivative is that of the soft ``alpha``.
      index: ``[n]`` int32 selected key per query, ``-1`` for a fully masked row.
      log_prob: ``[n]`` ``log alpha[i, index[i]]``, the log-probability of the choice (for the
        REINFORCE / score-function estimator of Show, Attend and Tell); 0 for a fully masked row.
    """

    context: jax.Array
    alpha: jax.Array
    index: jax.Array
    log_prob: jax.Array


# --------------------------------------------------------------------------------------------
# Validation.
# --------------------------------------------------------------------------------------------


def _matrix(x, name: str, what: str) -> jax.Array:
    x = as_float_array(x, name)
    if x.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D array {what}, got shape {x.shape}.")
    return x


def _values(values, keys: jax.Array) -> jax.Array:
    if values is None:
        return keys
    values = _matrix(values, "values", "[m, d_v]")
    if values.shape[0] != keys.shape[0]:
        raise ValueError(
            f"`values` must have one row per key: keys {keys.shape}, values {values.shape}."
        )
    return values


def _mask(mask, n: int, m: int) -> jax.Array | None:
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        raise ValueError(f"`mask` must be boolean (True = attend), got dtype {mask.dtype}.")
    if mask.shape not in ((m,), (n, m)):
        raise ValueError(
            f"`mask` must have shape [m]={(m,)} (padded keys) or [n, m]={(n, m)}, got {mask.shape}."
        )
    return jnp.broadcast_to(mask, (n, m))


# --------------------------------------------------------------------------------------------
# Soft attention.
# --------------------------------------------------------------------------------------------


def masked_softmax(
    energies: jax.typing.ArrayLike, *, mask: jax.typing.ArrayLike | None = None
) -> jax.Array:
    """Row-wise softmax over the unmasked entries, 0 on masked entries and fully masked rows.

    Args:
      energies: Array of shape ``[n, m]``.
      mask: None, or booleans of shape ``[m]`` or ``[n, m]``, True where an entry counts.

    Returns:
      Array ``alpha`` of shape ``[n, m]``: rows sum to 1, or to 0 where every entry is masked
      (with a zero gradient there).

    Examples:
      >>> import jax.numpy as jnp
      >>> e = jnp.array([[0.0, 0.0, 5.0], [1.0, 2.0, 3.0]])
      >>> masked_softmax(e, mask=jnp.array([[True, True, False], [False, False, False]])).tolist()
      [[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]
    """
    energies = as_float_array(energies, "energies")
    if energies.ndim != 2:
        raise ValueError(f"`energies` must be a 2-D array [n, m], got shape {energies.shape}.")
    return _masked_softmax_jit(energies, _mask(mask, *energies.shape))


def _masked_softmax(e: jax.Array, mask: jax.Array | None) -> jax.Array:
    if mask is None:
        return jax.nn.softmax(e, axis=-1)
    top = jnp.max(jnp.where(mask, e, -jnp.inf), axis=-1, keepdims=True)
    top = jax.lax.stop_gradient(jnp.where(jnp.isfinite(top), top, 0.0))
    # Double where: masked energies are replaced before the exp, so neither their value nor
    # their derivative can overflow (inf * 0 = NaN in the backward pass).
    z = jnp.where(mask, jnp.exp(jnp.where(mask, e, top) - top), 0.0)
    total = jnp.sum(z, axis=-1, keepdims=True)
    return z / jnp.where(total > 0, total, 1.0)


_masked_softmax_jit = jax.jit(_masked_softmax)


def additive_attention(
    queries: jax.typing.ArrayLike,
    keys: jax.typing.ArrayLike,
    values: jax.typing.ArrayLike | None = None,
    *,
    w: jax.typing.ArrayLike,
    u: jax.typing.ArrayLike,
    v: jax.typing.ArrayLike,
    bias: jax.typing.ArrayLike | None = None,
    mask: jax.typing.ArrayLike | None = None,
) -> AttentionOutput:
    """Additive (Bahdanau; Show, Attend and Tell) attention ``e_ij = v^T tanh(W s_i + U f_j + b)``.

    The matrices act on column vectors, as in the formula: ``W s_i`` is ``w @ s_i``, so
    ``w: [a, d_q]`` (a flax ``Dense`` kernel of shape ``[d_q, a]`` is its transpose).

    Args:
      queries: ``[n, d_q]`` decoder states ``s_i`` (Show, Attend and Tell uses ``h_{t-1}``).
      keys: ``[m, d_k]`` annotations ``f_j``.
      values: ``[m, d_v]`` or None (then ``keys``).
      w: ``[a, d_q]``.
      u: ``[a, d_k]``.
      v: ``[a]``.
      bias: ``[a]`` or None (Bahdanau has none; the Show, Attend and Tell code adds one).
      mask: None, ``[m]`` or ``[n, m]`` booleans, True where a key may be attended.

    Returns:
      :class:`AttentionOutput` ``(context [n, d_v], alpha [n, m], energies [n, m])``. A fully
      masked row has ``alpha = 0`` and ``context = 0`` (see the module docstring).

    Examples:
      >>> import jax.numpy as jnp
      >>> s = jnp.array([[1.0, 0.0], [0.0, 1.0]])  # n = 2 decoder states, d_q = 2
      >>> f = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
      >>> w, u = jnp.eye(3, 2), jnp.eye(3)  # a = 3
      >>> out = additive_attention(s, f, w=w, u=u, v=jnp.array([1.0, -1.0, 0.5]))
      >>> out.context.shape, out.alpha.shape, out.alpha.sum(axis=1).round(5).tolist()
      ((2, 3), (2, 4), [1.0, 1.0])
    """
    queries = _matrix(queries, "queries", "[n, d_q]")
    keys = _matrix(keys, "keys", "[m, d_k]")
    values = _values(values, keys)
    w = as_float_array(w, "w")
    u = as_float_array(u, "u")
    v = as_float_array(v, "v")
    (n, dq), (m, dk) = queries.shape, keys.shape
    if v.ndim != 1:
        raise ValueError(f"`v` must be a 1-D array [a], got shape {v.shape}.")
    a = v.shape[0]
    if w.shape != (a, dq):
        raise ValueError(
            f"`w` must have shape [a, d_q]={(a, dq)} (a from v {v.shape}, d_q from queries "
            f"{queries.shape}), got {w.shape}."
        )
    if u.shape != (a, dk):
        raise ValueError(
            f"`u` must have shape [a, d_k]={(a, dk)} (a from v {v.shape}, d_k from keys "
            f"{keys.shape}), got {u.shape}."
        )
    if bias is not None:
        bias = as_float_array(bias, "bias")
        if bias.shape != (a,):
            raise ValueError(f"`bias` must have shape [a]={(a,)}, got {bias.shape}.")
    return _additive(queries, keys, values, w, u, v, bias, _mask(mask, n, m))


@jax.jit
def _additive(queries, keys, values, w, u, v, bias, mask) -> AttentionOutput:
    hidden = (queries @ w.T)[:, None, :] + (keys @ u.T)[None, :, :]  # [n, m, a]
    if bias is not None:
        hidden = hidden + bias
    energies = jnp.tanh(hidden) @ v
    alpha = _masked_softmax(energies, mask)
    return AttentionOutput(alpha @ values, alpha, energies)


def dot_product_attention(
    queries: jax.typing.ArrayLike,
    keys: jax.typing.ArrayLike,
    values: jax.typing.ArrayLike | None = None,
    *,
    scale: jax.typing.ArrayLike | None = None,
    mask: jax.typing.ArrayLike | None = None,
) -> AttentionOutput:
    """Scaled dot-product attention ``e_ij = scale * q_i . k_j`` (one head).

    Args:
      queries: ``[n, d]``.
      keys: ``[m, d]``.
      values: ``[m, d_v]`` or None (then ``keys``).
      scale: positive scalar, default ``1 / sqrt(d)``; traced (a learnable inverse temperature
        works).
      mask: None, ``[m]`` or ``[n, m]`` booleans, True where a key may be attended.

    Returns:
      :class:`AttentionOutput` ``(context [n, d_v], alpha [n, m], energies [n, m])``. A fully
      masked row has ``alpha = 0`` and ``context = 0``, where ``jax.nn.dot_product_attention``
      returns the mean of all values, padding included.

    Examples:
      >>> import jax.numpy as jnp
      >>> q = jnp.array([[1.0, 0.0]])
      >>> k = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
      >>> out = dot_product_attention(q, k, mask=jnp.array([True, True, False]))
      >>> [round(a, 4) for a in out.alpha[0].tolist()]
      [0.6698, 0.3302, 0.0]
    """
    queries = _matrix(queries, "queries", "[n, d]")
    keys = _matrix(keys, "keys", "[m, d]")
    values = _values(values, keys)
    if queries.shape[1] != keys.shape[1]:
        raise ValueError(
            f"`queries` and `keys` must have the same feature size d, got queries "
            f"{queries.shape} and keys {keys.shape}."
        )
    n, d = queries.shape
    m = keys.shape[0]
    if scale is None:
        scale = 1.0 / float(np.sqrt(d)) if d > 0 else 1.0
    else:
        check_positive(scale, "scale")
    return _dot(queries, keys, values, scale, _mask(mask, n, m))


@jax.jit
def _dot(queries, keys, values, scale, mask) -> AttentionOutput:
    energies = scale * (queries @ keys.T)
    alpha = _masked_softmax(energies, mask)
    return AttentionOutput(alpha @ values, alpha, energies)


# --------------------------------------------------------------------------------------------
# Hard attention.
# --------------------------------------------------------------------------------------------


def hard_attention(
    alpha: jax.typing.ArrayLike,
    values: jax.typing.ArrayLike,
    *,
    key: jax.Array | None = None,
    straight_through: bool = True,
) -> HardAttentionOutput:
    """Hard attention: one key per query, sampled from ``alpha`` or its argmax.

    With ``key`` (a PRNG key), ``index[i] ~ Categorical(alpha[i])`` (Show, Attend and Tell's
    stochastic hard attention); without, ``index[i] = argmax_j alpha[i, j]`` (ties to the lowest
    index). The context is ``values[index]``.

    Gradients: the choice itself has none. With ``straight_through=True`` (default) the one-hot
    ``alpha`` is ``onehot + alpha - stop_gradient(alpha)``: its value is exactly the one-hot,
    its derivative that of the soft ``alpha`` (the straight-through estimator), so the context
    is differentiable as if it were soft. With ``straight_through=False`` the one-hot and the
    context carry no gradient to ``alpha``; train with ``log_prob`` (REINFORCE) instead, as the
    paper does.

    Args:
      alpha: ``[n, m]`` alignment matrix with non-negative rows summing to 1 (or to 0 for a
        fully masked row), e.g. ``additive_attention(...).alpha``.
      values: ``[m, d_v]``.
      key: None (argmax) or a PRNG key (sampling).
      straight_through: Static bool, see above.

    Returns:
      :class:`HardAttentionOutput` ``(context [n, d_v], alpha [n, m] one-hot, index [n],
      log_prob [n])``. A row of ``alpha`` that sums to 0 selects nothing: index ``-1``, context
      and one-hot 0, ``log_prob`` 0. Entries with ``alpha = 0`` are never sampled.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> alpha = jnp.array([[0.1, 0.7, 0.2], [0.0, 0.0, 0.0]])
      >>> values = jnp.array([[1.0], [2.0], [3.0]])
      >>> out = hard_attention(alpha, values)
      >>> out.index.tolist(), out.context.tolist()
      ([1, -1], [[2.0], [0.0]])
      >>> hard_attention(alpha, values, key=jax.random.key(0)).index.shape
      (2,)
    """
    alpha = _matrix(alpha, "alpha", "[n, m]")
    values = _matrix(values, "values", "[m, d_v]")
    m = alpha.shape[1]
    if values.shape[0] != m:
        raise ValueError(
            f"`values` must have one row per column of `alpha`: alpha {alpha.shape}, "
            f"values {values.shape}."
        )
    if is_concrete(alpha) and alpha.size and bool(jnp.any(alpha < 0)):
        raise ValueError("`alpha` must be non-negative (an alignment matrix).")
    return _hard(alpha, values, key, bool(straight_through))


@functools.partial(jax.jit, static_argnums=3)
def _hard(alpha, values, key, straight_through) -> HardAttentionOutput:
    m = alpha.shape[1]
    row_ok = jnp.sum(alpha, axis=-1) > 0
    positive = alpha > 0
    if key is None:
        index = jnp.argmax(alpha, axis=-1)
    else:
        logits = jnp.where(positive, jnp.log(jnp.where(positive, alpha, 1.0)), -jnp.inf)
        index = jax.random.categorical(key, jax.lax.stop_gradient(logits), axis=-1)
    index = jnp.where(row_ok, index, -1).astype(jnp.int32)
    onehot = jax.nn.one_hot(index, m, dtype=alpha.dtype)  # index -1 gives a zero row
    if straight_through:
        onehot = onehot + (alpha - jax.lax.stop_gradient(alpha))
    picked = jnp.take_along_axis(alpha, jnp.maximum(index, 0)[:, None], axis=-1)[:, 0]
    safe = jnp.where(row_ok, picked, 1.0)
    log_prob = jnp.where(row_ok, jnp.log(safe), 0.0)
    return HardAttentionOutput(onehot @ values, onehot, index, log_prob)


# --------------------------------------------------------------------------------------------
# The doubly-stochastic penalty.
# --------------------------------------------------------------------------------------------


def doubly_stochastic_penalty(
    alphas: jax.typing.ArrayLike,
    *,
    reduction: str = "sum",
    target: jax.typing.ArrayLike = 1.0,
    step_mask: jax.typing.ArrayLike | None = None,
    region_mask: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """Show, Attend and Tell's doubly-stochastic attention penalty for one caption.

    ``sum_j (target - sum_t alpha_tj)^2`` over the regions ``j`` (``reduction="sum"``, eq. 14 of
    the paper), or that sum divided by the number of regions (``reduction="mean"``). It pushes
    the attention to visit every region about ``target`` times over the caption. Multiply by the
    weight ``lambda`` yourself.

    Conventions differ in the published code, so pick the one you compare with:

    * the paper (Xu et al. 2015, eq. 14): **summed** over regions;
    * the authors' Theano code (``arctic-captions``, ``alpha_c * ((1 - alphas.sum(0))**2)
      .sum(0).mean()`` on ``alphas: [T, B, L]``): **averaged** over regions (and summed over the
      batch), with the padded decoding steps of short captions counted in ``sum_t``;
    * the popular PyTorch tutorial (``((1 - alphas.sum(dim=1))**2).mean()``): **averaged** over
      regions and over the batch, padded steps excluded (their alphas are zeros).

    With 196 regions, "sum" is 196 times "mean": the same ``lambda`` means different things.
    Here padded steps are excluded through ``step_mask``; batch with ``jax.vmap`` and reduce the
    batch yourself.

    Args:
      alphas: ``[t, m]`` attention of each decoding step ``t`` over the ``m`` regions.
      reduction: ``"sum"`` (default, the paper) or ``"mean"`` over the valid regions.
      target: Desired total attention per region (1 in the paper; ``t / m`` makes the target
        reachable when captions are shorter than the number of regions).
      step_mask: None or ``[t]`` booleans, True for real (not padded) decoding steps.
      region_mask: None or ``[m]`` booleans, True for real (not padded) regions.

    Returns:
      A scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> alphas = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # region 2 never attended
      >>> doubly_stochastic_penalty(alphas).item(), doubly_stochastic_penalty(
      ...     alphas, reduction="mean").item()
      (1.0, 0.3333333432674408)
    """
    alphas = _matrix(alphas, "alphas", "[t, m]")
    t, m = alphas.shape
    target = as_float_array(target, "target")
    if target.ndim != 0:
        raise ValueError(f"`target` must be a scalar, got shape {target.shape}.")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"`reduction` must be 'sum' or 'mean', got {reduction!r}.")
    if step_mask is not None:
        step_mask = jnp.asarray(step_mask)
        if step_mask.shape != (t,) or step_mask.dtype != jnp.bool_:
            raise ValueError(
                f"`step_mask` must be booleans of shape [t]={(t,)}, got {step_mask.dtype} "
                f"{step_mask.shape}."
            )
    if region_mask is not None:
        region_mask = jnp.asarray(region_mask)
        if region_mask.shape != (m,) or region_mask.dtype != jnp.bool_:
            raise ValueError(
                f"`region_mask` must be booleans of shape [m]={(m,)}, got {region_mask.dtype} "
                f"{region_mask.shape}."
            )
    return _penalty(alphas, target, step_mask, region_mask, reduction)


@functools.partial(jax.jit, static_argnums=4)
def _penalty(alphas, target, step_mask, region_mask, reduction):
    if step_mask is not None:
        alphas = jnp.where(step_mask[:, None], alphas, 0.0)
    per_region = (target - jnp.sum(alphas, axis=0)) ** 2
    if region_mask is None:
        total = jnp.sum(per_region)
        count = alphas.shape[1]
    else:
        total = jnp.sum(jnp.where(region_mask, per_region, 0.0))
        count = jnp.maximum(jnp.sum(region_mask), 1)
    if reduction == "sum":
        return total
    return total / jnp.maximum(count, 1)
