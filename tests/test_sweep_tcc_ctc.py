"""Bad-input sweep over every public function of ``tcc.py`` and ``ctc.py`` (issue 9).

Each case runs eagerly, under ``jit`` and under ``vmap``, and asserts the policy of
``docs/conventions.md`` with the helpers of ``tests/sweep.py``: ``ValueError`` naming the
argument for static problems and concrete bad values, NaN (and ``-1`` indices) for traced bad
values, NaN propagated from real data (never an argmin silently picking an index), finite values
and gradients at degenerate points and extreme magnitudes, and CTC padding (frames past
``t_valid``, labels past ``l_valid``) that changes nothing. Sizes are tiny and the jitted
callables are cached.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import alignment as al
from tests import sweep
from tests.sweep import (
    POSITIVE_SCALAR_CASES,
    SHAPE_SCALAR_CASES,
    all_nan,
    any_nan,
    finite,
    garbage_values,
    raises,
    same,
)

RNG = np.random.default_rng(9)
MODES = ["eager", "jit", "vmap"]
N, M, D = 4, 5, 2
U = RNG.normal(size=(N, D)).astype(np.float32)
V = RNG.normal(size=(M, D)).astype(np.float32)


def _minus_one(function: str, ints) -> None:
    """Every integer output is ``-1`` (the traced bad-value policy for indices)."""
    for leaf in jax.tree.leaves(ints):
        assert (np.asarray(leaf) == -1).all(), leaf
    sweep._record(function, "-1")


# --------------------------------------------------------------------------------------------
# tcc.py: every public function as f(u, v, **hyper) with u [n, d], v [m, d].
# --------------------------------------------------------------------------------------------


def _batch(u, v, **kw):
    n = min(u.shape[0], v.shape[0])
    return al.tcc_batch_loss(jnp.stack([u[:n], v[:n]]), **kw)


TCC = {
    "soft_nearest_neighbor": al.soft_nearest_neighbor,
    "cycle_back": al.cycle_back,
    "tcc_loss": al.tcc_loss,
    "tcc_batch_loss": _batch,
    "cycle_consistency_accuracy": al.cycle_consistency_accuracy,
    "kendalls_tau": al.kendalls_tau,
}
WITH_TEMPERATURE = ["soft_nearest_neighbor", "cycle_back", "tcc_loss", "tcc_batch_loss"]
LOSSES = ["tcc_loss", "tcc_batch_loss"]
METRICS = ["cycle_consistency_accuracy", "kendalls_tau"]


@functools.cache
def _tcc(name, mode, **static):
    fn = functools.partial(TCC[name], **static)
    if mode == "eager":
        return fn
    if mode == "jit":
        return jax.jit(fn)
    return jax.jit(jax.vmap(fn))


def _call(name, mode, u, v, **static):
    """One problem in ``mode`` (``vmap``: a batch of two copies; returns member 0)."""
    if mode == "vmap":
        out = _tcc(name, mode, **static)(jnp.stack([u, u]), jnp.stack([v, v]))
        return jax.tree.map(lambda x: x[0], out)
    return _tcc(name, mode, **static)(u, v)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(TCC))
@pytest.mark.parametrize("where", ["u", "v"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_tcc_non_finite_data_propagates(name, mode, where, value):
    u, v = U.copy(), V.copy()
    (u if where == "u" else v)[1, 0] = value
    if name in METRICS or value != value:  # metrics: any non-finite entry gives NaN
        any_nan(name, lambda: _call(name, mode, u, v))
    else:  # inf in a soft loss: not a plausible finite number
        out = jax.tree.leaves(_call(name, mode, u, v))
        assert any(not np.all(np.isfinite(np.asarray(x, np.float64))) for x in out)
        sweep._record(name, "non-finite")


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("name", list(TCC))
@pytest.mark.parametrize(
    ("label", "u", "v", "match"),
    [
        ("empty u", np.zeros((0, D), np.float32), V, "non-empty"),
        ("empty d", np.zeros((N, 0), np.float32), np.zeros((M, 0), np.float32), "non-empty"),
        ("rank 1", U[0], V, "2-D"),
        ("rank 3", U[None], V, "2-D"),
        ("mismatched d", U, V[:, :1], "same embedding size"),
    ],
)
def test_tcc_static_shapes_raise(name, mode, label, u, v, match):
    if name == "tcc_batch_loss":  # the same problems, spelled as one [b, t, d] batch
        embs = {"empty u": np.zeros((2, 0, D)), "empty d": np.zeros((2, N, 0)), "rank 1": U,
                "rank 3": U[None, None], "mismatched d": U[None]}[label]  # fmt: skip
        fn = al.tcc_batch_loss if mode == "eager" else jax.jit(al.tcc_batch_loss)
        raises(name, lambda: fn(jnp.asarray(embs, jnp.float32)), match="`embs`")
        return
    raises(name, lambda: _call(name, mode, jnp.asarray(u), jnp.asarray(v)), match=match)


@pytest.mark.parametrize("name", [n for n in TCC if n != "tcc_batch_loss"])
@pytest.mark.parametrize(
    ("label", "u", "v", "match"),
    [
        ("None u", None, V, "`u`"),
        ("None v", U, None, "`v`"),
        ("complex", U.astype(np.complex64), V, "`u` must be real"),
        ("string", np.array([["a"]]), V, "`u`"),
    ],
)
def test_tcc_bad_arrays_raise(name, label, u, v, match):
    raises(name, lambda: TCC[name](u, v), match=match)


@pytest.mark.parametrize("value", [None, U.astype(np.complex64)])
def test_tcc_batch_bad_arrays_raise(value):
    raises("tcc_batch_loss", lambda: al.tcc_batch_loss(value), match="`embs`")
    raises("tcc_batch_loss", lambda: al.tcc_batch_loss(U[None]), match="b >= 2")


@pytest.mark.parametrize("mode", ["eager", "vmap"])
@pytest.mark.parametrize("name", list(TCC))
@pytest.mark.parametrize("dtype", ["int32", "bool", "float16", "bfloat16"])
def test_tcc_dtypes(name, mode, dtype):
    u = (U * 3).astype(dtype) if dtype in ("int32", "bool") else jnp.asarray(U).astype(dtype)
    v = (V * 3).astype(dtype) if dtype in ("int32", "bool") else jnp.asarray(V).astype(dtype)
    out = finite(name, lambda: _call(name, mode, u, v)) if name != "kendalls_tau" else None
    if out is None:  # tau may be undefined (NaN) for bool data: every neighbour tied
        out = _call(name, mode, u, v)
        sweep._record(name, "dtype")
    want = dtype if dtype in ("float16", "bfloat16") else jnp.result_type(float)
    for leaf in jax.tree.leaves(out):
        assert leaf.dtype == want, (leaf.dtype, want)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(TCC))
@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_tcc_extreme_magnitudes_not_nan(name, mode, scale):
    u, v = U * np.float32(scale), V * np.float32(scale)
    if name in METRICS:
        same(name, lambda: _call(name, mode, u, v), _call(name, "eager", U, V))
    elif name == "cycle_back":
        finite(name, lambda: _call(name, mode, u, v)[1:])  # logits may saturate to -inf
    elif name == "soft_nearest_neighbor":
        out = _call(name, mode, u, v)
        np.testing.assert_allclose(np.asarray(out.alpha.sum(1)), 1.0, rtol=1e-5)
        finite(name, lambda: out.alpha)
    else:  # losses: identical sequences are finite; different ones may be +inf (~1e60)
        finite(name, lambda: _call(name, mode, u, u))
        out = np.asarray(_call(name, mode, u, v), np.float64)
        assert not np.isnan(out)
        sweep._record(name, "not NaN")


@pytest.mark.parametrize("mode", ["eager", "jit", "vmap"])
@pytest.mark.parametrize("name", WITH_TEMPERATURE)
@pytest.mark.parametrize(("label", "value", "eager", "traced"), POSITIVE_SCALAR_CASES)
def test_tcc_bad_temperature(name, mode, label, value, eager, traced):
    fn = TCC[name]
    if mode == "eager":
        raises(name, lambda: fn(U, V, temperature=value), match="`temperature`")
    elif mode == "jit":
        all_nan(name, lambda: _jit_temperature(name)(jnp.float32(value)))
    else:
        temps = jnp.asarray([value, 0.1], jnp.float32)
        out = _vmap_temperature(name)(temps)
        all_nan(name, lambda: jax.tree.map(lambda x: x[0], out))
        finite(name, lambda: jax.tree.map(lambda x: x[1], out))


@functools.cache
def _jit_temperature(name):
    return jax.jit(lambda t: TCC[name](U, V, temperature=t))


@functools.cache
def _vmap_temperature(name):
    return jax.jit(jax.vmap(_jit_temperature(name)))


@functools.cache
def _jit_hyper(name, arg):
    return jax.jit(lambda x: TCC[name](U, V, variant="regression_mse_var", **{arg: x}))


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize(
    ("arg", "value"),
    [
        ("variance_lambda", -1.0),
        ("variance_lambda", np.nan),
        ("variance_lambda", np.inf),
        ("label_smoothing", -0.5),
        ("label_smoothing", 1.5),
        ("label_smoothing", np.nan),
    ],
)
def test_tcc_bad_lambda_and_smoothing(name, mode, arg, value):
    if mode == "eager":
        raises(name, lambda: TCC[name](U, V, **{arg: value}), match=f"`{arg}`")
    else:
        all_nan(name, lambda: _jit_hyper(name, arg)(jnp.float32(value)))


_SCALAR_ARGS = [(n, "temperature") for n in WITH_TEMPERATURE] + [
    (n, a) for n in LOSSES for a in ("variance_lambda", "label_smoothing")
]
_MALFORMED = [(mode, *case) for mode in ("eager", "jit") for case in SHAPE_SCALAR_CASES
              if mode == "eager" or case[0] in ("array", "matrix")]  # fmt: skip


@pytest.mark.parametrize(("name", "arg"), _SCALAR_ARGS)
@pytest.mark.parametrize(("mode", "label", "value"), _MALFORMED)
def test_tcc_malformed_scalars_raise(name, arg, mode, label, value):
    fn = TCC[name]
    if mode == "eager":
        raises(name, lambda: fn(U, V, **{arg: value}), match=f"`{arg}`")
    else:  # array-valued: a shape, checked at trace time
        traced = jax.jit(lambda x: fn(U, V, **{arg: x}))
        raises(name, lambda: traced(jnp.asarray(value)), match=f"`{arg}`")


_OPTIONS = [(n, "similarity") for n in WITH_TEMPERATURE] + [(n, "variant") for n in LOSSES]


@pytest.mark.parametrize(("name", "option"), _OPTIONS)
@pytest.mark.parametrize("bad", ["nope", None, 1])
def test_tcc_bad_static_options_raise(name, option, bad):
    raises(name, lambda: TCC[name](U, V, **{option: bad}), match=f"`{option}`")


@pytest.mark.parametrize("bad", [-1, 1.5, True, np.array(1), None])
def test_tcc_bad_tolerance_raises(bad):
    name = "cycle_consistency_accuracy"
    raises(name, lambda: al.cycle_consistency_accuracy(U, V, tolerance=bad), match="`tolerance`")


@functools.cache
def _grad(name, variant):
    loss = lambda a, t: TCC[name](a, a, variant=variant, temperature=t)
    return jax.jit(jax.grad(loss, argnums=(0, 1)))


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("variant", ["classification", "regression_mse", "regression_mse_var"])
def test_tcc_gradients_finite_at_degenerate_points(name, variant):
    points = [(U, 0.1), (np.ones((N, D), np.float32), 0.1), (np.zeros((N, D), np.float32), 0.1),
              (U, 1e-4), (U * np.float32(1e-3), 0.1)]  # fmt: skip
    for x, temp in points:  # identical, constant, zero, tiny temperature, tiny distances
        finite(name, lambda x=x, temp=temp: _grad(name, variant)(jnp.asarray(x), temp))


@pytest.mark.parametrize("name", LOSSES)
def test_tcc_steps_shape_and_nan(name):
    bad = np.zeros(7, np.float32)
    raises(name, lambda: TCC[name](U, V, variant="regression_mse", steps=bad), match="`steps`")
    steps = np.arange(N, dtype=np.float32) / N
    steps[1] = np.nan
    if name == "tcc_batch_loss":
        steps = np.stack([steps, steps])
    any_nan(name, lambda: TCC[name](U, V, variant="regression_mse", steps=steps))


# --------------------------------------------------------------------------------------------
# ctc.py
# --------------------------------------------------------------------------------------------

T, C = 5, 4
LP = np.log(RNG.dirichlet(np.ones(C), size=T)).astype(np.float32)
LABELS = np.array([1, 3, 3], np.int32)
CTC = "ctc_forced_alignment"


@functools.cache
def _ctc(mode):
    fn = lambda lp, y, tl, ll: al.ctc_forced_alignment(lp, y, lengths=(tl, ll))
    if mode == "eager":
        return fn
    if mode == "jit":
        return jax.jit(fn)
    return jax.jit(jax.vmap(fn))


def _call_ctc(mode, lp, y, tl, ll):
    if mode == "vmap":
        out = _ctc(mode)(jnp.stack([lp, lp]), jnp.stack([y, y]), jnp.array([tl, tl]),
                         jnp.array([ll, ll]))  # fmt: skip
        return jax.tree.map(lambda x: x[0], out)
    return _ctc(mode)(lp, y, tl, ll)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("value", [np.nan])
@pytest.mark.parametrize("frame", [0, 4])
def test_ctc_nan_in_valid_frame_propagates(mode, value, frame):
    lp = LP.copy()
    lp[frame, 2] = value  # even in a class no path uses
    out = _call_ctc(mode, lp, LABELS, T, 3)
    all_nan(CTC, lambda: out)
    _minus_one(CTC, (out.tokens, out.label_index))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("label", "value"), garbage_values())
def test_ctc_padding_garbage_changes_nothing(mode, label, value):
    ref = al.ctc_forced_alignment(LP[:4], LABELS[:2])
    lp = LP.copy()
    lp[4:] = value
    y = np.array([1, 3, 0], np.int32)  # the blank in the label padding: never read
    out = _call_ctc(mode, lp, y, 4, 2)
    same(CTC, lambda: (out.log_prob, out.tokens[:4], out.frame_log_probs[:4]),
         (ref.log_prob, ref.tokens, ref.frame_log_probs))  # fmt: skip
    if mode != "vmap":
        grad = jax.grad(lambda x: _ctc(mode)(x, y, 4, 2).log_prob)(jnp.asarray(lp))
        finite(CTC, lambda: grad)
        assert np.all(np.asarray(grad)[4:] == 0.0)


@pytest.mark.parametrize("mode", ["jit", "vmap"])
@pytest.mark.parametrize(
    ("label", "labels", "tl", "ll"),
    [
        ("blank label", [1, 0, 3], T, 3),
        ("-1 label", [1, -1, 3], T, 3),
        ("label >= c", [1, C, 3], T, 3),
        ("t_valid > t", [1, 3, 3], T + 1, 3),
        ("t_valid = 0", [1, 3, 3], 0, 3),
        ("l_valid > l", [1, 3, 3], T, 4),
        ("l_valid < 0", [1, 3, 3], T, -1),
    ],
)
def test_ctc_traced_bad_values_give_nan_and_minus_one(mode, label, labels, tl, ll):
    out = _call_ctc(mode, LP, np.asarray(labels, np.int32), tl, ll)
    all_nan(CTC, lambda: out)
    _minus_one(CTC, (out.tokens, out.label_index))


@pytest.mark.parametrize(
    ("label", "labels", "lengths", "match"),
    [
        ("blank label", [1, 0, 3], None, "blank"),
        ("-1 label", [1, -1], None, "must lie in"),
        ("label >= c", [1, C], None, "must lie in"),
        ("too long", [1, 1, 1], (4, 3), "too long"),
        ("t_valid > t", [1], (T + 1, 1), "t_valid"),
        ("t_valid = 0", [1], (0, 1), "t_valid"),
        ("l_valid > l", [1], (T, 2), "l_valid"),
        ("l_valid < 0", [1], (T, -1), "l_valid"),
        ("float length", [1], (2.0, 1), "t_valid"),
        ("bool length", [1], (T, True), "l_valid"),
        ("None length", [1], (None, 1), "t_valid"),
        ("array length", [1], (np.array([1, 2]), 1), "t_valid"),
        ("not a pair", [1], 3, "`lengths`"),
    ],
)
def test_ctc_concrete_bad_values_raise(label, labels, lengths, match):
    raises(CTC, lambda: al.ctc_forced_alignment(LP, np.asarray(labels), lengths=lengths),
           match=match)  # fmt: skip


@pytest.mark.parametrize(
    ("label", "lp", "labels", "blank", "match"),
    [
        ("None log_probs", None, LABELS, 0, "`log_probs`"),
        ("None labels", LP, None, 0, "`labels`"),
        ("complex", LP.astype(np.complex64), LABELS, 0, "`log_probs` must be real"),
        ("rank 1", LP[0], LABELS, 0, "`log_probs`"),
        ("rank 3", LP[None], LABELS, 0, "`log_probs`"),
        ("empty frames", LP[:0], LABELS, 0, "`log_probs`"),
        ("empty classes", LP[:, :0], LABELS, 0, "`log_probs`"),
        ("labels rank 2", LP, LABELS[None], 0, "`labels`"),
        ("float labels", LP, LABELS.astype(np.float32), 0, "`labels`"),
        ("bool labels", LP, LABELS > 0, 0, "`labels`"),
        ("blank >= c", LP, LABELS, C, "`blank_id`"),
        ("blank < 0", LP, LABELS, -1, "`blank_id`"),
        ("float blank", LP, LABELS, 0.0, "`blank_id`"),
        ("bool blank", LP, LABELS, True, "`blank_id`"),
    ],
)
@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_ctc_static_problems_raise(label, lp, labels, blank, match, mode):
    call = lambda: al.ctc_forced_alignment(lp, labels, blank_id=blank)
    if mode == "jit" and lp is not None and labels is not None:
        traced = jax.jit(lambda a, b: al.ctc_forced_alignment(a, b, blank_id=blank))
        call = lambda: traced(lp, labels)
    raises(CTC, call, match=match)


@pytest.mark.parametrize("mode", ["eager", "vmap"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "int32"])
def test_ctc_dtypes(mode, dtype):
    lp = jnp.asarray(LP).astype(dtype) if dtype != "int32" else np.round(LP).astype(np.int32)
    out = finite(CTC, lambda: _call_ctc(mode, lp, LABELS, T, 3))
    want = jnp.result_type(float) if dtype == "int32" else dtype
    assert out.log_prob.dtype == want and out.frame_log_probs.dtype == want
    assert out.tokens.dtype == jnp.int32


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_ctc_extreme_magnitudes(mode, scale):
    lp = LP * np.float32(scale)
    out = _call_ctc(mode, lp, LABELS, T, 3)
    assert not np.isnan(float(out.log_prob))
    finite(CTC, lambda: out)


@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_ctc_gradients_finite_at_degenerate_points(mode):
    uniform = np.full((T, C), -np.log(C), np.float32)  # every path ties
    forbidden = LP.copy()
    forbidden[:, 2] = -np.inf  # a class no frame may emit
    for lp, y in ((uniform, LABELS), (forbidden, LABELS), (LP, np.zeros(0, np.int32))):
        fn = lambda x, y=y: al.ctc_forced_alignment(x, y).log_prob
        fn = jax.jit(fn) if mode == "jit" else fn
        finite(CTC, lambda fn=fn, lp=lp: jax.grad(fn)(jnp.asarray(lp)))
