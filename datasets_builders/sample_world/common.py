"""What every sample-world writer shares: the per-image record and deterministic file output.

Writers must give the same bytes for the same world, so JSON is written through one function
(insertion key order, fixed separators, no timestamps) and each image's JPEG is encoded once and
then hard-linked under every format's own file name.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from datasets_builders.sample_world.scene import THING_SHAPES, Scene

SPLITS = ("train", "val", "test")


@dataclass
class WorldImage:
    """One generated image with everything the writers need to describe it."""

    index: int  #: the scene index in its world
    image_id: int  #: index + 1, the id the COCO-style formats use
    split: str  #: "train", "val" or "test", by image
    scene: Scene
    jpeg: bytes  #: the encoded picture, identical in every format
    seed: int  #: the world's seed
    _first: Path | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def width(self) -> int:
        return self.scene.size[0]

    @property
    def height(self) -> int:
        return self.scene.size[1]

    def rng(self, salt: int) -> np.random.Generator:
        """The generator for one purpose (``salt``) of this image, independent of all others."""
        return np.random.default_rng([self.seed, self.index, salt])

    def place(self, path: Path) -> None:
        """Put the JPEG at ``path``: written the first time, hard-linked (or copied) after."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if self._first is None:
            path.write_bytes(self.jpeg)
            self._first = path
            return
        try:
            os.link(self._first, path)
        except OSError:  # no hard links here (another file system, FAT, ...): copy instead
            shutil.copyfile(self._first, path)


def write_json(path: Path, obj: Any) -> None:
    """JSON as the published files are: ``json.dump`` output, keys in the order built."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, ensure_ascii=False)


def write_jsonl(path: Path, rows: Iterable[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def write_png(path: Path, pixels: np.ndarray) -> None:
    """An (H, W, 3) uint8 array as an RGB PNG (Pillow writes no time stamp, so bytes repeat)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path, "PNG", compress_level=6)


def info(layout: str, seed: int) -> dict[str, Any]:
    """The ``info`` block of COCO-style files: what this is, with no creation date."""
    return {
        "description": f"Crayonflow sample world {seed} in the {layout} layout (generated, not real data)",
        "url": "",
        "version": "1.0",
        "contributor": "crayonflow sample_world",
    }


def thing_categories() -> list[dict[str, Any]]:
    """COCO-style categories of the four shapes, ids 1..4."""
    return [{"id": i, "name": shape, "supercategory": "shape"} for i, shape in enumerate(THING_SHAPES, start=1)]


def thing_category_id(shape: str) -> int:
    return THING_SHAPES.index(shape) + 1


def by_split(world: list[WorldImage]) -> dict[str, list[WorldImage]]:
    """The images of each split, every split present (possibly empty), in index order."""
    return {split: [image for image in world if image.split == split] for split in SPLITS}
