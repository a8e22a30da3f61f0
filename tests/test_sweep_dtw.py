"""Bad-input sweep over every public function of ``costs.py`` and ``dtw.py`` (issue 9).

Each case runs eagerly, under ``jit`` and under ``vmap`` where that makes sense, and asserts the
policy of ``docs/conventions.md`` with the helpers of ``tests/sweep.py``: ``ValueError`` naming
the argument for static problems, NaN for traced bad values, NaN propagated from real data,
finite values and gradients at valid degenerate points and at extreme magnitudes, untouched
results when padding holds garbage. Sizes are tiny and jitted callables are reused (traced
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
    garbage_values,
    raises,
    same,
)

RNG = np.random.default_rng(9)
X = RNG.normal(size=(3, 2)).astype(np.float32)
Y = RNG.normal(size=(4, 2)).astype(np.float32)
XB = RNG.normal(size=(2, 3, 2)).astype(np.float32)  # batches for vmap
YB = RNG.normal(size=(2, 4, 2)).astype(np.float32)
COST = ((X[:, None] - Y[None]) ** 2).sum(-1).astype(np.float32)
COSTB = ((XB[:, :, None] - YB[:, None]) ** 2).sum(-1).astype(np.float32)
MODES = ["eager", "jit", "vmap"]

# --------------------------------------------------------------------------------------------
# costs.py
# --------------------------------------------------------------------------------------------

COSTS = {
    "squared_euclidean": al.squared_euclidean,
    "euclidean": al.euclidean,
    "cosine_similarity": al.cosine_similarity,
    "cosine_distance": al.cosine_distance,
    "absolute_difference": al.absolute_difference,
    "linear_kernel": al.linear_kernel,
    "polynomial_kernel": al.polynomial_kernel,
    "rbf_kernel": al.rbf_kernel,
}
# Hyperparameters swept with POSITIVE_SCALAR_CASES / SHAPE_SCALAR_CASES: (function, name).
COST_HYPER = [
    ("cosine_similarity", "eps"),
    ("cosine_distance", "eps"),
    ("polynomial_kernel", "gamma"),
    ("rbf_kernel", "gamma"),
]
# A magnitude at which each function's true value is still finite in float32.
HUGE = {
    "squared_euclidean": 1e18,
    "euclidean": 1e37,
    "cosine_similarity": 1e37,
    "cosine_distance": 1e37,
    "absolute_difference": 1e37,
    "linear_kernel": 1e18,
    "polynomial_kernel": 1e6,
    "rbf_kernel": 1e30,
}


@functools.cache
def _jitted(name):
    return jax.jit(COSTS[name])


@functools.cache
def _vmapped(name):
    return jax.jit(jax.vmap(COSTS[name]))


def _call_cost(name, mode, x, y):
    if mode == "eager":
        return lambda: COSTS[name](x, y)
    if mode == "jit":
        return lambda: _jitted(name)(x, y)
    return lambda: _vmapped(name)(np.stack([x, x]), np.stack([y, y]))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(COSTS))
def test_costs_nan_in_data_propagates_to_its_row_only(name, mode):
    x = X.copy()
    x[1, 0] = np.nan
    any_nan(name, _call_cost(name, mode, x, Y))
    clean = np.asarray(_call_cost(name, mode, X, Y)())
    same(
        name,
        lambda: np.asarray(_call_cost(name, mode, x, Y)())[..., [0, 2], :],
        clean[..., [0, 2], :],
    )


@pytest.mark.parametrize("name", sorted(COSTS))
def test_costs_one_garbage_row_leaves_other_rows_alone(name):
    cols = [0, 1, 3]
    clean = np.asarray(_jitted(name)(X, Y))
    grad = jax.jit(jax.grad(lambda a, b: COSTS[name](a, b)[:, cols].sum()))
    for _, bad in garbage_values():
        y = Y.copy()
        y[2] = bad
        same(name, lambda y=y: np.asarray(_jitted(name)(X, y))[:, cols], clean[:, cols])
        if name in ("squared_euclidean", "rbf_kernel", "absolute_difference") and not np.isnan(bad):
            # Their gradients are robust too (an inf or huge row is routed around the product);
            # kernels built on x @ y.T meet IEEE 0 * inf in reverse mode, as any matmul does.
            finite(name, lambda y=y: grad(X, y))


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("name", sorted(COSTS))
def test_costs_static_problems_raise(name, mode):
    fn = COSTS[name] if mode == "eager" else _jitted(name)
    if name != "absolute_difference":
        raises(name, lambda: fn(np.ones(3), Y), match="`x`")
    raises(name, lambda: fn(np.ones((3, 2, 1)), Y), match="`x`")
    raises(name, lambda: fn(X, np.ones((2, 2, 2))), match="`y`")
    raises(name, lambda: fn(X, np.ones((4, 3))), match="feature size")
    raises(name, lambda: COSTS[name](None, Y), match="`x`")
    raises(name, lambda: COSTS[name](X, None), match="`y`")
    raises(name, lambda: fn(X.astype(np.complex64), Y), match="complex")
    raises(name, lambda: fn(X, Y.astype(np.complex64)), match="complex")
    raises(name, lambda: COSTS[name]("abc", Y), match="`x`")


@pytest.mark.parametrize("name", sorted(COSTS))
def test_costs_vmap_raises_on_wrong_rank(name):
    raises(name, lambda: jax.vmap(COSTS[name])(np.ones((2, 3, 2, 1)), YB), match="`x`")
    raises(name, lambda: jax.vmap(COSTS[name])(XB, np.ones((2, 4, 3))), match="feature size")


@pytest.mark.parametrize("name", sorted(COSTS))
def test_costs_empty_and_zero_features(name):
    same(name, lambda: COSTS[name](np.zeros((0, 2)), Y), np.zeros((0, 4)))
    same(name, lambda: COSTS[name](X, np.zeros((0, 2))), np.zeros((3, 0)))
    out = finite(name, lambda: _jitted(name)(np.zeros((3, 0)), np.zeros((4, 0))))
    assert out.shape == (3, 4)


@pytest.mark.parametrize(
    "dtype", [np.int32, np.bool_, jnp.float16, jnp.bfloat16], ids=["int", "bool", "f16", "bf16"]
)
@pytest.mark.parametrize("name", sorted(COSTS))
def test_costs_dtypes(name, dtype):
    x, y = jnp.asarray(X > 0 if dtype == np.bool_ else 3 * X, dtype), jnp.asarray(Y, dtype)
    out = finite(name, lambda: _jitted(name)(x, y))
    want = jnp.float32 if dtype in (np.int32, np.bool_) else dtype
    assert out.dtype == want
    ref = COSTS[name](np.asarray(x, np.float32), np.asarray(y, np.float32))
    same(name, lambda: np.asarray(out, np.float32), ref, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("scale", ["huge", "tiny"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(COSTS))
def test_costs_extreme_magnitudes_stay_finite(name, mode, scale):
    s = HUGE[name] if scale == "huge" else 1e-30
    x, y = (X * s).astype(np.float32), (Y * s).astype(np.float32)
    finite(name, _call_cost(name, mode, x, y))
    if name.startswith("cosine") and scale == "huge":  # tiny norms fall below eps
        ref = np.asarray(COSTS[name](X, Y))
        out = np.asarray(_call_cost(name, mode, x, y)())
        same(name, lambda: out, np.broadcast_to(ref, out.shape), atol=1e-5)
    if name == "squared_euclidean" and scale == "huge":  # overflowing distances: inf, not NaN
        out = np.asarray(_call_cost(name, mode, X * 1e30, Y * 1e30)())
        assert not np.isnan(out).any() and np.isinf(out).all()


@pytest.mark.parametrize(("name", "kw"), COST_HYPER)
@pytest.mark.parametrize(("label", "value", "eager", "traced"), POSITIVE_SCALAR_CASES)
def test_costs_bad_hyperparameter_values(name, kw, label, value, eager, traced):
    fn = COSTS[name]
    raises(name, lambda: fn(X, Y, **{kw: value}), match=f"`{kw}`")
    jitted = jax.jit(lambda v: fn(X, Y, **{kw: v}))
    all_nan(name, lambda: jitted(value))
    vm = jax.vmap(lambda v: fn(X, Y, **{kw: v}))
    all_nan(name, lambda: vm(jnp.array([value, value], jnp.float32)))
    ok = jnp.array([0.5, value], jnp.float32)  # the bad entry of a batch only
    out = np.asarray(vm(ok))
    assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()


@pytest.mark.parametrize(("name", "kw"), [*COST_HYPER, ("polynomial_kernel", "coef0")])
@pytest.mark.parametrize(("label", "value"), SHAPE_SCALAR_CASES)
def test_costs_malformed_hyperparameters_raise(name, kw, label, value):
    if value is None and kw == "gamma":
        finite(name, lambda: COSTS[name](X, Y, gamma=None))  # None = the documented default
        return
    fn = COSTS[name]
    raises(name, lambda: fn(X, Y, **{kw: value}), match=f"`{kw}`")
    raises(name, lambda: jax.jit(lambda x: fn(x, Y, **{kw: value}))(X), match=f"`{kw}`")


@pytest.mark.parametrize("degree", [0, -1, 1.5, True, None, np.array(2)])
def test_polynomial_degree_is_a_static_int(degree):
    raises("polynomial_kernel", lambda: al.polynomial_kernel(X, Y, degree=degree), match="`degree`")


@pytest.mark.parametrize("name", sorted(COSTS))
def test_costs_gradients_at_degenerate_points(name):
    zero = np.zeros((2, 2), np.float32)
    for a, b in [(X, X), (zero, zero), (X, np.concatenate([X[:1], Y]))]:
        g = jax.jit(jax.grad(lambda u, v: COSTS[name](u, v).sum(), argnums=(0, 1)))(a, b)
        finite(name, lambda g=g: g)


# --------------------------------------------------------------------------------------------
# dtw.py
# --------------------------------------------------------------------------------------------

ON_COST = {
    "dtw": lambda c, g, **kw: al.dtw(c, **kw),
    "dtw_alignment": lambda c, g, **kw: al.dtw_alignment(c, **kw),
    "soft_dtw": lambda c, g, **kw: al.soft_dtw(c, gamma=g, **kw),
    "soft_dtw_alignment": lambda c, g, **kw: al.soft_dtw_alignment(c, gamma=g, **kw),
}
ON_POINTS = {
    "dtw_points": lambda x, y, g, **kw: al.dtw_points(x, y, **kw),
    "soft_dtw_points": lambda x, y, g, **kw: al.soft_dtw_points(x, y, gamma=g, **kw),
    "soft_dtw_divergence": lambda x, y, g, **kw: al.soft_dtw_divergence(x, y, gamma=g, **kw),
}
SOFT = ["soft_dtw", "soft_dtw_alignment", "soft_dtw_points", "soft_dtw_divergence"]
G = 0.5


def _dtw_call(name, mode, *args, gamma=G, **kw):
    """``name`` on ``args`` (a cost, or x and y), eagerly, jitted or vmapped over a batch of 2."""
    if name in ON_COST:
        fn = lambda *a, g: ON_COST[name](*a, g, **kw)
    else:
        fn = lambda *a, g: ON_POINTS[name](*a, g, **kw)
    if mode == "eager":
        return lambda: fn(*args, g=gamma)
    if mode == "jit":
        return lambda: jax.jit(lambda g, *a: fn(*a, g=g))(gamma, *args)
    batched = [np.stack([a, a]) for a in args]
    return lambda: jax.vmap(lambda g, *a: fn(*a, g=g), in_axes=(None, *[0] * len(args)))(
        gamma, *batched
    )


def _args(name, x=X, y=Y):
    return (((x[:, None] - y[None]) ** 2).sum(-1),) if name in ON_COST else (x, y)


ALL_DTW = sorted(ON_COST) + sorted(ON_POINTS)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ALL_DTW)
def test_dtw_nan_in_real_data_propagates(name, mode):
    x = X.copy()
    x[1, 1] = np.nan
    any_nan(name, _dtw_call(name, mode, *_args(name, x)))
    if name in ON_COST:
        cost = COST.copy()
        cost[2, 3] = np.nan  # the end cell is on every path
        any_nan(name, _dtw_call(name, mode, cost))


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("name", ALL_DTW)
def test_dtw_static_problems_raise(name, mode):
    call = lambda *a, **kw: _dtw_call(name, mode, *a, **kw)()
    if name in ON_COST:
        raises(name, lambda: call(np.ones(3)), match="`cost`")
        raises(name, lambda: call(np.ones((3, 4, 1))), match="`cost`")
        raises(name, lambda: call(np.ones((0, 4))), match="non-empty")
        raises(name, lambda: call(COST.astype(np.complex64)), match="complex")
        raises(name, lambda: ON_COST[name](None, G), match="`cost`")
        raises(name, lambda: ON_COST[name]("abc", G), match="`cost`")
    else:
        raises(name, lambda: call(np.ones((3, 2, 1)), Y), match="`x`")
        raises(name, lambda: call(X, np.ones((0, 2))), match="non-empty")
        raises(name, lambda: call(X, np.ones((4, 3))), match="feature size")
        raises(name, lambda: call(X.astype(np.complex64), Y), match="complex")
        raises(name, lambda: ON_POINTS[name](None, Y, G), match="`x`")
        raises(name, lambda: ON_POINTS[name](X, None, G), match="`y`")
        bad_fn = lambda a, b: jnp.zeros((2, 2))
        raises(name, lambda: call(X, Y, cost_fn=bad_fn), match="cost_fn")
    args = _args(name)
    for window in [-1, 1.5, True, np.array(1), "1"]:
        raises(name, lambda w=window: call(*args, window=w), match="`window`")
    raises(
        name,
        lambda: call(*_args(name, X, X[:2]) if name in ON_POINTS else (COST[:, :2],), window=0),
        match="window",
    )
    for lengths in [np.array([2, 2]), (np.array([2, 2]), 2), (2.0, 2), (True, 2), 3, (1, 2, 3)]:
        raises(name, lambda ln=lengths: call(*args, lengths=ln), match="`lengths`")
    for lengths in [(0, 2), (4, 2), (2, 5)]:
        raises(name, lambda ln=lengths: call(*args, lengths=ln), match="outside")


@pytest.mark.parametrize("name", ALL_DTW)
def test_dtw_vmap_raises_on_wrong_rank(name):
    if name in ON_COST:
        raises(
            name, lambda: jax.vmap(lambda c: ON_COST[name](c, G))(np.ones((2, 3))), match="`cost`"
        )
    else:
        fn = jax.vmap(lambda a, b: ON_POINTS[name](a, b, G))
        raises(name, lambda: fn(XB, np.ones((2, 4, 3))), match="feature size")


@pytest.mark.parametrize("name", SOFT)
@pytest.mark.parametrize(("label", "value", "eager", "traced"), POSITIVE_SCALAR_CASES)
def test_dtw_bad_gamma_values(name, label, value, eager, traced):
    args = _args(name)
    raises(name, _dtw_call(name, "eager", *args, gamma=value), match="`gamma`")
    all_nan(name, _dtw_call(name, "jit", *args, gamma=value))
    fn = ON_COST.get(name) or ON_POINTS[name]
    all_nan(name, lambda: jax.vmap(lambda g: fn(*args, g))(jnp.array([value, value])))
    per_problem = jax.vmap(lambda g: fn(*args, g))(jnp.array([0.5, value], jnp.float32))
    assert np.isfinite(np.asarray(per_problem)[0]).all()
    assert np.isnan(np.asarray(per_problem)[1]).all()


@pytest.mark.parametrize("name", SOFT)
@pytest.mark.parametrize(("label", "value"), SHAPE_SCALAR_CASES)
def test_dtw_malformed_gamma_raises(name, label, value):
    args = _args(name)
    fn = ON_COST.get(name) or ON_POINTS[name]
    raises(name, lambda: fn(*args, value), match="`gamma`")
    raises(name, lambda: jax.jit(lambda *a: fn(*a, value))(*args), match="`gamma`")


@pytest.mark.parametrize("name", ALL_DTW)
def test_dtw_traced_lengths_out_of_range_give_nan(name):
    args = _args(name)
    fn = ON_COST.get(name) or ON_POINTS[name]
    jitted = jax.jit(lambda a, b: fn(*args, G, lengths=(a, b)))
    for lengths in [(0, 2), (4, 2), (2, 5), (-1, -1)]:
        all_nan(name, lambda ln=lengths: jitted(*ln))
    finite(name, lambda: jitted(2, 3))
    vm = jax.vmap(lambda a, b: fn(*args, G, lengths=(a, b)))
    all_nan(name, lambda: vm(jnp.array([4, 0]), jnp.array([2, 2])))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ALL_DTW)
def test_dtw_padding_garbage_changes_nothing(name, mode):
    """Padding past lengths=(2, 3) holds NaN, inf, -inf or 1e30: value and gradient equal the
    unpadded call (one compiled function per mode serves every garbage value)."""
    fn = ON_COST.get(name) or ON_POINTS[name]
    # The alignments are gradients already: their own outputs are compared (no second order).
    argnums = () if name.endswith("alignment") else tuple(range(1 if name in ON_COST else 2))

    def value_and_grads(*a, lengths=None):
        if not argnums:
            return fn(*a, G, lengths=lengths), ()
        loss = lambda *b: fn(*b, G, lengths=lengths)
        return fn(*a, G, lengths=lengths), jax.grad(loss, argnums)(*a)

    if mode == "eager":
        run = lambda *a: value_and_grads(*a, lengths=(2, 3))
    elif mode == "jit":
        run = jax.jit(lambda *a: value_and_grads(*a, lengths=(2, 3)))
    else:  # traced lengths, one per problem
        vm = jax.jit(jax.vmap(lambda ta, sa, *a: value_and_grads(*a, lengths=(ta, sa))))

        def run(*a):
            got = vm(jnp.array([2, 2]), jnp.array([3, 3]), *[np.stack([v, v]) for v in a])
            return jax.tree.map(lambda v: v[1], got)

    clean = (COST[:2, :3],) if name in ON_COST else (X[:2], Y[:3])
    ref_out, ref_grads = value_and_grads(*clean)
    for _, garbage in garbage_values():
        if name in ON_COST:
            padded = COST.copy()
            padded[2:] = garbage
            padded[:, 3] = garbage
            args = (padded,)
        else:
            x, y = X.copy(), Y.copy()
            x[2] = garbage
            y[3, 0] = garbage
            args = (x, y)
        out, grads = run(*args)
        if name.endswith("alignment"):
            matrix = out[1] if name == "dtw_alignment" else out
            same(name, lambda m=matrix: m[:2, :3], out_ref_matrix(name, ref_out))
            assert np.all(np.asarray(matrix)[2:] == 0) and np.all(np.asarray(matrix)[:, 3:] == 0)
            if name == "dtw_alignment":
                same(name, lambda o=out: o[0], ref_out[0])
        else:
            same(name, lambda o=out: o, ref_out)
        for g, g_ref in zip(grads, ref_grads, strict=True):
            g = np.asarray(g)
            head = tuple(slice(0, n) for n in np.shape(g_ref))
            same(name, lambda g=g, h=head: g[h], g_ref, rtol=1e-4, atol=1e-5)
            mask = np.ones(g.shape, bool)
            mask[head] = False
            assert np.all(g[mask] == 0.0)


def out_ref_matrix(name, ref_out):
    return ref_out[1] if name == "dtw_alignment" else ref_out


@pytest.mark.parametrize(
    "dtype", [np.int32, np.bool_, jnp.float16, jnp.bfloat16], ids=["int", "bool", "f16", "bf16"]
)
@pytest.mark.parametrize("name", ALL_DTW)
def test_dtw_dtypes(name, dtype):
    args = tuple(jnp.asarray(a > 0 if dtype == np.bool_ else 3 * a, dtype) for a in _args(name))
    fn = ON_COST.get(name) or ON_POINTS[name]
    out = finite(name, lambda: jax.jit(lambda *a: fn(*a, G))(*args))
    want = jnp.float32 if dtype in (np.int32, np.bool_) else dtype
    assert all(leaf.dtype == want for leaf in jax.tree.leaves(out))
    ref = fn(*(np.asarray(a, np.float32) for a in args), G)
    same(
        name,
        lambda: jax.tree.map(lambda v: np.asarray(v, np.float32), out),
        ref,
        rtol=2e-2,
        atol=2e-2,
    )


@pytest.mark.parametrize("scale", [1e30, 1e-30, 1e15])
@pytest.mark.parametrize("name", ALL_DTW)
def test_dtw_extreme_magnitudes_stay_finite(name, scale):
    if name in ON_COST:
        args = (COST * np.float32(scale),)
    else:
        s = np.float32(np.sqrt(scale))  # the squared cost reaches `scale`
        args = (X * s, Y * s)
    fn = ON_COST.get(name) or ON_POINTS[name]
    finite(name, lambda: fn(*args, G))
    finite(name, lambda: jax.jit(lambda *a: fn(*a, G))(*args))


@pytest.mark.parametrize("name", ALL_DTW)
def test_dtw_gradients_at_degenerate_points(name):
    fn = ON_COST.get(name) or ON_POINTS[name]
    loss = lambda *a, g=G: jnp.sum(jax.tree.leaves(fn(*a, g))[0])
    if name in ON_COST:
        cases = [(COST,), (np.zeros((3, 4), np.float32),), (COST[:1],), (COST[:, :1],)]
    else:
        cases = [(X, X), (X, X[:1]), (X[:1], X[:1]), (np.zeros_like(X), np.zeros_like(Y))]
    for args in cases:
        if name.endswith("alignment"):  # already a gradient: its values must be finite
            finite(name, lambda args=args: fn(*args, G))
            continue
        grads = jax.jit(jax.grad(loss, argnums=tuple(range(len(args)))))(*args)
        finite(name, lambda grads=grads: grads)
    if name in SOFT and not name.endswith("alignment"):  # tiny gamma on large costs
        args = _args(name, X * 30, Y * 30)
        grads = jax.grad(lambda *a: loss(*a, g=1e-3), argnums=tuple(range(len(args))))(*args)
        finite(name, lambda: grads)
    if name == "soft_dtw_divergence":
        same(name, lambda: fn(X, X, G), 0.0, atol=0.0)
        same(
            name,
            lambda: jax.vmap(jax.vmap(lambda a: fn(a, a, 0.01)))(np.stack([XB, XB])),
            np.zeros((2, 2)),
            atol=0.0,
        )


# --------------------------------------------------------------------------------------------
# alignment_to_path (host function: every problem raises).
# --------------------------------------------------------------------------------------------


def test_alignment_to_path_bad_input():
    name = "alignment_to_path"
    _, good = al.dtw_alignment(COST)
    path = al.alignment_to_path(good)
    same(name, lambda: al.alignment_to_path(np.asarray(good)), path)
    nan_alignment = jax.jit(lambda c, a: al.dtw_alignment(c, lengths=(a, 3))[1])(COST, 5)
    for bad, match in [
        (nan_alignment, "NaN"),
        (np.where(np.asarray(good) > 0, np.nan, 0.0), "NaN"),
        (0.5 * np.asarray(good), "0/1"),
        (np.asarray(good) + 0.1, "0/1"),
        (np.eye(3)[::-1], "warping path"),
        (np.zeros((3, 4)), "warping path"),
        (np.ones(3), "2-D"),
        (np.ones((2, 2, 2)), "2-D"),
        (None, "None"),
        (np.eye(2, dtype=np.complex64), "complex"),
    ]:
        raises(name, lambda bad=bad: al.alignment_to_path(bad), match=match)
    raises(name, lambda: jax.jit(al.alignment_to_path)(np.eye(2)), match="host")
