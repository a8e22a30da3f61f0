"""The two figures: 2-D embeddings of the view-1 test projections, and the training curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def embed_2d(z: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """``[n, 2]``: t-SNE of ``z`` (``"tsne"``) or its first two columns (``"cca"``: the leading
    canonical variates, as ``z`` holds them in decreasing order of training correlation)."""
    if method == "cca":
        return np.asarray(z)[:, :2]
    from sklearn.manifold import TSNE

    perplexity = min(30.0, max(2.0, (len(z) - 1) / 3.0))
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(z)


def embedding_figure(
    panels: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, *, method: str, seed: int = 0
) -> Path:
    """One panel per method: the 2-D embedding of ``panels[m] = (variates, labels)``."""
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.6), squeeze=False)
    for ax, (name, (z, y)) in zip(axes[0], panels.items(), strict=True):
        e = embed_2d(z, method, seed)
        sc = ax.scatter(e[:, 0], e[:, 1], c=y, cmap="tab10", vmin=-0.5, vmax=9.5, s=4)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(sc, ax=axes[0].tolist(), ticks=range(10), label="class", shrink=0.8)
    what = "t-SNE" if method == "tsne" else "first two canonical variates"
    fig.suptitle(f"View-1 test projections ({what}), coloured by class")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def training_curves(histories: dict[str, list[list[dict]]], path: Path) -> Path:
    """Training-batch objective (minus the loss's correlation term) and validation sum of
    correlations against the step, one colour per method, one line per seed."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, (name, runs) in enumerate(histories.items()):
        color = f"C{i}"
        for j, hist in enumerate(runs):
            label = name if j == 0 else None
            tr = [(r["step"], r["corr"]) for r in hist if "corr" in r]
            va = [(r["step"], r["eval/val_corr"]) for r in hist if "eval/val_corr" in r]
            if tr:
                left.plot(*zip(*tr, strict=True), color=color, alpha=0.8, label=label)
            if va:
                right.plot(*zip(*va, strict=True), color=color, alpha=0.8, label=label)
    left.set_title("training batches: correlation objective")
    left.set_ylabel("sum of top-k (squared for dcca_squared)")
    right.set_title("validation: sum of top-k correlations (CCA fitted on it)")
    for ax in (left, right):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if histories:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
