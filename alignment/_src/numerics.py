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


# --------------------------------------------------------------------------------------------
# Exact power-of-two scaling (scale-free linear algebra in float32), the pseudo-inverse rank
# tolerance and the derivative of a sum of top singular values. Used by cca.py and ctw.py.
# --------------------------------------------------------------------------------------------


def _exponent_bits(dtype) -> tuple[jnp.dtype, int, int, int]:
    """``(int dtype, mantissa bits, exponent bias, min normal exponent)`` of a float dtype."""
    dtype = jnp.dtype(dtype)
    if dtype == jnp.dtype(jnp.float64):
        return jnp.dtype(jnp.int64), 52, 1023, -1022
    if dtype == jnp.dtype(jnp.float32):
        return jnp.dtype(jnp.int32), 23, 127, -126
    raise ValueError(f"power-of-two scaling needs float32 or float64, got {dtype}.")


def pow2(e: jax.Array, dtype) -> jax.Array:
    """``2.0 ** e`` exactly (built from its bits), for integer ``e`` clipped to the normal range."""
    int_dtype, mant, bias, emin = _exponent_bits(dtype)
    e = jnp.clip(jnp.asarray(e).astype(int_dtype), emin, bias)
    bits = (e + bias) << mant
    return jax.lax.bitcast_convert_type(bits.astype(int_dtype), jnp.dtype(dtype))


def scale_pow2(x: jax.Array, e: jax.Array) -> jax.Array:
    """``x * 2 ** e`` exactly (two power-of-two factors, so ``|e|`` may reach twice the range).

    Exact unless the result over- or underflows (then ``inf`` or 0, as true rounding would give).
    ``e`` is an integer array broadcastable against ``x`` and carries no derivative.
    """
    _, _, bias, _ = _exponent_bits(x.dtype)
    e = jnp.clip(jax.lax.stop_gradient(jnp.asarray(e)).astype(jnp.int32), -2 * bias, 2 * bias)
    half = e // 2
    return x * pow2(half, x.dtype) * pow2(e - half, x.dtype)


def column_exponents(x: jax.Array, axis: int | None = 0) -> jax.Array:
    """Integers ``e`` with ``max |x| * 2 ** -e`` in ``[0.5, 1)`` along ``axis`` (``None``: all).

    Columns that are all zero or hold a non-finite value get 0 (so NaN still propagates through
    ``scale_pow2(x, -e)``). No derivative flows through ``e``: dividing by ``2 ** e`` is an exact
    change of units.
    """
    _, _, bias, emin = _exponent_bits(x.dtype)
    m = jnp.max(jnp.abs(jax.lax.stop_gradient(x)), axis=axis)
    ok = jnp.isfinite(m) & (m > 0)
    _, e = jnp.frexp(jnp.where(ok, m, jnp.ones_like(m)))
    return jnp.clip(jnp.where(ok, e, 0), emin + 2, bias - 2).astype(jnp.int32)


def rank_tolerance(values: jax.Array, size: int, *, axis: int = -1) -> jax.Array:
    """NumPy's pseudo-inverse/rank cut-off ``size * eps * max(values)`` (``numpy.linalg.pinv``).

    ``values`` are eigenvalues of a positive semi-definite matrix or singular values; entries at
    or below the result count as zero. Keeps ``axis`` (as a size-1 dimension) for broadcasting.
    """
    eps = jnp.finfo(values.dtype).eps
    return size * eps * jnp.max(values, axis=axis, keepdims=True)


def _top_singular_sum(t: jax.Array, k: int, squared: bool) -> jax.Array:
    """``sum_{i < k} sigma_i(t)`` (or of ``sigma_i ** 2``), with ``d sigma_i = u_i^T dt v_i``.

    The derivative is the closed form for a simple singular value, used everywhere: it has no
    ``1 / (sigma_i^2 - sigma_j^2)`` term, so it stays finite where singular values repeat (where
    it is a subgradient if ``k`` cuts through a group of equal values) and at zero singular
    values.
    """
    s = jnp.linalg.svd(t, compute_uv=False)[:k]
    return jnp.sum(s * s) if squared else jnp.sum(s)


top_singular_sum = jax.custom_jvp(_top_singular_sum, nondiff_argnums=(1, 2))


@top_singular_sum.defjvp
def _top_singular_sum_jvp(k, squared, primals, tangents):
    (t,), (dt,) = primals, tangents
    u, s, vt = jnp.linalg.svd(t, full_matrices=False)
    u, s, vt = u[:, :k], s[:k], vt[:k]
    dsigma = jnp.sum(u * (dt @ vt.T), axis=0)  # u_i^T dt v_i
    if squared:
        return jnp.sum(s * s), jnp.sum(2.0 * s * dsigma)
    return jnp.sum(s), jnp.sum(dsigma)


def canonical_signs(wx: jax.Array, wy: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Flips paired columns so that each column of ``wx`` has its largest-magnitude entry > 0.

    Ties go to the first entry; ``wy``'s columns follow ``wx``'s (a canonical pair keeps its
    correlation sign).
    """
    idx = jnp.argmax(jnp.abs(wx), axis=0)
    pivot = jnp.take_along_axis(wx, idx[None, :], axis=0)[0]
    sign = jnp.where(pivot < 0, -1.0, 1.0).astype(wx.dtype)
    return wx * sign, wy * sign


def center_pow2(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Centres the columns of ``x: [n, d]`` in exact power-of-two units, one unit for all of ``x``.

    Returns ``(mean, xs, e)`` with ``mean`` the column means and ``x - mean = xs * 2 ** e``, where
    the integer scalar ``e`` makes ``max |x| * 2 ** -e`` lie in ``[0.5, 1)``: covariances of
    ``xs`` neither overflow nor underflow whatever the units of ``x`` (1e30 or 1e-30 in float32),
    and, the unit being common to all features, ratios between them (rank tolerances, an
    isotropic ridge ``reg * 2 ** (-2 e)``) are unchanged. NaN propagates to ``mean`` and ``xs``.
    """
    e = column_exponents(x, axis=None)
    x0 = scale_pow2(x, -e)
    m0 = jnp.mean(x0, axis=0)
    return scale_pow2(m0, e), x0 - m0, e


def pow2_rows(z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Rows of ``z [n, k]`` scaled down by a power of two so that ``|z| <= 1``, and the exponents.

    Returns ``(z * 2**-e, e)`` with ``e [n]`` int32 ``>= 0`` (0 for rows already within
    ``[-1, 1]`` and for rows holding NaN or inf, which stay as they are). The scaling is exact
    (``ldexp``) and constant in the derivative; with :func:`pow2_products` it computes inner
    products of huge vectors (``1e30``) without overflowing in the middle of a dot product.
    """
    top = jnp.max(jnp.abs(jax.lax.stop_gradient(z)), axis=-1) if z.shape[-1] else None
    if top is None:
        return z, jnp.zeros(z.shape[:-1], jnp.int32)
    ok = jnp.isfinite(top) & (top > 1)
    e = jnp.where(ok, jnp.ceil(jnp.log2(jnp.where(ok, top, 1.0))), 0.0).astype(jnp.int32)
    return jnp.ldexp(z, -e[..., None]), e


def pow2_products(prod: jax.Array, e_rows, e_cols, log_scale, k: int) -> jax.Array:
    """``exp(log_scale) * 2**(e_rows[:, None] + e_cols[None, :]) * prod`` without overflow.

    ``prod`` holds inner products of rows rescaled by :func:`pow2_rows` (``|prod| <= k``); the
    factor is applied exactly (``ldexp``) unless the result would pass ``finfo.max / (4 k)``,
    where it is clamped there (zero derivative in ``log_scale``). ``exp(log_scale)`` never
    overflows either, so values and gradients stay finite whenever the inputs are finite.
    ``log_scale`` None means a factor of 1.
    """
    import math

    dtype = prod.dtype
    log_cap = math.log(float(jnp.finfo(dtype).max) / (4.0 * max(k, 1)))
    e = e_rows[:, None] + e_cols[None, :]
    ls = jnp.zeros((), dtype) if log_scale is None else jnp.asarray(log_scale, dtype)
    big = ls > log_cap
    c = jnp.exp(jnp.where(big, jnp.zeros((), dtype), ls))
    over = big | (ls + e.astype(dtype) * math.log(2.0) > log_cap)
    cap = jnp.asarray(math.exp(log_cap), dtype)
    mult = jnp.where(over, cap, jnp.ldexp(c, jnp.where(over, 0, e)))
    return mult * prod
