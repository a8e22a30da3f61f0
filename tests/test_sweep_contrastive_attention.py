"""Bad-input sweep over every public function of ``contrastive.py`` and ``attention.py`` (issue 9).

Each case runs eagerly, under ``jit`` and under ``vmap`` (the sharded losses: inside
``shard_map`` on a one-device mesh, eagerly and under ``jit``), and asserts the policy of
``docs/conventions.md`` with the helpers of ``tests/sweep.py``: ``ValueError`` naming the
argument for static problems and concrete bad values, NaN (and ``-1`` indices) for traced bad
values, NaN propagated from real data, finite values and gradients at degenerate points and at
extreme magnitudes, and masked keys/values/steps/regions whose garbage changes nothing. Sizes are
tiny and the jitted callables are cached.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

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
B, K = 6, 3
ZA = RNG.normal(size=(B, K)).astype(np.float32)
ZB = (ZA + 0.5 * RNG.normal(size=(B, K))).astype(np.float32)
MESH = Mesh(np.array(jax.devices()[:1]), ("batch",))


# --------------------------------------------------------------------------------------------
# contrastive.py: every public function as f(za, zb, **hyper).
# --------------------------------------------------------------------------------------------


def _sharded(fn):
    def call(za, zb, **kw):
        local = functools.partial(fn, axis_name="batch", **kw)
        specs = (P("batch"), P("batch"))
        return jax.shard_map(local, mesh=MESH, in_specs=specs, out_specs=P())(za, zb)

    return call


CONTRASTIVE = {
    "vse_loss": al.vse_loss,
    "infonce_loss": al.infonce_loss,
    "clip_loss": al.clip_loss,
    "infonce_mi_lower_bound": al.infonce_mi_lower_bound,
    "siglip_loss": al.siglip_loss,
    "chunked_siglip_loss": functools.partial(al.chunked_siglip_loss, chunk_size=4),
    "sharded_infonce_loss": _sharded(al.sharded_infonce_loss),
    "sharded_clip_loss": _sharded(al.sharded_clip_loss),
    "sharded_siglip_loss": _sharded(al.sharded_siglip_loss),
}
SHARDED = [name for name in CONTRASTIVE if name.startswith("sharded")]
# (hyperparameter, domain): "finite" accepts 0 and negatives, "nonnegative" accepts 0.
HYPER = {
    "vse_loss": [("margin", "nonnegative")],
    "infonce_loss": [("logit_scale", "finite"), ("max_scale", "positive")],
    "clip_loss": [("logit_scale", "finite"), ("max_scale", "positive")],
    "infonce_mi_lower_bound": [("logit_scale", "finite"), ("max_scale", "positive")],
    "siglip_loss": [("logit_scale", "finite"), ("logit_bias", "finite")],
    "chunked_siglip_loss": [("logit_scale", "finite"), ("logit_bias", "finite")],
    "sharded_infonce_loss": [("logit_scale", "finite"), ("max_scale", "positive")],
    "sharded_clip_loss": [("logit_scale", "finite"), ("max_scale", "positive")],
    "sharded_siglip_loss": [("logit_scale", "finite"), ("logit_bias", "finite")],
}
VALID = {"positive": (), "nonnegative": ("zero",), "finite": ("zero", "negative")}
HYPER_CASES = [
    (name, hyper, domain, label, value, eager, traced)
    for name, hypers in HYPER.items()
    for hyper, domain in hypers
    for label, value, eager, traced in POSITIVE_SCALAR_CASES
    if label not in VALID[domain]
]


def _no_nan(function: str, call) -> None:
    """No floating output of ``call()`` is NaN (an overflowing true value may read inf)."""
    out = jax.block_until_ready(call())
    for leaf in sweep.float_leaves(out):
        assert not np.any(np.isnan(leaf.astype(np.float64))), leaf
    sweep._record(function, "no NaN")


def _modes(name):
    return ["eager", "jit"] if name in SHARDED else MODES


@functools.cache
def _co(name, mode, hyper=None):
    """``f(za, zb)`` or, with ``hyper``, ``f(za, zb, h)`` with ``h`` passed as ``hyper``."""
    fn = CONTRASTIVE[name]
    if hyper is not None:
        base = fn
        fn = lambda za, zb, h: base(za, zb, **{hyper: h})
    if mode == "eager":
        return fn
    if mode == "jit":
        return jax.jit(fn)
    return jax.jit(jax.vmap(fn))


@functools.cache
def _grad(name):
    return jax.jit(jax.grad(CONTRASTIVE[name], argnums=(0, 1)))


def _call(name, mode, za, zb):
    if mode == "vmap":
        return _co(name, mode)(jnp.stack([za, za]), jnp.stack([zb, zb]))[0]
    return _co(name, mode)(za, zb)


@pytest.mark.parametrize("name", list(CONTRASTIVE))
@pytest.mark.parametrize("where", ["za", "zb"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_contrastive_non_finite_data_propagates(name, where, value):
    for mode in _modes(name):
        za, zb = ZA.copy(), ZB.copy()
        (za if where == "za" else zb)[1, 0] = value
        if value != value:
            any_nan(name, lambda za=za, zb=zb, mode=mode: _call(name, mode, za, zb))
        else:  # inf in real data: never a plausible finite number
            out = float(_call(name, mode, za, zb))
            assert not np.isfinite(out), (name, mode, out)
            sweep._record(name, "non-finite")


@pytest.mark.parametrize("name", list(CONTRASTIVE))
def test_contrastive_nan_gradient_propagates(name):
    za = ZA.copy()
    za[2, 1] = np.nan
    grads = _grad(name)(za, ZB)
    any_nan(name, lambda: grads)


SHAPES = [
    ("empty b", np.zeros((0, K), np.float32), np.zeros((0, K), np.float32), "non-empty"),
    ("empty k", np.zeros((B, 0), np.float32), np.zeros((B, 0), np.float32), "non-empty"),
    ("rank 1", ZA[0], ZB[0], "2-D"),
    ("rank 3", ZA[None], ZB[None], "2-D"),
    ("mismatched b", ZA, ZB[:4], "same shape"),
    ("mismatched k", ZA, ZB[:, :2], "same shape"),
    ("none za", None, ZB, "`za` must be an array"),
    ("none zb", ZA, None, "`zb` must be an array"),
    ("complex", ZA.astype(np.complex64), ZB, "`za` must be real"),
    ("string", np.array([["a"] * K] * B), ZB, "`za` must be a numeric array"),
]


@pytest.mark.parametrize("name", list(CONTRASTIVE))
@pytest.mark.parametrize(("label", "za", "zb", "match"), SHAPES, ids=[s[0] for s in SHAPES])
def test_contrastive_static_shapes_raise(name, label, za, zb, match):
    if name in SHARDED and (za is None or zb is None or label == "string"):
        pytest.skip("shard_map itself rejects a None or string operand before the loss runs")
    raises(name, lambda: CONTRASTIVE[name](za, zb), match=match)
    if za is not None and zb is not None and label != "string":
        raises(name, lambda: jax.jit(CONTRASTIVE[name])(za, zb), match=match)


@pytest.mark.parametrize("name", list(CONTRASTIVE))
def test_contrastive_dtypes(name):
    fn = CONTRASTIVE[name]
    jitted = _co(name, "jit")
    for dtype in (jnp.float16, jnp.bfloat16):
        za, zb = jnp.asarray(ZA, dtype), jnp.asarray(ZB, dtype)
        out = finite(name, lambda za=za, zb=zb: jitted(za, zb))
        assert out.dtype == dtype
    g = _grad(name)(jnp.asarray(ZA, jnp.float16), jnp.asarray(ZB, jnp.float16))
    assert g[0].dtype == g[1].dtype == jnp.float16
    finite(name, lambda: g)
    ints = np.round(3 * ZA).astype(np.int32), np.round(3 * ZB).astype(np.int32)
    assert finite(name, lambda: fn(*ints)).dtype == jnp.result_type(float)
    out = finite(name, lambda: fn(ZA > 0, ZB > 0))
    assert out.dtype == jnp.result_type(float)


@pytest.mark.parametrize(
    ("name", "hyper", "domain", "label", "value", "eager", "traced"),
    HYPER_CASES,
    ids=[f"{c[0]}-{c[1]}-{c[3]}" for c in HYPER_CASES],
)
def test_contrastive_bad_hyperparameter_values(name, hyper, domain, label, value, eager, traced):
    fn = CONTRASTIVE[name]
    raises(name, lambda: fn(ZA, ZB, **{hyper: value}), match=f"`{hyper}`")
    all_nan(name, lambda: _co(name, "jit", hyper)(ZA, ZB, value))
    if name not in SHARDED:
        out = _co(name, "vmap", hyper)(jnp.stack([ZA, ZA]), jnp.stack([ZB, ZB]), jnp.full(2, value))
        all_nan(name, lambda: out)


SHAPE_HYPER = [
    (name, hyper, label, value)
    for name, hypers in HYPER.items()
    for hyper, _ in hypers
    for label, value in SHAPE_SCALAR_CASES
    if not (hyper == "max_scale" and label == "none")  # None: no clamp
]


@pytest.mark.parametrize(
    ("name", "hyper", "label", "value"),
    SHAPE_HYPER,
    ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in SHAPE_HYPER],
)
def test_contrastive_array_valued_hyperparameters_raise(name, hyper, label, value):
    fn = CONTRASTIVE[name]
    raises(name, lambda: fn(ZA, ZB, **{hyper: value}), match=f"`{hyper}`")
    if label in ("array", "matrix", "complex"):  # traced: still a ValueError (shapes are static)
        raises(name, lambda: _co(name, "jit", hyper)(ZA, ZB, jnp.asarray(value)), match=hyper)
    else:
        raises(name, lambda: jax.jit(lambda a, b: fn(a, b, **{hyper: value}))(ZA, ZB), match=hyper)


@pytest.mark.parametrize("name", list(CONTRASTIVE))
@pytest.mark.parametrize("magnitude", [2.0**100, 1e-30])
def test_contrastive_extreme_magnitudes(name, magnitude):
    """Huge rows (1e30, dot products 1e60): never NaN (a loss beyond float32 reads inf)."""
    za = (magnitude * np.sign(ZA)).astype(np.float32)
    zb = (magnitude * np.sign(ZB)).astype(np.float32)
    check = _no_nan if magnitude > 1 else finite
    for mode in _modes(name):
        check(name, lambda mode=mode: _call(name, mode, za, zb))
    grads = _grad(name)(za, zb)
    check(name, lambda: grads)
    if magnitude > 1:  # pairs identical and orthogonal to the rest: the true loss is finite
        z = np.float32(magnitude) * np.eye(B, K, dtype=np.float32)
        finite(name, lambda: CONTRASTIVE[name](z, z))


@pytest.mark.parametrize("name", list(CONTRASTIVE))
@pytest.mark.parametrize("point", ["identical", "zeros", "one row"])
def test_contrastive_degenerate_gradients_finite(name, point):
    za, zb = {
        "identical": (ZA, ZA),
        "zeros": (np.zeros_like(ZA), np.zeros_like(ZB)),
        "one row": (ZA[:1], ZB[:1]),
    }[point]
    finite(name, lambda: CONTRASTIVE[name](za, zb))
    grads = _grad(name)(za, zb)
    finite(name, lambda: grads)


POSITIVE_FORMS = ["vse_loss", "infonce_loss", "clip_loss", "siglip_loss"]
IDS = np.array([0, 0, 1, 2, 2, 3])


@pytest.mark.parametrize("name", list(CONTRASTIVE))
def test_contrastive_ids_and_positives(name):
    fn = CONTRASTIVE[name]
    if name == "infonce_mi_lower_bound":  # a bound on pairs, not a loss: no positives
        with pytest.raises(TypeError):
            fn(ZA, ZB, ids=IDS)
        return
    finite(name, lambda: fn(ZA, ZB, ids=IDS))
    raises(name, lambda: fn(ZA, ZB, ids=IDS.astype(np.float32)), match="`ids`")
    raises(name, lambda: fn(ZA, ZB, ids=IDS[:4]), match="`ids`")
    if name in POSITIVE_FORMS:
        pos = IDS[:, None] == IDS[None, :]
        same(name, lambda: fn(ZA, ZB, positives=pos), fn(ZA, ZB, ids=IDS))
        raises(name, lambda: fn(ZA, ZB, positives=pos[:4]), match="`positives`")
        raises(name, lambda: fn(ZA, ZB, positives=pos.astype(np.float32)), match="`positives`")
        raises(name, lambda: fn(ZA, ZB, positives=np.zeros((B, B), bool)), match="`positives`")
        raises(name, lambda: fn(ZA, ZB, positives=pos, ids=IDS), match="`positives`")
        jitted = jax.jit(lambda p: fn(ZA, ZB, positives=p))
        all_nan(name, lambda: jitted(np.zeros((B, B), bool)))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, np.ones(2, int), None])
def test_chunked_siglip_chunk_size_static_int(bad):
    raises(
        "chunked_siglip_loss",
        lambda: al.chunked_siglip_loss(ZA, ZB, chunk_size=bad),
        match="`chunk_size`",
    )


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_vse_hardest_static_bool(bad):
    raises("vse_loss", lambda: al.vse_loss(ZA, ZB, hardest=bad), match="`hardest`")


# --------------------------------------------------------------------------------------------
# attention.py
# --------------------------------------------------------------------------------------------

N, M, DQ, DK, DV, A = 3, 5, 4, 4, 2, 3
Q = RNG.normal(size=(N, DQ)).astype(np.float32)
KEYS = RNG.normal(size=(M, DK)).astype(np.float32)
VALS = RNG.normal(size=(M, DV)).astype(np.float32)
PARAMS = {
    "w": RNG.normal(size=(A, DQ)).astype(np.float32),
    "u": RNG.normal(size=(A, DK)).astype(np.float32),
    "v": RNG.normal(size=A).astype(np.float32),
}
KEY_MASK = np.array([True, False, True, True, False])
FULL_MASK = np.broadcast_to(KEY_MASK, (N, M)).copy()
FULL_MASK[1] = False  # a fully masked row


def _additive(q, k, v, mask=None):
    return al.additive_attention(q, k, v, mask=mask, **PARAMS)


def _dot(q, k, v, mask=None):
    return al.dot_product_attention(q, k, v, mask=mask)


SOFT = {"additive_attention": _additive, "dot_product_attention": _dot}


@functools.cache
def _soft(name, mode):
    fn = SOFT[name]
    if mode == "eager":
        return fn
    if mode == "jit":
        return jax.jit(fn)
    return jax.jit(jax.vmap(fn))


def _soft_call(name, mode, q, k, v, mask):
    if mode == "vmap":
        st = lambda x: jnp.stack([x, x])
        return jax.tree.map(lambda x: x[0], _soft(name, mode)(st(q), st(k), st(v), st(mask)))
    return _soft(name, mode)(q, k, v, mask)


def _soft_loss(name):
    def loss(q, k, v):
        out = SOFT[name](q, k, v, FULL_MASK)
        return jnp.sum(out.context**2) + jnp.sum(out.alpha * jnp.arange(M, dtype=jnp.float32))

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))


SOFT_GRADS = {name: _soft_loss(name) for name in SOFT}


@pytest.mark.parametrize("name", list(SOFT))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("label", "garbage"), garbage_values())
def test_soft_attention_garbage_in_masked_keys_and_values(name, mode, label, garbage):
    k, v = KEYS.copy(), VALS.copy()
    k[~KEY_MASK], v[~KEY_MASK] = garbage, garbage
    ref = _soft_call(name, mode, Q, KEYS, VALS, FULL_MASK)
    out = _soft_call(name, mode, Q, k, v, FULL_MASK)
    same(name, lambda: (out.context, out.alpha), (ref.context, ref.alpha), rtol=0, atol=0)
    assert np.all(np.asarray(out.energies)[~FULL_MASK] == -np.inf)
    if mode == "jit":
        grads = SOFT_GRADS[name](Q, k, v)
        finite(name, lambda: grads)
        same(name, lambda: grads, SOFT_GRADS[name](Q, KEYS, VALS), rtol=0, atol=0)


@pytest.mark.parametrize("name", list(SOFT))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", ["queries", "keys", "values"])
def test_soft_attention_nan_in_attended_data_propagates(name, mode, where):
    q, k, v = Q.copy(), KEYS.copy(), VALS.copy()
    {"queries": q, "keys": k, "values": v}[where][0, 0] = np.nan
    any_nan(name, lambda: _soft_call(name, mode, q, k, v, FULL_MASK).context)


@pytest.mark.parametrize("name", list(SOFT))
def test_soft_attention_fully_masked_row_is_zero(name):
    for mode in MODES:
        out = _soft_call(name, mode, Q, KEYS, VALS, FULL_MASK)
        assert np.all(np.asarray(out.context[1]) == 0) and np.all(np.asarray(out.alpha[1]) == 0)
        sweep._record(name, "fully masked row = 0")


SOFT_SHAPES = [
    ("rank 1 queries", Q[0], KEYS, VALS, None, "`queries`"),
    ("rank 3 keys", Q, KEYS[None], VALS, None, "`keys`"),
    ("empty queries", Q[:0], KEYS, VALS, None, "`queries` must be non-empty"),
    ("empty keys", Q, KEYS[:0], VALS[:0], None, "`keys` must be non-empty"),
    ("values rows", Q, KEYS, VALS[:4], None, "`values`"),
    ("none keys", Q, None, VALS, None, "`keys` must be an array"),
    ("complex queries", Q.astype(np.complex64), KEYS, VALS, None, "`queries` must be real"),
    ("mask shape", Q, KEYS, VALS, np.ones(4, bool), "`mask`"),
    ("mask dtype", Q, KEYS, VALS, np.ones(M), "`mask` must be boolean"),
]


@pytest.mark.parametrize("name", list(SOFT))
@pytest.mark.parametrize(
    ("label", "q", "k", "v", "mask", "match"), SOFT_SHAPES, ids=[s[0] for s in SOFT_SHAPES]
)
def test_soft_attention_static_shapes_raise(name, label, q, k, v, mask, match):
    raises(name, lambda: SOFT[name](q, k, v, mask), match=match)
    if k is not None:
        raises(name, lambda: jax.jit(SOFT[name])(q, k, v, mask), match=match)


@pytest.mark.parametrize(
    ("label", "kw", "match"),
    [
        ("w shape", {"w": PARAMS["w"][:, :2]}, "`w`"),
        ("u shape", {"u": PARAMS["w"][:2]}, "`u`"),
        ("v rank", {"v": PARAMS["w"]}, "`v`"),
        ("bias shape", {"bias": np.zeros(A + 1)}, "`bias`"),
        ("none w", {"w": None}, "`w` must be an array"),
    ],
)
def test_additive_parameter_shapes_raise(label, kw, match):
    params = {**PARAMS, **kw}
    raises(
        "additive_attention", lambda: al.additive_attention(Q, KEYS, VALS, **params), match=match
    )


@pytest.mark.parametrize("name", list(SOFT))
def test_soft_attention_dtypes_and_magnitudes(name):
    fn = SOFT[name]
    for dtype in (jnp.float16, jnp.bfloat16):
        out = finite(
            name, lambda dtype=dtype: fn(*(jnp.asarray(x, dtype) for x in (Q, KEYS, VALS)))
        )
        want = dtype if name == "dot_product_attention" else jnp.float32  # w, u, v: float32
        assert all(x.dtype == want for x in out)
    ints = [np.round(3 * x).astype(np.int32) for x in (Q, KEYS, VALS)]
    assert finite(name, lambda: fn(*ints)).context.dtype == jnp.result_type(float)
    for magnitude in (2.0**100, 1e-30):
        q, k = (magnitude * np.sign(x) for x in (Q, KEYS))
        finite(name, lambda q=q, k=k: fn(q.astype(np.float32), k.astype(np.float32), VALS))
        grads = jax.grad(lambda q, k: jnp.sum(fn(q, k, VALS).context), argnums=(0, 1))(
            q.astype(np.float32), k.astype(np.float32)
        )
        finite(name, lambda grads=grads: grads)
    # Degenerate: zero queries, identical keys.
    z = np.zeros_like(Q)
    same_keys = np.repeat(KEYS[:1], M, axis=0)
    grads = jax.grad(lambda q, k: jnp.sum(fn(q, k, VALS).context), argnums=(0, 1))(z, same_keys)
    finite(name, lambda: grads)


SCALE_CASES = [c for c in SHAPE_SCALAR_CASES if c[0] != "none"]  # None: the default 1/sqrt(d)
DOT_SCALE = jax.jit(lambda q, k, s: al.dot_product_attention(q, k, scale=s))
DOT_SCALE_VMAP = jax.jit(jax.vmap(lambda s: al.dot_product_attention(Q, KEYS, scale=s)))


@pytest.mark.parametrize(("label", "value", "eager", "traced"), POSITIVE_SCALAR_CASES)
def test_dot_product_bad_scale_values(label, value, eager, traced):
    name = "dot_product_attention"
    raises(name, lambda: al.dot_product_attention(Q, KEYS, scale=value), match="`scale`")
    all_nan(name, lambda: DOT_SCALE(Q, KEYS, value))
    all_nan(name, lambda: DOT_SCALE_VMAP(jnp.full(2, value)))


@pytest.mark.parametrize(("label", "value"), SCALE_CASES)
def test_dot_product_array_valued_scale_raises(label, value):
    name = "dot_product_attention"
    raises(name, lambda: al.dot_product_attention(Q, KEYS, scale=value), match="`scale`")
    if label != "string":
        raises(name, lambda: DOT_SCALE(Q, KEYS, jnp.asarray(value)), match="`scale`")


# masked_softmax ------------------------------------------------------------------------------

E = RNG.normal(size=(N, M)).astype(np.float32)
SOFTMAX = {
    "eager": al.masked_softmax,
    "jit": jax.jit(al.masked_softmax),
    "vmap": jax.jit(jax.vmap(al.masked_softmax)),
}


def _softmax(mode, e, mask):
    if mode == "vmap":
        return SOFTMAX[mode](jnp.stack([e, e]), mask=jnp.stack([mask, mask]))[0]
    return SOFTMAX[mode](e, mask=mask)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("label", "garbage"), garbage_values())
def test_masked_softmax_garbage_and_nan(mode, label, garbage):
    name = "masked_softmax"
    e = E.copy()
    e[~FULL_MASK] = garbage
    same(name, lambda: _softmax(mode, e, FULL_MASK), _softmax(mode, E, FULL_MASK), rtol=0, atol=0)
    grad = jax.grad(lambda x: jnp.sum(al.masked_softmax(x, mask=FULL_MASK) * E))(e)
    finite(name, lambda: grad)
    e = E.copy()
    e[0, 0] = np.nan  # unmasked
    any_nan(name, lambda: _softmax(mode, e, FULL_MASK))
    e = E.copy()
    e[0, 2] = np.inf  # unmasked +inf: the limit, one-hot
    out = finite(name, lambda: _softmax(mode, e, FULL_MASK))
    np.testing.assert_array_equal(np.asarray(out[0]), np.eye(M)[2])


@pytest.mark.parametrize(
    ("label", "e", "mask", "match"),
    [
        ("rank 1", E[0], None, "`energies`"),
        ("empty", E[:0], None, "`energies` must be non-empty"),
        ("none", None, None, "`energies` must be an array"),
        ("complex", E.astype(np.complex64), None, "`energies` must be real"),
        ("mask shape", E, np.ones((N, M - 1), bool), "`mask`"),
        ("mask dtype", E, np.ones(M, np.float32), "`mask`"),
    ],
)
def test_masked_softmax_static_raise(label, e, mask, match):
    raises("masked_softmax", lambda: al.masked_softmax(e, mask=mask), match=match)
    if e is not None:
        raises("masked_softmax", lambda: SOFTMAX["jit"](e, mask=mask), match=match)


def test_masked_softmax_dtypes():
    for dtype in (jnp.float16, jnp.bfloat16):
        out = finite("masked_softmax", lambda dtype=dtype: al.masked_softmax(jnp.asarray(E, dtype)))
        assert out.dtype == dtype
    big = finite("masked_softmax", lambda: al.masked_softmax(E * 1e30))
    np.testing.assert_allclose(np.asarray(big).sum(1), 1.0, rtol=1e-6)


# hard_attention ------------------------------------------------------------------------------

ALPHA = np.asarray(jax.nn.softmax(E, -1) * FULL_MASK, np.float32)
ALPHA = ALPHA / np.maximum(ALPHA.sum(1, keepdims=True), 1e-30)  # row 1 stays all zero
HARD = {
    "eager": al.hard_attention,
    "jit": jax.jit(al.hard_attention),
    "vmap": jax.jit(jax.vmap(al.hard_attention)),
}


def _hard(mode, alpha, values):
    if mode == "vmap":
        out = HARD[mode](jnp.stack([alpha, alpha]), jnp.stack([values, values]))
        return jax.tree.map(lambda x: x[0], out)
    return HARD[mode](alpha, values)


@pytest.mark.parametrize("mode", MODES)
def test_hard_attention_policy(mode):
    name = "hard_attention"
    out = finite(name, lambda: _hard(mode, ALPHA, VALS))
    assert int(out.index[1]) == -1 and np.all(np.asarray(out.context[1]) == 0)
    for _, garbage in garbage_values():  # values of never-selectable keys are never read
        v = VALS.copy()
        v[~KEY_MASK] = garbage
        same(name, lambda v=v: _hard(mode, ALPHA, v), out, rtol=0, atol=0)
    a = ALPHA.copy()
    a[0, 0] = np.nan  # NaN in real data: that row's context and log_prob
    bad = _hard(mode, a, VALS)
    any_nan(name, lambda: (bad.context[0], bad.log_prob[0]))
    if mode != "eager":  # traced negative weights: NaN floats and index -1
        neg = _hard(mode, -ALPHA, VALS)
        all_nan(name, lambda: (neg.context, neg.alpha, neg.log_prob))
        assert np.all(np.asarray(neg.index) == -1)
        sweep._record(name, "-1")
    else:
        raises(name, lambda: al.hard_attention(-ALPHA, VALS), match="`alpha`")


@pytest.mark.parametrize(
    ("label", "alpha", "values", "match"),
    [
        ("rank 1", ALPHA[0], VALS, "`alpha`"),
        ("empty", ALPHA[:0], VALS, "`alpha` must be non-empty"),
        ("rows", ALPHA, VALS[:3], "`values`"),
        ("none", ALPHA, None, "`values` must be an array"),
        ("complex", ALPHA.astype(np.complex64), VALS, "`alpha` must be real"),
    ],
)
def test_hard_attention_static_raise(label, alpha, values, match):
    raises("hard_attention", lambda: al.hard_attention(alpha, values), match=match)
    if values is not None:
        raises("hard_attention", lambda: HARD["jit"](alpha, values), match=match)


def test_hard_attention_dtypes_and_gradient():
    name = "hard_attention"
    for dtype in (jnp.float16, jnp.bfloat16):
        out = finite(
            name,
            lambda dtype=dtype: al.hard_attention(
                jnp.asarray(ALPHA, dtype), jnp.asarray(VALS, dtype)
            ),
        )
        assert out.context.dtype == out.log_prob.dtype == dtype
    grad = jax.grad(lambda a: jnp.sum(al.hard_attention(a, VALS).context))(ALPHA)
    finite(name, lambda: grad)
    raises(name, lambda: al.hard_attention(ALPHA, VALS, straight_through=None), match="straight")


# doubly_stochastic_penalty --------------------------------------------------------------------

T = 4
ALPHAS = np.asarray(jax.nn.softmax(RNG.normal(size=(T, M)), -1), np.float32)
STEPS = np.array([True, True, True, False])
PENALTY_T = jax.jit(lambda t: al.doubly_stochastic_penalty(ALPHAS, target=t))
PENALTY_T_VMAP = jax.jit(jax.vmap(lambda t: al.doubly_stochastic_penalty(ALPHAS, target=t)))
PENALTY = {
    "eager": al.doubly_stochastic_penalty,
    "jit": jax.jit(al.doubly_stochastic_penalty, static_argnames="reduction"),
    "vmap": jax.jit(
        jax.vmap(
            lambda a, s, r: al.doubly_stochastic_penalty(a, step_mask=s, region_mask=r),
        )
    ),
}


def _penalty(mode, alphas):
    if mode == "vmap":
        st = lambda x: jnp.stack([x, x])
        return PENALTY[mode](st(alphas), st(STEPS), st(KEY_MASK))[0]
    return PENALTY[mode](alphas, step_mask=STEPS, region_mask=KEY_MASK)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("label", "garbage"), garbage_values())
def test_penalty_padding_never_read(mode, label, garbage):
    name = "doubly_stochastic_penalty"
    a = ALPHAS.copy()
    a[~STEPS] = garbage
    a[:, ~KEY_MASK] = garbage
    same(name, lambda: _penalty(mode, a), _penalty(mode, ALPHAS), rtol=0, atol=0)
    b = ALPHAS.copy()
    b[0, 0] = np.nan
    any_nan(name, lambda: _penalty(mode, b))


def test_penalty_padding_gradient():
    a = ALPHAS.copy()
    a[~STEPS] = np.inf
    a[:, ~KEY_MASK] = np.nan
    grad = jax.grad(
        lambda x: al.doubly_stochastic_penalty(x, step_mask=STEPS, region_mask=KEY_MASK)
    )(a)
    finite("doubly_stochastic_penalty", lambda: grad)


@pytest.mark.parametrize(("label", "value", "eager", "traced"), POSITIVE_SCALAR_CASES)
def test_penalty_bad_target(label, value, eager, traced):
    name = "doubly_stochastic_penalty"
    if label == "zero":  # a target of 0 is valid (non-negative domain)
        finite(name, lambda: PENALTY_T(0.0))
        return
    raises(name, lambda: al.doubly_stochastic_penalty(ALPHAS, target=value), match="`target`")
    all_nan(name, lambda: PENALTY_T(value))
    all_nan(name, lambda: PENALTY_T_VMAP(jnp.full(2, value)))


@pytest.mark.parametrize(("label", "value"), SHAPE_SCALAR_CASES)
def test_penalty_array_valued_target_raises(label, value):
    name = "doubly_stochastic_penalty"
    raises(name, lambda: al.doubly_stochastic_penalty(ALPHAS, target=value), match="`target`")
    if label in ("array", "matrix", "complex"):
        raises(name, lambda: PENALTY_T(jnp.asarray(value)), match="`target`")


@pytest.mark.parametrize(
    ("label", "kw", "match"),
    [
        ("rank 1", {"alphas": ALPHAS[0]}, "`alphas`"),
        ("empty", {"alphas": ALPHAS[:0]}, "`alphas` must be non-empty"),
        ("none", {"alphas": None}, "`alphas` must be an array"),
        ("complex", {"alphas": ALPHAS.astype(np.complex64)}, "`alphas` must be real"),
        ("reduction", {"reduction": "max"}, "`reduction`"),
        ("step mask shape", {"step_mask": STEPS[:2]}, "`step_mask`"),
        ("region mask dtype", {"region_mask": KEY_MASK.astype(np.float32)}, "`region_mask`"),
        ("no region", {"region_mask": np.zeros(M, bool), "reduction": "mean"}, "every region"),
    ],
)
def test_penalty_static_raise(label, kw, match):
    args = {"alphas": ALPHAS, **kw}
    raises("doubly_stochastic_penalty", lambda: al.doubly_stochastic_penalty(**args), match=match)


def test_penalty_dtypes():
    name = "doubly_stochastic_penalty"
    for dtype in (jnp.float16, jnp.bfloat16):
        out = finite(name, lambda dtype=dtype: al.doubly_stochastic_penalty(ALPHAS.astype(dtype)))
        assert out.dtype == dtype
    traced_none = jax.jit(
        lambda r: al.doubly_stochastic_penalty(ALPHAS, region_mask=r, reduction="mean")
    )
    all_nan(name, lambda: traced_none(np.zeros(M, bool)))
