"""Subsequence DTW: the best match of a whole query inside any stretch of a long series.

Also called open-begin, open-end DTW (Müller, *Fundamentals of Music Processing*, 2015, §7.2;
dtw-python's ``open_begin=True, open_end=True``). The input is the cost matrix
``cost: [t, s]`` between a query of length ``t`` (rows, usually short) and a series of length
``s`` (columns, usually long), as for :func:`alignment.dtw`. The query must be matched whole; in
the series the match may start at any column ``a`` and end at any column ``b >= a``:

    ``subsequence_dtw(cost) = min over 0 <= a <= b < s of dtw(cost[:, a:b + 1])``,

with the steps of :func:`alignment.dtw` (``(1, 0)``, ``(0, 1)``, ``(1, 1)``, every visited cell
counted once: dtw-python's ``symmetric1``). As a recursion,

    ``R[0, j] = cost[0, j] + min(0, R[0, j - 1])`` (start at ``j``, or continue along row 0),
    ``R[i, j] = cost[i, j] + min(R[i - 1, j - 1], R[i - 1, j], R[i, j - 1])`` for ``i >= 1``,
    ``value = min_j R[t - 1, j]``.

For a non-negative cost ``R[0, j] = cost[0, j]`` (Müller's initialisation of the first row);
the ``min(0, .)`` form is exact for costs of any sign.

:func:`soft_subsequence_dtw` replaces every min by ``softmin_gamma(a) = -gamma log sum
exp(-a / gamma)`` (the soft-min of ``docs/conventions.md``), including the two of the free
start and the free end. Its value is the soft-min over every (start, end, warping path) triple,
each counted once:

    ``soft_subsequence_dtw(cost) = softmin_gamma over a <= b of soft_dtw(cost[:, a:b + 1])``,

so it lies in ``[value - gamma log N, value]`` with ``N`` the number of triples, and tends to
:func:`subsequence_dtw`'s value as ``gamma -> 0``. Its gradient in ``cost`` is the expected
alignment under that Gibbs distribution (rows sum to at least 1; each entry in ``[0, 1]``).
Initialising the first row with the cost row (Müller's form) in the soft recursion would drop
the paths that move along the first row and break the symmetry under reversing both sequences.

Algorithm: both are the DTW of this package (:func:`alignment.dtw_alignment`,
:func:`alignment.soft_dtw`: a wavefront scan with a custom VJP, accurate float32 gradients) on
an augmented ``[t + 2, s + 2]`` cost: a free (zero) row above and below the query rows, and
``+inf`` walls left and right of them. A path crosses the top free row to its start column,
enters the query, leaves it after its end column and crosses the bottom free row to the corner.
Every match can be entered in two ways (vertically or diagonally from the free row) and left in
two ways, so the soft value is ``soft_dtw(augmented) + gamma log 4`` exactly; the hard value is
``dtw(augmented)``. Time and memory ``O(t s)``, about ``t + s`` sequential steps.

Bad input (``docs/conventions.md``): ``cost`` that is ``None``, complex, not 2-D or empty,
``lengths`` that are not a pair of integer scalars, and a ``gamma`` that is ``None``, complex
or array-valued raise ``ValueError`` naming the argument, also under ``jit``; a concrete
``gamma`` that is not finite and positive and concrete ``lengths`` outside ``[1, t] x [1, s]``
raise; traced ones give NaN values and alignments and ``-1`` indices. A NaN in the valid part
of ``cost`` makes the value (and alignment) NaN and the indices ``-1``: it never disappears
silently. ``+inf`` marks a forbidden cell; when every match is forbidden the value is ``+inf``
and the indices are ``-1``. ``-inf`` is not supported. Padding (past ``lengths``) is never read:
whatever it holds (NaN, inf, 1e30) changes neither outputs nor gradients. float16 and bfloat16
costs are computed in float32 and the results cast back.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from alignment._src import checks
from alignment._src.dtw import dtw_alignment, soft_dtw

__all__ = ["SubsequenceDTWOutput", "soft_subsequence_dtw", "subsequence_dtw"]

_LOG4 = math.log(4.0)  # two ways into a match times two ways out of it


class SubsequenceDTWOutput(NamedTuple):
    """Output of :func:`subsequence_dtw`.

    Attributes:
      value: ``[]`` the cost of the best match, ``min over a <= b of dtw(cost[:, a:b + 1])``
        (``+inf`` when every match is forbidden; NaN for NaN data or bad traced input).
        Differentiable in ``cost``: the gradient is ``alignment``.
      start: ``[]`` int32, the first column of the series in the match (``a``); ``-1`` when the
        value is not finite.
      end: ``[]`` int32, the last column of the series in the match (``b``), **inclusive**: the
        matched stretch is ``series[start:end + 1]``, and the cells ``(0, start)`` and
        ``(t_valid - 1, end)`` are on the path. ``-1`` when the value is not finite.
      alignment: ``[t, s]`` 0/1 matrix (dtype of ``cost``) of the optimal path, as
        :func:`alignment.dtw_alignment` returns: 1 on the cells of the path, which starts at
        ``(0, start)`` and ends at ``(t_valid - 1, end)``; 0 elsewhere and on padding (all 0 when
        the value is ``+inf``; NaN when it is NaN). :func:`alignment.alignment_to_path` on
        ``alignment[:, start:end + 1]`` gives the path within the match.
    """

    value: jax.Array
    start: jax.Array
    end: jax.Array
    alignment: jax.Array


def _prepare(cost, lengths):
    """Validates ``cost`` and ``lengths``; returns ``(cost, t_valid, s_valid, padded, bad)``."""
    cost = checks.as_float_array(cost, "cost")
    checks.check_matrix(cost, "cost", "[t, s] (query length t, series length s)")
    tl, sl, bad = checks.lengths_pair(lengths, cost.shape)
    bad = jnp.asarray(False) if bad is None else bad
    tl, sl = jnp.asarray(tl, jnp.int32), jnp.asarray(sl, jnp.int32)
    return cost, tl, sl, lengths is not None, bad


def _augment(cost, tl, sl):
    """The ``[t + 2, s + 2]`` cost whose DTW is the subsequence DTW of ``cost[:tl, :sl]``.

    Row 0 and row ``tl + 1`` are free (0); rows ``1..tl`` hold the query rows between ``+inf``
    walls in columns 0 and ``sl + 1``. Cells past ``(tl + 2, sl + 2)`` are padding of the
    augmented problem (never read). Only valid cells of ``cost`` are selected (a ``where``), so
    the padding of ``cost`` reaches neither the values nor the gradients.
    """
    t, s = cost.shape
    i = jnp.arange(t + 2, dtype=jnp.int32)[:, None]
    j = jnp.arange(s + 2, dtype=jnp.int32)[None, :]
    inner = jnp.pad(cost, 1)  # inner[i, j] = cost[i - 1, j - 1]
    free = (i == 0) | (i == tl + 1)
    query = (i >= 1) & (i <= tl) & (j >= 1) & (j <= sl)
    zero = jnp.zeros((), cost.dtype)
    inf = jnp.full((), jnp.inf, cost.dtype)
    return jnp.where(free, zero, jnp.where(query, inner, inf))


def _first_and_last(alignment, tl, value):
    """Start and end columns of the path (``-1`` where the value is not finite)."""
    s = alignment.shape[1]
    first_row = alignment[0] > 0.5
    last_row = jnp.take(alignment, tl - 1, axis=0) > 0.5
    start = jnp.argmax(first_row).astype(jnp.int32)
    end = (s - 1 - jnp.argmax(last_row[::-1])).astype(jnp.int32)
    found = jnp.isfinite(value)
    minus_one = jnp.full((), -1, jnp.int32)
    return jnp.where(found, start, minus_one), jnp.where(found, end, minus_one)


@functools.partial(jax.jit, static_argnames=("padded",))
def _subsequence(cost, tl, sl, bad, *, padded):
    dtype = cost.dtype
    t, s = cost.shape
    work = cost.astype(checks.compute_dtype(dtype))
    aug = _augment(work, tl, sl)
    value, path = dtw_alignment(aug, lengths=(tl + 2, sl + 2) if padded else None)
    alignment = jax.lax.stop_gradient(path[1 : t + 1, 1 : s + 1])
    if padded:  # the bottom free row (row tl + 1 of aug) falls inside the padding: drop it
        valid = (jnp.arange(t)[:, None] < tl) & (jnp.arange(s)[None, :] < sl)
        alignment = jnp.where(valid, alignment, jnp.zeros((), alignment.dtype))
        alignment = checks.nan_if(jnp.isnan(value), alignment)
    start, end = _first_and_last(alignment, tl, value)
    out = SubsequenceDTWOutput(value.astype(dtype), start, end, alignment.astype(dtype))
    return checks.nan_if(bad, out)


@functools.partial(jax.jit, static_argnames=("padded",))
def _soft_subsequence(cost, gamma, tl, sl, bad, *, padded):
    dtype = cost.dtype
    work = checks.compute_dtype(dtype)
    gamma = jnp.asarray(gamma, work)
    aug = _augment(cost.astype(work), tl, sl)
    value = soft_dtw(aug, gamma=gamma, lengths=(tl + 2, sl + 2) if padded else None)
    value = value + gamma * _LOG4
    return checks.nan_if(bad, value).astype(dtype)


def subsequence_dtw(
    cost: jax.typing.ArrayLike,
    *,
    lengths: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] | None = None,
) -> SubsequenceDTWOutput:
    """Subsequence (open-begin, open-end) DTW: where a query best matches inside a long series.

    ``value = min over 0 <= a <= b < s of dtw(cost[:, a:b + 1])``: the whole query (rows) is
    aligned with the stretch ``a..b`` of the series (columns) that it fits best, with the steps of
    :func:`alignment.dtw`. The same as dtw-python's ``dtw(cost, open_begin=True,
    open_end=True)`` with the ``symmetric1`` steps (dtw-python accepts open begin only for step
    patterns normalised by the query length, so pass it
    ``StepPattern(symmetric1.mx, hint="N")``; its ``distance`` is our value).

    Ties between equally good paths are broken as in :func:`alignment.dtw_alignment`.

    Bad input: ``cost`` that is ``None``, complex, not 2-D or empty, and ``lengths`` that are
    not a pair of integer scalars raise ``ValueError``, also under ``jit``; concrete ``lengths``
    outside ``[1, t] x [1, s]`` raise, traced ones give NaN ``value`` and ``alignment`` and
    ``start = end = -1``. A NaN in the valid cost gives a NaN value and alignment and ``-1``
    indices. Padding is never read. See ``docs/conventions.md``.

    Args:
      cost: Array of shape ``[t, s]``: the cost between the query (``t`` frames) and the series
        (``s`` frames), e.g. ``squared_euclidean(query, series)``.
      lengths: Optional pair ``(t_valid, s_valid)`` of integer scalars (traced is fine) for
        padded inputs: only ``cost[:t_valid, :s_valid]`` is used (the query has ``t_valid``
        frames, the series ``s_valid``). Use it with ``jax.vmap`` over padded batches.

    Returns:
      :class:`SubsequenceDTWOutput` ``(value, start, end, alignment)``: the scalar cost of the
      best match, its first and last (inclusive) column in the series, and the ``[t, s]`` 0/1
      matrix of its path.

    Raises:
      ValueError: ``cost`` is not a non-empty 2-D array, or ``lengths`` is malformed or (when
        concrete) outside the array.

    References:
      M. Müller, *Fundamentals of Music Processing*, Springer 2015, §7.2.3 (subsequence DTW).
      T. Giorgino, "Computing and visualizing dynamic time warping alignments in R: the dtw
      package", JSS 2009 (open-begin and open-end alignments).

    Examples:
      The query 1, 3, 2 appears, slowed down, at columns 2..5 of the series:

      >>> import jax.numpy as jnp
      >>> from alignment import absolute_difference
      >>> query = jnp.array([1.0, 3.0, 2.0])
      >>> series = jnp.array([0.0, 5.0, 1.0, 3.0, 3.0, 2.0, 6.0, 0.0])
      >>> out = subsequence_dtw(absolute_difference(query, series))
      >>> float(out.value), int(out.start), int(out.end)
      (0.0, 2, 5)
      >>> out.alignment.astype(int)
      Array([[0, 0, 1, 0, 0, 0, 0, 0],
             [0, 0, 0, 1, 1, 0, 0, 0],
             [0, 0, 0, 0, 0, 1, 0, 0]], dtype=int32)
    """
    cost, tl, sl, padded, bad = _prepare(cost, lengths)
    return _subsequence(cost, tl, sl, bad, padded=padded)


def soft_subsequence_dtw(
    cost: jax.typing.ArrayLike,
    *,
    gamma: jax.typing.ArrayLike = 1.0,
    lengths: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] | None = None,
) -> jax.Array:
    """Soft subsequence DTW: a differentiable loss for "the query occurs somewhere in the series".

    ``softmin_gamma over 0 <= a <= b < s of soft_dtw(cost[:, a:b + 1], gamma)``: the soft-min,
    at temperature ``gamma``, over every start ``a``, end ``b`` and warping path of the query
    through ``a..b``, each counted once. The gradient in ``cost`` is the expected alignment
    (entries in ``[0, 1]``; the probability that the best match passes through each cell), the
    soft counterpart of :attr:`SubsequenceDTWOutput.alignment`; ``gamma`` is differentiable too.

    Numerics: computed by :func:`alignment.soft_dtw` (a stabilised soft-min with a custom VJP),
    so values and gradients stay finite for tiny ``gamma`` (``1e-4``). ``value - gamma log N
    <= soft_subsequence_dtw <= value`` with ``value`` that of :func:`subsequence_dtw` and ``N``
    the number of (start, end, path) triples: it tends to the hard value as ``gamma -> 0``. It
    can be negative even for a non-negative cost.

    Bad input: as :func:`subsequence_dtw`, plus ``gamma``: ``None``, complex or array-valued
    (``[1, 2]``) raises ``ValueError`` even under ``jit``; a concrete ``gamma`` that is not
    finite and positive raises; traced, it gives NaN (as do traced ``lengths`` out of range).
    NaN in the valid cost propagates to the value and gradient; padding never matters. See
    ``docs/conventions.md``.

    Args:
      cost: Array of shape ``[t, s]`` between the query (``t`` frames) and the series (``s``).
      gamma: Positive smoothing parameter (traced, differentiable): the soft-min temperature of
        ``docs/conventions.md`` (larger is smoother).
      lengths: As in :func:`subsequence_dtw`; the gradient on padding is zero.

    Returns:
      Scalar soft value (dtype of ``cost``).

    Raises:
      ValueError: bad ``cost`` or ``lengths`` (see :func:`subsequence_dtw`), or a bad ``gamma``.

    References:
      M. Cuturi and M. Blondel, "Soft-DTW: a Differentiable Loss Function for Time-Series",
      ICML 2017 (the soft-min recursion); M. Müller, *Fundamentals of Music Processing* §7.2.3.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from alignment import absolute_difference
      >>> query = jnp.array([1.0, 3.0, 2.0])
      >>> series = jnp.array([0.0, 5.0, 1.0, 3.0, 3.0, 2.0, 6.0, 0.0])
      >>> cost = absolute_difference(query, series)
      >>> value, grad = jax.value_and_grad(soft_subsequence_dtw)(cost, gamma=0.01)
      >>> abs(float(value)) < 1e-3  # close to the hard value, 0.0
      True
      >>> bool(jnp.allclose(grad, subsequence_dtw(cost).alignment, atol=1e-2))  # E -> the path
      True
    """
    checks.scalar(gamma, "gamma", "positive")
    cost, tl, sl, padded, bad = _prepare(cost, lengths)
    return _soft_subsequence(cost, gamma, tl, sl, bad, padded=padded)
