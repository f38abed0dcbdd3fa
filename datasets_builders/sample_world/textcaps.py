"""The world as TextCaps: ``TextCaps_0.1_<split>.json`` with one entry per caption (five per
picture), the pictures as TextVQA's ``train_images/<hex id>.jpg``.

Only train and val are written: TextCaps' test file carries no captions. The captions are the
world's true COCO-style ones (the world has no text in its pictures, so none reads any).
"""

from __future__ import annotations

from pathlib import Path

from datasets_builders.sample_world.common import WorldImage, by_split, write_json
from datasets_builders.sample_world.language import captions

SALT = 12
SPLITS = ("train", "val")


def write(world: list[WorldImage], out_dir: Path, seed: int) -> None:
    for split, images in by_split(world).items():
        if split not in SPLITS:
            continue
        data = []
        for image in images:
            image_id = f"{seed:08x}{image.image_id:08x}"
            image.place(out_dir / "train_images" / f"{image_id}.jpg")
            texts = captions(image.scene, image.rng(SALT), 5)
            width, height = image.scene.size
            for k, text in enumerate(texts):
                data.append({"image_id": image_id, "image_classes": ["Poster"], "image_width": width,
                             "image_height": height, "set_name": split, "image_name": image_id,
                             "image_path": f"train/{image_id}.jpg", "caption_id": image.image_id * 10 + k,
                             "caption_str": text, "caption_tokens": text.lower().split(), "reference_strs": texts,
                             "reference_tokens": [t.lower().split() for t in texts]})
        write_json(out_dir / f"TextCaps_0.1_{split}.json", {"dataset_type": split, "dataset_name": "textcaps",
                                                           "data": data})
