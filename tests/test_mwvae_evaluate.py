"""experiments/mwvae/evaluate.py: the importance-sampled NLL, the Frechet distance and the spread
of generated images, against independent references (quadrature, SciPy), no training."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("flax")

import scipy.linalg
import scipy.spatial.distance
from flax import nnx

from experiments.mwvae import evaluate
from experiments.mwvae import models as m

PIXELS = 6


def _model(kind: str, latent: int = 1) -> m.MultimodalVAE:
    return m.MultimodalVAE(
        kind, pixels=PIXELS, latent=latent, shared=1, hidden=8, label_hidden=8, rngs=nnx.Rngs(3)
    )


@pytest.mark.parametrize("kind", ["poe", "mmvae", "mopoe", "wvae"])
def test_importance_sampled_nll_matches_quadrature_with_one_latent_dimension(kind):
    # p(x, y) = int p(x | z) p(y | z) N(z; 0, 1) dz on a fine grid, in float64, against the
    # estimator with K = 16384 samples (128 passes of 128) from each model's q(z | x, y)
    rng = np.random.default_rng(0)
    model = _model(kind)
    x = jnp.asarray(rng.uniform(size=PIXELS), jnp.float32)
    y = jnp.asarray(4)
    e1, e2 = model.encode(x, y)
    joint = m.joint_posterior(model, e1, e2)
    q, split = m.joint_proposal(model, e1, e2, joint)
    nll, ll_image, ll_label = jax.jit(
        lambda key: evaluate.two_modality_nll(model, x, y, q, split, key, 16384)
    )(jax.random.key(0))
    grid = np.linspace(-12.0, 12.0, 48_001)
    z = jnp.asarray(grid[:, None], jnp.float32)
    log_lik = jax.vmap(
        lambda z: (
            m.bernoulli_log_likelihood(model.image_decoder(z), x)
            + m.categorical_log_likelihood(model.label_decoder(z), y)
        )
    )(z)
    log_joint = np.asarray(log_lik, float) - 0.5 * grid**2 - 0.5 * np.log(2 * np.pi)
    top = log_joint.max()
    reference = -(top + np.log(np.trapezoid(np.exp(log_joint - top), grid)))
    np.testing.assert_allclose(float(nll), reference, atol=0.02)
    assert float(ll_image) <= 0.0 and float(ll_label) <= 0.0


def test_sample_chunk_divides_and_bounds():
    assert evaluate.sample_chunk(1000) == 125
    assert evaluate.sample_chunk(1024) == 128
    assert evaluate.sample_chunk(64) == 64
    assert evaluate.sample_chunk(127) == 127
    assert evaluate.sample_chunk(131) == 1  # a prime above the limit: one sample a pass


def test_frechet_distance_against_scipy_and_zero_for_equal_sets():
    rng = np.random.default_rng(1)
    f1 = rng.normal(size=(500, 6))
    f2 = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) + 0.5
    c1, c2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    ref = np.sum((f1.mean(0) - f2.mean(0)) ** 2) + np.trace(
        c1 + c2 - 2 * np.real(scipy.linalg.sqrtm(c1 @ c2))
    )
    np.testing.assert_allclose(evaluate.frechet_distance(f1, f2), ref, rtol=1e-8)
    assert abs(evaluate.frechet_distance(f1, f1)) < 1e-8
    # dead features (constant columns): a singular covariance is fine
    dead = np.concatenate([f1, np.zeros((500, 3))], axis=1)
    value = evaluate.frechet_distance(dead, dead + 1e-3)
    assert np.isfinite(value) and abs(value - 9e-6) < 1e-8


def test_within_class_spread_against_pdist_and_collapse():
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(60, 5))
    y = np.repeat(np.arange(10), 6)
    spread = evaluate.within_class_spread(x, y)
    for c in range(10):
        np.testing.assert_allclose(spread[c], scipy.spatial.distance.pdist(x[y == c]).mean())
    collapsed = np.repeat(x[::6], 6, axis=0)  # one prototype per class
    np.testing.assert_allclose(evaluate.within_class_spread(collapsed, y), 0.0, atol=1e-6)
    one_each = evaluate.within_class_spread(x[:10], np.arange(10))
    assert np.all(np.isnan(one_each))


def test_judge_is_a_cnn_with_features():
    judge = evaluate.Classifier((8, 8), 16, rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).uniform(size=(3, 64)).astype(np.float32)
    assert evaluate.judge_features(judge, x).shape == (3, 16)
    assert evaluate.predict(judge, x).shape == (3,)
