"""CTC forced alignment: the Viterbi best path of a label sequence through frame posteriors.

Connectionist Temporal Classification (Graves et al. 2006) aligns ``t`` frames with ``l <= t``
labels by letting every frame emit either a label or a *blank*; a path ``pi`` (one class per
frame) *collapses* to a label sequence by merging repeats and then removing blanks, so
``a a - b - b`` collapses to ``a b b``. Two equal consecutive labels need a blank between them,
so a path exists only when ``t >= l + (number of repeated consecutive labels)``.

* The **CTC loss** is ``-log sum_pi prod_k p_k(pi_k)`` over the paths that collapse to the
  labels. Use ``optax.ctc_loss`` (batched, with paddings) for it: this library does not
  re-implement it, and does not import optax.
* :func:`ctc_forced_alignment` (what optax lacks) returns the single most probable path,
  ``max_pi sum_k log p_k(pi_k)``, and the frame-to-label alignment it induces: which label (or
  blank) each frame emits. Its log-probability is at most the CTC log-likelihood
  (``-optax.ctc_loss``), the log of a sum over the same paths.

The recursion runs over the ``2 l + 1`` states of the blank-extended label sequence
``(-, y_1, -, y_2, ..., y_l, -)`` with the usual CTC transitions (stay; advance by one; skip a
blank between two different labels), as a ``lax.scan`` over frames storing ``[t, 2 l + 1]``
int8 back-pointers, then a reverse ``lax.scan`` to read the path. Cost ``O(t l)`` time and
memory; jittable; batch padded sequences with ``jax.vmap`` and ``lengths``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from alignment._src import checks

__all__ = ["ForcedAlignmentOutput", "ctc_forced_alignment"]


class ForcedAlignmentOutput(NamedTuple):
    """Output of :func:`ctc_forced_alignment` (was ``ForcedAlignment``).

    Attributes:
      log_prob: ``[]`` log-probability of the best path, ``sum_k log_probs[k, tokens[k]]`` over
        the valid frames (``-inf`` if no path exists; NaN for bad traced input).
      tokens: ``[t]`` int32 class emitted by each frame (``blank_id`` for blank frames); ``-1``
        on padding frames and everywhere when no path exists or the input is bad.
      label_index: ``[t]`` int32 position in ``labels`` of the label each frame emits; ``-1``
        for blank frames, padding frames, and when no path exists or the input is bad.
      frame_log_probs: ``[t]`` ``log_probs[k, tokens[k]]`` per frame (a per-frame confidence, as
        torchaudio's ``forced_align`` scores); 0 on padding frames; NaN for bad input.
    """

    log_prob: jax.Array
    tokens: jax.Array
    label_index: jax.Array
    frame_log_probs: jax.Array


def _as_labels(labels) -> jax.Array:
    return checks.as_int_array(labels, "labels", ndim=1, what="[l]").astype(jnp.int32)


def ctc_forced_alignment(
    log_probs: jax.typing.ArrayLike,
    labels: jax.typing.ArrayLike,
    *,
    blank_id: int = 0,
    lengths: tuple | None = None,
) -> ForcedAlignmentOutput:
    """Viterbi forced alignment of ``labels`` to per-frame log-posteriors, with a CTC blank.

    Args:
      log_probs: ``[t, c]`` per-frame log-probabilities over ``c`` classes, blank included (a
        ``log_softmax`` output). Any real scores are accepted: the path maximises their sum.
      labels: ``[l]`` integer label sequence, without blanks (``l`` may be 0).
      blank_id: Static int in ``[0, c)``, the blank class.
      lengths: None or ``(t_valid, l_valid)`` integer scalars, ``1 <= t_valid <= t`` and
        ``0 <= l_valid <= l``: only ``log_probs[:t_valid]`` and ``labels[:l_valid]`` are real,
        the rest is padding (never read, whatever it holds). Integers, or traced int scalars
        under ``jax.vmap`` for padded batches.

    Returns:
      :class:`ForcedAlignmentOutput` ``(log_prob, tokens [t], label_index [t],
      frame_log_probs [t])``, floats in ``log_probs``' dtype. The gradient of ``log_prob`` with
      respect to ``log_probs`` is the one-hot of the path (``tokens``) on the valid frames.

    Numerics: ties between paths go to the one that stays longest in each state (then advances
    by one rather than skipping), deterministic but arbitrary. ``-inf`` log-probabilities are
    fine (forbidden classes). float16/bfloat16 are computed in float32.

    Bad input: shapes, dtypes (complex or ``None`` log_probs, non-integer labels), a
    ``blank_id`` outside ``[0, c)`` and array-valued or non-integer ``lengths`` raise
    ``ValueError`` naming the argument, also under ``jit``. Concrete lengths out of range,
    labels equal to the blank or outside ``[0, c)``, and labels too long for the frames
    (``t_valid < l_valid + repeats``) raise ``ValueError``. Traced (under ``jit``/``vmap``):
    lengths out of range or a valid label that is the blank or outside ``[0, c)`` make
    ``log_prob`` and ``frame_log_probs`` NaN and ``tokens``, ``label_index`` -1; labels too
    long for the frames are no error but no path: ``log_prob = -inf``, -1 everywhere. NaN in a
    valid frame of ``log_probs`` gives the same NaN / -1 output (and a NaN gradient); padding
    frames and labels never matter. See ``docs/conventions.md``.

    Examples:
      >>> import jax.numpy as jnp
      >>> log_probs = jnp.log(jnp.array(
      ...     [[0.1, 0.8, 0.1], [0.6, 0.2, 0.2], [0.1, 0.1, 0.8], [0.1, 0.2, 0.7]]))
      >>> out = ctc_forced_alignment(log_probs, jnp.array([1, 2]))
      >>> out.tokens.tolist(), out.label_index.tolist()
      ([1, 0, 2, 2], [0, -1, 1, 1])
    """
    log_probs = checks.as_float_array(log_probs, "log_probs")
    if log_probs.ndim != 2 or 0 in log_probs.shape:
        raise ValueError(
            f"`log_probs` must be a non-empty 2-D array [t, c] (frames x classes), got shape "
            f"{log_probs.shape}."
        )
    labels = _as_labels(labels)
    t, c = log_probs.shape
    l_max = labels.shape[0]
    blank_id = checks.static_int(blank_id, "blank_id", minimum=0)
    if not blank_id < c:
        raise ValueError(
            f"`blank_id`={blank_id} is outside [0, c) for log_probs of shape {(t, c)}."
        )
    if lengths is None:
        t_valid, l_valid, bad = t, l_max, None
    else:
        t_valid, l_valid, bad = checks.lengths_bounded(
            lengths, ((1, t), (0, l_max)), ("t_valid", "l_valid")
        )
    if isinstance(t_valid, int) and isinstance(l_valid, int) and checks.is_concrete(labels):
        _check_labels(np.asarray(labels)[:l_valid], c, blank_id, t_valid)
    bad = jnp.asarray(False) if bad is None else bad
    t_valid = jnp.asarray(t_valid, jnp.int32)
    l_valid = jnp.asarray(l_valid, jnp.int32)
    return _viterbi(log_probs, labels, t_valid, l_valid, bad, blank_id=blank_id)


def _check_labels(labels: np.ndarray, c: int, blank_id: int, t_valid: int) -> None:
    bad = (labels < 0) | (labels >= c)
    if bad.any():
        raise ValueError(
            f"`labels` must lie in [0, {c}) for {c} classes, got {labels[bad].tolist()} "
            f"at positions {np.nonzero(bad)[0].tolist()}."
        )
    if (labels == blank_id).any():
        raise ValueError(
            f"`labels` must not contain the blank (blank_id={blank_id}), found at positions "
            f"{np.nonzero(labels == blank_id)[0].tolist()}."
        )
    repeats = int(np.sum(labels[1:] == labels[:-1])) if labels.size > 1 else 0
    if t_valid < labels.size + repeats:
        raise ValueError(
            f"labels too long for the frames: {labels.size} labels with {repeats} repeated "
            f"neighbours need at least {labels.size + repeats} frames, got t_valid={t_valid}."
        )


@functools.partial(jax.jit, static_argnames="blank_id")
def _viterbi(log_probs, labels, t_valid, l_valid, bad, blank_id) -> ForcedAlignmentOutput:
    dtype = log_probs.dtype
    log_probs = log_probs.astype(checks.compute_dtype(dtype))
    t, c = log_probs.shape
    l_max = labels.shape[0]
    s_max = 2 * l_max + 1
    neg_inf = jnp.array(-jnp.inf, log_probs.dtype)
    # Traced bad values: a valid label that is the blank or no class; NaN in a valid frame.
    label_real = jnp.arange(l_max) < l_valid
    bad = bad | jnp.any(label_real & ((labels < 0) | (labels >= c) | (labels == blank_id)))
    frame_real = jnp.arange(t) < t_valid
    nan_data = jnp.any(jnp.isnan(log_probs) & frame_real[:, None])
    labels = jnp.where(label_real, labels, blank_id)  # padding labels are never read
    states = jnp.arange(s_max)
    odd = states % 2 == 1
    ext = jnp.full((s_max,), blank_id, jnp.int32)
    if l_max:
        ext = ext.at[1::2].set(jnp.clip(labels, 0, c - 1))
    s_valid = 2 * l_valid + 1
    state_ok = states < s_valid
    prev2 = jnp.concatenate([jnp.full((2,), -1, jnp.int32), ext])[:s_max]
    can_skip = odd & (states >= 3) & (ext != prev2)
    lp = jax.lax.stop_gradient(log_probs)
    lp = jnp.where(frame_real[:, None], lp, 0.0)  # padding frames are never read
    emit = jnp.take(lp, ext, axis=1)  # [t, s_max]

    init = jnp.where(state_ok & (states <= 1), emit[0], neg_inf)

    def forward(delta, k):
        stay = delta
        shifted = jnp.concatenate([jnp.full((2,), neg_inf), delta])
        step = shifted[1 : s_max + 1]  # delta[s - 1]
        skip = jnp.where(can_skip, shifted[:s_max], neg_inf)  # delta[s - 2]
        cand = jnp.stack([stay, step, skip])  # [3, s]
        back = jnp.argmax(cand, axis=0).astype(jnp.int8)  # ties: stay, then step
        new = jnp.where(state_ok, jnp.max(cand, axis=0) + emit[k], neg_inf)
        active = k < t_valid
        return jnp.where(active, new, delta), jnp.where(active, back, jnp.int8(0))

    delta, backs = jax.lax.scan(forward, init, jnp.arange(1, t))
    backs = jnp.concatenate([jnp.zeros((1, s_max), jnp.int8), backs])  # [t, s]
    last = s_valid - 1
    end_scores = jnp.stack([delta[last], jnp.where(l_valid > 0, delta[last - 1], neg_inf)])
    end = last - jnp.argmax(end_scores)
    feasible = ~jnp.all(end_scores == -jnp.inf)  # NaN is not "no path"

    def backward(state, k):
        out = jnp.where(k < t_valid, state, -1)
        return state - backs[k, state].astype(state.dtype), out

    _, path = jax.lax.scan(backward, end.astype(jnp.int32), jnp.arange(t - 1, -1, -1))
    path = path[::-1]
    valid = (path >= 0) & feasible
    path_tokens = jnp.where(valid, ext[jnp.maximum(path, 0)], -1)
    frame_lp = jnp.take_along_axis(log_probs, jnp.maximum(path_tokens, 0)[:, None], axis=1)[:, 0]
    frame_lp = jnp.where(valid, frame_lp, 0.0)
    valid = valid & ~nan_data
    tokens = jnp.where(valid, path_tokens, -1)
    label_index = jnp.where(valid & (path % 2 == 1), (path - 1) // 2, -1)
    log_prob = jnp.where(feasible, jnp.sum(frame_lp), neg_inf)
    # NaN in a valid frame: NaN value and (multiplicatively) NaN gradient, never -inf or a path.
    poison = jnp.where(nan_data, jnp.nan, 1.0).astype(log_probs.dtype)
    out = ForcedAlignmentOutput(
        (log_prob * poison).astype(dtype),
        tokens.astype(jnp.int32),
        label_index.astype(jnp.int32),
        (frame_lp * poison).astype(dtype),
    )
    return checks.nan_if(bad, out)
