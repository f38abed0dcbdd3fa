"""The world as RefCOCO (UNC splits) the way the REFER toolkit ships it, with JSON refs.

All RefCOCO images come from COCO train2014, whatever the ref's split, so every image is named
``COCO_train2014_*`` and the split travels in each ref. One ref per object, with one to three
expressions that each fit that object alone.
"""

from __future__ import annotations

import re
from pathlib import Path

from datasets_builders.sample_world.common import WorldImage, info, thing_categories, thing_category_id, write_json
from datasets_builders.sample_world.language import expression_kind, referring_expressions

SALT = 3


def annotation_id(image: WorldImage, segment_id: int) -> int:
    """Unique across the dataset: scenes have fewer than 100 segments."""
    return image.image_id * 100 + segment_id


def sentence(raw: str, sent_id: int) -> dict:
    """REFER's sentence record: ``sent`` is lowercased with punctuation removed. ``kind`` is the
    sample world's own addition (real refs have no such field): what the expression names its
    object by, so evaluation can report refer per kind."""
    sent = " ".join(re.sub(r"[^a-z0-9 ]", " ", raw.lower()).split())
    return {"raw": raw, "sent": sent, "tokens": sent.split(), "sent_id": sent_id, "kind": expression_kind(raw)}


def write(world: list[WorldImage], out_dir: Path, seed: int) -> None:
    images, annotations, refs = [], [], []
    sent_id = 0
    for image in world:
        stem = f"COCO_train2014_{image.image_id:012d}"
        image.place(out_dir / "images" / "train2014" / f"{stem}.jpg")
        images.append({"id": image.image_id, "file_name": f"{stem}.jpg", "width": image.width, "height": image.height})
        rng = image.rng(SALT)
        for thing in image.scene.things:
            ann_id = annotation_id(image, thing.segment_id)
            category = thing_category_id(thing.shape)
            annotations.append(
                {"id": ann_id, "image_id": image.image_id, "category_id": category, "bbox": list(thing.bbox),
                 "area": thing.area, "iscrowd": 0}
            )
            expressions = referring_expressions(image.scene, thing)
            if not expressions:
                continue  # crowded and too alike to single out: RefCOCO has unreferred objects too
            count = int(rng.integers(1, min(3, len(expressions)) + 1))
            chosen = [expressions[i] for i in sorted(rng.choice(len(expressions), count, replace=False))]
            sentences = [sentence(e, sent_id + k) for k, e in enumerate(chosen)]
            sent_id += len(sentences)
            refs.append(
                {"ref_id": len(refs), "ann_id": ann_id, "image_id": image.image_id, "category_id": category,
                 "split": image.split, "file_name": f"{stem}_{ann_id}.jpg",
                 "sent_ids": [s["sent_id"] for s in sentences], "sentences": sentences}
            )
    instances = {
        "info": info("RefCOCO (REFER)", seed),
        "images": images,
        "licenses": [],
        "annotations": annotations,
        "categories": thing_categories(),
    }
    write_json(out_dir / "instances.json", instances)
    write_json(out_dir / "refs(unc).json", refs)
