"""Cross-modal retrieval metrics for paired embeddings: recall@k and median / mean rank.

Row ``i`` of ``za`` is paired with row ``i`` of ``zb`` (an image and its caption, a clip and its
audio). Each row of ``za`` queries all of ``zb`` (a->b) and each row of ``zb`` queries all of
``za`` (b->a); the rank of a query is the position of its true match in the list sorted by
decreasing similarity, and recall@k is the fraction of queries whose true match is in the top
``k``. These are the numbers reported for image-text retrieval (R@1, R@5, R@10, MedR, MeanR).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from alignment._src.checks import as_float_array, as_int_array, compute_dtype, static_choice

__all__ = ["RetrievalOutput", "retrieval_metrics"]


class RetrievalOutput(NamedTuple):
    """Retrieval metrics in both directions (a->b: rows of ``za`` query ``zb``; b->a: reverse).

    Attributes:
      recall_a_to_b: ``[len(ks)]``: fraction of ``za`` queries whose match is in the top ``k``
        of ``zb``, one entry per ``k`` of ``ks`` (in that order).
      recall_b_to_a: ``[len(ks)]``: the same for ``zb`` querying ``za``.
      median_rank_a_to_b: ``[]``: median 1-based rank of the true match (``np.median``: the
        mean of the two middle ranks for an even number of queries).
      median_rank_b_to_a: ``[]``.
      mean_rank_a_to_b: ``[]``: mean 1-based rank of the true match.
      mean_rank_b_to_a: ``[]``.
    """

    recall_a_to_b: jax.Array
    recall_b_to_a: jax.Array
    median_rank_a_to_b: jax.Array
    median_rank_b_to_a: jax.Array
    mean_rank_a_to_b: jax.Array
    mean_rank_b_to_a: jax.Array


def _normalise(z: jax.Array) -> jax.Array:
    """Rows scaled to unit norm without overflow; a zero row stays zero (similarity 0)."""
    scale = jnp.max(jnp.abs(z), axis=-1, keepdims=True)
    safe = jnp.where(scale > 0, scale, 1.0)
    z = z / safe
    norm = jnp.linalg.norm(z, axis=-1, keepdims=True)
    return z / jnp.where(norm > 0, norm, 1.0)


def _ranks(sim: jax.Array, positive: jax.Array) -> jax.Array:
    """1-based pessimistic rank of the best true match of each row of ``sim``."""
    true = jnp.max(jnp.where(positive, sim, -jnp.inf), axis=1)
    beaten = (~positive) & (sim >= true[:, None])
    return 1 + jnp.sum(beaten, axis=1)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _core(za, zb, ids, ks: tuple, similarity: str):
    out_dtype = compute_dtype(jnp.result_type(za, zb))
    za = za.astype(out_dtype)
    zb = zb.astype(out_dtype)
    if similarity == "cosine":
        sim = _normalise(za) @ _normalise(zb).T
    else:
        sim = za @ zb.T
    b = za.shape[0]
    if ids is None:
        positive = jnp.eye(b, dtype=bool)
    else:
        positive = ids[:, None] == ids[None, :]
    bad = ~(jnp.all(jnp.isfinite(za)) & jnp.all(jnp.isfinite(zb)) & jnp.all(jnp.isfinite(sim)))
    k = jnp.asarray(ks)

    def direction(s, pos):
        rank = _ranks(s, pos)
        recall = jnp.mean(rank[None, :] <= k[:, None], axis=1, dtype=out_dtype)
        rank_f = rank.astype(out_dtype)
        return recall, jnp.median(rank_f), jnp.mean(rank_f)

    ra, med_a, mean_a = direction(sim, positive)
    rb, med_b, mean_b = direction(sim.T, positive.T)
    out = RetrievalOutput(ra, rb, med_a, med_b, mean_a, mean_b)
    return jax.tree.map(lambda v: jnp.where(bad, jnp.nan, v).astype(out_dtype), out)


def _check_ks(ks, b: int) -> tuple[int, ...]:
    if isinstance(ks, int | np.integer) and not isinstance(ks, bool):
        ks = (ks,)
    if not isinstance(ks, tuple | list) or len(ks) == 0:
        raise ValueError(f"`ks` must be a non-empty tuple of Python ints, got {ks!r}.")
    out = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int | np.integer):
            raise ValueError(
                f"`ks` must hold Python ints (static), got {k!r} of type {type(k).__name__} in "
                f"{ks!r}."
            )
        if not 1 <= int(k) <= b:
            raise ValueError(
                f"every k in `ks` must lie in [1, b] = [1, {b}] for b = {b} pairs, got {ks!r} "
                "(pass smaller ks for a small batch)."
            )
        out.append(int(k))
    return tuple(out)


def retrieval_metrics(
    za: jax.typing.ArrayLike,
    zb: jax.typing.ArrayLike,
    *,
    ks: tuple[int, ...] = (1, 5, 10),
    similarity: str = "cosine",
    ids: jax.typing.ArrayLike | None = None,
) -> RetrievalOutput:
    """Recall@k, median and mean rank of paired embeddings, both ways (a->b and b->a).

    Row ``i`` of ``za`` is paired with row ``i`` of ``zb``. For the query ``za[i]`` the
    similarity to every ``zb[j]`` is ``cos(za[i], zb[j])`` (``similarity="cosine"``; a zero row
    has similarity 0 to everything) or ``<za[i], zb[j]>`` (``"dot"``); b->a uses the transpose.

    Rank (1-based) and ties: ``rank_i = 1 + #{j not a match of i : sim[i, j] >= sim[i, i]}``.
    Ties are counted pessimistically (every non-match with the same similarity is ranked ahead),
    so a constant embedding gets rank ``b``, never a lucky 1; similarities equal in exact
    arithmetic may differ in the last bit of the float. With ``ids``, the matches of ``i`` are
    all ``j`` with ``ids[j] == ids[i]`` (as in the contrastive losses), the rank is that of the
    best-scored match and the other matches are not counted against it.
    ``recall@k = mean_i [rank_i <= k]``; the median rank is ``np.median`` of the ranks (the mean
    of the two middle ones for even ``b``).

    Memory ``O(b^2)`` (the similarity matrix). Not differentiable (piecewise constant).

    Args:
      za: Array ``[b, d]``: embeddings of modality a.
      zb: Array ``[b, d]``: embeddings of modality b, row ``i`` paired with ``za[i]``.
      ks: Static tuple of ints in ``[1, b]`` (or one int): the cut-offs of recall@k.
      similarity: ``"cosine"`` (default) or ``"dot"``.
      ids: Optional integer ``[b]``; pairs with equal ids are all correct matches.

    Returns:
      :class:`RetrievalOutput` of recalls ``[len(ks)]`` and scalar median / mean ranks, both
      directions, in the input's float dtype (float32 for float16/bfloat16 inputs, which cannot
      hold ranks above 256-2048 exactly).

    Bad input: shapes and static options are checked at trace time (ValueError, eagerly and
    under ``jit``/``vmap``): ``None``, complex, non-2-D, empty or mismatched ``za``/``zb``; ``ks``
    empty, non-int (1.5, True) or outside ``[1, b]``; an unknown ``similarity``; ``ids`` not an
    integer ``[b]`` array. A NaN or infinite embedding (or a similarity that overflows) makes
    every metric NaN, never a plausible number. See docs/conventions.md.

    Examples:
      >>> import jax.numpy as jnp
      >>> import alignment as al
      >>> za = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
      >>> zb = jnp.array([[1.0, 0.1], [0.1, 1.0], [0.0, -1.0], [-1.0, 0.0]])  # 2 and 3 swapped
      >>> out = al.retrieval_metrics(za, zb, ks=(1, 2))
      >>> out.recall_a_to_b.tolist(), float(out.median_rank_a_to_b)
      ([0.5, 1.0], 1.5)
      >>> float(out.mean_rank_b_to_a)  # zb[2] ties za[2] with za[0] at 0: pessimistic rank 3
      2.0
      >>> ids = jnp.array([0, 1, 2, 2])  # rows 2 and 3 show the same thing: both are matches
      >>> al.retrieval_metrics(za, zb, ks=(1,), ids=ids).recall_a_to_b.tolist()
      [1.0]
    """
    static_choice(similarity, "similarity", ("cosine", "dot"))
    za = as_float_array(za, "za")
    zb = as_float_array(zb, "zb")
    if za.ndim != 2 or zb.ndim != 2 or za.shape != zb.shape:
        raise ValueError(
            "`za` and `zb` must be 2-D arrays of the same shape [b, d] (row i of za paired with "
            f"row i of zb), got za: {za.shape} and zb: {zb.shape}."
        )
    b, d = za.shape
    if b == 0 or d == 0:
        raise ValueError(f"`za` and `zb` must be non-empty, got shapes {za.shape} and {zb.shape}.")
    ks = _check_ks(ks, b)
    if ids is not None:
        ids = as_int_array(
            ids, "ids", shape=(b,), what=f"[b] = ({b},)", note=" (pairs with equal ids are matches)"
        )
    return _core(za, zb, ids, ks, similarity)
