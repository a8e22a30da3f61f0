"""experiments/mwvae/poly.py and poly_run.py: M modalities coupled through a W2 barycenter or
pairwise terms, and the MoPoE / MMVAE / PoE baselines; references in float64 NumPy."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("skimage")

from flax import nnx

from experiments.mwvae import __main__ as cli
from experiments.mwvae import poly

M, K, PIXELS = 4, 3, 10


def _stats(rng):
    means = rng.normal(size=(M, K))
    variances = rng.uniform(0.2, 2.0, size=(M, K))
    return means, variances


def _w2_diag_np(m1, v1, m2, v2):
    return np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)


def test_pairwise_terms_are_m_times_the_barycenter_terms(rng):
    means, variances = _stats(rng)
    pairwise = sum(
        _w2_diag_np(means[i], variances[i], means[j], variances[j])
        for i in range(M)
        for j in range(i + 1, M)
    )
    bary_mean, bary_sd = means.mean(0), np.sqrt(variances).mean(0)
    to_bary = sum(_w2_diag_np(means[i], variances[i], bary_mean, bary_sd**2) for i in range(M))
    f = lambda a: jnp.asarray(a, jnp.float32)
    np.testing.assert_allclose(float(poly.w2_pairwise(f(means), f(variances))), pairwise, rtol=1e-5)
    np.testing.assert_allclose(
        float(poly.w2_to_barycenter(f(means), f(variances))), to_bary, rtol=1e-5
    )
    np.testing.assert_allclose(pairwise, M * to_bary, rtol=1e-10)  # the identity itself
    assert poly.n_pairwise_terms(5) == 10


def test_subset_posteriors_against_numpy(rng):
    means, variances = _stats(rng)
    f = lambda a: jnp.asarray(a, jnp.float32)
    s = (0, 2)
    q = poly.subset_posterior("wvae_bary", f(means), f(variances), s)
    np.testing.assert_allclose(q.mean, means[list(s)].mean(0), rtol=1e-5)
    np.testing.assert_allclose(np.sqrt(q.var), np.sqrt(variances[list(s)]).mean(0), rtol=1e-5)
    q = poly.subset_posterior("poe", f(means), f(variances), s)
    precision = 1 + (1 / variances[list(s)]).sum(0)
    np.testing.assert_allclose(q.var, 1 / precision, rtol=1e-5)
    np.testing.assert_allclose(q.mean, (means[list(s)] / variances[list(s)]).sum(0) / precision,
                               rtol=1e-5)  # fmt: skip
    q = poly.subset_posterior("mmvae", f(means), f(variances), s)
    assert len(q.components) == 2
    np.testing.assert_allclose(q.components[1].mean, means[2], rtol=1e-6)
    q = poly.subset_posterior("mopoe", f(means), f(variances), (0, 1, 3))
    assert len(q.components) == 7  # the non-empty subsets of three modalities
    assert poly.subsets(3) == [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]


def test_barycenter_and_pairwise_objectives_are_equal_and_every_model_has_finite_grads(rng):
    xs = jnp.asarray(rng.uniform(size=(2, M, PIXELS)), jnp.float32)
    batch = {"x": xs, "y": jnp.zeros(2, jnp.int32)}
    losses = {}
    for kind in ("wvae_bary", "wvae_pairwise", "mopoe"):  # the smoke run trains every model
        model = poly.PolyVAE(kind, modalities=M, pixels=PIXELS, latent=K, hidden=8,
                             rngs=nnx.Rngs(0))  # fmt: skip
        graphdef, params = nnx.split(model, nnx.Param)
        loss_fn = poly.make_loss_fn(graphdef, w2_weight=0.5)
        loss, grads = jax.value_and_grad(lambda p, fn=loss_fn: fn(p, batch, jax.random.key(1))[0])(
            params
        )
        losses[kind] = float(loss)
        assert np.isfinite(losses[kind])
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads)), kind
    np.testing.assert_allclose(losses["wvae_bary"], losses["wvae_pairwise"], rtol=1e-5)
    with pytest.raises(ValueError, match="unknown model"):
        poly.PolyVAE("vae", modalities=M, pixels=PIXELS, latent=K, hidden=8, rngs=nnx.Rngs(0))


def test_smoke_polymnist_run_covers_every_model(tmp_path):
    run_dir = tmp_path / "poly"
    summary = cli.main(["--smoke", "--data", "polymnist", "--run-dir", str(run_dir),
                        "--nll-examples", "30"])  # fmt: skip
    on_disk = json.loads((run_dir / "results_polymnist.json").read_text())
    assert set(on_disk["aggregate"]) == set(poly.POLY_MODELS)
    for runs in on_disk["results"].values():
        assert all(r["nll_examples"] == 30 for r in runs.values())
    for stats in on_disk["aggregate"].values():
        assert len(stats["coherence_by_size"]["mean"]) == 1  # M = 2: one observed
        assert all(0.0 <= c <= 1.0 for c in stats["coherence_by_size"]["mean"])
        assert 0.0 <= stats["coherence_unconditional"]["mean"] <= 1.0
        assert 0.0 <= stats["coherence_self"]["mean"] <= 1.0
        assert np.isfinite(stats["joint_nll"]["mean"]) and stats["joint_nll"]["mean"] > 0
    assert set(on_disk["step_time_by_m"]["wvae_bary"]) == {"2"}
    assert (run_dir / "figures" / "coherence_by_subset_size.png").stat().st_size > 1000
    assert "| wvae_bary |" in (run_dir / "results_polymnist.md").read_text()
    assert summary["figures"] == ["figures/coherence_by_subset_size.png"]


def test_conv_networks_shapes_gradients_and_bad_image_shape():
    shape = (8, 12, 3)
    pixels = int(np.prod(shape))
    model = poly.PolyVAE("wvae_bary", modalities=2, pixels=pixels, latent=K, hidden=8,
                         rngs=nnx.Rngs(0), image_shape=shape)  # fmt: skip
    assert isinstance(model.encoders[0], poly.ConvEncoder)
    xs = jnp.asarray(np.random.default_rng(0).uniform(size=(2, pixels)), jnp.float32)
    means, variances = model.encode(xs)
    assert means.shape == variances.shape == (2, K) and bool(jnp.all(variances > 0))
    assert model.decoders[1](means[0]).shape == (pixels,)
    assert model.log_likelihoods(means[0], xs).shape == (2,)
    graphdef, params = nnx.split(model, nnx.Param)
    loss_fn = poly.make_loss_fn(graphdef, w2_weight=1.0, kl_weight=0.5)
    batch = {"x": xs[None], "y": jnp.zeros(1, jnp.int32)}
    grads = jax.grad(lambda p: loss_fn(p, batch, jax.random.key(0))[0])(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    for bad in ((6, 12, 3), (8, 12, 1)):  # h not divisible by 4; pixels do not match
        with pytest.raises(ValueError, match="image_shape"):
            poly.PolyVAE("poe", modalities=2, pixels=pixels, latent=K, hidden=8,
                         rngs=nnx.Rngs(0), image_shape=bad)  # fmt: skip


def test_kl_weight_scales_the_kl_term_only(rng):
    xs = jnp.asarray(rng.uniform(size=(2, M, PIXELS)), jnp.float32)
    batch = {"x": xs, "y": jnp.zeros(2, jnp.int32)}
    model = poly.PolyVAE("mopoe", modalities=M, pixels=PIXELS, latent=K, hidden=8, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)
    key = jax.random.key(3)
    full, aux = poly.make_loss_fn(graphdef, w2_weight=0.0)(params, batch, key)
    half, _ = poly.make_loss_fn(graphdef, w2_weight=0.0, kl_weight=0.5)(params, batch, key)
    np.testing.assert_allclose(float(full - half), 0.5 * float(aux["kl"]), rtol=1e-5)


def test_polymnist_presets_and_settings():
    from experiments.mwvae.config import get_config

    full = get_config("full", data="polymnist")
    assert full.data == "polymnist" and full.modalities == 5 and len(full.seeds) >= 3
    assert not full.comparison and full.poly_arch == "cnn"
    assert get_config("smoke", data="polymnist").poly_arch == "mlp"
    assert get_config("default", data="polymnist").seeds == (0,)
    assert get_config("smoke", data="polymnist").poly_source == "digits"
    assert get_config("full", data="mnist5k") == get_config("full")
    assert cli._data_flag(["--full", "--data", "polymnist"]) == "polymnist"
    assert cli._data_flag(["--data=polymnist", "--seeds", "0"]) == "polymnist"
    assert cli._data_flag(["--full"]) is None
    assert full.nll_examples is not None and full.nll_examples < 1000  # of the 1,000 tests
    bad = (("kl_weight", 0.0), ("kl_weight", float("nan")), ("poly_arch", "rnn"),
           ("nll_examples", 0), ("nll_examples", 2.5))  # fmt: skip
    for field, value in bad:
        config = get_config("smoke", data="polymnist")
        with pytest.raises(ValueError, match=field):
            dataclasses.replace(config, **{field: value}).validate()


def test_nll_on_a_subset_is_the_same_examples_with_the_same_keys():
    from experiments.mwvae import evaluate, poly_run

    xs = np.arange(250 * 2 * 3, dtype=np.float32).reshape(250, 2, 3)
    seen = []

    def fn(chunk, i):  # per example: its first value plus a key-like chunk index
        seen.append(chunk.shape)
        return (chunk[:, 0, 0] + 1e4 * i,)

    (part,) = evaluate.map_chunks(fn, (xs,), 150, poly_run.CHUNK)
    (whole,) = evaluate.map_chunks(fn, (xs,), 250, poly_run.CHUNK)
    assert part.shape == (150,) and whole.shape == (250,)
    np.testing.assert_array_equal(part, whole[:150])
    assert set(seen) == {(poly_run.CHUNK, 2, 3)}  # padded: one shape, one compilation
    for bad in ((fn, (xs,), 0, 10), (fn, (xs,), 10, 0), (fn, (xs,), 251, 100)):
        with pytest.raises(ValueError, match=r"`n`|`arrays`"):
            evaluate.map_chunks(*bad)


def test_diverged_runs_are_counted_and_left_out_of_the_means():
    from experiments.mwvae import poly_run
    from experiments.mwvae.config import get_config

    def run(c, nll):
        return {"coherence_by_size": [c, c + 0.1], "coherence_conditional": c + 0.05,
                "coherence_self": 0.5, "coherence_unconditional": 0.0, "joint_nll": nll,
                "seconds_per_step": 0.1}  # fmt: skip

    diverged = {"diverged_at_step": 714}
    some = poly_run._aggregate([run(0.2, 10.0), diverged, run(0.4, 30.0)])
    assert (some["finished"], some["diverged"]) == (2, 1)
    np.testing.assert_allclose(some["joint_nll"]["mean"], 20.0)
    np.testing.assert_allclose(some["joint_nll"]["std"], np.std([10.0, 30.0], ddof=1))
    np.testing.assert_allclose(some["coherence_by_size"]["mean"], [0.3, 0.4])
    none = poly_run._aggregate([diverged, diverged])
    assert (none["finished"], none["diverged"]) == (0, 2) and np.isnan(none["joint_nll"]["mean"])
    config = dataclasses.replace(get_config("smoke", data="polymnist"), modalities=3)
    summary = {"aggregate": {"poe": some, "mopoe": none}, "judge_accuracy": [0.9, 0.9, 0.9],
               "step_time_by_m": {"wvae_bary": {2: 0.1, 3: 0.2}}}  # fmt: skip
    table = poly_run._markdown(summary, config)
    assert "| poe | 0.300 ± 0.141 | 0.400 ± 0.141 |" in table and "| 2 of 3 |" in table
    assert "| mopoe | diverged | diverged |" in table and "| 0 of 2 |" in table
