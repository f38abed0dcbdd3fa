"""The sample world: generated scenes written in the layouts of fifteen real published datasets.

It lets every raw-format builder run end to end with no download: a user's real download and
the sample world look the same on disk, and every text in it is true of its picture. The output
is a pure function of ``(images, seed, val_scenes)``, byte for byte. Each image gets one split in
every format (``index % 10``: 8 -> val, 9 -> test, else train) so no picture leaks across splits;
``val_scenes`` more scenes after the first ``images`` are all val: a held-out split big enough to
tell a model that looks from one that guesses. Only the formats with a val split receive them
(``SPLIT_FORMATS``); the others (LLaVA, web downloads, text) see the first ``images`` only, so the
training data is unchanged.

Known leak, kept for now: the split-less web formats (``image-text``, ``grit``) list every one of
the first ``images`` scenes, val and test ones included, so held-out pictures of the other formats
are also training pictures there (LLaVA lists train images only). The ``val_scenes`` are not.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from datasets_builders.sample_world import (
    aokvqa,
    coco_captions,
    coco_panoptic,
    flickr30k_entities,
    gqa,
    grit,
    image_text,
    llava,
    ocrvqa,
    okvqa,
    refcoco,
    textcaps,
    unnatural_instructions,
    visual_genome,
    vqa,
)
from datasets_builders.sample_world.common import SPLITS, WorldImage, write_text
from datasets_builders.sample_world.scene import generate_scene

__all__ = ["FORMATS", "SUMMARY_FILE", "WorldImage", "WorldSummary", "split_of", "write_sample_world"]

FORMATS: dict[str, ModuleType] = {  # folder under the output -> its writer
    "coco-panoptic": coco_panoptic,
    "flickr30k-entities": flickr30k_entities,
    "refcoco": refcoco,
    "vqa": vqa,
    "okvqa": okvqa,
    "aokvqa": aokvqa,
    "gqa": gqa,
    "textcaps": textcaps,
    "ocrvqa": ocrvqa,
    "visual-genome": visual_genome,
    "coco-captions": coco_captions,
    "llava": llava,
    "unnatural-instructions": unnatural_instructions,
    "grit": grit,
    "image-text": image_text,
}
SPLIT_FORMATS = ("coco-panoptic", "flickr30k-entities", "refcoco", "vqa", "okvqa", "aokvqa", "gqa", "textcaps",
                 "ocrvqa", "coco-captions")  #: have a val split
SUMMARY_FILE = "sample-world.json"
JPEG_QUALITY = 90


@dataclass(frozen=True)
class WorldSummary:
    """What :func:`write_sample_world` wrote (also saved as ``sample-world.json``)."""

    out: Path
    seed: int
    images: int
    splits: dict[str, int]  #: images per split
    formats: tuple[str, ...]  #: the format folders, in writing order
    val_scenes: int = 0  #: extra val-only scenes after the first ``images``

    def to_json(self) -> dict:
        return {"seed": self.seed, "images": self.images, "val_scenes": self.val_scenes, "splits": dict(self.splits),
                "formats": list(self.formats)}


def split_of(index: int) -> str:
    return {8: "val", 9: "test"}.get(index % 10, "train")


def write_sample_world(out: Path, images: int = 200, seed: int = 0, *, val_scenes: int = 0,
                       overwrite: bool = False) -> WorldSummary:
    """Generate scenes ``0..images-1`` of world ``seed`` (and ``val_scenes`` more, all val) and write
    them in every format under ``out``.

    A non-empty ``out`` is refused unless ``overwrite``; then only the format folders and
    ``sample-world.json`` are removed first, never anything else the folder holds.
    """
    out = Path(out)
    if images < 1:
        raise ValueError(f"a sample world needs at least one image, got images={images}")
    if val_scenes < 0:
        raise ValueError(f"val_scenes must be 0 or more, got {val_scenes}")
    _prepare(out, overwrite)
    world = []
    for index in range(images + val_scenes):
        scene = generate_scene(seed, index)
        split = split_of(index) if index < images else "val"
        world.append(WorldImage(index, index + 1, split, scene, scene.jpeg(JPEG_QUALITY), seed))
    for folder, writer in FORMATS.items():
        writer.write(world if folder in SPLIT_FORMATS else world[:images], out / folder, seed)
    splits = {split: sum(image.split == split for image in world) for split in SPLITS}
    summary = WorldSummary(out, seed, images, splits, tuple(FORMATS), val_scenes)
    # Written last: its presence says the world is complete.
    write_text(out / SUMMARY_FILE, json.dumps(summary.to_json(), indent=2) + "\n")
    return summary


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"sample world output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"sample world output {out} is not empty; choose an empty folder or pass overwrite=True "
                f"(which removes only {', '.join(FORMATS)} and {SUMMARY_FILE} there)"
            )
        (out / SUMMARY_FILE).unlink(missing_ok=True)  # first: a half-replaced world is never complete
        for folder in FORMATS:
            target = out / folder
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)
