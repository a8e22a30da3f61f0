"""Bad-input sweep over every public function of ``assignment.py`` and ``gaussian.py`` (issue 9).

Each case runs eagerly, under ``jit`` and under ``vmap``, and asserts the policy of
``docs/conventions.md`` with the helpers of ``tests/sweep.py``: ``ValueError`` naming the
argument for static problems (and for concrete bad values), NaN / ``-1`` outputs and status flags
for traced bad values, NaN propagated from real data, finite values and gradients at valid
degenerate points and extreme magnitudes, and batch members untouched by a bad neighbour (these
functions have no padding: a bad member of a ``vmap`` batch, or a bad row of a pairwise set, is
the garbage that must not leak). Sizes are tiny and the jitted callables are reused.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import alignment as al
from tests import sweep
from tests.sweep import all_nan, any_nan, finite, garbage_values, raises, same

RNG = np.random.default_rng(9)
MODES = ["eager", "jit", "vmap"]


def _minus_one(function: str, ints) -> None:
    """Every integer output is ``-1`` (the traced bad-value policy for indices)."""
    for leaf in jax.tree.leaves(ints):
        assert (np.asarray(leaf) == -1).all(), leaf
    sweep._record(function, "-1")


def _not_finite(function: str, call) -> None:
    """``call()`` is not a plausible finite number: NaN or inf somewhere in every output."""
    out = jax.block_until_ready(call())
    for leaf in sweep.float_leaves(out):
        assert not np.all(np.isfinite(leaf.astype(np.float64))), leaf
    sweep._record(function, "non-finite")


# --------------------------------------------------------------------------------------------
# assignment.py
# --------------------------------------------------------------------------------------------

COST = RNG.random((3, 4)).astype(np.float32)
COST_T = np.ascontiguousarray(COST.T)  # [4, 3]: the transposed path
ASSIGN = {"linear_assignment": al.linear_assignment, "hungarian": al.hungarian}


@functools.cache
def _assign(name, mode, maximize=False):
    fn = functools.partial(ASSIGN[name], maximize=maximize)
    if mode == "eager":
        return fn
    if mode == "jit":
        return jax.jit(fn)
    return jax.jit(jax.vmap(fn))


def _call_assign(name, mode, cost, maximize=False):
    """Runs one problem in ``mode`` (``vmap`` over a batch of two copies; returns member 0)."""
    if mode == "vmap":
        out = _assign(name, mode, maximize)(jnp.stack([jnp.asarray(cost)] * 2))
        return jax.tree.map(lambda x: x[0], out)
    return _assign(name, mode, maximize)(cost)


def _cols(name, out):
    return out.cols if name == "linear_assignment" else out[1]


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("name", list(ASSIGN))
@pytest.mark.parametrize(
    ("label", "cost", "match"),
    [
        ("none", None, "`cost`"),
        ("complex", COST + 1j, "complex"),
        ("rank1", COST[0], "2-D"),
        ("rank3", COST[None], "2-D"),
        ("string", "abc", "`cost`"),
    ],
)
def test_assignment_static_cost_raises(name, mode, label, cost, match):
    if mode == "jit" and label in ("none", "string"):
        # jax.jit itself rejects non-array arguments; trace the bad value inside instead.
        raises(name, lambda: jax.jit(lambda: ASSIGN[name](cost))(), match=match)
    else:
        raises(name, lambda: _assign(name, mode)(cost), match=match)


def test_assignment_vmap_wrong_rank_raises():
    raises("linear_assignment", lambda: jax.vmap(al.linear_assignment)(COST), match="2-D")
    raises("hungarian", lambda: jax.vmap(al.hungarian)(COST[None, None]), match="2-D")


@pytest.mark.parametrize("value", [1.5, True, -1, np.ones(2, int), "4", None, 2.0])
@pytest.mark.parametrize("mode", MODES)
def test_assignment_init_rounds_static_int(mode, value):
    def call():
        fn = functools.partial(al.linear_assignment, init_rounds=value)
        if mode == "eager":
            return fn(COST)
        if mode == "jit":
            return jax.jit(fn)(COST)
        return jax.vmap(fn)(COST[None])

    raises("linear_assignment", call, match="init_rounds")


@pytest.mark.parametrize("value", [1, "yes", None, np.bool_(True)])
@pytest.mark.parametrize("name", list(ASSIGN))
def test_assignment_maximize_static_bool(name, value):
    raises(name, lambda: ASSIGN[name](COST, maximize=value), match="maximize")


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("value", ["nan", "bad_inf"])
@pytest.mark.parametrize("name", list(ASSIGN))
@pytest.mark.parametrize("mode", MODES)
def test_assignment_invalid_entries(mode, name, value, maximize):
    """Concrete NaN / -inf (+inf when maximising) raise; traced: status 2, NaN, -1."""
    cost = COST.copy()
    cost[1, 2] = np.nan if value == "nan" else (np.inf if maximize else -np.inf)
    if mode == "eager":
        raises(name, lambda: ASSIGN[name](cost, maximize=maximize), match="`cost`")
        return
    out = _call_assign(name, mode, cost, maximize)
    _minus_one(name, _cols(name, out))
    if name == "linear_assignment":
        assert int(out.status) == 2  # STATUS_INVALID
        all_nan(name, lambda: (out.cost, out.row_potentials, out.col_potentials))


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("name", list(ASSIGN))
@pytest.mark.parametrize("mode", MODES)
def test_assignment_infeasible(mode, name, transpose):
    cost = COST_T.copy() if transpose else COST.copy()
    if transpose:
        cost[:, 1] = np.inf  # [4, 3]: column 1 has no finite entry
    else:
        cost[1] = np.inf  # [3, 4]: row 1 has no finite entry
    if mode == "eager":
        raises(name, lambda: ASSIGN[name](cost), match="infeasible")
        return
    out = _call_assign(name, mode, cost)
    _minus_one(name, _cols(name, out))
    if transpose:
        _minus_one(name, out.rows if name == "linear_assignment" else out[0])
    if name == "linear_assignment":
        assert int(out.status) == 1
        all_nan(name, lambda: (out.cost, out.row_potentials, out.col_potentials))


@pytest.mark.parametrize("value", [np.nan, -np.inf])
def test_assignment_nan_propagates_to_gradient(value):
    cost = jnp.asarray(COST).at[0, 0].set(value)
    grad = jax.jit(jax.grad(lambda c: al.linear_assignment(c).cost))
    all_nan("linear_assignment", lambda: grad(cost))


@pytest.mark.parametrize("label", ["nan", "-inf", "infeasible"])
@pytest.mark.parametrize("name", list(ASSIGN))
def test_assignment_bad_member_leaves_batch_intact(name, label):
    bad = COST.copy()
    if label == "infeasible":
        bad[0] = np.inf
    else:
        bad[0, 0] = np.nan if label == "nan" else -np.inf
    out = _assign(name, "vmap")(jnp.stack([COST, bad]))
    good = jax.tree.map(lambda x: x[0], out)
    same(name, lambda: good, ASSIGN[name](COST))
    _minus_one(name, _cols(name, jax.tree.map(lambda x: x[1], out)))


# Every dtype eagerly and under jit; under vmap (a compile each) float16 only.
DTYPE_MODES = [("eager", "jit"), ("eager", "jit"), MODES, ("eager", "jit"), ("eager", "jit")]
ASSIGN_DTYPES = [np.int32, np.bool_, jnp.float16, jnp.bfloat16, np.float64]


@pytest.mark.parametrize(
    ("mode", "dtype"),
    [(m, d) for d, ms in zip(ASSIGN_DTYPES, DTYPE_MODES, strict=True) for m in ms],
    ids=str,
)
@pytest.mark.parametrize("name", list(ASSIGN))
def test_assignment_dtypes(mode, name, dtype):
    cost = (COST * 10).astype(dtype) if dtype is not np.bool_ else COST > 0.5
    cost = jnp.asarray(cost)
    out = finite(name, lambda: _call_assign(name, mode, cost))
    ref = np.asarray(cost.astype(jnp.float32))
    rows, cols = linear_sum_assignment(ref)
    got = np.asarray(_cols(name, out))
    np.testing.assert_allclose(ref[rows, got].sum(), ref[rows, cols].sum(), rtol=1e-6)
    if name == "linear_assignment":
        want = cost.dtype if jnp.issubdtype(cost.dtype, jnp.floating) else jnp.float32
        if dtype is np.float64:
            want = jnp.float32  # x64 disabled: float64 input arrives as float32
        assert out.cost.dtype == out.row_potentials.dtype == want


@pytest.mark.parametrize("scale", [1e30, 1e-30, -1e30])
@pytest.mark.parametrize("mode", MODES)
def test_assignment_extreme_magnitudes(mode, scale):
    cost = COST * np.float32(scale)
    out = finite("linear_assignment", lambda: _call_assign("linear_assignment", mode, cost))
    cols = linear_sum_assignment(cost.astype(np.float64))[1]
    np.testing.assert_array_equal(np.asarray(out.cols), cols)


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0, 0)])
@pytest.mark.parametrize("name", list(ASSIGN))
def test_assignment_empty_is_a_valid_problem(name, shape):
    """Documented decision: an empty side is a problem with k = 0 pairs (as SciPy)."""
    out = finite(name, lambda: ASSIGN[name](np.ones(shape, np.float32)))
    assert _cols(name, out).shape == (0,)
    out = finite(name, lambda: jax.jit(ASSIGN[name])(jnp.ones(shape)))
    assert _cols(name, out).shape == (0,)


@pytest.mark.parametrize(
    "cost",
    [np.zeros((3, 4), np.float32), np.ones((4, 3), np.float32), np.tile(COST[:1], (3, 1))],
    ids=["zeros", "ones_tall", "identical_rows"],
)
@pytest.mark.parametrize("mode", ["jit", "vmap"])
def test_assignment_gradient_at_ties(mode, cost):
    """Ties (constant costs, identical rows): a finite 0/1 gradient with one 1 per pair."""
    grad = jax.grad(lambda c: al.linear_assignment(c).cost)
    fn = jax.jit(grad) if mode == "jit" else jax.jit(jax.vmap(grad))
    g = finite("linear_assignment", lambda: fn(cost) if mode == "jit" else fn(cost[None])[0])
    assert np.asarray(g).sum() == min(cost.shape)
    assert set(np.unique(np.asarray(g))) <= {0.0, 1.0}


# --------------------------------------------------------------------------------------------
# gaussian.py
# --------------------------------------------------------------------------------------------

D = 2
EYE = np.eye(D, dtype=np.float32)
M1 = RNG.normal(size=D).astype(np.float32)
M2 = RNG.normal(size=D).astype(np.float32)
_A = RNG.normal(size=(D, D)).astype(np.float32)
C1 = (_A @ _A.T + 0.5 * EYE).astype(np.float32)
C2 = (EYE * 2.0).astype(np.float32)
V1 = np.array([0.5, 2.0], np.float32)
V2 = np.array([1.0, 0.3], np.float32)
N, M = 3, 2
MS1 = RNG.normal(size=(N, D)).astype(np.float32)
MS2 = RNG.normal(size=(M, D)).astype(np.float32)
CS1 = np.stack([C1, C2, EYE])
CS2 = np.stack([C2, C1])
VS1 = RNG.uniform(0.2, 2.0, size=(N, D)).astype(np.float32)
VS2 = RNG.uniform(0.2, 2.0, size=(M, D)).astype(np.float32)

GAUSS = {
    "gaussian_w2": (al.gaussian_w2, (M1, C1, M2, C2)),
    "gaussian_w2_scale": (al.gaussian_w2_scale, (M1, _A, M2, EYE)),
    "gaussian_w2_diag": (al.gaussian_w2_diag, (M1, V1, M2, V2)),
    "gaussian_w2_pairwise": (al.gaussian_w2_pairwise, (MS1, CS1, MS2, CS2)),
    "gaussian_w2_diag_pairwise": (al.gaussian_w2_diag_pairwise, (MS1, VS1, MS2, VS2)),
}
ARG_NAMES = {
    "gaussian_w2": ("mean1", "cov1", "mean2", "cov2"),
    "gaussian_w2_scale": ("mean1", "scale1", "mean2", "scale2"),
    "gaussian_w2_diag": ("mean1", "var1", "mean2", "var2"),
    "gaussian_w2_pairwise": ("means1", "covs1", "means2", "covs2"),
    "gaussian_w2_diag_pairwise": ("means1", "vars1", "means2", "vars2"),
}
PAIRWISE = ("gaussian_w2_pairwise", "gaussian_w2_diag_pairwise")
ARGS = [0, 1, 2, 3]


@functools.cache
def _gauss(name, mode):
    fn = GAUSS[name][0]
    if mode == "eager":
        return fn
    if mode == "jit":
        return jax.jit(fn)
    return jax.jit(jax.vmap(fn))


@functools.cache
def _gauss_grad(name, mode="jit"):
    grad = jax.grad(lambda *a: jnp.sum(GAUSS[name][0](*a)), argnums=(0, 1, 2, 3))
    return jax.jit(grad) if mode == "jit" else jax.jit(jax.vmap(grad))


def _call_gauss(name, mode, args):
    """One call in ``mode``; under ``vmap`` a batch of two copies, member 0 returned."""
    if mode == "vmap":
        return _gauss(name, mode)(*[jnp.stack([jnp.asarray(a)] * 2) for a in args])[0]
    return _gauss(name, mode)(*args)


def _with(args, k, value):
    args = list(args)
    args[k] = value
    return tuple(args)


def _poke(args, k, value, index=0):
    """``args`` with entry ``index`` (flat) of argument ``k`` set to ``value``."""
    arr = np.array(args[k], np.float32)
    arr.flat[index] = value
    return _with(args, k, arr)


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("k", ARGS)
@pytest.mark.parametrize("name", list(GAUSS))
def test_gaussian_static_raises(name, k, mode):
    fn, args = GAUSS[name]
    arg = ARG_NAMES[name][k]
    wrapped = (lambda *a: _gauss(name, "jit")(*a)) if mode == "jit" else fn
    # None and strings cannot be jit arguments: close over them (traced inside jit).
    closed = (lambda a: jax.jit(lambda: fn(*a))) if mode == "jit" else (lambda a: lambda: fn(*a))
    raises(name, closed(_with(args, k, None)), match=f"`{arg}`")
    raises(name, closed(_with(args, k, "abc")), match=f"`{arg}`")
    raises(name, lambda: wrapped(*_with(args, k, np.asarray(args[k]) + 1j)), match=f"`{arg}`")
    raises(name, lambda: wrapped(*_with(args, k, np.asarray(args[k])[None])), match=f"`{arg}")
    # A different d: the last axis of means and variances, both axes of covariances, the
    # first axis of scales.
    arr = np.asarray(args[k])
    if k % 2 == 0 or "diag" in name:
        bad_d = arr[..., :1]
    elif name == "gaussian_w2_scale":
        bad_d = arr[:1]
    else:
        bad_d = arr[..., :1, :1]
    raises(name, lambda: wrapped(*_with(args, k, bad_d)), match=f"`{arg}")


@pytest.mark.parametrize("name", list(GAUSS))
def test_gaussian_static_raises_under_vmap(name):
    fn, args = GAUSS[name]
    batched = [jnp.stack([jnp.asarray(a)] * 2) for a in args]
    raises(name, lambda: jax.vmap(fn)(batched[0][..., :1], *batched[1:]), match="`")
    raises(name, lambda: jax.vmap(fn)(*batched[:3], batched[3][:, None]), match="`")


@pytest.mark.parametrize("name", list(GAUSS))
def test_gaussian_zero_dimension_raises(name):
    fn, args = GAUSS[name]
    empty = [np.asarray(a)[..., :0] if k % 2 == 0 else None for k, a in enumerate(args)]
    if name in ("gaussian_w2", "gaussian_w2_pairwise"):
        covs = [np.asarray(a)[..., :0, :0] for a in args[1::2]]
    elif name == "gaussian_w2_scale":
        covs = [np.zeros((0, 1), np.float32)] * 2
    else:
        covs = [np.asarray(a)[..., :0] for a in args[1::2]]
    raises(name, lambda: fn(empty[0], covs[0], empty[2], covs[1]), match="d >= 1")


@pytest.mark.parametrize(("n", "m"), [(0, 2), (3, 0)])
@pytest.mark.parametrize("name", PAIRWISE)
def test_gaussian_pairwise_empty_sets(name, n, m):
    fn, (a, b, c, d) = GAUSS[name]
    out = finite(name, lambda: fn(a[:n], b[:n], c[:m], d[:m]))
    assert out.shape == (n, m)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("k", ARGS)
@pytest.mark.parametrize("name", list(GAUSS))
@pytest.mark.parametrize("mode", MODES)
def test_gaussian_non_finite_data(mode, name, k, value):
    """NaN / inf in real data never gives a finite value (full forms: NaN)."""
    fn, args = GAUSS[name]
    v = float(value)
    bad = _poke(args, k, v, index=1)
    diag_var = name in ("gaussian_w2_diag", "gaussian_w2_diag_pairwise") and k % 2 == 1
    if diag_var and v < 0 and mode == "eager":
        raises(name, lambda: fn(*bad), match=f"`{ARG_NAMES[name][k]}`")
        return
    if value == "nan" or name in ("gaussian_w2", "gaussian_w2_scale", "gaussian_w2_pairwise"):
        check = any_nan if name in PAIRWISE else all_nan
        check(name, lambda: _call_gauss(name, mode, bad))
    else:
        _not_finite(name, lambda: _call_gauss(name, mode, bad))


@pytest.mark.parametrize("k", ARGS)
@pytest.mark.parametrize("name", list(GAUSS))
@pytest.mark.parametrize("mode", ["jit", "vmap"])
def test_gaussian_nan_propagates_to_gradient(mode, name, k):
    bad = _poke(GAUSS[name][1], k, np.nan, index=1)
    if mode == "jit":
        grads = _gauss_grad(name)(*bad)
    else:
        grads = _gauss_grad(name, "vmap")(*[jnp.stack([jnp.asarray(a)] * 2) for a in bad])
    assert any(np.isnan(np.asarray(g)).any() for g in grads)
    sweep._record(name, "NaN gradient")


@pytest.mark.parametrize("name", PAIRWISE)
@pytest.mark.parametrize("label", [label for label, _ in garbage_values()])
def test_gaussian_bad_row_leaves_other_rows(name, label):
    """A pairwise set: garbage in row 1 of the first set changes no other row."""
    fn, args = GAUSS[name]
    value = dict(garbage_values())[label]
    bad = _poke(args, 0, value, index=D)  # means1[1, 0]
    ref = np.asarray(fn(*args))
    out = _gauss(name, "jit")(*bad)
    same(name, lambda: out[np.array([0, 2])], ref[np.array([0, 2])])


@pytest.mark.parametrize("name", [n for n in GAUSS if n not in PAIRWISE])
@pytest.mark.parametrize("label", [label for label, _ in garbage_values()])
def test_gaussian_bad_batch_member_leaves_others(name, label):
    fn, args = GAUSS[name]
    value = dict(garbage_values())[label]
    batched = [np.stack([np.asarray(a)] * 2) for a in args]
    batched[0][1, 0] = value
    out = _gauss(name, "vmap")(*batched)
    same(name, lambda: out[0], fn(*args))


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("name", ["gaussian_w2_diag", "gaussian_w2_diag_pairwise"])
@pytest.mark.parametrize("mode", MODES)
def test_gaussian_negative_variance(mode, name, k):
    bad = _poke(GAUSS[name][1], k, -0.5, index=0)
    if mode == "eager":
        raises(name, lambda: GAUSS[name][0](*bad), match=ARG_NAMES[name][k])
        return
    out = _call_gauss(name, mode, bad)
    if name == "gaussian_w2_diag":
        all_nan(name, lambda: out)
    else:  # row 0 (k == 1) or column 0 (k == 3) only
        line = out[0] if k == 1 else out[:, 0]
        all_nan(name, lambda: line)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("name", ["gaussian_w2", "gaussian_w2_pairwise"])
@pytest.mark.parametrize("mode", MODES)
def test_gaussian_not_psd(mode, name, k):
    fn, args = GAUSS[name]
    neg = np.diag([1.0, -0.5]).astype(np.float32)
    bad = _with(args, k, neg if name == "gaussian_w2" else np.stack([neg] * len(args[k])))
    if mode == "eager":
        raises(name, lambda: fn(*bad), match=f"`{ARG_NAMES[name][k]}`")
        return
    all_nan(name, lambda: _call_gauss(name, mode, bad))
    if mode == "jit":
        grads = _gauss_grad(name)(*bad)
        assert np.isnan(np.asarray(grads[k])).any()


@pytest.mark.parametrize(
    ("mode", "dtype"),
    [(m, d) for d, ms in zip(ASSIGN_DTYPES[:4], DTYPE_MODES[:4], strict=True) for m in ms],
    ids=str,
)
@pytest.mark.parametrize("name", list(GAUSS))
def test_gaussian_dtypes(mode, name, dtype):
    fn, args = GAUSS[name]
    if dtype in (np.int32, np.bool_):
        # Integer / bool data: means 0/1, identity covariances and scales, unit variances.
        args = tuple(
            (np.asarray(a) > 0).astype(dtype)
            if k % 2 == 0
            else (
                np.ones(np.shape(a)) if "diag" in name else np.broadcast_to(np.eye(D), np.shape(a))
            ).astype(dtype)
            for k, a in enumerate(args)
        )
        want = jnp.float32
    else:
        args = tuple(jnp.asarray(a, dtype) for a in args)
        want = dtype
    out = finite(name, lambda: _call_gauss(name, mode, args))
    assert out.dtype == want
    ref = fn(*[jnp.asarray(a).astype(jnp.float32) for a in args])
    np.testing.assert_allclose(np.asarray(out, np.float32), ref, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("scale", [1e8, 1e-18])
@pytest.mark.parametrize("name", list(GAUSS))
@pytest.mark.parametrize("mode", MODES)
def test_gaussian_extreme_magnitudes(mode, name, scale):
    """Means times ``scale``, second moments times ``scale**2``: finite, ``scale**2`` times."""
    fn, args = GAUSS[name]
    s = np.float32(scale)
    factor = s if name == "gaussian_w2_scale" else s * s
    scaled = tuple(np.asarray(a) * (s if k % 2 == 0 else factor) for k, a in enumerate(args))
    out = finite(name, lambda: _call_gauss(name, mode, scaled))
    ref = np.asarray(fn(*args), np.float64) * float(scale) ** 2
    np.testing.assert_allclose(np.asarray(out, np.float64), ref, rtol=1e-3, atol=1e-4 * ref.max())


def _degenerate(name, case):
    """Valid degenerate inputs: identical Gaussians, isotropic, zero (co)variance."""
    _, (m1, c1, m2, c2) = GAUSS[name]
    if case == "identical":
        return m1, c1, m1, c1
    if case == "isotropic":
        iso1 = np.broadcast_to(np.ones_like(c1) if "diag" in name else EYE, np.shape(c1))
        iso2 = np.broadcast_to(np.ones_like(c2) if "diag" in name else EYE, np.shape(c2))
        return m1, np.array(iso1), m2, np.array(iso2) * np.float32(3.0)
    return m1, np.zeros_like(c1), m2, np.zeros_like(c2) if case == "both_zero" else c2


@pytest.mark.parametrize("case", ["identical", "isotropic", "one_zero", "both_zero"])
@pytest.mark.parametrize("name", list(GAUSS))
@pytest.mark.parametrize("mode", ["jit", "vmap"])
def test_gaussian_gradient_at_degenerate_points(mode, name, case):
    args = _degenerate(name, case)
    if mode == "jit":
        finite(name, lambda: _gauss_grad(name)(*args))
    else:
        finite(name, lambda: _gauss_grad(name, "vmap")(*[np.stack([a] * 2) for a in args]))
    finite(name, lambda: _call_gauss(name, mode, args))
