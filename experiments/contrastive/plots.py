"""The two figures: the learned scale, temperature and bias, and the training curves.

Both read the records of ``metrics.jsonl`` (:func:`experiments.framework.read_metrics`, as
returned in ``TrainResult.history``): ``histories[loss]`` is one list of records per seed. The
scale, temperature and bias of a record are their means over the steps since the previous
record (the framework averages every logged value over its interval).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _series(hist: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["step"], r[key]) for r in hist if key in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def _plot(ax, histories: dict[str, list[list[dict]]], key: str) -> bool:
    """One line per (loss, seed) of ``key`` against the step; colour by loss. True if any."""
    drawn = False
    for i, (name, runs) in enumerate(histories.items()):
        for j, hist in enumerate(runs):
            steps, values = _series(hist, key)
            if steps:
                ax.plot(steps, values, color=f"C{i}", alpha=0.8, label=name if j == 0 else None)
                drawn = True
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8)
    return drawn


def scale_curves(histories: dict[str, list[list[dict]]], path: Path) -> Path:
    """Learned scale ``exp(logit_scale)``, temperature ``1 / scale`` and SigLIP's bias against the
    step, one colour per loss, one line per seed (VSE++ has none of them)."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    titles = {
        "scale": "scale exp(logit_scale) (CLIP: clamped at 100)",
        "temperature": "temperature = 1 / scale",
        "bias": "SigLIP logit bias",
    }
    for ax, (key, title) in zip(axes, titles.items(), strict=True):
        _plot(ax, histories, key)
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def training_curves(histories: dict[str, list[list[dict]]], path: Path) -> Path:
    """The training loss of each loss (its own panel: the scales differ) and the validation
    R@1 (mean of both directions) of all of them, against the step."""
    n = len(histories)
    fig, axes = plt.subplots(1, n + 1, figsize=(3.2 * (n + 1), 3.4), squeeze=False)
    for i, (name, runs) in enumerate(histories.items()):
        ax = axes[0, i]
        for hist in runs:
            ax.plot(*_series(hist, "loss"), color=f"C{i}", alpha=0.8)
        ax.set_title(f"{name}: training loss", fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    ax = axes[0, n]
    _plot(ax, histories, "eval/r1")
    ax.set_title("validation R@1 (mean of A→B, B→A)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
