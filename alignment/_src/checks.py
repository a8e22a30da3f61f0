"""Input validation shared by every public function, and the library's bad-input policy.

The policy (written once here and in ``docs/conventions.md``; each docstring states it):

* **Shapes are static.** Wrong rank, mismatched sizes, empty sequences, array-valued scalar
  hyperparameters and ``None`` for a required array raise ``ValueError`` naming the argument and
  the shapes, eagerly *and* under ``jit``/``vmap`` (they are checked at trace time).
* **Dtypes.** Complex inputs raise ``ValueError``; integer and bool arrays are promoted to the
  default float dtype; float16/bfloat16 inputs are computed (accumulated) in float32 and the result
  is cast back to the input dtype (:func:`compute_dtype`).
* **Concrete bad values** (a plain number or an array outside a transformation): non-positive or
  non-finite gamma/epsilon/temperature/tolerances, negative or NaN weights, unequal masses where
  balance is required, out-of-range lengths or labels raise ``ValueError``.
* **Traced bad values** (the same values, under ``jit``/``vmap``/``grad``): every floating output
  becomes NaN, integer outputs (indices, paths) become ``-1`` and boolean flags ``False``
  (:func:`nan_if`); where an output has a ``status`` or ``converged`` field, it says so as well.
  Never a plausible finite number, never a hang.
* **NaN in real data propagates** to the value (and gradient); padding (``lengths``), masked
  positions (``mask``) and zero weights are never read, whatever they hold.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np


class ConvergenceWarning(UserWarning):
    """A concrete (not traced) call of an iterative solver stopped before converging."""


def is_concrete(value) -> bool:
    """True when ``value`` holds data we may inspect (not a tracer)."""
    return not isinstance(value, jax.core.Tracer)


def _shape(value) -> tuple:
    return tuple(getattr(value, "shape", np.shape(value)))


def as_float_array(value, name: str, *, ndim: int | None = None, what: str = "") -> jax.Array:
    """``value`` as a JAX array of a floating dtype.

    Raises ``ValueError`` naming ``name`` for ``None``, complex or non-numeric input, and (with
    ``ndim``) for the wrong rank; ``what`` describes the expected shape (``"[t, d]"``).
    Integers and bools become the default float dtype; float16/bfloat16 are kept.
    """
    if value is None:
        raise ValueError(f"`{name}` must be an array{_expect(ndim, what)}, got None.")
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        try:
            value = np.asarray(value)
        except (ValueError, TypeError) as err:
            raise ValueError(f"`{name}` must be a numeric array, got {type(value)!r}.") from err
        dtype = value.dtype
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise ValueError(
            f"`{name}` must be real, got complex dtype {dtype} (shape {_shape(value)}); pass "
            "the real and imaginary parts as separate features."
        )
    if not (jnp.issubdtype(dtype, jnp.number) or jnp.issubdtype(dtype, jnp.bool_)):
        raise ValueError(f"`{name}` must be a numeric array, got dtype {dtype}.")
    arr = jnp.asarray(value)
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        arr = arr.astype(jnp.result_type(float))
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(
            f"`{name}` must be a {ndim}-D array{_expect(None, what)}, got {arr.shape}."
        )
    return arr


def as_int_array(
    value,
    name: str,
    *,
    ndim: int | None = None,
    shape: tuple | None = None,
    what: str = "",
    note: str = "",
) -> jax.Array:
    """``value`` as a JAX array of an integer dtype (bool is not an integer here).

    Raises ``ValueError`` naming ``name`` for ``None``, non-numeric or non-integer input, and for
    the wrong rank (``ndim``) or the wrong shape (``shape``); ``what`` describes the expected
    shape (``"[b]"``) and ``note`` adds what the values mean. An empty array of any numeric
    dtype is accepted (it holds no non-integer value) and becomes int32.
    """
    expect = f"an integer array{_expect(ndim, what)}{note}"
    if value is None:
        raise ValueError(f"`{name}` must be {expect}, got None.")
    if getattr(value, "dtype", None) is None:
        try:
            value = np.asarray(value)
        except (ValueError, TypeError) as err:
            raise ValueError(f"`{name}` must be {expect}, got {value!r}.") from err
    arr = jnp.asarray(value)
    integer = jnp.issubdtype(arr.dtype, jnp.integer) and not jnp.issubdtype(arr.dtype, jnp.bool_)
    if shape is not None and (arr.shape != tuple(shape) or not integer):
        raise ValueError(f"`{name}` must be {expect}, got shape {arr.shape} and dtype {arr.dtype}.")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(
            f"`{name}` must be a {ndim}-D array{_expect(None, what)}, got shape {arr.shape}."
        )
    if arr.size == 0:
        return arr.astype(jnp.int32)
    if not integer:
        raise ValueError(f"`{name}` must hold integers, got dtype {arr.dtype} (shape {arr.shape}).")
    return arr


def _expect(ndim, what: str) -> str:
    if what:
        return f" of shape {what}"
    return "" if ndim is None else f" of rank {ndim}"


def compute_dtype(dtype) -> jnp.dtype:
    """The dtype to accumulate in: float32 for float16/bfloat16, else ``dtype`` itself."""
    dtype = jnp.dtype(dtype)
    if dtype in (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16)):
        return jnp.dtype(jnp.float32)
    return dtype


def check_non_empty(arr, name: str) -> None:
    """Raises ``ValueError`` if any dimension of ``arr`` is zero."""
    if any(n == 0 for n in arr.shape):
        raise ValueError(f"`{name}` must be non-empty, got shape {arr.shape}.")


def check_matrix(arr: jax.Array, name: str, what: str = "[t, s]") -> None:
    """Raises ``ValueError`` unless ``arr`` is a non-empty 2-D array."""
    if arr.ndim != 2:
        raise ValueError(f"`{name}` must be a 2-D array of shape {what}, got shape {arr.shape}.")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"`{name}` must be non-empty, got shape {arr.shape} (an empty sequence).")


_DOMAINS = {
    "positive": (lambda v: v > 0, "a finite positive number"),
    "nonnegative": (lambda v: v >= 0, "a finite non-negative number"),
    "finite": (lambda v: v == v, "a finite number"),
    "unit": (lambda v: (v > 0) & (v <= 1), "a number in (0, 1]"),
    "open_unit": (lambda v: (v > 0) & (v < 1), "a number in (0, 1)"),
}


def scalar(value, name: str, domain: str = "positive", *, allow_none: bool = False):
    """Validates a scalar hyperparameter; returns it unchanged (``None`` passes if allowed).

    Always (even traced) raises ``ValueError`` naming ``name`` for ``None`` (unless
    ``allow_none``), complex or non-numeric values and arrays of non-scalar shape. When concrete,
    also raises for non-finite values or values outside ``domain`` (one of ``positive``,
    ``nonnegative``, ``finite``, ``unit`` = (0, 1], ``open_unit`` = (0, 1)). Traced values are
    checked by :func:`invalid_scalar` under the NaN policy.
    """
    in_domain, words = _DOMAINS[domain]
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"`{name}` must be {words}, got None.")
    shape = _shape(value)
    if shape != ():
        raise ValueError(
            f"`{name}` must be a scalar, got an array of shape {shape} (for one value per "
            "problem, jax.vmap over it)."
        )
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        try:
            dtype = np.asarray(value).dtype
        except (ValueError, TypeError) as err:
            raise ValueError(f"`{name}` must be {words}, got {value!r}.") from err
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise ValueError(f"`{name}` must be real, got complex value {value!r}.")
    if not (jnp.issubdtype(dtype, jnp.number) or jnp.issubdtype(dtype, jnp.bool_)):
        raise ValueError(f"`{name}` must be {words}, got {value!r}.")
    if is_concrete(value):
        v = float(np.asarray(value))
        if not np.isfinite(v) or not in_domain(v):
            raise ValueError(f"`{name}` must be {words}, got {v!r}.")
    return value


def invalid_scalar(value, domain: str = "positive") -> jax.Array:
    """Traced flag: ``value`` is non-finite or outside ``domain`` (see :func:`scalar`)."""
    if value is None:
        return jnp.asarray(False)
    v = jnp.asarray(value)
    in_domain, _ = _DOMAINS[domain]
    return ~(jnp.isfinite(v) & in_domain(v))


def check_positive(value, name: str) -> None:
    """Raises ``ValueError`` if ``value`` is not a strictly positive scalar (see :func:`scalar`)."""
    scalar(value, name, "positive")


def static_int(value, name: str, *, minimum: int = 0, allow_none: bool = False) -> int | None:
    """A Python ``int >= minimum`` that sets a shape or a loop count (static: never traced)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(
            f"`{name}` must be a Python int >= {minimum} (static), got {value!r} "
            f"of type {type(value).__name__}."
        )
    if value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}.")
    return int(value)


def static_choice(value, name: str, choices: tuple) -> None:
    """Raises ``ValueError`` unless ``value`` is one of ``choices``."""
    if not isinstance(value, str | bool | type(None)) or value not in choices:
        raise ValueError(f"`{name}` must be one of {choices!r}, got {value!r}.")


def point_pair(
    x, y, names: tuple[str, str] = ("x", "y"), *, feature: str = "feature", non_empty: bool = False
) -> tuple[jax.Array, jax.Array]:
    """Two point sets ``[n, d]`` and ``[m, d]`` as float arrays of a common dtype.

    Raises ``ValueError`` naming both arguments and their shapes unless both are 2-D with the
    same ``d`` (and, with ``non_empty``, ``n, m >= 1``), or if either is ``None`` or complex.
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


def lengths_pair(lengths, sizes: tuple[int, int], names: tuple[str, str] = ("t_valid", "s_valid")):
    """Validates ``lengths = (t_valid, s_valid)`` against the padded ``sizes``.

    Returns ``(t_valid, s_valid, bad)``: Python ints when concrete (checked to lie in
    ``[1, size]``, else ``ValueError``), otherwise int32 scalars clipped into range, with ``bad``
    a traced flag for the NaN policy (``None`` when everything is concrete).
    """
    if lengths is None:
        return sizes[0], sizes[1], None
    if not isinstance(lengths, tuple | list) or len(lengths) != 2:
        raise ValueError(
            f"`lengths` must be a pair ({names[0]}, {names[1]}) of integer scalars, got "
            f"{lengths!r}."
        )
    out, bad = [], None
    for name, value, size in zip(names, lengths, sizes, strict=True):
        shape = _shape(value)
        if shape != ():
            raise ValueError(
                f"`lengths` entry {name} must be an integer scalar, got shape {shape} (for a "
                "batch, jax.vmap over the lengths)."
            )
        dtype = getattr(value, "dtype", None) or np.asarray(value).dtype
        if not jnp.issubdtype(dtype, jnp.integer) or isinstance(value, bool):
            raise ValueError(f"`lengths` entry {name} must be an integer scalar, got {value!r}.")
        if is_concrete(value):
            v = int(np.asarray(value))
            if not 1 <= v <= size:
                raise ValueError(
                    f"`lengths` entry {name}={v} is outside [1, {size}] for padded size {size} "
                    f"(shapes {sizes})."
                )
            out.append(v)
        else:
            v = jnp.asarray(value, jnp.int32)
            flag = (v < 1) | (v > size)
            bad = flag if bad is None else bad | flag
            out.append(jnp.clip(v, 1, size))
    return out[0], out[1], bad


def weights(w, size: int, name: str, dtype, *, what: str = "") -> tuple[jax.Array, jax.Array]:
    """Non-negative weights of shape ``[size]`` (uniform ``1 / size`` when ``None``).

    Returns ``(w, bad)``. Concrete weights that are negative, non-finite or all zero raise
    ``ValueError``; traced ones set the flag ``bad`` for the NaN policy.
    """
    if w is None:
        return jnp.full((size,), 1.0 / size, dtype), jnp.asarray(False)
    w = as_float_array(w, name)
    if w.shape != (size,):
        raise ValueError(f"`{name}` must have shape ({size},){what}, got {w.shape}.")
    if is_concrete(w):
        arr = np.asarray(w, np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"`{name}` must be finite, got {arr[~np.isfinite(arr)][:3]}.")
        if np.any(arr < 0):
            raise ValueError(f"`{name}` must be non-negative, got min {arr.min()!r}.")
        if not np.any(arr > 0):
            raise ValueError(f"`{name}` must have at least one positive weight.")
    bad = ~jnp.all(jnp.isfinite(w) & (w >= 0)) | ~jnp.any(w > 0)
    return w.astype(dtype), bad


def mass_rtol(dtype) -> float:
    """Relative tolerance for "masses are equal", aware of the rounding of low-precision weights."""
    return max(1e-4, 8.0 * float(jnp.finfo(dtype).eps))


def nan_if(bad, tree):
    """Applies the traced bad-value policy: where ``bad``, floats NaN, ints -1, bools False.

    ``bad`` is a scalar (or broadcastable) bool; ``None`` means nothing to flag.
    """
    if bad is None or (is_concrete(bad) and not np.any(np.asarray(bad))):
        return tree

    def one(leaf):
        if leaf is None:
            return None
        leaf = jnp.asarray(leaf)
        if jnp.issubdtype(leaf.dtype, jnp.floating) or jnp.issubdtype(
            leaf.dtype, jnp.complexfloating
        ):
            fill = jnp.nan
        elif jnp.issubdtype(leaf.dtype, jnp.bool_):
            fill = False
        else:
            fill = -1
        return jnp.where(bad, jnp.asarray(fill, leaf.dtype), leaf)

    return jax.tree.map(one, tree)


def warn_unconverged(converged, solver: str, hint: str = "") -> None:
    """Warns (:class:`ConvergenceWarning`) when a concrete ``converged`` flag is False anywhere."""
    if converged is None or not is_concrete(converged):
        return
    flags = np.asarray(converged)
    if not flags.all():
        count = f" ({int((~flags).sum())} of {flags.size} problems)" if flags.size > 1 else ""
        warnings.warn(
            f"{solver} stopped before converging{count}; {hint}".rstrip("; "),
            ConvergenceWarning,
            stacklevel=3,
        )


def static_k(k, dx: int, dy: int, shapes: str) -> int:
    """``k`` (shared dimensions, canonical pairs) as an int in ``[1, min(dx, dy)]``.

    ``None`` gives ``min(dx, dy)``. Raises ``ValueError`` for a non-int (1.5, True, an array) or
    a value out of range; ``shapes`` describes the inputs for the message.
    """
    return static_k_at_most(
        k, min(dx, dy), "min(dx, dy)", shapes, f": there are only {min(dx, dy)} canonical pairs"
    )


def static_k_at_most(k, kmax: int, what: str, shapes: str, why: str = "") -> int:
    """``k`` as a Python int in ``[1, kmax]`` (``None``: ``kmax``); ``what`` names ``kmax``."""
    if k is None:
        return kmax
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ValueError(
            f"`k` must be None or a Python int (static), got {k!r} of type {type(k).__name__}."
        )
    if not 1 <= int(k) <= kmax:
        raise ValueError(f"`k`={int(k)} must be between 1 and {what} = {kmax} for {shapes}{why}.")
    return int(k)


def prng_key(key, hint: str = "") -> jax.Array:
    """A single typed ``jax.random`` key; a raw ``uint32[2]`` key is wrapped.

    Raises ``ValueError`` for ``None``, an array of keys or anything else; ``hint`` is appended
    to the message for ``None`` (what the key is for, or what to pass instead).
    """
    if key is None:
        raise ValueError(f"`key` must be a jax.random key (jax.random.key(0)), got None{hint}.")
    if isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(
                f"`key` must be a single jax.random key (shape ()), got shape {key.shape}; for "
                "several, jax.vmap over the keys."
            )
        return key
    arr = jnp.asarray(key) if hasattr(key, "dtype") else np.asarray(key, dtype=object)
    if arr.dtype != jnp.uint32 or arr.shape != (2,):
        raise ValueError(
            "`key` must be a jax.random key (jax.random.key(0) or jax.random.PRNGKey(0)), got "
            f"{type(key).__name__} of dtype {arr.dtype} and shape {arr.shape}."
        )
    return jax.random.wrap_key_data(jnp.asarray(arr))


def split_pow2(value) -> tuple:
    """``(mantissa, exponent)`` with ``value = mantissa * 2 ** exponent``.

    Carries a scalar whose magnitude the working dtype may not hold (``reg * c ** 2`` for data
    rescaled by ``c = 1e30`` in float32) into a jitted core: a concrete value is split exactly in
    float64 on the host; a traced one is returned as ``(value, 0)`` (it already fits its dtype and
    stays differentiable). Use with :func:`alignment._src.numerics.scale_pow2`.
    """
    if not is_concrete(value):
        return value, 0
    mantissa, exponent = np.frexp(np.float64(np.asarray(value)))
    return float(mantissa), int(exponent)


def lengths_bounded(lengths, bounds, names: tuple[str, str] = ("t_valid", "s_valid")):
    """:func:`lengths_pair` with an inclusive range ``(low, high)`` per entry.

    For padded inputs whose valid length may be 0 (CTC labels: ``l_valid`` in ``[0, l]``).
    ``lengths`` must be a pair of integer scalars (array-valued entries raise ``ValueError``
    naming them, even traced). Returns ``(first, second, bad)``: Python ints when concrete
    (outside their range: ``ValueError``), otherwise int32 scalars clipped into range, with
    ``bad`` a traced flag for the NaN policy (``None`` when everything is concrete).
    """
    if not isinstance(lengths, tuple | list) or len(lengths) != 2:
        raise ValueError(
            f"`lengths` must be a pair ({names[0]}, {names[1]}) of integer scalars, got "
            f"{lengths!r}."
        )
    out, bad = [], None
    for name, value, (low, high) in zip(names, lengths, bounds, strict=True):
        if value is None:
            raise ValueError(f"`lengths` entry {name} must be an integer scalar, got None.")
        shape = _shape(value)
        if shape != ():
            raise ValueError(
                f"`lengths` entry {name} must be an integer scalar, got shape {shape} (for a "
                "batch, jax.vmap over the lengths)."
            )
        dtype = getattr(value, "dtype", None)
        if dtype is None:
            dtype = np.asarray(value).dtype
        if not jnp.issubdtype(dtype, jnp.integer) or isinstance(value, bool):
            raise ValueError(f"`lengths` entry {name} must be an integer scalar, got {value!r}.")
        if is_concrete(value):
            v = int(np.asarray(value))
            if not low <= v <= high:
                raise ValueError(f"`lengths` entry {name}={v} is outside [{low}, {high}].")
            out.append(v)
        else:
            v = jnp.asarray(value, jnp.int32)
            flag = (v < low) | (v > high)
            bad = flag if bad is None else bad | flag
            out.append(jnp.clip(v, low, high))
    return out[0], out[1], bad
