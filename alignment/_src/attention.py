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

Masked keys are never read. A key (and its value) that no query may attend is replaced by zeros
before any arithmetic, so whatever it holds (NaN, inf, 1e30) changes neither outputs nor
gradients; a masked energy never enters an ``exp`` (double ``where``) and is reported as
``-inf`` in ``energies``. With an ``[n, m]`` mask, a key that some query may attend is real
data: a NaN in it propagates (to every row of the product, as NaN always does in a matrix
product). NaN in unmasked data propagates to the outputs and gradients.

Fully masked rows: a query with no key to attend gets ``alpha[i] = 0`` (the row sums to 0, not
1), ``context[i] = 0`` and zero gradients, never NaN: a documented, recognisable value (a
softmax over all ``-inf`` is NaN; the large-negative fill used by
``jax.nn.dot_product_attention`` and most frameworks instead spreads the row uniformly over the
padding, which silently averages padded values into the context).

Numerics: the softmax is stabilised by the row maximum over the unmasked keys (held constant in
the derivative, as in ``jax.nn.softmax``); an unmasked energy of ``+inf`` (or beyond the float
range) takes the whole row, as in the limit. float16/bfloat16 inputs are computed in float32
and the outputs cast back to the input dtype. Dot products are taken on rows rescaled by exact
powers of two, so huge queries and keys (``1e30``) do not overflow into ``inf - inf``.

Bad input (see ``docs/conventions.md``): wrong ranks or sizes, complex or ``None`` arrays,
non-boolean masks, array-valued ``scale``/``target`` and unknown static options raise
``ValueError`` naming the argument, eagerly and under ``jit``/``vmap``. Concrete bad values
(``scale <= 0``, negative ``alpha``, negative ``target``) raise; under ``jit`` they make every
floating output NaN (integer indices ``-1``).

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

from alignment._src import checks
from alignment._src.checks import as_float_array, is_concrete
from alignment._src.numerics import pow2_products, pow2_rows

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
      energies: ``[n, m]`` the scores ``e_ij`` before the softmax; ``-inf`` at masked entries.
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
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"`{name}` must be non-empty {what}, got shape {x.shape}.")
    return x


def _read_keys(keys, values, mask):
    """Keys and values that no query may attend, replaced by zeros before any arithmetic."""
    if mask is None:
        return keys, values
    read = jnp.any(mask, axis=0)[:, None]
    return jnp.where(read, keys, 0.0), jnp.where(read, values, 0.0)


def _soft_output(energies, values, mask, dtype, bad=None) -> AttentionOutput:
    alpha = _masked_softmax(energies, mask)
    if mask is not None:
        energies = jnp.where(mask, energies, -jnp.inf)
    out = AttentionOutput(alpha @ values, alpha, energies)
    out = checks.nan_if(bad, out)
    return AttentionOutput(*(x.astype(dtype) for x in out))


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
      Array ``alpha`` of shape ``[n, m]`` in the input dtype (computed in float32 for
      float16/bfloat16): rows sum to 1, or to 0 where every entry is masked (with a zero
      gradient there). An unmasked ``+inf`` takes its whole row.

    Bad input: a non-2-D, empty or complex ``energies`` or a non-boolean ``mask`` of the wrong
    shape raise ``ValueError``. Masked entries are never read (NaN, inf there change nothing);
    NaN at an unmasked entry propagates to its row. See ``docs/conventions.md``.

    Examples:
      >>> import jax.numpy as jnp
      >>> e = jnp.array([[0.0, 0.0, 5.0], [1.0, 2.0, 3.0]])
      >>> masked_softmax(e, mask=jnp.array([[True, True, False], [False, False, False]])).tolist()
      [[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]]
    """
    energies = _matrix(energies, "energies", "[n, m]")
    return _masked_softmax_jit(energies, _mask(mask, *energies.shape))


def _masked_softmax(e: jax.Array, mask: jax.Array | None) -> jax.Array:
    """The softmax in the compute dtype of ``e`` (float32 for float16/bfloat16)."""
    e = e.astype(checks.compute_dtype(e.dtype))
    big = jnp.finfo(e.dtype).max
    if mask is None:
        return jax.nn.softmax(jnp.clip(e, -big, big), axis=-1)
    # Double where: masked energies are replaced before any arithmetic, so neither their value
    # nor their derivative can overflow (inf * 0 = NaN in the backward pass). The clip makes an
    # unmasked +inf take the whole row (the limit) instead of giving inf - inf.
    e = jnp.clip(jnp.where(mask, e, 0.0), -big, big)
    top = jnp.max(jnp.where(mask, e, -jnp.inf), axis=-1, keepdims=True)
    top = jax.lax.stop_gradient(jnp.where(jnp.isfinite(top), top, 0.0))
    z = jnp.where(mask, jnp.exp(jnp.where(mask, e, top) - top), 0.0)
    total = jnp.sum(z, axis=-1, keepdims=True)
    return z / jnp.where(total > 0, total, 1.0)


def _softmax_out(e: jax.Array, mask: jax.Array | None) -> jax.Array:
    return _masked_softmax(e, mask).astype(e.dtype)


_masked_softmax_jit = jax.jit(_softmax_out)


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
      :class:`AttentionOutput` ``(context [n, d_v], alpha [n, m], energies [n, m])`` in the
      input dtype; ``energies`` is ``-inf`` at masked entries. A fully masked row has
      ``alpha = 0`` and ``context = 0`` (see the module docstring).

    Bad input: ranks, sizes, empty or complex arrays, ``None`` for a required array and a
    non-boolean ``mask`` raise ``ValueError`` naming the argument (also under ``jit``). Keys and
    values no query may attend are never read; NaN in attended data propagates. See
    ``docs/conventions.md``.

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
    dtype = jnp.result_type(queries, keys, values, w, u, v, *([] if bias is None else [bias]))
    ct = checks.compute_dtype(dtype)
    queries, keys, values, w, u, v = (x.astype(ct) for x in (queries, keys, values, w, u, v))
    keys, values = _read_keys(keys, values, mask)
    hidden = (queries @ w.T)[:, None, :] + (keys @ u.T)[None, :, :]  # [n, m, a]
    if bias is not None:
        hidden = hidden + bias.astype(ct)
    energies = jnp.tanh(hidden) @ v
    return _soft_output(energies, values, mask, dtype)


def dot_product_attention(
    queries: jax.typing.ArrayLike,
    keys: jax.typing.ArrayLike,
    values: jax.typing.ArrayLike | None = None,
    *,
    scale: jax.typing.ArrayLike | None = None,
    mask: jax.typing.ArrayLike | None = None,
) -> AttentionOutput:
    """Scaled dot-product attention ``e_ij = scale * <q_i, k_j>`` (one head).

    Args:
      queries: ``[n, d]``.
      keys: ``[m, d]``.
      values: ``[m, d_v]`` or None (then ``keys``).
      scale: positive scalar, default ``1 / sqrt(d)``; traced (a learnable inverse temperature
        works). The temperature-like parameters of the library are compared side by side in
        ``docs/conventions.md``.
      mask: None, ``[m]`` or ``[n, m]`` booleans, True where a key may be attended.

    Returns:
      :class:`AttentionOutput` ``(context [n, d_v], alpha [n, m], energies [n, m])`` in the
      input dtype; ``energies`` is ``-inf`` at masked entries. A fully masked row has
      ``alpha = 0`` and ``context = 0``, where ``jax.nn.dot_product_attention`` returns the mean
      of all values, padding included.

    Bad input: ranks, sizes, empty or complex arrays, a non-boolean ``mask`` and an
    array-valued ``scale`` raise ``ValueError`` (also under ``jit``); a concrete ``scale`` that
    is not finite and positive raises, under ``jit`` it makes every output NaN. Keys and values
    no query may attend are never read; NaN in attended data propagates. See
    ``docs/conventions.md``.

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
        scale = 1.0 / float(np.sqrt(d))
    else:
        checks.scalar(scale, "scale", "positive")
    return _dot(queries, keys, values, scale, _mask(mask, n, m))


@jax.jit
def _dot(queries, keys, values, scale, mask) -> AttentionOutput:
    dtype = jnp.result_type(queries, keys, values)
    ct = checks.compute_dtype(dtype)
    queries, keys, values = (x.astype(ct) for x in (queries, keys, values))
    scale = jnp.asarray(scale, ct)
    keys, values = _read_keys(keys, values, mask)
    xq, eq = pow2_rows(queries)
    xk, ek = pow2_rows(keys)
    energies = scale * pow2_products(xq @ xk.T, eq, ek, None, queries.shape[1])
    return _soft_output(energies, values, mask, dtype, checks.invalid_scalar(scale, "positive"))


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
      log_prob [n])``, floats in the input dtype. A row of ``alpha`` that sums to 0 selects
      nothing: index ``-1``, context and one-hot 0, ``log_prob`` 0. Entries with ``alpha = 0``
      are never sampled, and values no row can select are never read.

    Bad input: ranks, sizes, empty or complex arrays and a non-bool ``straight_through`` raise
    ``ValueError`` (also under ``jit``); concrete negative ``alpha`` raises, traced negative
    ``alpha`` gives NaN floats and index ``-1``. A NaN in a row of ``alpha`` propagates to that
    row's ``context`` and ``log_prob`` (index ``-1``). See ``docs/conventions.md``.

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
    if is_concrete(alpha) and bool(jnp.any(alpha < 0)):
        raise ValueError("`alpha` must be non-negative (an alignment matrix).")
    checks.static_choice(straight_through, "straight_through", (False, True))
    return _hard(alpha, values, key, bool(straight_through))


@functools.partial(jax.jit, static_argnums=3)
def _hard(alpha, values, key, straight_through) -> HardAttentionOutput:
    dtype = jnp.result_type(alpha, values)
    ct = checks.compute_dtype(dtype)
    alpha, values = alpha.astype(ct), values.astype(ct)
    m = alpha.shape[1]
    bad = jnp.any(alpha < 0)  # traced negative weights: the NaN policy
    # Values of keys no query can select (alpha = 0 in every row) are never read.
    values = jnp.where(jnp.any(alpha != 0, axis=0)[:, None], values, 0.0)
    row_ok = jnp.sum(alpha, axis=-1) > 0  # False for an all-zero or a NaN row
    positive = alpha > 0
    if key is None:
        index = jnp.argmax(alpha, axis=-1)
    else:
        logits = jnp.where(positive, jnp.log(jnp.where(positive, alpha, 1.0)), -jnp.inf)
        index = jax.random.categorical(key, jax.lax.stop_gradient(logits), axis=-1)
    index = jnp.where(row_ok, index, -1).astype(jnp.int32)
    onehot = jax.nn.one_hot(index, m, dtype=ct)  # index -1 gives a zero row
    if straight_through:
        onehot = onehot + (alpha - jax.lax.stop_gradient(alpha))
    picked = jnp.take_along_axis(alpha, jnp.maximum(index, 0)[:, None], axis=-1)[:, 0]
    safe = jnp.where(row_ok, picked, 1.0)
    log_prob = jnp.where(row_ok, jnp.log(safe), 0.0)
    # NaN in a row of alpha (real data) propagates to that row's context and log_prob.
    poison = jnp.sum(jnp.where(jnp.isnan(alpha), alpha, 0.0), axis=-1)
    out = HardAttentionOutput(onehot @ values + poison[:, None], onehot, index, log_prob + poison)
    out = checks.nan_if(bad, out)
    return out._replace(
        context=out.context.astype(dtype),
        alpha=out.alpha.astype(dtype),
        log_prob=out.log_prob.astype(dtype),
    )


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
      A scalar in the input dtype (accumulated in float32 for float16/bfloat16).

    Bad input: a non-2-D, empty or complex ``alphas``, masks of the wrong shape or dtype, an
    unknown ``reduction`` and an array-valued ``target`` raise ``ValueError`` (also under
    ``jit``); a concrete negative or non-finite ``target`` (or ``region_mask`` masking every
    region with ``reduction="mean"``) raises, under ``jit`` it gives NaN. Padded steps and regions
    are never read; NaN in the valid ``alphas`` propagates. See ``docs/conventions.md``.

    Examples:
      >>> import jax.numpy as jnp
      >>> alphas = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # region 2 never attended
      >>> doubly_stochastic_penalty(alphas).item(), doubly_stochastic_penalty(
      ...     alphas, reduction="mean").item()
      (1.0, 0.3333333432674408)
    """
    alphas = _matrix(alphas, "alphas", "[t, m]")
    t, m = alphas.shape
    checks.scalar(target, "target", "nonnegative")
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
        if reduction == "mean" and is_concrete(region_mask) and not bool(jnp.any(region_mask)):
            raise ValueError("`region_mask` masks every region: the mean over regions is empty.")
    return _penalty(alphas, target, step_mask, region_mask, reduction)


@functools.partial(jax.jit, static_argnums=4)
def _penalty(alphas, target, step_mask, region_mask, reduction):
    dtype = alphas.dtype
    ct = checks.compute_dtype(dtype)
    alphas = alphas.astype(ct)
    target = jnp.asarray(target, ct)
    bad = checks.invalid_scalar(target, "nonnegative")
    # Padded steps and regions are replaced before any arithmetic (double where).
    if step_mask is not None:
        alphas = jnp.where(step_mask[:, None], alphas, 0.0)
    if region_mask is not None:
        alphas = jnp.where(region_mask[None, :], alphas, 0.0)
    per_region = (target - jnp.sum(alphas, axis=0)) ** 2
    if region_mask is None:
        total = jnp.sum(per_region)
        count = jnp.asarray(alphas.shape[1], ct)
    else:
        total = jnp.sum(jnp.where(region_mask, per_region, 0.0))
        count = jnp.sum(region_mask).astype(ct)
        if reduction == "mean":
            bad = bad | (count == 0)
    result = total if reduction == "sum" else total / jnp.maximum(count, 1)
    return checks.nan_if(bad, result).astype(dtype)
