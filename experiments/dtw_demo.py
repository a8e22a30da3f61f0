"""Exact DTW and soft-DTW on real time series: the Trace data set that ships inside tslearn.

Run (about 20 s of CPU time; results in ``runs/dtw_demo/``):

    python -m experiments.dtw_demo [--smoke | --full] [--run-dir DIR] [--gamma 0.1]
        [--window N] [--pairs 3] [--length L] [--nn-per-class 4] [--nn-queries 20] [--seed 0]

Every field of :class:`Config` is a flag (``--help`` lists them); ``--smoke`` and ``--full``
pick the other presets of :func:`get_config`.

What it does (all alignment maths comes from :mod:`alignment`; this file only loads, plots and
reports):

1. The lecture's worked example: 1,1,3,3,2,4 against 1,3,2,2,4,4 with the absolute-difference
   cost aligns at DTW cost 0; the path is printed as ``(i, j)`` index pairs.
2. ``pairs`` pairs of standardised Trace series (alternately two of the same class and two of
   different classes), each aligned with the squared Euclidean cost: exact DTW value and path
   (:func:`alignment.dtw_alignment`), soft-DTW value and expected alignment matrix
   (:func:`alignment.soft_dtw_alignment`) at ``gamma``, each with and without a Sakoe-Chiba band of
   half-width ``window``, and the soft-DTW divergence (:func:`alignment.soft_dtw_divergence`).
3. A nearest-neighbour sanity check: DTW between test queries and a few training references per
   class, computed with ``jax.vmap`` over the query x reference grid; same-class pairs should be
   closer than different-class pairs, and 1-NN under DTW should beat lock-step Euclidean.

Outputs in ``run_dir``: ``results.md`` (the report, also printed), ``results.json`` (every
number of it, and the config) and PNG figures: per pair the two series with the DTW matching
drawn between them (``pair{k}_matching.png``), the cost matrix with the hard paths and the band
(``pair{k}_cost_path.png``) and the soft alignment matrices (``pair{k}_soft_alignment.png``);
plus ``lecture_cost_path.png``.

The Trace series are z-normalised (per series, over time). Values use the squared Euclidean cost,
not halved, so ``dtw`` is DTW *squared* (tslearn's ``dtw`` is its square root).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

import alignment as al
from experiments.framework import parse_config

LECTURE_A = (1.0, 1.0, 3.0, 3.0, 2.0, 4.0)
LECTURE_B = (1.0, 3.0, 2.0, 2.0, 4.0, 4.0)
MAX_MATCH_LINES = 90  # matching lines drawn per figure (every k-th path cell beyond that)
TRACE_LENGTH = 275  # samples per series as shipped


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of one run of ``python -m experiments.dtw_demo``; every field is a flag."""

    run_dir: str = "runs/dtw_demo"  # where results.md, results.json and the figures go
    gamma: float = 0.1  # soft-DTW smoothing
    window: int | None = None  # Sakoe-Chiba half-width in samples; None: 10% of the length
    pairs: int = 3  # pairs of series to align and plot (even k: same class, odd k: different)
    length: int | None = None  # resample every series to this length; None: as shipped (275)
    nn_per_class: int = 4  # training references per class in the nearest-neighbour check
    nn_queries: int = 20  # test queries in the nearest-neighbour check
    seed: int = 0  # picks the pairs, references and queries

    @property
    def resolved_window(self) -> int:
        return self.window if self.window is not None else max(1, round(0.1 * self.series_length))

    @property
    def series_length(self) -> int:
        return self.length if self.length is not None else TRACE_LENGTH

    def validate(self) -> Config:
        """Raises ``ValueError`` naming the first bad setting; returns ``self``."""
        if not math.isfinite(self.gamma) or self.gamma <= 0:
            raise ValueError(f"`gamma` must be finite and > 0, got {self.gamma!r}.")
        for name, low in (("pairs", 0), ("nn_per_class", 1), ("nn_queries", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}.")
        if self.length is not None and self.length < 2:
            raise ValueError(f"`length` must be >= 2 or None, got {self.length!r}.")
        if self.window is not None and self.window < 0:
            raise ValueError(f"`window` must be >= 0 or None, got {self.window!r}.")
        return self


def get_config(preset: str = "default") -> Config:
    """The settings of a preset: ``"smoke"`` (seconds, for tests), ``"default"``, ``"full"``."""
    if preset == "default":
        return Config()
    if preset == "smoke":
        return Config(
            run_dir="runs/dtw_demo_smoke", pairs=2, length=60, nn_per_class=2, nn_queries=6
        )
    if preset == "full":
        # every test series a query; 21 references per class (the smallest class has 21)
        return Config(run_dir="runs/dtw_demo_full", pairs=6, nn_per_class=21, nn_queries=100)
    raise ValueError(f"unknown preset {preset!r}; expected 'smoke', 'default' or 'full'.")


# ------------------------------------------------------------------------------------------
# Data.
# ------------------------------------------------------------------------------------------


def load_trace(length: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Trace from tslearn's bundled copy (no network): ``x: [n, t, 1]`` z-normalised, ``y: [n]``."""
    from tslearn.datasets import CachedDatasets  # optional dependency: the `experiments` extra

    x_train, y_train, x_test, y_test = CachedDatasets().load_dataset("Trace")
    return _prepare(x_train, length), np.asarray(y_train), _prepare(x_test, length), y_test


def _prepare(x: np.ndarray, length: int | None) -> np.ndarray:
    x = np.asarray(x, np.float64)[..., 0]  # [n, t]
    if length is not None and length != x.shape[1]:
        old = np.linspace(0.0, 1.0, x.shape[1])
        new = np.linspace(0.0, 1.0, length)
        x = np.stack([np.interp(new, old, row) for row in x])
    x = (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True)
    return x[..., None].astype(np.float32)


def pick_pairs(y: np.ndarray, n_pairs: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Even ``k``: two series of one class; odd ``k``: series of two different classes."""
    classes = np.unique(y)
    pairs = []
    for k in range(n_pairs):
        c1 = classes[(k // 2) % len(classes)]
        c2 = c1 if k % 2 == 0 else classes[(k // 2 + 1) % len(classes)]
        i = int(rng.choice(np.flatnonzero(y == c1)))
        j = int(rng.choice(np.flatnonzero((y == c2) & (np.arange(len(y)) != i))))
        pairs.append((i, j))
    return pairs


# ------------------------------------------------------------------------------------------
# Alignment (all maths from the library).
# ------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("window",))
def align_pair(x: jax.Array, y: jax.Array, gamma: jax.Array, *, window: int) -> dict:
    """Everything the demo reports for one pair ``x: [t, 1]``, ``y: [s, 1]``."""
    cost = al.squared_euclidean(x, y)
    out = {"cost": cost}
    for suffix, w in (("", None), ("_window", window)):
        out["dtw" + suffix], out["path" + suffix] = al.dtw_alignment(cost, window=w)
        out["soft_dtw" + suffix] = al.soft_dtw(cost, gamma=gamma, window=w)
        out["soft_alignment" + suffix] = al.soft_dtw_alignment(cost, gamma=gamma, window=w)
        out["divergence" + suffix] = al.soft_dtw_divergence(x, y, gamma=gamma, window=w)
    return out


@functools.partial(jax.jit, static_argnames=("window",))
def distance_grid(queries: jax.Array, refs: jax.Array, *, window: int | None) -> jax.Array:
    """DTW between every query ``[q, t, 1]`` and reference ``[r, t, 1]``: ``[q, r]`` by vmap."""
    one = lambda x, y: al.dtw(al.squared_euclidean(x, y), window=window)
    return jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None))(queries, refs)


def nearest_neighbour_check(
    x_train, y_train, x_test, y_test, config: Config, rng: np.random.Generator
) -> dict:
    """1-NN of test queries among a few references per class, under DTW, banded DTW and L2."""
    ref_idx = np.concatenate(
        [
            rng.choice(np.flatnonzero(y_train == c), config.nn_per_class, replace=False)
            for c in np.unique(y_train)
        ]
    )
    query_idx = rng.choice(len(y_test), config.nn_queries, replace=False)
    refs, ref_y = jnp.asarray(x_train[ref_idx]), y_train[ref_idx]
    queries, query_y = jnp.asarray(x_test[query_idx]), y_test[query_idx]
    same = query_y[:, None] == ref_y[None, :]
    grids = {
        "dtw": distance_grid(queries, refs, window=None),
        "dtw_window": distance_grid(queries, refs, window=config.resolved_window),
        "euclidean": jnp.sum((queries[:, None] - refs[None, :]) ** 2, axis=(2, 3)),
    }
    out = {"n_queries": len(query_idx), "n_references": len(ref_idx)}
    for name, grid in grids.items():
        grid = np.asarray(grid)
        out[f"mean_{name}_same_class"] = float(grid[same].mean())
        out[f"mean_{name}_different_class"] = float(grid[~same].mean())
        out[f"accuracy_1nn_{name}"] = float(np.mean(ref_y[grid.argmin(axis=1)] == query_y))
    return out


# ------------------------------------------------------------------------------------------
# Figures (matplotlib's Agg canvas, no pyplot state).
# ------------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _band_edges(t: int, s: int, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The band's edges ``j = (i (s-1) -/+ w max(t-1, s-1)) / (t-1)`` (see alignment.dtw)."""
    i = np.arange(t, dtype=float)
    half = window * max(t - 1, s - 1)
    denom = max(t - 1, 1)
    return i, (i * (s - 1) - half) / denom, (i * (s - 1) + half) / denom


def plot_matching(path_png: Path, x, y, path: np.ndarray, title: str) -> None:
    x, y = np.asarray(x)[:, 0], np.asarray(y)[:, 0]
    offset = 1.2 * (np.ptp(x) + np.ptp(y)) / 2
    stride = max(1, math.ceil(len(path) / MAX_MATCH_LINES))
    shown = path[::stride]
    segments = [[(i, x[i] + offset), (j, y[j])] for i, j in shown]
    fig = _figure(10, 4.5)
    ax = fig.add_subplot()
    ax.add_collection(LineCollection(segments, colors="0.6", linewidths=0.6, zorder=1))
    ax.plot(x + offset, color="tab:blue", lw=1.5, label="series x (shifted up)", zorder=2)
    ax.plot(y, color="tab:orange", lw=1.5, label="series y", zorder=2)
    ax.set(xlabel="time index", ylabel="z-normalised value", yticks=[])
    ax.set_title(f"{title}\nDTW matching (every {stride}-th of {len(path)} path cells drawn)")
    ax.legend(loc="upper right", fontsize=8)
    fig.savefig(path_png, dpi=110)


def plot_cost_path(path_png: Path, cost, path, path_window, window: int | None, title: str):
    cost = np.asarray(cost)
    t, s = cost.shape
    fig = _figure(6.2, 5.6)
    ax = fig.add_subplot()
    im = ax.imshow(cost, origin="lower", cmap="viridis", aspect="auto", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="cost[i, j]")
    ax.plot(path[:, 1], path[:, 0], color="white", lw=2.0, label="DTW path")
    if path_window is not None:
        ax.plot(
            path_window[:, 1],
            path_window[:, 0],
            "--",
            color="tab:red",
            lw=1.4,
            label=f"DTW path, window={window}",
        )
        i, lo, hi = _band_edges(t, s, window)
        for edge, label in ((lo, "band edges"), (hi, None)):
            ax.plot(edge, i, ":", color="tab:red", lw=1.0, label=label)
        ax.set_xlim(-0.5, s - 0.5)
        ax.set_ylim(-0.5, t - 0.5)
    ax.set(xlabel="j (series y)", ylabel="i (series x)", title=title)
    ax.legend(loc="lower right", fontsize=8)
    fig.savefig(path_png, dpi=110)


def plot_soft_alignment(
    path_png: Path, free, banded, gamma: float, window: int, title: str
) -> None:
    """Side by side: the expected alignment without a band (``free``) and with it (``banded``)."""
    t, s = np.shape(free)
    fig = _figure(11, 5)
    axes = fig.subplots(1, 2)
    for ax, a, label in zip(axes, (free, banded), ("no window", f"window={window}"), strict=True):
        if a is banded:
            i, lo, hi = _band_edges(t, s, window)
            for edge in (lo, hi):
                ax.plot(edge, i, ":", color="tab:cyan", lw=1.0)
            ax.set_xlim(-0.5, s - 0.5)
            ax.set_ylim(-0.5, t - 0.5)
        im = ax.imshow(
            np.asarray(a),
            origin="lower",
            cmap="magma",
            vmin=0,
            vmax=1,
            aspect="auto",
            interpolation="nearest",
        )
        ax.set(xlabel="j (series y)", ylabel="i (series x)", title=label)
    fig.colorbar(im, ax=axes, label="P(path passes through (i, j))")
    fig.suptitle(f"{title}: soft-DTW expected alignment, gamma={gamma}")
    fig.savefig(path_png, dpi=110)


def plot_lecture(path_png: Path, a, b, cost, path) -> None:
    cost = np.asarray(cost)
    fig = _figure(4.6, 4.2)
    ax = fig.add_subplot()
    ax.imshow(cost, origin="lower", cmap="Blues", interpolation="nearest")
    for i in range(cost.shape[0]):
        for j in range(cost.shape[1]):
            ax.text(j, i, f"{cost[i, j]:.0f}", ha="center", va="center", fontsize=9, zorder=3)
    ax.plot(path[:, 1], path[:, 0], "-", color="tab:red", lw=1.5, zorder=1)
    ax.plot(path[:, 1], path[:, 0], "o", color="tab:red", mfc="white", ms=16, mew=2, zorder=2)
    ax.set_xticks(range(len(b)), [f"{v:.0f}" for v in b])
    ax.set_yticks(range(len(a)), [f"{v:.0f}" for v in a])
    ax.set(xlabel="b = 1,3,2,2,4,4  (j)", ylabel="a = 1,1,3,3,2,4  (i)")
    ax.set_title("Lecture example: |a_i - b_j| and the DTW path")
    fig.savefig(path_png, dpi=110)


# ------------------------------------------------------------------------------------------
# The run.
# ------------------------------------------------------------------------------------------


def lecture_example(run_dir: Path) -> dict:
    a, b = jnp.asarray(LECTURE_A), jnp.asarray(LECTURE_B)
    cost = al.absolute_difference(a, b)
    value, alignment_matrix = al.dtw_alignment(cost)
    path = al.alignment_to_path(alignment_matrix)
    plot_lecture(run_dir / "lecture_cost_path.png", LECTURE_A, LECTURE_B, cost, path)
    return {"dtw": float(value), "path": [tuple(int(v) for v in p) for p in path]}


def run(config: Config) -> dict:
    """Runs the demo; writes the figures, ``results.json`` and ``results.md`` to ``run_dir``."""
    config.validate()
    start = time.perf_counter()
    x_train, y_train, x_test, y_test = load_trace(config.length)
    for name, asked, have in (
        ("nn_queries", config.nn_queries, len(y_test)),
        ("nn_per_class", config.nn_per_class, int(np.unique(y_train, return_counts=True)[1].min())),
    ):
        if asked > have:
            raise ValueError(f"`{name}` {asked} exceeds the {have} series available.")
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    window = config.resolved_window
    record: dict = {"config": dataclasses.asdict(config) | {"resolved_window": window}}

    record["lecture"] = lecture_example(run_dir)
    figures = ["lecture_cost_path.png"]

    gamma = jnp.asarray(config.gamma, jnp.float32)
    record["pairs"] = []
    for k, (i, j) in enumerate(pick_pairs(y_train, config.pairs, rng)):
        x, y = x_train[i], x_train[j]
        res = jax.device_get(align_pair(jnp.asarray(x), jnp.asarray(y), gamma, window=window))
        path = al.alignment_to_path(res["path"])
        path_w = al.alignment_to_path(res["path_window"])
        same = bool(y_train[i] == y_train[j])
        kind = "same class" if same else "different classes"
        title = f"pair {k}: train[{i}] (class {y_train[i]}) vs train[{j}] (class {y_train[j]})"
        pair = {
            "index_x": i,
            "index_y": j,
            "class_x": int(y_train[i]),
            "class_y": int(y_train[j]),
            "same_class": same,
            "kind": kind,
            "euclidean": float(np.sum((x - y) ** 2)),
        }
        for suffix in ("", "_window"):
            pair["dtw" + suffix] = float(res["dtw" + suffix])
            pair["dtw_path_length" + suffix] = len(path if suffix == "" else path_w)
            pair["soft_dtw" + suffix] = float(res["soft_dtw" + suffix])
            # total mass of the expected alignment = expected number of cells on the path
            pair["soft_expected_path_length" + suffix] = float(res["soft_alignment" + suffix].sum())
            pair["soft_dtw_divergence" + suffix] = float(res["divergence" + suffix])
        record["pairs"].append(pair)
        names = [f"pair{k}_{part}.png" for part in ("matching", "cost_path", "soft_alignment")]
        figures += names
        plot_matching(run_dir / names[0], x, y, path, title)
        plot_cost_path(
            run_dir / names[1],
            res["cost"],
            path,
            path_w,
            window,
            f"pair {k} ({kind}): squared Euclidean cost",
        )
        plot_soft_alignment(
            run_dir / names[2],
            res["soft_alignment"],
            res["soft_alignment_window"],
            config.gamma,
            window,
            f"pair {k} ({kind})",
        )

    record["nearest_neighbour"] = nearest_neighbour_check(
        x_train, y_train, x_test, y_test, config, rng
    )
    record["figures"] = figures
    record["seconds"] = time.perf_counter() - start
    (run_dir / "results.md").write_text(results_markdown(record))
    (run_dir / "results.json").write_text(json.dumps(record, indent=2))
    return record


def results_markdown(record: dict) -> str:
    """The report of :func:`run`'s record as Markdown (``results.md``)."""
    cfg = record["config"]
    lec = record["lecture"]
    window = cfg["resolved_window"]
    lines = [
        "# DTW and soft-DTW on tslearn's Trace series",
        "",
        "Lecture example: a = 1,1,3,3,2,4 against b = 1,3,2,2,4,4 with the cost |a_i - b_j|: "
        f"DTW = {lec['dtw']:g}, path (i, j) = {' '.join(f'({i},{j})' for i, j in lec['path'])}.",
        "",
        f"Trace (tslearn's bundled copy), length {cfg['length'] or TRACE_LENGTH}, z-normalised "
        f"per series; squared Euclidean cost (not halved: DTW is DTW squared); soft-DTW gamma = "
        f"{cfg['gamma']}; Sakoe-Chiba window = {window}. Path lengths in cells; the soft "
        "path length is the mass of the expected alignment.",
        "",
        "| pair | series | classes | lock-step L2² | window | DTW | path | soft-DTW | "
        "soft path | divergence |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for k, p in enumerate(record["pairs"]):
        for suffix, label in (("", "none"), ("_window", str(window))):
            first = suffix == ""
            lines.append(
                f"| {k if first else ''} | "
                + (f"train[{p['index_x']}] vs train[{p['index_y']}]" if first else "")
                + " | "
                + (f"{p['class_x']} vs {p['class_y']} ({p['kind']})" if first else "")
                + f" | {p['euclidean']:.3f} | {label} | {p['dtw' + suffix]:.3f} | "
                f"{p['dtw_path_length' + suffix]} | {p['soft_dtw' + suffix]:.3f} | "
                f"{p['soft_expected_path_length' + suffix]:.1f} | "
                f"{p['soft_dtw_divergence' + suffix]:.3f} |"
            )
    nn = record["nearest_neighbour"]
    lines += [
        "",
        f"Nearest neighbours: {nn['n_queries']} test queries against {nn['n_references']} "
        "training references (`jax.vmap` over the grid).",
        "",
        "| distance | mean same-class | mean different-class | same < different | 1-NN accuracy |",
        "|---|---|---|---|---|",
    ]
    for name in ("dtw", "dtw_window", "euclidean"):
        same, diff = nn[f"mean_{name}_same_class"], nn[f"mean_{name}_different_class"]
        lines.append(
            f"| {name} | {same:.3f} | {diff:.3f} | {'yes' if same < diff else 'NO'} | "
            f"{nn[f'accuracy_1nn_{name}']:.2f} |"
        )
    lines += ["", f"{len(record['figures'])} figures, written in {record['seconds']:.1f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """``python -m experiments.dtw_demo [--smoke | --full] [--run-dir DIR] [--field value]``."""
    config = parse_config(
        get_config,
        argv,
        description=(__doc__ or "").split("\n\n")[0],
        prog="python -m experiments.dtw_demo",
    )
    try:
        record = run(config)
    except ValueError as err:
        sys.exit(f"error: {err}")
    run_dir = Path(config.run_dir)
    print((run_dir / "results.md").read_text())
    print(f"results in {(run_dir / 'results.json').resolve()}")
    return record


if __name__ == "__main__":
    main()
