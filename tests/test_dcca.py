"""experiments/dcca: the two-view data builder, the evaluation, and a smoke run end to end."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("mlxtend")

from experiments.dcca import data as d
from experiments.dcca import evaluate as ev


@pytest.fixture(scope="module")
def views() -> d.TwoViewData:
    return d.build(n_train=200, n_val=60, n_test=60, seed=3)


def test_views_shapes_ranges_and_labels(views):
    images, labels = d.load_mnist5k()
    for split, n in zip(d.SPLITS, (200, 60, 60), strict=True):
        v = getattr(views, split)
        assert v.x1.shape == v.x2.shape == (n, 784)
        assert v.x1.dtype == v.x2.dtype == np.float32
        for x in (v.x1, v.x2):
            assert np.all(np.isfinite(x)) and x.min() >= 0.0 and x.max() <= 1.0
        # both views come from digits of the recorded class, and view 2 from a different image
        np.testing.assert_array_equal(labels[v.source], v.y)
        np.testing.assert_array_equal(labels[v.partner], v.y)
        assert np.all(v.partner != v.source)
        assert np.all(np.abs(v.angle) <= 45.0) and np.ptp(v.angle) > 30.0
        # view 2 is its partner plus non-negative noise (clipped), noise of mean about 1/2
        clean = images[v.partner]
        assert np.all(v.x2 >= clean - 1e-6)
        assert 0.35 < float(np.mean(v.x2 - clean)) < 0.55
    # the three splits use disjoint digits, partners included, with classes balanced
    used = [set(getattr(views, s).source) | set(getattr(views, s).partner) for s in d.SPLITS]
    assert not (used[0] & used[1]) and not (used[0] & used[2]) and not (used[1] & used[2])
    assert np.all(np.bincount(views.train.y, minlength=10) == 20)


def test_views_are_deterministic_and_rotation_is_within_range():
    images, _ = d.load_mnist5k()
    a = d.build(n_train=40, n_val=20, n_test=20, seed=1)
    b = d.build(n_train=40, n_val=20, n_test=20, seed=1)
    np.testing.assert_array_equal(a.train.x1, b.train.x1)
    np.testing.assert_array_equal(a.test.x2, b.test.x2)
    # a zero angle is the identity; view 1 is its source rotated by the recorded angle
    img = images[:5]
    np.testing.assert_array_equal(d.rotate(img, np.zeros(5)), img)
    v = a.train
    np.testing.assert_allclose(d.rotate(images[v.source], v.angle), v.x1, atol=1e-6)
    # rotating by the recorded angle is not the identity (the angles are not all ~0)
    assert float(np.mean(np.abs(v.x1 - images[v.source]))) > 0.01
    # rotation keeps the digit's mass up to interpolation and corner loss
    ratio = v.x1.sum(axis=1) / images[v.source].sum(axis=1)
    assert np.all((ratio > 0.8) & (ratio < 1.1))


def test_partners_need_two_per_class():
    rng = np.random.default_rng(0)
    p = d.same_class_partners(np.array([0, 0, 1, 1, 1]), rng)
    assert np.all(p != np.arange(5)) and np.all(np.array([0, 0, 1, 1, 1])[p] == [0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="single example"):
        d.same_class_partners(np.array([0, 0, 1]), rng)


def test_evaluation_finds_planted_correlations():
    rng = np.random.default_rng(0)
    n = 600
    shared = rng.normal(size=(n, 3))
    z1 = np.concatenate([shared, rng.normal(size=(n, 2))], 1) @ rng.normal(size=(5, 5))
    z2 = np.concatenate([shared + 0.1 * rng.normal(size=(n, 3)), rng.normal(size=(n, 2))], 1)
    y = (shared[:, 0] > 0).astype(int)
    cut = {"train": slice(0, 400), "val": slice(400, 500), "test": slice(500, 600)}
    proj = {s: (z1[c], z2[c]) for s, c in cut.items()}
    labels = {s: y[c] for s, c in cut.items()}
    out = ev.evaluate_projections(proj, labels, k=5, svm_cs=(1.0,))
    # three correlations near 1 / sqrt(1.01) = 0.995, two near 0 (either sign on 100 samples)
    corr = np.sort(out["test_correlations"])[::-1]
    assert np.all(corr[:3] > 0.97) and np.all(np.abs(corr[3:]) < 0.35)
    assert out["test_corr"] == pytest.approx(np.sum(corr))
    assert out["test_error"] < 0.1


def test_smoke_run_end_to_end(tmp_path):
    from experiments.dcca.__main__ import main

    record = main(["--smoke", "--run-dir", str(tmp_path)])
    for name in ("results.json", "results.md", "embedding.png", "training_curves.png"):
        assert (tmp_path / name).is_file() and (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert set(saved["summary"]) == {"cca", "dcca", "dcca_squared", "dccae"}
    for method, s in saved["summary"].items():
        for key in ("test_corr", "test_error", "train_seconds"):
            assert math.isfinite(s[key]["mean"]) and math.isfinite(s[key]["std"]), (method, key)
        assert 0.0 < s["test_corr"]["mean"] <= 10.0 + 1e-6
        assert 0.0 <= s["test_error"]["mean"] < 0.9  # better than chance (0.9)
    # even 40 steps on 300 pairs fit the training split: DCCA's training projections correlate
    # more than its test ones, and more than a random 10-dim projection would (about 10 * 0.06)
    for method in ("dcca", "dcca_squared", "dccae"):
        s = saved["summary"][method]
        assert s["train_corr"]["mean"] > 2.0, method
        assert s["train_corr"]["mean"] >= s["test_corr"]["mean"], method
    assert "| dcca |" in (tmp_path / "results.md").read_text()
    assert record["summary"] == saved["summary"]


def test_a_run_dir_of_other_settings_is_not_resumed(tmp_path):
    from experiments.dcca.config import get_config
    from experiments.dcca.run import _signature
    from experiments.framework import check_signature

    config = get_config("smoke")
    check_signature(tmp_path, _signature("dcca", 0, config))
    check_signature(tmp_path, _signature("dcca", 0, dataclasses.replace(config, steps=99)))
    with pytest.raises(ValueError, match="other settings"):
        check_signature(tmp_path, _signature("dcca", 0, dataclasses.replace(config, reg=0.5)))
