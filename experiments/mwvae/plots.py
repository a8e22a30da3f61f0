"""Figures (matplotlib's Agg canvas, no pyplot state): reconstructions, KL, training curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PANELS = (
    ("input", "test inputs"),
    ("both", "(a) image + label observed"),
    ("image", "(b) image only"),
    ("label", "(c) label only"),
)


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def tile(images: np.ndarray, shape: tuple[int, int], rows: int, columns: int) -> np.ndarray:
    """``[rows * columns, h * w]`` images as one ``[rows * (h + 1) - 1, columns * (w + 1) - 1]``."""
    h, w = shape
    grid = np.ones((rows * (h + 1) - 1, columns * (w + 1) - 1))
    for i, img in enumerate(images[: rows * columns]):
        r, c = divmod(i, columns)
        grid[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = img.reshape(h, w)
    return grid


def _panel_height(width: float, shape: tuple[int, int], rows: int, columns: int) -> float:
    """The height of a grid image ``width`` inches wide."""
    return width * (rows * (shape[0] + 1)) / (columns * (shape[1] + 1))


def _panel(ax, data: dict, key: str, title: str, shape, rows: int, columns: int) -> None:
    ax.imshow(tile(data[key], shape, rows, columns), cmap="gray_r", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    labels = data["labels"]
    if key == "input":
        shown, colours = labels, ["tab:blue"] * len(labels)
        ax.set_title(f"{title}\n(true label)", fontsize=9)
    else:
        shown = labels if key == "label" else data[key + "_label"]
        correct = shown == labels
        colours = [
            "tab:blue" if key == "label" else ("tab:green" if c else "tab:red") for c in correct
        ]
        note = "(given label)" if key == "label" else f"(decoded label: {correct.mean():.0%} right)"
        ax.set_title(f"{title}\n{note}", fontsize=9)
    h, w = shape
    for i, (value, colour) in enumerate(zip(shown, colours, strict=True)):
        r, c = divmod(i, columns)
        ax.text(
            c * (w + 1) + w - 1, r * (h + 1) + 0.5, str(int(value)), color=colour,
            fontsize=6, ha="right", va="top", fontweight="bold",
        )  # fmt: skip


def plot_reconstructions(
    path: Path, data: dict, title: str, shape: tuple[int, int], rows: int, columns: int
) -> None:
    """One model: inputs and its reconstructions (a), (b), (c) side by side."""
    fig = _figure(3.2 * len(PANELS), _panel_height(3.2, shape, rows, columns) + 0.9)
    axes = fig.subplots(1, len(PANELS))
    for ax, (key, panel_title) in zip(axes, PANELS, strict=True):
        _panel(ax, data, key, panel_title, shape, rows, columns)
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=120)


def plot_all_reconstructions(
    path: Path, per_model: dict[str, dict], shape: tuple[int, int], rows: int, columns: int
) -> None:
    """Every model: one row per model, columns inputs, (a), (b), (c) (the talk's figure)."""
    names = list(per_model)
    fig = _figure(3.0 * len(PANELS), (_panel_height(3.0, shape, rows, columns) + 0.55) * len(names))
    axes = np.atleast_2d(fig.subplots(len(names), len(PANELS)))
    for row, name in zip(axes, names, strict=True):
        for ax, (key, panel_title) in zip(row, PANELS, strict=True):
            _panel(ax, per_model[name], key, f"{name}: {panel_title}", shape, rows, columns)
    fig.savefig(path, dpi=100)


def plot_kl_per_dim(path: Path, results: list[dict], active_kl: float) -> None:
    """KL(q(z|x) || N(0, 1)) per latent coordinate, sorted, one line per model (log scale)."""
    fig = _figure(7.5, 4.2)
    ax = fig.add_subplot()
    for r in results:
        kl = np.sort(np.asarray(r["kl_image_per_dim"]))[::-1]
        ax.plot(np.arange(1, len(kl) + 1), np.maximum(kl, 1e-5), marker=".", label=r["model"])
    ax.axhline(active_kl, color="0.5", ls=":", lw=1, label=f"active threshold {active_kl}")
    ax.set_yscale("log")
    ax.set(
        xlabel="latent coordinate (sorted by KL)",
        ylabel="mean KL(q(z_i | image) || N(0, 1)) [nats]",
        title="Per-coordinate KL of the image posterior (low = collapsed)",
    )
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)


def plot_training_curves(path: Path, histories: dict[str, list[dict]]) -> None:
    """Training loss, image log-likelihood, KL and W2^2 against the step, one line per model."""
    keys = (
        ("loss", "training loss"),
        ("rec_image", "image log-lik. terms of the loss"),
        ("kl", "KL terms"),
        ("w2", "W2^2(q(z|x), q(z|y))"),
    )
    fig = _figure(11, 6.5)
    axes = fig.subplots(2, 2).ravel()
    for ax, (key, label) in zip(axes, keys, strict=True):
        for name, history in histories.items():
            if history:
                ax.plot([h["step"] for h in history], [h[key] for h in history], label=name)
        ax.set(xlabel="step", ylabel=label)
        if key in ("loss", "w2"):
            ax.set_yscale("symlog" if key == "loss" else "log")
    axes[0].legend(fontsize=8)
    fig.suptitle("Training (means over each logging interval)")
    fig.savefig(path, dpi=110)
