"""Shared fixtures: a seeded NumPy generator and float64 mode for gradient checks."""

from __future__ import annotations

import contextlib
import gc
import os

# The tests compile at XLA's backend optimisation level 0 (LLVM's code generation; the HLO
# passes, so fusion and the order of floating-point operations, are unchanged): about 25 % less
# CPU time, as the tests compile far more than they compute. ALIGNMENT_TEST_FAST_COMPILE=0 tests
# the optimised build instead. The segfaults first blamed on level 0 came from a worker running
# out of memory maps (see _release_compiled_code below) and happened at level 2 too. This must
# run before JAX creates its CPU client; benchmark workers started by the tests inherit it.
# LLVM's expensive passes are skipped too (what jax_disable_most_optimizations sets; the HLO is
# the same): about a tenth less CPU time again on the docs' examples, which are mostly compiling.
if os.environ.get("ALIGNMENT_TEST_FAST_COMPILE", "1") != "0":
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        flags += " --xla_backend_optimization_level=0"
    if "xla_llvm_disable_expensive_passes" not in flags:
        flags += " --xla_llvm_disable_expensive_passes=true"
    os.environ["XLA_FLAGS"] = flags.strip()

# The benchmark smoke tests run each method inside the test process instead of a fresh one
# (benchmarks._harness.in_process): they check that every method runs and agrees, not speed,
# and a fresh process costs seconds of imports each. tests/test_benchmarks_scaling_smoke.py
# keeps the fresh-process path tested.
os.environ.setdefault("ALIGNMENT_BENCH_INPROCESS", "1")

import jax
import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Drops JAX's compiled executables after each test module.

    Every compiled XLA program keeps its code in memory maps of its own; a test worker that
    compiles the whole suite (thousands of programs) reaches the kernel's limit of 65,530 maps
    per process (``vm.max_map_count``) and XLA's next compile aborts or segfaults. Clearing the
    caches between modules releases them (the next module recompiles what it uses).
    """
    yield
    jax.clear_caches()
    gc.collect()


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


def count_compiles(fn) -> int:
    """Number of XLA backend compilations while running ``fn()``."""
    from jax._src import dispatch

    count = [0]

    def listener(event, duration, **kwargs):
        count[0] += event == dispatch.BACKEND_COMPILE_EVENT

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        jax.block_until_ready(fn())
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    return count[0]


@pytest.fixture
def enable_x64():
    """Runs the test with float64 enabled in JAX."""
    with x64():
        yield


def pytest_sessionfinish(session, exitstatus):
    """Writes the bad-input sweep tally (tests/sweep.py) where ALIGNMENT_SWEEP_REPORT says."""
    import json
    import os

    path = os.environ.get("ALIGNMENT_SWEEP_REPORT")
    if not path:
        return
    from tests.sweep import COUNTS

    table: dict[str, dict[str, int]] = {}
    for (function, outcome), count in sorted(COUNTS.items()):
        table.setdefault(function, {})[outcome] = count
    with open(path, "w") as fh:
        json.dump(table, fh, indent=1, sort_keys=True)


def pytest_collection_modifyitems(config, items):
    """The bad-input sweeps (tests/test_sweep_*.py) are marked slow: `pytest -m slow` runs them."""
    for item in items:
        if item.path.name.startswith("test_sweep_"):
            item.add_marker(pytest.mark.slow)
