"""The world as A-OKVQA: a list per split of questions with four choices, ten direct answers and
three rationales, about COCO 2017-named photos.

The questions and direct answers are the VQA writer's (so all builders see the same truth); the
three wrong choices are drawn from the world's other answers, the rationales are true captions
of the scene. Every split carries answers, the test one too (as this world's VQA files do; the
published A-OKVQA test file has none, which the builder rejects with that reason: its tests
cover it).
"""

from __future__ import annotations

from pathlib import Path

from datasets_builders.sample_world.common import WorldImage, by_split, write_json
from datasets_builders.sample_world.language import captions
from datasets_builders.sample_world.questions import vqa_pairs
from datasets_builders.sample_world.vqa import annotator_answers

SALT = 10
#: answers the world's questions can have: the wrong choices come from here
ANSWER_POOL = ("yes", "no", "0", "1", "2", "3", "4", "5", "red", "green", "blue", "yellow", "white", "black",
               "purple", "orange", "circle", "square", "triangle", "star", "indoors", "outdoors")


def write(world: list[WorldImage], out_dir: Path, seed: int) -> None:
    for split, images in by_split(world).items():
        entries = []
        for image in images:
            image.place(out_dir / f"{split}2017" / f"{image.image_id:012d}.jpg")
            rng = image.rng(SALT)
            for k, qa in enumerate(vqa_pairs(image.scene, rng)):
                wrong = [a for a in ANSWER_POOL if a != qa.answer]
                choices = [qa.answer, *(wrong[int(i)] for i in rng.choice(len(wrong), 3, replace=False))]
                order = rng.permutation(4)
                entry = {"split": split, "image_id": image.image_id, "question_id": f"sw{seed}i{image.image_id}q{k}",
                         "question": qa.question, "choices": [choices[int(i)] for i in order]}
                entries.append(entry | {"correct_choice_idx": int(list(order).index(0)),
                                        "direct_answers": annotator_answers(qa, rng), "difficult_direct_answer": False,
                                        "rationales": captions(image.scene, rng, 3)})
        (out_dir / f"{split}2017").mkdir(parents=True, exist_ok=True)
        write_json(out_dir / f"aokvqa_v1p0_{split}.json", entries)
