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

from alignment._src import checks

__all__ = [
    "CycleBackOutput",
    "SoftNearestNeighborOutput",
    "cycle_back",
    "cycle_consistency_accuracy",
    "kendalls_tau",
    "soft_nearest_neighbor",
    "tcc_batch_loss",
    "tcc_loss",
]

_VARIANTS = ("classification", "regression_mse", "regression_mse_var")
_SIMILARITIES = ("l2", "dot")


class SoftNearestNeighborOutput(NamedTuple):
    """Output of :func:`soft_nearest_neighbor`.

    Attributes:
      neighbors: ``[n, d]`` soft nearest neighbours ``v~_i = sum_j alpha_ij v_j``.
      alpha: ``[n, m]`` soft nearest-neighbour weights of ``u_i`` over ``v`` (rows sum to 1).
    """

    neighbors: jax.Array
    alpha: jax.Array


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
    u, v = checks.point_pair(u, v, ("u", "v"), feature="embedding", non_empty=True)
    if u.shape[1] == 0:
        raise ValueError(f"`u` and `v` must be non-empty, got shapes {u.shape} and {v.shape}.")
    return u, v


def _check_options(similarity: str, temperature) -> None:
    checks.static_choice(similarity, "similarity", _SIMILARITIES)
    checks.scalar(temperature, "temperature", "positive")


def _check_loss_args(variant, temperature, variance_lambda, label_smoothing, similarity, n):
    checks.static_choice(variant, "variant", _VARIANTS)
    _check_options(similarity, temperature)
    checks.scalar(variance_lambda, "variance_lambda", "nonnegative")
    checks.scalar(label_smoothing, "label_smoothing", "finite")
    if checks.is_concrete(label_smoothing):
        ls = float(np.asarray(label_smoothing))
        if not 0.0 <= ls <= 1.0:
            raise ValueError(f"`label_smoothing` must lie in [0, 1], got {ls!r}.")
    if variant == "regression_mse_var" and n < 2:
        raise ValueError(
            f"`regression_mse_var` needs at least 2 frames in `u` (a variance), got n={n}."
        )


def _bad_loss_args(temperature, variance_lambda, label_smoothing) -> jax.Array:
    """Traced flag for the NaN policy: a hyperparameter outside its domain."""
    ls = jnp.asarray(label_smoothing)
    return (
        checks.invalid_scalar(temperature, "positive")
        | checks.invalid_scalar(variance_lambda, "nonnegative")
        | checks.invalid_scalar(label_smoothing, "finite")
        | (ls < 0)
        | (ls > 1)
    )


# --------------------------------------------------------------------------------------------
# Similarities, safe at any magnitude.
# --------------------------------------------------------------------------------------------


def _scale(a: jax.Array, b: jax.Array) -> jax.Array:
    """A power of two ``s`` with ``|a| / s, |b| / s < 1``: exact rescaling, no overflow.

    Squared distances of embeddings of magnitude 1e30 (or 1e-30) overflow (underflow) in
    float32; computed on ``a / s`` and ``b / s`` they do not, and ``s`` (held constant for the
    gradient) is put back in a form that saturates instead of producing ``inf * 0``. NaN or inf
    in the data leave ``s = 1`` and reach the result.
    """
    m = jax.lax.stop_gradient(jnp.maximum(jnp.max(jnp.abs(a)), jnp.max(jnp.abs(b))))
    m = jnp.where(jnp.isfinite(m) & (m > 0), m, jnp.ones_like(m))
    _, e = jnp.frexp(m)
    return jnp.ldexp(jnp.ones((), a.dtype), e)


def _raw(a: jax.Array, b: jax.Array, similarity: str) -> jax.Array:
    if similarity == "l2":
        diff = a[:, None, :] - b[None, :, :]
        return -jnp.sum(diff * diff, axis=-1)
    return a @ b.T


def _logits(a: jax.Array, b: jax.Array, temperature, similarity: str):
    """``(sim(a_i, b_j), sim(a_i, b_j) - max_j sim(a_i, b_j))``; the second never overflows.

    Softmaxes use the shifted form (shift-invariant), so embeddings of huge magnitude give the
    (near one-hot) distribution they define rather than ``inf - inf = NaN``.
    """
    s = _scale(a, b)
    raw = _raw(a / s, b / s, similarity)
    factor = s * s / (a.shape[1] * temperature)  # inf when the true logits exceed the range
    rowmax = jax.lax.stop_gradient(jnp.max(raw, axis=-1, keepdims=True))
    return _times(factor, raw), _times(factor, raw - rowmax)


def _times(factor: jax.Array, x: jax.Array) -> jax.Array:
    """``factor * x`` with ``inf * 0 = 0`` (double where: finite factors are untouched)."""
    zero = (x == 0) & jnp.isinf(factor)
    return jnp.where(zero, 0.0, factor * jnp.where(zero, 1.0, x))


def _cycle_back(u, v, temperature, similarity) -> CycleBackOutput:
    _, shifted = _logits(u, v, temperature, similarity)
    alpha = jax.nn.softmax(shifted, axis=-1)
    neighbors = alpha @ v
    logits, shifted = _logits(neighbors, u, temperature, similarity)
    return CycleBackOutput(logits, jax.nn.softmax(shifted, axis=-1), alpha, neighbors), shifted


def _compute(*arrays):
    dtype = arrays[0].dtype
    cdt = checks.compute_dtype(dtype)
    return dtype, [jnp.asarray(x).astype(cdt) for x in arrays]


def _cast(tree, dtype):
    return jax.tree.map(lambda x: x.astype(dtype), tree)


# --------------------------------------------------------------------------------------------
# The cycle.
# --------------------------------------------------------------------------------------------


def soft_nearest_neighbor(
    u: jax.typing.ArrayLike,
    v: jax.typing.ArrayLike,
    *,
    temperature: jax.typing.ArrayLike = 0.1,
    similarity: str = "l2",
) -> SoftNearestNeighborOutput:
    """Soft nearest neighbours in ``v`` of the frames of ``u``.

    Args:
      u: ``[n, d]`` frame embeddings of the first sequence.
      v: ``[m, d]`` frame embeddings of the second.
      temperature: positive scalar (traced; differentiable): ``softmax(-||u - v||^2 / (d T))``,
        larger is softer (see ``docs/conventions.md``, temperature-like parameters).
      similarity: ``"l2"`` or ``"dot"`` (static; see the module docstring).

    Returns:
      :class:`SoftNearestNeighborOutput` ``(neighbors [n, d], alpha [n, m])`` with
      ``neighbors = alpha @ v`` and rows of ``alpha`` summing to 1.

    Bad input: shapes, ``similarity`` and an array-valued, complex or ``None`` temperature
    raise ``ValueError`` at trace time (also under ``jit``); a concrete temperature that is not
    finite and positive raises; under ``jit`` such a temperature makes every output NaN. NaN in
    ``u`` or ``v`` propagates. float16/bfloat16 are computed in float32. Embeddings of any
    magnitude (1e30) are fine. See ``docs/conventions.md``.

    Examples:
      >>> import jax.numpy as jnp
      >>> u = jnp.array([[0.0], [1.0]])
      >>> nn, alpha = soft_nearest_neighbor(u, u, temperature=0.01)
      >>> nn.round(3).tolist()
      [[0.0], [1.0]]
    """
    u, v = _pair(u, v)
    _check_options(similarity, temperature)
    return _snn(u, v, temperature, similarity)


@functools.partial(jax.jit, static_argnums=3)
def _snn(u, v, temperature, similarity):
    dtype, (u, v, temperature) = _compute(u, v, temperature)
    _, shifted = _logits(u, v, temperature, similarity)
    alpha = jax.nn.softmax(shifted, axis=-1)
    out = SoftNearestNeighborOutput(alpha @ v, alpha)
    return _cast(checks.nan_if(checks.invalid_scalar(temperature), out), dtype)


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
      temperature: positive scalar, used in both directions (see ``docs/conventions.md``).
      similarity: ``"l2"`` or ``"dot"``.

    Returns:
      :class:`CycleBackOutput` ``(logits [n, n], beta [n, n], alpha [n, m], neighbors [n, d])``
      (no field is ever None). For embeddings so large that the similarities exceed the float
      range, ``logits`` saturate to ``-inf`` while ``beta`` and ``alpha`` stay exact.

    Bad input: as :func:`soft_nearest_neighbor` (ValueError for shapes and malformed
    hyperparameters even under ``jit``; a traced non-positive temperature gives NaN in every
    field; NaN in the data propagates). See ``docs/conventions.md``.

    Examples:
      >>> import jax.numpy as jnp
      >>> u = jnp.arange(4.0)[:, None]
      >>> out = cycle_back(u, u + 0.1, temperature=0.01)
      >>> out.beta.argmax(axis=1).tolist()
      [0, 1, 2, 3]
    """
    u, v = _pair(u, v)
    _check_options(similarity, temperature)
    return _cycle_back_jit(u, v, temperature, similarity)


@functools.partial(jax.jit, static_argnums=3)
def _cycle_back_jit(u, v, temperature, similarity):
    dtype, (u, v, temperature) = _compute(u, v, temperature)
    out, _ = _cycle_back(u, v, temperature, similarity)
    return _cast(checks.nan_if(checks.invalid_scalar(temperature), out), dtype)


# --------------------------------------------------------------------------------------------
# Losses.
# --------------------------------------------------------------------------------------------


def _safe_log_square(x: jax.Array) -> jax.Array:
    """``log(x^2)``, ``-inf`` at 0 with a zero (not NaN) derivative there; NaN stays NaN."""
    sq = x * x
    zero = sq == 0
    return jnp.where(zero, -jnp.inf, jnp.log(jnp.where(zero, 1.0, sq)))


def _loss_from_logits(shifted, steps, variant, variance_lambda, label_smoothing) -> jax.Array:
    n = shifted.shape[0]
    log_beta = jax.nn.log_softmax(shifted, axis=-1)
    if variant == "classification":
        target = jnp.eye(n, dtype=shifted.dtype) * (1.0 - label_smoothing) + label_smoothing / n
        # 0 * -inf (a frame the cycle cannot reach, at extreme scales) contributes 0, not NaN.
        reached = target > 0
        per_row = -jnp.sum(target * jnp.where(reached, log_beta, 0.0), axis=-1)
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
            # A collapsed variance with a missed return: err^2 / var = +inf dominates every
            # lambda log var = -inf (they differ by orders of magnitude); the loss is +inf.
            missed = ratio == jnp.inf
            per_row = jnp.where(missed, jnp.inf, ratio + variance_lambda * log_var)
            return jnp.where(jnp.any(missed), jnp.inf, jnp.mean(per_row))
    return jnp.mean(per_row)


def _steps(steps, n: int, dtype) -> jax.Array:
    if steps is None:
        return jnp.arange(n, dtype=dtype) / n
    steps = checks.as_float_array(steps, "steps").astype(dtype)
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
      temperature: positive scalar (traced), used in both softmaxes; its meaning beside the
        library's other temperature-like parameters is in ``docs/conventions.md``.
      variance_lambda: weight ``lambda >= 0`` of ``log sigma^2`` in ``regression_mse_var``.
      label_smoothing: in ``[0, 1]``, for ``classification`` (Keras convention: the target is
        ``(1 - ls) onehot + ls / n``).
      similarity: ``"l2"`` (default) or ``"dot"`` (static).
      steps: ``[n]`` distinct times of ``u``'s frames for the regression variants, default
        ``k / n``. No gradient flows into them.

    Returns:
      A scalar in ``u``'s dtype. ``classification`` and ``regression_mse`` are ``>= 0`` and
      tend to 0 for identical sequences of distinct frames as the temperature goes to 0 (the
      cycle returns exactly): identical sequences attain the lower bound only in that limit. At
      a fixed temperature the loss depends on ``v`` only as a *set* of frames (shuffling ``v``
      changes nothing) and falls when ``v``'s frames spread apart, so a noisier copy of ``u``
      can score lower than ``u`` itself.

    Bad input: mismatched shapes, an unknown variant or similarity, ``regression_mse_var`` with
    one frame, ``steps`` of the wrong shape, and an array-valued, complex or ``None``
    temperature, lambda or smoothing raise ``ValueError`` (also under ``jit``). Concrete
    temperature <= 0, lambda < 0, smoothing outside ``[0, 1]`` (or any non-finite one) raise;
    traced, they make the loss NaN. NaN in ``u``, ``v`` or ``steps`` gives NaN.
    float16/bfloat16 are computed in float32; embeddings of magnitude 1e30 are fine; the
    gradient is finite at identical sequences. See ``docs/conventions.md``.

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
    dtype, (u, v, steps, temperature, lam, ls) = _compute(
        u, v, steps, temperature, variance_lambda, label_smoothing
    )
    _, shifted = _cycle_back(u, v, temperature, similarity)
    loss = _loss_from_logits(shifted, steps, variant, lam, ls)
    return checks.nan_if(_bad_loss_args(temperature, lam, ls), loss).astype(dtype)


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
        :func:`tcc_loss` (temperature: see ``docs/conventions.md``).
      steps: None (``k / t``) or ``[b, t]`` times of each sequence's frames.

    Returns:
      A scalar in ``embs``' dtype.

    Bad input: as :func:`tcc_loss` (ValueError for shapes, ``b < 2`` and malformed
    hyperparameters even under ``jit``; concrete out-of-domain hyperparameters raise, traced
    ones give NaN; NaN in any sequence gives NaN). See ``docs/conventions.md``.

    Examples:
      >>> import jax
      >>> embs = jax.random.normal(jax.random.key(0), (3, 5, 2))
      >>> tcc_batch_loss(embs).shape
      ()
    """
    embs = checks.as_float_array(embs, "embs")
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
        steps = checks.as_float_array(steps, "steps").astype(embs.dtype)
        if steps.shape != (b, t):
            raise ValueError(f"`steps` must have shape [b, t]={(b, t)}, got {steps.shape}.")
        steps = jax.lax.stop_gradient(steps)

    return _batch_loss(
        embs, steps, temperature, variance_lambda, label_smoothing, variant, similarity
    )


@functools.partial(jax.jit, static_argnums=(5, 6))
def _batch_loss(embs, steps, temperature, variance_lambda, label_smoothing, variant, similarity):
    dtype, (embs, steps, temperature, lam, ls) = _compute(
        embs, steps, temperature, variance_lambda, label_smoothing
    )
    b = embs.shape[0]

    def pair(i, j):
        _, shifted = _cycle_back(embs[i], embs[j], temperature, similarity)
        return _loss_from_logits(shifted, steps[i], variant, lam, ls)

    ii, jj = np.nonzero(~np.eye(b, dtype=bool))
    loss = jnp.mean(jax.vmap(pair)(jnp.asarray(ii), jnp.asarray(jj)))
    return checks.nan_if(_bad_loss_args(temperature, lam, ls), loss).astype(dtype)


# --------------------------------------------------------------------------------------------
# Metrics.
# --------------------------------------------------------------------------------------------


def _nearest(a: jax.Array, b: jax.Array, s: jax.Array) -> jax.Array:
    """``argmin_j ||a_i - b_j||`` on data rescaled by ``s`` (no overflow, no underflow)."""
    return jnp.argmin(-_raw(a / s, b / s, "l2"), axis=-1)


def _not_finite(u, v) -> jax.Array:
    """NaN or inf anywhere: an argmin would silently pick an index; the metric is NaN instead."""
    return ~(jnp.all(jnp.isfinite(u)) & jnp.all(jnp.isfinite(v)))


def cycle_consistency_accuracy(
    u: jax.typing.ArrayLike, v: jax.typing.ArrayLike, *, tolerance: int = 0
) -> jax.Array:
    """Fraction of ``u``'s frames whose hard nearest-neighbour cycle ``u -> v -> u`` comes back.

    Frame ``i`` is cycle-consistent when ``|k - i| <= tolerance`` for
    ``j = argmin_j ||u_i - v_j||`` and ``k = argmin_k ||v_j - u_k||`` (Euclidean; ties to the
    lowest index). Identical sequences of distinct frames score 1. The cycle treats ``v`` as a
    set: shuffling ``v``'s frames leaves the accuracy unchanged (as it leaves :func:`tcc_loss`);
    :func:`kendalls_tau` is the metric that sees the order.

    Args:
      u: ``[n, d]``.
      v: ``[m, d]``.
      tolerance: non-negative int (static), in frames.

    Returns:
      A scalar in ``[0, 1]``, in ``u``'s dtype. It has no useful gradient (zero).

    Bad input: shapes and a ``tolerance`` that is not a non-negative Python int raise
    ``ValueError`` (also under ``jit``). NaN or inf anywhere in ``u`` or ``v`` gives NaN (a
    nearest neighbour is undefined), never a plausible fraction. Embeddings of any magnitude
    (1e30, 1e-30) and float16/bfloat16 are fine. See ``docs/conventions.md``.

    Examples:
      >>> import jax.numpy as jnp
      >>> u = jnp.arange(5.0)[:, None]
      >>> cycle_consistency_accuracy(u, u).item()
      1.0
      >>> round(cycle_consistency_accuracy(u, u[:1]).item(), 4)  # only frame 0 comes back
      0.2
    """
    u, v = _pair(u, v)
    tolerance = checks.static_int(tolerance, "tolerance", minimum=0)
    return _accuracy(jax.lax.stop_gradient(u), jax.lax.stop_gradient(v), tolerance)


@functools.partial(jax.jit, static_argnums=2)
def _accuracy(u, v, tolerance):
    dtype, (u, v) = _compute(u, v)
    s = _scale(u, v)
    j = _nearest(u, v, s)
    k = _nearest(v[j], u, s)
    ok = jnp.abs(k - jnp.arange(u.shape[0])) <= tolerance
    acc = jnp.mean(ok.astype(u.dtype))
    return checks.nan_if(_not_finite(u, v), acc).astype(dtype)


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
      A scalar in ``[-1, 1]`` in ``u``'s dtype; NaN when it is undefined (``n == 1``, or every
      frame has the same nearest neighbour), as in SciPy. The published code drops those NaNs
      before averaging over pairs: use ``jnp.nanmean``. O(n^2) memory.

    Bad input: shapes raise ``ValueError`` (also under ``jit``). NaN or inf anywhere in ``u``
    or ``v`` gives NaN (a nearest neighbour is undefined), never a plausible tau. Embeddings of
    any magnitude (1e30, 1e-30) and float16/bfloat16 are fine. See ``docs/conventions.md``.

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
    dtype, (u, v) = _compute(u, v)
    nn = _nearest(u, v, _scale(u, v))
    n = nn.shape[0]
    upper = jnp.triu(jnp.ones((n, n), dtype=bool), k=1)  # pairs i < j; frame order is strict
    sign = jnp.sign(nn[None, :] - nn[:, None])  # sign(nn_j - nn_i)
    concordant_minus_discordant = jnp.sum(jnp.where(upper, sign, 0)).astype(u.dtype)
    n0 = n * (n - 1) / 2
    ties = jnp.sum(upper & (sign == 0)).astype(u.dtype)
    denom = jnp.sqrt(n0 * (n0 - ties))
    tau = jnp.where(
        denom > 0, concordant_minus_discordant / jnp.where(denom > 0, denom, 1.0), jnp.nan
    )
    return checks.nan_if(_not_finite(u, v), tau).astype(dtype)
