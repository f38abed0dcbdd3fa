"""A training checkpoint: model weights, optimiser, and where the run is, in one verified folder.

::

    model/          a models.checkpoint folder (config, tokenizer, trainable [+ random base] weights)
    optimizer.pt    the AdamW state_dict (tensors only; loaded with weights_only=True)
    state.json      loader state (stage, step), the stage's name, and the xxh3 of every other file

The learning-rate schedule is a pure function of (stage, step), so it needs no state of its own.
The folder is written under a temporary name and renamed when complete; ``load_training_state``
checks every file against state.json, so a truncated or corrupt checkpoint is detected, never
half-loaded.
"""

from __future__ import annotations

import json
import shutil
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
    (tmp / STATE).write_text(json.dumps({"loader": loader.to_dict(), "stage": stage_name, "files": files,
                                         **(extra or {})}, indent=1, sort_keys=True))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def read_training_state(folder: Path) -> TrainingState:
    """The state of a checkpoint after checking every file's xxh3; TrainingCheckpointError otherwise."""
    folder = Path(folder)
    try:
        doc = json.loads((folder / STATE).read_text())
        files = doc["files"]
    except (OSError, ValueError, KeyError) as e:
        raise TrainingCheckpointError(f"{folder}: no readable {STATE} ({e})") from None
    for name, digest in files.items():
        path = folder / name
        if not path.is_file() or file_digest(path) != digest:
            raise TrainingCheckpointError(f"{folder}: {name} is missing or does not match its checksum")
    extra = {k: v for k, v in doc.items() if k not in ("loader", "stage", "files")}
    return TrainingState(LoaderState.from_dict(doc["loader"]), doc["stage"], extra)


def load_training_model(folder: Path) -> GroundedVLM:
    return load_model(Path(folder) / MODEL)


def read_optimizer_state(folder: Path) -> dict:
    """The saved AdamW state (tensors and numbers only: never unpickles code)."""
    return torch.load(Path(folder) / OPTIMIZER, weights_only=True)
