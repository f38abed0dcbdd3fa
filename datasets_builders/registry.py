"""Builder name -> source module: a plain dict, so the list of builders is visible in one place."""

from __future__ import annotations

from importlib import import_module

from datasets_builders.sources.contract import SourceModule

SOURCES = {
    "coco-panoptic": "datasets_builders.sources.coco_panoptic",
    "flickr30k-entities": "datasets_builders.sources.flickr30k_entities",
    "refcoco": "datasets_builders.sources.refcoco",
    "vqa": "datasets_builders.sources.vqa",
    "coco-captions": "datasets_builders.sources.coco_captions",
    "llava": "datasets_builders.sources.llava",
    "unnatural-instructions": "datasets_builders.sources.unnatural_instructions",
}


def source_module(name: str) -> SourceModule:
    """The module that reads raw format ``name``; modules load on first use (some import torch)."""
    if name not in SOURCES:
        raise ValueError(f"unknown builder {name!r}; known: {', '.join(SOURCES)}")
    return import_module(SOURCES[name])  # type: ignore[return-value]
