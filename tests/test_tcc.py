"""Tests for alignment._src.tcc against float64 NumPy formulas and SciPy.

References: the TCC formulas written directly in NumPy float64 (loops over frames, following
the paper and the published code's conventions: similarity ``-||a - b||^2 / (d T)``, times
``k / n``, ``lambda log sigma^2``); ``scipy.stats.kendalltau``; hard nearest-neighbour cycles by
explicit loops; ``check_grads`` under x64.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.stats import kendalltau

from alignment._src import tcc
from tests.conftest import x64

F32 = 2e-5  # float32 against the float64 reference, relative
F64 = 1e-10
GRAD_X64 = 1e-6
VARIANTS = ["classification", "regression_mse", "regression_mse_var"]
TEMPS = [0.1, 0.03, 0.01, 0.003]


# ------------------------------------------------------------------------------------------
# The float64 reference, frame by frame.
# ------------------------------------------------------------------------------------------


def _sim(a, b, temperature, similarity):
    d = len(a)
    raw = -float(np.sum((a - b) ** 2)) if similarity == "l2" else float(a @ b)
    return raw / (d * temperature)


def _softmax(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def ref_loss(u, v, variant, temperature=0.1, lam=0.001, smoothing=0.0, similarity="l2", steps=None):
    u = np.asarray(u, np.float64)
    v = np.asarray(v, np.float64)
    n = len(u)
    steps = np.arange(n) / n if steps is None else np.asarray(steps, np.float64)
    total = 0.0
    for i in range(n):
        alpha = _softmax([_sim(u[i], vj, temperature, similarity) for vj in v])
        nn = alpha @ v
        logits = np.array([_sim(nn, uk, temperature, similarity) for uk in u])
        beta = _softmax(logits)
        if variant == "classification":
            target = np.full(n, smoothing / n)
            target[i] += 1.0 - smoothing
            log_beta = logits - logits.max() - math.log(np.exp(logits - logits.max()).sum())
            total += -float(target @ log_beta)
        else:
            mu = float(beta @ steps)
            err2 = (steps[i] - mu) ** 2
            if variant == "regression_mse":
                total += err2
            else:
                var = float(beta @ (steps - mu) ** 2)
                total += err2 / var + lam * math.log(var)
    return total / n


def _seqs(rng, n=6, m=7, d=3):
    return rng.normal(size=(n, d)), rng.normal(size=(m, d))


# ------------------------------------------------------------------------------------------
# Values against the reference.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    ("kwargs"),
    [
        {},
        {"temperature": 0.5, "similarity": "dot"},
        {"temperature": 1.0, "label_smoothing": 0.1, "variance_lambda": 0.3},
    ],
)
def test_tcc_loss_matches_numpy_reference(rng, variant, kwargs):
    u, v = _seqs(rng)
    ours = float(tcc.tcc_loss(jnp.asarray(u, jnp.float32), jnp.asarray(v, jnp.float32),
                              variant=variant, **kwargs))  # fmt: skip
    expected = ref_loss(
        u,
        v,
        variant,
        temperature=kwargs.get("temperature", 0.1),
        lam=kwargs.get("variance_lambda", 0.001),
        smoothing=kwargs.get("label_smoothing", 0.0),
        similarity=kwargs.get("similarity", "l2"),
    )
    np.testing.assert_allclose(ours, expected, rtol=F32, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS[1:])
def test_regression_with_given_steps_and_unequal_lengths(rng, variant, enable_x64):
    u, v = _seqs(rng, n=5, m=9, d=4)
    steps = np.array([0.0, 3.0, 4.0, 8.0, 12.0]) / 13.0  # sampled frames of a 13-frame video
    ours = float(tcc.tcc_loss(u, v, variant=variant, steps=steps, temperature=0.3))
    np.testing.assert_allclose(ours, ref_loss(u, v, variant, 0.3, steps=steps), rtol=F64)


def test_soft_nearest_neighbor_and_cycle_back_match_numpy(rng):
    u, v = _seqs(rng)
    nn, alpha = tcc.soft_nearest_neighbor(u.astype(np.float32), v.astype(np.float32))
    out = tcc.cycle_back(u.astype(np.float32), v.astype(np.float32))
    for i in range(len(u)):
        a = _softmax([_sim(u[i], vj, 0.1, "l2") for vj in v])
        np.testing.assert_allclose(np.asarray(alpha[i]), a, rtol=F32, atol=1e-7)
        np.testing.assert_allclose(np.asarray(nn[i]), a @ v, rtol=F32, atol=1e-6)
        logits = np.array([_sim(a @ v, uk, 0.1, "l2") for uk in u])
        np.testing.assert_allclose(np.asarray(out.logits[i]), logits, rtol=F32, atol=1e-5)
        np.testing.assert_allclose(np.asarray(out.beta[i]), _softmax(logits), rtol=F32, atol=1e-7)
    np.testing.assert_allclose(np.asarray(out.alpha.sum(1)), 1.0, rtol=1e-6)


def test_batch_loss_is_mean_over_ordered_pairs(rng, enable_x64):
    embs = rng.normal(size=(3, 5, 2))
    for variant in VARIANTS:
        ours = float(tcc.tcc_batch_loss(embs, variant=variant, temperature=0.2))
        pairs = [(i, j) for i in range(3) for j in range(3) if i != j]
        expected = np.mean([ref_loss(embs[i], embs[j], variant, 0.2) for i, j in pairs])
        np.testing.assert_allclose(ours, expected, rtol=F64)
    steps = rng.uniform(size=(3, 5))
    ours = float(tcc.tcc_batch_loss(embs, variant="regression_mse", steps=steps))
    expected = np.mean(
        [ref_loss(embs[i], embs[j], "regression_mse", steps=steps[i]) for i, j in pairs]
    )
    np.testing.assert_allclose(ours, expected, rtol=F64)


# ------------------------------------------------------------------------------------------
# Identical sequences: the lower bound, accuracy 1, tau 1.
# ------------------------------------------------------------------------------------------


def test_identical_sequences_reach_the_lower_bound_and_score_one(rng):
    u = rng.normal(size=(10, 4)).astype(np.float32)  # distinct frames
    other = rng.normal(size=(10, 4)).astype(np.float32)
    collapsed = u[np.repeat(np.arange(5), 2)]  # every second frame duplicated: not a cycle
    for variant in ("classification", "regression_mse"):
        # The losses are >= 0 and identical sequences approach 0 as the temperature falls.
        same = [float(tcc.tcc_loss(u, u, variant=variant, temperature=t)) for t in TEMPS]
        assert all(a > b for a, b in itertools.pairwise(same))
        assert 0.0 <= same[-1] < 1e-7
        assert float(tcc.tcc_loss(u, other, variant=variant, temperature=TEMPS[-1])) > 1e-3
        assert float(tcc.tcc_loss(u, collapsed, variant=variant, temperature=TEMPS[-1])) > 1e-3
    # Smoothed classification: bounded below by the smoothed target's entropy (reached when
    # beta equals the target, not at the sharpest alignment).
    ls = 0.2
    target = np.full(10, ls / 10)
    target[0] += 1 - ls
    floor = -float(np.sum(target * np.log(target)))  # cross-entropy >= entropy
    got = float(tcc.tcc_loss(u, u, label_smoothing=ls, temperature=TEMPS[-1]))
    assert floor - 1e-5 <= got
    assert float(tcc.cycle_consistency_accuracy(u, u)) == 1.0
    assert float(tcc.kendalls_tau(u, u)) == 1.0
    # Larger temperatures: identical sequences still beat a different sequence.
    for variant in VARIANTS:
        assert float(tcc.tcc_loss(u, u, variant=variant)) < float(
            tcc.tcc_loss(u, other, variant=variant)
        )


def test_loss_sees_v_as_a_set_and_rewards_spread(rng):
    """Documented behaviour: shuffling v changes nothing; spreading v can beat u itself."""
    u = rng.normal(size=(8, 4)).astype(np.float32)
    perm = rng.permutation(8)
    for variant in VARIANTS:
        a = float(tcc.tcc_loss(u, u[::-1][perm], variant=variant))
        b = float(tcc.tcc_loss(u, u, variant=variant))
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    spread = 1.5 * u
    assert float(tcc.tcc_loss(u, spread)) < float(tcc.tcc_loss(u, u))


def test_mse_var_stays_finite_where_the_published_formula_is_nan(enable_x64):
    # Identical, well-separated sequences at a low temperature: the cycle-back distribution is
    # one-hot in floating point, the variance underflows to 0 and the published
    # exp(-log var) * err^2 is 0 * inf.
    u = jnp.arange(6.0)[:, None] * jnp.ones((1, 2))
    logits = tcc.cycle_back(u, u, temperature=1e-4).logits
    beta = np.asarray(jax.nn.softmax(logits, axis=-1))
    steps = np.arange(6) / 6
    mu = beta @ steps
    var = np.sum(beta * (steps[None] - mu[:, None]) ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        published = np.mean(np.exp(-np.log(var)) * (steps - mu) ** 2 + 0.001 * np.log(var))
    assert not np.isfinite(published)
    fn = lambda x: tcc.tcc_loss(x, u, variant="regression_mse_var", temperature=1e-4)
    value, grad = jax.value_and_grad(fn)(u)
    assert np.isfinite(float(value))
    assert np.all(np.isfinite(np.asarray(grad)))
    # Moderate temperature: finite and equal to the plain formula.
    np.testing.assert_allclose(
        float(tcc.tcc_loss(u, u + 0.3, variant="regression_mse_var", temperature=0.5)),
        ref_loss(u, u + 0.3, "regression_mse_var", 0.5),
        rtol=F64,
    )


# ------------------------------------------------------------------------------------------
# Metrics.
# ------------------------------------------------------------------------------------------


def _nn(a, b):
    return np.array([int(np.argmin(((b - ai) ** 2).sum(1))) for ai in a])


@pytest.mark.parametrize("m", [3, 8, 20])
def test_kendalls_tau_matches_scipy(rng, m):
    for _ in range(3):
        u, v = _seqs(rng, n=12, m=m, d=2)  # m = 3: many ties among the neighbours
        nns = _nn(u, v)
        expected = kendalltau(np.arange(12), nns).statistic
        ours = float(tcc.kendalls_tau(u.astype(np.float32), v.astype(np.float32)))
        np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-7)
    # Monotone and reversed trajectories.
    line = np.linspace(0, 1, 9)[:, None]
    assert float(tcc.kendalls_tau(line[::2], line)) == pytest.approx(1.0)
    assert float(tcc.kendalls_tau(line, line[::-1])) == pytest.approx(-1.0)


def test_kendalls_tau_undefined_is_nan_like_scipy():
    u = np.arange(4.0)[:, None]
    assert np.isnan(float(tcc.kendalls_tau(u, u[:1])))  # one neighbour for every frame
    assert np.isnan(kendalltau(np.arange(4), np.zeros(4)).statistic)
    assert np.isnan(float(tcc.kendalls_tau(u[:1], u)))


@pytest.mark.parametrize("tolerance", [0, 1, 3])
def test_cycle_consistency_accuracy_matches_loops(rng, tolerance):
    u, v = _seqs(rng, n=15, m=6, d=2)
    j = _nn(u, v)
    k = _nn(v[j], u)
    expected = np.mean(np.abs(k - np.arange(15)) <= tolerance)
    ours = float(tcc.cycle_consistency_accuracy(u, v, tolerance=tolerance))
    assert ours == pytest.approx(expected)


# ------------------------------------------------------------------------------------------
# jit, vmap, grad.
# ------------------------------------------------------------------------------------------


def test_jit_and_vmap_equal_loop(rng):
    us = rng.normal(size=(3, 6, 2)).astype(np.float32)
    vs = rng.normal(size=(3, 5, 2)).astype(np.float32)
    loss = jax.jit(tcc.tcc_loss, static_argnames=("variant", "similarity"))
    for variant in VARIANTS:
        batched = jax.vmap(lambda a, b, v=variant: loss(a, b, variant=v, temperature=0.3))(us, vs)
        for i in range(3):
            single = float(tcc.tcc_loss(us[i], vs[i], variant=variant, temperature=0.3))
            np.testing.assert_allclose(float(batched[i]), single, rtol=1e-5)
    taus = jax.jit(jax.vmap(tcc.kendalls_tau))(us, vs)
    accs = jax.vmap(tcc.cycle_consistency_accuracy)(us, vs)
    for i in range(3):
        assert float(taus[i]) == pytest.approx(float(tcc.kendalls_tau(us[i], vs[i])), nan_ok=True)
        assert float(accs[i]) == float(tcc.cycle_consistency_accuracy(us[i], vs[i]))


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_by_finite_differences(rng, variant):
    u, v = _seqs(rng, n=5, m=4, d=3)
    with x64():
        fn = lambda a, b, t: tcc.tcc_loss(
            a, b, variant=variant, temperature=t, label_smoothing=0.1, variance_lambda=0.01
        )
        check_grads(fn, (u, v, 0.7), order=1, modes=("rev",), atol=GRAD_X64, rtol=GRAD_X64)
        batch = lambda e: tcc.tcc_batch_loss(e, variant=variant, temperature=0.5)
        check_grads(batch, (rng.normal(size=(3, 4, 2)),), order=1, modes=("rev",),
                    atol=GRAD_X64, rtol=GRAD_X64)  # fmt: skip


# ------------------------------------------------------------------------------------------
# Bad input.
# ------------------------------------------------------------------------------------------


def test_bad_input_raises_clear_errors():
    u = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"same embedding size d.*\(4, 3\).*\(4, 2\)"):
        tcc.tcc_loss(u, np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"must be 2-D arrays"):
        tcc.tcc_loss(u[0], u)
    with pytest.raises(ValueError, match=r"`temperature` must be a finite positive"):
        tcc.tcc_loss(u, u, temperature=0.0)
    with pytest.raises(ValueError, match=r"`temperature` must be a finite positive"):
        tcc.soft_nearest_neighbor(u, u, temperature=-1.0)
    with pytest.raises(ValueError, match=r"`variant` must be one of"):
        tcc.tcc_loss(u, u, variant="regression_huber")
    with pytest.raises(ValueError, match=r"`similarity` must be one of"):
        tcc.cycle_back(u, u, similarity="cosine")
    with pytest.raises(ValueError, match=r"`variance_lambda` must be a finite non-negative"):
        tcc.tcc_loss(u, u, variance_lambda=-1.0)
    with pytest.raises(ValueError, match=r"`label_smoothing` must lie in \[0, 1\]"):
        tcc.tcc_loss(u, u, label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"at least 2 frames"):
        tcc.tcc_loss(u[:1], u, variant="regression_mse_var")
    with pytest.raises(ValueError, match=r"`steps` must have shape \[n\]=\(4,\)"):
        tcc.tcc_loss(u, u, variant="regression_mse", steps=np.zeros(3))
    with pytest.raises(ValueError, match=r"`embs` must be a non-empty 3-D array.*b >= 2"):
        tcc.tcc_batch_loss(np.zeros((1, 4, 3)))
    with pytest.raises(ValueError, match=r"`tolerance` must be an int >= 0"):
        tcc.cycle_consistency_accuracy(u, u, tolerance=-1)
    with pytest.raises(ValueError, match=r"non-empty"):
        tcc.kendalls_tau(np.zeros((0, 3)), u)


# ------------------------------------------------------------------------------------------
# Issue 9: the bad-input policy.
# ------------------------------------------------------------------------------------------

ALL_FUNCTIONS = {
    "soft_nearest_neighbor": lambda u, v, **kw: tcc.soft_nearest_neighbor(u, v, **kw),
    "cycle_back": lambda u, v, **kw: tcc.cycle_back(u, v, **kw),
    "tcc_loss": lambda u, v, **kw: tcc.tcc_loss(u, v, **kw),
    "tcc_batch_loss": lambda u, v, **kw: tcc.tcc_batch_loss(jnp.stack([u, v[: len(u)]]), **kw),
}


def _all_nan(tree):
    return all(np.all(np.isnan(np.asarray(x, np.float64))) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("where", ["u", "v"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_metrics_never_swallow_nan(rng, where, value):
    u, v = _seqs(rng, n=6, m=6)
    u, v = u.astype(np.float32), v.astype(np.float32)
    (u if where == "u" else v)[2, 1] = value
    for fn in (tcc.kendalls_tau, tcc.cycle_consistency_accuracy):
        assert np.isnan(float(fn(u, v)))
        assert np.isnan(float(jax.jit(fn)(u, v)))
    assert np.all(np.isnan(np.asarray(jax.vmap(tcc.kendalls_tau)(u[None], v[None]))))


@pytest.mark.parametrize("name", list(ALL_FUNCTIONS))
def test_nan_in_embeddings_propagates_to_value_and_gradient(rng, name):
    u, v = _seqs(rng, n=5, m=5)
    u = u.astype(np.float32)
    v = v.astype(np.float32)
    u[1, 0] = np.nan
    fn = ALL_FUNCTIONS[name]
    out = fn(u, v)
    assert any(np.any(np.isnan(np.asarray(x))) for x in jax.tree.leaves(out))
    if name.startswith("tcc"):
        assert np.isnan(float(out))
        assert np.any(np.isnan(np.asarray(jax.grad(lambda a: fn(a, v))(u))))


@pytest.mark.parametrize("name", list(ALL_FUNCTIONS))
@pytest.mark.parametrize("temperature", [0.0, -1.0, np.nan, np.inf])
def test_traced_bad_temperature_gives_nan(rng, name, temperature):
    u, v = (x.astype(np.float32) for x in _seqs(rng, n=4, m=4))
    fn = ALL_FUNCTIONS[name]
    assert _all_nan(jax.jit(lambda t: fn(u, v, temperature=t))(temperature))
    with pytest.raises(ValueError, match="`temperature`"):
        fn(u, v, temperature=temperature)


@pytest.mark.parametrize("name", ["tcc_loss", "tcc_batch_loss"])
@pytest.mark.parametrize(
    ("arg", "value"),
    [("variance_lambda", -1.0), ("variance_lambda", np.nan), ("label_smoothing", 1.5),
     ("label_smoothing", -0.1), ("label_smoothing", np.inf)],
)  # fmt: skip
def test_traced_bad_lambda_and_smoothing_give_nan(rng, name, arg, value):
    u, v = (x.astype(np.float32) for x in _seqs(rng, n=4, m=4))
    fn = ALL_FUNCTIONS[name]
    assert np.isnan(
        float(jax.jit(lambda x: fn(u, v, variant="regression_mse_var", **{arg: x}))(value))
    )
    with pytest.raises(ValueError, match=f"`{arg}`"):
        fn(u, v, **{arg: value})


@pytest.mark.parametrize("name", list(ALL_FUNCTIONS))
@pytest.mark.parametrize("arg", ["temperature", "variance_lambda", "label_smoothing"])
@pytest.mark.parametrize("value", [[0.1, 0.2], 0.1 + 0.1j, None, "0.1"])
def test_malformed_hyperparameters_raise_naming_them_even_under_jit(rng, name, arg, value):
    if arg != "temperature" and not name.startswith("tcc"):
        return
    u, v = (x.astype(np.float32) for x in _seqs(rng, n=4, m=4))
    fn = ALL_FUNCTIONS[name]
    with pytest.raises(ValueError, match=f"`{arg}`"):
        fn(u, v, **{arg: value})
    if isinstance(value, list):
        with pytest.raises(ValueError, match=f"`{arg}`"):
            jax.jit(lambda x: fn(u, v, **{arg: x}))(jnp.asarray(value))


def test_static_options_and_none_arrays_raise():
    u = np.zeros((4, 3), np.float32)
    for bad in (1.5, True, np.array(1)):
        with pytest.raises(ValueError, match="`tolerance`"):
            tcc.cycle_consistency_accuracy(u, u, tolerance=bad)
    with pytest.raises(ValueError, match=r"`u`.*None"):
        tcc.kendalls_tau(None, u)
    with pytest.raises(ValueError, match="`v` must be real"):
        tcc.tcc_loss(u, u.astype(np.complex64))
    with pytest.raises(ValueError, match=r"`embs`.*None"):
        tcc.tcc_batch_loss(None)


def test_soft_nearest_neighbor_output_is_a_named_tuple(rng):
    u, v = _seqs(rng)
    out = tcc.soft_nearest_neighbor(u.astype(np.float32), v.astype(np.float32))
    assert isinstance(out, tcc.SoftNearestNeighborOutput)
    np.testing.assert_allclose(np.asarray(out.neighbors), np.asarray(out.alpha @ v), rtol=1e-5)
    back = tcc.cycle_back(u.astype(np.float32), v.astype(np.float32))
    assert all(field is not None for field in back) and all(f is not None for f in out)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_low_precision_is_computed_in_float32_and_returned_in_input_dtype(rng, dtype):
    u, v = _seqs(rng, n=6, m=7)
    lo_u, lo_v = jnp.asarray(u).astype(dtype), jnp.asarray(v).astype(dtype)
    hi_u, hi_v = lo_u.astype(jnp.float32), lo_v.astype(jnp.float32)
    for name, fn in ALL_FUNCTIONS.items():
        if name == "tcc_batch_loss":
            lo_v_, hi_v_ = lo_v[:6], hi_v[:6]
        else:
            lo_v_, hi_v_ = lo_v, hi_v
        for got, want in zip(jax.tree.leaves(fn(lo_u, lo_v_)), jax.tree.leaves(fn(hi_u, hi_v_)),
                             strict=True):  # fmt: skip
            assert got.dtype == dtype
            np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want.astype(dtype),
                                       np.float32), rtol=2e-2, atol=2e-2)  # fmt: skip
    assert tcc.kendalls_tau(lo_u, lo_v).dtype == dtype
    assert float(tcc.kendalls_tau(lo_u, lo_v)) == float(tcc.kendalls_tau(hi_u, hi_v).astype(dtype))
    assert float(tcc.cycle_consistency_accuracy(lo_u, lo_v)) == float(
        tcc.cycle_consistency_accuracy(hi_u, hi_v).astype(dtype)
    )


@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_extreme_magnitudes_are_not_nan(rng, scale):
    u, v = (x.astype(np.float32) for x in _seqs(rng, n=6, m=7))
    su, sv = u * np.float32(scale), v * np.float32(scale)
    # The metrics are scale invariant: exactly the unscaled answer.
    assert float(tcc.kendalls_tau(su, sv)) == float(tcc.kendalls_tau(u, v))
    assert float(tcc.cycle_consistency_accuracy(su, sv)) == float(
        tcc.cycle_consistency_accuracy(u, v)
    )
    for variant in VARIANTS:
        for a, b in ((su, su), (su, sv)):
            assert not np.isnan(float(tcc.tcc_loss(a, b, variant=variant)))
    out = tcc.cycle_back(su, sv)
    np.testing.assert_allclose(np.asarray(out.beta.sum(1)), 1.0, rtol=1e-6)
    assert not np.any(np.isnan(np.asarray(out.beta))) and not np.any(np.isnan(out.logits))
    if scale > 1:  # the hard limit: identical distinct frames return exactly
        assert float(tcc.tcc_loss(su, su)) == 0.0
        assert float(tcc.tcc_loss(su, sv)) == np.inf  # true value ~1e60, beyond float32
    else:  # similarities ~1e-60: uniform soft neighbours, the loss is log n
        assert float(tcc.tcc_loss(su, sv)) == pytest.approx(math.log(6), rel=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_finite_at_identical_and_constant_sequences(rng, variant):
    u = rng.normal(size=(5, 3)).astype(np.float32)
    const = np.ones((5, 3), np.float32)
    for x in (u, const, np.zeros((5, 3), np.float32)):
        g = jax.grad(lambda a: tcc.tcc_loss(a, a, variant=variant, temperature=0.01))(x)
        assert np.all(np.isfinite(np.asarray(g)))
        g = jax.grad(lambda a: tcc.tcc_batch_loss(jnp.stack([a, a]), variant=variant))(x)
        assert np.all(np.isfinite(np.asarray(g)))
        g = jax.grad(lambda t, x=x: tcc.tcc_loss(x, x, variant=variant, temperature=t))(0.1)
        assert np.isfinite(float(g))
