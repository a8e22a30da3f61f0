"""Exact linear assignment (the Hungarian problem) in JAX: ``jit``, ``vmap``, any backend.

For a cost ``C: [n, m]`` the problem is to pick ``k = min(n, m)`` pairs ``(i, j)``, no row and no
column twice, minimising (or maximising) the sum of their costs. Its LP dual has one potential per
row and per column, ``u_i + v_j <= C_ij``; at the optimum the chosen pairs are tight
(``u_i + v_j == C_ij``) and ``sum(u) + sum(v)`` equals the assignment's cost, which certifies
optimality (:class:`AssignmentOutput` returns both so a test, or a user, can check it).

Algorithm (why this one). The solver is the shortest-augmenting-path form of the Hungarian method
(Jonker & Volgenant 1987; the variant of Crouse 2016 that SciPy's ``linear_sum_assignment`` also
uses), after a vectorised initialisation:

1. *Row reduction with bidding* (a Jacobi form of JV's augmenting row reduction, auction steps with
   zero slack): every unassigned row finds its best and second-best reduced cost and bids for its
   best column, lowering that column's potential by the gap; a column takes the highest bid. Each
   round is a handful of whole-matrix operations and keeps the dual feasible and every assigned
   pair tight, so it is an exact warm start, not an approximation. ``init_rounds`` rounds (default
   4) assign most rows of a random problem.
2. *Shortest augmenting paths* for the rows left: a Dijkstra search on the reduced costs from the
   free row to the nearest free column, a dual update that keeps everything tight, and an
   augmentation along the path. Each Dijkstra step is ``O(m)`` vector work; the number of steps is
   what the initialisation saves.

An auction algorithm parallelises better but is exact only for integer costs (with
``epsilon < 1 / n``) and needs many whole-matrix rounds; the augmenting-path method is exact for
any real costs, needs no tolerance, and has ``O(n^2 m)`` worst-case work.

Batches. Under ``vmap`` the solver switches (through ``jax.custom_batching.custom_vmap``) to a
*flat* form of the same algorithm: one loop whose every iteration advances each problem by one
Dijkstra or augmentation step, starting its next augmenting path as soon as the last one ends. A
batch therefore runs for as many iterations as its slowest member needs in total, not the sum over
rows of the slowest member per row (what ``vmap`` of nested loops costs).

Bad input never hangs: NaN entries (and ``-inf`` when minimising, ``+inf`` when maximising, which
would make the optimum unbounded) and infeasible problems (a row or column with no finite entry,
or any set of ``r`` rows with fewer than ``r`` finite columns) stop the solver with a status flag
(and NaN / ``-1`` outputs). Concrete input raises ``ValueError`` instead.

Compilation. The public functions validate in Python, then call one module-level jitted core
(``maximize`` and ``init_rounds`` static), so an eager call compiles once per shape, dtype and
options and later calls run the cached executable.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_batching import custom_vmap

from alignment._src.checks import (
    as_float_array,
    compute_dtype,
    is_concrete,
    static_choice,
    static_int,
)

__all__ = [
    "STATUS_INFEASIBLE",
    "STATUS_INVALID",
    "STATUS_OPTIMAL",
    "AssignmentOutput",
    "hungarian",
    "linear_assignment",
]

STATUS_OPTIMAL = 0
"""``status`` of a solved problem."""
STATUS_INFEASIBLE = 1
"""``status`` when no assignment of finite cost exists (forbidden ``inf`` entries)."""
STATUS_INVALID = 2
"""``status`` when the cost holds NaN, or ``-inf`` (``+inf`` when maximising)."""


class AssignmentOutput(NamedTuple):
    """Solution of a linear assignment problem with cost ``C: [n, m]``, ``k = min(n, m)``.

    Attributes:
      rows: ``[k]`` int32 row indices, increasing (``arange(n)`` when ``n <= m``), as SciPy.
      cols: ``[k]`` int32 column indices: row ``rows[p]`` is assigned column ``cols[p]``.
      cost: ``[]`` the assignment's total cost ``sum(C[rows, cols])``. Differentiable in ``C``:
        its gradient is the 0/1 assignment matrix.
      row_potentials: ``[n]`` dual potentials ``u``.
      col_potentials: ``[m]`` dual potentials ``v``. When minimising, ``u_i + v_j <= C_ij`` for
        every pair, with equality on the assigned pairs, ``sum(u) + sum(v) == cost``, and the
        potentials of the longer side are ``<= 0`` (``0`` where unassigned). When maximising the
        inequalities flip (``u_i + v_j >= C_ij``, longer side ``>= 0``).
      status: ``[]`` int32: 0 (optimal), 1 (infeasible: no finite assignment) or 2 (invalid:
        NaN or a forbidden sign in the cost). When not 0, ``cols`` is all ``-1`` (``rows`` too
        when ``n > m``), ``cost`` is NaN (with a NaN gradient) and the potentials are NaN.
    """

    rows: jax.Array
    cols: jax.Array
    cost: jax.Array
    row_potentials: jax.Array
    col_potentials: jax.Array
    status: jax.Array


# --------------------------------------------------------------------------------------------
# The solver, for cost [n, m] with n <= m, minimising; cost finite or +inf, no NaN.
# --------------------------------------------------------------------------------------------


def _argmin(x: jax.Array, iota: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(min, first index of the min)`` along the last axis of ``x``.

    Two plain reductions: XLA's CPU backend runs the fused variadic reduction behind
    ``jnp.argmin`` as a scalar loop, about three times slower than a ``min`` and a ``min`` of the
    matching indices. ``x`` must not hold NaN.
    """
    low = jnp.min(x, axis=-1)
    size = x.shape[-1]
    idx = jnp.min(jnp.where(x == low[..., None], iota, size), axis=-1)
    return low, jnp.minimum(idx, size - 1)


class _BidState(NamedTuple):
    """Loop state of :func:`_bidding_rounds`."""

    round: jax.Array  # rounds run so far
    v: jax.Array  # [m] column potentials
    col4row: jax.Array  # [n] column of each row, -1 if free
    row4col: jax.Array  # [m] row of each column, -1 if free
    progress: jax.Array  # the last round assigned something


def _bidding_rounds(cost: jax.Array, rounds: int):
    """Initial assignment and column potentials by ``rounds`` of zero-slack Jacobi bidding.

    Invariants: ``v`` only decreases (so the dual stays feasible for every assigned row, and
    columns never bid for keep ``v = 0``), and each assigned row's column attains its minimum of
    ``C_ij - v_j`` (tight). Returns ``(v, col4row, row4col)``; ``-1`` marks unassigned.
    """
    n, m = cost.shape
    rows = jnp.arange(n, dtype=jnp.int32)
    cols = jnp.arange(m, dtype=jnp.int32)
    v = jnp.zeros((m,), cost.dtype)
    col4row = jnp.full((n,), -1, jnp.int32)
    row4col = jnp.full((m,), -1, jnp.int32)
    if rounds == 0:
        return v, col4row, row4col

    def body(s: _BidState) -> _BidState:
        reduced = cost - s.v[None, :]
        u1, j1 = _argmin(reduced, cols)
        u2 = jnp.min(jnp.where(cols[None, :] == j1[:, None], jnp.inf, reduced), axis=1)
        gap = jnp.where(jnp.isfinite(u2), u2 - u1, 0.0)
        bids = (s.col4row < 0) & jnp.isfinite(u1)
        target = jnp.where(bids, j1, m)  # m: dropped
        best = jnp.full((m,), -jnp.inf, cost.dtype).at[target].max(gap, mode="drop")
        top = bids & (gap == best[jnp.minimum(j1, m - 1)])
        winner = jnp.full((m,), n, jnp.int32).at[jnp.where(top, j1, m)].min(rows, mode="drop")
        # A zero-gap bid (a tie) only takes a free column: it would not change the potentials.
        accept = (winner < n) & ((s.row4col < 0) | (best > 0))
        loser = jnp.where(accept & (s.row4col >= 0), s.row4col, n)
        col4row = s.col4row.at[loser].set(-1, mode="drop")
        col4row = col4row.at[jnp.where(accept, winner, n)].set(cols, mode="drop")
        return _BidState(
            round=s.round + 1,
            v=jnp.where(accept, s.v - best, s.v),
            col4row=col4row,
            row4col=jnp.where(accept, winner, s.row4col),
            progress=jnp.any(accept),
        )

    def cond(s: _BidState) -> jax.Array:
        return (s.round < rounds) & s.progress & jnp.any(s.col4row < 0)

    init = _BidState(jnp.int32(0), v, col4row, row4col, jnp.array(True))
    out = lax.while_loop(cond, body, init)
    return out.v, out.col4row, out.row4col


def _row_potentials(cost, v, col4row):
    """``u_i = C_{i, col(i)} - v_{col(i)}`` for assigned rows (tight), 0 for free ones."""
    safe = jnp.maximum(col4row, 0)
    tight = jnp.take_along_axis(cost, safe[:, None], axis=1)[:, 0] - v[safe]
    return jnp.where(col4row >= 0, tight, 0.0)


def _dijkstra_step(cost, u, v, cols, i, minval, dist, pred, scanned):
    """Scans row ``i``: relaxes its columns, then settles the nearest unscanned column ``j``."""
    reach = minval + cost[i] - u[i] - v
    better = (~scanned) & (reach < dist)
    pred = jnp.where(better, i, pred)
    dist = jnp.where(better, reach, dist)
    low, j = _argmin(jnp.where(scanned, jnp.inf, dist), cols)
    scanned = scanned | (cols == j)
    return j, low, dist, pred, scanned


def _dual_update(u, v, col4row, cur, minval, dist, scanned):
    """Potentials after a search from ``cur`` that ended at distance ``minval``: tight again."""
    u = u.at[cur].add(minval)
    # The rows scanned besides ``cur`` are the owners of the scanned columns (``cur`` owns none).
    owned = jnp.maximum(col4row, 0)
    u = jnp.where((col4row >= 0) & scanned[owned], u + minval - dist[owned], u)
    v = jnp.where(scanned, v - (minval - dist), v)
    return u, v


class _Dual(NamedTuple):
    """Outer loop state of :func:`_solve_nested`: the dual and the partial assignment."""

    u: jax.Array  # [n] row potentials
    v: jax.Array  # [m] column potentials
    col4row: jax.Array  # [n] column of each row, -1 if free
    row4col: jax.Array  # [m] row of each column, -1 if free
    status: jax.Array  # [] int32 STATUS_*


class _Search(NamedTuple):
    """Dijkstra loop state: the shortest augmenting path search from one free row."""

    row: jax.Array  # the row scanned next (-1: the last settled column was free)
    minval: jax.Array  # distance of the last settled column
    dist: jax.Array  # [m] tentative distances of the columns
    pred: jax.Array  # [m] row from which each column was reached
    scanned: jax.Array  # [m] settled columns
    sink: jax.Array  # the last settled column


class _Flip(NamedTuple):
    """Augmentation loop state: walking the path back from the sink to the free row."""

    col: jax.Array  # the column to give to its predecessor row
    row4col: jax.Array
    col4row: jax.Array
    done: jax.Array  # the path reached its free row


def _solve_nested(cost: jax.Array, rounds: int):
    """One problem: an outer loop over augmentations, each a Dijkstra loop then a path loop."""
    m = cost.shape[1]
    dtype = cost.dtype
    cols = jnp.arange(m, dtype=jnp.int32)
    v, col4row, row4col = _bidding_rounds(cost, rounds)
    u = _row_potentials(cost, v, col4row)

    def augment_once(d: _Dual) -> _Dual:
        cur = jnp.argmax(d.col4row < 0).astype(jnp.int32)

        def step(s: _Search) -> _Search:
            j, low, dist, pred, scanned = _dijkstra_step(
                cost, d.u, d.v, cols, s.row, s.minval, s.dist, s.pred, s.scanned
            )
            return _Search(d.row4col[j], low, dist, pred, scanned, j)

        search = _Search(
            row=cur,
            minval=jnp.zeros((), dtype),
            dist=jnp.full((m,), jnp.inf, dtype),
            pred=jnp.zeros((m,), jnp.int32),
            scanned=jnp.zeros((m,), bool),
            sink=jnp.int32(0),
        )
        # Stops at a free column (row4col == -1) or when nothing finite is left (infeasible).
        s = lax.while_loop(lambda s: (s.row >= 0) & jnp.isfinite(s.minval), step, search)
        feasible = jnp.isfinite(s.minval)
        u, v = _dual_update(d.u, d.v, d.col4row, cur, s.minval, s.dist, s.scanned)

        def flip(a: _Flip) -> _Flip:
            i = s.pred[a.col]
            return _Flip(
                a.col4row[i], a.row4col.at[a.col].set(i), a.col4row.at[i].set(a.col), i == cur
            )

        f = lax.while_loop(lambda a: ~a.done, flip, _Flip(s.sink, d.row4col, d.col4row, ~feasible))
        status = jnp.where(feasible, STATUS_OPTIMAL, STATUS_INFEASIBLE).astype(jnp.int32)
        return _Dual(u, v, f.col4row, f.row4col, status)

    init = _Dual(u, v, col4row, row4col, jnp.int32(STATUS_OPTIMAL))
    out = lax.while_loop(
        lambda d: jnp.any(d.col4row < 0) & (d.status == STATUS_OPTIMAL), augment_once, init
    )
    return out.col4row, out.u, out.v, out.status


_SEARCH, _AUGMENT, _DONE = 0, 1, 2


class _FlatState(NamedTuple):
    """State of :func:`_solve_flat`: one Dijkstra or augmentation step per iteration."""

    mode: jax.Array  # _SEARCH, _AUGMENT or _DONE
    cur: jax.Array  # the free row being augmented
    row: jax.Array  # the row scanned next (searching)
    minval: jax.Array  # distance of the last settled column
    sink: jax.Array  # the column reached (searching) / to flip next (augmenting)
    u: jax.Array  # [n] row potentials
    v: jax.Array  # [m] column potentials
    col4row: jax.Array  # [n]
    row4col: jax.Array  # [m]
    dist: jax.Array  # [m]
    pred: jax.Array  # [m]
    scanned: jax.Array  # [m]
    status: jax.Array  # [] int32 STATUS_*


def _solve_flat(cost: jax.Array, rounds: int):
    """One problem as a single loop of steps, for ``vmap``: see the module docstring."""
    n, m = cost.shape
    dtype = cost.dtype
    cols = jnp.arange(m, dtype=jnp.int32)
    rows = jnp.arange(n, dtype=jnp.int32)
    v, col4row, row4col = _bidding_rounds(cost, rounds)
    u = _row_potentials(cost, v, col4row)
    inf = jnp.array(jnp.inf, dtype)

    def body(s: _FlatState) -> _FlatState:
        searching = s.mode == _SEARCH
        # A Dijkstra step (kept when searching).
        j, low, s_dist, s_pred, s_scanned = _dijkstra_step(
            cost, s.u, s.v, cols, s.row, s.minval, s.dist, s.pred, s.scanned
        )
        found = s.row4col[j] < 0
        s_u, s_v = _dual_update(s.u, s.v, s.col4row, s.cur, low, s_dist, s_scanned)
        infeasible = ~jnp.isfinite(low)
        # An augmentation step along the path (kept when augmenting).
        p = s.pred[s.sink]
        next_sink = s.col4row[p]
        a_row4col = jnp.where(cols == s.sink, p, s.row4col)
        a_col4row = jnp.where(rows == p, s.sink, s.col4row)
        finished = (~searching) & (p == s.cur)

        keep = searching & found & ~infeasible
        row4col = jnp.where(searching, s.row4col, a_row4col)
        col4row = jnp.where(searching, s.col4row, a_col4row)
        mode = jnp.where(searching & found, _AUGMENT, s.mode)
        mode = jnp.where(searching & infeasible, _DONE, mode)
        # After the last flip of a path, start the next search (or stop).
        free = col4row < 0
        nxt = jnp.argmax(free).astype(jnp.int32)
        more = jnp.any(free)
        mode = jnp.where(finished & more, _SEARCH, mode)
        mode = jnp.where(finished & ~more, _DONE, mode)
        return _FlatState(
            mode=mode,
            cur=jnp.where(finished, nxt, s.cur),
            row=jnp.where(finished, nxt, jnp.where(searching, s.row4col[j], s.row)),
            minval=jnp.where(finished, 0.0, jnp.where(searching, low, s.minval)),
            sink=jnp.where(searching, j, next_sink),
            u=jnp.where(keep, s_u, s.u),
            v=jnp.where(keep, s_v, s.v),
            col4row=col4row,
            row4col=row4col,
            dist=jnp.where(finished, inf, jnp.where(searching, s_dist, s.dist)),
            pred=jnp.where(searching, s_pred, s.pred),
            scanned=jnp.where(finished, False, jnp.where(searching, s_scanned, s.scanned)),
            status=jnp.where(searching & infeasible, STATUS_INFEASIBLE, s.status),
        )

    free = col4row < 0
    cur = jnp.argmax(free).astype(jnp.int32)
    init = _FlatState(
        mode=jnp.where(jnp.any(free), _SEARCH, _DONE).astype(jnp.int32),
        cur=cur,
        row=cur,
        minval=jnp.zeros((), dtype),
        sink=jnp.int32(0),
        u=u,
        v=v,
        col4row=col4row,
        row4col=row4col,
        dist=jnp.full((m,), jnp.inf, dtype),
        pred=jnp.zeros((m,), jnp.int32),
        scanned=jnp.zeros((m,), bool),
        status=jnp.int32(STATUS_OPTIMAL),
    )
    out = lax.while_loop(lambda s: s.mode != _DONE, body, init)
    return out.col4row, out.u, out.v, out.status


@functools.cache
def _solver(rounds: int):
    """``cost [n, m] (n <= m) -> (col4row, u, v, status)``, nested alone, flat under ``vmap``."""
    solve = custom_vmap(functools.partial(_solve_nested, rounds=rounds))

    @solve.def_vmap
    def rule(axis_size, in_batched, cost):
        (batched,) = in_batched
        if not batched:
            cost = jnp.broadcast_to(cost, (axis_size, *cost.shape))
        out = jax.vmap(functools.partial(_solve_flat, rounds=rounds))(cost)
        return out, (True, True, True, True)

    return solve


# --------------------------------------------------------------------------------------------
# Public API.
# --------------------------------------------------------------------------------------------


def _as_cost(cost) -> jax.Array:
    """``cost`` as a 2-D float array (``ValueError`` for None, complex, non-numeric, not 2-D)."""
    return as_float_array(cost, "cost", ndim=2, what="[n, m]")


def _check_concrete(cost: jax.Array, maximize: bool) -> None:
    if not is_concrete(cost):
        return
    c = np.asarray(cost)
    bad_inf = np.inf if maximize else -np.inf
    has_nan = bool(np.isnan(c).any())
    if has_nan or (c == bad_inf).any():
        what = "NaN" if has_nan else f"{bad_inf}"
        raise ValueError(
            f"`cost` of shape {c.shape} contains {what}; entries must be finite, or "
            f"{'-inf' if maximize else '+inf'} for forbidden pairs."
        )


@functools.partial(jax.jit, static_argnames=("maximize", "rounds"))
def _assignment_core(cost: jax.Array, maximize: bool, rounds: int) -> AssignmentOutput:
    """The solver and the bad-input policy for a validated ``cost [n, m]``, ``min(n, m) >= 1``.

    Module-level and jitted with static options, so eager calls hit the compile cache.
    """
    n, m = cost.shape
    dtype = cost.dtype
    work_dtype = compute_dtype(dtype)
    work = lax.stop_gradient(-cost if maximize else cost).astype(work_dtype)
    transpose = n > m
    if transpose:
        work = work.T
    invalid = jnp.any(jnp.isnan(work) | (work == -jnp.inf))
    # An invalid problem is solved on zeros (which ends) and then reported as such.
    col4row, u, v, status = _solver(rounds)(jnp.where(invalid, 0.0, work).astype(work_dtype))
    status = jnp.where(invalid, STATUS_INVALID, status).astype(jnp.int32)
    ok = status == STATUS_OPTIMAL

    if transpose:
        # Solved cost.T: row p of the transposed problem is column p of ours.
        order = jnp.argsort(col4row)
        rows, cols = col4row[order], order.astype(jnp.int32)
        row_pot, col_pot = v, u
    else:
        rows, cols = jnp.arange(n, dtype=jnp.int32), col4row
        row_pot, col_pot = u, v
    cols = jnp.where(ok, cols, -1)
    rows = jnp.where(ok, rows, -1) if transpose else rows
    sign = -1.0 if maximize else 1.0
    chosen = cost[lax.stop_gradient(rows), lax.stop_gradient(cols)].astype(work_dtype)
    # Not optimal: NaN, with a NaN gradient. The inner ``where`` keeps that NaN out of the
    # gradient of an optimal problem (the double-``where`` trick).
    fail = jnp.nan * jnp.sum(jnp.where(ok, 0.0, cost.astype(work_dtype)))
    total = jnp.where(ok, jnp.sum(chosen), fail).astype(dtype)
    row_pot = jnp.where(ok, sign * row_pot, jnp.nan).astype(dtype)
    col_pot = jnp.where(ok, sign * col_pot, jnp.nan).astype(dtype)
    return AssignmentOutput(rows, cols, total, row_pot, col_pot, status)


def linear_assignment(
    cost: jax.typing.ArrayLike, *, maximize: bool = False, init_rounds: int = 4
) -> AssignmentOutput:
    """Exact minimum- (or maximum-) cost assignment with its dual certificate.

    Rectangular costs assign every row of the smaller side. ``+inf`` entries (``-inf`` when
    maximising) mark forbidden pairs. See the module docstring for the algorithm.

    Numerics: the solver runs in the dtype of ``cost`` (integers become the default float, so
    integer costs above ``2**24`` lose precision unless float64 is enabled). Finite costs must be
    small enough that sums of ``2 min(n, m)`` of them do not overflow. Not differentiable in the
    assignment (it is piecewise constant); ``cost`` of the output has the assignment matrix as
    its gradient.

    Bad input: shapes and static options are checked at trace time, eagerly and under
    ``jit``/``vmap`` (``ValueError``): ``cost`` ``None``, complex or not 2-D, ``init_rounds``
    not a Python int ``>= 0`` (``1.5``, ``True``), ``maximize`` not a bool. A concrete ``cost``
    holding NaN or ``-inf`` (``+inf`` when maximising), or an infeasible one, raises. Traced, the
    same problems give ``status`` 1 (infeasible) or 2 (invalid), ``cols == -1`` (``rows`` too
    when ``n > m``), a NaN ``cost`` with a NaN gradient, and NaN potentials; nothing hangs. An
    empty side (``n == 0`` or ``m == 0``) is a valid problem with ``k = 0`` pairs and cost 0.
    float16/bfloat16 costs are solved in float32 and the outputs cast back. See
    ``docs/conventions.md``.

    Args:
      cost: Array of shape ``[n, m]`` (``n`` or ``m`` may be 0).
      maximize: Maximise the total instead (static bool).
      init_rounds: Rounds of the vectorised bidding initialisation (static Python int; 0 disables
        it). Any value gives the same optimum; it only moves work between the two phases.

    Returns:
      An :class:`AssignmentOutput` (``rows [k]``, ``cols [k]``, ``cost []``,
      ``row_potentials [n]``, ``col_potentials [m]``, ``status []``), ``k = min(n, m)``.

    Raises:
      ValueError: ``cost`` ``None``, complex or not 2-D, or a bad static option; and, for
        concrete input only, NaN entries, ``-inf`` entries (``+inf`` when maximising), or an
        infeasible problem (no assignment of finite cost). Under ``jit`` / ``vmap`` these are
        reported by ``status`` instead.

    References:
      Kuhn, "The Hungarian method for the assignment problem", 1955.
      Jonker & Volgenant, "A shortest augmenting path algorithm for dense and sparse linear
      assignment problems", Computing 1987.
      Crouse, "On implementing 2D rectangular assignment algorithms", IEEE TAES 2016.

    Examples:
      The lecture's example (rows u1..u3, columns v1..v3):

      >>> import jax.numpy as jnp
      >>> out = linear_assignment(jnp.array([[8, 25, 50], [50, 35, 75], [22, 48, 150]]))
      >>> out.cols.tolist(), float(out.cost)
      ([2, 1, 0], 107.0)
      >>> float(out.row_potentials.sum() + out.col_potentials.sum())  # the dual certificate
      107.0
    """
    cost = _as_cost(cost)
    rounds = static_int(init_rounds, "init_rounds")
    static_choice(maximize, "maximize", (False, True))
    _check_concrete(cost, maximize)
    n, m = cost.shape
    k = min(n, m)
    if k == 0:
        empty = jnp.zeros((0,), jnp.int32)
        return AssignmentOutput(
            empty, empty, jnp.zeros((), cost.dtype), jnp.zeros((n,), cost.dtype),
            jnp.zeros((m,), cost.dtype), jnp.int32(STATUS_OPTIMAL),
        )  # fmt: skip
    out = _assignment_core(cost, bool(maximize), rounds)
    if is_concrete(out.status) and int(out.status) == STATUS_INFEASIBLE:
        raise ValueError(
            f"`cost` of shape {cost.shape} is infeasible: no assignment of all "
            f"{k} {'rows' if n <= m else 'columns'} avoids the forbidden "
            f"({'-inf' if maximize else '+inf'}) entries."
        )
    return out


def hungarian(cost: jax.typing.ArrayLike, *, maximize: bool = False) -> tuple[jax.Array, jax.Array]:
    """Exact minimum- (or maximum-) cost assignment: ``(rows, cols)``, as SciPy's.

    The same solver as :func:`linear_assignment` (which also returns the total cost, the dual
    potentials and a status flag); rectangular costs assign every row of the smaller side and
    ``+inf`` (``-inf`` when maximising) entries are forbidden pairs. Runs under ``jit`` and
    ``vmap`` (batches use a flat loop: see the module docstring).

    Bad input: as :func:`linear_assignment` (``ValueError`` for static problems and for a
    concrete NaN, ``-inf`` or infeasible ``cost``; traced, ``cols == -1``, and ``rows == -1`` too
    when ``n > m``). See ``docs/conventions.md``.

    Args:
      cost: Array of shape ``[n, m]``.
      maximize: Maximise the total instead (static bool).

    Returns:
      ``rows [k]`` (increasing) and ``cols [k]`` int32, ``k = min(n, m)``: row ``rows[p]`` is
      assigned column ``cols[p]``. Under ``jit`` an invalid or infeasible problem gives
      ``cols == -1`` (use :func:`linear_assignment` for its ``status``).

    Raises:
      ValueError: as :func:`linear_assignment`.

    Examples:
      >>> import jax.numpy as jnp
      >>> cost = jnp.array([[8, 25, 50], [50, 35, 75], [22, 48, 150]])
      >>> rows, cols = hungarian(cost)
      >>> rows.tolist(), cols.tolist(), int(cost[rows, cols].sum())
      ([0, 1, 2], [2, 1, 0], 107)
    """
    out = linear_assignment(cost, maximize=maximize)
    return out.rows, out.cols
