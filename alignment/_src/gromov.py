"""Entropic Gromov-Wasserstein (GW) and fused Gromov-Wasserstein (FGW) transport.

GW compares two measures that live in *different* spaces through their intra-domain costs only:
``cost_x [n, n]`` between the points of one modality, ``cost_y [m, m]`` between those of the
other. A plan ``P`` (``P 1 = a``, ``P^T 1 = b``) is good when it maps pairs of close points to
pairs of close points:

    ``GW(P) = sum_{i, j, k, l} L(cost_x[i, k], cost_y[j, l]) P_ij P_kl``

with ``L(s, t) = (s - t)^2`` (``loss="square"``) or ``L(s, t) = s log(s / t) - s + t``
(``loss="kl"``). The entropic problem solved here is

    ``min_P  GW(P) + eps KL(P | a b^T)``   subject to ``P 1 = a``, ``P^T 1 = b``,

which on the constraint set equals POT's ``GW(P) - eps H(P)`` up to a constant (POT's
``epsilon`` is our ``epsilon``; ott-jax's ``epsilon`` is half of it, see below). Fused GW adds a
cross-domain cost ``C [n, m]``: ``(1 - alpha) <C, P> + alpha GW(P)`` (POT's convention for
``alpha``: ``alpha = 1`` is pure GW, ``alpha = 0`` pure entropic OT).

Algorithm (Peyre, Cuturi & Solomon 2016, projected mirror descent with step ``1 / eps``, which is
POT's ``solver="PGD"``): from ``P_0 = a b^T`` (POT's initialisation), each outer iteration
linearises the objective at the current plan and solves the entropic OT problem whose cost is
its gradient,

    ``P_{k+1} = argmin_P <grad(P_k), P> + eps KL(P | a b^T)``,
    ``grad(P) = (1 - alpha) C + alpha (r 1^T + 1 c^T - h1(Cx) P h2(Cy)^T - h1(Cx)^T P h2(Cy))``

with ``L(s, t) = f1(s) + f2(t) - h1(s) h2(t)`` (square: ``f1 = s^2, f2 = t^2, h1 = s,
h2 = 2 t``; kl: ``f1 = s log s - s, f2 = t, h1 = s, h2 = log t``) and the marginal terms
``r = (f1(Cx) + f1(Cx)^T) a``, ``c = (f2(Cy) + f2(Cy)^T) b`` (Peyre et al.'s Proposition 1,
with the marginals of the plan replaced by ``a`` and ``b``, as POT does): two ``[n, n] x [n, m]
x [m, m]`` products per iteration, the ``n^2 m^2`` tensor is never built. Its fixed points are
the stationary points of the entropic problem above. Each linear problem is solved by the
library's log-domain Sinkhorn (``alignment._src.sinkhorn``, the absorption fast path), warm
started from the previous potentials: solving for the shifted cost ``grad - f_k 1^T - 1 g_k^T``
from zero *is* Sinkhorn on ``grad`` started from ``(f_k, g_k)``. The outer loop is a
``lax.while_loop`` of at most ``max_iters`` iterations that stops when the plan moves by less
than ``tol`` in L1, ``sum |P_{k+1} - P_k| < tol``; each inner solve runs at most
``sinkhorn_max_iters`` iterations and stops when its column error is below ``sinkhorn_tol``.
Nothing can hang: both loops are bounded, and a NaN stops the outer one.

ott-jax: its linearisation is ``grad / 2`` (``L(Cx, Cy) (x) P`` without the factor 2), so
ott-jax's ``GromovWasserstein(epsilon=e)`` solves our problem with ``epsilon = 2 e``.

Values: ``cost`` is ``GW(P)`` (fused: ``(1 - alpha) <C, P> + alpha GW(P)``) at the returned
plan, **without** the entropy: POT's ``entropic_gromov_wasserstein2`` /
``entropic_fused_gromov_wasserstein2`` value (``log["gw_dist"]``, ``log["fgw_dist"]``), computed
with the same tensor-product formula (``a`` and ``b`` in the marginal terms).
``regularized_cost`` is ``cost + eps KL(P | a b^T)`` (generalised KL, as ``sinkhorn``), the
objective minimised.

Gradients (envelope theorem, at the returned plan, as POT's ``gromov_wasserstein2``): the plan
and the potentials are held constant (``stop_gradient``) and the Lagrangian

    ``Lag = cost(P; cost_x, cost_y, C, a, b, alpha) + eps KL(P | a b^T)
            + <f, a - P 1> + <g, b - P^T 1>``

is differentiated, ``f, g`` being the multipliers of the constraints: the potentials of the
last linear problem less the marginal terms its cost carries (``f - alpha r``, ``g - alpha c``).
This is the exact derivative of the converged ``regularized_cost`` in ``cost_x``, ``cost_y``,
``cost``, ``a``, ``b``, ``epsilon`` and ``alpha`` at a stationary plan (the first-order
conditions kill the plan's own response). ``cost`` carries the same derivative without the
``eps KL`` term: the plan is treated as optimal for the unregularised objective (POT's
``gromov_wasserstein2`` convention: ``d cost / d cost_x = 2 cost_x * a a^T - 2 P cost_y P^T``
for the square loss and symmetric costs; the same as ``regularized_cost``'s in the costs),
which drops the plan's response ``-eps dKL(P*) / dtheta`` and gives 0 in ``epsilon``. That gap
is not small (11 % and 27 % of directional derivatives in ``cost_y`` and ``cost_x`` on a 7-point
problem at ``epsilon = 0.05``): differentiate ``regularized_cost`` when the exact gradient
matters (a training loss). As in ``sinkhorn``, in the balanced problem the derivatives in ``a``
and ``b`` are defined up to a constant: only zero-sum changes of the weights are meaningful.
Memory does not grow with the iterations.

Low memory (:func:`gromov_wasserstein_points`): for squared Euclidean intra-domain costs
``Cx = |x_i - x_k|^2 = A B^T`` with ``A = [|x|^2, 1, -2x]``, ``B = [1, |x|^2, x]`` (rank
``d + 2``, ott-jax's low-rank factorisation of ``PointCloud`` costs), so ``Cx P Cy =
A (B^T P B_y) A_y^T`` costs ``O(n m d)`` and the ``[n, n]`` and ``[m, m]`` matrices are never
built; the marginal terms use the moments of the points (``O(n d^2)``). Memory
``O(n m + (n + m) d + d^2)``; the plan itself is ``[n, m]``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from alignment._src import checks
from alignment._src import sinkhorn as _sk

__all__ = [
    "GromovWassersteinOutput",
    "fused_gromov_wasserstein",
    "gromov_wasserstein",
    "gromov_wasserstein_points",
]

_LOSSES = ("square", "kl")
_KL_TINY = 1e-18  # POT's clipping: log(t) is read as log(t + 1e-18), s log s as s log(s + 1e-18)
_SINKHORN_CHECK = 10  # Sinkhorn iterations between column-error checks (sinkhorn's default)


class GromovWassersteinOutput(NamedTuple):
    """The result of :func:`gromov_wasserstein` and its variants.

    Attributes:
      plan: Array ``[n, m]``, the transport plan (``P 1 = a``, ``P^T 1 = b`` up to
        ``marginal_error``).
      f: Array ``[n]``, dual potential of the rows for the last linearised problem (its cost is
        the gradient of the objective at the previous iterate), relative to ``a b^T``:
        ``P_ij = a_i b_j exp((f_i + g_j - grad_ij) / epsilon)``, as :func:`sinkhorn`.
      g: Array ``[m]``, dual potential of the columns.
      cost: Scalar ``GW(P)`` (fused: ``(1 - alpha) <C, P> + alpha GW(P)``) without the entropy:
        POT's ``entropic_gromov_wasserstein2`` value.
      regularized_cost: Scalar ``cost + epsilon KL(P | a b^T)``, the objective minimised.
      n_iters: Int scalar, outer (linearisation) iterations run.
      sinkhorn_iters: Int scalar, Sinkhorn iterations run over all outer iterations.
      plan_change: Scalar, ``sum |P_k - P_{k-1}|`` at the last outer iteration (the stopping
        criterion).
      marginal_error: Scalar, L1 column error of the last Sinkhorn solve (rows are exact).
      converged: Bool scalar, ``plan_change < tol`` and ``marginal_error < sinkhorn_tol``.
    """

    plan: jax.Array
    f: jax.Array
    g: jax.Array
    cost: jax.Array
    regularized_cost: jax.Array
    n_iters: jax.Array
    sinkhorn_iters: jax.Array
    plan_change: jax.Array
    marginal_error: jax.Array
    converged: jax.Array


class _Options(NamedTuple):
    """Static options (a hashable static argument of the jitted core)."""

    kind: str  # "dense" | "points"
    loss: str
    fused: bool
    max_iters: int
    sinkhorn_max_iters: int
    mass_rtol: float
    out_dtype: str


class _Params(NamedTuple):
    """Traced parameters."""

    epsilon: jax.Array
    alpha: jax.Array
    tol: jax.Array
    sinkhorn_tol: jax.Array


# --------------------------------------------------------------------------------------------
# The quadratic term through the decomposition L(s, t) = f1(s) + f2(t) - h1(s) h2(t).
# --------------------------------------------------------------------------------------------


def _loss_parts(loss: str, cost_x: jax.Array, cost_y: jax.Array):
    """``(f1(Cx), f2(Cy), h1(Cx), h2(Cy))`` of Peyre et al.'s Proposition 1 (POT's forms)."""
    if loss == "square":
        return cost_x * cost_x, cost_y * cost_y, cost_x, 2.0 * cost_y
    # kl: L(s, t) = s log(s / t) - s + t, with POT's clipping of the logarithms
    return (
        cost_x * jnp.log(cost_x + _KL_TINY) - cost_x,
        cost_y,
        cost_x,
        jnp.log(cost_y + _KL_TINY),
    )


class _DenseQuad(NamedTuple):
    """The quadratic term for intra-domain cost matrices (any loss, any asymmetry)."""

    f1x: jax.Array  # [n, n]
    f2y: jax.Array  # [m, m]
    h1x: jax.Array  # [n, n]
    h2y: jax.Array  # [m, m]

    @classmethod
    def build(cls, cost_x, cost_y, loss):
        return cls(*_loss_parts(loss, cost_x, cost_y))

    def cross(self, plan):
        """``h1 P h2^T + h1^T P h2``: the derivative of ``<h1 P h2^T, P>`` in ``P``."""
        return self.h1x @ plan @ self.h2y.T + self.h1x.T @ plan @ self.h2y

    def inner(self, plan):
        """``<h1 P h2^T, P>``."""
        return jnp.sum((self.h1x @ plan @ self.h2y.T) * plan)

    def marginal_terms(self, a, b):
        """``((f1 + f1^T) a, (f2 + f2^T) b)``."""
        return self.f1x @ a + a @ self.f1x, self.f2y @ b + b @ self.f2y

    def const(self, a, b):
        """``a^T f1 a + b^T f2 b``."""
        return a @ self.f1x @ a + b @ self.f2y @ b


def _low_rank(z):
    """``(A, B)`` with ``|z_i - z_k|^2 = (A B^T)_ik``.

    ``A = [|z|^2, 1, -2 z]``, ``B = [1, |z|^2, z]``: rank ``d + 2``.
    """
    s = jnp.sum(z * z, axis=1, keepdims=True)
    one = jnp.ones_like(s)
    return jnp.concatenate([s, one, -2.0 * z], axis=1), jnp.concatenate([one, s, z], axis=1)


def _squared_rows(z, w):
    """``sum_k w_k |z_i - z_k|^4`` for every ``i``, from the moments of ``z`` (``O(n d^2)``).

    With ``s = |z|^2`` and ``u_ik = z_i . z_k``, ``|z_i - z_k|^4 = (s_i + s_k - 2 u_ik)^2``
    expands into weighted moments ``sum w``, ``sum w s``, ``sum w s^2``, ``sum w z``,
    ``sum w s z`` and ``sum w z z^T``.
    """
    s = jnp.sum(z * z, axis=1)
    w0, w1, w2 = jnp.sum(w), w @ s, w @ (s * s)
    mu1, mu3 = w @ z, (w * s) @ z
    sigma = (z * w[:, None]).T @ z
    quad = jnp.sum((z @ sigma) * z, axis=1)
    return s * s * w0 + w2 + 4.0 * quad + 2.0 * s * w1 - 4.0 * s * (z @ mu1) - 4.0 * (z @ mu3)


class _PointsQuad(NamedTuple):
    """The square-loss quadratic term for squared Euclidean costs of point clouds, low rank."""

    x: jax.Array  # [n, dx]
    y: jax.Array  # [m, dy]

    @classmethod
    def build(cls, x, y, loss):
        del loss  # square only
        return cls(x, y)

    def _cx_p_cy(self, plan):
        """``Cx P Cy = A_x (B_x^T P B_y) A_y^T`` (``Cy`` symmetric), ``O(n m d)``."""
        ax, bx = _low_rank(self.x)
        ay, by = _low_rank(self.y)
        return ax @ ((bx.T @ plan) @ by) @ ay.T

    def cross(self, plan):
        # h1 = Cx, h2 = 2 Cy, both symmetric: h1 P h2^T + h1^T P h2 = 4 Cx P Cy
        return 4.0 * self._cx_p_cy(plan)

    def inner(self, plan):
        ax, bx = _low_rank(self.x)
        ay, by = _low_rank(self.y)
        k = (bx.T @ plan) @ by  # [dx + 2, dy + 2]
        # <Cx P Cy, P> = <A_x K A_y^T, P> = <K, A_x^T P A_y>: no [n, m] product at all
        return 2.0 * jnp.sum(k * ((ax.T @ plan) @ ay))

    def marginal_terms(self, a, b):
        return 2.0 * _squared_rows(self.x, a), 2.0 * _squared_rows(self.y, b)

    def const(self, a, b):
        return a @ _squared_rows(self.x, a) + b @ _squared_rows(self.y, b)


# --------------------------------------------------------------------------------------------
# The solver.
# --------------------------------------------------------------------------------------------


class _State(NamedTuple):
    plan: jax.Array
    f: jax.Array
    g: jax.Array
    grad: jax.Array  # the last linearised cost (for the c-transforms of zero weights)
    it: jax.Array
    sinkhorn_it: jax.Array
    change: jax.Array
    marginal_error: jax.Array


def _gradient(quad, lin, plan, a, b, alpha, fused: bool):
    """The gradient of the objective at ``plan`` (the cost of the next linear problem)."""
    r, c = quad.marginal_terms(a, b)
    grad = r[:, None] + c[None, :] - quad.cross(plan)
    if fused:
        grad = (1.0 - alpha) * lin + alpha * grad
    return grad


def _kl(plan, a, b):
    """Generalised ``KL(P | a b^T) = sum P log(P / (a b^T)) - sum P + sum a sum b``."""
    w = a[:, None] * b[None, :]
    pos = plan > 0  # implies w > 0 for our plans
    ratio = jnp.where(pos, plan, 1.0) / jnp.where(pos, w, 1.0)
    return (
        jnp.sum(jnp.where(pos, plan * jnp.log(ratio), 0.0))
        - jnp.sum(plan)
        + jnp.sum(a) * jnp.sum(b)
    )


def _bad(u, v, a, b, p: _Params, opts: _Options) -> jax.Array:
    """Traced flag of the bad-input policy."""
    inv = checks.invalid_scalar
    bad = inv(p.epsilon) | inv(p.tol) | inv(p.sinkhorn_tol)
    if opts.fused:
        bad = bad | ~(jnp.isfinite(p.alpha) & (p.alpha >= 0) & (p.alpha <= 1))
    for w in (a, b):
        bad = bad | ~jnp.all(jnp.isfinite(w) & (w >= 0)) | ~jnp.any(w > 0)
    sum_a, sum_b = jnp.sum(a), jnp.sum(b)
    bad = bad | (jnp.abs(sum_a - sum_b) > opts.mass_rtol * jnp.maximum(sum_a, sum_b))
    if opts.loss == "kl":  # negative entries of positive weight (NaN propagates on its own)
        sa, sb = a > 0, b > 0
        bad = bad | jnp.any((u < 0) & sa[:, None] & sa[None, :])
        bad = bad | jnp.any((v < 0) & sb[:, None] & sb[None, :])
    return bad


@functools.partial(jax.jit, static_argnames=("opts",))
def _gw_core(u, v, lin, a, b, p: _Params, opts: _Options) -> GromovWassersteinOutput:
    """``u, v``: ``cost_x, cost_y`` (dense) or ``x, y`` (points); ``lin``: fused cost or None."""
    cdt = checks.compute_dtype(opts.out_dtype)
    u, v = u.astype(cdt), v.astype(cdt)
    sg = jax.lax.stop_gradient
    sa, sb = a > 0, b > 0
    bad = _bad(u, v, a, b, p, opts)
    # padding is never read (double where: zero, finite derivatives there)
    if opts.kind == "dense":
        u = jnp.where(sa[:, None] & sa[None, :], u, 0.0)
        v = jnp.where(sb[:, None] & sb[None, :], v, 0.0)
        quad_cls = _DenseQuad
    else:
        u = jnp.where(sa[:, None], u, 0.0)
        v = jnp.where(sb[:, None], v, 0.0)
        # GW of squared distances is translation invariant: centring removes the cancellation
        # of the |x|^2 terms of the low-rank factors
        u = u - (a @ u) / jnp.sum(a)
        v = v - (b @ v) / jnp.sum(b)
        quad_cls = _PointsQuad
    if opts.fused:
        lin = jnp.where(sa[:, None] & sb[None, :], lin.astype(cdt), 0.0)
    eps, alpha = p.epsilon.astype(cdt), p.alpha.astype(cdt)
    n, m = a.shape[0], b.shape[0]

    # ---- the iterations, on constants --------------------------------------------------
    quad_c = quad_cls.build(sg(u), sg(v), opts.loss)
    lin_c = sg(lin) if opts.fused else None
    a_c, b_c, eps_c, alpha_c = sg(a), sg(b), sg(eps), sg(alpha)
    one = jnp.ones((), cdt)
    sk_params = _sk._Params(
        epsilon=eps_c, tau_a=one, tau_b=one, tol=sg(p.sinkhorn_tol.astype(cdt)),
        epsilon_init=None, epsilon_decay=jnp.asarray(0.9, cdt),
    )  # fmt: skip
    sk_opts = _sk._Options(
        max_iters=opts.sinkhorn_max_iters,
        inner_iters=min(_SINKHORN_CHECK, opts.sinkhorn_max_iters),
        fixed=False, scaling=False, implicit=True, implicit_solver="direct", cg_max_iters=1,
        warm=False, absorb=True, relative=None, mass_rtol=opts.mass_rtol,
        out_dtype=jnp.dtype(cdt).name,
    )  # fmt: skip
    tol = sg(p.tol.astype(cdt))

    def body(s: _State) -> _State:
        grad = _gradient(quad_c, lin_c, s.plan, a_c, b_c, alpha_c, opts.fused)
        # warm start: Sinkhorn from zero on the shifted cost is Sinkhorn from (f, g) on grad
        shifted = grad - s.f[:, None] - s.g[None, :]
        sol = _sk._solve_absorb(_sk._Dense(shifted), a_c, b_c, eps_c, one, one, sk_params, sk_opts)
        f = jnp.where(sa, s.f + sol.f, 0.0)
        g = jnp.where(sb, s.g + sol.g, 0.0)
        plan = _sk._plan(f, g, grad, a_c, b_c, eps_c)
        return _State(
            plan=plan, f=f, g=g, grad=grad, it=s.it + 1,
            sinkhorn_it=s.sinkhorn_it + sol.n_iters,
            change=jnp.sum(jnp.abs(plan - s.plan)), marginal_error=sol.marginal_error,
        )  # fmt: skip

    inf = jnp.asarray(jnp.inf, cdt)
    state0 = _State(
        plan=a_c[:, None] * b_c[None, :],  # POT's G0 = a b^T
        f=jnp.zeros((n,), cdt), g=jnp.zeros((m,), cdt), grad=jnp.zeros((n, m), cdt),
        it=jnp.asarray(0, jnp.int32), sinkhorn_it=jnp.asarray(0, jnp.int32),
        change=inf, marginal_error=inf,
    )  # fmt: skip
    s = jax.lax.while_loop(
        lambda s: (s.it < opts.max_iters) & (s.change >= tol),  # stops on NaN too
        body,
        state0,
    )
    plan = s.plan
    converged = (s.change < tol) & (s.marginal_error < sk_params.tol)
    # potentials of zero weights: exact c-transforms against the last linearised cost
    f, g = _sk._complete(s.f, s.g, _sk._Dense(s.grad), a_c, b_c, eps_c, one, one)

    # ---- values, differentiable by the envelope theorem ---------------------------------
    quad = quad_cls.build(u, v, opts.loss)
    gw = quad.const(a, b) - quad.inner(plan)
    bare = (1.0 - alpha) * _sk._transport(plan, lin) + alpha * gw if opts.fused else gw
    # multipliers of the constraints: the potentials, less the marginal terms that the
    # linearised cost carries but the objective's gradient in P does not (they depend on a, b)
    r, c = quad_c.marginal_terms(a_c, b_c)
    w = alpha_c if opts.fused else 1.0
    fm = sg(jnp.where(sa, s.f - w * r, 0.0))
    gm = sg(jnp.where(sb, s.g - w * c, 0.0))
    constraints = fm @ (a - jnp.sum(plan, axis=1)) + gm @ (b - jnp.sum(plan, axis=0))
    cost = bare + (constraints - sg(constraints))  # value: bare; derivative: the Lagrangian's
    regularized = cost + eps * _kl(plan, a, b)
    out = GromovWassersteinOutput(
        plan=plan,
        f=f,
        g=g,
        cost=cost,
        regularized_cost=regularized,
        n_iters=s.it,
        sinkhorn_iters=s.sinkhorn_it,
        plan_change=s.change,
        marginal_error=s.marginal_error,
        converged=converged,
    )
    return _sk._cast_floats(checks.nan_if(bad, out), opts.out_dtype)


# --------------------------------------------------------------------------------------------
# Validation.
# --------------------------------------------------------------------------------------------


def _square(value, name: str, what: str) -> jax.Array:
    arr = checks.as_float_array(value, name)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(
            f"`{name}` must be a square 2-D array of shape {what}, got shape {arr.shape}."
        )
    checks.check_non_empty(arr, name)
    return arr


def _prepare(n, m, dtypes, what, a, b, *, epsilon, loss, alpha, fused, max_iters, tol,
             sinkhorn_max_iters, sinkhorn_tol, kind):  # fmt: skip
    """Validates weights and options; returns ``(a, b, params, opts)``."""
    dtype = jnp.result_type(*dtypes)
    cdt = checks.compute_dtype(dtype)
    in_dtypes = [jnp.dtype(d) for d in dtypes]
    for w in (a, b):
        if w is not None and getattr(w, "dtype", None) is not None:
            if jnp.issubdtype(w.dtype, jnp.floating):
                in_dtypes.append(jnp.dtype(w.dtype))
    a, _ = checks.weights(a, n, "a", cdt, what=f" [n] to match {what[0]}")
    b, _ = checks.weights(b, m, "b", cdt, what=f" [m] to match {what[1]}")
    checks.scalar(epsilon, "epsilon", "positive")
    checks.scalar(tol, "tol", "positive")
    checks.scalar(sinkhorn_tol, "sinkhorn_tol", "positive")
    if fused:
        checks.scalar(alpha, "alpha", "finite")  # None, shape and dtype errors
        if checks.is_concrete(alpha) and not 0.0 <= float(np.asarray(alpha)) <= 1.0:
            raise ValueError(
                f"`alpha` must be a number in [0, 1], got {float(np.asarray(alpha))!r}."
            )
    checks.static_choice(loss, "loss", _LOSSES)
    max_iters = checks.static_int(max_iters, "max_iters", minimum=1)
    sinkhorn_max_iters = checks.static_int(sinkhorn_max_iters, "sinkhorn_max_iters", minimum=1)
    rtol = max(checks.mass_rtol(d) for d in in_dtypes)
    if checks.is_concrete(a) and checks.is_concrete(b):
        sum_a = float(np.sum(np.asarray(a, np.float64)))
        sum_b = float(np.sum(np.asarray(b, np.float64)))
        if not np.isclose(sum_a, sum_b, rtol=rtol, atol=0.0):
            raise ValueError(
                f"`a` and `b` must have equal mass (Gromov-Wasserstein is balanced), got "
                f"sum(a) = {sum_a!r} and sum(b) = {sum_b!r}; rescale them."
            )
    opts = _Options(
        kind=kind,
        loss=loss,
        fused=fused,
        max_iters=max_iters,
        sinkhorn_max_iters=sinkhorn_max_iters,
        mass_rtol=rtol,
        out_dtype=jnp.dtype(dtype).name,
    )
    f = lambda x: jnp.asarray(x, cdt)
    params = _Params(f(epsilon), f(1.0 if alpha is None else alpha), f(tol), f(sinkhorn_tol))
    return a, b, params, opts


def _check_kl_signs(loss, mats, weights):
    """Concrete negative entries (of positive weight) raise for the KL loss."""
    if loss != "kl":
        return
    for (name, mat), w in zip(mats, weights, strict=True):
        if checks.is_concrete(mat) and checks.is_concrete(w):
            keep = np.asarray(w) > 0
            vals = np.asarray(mat, np.float64)[np.ix_(keep, keep)]
            if np.any(vals < 0):
                raise ValueError(
                    f'`{name}` must be non-negative for loss="kl" (L(s, t) = s log(s / t) - s + '
                    f"t), got min {float(np.nanmin(vals))!r} (shape {np.shape(mat)})."
                )


_UNCONVERGED_HINT = (
    "raise max_iters or sinkhorn_max_iters, raise epsilon, or loosen tol / sinkhorn_tol"
)

_DEFAULTS = {"max_iters": 100, "tol": 1e-5, "sinkhorn_max_iters": 1000, "sinkhorn_tol": 1e-4}


def _run(kind, u, v, lin, a, b, *, loss, alpha, epsilon, fused, name, **kw):
    n, m = u.shape[0], v.shape[0]
    dtypes = [u.dtype, v.dtype] + ([lin.dtype] if fused else [])
    what = ("`cost_x`", "`cost_y`") if kind == "dense" else ("`x`", "`y`")
    a, b, params, opts = _prepare(
        n, m, dtypes, what, a, b, epsilon=epsilon, loss=loss, alpha=alpha, fused=fused,
        kind=kind, **kw,
    )  # fmt: skip
    if kind == "dense":
        _check_kl_signs(loss, (("cost_x", u), ("cost_y", v)), (a, b))
    out = _gw_core(u, v, lin, a, b, params, opts)
    checks.warn_unconverged(out.converged, name, _UNCONVERGED_HINT)
    return out


# --------------------------------------------------------------------------------------------
# Public API.
# --------------------------------------------------------------------------------------------


def gromov_wasserstein(
    cost_x: jax.typing.ArrayLike,
    cost_y: jax.typing.ArrayLike,
    a: jax.typing.ArrayLike | None = None,
    b: jax.typing.ArrayLike | None = None,
    *,
    epsilon: jax.typing.ArrayLike,
    loss: str = "square",
    max_iters: int = 100,
    tol: jax.typing.ArrayLike = 1e-5,
    sinkhorn_max_iters: int = 1000,
    sinkhorn_tol: jax.typing.ArrayLike = 1e-4,
) -> GromovWassersteinOutput:
    """Entropic Gromov-Wasserstein transport between two spaces, from their intra-domain costs.

    Solves ``min_P GW(P) + epsilon KL(P | a b^T)`` over plans with ``P 1 = a``, ``P^T 1 = b``,
    where ``GW(P) = sum_{ijkl} L(cost_x[i, k], cost_y[j, l]) P_ij P_kl`` (see the module
    docstring), by projected mirror descent from ``P = a b^T``: each outer iteration solves a
    :func:`sinkhorn` problem whose cost is the gradient of the objective at the current plan.
    This is POT's ``ot.gromov.entropic_gromov_wasserstein`` (``solver="PGD"``, same
    ``epsilon``, same initialisation); ott-jax's ``GromovWasserstein(epsilon=e)`` is
    ``epsilon = 2 e`` here. GW is not convex: the plan is a stationary point reached from
    ``a b^T``, not necessarily the global minimum; costs with symmetries (a square, a regular
    polygon) have several equally good plans, which the entropic plan may blend.

    Numerics: the costs and ``epsilon`` are in the same units as ``L`` (squared cost units for
    the square loss): rescale the costs (e.g. divide by their mean) so that ``epsilon`` around
    ``1e-2``--``1e-1`` is meaningful; too small an ``epsilon`` slows both loops. The Sinkhorn
    solves are log-domain, so small ``epsilon`` stays finite, but near-permutation plans
    (isometric spaces, small ``epsilon``) make Sinkhorn slow to reach a tight
    ``sinkhorn_tol`` (``1e-9`` and below can exhaust ``sinkhorn_max_iters``). Zero weights
    pad: their rows and columns of the plan are exactly 0 and their rows/columns of the costs
    are never read.
    ``cost`` is computed by the tensor-product formula, a difference of terms of the size of
    ``L``: in float32 a GW value far below them (an isometric pair) is mostly rounding.

    Gradients: envelope theorem at the returned plan (module docstring): exact for
    ``regularized_cost`` in ``cost_x``, ``cost_y``, ``a``, ``b`` and ``epsilon``; ``cost``
    holds the plan constant (POT's ``gromov_wasserstein2`` convention). Memory does not grow
    with the iterations.

    Args:
      cost_x: Array ``[n, n]``, intra-domain costs of the first space (distances, squared
        distances, similarities; need not be symmetric). Non-negative for ``loss="kl"``.
      cost_y: Array ``[m, m]``, intra-domain costs of the second space.
      a: Weights ``[n]``, non-negative; ``None`` for uniform ``1 / n``.
      b: Weights ``[m]``, non-negative, ``sum(b) = sum(a)``; ``None`` for uniform ``1 / m``.
      epsilon: Positive entropic regularisation (traced, differentiable), in units of ``L``.
      loss: ``"square"`` (``L(s, t) = (s - t)^2``, POT's ``"square_loss"``) or ``"kl"``
        (``L(s, t) = s log(s / t) - s + t``, POT's ``"kl_loss"``; zero entries of ``cost_y``
        are read as ``1e-18``, POT's clipping). Static.
      max_iters: Outer iterations at most (static).
      tol: Stop when ``sum |P_k - P_{k-1}| < tol`` (traced).
      sinkhorn_max_iters: Sinkhorn iterations at most per outer iteration (static).
      sinkhorn_tol: Each Sinkhorn solve stops when its L1 column error is below this (traced),
        checked every 10 iterations.

    Returns:
      A :class:`GromovWassersteinOutput` (``plan [n, m]``, ``f [n]``, ``g [m]``, scalars
      ``cost``, ``regularized_cost``, ``n_iters``, ``sinkhorn_iters``, ``plan_change``,
      ``marginal_error``, ``converged``).

    Raises:
      ValueError: ``cost_x`` / ``cost_y`` not square non-empty 2-D real arrays; ``a`` / ``b``
        of the wrong shape, negative, non-finite, all zero or of unequal mass; ``epsilon``,
        ``tol`` or ``sinkhorn_tol`` not finite and positive or not scalars; a bad ``loss`` or
        iteration count; negative costs with ``loss="kl"``.

    Bad input: shapes, dtypes (complex raises), array-valued scalars and static options are
    checked at trace time (``ValueError`` naming the argument, also under ``jit``/``vmap``).
    Concrete bad values raise (see Raises). Traced bad values (the same, under
    ``jit``/``vmap``/``grad``) give NaN floats, ``n_iters = sinkhorn_iters = -1`` and
    ``converged = False``. NaN in a real (positive-weight) cost entry propagates to the plan
    and the values; padding (zero weights) is never read. float16 / bfloat16 run in float32 and
    return the input dtype. A concrete call that ends unconverged warns
    (:class:`ConvergenceWarning`). See docs/conventions.md.

    References:
      Peyre, Cuturi & Solomon, "Gromov-Wasserstein Averaging of Kernel and Distance
      Matrices", ICML 2016. Memoli, "Gromov-Wasserstein Distances and the Metric Approach to
      Object Matching", 2011.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[0.0], [1.0], [3.0], [7.0]])  # 1-D points, unequal gaps
      >>> perm = jnp.array([2, 0, 3, 1])
      >>> y = jnp.concatenate([x, 0.5 * x], axis=1)[perm]  # the same shape, in 2-D, shuffled
      >>> cx = (x - x.T) ** 2 / 49.0
      >>> cy = jnp.sum((y[:, None] - y[None]) ** 2, -1) / (1.25 * 49.0)
      >>> out = gromov_wasserstein(cx, cy, epsilon=1e-3)
      >>> out.plan.argmax(axis=1).tolist(), bool(out.converged)  # x[i] -> y[argmax]
      ([1, 3, 0, 2], True)
      >>> bool(out.cost < 1e-4)  # an isometry: GW is (nearly) zero
      True
    """
    cost_x = _square(cost_x, "cost_x", "[n, n]")
    cost_y = _square(cost_y, "cost_y", "[m, m]")
    return _run(
        "dense", cost_x, cost_y, None, a, b, loss=loss, alpha=None, epsilon=epsilon,
        fused=False, name="gromov_wasserstein", max_iters=max_iters, tol=tol,
        sinkhorn_max_iters=sinkhorn_max_iters, sinkhorn_tol=sinkhorn_tol,
    )  # fmt: skip


def gromov_wasserstein_points(
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    a: jax.typing.ArrayLike | None = None,
    b: jax.typing.ArrayLike | None = None,
    *,
    epsilon: jax.typing.ArrayLike,
    max_iters: int = 100,
    tol: jax.typing.ArrayLike = 1e-5,
    sinkhorn_max_iters: int = 1000,
    sinkhorn_tol: jax.typing.ArrayLike = 1e-4,
) -> GromovWassersteinOutput:
    """:func:`gromov_wasserstein` for point clouds with squared Euclidean costs, low memory.

    The same problem, iterations and outputs as ``gromov_wasserstein(cost_x, cost_y, a, b,
    loss="square")`` with ``cost_x = |x_i - x_k|^2`` and ``cost_y = |y_j - y_l|^2`` (not
    halved), but the ``[n, n]`` and ``[m, m]`` cost matrices are never built: they have rank
    ``d + 2`` (``|x_i - x_k|^2 = A_i . B_k`` with ``A = [|x|^2, 1, -2 x]``, ``B = [1, |x|^2,
    x]``, ott-jax's low-rank factorisation of squared Euclidean point-cloud costs), so each
    product ``Cx P Cy`` costs ``O(n m (dx + dy))`` and the marginal terms come from the
    moments of the points. Memory ``O(n m + (n + m) d + d^2)`` (the plan and the linearised
    cost are ``[n, m]``) instead of ``O(n^2 + m^2 + n m)``. ``x`` and ``y`` may have different
    dimensions: that is the point of GW. Both are centred (weighted by ``a`` / ``b``) first,
    which changes nothing (GW is translation invariant) but removes the cancellation of the
    ``|x|^2`` terms. For another cost or the KL loss, build the matrices and call
    :func:`gromov_wasserstein`.

    Numerics: squared distances of points of spread ``s`` are ``O(s^2)`` and the square loss
    ``O(s^4)``: ``epsilon`` is in those units (scale the points, e.g. to unit mean squared
    distance, so that ``epsilon ~ 1e-2`` means a sharp plan).

    Args:
      x: Array ``[n, dx]``.
      y: Array ``[m, dy]`` (``dy`` may differ from ``dx``).
      a: Weights ``[n]`` or ``None`` (uniform); points of zero weight are never read.
      b: Weights ``[m]`` or ``None``; ``sum(b) = sum(a)``.
      epsilon: Positive entropic regularisation (traced, differentiable).
      max_iters, tol, sinkhorn_max_iters, sinkhorn_tol: As in :func:`gromov_wasserstein`.

    Returns:
      A :class:`GromovWassersteinOutput`.

    Raises:
      ValueError: ``x`` / ``y`` not non-empty 2-D real arrays; the weight and option errors of
        :func:`gromov_wasserstein`.

    Bad input: as :func:`gromov_wasserstein` (shapes and static options raise at trace time;
    concrete bad values raise; traced bad values give NaN floats, ``-1`` counts and
    ``converged = False``; NaN in a point of positive weight propagates; points of zero weight
    are never read). Gradients in ``x``, ``y``, ``a``, ``b``, ``epsilon`` by the envelope
    theorem, as :func:`gromov_wasserstein`. See docs/conventions.md.

    References:
      Scetbon, Peyre & Cuturi, "Linear-Time Gromov Wasserstein Distances using Low Rank
      Couplings and Costs", ICML 2022 (the low-rank factorisation of the costs).

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[0.0], [1.0], [3.0], [7.0]]) / 7.0
      >>> y = jnp.concatenate([x, -x, 0 * x], axis=1)[::-1]  # reversed, in 3-D
      >>> out = gromov_wasserstein_points(x, y, epsilon=1e-3)
      >>> out.plan.argmax(axis=1).tolist()
      [3, 2, 1, 0]
    """
    x = checks.as_float_array(x, "x")
    y = checks.as_float_array(y, "y")
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(
            f"`x` and `y` must be 2-D arrays [n, dx] and [m, dy], got shapes {x.shape} and "
            f"{y.shape}."
        )
    if x.shape[0] == 0 or y.shape[0] == 0:
        raise ValueError(f"`x` and `y` must be non-empty, got shapes {x.shape} and {y.shape}.")
    return _run(
        "points", x, y, None, a, b, loss="square", alpha=None, epsilon=epsilon, fused=False,
        name="gromov_wasserstein_points", max_iters=max_iters, tol=tol,
        sinkhorn_max_iters=sinkhorn_max_iters, sinkhorn_tol=sinkhorn_tol,
    )  # fmt: skip


def fused_gromov_wasserstein(
    cost: jax.typing.ArrayLike,
    cost_x: jax.typing.ArrayLike,
    cost_y: jax.typing.ArrayLike,
    a: jax.typing.ArrayLike | None = None,
    b: jax.typing.ArrayLike | None = None,
    *,
    alpha: jax.typing.ArrayLike,
    epsilon: jax.typing.ArrayLike,
    loss: str = "square",
    max_iters: int = 100,
    tol: jax.typing.ArrayLike = 1e-5,
    sinkhorn_max_iters: int = 1000,
    sinkhorn_tol: jax.typing.ArrayLike = 1e-4,
) -> GromovWassersteinOutput:
    """Entropic fused Gromov-Wasserstein: a cross-domain cost plus the GW structure term.

    Solves ``min_P (1 - alpha) <cost, P> + alpha GW(P) + epsilon KL(P | a b^T)`` over plans with
    ``P 1 = a``, ``P^T 1 = b`` (Vayer et al. 2019), with ``GW`` as in
    :func:`gromov_wasserstein`, by the same projected mirror descent. ``alpha`` follows POT
    (``ot.gromov.entropic_fused_gromov_wasserstein``): ``alpha = 1`` is pure GW (the feature
    cost is ignored), ``alpha = 0`` pure entropic OT on ``cost`` (:func:`sinkhorn`'s plan).
    Use it when the two modalities share some comparable features (``cost``, e.g. distances
    between labels or embeddings in a common space) as well as an internal structure.

    ``cost`` (the output field) is ``(1 - alpha) <cost, P> + alpha GW(P)`` at the plan, POT's
    ``entropic_fused_gromov_wasserstein2`` value; ``regularized_cost`` adds
    ``epsilon KL(P | a b^T)``. The two terms have different units (``cost`` vs ``L``): scale
    them to comparable sizes before choosing ``alpha``.

    Args:
      cost: Array ``[n, m]``, the cross-domain (feature) cost.
      cost_x: Array ``[n, n]``.
      cost_y: Array ``[m, m]``.
      a: Weights ``[n]`` or ``None`` (uniform).
      b: Weights ``[m]`` or ``None``; ``sum(b) = sum(a)``.
      alpha: Trade-off in ``[0, 1]`` (traced, differentiable), POT's ``alpha``.
      epsilon: Positive entropic regularisation (traced, differentiable).
      loss, max_iters, tol, sinkhorn_max_iters, sinkhorn_tol: As in
        :func:`gromov_wasserstein`.

    Returns:
      A :class:`GromovWassersteinOutput`; ``f``, ``g`` are the potentials of the last
      linearised problem, whose cost is ``(1 - alpha) cost + alpha grad GW``.

    Raises:
      ValueError: the errors of :func:`gromov_wasserstein`; ``cost`` not ``[n, m]`` for
        ``cost_x [n, n]`` and ``cost_y [m, m]``; ``alpha`` outside ``[0, 1]``.

    Bad input: as :func:`gromov_wasserstein`; a traced ``alpha`` outside ``[0, 1]`` gives NaN.
    Zero-weight rows / columns of ``cost`` are never read. See docs/conventions.md.

    References:
      Vayer, Chapel, Flamary, Tavenard & Courty, "Optimal Transport for Structured Data with
      Application on Graphs", ICML 2019.

    Examples:
      >>> import jax.numpy as jnp
      >>> cx = jnp.array([[0.0, 1.0], [1.0, 0.0]])  # two points: GW cannot tell them apart
      >>> feat = jnp.array([[0.0, 1.0], [1.0, 0.0]])  # the features can
      >>> out = fused_gromov_wasserstein(feat, cx, cx, alpha=0.5, epsilon=0.01)
      >>> out.plan.round(3).tolist()
      [[0.5, 0.0], [0.0, 0.5]]
    """
    cost_x = _square(cost_x, "cost_x", "[n, n]")
    cost_y = _square(cost_y, "cost_y", "[m, m]")
    cost = checks.as_float_array(cost, "cost")
    n, m = cost_x.shape[0], cost_y.shape[0]
    if cost.shape != (n, m):
        raise ValueError(
            f"`cost` must have shape [n, m] = ({n}, {m}) to match `cost_x` {cost_x.shape} and "
            f"`cost_y` {cost_y.shape}, got {cost.shape}."
        )
    return _run(
        "dense", cost_x, cost_y, cost, a, b, loss=loss, alpha=alpha, epsilon=epsilon,
        fused=True, name="fused_gromov_wasserstein", max_iters=max_iters, tol=tol,
        sinkhorn_max_iters=sinkhorn_max_iters, sinkhorn_tol=sinkhorn_tol,
    )  # fmt: skip
