"""The world as GQA: ``questions1.2/<split>_balanced_questions.json`` (question id -> question) and
``images/<imageId>.jpg``.

GQA's splits are train, val and testdev (answered) plus test and challenge (not); the world's
train, val and test images go to train, val and testdev. The questions are the VQA writer's; the
fields GQA adds are filled as a GQA reader would find them: ``fullAnswer`` a sentence with the
answer, ``types.structural`` "verify" for yes/no questions else "query", ``types.semantic``
"attr" for colour questions else "obj", ``types.detailed`` the world's question type.
"""

from __future__ import annotations

from pathlib import Path

from datasets_builders.sample_world.common import WorldImage, by_split, write_json
from datasets_builders.sample_world.questions import vqa_pairs

SALT = 11
SPLIT_NAMES = {"train": "train", "val": "val", "test": "testdev"}


def write(world: list[WorldImage], out_dir: Path, seed: int) -> None:
    for split, images in by_split(world).items():
        questions = {}
        for image in images:
            image.place(out_dir / "images" / f"{image.image_id}.jpg")
            for k, qa in enumerate(vqa_pairs(image.scene, image.rng(SALT))):
                questions[f"{image.image_id}{k:02d}"] = {
                    "imageId": str(image.image_id), "question": qa.question, "answer": qa.answer,
                    "fullAnswer": f"The answer is {qa.answer}.", "isBalanced": True,
                    "types": {"structural": "verify" if qa.answer_type == "yes/no" else "query",
                              "semantic": "attr" if qa.question_type == "what color is the" else "obj",
                              "detailed": qa.question_type}}
        (out_dir / "images").mkdir(parents=True, exist_ok=True)
        write_json(out_dir / "questions1.2" / f"{SPLIT_NAMES[split]}_balanced_questions.json", questions)
