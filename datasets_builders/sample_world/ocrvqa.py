"""The world as OCR-VQA: ``dataset.json`` (book id -> cover URL, questions, answers, split) and
``images/<id>.jpg`` as its download script names them.

OCR-VQA asks five templated questions about a book cover (title, author, genre, ...); the world's
pictures are not covers, so its entries ask the world's VQA questions about them instead, under
OCR-VQA's fields; ``title`` is a caption, ``authorName`` and ``genre`` fixed. Splits 1 / 2 / 3 are
the world's train / val / test.
"""

from __future__ import annotations

from pathlib import Path

from datasets_builders.sample_world.common import WorldImage, write_json
from datasets_builders.sample_world.language import captions
from datasets_builders.sample_world.questions import vqa_pairs

SALT = 13
SPLIT_CODES = {"train": 1, "val": 2, "test": 3}


def write(world: list[WorldImage], out_dir: Path, seed: int) -> None:
    books = {}
    for image in world:
        book_id = f"{seed:04d}{image.image_id:06d}"
        image.place(out_dir / "images" / f"{book_id}.jpg")
        rng = image.rng(SALT)
        pairs = vqa_pairs(image.scene, rng)
        books[book_id] = {"imageURL": f"http://ecx.images-amazon.com/images/I/{book_id}.jpg",
                          "questions": [qa.question for qa in pairs], "answers": [qa.answer for qa in pairs],
                          "title": captions(image.scene, rng, 1)[0], "authorName": "Crayonflow Sample World",
                          "genre": "Arts & Photography", "split": SPLIT_CODES[image.split]}
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "dataset.json", books)
