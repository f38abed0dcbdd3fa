"""The world as LLaVA-Instruct-150K: three conversation files over the train images only.

LLaVA has no val or test split, so val and test images never appear here; that keeps every
format's split of an image the same. Not every image is in every file, as in the real data.
"""

from __future__ import annotations

from pathlib import Path

from datasets_builders.sample_world.common import WorldImage, write_json
from datasets_builders.sample_world.language import detailed_description
from datasets_builders.sample_world.questions import conversation, reasoning

SALT = 5
DETAIL_QUESTIONS = (
    "Describe this picture in detail.",
    "Tell me everything you can see in this image.",
    "Give a thorough description of the scene.",
    "Walk me through what is shown in this picture.",
)


def record(image: WorldImage, rounds: list[tuple[str, str]]) -> dict:
    """One LLaVA entry; the first human turn carries the ``<image>`` placeholder."""
    turns = []
    for k, (question, answer) in enumerate(rounds):
        turns.append({"from": "human", "value": ("<image>\n" if k == 0 else "") + question})
        turns.append({"from": "gpt", "value": answer})
    stem = f"{image.image_id:012d}"
    return {"id": stem, "image": f"{stem}.jpg", "conversations": turns}


def write(world: list[WorldImage], out_dir: Path, seed: int) -> None:
    conversations, details, reasonings = [], [], []
    for image in (i for i in world if i.split == "train"):
        image.place(out_dir / "coco" / "train2017" / f"{image.image_id:012d}.jpg")
        rng = image.rng(SALT)
        conversations.append(record(image, conversation(image.scene, rng)))
        if rng.random() < 0.6:
            question = str(rng.choice(DETAIL_QUESTIONS))
            details.append(record(image, [(question, detailed_description(image.scene))]))
        if rng.random() < 0.8:
            reasonings.append(record(image, [reasoning(image.scene, rng)]))
    (out_dir / "coco" / "train2017").mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "conversation_58k.json", conversations)
    write_json(out_dir / "detail_23k.json", details)
    write_json(out_dir / "complex_reasoning_77k.json", reasonings)
