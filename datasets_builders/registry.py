"""Builder name -> source module: a plain dict, so the list of builders is visible in one place."""

from __future__ import annotations

from importlib import import_module

from datasets_builders.sources.contract import SourceModule

SOURCES = {
    "coco-panoptic": "datasets_builders.sources.coco_panoptic",
    "flickr30k-entities": "datasets_builders.sources.flickr30k_entities",
    "refcoco": "datasets_builders.sources.refcoco",
    "vqa": "datasets_builders.sources.vqa",
    "okvqa": "datasets_builders.sources.okvqa",
    "aokvqa": "datasets_builders.sources.aokvqa",
    "gqa": "datasets_builders.sources.gqa",
    "textcaps": "datasets_builders.sources.textcaps",
    "ocrvqa": "datasets_builders.sources.ocrvqa",
    "visual-genome": "datasets_builders.sources.visual_genome",
    "coco-captions": "datasets_builders.sources.coco_captions",
    "llava": "datasets_builders.sources.llava",
    "unnatural-instructions": "datasets_builders.sources.unnatural_instructions",
    "grit": "datasets_builders.sources.grit",
    "image-text": "datasets_builders.sources.image_text",
}
DERIVED = {  # built from committed datasets: --input DATASET [--input DATASET ...]
    "multiround": "datasets_builders.derived.multiround",
    "unnatural-blend": "datasets_builders.derived.unnatural_blend",
}


def source_module(name: str) -> SourceModule:
    """The module of builder ``name``; modules load on first use (some import torch)."""
    builders = {**SOURCES, **DERIVED}
    if name not in builders:
        raise ValueError(f"unknown builder {name!r}; known: {', '.join(builders)}")
    return import_module(builders[name])  # type: ignore[return-value]
