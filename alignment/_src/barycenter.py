"""Wasserstein barycenters: fixed-support entropic (Bregman projections) and free-support.

Two problems, for measures ``mu_1 .. mu_k`` and barycentric coordinates ``lambda`` (non-negative,
summing to 1):

* :func:`sinkhorn_barycenter`, **fixed support**. The measures are histograms ``a_k`` on a
  common support of ``n`` points, the barycenter a histogram ``p`` on a support of ``m`` points
  (usually the same one), ``cost: [n, m]`` between them. It solves Benamou et al.'s entropic
  problem

      ``min_p  sum_k lambda_k  min_{P_k 1 = a_k, P_k^T 1 = p}  eps KL(P_k | K)``,
      ``K = exp(-C / eps)``,

  by iterative Bregman projections (IBP), written in the log domain (stable for small
  ``epsilon``). With ``G_k`` the log column scalings (``G = 0`` at the start), one iteration is

      ``F_k = log a_k - LSE_j(G_kj - C_ij / eps)``            (rows: ``P_k 1 = a_k``)
      ``L_kj = LSE_i(F_ki - C_ij / eps)``                      (``log K^T u_k``)
      ``log p = sum_k lambda_k L_k``,  ``G_k = log p - L_k``   (columns: ``P_k^T 1 = p``)

  and the barycenter returned is ``p = exp(sum_k lambda_k L_k)`` after the last row projection:
  POT's ``ot.bregman.barycenter(A, M, reg, weights, method="sinkhorn_log")`` (whose ``A`` is
  ``[n, k]``: the transpose of our ``weights_list``). It is not normalised: at convergence it
  sums to 1 up to ``tol``.
* :func:`free_support_barycenter`, **free support**. The measures are point clouds ``Y_k``
  with weights ``a_k``, the barycenter ``n`` points ``X`` with fixed weights ``b``; it
  minimises ``sum_k lambda_k W_2^2(X, Y_k)`` by Cuturi & Doucet's fixed point (POT's
  ``ot.lp.free_support_barycenter``): solve OT from ``X`` to every ``Y_k`` and move each point
  to ``sum_k lambda_k (P_k Y_k)_i / b_i``, the weighted barycentric projection.

Gradients (both solvers) are implicit: the solver iterates a map ``s <- T(s, theta)`` to its
fixed point inside a ``lax.while_loop`` (which reverse mode cannot differentiate), and the
fixed point is differentiated by the implicit function theorem, ``ds* = (I - dT/ds)^-1
dT/dtheta``; the backward pass solves ``w = v + (dT/ds)^T w`` by the same fixed-point iteration
(a Neumann series, which converges at the rate of the forward iterations), with at most
``max_iters`` steps and a relative tolerance. Memory does not grow with the iterations. The
helper is :func:`_fixed_point`. ``custom_vjp``: reverse mode only.

``jit``: the public functions validate in Python, then call private jitted cores
(``_sinkhorn_barycenter_core``, ``_free_support_core``) with a hashable record of static
options.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from alignment._src import checks
from alignment._src.assignment import linear_assignment
from alignment._src.sinkhorn import _lse, _safe_log, sinkhorn

__all__ = [
    "FreeSupportBarycenterOutput",
    "SinkhornBarycenterOutput",
    "free_support_barycenter",
    "sinkhorn_barycenter",
]


class SinkhornBarycenterOutput(NamedTuple):
    """The result of :func:`sinkhorn_barycenter`.

    Attributes:
      barycenter: Array ``[m]``, the entropic barycenter ``p`` (the common column marginal of
        the ``k`` plans; sums to 1 up to ``tol``).
      n_iters: Int scalar, Bregman-projection iterations run.
      marginal_error: Scalar, ``sum_k lambda_k ||P_k^T 1 - p||_1`` at the last check (rows are
        exact after the row projection).
      converged: Bool scalar, ``marginal_error < tol``.
    """

    barycenter: jax.Array
    n_iters: jax.Array
    marginal_error: jax.Array
    converged: jax.Array


class FreeSupportBarycenterOutput(NamedTuple):
    """The result of :func:`free_support_barycenter`.

    Attributes:
      barycenter: Array ``[n, d]``, the support points ``X`` (their weights are ``b``).
      n_iters: Int scalar, fixed-point iterations run (each solves ``k`` OT problems).
      displacement: Scalar, ``sum_i ||X_i^new - X_i||^2`` of the last iteration (POT's
        stopping criterion), over the points of positive weight.
      converged: Bool scalar, ``displacement <= tol`` (and, in the entropic mode, every
        Sinkhorn solve of the last iteration converged).
    """

    barycenter: jax.Array
    n_iters: jax.Array
    displacement: jax.Array
    converged: jax.Array


# --------------------------------------------------------------------------------------------
# Implicit differentiation of a fixed point.
# --------------------------------------------------------------------------------------------


def _l1(tree) -> jax.Array:
    return sum(jnp.sum(jnp.abs(leaf)) for leaf in jax.tree.leaves(tree))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 4))
def _fixed_point(step, state, theta, tol, max_iters: int):
    """Identity on a solved fixed point ``state = step(state, theta)``, differentiated implicitly.

    The VJP solves ``w = v + (d step / d state)^T w`` by fixed-point iteration from ``w = v``
    (stopping when the L1 change is below ``tol`` times ``|w|_1``, or after ``max_iters``
    steps; NaN stops it) and returns ``(d step / d theta)^T w``. ``state`` gets no cotangent:
    the solution does not depend on where the solver started. Directions in which ``step``
    has the eigenvalue 1 (the gauge of the Bregman scalings) must be invisible to the output;
    they are for both solvers here.
    """
    del step, theta, tol, max_iters
    return state


def _fixed_point_fwd(step, state, theta, tol, max_iters):
    return state, (state, theta, tol)


def _fixed_point_bwd(step, max_iters, res, v):
    state, theta, tol = res
    _, vjp_state = jax.vjp(lambda s: step(s, theta), state)
    inf = jnp.asarray(jnp.inf, tol.dtype)

    def body(carry):
        w, it, _ = carry
        w_new = jax.tree.map(jnp.add, v, vjp_state(w)[0])
        change = _l1(jax.tree.map(jnp.subtract, w_new, w))
        scale = _l1(w_new)
        return w_new, it + 1, change / jnp.where(scale > 0, scale, 1.0)

    def cond(carry):
        _, it, rel = carry
        return (it < max_iters) & (rel >= tol)  # also stops on NaN

    w, _, _ = jax.lax.while_loop(cond, body, (v, jnp.asarray(0, jnp.int32), inf))
    _, vjp_theta = jax.vjp(lambda t: step(state, t), theta)
    (g_theta,) = vjp_theta(w)
    return jax.tree.map(jnp.zeros_like, state), g_theta, jnp.zeros_like(tol)


_fixed_point.defvjp(_fixed_point_fwd, _fixed_point_bwd)


# --------------------------------------------------------------------------------------------
# Validation shared by both solvers.
# --------------------------------------------------------------------------------------------


def _stack(value, name: str, ndim: int, what: str) -> jax.Array:
    """An array, or a list / tuple of equal-shape arrays, as one float array of rank ``ndim``."""
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError(f"`{name}` must be non-empty, got an empty {type(value).__name__}.")
        items = [checks.as_float_array(v, f"{name}[{i}]") for i, v in enumerate(value)]
        shapes = {v.shape for v in items}
        if len(shapes) != 1:
            raise ValueError(
                f"`{name}` entries must share one shape, got {[v.shape for v in items]}."
            )
        value = jnp.stack(items)
    arr = checks.as_float_array(value, name)
    if arr.ndim != ndim:
        raise ValueError(f"`{name}` must be a {ndim}-D array of shape {what}, got {arr.shape}.")
    checks.check_non_empty(arr, name)
    return arr


def _lambdas(lambdas, k: int, dtype) -> jax.Array:
    """Barycentric coordinates ``[k]`` (uniform when ``None``); concrete ones checked."""
    if lambdas is None:
        return jnp.full((k,), 1.0 / k, dtype)
    lam = checks.as_float_array(lambdas, "lambdas")
    if lam.shape != (k,):
        raise ValueError(
            f"`lambdas` must have shape ({k},), one coordinate per measure (k = {k}), got "
            f"{lam.shape}."
        )
    if checks.is_concrete(lam):
        arr = np.asarray(lam, np.float64)
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ValueError(f"`lambdas` must be finite and non-negative, got {arr.tolist()}.")
        total = float(arr.sum())
        if not np.isclose(total, 1.0, rtol=checks.mass_rtol(lam.dtype), atol=0.0):
            raise ValueError(f"`lambdas` must sum to 1, got sum {total!r}.")
    return lam.astype(dtype)


def _check_rows(weights, lam, name: str, rtol: float, *, vector: bool = False) -> None:
    """Concrete rows of ``weights`` whose ``lam > 0``: finite, non-negative, summing to 1."""
    if not checks.is_concrete(weights):
        return
    w = np.asarray(weights, np.float64)
    rows = np.arange(w.shape[0])
    if lam is not None and checks.is_concrete(lam):
        rows = rows[np.asarray(lam, np.float64) > 0]  # measures of zero lambda are never read
    for r in rows:
        row = w[r]
        what = f"`{name}`" if w.shape[0] == 1 and vector else f"`{name}` row {r}"
        if not np.all(np.isfinite(row)):
            raise ValueError(f"{what} must be finite, got {row[~np.isfinite(row)][:3]}.")
        if np.any(row < 0):
            raise ValueError(f"{what} must be non-negative, got min {row.min()!r}.")
        if not np.isclose(row.sum(), 1.0, rtol=rtol, atol=0.0):
            raise ValueError(f"{what} must sum to 1 (a probability vector), got sum {row.sum()!r}.")


def _bad_rows(weights, active, rtol) -> jax.Array:
    """Traced flag: an active row that is negative, non-finite or does not sum to 1."""
    ok = jnp.isfinite(weights) & (weights >= 0)
    bad_entry = jnp.any(active[:, None] & ~ok)
    sums = jnp.sum(jnp.where(active[:, None], weights, 0.0), axis=1)
    return bad_entry | jnp.any(active & ~(jnp.abs(sums - 1.0) <= rtol))


def _bad_lambdas(lam, rtol) -> jax.Array:
    return (
        ~jnp.all(jnp.isfinite(lam) & (lam >= 0))
        | ~(jnp.abs(jnp.sum(lam) - 1.0) <= rtol)
        | ~jnp.any(lam > 0)
    )


def _cast_floats(tree, dtype: str):
    def one(v):
        return v.astype(dtype) if jnp.issubdtype(v.dtype, jnp.floating) else v

    return jax.tree.map(one, tree)


# --------------------------------------------------------------------------------------------
# Fixed support: iterative Bregman projections in the log domain.
# --------------------------------------------------------------------------------------------


class _IBPOptions(NamedTuple):
    max_iters: int
    inner_iters: int
    mass_rtol: float
    out_dtype: str


class _IBPState(NamedTuple):
    g: jax.Array  # [k, m] log column scalings
    it: jax.Array
    err: jax.Array


def _ibp_parts(g, theta):
    """``(L, log p)``: ``L_kj = LSE_i(F_ki - C_ij / eps)`` after the row projection, and
    ``log p = sum_k lambda_k L_k``."""
    a, cost, lam, eps = theta
    ce = cost / eps
    f = _safe_log(a) - _lse(g[:, None, :] - ce[None], axis=2)  # [k, n]
    log_ku = _lse(f[:, :, None] - ce[None], axis=1)  # [k, m]
    active = (lam > 0)[:, None]
    log_bar = jnp.sum(jnp.where(active, lam[:, None] * log_ku, 0.0), axis=0)
    return log_ku, log_bar


def _ibp_step(g, theta):
    """One iteration ``G <- log p - L`` (the map whose fixed point is differentiated)."""
    log_ku, log_bar = _ibp_parts(g, theta)
    return log_bar[None, :] - log_ku


def _ibp_solve(theta, tol, opts: _IBPOptions) -> _IBPState:
    _, cost, lam, _ = theta
    k, m = lam.shape[0], cost.shape[1]
    dtype = cost.dtype

    def block(s: _IBPState) -> _IBPState:
        def body(j, carry):
            g, err = carry
            log_ku, log_bar = _ibp_parts(g, theta)
            marg = jnp.exp(g + log_ku)  # column marginals of the row-projected plans
            dev = jnp.sum(jnp.abs(marg - jnp.exp(log_bar)[None, :]), axis=1)
            e = jnp.sum(jnp.where(lam > 0, lam * dev, 0.0))
            live = s.it + j < opts.max_iters
            return jnp.where(live, log_bar[None, :] - log_ku, g), jnp.where(live, e, err)

        g, err = jax.lax.fori_loop(0, opts.inner_iters, body, (s.g, s.err))
        it = jnp.minimum(s.it + opts.inner_iters, opts.max_iters)
        return _IBPState(g, it, err)

    def cond(s: _IBPState):
        return (s.it < opts.max_iters) & (s.err >= tol)  # also stops on NaN

    state0 = _IBPState(
        jnp.zeros((k, m), dtype), jnp.asarray(0, jnp.int32), jnp.asarray(jnp.inf, dtype)
    )
    return jax.lax.while_loop(cond, block, state0)


@functools.partial(jax.jit, static_argnames=("opts",))
def _sinkhorn_barycenter_core(weights, cost, lam, epsilon, tol, opts: _IBPOptions):
    cdt = checks.compute_dtype(opts.out_dtype)
    weights, cost, lam = weights.astype(cdt), cost.astype(cdt), lam.astype(cdt)
    eps, tol = jnp.asarray(epsilon, cdt), jnp.asarray(tol, cdt)
    n = weights.shape[1]
    active = lam > 0
    bad = checks.invalid_scalar(eps) | checks.invalid_scalar(tol)
    bad = bad | _bad_lambdas(lam, opts.mass_rtol) | _bad_rows(weights, active, opts.mass_rtol)
    # measures of zero lambda, and rows of the cost no active measure puts mass on, are never
    # read (double where: zero, finite gradients)
    a = jnp.where(active[:, None], weights, 1.0 / n)
    a = a / jnp.sum(a, axis=1, keepdims=True)  # exact masses: rounding would stall the loop
    used = jnp.any(active[:, None] & (a > 0), axis=0)
    cost = jnp.where(used[:, None], cost, 0.0)
    theta = (a, cost, lam, eps)
    sol = _ibp_solve(jax.lax.stop_gradient(theta), jax.lax.stop_gradient(tol), opts)
    g = _fixed_point(_ibp_step, sol.g, theta, tol, opts.max_iters)
    _, log_bar = _ibp_parts(g, theta)
    err = jax.lax.stop_gradient(sol.err)
    out = SinkhornBarycenterOutput(
        barycenter=jnp.exp(log_bar), n_iters=sol.it, marginal_error=err, converged=err < tol
    )
    return _cast_floats(checks.nan_if(bad, out), opts.out_dtype)


_IBP_HINT = "raise max_iters or epsilon, or loosen tol"


def sinkhorn_barycenter(
    weights_list: jax.typing.ArrayLike,
    cost: jax.typing.ArrayLike,
    *,
    lambdas: jax.typing.ArrayLike | None = None,
    epsilon: jax.typing.ArrayLike,
    max_iters: int = 2000,
    tol: jax.typing.ArrayLike = 1e-4,
    inner_iters: int = 10,
) -> SinkhornBarycenterOutput:
    """Fixed-support entropic Wasserstein barycenter by iterative Bregman projections.

    Finds the histogram ``p`` minimising ``sum_k lambda_k OT_eps(a_k, p)``, where
    ``OT_eps(a, p) = min eps KL(P | exp(-C / eps))`` over plans ``P`` with ``P 1 = a`` and
    ``P^T 1 = p`` (Benamou et al., 2015), by their iterative Bregman projections in the log
    domain (see the module docstring for the updates). ``weights_list[k]`` lives on the rows
    of ``cost``, the barycenter on its columns; for a common support ``cost`` is square.

    Layout: ``weights_list`` is ``[k, n]``, one histogram per row. POT's
    ``ot.bregman.barycenter(A, M, reg, weights)`` takes ``A`` as ``[n, k]`` (one histogram per
    column): pass ``weights_list.T`` there. ``epsilon`` is POT's ``reg``, ``lambdas`` its
    ``weights``; with ``method="sinkhorn_log"`` POT runs the same iterations (its stopping
    criterion differs: the spread of the marginals across measures, every 10 iterations).

    Numerics: all updates are log-sum-exps, so small ``epsilon`` stays finite (slow to
    converge: the number of iterations grows like ``1 / epsilon``). The barycenter is blurred
    by the regularisation: for identical inputs ``a`` it is ``K^T (a / K 1)``,
    ``K = exp(-C / eps)``, which tends to ``a`` as ``epsilon -> 0``. Zero entries of a
    histogram are exact zeros of its plan. The histograms are divided by their sums inside (they
    must sum to 1 up to the dtype's tolerance), so the rounding of low-precision weights cannot
    stall the iterations; gradients in ``weights_list`` and ``lambdas`` are meaningful along
    zero-sum directions only. Memory ``O(k n m)`` per iteration.

    Gradients: implicit (the fixed point of the iterations is differentiated, see the module
    docstring; the backward pass iterates with the same ``max_iters`` and relative tolerance
    ``tol``), in ``weights_list``, ``cost``, ``lambdas`` and ``epsilon``; reverse mode only.

    Args:
      weights_list: Array ``[k, n]`` (or a list of ``k`` arrays ``[n]``): the histograms, each
        non-negative and summing to 1.
      cost: Array ``[n, m]``: cost between the histograms' support (rows) and the
        barycenter's support (columns); ``[n, n]`` for a common support.
      lambdas: Barycentric coordinates ``[k]``, non-negative, summing to 1; ``None`` for
        uniform ``1 / k``. A histogram of zero ``lambda`` is never read.
      epsilon: Positive entropic regularisation (traced, differentiable), in units of the cost.
      max_iters: Iteration budget (static).
      tol: Stop when ``marginal_error < tol`` (traced), checked every ``inner_iters``.
      inner_iters: Iterations between convergence checks (static).

    Returns:
      A :class:`SinkhornBarycenterOutput` (``barycenter [m]``, scalars ``n_iters``,
      ``marginal_error``, ``converged``).

    Raises:
      ValueError: ``weights_list`` not a non-empty 2-D real array; ``cost`` not 2-D with ``n``
        rows; ``lambdas`` not of shape ``[k]``; concrete histograms (of positive ``lambda``)
        or ``lambdas`` negative, non-finite or not summing to 1; ``epsilon`` or ``tol`` not
        finite and positive or array-valued; bad iteration counts.

    Bad input: shapes, dtypes (complex raises) and array-valued scalars are checked at trace
    time (``ValueError`` naming the argument, also under ``jit``/``vmap``). Concrete bad values
    raise (above); "sums to 1" allows a relative error set by the dtype (``1e-4`` in float32).
    Traced bad values give a NaN ``barycenter`` and ``marginal_error``, ``n_iters = -1`` and
    ``converged = False``. NaN in the cost (on a row some histogram puts mass on) propagates;
    histograms of zero ``lambda`` and cost rows that no histogram of positive ``lambda`` puts
    mass on are never read (NaN, inf or 1e30 there change nothing). float16 / bfloat16 run in
    float32 and return the input dtype. A concrete call that ends unconverged warns
    (:class:`ConvergenceWarning`). See docs/conventions.md.

    References:
      Benamou, Carlier, Cuturi, Nenna & Peyre, "Iterative Bregman Projections for Regularized
      Transportation Problems", SIAM J. Sci. Comput. 2015.
      Cuturi & Doucet, "Fast Computation of Wasserstein Barycenters", ICML 2014.

    Examples:
      >>> import jax.numpy as jnp
      >>> grid = jnp.arange(5.0)
      >>> cost = (grid[:, None] - grid[None, :]) ** 2
      >>> hists = jnp.array([[1.0, 0, 0, 0, 0], [0, 0, 0, 0, 1.0]])  # Diracs at 0 and 4
      >>> out = sinkhorn_barycenter(hists, cost, epsilon=0.1)
      >>> out.barycenter.round(3).tolist(), bool(out.converged)
      ([0.0, 0.0, 1.0, 0.0, 0.0], True)
    """
    weights = _stack(weights_list, "weights_list", 2, "[k, n]")
    cost = checks.as_float_array(cost, "cost")
    checks.check_matrix(cost, "cost", "[n, m]")
    k, n = weights.shape
    if cost.shape[0] != n:
        raise ValueError(
            f"`cost` must have shape [n, m] with n = {n} rows (the support of `weights_list`, "
            f"shape {weights.shape}), got {cost.shape}."
        )
    out_dtype = jnp.result_type(weights, cost)
    cdt = checks.compute_dtype(out_dtype)
    rtol = max(checks.mass_rtol(weights.dtype), checks.mass_rtol(cdt))
    lam = _lambdas(lambdas, k, cdt)
    _check_rows(weights, lam, "weights_list", rtol)
    checks.scalar(epsilon, "epsilon", "positive")
    checks.scalar(tol, "tol", "positive")
    max_iters = checks.static_int(max_iters, "max_iters", minimum=1)
    inner = checks.static_int(inner_iters, "inner_iters", minimum=1)
    opts = _IBPOptions(max_iters, min(inner, max_iters), rtol, jnp.dtype(out_dtype).name)
    out = _sinkhorn_barycenter_core(weights, cost, lam, epsilon, tol, opts)
    checks.warn_unconverged(out.converged, "sinkhorn_barycenter", _IBP_HINT)
    return out


# --------------------------------------------------------------------------------------------
# Free support: Cuturi & Doucet's fixed point.
# --------------------------------------------------------------------------------------------


class _FreeOptions(NamedTuple):
    exact: bool  # epsilon None: assignments
    max_iters: int
    ot_max_iters: int
    mass_rtol: float
    out_dtype: str


class _FreeState(NamedTuple):
    x: jax.Array
    it: jax.Array
    disp: jax.Array
    ot_ok: jax.Array
    cols: jax.Array | None  # exact mode: the last assignments [k, n]


def _sqdist(x, y):
    """``||x_i - y_j||^2`` by differences (exact at ``x_i == y_j``, smooth everywhere)."""
    return jnp.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)


def _assign(x, theta):
    """Exact mode: the assignment ``cols [k, n]`` of the points ``x`` to each measure (no
    derivative: it is piecewise constant) and whether every active problem was solved."""
    ys, a, lam, *_ = theta
    xs = jax.lax.stop_gradient(x)

    def one(args):
        yk, ak = args
        cost = jnp.where((ak > 0)[None, :], _sqdist(xs, yk), jnp.inf)  # padding: forbidden
        out = linear_assignment(cost)
        return out.cols, out.status == 0

    cols, oks = jax.lax.map(one, (jax.lax.stop_gradient(ys), a))  # one solver, compiled once
    return cols, jnp.all(jnp.where(lam > 0, oks, True))


def _combine(targets, oks, theta):
    """``X_i = sum_k lambda_k targets_ki`` over the active measures; padding keeps ``init``."""
    _, _, lam, b, init, *_ = theta
    active = lam > 0
    ok = jnp.all(jnp.where(active, oks, True))
    new = jnp.sum(jnp.where(active[:, None, None], lam[:, None, None] * targets, 0.0), axis=0)
    return jnp.where((b > 0)[:, None], new, init), ok  # inactive measures never enter


def _gather(cols, ok, theta):
    """Exact mode: ``sum_k lambda_k Y_k[cols_k]`` (NaN where an assignment failed)."""
    ys = theta[0]
    idx = jnp.clip(cols, 0, ys.shape[1] - 1)
    targets = jnp.take_along_axis(ys, idx[:, :, None], axis=1)  # [k, n, d]
    targets = jnp.where((cols >= 0)[:, :, None], targets, jnp.nan)
    return _combine(targets, jnp.ones(cols.shape[:1], bool), theta)[0], ok


def _entropic_map(x, theta, opts: _FreeOptions):
    """Entropic mode: one update ``X <- sum_k lambda_k (P_k Y_k) / b``; returns ``(X, ot_ok)``."""
    ys, a, _, b, _, eps, ot_tol = theta
    sb = b > 0
    xs = jnp.where(sb[:, None], x, 0.0)

    def one(yk, ak):
        cost = _sqdist(xs, yk)
        out = sinkhorn(cost, b, ak, epsilon=eps, tol=ot_tol, max_iters=opts.ot_max_iters)
        return (out.plan @ yk) / jnp.where(sb, b, 1.0)[:, None], out.converged

    targets, oks = jax.vmap(one)(ys, a)  # [k, n, d], [k]
    return _combine(targets, oks, theta)


def _entropic_step(x, theta, *, opts):
    return _entropic_map(x, theta, opts)[0]


@functools.partial(jax.jit, static_argnames=("opts",))
def _free_support_core(ys, a, init, lam, b, eps, tol, ot_tol, opts: _FreeOptions):
    cdt = checks.compute_dtype(opts.out_dtype)
    f = lambda v: None if v is None else jnp.asarray(v, cdt)
    ys, a, init, lam, b, eps, tol, ot_tol = map(f, (ys, a, init, lam, b, eps, tol, ot_tol))
    k, m = a.shape
    n = init.shape[0]
    rtol = opts.mass_rtol
    active = lam > 0
    bad = checks.invalid_scalar(tol) | _bad_lambdas(lam, rtol) | _bad_rows(a, active, rtol)
    bad = bad | _bad_rows(b[None, :], jnp.ones((1,), bool), rtol)
    if opts.exact:
        # assignments: every active measure holds exactly n points of weight 1 / n, b = 1 / n
        uniform = jnp.abs(a * n - 1.0) <= rtol
        counts = jnp.sum(a > 0, axis=1)
        bad = bad | jnp.any(active & ((counts != n) | ~jnp.all((a == 0) | uniform, axis=1)))
        bad = bad | ~jnp.all(jnp.abs(b * n - 1.0) <= rtol)
    else:
        bad = bad | checks.invalid_scalar(eps) | checks.invalid_scalar(ot_tol)
    # padding: points of zero weight, measures of zero lambda (double where: finite gradients)
    a = jnp.where(active[:, None], a, 1.0 / m)
    a = a / jnp.sum(a, axis=1, keepdims=True)  # exact masses (rounding of low precisions)
    b = b / jnp.sum(b)
    ys = jnp.where((a > 0)[:, :, None] & active[:, None, None], ys, 0.0)
    theta = (ys, a, lam, b, init, eps, ot_tol)
    sg = jax.lax.stop_gradient
    theta_sg = sg(theta)
    sb = b > 0

    def update(x):
        if opts.exact:
            cols, ok = _assign(x, theta_sg)
            return _gather(cols, ok, theta_sg)[0], ok, cols
        x_new, ok = _entropic_map(x, theta_sg, opts)
        return x_new, ok, None

    def body(s: _FreeState) -> _FreeState:
        x_new, ok, cols = update(s.x)
        disp = jnp.sum(jnp.where(sb[:, None], (x_new - s.x) ** 2, 0.0))
        return _FreeState(x_new, s.it + 1, disp, ok, cols)

    def cond(s: _FreeState):
        return (s.it < opts.max_iters) & (s.disp > tol)  # also stops on NaN

    inf = jnp.asarray(jnp.inf, cdt)
    cols0 = jnp.zeros((k, n), jnp.int32) if opts.exact else None
    state0 = _FreeState(sg(init), jnp.asarray(0, jnp.int32), inf, jnp.asarray(True), cols0)
    s = jax.lax.while_loop(cond, body, state0)
    if opts.exact:
        # the assignments are piecewise constant: the fixed point is sum_k lambda_k Y_k[cols_k]
        # with the last assignments held fixed, differentiated directly
        x = _gather(s.cols, s.ot_ok, theta)[0]
    else:
        step = functools.partial(_entropic_step, opts=opts)
        adj_tol = jnp.asarray(max(1e-10, 100.0 * float(jnp.finfo(cdt).eps)), cdt)
        x = _fixed_point(step, s.x, theta, adj_tol, opts.max_iters)
    disp = sg(s.disp)
    out = FreeSupportBarycenterOutput(
        barycenter=x, n_iters=s.it, displacement=disp, converged=(disp <= tol) & s.ot_ok
    )
    return _cast_floats(checks.nan_if(bad, out), opts.out_dtype)


def _point_measures(points_list, weights_list):
    """``(Y [k, m, d], A [k, m])`` from an array or a list of clouds of different sizes."""
    if isinstance(points_list, list | tuple):
        if not points_list:
            raise ValueError("`points_list` must be non-empty, got an empty list.")
        clouds = []
        for i, p in enumerate(points_list):
            arr = checks.as_float_array(p, f"points_list[{i}]")
            if arr.ndim != 2 or arr.shape[0] == 0:
                raise ValueError(
                    f"`points_list[{i}]` must be a non-empty 2-D array [m_i, d], got {arr.shape}."
                )
            clouds.append(arr)
        dims = {c.shape[1] for c in clouds}
        if len(dims) != 1:
            raise ValueError(
                f"`points_list` clouds must share the feature size d, got shapes "
                f"{[c.shape for c in clouds]}."
            )
        if weights_list is not None and (
            not isinstance(weights_list, list | tuple) or len(weights_list) != len(clouds)
        ):
            raise ValueError(
                f"`weights_list` must be None or a list of {len(clouds)} arrays (one per cloud "
                f"of `points_list`), got {type(weights_list).__name__}."
            )
        size = max(c.shape[0] for c in clouds)
        dtype = jnp.result_type(*clouds)
        ys, ws = [], []
        for i, c in enumerate(clouds):
            mi = c.shape[0]
            if weights_list is None or weights_list[i] is None:
                w = jnp.full((mi,), 1.0 / mi, dtype)
            else:
                w = checks.as_float_array(weights_list[i], f"weights_list[{i}]")
                if w.shape != (mi,):
                    raise ValueError(
                        f"`weights_list[{i}]` must have shape ({mi},) to match "
                        f"`points_list[{i}]` {c.shape}, got {w.shape}."
                    )
            pad = size - mi
            ys.append(jnp.concatenate([c.astype(dtype), jnp.zeros((pad, c.shape[1]), dtype)]))
            ws.append(jnp.concatenate([w, jnp.zeros((pad,), w.dtype)]))
        return jnp.stack(ys), jnp.stack(ws)
    ys = checks.as_float_array(points_list, "points_list")
    if ys.ndim != 3 or ys.shape[0] == 0 or ys.shape[1] == 0:
        raise ValueError(
            f"`points_list` must be a non-empty 3-D array [k, m, d] (or a list of [m_i, d] "
            f"arrays), got {ys.shape}."
        )
    k, m = ys.shape[:2]
    if weights_list is None:
        return ys, jnp.full((k, m), 1.0 / m, ys.dtype)
    a = _stack(weights_list, "weights_list", 2, "[k, m]")
    if a.shape != (k, m):
        raise ValueError(
            f"`weights_list` must have shape ({k}, {m}) to match `points_list` {ys.shape}, got "
            f"{a.shape}."
        )
    return ys, a


_FREE_HINT = "raise max_iters (or ot_max_iters), or loosen tol (or ot_tol)"


def free_support_barycenter(
    points_list,
    weights_list=None,
    *,
    init: jax.typing.ArrayLike,
    lambdas: jax.typing.ArrayLike | None = None,
    b: jax.typing.ArrayLike | None = None,
    epsilon: jax.typing.ArrayLike | None = None,
    max_iters: int = 100,
    tol: jax.typing.ArrayLike = 1e-7,
    ot_max_iters: int = 1000,
    ot_tol: jax.typing.ArrayLike = 1e-4,
) -> FreeSupportBarycenterOutput:
    """Free-support Wasserstein barycenter of point clouds (Cuturi & Doucet's fixed point).

    Minimises ``sum_k lambda_k W_2^2(nu, mu_k)`` over measures ``nu = sum_i b_i delta_{X_i}``
    with fixed weights ``b``, moving the points ``X``: starting from ``init``, every iteration
    solves the OT problem from ``(X, b)`` to each ``(Y_k, a_k)`` for the squared Euclidean
    cost and sets ``X_i <- sum_k lambda_k (P_k Y_k)_i / b_i`` (the weighted barycentric
    projection), until the squared displacement ``sum_i ||X_i^new - X_i||^2 <= tol`` or
    ``max_iters`` iterations: POT's ``ot.lp.free_support_barycenter`` (``numItermax``,
    ``stopThr``), a local method whose result depends on ``init``.

    The OT solver:

    * ``epsilon=None`` (default): exact OT as a linear assignment (:func:`linear_assignment`,
      Hungarian), which is exact OT when the measures are uniform with equal sizes. This mode
      therefore needs every measure (of positive ``lambda``) to hold exactly ``n`` points of
      positive weight, all ``1 / n``, and ``b`` uniform: then it is POT's
      ``ot.lp.free_support_barycenter`` (whose network simplex finds the same plan when the
      optimum is unique). Padding to a common size by zero weights is allowed.
    * ``epsilon > 0``: entropic OT by :func:`sinkhorn` (log domain, ``ot_max_iters``,
      ``ot_tol``), any sizes and weights: POT's ``ot.bregman.free_support_sinkhorn_barycenter``
      with ``reg = epsilon`` (in units of squared distance). The plans are blurred, which
      pulls the points towards the measures' means as ``epsilon`` grows. The fixed point can
      converge slowly for intermediate ``epsilon`` (check ``converged``).

    The weights (``weights_list``, ``b``) are divided by their sums inside (they must sum to 1
    up to the dtype's tolerance), so gradients in them are meaningful along zero-sum
    directions only.

    Gradients: implicit differentiation of the fixed point ``X = Phi(X, theta)`` (module
    docstring), in ``points_list``, ``weights_list``, ``lambdas``, ``b``, ``epsilon``. In the
    exact mode the assignments are piecewise constant, so the gradient in the points is that of
    ``sum_k lambda_k Y_k[sigma_k]`` with the assignments ``sigma_k`` held fixed, and zero in
    the weights; in the entropic mode the Sinkhorn plans are differentiated (implicitly) too.

    Args:
      points_list: Array ``[k, m, d]`` (clouds padded to a common size ``m`` with zero
        weights), or a list of ``k`` arrays ``[m_i, d]`` of any sizes (padded here).
      weights_list: ``None`` (uniform over each cloud, ``1 / m`` for an array, ``1 / m_i``
        for a list), an array ``[k, m]``, or a list of ``k`` arrays ``[m_i]`` (``None``
        entries uniform). Non-negative, each summing to 1; zero weights are padding.
      init: Array ``[n, d]``, the starting support of the barycenter.
      lambdas: Barycentric coordinates ``[k]``, non-negative, summing to 1; ``None`` for
        uniform. A measure of zero ``lambda`` is never read.
      b: Weights of the barycenter's points ``[n]``, summing to 1; ``None`` for uniform. Points
        of zero weight (entropic mode only) are padding: they keep their ``init`` value.
      epsilon: ``None`` for exact OT (assignments), or a positive entropic regularisation
        (traced, differentiable).
      max_iters: Fixed-point iterations at most (static; POT's ``numItermax``).
      tol: Stop when the squared displacement is ``<= tol`` (traced; POT's ``stopThr``).
      ot_max_iters: Sinkhorn iterations at most per OT solve (static; entropic mode).
      ot_tol: Sinkhorn's tolerance on the L1 marginal error (traced; entropic mode).

    Returns:
      A :class:`FreeSupportBarycenterOutput` (``barycenter [n, d]``, scalars ``n_iters``,
      ``displacement``, ``converged``).

    Raises:
      ValueError: ``points_list`` not ``[k, m, d]`` (or a list of ``[m_i, d]``) with the
        ``d`` of ``init``; ``weights_list``, ``lambdas`` or ``b`` of the wrong shape; concrete
        weights, ``lambdas`` or ``b`` negative, non-finite or not summing to 1; in the exact
        mode, concrete measures or ``b`` that are not uniform over ``n`` points; ``epsilon``,
        ``tol`` or ``ot_tol`` not finite and positive or array-valued; bad iteration counts.

    Bad input: shapes, dtypes (complex raises) and array-valued scalars are checked at trace
    time (``ValueError`` naming the argument, also under ``jit``/``vmap``). Concrete bad values
    raise (above). Traced bad values (the exact mode's requirements included) give a NaN
    ``barycenter`` and ``displacement``, ``n_iters = -1`` and ``converged = False``. NaN in
    the points of positive weight (or in ``init``) propagates; points of zero weight and
    measures of zero ``lambda`` are never read (NaN, inf or 1e30 there change nothing).
    float16 / bfloat16 run in float32 and return the input dtype. A concrete call that ends
    unconverged warns (:class:`ConvergenceWarning`). See docs/conventions.md.

    References:
      Cuturi & Doucet, "Fast Computation of Wasserstein Barycenters", ICML 2014 (Algorithm 2,
      with step 1 and fixed weights).
      Alvarez-Esteban, del Barrio, Cuesta-Albertos & Matran, "A fixed-point approach to
      barycenters in Wasserstein space", J. Math. Anal. Appl. 2016.

    Examples:
      >>> import jax.numpy as jnp
      >>> clouds = jnp.array([[[0.0], [2.0]], [[4.0], [6.0]]])  # two clouds of 2 points
      >>> out = free_support_barycenter(clouds, init=jnp.array([[0.0], [1.0]]))
      >>> out.barycenter.tolist(), bool(out.converged)
      ([[2.0], [4.0]], True)
    """
    ys, a = _point_measures(points_list, weights_list)
    k, m, d = ys.shape
    init = checks.as_float_array(init, "init")
    if init.ndim != 2 or init.shape[0] == 0 or init.shape[1] != d:
        raise ValueError(
            f"`init` must be a non-empty 2-D array [n, d] with d = {d} (the feature size of "
            f"`points_list`, shape {ys.shape}), got {init.shape}."
        )
    n = init.shape[0]
    out_dtype = jnp.result_type(ys, init)
    cdt = checks.compute_dtype(out_dtype)
    rtol = max(checks.mass_rtol(a.dtype), checks.mass_rtol(cdt))
    lam = _lambdas(lambdas, k, cdt)
    _check_rows(a, lam, "weights_list", rtol)
    exact = epsilon is None
    if b is None:
        bw = jnp.full((n,), 1.0 / n, cdt)
    else:
        bw = checks.as_float_array(b, "b")
        if bw.shape != (n,):
            raise ValueError(
                f"`b` must have shape ({n},) to match `init` {init.shape}, got {bw.shape}."
            )
        _check_rows(bw[None, :], None, "b", rtol, vector=True)
    checks.scalar(tol, "tol", "positive")
    max_iters = checks.static_int(max_iters, "max_iters", minimum=1)
    ot_max_iters = checks.static_int(ot_max_iters, "ot_max_iters", minimum=1)
    if exact:
        if m < n:
            raise ValueError(
                f"exact mode (epsilon=None) assigns the n = {n} points of `init` to n points of "
                f"each measure, but `points_list` {ys.shape} has only m = {m}; pass `epsilon` "
                "for entropic OT (any sizes)."
            )
        _check_exact(a, lam, bw, n, rtol)
        eps = otol = None
    else:
        checks.scalar(epsilon, "epsilon", "positive")
        checks.scalar(ot_tol, "ot_tol", "positive")
        eps, otol = epsilon, ot_tol
    opts = _FreeOptions(exact, max_iters, ot_max_iters, rtol, jnp.dtype(out_dtype).name)
    out = _free_support_core(ys, a, init, lam, bw, eps, tol, otol, opts)
    checks.warn_unconverged(out.converged, "free_support_barycenter", _FREE_HINT)
    return out


def _check_exact(a, lam, b, n: int, rtol: float) -> None:
    """Concrete inputs of the exact mode: uniform measures of n points and uniform ``b``."""
    hint = "pass `epsilon` for entropic OT (any sizes and weights)"
    if checks.is_concrete(b):
        bw = np.asarray(b, np.float64)
        if not np.all(np.abs(bw * n - 1.0) <= rtol):
            raise ValueError(
                f"exact mode (epsilon=None) needs uniform `b` (all 1 / n, n = {n}), got "
                f"{bw.tolist()}; {hint}."
            )
    if not checks.is_concrete(a):
        return
    w = np.asarray(a, np.float64)
    rows = np.arange(w.shape[0])
    if checks.is_concrete(lam):
        rows = rows[np.asarray(lam, np.float64) > 0]
    for r in rows:
        pos = w[r] > 0
        if pos.sum() != n or not np.all(np.abs(w[r][pos] * n - 1.0) <= rtol):
            raise ValueError(
                f"exact mode (epsilon=None) solves OT as an assignment: measure {r} must hold "
                f"exactly n = {n} points (the size of `init`) of weight 1 / n, got "
                f"{int(pos.sum())} points of positive weight; {hint}."
            )
