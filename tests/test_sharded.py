"""Sharded evaluation (sharded_map, sharded_pairwise) against the single-device results.

The multi-device checks run in one fresh interpreter whose JAX sees 8 simulated CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=8`` is read when JAX starts); the references
are ``jax.vmap`` and :func:`alignment.pairwise` on one device, and a float64 NumPy loop.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

import alignment as al

REPO = Path(__file__).resolve().parents[1]

EIGHT_DEVICES = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh
    import alignment as al

    assert jax.device_count() == 8
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(13, 6, 2)), jnp.float32)  # 13: not a multiple of 8
    Y = jnp.asarray(rng.normal(size=(7, 5, 2)), jnp.float32)
    soft = lambda x, y: al.soft_dtw_points(x, y, gamma=0.5)
    item = lambda xy: soft(*xy)

    # sharded_map: values (vmap over all items and lax.map in chunks), gradients, jit.
    ref = jax.vmap(item)((X, X[::-1]))
    np.testing.assert_array_equal(al.sharded_map(item, (X, X[::-1])), ref)
    np.testing.assert_allclose(al.sharded_map(item, (X, X[::-1]), batch_size=1), ref, rtol=1e-6)
    g = jax.grad(lambda X: al.sharded_map(item, (X, X[::-1])).sum())(X)
    g_ref = jax.grad(lambda X: jax.vmap(item)((X, X[::-1])).sum())(X)
    np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-6)
    jitted = jax.jit(lambda X: al.sharded_map(item, (X, X[::-1])))(X)
    np.testing.assert_allclose(jitted, ref, rtol=1e-6)
    # Fewer items than devices, and a mesh over 3 of the 8 devices.
    few = al.sharded_map(item, (X[:2], X[:2]))
    np.testing.assert_allclose(few, jax.vmap(item)((X[:2], X[:2])), rtol=1e-6)
    mesh3 = Mesh(np.asarray(jax.devices()[:3]), ("d",))
    np.testing.assert_allclose(al.sharded_map(item, (X, X[::-1]), mesh=mesh3), ref, rtol=1e-6)

    # sharded_pairwise: symmetric and rectangular, pytree outputs, gradients, jit (a cheap fn
    # for most checks: compiling is the cost here).
    sq = lambda x, y: jnp.sum((x - y) ** 2)
    for block in (1, 4, 13):
        D = al.sharded_pairwise(sq, X, block_size=block)
        np.testing.assert_allclose(D, al.pairwise(sq, X, block_size=block), rtol=1e-6)
        assert bool(jnp.all(D == D.T))
    D = al.sharded_pairwise(soft, X, block_size=4)
    np.testing.assert_allclose(D, al.pairwise(soft, X, block_size=4), rtol=1e-6)
    pair = lambda x, y: {"sq": sq(x[:5], y), "first": jnp.sum((x[0] - y[0]) ** 2)}
    R = al.sharded_pairwise(pair, X, Y, block_size=3)
    R_ref = al.pairwise(pair, X, Y, block_size=3)
    assert R["sq"].shape == (13, 7)
    for key in R:
        np.testing.assert_allclose(R[key], R_ref[key], rtol=1e-6)
    g = jax.grad(lambda X: al.sharded_pairwise(soft, X, Y, block_size=4).sum())(X)
    g_ref = jax.grad(lambda X: al.pairwise(soft, X, Y, block_size=4).sum())(X)
    np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-5)
    D = jax.jit(lambda X: al.sharded_pairwise(sq, X, mesh=mesh3, block_size=5))(X)
    np.testing.assert_allclose(D, al.pairwise(sq, X, block_size=5), rtol=1e-6)
    print("EIGHT DEVICES OK")
    """
)


def test_eight_simulated_devices_match_one_device():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", EIGHT_DEVICES],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "EIGHT DEVICES OK" in proc.stdout


def _numpy_sq(xs, ys):
    return ((xs[:, None, :] - ys[None, :, :]) ** 2).sum(-1)


def test_one_device_matches_numpy():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(9, 3)), rng.normal(size=(4, 3))
    sq = lambda a, b: jnp.sum((a - b) ** 2)
    D = al.sharded_pairwise(sq, jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    np.testing.assert_allclose(D, _numpy_sq(x, y), rtol=1e-5, atol=1e-5)
    norms = al.sharded_map(lambda a: jnp.sum(a**2), jnp.asarray(x, jnp.float32), batch_size=2)
    np.testing.assert_allclose(norms, (x**2).sum(1), rtol=1e-5)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: al.sharded_map(None, jnp.ones(3)), "`fn`"),
        (lambda: al.sharded_map(jnp.sum, None), "`xs`"),
        (lambda: al.sharded_map(jnp.sum, jnp.ones((0, 2))), "`xs`.*at least one item"),
        (lambda: al.sharded_map(jnp.sum, (jnp.ones((3, 2)), jnp.ones(4))), r"\(3, 2\), \(4,\)"),
        (lambda: al.sharded_map(jnp.sum, jnp.ones((3, 2)), batch_size=0), "`batch_size`"),
        (lambda: al.sharded_map(jnp.sum, np.array([None, 1], dtype=object)), "`xs`.*numeric"),
        (lambda: al.sharded_map(jnp.sum, np.array(["a", "b"])), "`xs`.*numeric"),
        (lambda: al.pairwise(jnp.dot, np.array([None, 1], dtype=object)), "`xs`.*numeric"),
        (lambda: al.sharded_map(jnp.sum, jnp.ones((3, 2)), mesh="cpu"), "`mesh`"),
        (lambda: al.sharded_pairwise(jnp.dot, jnp.ones(3), block_size=1.5), "`block_size`"),
        (lambda: al.sharded_pairwise(jnp.dot, jnp.ones((2, 2)), jnp.ones(())), "`ys`"),
        (
            lambda: al.sharded_pairwise(
                jnp.dot, jnp.ones((2, 2)), jnp.ones((2, 2)), symmetric=True
            ),
            "`symmetric=True`",
        ),
        (lambda: al.sharded_pairwise(jnp.dot, jnp.ones((2, 2)), mesh=[0]), "`mesh`"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_shapes_raise_under_jit_too():
    with pytest.raises(ValueError, match="`xs`"):
        jax.jit(lambda a, b: al.sharded_map(jnp.sum, (a, b)))(jnp.ones((3, 2)), jnp.ones(4))
    mesh = Mesh(np.asarray(jax.devices()), ("d",))
    with pytest.raises(ValueError, match="`ys`"):
        jax.jit(lambda a, b: al.sharded_pairwise(jnp.dot, a, b, mesh=mesh))(
            jnp.ones((2, 2)), jnp.ones(())
        )
