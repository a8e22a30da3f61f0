"""The settings a run directory was trained with, checked before resuming from it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def check_signature(run_dir: str | Path, signature: dict, *, overwrite: bool = False) -> None:
    """Writes ``run_dir/signature.json``, or raises ``ValueError`` if the one there differs.

    A run directory holds checkpoints that :func:`experiments.framework.train` resumes from;
    resuming them under other settings (another learning rate, model, seed) would silently mix
    two runs. Call this before ``train`` with every setting that changes the result (a
    JSON-serialisable dict): the first call records it, later calls compare. With ``overwrite``
    the directory is deleted first (a fresh start).
    """
    run_dir = Path(run_dir)
    if overwrite and run_dir.exists():
        shutil.rmtree(run_dir)
    path = run_dir / "signature.json"
    signature = json.loads(json.dumps(signature))  # tuples -> lists, as they will be read back
    if path.is_file():
        saved = json.loads(path.read_text())
        diff = sorted(
            k for k in signature.keys() | saved.keys() if saved.get(k) != signature.get(k)
        )
        if diff:
            raise ValueError(
                f"{run_dir} holds a run with other settings ({', '.join(diff)}: "
                f"{ {k: saved.get(k) for k in diff} } there, "
                f"{ {k: signature.get(k) for k in diff} } now); pass another --run-dir, delete "
                "it, or pass --overwrite where the experiment has it."
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(signature, indent=2))
