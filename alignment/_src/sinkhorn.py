"""Entropic optimal transport: log-domain Sinkhorn (balanced, unbalanced, online), divergence.

Conventions, shared by every function here (they match ott-jax, so results compare one to one):

* The problem, for a cost ``C: [n, m]`` and non-negative weights ``a: [n]``, ``b: [m]``, is

      ``min_P  <P, C> + eps KL(P | a b^T) + rho_a KL(P 1 | a) + rho_b KL(P^T 1 | b)``

  with the *generalised* KL, ``KL(p | q) = sum p log(p / q) - p + q`` (which includes the mass
  terms). ``tau = rho / (rho + eps)``, i.e. ``rho = eps tau / (1 - tau)``, exactly ott-jax's
  ``tau_a`` / ``tau_b``; ``tau = 1`` (``rho = inf``) is the balanced problem, where the marginal
  terms become the constraints ``P 1 = a``, ``P^T 1 = b``. POT's ``reg_m`` is ``rho`` and its
  ``reg`` is ``eps`` (``ot.unbalanced.sinkhorn_unbalanced`` with ``reg_type="kl"``).
* ``regularized_cost`` is that objective at the solution, computed from the dual potentials
  (ott-jax's ``reg_ot_cost``); ``transport_cost`` is the bare ``<P, C>`` (what POT's
  ``sinkhorn2`` returns). Neither is the entropy form ``<P, C> - eps H(P)`` (ott's
  ``ent_reg_cost``), which differs from ours by ``eps (H(a) + H(b))`` in the balanced case.
* Potentials are relative to ``a b^T``: ``P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)``. They
  stay finite at zero weights (a zero weight gives an exactly zero row or column). ott-jax's
  potentials are ``f + eps log a`` and ``g + eps log b``; in the balanced case both are defined up
  to ``(f + c, g - c)``. The dual objective is

      ``D(f, g) = -rho_a <a, exp(-f / rho_a) - 1> - rho_b <b, exp(-g / rho_b) - 1>
                  - eps <a b^T, exp((f + g - C) / eps) - 1>``

  (``-rho <a, exp(-f / rho) - 1>`` is ``<a, f>`` at ``rho = inf``); ``regularized_cost = D(f, g)``,
  which equals the primal objective at the optimum.

Algorithm: alternating log-sum-exp updates ``g <- -tau_b eps LSE_i(log a_i + (f_i - C_ij) / eps)``
then ``f <- -tau_a eps LSE_j(log b_j + (g_j - C_ij) / eps)`` (the unbalanced updates of Sejourne et
al. are the balanced ones scaled by ``tau``), started from ``f = g = 0``. After the ``f`` update
the row condition holds exactly, so the convergence criterion is the L1 error of the columns:
``marginal_error = sum_j |(P^T 1)_j - b_j exp(-g_j / rho_b)|`` (``|P^T 1 - b|_1`` when balanced),
checked every ``inner_iters`` inside a ``lax.while_loop`` (ott-jax's criterion and period).
``tol=None`` runs exactly ``max_iters`` iterations with no convergence test, so that
under ``vmap`` no problem pays for checks of the others.

Speed (:func:`sinkhorn` with implicit gradients and no ``epsilon_init``): the iterations are
computed by *absorption*. Each block of ``inner_iters`` iterations does one exact log-domain
iteration, whose ``f`` update leaves a row-normalised ``E = exp(log b + (g - C) / eps - max)``;
the other iterations of the block are the same updates written as scalings of that snapshot
(``P = diag(w e^u) E diag(e^v)``): two matrix-vector products instead of two passes of ``exp``
over ``[n, m]``, four to ten times cheaper. The iterates are those of the log-domain algorithm
(same iterations, same fixed point) as long as the scalings stay within ``e^+-20`` of the snapshot
(then the entries of ``E`` that underflowed stay negligible); a block stops early otherwise, so
early iterations, where the potentials still move by many ``eps``, are plain log-domain ones. The
other modes (``implicit_diff=False``, epsilon scaling) run plain log-domain iterations whose
log-sum-exp is a single pass shifted by the previous potentials.

Online mode: :func:`sinkhorn_points` takes the point clouds instead of the cost and computes the
cost in blocks of ``chunk_size`` rows or columns inside every reduction, memory ``O(n + m)`` plus
one block.

Gradients (``implicit_diff=True``, the default) come from the implicit function theorem at the
fixed point, whatever the number of iterations: the backward solves one linear system in the
Hessian of ``D`` (``(n + m)`` unknowns; a dense solve for ``n + m <= 512``, else Jacobi-
preconditioned conjugate gradients with products by ``P`` only), so memory does not grow with
the iterations. ``implicit_diff=False`` differentiates through the iterations run (memory grows
with ``max_iters``). Either way ``d regularized_cost / d C = P`` (envelope theorem; in the
online mode the regularised cost is differentiated that way directly, with no linear solve).
The linear solve is Jacobi-scaled and carries a ridge of a hundred rounding units of the dtype:
when the plan is nearly a permutation (well separated points, equal inputs: off-diagonal mass
``1e-8``) the system is singular to working precision, and without the ridge the zero
right-hand side of the regularised cost became ``0 / 0 = NaN`` (issue 9).

Potentials of zero weights are recomputed at the end as exact c-transforms of the others (one
more pass over the cost), so they are those the docstrings promise on every path.

``jit``: the public functions validate in Python, then call private jitted cores
(``_sinkhorn_core``, ``_points_core``) whose static options are one hashable record
(``_Options``) and whose traced parameters are another (``_Params``): eager calls hit the
compile cache, and everything composes with the caller's ``jit``, ``vmap`` and ``grad``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from alignment._src import checks
from alignment._src import costs as _costs

__all__ = [
    "SinkhornOutput",
    "SinkhornPointsOutput",
    "barycentric_projection",
    "sinkhorn",
    "sinkhorn_divergence",
    "sinkhorn_points",
]

CostFn = Callable[[jax.Array, jax.Array], jax.Array]

_DIRECT_SOLVE_MAX = 512  # n + m up to which the implicit backward uses a dense solve
_ABSORB_MAX = 20.0  # largest |log scaling| a block of absorbed iterations may reach
_RIDGE_ULPS = 100.0  # ridge of the implicit linear solve, in rounding units of the dtype


class SinkhornOutput(NamedTuple):
    """The result of :func:`sinkhorn`.

    Attributes:
      plan: Array ``[n, m]``, the transport plan ``a_i b_j exp((f_i + g_j - C_ij) / eps)``.
      f: Array ``[n]``, dual potential of the rows (relative to ``a b^T``; see the module).
      g: Array ``[m]``, dual potential of the columns.
      transport_cost: Scalar ``<P, C>``.
      regularized_cost: Scalar ``<P, C> + eps KL(P | a b^T) + rho_a KL(P 1 | a)
        + rho_b KL(P^T 1 | b)`` (generalised KL; marginal terms vanish when balanced), computed
        as the dual objective ``D(f, g)``: ott-jax's ``reg_ot_cost``.
      n_iters: Int scalar, Sinkhorn iterations run (one ``g`` and one ``f`` update each).
      marginal_error: Scalar, L1 error of the column marginal at the end (rows are exact).
      converged: Bool scalar, ``marginal_error < tol`` at the target epsilon (with
        ``tol=None``: whether the outputs are finite).
    """

    plan: jax.Array
    f: jax.Array
    g: jax.Array
    transport_cost: jax.Array
    regularized_cost: jax.Array
    n_iters: jax.Array
    marginal_error: jax.Array
    converged: jax.Array


class SinkhornPointsOutput(NamedTuple):
    """The result of :func:`sinkhorn_points`: :class:`SinkhornOutput` without the plan.

    The plan is never built (online mode); rows ``k:l`` of it are
    ``a[k:l, None] * b * exp((f[k:l, None] + g - cost_fn(x[k:l], y)) / epsilon)``.

    Attributes:
      f: Array ``[n]``, dual potential of the rows.
      g: Array ``[m]``, dual potential of the columns.
      transport_cost: Scalar ``<P, C>``.
      regularized_cost: Scalar, the regularised objective (as :class:`SinkhornOutput`).
      n_iters: Int scalar, Sinkhorn iterations run.
      marginal_error: Scalar, L1 error of the column marginal at the end.
      converged: Bool scalar, ``marginal_error < tol`` at the target epsilon.
    """

    f: jax.Array
    g: jax.Array
    transport_cost: jax.Array
    regularized_cost: jax.Array
    n_iters: jax.Array
    marginal_error: jax.Array
    converged: jax.Array


class _Options(NamedTuple):
    """Static options (hashable: a static argument of the jitted cores)."""

    max_iters: int
    inner_iters: int
    fixed: bool  # tol is None: run exactly max_iters
    scaling: bool  # epsilon_init given
    implicit: bool
    implicit_solver: str  # "direct" | "cg"
    cg_max_iters: int
    warm: bool  # single-pass log-sum-exp shifted by the previous potentials (not under scan)
    absorb: bool  # the fast path: blocks of iterations as scalings of one exp pass
    relative: str | None  # epsilon relative to the cost: None, "mean" or "max"
    mass_rtol: float  # "equal masses" in a balanced problem
    out_dtype: str  # the input dtype, results are cast back to it


class _Params(NamedTuple):
    """Traced parameters (a pytree argument of the jitted cores)."""

    epsilon: jax.Array
    tau_a: jax.Array
    tau_b: jax.Array
    tol: jax.Array | None
    epsilon_init: jax.Array | None
    epsilon_decay: jax.Array


_COMMON_DEFAULTS = {
    "tau_a": 1.0,
    "tau_b": 1.0,
    "relative_epsilon": False,
    "max_iters": 2000,
    "tol": 1e-3,
    "inner_iters": 10,
    "epsilon_init": None,
    "epsilon_decay": 0.9,
    "cg_max_iters": 500,
}


# --------------------------------------------------------------------------------------------
# Numerics.
# --------------------------------------------------------------------------------------------


def _safe_log(w: jax.Array) -> jax.Array:
    """``log w`` with ``-inf`` (and a zero, not NaN, derivative) at ``w = 0``."""
    pos = w > 0
    return jnp.where(pos, jnp.log(jnp.where(pos, w, 1.0)), -jnp.inf)


def _lse(x: jax.Array, axis: int) -> jax.Array:
    """Log-sum-exp along ``axis``, stabilised by the (non-differentiated) maximum."""
    mx = jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    mx = jnp.where(jnp.isfinite(mx), mx, 0.0)  # an all -inf line: log(0) = -inf, not NaN
    out = jnp.log(jnp.sum(jnp.exp(x - mx), axis=axis)) + jnp.squeeze(mx, axis)
    return out


def _lse_warm(x: jax.Array, guess: jax.Array, axis: int, warm: bool) -> jax.Array:
    """Log-sum-exp along ``axis`` shifted by ``guess`` (its expected value) in a single pass.

    The shift by the previous iterate's value spares the pass that finds the maximum. It is
    exact whenever the shifted sum's log is within ``[-60, 60]`` (terms that underflow are then
    below ``e^-27`` of the sum); otherwise (early iterations, epsilon scaling) a ``lax.cond``
    falls back to the maximum-stabilised :func:`_lse`.
    """
    if not warm:
        return _lse(x, axis)
    shift = jax.lax.stop_gradient(jnp.where(jnp.isfinite(guess), guess, 0.0))
    log_sum = jnp.log(jnp.sum(jnp.exp(x - jnp.expand_dims(shift, axis)), axis=axis))
    ok = jnp.all(jnp.abs(log_sum) < 60.0)
    return jax.lax.cond(ok, lambda: log_sum + shift, lambda: _lse(x, axis))


def _inv_rho(tau: jax.Array, eps: jax.Array) -> jax.Array:
    """``1 / rho = (1 - tau) / (tau eps)``: 0 for the balanced problem."""
    return (1.0 - tau) / (tau * eps)


def _expm1_ratio(z: jax.Array) -> jax.Array:
    """``(1 - exp(-z)) / z``, smooth at ``z = 0`` (value 1), with safe derivatives."""
    small = jnp.abs(z) < 1e-3
    zs = jnp.where(small, 1.0, z)
    return jnp.where(small, 1.0 - z / 2.0 + z * z / 6.0, -jnp.expm1(-zs) / zs)


def _marginal_dual(h: jax.Array, w: jax.Array, inv_rho: jax.Array) -> jax.Array:
    """``-rho <w, exp(-h / rho) - 1>``, which is ``<w, h>`` at ``rho = inf``."""
    return jnp.sum(w * h * _expm1_ratio(h * inv_rho))


def _plan(f, g, cost, a, b, eps) -> jax.Array:
    """``a_i b_j exp((f_i + g_j - C_ij) / eps)``, exactly 0 (not ``0 * inf``) on zero weights.

    The potentials of zero weights are c-transforms, finite but unrelated to each other, so for
    a zero-weight row and column ``f_i + g_j - C_ij`` can be large: the exponent is masked.
    """
    w = a[:, None] * b[None, :]
    pos = (w > 0) & (cost != jnp.inf)  # forbidden pairs: exactly 0, with zero derivatives
    return jnp.where(
        pos, w * jnp.exp(jnp.where(pos, f[:, None] + g[None, :] - cost, 0.0) / eps), 0.0
    )


def _dual(f, g, plan, a, b, eps, tau_a, tau_b) -> jax.Array:
    """The dual objective ``D(f, g)`` (the regularised cost at the optimum); ``plan`` at f, g."""
    return _dual_from_mass(f, g, jnp.sum(plan), a, b, eps, tau_a, tau_b)


def _dual_from_mass(f, g, plan_mass, a, b, eps, tau_a, tau_b) -> jax.Array:
    """:func:`_dual` given ``sum(P)``."""
    mass = jnp.sum(a) * jnp.sum(b) - plan_mass
    return (
        _marginal_dual(f, a, _inv_rho(tau_a, eps))
        + _marginal_dual(g, b, _inv_rho(tau_b, eps))
        + eps * mass
    )


# --------------------------------------------------------------------------------------------
# The fixed-point iterations.
# --------------------------------------------------------------------------------------------


class _Dense(NamedTuple):
    """A cost matrix ``[n, m]``, held in memory."""

    cost: jax.Array

    @property
    def shape(self) -> tuple[int, int]:
        return self.cost.shape

    @property
    def dtype(self):
        return self.cost.dtype

    def lse_rows(self, h, log_w, eps, guess=None):
        """``LSE_j(log_w_j + (h_j - C_ij) / eps)``, shape ``[n]`` (the ``f`` update)."""
        x = log_w[None, :] + (h[None, :] - self.cost) / eps
        return _lse_warm(x, guess, 1, guess is not None)

    def lse_cols(self, h, log_w, eps, guess=None):
        """``LSE_i(log_w_i + (h_i - C_ij) / eps)``, shape ``[m]`` (the ``g`` update)."""
        x = log_w[:, None] + (h[:, None] - self.cost) / eps
        return _lse_warm(x, guess, 0, guess is not None)


def _blocks(z: jax.Array, k: int, c: int) -> jax.Array:
    """``[n, ...] -> [k, c, ...]``, padding the end with copies of the last entry."""
    pad = k * c - z.shape[0]
    if pad:
        z = jnp.concatenate([z, jnp.broadcast_to(z[-1:], (pad, *z.shape[1:]))])
    return z.reshape(k, c, *z.shape[1:])


class _Points(NamedTuple):
    """Point clouds ``x [n, d]``, ``y [m, d]`` whose cost is computed ``chunk`` lines at a time.

    Every reduction maps over blocks of ``chunk`` rows (or columns), computing the block's cost
    ``cost_fn(x_block, y)`` (or ``cost_fn(x, y_block)``) and discarding it: memory
    ``O(chunk * max(n, m))``. The block bodies are rematerialised (``jax.checkpoint``) in
    reverse mode, so gradients do not store the blocks either. The last block is padded with
    copies of the last point, whose outputs are dropped (one compiled body, no remainder branch).
    """

    x: jax.Array
    y: jax.Array
    cost_fn: CostFn
    chunk: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.x.shape[0], self.y.shape[0]

    @property
    def dtype(self):
        return self.x.dtype

    def _map(self, fn, along_rows: bool, args):
        pts = self.x if along_rows else self.y
        size = pts.shape[0]
        c = min(self.chunk, size)
        k = -(-size // c)

        @jax.checkpoint
        def body(p, *rest):
            cost = self.cost_fn(p, self.y) if along_rows else self.cost_fn(self.x, p)
            return fn(cost, *rest)

        blocks = (_blocks(pts, k, c), *(_blocks(z, k, c) for z in args))
        if k == 1:  # no loop at all
            out = body(*(z[0] for z in blocks))
            return jax.tree.map(lambda o: o[:size], out)
        out = jax.lax.map(lambda t: body(*t), blocks)
        return jax.tree.map(lambda o: o.reshape(k * c, *o.shape[2:])[:size], out)

    def rows(self, fn, *row_args):
        """``fn(cost_block [c, m], *row_arg_blocks [c]) -> [c, ...]`` over row blocks."""
        return self._map(fn, True, row_args)

    def cols(self, fn, *col_args):
        """``fn(cost_block [n, c], *col_arg_blocks [c]) -> [c, ...]`` over column blocks."""
        return self._map(fn, False, col_args)

    def lse_rows(self, h, log_w, eps, guess=None):
        def body(cost, *guess_block):
            x = log_w[None, :] + (h[None, :] - cost) / eps
            return _lse_warm(x, guess_block[0] if guess_block else None, 1, bool(guess_block))

        return self.rows(body, *(() if guess is None else (guess,)))

    def lse_cols(self, h, log_w, eps, guess=None):
        def body(cost, *guess_block):
            x = log_w[:, None] + (h[:, None] - cost) / eps
            return _lse_warm(x, guess_block[0] if guess_block else None, 0, bool(guess_block))

        return self.cols(body, *(() if guess is None else (guess,)))

    def plan_rows(self, f, g, a, b, eps, fn):
        """``fn(plan_block [c, m], cost_block [c, m])`` over row blocks of the plan."""

        def body(cost, f_c, a_c):
            return fn(_plan(f_c, g, cost, a_c, b, eps), cost)

        return self.rows(body, f, a)

    def plan_cols(self, f, g, a, b, eps, fn):
        """``fn(plan_block [n, c], cost_block [n, c])`` over column blocks of the plan."""

        def body(cost, g_c, b_c):
            return fn(_plan(f, g_c, cost, a, b_c, eps), cost)

        return self.cols(body, g, b)


def _g_update(f, g, geom, log_a, eps, tau_b, warm):
    guess = -g / (tau_b * eps) if warm else None
    return -tau_b * eps * geom.lse_cols(f, log_a, eps, guess)


def _f_update(f, g, geom, log_b, eps, tau_a, warm):
    guess = -f / (tau_a * eps) if warm else None
    return -tau_a * eps * geom.lse_rows(g, log_b, eps, guess)


def _column_error(f, g, geom, log_a, b, eps, tau_b):
    """``sum_j |(P^T 1)_j - b_j exp(-g_j / rho_b)|``."""
    h = geom.lse_cols(f, log_a, eps)
    pos = b > 0
    col = b * jnp.exp(jnp.where(pos, g / eps + h, 0.0))
    target = b * jnp.exp(jnp.where(pos, -g * _inv_rho(tau_b, eps), 0.0))
    return jnp.sum(jnp.abs(col - target))


class _LoopState(NamedTuple):
    """State of the outer loop: potentials, iterations run, last marginal error."""

    f: jax.Array
    g: jax.Array
    it: jax.Array
    err: jax.Array


class _ScalingState(NamedTuple):
    """State of the absorbed iterations of one block: log-scalings of the snapshot."""

    lu: jax.Array
    lv: jax.Array
    it: jax.Array
    ok: jax.Array


class _Solved(NamedTuple):
    f: jax.Array
    g: jax.Array
    n_iters: jax.Array
    marginal_error: jax.Array
    converged: jax.Array


def _solve(geom, a, b, eps, tau_a, tau_b, p: _Params, opts: _Options) -> _Solved:
    """Runs the log-domain iterations (``p`` gives ``tol`` and the epsilon schedule)."""
    log_a, log_b = _safe_log(a), _safe_log(b)
    dtype = geom.dtype
    n, m = geom.shape

    def eps_at(it):
        if not opts.scaling:
            return eps
        return jnp.maximum(eps, p.epsilon_init * p.epsilon_decay ** it.astype(dtype))

    def one(it, fg):
        f, g = fg
        e = eps_at(it)
        g = _g_update(f, g, geom, log_a, e, tau_b, opts.warm)
        f = _f_update(f, g, geom, log_b, e, tau_a, opts.warm)
        return f, g

    f0, g0 = jnp.zeros((n,), dtype), jnp.zeros((m,), dtype)
    inf = jnp.asarray(jnp.inf, dtype)

    if opts.fixed:
        f, g = jax.lax.fori_loop(0, opts.max_iters, one, (f0, g0))
        err = _column_error(f, g, geom, log_a, b, eps, tau_b)
        n_it = jnp.asarray(opts.max_iters, jnp.int32)
        ok = jnp.isfinite(err) & jnp.all(jnp.isfinite(f)) & jnp.all(jnp.isfinite(g))
        return _Solved(f, g, n_it, err, ok)

    inner = opts.inner_iters
    n_blocks = -(-opts.max_iters // inner)

    def block(s: _LoopState) -> _LoopState:
        # static bounds: a scan, reverse-differentiable in the unrolled mode
        f, g = jax.lax.fori_loop(0, inner, lambda k, fg: one(s.it + k, fg), (s.f, s.g))
        it = s.it + inner
        err = _column_error(f, g, geom, log_a, b, eps_at(it - 1), tau_b)
        at_target = eps_at(it - 1) <= eps
        err = jnp.where(at_target, err, inf)  # no stop before the target epsilon
        return _LoopState(f, g, it, err)

    def done(s: _LoopState):
        return ~(s.err >= p.tol)  # also stops on NaN

    state0 = _LoopState(f0, g0, jnp.asarray(0, jnp.int32), inf)
    if opts.implicit:
        state = jax.lax.while_loop(lambda s: (s.it < n_blocks * inner) & ~done(s), block, state0)
    else:  # reverse-differentiable: a scan over the blocks, frozen once converged
        state, _ = jax.lax.scan(
            lambda s, _: (jax.lax.cond(done(s), lambda t: t, block, s), None),
            state0,
            None,
            length=n_blocks,
        )
    err = state.err
    if opts.scaling:  # the loop's error is inf until the target epsilon is reached
        err = _column_error(state.f, state.g, geom, log_a, b, eps, tau_b)
    return _Solved(state.f, state.g, state.it, err, err < p.tol)


def _spread_ok(lu: jax.Array, mask: jax.Array) -> jax.Array:
    """True when the log-scalings ``lu`` (on ``mask``) are finite and within ``+-_ABSORB_MAX``."""
    return jnp.all(jnp.where(mask, jnp.abs(lu) <= _ABSORB_MAX, True))


def _solve_absorb(geom, a, b, eps, tau_a, tau_b, p: _Params, opts: _Options) -> _Solved:
    """The fast path of :func:`_solve` (fixed epsilon): Sinkhorn with absorption.

    Each block of (up to) ``inner_iters`` iterations does one exact log-domain iteration,
    whose ``f`` update leaves ``E = exp(log b + (g - C) / eps - max)`` (row-normalised, so no
    overflow) and row factors ``w`` with ``P = diag(w) E``; the next iterations are the same
    Sinkhorn updates written as scalings of that snapshot, ``P_t = diag(w e^lu) E diag(e^lv)``:
    two matrix-vector products each instead of two passes of ``exp`` over ``[n, m]``. The
    iterates are the log-domain ones (same iteration count, same fixed point). A scaling step is
    accepted only while ``|lu|, |lv| <= _ABSORB_MAX``: entries of ``E`` that underflowed then stay
    negligible (below ``e^-87 e^40`` of their row), and the rest of the block is skipped
    otherwise (early iterations, where the potentials still move by many ``eps``); the next
    block starts again from an exact iteration. The error checked at the end of a block is the
    L1 column error of ``P_t``, exact to rounding under that bound.
    """
    log_a, log_b = _safe_log(a), _safe_log(b)
    sa, sb = a > 0, b > 0
    cost = geom.cost
    dtype = cost.dtype
    n, m = cost.shape
    rb = _inv_rho(tau_b, eps)
    budget = opts.max_iters
    inner = opts.inner_iters

    def block(s: _LoopState) -> _LoopState:
        g = _g_update(s.f, s.g, geom, log_a, eps, tau_b, False)
        x = log_b[None, :] + (g[None, :] - cost) / eps
        mx = jnp.max(x, axis=1)
        mx = jnp.where(jnp.isfinite(mx), mx, 0.0)
        e = jnp.exp(x - mx[:, None])
        log_s = jnp.log(jnp.sum(e, axis=1))
        f = -tau_a * eps * (log_s + mx)
        # row factors of the plan: a exp(mx + f / eps) (= a / s when balanced)
        w = a * jnp.exp((1.0 - tau_a) * (mx + log_s) - log_s)

        def step(_, c: _ScalingState) -> _ScalingState:
            col = (w * jnp.exp(c.lu)) @ e
            lv_new = jnp.where(sb, tau_b * (log_b - jnp.log(col)) + (tau_b - 1.0) * g / eps, 0.0)
            row = w * (e @ jnp.exp(lv_new))
            lu_new = jnp.where(sa, tau_a * (log_a - jnp.log(row)) + (tau_a - 1.0) * f / eps, 0.0)
            ok = c.ok & (c.it < budget) & _spread_ok(lu_new, sa) & _spread_ok(lv_new, sb)
            lu, lv = jnp.where(ok, lu_new, c.lu), jnp.where(ok, lv_new, c.lv)
            return _ScalingState(lu, lv, c.it + ok.astype(c.it.dtype), ok)

        c0 = _ScalingState(
            jnp.zeros((n,), dtype), jnp.zeros((m,), dtype), s.it + 1, jnp.asarray(True)
        )
        c = jax.lax.fori_loop(0, inner - 1, step, c0)
        f, g = f + eps * c.lu, g + eps * c.lv
        if opts.fixed:
            err = jnp.asarray(jnp.inf, dtype)
        else:
            col = jnp.exp(c.lv) * ((w * jnp.exp(c.lu)) @ e)
            err = jnp.sum(jnp.abs(col - b * jnp.exp(jnp.where(sb, -g * rb, 0.0))))
        return _LoopState(f, g, c.it, err)

    inf = jnp.asarray(jnp.inf, dtype)
    zeros = jnp.zeros((n,), dtype), jnp.zeros((m,), dtype)
    state0 = _LoopState(*zeros, jnp.asarray(0, jnp.int32), inf)
    if opts.fixed:
        cond = lambda s: s.it < budget
    else:
        cond = lambda s: (s.it < budget) & ~(s.err < p.tol)  # also stops on NaN
    s = jax.lax.while_loop(cond, block, state0)
    if opts.fixed:
        err = _column_error(s.f, s.g, geom, log_a, b, eps, tau_b)
        ok = jnp.isfinite(err) & jnp.all(jnp.isfinite(s.f)) & jnp.all(jnp.isfinite(s.g))
        return _Solved(s.f, s.g, s.it, err, ok)
    return _Solved(s.f, s.g, s.it, s.err, s.err < p.tol)


# --------------------------------------------------------------------------------------------
# Implicit differentiation: an identity on the solved potentials whose VJP solves the linear
# system of the first-order conditions grad D(f, g; theta) = 0.
# --------------------------------------------------------------------------------------------


def _first_order(f, g, cost, a, b, eps, tau_a, tau_b):
    """``grad_{f, g} D``: ``(a exp(-f / rho_a) - P 1, b exp(-g / rho_b) - P^T 1)``."""
    plan = _plan(f, g, cost, a, b, eps)
    gf = a * jnp.exp(-f * _inv_rho(tau_a, eps)) - jnp.sum(plan, axis=1)
    gg = b * jnp.exp(-g * _inv_rho(tau_b, eps)) - jnp.sum(plan, axis=0)
    return gf, gg


def _first_order_points(f, g, x, y, a, b, eps, tau_a, tau_b, cost_fn, chunk):
    """:func:`_first_order` with the cost computed in blocks (see :class:`_Points`)."""
    geom = _Points(x, y, cost_fn, chunk)
    row = geom.plan_rows(f, g, a, b, eps, lambda p, _: jnp.sum(p, axis=1))
    col = geom.plan_cols(f, g, a, b, eps, lambda p, _: jnp.sum(p, axis=0))
    gf = a * jnp.exp(-f * _inv_rho(tau_a, eps)) - row
    gg = b * jnp.exp(-g * _inv_rho(tau_b, eps)) - col
    return gf, gg


def _adjoint(f, g, a, b, eps, tau_a, tau_b, v_f, v_g, row, col, matvec, rmatvec, plan, cg_maxiter):
    """Solves ``A x = v`` with ``A = -eps Hess D`` (symmetric PSD), returns ``eps x``.

    ``A = [[diag(d_a), P], [P^T, diag(d_b)]]``, ``d_a = P 1 + (eps / rho_a) a exp(-f / rho_a)``
    (``row = P 1``, ``col = P^T 1``; ``matvec`` / ``rmatvec`` multiply by ``P`` / ``P^T``).
    Coordinates of zero weights (on which ``D`` does not depend) are fixed by the identity and
    get no cotangent. In the balanced case ``A`` has the null vector ``u = (1, -1)`` (the shift
    of the potentials); the right-hand side is projected orthogonally to ``u`` and
    ``D u u^T D / (u^T D u)`` (``D = diag(A)``) is added, which makes ``A`` definite without
    changing the solution of the projected system. ``plan`` given: a dense solve; ``None``:
    Jacobi-preconditioned conjugate gradients, matrix-free.
    """
    n = f.shape[0]
    dtype = f.dtype
    sa, sb = a > 0, b > 0
    ra, rb = _inv_rho(tau_a, eps), _inv_rho(tau_b, eps)
    d_a = jnp.where(sa, row + eps * ra * a * jnp.exp(-f * ra), 1.0)
    d_b = jnp.where(sb, col + eps * rb * b * jnp.exp(-g * rb), 1.0)
    diag = jnp.concatenate([d_a, d_b])
    balanced = ((tau_a == 1.0) & (tau_b == 1.0)).astype(dtype)
    u = jnp.concatenate([sa.astype(dtype), -sb.astype(dtype)])
    rhs = jnp.concatenate([jnp.where(sa, v_f, 0.0), jnp.where(sb, v_g, 0.0)])
    rhs = rhs - balanced * u * jnp.dot(u, rhs) / jnp.dot(u, u)
    du = diag * u
    du_scale = balanced / jnp.dot(u, du)

    # Both solves are written in the Jacobi-scaled variable y = sqrt(D) x, whose matrix
    # S A S (S = D^-1/2) has a unit diagonal and eigenvalues in [0, 2], plus a ridge of
    # _RIDGE_ULPS rounding units: a nearly block-diagonal plan (well separated points, small
    # epsilon: the plan is a permutation up to 1e-8) makes A singular to working precision,
    # which turned a zero right-hand side into 0 / 0 = NaN. The ridge changes the solution of a
    # well-conditioned system by a relative O(ridge / smallest eigenvalue).
    s = jax.lax.rsqrt(diag)
    ridge = _RIDGE_ULPS * float(jnp.finfo(dtype).eps)
    if plan is not None:
        mat = jnp.block([[jnp.diag(d_a), plan], [plan.T, jnp.diag(d_b)]])
        mat = mat + du_scale * jnp.outer(du, du)
        mat = s[:, None] * mat * s[None, :] + ridge * jnp.eye(diag.shape[0], dtype=dtype)
        x = s * jnp.linalg.solve(mat, s * rhs)
    else:

        def op(y):
            x = s * y
            xf, xg = x[:n], x[n:]
            ax = jnp.concatenate([d_a * xf + matvec(xg), rmatvec(xf) + d_b * xg])
            ax = ax + du * (du_scale * jnp.dot(du, x))
            return s * ax + ridge * y

        tol = max(1e-10, 100.0 * float(jnp.finfo(dtype).eps))
        y, _ = jax.scipy.sparse.linalg.cg(op, s * rhs, tol=tol, maxiter=cg_maxiter)
        x = s * y
    return eps * jnp.where(sa, x[:n], 0.0), eps * jnp.where(sb, x[n:], 0.0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(8,))
def _implicit(f, g, cost, a, b, eps, tau_a, tau_b, opts: _Options):
    del cost, a, b, eps, tau_a, tau_b, opts
    return f, g


def _implicit_fwd(f, g, cost, a, b, eps, tau_a, tau_b, opts):
    return (f, g), (f, g, cost, a, b, eps, tau_a, tau_b)


def _implicit_bwd(opts, res, cot):
    f, g, cost, a, b, eps, tau_a, tau_b = res
    plan = _plan(f, g, cost, a, b, eps)
    lam = _adjoint(
        f, g, a, b, eps, tau_a, tau_b, *cot,
        row=jnp.sum(plan, axis=1), col=jnp.sum(plan, axis=0),
        matvec=lambda v: plan @ v, rmatvec=lambda u: u @ plan,
        plan=plan if opts.implicit_solver == "direct" else None, cg_maxiter=opts.cg_max_iters,
    )  # fmt: skip
    _, vjp = jax.vjp(lambda *theta: _first_order(f, g, *theta), cost, a, b, eps, tau_a, tau_b)
    return (jnp.zeros_like(f), jnp.zeros_like(g), *vjp(lam))


_implicit.defvjp(_implicit_fwd, _implicit_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(9, 10, 11))
def _implicit_points(f, g, x, y, a, b, eps, tau_a, tau_b, cost_fn, chunk, cg_maxiter):
    del x, y, a, b, eps, tau_a, tau_b, cost_fn, chunk, cg_maxiter
    return f, g


def _implicit_points_fwd(f, g, x, y, a, b, eps, tau_a, tau_b, cost_fn, chunk, cg_maxiter):
    del cost_fn, chunk, cg_maxiter
    return (f, g), (f, g, x, y, a, b, eps, tau_a, tau_b)


def _implicit_points_bwd(cost_fn, chunk, cg_maxiter, res, cot):
    """As :func:`_implicit_bwd`, matrix-free: every product by ``P`` is a pass over blocks."""
    f, g, x, y, a, b, eps, tau_a, tau_b = res
    geom = _Points(x, y, cost_fn, chunk)
    lam = _adjoint(
        f, g, a, b, eps, tau_a, tau_b, *cot,
        row=geom.plan_rows(f, g, a, b, eps, lambda p, _: jnp.sum(p, axis=1)),
        col=geom.plan_cols(f, g, a, b, eps, lambda p, _: jnp.sum(p, axis=0)),
        matvec=lambda v: geom.plan_rows(f, g, a, b, eps, lambda p, _: p @ v),
        rmatvec=lambda u: geom.plan_cols(f, g, a, b, eps, lambda p, _: u @ p),
        plan=None, cg_maxiter=cg_maxiter,
    )  # fmt: skip
    _, vjp = jax.vjp(
        lambda *theta: _first_order_points(f, g, *theta, cost_fn, chunk),
        x, y, a, b, eps, tau_a, tau_b,
    )  # fmt: skip
    return (jnp.zeros_like(f), jnp.zeros_like(g), *vjp(lam))


_implicit_points.defvjp(_implicit_points_fwd, _implicit_points_bwd)


# --------------------------------------------------------------------------------------------
# Options: one record of static choices, one of traced parameters, shared by both solvers.
# --------------------------------------------------------------------------------------------


def _prepare(n, m, dtype, what, a, b, *, epsilon, implicit_diff, implicit_solver, **common):
    """Validates the keywords shared by :func:`sinkhorn` and :func:`sinkhorn_points`.

    Returns ``(a, b, params, opts)``: weights in the compute dtype, the traced :class:`_Params`
    and the static :class:`_Options`. Raises ``ValueError`` for the static and concrete errors of
    the bad-input policy; traced bad values are flagged inside the core (:func:`_bad`).
    """
    unknown = set(common) - set(_COMMON_DEFAULTS)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {sorted(unknown)}")
    kw = _COMMON_DEFAULTS | common
    cdt = checks.compute_dtype(dtype)
    in_dtypes = [jnp.dtype(dtype)]
    for w in (a, b):
        if w is not None and getattr(w, "dtype", None) is not None:
            if jnp.issubdtype(w.dtype, jnp.floating):
                in_dtypes.append(jnp.dtype(w.dtype))
    a, _ = checks.weights(a, n, "a", cdt, what=f" [n] to match {what}")
    b, _ = checks.weights(b, m, "b", cdt, what=f" [m] to match {what}")
    checks.scalar(epsilon, "epsilon", "positive")
    checks.scalar(kw["tau_a"], "tau_a", "unit")
    checks.scalar(kw["tau_b"], "tau_b", "unit")
    checks.scalar(kw["tol"], "tol", "positive", allow_none=True)
    checks.scalar(kw["epsilon_init"], "epsilon_init", "positive", allow_none=True)
    checks.scalar(kw["epsilon_decay"], "epsilon_decay", "open_unit")
    max_iters = checks.static_int(kw["max_iters"], "max_iters", minimum=1)
    inner_iters = checks.static_int(kw["inner_iters"], "inner_iters", minimum=1)
    cg_max_iters = checks.static_int(kw["cg_max_iters"], "cg_max_iters", minimum=1)
    checks.static_choice(implicit_diff, "implicit_diff", (True, False))
    checks.static_choice(implicit_solver, "implicit_solver", ("auto", "direct", "cg"))
    rel = kw["relative_epsilon"]
    checks.static_choice(rel, "relative_epsilon", (False, True, "mean", "max"))
    rtol = max(checks.mass_rtol(d) for d in in_dtypes)
    taus_one = all(
        checks.is_concrete(t) and float(np.asarray(t)) == 1.0 for t in (kw["tau_a"], kw["tau_b"])
    )
    if taus_one and checks.is_concrete(a) and checks.is_concrete(b):
        sum_a = float(np.sum(np.asarray(a, np.float64)))
        sum_b = float(np.sum(np.asarray(b, np.float64)))
        if not np.isclose(sum_a, sum_b, rtol=rtol, atol=0.0):
            raise ValueError(
                f"balanced problem (tau_a = tau_b = 1) needs `a` and `b` of equal mass, got "
                f"sum(a) = {sum_a!r} and sum(b) = {sum_b!r}; rescale them or set tau_a / "
                "tau_b < 1 for unbalanced transport."
            )
    if implicit_solver == "auto":
        implicit_solver = "direct" if n + m <= _DIRECT_SOLVE_MAX else "cg"
    tol, eps_init = kw["tol"], kw["epsilon_init"]
    opts = _Options(
        max_iters=max_iters,
        inner_iters=min(inner_iters, max_iters),
        fixed=tol is None,
        scaling=eps_init is not None,
        implicit=bool(implicit_diff),
        implicit_solver=implicit_solver,
        cg_max_iters=cg_max_iters,
        warm=tol is not None and bool(implicit_diff),  # no lax.cond to differentiate
        absorb=bool(implicit_diff) and eps_init is None,
        relative={False: None, True: "mean"}.get(rel, rel),
        mass_rtol=rtol,
        out_dtype=jnp.dtype(dtype).name,
    )
    f = lambda v: None if v is None else jnp.asarray(v, cdt)
    params = _Params(
        f(epsilon), f(kw["tau_a"]), f(kw["tau_b"]), f(tol), f(eps_init), f(kw["epsilon_decay"])
    )
    return a, b, params, opts


def _bad(a, b, p: _Params, opts: _Options) -> jax.Array:
    """Traced flag of the bad-input policy: a bad scalar, bad weights, unequal balanced masses."""
    inv = checks.invalid_scalar
    bad = inv(p.epsilon) | inv(p.tau_a, "unit") | inv(p.tau_b, "unit")
    if not opts.fixed:
        bad = bad | inv(p.tol)
    if opts.scaling:
        bad = bad | inv(p.epsilon_init) | inv(p.epsilon_decay, "open_unit")
    for w in (a, b):
        bad = bad | ~jnp.all(jnp.isfinite(w) & (w >= 0)) | ~jnp.any(w > 0)
    sum_a, sum_b = jnp.sum(a), jnp.sum(b)
    unequal = jnp.abs(sum_a - sum_b) > opts.mass_rtol * jnp.maximum(sum_a, sum_b)
    return bad | ((p.tau_a == 1.0) & (p.tau_b == 1.0) & unequal)


def _cast_floats(tree, dtype: str):
    def one(v):
        return v.astype(dtype) if jnp.issubdtype(v.dtype, jnp.floating) else v

    return jax.tree.map(one, tree)


def _scale_rows(kind: str, cost: jax.Array, keep: jax.Array) -> jax.Array:
    """Per row ``[sum or max of |C|, count]`` over ``keep`` (``+-inf`` entries excluded)."""
    keep = keep & (jnp.abs(cost) != jnp.inf)  # forbidden pairs (+inf) do not count; NaN does
    v = jnp.abs(jnp.where(keep, cost, 0.0))
    top = jnp.max(v, axis=1) if kind == "max" else jnp.sum(v, axis=1)
    return jnp.stack([top, jnp.sum(keep, axis=1).astype(v.dtype)], axis=-1)


def _finish_scale(kind: str, stats: jax.Array) -> jax.Array:
    """The scale from :func:`_scale_rows`' rows: mean or max of ``|C|``; 1 if that is 0."""
    if kind == "max":
        scale = jnp.max(stats[:, 0])
    else:
        scale = jnp.sum(stats[:, 0]) / jnp.maximum(jnp.sum(stats[:, 1]), 1.0)
    return jnp.where(scale == 0, 1.0, scale)  # an all-zero cost: epsilon stays absolute


def _dense_scale(kind: str, cost, sa, sb) -> jax.Array:
    return _finish_scale(kind, _scale_rows(kind, cost, sa[:, None] & sb[None, :]))


def _points_scale(kind: str, geom: _Points, sa, sb) -> jax.Array:
    stats = geom.rows(lambda c, s: _scale_rows(kind, c, s[:, None] & sb[None, :]), sa)
    return _finish_scale(kind, stats)


def _ctransforms(geom, f, g, a, b, eps, tau_a, tau_b):
    """Exact c-transforms: ``f_i = -tau_a eps LSE_j(log b_j + (g_j - C_ij) / eps)`` over the
    positive ``b_j`` (and ``g_j`` likewise), for the potentials of zero weights."""
    sa, sb = a > 0, b > 0
    fm, gm = jnp.where(sa, f, 0.0), jnp.where(sb, g, 0.0)
    la, lb = _safe_log(a), _safe_log(b)

    def rows(cost, *_):  # [c, m]
        x = jnp.where(sb[None, :], lb[None, :] + (gm[None, :] - cost) / eps, -jnp.inf)
        return -tau_a * eps * _lse(x, 1)

    def cols(cost, *_):  # [n, c]
        x = jnp.where(sa[:, None], la[:, None] + (fm[:, None] - cost) / eps, -jnp.inf)
        return -tau_b * eps * _lse(x, 0)

    if isinstance(geom, _Dense):
        return rows(geom.cost), cols(geom.cost)
    return geom.rows(rows), geom.cols(cols)


def _complete(f, g, geom, a, b, eps, tau_a, tau_b):
    """Replaces the potentials of zero weights by their exact c-transforms, as constants.

    ``geom`` holds the real (unmasked) cost: a zero-weight line holding NaN gets a NaN potential
    there and nowhere else (the transform reads only positive-weight entries of the other side).
    """
    sg = jax.lax.stop_gradient
    f_ct, g_ct = _ctransforms(geom, *map(sg, (f, g, a, b, eps, tau_a, tau_b)))
    return jnp.where(a > 0, f, sg(f_ct)), jnp.where(b > 0, g, sg(g_ct))


def _dual_potentials(f, g, a, b):
    """Potentials for :func:`_dual`: non-finite potentials of zero weights (garbage) read as 0."""
    return (
        jnp.where((a > 0) | jnp.isfinite(f), f, 0.0),
        jnp.where((b > 0) | jnp.isfinite(g), g, 0.0),
    )


def _transport(plan, cost):
    """``<P, C>`` with ``0 * inf = 0`` (forbidden pairs carry no mass); NaN propagates."""
    return jnp.sum(plan * jnp.where(plan == 0, 0.0, cost))


@functools.partial(jax.jit, static_argnames=("opts",))
def _sinkhorn_core(cost, a, b, p: _Params, opts: _Options) -> SinkhornOutput:
    cdt = checks.compute_dtype(cost.dtype)
    cost = cost.astype(cdt)
    sg = jax.lax.stop_gradient
    bad = _bad(a, b, p, opts)
    sa, sb = a > 0, b > 0
    cost_s = jnp.where(sa[:, None] & sb[None, :], cost, 0.0)  # padding is never read
    eps, tau_a, tau_b = p.epsilon, p.tau_a, p.tau_b
    if opts.relative is not None:
        eps = eps * _dense_scale(opts.relative, cost_s, sa, sb)
    if opts.implicit:
        args = (_Dense(sg(cost_s)), sg(a), sg(b), sg(eps), sg(tau_a), sg(tau_b), sg(p), opts)
        sol = _solve_absorb(*args) if opts.absorb else _solve(*args)
        f, g = _implicit(sol.f, sol.g, cost_s, a, b, eps, tau_a, tau_b, opts)
    else:
        sol = _solve(_Dense(cost_s), a, b, eps, tau_a, tau_b, p, opts)
        f, g = sol.f, sol.g
    f, g = _complete(f, g, _Dense(cost), a, b, eps, tau_a, tau_b)
    plan = _plan(f, g, cost_s, a, b, eps)
    fd, gd = _dual_potentials(f, g, a, b)
    reg = _dual(fd, gd, plan, a, b, eps, tau_a, tau_b)
    out = SinkhornOutput(
        plan=plan,
        f=f,
        g=g,
        transport_cost=_transport(plan, cost_s),
        regularized_cost=reg,
        n_iters=sol.n_iters,
        marginal_error=sg(sol.marginal_error),
        converged=sol.converged,
    )
    return _cast_floats(checks.nan_if(bad, out), opts.out_dtype)


@functools.partial(jax.jit, static_argnames=("cost_fn", "chunk", "opts"))
def _points_core(x, y, a, b, p: _Params, cost_fn, chunk: int, opts: _Options):
    cdt = checks.compute_dtype(x.dtype)
    x, y = x.astype(cdt), y.astype(cdt)
    sg = jax.lax.stop_gradient
    bad = _bad(a, b, p, opts)
    sa, sb = a > 0, b > 0
    xs = jnp.where(sa[:, None], x, 0.0)  # padding is never read
    ys = jnp.where(sb[:, None], y, 0.0)
    geom = _Points(xs, ys, cost_fn, chunk)
    eps, tau_a, tau_b = p.epsilon, p.tau_a, p.tau_b
    if opts.relative is not None:
        eps = eps * _points_scale(opts.relative, geom, sa, sb)
    geom_sg = _Points(sg(xs), sg(ys), cost_fn, chunk)
    sol = _solve(geom_sg, sg(a), sg(b), sg(eps), sg(tau_a), sg(tau_b), sg(p), opts)
    # envelope theorem: D at the (constant) solved potentials
    fd, gd = _dual_potentials(sol.f, sol.g, a, b)
    mass = jnp.sum(geom.plan_rows(fd, gd, a, b, eps, lambda q, _: jnp.sum(q, axis=1)))
    reg = _dual_from_mass(fd, gd, mass, a, b, eps, tau_a, tau_b)
    f, g = _implicit_points(
        sol.f, sol.g, xs, ys, a, b, eps, tau_a, tau_b, cost_fn, chunk, opts.cg_max_iters
    )
    transport = jnp.sum(
        geom.plan_rows(f, g, a, b, eps, lambda q, c: jnp.sum(q * jnp.where(q == 0, 0.0, c), 1))
    )
    f, g = _complete(f, g, _Points(x, y, cost_fn, chunk), a, b, eps, tau_a, tau_b)
    out = SinkhornPointsOutput(
        f=f,
        g=g,
        transport_cost=transport,
        regularized_cost=reg,
        n_iters=sol.n_iters,
        marginal_error=sg(sol.marginal_error),
        converged=sol.converged,
    )
    return _cast_floats(checks.nan_if(bad, out), opts.out_dtype)


_UNCONVERGED_HINT = (
    "raise max_iters or epsilon, loosen tol, or use epsilon_init (epsilon scaling) or "
    "relative_epsilon for costs of large scale"
)


def _run_dense(cost, a, b, epsilon, common) -> SinkhornOutput:
    cost = checks.as_float_array(cost, "cost")
    checks.check_matrix(cost, "cost", "[n, m]")
    n, m = cost.shape
    a, b, params, opts = _prepare(n, m, cost.dtype, "`cost`", a, b, epsilon=epsilon, **common)
    return _sinkhorn_core(cost, a, b, params, opts)


def _run_points(x, y, a, b, epsilon, cost_fn, chunk_size, common) -> SinkhornPointsOutput:
    x, y = checks.point_pair(x, y, non_empty=True)
    n, m = x.shape[0], y.shape[0]
    chunk = checks.static_int(chunk_size, "chunk_size", minimum=1)
    if not callable(cost_fn):
        raise ValueError(f"`cost_fn` must be callable, got {cost_fn!r}.")
    a, b, params, opts = _prepare(
        n, m, x.dtype, "`x` / `y`", a, b, epsilon=epsilon, implicit_diff=True,
        implicit_solver="cg", **common,
    )  # fmt: skip
    return _points_core(x, y, a, b, params, cost_fn, chunk, opts)


# --------------------------------------------------------------------------------------------
# Public API.
# --------------------------------------------------------------------------------------------


def sinkhorn(
    cost: jax.typing.ArrayLike,
    a: jax.typing.ArrayLike | None = None,
    b: jax.typing.ArrayLike | None = None,
    *,
    epsilon: jax.typing.ArrayLike,
    tau_a: jax.typing.ArrayLike = 1.0,
    tau_b: jax.typing.ArrayLike = 1.0,
    relative_epsilon: bool | str = False,
    max_iters: int = 2000,
    tol: jax.typing.ArrayLike | None = 1e-3,
    inner_iters: int = 10,
    epsilon_init: jax.typing.ArrayLike | None = None,
    epsilon_decay: jax.typing.ArrayLike = 0.9,
    implicit_diff: bool = True,
    implicit_solver: str = "auto",
    cg_max_iters: int = 500,
) -> SinkhornOutput:
    """Entropic optimal transport by log-domain Sinkhorn iterations (balanced or unbalanced).

    Solves ``min_P <P, C> + eps KL(P | a b^T) + rho_a KL(P 1 | a) + rho_b KL(P^T 1 | b)`` with
    ``rho = eps tau / (1 - tau)`` (ott-jax's ``tau``; ``tau = 1`` is balanced). See the module
    docstring for the conventions on the potentials and the two costs returned.

    Numerics: all updates are log-sum-exps, so small ``epsilon`` (``1e-3`` on costs of size 1 in
    float32) stays finite, if slow to converge (use ``epsilon_init``). Zero weights are allowed:
    their rows / columns of the plan are exactly 0, their potentials are the exact c-transforms
    (``f_i = -tau_a eps LSE_j(log b_j + (g_j - C_ij) / eps)`` over positive ``b_j``), treated as
    constants by gradients, and padding a problem with zero weights gives the unpadded result.
    ``+inf`` cost entries forbid a pair: it gets zero mass and contributes 0 to the costs. In
    the balanced case the potentials, and the gradients in ``a`` and ``b``, are defined up to
    an additive constant: only zero-sum changes of the weights are meaningful.

    Gradients: by implicit differentiation (``implicit_diff=True``) or through the iterations;
    ``d regularized_cost / dC = P``. They stay finite where the plan is nearly a permutation
    (the implicit solve carries a ridge of a hundred rounding units).

    Args:
      cost: Array of shape ``[n, m]``.
      a: Weights of shape ``[n]``, non-negative; ``None`` for uniform ``1 / n``.
      b: Weights of shape ``[m]``, non-negative; ``None`` for uniform ``1 / m``.
      epsilon: Positive entropic regularisation (traced, differentiable), in units of the cost
        (or of its scale, with ``relative_epsilon``).
      tau_a: In ``(0, 1]``: relaxation of the row marginal, ``rho_a / (rho_a + epsilon)``
        (traced, differentiable); 1 (default) enforces ``P 1 = a``.
      tau_b: The same for the column marginal.
      relative_epsilon: ``False`` (default): ``epsilon`` is absolute. ``True`` or ``"mean"``:
        the regularisation is ``epsilon * mean|C|``, ``"max"``: ``epsilon * max|C|``, over the
        entries of positive weight (``+inf`` entries excluded; a scale of 0 counts as 1), as
        ott-jax's ``relative_epsilon`` / ``scale_cost``: ``epsilon = 0.05`` then means the same
        blur whatever the units of the cost. Static. The scale is differentiated.
      max_iters: Iteration budget (static). With a ``tol`` and ``implicit_diff=False`` or
        ``epsilon_init``, rounded up to a multiple of ``inner_iters``.
      tol: Stop when ``marginal_error < tol`` (traced), checked every ``inner_iters`` (or at
        the end of a shorter block of absorbed iterations, see the module); ``None`` runs
        exactly ``max_iters`` with no convergence test (meant for ``vmap`` over many small
        problems).
      inner_iters: Iterations between convergence checks (static), also the length of a block
        of absorbed iterations.
      epsilon_init: Optional epsilon scaling: iteration ``t`` uses
        ``max(epsilon, epsilon_init * epsilon_decay ** t)``; convergence is only declared once
        the target ``epsilon`` is reached. Gradients are those of the target problem.
      epsilon_decay: Decay factor of the schedule, in ``(0, 1)``.
      implicit_diff: ``True`` (default): gradients by implicit differentiation at the fixed
        point (memory independent of the iterations). ``False``: differentiate through the
        iterations (memory ``O(max_iters n m)``; keep ``max_iters`` small).
      implicit_solver: ``"direct"`` (dense ``(n + m)^2`` solve), ``"cg"`` (conjugate gradients,
        matrix-free) or ``"auto"`` (direct when ``n + m <= 512``).
      cg_max_iters: Conjugate-gradient iterations at most in the implicit backward.

    Returns:
      A :class:`SinkhornOutput` (``plan [n, m]``, ``f [n]``, ``g [m]``, scalars
      ``transport_cost``, ``regularized_cost``, ``n_iters``, ``marginal_error``,
      ``converged``).

    Raises:
      ValueError: ``cost`` not a non-empty 2-D real array; ``a`` / ``b`` of the wrong shape,
        negative, non-finite or all zero; balanced with ``sum(a) != sum(b)``; ``epsilon`` or
        ``tol`` not positive; ``tau`` outside ``(0, 1]``; bad iteration counts or options.

    Bad input: shapes, dtypes (complex raises), array-valued scalars and static options
    are checked at trace time (``ValueError`` naming the argument, also under ``jit``/``vmap``).
    Concrete bad values raise: ``epsilon`` or ``tol`` not finite and positive (``tol=nan``
    included), ``tau`` outside ``(0, 1]``, negative, non-finite or all-zero weights, unequal
    masses in a balanced problem (a relative tolerance set by the dtype).
    Traced bad values give NaN floats, ``n_iters = -1`` and ``converged = False``. NaN in a
    real (positive-weight) cost entry propagates; ``+inf`` entries are forbidden pairs (zero
    mass, finite costs); zero-weight rows / columns are never read (NaN, inf or 1e30 there
    change nothing but their own potentials). float16 / bfloat16 run in float32 and return the
    input dtype. A concrete call that ends unconverged warns (:class:`ConvergenceWarning`). See
    docs/conventions.md.

    References:
      Cuturi, "Sinkhorn Distances: Lightspeed Computation of Optimal Transport", NeurIPS 2013.
      Peyre & Cuturi, "Computational Optimal Transport", 2019 (log-domain updates, Sec. 4.4).
      Sejourne et al., "Sinkhorn Divergences for Unbalanced Optimal Transport", 2019.
      Luise et al., "Differential Properties of Sinkhorn Approximation", NeurIPS 2018;
      Cuturi et al., "Optimal Transport Tools (OTT)", 2022 (implicit differentiation).

    Examples:
      >>> import jax.numpy as jnp
      >>> cost = jnp.array([[0.0, 1.0], [1.0, 0.0]])
      >>> out = sinkhorn(cost, epsilon=0.01)
      >>> out.plan.round(3).tolist(), bool(out.converged)
      ([[0.5, 0.0], [0.0, 0.5]], True)
      >>> forbidden = jnp.array([[0.0, jnp.inf], [1.0, 0.0]])  # pair (0, 1) is not allowed
      >>> float(sinkhorn(forbidden, epsilon=0.01).transport_cost)
      0.0
    """
    out = _run_dense(
        cost, a, b, epsilon,
        dict(
            tau_a=tau_a, tau_b=tau_b, relative_epsilon=relative_epsilon, max_iters=max_iters,
            tol=tol, inner_iters=inner_iters, epsilon_init=epsilon_init,
            epsilon_decay=epsilon_decay, implicit_diff=implicit_diff,
            implicit_solver=implicit_solver, cg_max_iters=cg_max_iters,
        ),
    )  # fmt: skip
    checks.warn_unconverged(out.converged, "sinkhorn", _UNCONVERGED_HINT)
    return out


def sinkhorn_points(
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    a: jax.typing.ArrayLike | None = None,
    b: jax.typing.ArrayLike | None = None,
    *,
    epsilon: jax.typing.ArrayLike,
    cost_fn: CostFn = _costs.squared_euclidean,
    chunk_size: int = 256,
    tau_a: jax.typing.ArrayLike = 1.0,
    tau_b: jax.typing.ArrayLike = 1.0,
    relative_epsilon: bool | str = False,
    max_iters: int = 2000,
    tol: jax.typing.ArrayLike | None = 1e-3,
    inner_iters: int = 10,
    epsilon_init: jax.typing.ArrayLike | None = None,
    epsilon_decay: jax.typing.ArrayLike = 0.9,
    cg_max_iters: int = 500,
) -> SinkhornPointsOutput:
    """:func:`sinkhorn` between point clouds, never building the ``[n, m]`` cost (online mode).

    Solves the problem of :func:`sinkhorn` for ``C = cost_fn(x, y)``, computing ``C`` on the fly
    ``chunk_size`` rows (or columns) at a time inside every log-sum-exp and discarding it, so
    memory is ``O((n + m) d + chunk_size * max(n, m))`` instead of ``O(n m)``; each iteration
    recomputes the cost twice (``g`` then ``f`` update), so it is slower than :func:`sinkhorn` on
    a stored matrix when that fits. Same iterations, fixed point, outputs and conventions as
    :func:`sinkhorn` (its ``tol=None``, ``epsilon_init`` and ``relative_epsilon`` options
    included), except:

    * the result is a :class:`SinkhornPointsOutput`, without the plan: the plan is
      ``a_i b_j exp((f_i + g_j - C_ij) / epsilon)``; rows ``k:l`` are ``a[k:l, None] * b *
      jnp.exp((f[k:l, None] + g - cost_fn(x[k:l], y)) / epsilon)``;
    * gradients are implicit only. ``regularized_cost`` is differentiated by the envelope
      theorem, ``d/dtheta D(f, g; theta)`` at the solved potentials (``sum_ij P_ij dC_ij/dx``
      for the points: exact at the fixed point, no linear solve); ``f``, ``g`` and
      ``transport_cost`` by implicit differentiation with matrix-free conjugate gradients (each
      step two passes over the blocks). The blocks are recomputed in the backward pass
      (``jax.checkpoint``), so gradients in ``x``, ``y``, ``a``, ``b``, ``epsilon`` and ``tau``
      also stay ``O(n + m)`` in memory.

    Args:
      x: Array of shape ``[n, d]``.
      y: Array of shape ``[m, d]``.
      a: Weights of shape ``[n]``, non-negative; ``None`` for uniform ``1 / n``. Points of zero
        weight are never read (padding).
      b: Weights of shape ``[m]``, non-negative; ``None`` for uniform ``1 / m``.
      epsilon: Positive entropic regularisation (traced, differentiable).
      cost_fn: Pairwise cost ``(x_block [c, d], y [m, d]) -> [c, m]`` (a cost
        function of ``alignment``, or your own); default squared Euclidean (not halved).
      chunk_size: Rows (columns) of the cost computed at once (static). Larger is faster until
        the blocks leave the cache; ``chunk_size * max(n, m)`` floats are live at a time.
      tau_a, tau_b: As in :func:`sinkhorn`.
      relative_epsilon: As in :func:`sinkhorn` (its scale costs one more pass over the blocks).
      max_iters, tol, inner_iters: As in :func:`sinkhorn`.
      epsilon_init, epsilon_decay, cg_max_iters: As in :func:`sinkhorn`.

    Returns:
      A :class:`SinkhornPointsOutput` (``f``, ``g``, ``transport_cost``, ``regularized_cost``,
      ``n_iters``, ``marginal_error``, ``converged``).

    Raises:
      ValueError: ``x`` / ``y`` not non-empty 2-D arrays with the same ``d``; bad
        ``chunk_size``; the weight and option errors of :func:`sinkhorn`.

    Bad input: shapes, dtypes (complex raises), array-valued scalars and static options
    are checked at trace time (``ValueError`` naming the argument, also under ``jit``/``vmap``).
    Concrete bad values raise: ``epsilon`` or ``tol`` not finite and positive (``tol=nan``
    included), ``tau`` outside ``(0, 1]``, negative, non-finite or all-zero weights, unequal
    masses in a balanced problem (a relative tolerance set by the dtype).
    Traced bad values give NaN floats, ``n_iters = -1`` and ``converged = False``. NaN in a
    real (positive-weight) cost entry propagates; ``+inf`` entries are forbidden pairs (zero
    mass, finite costs); zero-weight rows / columns are never read (NaN, inf or 1e30 there
    change nothing but their own potentials). float16 / bfloat16 run in float32 and return the
    input dtype. A concrete call that ends unconverged warns (:class:`ConvergenceWarning`). See
    docs/conventions.md.

    References:
      Feydy et al., "Interpolating between Optimal Transport and MMD using Sinkhorn
      Divergences", AISTATS 2019 (online log-sum-exp reductions, as in KeOps / GeomLoss).

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[0.0], [1.0], [2.0]]); y = jnp.array([[0.1], [2.1]])
      >>> out = sinkhorn_points(x, y, epsilon=0.01, chunk_size=2)  # x[1] splits between y
      >>> round(float(out.transport_cost), 3), bool(out.converged)
      (0.343, True)
    """
    out = _run_points(
        x, y, a, b, epsilon, cost_fn, chunk_size,
        dict(
            tau_a=tau_a, tau_b=tau_b, relative_epsilon=relative_epsilon, max_iters=max_iters,
            tol=tol, inner_iters=inner_iters, epsilon_init=epsilon_init,
            epsilon_decay=epsilon_decay, cg_max_iters=cg_max_iters,
        ),
    )  # fmt: skip
    checks.warn_unconverged(out.converged, "sinkhorn_points", _UNCONVERGED_HINT)
    return out


def sinkhorn_divergence(
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    a: jax.typing.ArrayLike | None = None,
    b: jax.typing.ArrayLike | None = None,
    *,
    epsilon: jax.typing.ArrayLike,
    cost_fn: CostFn = _costs.squared_euclidean,
    chunk_size: int | None = None,
    **kwargs,
) -> jax.Array:
    """Debiased Sinkhorn divergence ``OT(x, y) - (OT(x, x) + OT(y, y)) / 2`` (balanced).

    ``OT`` is :func:`sinkhorn`'s ``regularized_cost``, ``<P, C> + eps KL(P | a b^T)`` (the
    form for which the divergence is non-negative and zero iff the measures are equal; with the
    entropy form ``<P, C> - eps H(P)`` it would not be). With equal inputs the three terms are
    computed identically and the result is exactly 0 (when ``x`` and ``y`` are the same array;
    two different traced arrays holding equal values give 0 up to the solver's tolerance).

    Numerics: non-negative up to the solver's tolerance (a value of ``-tol``-size can occur
    when the inputs nearly coincide). Differentiable in ``x``, ``y``, ``a``, ``b`` and
    ``epsilon`` (finite at equal inputs, where the plans are nearly permutations). ``sum(a)``
    must equal ``sum(b)``. With ``relative_epsilon`` the three problems share one absolute
    epsilon, ``epsilon`` times the scale of the cross cost ``cost_fn(x, y)``.

    Args:
      x: Array of shape ``[n, d]``.
      y: Array of shape ``[m, d]``.
      a: Weights ``[n]`` or ``None`` (uniform).
      b: Weights ``[m]`` or ``None`` (uniform).
      epsilon: Positive regularisation (traced).
      cost_fn: Pairwise cost ``([n, d], [m, d]) -> [n, m]``; default squared Euclidean (not
        halved).
      chunk_size: ``None`` (default): dense costs and :func:`sinkhorn`. An int: the online
        :func:`sinkhorn_points` with that ``chunk_size``, memory ``O(n + m)`` (same value).
      **kwargs: Passed to :func:`sinkhorn` / :func:`sinkhorn_points` (``max_iters``, ``tol``,
        ``relative_epsilon``, ...), except the marginal relaxations ``tau_a`` / ``tau_b``
        (balanced only).

    Returns:
      Scalar divergence (the dtype of ``x`` and ``y``).

    Bad input: as :func:`sinkhorn` (shapes and static options raise at trace time; concrete bad
    values raise; traced bad values, unequal masses included, give NaN); points of zero weight
    are never read. A concrete call whose solves end unconverged warns once
    (:class:`ConvergenceWarning`). See docs/conventions.md.

    References:
      Genevay, Peyre & Cuturi, "Learning Generative Models with Sinkhorn Divergences", AISTATS
      2018; Feydy et al., "Interpolating between Optimal Transport and MMD using Sinkhorn
      Divergences", AISTATS 2019.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[0.0], [1.0]]); y = jnp.array([[0.5], [2.0]])
      >>> float(sinkhorn_divergence(x, x, epsilon=0.1))
      0.0
      >>> bool(sinkhorn_divergence(x, y, epsilon=0.1) > 0)
      True
      >>> online = sinkhorn_divergence(x, y, epsilon=0.1, chunk_size=1)  # never builds [n, m]
      >>> bool(abs(online - sinkhorn_divergence(x, y, epsilon=0.1)) < 1e-6)
      True
    """
    if "tau_a" in kwargs or "tau_b" in kwargs:
        raise ValueError("`sinkhorn_divergence` is balanced: `tau_a` / `tau_b` are not accepted.")
    if chunk_size is not None and ("implicit_diff" in kwargs or "implicit_solver" in kwargs):
        raise ValueError("`implicit_diff` / `implicit_solver` apply to the dense mode only.")
    x, y = checks.point_pair(x, y, non_empty=True)
    out_dtype = x.dtype
    cdt = checks.compute_dtype(out_dtype)
    x, y = x.astype(cdt), y.astype(cdt)
    n, m = x.shape[0], y.shape[0]
    a, _ = checks.weights(a, n, "a", cdt, what=" [n] to match `x`")
    b, _ = checks.weights(b, m, "b", cdt, what=" [m] to match `y`")
    checks.scalar(epsilon, "epsilon", "positive")
    if not callable(cost_fn):
        raise ValueError(f"`cost_fn` must be callable, got {cost_fn!r}.")
    # points of zero weight are never read (double where: their gradient is 0, not NaN)
    x = jnp.where((a > 0)[:, None], x, 0.0)
    y = jnp.where((b > 0)[:, None], y, 0.0)
    kwargs = dict(kwargs)
    rel = kwargs.pop("relative_epsilon", False)
    checks.static_choice(rel, "relative_epsilon", (False, True, "mean", "max"))
    if rel is not False:
        kind = "mean" if rel is True else rel
        sa, sb = a > 0, b > 0
        if chunk_size is None:
            scale = _dense_scale(kind, cost_fn(x, y), sa, sb)
        else:
            chunk = checks.static_int(chunk_size, "chunk_size", minimum=1)
            scale = _points_scale(kind, _Points(x, y, cost_fn, chunk), sa, sb)
        epsilon = epsilon * scale

    def ot(p, q, wp, wq):
        if chunk_size is not None:
            return _run_points(p, q, wp, wq, epsilon, cost_fn, chunk_size, kwargs)
        common = {"implicit_diff": True, "implicit_solver": "auto"} | kwargs
        return _run_dense(cost_fn(p, q), wp, wq, epsilon, common)

    xy, xx, yy = ot(x, y, a, b), ot(x, x, a, a), ot(y, y, b, b)
    ok = xy.converged & xx.converged & yy.converged
    checks.warn_unconverged(ok, "sinkhorn_divergence", _UNCONVERGED_HINT)
    value = xy.regularized_cost - 0.5 * (xx.regularized_cost + yy.regularized_cost)
    return value.astype(out_dtype)


def barycentric_projection(plan: jax.typing.ArrayLike, y: jax.typing.ArrayLike) -> jax.Array:
    """The barycentric map of a transport plan: ``T(x_i) = sum_j P_ij y_j / sum_j P_ij``.

    Maps each source point to the plan-weighted mean of its targets (the row-normalised plan
    times ``y``), as POT's ``ot.da`` barycentric mapping: the Monge map estimate of an entropic
    plan (Seguy et al., 2018; Pooladian & Niles-Weed, 2021).

    Rows of zero mass (zero-weight padding, or a source point whose mass underflowed) have no
    target: their rows of the result are NaN (never a plausible point; POT writes 0 there), with
    zero, finite gradients.

    Args:
      plan: Array ``[n, m]``, non-negative (``sinkhorn(...).plan``).
      y: Target points ``[m, d]``, or values ``[m]``.

    Returns:
      Array ``[n, d]`` (or ``[n]`` for 1-D ``y``), in the dtype of ``plan`` and ``y``.

    Bad input: shapes are checked at trace time (``ValueError`` naming the argument, also under
    ``jit``/``vmap``); a concrete plan with negative entries raises; under ``jit`` a negative
    entry gives NaN in its row. NaN in the plan or in ``y`` propagates to the rows that read it.
    float16 / bfloat16 are computed in float32 and returned in the input dtype. See
    docs/conventions.md.

    Examples:
      >>> import jax.numpy as jnp
      >>> plan = jnp.array([[0.25, 0.25], [0.0, 0.5], [0.0, 0.0]])
      >>> y = jnp.array([[0.0, 0.0], [2.0, 4.0]])
      >>> barycentric_projection(plan, y).tolist()
      [[1.0, 2.0], [2.0, 4.0], [nan, nan]]
    """
    plan = checks.as_float_array(plan, "plan")
    checks.check_matrix(plan, "plan", "[n, m]")
    y = checks.as_float_array(y, "y")
    if y.ndim not in (1, 2) or y.shape[0] != plan.shape[1]:
        raise ValueError(
            f"`y` must have shape [m] or [m, d] with m = {plan.shape[1]} (the columns of `plan`"
            f", shape {plan.shape}), got {y.shape}."
        )
    if checks.is_concrete(plan) and np.any(np.asarray(plan, np.float64) < 0):
        raise ValueError(f"`plan` must be non-negative, got min {float(np.min(plan))!r}.")
    return _barycentric_core(plan, y)


@jax.jit
def _barycentric_core(plan, y):
    out_dtype = jnp.result_type(plan, y)
    cdt = checks.compute_dtype(out_dtype)
    plan, y = plan.astype(cdt), y.astype(cdt)
    flat = y.ndim == 1
    y2 = y[:, None] if flat else y
    y2 = jnp.where((jnp.sum(plan, axis=0) > 0)[:, None], y2, 0.0)  # targets of no mass: unread
    mass = jnp.sum(plan, axis=1)
    has = mass > 0
    out = (plan @ y2) / jnp.where(has, mass, 1.0)[:, None]
    bad_row = ~has | jnp.any(plan < 0, axis=1)
    out = jnp.where(bad_row[:, None], jnp.nan, out)
    return (out[:, 0] if flat else out).astype(out_dtype)
