"""experiments/mwvae/polymnist.py: the generated PolyMNIST-style modalities."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("skimage")
pytest.importorskip("sklearn")

from experiments.mwvae import polymnist


def test_modalities_share_the_class_not_the_digit(tmp_path):
    data = polymnist.load_polymnist("digits", modalities=3, seed=0, cache_dir=str(tmp_path))
    m, n, p = data.x_train.shape
    assert (m, p) == (3, 16 * 16 * 3) and n == data.y_train.shape[0]
    assert data.x_test.shape[:2] == (3, data.y_test.shape[0])
    assert data.x_train.dtype == np.float32
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    # partners: another instance of the same class, never the sample itself
    rng = np.random.default_rng(0)
    y = data.y_train
    idx = polymnist.partners(y, rng)
    assert np.all(y[idx] == y) and np.all(idx != np.arange(y.size))
    # the cache returns the same arrays; the seed fixes everything
    again = polymnist.load_polymnist("digits", modalities=3, seed=0, cache_dir=str(tmp_path))
    np.testing.assert_array_equal(again.x_train, data.x_train)
    assert again.image_shape == (16, 16, 3) and again.name == data.name
    assert len(list(tmp_path.glob("polymnist_digits_m3_seed0.npz"))) == 1
    other = polymnist.generate("digits", modalities=3, seed=1)
    assert not np.array_equal(other.y_train, data.y_train)


def test_composite_inverts_the_background_under_the_digit():
    crops = np.full((1, 2, 2, 3), 0.25, np.float32)
    digits = np.array([[[0.0, 1.0], [0.5, 0.0]]], np.float32)
    out = polymnist.composite(digits, crops)
    np.testing.assert_allclose(out[0, 0, 0], 0.25)  # no digit: the background
    np.testing.assert_allclose(out[0, 0, 1], 0.75)  # full digit: the inverted background
    np.testing.assert_allclose(out[0, 1, 0], 0.5)


def test_crops_lie_inside_their_background():
    image = np.random.default_rng(0).uniform(size=(40, 50, 3)).astype(np.float32)
    crops = polymnist.random_crops(image, 20, 28, np.random.default_rng(1))
    assert crops.shape == (20, 28, 28, 3)
    for crop in crops:  # each crop is a window of the image
        hits = [
            (r, c)
            for r in range(13)
            for c in range(23)
            if np.array_equal(image[r : r + 28, c : c + 28], crop)
        ]
        assert hits


def test_every_background_is_bundled():
    for name in polymnist.BACKGROUNDS:
        image = polymnist.background(name)
        assert image.ndim == 3 and image.shape[-1] == 3 and image.shape[0] >= 28
        assert 0.0 <= image.min() and image.max() <= 1.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="`modalities` must be in"):
        polymnist.generate("digits", modalities=1, seed=0)
    with pytest.raises(ValueError, match="generated from"):
        polymnist.generate("idx", modalities=2, seed=0)
