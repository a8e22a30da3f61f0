"""Pairwise costs, similarities and kernels between two sets of vectors.

Every function maps ``x: [n, d]`` and ``y: [m, d]`` to a matrix ``[n, m]`` whose entry ``(i, j)``
compares ``x[i]`` with ``y[j]``. They are pure JAX: ``jit``, ``vmap`` and ``grad`` work, and the
gradients stay finite at ``x[i] == y[j]`` and at zero vectors. The output dtype follows the inputs.

Costs (to minimise): :func:`squared_euclidean`, :func:`euclidean`, :func:`cosine_distance`,
:func:`absolute_difference`. Similarities and kernels (to maximise): :func:`cosine_similarity`,
:func:`linear_kernel`, :func:`polynomial_kernel`, :func:`rbf_kernel`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from alignment._src.checks import as_float_array, point_pair
from alignment._src.numerics import safe_norm, safe_sqrt

__all__ = [
    "absolute_difference",
    "cosine_distance",
    "cosine_similarity",
    "euclidean",
    "linear_kernel",
    "polynomial_kernel",
    "rbf_kernel",
    "squared_euclidean",
]


def squared_euclidean(x: jax.typing.ArrayLike, y: jax.typing.ArrayLike) -> jax.Array:
    """Squared Euclidean distances ``||x_i - y_j||^2`` (not halved).

    Computed as ``|x|^2 + |y|^2 - 2 x.y`` (one matrix product) after centring both sets on their
    common mean, which removes most of the cancellation of that expansion; the result is clamped
    at zero, so it is never negative.

    Numerics: the absolute error is about ``eps * max |x - mean|^2`` (``eps`` the dtype's
    precision), so distances far below that scale (a tight cluster next to a distant outlier)
    round to zero; :func:`euclidean` uses exact differences instead.

    Args:
      x: Array of shape ``[n, d]``.
      y: Array of shape ``[m, d]``.

    Returns:
      Array of shape ``[n, m]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> d = squared_euclidean(jnp.array([[0.0, 0.0], [1.0, 2.0]]), jnp.array([[1.0, 0.0]]))
      >>> d.shape, d.round(4).tolist()
      ((2, 1), [[1.0], [4.0]])
    """
    x, y = point_pair(x, y)
    n, m = x.shape[0], y.shape[0]
    if n == 0 or m == 0:
        return jnp.zeros((n, m), x.dtype)
    # The result does not depend on the centre, so no gradient flows through it: rows that do
    # not enter a loss (padding) get an exactly zero gradient.
    center = jax.lax.stop_gradient((jnp.sum(x, axis=0) + jnp.sum(y, axis=0)) / (n + m))
    xc, yc = x - center, y - center
    # One product of augmented matrices, [xc, |xc|^2, 1] . [-2 yc, 1, |yc|^2], gives all three
    # terms; its reverse-mode derivative is two products with the cotangent (the norms'
    # gradients ride along), half the passes over an [n, m] cotangent of the separate terms.
    ones_x, ones_y = jnp.ones((n, 1), x.dtype), jnp.ones((m, 1), y.dtype)
    xa = jnp.concatenate([xc, jnp.sum(xc * xc, axis=1, keepdims=True), ones_x], axis=1)
    ya = jnp.concatenate([-2.0 * yc, ones_y, jnp.sum(yc * yc, axis=1, keepdims=True)], axis=1)
    return jnp.maximum(xa @ ya.T, 0.0)


def euclidean(x: jax.typing.ArrayLike, y: jax.typing.ArrayLike) -> jax.Array:
    """Euclidean distances ``||x_i - y_j||``, with a zero (finite) gradient where they vanish.

    Computed from the differences ``x_i - y_j`` (an ``[n, m, d]`` intermediate that ``jit``
    fuses away), not from the expansion of :func:`squared_euclidean`: the square root would
    magnify the expansion's rounding near zero (``euclidean(x, x)`` is exactly 0).

    Args:
      x: Array of shape ``[n, d]``.
      y: Array of shape ``[m, d]``.

    Returns:
      Array of shape ``[n, m]``.
    """
    x, y = point_pair(x, y)
    diff = x[:, None, :] - y[None, :, :]
    return safe_sqrt(jnp.sum(diff * diff, axis=-1))


def cosine_similarity(
    x: jax.typing.ArrayLike, y: jax.typing.ArrayLike, *, eps: float = 1e-8
) -> jax.Array:
    """Cosine similarities ``x_i . y_j / (max(|x_i|, eps) max(|y_j|, eps))`` in ``[-1, 1]``.

    Args:
      x: Array of shape ``[n, d]``.
      y: Array of shape ``[m, d]``.
      eps: Floor on the norms, so that a zero vector has similarity 0 with everything (and a
        finite gradient) instead of NaN.

    Returns:
      Array of shape ``[n, m]``.
    """
    x, y = point_pair(x, y)
    xn = x / jnp.maximum(safe_norm(x, axis=1, keepdims=True), eps)
    yn = y / jnp.maximum(safe_norm(y, axis=1, keepdims=True), eps)
    return jnp.clip(xn @ yn.T, -1.0, 1.0)  # rounding can step just outside [-1, 1]


def cosine_distance(
    x: jax.typing.ArrayLike, y: jax.typing.ArrayLike, *, eps: float = 1e-8
) -> jax.Array:
    """Cosine distances ``1 - cosine_similarity(x, y)`` in ``[0, 2]``.

    Args:
      x: Array of shape ``[n, d]``.
      y: Array of shape ``[m, d]``.
      eps: Floor on the norms (see :func:`cosine_similarity`).

    Returns:
      Array of shape ``[n, m]``.
    """
    return 1.0 - cosine_similarity(x, y, eps=eps)


def absolute_difference(x: jax.typing.ArrayLike, y: jax.typing.ArrayLike) -> jax.Array:
    """Absolute differences ``|x_i - y_j|`` between two 1-D series (the L1 / cityblock cost).

    Args:
      x: Array of shape ``[n]`` or ``[n, d]``.
      y: Array of shape ``[m]`` or ``[m, d]``; for ``d > 1`` the absolute differences are summed
        over features (the cityblock distance).

    Returns:
      Array of shape ``[n, m]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> absolute_difference(jnp.array([1.0, 3.0]), jnp.array([2.0, 2.0, 4.0]))
      Array([[1., 1., 3.],
             [1., 1., 1.]], dtype=float32)
    """
    x = as_float_array(x, "x")
    y = as_float_array(y, "y")
    if x.ndim == 1:
        x = x[:, None]
    if y.ndim == 1:
        y = y[:, None]
    x, y = point_pair(x, y)
    return jnp.sum(jnp.abs(x[:, None, :] - y[None, :, :]), axis=-1)


def linear_kernel(x: jax.typing.ArrayLike, y: jax.typing.ArrayLike) -> jax.Array:
    """Linear kernel ``x_i . y_j``.

    Args:
      x: Array of shape ``[n, d]``.
      y: Array of shape ``[m, d]``.

    Returns:
      Array of shape ``[n, m]``.
    """
    x, y = point_pair(x, y)
    return x @ y.T


def polynomial_kernel(
    x: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    *,
    degree: int = 3,
    gamma: jax.typing.ArrayLike | None = None,
    coef0: jax.typing.ArrayLike = 1.0,
) -> jax.Array:
    """Polynomial kernel ``(gamma x_i . y_j + coef0) ** degree`` (scikit-learn's convention).

    Args:
      x: Array of shape ``[n, d]``.
      y: Array of shape ``[m, d]``.
      degree: Positive integer power (static).
      gamma: Scale of the inner product; ``None`` means ``1 / d``.
      coef0: Additive constant.

    Returns:
      Array of shape ``[n, m]``.
    """
    if isinstance(degree, bool) or not isinstance(degree, int | np.integer) or degree < 1:
        raise ValueError(f"`degree` must be a positive int, got {degree!r}.")
    x, y = point_pair(x, y)
    if gamma is None:
        gamma = 1.0 / x.shape[1]
    gamma = jnp.asarray(gamma, x.dtype)
    coef0 = jnp.asarray(coef0, x.dtype)
    return (gamma * (x @ y.T) + coef0) ** int(degree)


def rbf_kernel(
    x: jax.typing.ArrayLike, y: jax.typing.ArrayLike, *, gamma: jax.typing.ArrayLike | None = None
) -> jax.Array:
    """Gaussian (RBF) kernel ``exp(-gamma ||x_i - y_j||^2)`` (scikit-learn's convention).

    Args:
      x: Array of shape ``[n, d]``.
      y: Array of shape ``[m, d]``.
      gamma: Inverse length scale; ``None`` means ``1 / d``.

    Returns:
      Array of shape ``[n, m]`` with entries in ``[0, 1]`` (0 only by underflow).
    """
    x, y = point_pair(x, y)
    if gamma is None:
        gamma = 1.0 / x.shape[1]
    return jnp.exp(-jnp.asarray(gamma, x.dtype) * squared_euclidean(x, y))
