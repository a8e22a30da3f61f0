"""Shared fixtures: a seeded NumPy generator and float64 mode for gradient checks."""

from __future__ import annotations

import contextlib

import jax
import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@contextlib.contextmanager
def x64():
    """Enables float64 in JAX inside the block, restoring the previous setting afterwards."""
    previous = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


@pytest.fixture
def enable_x64():
    """Runs the test with float64 enabled in JAX."""
    with x64():
        yield
