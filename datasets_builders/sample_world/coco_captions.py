"""The world as COCO Captions 2017: per-split caption JSON with five captions per image."""

from __future__ import annotations

from pathlib import Path

from datasets_builders.sample_world.common import WorldImage, by_split, info, write_json
from datasets_builders.sample_world.language import captions

SALT = 1
CAPTIONS_PER_IMAGE = 5


def caption_id(image: WorldImage, k: int) -> int:
    return image.image_id * 10 + k


def write(world: list[WorldImage], out_dir: Path, seed: int) -> None:
    for split, images in by_split(world).items():
        entries, annotations = [], []
        for image in images:
            name = f"{image.image_id:012d}.jpg"
            image.place(out_dir / f"{split}2017" / name)
            entries.append({"id": image.image_id, "file_name": name, "width": image.width, "height": image.height})
            for k, text in enumerate(captions(image.scene, image.rng(SALT), CAPTIONS_PER_IMAGE)):
                annotations.append({"image_id": image.image_id, "id": caption_id(image, k), "caption": text})
        (out_dir / f"{split}2017").mkdir(parents=True, exist_ok=True)
        document = {"info": info("COCO captions 2017", seed), "licenses": [], "images": entries, "annotations": annotations}
        write_json(out_dir / "annotations" / f"captions_{split}2017.json", document)
