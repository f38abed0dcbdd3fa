"""Save, load and export a GroundedVLM: the trainable parts as safetensors, plus what rebuilds the rest.

A checkpoint folder::

    model.json              the ModelConfig (checkpoint paths inside it are absolute or relative to this folder)
    tokenizer/              the tokenizer, save_pretrained
    trainable.safetensors   connector, crayon prompt and branch, every adapter's weights
    base.safetensors        only where a tower or the LLM was randomly initialised or has been trained
                            itself (``base_trained``): its weights, so it is restored exactly

``load_model`` builds a fresh base from model.json (local checkpoints, or the random init) and
loads the files over it with strict key checks, so the loaded model computes what the saved one
did. ``export_merged`` writes a standalone folder with LoRA merged into the LLM weights
(``llm/`` and ``vision/`` as transformers folders) where merging is exact: LoRA and Dual (two
named) LoRA. Dual-LoRA's update depends on the input and a 4-bit base would be re-rounded, so
those are refused in one line: their checkpoint already is the deliverable. Weights are never
unpickled: safetensors only.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from models.build import build_model
from models.config import ModelConfig
from models.grounded_vlm import GroundedVLM
from models.tokenizer import load_tokenizer

CONFIG, TOKENIZER, TRAINABLE, BASE = "model.json", "tokenizer", "trainable.safetensors", "base.safetensors"
TRAINABLE_PARTS = ("connector", "crayon", "adapter")


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded: the message names the folder and the problem."""


def save_model(model: GroundedVLM, out: Path, *, extra: dict | None = None) -> Path:
    """Write ``model`` to ``out`` (created; files replaced). ``extra`` goes into model.json beside the config."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.tokenizer.save_pretrained(out / TOKENIZER)
    trainable = {name: p for part in TRAINABLE_PARTS for name, p in model.part_parameters(part)}
    _save(trainable, out / TRAINABLE)
    base = {}
    if model.config.vision.checkpoint is None or "vision" in model.base_trained:
        base.update(model.vision.state_dict(prefix="vision."))
    if model.config.llm.checkpoint is None or "llm" in model.base_trained:
        base.update({k: v for k, v in model.llm.state_dict(prefix="llm.").items() if k not in trainable})
    if base:
        _save(base, out / BASE)
    else:
        (out / BASE).unlink(missing_ok=True)
    document = {"format": 1, "config": model.config.to_dict(), "base_trained": sorted(model.base_trained),
                **(extra or {})}
    (out / CONFIG).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return out


def read_config(folder: Path) -> tuple[ModelConfig, dict]:
    """(config, the whole model.json) of a checkpoint folder."""
    path = Path(folder) / CONFIG
    try:
        document = json.loads(path.read_text())
        return ModelConfig.from_dict(document["config"]), document
    except OSError:
        raise CheckpointError(f"{folder}: not a model checkpoint (no readable {CONFIG})") from None
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: {e}") from None


def load_model(folder: Path) -> GroundedVLM:
    folder = Path(folder)
    config, document = read_config(folder)
    model = build_model(config, base_dir=folder, tokenizer=load_tokenizer(folder / TOKENIZER))
    model.base_trained = set(document.get("base_trained", ()))
    state = {}
    for name in (BASE, TRAINABLE):
        if (folder / name).is_file():
            state.update(load_file(folder / name))
    expected = set(model.state_dict())
    unknown = sorted(set(state) - expected)
    if unknown:
        raise CheckpointError(f"{folder}: weights for parameters this model does not have: {unknown[:3]} ...")
    trainable = {name for part in TRAINABLE_PARTS for name, _ in model.part_parameters(part)}
    missing = sorted(trainable - set(state))
    if missing:
        raise CheckpointError(f"{folder}: {TRAINABLE} lacks {len(missing)} trainable weights, e.g. {missing[0]}")
    model.load_state_dict(state, strict=False)
    return model


def export_merged(folder: Path, out: Path) -> Path:
    """A standalone checkpoint at ``out`` from the one in ``folder``, LoRA merged where that is exact."""
    model = load_model(folder)
    config, adapter = model.config, model.config.adapter
    if adapter.kind == "dual-lora" or adapter.quantize != "none":
        raise CheckpointError(f"{folder}: {adapter.kind}{' on a 4-bit base' if adapter.quantize != 'none' else ''} "
                              "cannot be merged exactly; use the checkpoint itself, it already holds the adapters")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    merge = adapter.kind == "lora"
    base_llm = model.llm.merge_and_unload() if merge else model.llm
    base_llm.save_pretrained(out / "llm")
    model.vision.model.save_pretrained(out / "vision")
    exported = config.replace(vision={"checkpoint": "vision", "init": {}}, llm={"checkpoint": "llm", "init": {},
                                                                                 "tokenizer": TOKENIZER},
                              adapter={"kind": "none", "names": ["default"]})
    model.tokenizer.save_pretrained(out / TOKENIZER)
    parts = {name: p for part in ("connector", "crayon") for name, p in model.part_parameters(part)}
    _save(parts, out / TRAINABLE)
    (out / BASE).unlink(missing_ok=True)
    (out / CONFIG).write_text(json.dumps({"format": 1, "config": exported.to_dict(), "exported_from": str(folder),
                                          "merged": merge}, indent=2, sort_keys=True) + "\n")
    return out


def checkpoint_digest(folder: Path) -> str:
    """xxh3-64 over model.json and the weight files: changes whenever what the model computes may."""
    import xxhash

    digest = xxhash.xxh3_64()
    for name in (CONFIG, TRAINABLE, BASE):
        path = Path(folder) / name
        if path.is_file():
            digest.update(name.encode())
            file_digest(path, digest)
    return digest.hexdigest()


def file_digest(path: Path, digest=None) -> str:  # noqa: ANN001 - an xxhash object
    """The xxh3-64 of a file, read in 1 MiB chunks (or fed into ``digest``)."""
    import xxhash

    digest = digest if digest is not None else xxhash.xxh3_64()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _save(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors refuses shared storage: every tensor is saved as its own contiguous copy."""
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, str(tmp))
    tmp.replace(path)
