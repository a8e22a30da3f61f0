"""Tests for alignment._src.contrastive against direct float64 NumPy formulas from the papers.

References: the VSE / VSE++ hinge (including VSE++'s published reduction, a sum over the batch),
InfoNCE and CLIP's symmetric cross-entropy, SigLIP's pairwise log-sigmoid, each written out in
NumPy with explicit loops over anchors; the closed-form mutual information of a bivariate
Gaussian for the InfoNCE bound; the dense loss on the global batch for the sharded forms (on 8
simulated CPU devices, in a subprocess) and for the chunked SigLIP; ``check_grads`` under x64.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from alignment._src import contrastive as co
from tests.conftest import x64

F32_RTOL = 1e-5
GRAD_X64 = 1e-6


# ------------------------------------------------------------------------------------------
# Float64 NumPy references, written from the papers' formulas.
# ------------------------------------------------------------------------------------------


def _logsumexp(a, axis):
    m = a.max(axis=axis, keepdims=True)
    return m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))


def _ref_infonce(za, zb, scale, mask=None):
    za, zb = np.asarray(za, np.float64), np.asarray(zb, np.float64)
    b = za.shape[0]
    mask = np.eye(b, dtype=bool) if mask is None else np.asarray(mask, bool)
    logits = scale * za @ zb.T
    logp = logits - _logsumexp(logits, 1)
    rows = [-logp[i, mask[i]].mean() for i in range(b) if mask[i].any()]
    return float(np.mean(rows))


def _ref_clip(za, zb, scale, mask=None):
    mask_t = None if mask is None else np.asarray(mask).T
    return 0.5 * (_ref_infonce(za, zb, scale, mask) + _ref_infonce(zb, za, scale, mask_t))


def _ref_siglip(za, zb, scale, bias, mask=None):
    za, zb = np.asarray(za, np.float64), np.asarray(zb, np.float64)
    b = za.shape[0]
    mask = np.eye(b, dtype=bool) if mask is None else np.asarray(mask, bool)
    logits = scale * za @ zb.T + bias
    labels = np.where(mask, 1.0, -1.0)
    return float(np.sum(np.logaddexp(0.0, -labels * logits)) / b)  # -log sigmoid = softplus(-)


def _ref_vse(za, zb, margin, hardest, mask=None):
    """Per anchor: mean over positives of (sum or max over negatives of the hinge)."""
    s = np.asarray(za, np.float64) @ np.asarray(zb, np.float64).T
    b = s.shape[0]
    mask = np.eye(b, dtype=bool) if mask is None else np.asarray(mask, bool)
    total = 0.0
    for sim, m in ((s, mask), (s.T, mask.T)):
        terms = []
        for i in range(b):
            pos, neg = np.flatnonzero(m[i]), np.flatnonzero(~m[i])
            if len(pos) == 0:
                continue
            per_pos = []
            for p in pos:
                h = [max(0.0, margin - sim[i, p] + sim[i, n]) for n in neg]
                per_pos.append((max(h) if hardest else sum(h)) if h else 0.0)
            terms.append(np.mean(per_pos))
        total += np.mean(terms)
    return total


def _vsepp_published(im, s, margin, max_violation):
    """VSE++'s ``ContrastiveLoss.forward`` (Faghri et al.), transcribed to NumPy: a batch sum."""
    scores = np.asarray(im, np.float64) @ np.asarray(s, np.float64).T
    diagonal = np.diag(scores)[:, None]
    cost_s = np.clip(margin + scores - diagonal, 0, None)  # captions for each image
    cost_im = np.clip(margin + scores - diagonal.T, 0, None)  # images for each caption
    eye = np.eye(scores.shape[0], dtype=bool)
    cost_s[eye] = 0
    cost_im[eye] = 0
    if max_violation:
        return cost_s.max(1).sum() + cost_im.max(0).sum()
    return cost_s.sum() + cost_im.sum()


def _embeddings(rng, b=8, k=5, dtype=np.float32, normalise=True):
    za = rng.normal(size=(b, k))
    zb = za + 0.8 * rng.normal(size=(b, k))
    if normalise:
        za /= np.linalg.norm(za, axis=1, keepdims=True)
        zb /= np.linalg.norm(zb, axis=1, keepdims=True)
    return za.astype(dtype), zb.astype(dtype)


def _ids_mask(ids):
    ids = np.asarray(ids)
    return ids[:, None] == ids[None, :]


# Module-level jitted losses: each (shape, dtype) compiles once for the whole file.
DENSE = {
    "infonce": jax.jit(co.infonce_loss),
    "clip": jax.jit(co.clip_loss),
    "siglip": jax.jit(co.siglip_loss),
    "vse": jax.jit(co.vse_loss, static_argnames="hardest"),
}


def _reference(name, za, zb, mask=None, *, logit_scale=None, logit_bias=None, hardest=False):
    if name == "infonce":
        return _ref_infonce(za, zb, min(math.exp(logit_scale), 100.0), mask)
    if name == "clip":
        return _ref_clip(za, zb, min(math.exp(logit_scale), 100.0), mask)
    if name == "siglip":
        return _ref_siglip(za, zb, math.exp(logit_scale), logit_bias, mask)
    return _ref_vse(za, zb, 0.2, hardest, mask)


def _kwargs(name, logit_scale, logit_bias, hardest):
    if name in ("infonce", "clip"):
        return {"logit_scale": logit_scale}
    if name == "siglip":
        return {"logit_scale": logit_scale, "logit_bias": logit_bias}
    return {"margin": 0.2, "hardest": hardest}


# ------------------------------------------------------------------------------------------
# Dense losses against the formulas.
# ------------------------------------------------------------------------------------------


def test_initial_values_are_the_papers():
    assert co.CLIP_LOGIT_SCALE_INIT == pytest.approx(math.log(1 / 0.07))
    assert math.exp(co.CLIP_LOGIT_SCALE_INIT) == pytest.approx(1 / 0.07)
    assert co.CLIP_MAX_SCALE == 100.0
    assert math.exp(co.SIGLIP_LOGIT_SCALE_INIT) == pytest.approx(10.0)
    assert co.SIGLIP_LOGIT_BIAS_INIT == -10.0
    assert co.VSE_MARGIN == 0.2


@pytest.mark.parametrize(
    ("name", "hardest"),
    [("infonce", False), ("clip", False), ("siglip", False), ("vse", False), ("vse", True)],
)
@pytest.mark.parametrize("jit", [False, True])
def test_dense_losses_match_formulas(rng, name, hardest, jit):
    za, zb = _embeddings(rng)
    kw = _kwargs(name, 1.7, -3.0, hardest)
    fn = DENSE[name] if jit else getattr(co, f"{name}_loss")
    value = fn(za, zb, **kw)
    assert value.shape == () and value.dtype == jnp.float32
    expected = _reference(name, za, zb, logit_scale=1.7, logit_bias=-3.0, hardest=hardest)
    np.testing.assert_allclose(value, expected, rtol=F32_RTOL)


@pytest.mark.parametrize(
    ("name", "hardest"),
    [("infonce", False), ("clip", False), ("siglip", False), ("vse", False), ("vse", True)],
)
def test_dense_losses_with_several_positives(rng, name, hardest):
    za, zb = _embeddings(rng)
    mask = _ids_mask([0, 0, 1, 2, 2, 2, 3, 4])
    mask[7, 7] = False  # an anchor without any positive is left out of the mean
    kw = _kwargs(name, 2.0, -2.0, hardest)
    value = DENSE[name](za, zb, positives=mask, **kw)
    expected = _reference(name, za, zb, mask, logit_scale=2.0, logit_bias=-2.0, hardest=hardest)
    np.testing.assert_allclose(value, expected, rtol=F32_RTOL)
    # the identity as an explicit mask is the default (two compiled programs: float32 rounding)
    np.testing.assert_allclose(
        DENSE[name](za, zb, positives=np.eye(8, dtype=bool), **kw),
        DENSE[name](za, zb, **kw),
        rtol=1e-6,
    )


@pytest.mark.parametrize("hardest", [False, True])
def test_vse_is_vsepp_published_code_divided_by_the_batch(rng, hardest):
    za, zb = _embeddings(rng)
    value = DENSE["vse"](za, zb, margin=0.2, hardest=hardest)
    np.testing.assert_allclose(8 * value, _vsepp_published(za, zb, 0.2, hardest), rtol=F32_RTOL)


def test_clip_logit_scale_clamp():
    rng = np.random.default_rng(1)
    za, zb = _embeddings(rng)
    at_clamp = co.clip_loss(za, zb, logit_scale=math.log(100.0))
    above = co.clip_loss(za, zb, logit_scale=math.log(300.0))
    np.testing.assert_allclose(above, at_clamp, rtol=1e-6)
    np.testing.assert_allclose(above, _ref_clip(za, zb, 100.0), rtol=F32_RTOL)
    grad = jax.grad(lambda s: co.clip_loss(za, zb, logit_scale=s))
    assert float(grad(math.log(300.0))) == 0.0  # beyond the clamp: no gradient
    assert float(grad(co.CLIP_LOGIT_SCALE_INIT)) != 0.0
    unclamped = co.clip_loss(za, zb, logit_scale=math.log(300.0), max_scale=None)
    np.testing.assert_allclose(unclamped, _ref_clip(za, zb, 300.0), rtol=F32_RTOL)


@pytest.mark.parametrize("name", ["infonce", "clip", "siglip", "vse"])
def test_dense_losses_gradients_x64(rng, name):
    za, zb = _embeddings(rng, b=5, k=3, dtype=np.float64)
    mask = _ids_mask([0, 0, 1, 2, 2])
    with x64():
        if name == "vse":
            fn = jax.jit(lambda a, b: co.vse_loss(a, b, margin=0.5, positives=mask))
            args = (za, zb)
        elif name == "siglip":
            fn = jax.jit(lambda a, b, s, c: co.siglip_loss(a, b, logit_scale=s, logit_bias=c))
            args = (za, zb, 1.2, -1.0)
        else:
            loss = getattr(co, f"{name}_loss")
            fn = jax.jit(lambda a, b, s, loss=loss: loss(a, b, logit_scale=s, positives=mask))
            args = (za, zb, 1.2)
        check_grads(fn, args, order=1, atol=GRAD_X64, modes=("rev",))


def test_dense_losses_vmap_equals_loop(rng):
    pairs = [_embeddings(rng) for _ in range(3)]
    za, zb = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    for name in ("clip", "siglip"):
        batched = jax.vmap(DENSE[name])(za, zb)
        for i in range(3):
            np.testing.assert_allclose(batched[i], DENSE[name](za[i], zb[i]), rtol=1e-6)


def test_losses_at_uninformative_and_perfect_embeddings():
    zeros = jnp.zeros((6, 3))
    np.testing.assert_allclose(co.clip_loss(zeros, zeros), math.log(6), rtol=1e-6)
    z = 10.0 * jnp.eye(6)
    assert float(co.clip_loss(z, z, logit_scale=0.0)) < 1e-6
    assert float(co.vse_loss(z / 10, z / 10, margin=0.2)) == 0.0
    # SigLIP at init with the bias prior: the predicted probability of every pair is sigmoid(b)
    np.testing.assert_allclose(
        co.siglip_loss(zeros, zeros, logit_bias=-math.log(5)),
        _ref_siglip(np.zeros((6, 3)), np.zeros((6, 3)), 10.0, -math.log(5)),
        rtol=1e-6,
    )


# ------------------------------------------------------------------------------------------
# The InfoNCE bound on mutual information.
# ------------------------------------------------------------------------------------------


def test_infonce_bound_approaches_gaussian_mutual_information():
    """Correlated Gaussians with the optimal critic (the log density ratio) as a dot product."""
    rho, b = 0.8, 256
    mi = -0.5 * math.log(1 - rho**2)  # 0.51 nats, well below log b = 5.5
    rng = np.random.default_rng(5)
    bounds = []
    for _ in range(8):
        x = rng.normal(size=b)
        y = rho * x + math.sqrt(1 - rho**2) * rng.normal(size=b)
        # log p(y|x) / p(y) = (2 rho x y - rho^2 y^2) / (2 (1 - rho^2)) + (terms in x alone)
        za = np.stack([x, np.ones(b)], 1)
        zb = np.stack([rho * y, -0.5 * rho**2 * y**2], 1) / (1 - rho**2)
        bounds.append(float(co.infonce_mi_lower_bound(za, zb)))
    assert max(bounds) <= math.log(b)
    assert abs(np.mean(bounds) - mi) < 0.05  # the optimal critic nearly attains I at b >> e^I
    np.testing.assert_allclose(
        bounds[-1], math.log(b) - _ref_infonce(za, zb, 1.0), rtol=F32_RTOL, atol=1e-5
    )
    # A useless critic (scale 0) gives 0: the bound never claims information it does not see.
    assert float(co.infonce_mi_lower_bound(za, zb, logit_scale=-30.0)) == pytest.approx(0, abs=1e-5)


# ------------------------------------------------------------------------------------------
# Chunked SigLIP.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ids", [None, [0, 0, 1, 2, 2, 2, 3, 4, 5, 5]])
def test_chunked_siglip_equals_unchunked_value_and_gradient_x64(rng, ids):
    za, zb = _embeddings(rng, b=10, k=4, dtype=np.float64)
    mask = None if ids is None else _ids_mask(ids)
    ids = None if ids is None else np.asarray(ids)
    argnums = (0, 1, 2, 3)
    with x64():
        dense = jax.jit(
            jax.value_and_grad(
                lambda a, b, s, c: co.siglip_loss(
                    a, b, logit_scale=s, logit_bias=c, positives=mask
                ),
                argnums,
            )
        )
        chunked = jax.jit(
            jax.value_and_grad(
                lambda a, b, s, c: co.chunked_siglip_loss(
                    a, b, chunk_size=3, logit_scale=s, logit_bias=c, ids=ids
                ),
                argnums,
            )
        )
        args = (za, zb, 1.5, -2.0)
        (v1, g1), (v2, g2) = dense(*args), chunked(*args)
        np.testing.assert_allclose(v2, v1, rtol=1e-12)
        for a, b in zip(g2, g1, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(v1, _ref_siglip(za, zb, math.exp(1.5), -2.0, mask), rtol=1e-12)


def test_chunked_siglip_float32_and_defaults(rng):
    za, zb = _embeddings(rng, b=10, k=4)
    for chunk in (1, 4, 10, 64):  # one column, ragged, whole, larger than b
        np.testing.assert_allclose(
            co.chunked_siglip_loss(za, zb, chunk_size=chunk), co.siglip_loss(za, zb), rtol=F32_RTOL
        )


def test_chunked_siglip_does_not_materialise_the_logits():
    """XLA's own memory accounting: the chunked gradient's temporaries are a fraction of b x b."""
    b, k = 2048, 8
    za = jax.ShapeDtypeStruct((b, k), jnp.float32)

    def temp_bytes(loss):
        grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
        return grad.lower(za, za).compile().memory_analysis().temp_size_in_bytes

    dense = temp_bytes(co.siglip_loss)
    chunked = temp_bytes(lambda a, b_: co.chunked_siglip_loss(a, b_, chunk_size=128))
    assert dense >= b * b * 4  # at least one [b, b] float32 array
    assert chunked < dense / 4


# ------------------------------------------------------------------------------------------
# Sharded losses: 8 simulated devices, in a fresh interpreter.
# ------------------------------------------------------------------------------------------

_SHARDED_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, PartitionSpec as P
    from alignment._src import contrastive as co

    assert jax.device_count() == 8, jax.devices()
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    rng = np.random.default_rng(0)
    B, K = 16, 5
    za = rng.normal(size=(B, K)); za /= np.linalg.norm(za, axis=1, keepdims=True)
    zb = za + 0.5 * rng.normal(size=(B, K))
    ids = np.array([0, 0, 1, 2, 3, 3, 3, 4, 5, 6, 7, 7, 8, 9, 9, 10])
    mask = ids[:, None] == ids[None, :]

    def check(name, sharded, dense, ids_arg):
        def global_loss(a, b, s, c):
            if ids_arg is None:  # the default: positions from the device index
                local = lambda a, b, s, c: sharded(a, b, axis_name="batch", ids=None, s=s, c=c)
                specs, args = (P("batch"), P("batch"), P(), P()), (a, b, s, c)
            else:
                local = lambda a, b, i, s, c: sharded(a, b, axis_name="batch", ids=i, s=s, c=c)
                specs, args = (P("batch"), P("batch"), P("batch"), P(), P()), (a, b, ids_arg, s, c)
            return jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P())(*args)
        argnums = (0, 1, 2, 3)
        v1, g1 = jax.jit(jax.value_and_grad(global_loss, argnums))(za, zb, 1.3, -2.0)
        v2, g2 = jax.jit(jax.value_and_grad(dense, argnums))(za, zb, 1.3, -2.0)
        np.testing.assert_allclose(v1, v2, rtol=1e-12, err_msg=name)
        for a, b in zip(g1, g2):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13, err_msg=name)

    check("clip", lambda a, b, axis_name, ids, s, c: co.sharded_clip_loss(
              a, b, axis_name=axis_name, ids=ids, logit_scale=s),
          lambda a, b, s, c: co.clip_loss(a, b, logit_scale=s), None)
    check("siglip", lambda a, b, axis_name, ids, s, c: co.sharded_siglip_loss(
              a, b, axis_name=axis_name, ids=ids, logit_scale=s, logit_bias=c),
          lambda a, b, s, c: co.siglip_loss(a, b, logit_scale=s, logit_bias=c, positives=mask), ids)

    # A data-parallel step: the gradient in replicated parameters (a projection W and the
    # logit scale), taken inside shard_map, is already the global batch's (no psum needed).
    W = rng.normal(size=(K, K))
    g_dense = jax.grad(lambda W, s: co.clip_loss(za @ W, zb, logit_scale=s), (0, 1))(W, 1.3)

    def ours(W, s, a, b):
        loss = lambda W, s: co.sharded_clip_loss(a @ W, b, axis_name="batch", logit_scale=s)
        return jax.grad(loss, (0, 1))(W, s)

    # The pitfall: every device computes the whole global loss from gathered features (no
    # local loss). Its gradient in the parameters comes out 8 times too large.
    def naive(W, s, a, b):
        def loss(W, s):
            a_all = jax.lax.all_gather(a @ W, "batch", tiled=True)
            b_all = jax.lax.all_gather(b, "batch", tiled=True)
            return co.clip_loss(a_all, b_all, logit_scale=s)
        return jax.grad(loss, (0, 1))(W, s)

    specs = (P(), P(), P("batch"), P("batch"))
    for fn, factor in ((ours, 1.0), (naive, 8.0)):
        g = jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=P()))(W, 1.3, za, zb)
        for a, b in zip(g, g_dense):
            np.testing.assert_allclose(a, factor * b, rtol=1e-10, err_msg=fn.__name__)
    # One direction (InfoNCE) shares its code with CLIP: the value with ids is enough here.
    f = jax.jit(jax.shard_map(
        lambda a, b, i: co.sharded_infonce_loss(a, b, axis_name="batch", ids=i), mesh=mesh,
        in_specs=(P("batch"), P("batch"), P("batch")), out_specs=P()))
    np.testing.assert_allclose(f(za, zb, ids), co.infonce_loss(za, zb, positives=mask), rtol=1e-12)
    print("sharded ok")
    """
)


def test_sharded_losses_equal_single_device_on_global_batch():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
    env["JAX_ENABLE_X64"] = "1"
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", _SHARDED_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert "sharded ok" in out.stdout


def test_sharded_single_device_mesh_in_process(rng):
    """Under ``shard_map`` on this process's single device, the value is the dense one."""
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(np.array(jax.devices()[:1]), ("batch",))
    za, zb = _embeddings(rng)
    ids = np.array([0, 0, 1, 2, 3, 3, 4, 5])
    f = jax.shard_map(
        lambda a, b, i: co.sharded_siglip_loss(a, b, axis_name="batch", ids=i),
        mesh=mesh,
        in_specs=(P("batch"), P("batch"), P("batch")),
        out_specs=P(),
    )
    np.testing.assert_allclose(
        f(za, zb, ids), co.siglip_loss(za, zb, positives=_ids_mask(ids)), rtol=F32_RTOL
    )


# ------------------------------------------------------------------------------------------
# Bad input.
# ------------------------------------------------------------------------------------------


def test_bad_input(rng):
    za, zb = _embeddings(rng)
    with pytest.raises(ValueError, match=r"same shape \[b, k\]"):
        co.clip_loss(za, zb[:5])
    with pytest.raises(ValueError, match=r"same shape \[b, k\]"):
        co.siglip_loss(za, zb[:, :3])
    with pytest.raises(ValueError, match="2-D array"):
        co.infonce_loss(za[0], zb[0])
    with pytest.raises(ValueError, match=r"`positives` must have shape \[b, b\]"):
        co.clip_loss(za, zb, positives=np.eye(5, dtype=bool))
    with pytest.raises(ValueError, match="no positive pair"):
        co.infonce_loss(za, zb, positives=np.zeros((8, 8), bool))
    with pytest.raises(ValueError, match="`margin` must be a finite non-negative"):
        co.vse_loss(za, zb, margin=-0.1)
    with pytest.raises(ValueError, match="`max_scale` must be a finite positive number"):
        co.clip_loss(za, zb, max_scale=0.0)
    with pytest.raises(ValueError, match="`logit_scale` must be a scalar"):
        co.clip_loss(za, zb, logit_scale=np.ones(2))
    with pytest.raises(ValueError, match="`chunk_size` must be an int >= 1"):
        co.chunked_siglip_loss(za, zb, chunk_size=0)
    with pytest.raises(ValueError, match=r"`ids` must be an integer array of shape \[b\]"):
        co.chunked_siglip_loss(za, zb, chunk_size=4, ids=np.zeros(8))


# ------------------------------------------------------------------------------------------
# Issue 9: reduced precision, positives/ids, scalar checks, the NaN policy, float32 range.
# ------------------------------------------------------------------------------------------

LOW = [(jnp.float16, 2e-3), (jnp.bfloat16, 1.6e-2)]


def _low_precision_cases():
    b = 256
    rng = np.random.default_rng(9)
    za, zb = _embeddings(rng, b=b, k=16)
    s = math.log(10.0)
    return za, zb, [
        ("siglip", lambda a, c: co.siglip_loss(a, c, logit_scale=s, logit_bias=0.0),
         lambda a, c: _ref_siglip(a, c, 10.0, 0.0)),
        ("chunked", lambda a, c: co.chunked_siglip_loss(a, c, chunk_size=64, logit_scale=s,
                                                        logit_bias=0.0),
         lambda a, c: _ref_siglip(a, c, 10.0, 0.0)),
        ("clip", lambda a, c: co.clip_loss(a, c), lambda a, c: _ref_clip(a, c, 1 / 0.07)),
        ("infonce", lambda a, c: co.infonce_loss(a, c), lambda a, c: _ref_infonce(a, c, 1 / 0.07)),
        ("mi", lambda a, c: co.infonce_mi_lower_bound(a, c, logit_scale=s),
         lambda a, c: math.log(b) - _ref_infonce(a, c, 10.0)),
        ("vse", lambda a, c: co.vse_loss(a, c), lambda a, c: _ref_vse(a, c, 0.2, False)),
        ("vse_hardest", lambda a, c: co.vse_loss(a, c, hardest=True),
         lambda a, c: _ref_vse(a, c, 0.2, True)),
    ]  # fmt: skip


@pytest.mark.parametrize(("dtype", "rtol"), LOW)
def test_low_precision_losses_at_b256_match_float64(dtype, rtol):
    """float16 SigLIP at b = 256 used to sum 65536 terms in float16 and return inf."""
    za, zb, cases = _low_precision_cases()
    a, c = jnp.asarray(za, dtype), jnp.asarray(zb, dtype)
    a64, c64 = np.asarray(a, np.float64), np.asarray(c, np.float64)
    for name, fn, ref in cases:
        value = fn(a, c)
        assert value.dtype == dtype, name
        np.testing.assert_allclose(float(value), ref(a64, c64), rtol=rtol, err_msg=name)
    g = jax.grad(lambda x: co.siglip_loss(x, c, logit_bias=0.0))(a)
    assert g.dtype == dtype and np.all(np.isfinite(np.asarray(g, np.float32)))


def test_sharded_low_precision_single_device(rng):
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(np.array(jax.devices()[:1]), ("batch",))
    za, zb = _embeddings(rng, b=256, k=16)
    a, c = jnp.asarray(za, jnp.float16), jnp.asarray(zb, jnp.float16)
    f = jax.shard_map(
        lambda x, y: co.sharded_siglip_loss(x, y, axis_name="batch", logit_bias=0.0),
        mesh=mesh, in_specs=(P("batch"), P("batch")), out_specs=P(),
    )  # fmt: skip
    value = f(a, c)
    assert value.dtype == jnp.float16
    ref = _ref_siglip(np.asarray(a, np.float64), np.asarray(c, np.float64), 10.0, 0.0)
    np.testing.assert_allclose(float(value), ref, rtol=2e-3)


@pytest.mark.parametrize("name", ["infonce", "clip", "siglip", "vse"])
def test_ids_equal_positives_in_every_dense_loss(rng, name):
    za, zb = _embeddings(rng)
    ids = np.array([0, 0, 1, 2, 2, 2, 3, 4])
    kw = _kwargs(name, 1.1, -1.0, False)
    fn = getattr(co, f"{name}_loss")
    np.testing.assert_allclose(
        fn(za, zb, ids=ids, **kw), fn(za, zb, positives=_ids_mask(ids), **kw), rtol=1e-6
    )
    with pytest.raises(ValueError, match="either `positives`"):
        fn(za, zb, ids=ids, positives=_ids_mask(ids), **kw)
    with pytest.raises(TypeError):
        fn(za, zb, mask=_ids_mask(ids), **kw)  # `mask` is attention's word only


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda a, b, v: co.clip_loss(a, b, logit_scale=v), "logit_scale"),
        (lambda a, b, v: co.infonce_loss(a, b, max_scale=v), "max_scale"),
        (lambda a, b, v: co.siglip_loss(a, b, logit_bias=v), "logit_bias"),
        (lambda a, b, v: co.vse_loss(a, b, margin=v), "margin"),
        (lambda a, b, v: co.chunked_siglip_loss(a, b, chunk_size=4, logit_scale=v), "logit_scale"),
        (lambda a, b, v: co.infonce_mi_lower_bound(a, b, logit_scale=v), "logit_scale"),
    ],
)
def test_scalar_parameters_checked_even_under_jit(rng, call, name):
    za, zb = _embeddings(rng)
    jitted = jax.jit(call)
    for bad in (np.ones(2), np.ones((1, 1))):
        with pytest.raises(ValueError, match=f"`{name}` must be a scalar"):
            jitted(za, zb, bad)
    with pytest.raises(ValueError, match=f"`{name}` must be real"):
        call(za, zb, 1.0 + 1.0j)
    with pytest.raises(ValueError, match=f"`{name}`"):
        call(za, zb, float("nan"))  # concrete: raises
    assert np.isnan(float(jitted(za, zb, jnp.nan)))  # traced: NaN, never a plausible number


def test_traced_bad_values_give_nan(rng):
    za, zb = _embeddings(rng)
    assert np.isnan(float(jax.jit(lambda m: co.vse_loss(za, zb, margin=m))(-0.1)))
    assert np.isnan(float(jax.jit(lambda s: co.clip_loss(za, zb, max_scale=s))(0.0)))
    no_pos = jax.jit(lambda p: co.infonce_loss(za, zb, positives=p))(np.zeros((8, 8), bool))
    assert np.isnan(float(no_pos))
    with pytest.raises(ValueError, match="`za` must be an array"):
        co.clip_loss(None, zb)
    with pytest.raises(ValueError, match="`zb` must be real"):
        co.siglip_loss(za, zb.astype(np.complex64))
    with pytest.raises(ValueError, match="`chunk_size` must be a Python int"):
        co.chunked_siglip_loss(za, zb, chunk_size=1.5)
    with pytest.raises(ValueError, match="`positives` must be boolean"):
        co.clip_loss(za, zb, positives=np.eye(8))


def test_nan_embedding_propagates_to_value_and_gradient(rng):
    za, zb = _embeddings(rng)
    za[2, 1] = np.nan
    for fn in (co.clip_loss, co.siglip_loss, co.vse_loss):
        value, grads = jax.value_and_grad(fn, argnums=(0, 1))(za, zb)
        assert np.isnan(float(value)) and any(np.any(np.isnan(np.asarray(g))) for g in grads)


def test_huge_embeddings_do_not_overflow_into_nan():
    """1e30 rows with mixed signs: the dot products (1e60) used to overflow to inf - inf."""
    z = np.float32(2.0**100) * np.array([[1.0, 1.0], [1.0, -1.0]], np.float32)  # 1.3e30
    for fn, want in (
        (co.clip_loss, 0.0),
        (co.infonce_loss, 0.0),
        (co.vse_loss, 0.0),
        (lambda a, b: co.siglip_loss(a, b, logit_bias=-1.0), math.log1p(math.exp(-1.0))),
        (lambda a, b: co.chunked_siglip_loss(a, b, chunk_size=1, logit_bias=-1.0),
         math.log1p(math.exp(-1.0))),
    ):  # fmt: skip
        value, grad = jax.value_and_grad(fn)(z, z)
        np.testing.assert_allclose(float(value), want, atol=1e-6)
        assert np.all(np.isfinite(np.asarray(grad)))
    # A huge logit scale without a clamp (exp overflows float32) gives the limit, not NaN.
    small = np.eye(3, dtype=np.float32)
    value, g = jax.value_and_grad(lambda s: co.siglip_loss(small, small, logit_scale=s))(200.0)
    assert np.isfinite(float(value)) and np.isfinite(float(g))
