"""A pretrained part's folder, rebuilt only when the fingerprint of its inputs changes.

Why: pretraining takes minutes; the demo and the tests ask for the same part again and again.
The fingerprint covers everything that decides the weights (configuration, data recipe, steps,
seed, the code that trains it); the folder is written under a temporary name and renamed into
place, so a killed run never leaves a folder that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

FINGERPRINT_FILE = "crayonflow-fingerprint.json"


def fingerprint(recipe: dict[str, Any], *sources: Path) -> str:
    """sha256 of the recipe (JSON, sorted keys) and the bytes of ``sources`` (the code that trains)."""
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode())
    for source in sources:
        digest.update(b"\x00" + Path(source).read_bytes())
    return digest.hexdigest()


def cached_folder(folder: Path, recipe: dict[str, Any], sources: list[Path],
                  build: Callable[[Path], dict[str, Any]]) -> tuple[Path, dict[str, Any], bool]:
    """``folder`` as ``build(tmp)`` makes it for ``recipe``; returns (folder, report, reused).

    ``build`` writes the part into the folder it is given and returns a JSON-able report (held-out
    accuracies, minutes), kept beside the fingerprint. A folder whose fingerprint matches is reused.
    """
    folder = Path(folder)
    stamp = folder / FINGERPRINT_FILE
    wanted = fingerprint(recipe, *sources)
    if stamp.is_file():
        try:
            saved = json.loads(stamp.read_text("utf-8"))
            if saved.get("fingerprint") == wanted:
                return folder, saved.get("report", {}), True
        except ValueError:
            pass  # a damaged stamp: rebuild
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    report = build(tmp)
    (tmp / FINGERPRINT_FILE).write_text(json.dumps({"fingerprint": wanted, "recipe": recipe, "report": report},
                                                   indent=2, default=str) + "\n", "utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder, report, False
