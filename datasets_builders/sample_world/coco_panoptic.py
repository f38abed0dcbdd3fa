"""The world as COCO panoptic 2017: per-split JSON, RGB-encoded segment PNGs, images.

Segment ids are hashed from (image id, scene segment) into 1..2^24-1 so that, as in the real
data, they use all three PNG channels; id 0 (void) never occurs because every pixel of a scene
belongs to a segment. Areas and boxes are the scene's, which are measured on the same map.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from datasets_builders.sample_world.common import WorldImage, by_split, info, thing_category_id, write_json, write_png
from datasets_builders.sample_world.scene import STUFF_COLOURS, THING_SHAPES

STUFF_CATEGORIES = {  # scene category -> (COCO panoptic id, COCO's name)
    "sky": (110, "sky-other-merged"),
    "grass": (111, "grass-merged"),
    "water": (112, "water-other"),
    "sand": (113, "sand"),
    "wall": (114, "wall-other-merged"),
    "floor": (115, "floor-other-merged"),
}
STUFF_SUPERCATEGORIES = {"sky": "sky", "grass": "plant", "water": "water", "sand": "ground", "wall": "wall", "floor": "floor"}
THING_COLOURS = ((220, 20, 60), (0, 82, 255), (0, 160, 90), (250, 170, 30))  # display colours per shape


def categories() -> list[dict]:
    things = [
        {"id": thing_category_id(s), "name": s, "supercategory": "shape", "isthing": 1, "color": list(c)}
        for s, c in zip(THING_SHAPES, THING_COLOURS)
    ]
    stuff = [
        {"id": i, "name": name, "supercategory": STUFF_SUPERCATEGORIES[c], "isthing": 0, "color": list(STUFF_COLOURS[c])}
        for c, (i, name) in STUFF_CATEGORIES.items()
    ]
    return things + stuff


def panoptic_ids(image_id: int, segments: list[int]) -> dict[int, int]:
    """Scene segment -> panoptic id in 1..2^24-1, unique within the image, stable per image."""
    out: dict[int, int] = {}
    for segment in segments:
        attempt = 0
        while True:
            digest = hashlib.blake2b(f"{image_id}:{segment}:{attempt}".encode(), digest_size=4).digest()
            candidate = int.from_bytes(digest, "big") % (2**24 - 1) + 1
            if candidate not in out.values():
                break
            attempt += 1
        out[segment] = candidate
    return out


def encode(segments: np.ndarray, ids: dict[int, int]) -> np.ndarray:
    """The (H, W, 3) PNG pixels of a segment map: id = R + 256 * G + 256^2 * B."""
    lookup = np.zeros(int(segments.max()) + 1, dtype=np.uint32)
    for segment, panoptic in ids.items():
        lookup[segment] = panoptic
    mapped = lookup[segments]
    return np.stack([mapped & 255, (mapped >> 8) & 255, mapped >> 16], axis=-1).astype(np.uint8)


def write(world: list[WorldImage], out_dir: Path, seed: int) -> None:
    for split, images in by_split(world).items():
        annotations = []
        for image in images:
            scene, stem = image.scene, f"{image.image_id:012d}"
            image.place(out_dir / f"{split}2017" / f"{stem}.jpg")
            entries = [(s.segment_id, STUFF_CATEGORIES[s.category][0], s.area, s.bbox) for s in scene.stuff]
            entries += [(t.segment_id, thing_category_id(t.shape), t.area, t.bbox) for t in scene.things]
            entries.sort()
            ids = panoptic_ids(image.image_id, [segment for segment, *_ in entries])
            write_png(out_dir / "annotations" / f"panoptic_{split}2017" / f"{stem}.png", encode(scene.segments, ids))
            segments_info = [
                {"id": ids[segment], "category_id": category, "area": area, "bbox": list(bbox), "iscrowd": 0}
                for segment, category, area, bbox in entries
            ]
            annotations.append({"image_id": image.image_id, "file_name": f"{stem}.png", "segments_info": segments_info})
        document = {
            "info": info("COCO panoptic 2017", seed),
            "licenses": [],
            "images": [
                {"id": i.image_id, "file_name": f"{i.image_id:012d}.jpg", "width": i.width, "height": i.height}
                for i in images
            ],
            "annotations": annotations,
            "categories": categories(),
        }
        for folder in (out_dir / f"{split}2017", out_dir / "annotations" / f"panoptic_{split}2017"):
            folder.mkdir(parents=True, exist_ok=True)  # present even when the split has no images
        write_json(out_dir / "annotations" / f"panoptic_{split}2017.json", document)
