"""Questions about a scene with answers read off its ground truth (VQA, chat, reasoning).

Like :mod:`language`, these are pure functions of a scene and a caller-seeded generator. An object
is only asked about through an expression that fits it alone, so every answer is the one answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datasets_builders.sample_world.language import (
    POSITION_MARGIN,
    article,
    counts,
    extreme,
    ground,
    how_many,
    join,
    left_to_right,
    outdoor,
    place,
    referring_expressions,
    region,
    sentence,
    setting,
)
from datasets_builders.sample_world.scene import THING_COLOURS, THING_SHAPES, Scene, Thing


@dataclass(frozen=True)
class QA:
    """A VQA-style question with its short answer and VQA's answer and question types."""

    question: str
    answer: str
    answer_type: str  #: "yes/no", "number" or "other"
    question_type: str  #: VQA's question-type prefix, e.g. "what color is the"


def called(scene: Scene, thing: Thing) -> str:
    """How to name ``thing`` in an answer: by an expression that fits it alone, if there is one."""
    if sum(t.name == thing.name for t in scene.things) == 1:
        return f"the {thing.name}"
    return (referring_expressions(scene, thing) or [article(thing.name)])[0]


def vqa_pairs(scene: Scene, rng: np.random.Generator) -> list[QA]:
    """Three to five questions: colour, count, presence (yes or no), shape, indoors/outdoors."""
    things = left_to_right(scene)
    pool: list[QA] = []
    by_shape = [(t, e) for t in things for e in referring_expressions(scene, t) if t.colour not in e.split()]
    if by_shape:
        thing, expression = by_shape[rng.integers(len(by_shape))]
        pool.append(QA(f"What color is {expression}?", thing.colour, "other", "what color is the"))
    shape = str(rng.choice(THING_SHAPES))
    pool.append(QA(f"How many {shape}s are there?", str(counts(scene).get(shape, 0)), "number", "how many"))
    names = sorted({t.name for t in things})
    absent = [f"{c} {s}" for c in THING_COLOURS for s in THING_SHAPES if f"{c} {s}" not in names]
    present = rng.random() < 0.5
    name = str(rng.choice(names if present else absent))
    question = f"Is there {article(name)}?"
    pool.append(QA(question, "yes" if present else "no", "yes/no", question.lower().rsplit(" ", 2)[0]))
    by_colour = [(t, e) for t in things for e in referring_expressions(scene, t) if t.shape not in e.split()]
    if by_colour:
        thing, expression = by_colour[rng.integers(len(by_colour))]
        pool.append(QA(f"What shape is {expression}?", thing.shape, "other", "what"))
    pool.append(QA("Is this indoors or outdoors?", "outdoors" if outdoor(scene) else "indoors", "other", "is this"))
    keep = sorted(rng.choice(len(pool), int(rng.integers(3, len(pool) + 1)), replace=False))
    return [pool[i] for i in keep]


def _inside_or_out(scene: Scene) -> str:
    if outdoor(scene):
        return sentence(f"It is outdoors: there is a blue sky above {ground(scene) or 'the ground'}")
    return "It is indoors: the objects are in front of a wall above a floor."


def conversation(scene: Scene, rng: np.random.Generator) -> list[tuple[str, str]]:
    """Two to four question/answer rounds about the objects and the setting."""
    things = left_to_right(scene)
    listed = join([article(t.name) for t in things])
    shape, count = list(counts(scene).items())[rng.integers(len(counts(scene)))]
    be = "is" if count == 1 else "are"
    pool = [
        ("What objects can you see in the image?", sentence(f"I can see {how_many(len(things), 'object')}: {listed}")),
        ("Is this scene indoors or outdoors?", _inside_or_out(scene)),
        ("What is in the background?", sentence(f"The background shows {setting(scene)}")),
        (f"How many {shape}s are in the picture?", sentence(f"There {be} {how_many(count, shape)} in the picture")),
    ]
    thing = things[rng.integers(len(things))]
    expressions = [e for e in referring_expressions(scene, thing) if thing.colour not in e.split()]
    if expressions:
        expression = expressions[rng.integers(len(expressions))]
        pool.append((f"What color is {expression}?", sentence(f"{expression} is {thing.colour}")))
    if f"the {thing.name}" in referring_expressions(scene, thing):
        where = ", ".join(p for p in (place(scene, thing), region(scene, thing)) if p)
        pool.append((f"Where is the {thing.name}?", sentence(f"The {thing.name} is {where}")))
    chosen = rng.choice(len(pool), int(rng.integers(2, min(4, len(pool)) + 1)), replace=False)
    return [pool[i] for i in chosen]


def reasoning(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    """One question that needs a step of reasoning over the objects, with a worked answer."""
    things = left_to_right(scene)
    (width, height), options = scene.size, []
    edges = {  # side -> distance of a box from that edge
        "left": lambda t: t.bbox[0],
        "right": lambda t: width - t.bbox[0] - t.bbox[2],
        "top": lambda t: t.bbox[1],
        "bottom": lambda t: height - t.bbox[1] - t.bbox[3],
    }
    for side, gap in edges.items():
        first, *rest = sorted(things, key=gap)
        if rest and gap(rest[0]) - gap(first) >= POSITION_MARGIN * (width if side in ("left", "right") else height):
            answer = (
                f"{called(scene, first)} is closest to the {side} edge: it is {gap(first)} pixels from it, "
                f"while the next closest object, {called(scene, rest[0])}, is {gap(rest[0])} pixels away."
            )
            options.append((f"Which object is closest to the {side} edge of the image?", sentence(answer)))
    biggest = extreme(scene, things, "biggest")
    if biggest is not None:
        share = round(100 * biggest.area / (width * height))
        answer = f"{called(scene, biggest)} does: it covers about {share}% of the picture, more than any other object."
        options.append(("Which object takes up the most space in the picture?", sentence(answer)))
    unique = [t for t in things if referring_expressions(scene, t)]
    if unique:
        gone = unique[rng.integers(len(unique))]
        left = [article(t.name) for t in things if t is not gone]
        question = f"If {called(scene, gone)} were taken away, how many objects would be left?"
        if left:
            answer = f"{how_many(len(left), 'object')} would be left: {join(left)}."
        else:
            answer = f"None: {called(scene, gone)} is the only object in the picture."
        options.append((question, sentence(answer)))
    kind = ground(scene)
    if kind == "sand":
        options.append(("Could this scene be at a beach?", "Yes: the ground is sand under a blue sky, as on a beach."))
    elif kind in ("grass", "water"):
        options.append(("Could this scene be at a beach?", f"No: the ground is {kind}, not sand."))
    elif not outdoor(scene):
        options.append(("Could this scene be at a beach?", "No: it is an indoor scene with a wall and a floor."))
    tally = counts(scene)
    if len(tally) >= 2:
        (a, na), (b, nb) = list(tally.items())[:2]
        verdict = "Yes" if na > nb else "No"
        options.append((f"Are there more {a}s than {b}s?", f"{verdict}: there {'is' if na == 1 else 'are'} "
                        f"{how_many(na, a)} and {how_many(nb, b)}."))
    return options[rng.integers(len(options))]
