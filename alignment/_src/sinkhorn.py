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
checked every ``inner_iterations`` inside a ``lax.while_loop`` (ott-jax's criterion and period).
``threshold=None`` runs exactly ``max_iterations`` iterations with no convergence test, so that
under ``vmap`` no problem pays for checks of the others.

Speed (:func:`sinkhorn` with implicit gradients and no ``epsilon_init``): the iterations are
computed by *absorption*. Each block of ``inner_iterations`` iterations does one exact log-domain
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
with ``max_iterations``). Either way ``d regularized_cost / d C = P`` (envelope theorem).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from alignment._src import costs as _costs
from alignment._src.checks import (
    as_float_array,
    check_matrix,
    check_positive,
    is_concrete,
    point_pair,
)

__all__ = ["SinkhornOutput", "sinkhorn", "sinkhorn_divergence", "sinkhorn_points"]

CostFn = Callable[[jax.Array, jax.Array], jax.Array]

_DIRECT_SOLVE_MAX = 512  # n + m up to which the implicit backward uses a dense solve
_ABSORB_MAX = 20.0  # largest |log scaling| a block of absorbed iterations may reach


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
      n_iterations: Int scalar, Sinkhorn iterations run (one ``g`` and one ``f`` update each).
      marginal_error: Scalar, L1 error of the column marginal at the end (rows are exact).
      converged: Bool scalar, ``marginal_error < threshold`` at the target epsilon (with
        ``threshold=None``: whether the outputs are finite).
    """

    plan: jax.Array
    f: jax.Array
    g: jax.Array
    transport_cost: jax.Array
    regularized_cost: jax.Array
    n_iterations: jax.Array
    marginal_error: jax.Array
    converged: jax.Array


class _Static(NamedTuple):
    max_iterations: int
    inner_iterations: int
    fixed: bool  # threshold is None: run exactly max_iterations
    scaling: bool  # epsilon_init given
    implicit: bool
    implicit_solver: str  # "direct" | "cg"
    cg_maxiter: int
    warm: bool  # single-pass log-sum-exp shifted by the previous potentials (not under scan)
    absorb: bool  # the fast path: blocks of iterations as scalings of one exp pass


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
    pos = w > 0
    return jnp.where(
        pos, w * jnp.exp(jnp.where(pos, (f[:, None] + g[None, :] - cost) / eps, 0.0)), 0.0
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


def _solve(geom, a, b, eps, tau_a, tau_b, threshold, eps_init, eps_decay, static: _Static):
    """Runs the iterations; returns ``(f, g, n_iterations, marginal_error, converged)``."""
    log_a, log_b = _safe_log(a), _safe_log(b)
    dtype = geom.dtype
    n, m = geom.shape

    def eps_at(it):
        if not static.scaling:
            return eps
        return jnp.maximum(eps, eps_init * eps_decay ** it.astype(dtype))

    def one(it, fg):
        f, g = fg
        e = eps_at(it)
        g = _g_update(f, g, geom, log_a, e, tau_b, static.warm)
        f = _f_update(f, g, geom, log_b, e, tau_a, static.warm)
        return f, g

    f0, g0 = jnp.zeros((n,), dtype), jnp.zeros((m,), dtype)
    inf = jnp.asarray(jnp.inf, dtype)

    if static.fixed:
        f, g = jax.lax.fori_loop(0, static.max_iterations, one, (f0, g0))
        err = _column_error(f, g, geom, log_a, b, eps, tau_b)
        n_it = jnp.asarray(static.max_iterations, jnp.int32)
        ok = jnp.isfinite(err) & jnp.all(jnp.isfinite(f)) & jnp.all(jnp.isfinite(g))
        return f, g, n_it, err, ok

    inner = static.inner_iterations
    n_blocks = -(-static.max_iterations // inner)

    def block(state):
        f, g, it, _ = state
        # static bounds: a scan, reverse-differentiable in the unrolled mode
        f, g = jax.lax.fori_loop(0, inner, lambda k, fg: one(it + k, fg), (f, g))
        it = it + inner
        err = _column_error(f, g, geom, log_a, b, eps_at(it - 1), tau_b)
        at_target = eps_at(it - 1) <= eps
        err = jnp.where(at_target, err, inf)  # no stop before the target epsilon
        return f, g, it, err

    def done(state):
        return ~(state[3] >= threshold)  # also stops on NaN

    state0 = (f0, g0, jnp.asarray(0, jnp.int32), inf)
    if static.implicit:
        state = jax.lax.while_loop(lambda s: (s[2] < n_blocks * inner) & ~done(s), block, state0)
    else:  # reverse-differentiable: a scan over the blocks, frozen once converged
        state, _ = jax.lax.scan(
            lambda s, _: (jax.lax.cond(done(s), lambda t: t, block, s), None),
            state0,
            None,
            length=n_blocks,
        )
    f, g, n_it, err = state
    if static.scaling:  # the loop's error is inf until the target epsilon is reached
        err = _column_error(f, g, geom, log_a, b, eps, tau_b)
    return f, g, n_it, err, err < threshold


def _spread_ok(lu: jax.Array, mask: jax.Array) -> jax.Array:
    """True when the log-scalings ``lu`` (on ``mask``) are finite and within ``+-_ABSORB_MAX``."""
    return jnp.all(jnp.where(mask, jnp.abs(lu) <= _ABSORB_MAX, True))


def _solve_absorb(geom, a, b, eps, tau_a, tau_b, threshold, static: _Static):
    """The fast path of :func:`_solve` (fixed epsilon): Sinkhorn with absorption.

    Each block of (up to) ``inner_iterations`` iterations does one exact log-domain iteration,
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
    budget = static.max_iterations
    inner = static.inner_iterations

    def block(state):
        f, g, it, _ = state
        g = _g_update(f, g, geom, log_a, eps, tau_b, False)
        x = log_b[None, :] + (g[None, :] - cost) / eps
        mx = jnp.max(x, axis=1)
        mx = jnp.where(jnp.isfinite(mx), mx, 0.0)
        e = jnp.exp(x - mx[:, None])
        log_s = jnp.log(jnp.sum(e, axis=1))
        f = -tau_a * eps * (log_s + mx)
        # row factors of the plan: a exp(mx + f / eps) (= a / s when balanced)
        w = a * jnp.exp((1.0 - tau_a) * (mx + log_s) - log_s)
        it = it + 1

        def step(_, carry):
            lu, lv, it, ok = carry
            col = (w * jnp.exp(lu)) @ e
            lv_new = jnp.where(sb, tau_b * (log_b - jnp.log(col)) + (tau_b - 1.0) * g / eps, 0.0)
            row = w * (e @ jnp.exp(lv_new))
            lu_new = jnp.where(sa, tau_a * (log_a - jnp.log(row)) + (tau_a - 1.0) * f / eps, 0.0)
            ok = ok & (it < budget) & _spread_ok(lu_new, sa) & _spread_ok(lv_new, sb)
            lu, lv = jnp.where(ok, lu_new, lu), jnp.where(ok, lv_new, lv)
            return lu, lv, it + ok.astype(it.dtype), ok

        carry = (jnp.zeros((n,), dtype), jnp.zeros((m,), dtype), it, jnp.asarray(True))
        lu, lv, it, _ = jax.lax.fori_loop(0, inner - 1, step, carry)
        f, g = f + eps * lu, g + eps * lv
        if static.fixed:
            err = jnp.asarray(jnp.inf, dtype)
        else:
            col = jnp.exp(lv) * ((w * jnp.exp(lu)) @ e)
            err = jnp.sum(jnp.abs(col - b * jnp.exp(jnp.where(sb, -g * rb, 0.0))))
        return f, g, it, err

    inf = jnp.asarray(jnp.inf, dtype)
    state0 = (jnp.zeros((n,), dtype), jnp.zeros((m,), dtype), jnp.asarray(0, jnp.int32), inf)
    if static.fixed:
        cond = lambda s: s[2] < budget
    else:
        cond = lambda s: (s[2] < budget) & ~(s[3] < threshold)  # also stops on NaN
    f, g, n_it, err = jax.lax.while_loop(cond, block, state0)
    if static.fixed:
        err = _column_error(f, g, geom, log_a, b, eps, tau_b)
        ok = jnp.isfinite(err) & jnp.all(jnp.isfinite(f)) & jnp.all(jnp.isfinite(g))
        return f, g, n_it, err, ok
    return f, g, n_it, err, err < threshold


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

    if plan is not None:
        mat = jnp.block([[jnp.diag(d_a), plan], [plan.T, jnp.diag(d_b)]])
        mat = mat + du_scale * jnp.outer(du, du)
        x = jnp.linalg.solve(mat, rhs)
    else:
        # Jacobi-preconditioned CG, written in the scaled variable y = sqrt(D) x.
        s = jax.lax.rsqrt(diag)

        def op(y):
            x = s * y
            xf, xg = x[:n], x[n:]
            ax = jnp.concatenate([d_a * xf + matvec(xg), rmatvec(xf) + d_b * xg])
            ax = ax + du * (du_scale * jnp.dot(du, x))
            return s * ax

        tol = max(1e-10, 100.0 * float(jnp.finfo(dtype).eps))
        y, _ = jax.scipy.sparse.linalg.cg(op, s * rhs, tol=tol, maxiter=cg_maxiter)
        x = s * y
    return eps * jnp.where(sa, x[:n], 0.0), eps * jnp.where(sb, x[n:], 0.0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(8,))
def _implicit(f, g, cost, a, b, eps, tau_a, tau_b, static: _Static):
    del cost, a, b, eps, tau_a, tau_b, static
    return f, g


def _implicit_fwd(f, g, cost, a, b, eps, tau_a, tau_b, static):
    return (f, g), (f, g, cost, a, b, eps, tau_a, tau_b)


def _implicit_bwd(static, res, cot):
    f, g, cost, a, b, eps, tau_a, tau_b = res
    plan = _plan(f, g, cost, a, b, eps)
    lam = _adjoint(
        f, g, a, b, eps, tau_a, tau_b, *cot,
        row=jnp.sum(plan, axis=1), col=jnp.sum(plan, axis=0),
        matvec=lambda v: plan @ v, rmatvec=lambda u: u @ plan,
        plan=plan if static.implicit_solver == "direct" else None, cg_maxiter=static.cg_maxiter,
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
# Validation.
# --------------------------------------------------------------------------------------------


def _weights(w, size: int, name: str, dim: str, dtype, what: str) -> jax.Array:
    if w is None:
        return jnp.full((size,), 1.0 / size, dtype)
    w = as_float_array(w, name)
    if w.shape != (size,):
        raise ValueError(
            f"`{name}` must have shape [{dim}] = ({size},) to match {what}, got {w.shape}."
        )
    if is_concrete(w):
        arr = np.asarray(w)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"`{name}` must be finite.")
        if np.any(arr < 0):
            raise ValueError(f"`{name}` must be non-negative, got min {arr.min()!r}.")
        if not np.any(arr > 0):
            raise ValueError(f"`{name}` must have at least one positive weight.")
    return w.astype(dtype)


def _check_tau(tau, name: str) -> None:
    if is_concrete(tau):
        arr = np.asarray(tau)
        if arr.ndim != 0 or not (0.0 < float(arr) <= 1.0):
            raise ValueError(f"`{name}` must be a scalar in (0, 1], got {tau!r}.")


def _is_one(tau) -> bool:
    return is_concrete(tau) and float(np.asarray(tau)) == 1.0


def _check_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
    return int(value)


def _setup(
    n, m, dtype, what, a, b, epsilon, tau_a, tau_b, max_iterations, threshold, inner_iterations,
    epsilon_init, epsilon_decay, implicit_diff, implicit_solver, cg_maxiter,
):  # fmt: skip
    """Validates the options shared by :func:`sinkhorn` and :func:`sinkhorn_points`."""
    a = _weights(a, n, "a", "n", dtype, what)
    b = _weights(b, m, "b", "m", dtype, what)
    check_positive(epsilon, "epsilon")
    _check_tau(tau_a, "tau_a")
    _check_tau(tau_b, "tau_b")
    max_iterations = _check_int(max_iterations, "max_iterations")
    inner_iterations = _check_int(inner_iterations, "inner_iterations")
    cg_maxiter = _check_int(cg_maxiter, "cg_maxiter")
    if threshold is not None:
        check_positive(threshold, "threshold")
    if epsilon_init is not None:
        check_positive(epsilon_init, "epsilon_init")
        if is_concrete(epsilon_decay) and not 0.0 < float(np.asarray(epsilon_decay)) < 1.0:
            raise ValueError(f"`epsilon_decay` must be in (0, 1), got {epsilon_decay!r}.")
    if implicit_solver not in ("auto", "direct", "cg"):
        raise ValueError(
            f"`implicit_solver` must be 'auto', 'direct' or 'cg', got {implicit_solver!r}."
        )
    if _is_one(tau_a) and _is_one(tau_b) and is_concrete(a) and is_concrete(b):
        sum_a, sum_b = float(np.sum(np.asarray(a))), float(np.sum(np.asarray(b)))
        if not np.isclose(sum_a, sum_b, rtol=1e-4, atol=0.0):
            raise ValueError(
                f"balanced problem (tau_a = tau_b = 1) needs `a` and `b` of equal mass, got "
                f"sum(a) = {sum_a!r} and sum(b) = {sum_b!r}; rescale them or set tau_a / "
                "tau_b < 1 for unbalanced transport."
            )
    if implicit_solver == "auto":
        implicit_solver = "direct" if n + m <= _DIRECT_SOLVE_MAX else "cg"
    static = _Static(
        max_iterations=max_iterations,
        inner_iterations=min(inner_iterations, max_iterations),
        fixed=threshold is None,
        scaling=epsilon_init is not None,
        implicit=bool(implicit_diff),
        implicit_solver=implicit_solver,
        cg_maxiter=cg_maxiter,
        warm=threshold is not None and bool(implicit_diff),  # no lax.cond to differentiate
        absorb=bool(implicit_diff) and epsilon_init is None,
    )
    thr = None if threshold is None else jnp.asarray(threshold, dtype)
    eps_init = None if epsilon_init is None else jnp.asarray(epsilon_init, dtype)
    arrays = (jnp.asarray(epsilon, dtype), jnp.asarray(tau_a, dtype), jnp.asarray(tau_b, dtype))
    return a, b, *arrays, thr, eps_init, jnp.asarray(epsilon_decay, dtype), static


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
    max_iterations: int = 2000,
    threshold: jax.typing.ArrayLike | None = 1e-3,
    inner_iterations: int = 10,
    epsilon_init: jax.typing.ArrayLike | None = None,
    epsilon_decay: jax.typing.ArrayLike = 0.9,
    implicit_diff: bool = True,
    implicit_solver: str = "auto",
    cg_maxiter: int = 500,
) -> SinkhornOutput:
    """Entropic optimal transport by log-domain Sinkhorn iterations (balanced or unbalanced).

    Solves ``min_P <P, C> + eps KL(P | a b^T) + rho_a KL(P 1 | a) + rho_b KL(P^T 1 | b)`` with
    ``rho = eps tau / (1 - tau)`` (ott-jax's ``tau``; ``tau = 1`` is balanced). See the module
    docstring for the conventions on the potentials and the two costs returned.

    Numerics: all updates are log-sum-exps, so small ``epsilon`` (``1e-3`` on costs of size 1 in
    float32) stays finite, if slow to converge (use ``epsilon_init``). Zero weights are allowed:
    their rows / columns of the plan are exactly 0, their potentials are the finite c-transforms
    (treated as constants by the implicit gradient), and padding a problem with zero weights
    gives the unpadded result. Balanced problems need ``sum(a) == sum(b)``: checked when the
    weights are concrete; under ``jit`` unequal sums give a plan that never converges
    (``converged`` is False). In the balanced case the potentials, and the gradients in ``a`` and
    ``b``, are defined up to an additive constant: only zero-sum changes of the weights are
    meaningful. Under ``jit`` a non-positive ``epsilon`` is not caught and gives NaN.

    Args:
      cost: Array of shape ``[n, m]``.
      a: Weights of shape ``[n]``, non-negative; ``None`` for uniform ``1 / n``.
      b: Weights of shape ``[m]``, non-negative; ``None`` for uniform ``1 / m``.
      epsilon: Positive entropic regularisation (traced, differentiable).
      tau_a: In ``(0, 1]``: relaxation of the row marginal, ``rho_a / (rho_a + epsilon)``
        (traced, differentiable); 1 (default) enforces ``P 1 = a``.
      tau_b: The same for the column marginal.
      max_iterations: Iteration budget (static). With a ``threshold`` and ``implicit_diff=False``
        or ``epsilon_init``, rounded up to a multiple of ``inner_iterations``.
      threshold: Stop when ``marginal_error < threshold`` (traced), checked every
        ``inner_iterations`` (or at the end of a shorter block of absorbed iterations, see the
        module); ``None`` runs exactly ``max_iterations`` with no convergence test (meant for
        ``vmap`` over many small problems).
      inner_iterations: Iterations between convergence checks (static), also the length of a
        block of absorbed iterations.
      epsilon_init: Optional epsilon scaling: iteration ``t`` uses
        ``max(epsilon, epsilon_init * epsilon_decay ** t)``; convergence is only declared once
        the target ``epsilon`` is reached. Gradients are those of the target problem.
      epsilon_decay: Decay factor of the schedule, in ``(0, 1)``.
      implicit_diff: ``True`` (default): gradients by implicit differentiation at the fixed
        point (memory independent of the iterations). ``False``: differentiate through the
        iterations (memory ``O(max_iterations n m)``; keep ``max_iterations`` small).
      implicit_solver: ``"direct"`` (dense ``(n + m)^2`` solve), ``"cg"`` (conjugate gradients,
        matrix-free) or ``"auto"`` (direct when ``n + m <= 512``).
      cg_maxiter: Conjugate-gradient iterations at most in the implicit backward.

    Returns:
      A :class:`SinkhornOutput` (``plan [n, m]``, ``f [n]``, ``g [m]``, scalars
      ``transport_cost``, ``regularized_cost``, ``n_iterations``, ``marginal_error``,
      ``converged``).

    Raises:
      ValueError: ``cost`` not a non-empty 2-D array; ``a`` / ``b`` of the wrong shape,
        negative, non-finite or all zero; balanced with ``sum(a) != sum(b)``; ``epsilon`` not
        positive; ``tau`` outside ``(0, 1]``; bad iteration counts or solver name.

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
    """
    cost = as_float_array(cost, "cost")
    check_matrix(cost, "cost")
    n, m = cost.shape
    a, b, eps, tau_a, tau_b, thr, eps_init, decay, static = _setup(
        n, m, cost.dtype, "`cost`", a, b, epsilon, tau_a, tau_b, max_iterations, threshold,
        inner_iterations, epsilon_init, epsilon_decay, implicit_diff, implicit_solver, cg_maxiter,
    )  # fmt: skip
    if static.implicit:
        sg = jax.lax.stop_gradient
        args = (_Dense(sg(cost)), sg(a), sg(b), sg(eps), sg(tau_a), sg(tau_b), thr)
        if static.absorb:
            f, g, n_it, err, ok = _solve_absorb(*args, static)
        else:
            f, g, n_it, err, ok = _solve(*args, eps_init, decay, static)
        f, g = _implicit(f, g, cost, a, b, eps, tau_a, tau_b, static)
    else:
        f, g, n_it, err, ok = _solve(
            _Dense(cost), a, b, eps, tau_a, tau_b, thr, eps_init, decay, static
        )
        err = jax.lax.stop_gradient(err)
    plan = _plan(f, g, cost, a, b, eps)
    return SinkhornOutput(
        plan=plan,
        f=f,
        g=g,
        transport_cost=jnp.sum(plan * cost),
        regularized_cost=_dual(f, g, plan, a, b, eps, tau_a, tau_b),
        n_iterations=n_it,
        marginal_error=err,
        converged=ok,
    )


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
    max_iterations: int = 2000,
    threshold: jax.typing.ArrayLike | None = 1e-3,
    inner_iterations: int = 10,
    epsilon_init: jax.typing.ArrayLike | None = None,
    epsilon_decay: jax.typing.ArrayLike = 0.9,
    cg_maxiter: int = 500,
) -> SinkhornOutput:
    """:func:`sinkhorn` between point clouds, never building the ``[n, m]`` cost (online mode).

    Solves the problem of :func:`sinkhorn` for ``C = cost_fn(x, y)``, computing ``C`` on the fly
    ``chunk_size`` rows (or columns) at a time inside every log-sum-exp and discarding it, so
    memory is ``O((n + m) d + chunk_size * max(n, m))`` instead of ``O(n m)``; each iteration
    recomputes the cost twice (``g`` then ``f`` update), so it is slower than :func:`sinkhorn` on
    a stored matrix when that fits. Same iterations, fixed point, outputs and conventions as
    :func:`sinkhorn` (its ``threshold=None`` and ``epsilon_init`` options included), except:

    * ``plan`` is ``None``: the plan is ``a_i b_j exp((f_i + g_j - C_ij) / epsilon)``; rows
      ``k:l`` are ``a[k:l, None] * b * jnp.exp((f[k:l, None] + g - cost_fn(x[k:l], y)) /
      epsilon)``;
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
      a: Weights of shape ``[n]``, non-negative; ``None`` for uniform ``1 / n``.
      b: Weights of shape ``[m]``, non-negative; ``None`` for uniform ``1 / m``.
      epsilon: Positive entropic regularisation (traced, differentiable); absolute, not relative
        to the cost's scale.
      cost_fn: Pairwise cost ``(x_block [c, d], y [m, d]) -> [c, m]`` (a cost
        function of :mod:`alignment`, or your own); default squared Euclidean (not halved).
      chunk_size: Rows (columns) of the cost computed at once (static). Larger is faster until
        the blocks leave the cache; ``chunk_size * max(n, m)`` floats are live at a time.
      tau_a, tau_b, max_iterations, threshold, inner_iterations, epsilon_init, epsilon_decay,
        cg_maxiter: As in :func:`sinkhorn`.

    Returns:
      A :class:`SinkhornOutput` with ``plan=None``.

    Raises:
      ValueError: ``x`` / ``y`` not non-empty 2-D arrays with the same ``d``; bad
        ``chunk_size``; the weight and option errors of :func:`sinkhorn`.

    References:
      Feydy et al., "Interpolating between Optimal Transport and MMD using Sinkhorn
      Divergences", AISTATS 2019 (online log-sum-exp reductions, as in KeOps / GeomLoss).

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[0.0], [1.0], [2.0]]); y = jnp.array([[0.1], [2.1]])
      >>> out = sinkhorn_points(x, y, epsilon=0.01, chunk_size=2)  # x[1] splits between y
      >>> out.plan is None, round(float(out.transport_cost), 3), bool(out.converged)
      (True, 0.343, True)
    """
    x, y = point_pair(x, y, non_empty=True)
    n, m = x.shape[0], y.shape[0]
    chunk = _check_int(chunk_size, "chunk_size")
    a, b, eps, tau_a, tau_b, thr, eps_init, decay, static = _setup(
        n, m, x.dtype, "`x` / `y`", a, b, epsilon, tau_a, tau_b, max_iterations, threshold,
        inner_iterations, epsilon_init, epsilon_decay, True, "cg", cg_maxiter,
    )  # fmt: skip
    sg = jax.lax.stop_gradient
    geom = _Points(sg(x), sg(y), cost_fn, chunk)
    f, g, n_it, err, ok = _solve(
        geom, sg(a), sg(b), sg(eps), sg(tau_a), sg(tau_b), thr, eps_init, decay, static
    )
    geom = _Points(x, y, cost_fn, chunk)
    # envelope theorem: D at the (constant) solved potentials
    mass = jnp.sum(geom.plan_rows(f, g, a, b, eps, lambda p, _: jnp.sum(p, axis=1)))
    reg = _dual_from_mass(f, g, mass, a, b, eps, tau_a, tau_b)
    f, g = _implicit_points(f, g, x, y, a, b, eps, tau_a, tau_b, cost_fn, chunk, static.cg_maxiter)
    transport = jnp.sum(geom.plan_rows(f, g, a, b, eps, lambda p, c: jnp.sum(p * c, axis=1)))
    return SinkhornOutput(
        plan=None,
        f=f,
        g=g,
        transport_cost=transport,
        regularized_cost=reg,
        n_iterations=n_it,
        marginal_error=err,
        converged=ok,
    )


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
    computed identically and the result is exactly 0.

    Numerics: non-negative up to the solver's tolerance (a value of ``-threshold``-size can
    occur when the inputs nearly coincide). Differentiable in ``x``, ``y``, ``a``, ``b`` and
    ``epsilon`` through the implicit gradients of :func:`sinkhorn`. ``sum(a)`` must equal
    ``sum(b)``.

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
      **kwargs: Passed to :func:`sinkhorn` / :func:`sinkhorn_points` (``max_iterations``,
        ``threshold``, ...), except the marginal relaxations ``tau_a`` / ``tau_b`` (balanced
        only).

    Returns:
      Scalar divergence.

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
    x, y = point_pair(x, y, non_empty=True)
    if a is None:
        a = jnp.full((x.shape[0],), 1.0 / x.shape[0], x.dtype)
    if b is None:
        b = jnp.full((y.shape[0],), 1.0 / y.shape[0], y.dtype)

    def ot(p, q, wp, wq):
        if chunk_size is not None:
            out = sinkhorn_points(
                p, q, wp, wq, epsilon=epsilon, cost_fn=cost_fn, chunk_size=chunk_size, **kwargs
            )
            return out.regularized_cost
        return sinkhorn(cost_fn(p, q), wp, wq, epsilon=epsilon, **kwargs).regularized_cost

    return ot(x, y, a, b) - 0.5 * (ot(x, x, a, a) + ot(y, y, b, b))
