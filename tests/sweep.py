"""Harness for the bad-input sweeps (``tests/test_sweep_*.py``).

Each sweep calls a public function with bad or degenerate input eagerly, under ``jit`` and under
``vmap``, and asserts the policy of ``docs/conventions.md``: a ``ValueError`` naming the argument,
NaN (or -1 / False) outputs for traced bad values, finite outputs and gradients at valid
degenerate points, untouched results when padding holds garbage. Every checked case is counted
per function in ``COUNTS``; ``tests/conftest.py`` writes the tally to the file named by the
``ALIGNMENT_SWEEP_REPORT`` environment variable, if set.
"""

from __future__ import annotations

import collections
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

COUNTS: collections.Counter = collections.Counter()


def _record(function: str, outcome: str) -> None:
    COUNTS[(function, outcome)] += 1


def float_leaves(tree) -> list[np.ndarray]:
    leaves = jax.tree.leaves(tree)
    return [np.asarray(x) for x in leaves if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]


def raises(function: str, call, *, match: str | None = None) -> None:
    """``call()`` raises ``ValueError`` whose message matches ``match`` (an argument name)."""
    with pytest.raises(ValueError, match=re.escape(match) if match else None):
        jax.block_until_ready(call())
    _record(function, "ValueError")


def all_nan(function: str, call) -> None:
    """Every floating output of ``call()`` is NaN (the traced bad-value policy)."""
    out = jax.block_until_ready(call())
    leaves = float_leaves(out)
    assert leaves, "no floating output to check"
    for leaf in leaves:
        assert np.all(np.isnan(leaf.astype(np.float64))), leaf
    _record(function, "NaN")


def any_nan(function: str, call) -> None:
    """Some floating output of ``call()`` is NaN (NaN in real data never disappears)."""
    out = jax.block_until_ready(call())
    assert any(np.any(np.isnan(leaf.astype(np.float64))) for leaf in float_leaves(out)), out
    _record(function, "NaN propagated")


def finite(function: str, call) -> object:
    """Every floating output of ``call()`` is finite; returns the output."""
    out = jax.block_until_ready(call())
    for leaf in float_leaves(out):
        assert np.all(np.isfinite(leaf.astype(np.float64))), leaf
    _record(function, "finite")
    return out


def same(function: str, call, reference, *, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """``call()`` equals ``reference`` leaf by leaf (padding garbage changed nothing)."""
    out = jax.block_until_ready(call())
    for got, want in zip(jax.tree.leaves(out), jax.tree.leaves(reference), strict=True):
        np.testing.assert_allclose(
            np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=rtol, atol=atol
        )
    _record(function, "unchanged by padding")


# Scalar hyperparameter variants: (label, value, eager outcome, traced outcome).
# "raises" = ValueError; "nan" = the NaN policy. Array-valued scalars raise even when traced
# (shapes are static).
POSITIVE_SCALAR_CASES = [
    ("zero", 0.0, "raises", "nan"),
    ("negative", -1.0, "raises", "nan"),
    ("nan", float("nan"), "raises", "nan"),
    ("inf", float("inf"), "raises", "nan"),
]
SHAPE_SCALAR_CASES = [
    ("array", [1.0, 2.0]),
    ("matrix", [[1.0]]),
    ("complex", 1.0 + 1.0j),
    ("none", None),
    ("string", "1.0"),
]


def garbage_values() -> list[tuple[str, float]]:
    """What padding may hold."""
    return [("nan", float("nan")), ("inf", float("inf")), ("-inf", float("-inf")), ("big", 1e30)]
