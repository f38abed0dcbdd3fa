"""A training checkpoint: model weights, optimiser, and where the run is, in one verified folder.

::

    model/          a models.checkpoint folder (config, tokenizer, trainable [+ random base] weights)
    optimizer.pt    the AdamW state_dict (tensors only; loaded with weights_only=True)
    state.json      loader state (stage, step), the stage's name, the xxh3 of every other file,
                    and the xxh3 of its own content (so a flipped step number is caught too)

The learning-rate schedule is a pure function of (stage, step), so it needs no state of its own.
The folder is written under a temporary name and renamed when complete; ``read_training_state``
checks state.json and every file against it, so a truncated or corrupt checkpoint is detected,
never half-loaded. ``restorable_checkpoint`` then falls back from a damaged latest checkpoint to
the newest earlier one that verifies (Ray keeps two), which is exact because the data order and
the learning rate are functions of (stage, step).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from models.checkpoint import file_digest, load_model, save_model
from models.grounded_vlm import GroundedVLM
from training.mixture.state import LoaderState

STATE, OPTIMIZER, MODEL = "state.json", "optimizer.pt", "model"


class TrainingCheckpointError(ValueError):
    """A checkpoint whose files do not match their recorded checksums, or that is incomplete."""


@dataclass(frozen=True)
class TrainingState:
    loader: LoaderState
    stage_name: str
    extra: dict


def save_training_checkpoint(folder: Path, model: GroundedVLM, optimizer: torch.optim.Optimizer, loader: LoaderState,
                             stage_name: str, extra: dict | None = None) -> Path:
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, tmp / MODEL)
    torch.save(optimizer.state_dict(), tmp / OPTIMIZER)
    files = {str(p.relative_to(tmp)): file_digest(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    doc = json.loads(json.dumps({"loader": loader.to_dict(), "stage": stage_name, "files": files, **(extra or {})}))
    (tmp / STATE).write_text(json.dumps({**doc, "digest": _document_digest(doc)}, indent=1, sort_keys=True))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def read_training_state(folder: Path) -> TrainingState:
    """The state of a checkpoint after checking every file's xxh3; TrainingCheckpointError otherwise."""
    folder = Path(folder)
    try:
        doc = json.loads((folder / STATE).read_text())
        files, digest = doc.pop("files"), doc.pop("digest")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise TrainingCheckpointError(f"{folder}: no readable {STATE} ({e!r})") from None
    if _document_digest({**doc, "files": files}) != digest:
        raise TrainingCheckpointError(f"{folder}: {STATE} does not match its own checksum")
    for name, digest in files.items():
        path = folder / name
        if not path.is_file() or file_digest(path) != digest:
            raise TrainingCheckpointError(f"{folder}: {name} is missing or does not match its checksum")
    extra = {k: v for k, v in doc.items() if k not in ("loader", "stage")}
    return TrainingState(LoaderState.from_dict(doc["loader"]), doc["stage"], extra)


def restorable_checkpoint(latest: Path, earlier: Iterable[Path]) -> tuple[Path, TrainingState]:
    """``latest`` if it verifies, else the first of ``earlier`` (newest first) that does.

    A checkpoint truncated or corrupted after it was recorded would otherwise fail every retry the
    same way and end the run; an older one is as exact a place to resume from, only further back.
    TrainingCheckpointError, naming every problem, when none verifies."""
    problems = []
    for folder in (Path(latest), *map(Path, earlier)):
        try:
            return folder, read_training_state(folder)
        except TrainingCheckpointError as e:
            problems.append(str(e))
    raise TrainingCheckpointError("no checkpoint to resume from verifies: " + "; ".join(problems))


def _document_digest(doc: dict) -> str:
    import xxhash

    return xxhash.xxh3_64(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def load_training_model(folder: Path) -> GroundedVLM:
    return load_model(Path(folder) / MODEL)


def read_optimizer_state(folder: Path) -> dict:
    """The saved AdamW state (tensors and numbers only: never unpickles code)."""
    return torch.load(Path(folder) / OPTIMIZER, weights_only=True)
