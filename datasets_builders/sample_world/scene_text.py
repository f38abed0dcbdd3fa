"""A scene written as text, and the task samples the VLM trains on, worded for a text-only LLM.

Why: the tiny Llama is pretrained to look things up in a scene description placed where the
visual tokens will later sit (model-looks-diagnosis.md section 4). The description uses the
model's own box text, so a refer answer is a copy of the right box and an identify answer a copy
of the right words; the questions are rendered through ``templates.render``, so the wording is
exactly the VLM's training turns. Pure functions of a scene and a caller-seeded generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datasets_builders.formats.boxes import PixelBox, format_box
from datasets_builders.sample_world.language import captions, expression_kind, left_to_right, referring_expressions
from datasets_builders.sample_world.questions import vqa_pairs
from datasets_builders.sample_world.scene import Scene, Thing
from datasets_builders.templates.render import render

SEPARATOR = " ; "
TEXT_TASKS = ("vqa", "refer", "identify", "caption")
_TEMPLATE_DRAW = 1 << 16  #: render takes the template index modulo its pool


@dataclass(frozen=True)
class TextSample:
    """One question about a scene: the rendered instruction (task identifier included) and answer.

    ``family`` splits a task's score (VQA's question type; an expression's kind); ``references``
    are every answer that counts as right where there are several (identify: each expression that
    fits the object alone), else just ``answer``."""

    task: str
    instruction: str
    answer: str
    family: str
    references: tuple[str, ...] = ()


def thing_box(scene: Scene, thing: Thing) -> str:
    """The thing's box in the model's ``{<x0><y0><x1><y1>}`` text."""
    return format_box(PixelBox.from_xywh(thing.bbox), *scene.size)


def scene_text(scene: Scene) -> str:
    """``"red circle {<12><40><30><61>} ; blue square {...} ; sky ; grass"``.

    Things come left to right, as a raster-ordered row of visual tokens meets them and as every
    caption of the world lists them, so "the left circle" is usually the first circle named;
    the stuff (top region, then bottom) follows because it only sets the scene.
    """
    things = [f"{thing.name} {thing_box(scene, thing)}" for thing in left_to_right(scene)]
    return SEPARATOR.join(things + [stuff.category for stuff in scene.stuff])


def text_samples(scene: Scene, rng: np.random.Generator, tasks: tuple[str, ...] = TEXT_TASKS) -> list[TextSample]:
    """Every vqa question, one refer and one identify per object that an expression fits alone,
    and one caption; wording (template, expression, caption) drawn from ``rng``."""
    samples: list[TextSample] = []

    def add(task: str, fields: dict, family: str, references: tuple[str, ...] = ()) -> None:
        template = int(rng.integers(_TEMPLATE_DRAW))
        user, assistant = render(task, fields, key="", width=scene.size[0], height=scene.size[1], template=template)
        samples.append(TextSample(task, user.content, assistant.content, family, references or (assistant.content,)))

    if "vqa" in tasks:
        for qa in vqa_pairs(scene, rng):
            add("vqa", {"question": qa.question, "answer": qa.answer}, qa.question_type)
    for thing in left_to_right(scene):
        expressions = referring_expressions(scene, thing)
        if not expressions:
            continue  # too alike to single out: nothing true to ask
        box = PixelBox.from_xywh(thing.bbox).xyxy()
        for task in ("refer", "identify"):
            if task in tasks:
                expression = expressions[int(rng.integers(len(expressions)))]
                add(task, {"expression": expression, "box": box}, expression_kind(expression),
                    tuple(expressions) if task == "identify" else ())
    if "caption" in tasks:
        options = captions(scene, rng)
        add("caption", {"caption": options[int(rng.integers(len(options)))]}, "caption")
    return samples
