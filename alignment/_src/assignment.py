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
or any set of ``r`` rows with fewer than ``r`` finite columns) stop the solver with a status flag.
Concrete input raises ``ValueError`` instead.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_batching import custom_vmap

from alignment._src.checks import is_concrete

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
      status: ``[]`` int32: :data:`STATUS_OPTIMAL` (0), :data:`STATUS_INFEASIBLE` (1) or
        :data:`STATUS_INVALID` (2). When not 0, ``cols`` is all ``-1`` (``rows`` too when
        ``n > m``), ``cost`` is ``inf`` (``-inf`` when maximising) if infeasible and NaN if
        invalid, and the potentials are NaN.
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

    def body(state):
        k, v, col4row, row4col, _ = state
        reduced = cost - v[None, :]
        u1, j1 = _argmin(reduced, cols)
        u2 = jnp.min(jnp.where(cols[None, :] == j1[:, None], jnp.inf, reduced), axis=1)
        gap = jnp.where(jnp.isfinite(u2), u2 - u1, 0.0)
        bids = (col4row < 0) & jnp.isfinite(u1)
        target = jnp.where(bids, j1, m)  # m: dropped
        best = jnp.full((m,), -jnp.inf, cost.dtype).at[target].max(gap, mode="drop")
        top = bids & (gap == best[jnp.minimum(j1, m - 1)])
        winner = jnp.full((m,), n, jnp.int32).at[jnp.where(top, j1, m)].min(rows, mode="drop")
        # A zero-gap bid (a tie) only takes a free column: it would not change the potentials.
        accept = (winner < n) & ((row4col < 0) | (best > 0))
        loser = jnp.where(accept & (row4col >= 0), row4col, n)
        col4row = col4row.at[loser].set(-1, mode="drop")
        col4row = col4row.at[jnp.where(accept, winner, n)].set(cols, mode="drop")
        row4col = jnp.where(accept, winner, row4col)
        v = jnp.where(accept, v - best, v)
        return k + 1, v, col4row, row4col, jnp.any(accept)

    def cond(state):
        k, _, col4row, _, progress = state
        return (k < rounds) & progress & jnp.any(col4row < 0)

    init = (jnp.int32(0), v, col4row, row4col, jnp.array(True))
    _, v, col4row, row4col, _ = lax.while_loop(cond, body, init)
    return v, col4row, row4col


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


def _solve_nested(cost: jax.Array, rounds: int):
    """One problem: an outer loop over augmentations, each a Dijkstra loop then a path loop."""
    m = cost.shape[1]
    dtype = cost.dtype
    cols = jnp.arange(m, dtype=jnp.int32)
    v, col4row, row4col = _bidding_rounds(cost, rounds)
    u = _row_potentials(cost, v, col4row)

    def augment_once(state):
        u, v, col4row, row4col, _ = state
        cur = jnp.argmax(col4row < 0).astype(jnp.int32)

        def step(s):
            i, minval, dist, pred, scanned, _ = s
            j, low, dist, pred, scanned = _dijkstra_step(
                cost, u, v, cols, i, minval, dist, pred, scanned
            )
            return row4col[j], low, dist, pred, scanned, j

        search = (
            cur,
            jnp.zeros((), dtype),
            jnp.full((m,), jnp.inf, dtype),
            jnp.zeros((m,), jnp.int32),
            jnp.zeros((m,), bool),
            jnp.int32(0),
        )
        # Stops at a free column (row4col == -1) or when nothing finite is left (infeasible).
        _, minval, dist, pred, scanned, sink = lax.while_loop(
            lambda s: (s[0] >= 0) & jnp.isfinite(s[1]), step, search
        )
        feasible = jnp.isfinite(minval)
        u, v = _dual_update(u, v, col4row, cur, minval, dist, scanned)

        def flip(a):
            j, row4col, col4row, _ = a
            i = pred[j]
            return col4row[i], row4col.at[j].set(i), col4row.at[i].set(j), i == cur

        _, row4col, col4row, _ = lax.while_loop(
            lambda a: ~a[3], flip, (sink, row4col, col4row, ~feasible)
        )
        status = jnp.where(feasible, STATUS_OPTIMAL, STATUS_INFEASIBLE).astype(jnp.int32)
        return u, v, col4row, row4col, status

    state = (u, v, col4row, row4col, jnp.int32(STATUS_OPTIMAL))
    u, v, col4row, _, status = lax.while_loop(
        lambda s: jnp.any(s[2] < 0) & (s[4] == STATUS_OPTIMAL), augment_once, state
    )
    return col4row, u, v, status


_SEARCH, _AUGMENT, _DONE = 0, 1, 2


def _solve_flat(cost: jax.Array, rounds: int):
    """One problem as a single loop of steps, for ``vmap``: see the module docstring."""
    n, m = cost.shape
    dtype = cost.dtype
    cols = jnp.arange(m, dtype=jnp.int32)
    rows = jnp.arange(n, dtype=jnp.int32)
    v, col4row, row4col = _bidding_rounds(cost, rounds)
    u = _row_potentials(cost, v, col4row)
    inf = jnp.array(jnp.inf, dtype)

    def body(s):
        mode, cur, i, minval, sink, u, v, col4row, row4col, dist, pred, scanned, status = s
        searching = mode == _SEARCH
        # A Dijkstra step (kept when searching).
        j, low, s_dist, s_pred, s_scanned = _dijkstra_step(
            cost, u, v, cols, i, minval, dist, pred, scanned
        )
        found = row4col[j] < 0
        s_u, s_v = _dual_update(u, v, col4row, cur, low, s_dist, s_scanned)
        infeasible = ~jnp.isfinite(low)
        # An augmentation step along the path (kept when augmenting).
        p = pred[sink]
        next_sink = col4row[p]
        a_row4col = jnp.where(cols == sink, p, row4col)
        a_col4row = jnp.where(rows == p, sink, col4row)
        finished = (~searching) & (p == cur)

        keep = searching & found & ~infeasible
        u = jnp.where(keep, s_u, u)
        v = jnp.where(keep, s_v, v)
        row4col = jnp.where(searching, row4col, a_row4col)
        col4row = jnp.where(searching, col4row, a_col4row)
        dist = jnp.where(searching, s_dist, dist)
        pred = jnp.where(searching, s_pred, pred)
        scanned = jnp.where(searching, s_scanned, scanned)
        i = jnp.where(searching, row4col[j], i)
        minval = jnp.where(searching, low, minval)
        sink = jnp.where(searching, j, next_sink)
        mode = jnp.where(searching & found, _AUGMENT, mode)
        status = jnp.where(searching & infeasible, STATUS_INFEASIBLE, status)
        mode = jnp.where(searching & infeasible, _DONE, mode)
        # After the last flip of a path, start the next search (or stop).
        free = col4row < 0
        nxt = jnp.argmax(free).astype(jnp.int32)
        more = jnp.any(free)
        mode = jnp.where(finished & more, _SEARCH, mode)
        mode = jnp.where(finished & ~more, _DONE, mode)
        cur = jnp.where(finished, nxt, cur)
        i = jnp.where(finished, nxt, i)
        minval = jnp.where(finished, 0.0, minval)
        dist = jnp.where(finished, inf, dist)
        scanned = jnp.where(finished, False, scanned)
        return mode, cur, i, minval, sink, u, v, col4row, row4col, dist, pred, scanned, status

    free = col4row < 0
    cur = jnp.argmax(free).astype(jnp.int32)
    state = (
        jnp.where(jnp.any(free), _SEARCH, _DONE).astype(jnp.int32),
        cur,
        cur,
        jnp.zeros((), dtype),
        jnp.int32(0),
        u,
        v,
        col4row,
        row4col,
        jnp.full((m,), jnp.inf, dtype),
        jnp.zeros((m,), jnp.int32),
        jnp.zeros((m,), bool),
        jnp.int32(STATUS_OPTIMAL),
    )
    state = lax.while_loop(lambda s: s[0] != _DONE, body, state)
    return state[7], state[5], state[6], state[12]


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
    arr = jnp.asarray(cost)
    if arr.ndim != 2:
        raise ValueError(f"`cost` must be a 2-D array of shape [n, m], got shape {arr.shape}.")
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.result_type(float))
    return arr


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

    Args:
      cost: Array of shape ``[n, m]`` (``n`` or ``m`` may be 0).
      maximize: Maximise the total instead (static).
      init_rounds: Rounds of the vectorised bidding initialisation (static; 0 disables it). Any
        value gives the same optimum; it only moves work between the two phases.

    Returns:
      An :class:`AssignmentOutput` (``rows [k]``, ``cols [k]``, ``cost []``,
      ``row_potentials [n]``, ``col_potentials [m]``, ``status []``), ``k = min(n, m)``.

    Raises:
      ValueError: ``cost`` not 2-D; and, for concrete input only, NaN entries, ``-inf`` entries
        (``+inf`` when maximising), or an infeasible problem (no assignment of finite cost).
        Under ``jit`` / ``vmap`` these are reported by ``status`` instead.

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
    rounds = int(init_rounds)
    if rounds < 0:
        raise ValueError(f"`init_rounds` must be >= 0, got {init_rounds}.")
    _check_concrete(cost, maximize)
    n, m = cost.shape
    dtype = cost.dtype
    k = min(n, m)
    if k == 0:
        empty = jnp.zeros((0,), jnp.int32)
        return AssignmentOutput(
            empty, empty, jnp.zeros((), dtype), jnp.zeros((n,), dtype), jnp.zeros((m,), dtype),
            jnp.int32(STATUS_OPTIMAL),
        )  # fmt: skip

    work = lax.stop_gradient(-cost if maximize else cost)
    transpose = n > m
    if transpose:
        work = work.T
    invalid = jnp.any(jnp.isnan(work) | (work == -jnp.inf))
    # An invalid problem is solved on zeros (which ends) and then reported as such.
    col4row, u, v, status = _solver(rounds)(jnp.where(invalid, 0.0, work).astype(dtype))
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
    total = jnp.sum(cost[lax.stop_gradient(rows), lax.stop_gradient(cols)])
    fail = jnp.where(status == STATUS_INFEASIBLE, sign * jnp.inf, jnp.nan).astype(dtype)
    total = jnp.where(ok, total, fail)
    row_pot = jnp.where(ok, sign * row_pot, jnp.nan)
    col_pot = jnp.where(ok, sign * col_pot, jnp.nan)
    out = AssignmentOutput(rows, cols, total, row_pot, col_pot, status)
    if is_concrete(status) and int(status) == STATUS_INFEASIBLE:
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

    Args:
      cost: Array of shape ``[n, m]``.
      maximize: Maximise the total instead (static).

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
