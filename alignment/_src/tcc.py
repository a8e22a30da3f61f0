"""Temporal Cycle-Consistency (TCC) losses and the metrics reported with them.

Dwibedi et al. (2019) learn frame embeddings by cycling between two videos: frame ``u_i`` of
the first picks its **soft nearest neighbour** in the second,

    ``alpha_ij = softmax_j(sim(u_i, v_j))``,   ``v~_i = sum_j alpha_ij v_j``,

which then looks back at the first sequence,

    ``beta_ik = softmax_k(sim(v~_i, u_k))``,

and the loss asks the cycle to return to ``i``:

* ``"classification"`` (cycle-back classification): cross-entropy of ``beta_i`` against the
  one-hot of ``i`` (optionally label-smoothed);
* ``"regression_mse"`` (cycle-back regression): ``(t_i - mu_i)^2`` with
  ``mu_i = sum_k beta_ik t_k`` the expected return time;
* ``"regression_mse_var"``: ``(t_i - mu_i)^2 / sigma_i^2 + lambda log sigma_i^2`` with
  ``sigma_i^2 = sum_k beta_ik (t_k - mu_i)^2``, so that a confident (narrow) return is asked to
  be accurate and a broad one is excused.

Each is averaged over the frames ``i`` of ``u`` (:func:`tcc_loss`); :func:`tcc_batch_loss`
averages over every ordered pair of distinct sequences of a batch, as the published code does.

Conventions (pinned to the published code, google-research/google-research ``tcc``, and not to
the lecture slide, whose formula is the special case noted):

* ``sim(a, b) = -||a - b||^2 / (d * temperature)`` (``similarity="l2"``, default) or
  ``a . b / (d * temperature)`` (``similarity="dot"``; the published code calls this "cosine"
  but does not normalise the embeddings: normalise them yourself for a cosine). The division by
  the embedding size ``d`` is the code's; the slide's ``exp(-||u_i - v_j||^2)`` is
  ``temperature = 1 / d``. Default ``temperature = 0.1`` as in the code's configs.
* Times ``t_k`` (``steps``) default to ``k / n`` for ``n`` frames: the code's
  ``normalize_indices=True`` when every frame of the video is used. Pass the frames' own times
  (e.g. sampled frame indices divided by the video length) otherwise.
* ``regression_mse_var`` uses ``lambda log sigma^2`` (the code; default ``lambda = 0.001``).
  The paper writes ``lambda log sigma``: its ``lambda`` is twice this one.
* Distances are computed from exact differences (``[n, m, d]``), not the expansion
  ``|a|^2 + |b|^2 - 2 a.b``: identical frames are at distance exactly 0.

Numerics: the published ``regression_mse_var`` takes ``log`` of the variance computed in the
probability domain; when the cycle-back distribution collapses onto one frame (identical or
well-separated sequences at a low temperature) the variance underflows to 0 and the loss is
``0 * inf = NaN``. Here ``log sigma^2`` is a ``logsumexp`` of ``log beta_k + log (t_k - mu)^2``
and the error term is ``exp(log err^2 - log sigma^2)``, ``0`` when the return is exact: the loss
and its gradient stay finite there (it still decreases without bound as the alignment sharpens,
which is the nature of that objective). Warning from the TCC authors: an encoder that can see
each frame's position (positional encodings, padding patterns) solves the loss trivially.

Metrics (no gradients; compute them on held-out embeddings):

* :func:`cycle_consistency_accuracy`: fraction of frames whose hard nearest-neighbour cycle
  ``i -> argmin_j ||u_i - v_j|| -> argmin_k ||v_j - u_k||`` returns to ``i`` (within
  ``tolerance`` frames).
* :func:`kendalls_tau`: Kendall's tau-b between the frame order of ``u`` and the order of its
  nearest neighbours in ``v`` (what the TCC code reports, via ``scipy.stats.kendalltau``).

References:
  Dwibedi, Aytar, Tompson, Sermanet & Zisserman, "Temporal Cycle-Consistency Learning",
  CVPR 2019.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from alignment._src.checks import as_float_array, check_positive, is_concrete, point_pair

__all__ = [
    "CycleBackOutput",
    "cycle_back",
    "cycle_consistency_accuracy",
    "kendalls_tau",
    "soft_nearest_neighbor",
    "tcc_batch_loss",
    "tcc_loss",
]

_VARIANTS = ("classification", "regression_mse", "regression_mse_var")
_SIMILARITIES = ("l2", "dot")


class CycleBackOutput(NamedTuple):
    """Output of :func:`cycle_back`.

    Attributes:
      logits: ``[n, n]`` similarities ``sim(v~_i, u_k)`` (the cycle-back logits).
      beta: ``[n, n]`` cycle-back distribution ``softmax_k(logits[i])``.
      alpha: ``[n, m]`` soft nearest-neighbour weights of ``u_i`` over ``v``.
      neighbors: ``[n, d]`` soft nearest neighbours ``v~_i``.
    """

    logits: jax.Array
    beta: jax.Array
    alpha: jax.Array
    neighbors: jax.Array


# --------------------------------------------------------------------------------------------
# Validation.
# --------------------------------------------------------------------------------------------


def _pair(u, v) -> tuple[jax.Array, jax.Array]:
    u, v = point_pair(u, v, ("u", "v"), feature="embedding", non_empty=True)
    if u.shape[1] == 0:
        raise ValueError(f"`u` and `v` must be non-empty, got shapes {u.shape} and {v.shape}.")
    return u, v


def _check_similarity(similarity: str) -> None:
    if similarity not in _SIMILARITIES:
        raise ValueError(f"`similarity` must be one of {_SIMILARITIES}, got {similarity!r}.")


def _similarity(a: jax.Array, b: jax.Array, temperature, similarity: str) -> jax.Array:
    d = a.shape[1]
    if similarity == "l2":
        diff = a[:, None, :] - b[None, :, :]
        raw = -jnp.sum(diff * diff, axis=-1)
    else:
        raw = a @ b.T
    return raw / (d * temperature)


# --------------------------------------------------------------------------------------------
# The cycle.
# --------------------------------------------------------------------------------------------


def soft_nearest_neighbor(
    u: jax.typing.ArrayLike,
    v: jax.typing.ArrayLike,
    *,
    temperature: jax.typing.ArrayLike = 0.1,
    similarity: str = "l2",
) -> tuple[jax.Array, jax.Array]:
    """Soft nearest neighbours in ``v`` of the frames of ``u``.

    Args:
      u: ``[n, d]`` frame embeddings of the first sequence.
      v: ``[m, d]`` frame embeddings of the second.
      temperature: positive scalar (traced; differentiable).
      similarity: ``"l2"`` or ``"dot"`` (static; see the module docstring).

    Returns:
      ``(neighbors [n, d], alpha [n, m])`` with ``neighbors = alpha @ v`` and rows of ``alpha``
      summing to 1.

    Examples:
      >>> import jax.numpy as jnp
      >>> u = jnp.array([[0.0], [1.0]])
      >>> nn, alpha = soft_nearest_neighbor(u, u, temperature=0.01)
      >>> nn.round(3).tolist()
      [[0.0], [1.0]]
    """
    u, v = _pair(u, v)
    _check_similarity(similarity)
    check_positive(temperature, "temperature")
    return _snn(u, v, temperature, similarity)


@functools.partial(jax.jit, static_argnums=3)
def _snn(u, v, temperature, similarity):
    alpha = jax.nn.softmax(_similarity(u, v, temperature, similarity), axis=-1)
    return alpha @ v, alpha


def cycle_back(
    u: jax.typing.ArrayLike,
    v: jax.typing.ArrayLike,
    *,
    temperature: jax.typing.ArrayLike = 0.1,
    similarity: str = "l2",
) -> CycleBackOutput:
    """The cycle ``u -> v -> u``: soft nearest neighbours in ``v``, then their logits over ``u``.

    Args:
      u: ``[n, d]``.
      v: ``[m, d]``.
      temperature: positive scalar, used in both directions.
      similarity: ``"l2"`` or ``"dot"``.

    Returns:
      :class:`CycleBackOutput` ``(logits [n, n], beta [n, n], alpha [n, m], neighbors [n, d])``.

    Examples:
      >>> import jax.numpy as jnp
      >>> u = jnp.arange(4.0)[:, None]
      >>> out = cycle_back(u, u + 0.1, temperature=0.01)
      >>> out.beta.argmax(axis=1).tolist()
      [0, 1, 2, 3]
    """
    u, v = _pair(u, v)
    _check_similarity(similarity)
    check_positive(temperature, "temperature")
    return _cycle_back_jit(u, v, temperature, similarity)


def _cycle_back(u, v, temperature, similarity) -> CycleBackOutput:
    alpha = jax.nn.softmax(_similarity(u, v, temperature, similarity), axis=-1)
    neighbors = alpha @ v
    logits = _similarity(neighbors, u, temperature, similarity)
    return CycleBackOutput(logits, jax.nn.softmax(logits, axis=-1), alpha, neighbors)


_cycle_back_jit = jax.jit(_cycle_back, static_argnums=3)


# --------------------------------------------------------------------------------------------
# Losses.
# --------------------------------------------------------------------------------------------


def _safe_log_square(x: jax.Array) -> jax.Array:
    """``log(x^2)``, ``-inf`` at 0 with a zero (not NaN) derivative there."""
    sq = x * x
    pos = sq > 0
    return jnp.where(pos, jnp.log(jnp.where(pos, sq, 1.0)), -jnp.inf)


def _loss_from_logits(logits, steps, variant, variance_lambda, label_smoothing) -> jax.Array:
    n = logits.shape[0]
    log_beta = jax.nn.log_softmax(logits, axis=-1)
    if variant == "classification":
        target = jnp.eye(n, dtype=logits.dtype) * (1.0 - label_smoothing) + label_smoothing / n
        per_row = -jnp.sum(target * log_beta, axis=-1)
    else:
        beta = jnp.exp(log_beta)
        mu = beta @ steps  # [n]
        err = steps - mu
        if variant == "regression_mse":
            per_row = err * err
        else:
            log_var = jax.nn.logsumexp(
                log_beta + _safe_log_square(steps[None, :] - mu[:, None]), -1
            )
            log_err2 = _safe_log_square(err)
            exact = jnp.isneginf(log_err2)
            ratio = jnp.where(exact, 0.0, jnp.exp(jnp.where(exact, 0.0, log_err2 - log_var)))
            per_row = ratio + variance_lambda * log_var
    return jnp.mean(per_row)


def _check_loss_args(variant, temperature, variance_lambda, label_smoothing, similarity, n):
    if variant not in _VARIANTS:
        raise ValueError(f"`variant` must be one of {_VARIANTS}, got {variant!r}.")
    _check_similarity(similarity)
    check_positive(temperature, "temperature")
    if is_concrete(variance_lambda) and not np.all(np.asarray(variance_lambda) >= 0):
        raise ValueError(f"`variance_lambda` must be >= 0, got {variance_lambda!r}.")
    if is_concrete(label_smoothing) and not 0 <= float(np.asarray(label_smoothing)) <= 1:
        raise ValueError(f"`label_smoothing` must lie in [0, 1], got {label_smoothing!r}.")
    if variant == "regression_mse_var" and n < 2:
        raise ValueError(
            f"`regression_mse_var` needs at least 2 frames in `u` (a variance), got n={n}."
        )


def _steps(steps, n: int, dtype) -> jax.Array:
    if steps is None:
        return jnp.arange(n, dtype=dtype) / n
    steps = as_float_array(steps, "steps").astype(dtype)
    if steps.shape != (n,):
        raise ValueError(
            f"`steps` must have shape [n]={(n,)} (one time per frame of u), got {steps.shape}."
        )
    return jax.lax.stop_gradient(steps)


def tcc_loss(
    u: jax.typing.ArrayLike,
    v: jax.typing.ArrayLike,
    *,
    variant: str = "classification",
    temperature: jax.typing.ArrayLike = 0.1,
    variance_lambda: jax.typing.ArrayLike = 0.001,
    label_smoothing: jax.typing.ArrayLike = 0.0,
    similarity: str = "l2",
    steps: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """Temporal cycle-consistency loss of the cycle ``u -> v -> u``, averaged over ``u``'s frames.

    Args:
      u: ``[n, d]`` embeddings of the sequence the cycle starts from.
      v: ``[m, d]`` embeddings of the other sequence (``m`` may differ from ``n``).
      variant: ``"classification"``, ``"regression_mse"`` or ``"regression_mse_var"`` (static).
      temperature: positive scalar (traced), used in both softmaxes.
      variance_lambda: weight ``lambda >= 0`` of ``log sigma^2`` in ``regression_mse_var``.
      label_smoothing: in ``[0, 1]``, for ``classification`` (Keras convention: the target is
        ``(1 - ls) onehot + ls / n``).
      similarity: ``"l2"`` (default) or ``"dot"`` (static).
      steps: ``[n]`` distinct times of ``u``'s frames for the regression variants, default
        ``k / n``. No gradient flows into them.

    Returns:
      A scalar. ``classification`` and ``regression_mse`` are ``>= 0`` and tend to 0 for
      identical sequences of distinct frames as the temperature goes to 0 (the cycle returns
      exactly): identical sequences attain the lower bound only in that limit. At a fixed
      temperature the loss depends on ``v`` only as a *set* of frames (shuffling ``v`` changes
      nothing) and falls when ``v``'s frames spread apart, so a noisier copy of ``u`` can score
      lower than ``u`` itself.

    Raises:
      ValueError: on mismatched shapes, an unknown variant or similarity, a non-positive
        temperature, a negative lambda, a smoothing outside ``[0, 1]`` (concrete values), or
        ``regression_mse_var`` with one frame.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> u = jax.random.normal(jax.random.key(0), (8, 4))
      >>> float(tcc_loss(u, u, temperature=0.01)) < 1e-6  # identical: the lower bound 0
      True
      >>> float(tcc_loss(u, u[jnp.array([0, 0, 1, 1, 2, 2, 3, 3])], temperature=0.01)) > 1.0
      True
      >>> jax.grad(tcc_loss)(u, u[::-1], variant="regression_mse_var").shape
      (8, 4)
    """
    u, v = _pair(u, v)
    n = u.shape[0]
    _check_loss_args(variant, temperature, variance_lambda, label_smoothing, similarity, n)
    steps = _steps(steps, n, u.dtype)
    return _pair_loss(
        u, v, steps, temperature, variance_lambda, label_smoothing, variant, similarity
    )


@functools.partial(jax.jit, static_argnums=(6, 7))
def _pair_loss(u, v, steps, temperature, variance_lambda, label_smoothing, variant, similarity):
    logits = _cycle_back(u, v, temperature, similarity).logits
    return _loss_from_logits(logits, steps, variant, variance_lambda, label_smoothing)


def tcc_batch_loss(
    embs: jax.typing.ArrayLike,
    *,
    variant: str = "classification",
    temperature: jax.typing.ArrayLike = 0.1,
    variance_lambda: jax.typing.ArrayLike = 0.001,
    label_smoothing: jax.typing.ArrayLike = 0.0,
    similarity: str = "l2",
    steps: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """TCC loss of a batch: :func:`tcc_loss` averaged over the ordered pairs ``i != j``.

    The deterministic alignment of the published code: ``b (b - 1)`` cycles, each started from
    every frame of sequence ``i``.

    Args:
      embs: ``[b, t, d]`` with ``b >= 2`` sequences of equal length (sample ``t`` frames per
        video, as the published code does).
      variant, temperature, variance_lambda, label_smoothing, similarity: as in
        :func:`tcc_loss`.
      steps: None (``k / t``) or ``[b, t]`` times of each sequence's frames.

    Returns:
      A scalar.

    Examples:
      >>> import jax
      >>> embs = jax.random.normal(jax.random.key(0), (3, 5, 2))
      >>> tcc_batch_loss(embs).shape
      ()
    """
    embs = as_float_array(embs, "embs")
    if embs.ndim != 3 or embs.shape[0] < 2 or 0 in embs.shape:
        raise ValueError(
            f"`embs` must be a non-empty 3-D array [b, t, d] with b >= 2 sequences, got shape "
            f"{embs.shape}."
        )
    b, t, _ = embs.shape
    _check_loss_args(variant, temperature, variance_lambda, label_smoothing, similarity, t)
    if steps is None:
        steps = jnp.broadcast_to(jnp.arange(t, dtype=embs.dtype) / t, (b, t))
    else:
        steps = as_float_array(steps, "steps").astype(embs.dtype)
        if steps.shape != (b, t):
            raise ValueError(f"`steps` must have shape [b, t]={(b, t)}, got {steps.shape}.")
        steps = jax.lax.stop_gradient(steps)

    return _batch_loss(
        embs, steps, temperature, variance_lambda, label_smoothing, variant, similarity
    )


@functools.partial(jax.jit, static_argnums=(5, 6))
def _batch_loss(embs, steps, temperature, variance_lambda, label_smoothing, variant, similarity):
    b = embs.shape[0]

    def pair(i, j):
        logits = _cycle_back(embs[i], embs[j], temperature, similarity).logits
        return _loss_from_logits(logits, steps[i], variant, variance_lambda, label_smoothing)

    ii, jj = np.nonzero(~np.eye(b, dtype=bool))
    return jnp.mean(jax.vmap(pair)(jnp.asarray(ii), jnp.asarray(jj)))


# --------------------------------------------------------------------------------------------
# Metrics.
# --------------------------------------------------------------------------------------------


def _nearest(a: jax.Array, b: jax.Array) -> jax.Array:
    diff = a[:, None, :] - b[None, :, :]
    return jnp.argmin(jnp.sum(diff * diff, axis=-1), axis=-1)


def cycle_consistency_accuracy(
    u: jax.typing.ArrayLike, v: jax.typing.ArrayLike, *, tolerance: int = 0
) -> jax.Array:
    """Fraction of ``u``'s frames whose hard nearest-neighbour cycle ``u -> v -> u`` comes back.

    Frame ``i`` is cycle-consistent when ``|k - i| <= tolerance`` for
    ``j = argmin_j ||u_i - v_j||`` and ``k = argmin_k ||v_j - u_k||`` (Euclidean; ties to the
    lowest index). Identical sequences of distinct frames score 1.

    Args:
      u: ``[n, d]``.
      v: ``[m, d]``.
      tolerance: non-negative int (static), in frames.

    Returns:
      A scalar in ``[0, 1]``, in ``u``'s dtype. It has no useful gradient (zero).

    Examples:
      >>> import jax.numpy as jnp
      >>> u = jnp.arange(5.0)[:, None]
      >>> cycle_consistency_accuracy(u, u).item()
      1.0
      >>> round(cycle_consistency_accuracy(u, u[:1]).item(), 4)  # only frame 0 comes back
      0.2
    """
    u, v = _pair(u, v)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | np.integer) or tolerance < 0:
        raise ValueError(f"`tolerance` must be a non-negative int, got {tolerance!r}.")
    return _accuracy(jax.lax.stop_gradient(u), jax.lax.stop_gradient(v), int(tolerance))


@functools.partial(jax.jit, static_argnums=2)
def _accuracy(u, v, tolerance):
    j = _nearest(u, v)
    k = _nearest(v[j], u)
    ok = jnp.abs(k - jnp.arange(u.shape[0])) <= tolerance
    return jnp.mean(ok.astype(u.dtype))


def kendalls_tau(u: jax.typing.ArrayLike, v: jax.typing.ArrayLike) -> jax.Array:
    """Kendall's tau-b between frame order and nearest-neighbour order (TCC's alignment metric).

    ``tau_b(range(n), nn)`` with ``nn[i] = argmin_j ||u_i - v_j||`` (Euclidean; ties to the
    lowest index): 1 when the nearest neighbours advance monotonically through ``v``, -1 when
    they run backwards. Ties among the ``nn`` (several frames with the same neighbour) are
    handled as in ``scipy.stats.kendalltau`` (tau-b):
    ``(concordant - discordant) / sqrt(n0 (n0 - ties))`` with ``n0 = n (n - 1) / 2``.

    Args:
      u: ``[n, d]``.
      v: ``[m, d]``.

    Returns:
      A scalar in ``[-1, 1]``; NaN when it is undefined (``n == 1``, or every frame has the same
      nearest neighbour), as in SciPy. The published code drops those NaNs before averaging
      over pairs: use ``jnp.nanmean``. O(n^2) memory.

    Examples:
      >>> import jax.numpy as jnp
      >>> u = jnp.arange(6.0)[:, None]
      >>> kendalls_tau(u, u).item(), kendalls_tau(u, u[::-1]).item()
      (1.0, -1.0)
    """
    u, v = _pair(u, v)
    return _tau(jax.lax.stop_gradient(u), jax.lax.stop_gradient(v))


@jax.jit
def _tau(u, v):
    nn = _nearest(u, v)
    n = nn.shape[0]
    upper = jnp.triu(jnp.ones((n, n), dtype=bool), k=1)  # pairs i < j; frame order is strict
    sign = jnp.sign(nn[None, :] - nn[:, None])  # sign(nn_j - nn_i)
    concordant_minus_discordant = jnp.sum(jnp.where(upper, sign, 0)).astype(u.dtype)
    n0 = n * (n - 1) / 2
    ties = jnp.sum(upper & (sign == 0)).astype(u.dtype)
    denom = jnp.sqrt(n0 * (n0 - ties))
    return jnp.where(
        denom > 0, concordant_minus_discordant / jnp.where(denom > 0, denom, 1.0), jnp.nan
    )
