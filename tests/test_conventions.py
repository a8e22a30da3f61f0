"""The written conventions (docs/conventions.md) hold across modules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from jax.experimental import checkify

import alignment as al

COST = jnp.array([[0.0, 1.0, 2.0], [1.0, 0.0, 1.0]])


def test_checkify_stops_on_a_traced_bad_value():
    """The documented way to stop on traced bad values: check the output inside checkify."""

    def value(gamma):
        out = al.soft_dtw(COST, gamma=gamma)
        checkify.check(~jnp.isnan(out), "soft_dtw returned NaN (bad traced gamma)")
        return out

    checked = jax.jit(checkify.checkify(value))
    err, out = checked(0.5)
    assert err.get() is None and jnp.isfinite(out)
    err, out = checked(-1.0)
    assert jnp.isnan(out)
    with pytest.raises(checkify.JaxRuntimeError, match="bad traced gamma"):
        err.throw()


@pytest.mark.filterwarnings("ignore::alignment.ConvergenceWarning")
@pytest.mark.parametrize(
    "call",
    [
        lambda: al.sinkhorn(COST, epsilon=0.1, tol=1e-3, max_iters=10, inner_iters=5),
        lambda: al.ctw(COST.T[:, :2], COST.T[:, :2], k=1, max_iters=5),
        lambda: al.soft_ctw(COST.T[:, :2], COST.T[:, :2], k=1, max_iters=5, tol=1e-3),
    ],
    ids=["sinkhorn", "ctw", "soft_ctw"],
)
def test_iterative_solvers_share_iteration_names(call):
    out = call()
    assert hasattr(out, "n_iters") and hasattr(out, "converged")


def test_outputs_are_named_tuples_named_output_without_none_fields():
    for name in al.__all__:
        obj = getattr(al, name)
        if isinstance(obj, type) and issubclass(obj, tuple):
            assert name.endswith("Output"), name
            assert hasattr(obj, "_fields"), name
