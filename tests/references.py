"""Independent float64 references, written with plain loops in NumPy (never calling our code).

They follow the definitions, not our implementation: a row-by-row dynamic programme, and brute
force over every warping path for tiny inputs.
"""

from __future__ import annotations

import math

import numpy as np


def admissible(t: int, s: int, window: int | None) -> np.ndarray:
    """The band of the library's docstring, cell by cell, with Python integers."""
    mask = np.ones((t, s), dtype=bool)
    if window is None:
        return mask
    for i in range(t):
        for j in range(s):
            mask[i, j] = abs(i * (s - 1) - j * (t - 1)) <= window * max(t - 1, s - 1)
    return mask


def _softmin(values, gamma):
    values = [v for v in values if v < math.inf]
    if not values:
        return math.inf
    if gamma == 0:
        return min(values)
    m = min(values)
    return m - gamma * math.log(sum(math.exp(-(v - m) / gamma) for v in values))


def dtw_table(cost, gamma=0.0, window=None) -> np.ndarray:
    """Accumulated cost ``R`` (``gamma = 0``: exact DTW) by the textbook row-major recursion."""
    cost = np.asarray(cost, dtype=np.float64)
    t, s = cost.shape
    mask = admissible(t, s, window)
    r = np.full((t + 1, s + 1), math.inf)
    r[0, 0] = 0.0
    for i in range(1, t + 1):
        for j in range(1, s + 1):
            if not mask[i - 1, j - 1]:
                continue
            r[i, j] = cost[i - 1, j - 1] + _softmin(
                [r[i - 1, j - 1], r[i - 1, j], r[i, j - 1]], gamma
            )
    return r[1:, 1:]


def dtw_value(cost, gamma=0.0, window=None) -> float:
    return float(dtw_table(cost, gamma, window)[-1, -1])


def all_paths(t: int, s: int):
    """Every warping path from (0, 0) to (t-1, s-1) with steps (1,0), (0,1), (1,1)."""

    def extend(path):
        i, j = path[-1]
        if (i, j) == (t - 1, s - 1):
            yield path
            return
        for di, dj in ((1, 0), (0, 1), (1, 1)):
            if i + di < t and j + dj < s:
                yield from extend([*path, (i + di, j + dj)])

    yield from extend([(0, 0)])


def brute_force(cost, gamma: float, window=None):
    """Over all admissible paths: (min cost, soft-min, expected alignment matrix, #paths)."""
    cost = np.asarray(cost, dtype=np.float64)
    t, s = cost.shape
    mask = admissible(t, s, window)
    paths = [p for p in all_paths(t, s) if all(mask[i, j] for i, j in p)]
    totals = np.array([sum(cost[i, j] for i, j in p) for p in paths])
    best = totals.min()
    weights = np.exp(-(totals - best) / gamma)
    soft = best - gamma * math.log(weights.sum())
    expected = np.zeros((t, s))
    for w, p in zip(weights / weights.sum(), paths, strict=True):
        for i, j in p:
            expected[i, j] += w
    best_path = paths[int(np.argmin(totals))]
    return float(best), float(soft), expected, len(paths), best_path


def count_paths(t: int, s: int) -> int:
    """Delannoy number D(t-1, s-1): the number of warping paths in a t x s grid."""
    m, n = t - 1, s - 1
    return sum(math.comb(m, k) * math.comb(n, k) * 2**k for k in range(min(m, n) + 1))


__all__ = [
    "admissible",
    "all_paths",
    "brute_force",
    "count_paths",
    "dtw_table",
    "dtw_value",
]
