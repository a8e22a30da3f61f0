"""Metric writers: one JSON record a line (``metrics.jsonl``) and TensorBoard event files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

import numpy as np


class MetricWriter(Protocol):
    """Receives one record per logged step: ``{"step": int, name: value, ...}``."""

    def write(self, record: dict) -> None: ...

    def close(self) -> None: ...


class JsonlWriter:
    """Appends each record as one JSON line to ``path`` (flushed at once)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a")

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class TensorBoardWriter:
    """Writes the scalar fields of each record (all but ``step``) with ``tensorboardX``.

    ``purge_step``: events at this step or later left by an earlier, interrupted run are hidden
    (pass the resumed step + 1).
    """

    def __init__(self, logdir: str | os.PathLike, purge_step: int | None = None):
        from tensorboardX import SummaryWriter

        self._writer = SummaryWriter(str(logdir), purge_step=purge_step)

    def write(self, record: dict) -> None:
        step = int(record["step"])
        for key, value in record.items():
            if key != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                self._writer.add_scalar(key, value, step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a ``metrics.jsonl`` file (or of ``<run_dir>/metrics.jsonl``), in order."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def truncate_metrics(path: str | os.PathLike, last_step: int) -> None:
    """Drops the records past ``last_step`` (written by a run that died after its checkpoint)."""
    path = Path(path)
    if not path.exists():
        return
    kept = [r for r in read_metrics(path) if r["step"] <= last_step]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))


def to_python(value):
    """A JSON-ready form of a metric: a float or int for a scalar, nested lists otherwise."""
    arr = np.asarray(value)
    return arr.item() if arr.ndim == 0 else arr.tolist()
