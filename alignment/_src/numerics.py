"""Numerics with safe derivatives, used across the library.

Policy: functions here never produce NaN in a gradient at the points where the forward value is
finite (zero vectors, zero distances). They use the double-``where`` trick: the unsafe branch is
fed a harmless input so that its derivative, multiplied by zero, stays finite.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def safe_sqrt(x: jax.Array) -> jax.Array:
    """``sqrt(max(x, 0))`` whose derivative at 0 is 0 instead of inf."""
    positive = x > 0
    safe_x = jnp.where(positive, x, jnp.ones_like(x))
    return jnp.where(positive, jnp.sqrt(safe_x), jnp.zeros_like(x))


def safe_norm(x: jax.Array, *, axis: int = -1, keepdims: bool = False) -> jax.Array:
    """Euclidean norm along ``axis`` with a zero (not NaN) derivative at the zero vector."""
    return safe_sqrt(jnp.sum(x * x, axis=axis, keepdims=keepdims))
