"""Bad-input sweep over every public function of ``sinkhorn.py`` (issue 9).

``sinkhorn``, ``sinkhorn_points``, ``sinkhorn_divergence`` and ``barycentric_projection`` are
called with bad or degenerate input eagerly, under ``jit`` and under ``vmap``, and checked
against the policy of ``docs/conventions.md`` with the helpers of ``tests/sweep.py``. Sizes are
tiny and the jitted callables are cached (traced hyperparameters are arguments), so each shape
and option set compiles once.
"""

from __future__ import annotations

import functools
import warnings

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
    garbage_values,
    raises,
    same,
)

pytestmark = pytest.mark.filterwarnings("ignore::alignment.ConvergenceWarning")

RNG = np.random.default_rng(9)
X = RNG.normal(size=(3, 2)).astype(np.float32)
Y = RNG.normal(size=(4, 2)).astype(np.float32)
COST = ((X[:, None] - Y[None]) ** 2).sum(-1).astype(np.float32)
XB = np.stack([X, X + 0.5])
YB = np.stack([Y, Y - 0.5])
COSTB = np.stack([COST, COST + 1.0])
MODES = ["eager", "jit", "vmap"]
FNS = ["sinkhorn", "sinkhorn_points", "sinkhorn_divergence"]
KW = {"max_iters": 200}  # enough for these problems; small so that bad cases stop fast


def _call(name, data, **kw):
    """One solver on ``data`` (a cost for ``sinkhorn``, a pair of point sets otherwise)."""
    kw = KW | kw
    if name == "sinkhorn":
        return al.sinkhorn(data[0], *data[1:], **kw)
    if name == "sinkhorn_points":
        return al.sinkhorn_points(*data, chunk_size=2, **kw)
    return al.sinkhorn_divergence(*data, **kw)


def _data(name, batched=False):
    if name == "sinkhorn":
        return (COSTB,) if batched else (COST,)
    return (XB, YB) if batched else (X, Y)


GOOD = {"a": None, "b": None, "epsilon": 0.5, "tau_a": 1.0, "tau_b": 1.0, "tol": 1e-3}
TRACED = ("a", "b", "epsilon", "tau_a", "tau_b", "tol")


@functools.cache
def _traced_fn(name, mode, n_data, scaling=False):
    """``(data..., a, b, epsilon, tau_a, tau_b, tol) -> output``, everything traced: one
    compile per function, mode and shape serves every hyperparameter and weight case."""

    def fn(*args):
        data, (a, b, eps, tau_a, tau_b, tol) = args[:n_data], args[n_data:]
        kw = {"epsilon": eps, "tol": tol}
        if name != "sinkhorn_divergence":
            kw |= {"tau_a": tau_a, "tau_b": tau_b}
        if scaling:
            kw |= {"epsilon_init": 2.0, "epsilon_decay": tau_a}
        return _call(name, (*data, a, b), **kw)

    if mode == "jit":
        return jax.jit(fn)
    return jax.jit(jax.vmap(fn, in_axes=(*([0] * n_data), *([None] * 6))))


def _run_traced(name, mode, data=None, **values):
    """Calls :func:`_traced_fn` with ``values`` replacing the good defaults."""
    batched = mode == "vmap"
    data = _data(name, batched) if data is None else data
    vals = GOOD | values
    n_w = (3, 4) if name == "sinkhorn" else (data[0].shape[-2], data[1].shape[-2])
    if vals["a"] is None:
        vals["a"] = np.full(n_w[0], 1 / n_w[0], np.float32)
    if vals["b"] is None:
        vals["b"] = np.full(n_w[1], 1 / n_w[1], np.float32)
    args = [vals[k] if k in ("a", "b") else np.float32(vals[k]) for k in TRACED]
    scaling = "epsilon_decay" in values
    if scaling:
        args[3] = np.float32(values["epsilon_decay"])  # the decay rides on tau_a's slot
    return _traced_fn(name, mode, len(data), scaling)(*data, *args)


HYPERS = [
    (name, hyper)
    for name in FNS
    for hyper in ("epsilon", "tau_a", "tau_b", "tol")
    if not (name == "sinkhorn_divergence" and hyper.startswith("tau"))
] + [("sinkhorn", "epsilon_decay")]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("label", "value", "eager", "traced"), POSITIVE_SCALAR_CASES)
@pytest.mark.parametrize(("name", "hyper"), HYPERS)
def test_bad_scalar_hyperparameters(name, hyper, label, value, eager, traced, mode):
    if hyper == "epsilon_decay" and label == "zero":
        value = 1.0  # the open interval (0, 1): 1 is as bad as 0
    if mode == "eager":
        kw = {"epsilon": 0.5, hyper: value}
        if hyper == "epsilon_decay":
            kw["epsilon_init"] = 2.0
        raises(name, lambda: _call(name, _data(name), **kw), match=f"`{hyper}`")
        return
    all_nan(name, lambda: _run_traced(name, mode, **{hyper: value}))


@pytest.mark.parametrize(("label", "value"), SHAPE_SCALAR_CASES)
@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize(("name", "hyper"), HYPERS)
def test_malformed_scalar_hyperparameters_raise(name, hyper, label, value, mode):
    if label == "none" and hyper == "tol":
        value = "1e-3"  # tol=None is valid (fixed iterations)
    kw = {"epsilon": 0.5, "epsilon_init": 2.0} if hyper == "epsilon_decay" else {"epsilon": 0.5}
    call = lambda v: _call(name, _data(name), **(kw | {hyper: v}))
    if mode == "eager" or label in ("none", "string"):
        raises(name, lambda: call(value), match=f"`{hyper}`")
    else:  # array-valued (or complex) and traced: shapes and dtypes are static
        raises(name, lambda: jax.jit(call)(np.asarray(value)), match=f"`{hyper}`")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_iters", 0), ("max_iters", 1.5), ("max_iters", True), ("max_iters", np.ones(2)),
        ("inner_iters", 0), ("cg_max_iters", -1), ("relative_epsilon", "median"),
        ("relative_epsilon", 1),
    ],
)  # fmt: skip
@pytest.mark.parametrize("name", FNS)
def test_bad_static_options_raise(name, option, value):
    raises(name, lambda: _call(name, _data(name), epsilon=0.5, **{option: value}), match=option)


def test_bad_dense_only_options_raise():
    for option, value in (("implicit_solver", "lu"), ("implicit_diff", "yes")):
        raises(
            "sinkhorn",
            lambda o=option, v=value: al.sinkhorn(COST, epsilon=0.5, **{o: v}),
            match=option,
        )
    for chunk in (0, 1.5, None):
        raises(
            "sinkhorn_points",
            lambda c=chunk: al.sinkhorn_points(X, Y, epsilon=0.5, chunk_size=c),
            match="chunk_size",
        )
    raises("sinkhorn_divergence", lambda: al.sinkhorn_divergence(X, Y, epsilon=0.5, tau_a=0.5))


SHAPE_CASES = {
    "sinkhorn": [
        ("rank1", (np.ones(3, np.float32),), "cost"),
        ("rank3", (np.ones((2, 3, 4), np.float32),), "cost"),
        ("empty", (np.ones((0, 4), np.float32),), "cost"),
        ("none", (None,), "cost"),
        ("complex", (COST.astype(np.complex64),), "cost"),
        ("string", ("cost",), "cost"),
        ("a shape", (COST, np.ones(4, np.float32) / 4), "`a`"),
        ("b shape", (COST, None, np.ones(3, np.float32) / 3), "`b`"),
    ],
    "points": [
        ("rank1", (np.ones(3, np.float32), Y), "`x`"),
        ("d mismatch", (X, np.ones((4, 3), np.float32)), "`y`"),
        ("empty", (np.ones((0, 2), np.float32), Y), "`x`"),
        ("none", (None, Y), "`x`"),
        ("complex", (X.astype(np.complex64), Y), "`x`"),
        ("a shape", (X, Y, np.ones(4, np.float32) / 4), "`a`"),
        ("b shape", (X, Y, None, np.ones(3, np.float32) / 3), "`b`"),
    ],
}


def _shape_cases():
    for name in FNS:
        for label, data, match in SHAPE_CASES["sinkhorn" if name == "sinkhorn" else "points"]:
            yield pytest.param(name, data, match, id=f"{name}-{label}")


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize(("name", "data", "match"), list(_shape_cases()))
def test_bad_shapes_raise(name, data, match, mode):
    if mode == "eager" or any(d is None or isinstance(d, str) for d in data):
        raises(name, lambda: _call(name, data, epsilon=0.5), match=match)
    else:
        arrays = [jnp.asarray(d) if d is not None else None for d in data]
        raises(name, lambda: jax.jit(lambda *t: _call(name, t, epsilon=0.5))(*arrays), match=match)


WEIGHT_CASES = [
    ("negative", lambda w: w * np.array([1, -1, 1], np.float32)),
    ("nan", lambda w: w * np.array([1, np.nan, 1], np.float32)),
    ("inf", lambda w: w * np.array([1, np.inf, 1], np.float32)),
    ("all zero", lambda w: 0 * w),
    ("unequal mass", lambda w: 3.0 * w),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("label", "make"), WEIGHT_CASES, ids=[c[0] for c in WEIGHT_CASES])
@pytest.mark.parametrize("name", FNS)
def test_bad_weights(name, label, make, mode):
    a = make(np.full(3, 1 / 3, np.float32))
    if mode == "eager":
        raises(name, lambda: _call(name, (*_data(name), a), epsilon=0.5))
        return
    all_nan(name, lambda: _run_traced(name, mode, a=a))


def _plain(name, mode, data):
    """A good call on ``data`` (with optional weights after the points / cost)."""
    n_data = 1 if name == "sinkhorn" else 2
    if mode == "eager":
        return _call(name, data, epsilon=0.5)
    weights = dict(zip(("a", "b"), data[n_data:], strict=False))
    return _run_traced(name, mode, data=data[:n_data], **weights)


def _poison(name, data, value, batched):
    """Puts ``value`` into one real entry of the data."""
    data = [np.array(d) for d in data]
    data[0][(..., 1, 0)] = value
    return tuple(data)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", FNS)
def test_nan_in_real_data_propagates(name, mode):
    data = _poison(name, _data(name, mode == "vmap"), np.nan, mode == "vmap")
    any_nan(name, lambda: _plain(name, mode, data))
    if mode == "jit":  # and to the gradient
        grad = jax.grad(lambda d: jnp.sum(_loss(name, (d, *data[1:]))))(data[0])
        assert np.isnan(np.asarray(grad)).any()


def _loss(name, data):
    out = _call(name, data, epsilon=0.5)
    if name == "sinkhorn_divergence":
        return out
    return out.regularized_cost + out.transport_cost


@pytest.mark.parametrize("mode", MODES)
def test_infinite_cost_is_a_forbidden_pair(mode):
    cost = np.array(COSTB if mode == "vmap" else COST)
    cost[..., 1, 0] = np.inf
    out = finite("sinkhorn", lambda: _plain("sinkhorn", mode, (cost,)))
    assert np.all(np.asarray(out.plan)[..., 1, 0] == 0)


@pytest.mark.parametrize("dtype", ["int32", "bool", "float16", "bfloat16", "float64"])
@pytest.mark.parametrize("name", FNS)
def test_dtypes(name, dtype):
    data = tuple(np.asarray(d).astype(jnp.dtype(dtype)) for d in _data(name))
    if dtype == "bool":
        data = tuple(np.asarray(d > 0) for d in _data(name))
    out = finite(name, lambda: _call(name, data, epsilon=0.5))
    leaf = out if name == "sinkhorn_divergence" else out.regularized_cost
    want = jnp.dtype(dtype) if dtype in ("float16", "bfloat16") else jnp.result_type(float)
    assert leaf.dtype == want


@pytest.mark.parametrize("scale", [1e-6, 1e3, 1e6])
@pytest.mark.parametrize("name", FNS)
def test_extreme_magnitudes_stay_finite(name, scale):
    data = tuple(np.asarray(d) * np.float32(np.sqrt(scale)) for d in _data(name))
    if name == "sinkhorn":
        data = (COST * np.float32(scale),)
    # relative epsilon: the same blur whatever the units
    finite(name, lambda: _call(name, data, epsilon=0.5, relative_epsilon=True))
    # absolute epsilon: tiny or huge relative to the cost, still finite (log domain)
    finite(name, lambda: _call(name, data, epsilon=0.5))


def _padded(name, garbage):
    pa = np.r_[np.full(3, 1 / 3), 0.0, 0.0].astype(np.float32)
    pb = np.r_[np.full(4, 1 / 4), 0.0].astype(np.float32)
    if name == "sinkhorn":
        cost = np.full((5, 5), garbage, np.float32)
        cost[:3, :4] = COST
        return (cost, pa, pb)
    x = np.full((5, 2), garbage, np.float32)
    y = np.full((5, 2), garbage, np.float32)
    x[:3], y[:4] = X, Y
    return (x, y, pa, pb)


@functools.cache
def _pad_grad(name):
    return jax.jit(jax.grad(lambda d, rest: _loss(name, (d, *rest))))


def _real_part(name, out):
    if name == "sinkhorn_divergence":
        return out
    keep = [out.f[:3], out.g[:4], out.transport_cost, out.regularized_cost, out.converged]
    return keep + ([out.plan] if name == "sinkhorn" else [])


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize(("label", "garbage"), garbage_values())
@pytest.mark.parametrize("name", FNS)
def test_garbage_in_padding_changes_nothing(name, label, garbage, mode):
    ref = _real_part(name, _plain(name, mode, _padded(name, 1.0)))
    same(name, lambda: _real_part(name, _plain(name, mode, _padded(name, garbage))), ref)
    if mode == "jit":
        grad = _pad_grad(name)
        clean = _padded(name, 1.0)
        dirty = _padded(name, garbage)
        g_ref, g = grad(clean[0], clean[1:]), grad(dirty[0], dirty[1:])
        same(name, lambda: g, g_ref)


@pytest.mark.parametrize(
    "case", ["identical", "zero weights", "tiny epsilon", "one point", "forbidden pair"]
)
@pytest.mark.parametrize("name", FNS)
def test_gradients_finite_at_degenerate_points(name, case):
    if name == "sinkhorn":
        data = (
            (np.asarray(((X[:, None] - X[None]) ** 2).sum(-1)),) if case == "identical" else (COST,)
        )
    else:
        data = (X, X) if case == "identical" else (X, Y)
    eps = 1e-3 if case == "tiny epsilon" else 0.5
    if case == "zero weights":
        data = (*data, np.array([0.5, 0.0, 0.5], np.float32))
    if case == "one point":
        data = (COST[:1],) if name == "sinkhorn" else (X[:1], Y)
    if case == "forbidden pair":
        if name != "sinkhorn":
            pytest.skip("a cost entry")
        data = (np.where(np.eye(3, 4, dtype=bool), np.inf, COST).astype(np.float32),)

    def loss(d, *rest):
        out = _call(name, (d, *rest), epsilon=eps, max_iters=500)
        if name == "sinkhorn_divergence":
            return out
        return (
            out.regularized_cost
            + out.transport_cost
            + jnp.sum(jnp.where(jnp.isfinite(out.f), out.f, 0))
        )

    finite(name, lambda: jax.grad(loss)(*data))
    if name != "sinkhorn_divergence":
        finite(
            name,
            lambda: jax.grad(lambda e: _call(name, data, epsilon=e).regularized_cost)(0.5),
        )


# --------------------------------------------------------------------------------------------
# barycentric_projection
# --------------------------------------------------------------------------------------------

PLAN = np.asarray(al.sinkhorn(COST, epsilon=0.5).plan)
BP = "barycentric_projection"


@functools.cache
def _bp(mode):
    if mode == "jit":
        return jax.jit(al.barycentric_projection)
    if mode == "vmap":
        return jax.jit(jax.vmap(al.barycentric_projection, in_axes=(0, None)))
    return al.barycentric_projection


@pytest.mark.parametrize(
    ("label", "plan", "y", "match"),
    [
        ("plan rank1", np.ones(3, np.float32), Y, "`plan`"),
        ("plan empty", np.ones((0, 4), np.float32), Y, "`plan`"),
        ("plan none", None, Y, "`plan`"),
        ("plan complex", PLAN.astype(np.complex64), Y, "`plan`"),
        ("y mismatch", PLAN, Y[:3], "`y`"),
        ("y rank3", PLAN, Y[None], "`y`"),
        ("y none", PLAN, None, "`y`"),
        ("y complex", PLAN, Y.astype(np.complex64), "`y`"),
    ],
)
@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_barycentric_bad_shapes_raise(label, plan, y, match, mode):
    if mode == "eager" or plan is None or y is None:
        raises(BP, lambda: al.barycentric_projection(plan, y), match=match)
    else:
        raises(BP, lambda: jax.jit(al.barycentric_projection)(plan, y), match=match)


@pytest.mark.parametrize("mode", MODES)
def test_barycentric_values(mode):
    plans = np.stack([PLAN, PLAN[::-1]]) if mode == "vmap" else PLAN
    fn = _bp(mode)
    out = finite(BP, lambda: fn(plans, Y))
    first = np.asarray(out)[0] if mode == "vmap" else np.asarray(out)
    np.testing.assert_allclose(first, (PLAN / PLAN.sum(1, keepdims=True)) @ Y, rtol=1e-5)
    # NaN in a real entry propagates; negative entries: raise eagerly, NaN when traced
    poisoned = np.array(plans)
    poisoned[..., 1, 0] = np.nan
    any_nan(BP, lambda: fn(poisoned, Y))
    negative = np.array(plans)
    negative[..., 1, 0] = -0.1
    if mode == "eager":
        raises(BP, lambda: fn(negative, Y), match="`plan`")
    else:
        any_nan(BP, lambda: fn(negative, Y))
    # a row without mass: NaN (no target), others unchanged, gradients finite
    empty = np.array(plans)
    empty[..., 0, :] = 0.0
    got = np.asarray(fn(empty, Y))
    assert np.all(np.isnan(got[..., 0, :])) and np.all(np.isfinite(got[..., 1:, :]))
    one = empty[0] if mode == "vmap" else empty
    finite(BP, lambda: jax.grad(lambda p: jnp.nansum(al.barycentric_projection(p, Y)))(one))


@pytest.mark.parametrize(("label", "garbage"), garbage_values())
def test_barycentric_garbage_in_unused_targets(label, garbage):
    plan = np.c_[PLAN, np.zeros((3, 1), np.float32)]
    y = np.r_[Y, np.full((1, 2), garbage, np.float32)]
    same(BP, lambda: _bp("jit")(plan, y), _bp("jit")(PLAN, Y))
    same(BP, lambda: jax.grad(lambda p: jnp.sum(al.barycentric_projection(p, y)))(plan)[:, :4],
         jax.grad(lambda p: jnp.sum(al.barycentric_projection(p, Y)))(PLAN))  # fmt: skip


@pytest.mark.parametrize("dtype", ["int32", "bool", "float16", "bfloat16"])
def test_barycentric_dtypes(dtype):
    plan = (PLAN > 0.05) if dtype == "bool" else PLAN.astype(jnp.dtype(dtype))
    if dtype == "int32":
        plan = (PLAN > 0.05).astype(np.int32)
    out = finite(
        BP,
        lambda: al.barycentric_projection(
            plan, Y.astype(plan.dtype) if dtype in ("float16", "bfloat16") else Y
        ),
    )
    if dtype in ("float16", "bfloat16"):
        assert out.dtype == jnp.dtype(dtype)


def test_no_warning_under_jit():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jax.jit(lambda c: al.sinkhorn(c, epsilon=0.5, max_iters=1).plan)(COST)
