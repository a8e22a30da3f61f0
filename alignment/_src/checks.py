"""Input validation shared by the public functions.

Checks run at trace time on shapes (always static) and on values only when they are concrete
(plain Python numbers or NumPy/JAX arrays outside a transformation). Under ``jit``/``vmap`` the
value checks are skipped and each function documents what it returns instead.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(value) -> bool:
    """True when ``value`` holds data we may inspect (not a tracer)."""
    return not isinstance(value, jax.core.Tracer)


def as_float_array(value, name: str) -> jax.Array:
    """Converts ``value`` to a JAX array of a floating dtype (integers become the default float)."""
    arr = jnp.asarray(value)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.result_type(float))
    return arr


def check_positive(value, name: str) -> None:
    """Raises ``ValueError`` if a concrete ``value`` is not strictly positive (or not finite)."""
    if value is None:
        raise ValueError(f"`{name}` must be a positive number, got None.")
    if not is_concrete(value):
        return
    arr = np.asarray(value)
    if arr.ndim != 0:
        raise ValueError(f"`{name}` must be a scalar, got an array of shape {arr.shape}.")
    if not np.isfinite(arr) or arr <= 0:
        raise ValueError(f"`{name}` must be a finite positive number, got {arr.item()!r}.")


def check_matrix(arr: jax.Array, name: str) -> None:
    """Raises ``ValueError`` unless ``arr`` is a non-empty 2-D array."""
    if arr.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D array of shape [t, s], got shape {arr.shape}.")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"`{name}` must be non-empty, got shape {arr.shape} (an empty sequence).")


def point_pair(
    x, y, names: tuple[str, str] = ("x", "y"), *, feature: str = "feature", non_empty: bool = False
) -> tuple[jax.Array, jax.Array]:
    """Two point sets ``[n, d]`` and ``[m, d]`` as float arrays of a common dtype.

    Raises ``ValueError`` naming both arguments and their shapes unless both are 2-D with the
    same ``d`` (and, with ``non_empty``, ``n, m >= 1``).
    """
    nx, ny = names
    x = as_float_array(x, nx)
    y = as_float_array(y, ny)
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(
            f"`{nx}` and `{ny}` must be 2-D arrays [n, d] and [m, d], got shapes {x.shape} and "
            f"{y.shape}."
        )
    if non_empty and (x.shape[0] == 0 or y.shape[0] == 0):
        raise ValueError(
            f"`{nx}` and `{ny}` must be non-empty, got shapes {x.shape} and {y.shape}."
        )
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"`{nx}` and `{ny}` must have the same {feature} size d, got {nx}: {x.shape} and "
            f"{ny}: {y.shape}."
        )
    dtype = jnp.result_type(x, y)
    return x.astype(dtype), y.astype(dtype)
