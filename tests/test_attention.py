"""Tests for alignment._src.attention against float64 NumPy formulas.

References: the energies ``v^T tanh(W s_i + U f_j + b)`` and ``scale q_i . k_j``, the softmax
over the unmasked keys and the context, written with explicit loops in NumPy float64;
``jax.nn.dot_product_attention`` as a peer (unmasked rows); empirical frequencies for sampled
hard attention; the penalty's sums by loops; ``check_grads`` under x64.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from alignment._src import attention as at
from tests.conftest import x64

F32 = 1e-5
F64 = 1e-12
GRAD_X64 = 1e-6


def _params(rng, dq=4, dk=3, a=5):
    return {
        "w": rng.normal(size=(a, dq)),
        "u": rng.normal(size=(a, dk)),
        "v": rng.normal(size=a),
        "bias": rng.normal(size=a),
    }


def ref_attention(energy, queries, keys, values, mask):
    """Loops: energies e[i][j] = energy(q_i, k_j); softmax over unmasked keys; context."""
    n, m = len(queries), len(keys)
    values = keys if values is None else values
    e = np.array([[energy(queries[i], keys[j]) for j in range(m)] for i in range(n)])
    alpha = np.zeros((n, m))
    for i in range(n):
        keep = [j for j in range(m) if mask is None or mask[i][j]]
        if not keep:
            continue
        top = max(e[i, j] for j in keep)
        z = sum(math.exp(e[i, j] - top) for j in keep)
        for j in keep:
            alpha[i, j] = math.exp(e[i, j] - top) / z
    return alpha @ np.asarray(values, np.float64), alpha, e


def _additive_energy(p, with_bias):
    b = p["bias"] if with_bias else 0.0
    return lambda s, f: float(p["v"] @ np.tanh(p["w"] @ s + p["u"] @ f + b))


MASKS = {
    "none": None,
    "keys": np.array([True, False, True, True, False, True]),
    "full": np.array(
        [
            [True, True, False, False, True, True],
            [False, False, False, False, False, False],  # a fully masked row
            [True, False, False, False, False, False],
        ]
    ),
}


@pytest.mark.parametrize(
    ("mask_name", "with_bias", "jit"),
    [("none", False, False), ("keys", True, False), ("full", False, False), ("full", True, True)],
)
def test_additive_attention_matches_numpy(rng, mask_name, with_bias, jit):
    p = _params(rng)
    s, f, vals = rng.normal(size=(3, 4)), rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    mask = MASKS[mask_name]
    fn = jax.jit(at.additive_attention) if jit else at.additive_attention
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    out = fn(f32(s), f32(f), f32(vals), w=f32(p["w"]), u=f32(p["u"]), v=f32(p["v"]),
             bias=f32(p["bias"]) if with_bias else None, mask=mask)  # fmt: skip
    full_mask = None if mask is None else np.broadcast_to(mask, (3, 6))
    ctx, alpha, e = ref_attention(_additive_energy(p, with_bias), s, f, vals, full_mask)
    keep = np.ones((3, 6), bool) if full_mask is None else full_mask
    np.testing.assert_allclose(np.asarray(out.energies)[keep], e[keep], rtol=F32, atol=1e-5)
    assert np.all(np.asarray(out.energies)[~keep] == -np.inf)  # masked energies are -inf
    np.testing.assert_allclose(np.asarray(out.alpha), alpha, rtol=F32, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out.context), ctx, rtol=F32, atol=1e-5)
    sums = np.asarray(out.alpha.sum(1))
    expected_sums = [0.0 if full_mask is not None and not full_mask[i].any() else 1.0
                     for i in range(3)]  # fmt: skip
    np.testing.assert_allclose(sums, expected_sums, atol=1e-6)
    assert out.context.dtype == jnp.float32


@pytest.mark.parametrize("mask_name", list(MASKS))
def test_dot_product_attention_matches_numpy_and_jax(rng, mask_name):
    q, k, vals = rng.normal(size=(3, 4)), rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    mask = MASKS[mask_name]
    full_mask = None if mask is None else np.broadcast_to(mask, (3, 6))
    for scale in (None, 0.3):
        sc = 1 / math.sqrt(4) if scale is None else scale
        out = at.dot_product_attention(q.astype(np.float32), k.astype(np.float32),
                                       vals.astype(np.float32), scale=scale, mask=mask)  # fmt: skip
        ctx, alpha, _ = ref_attention(lambda a, b, sc=sc: sc * float(a @ b), q, k, vals, full_mask)
        np.testing.assert_allclose(np.asarray(out.alpha), alpha, rtol=F32, atol=1e-6)
        np.testing.assert_allclose(np.asarray(out.context), ctx, rtol=F32, atol=1e-5)
    # The peer agrees wherever a row has a key to attend; on a fully masked row it averages
    # every value (padding included) where we return 0.
    peer_mask = None if mask is None else jnp.asarray(full_mask)[None, None]
    peer = jax.nn.dot_product_attention(
        q[None, :, None].astype(np.float32), k[None, :, None].astype(np.float32),
        vals[None, :, None].astype(np.float32), mask=peer_mask,
    )[0, :, 0]  # fmt: skip
    ours = np.asarray(at.dot_product_attention(q, k, vals, mask=mask).context)
    for i in range(3):
        if full_mask is None or full_mask[i].any():
            np.testing.assert_allclose(ours[i], np.asarray(peer[i]), rtol=1e-4, atol=1e-5)
        else:
            np.testing.assert_array_equal(ours[i], 0.0)
            np.testing.assert_allclose(np.asarray(peer[i]), vals.mean(0), rtol=1e-4, atol=1e-5)


def test_values_default_to_keys_and_masked_softmax(rng):
    q, k = rng.normal(size=(2, 3)), rng.normal(size=(4, 3))
    a = at.dot_product_attention(q, k)
    b = at.dot_product_attention(q, k, k)
    np.testing.assert_array_equal(np.asarray(a.context), np.asarray(b.context))
    e = rng.normal(size=(2, 4))
    np.testing.assert_allclose(
        np.asarray(at.masked_softmax(e)), np.asarray(jax.nn.softmax(e, axis=-1)), rtol=1e-6
    )


def test_masked_entries_of_any_size_give_finite_gradients(enable_x64):
    # Masked energies of 1e4 (exp overflows) or inf, and a fully masked row: no NaN anywhere.
    e = jnp.array([[0.0, 1.0, 1e4], [2.0, jnp.inf, -1.0], [5.0, 6.0, 7.0]])
    mask = jnp.array([[True, True, False], [True, False, True], [False, False, False]])
    g = jnp.arange(9.0).reshape(3, 3)
    loss = lambda x: jnp.sum(g * at.masked_softmax(x, mask=mask))
    alpha = at.masked_softmax(e, mask=mask)
    grad = jax.grad(loss)(e)
    assert np.all(np.isfinite(np.asarray(alpha))) and np.all(np.isfinite(np.asarray(grad)))
    np.testing.assert_array_equal(np.asarray(alpha[2]), 0.0)
    np.testing.assert_array_equal(np.asarray(grad)[~np.asarray(mask)], 0.0)
    np.testing.assert_allclose(np.asarray(alpha[0, :2]), np.asarray(jax.nn.softmax(e[0, :2])))


def test_jit_vmap_equals_loop(rng):
    p = {k: jnp.asarray(v, jnp.float32) for k, v in _params(rng).items()}
    s = rng.normal(size=(4, 3, 4)).astype(np.float32)
    f = rng.normal(size=(4, 6, 3)).astype(np.float32)
    masks = rng.uniform(size=(4, 6)) > 0.3
    batched = jax.jit(
        jax.vmap(lambda a, b, m: at.additive_attention(a, b, mask=m, **p))
    )(s, f, masks)  # fmt: skip
    dot = jax.vmap(lambda a, b, m: at.dot_product_attention(a, b, mask=m))
    dot_b = dot(s[..., :3], f, masks)
    for i in range(4):
        single = at.additive_attention(s[i], f[i], mask=masks[i], **p)
        np.testing.assert_allclose(np.asarray(batched.alpha[i]), np.asarray(single.alpha),
                                   rtol=F32, atol=1e-6)  # fmt: skip
        np.testing.assert_allclose(np.asarray(batched.context[i]), np.asarray(single.context),
                                   rtol=F32, atol=1e-6)  # fmt: skip
        single_dot = at.dot_product_attention(s[i, :, :3], f[i], mask=masks[i])
        np.testing.assert_allclose(np.asarray(dot_b.context[i]), np.asarray(single_dot.context),
                                   rtol=F32, atol=1e-6)  # fmt: skip


def test_gradients_by_finite_differences(rng):
    p = _params(rng)
    s, f, vals = rng.normal(size=(3, 4)), rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    mask = MASKS["full"]
    with x64():

        def additive(s, f, vals, w, u, v, b):
            return at.additive_attention(s, f, vals, w=w, u=u, v=v, bias=b, mask=mask).context

        check_grads(additive, (s, f, vals, p["w"], p["u"], p["v"], p["bias"]), order=1,
                    modes=("rev",), atol=GRAD_X64, rtol=GRAD_X64)  # fmt: skip

        def dot(q, k, vals, scale):
            return at.dot_product_attention(q, k, vals, scale=scale, mask=mask).context

        q = rng.normal(size=(3, 3))
        check_grads(dot, (q, f, vals, 0.7), order=1, modes=("rev", "fwd"),
                    atol=GRAD_X64, rtol=GRAD_X64)  # fmt: skip


# ------------------------------------------------------------------------------------------
# Hard attention.
# ------------------------------------------------------------------------------------------


def test_hard_attention_argmax_and_log_prob(rng):
    alpha = np.array(jax.nn.softmax(rng.normal(size=(5, 7)), axis=-1))
    alpha[3] = 0.0  # a fully masked row
    vals = rng.normal(size=(7, 2)).astype(np.float32)
    out = at.hard_attention(alpha, vals)
    expected = [int(np.argmax(r)) if r.sum() > 0 else -1 for r in alpha]
    assert out.index.tolist() == expected
    for i, j in enumerate(expected):
        if j < 0:
            np.testing.assert_array_equal(np.asarray(out.context[i]), 0.0)
            assert float(out.log_prob[i]) == 0.0
            np.testing.assert_array_equal(np.asarray(out.alpha[i]), 0.0)
        else:
            np.testing.assert_array_equal(np.asarray(out.context[i]), vals[j])
            np.testing.assert_allclose(float(out.log_prob[i]), np.log(alpha[i, j]), rtol=1e-6)
            assert np.asarray(out.alpha[i]).tolist() == np.eye(7)[j].tolist()


def test_sampled_hard_attention_follows_alpha(rng):
    alpha = np.array([[0.5, 0.0, 0.3, 0.2], [0.0, 0.0, 1.0, 0.0]], np.float32)
    vals = np.eye(4, dtype=np.float32)
    keys = jax.random.split(jax.random.key(0), 4000)
    sample = jax.jit(jax.vmap(lambda k: at.hard_attention(alpha, vals, key=k).index))
    idx = np.asarray(sample(keys))
    freq = np.stack([np.bincount(idx[:, r], minlength=4) / len(idx) for r in range(2)])
    # Binomial standard error at 4000 draws is < 0.008: 4 sigma.
    np.testing.assert_allclose(freq, alpha, atol=0.032)
    assert not np.any(idx[:, 0] == 1)  # zero-probability keys are never drawn
    assert np.all(idx[:, 1] == 2)


def test_straight_through_gradient_equals_soft_gradient(rng, enable_x64):
    scores = rng.normal(size=(3, 5))
    vals = rng.normal(size=(5, 2))
    g = rng.normal(size=(3, 2))

    def hard(x, straight_through):
        out = at.hard_attention(jax.nn.softmax(x, -1), vals, straight_through=straight_through)
        return jnp.sum(g * out.context)

    soft = lambda x: jnp.sum(g * (jax.nn.softmax(x, -1) @ vals))
    np.testing.assert_allclose(
        np.asarray(jax.grad(hard)(scores, True)), np.asarray(jax.grad(soft)(scores)), rtol=F64
    )
    np.testing.assert_array_equal(np.asarray(jax.grad(hard)(scores, False)), 0.0)
    # Forward value: exactly the selected value, not the soft average.
    out = at.hard_attention(jax.nn.softmax(scores, -1), vals)
    np.testing.assert_array_equal(np.asarray(out.context), vals[np.argmax(scores, 1)])


# ------------------------------------------------------------------------------------------
# The doubly-stochastic penalty.
# ------------------------------------------------------------------------------------------


def ref_penalty(alphas, reduction, target=1.0, step_mask=None, region_mask=None):
    t, m = alphas.shape
    total, count = 0.0, 0
    for j in range(m):
        if region_mask is not None and not region_mask[j]:
            continue
        col = sum(alphas[i, j] for i in range(t) if step_mask is None or step_mask[i])
        total += (target - col) ** 2
        count += 1
    return total if reduction == "sum" else total / count


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_penalty_matches_loops(rng, reduction):
    alphas = np.asarray(jax.nn.softmax(rng.normal(size=(7, 9)), axis=-1), np.float64)
    step_mask = np.arange(7) < 5
    region_mask = rng.uniform(size=9) > 0.3
    for kw in ({}, {"target": 7 / 9}, {"step_mask": step_mask},
               {"step_mask": step_mask, "region_mask": region_mask}):  # fmt: skip
        ours = float(at.doubly_stochastic_penalty(alphas.astype(np.float32), reduction=reduction,
                                                  **kw))  # fmt: skip
        np.testing.assert_allclose(ours, ref_penalty(alphas, reduction, **kw), rtol=F32)
    # The step mask equals truncating the caption; "sum" is m times "mean".
    a = float(at.doubly_stochastic_penalty(alphas, step_mask=step_mask))
    np.testing.assert_allclose(a, float(at.doubly_stochastic_penalty(alphas[:5])), rtol=1e-6)
    np.testing.assert_allclose(
        float(at.doubly_stochastic_penalty(alphas, reduction="mean")) * 9,
        float(at.doubly_stochastic_penalty(alphas)),
        rtol=1e-6,
    )


def test_penalty_matches_the_published_conventions(rng):
    """The authors' Theano code (mean over regions, sum over the batch) and the tutorial (mean
    over regions and batch), written on [T, B, L] / [B, T, L] arrays as they are."""
    alphas_tbl = np.asarray(jax.nn.softmax(rng.normal(size=(6, 4, 10)), axis=-1), np.float64)
    theano = ((1.0 - alphas_tbl.sum(0)) ** 2).sum(0).mean()
    tutorial = ((1.0 - alphas_tbl.transpose(1, 0, 2).sum(1)) ** 2).mean()
    per_caption = jax.vmap(lambda a: at.doubly_stochastic_penalty(a, reduction="mean"))(
        jnp.asarray(alphas_tbl.transpose(1, 0, 2))
    )
    np.testing.assert_allclose(float(per_caption.sum()), theano, rtol=1e-6)
    np.testing.assert_allclose(float(per_caption.mean()), tutorial, rtol=1e-6)


def test_penalty_gradient(rng):
    alphas = rng.uniform(size=(4, 5))
    with x64():
        check_grads(lambda a: at.doubly_stochastic_penalty(a, step_mask=np.arange(4) < 3),
                    (alphas,), order=2, atol=GRAD_X64, rtol=GRAD_X64)  # fmt: skip


# ------------------------------------------------------------------------------------------
# Bad input.
# ------------------------------------------------------------------------------------------


def test_bad_input_raises_clear_errors(rng):
    p = _params(rng)
    s, f = np.zeros((3, 4)), np.zeros((6, 3))
    with pytest.raises(ValueError, match=r"`w` must have shape \[a, d_q\]=\(5, 4\).*got \(5, 3\)"):
        at.additive_attention(s, f, w=p["w"][:, :3], u=p["u"], v=p["v"])
    with pytest.raises(ValueError, match=r"`u` must have shape \[a, d_k\]=\(5, 3\)"):
        at.additive_attention(s, f, w=p["w"], u=p["w"], v=p["v"])
    with pytest.raises(ValueError, match=r"`v` must be a 1-D"):
        at.additive_attention(s, f, w=p["w"], u=p["u"], v=p["w"])
    with pytest.raises(ValueError, match=r"`bias` must have shape \[a\]"):
        at.additive_attention(s, f, w=p["w"], u=p["u"], v=p["v"], bias=np.zeros(2))
    with pytest.raises(ValueError, match=r"one row per key: keys \(6, 3\), values \(5, 2\)"):
        at.additive_attention(s, f, np.zeros((5, 2)), w=p["w"], u=p["u"], v=p["v"])
    with pytest.raises(ValueError, match=r"`mask` must have shape \[m\]=\(6,\)"):
        at.additive_attention(s, f, w=p["w"], u=p["u"], v=p["v"], mask=np.ones(5, bool))
    with pytest.raises(ValueError, match=r"`mask` must be boolean"):
        at.dot_product_attention(s, s, mask=np.ones(3))
    with pytest.raises(ValueError, match=r"same feature size d.*\(3, 4\).*\(6, 3\)"):
        at.dot_product_attention(s, f)
    with pytest.raises(ValueError, match=r"`scale` must be a finite positive"):
        at.dot_product_attention(s, s, scale=0.0)
    with pytest.raises(ValueError, match=r"`queries` must be a 2-D"):
        at.dot_product_attention(s[0], s)
    with pytest.raises(ValueError, match=r"one row per column of `alpha`"):
        at.hard_attention(np.ones((2, 3)) / 3, np.zeros((4, 1)))
    with pytest.raises(ValueError, match=r"`alpha` must be non-negative"):
        at.hard_attention(-np.ones((2, 3)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"`reduction` must be 'sum' or 'mean'"):
        at.doubly_stochastic_penalty(np.ones((2, 3)), reduction="none")
    with pytest.raises(ValueError, match=r"`step_mask` must be booleans of shape \[t\]=\(2,\)"):
        at.doubly_stochastic_penalty(np.ones((2, 3)), step_mask=np.ones(3, bool))
    with pytest.raises(ValueError, match=r"`region_mask` must be booleans"):
        at.doubly_stochastic_penalty(np.ones((2, 3)), region_mask=np.ones(3))


# ------------------------------------------------------------------------------------------
# Issue 9: garbage in masked keys/values, reduced precision, scalar checks, NaN policy.
# ------------------------------------------------------------------------------------------

GARBAGE = [np.nan, np.inf, -np.inf, 1e30]


@pytest.mark.parametrize("garbage", GARBAGE)
@pytest.mark.parametrize("kind", ["dot", "additive"])
def test_garbage_in_masked_keys_and_values_changes_nothing(rng, garbage, kind):
    p = {k: jnp.asarray(v, jnp.float32) for k, v in _params(rng, dq=3).items()}
    q = rng.normal(size=(3, 3)).astype(np.float32)
    k = rng.normal(size=(6, 3)).astype(np.float32)
    vals = rng.normal(size=(6, 2)).astype(np.float32)
    mask = np.array([True, True, False, True, False, False])
    mask2 = np.broadcast_to(mask, (3, 6)).copy()
    mask2[2] = False  # and a fully masked row

    def attend(q, k, vals):
        if kind == "dot":
            return at.dot_product_attention(q, k, vals, mask=mask2)
        return at.additive_attention(q, k, vals, mask=mask2, **p)

    def loss(q, k, vals):
        out = attend(q, k, vals)
        return jnp.sum(out.context**2) + jnp.sum(out.alpha * jnp.arange(6.0))

    k_bad, v_bad = k.copy(), vals.copy()
    k_bad[~mask], v_bad[~mask] = garbage, garbage
    clean, dirty = attend(q, k, vals), attend(q, k_bad, v_bad)
    for a, b in ((clean.context, dirty.context), (clean.alpha, dirty.alpha)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(dirty.context[2]), 0.0)  # fully masked row
    np.testing.assert_array_equal(np.asarray(dirty.alpha[2]), 0.0)
    assert np.all(np.asarray(dirty.energies)[~mask2] == -np.inf)
    g_clean = jax.grad(loss, argnums=(0, 1, 2))(q, k, vals)
    g_dirty = jax.grad(loss, argnums=(0, 1, 2))(q, k_bad, v_bad)
    for a, b in zip(g_clean, g_dirty, strict=True):
        assert np.all(np.isfinite(np.asarray(b)))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(g_dirty[1])[~mask], 0.0)


def test_nan_in_attended_data_propagates(rng):
    q, k = rng.normal(size=(2, 3)), rng.normal(size=(4, 3))
    k[1, 0] = np.nan
    out = at.dot_product_attention(q, k, mask=np.array([True, True, False, True]))
    assert np.all(np.isnan(np.asarray(out.context)))
    grads = jax.grad(lambda q: jnp.sum(at.dot_product_attention(q, k).context))(q)
    assert np.any(np.isnan(np.asarray(grads)))
    e = np.array([[0.0, np.nan, 1.0], [0.0, np.inf, 1.0]])
    alpha = np.asarray(at.masked_softmax(e))
    assert np.all(np.isnan(alpha[0]))  # NaN energy: its row is NaN
    np.testing.assert_array_equal(alpha[1], [0.0, 1.0, 0.0])  # +inf takes the row (the limit)


@pytest.mark.parametrize(("dtype", "rtol"), [(jnp.float16, 3e-3), (jnp.bfloat16, 2e-2)])
def test_low_precision_matches_float64(rng, dtype, rtol):
    n, m, d = 64, 256, 16
    q = jnp.asarray(rng.normal(size=(n, d)), dtype)
    k = jnp.asarray(rng.normal(size=(m, d)), dtype)
    vals = jnp.asarray(rng.normal(size=(m, 4)), dtype)
    mask = rng.uniform(size=m) > 0.2
    f64 = lambda x: np.asarray(x, np.float64)
    out = at.dot_product_attention(q, k, vals, mask=mask)
    assert out.context.dtype == out.alpha.dtype == out.energies.dtype == dtype
    full = np.broadcast_to(mask, (n, m))
    ctx, alpha, _ = ref_attention(lambda a, b: float(a @ b) / 4.0, f64(q), f64(k), f64(vals), full)
    np.testing.assert_allclose(f64(out.alpha), alpha, rtol=rtol, atol=rtol * 0.05)
    np.testing.assert_allclose(f64(out.context), ctx, rtol=rtol, atol=rtol)
    e = jnp.asarray(f64(q) @ f64(k).T, dtype)  # energies in the low precision
    x = np.where(mask, f64(e), -np.inf)
    want = np.exp(x - x.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    got = at.masked_softmax(e, mask=mask)
    assert got.dtype == dtype
    np.testing.assert_allclose(f64(got), want, rtol=rtol, atol=rtol * 0.05)
    alphas = jnp.asarray(jax.nn.softmax(rng.normal(size=(300, 49)), -1), dtype)
    pen = at.doubly_stochastic_penalty(alphas)
    assert pen.dtype == dtype
    np.testing.assert_allclose(float(pen), ref_penalty(f64(alphas), "sum"), rtol=rtol)
    hard = at.hard_attention(out.alpha, vals)
    assert hard.context.dtype == dtype and hard.log_prob.dtype == dtype


def test_scale_checks_and_traced_nan(rng):
    q, k = rng.normal(size=(2, 3)), rng.normal(size=(4, 3))
    f = jax.jit(lambda s: at.dot_product_attention(q, k, scale=s))
    for bad in (np.ones(2), np.ones((1, 1))):
        with pytest.raises(ValueError, match="`scale` must be a scalar"):
            f(bad)
    with pytest.raises(ValueError, match="`scale` must be real"):
        at.dot_product_attention(q, k, scale=1j)
    for bad in (0.0, -1.0, np.nan, np.inf):
        out = f(bad)
        assert all(np.all(np.isnan(np.asarray(x))) for x in out)
    with pytest.raises(ValueError, match="`keys` must be an array"):
        at.dot_product_attention(q, None)
    with pytest.raises(ValueError, match="`keys` must be non-empty"):
        at.dot_product_attention(q, np.zeros((0, 3)))
    with pytest.raises(ValueError, match="`target` must be a scalar"):
        jax.jit(lambda t: at.doubly_stochastic_penalty(np.ones((2, 3)), target=t))(np.ones(2))
    pen = jax.jit(lambda t: at.doubly_stochastic_penalty(np.ones((2, 3)) / 3, target=t))
    assert np.isnan(float(pen(-1.0))) and np.isfinite(float(pen(1.0)))
    with pytest.raises(ValueError, match="`target` must be a finite non-negative"):
        at.doubly_stochastic_penalty(np.ones((2, 3)), target=-1.0)
    with pytest.raises(ValueError, match="`straight_through`"):
        at.hard_attention(np.ones((2, 3)) / 3, np.ones((3, 1)), straight_through="yes")


def test_huge_queries_and_keys_do_not_overflow(rng):
    big = np.float32(2.0**100)
    q = big * np.array([[1.0, 1.0], [1.0, -1.0]], np.float32)
    k = big * np.array([[1.0, 1.0], [1.0, -1.0], [0.0, 0.0]], np.float32)
    out = at.dot_product_attention(q, k, np.eye(3, dtype=np.float32))
    np.testing.assert_array_equal(np.asarray(out.alpha), [[1, 0, 0], [0, 1, 0]])
    g = jax.grad(lambda q: jnp.sum(at.dot_product_attention(q, k).context))(q)
    assert np.all(np.isfinite(np.asarray(g)))


def test_hard_attention_nan_and_traced_negative(rng):
    alpha = np.array([[0.2, 0.8, 0.0], [np.nan, 0.5, 0.5]], np.float32)
    vals = np.array([[1.0], [2.0], [np.nan]], np.float32)  # column 2 never selectable in row 0
    out = at.hard_attention(alpha[:1], vals)
    assert out.index.tolist() == [1] and float(out.context[0, 0]) == 2.0
    out = at.hard_attention(alpha, vals)
    assert out.index.tolist()[1] == -1 and np.isnan(float(out.log_prob[1]))
    assert np.isnan(float(out.context[1, 0]))
    neg = jax.jit(lambda a: at.hard_attention(a, vals[:, :1] * 0 + 1))(-alpha[:1])
    assert neg.index.tolist() == [-1] and np.isnan(np.asarray(neg.context)).all()


def test_penalty_padded_regions_never_read():
    alphas = np.full((3, 4), 0.25, np.float32)
    region_mask = np.array([True, True, False, True])
    step_mask = np.array([True, True, False])
    dirty = alphas.copy()
    dirty[:, 2], dirty[2] = np.nan, np.inf

    def pen(a):
        return at.doubly_stochastic_penalty(a, step_mask=step_mask, region_mask=region_mask)

    np.testing.assert_array_equal(float(pen(dirty)), float(pen(alphas)))
    g = np.asarray(jax.grad(pen)(dirty))
    assert np.all(np.isfinite(g)) and np.all(g[:, 2] == 0) and np.all(g[2] == 0)
    with pytest.raises(ValueError, match="masks every region"):
        at.doubly_stochastic_penalty(alphas, reduction="mean", region_mask=np.zeros(4, bool))
