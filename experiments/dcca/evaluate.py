"""Test metrics, computed as Wang et al. (2015) do, with nothing selected on the test split.

* Total correlation: linear CCA (:func:`alignment.cca`, ``k`` pairs) is fitted on the *training*
  projections of the two views, both test projections are mapped by it, and the correlations of
  the ``k`` pairs of test canonical variates are summed (at most ``k``).
* Classification error: a linear SVM (scikit-learn's ``LinearSVC``) on the view-1 canonical
  variates of the training split, its ``C`` chosen on the validation split, scored on test.

The pixel baseline (linear CCA on the raw 784-pixel views) goes through the same two metrics,
its ridge chosen on the validation split by the same total correlation.
"""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np

import alignment as al


def paired_correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The Pearson correlation of each column of ``a`` with the same column of ``b``, ``[k]``."""
    a = np.asarray(a, np.float64) - np.mean(a, axis=0)
    b = np.asarray(b, np.float64) - np.mean(b, axis=0)
    denom = np.sqrt(np.sum(a * a, axis=0) * np.sum(b * b, axis=0))
    return np.sum(a * b, axis=0) / np.where(denom > 0, denom, 1.0)


def fit_cca(z1: np.ndarray, z2: np.ndarray, *, k: int, reg: float = 0.0) -> al.CCAOutput:
    return al.cca(jnp.asarray(z1), jnp.asarray(z2), k=k, reg=reg)


def transform(fit: al.CCAOutput, z1: np.ndarray, z2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = al.cca_transform(fit, jnp.asarray(z1), jnp.asarray(z2))
    return np.asarray(out.zx), np.asarray(out.zy)


def svm_error(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    cs: tuple[float, ...],
) -> tuple[float, float]:
    """Test error of the linear SVM whose ``C`` (from ``cs``) has the lowest validation error.

    Features are standardised with the training split's statistics. Returns ``(error, C)``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    mean, std = train[0].mean(axis=0), train[0].std(axis=0) + 1e-8
    scale = lambda x: (x - mean) / std
    best = None
    for c in cs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = LinearSVC(C=c, dual="auto", max_iter=5000).fit(scale(train[0]), train[1])
        val_error = float(np.mean(clf.predict(scale(val[0])) != val[1]))
        if best is None or val_error < best[0]:
            best = (val_error, c, clf)
    _, c, clf = best
    return float(np.mean(clf.predict(scale(test[0])) != test[1])), c


def evaluate_projections(
    proj: dict[str, tuple[np.ndarray, np.ndarray]],
    labels: dict[str, np.ndarray],
    *,
    k: int,
    svm_cs: tuple[float, ...],
    reg: float = 0.0,
) -> dict:
    """The metrics of one model from its projections ``proj[split] = (view 1, view 2)``.

    Returns ``{"test_corr", "train_corr", "val_corr", "test_error", "svm_c",
    "test_correlations", "test_variates"}``; ``test_variates`` is the ``[n_test, k]`` view-1
    canonical variates (for the embedding figure).
    """
    fit = fit_cca(*proj["train"], k=k, reg=reg)
    variates = {s: transform(fit, *proj[s]) for s in proj}
    corr = {s: paired_correlations(*variates[s]) for s in variates}
    error, c = svm_error(
        (variates["train"][0], labels["train"]),
        (variates["val"][0], labels["val"]),
        (variates["test"][0], labels["test"]),
        svm_cs,
    )
    return {
        "test_corr": float(np.sum(corr["test"])),
        "val_corr": float(np.sum(corr["val"])),
        "train_corr": float(np.sum(corr["train"])),
        "test_error": error,
        "svm_c": c,
        "test_correlations": corr["test"].tolist(),
        "test_variates": variates["test"][0],
    }


def linear_cca_baseline(
    views: dict[str, tuple[np.ndarray, np.ndarray]],
    labels: dict[str, np.ndarray],
    *,
    k: int,
    regs: tuple[float, ...],
    svm_cs: tuple[float, ...],
) -> dict:
    """Linear CCA on the raw pixels, the ridge chosen by the validation total correlation."""
    best = None
    for reg in regs:
        fit = fit_cca(*views["train"], k=k, reg=reg)
        val_corr = float(np.sum(paired_correlations(*transform(fit, *views["val"]))))
        if best is None or val_corr > best[0]:
            best = (val_corr, reg, fit)
    _, reg, fit = best
    proj = {s: transform(fit, *views[s]) for s in views}
    # the CCA variates are their own projections: refitting CCA on them (k pairs) is the identity
    # up to the ridge, so evaluate them directly with reg = 0
    out = evaluate_projections(proj, labels, k=k, svm_cs=svm_cs)
    out["cca_reg"] = reg
    return out
