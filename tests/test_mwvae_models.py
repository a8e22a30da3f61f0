"""experiments/mwvae/models.py against float64 references (NumPy, SciPy), no training."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("flax")

import scipy.linalg as scipy_linalg
import scipy.stats as scipy_stats
from flax import nnx

import alignment as al
from experiments.mwvae import models as m

RTOL = 1e-5  # float32 closed forms
K, PIXELS, BATCH = 4, 16, 5


def _model(kind: str) -> m.MultimodalVAE:
    return m.MultimodalVAE(
        kind, pixels=PIXELS, latent=K, shared=2, hidden=8, label_hidden=8, rngs=nnx.Rngs(0)
    )


def _batch(rng):
    x = rng.uniform(size=(BATCH, PIXELS)).astype(np.float32)
    y = rng.integers(0, 10, BATCH)
    return jnp.asarray(x), jnp.asarray(y)


def _head(encoder: m.Encoder, inputs) -> np.ndarray:
    """The encoder head's raw output ``[b, 2k (+ k(k-1)/2)]``, in float64."""
    head = jax.jit(jax.vmap(lambda v: encoder.head(jax.nn.relu(encoder.body(v)))))
    return np.asarray(head(inputs), float)


def _w2_reference(m1, c1, m2, c2) -> float:
    """``W2^2`` from covariances by SciPy's sqrtm, float64."""
    r1 = scipy_linalg.sqrtm(c1)
    cross = scipy_linalg.sqrtm(r1 @ c2 @ r1)
    return float(np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * np.real(cross)))


def test_product_of_experts_matches_numerical_product_of_densities(rng):
    means = rng.normal(size=(3, 2))
    variances = rng.uniform(0.2, 2.0, size=(3, 2))
    q = m.product_of_experts(jnp.asarray(means, jnp.float32), jnp.asarray(variances, jnp.float32))
    grid = np.linspace(-12, 12, 200_001)
    for j in range(2):  # per coordinate: multiply the densities on a grid, normalise, moments
        log_p = sum(
            scipy_stats.norm.logpdf(grid, means[e, j], np.sqrt(variances[e, j])) for e in range(3)
        )
        p = np.exp(log_p - log_p.max())
        p /= p.sum()
        mean = np.sum(grid * p)
        np.testing.assert_allclose(float(q.mean[j]), mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(float(q.var[j]), np.sum((grid - mean) ** 2 * p), rtol=1e-4)


def test_poe_posterior_includes_the_prior_expert(rng):
    model = _model("poe")
    x, y = _batch(rng)
    h1 = _head(model.image_encoder, x[:1])[0]
    h2 = _head(model.label_encoder, jax.nn.one_hot(y[:1], 10))[0]

    @jax.jit
    def posteriors(x, y):
        e1, e2 = model.encode(x, y)
        return m.joint_posterior(model, e1, e2), m.decoder_inputs(model, e1, e2, "image")[0]

    joint, image_only = posteriors(x[0], y[0])
    mu = np.stack([np.zeros(K), h1[:K], h2[:K]])
    var = np.stack([np.ones(K), np.exp(h1[K:]), np.exp(h2[K:])])
    precision = np.sum(1 / var, axis=0)
    np.testing.assert_allclose(joint.var, 1 / precision, rtol=RTOL)
    np.testing.assert_allclose(
        joint.mean, np.sum(mu / var, axis=0) / precision, rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(image_only.var, 1 / (1 + 1 / var[1]), rtol=RTOL)


@pytest.mark.parametrize("kind", ["wvae", "wvae_shared"])
@pytest.mark.parametrize("jit", [False, True])
def test_w2_term_is_gaussian_w2_diag_of_the_encoder_outputs(rng, kind, jit):
    model = _model(kind)
    x, y = _batch(rng)
    h1 = _head(model.image_encoder, x)
    h2 = _head(model.label_encoder, jax.nn.one_hot(y, 10))
    d = K if kind == "wvae" else 2  # the shared coordinates only
    mean1, var1 = h1[:, :d], np.exp(h1[:, K : K + d])  # the head gives log-variances
    mean2, var2 = h2[:, :d], np.exp(h2[:, K : K + d])
    reference = np.sum((mean1 - mean2) ** 2 + (np.sqrt(var1) - np.sqrt(var2)) ** 2, axis=1)
    library = jax.vmap(al.gaussian_w2_diag)(mean1, var1, mean2, var2)
    np.testing.assert_allclose(library, reference, rtol=RTOL)

    eps = jnp.asarray(rng.normal(size=(BATCH, 3, K)), jnp.float32)

    def losses(model, weight):
        fn = lambda x, y, e: m.example_loss(model, x, y, e, w2_weight=weight, label_weight=2.0)
        return jax.vmap(fn)(x, y, eps)

    fn = jax.jit(losses) if jit else losses
    with_w2, metrics = fn(model, 3.0)
    without, _ = fn(model, 0.0)
    np.testing.assert_allclose(metrics["w2"], reference, rtol=RTOL)
    np.testing.assert_allclose(with_w2 - without, 3.0 * reference, rtol=1e-4, atol=1e-4)
    # averaged per example, like the ELBO
    key = jax.random.PRNGKey(0)
    mean_loss, batch_metrics = m.batch_loss(model, x, y, key, w2_weight=3.0, label_weight=2.0)
    np.testing.assert_allclose(batch_metrics["w2"], reference.mean(), rtol=RTOL)
    assert np.isfinite(float(mean_loss))


def test_loss_fn_for_the_framework_is_batch_loss_on_the_split_model(rng):
    model = _model("wvae")
    graphdef, params = nnx.split(model, nnx.Param)
    params = nnx.to_pure_dict(params)
    x, y = _batch(rng)
    key = jax.random.key(1)
    loss_fn = jax.jit(m.make_loss_fn(graphdef, w2_weight=3.0, label_weight=2.0))
    loss, aux = loss_fn(params, {"x": x, "y": y}, key)
    expected, metrics = m.batch_loss(model, x, y, key, w2_weight=3.0, label_weight=2.0)
    np.testing.assert_allclose(loss, expected, rtol=RTOL)
    assert set(aux) == {"rec_image", "rec_label", "kl", "w2"}  # "loss" is the framework's
    for name, value in aux.items():
        np.testing.assert_allclose(value, metrics[name], rtol=RTOL)
    grads = jax.grad(lambda p: loss_fn(p, {"x": x, "y": y}, key)[0])(params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_factorized_loss_has_no_coupling(rng):
    model = _model("factorized")
    x, y = _batch(rng)
    eps = jnp.asarray(rng.normal(size=(3, K)), jnp.float32)
    loss = lambda w: m.example_loss(model, x[0], y[0], eps, w2_weight=w, label_weight=1.0)
    assert float(loss(0.0)[0]) == float(loss(100.0)[0])
    assert float(loss(0.0)[1]["w2"]) > 0  # reported, not used


def test_full_covariance_w2_kl_and_gradients(rng):
    model = _model("wvae_full")
    x, y = _batch(rng)
    e1, e2 = jax.vmap(model.encode)(x, y)
    cov1 = np.asarray(e1.scale, float) @ np.swapaxes(np.asarray(e1.scale, float), 1, 2)
    cov2 = np.asarray(e2.scale, float) @ np.swapaxes(np.asarray(e2.scale, float), 1, 2)
    mean1, mean2 = np.asarray(e1.mean, float), np.asarray(e2.mean, float)
    eps = jnp.asarray(rng.normal(size=(BATCH, 3, K)), jnp.float32)
    fn = lambda x, y, e: m.example_loss(model, x, y, e, w2_weight=1.0, label_weight=1.0)
    _, metrics = jax.jit(jax.vmap(fn))(x, y, eps)
    for i in range(BATCH):
        ref = _w2_reference(mean1[i], cov1[i], mean2[i], cov2[i])
        np.testing.assert_allclose(metrics["w2"][i], ref, rtol=1e-4, atol=1e-5)
        # KL(N(m, S) || N(0, I)) from the covariance, float64
        kl_ref = 0.5 * (np.trace(cov1[i]) + mean1[i] @ mean1[i] - K - np.linalg.slogdet(cov1[i])[1])
        g = m.FullGaussian(e1.mean[i], e1.scale[i], e1.log_det[i])
        np.testing.assert_allclose(m.kl_total(g), kl_ref, rtol=1e-4, atol=1e-5)

    graphdef, params = nnx.split(model, nnx.Param)

    def loss(params):
        return m.batch_loss(
            nnx.merge(graphdef, params),
            x,
            y,
            jax.random.PRNGKey(1),
            w2_weight=1.0,
            label_weight=1.0,
        )[0]

    grads = jax.jit(jax.grad(loss))(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_barycenter_is_the_w2_midpoint(rng, enable_x64):
    k = 3
    a1, a2 = rng.normal(size=(k, k)), rng.normal(size=(k, k))
    s1 = np.linalg.cholesky(a1 @ a1.T + 0.5 * np.eye(k))
    s2 = np.linalg.cholesky(a2 @ a2.T + 0.5 * np.eye(k))
    m1, m2 = rng.normal(size=k), rng.normal(size=k)
    full = lambda mu, s: m.FullGaussian(jnp.asarray(mu), jnp.asarray(s), jnp.asarray(0.0))
    bary = m.barycenter(full(m1, s1), full(m2, s2))
    cov = np.asarray(bary.scale) @ np.asarray(bary.scale).T
    c1, c2 = s1 @ s1.T, s2 @ s2.T
    # McCann's midpoint from SciPy: T = S1^-1/2 (S1^1/2 S2 S1^1/2)^1/2 S1^-1/2
    r1 = np.real(scipy_linalg.sqrtm(c1))
    t = np.linalg.solve(r1, np.linalg.solve(r1, np.real(scipy_linalg.sqrtm(r1 @ c2 @ r1))).T)
    half = 0.5 * (np.eye(k) + t)
    np.testing.assert_allclose(cov, half @ c1 @ half, rtol=1e-8, atol=1e-10)
    total = _w2_reference(m1, c1, m2, c2)
    mid = np.asarray(bary.mean)
    np.testing.assert_allclose(_w2_reference(mid, cov, m1, c1), total / 4, rtol=1e-7)
    np.testing.assert_allclose(_w2_reference(mid, cov, m2, c2), total / 4, rtol=1e-7)
    np.testing.assert_allclose(bary.log_det, np.linalg.slogdet(bary.scale)[1], rtol=1e-10)
    # log q at a sample, against SciPy's density
    eps = rng.normal(size=k)
    z = np.asarray(m.sample(bary, jnp.asarray(eps)))
    np.testing.assert_allclose(
        m.log_density_of_sample(bary, jnp.asarray(eps)),
        scipy_stats.multivariate_normal(mid, cov).logpdf(z),
        rtol=1e-10,
    )
    v1, v2 = rng.uniform(0.1, 2, k), rng.uniform(0.1, 2, k)
    diag = m.barycenter(m.DiagGaussian(m1, v1), m.DiagGaussian(m2, v2))
    total = _w2_reference(m1, np.diag(v1), m2, np.diag(v2))
    np.testing.assert_allclose(
        _w2_reference(np.asarray(diag.mean), np.diag(np.asarray(diag.var)), m1, np.diag(v1)),
        total / 4,
        rtol=1e-5,
    )
    eps = rng.normal(size=k)
    z = np.asarray(m.sample(diag, jnp.asarray(eps)))
    np.testing.assert_allclose(
        m.log_density_of_sample(diag, jnp.asarray(eps)),
        scipy_stats.multivariate_normal(
            np.asarray(diag.mean), np.diag(np.asarray(diag.var))
        ).logpdf(z),
        rtol=1e-5,
    )


def test_shared_model_fills_a_missing_private_part_from_the_prior(rng):
    model = _model("wvae_shared")
    x, y = _batch(rng)
    e1, e2 = model.encode(x[0], y[0])
    image_in, label_in = m.decoder_inputs(model, e1, e2, "label")
    np.testing.assert_allclose(image_in.mean[:2], e2.mean[:2])  # shared part from the label
    np.testing.assert_allclose(image_in.mean[2:], 0.0)  # private image part from the prior
    np.testing.assert_allclose(image_in.var[2:], 1.0)
    np.testing.assert_allclose(label_in.mean, e2.mean)
    q, split = m.joint_proposal(model, e1, e2, m.joint_posterior(model, e1, e2))
    assert q.mean.shape == (2 + 2 * 2,)
    zi, zl = split(jnp.arange(6.0))
    np.testing.assert_array_equal(zi, [0, 1, 2, 3])
    np.testing.assert_array_equal(zl, [0, 1, 4, 5])


def test_likelihoods_against_references(rng):
    x = rng.uniform(size=7)
    logits = rng.normal(size=7)
    p = 1 / (1 + np.exp(-logits))
    ref = np.sum(x * np.log(p) + (1 - x) * np.log(1 - p))
    np.testing.assert_allclose(
        m.bernoulli_log_likelihood(jnp.asarray(logits), jnp.asarray(x)), ref, rtol=RTOL
    )
    logits = rng.normal(size=10)
    ref = scipy_stats.multinomial(1, np.exp(logits) / np.exp(logits).sum()).logpmf(np.eye(10)[3])
    np.testing.assert_allclose(m.categorical_log_likelihood(jnp.asarray(logits), 3), ref, rtol=RTOL)


# ------------------------------------------------------------------------------------------
# The mixture baselines (MMVAE, MoPoE), the KL-coupled model and KL annealing.
# ------------------------------------------------------------------------------------------


def _diag(rng, k=K):
    mean = rng.normal(size=k)
    var = rng.uniform(0.3, 2.0, size=k)
    return m.DiagGaussian(jnp.asarray(mean, jnp.float32), jnp.asarray(var, jnp.float32))


def _scipy_logpdf(g: m.DiagGaussian, z) -> float:
    return float(
        scipy_stats.multivariate_normal(
            np.asarray(g.mean, float), np.diag(np.asarray(g.var, float))
        ).logpdf(np.asarray(z, float))
    )


def test_mixture_density_and_moments_against_scipy_and_sampling(rng):
    comps = tuple(_diag(rng) for _ in range(3))
    mix = m.Mixture(comps)
    z = rng.normal(size=K)
    ref = np.log(np.mean([np.exp(_scipy_logpdf(c, z)) for c in comps]))
    np.testing.assert_allclose(float(m.log_mixture_density(mix, jnp.asarray(z))), ref, rtol=1e-5)
    np.testing.assert_allclose(float(m.log_density(comps[0], jnp.asarray(z))),
                               _scipy_logpdf(comps[0], z), rtol=1e-5)  # fmt: skip
    # moment matching against a large sample of the mixture
    n = 400_000
    which = rng.integers(0, 3, n)
    means = np.stack([np.asarray(c.mean, float) for c in comps])[which]
    sds = np.sqrt(np.stack([np.asarray(c.var, float) for c in comps]))[which]
    draws = means + sds * rng.normal(size=(n, K))
    g = m.moment_match(mix)
    np.testing.assert_allclose(g.mean, draws.mean(0), atol=0.01)
    np.testing.assert_allclose(g.var, draws.var(0), rtol=0.02)
    assert m.moment_match(comps[0]) is comps[0]


def test_kl_diag_against_numerical_integration(rng):
    g1, g2 = _diag(rng, 2), _diag(rng, 2)
    grid = np.linspace(-30, 30, 600_001)
    ref = 0.0
    for j in range(2):  # the KL of independent coordinates is the sum of the 1-D KLs
        p = scipy_stats.norm(float(g1.mean[j]), np.sqrt(float(g1.var[j])))
        q = scipy_stats.norm(float(g2.mean[j]), np.sqrt(float(g2.var[j])))
        ref += np.trapezoid(p.pdf(grid) * (p.logpdf(grid) - q.logpdf(grid)), grid)
    np.testing.assert_allclose(float(m.kl_diag(g1, g2)), ref, rtol=1e-5)


def _assembled_loss(model, x, y, eps, *, label_weight, w2_weight, kl_weight):
    """The objectives of mmvae, mopoe and kl_coupled assembled in float64 NumPy/SciPy from the
    networks' outputs (the networks themselves are not what is tested here)."""
    e1, e2 = model.encode(x, y)
    image_ll = lambda z: float(
        m.bernoulli_log_likelihood(model.image_decoder(jnp.asarray(z, jnp.float32)), x)
    )
    label_ll = lambda z: float(
        m.categorical_log_likelihood(model.label_decoder(jnp.asarray(z, jnp.float32)), y)
    )
    eps = np.asarray(eps, float)

    def as_np(g):
        return np.asarray(g.mean, float), np.asarray(g.var, float)

    def poe(*experts):
        prec = sum(1 / v for _, v in experts)
        return sum(mu / v for mu, v in experts) / prec, 1 / prec

    prior = (np.zeros(K), np.ones(K))
    lognorm = lambda z, g: scipy_stats.multivariate_normal(g[0], np.diag(g[1])).logpdf(z)
    kl = lambda g: 0.5 * np.sum(g[1] + g[0] ** 2 - 1 - np.log(g[1]))
    if model.kind == "kl_coupled":
        g1, g2 = as_np(e1), as_np(e2)
        z1, z2 = g1[0] + np.sqrt(g1[1]) * eps[0], g2[0] + np.sqrt(g2[1]) * eps[1]
        kl12 = 0.5 * np.sum(
            g1[1] / g2[1] + (g1[0] - g2[0]) ** 2 / g2[1] - 1 + np.log(g2[1] / g1[1])
        )
        kl21 = 0.5 * np.sum(
            g2[1] / g1[1] + (g1[0] - g2[0]) ** 2 / g1[1] - 1 + np.log(g1[1] / g2[1])
        )
        rec = image_ll(z1) + label_weight * label_ll(z2)
        return -rec + kl_weight * (kl(g1) + kl(g2)) + w2_weight * 0.5 * (kl12 + kl21)
    if model.kind == "mmvae":
        comps = [as_np(e1), as_np(e2)]
    else:
        g1, g2 = as_np(e1), as_np(e2)
        comps = [poe(prior, g1), poe(prior, g2), poe(prior, g1, g2)]
    zs = [c[0] + np.sqrt(c[1]) * eps[i] for i, c in enumerate(comps)]
    rec = np.mean([image_ll(z) + label_weight * label_ll(z) for z in zs])
    if model.kind == "mmvae":
        log_mix = lambda z: np.log(np.mean([np.exp(lognorm(z, c)) for c in comps]))
        reg = np.mean([log_mix(z) - lognorm(z, prior) for z in zs])
    else:
        reg = np.mean([kl(c) for c in comps])
    return -rec + kl_weight * reg


@pytest.mark.parametrize("kind", ["mmvae", "mopoe", "kl_coupled"])
def test_mixture_and_kl_coupled_objectives_against_float64_assembly(rng, kind):
    model = _model(kind)
    x, y = _batch(rng)
    eps = jnp.asarray(rng.normal(size=(3, K)), jnp.float32)
    hyper = {"label_weight": 10.0, "w2_weight": 0.7, "kl_weight": 0.3}
    loss, metrics = m.example_loss(model, x[0], y[0], eps, **hyper)
    ref = _assembled_loss(model, x[0], y[0], eps, **hyper)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-4)
    assert float(metrics["w2"]) >= 0.0
    # differentiable, finite, and the batch form averages the example form
    graphdef, params = nnx.split(model, nnx.Param)
    loss_fn = jax.jit(m.make_loss_fn(graphdef, w2_weight=0.7, label_weight=10.0))
    batch = {"x": x, "y": y, "beta": jnp.full(BATCH, 0.3)}
    grads = jax.grad(lambda p: loss_fn(p, batch, jax.random.key(0))[0])(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_mixture_joint_posteriors_and_unimodal_posteriors(rng):
    x, y = _batch(rng)
    for kind, n_comp in (("mmvae", 2), ("mopoe", 3)):
        model = _model(kind)
        e1, e2 = model.encode(x[0], y[0])
        joint = m.joint_posterior(model, e1, e2)
        assert isinstance(joint, m.Mixture) and len(joint.components) == n_comp
        both, _ = m.decoder_inputs(model, e1, e2, "both", joint)
        np.testing.assert_allclose(both.mean, m.moment_match(joint).mean, rtol=1e-6)
    # MoPoE's unimodal posteriors hold the prior expert, MMVAE's are the experts themselves
    model = _model("mopoe")
    e1, e2 = model.encode(x[0], y[0])
    q1, _ = m.unimodal_posteriors(model, e1, e2)
    np.testing.assert_allclose(q1.var, 1 / (1 + 1 / e1.var), rtol=1e-5)
    model = _model("mmvae")
    e1, e2 = model.encode(x[0], y[0])
    assert m.unimodal_posteriors(model, e1, e2)[0] is e1


def test_kl_annealing_weights_travel_with_the_batch():
    x = np.zeros((10, 2), np.float32)
    y = np.arange(10, dtype=np.int32)
    from experiments.mwvae.data import make_batch_fn

    base = make_batch_fn(x, y, seed=0, batch_size=5)
    fn = m.annealed_batch_fn(base, anneal_steps=4)
    betas = [float(fn(s)["beta"][0]) for s in range(6)]
    np.testing.assert_allclose(betas, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    assert fn(3)["beta"].shape == (5,) and fn(3)["beta"].dtype == np.float32
    np.testing.assert_array_equal(fn(2)["y"], base(2)["y"])
    assert float(m.annealed_batch_fn(base, 0)(0)["beta"][0]) == 1.0
