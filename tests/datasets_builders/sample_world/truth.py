"""An independent reading of sample-world text against a scene's ground truth.

Deliberately naive and separate from ``language.py``: it reads the colour, shape and spatial
words of an expression the way a person would, so the tests do not trust the generator's logic.
"""

from __future__ import annotations

import re

from datasets_builders.sample_world.scene import THING_COLOURS, THING_SHAPES, Scene, Thing

SPATIAL = {  # word -> (value of a thing, True if the largest value wins)
    "left": (lambda t: t.bbox[0] + t.bbox[2] / 2, False),
    "leftmost": (lambda t: t.bbox[0] + t.bbox[2] / 2, False),
    "right": (lambda t: t.bbox[0] + t.bbox[2] / 2, True),
    "rightmost": (lambda t: t.bbox[0] + t.bbox[2] / 2, True),
    "top": (lambda t: t.bbox[1] + t.bbox[3] / 2, False),
    "bottom": (lambda t: t.bbox[1] + t.bbox[3] / 2, True),
    "biggest": (lambda t: t.area, True),
    "largest": (lambda t: t.area, True),
    "smallest": (lambda t: t.area, False),
}


def denotes(scene: Scene, expression: str) -> list[Thing]:
    """The objects an expression like "the red circle" or "the square on the left" can mean."""
    words = expression.lower().strip(" .?").split()
    colours = [w for w in words if w in THING_COLOURS]
    shapes = [w for w in words if w in THING_SHAPES]
    spatial = [w for w in words if w in SPATIAL]
    assert len(colours) <= 1 and len(shapes) <= 1 and len(spatial) <= 1, expression
    candidates = [
        t
        for t in scene.things
        if (not colours or t.colour == colours[0]) and (not shapes or t.shape == shapes[0])
    ]
    if not spatial or not candidates:
        return candidates
    value, largest = SPATIAL[spatial[0]]
    best = (max if largest else min)(value(t) for t in candidates)
    return [t for t in candidates if value(t) == best]


def the_one(scene: Scene, expression: str) -> Thing:
    found = denotes(scene, expression)
    assert len(found) == 1, (expression, found)
    return found[0]


STUFF_WORDS = {  # a background word -> the stuff categories that make it true
    "sky": {"sky"}, "grass": {"grass"}, "grassy": {"grass"}, "field": {"grass"}, "water": {"water"},
    "sand": {"sand"}, "sandy": {"sand"}, "beach": {"sand"}, "wall": {"wall"}, "floor": {"floor"},
    "room": {"wall", "floor"}, "indoor": {"wall", "floor"}, "outdoor": {"sky"},
}


def background_is_true(scene: Scene, text: str) -> bool:
    """Every background word in ``text`` names stuff that is in the picture."""
    categories = {s.category for s in scene.stuff}
    words = text.lower().replace(",", " ").replace(".", " ").split()
    return all(STUFF_WORDS[w] & categories for w in words if w in STUFF_WORDS)


def count_of(scene: Scene, shape: str) -> int:
    return sum(t.shape == shape for t in scene.things)


def is_outdoor(scene: Scene) -> bool:
    return "sky" in {s.category for s in scene.stuff}


def check_answer(scene, question: str, answer: str) -> None:
    """Assert that a short answer to one of the sample world's question kinds is right."""
    if m := re.fullmatch(r"How many (\w+)s are (?:there|in the picture)\?", question):
        assert int(answer) == count_of(scene, m[1])
    elif m := re.fullmatch(r"What colou?r is (.+)\?", question):
        assert answer == the_one(scene, m[1]).colour
    elif m := re.fullmatch(r"What shape is (.+)\?", question):
        assert answer == the_one(scene, m[1]).shape
    elif m := re.fullmatch(r"Is there an? (\w+) (\w+)\?", question):
        present = any(t.colour == m[1] and t.shape == m[2] for t in scene.things)
        assert answer == ("yes" if present else "no")
    elif question == "Is this indoors or outdoors?":
        assert answer == ("outdoors" if is_outdoor(scene) else "indoors")
    else:
        raise AssertionError(f"unknown question {question!r}")
