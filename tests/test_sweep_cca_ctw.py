"""Bad-input sweep over every public function of ``cca.py`` and ``ctw.py`` (issue 9).

Functions: ``cca``, ``cca_transform``, ``dcca_loss``, ``dcca_squared_loss``, ``ctw``,
``soft_ctw``. Each case runs eagerly, under ``jit`` and under ``vmap`` and asserts the policy of
``docs/conventions.md`` with the helpers of ``tests/sweep.py``: ``ValueError`` naming the
argument for static problems (shapes, dtypes, array-valued hyperparameters, static ints), NaN
(and ``n_iters = -1``, ``converged = False``) for traced bad values, NaN propagated from real
data, finite values and gradients at valid degenerate points (identical views or sequences, a
constant feature) and at extreme magnitudes (1e30, 1e-30), outputs in the input dtype for
float16/bfloat16. None of these functions has padding (no ``lengths``, weights or mask), so
there is no garbage-in-padding case. Sizes are tiny and jitted callables are cached (traced
hyperparameters are arguments), so each shape compiles once.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import alignment as al
from tests.sweep import (
    POSITIVE_SCALAR_CASES,
    SHAPE_SCALAR_CASES,
    all_nan,
    any_nan,
    finite,
    raises,
)

pytestmark = pytest.mark.filterwarnings("ignore::alignment._src.checks.ConvergenceWarning")

RNG = np.random.default_rng(9)
MODES = ["eager", "jit", "vmap"]

# Views for the CCA family ([n, dx], [n, dy]) and sequences for CTW ([t, dx], [s, dy]).
ZX = RNG.normal(size=(8, 3)).astype(np.float32)
ZY = (ZX[:, :2] + 0.3 * RNG.normal(size=(8, 2))).astype(np.float32)
SX = np.stack([np.sin(np.linspace(0, 3, 6)), np.cos(np.linspace(0, 2, 6)), np.ones(6)], 1)
SX = (SX + 0.01 * RNG.normal(size=SX.shape)).astype(np.float32)
SY = np.stack([np.cos(np.linspace(0, 2, 5) ** 1.2), np.sin(np.linspace(0, 3, 5))], 1)
SY = SY.astype(np.float32)
CTW_STATIC = dict(max_iters=3)  # k = None: min(dx, dy)

_FIT = jax.jit(lambda x, y: al.cca(x, y))
FITTED = al.cca(ZX, ZY)

# name -> (call(x, y, **hyper), default data, the hyperparameters and their domains)
FUNCTIONS = {
    "cca": (lambda x, y, **kw: al.cca(x, y, **kw), (ZX, ZY), {"reg": "nonnegative"}),
    "cca_transform": (lambda x, y, **kw: al.cca_transform(FITTED, x, y), (ZX, ZY), {}),
    "dcca_loss": (lambda x, y, **kw: al.dcca_loss(x, y, **kw), (ZX, ZY), {"reg": "positive"}),
    "dcca_squared_loss": (
        lambda x, y, **kw: al.dcca_squared_loss(x, y, **kw),
        (ZX, ZY),
        {"reg": "positive"},
    ),
    "ctw": (
        lambda x, y, **kw: al.ctw(x, y, **CTW_STATIC, **kw),
        (SX, SY),
        {"reg": "nonnegative", "relative_reg": "nonnegative"},
    ),
    "soft_ctw": (
        lambda x, y, **kw: al.soft_ctw(x, y, **CTW_STATIC, **kw),
        (SX, SY),
        {
            "gamma": "positive",
            "tol": "nonnegative",
            "reg": "nonnegative",
            "relative_reg": "nonnegative",
        },
    ),
}
NAMES = sorted(FUNCTIONS)
SLOW = ("ctw", "soft_ctw")  # each new shape or dtype under jit/vmap compiles a loop over DTW
# (function, hyperparameter) pairs, and the bad values of each domain (zero is valid for >= 0).
HYPER = [(name, h) for name in NAMES for h in FUNCTIONS[name][2]]


def _bad_cases(domain):
    return [c for c in POSITIVE_SCALAR_CASES if not (domain == "nonnegative" and c[1] == 0.0)]


@functools.cache
def _jitted(name):
    fn = FUNCTIONS[name][0]
    return jax.jit(lambda x, y: fn(x, y))


@functools.cache
def _vmapped(name):
    fn = FUNCTIONS[name][0]
    return jax.jit(jax.vmap(lambda x, y: fn(x, y)))


def _call(name, mode, x, y):
    fn = FUNCTIONS[name][0]
    if mode == "eager":
        return lambda: fn(x, y)
    if mode == "jit":
        return lambda: _jitted(name)(x, y)
    return lambda: _vmapped(name)(np.stack([x, x]), np.stack([y, y]))


def _data(name):
    return FUNCTIONS[name][1]


# --------------------------------------------------------------------------------------------
# Data: NaN, magnitudes, dtypes.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_nan_in_data_propagates(name, mode):
    x, y = (a.copy() for a in _data(name))
    x[1, 0] = np.nan
    any_nan(name, _call(name, mode, x, y))
    if name in ("ctw", "soft_ctw"):  # the value itself, not just some field
        assert np.all(np.isnan(np.asarray(_call(name, mode, x, y)().value)))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scale", [1e30, 1e-30, 1e-19])
@pytest.mark.parametrize("name", NAMES)
def test_extreme_magnitudes_are_finite_and_scale_free(name, mode, scale):
    x, y = _data(name)
    out = finite(name, _call(name, mode, x * np.float32(scale), y * np.float32(scale)))
    ref = _call(name, mode, x, y)()
    if name in ("cca", "ctw"):  # scale-free outputs (with reg = 0, relative_reg scale-free)
        a, b = (out.correlations, ref.correlations) if name == "cca" else (out.value, ref.value)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", NAMES)
def test_low_precision_dtype_is_kept(name, mode, dtype):
    if name in SLOW and mode != "eager" and dtype == "float16":
        pytest.skip("CTW compiles a while loop per dtype: traced float16 is covered by bfloat16")
    x, y = (jnp.asarray(a, dtype) for a in _data(name))
    if name == "cca_transform":  # a fit in the same dtype (else float32 weights promote)
        fit = al.cca(x, y)
        assert fit.wx.dtype == jnp.dtype(dtype)
        out = finite(
            name,
            {
                "eager": lambda: al.cca_transform(fit, x, y),
                "jit": lambda: jax.jit(al.cca_transform)(fit, x, y),
                "vmap": lambda: jax.vmap(al.cca_transform, (None, 0, 0))(fit, x[None], y[None]),
            }[mode],
        )
    else:
        out = finite(name, _call(name, mode, x, y))
    for leaf in jax.tree.leaves(out):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert leaf.dtype == jnp.dtype(dtype), (name, leaf.dtype)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["int", "bool"])
@pytest.mark.parametrize("name", NAMES)
def test_int_and_bool_data_become_float(name, mode, kind):
    if name in SLOW and mode != "eager":
        pytest.skip("CTW compiles a while loop per dtype: int/bool data are converted eagerly")
    x, y = _data(name)
    if kind == "int":
        x, y = (np.round(4 * a).astype(np.int32) for a in (x, y))
    else:
        x, y = (a > 0 for a in (x, y))
    out = jax.block_until_ready(_call(name, mode, x, y)())
    leaves = [leaf for leaf in jax.tree.leaves(out) if jnp.issubdtype(leaf.dtype, jnp.floating)]
    assert leaves and all(leaf.dtype == jnp.float32 for leaf in leaves)
    finite(name, lambda: out)


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("name", NAMES)
def test_complex_none_and_non_numeric_raise(name, mode):
    x, y = _data(name)
    fn = FUNCTIONS[name][0]
    wrap = (lambda f: f) if mode == "eager" else jax.jit
    a, b = _arg_names(name)
    raises(name, lambda: wrap(fn)(x.astype(np.complex64), y), match=f"`{a}` must be real")
    raises(name, lambda: wrap(fn)(x, y.astype(np.complex64)), match=f"`{b}` must be real")
    raises(name, lambda: fn(None, y), match=f"`{a}` must be")
    raises(name, lambda: fn(x, None), match=f"`{b}` must be")
    raises(name, lambda: fn("abc", y), match=f"`{a}`")


# --------------------------------------------------------------------------------------------
# Shapes.
# --------------------------------------------------------------------------------------------


def _arg_names(name):
    return ("zx", "zy") if name.startswith("dcca") else ("x", "y")


def _shape_cases(name):
    x, y = _data(name)
    a, b = _arg_names(name)
    cases = [
        ("rank 1", x[:, 0], y, f"`{a}`"),
        ("rank 3", x[None], y, f"`{a}`"),
        ("rank 1 y", x, y[:, 0], f"`{b}`"),
        ("empty features", x[:, :0], y, f"`{a}`"),
    ]
    if name == "cca_transform":
        cases = [
            ("rank 3", x[None], y, "`x`"),
            ("wrong features", x[:, :2], y, "`x`"),
            ("wrong features y", x, y[:, :1], "`y`"),
        ]
    elif name.startswith(("cca", "dcca")):
        cases += [
            ("mismatched n", x, y[:-1], "same number of samples"),
            ("one sample", x[:1], y[:1], "at least 2"),
        ]
    else:
        cases += [("empty frames", x[:0], y, "`x` must be non-empty")]
    return cases


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_bad_shapes_raise(name, mode):
    fn = FUNCTIONS[name][0]
    for _, x, y, match in _shape_cases(name):
        if mode == "eager":
            raises(name, lambda x=x, y=y: fn(x, y), match=match)
        elif mode == "jit":
            raises(name, lambda x=x, y=y: jax.jit(fn)(x, y), match=match)
        else:
            raises(
                name, lambda x=x, y=y: jax.vmap(fn)(np.stack([x, x]), np.stack([y, y])), match=match
            )


# --------------------------------------------------------------------------------------------
# Hyperparameters: traced floats and static ints.
# --------------------------------------------------------------------------------------------


GOOD = {"reg": 1e-3, "relative_reg": 1e-3, "gamma": 1.0, "tol": 1e-6}


@functools.cache
def _hyper_compiled(name, mode):
    """One compiled program per function and mode, every hyperparameter a traced argument."""
    fn, (x, y), _ = FUNCTIONS[name]
    call = lambda hp: fn(x, y, **hp)
    return jax.jit(call) if mode == "jit" else jax.jit(jax.vmap(call))


def _hyper_call(name, mode, hyper, value):
    hp = {h: GOOD[h] for h in FUNCTIONS[name][2]}
    hp[hyper] = value
    if mode == "vmap":
        hp = {h: jnp.asarray([v, v], jnp.float32) for h, v in hp.items()}
    else:
        hp = {h: jnp.asarray(v, jnp.float32) for h, v in hp.items()}
    return _hyper_compiled(name, mode)(hp)


def _hyper_jitted(name, hyper):
    return lambda v: _hyper_call(name, "jit", hyper, v)


def _hyper_vmapped(name, hyper):
    fn, (x, y), _ = FUNCTIONS[name]
    return jax.jit(jax.vmap(lambda v: fn(x, y, **{hyper: v})))


def _check_flags(out):
    """Integer and bool fields under the NaN policy: n_iters = -1, converged = False."""
    if hasattr(out, "n_iters"):
        assert np.all(np.asarray(out.n_iters) == -1) and not np.any(np.asarray(out.converged))


@pytest.mark.parametrize(("name", "hyper"), HYPER)
def test_bad_hyperparameter_values(name, hyper):
    fn, (x, y), domains = FUNCTIONS[name]
    for _, value, eager, traced in _bad_cases(domains[hyper]):
        assert eager == "raises" and traced == "nan"
        raises(name, lambda v=value: fn(x, y, **{hyper: v}), match=f"`{hyper}`")
        all_nan(name, lambda v=value: _hyper_jitted(name, hyper)(v))
        _check_flags(_hyper_jitted(name, hyper)(value))
        all_nan(name, lambda v=value: _hyper_call(name, "vmap", hyper, v))
        _check_flags(_hyper_call(name, "vmap", hyper, value))


@pytest.mark.parametrize(("name", "hyper"), HYPER)
def test_bad_hyperparameter_shapes_and_types(name, hyper):
    fn, (x, y), _ = FUNCTIONS[name]
    for label, value in SHAPE_SCALAR_CASES:
        raises(name, lambda v=value: fn(x, y, **{hyper: v}), match=f"`{hyper}`")
        if label in ("array", "matrix"):
            raises(name, lambda v=value: _hyper_jitted(name, hyper)(jnp.asarray(v)), match=hyper)
            batch = jnp.asarray([value, value])
            raises(name, lambda b=batch: _hyper_vmapped(name, hyper)(b), match=hyper)
        else:  # not a JAX type: closed over by the caller's jit
            raises(name, lambda v=value: jax.jit(lambda a: fn(a, y, **{hyper: v}))(x), match=hyper)


STATIC_INTS = [(name, "k") for name in NAMES if name != "cca_transform"] + [
    ("ctw", "max_iters"),
    ("soft_ctw", "max_iters"),
    ("ctw", "window"),
    ("soft_ctw", "window"),
]


@pytest.mark.parametrize(("name", "static"), STATIC_INTS)
def test_bad_static_ints_raise(name, static):
    fn, (x, y), _ = FUNCTIONS[name]
    call = fn
    if name in ("ctw", "soft_ctw"):  # the static ints of CTW_STATIC are overridden here
        base = al.ctw if name == "ctw" else al.soft_ctw
        call = lambda a, b, **kw: base(a, b, **{**CTW_STATIC, **kw})
    bad = [1.5, True, np.array(1), "2", -1]
    if static != "window":
        bad += [0]
    if static == "k":
        bad += [99]
    for value in bad:
        raises(name, lambda v=value: call(x, y, **{static: v}), match=f"`{static}`")
        raises(name, lambda v=value: jax.jit(lambda a: call(a, y, **{static: v}))(x), match=static)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["ctw", "soft_ctw"])
def test_init(name, mode):
    fn, (x, y), _ = FUNCTIONS[name]
    good = np.ones((len(x), len(y)), np.float32)
    raises(name, lambda: fn(x, y, init=good[:-1]), match="`init` must be an alignment")
    raises(name, lambda: fn(x, y, init=good.astype(np.complex64)), match="`init` must be real")
    if mode == "eager":
        raises(name, lambda: fn(x, y, init=-good), match="`init` must be a non-negative")
        raises(name, lambda: fn(x, y, init=good * np.nan), match="`init` must be finite")
        finite(name, lambda: fn(x, y, init=good))
    elif mode == "jit":
        jitted = jax.jit(lambda a: fn(x, y, init=a))
        all_nan(name, lambda: jitted(-good))
        _check_flags(jitted(-good))
        all_nan(name, lambda: jitted(good * np.nan))
        finite(name, lambda: jitted(good))
    else:
        vmapped = jax.jit(jax.vmap(lambda a: fn(x, y, init=a)))
        all_nan(name, lambda: vmapped(np.stack([-good, -good])))
        finite(name, lambda: vmapped(np.stack([good, good])))


# --------------------------------------------------------------------------------------------
# Degenerate but valid points: finite values and gradients.
# --------------------------------------------------------------------------------------------

DIFFERENTIABLE = {
    "dcca_loss": lambda x, y: al.dcca_loss(x, y),
    "dcca_squared_loss": lambda x, y: al.dcca_squared_loss(x, y),
    "dcca_loss_k1": lambda x, y: al.dcca_loss(x, y, k=1),
    "ctw": lambda x, y: al.ctw(x, y, **CTW_STATIC).value,
    "soft_ctw": lambda x, y: al.soft_ctw(x, y, **CTW_STATIC).value,
}


def _degenerate(name):
    if name.startswith("dcca"):
        x = ZX[:, :2]
        return {
            "identical views": (x, x),
            "rotated views": (x, x @ np.array([[0.6, -0.8], [0.8, 0.6]], np.float32)),
            "constant feature": (np.concatenate([x, np.ones((8, 1), np.float32)], 1), ZY),
            "n < d": (ZX[:2], ZY[:2]),
            "zero view": (np.zeros_like(ZX), ZY),
        }
    return {  # two shapes only: each CTW shape compiles a while loop over DTW
        "identical sequences": (SY, SY),
        "constant sequence": (np.ones_like(SX), SY),
        "constant feature": (SX, np.concatenate([SY[:, :1], np.ones_like(SY[:, :1])], 1)),
    }


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(DIFFERENTIABLE))
def test_gradients_finite_at_degenerate_points(name, mode):
    label = name.removesuffix("_k1")
    for x, y in _degenerate(name).values():
        if mode == "vmap":
            x, y = np.stack([x, x]), np.stack([y, y])
        finite(label, lambda x=x, y=y: _value_and_grad(name, mode)(x, y))


@functools.cache
def _value_and_grad(name, mode):
    vg = jax.value_and_grad(DIFFERENTIABLE[name], argnums=(0, 1))
    return {"eager": vg, "jit": jax.jit(vg), "vmap": jax.jit(jax.vmap(vg))}[mode]


@pytest.mark.parametrize("mode", MODES)
def test_cca_degenerate_fits_are_finite(mode):
    x = ZX[:, :2]
    for a, b in [(x, x), (np.ones_like(ZX), ZY), (ZX[:2], ZY[:2]), (np.zeros_like(ZX), ZY)]:
        if mode == "eager":
            finite("cca", lambda a=a, b=b: al.cca(a, b))
        elif mode == "jit":
            finite("cca", lambda a=a, b=b: _FIT(a, b))
        else:
            finite("cca", lambda a=a, b=b: jax.vmap(_FIT)(np.stack([a, a]), np.stack([b, b])))
