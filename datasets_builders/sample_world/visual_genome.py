"""The world as Visual Genome: ``image_data.json``, ``region_descriptions.json`` and the photos in
``VG_100K/`` / ``VG_100K_2/`` (split by the image id's parity here, as the real release split
them by download batch).

Visual Genome has no splits, so only the world's train pictures are written: a val or test
picture here would be trained on by any plan that reads this dataset. Each thing an expression
fits alone is one region, its phrase that expression, its box the thing's.
"""

from __future__ import annotations

from pathlib import Path

from datasets_builders.sample_world.common import WorldImage, write_json
from datasets_builders.sample_world.language import left_to_right, referring_expressions

SALT = 14


def write(world: list[WorldImage], out_dir: Path, seed: int) -> None:
    images, described = [], []
    region_id = 0
    for image in world:
        if image.split != "train":
            continue
        folder = ("VG_100K", "VG_100K_2")[image.image_id % 2]
        image.place(out_dir / folder / f"{image.image_id}.jpg")
        width, height = image.scene.size
        images.append({"width": width, "url": f"https://cs.stanford.edu/people/rak248/{folder}/{image.image_id}.jpg",
                       "height": height, "image_id": image.image_id, "coco_id": None, "flickr_id": None})
        rng, regions = image.rng(SALT), []
        for thing in left_to_right(image.scene):
            expressions = referring_expressions(image.scene, thing)
            if not expressions:
                continue
            region_id += 1
            x, y, w, h = thing.bbox
            regions.append({"region_id": seed * 1_000_000 + region_id, "width": w, "height": h,
                            "image_id": image.image_id, "phrase": expressions[int(rng.integers(len(expressions)))],
                            "y": y, "x": x})
        described.append({"regions": regions, "id": image.image_id})
    for folder in ("VG_100K", "VG_100K_2"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "image_data.json", images)
    write_json(out_dir / "region_descriptions.json", described)
