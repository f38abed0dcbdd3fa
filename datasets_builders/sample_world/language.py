"""Text that is true of a scene, made only from its ground truth so a model can learn from it.

Every function here is a pure function of a :class:`Scene` and, where it chooses among wordings,
a NumPy generator that the caller seeds per image and purpose (``default_rng([seed, index,
salt])``), so a world always reads the same. Positions come from box centres. A spatial or size
word is used only when the object is clearly the extreme one (its centre 5% of the image ahead of
the runner-up, or a quarter more area), so a person can check the text by eye.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from datasets_builders.sample_world.scene import OUTDOOR_GROUNDS, THING_COLOURS, THING_SHAPES, Scene, Thing, caption

NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
STUFF_PHRASES = {  # category -> noun phrases that name it
    "sky": ("a blue sky", "the sky", "the blue sky"),
    "grass": ("green grass", "the grass", "a grassy field"),
    "water": ("blue water", "the water", "calm water"),
    "sand": ("pale sand", "the sand", "a sandy beach"),
    "wall": ("a pale wall", "the wall"),
    "floor": ("a brown floor", "the floor"),
}
PLACES = {"grass": "a grassy field", "water": "a stretch of water", "sand": "a sandy beach", "floor": "a room"}
POSITION_MARGIN = 0.05  #: of the image width (left/right) or height (top/bottom)
SIZE_MARGIN = math.log(1.25)  #: the biggest has at least 25% more area than the next
HORIZON_MARGIN = 14  #: pixels: the horizon wave spans at most 13 rows

_KEYS: dict[str, tuple[Callable[[Thing], float], int | None]] = {  # word -> (minimised, image axis)
    "left": (lambda t: centre(t)[0], 0),
    "right": (lambda t: -centre(t)[0], 0),
    "top": (lambda t: centre(t)[1], 1),
    "bottom": (lambda t: -centre(t)[1], 1),
    "biggest": (lambda t: -math.log(t.area), None),
    "smallest": (lambda t: math.log(t.area), None),
}
_FORMS = {
    "left": ("the left {}", "the {} on the left"),
    "right": ("the right {}", "the {} on the right"),
    "top": ("the top {}", "the {} at the top"),
    "bottom": ("the bottom {}", "the {} at the bottom"),
    "biggest": ("the biggest {}", "the largest {}"),
    "smallest": ("the smallest {}",),
}


@dataclass(frozen=True)
class Mention:
    """An annotated phrase of a grounded sentence; ``target`` says which entity it names.

    Targets: ``("thing", segment)``, ``("stuff", segment)``, ``("group", *segments)`` (several
    objects as one entity), ``("extreme", segment)`` (an object named by position, a second
    entity on the same box), ``("light",)`` (named but not boxed) and ``("notvisual",)``.
    """

    words: str
    target: tuple


Sentence = tuple["str | Mention", ...]


def centre(thing: Thing) -> tuple[float, float]:
    x, y, w, h = thing.bbox
    return x + w / 2, y + h / 2


def article(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def join(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def sentence(text: str) -> str:
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "?", "!")) else ".")


def left_to_right(scene: Scene) -> list[Thing]:
    return sorted(scene.things, key=lambda t: (centre(t)[0], t.segment_id))


def outdoor(scene: Scene) -> bool:
    return any(s.category == "sky" for s in scene.stuff)


def ground(scene: Scene) -> str | None:
    return next((s.category for s in scene.stuff if s.category in (*OUTDOOR_GROUNDS, "floor")), None)


def extreme(scene: Scene, things: list[Thing], word: str) -> Thing | None:
    """The one of ``things`` that is clearly the most ``word`` (left, biggest, ...), else None."""
    if len(things) < 2:
        return None
    key, axis = _KEYS[word]
    first, second = sorted(things, key=key)[:2]
    margin = SIZE_MARGIN if axis is None else POSITION_MARGIN * scene.size[axis]
    return first if key(second) - key(first) >= margin else None


def referring_expressions(scene: Scene, thing: Thing) -> list[str]:
    """Every expression this module can make that fits ``thing`` and no other object."""
    groups = (
        ([t for t in scene.things if t.shape == thing.shape], thing.shape),
        ([t for t in scene.things if t.name == thing.name], thing.name),
        ([t for t in scene.things if t.colour == thing.colour], f"{thing.colour} object"),
        (list(scene.things), "object"),
    )
    out: list[str] = []
    for group, noun in groups:
        if len(group) == 1 and noun != "object":
            out.append(f"the {noun}")
        for word, forms in _FORMS.items():
            if extreme(scene, group, word) is thing:
                out.extend(form.format(noun) for form in forms)
    return list(dict.fromkeys(out))


_POSITION_WORDS = frozenset({"left", "right", "top", "bottom", "biggest", "largest", "smallest"})
_ATTRIBUTE_WORDS = frozenset({*THING_COLOURS, *THING_SHAPES})


def expression_kind(expression: str) -> str:
    """What a referring expression singles its object out by: "attribute" (colour or shape: "the
    red circle"), "position" (where or how big, among all objects: "the object on the left") or
    "both" ("the leftmost circle"). Evaluation reports refer and identify per kind."""
    words = set(expression.split())
    by_position, by_attribute = bool(words & _POSITION_WORDS), bool(words & _ATTRIBUTE_WORDS)
    return "both" if by_position and by_attribute else "position" if by_position else "attribute"


def place(scene: Scene, thing: Thing) -> str:
    """Where the object is, by thirds of the image: "on the left, near the top"."""
    (cx, cy), (width, height) = centre(thing), scene.size
    across = "on the left" if cx < width / 3 else "on the right" if cx > 2 * width / 3 else ""
    up = "near the top" if cy < height / 3 else "near the bottom" if cy > 2 * height / 3 else ""
    return ", ".join(p for p in (across, up) if p) or "in the centre"


def region(scene: Scene, thing: Thing) -> str | None:
    """The stuff the object lies wholly in front of ("in the sky", "on the grass"), if clear."""
    top, bottom = (next((s for s in scene.stuff if s.segment_id == i), None) for i in (1, 2))
    if top is None or bottom is None:
        return None
    x, y, w, h = thing.bbox
    if y + h <= top.bbox[1] + top.bbox[3] - HORIZON_MARGIN:
        return "in the sky" if top.category == "sky" else "on the wall"
    if y >= bottom.bbox[1] + HORIZON_MARGIN:
        return {"water": "over the water"}.get(bottom.category, f"on the {bottom.category}")
    return None


def setting(scene: Scene) -> str:
    """The background as a noun phrase: "a blue sky and green grass"."""
    return join([STUFF_PHRASES[s.category][0] for s in scene.stuff])


def counts(scene: Scene) -> dict[str, int]:
    """Objects per shape, for the shapes present, in order of first appearance from the left."""
    out: dict[str, int] = {}
    for thing in left_to_right(scene):
        out[thing.shape] = out.get(thing.shape, 0) + 1
    return out


def how_many(count: int, shape: str) -> str:
    return f"{NUMBER_WORDS[count]} {shape}" + ("" if count == 1 else "s")


def captions(scene: Scene, rng: np.random.Generator, n: int = 5) -> list[str]:
    """``n`` different COCO-style one-sentence captions, each naming every object."""
    things = left_to_right(scene)
    listed = join([article(t.name) for t in things])
    mixed = join([article(things[i].name) for i in rng.permutation(len(things))])
    count = len(things)
    group = f"{NUMBER_WORDS[count]} shapes, {listed}," if count > 1 else f"a single {things[0].name}"
    spots = join([f"{article(t.name)} {place(scene, t).replace(',', '')}" for t in things])
    where = PLACES.get(ground(scene) or "", "a plain scene")
    options = [
        f"{group} in front of {setting(scene)}",
        f"{mixed} in {where}",
        f"a picture of {mixed} with {setting(scene)} behind",
        f"{where} with {listed}",
        f"{spots}",
        f"there {'is' if count == 1 else 'are'} {mixed} in this picture",
        f"a simple drawing of {listed}",
    ]
    options = [o for o in dict.fromkeys(options) if o != caption(scene)]  # "... in a room" may repeat it
    chosen = [caption(scene)] + [options[i] for i in rng.choice(len(options), n - 1, replace=False)]
    return [sentence(c) for c in chosen]


def detailed_description(scene: Scene) -> str:
    """A paragraph naming the setting, the counts and every object's colour, shape and place."""
    things = left_to_right(scene)
    inside = "an outdoor scene" if outdoor(scene) else "an indoor scene"
    parts = [f"This is {inside} with {setting(scene)}."]
    if len(things) > 1:
        tally = join([how_many(c, s) for s, c in counts(scene).items()])
        parts.append(f"In front of it there are {how_many(len(things), 'object')}: {tally}.")
    for thing in things:
        where = ", ".join(p for p in (place(scene, thing), region(scene, thing)) if p)
        parts.append(sentence(f"{article(thing.name)} is {where}"))
    biggest = extreme(scene, things, "biggest")
    if biggest is not None:
        share = round(100 * biggest.area / (scene.size[0] * scene.size[1]))
        unique = sum(t.name == biggest.name for t in things) == 1
        name = f"the {biggest.name}" if unique else article(biggest.name)
        parts.append(f"The largest object is {name}, covering about {share}% of the picture.")
    return " ".join(parts)


def entity_sentences(scene: Scene, rng: np.random.Generator, n: int = 5) -> list[Sentence]:
    """``n`` Flickr30k-Entities-style sentences whose phrases name scene entities.

    The first lists every object; with two or more objects one sentence names them as a group
    (one chain, several boxes) and, when one object is clearly extreme, one names it by position
    (its box then belongs to two chains).
    """
    things = left_to_right(scene)
    each = [Mention(article(t.name), ("thing", t.segment_id)) for t in things]
    stuff = [Mention(str(rng.choice(STUFF_PHRASES[s.category])), ("stuff", s.segment_id)) for s in scene.stuff]
    verb = "is" if len(things) == 1 else "are"

    def listed(mentions: list[Mention]) -> list[str | Mention]:
        out: list[str | Mention] = [mentions[0]]
        for i, m in enumerate(mentions[1:], start=2):
            out += ["and" if i == len(mentions) else ",", m]
        return out

    backdrop = listed(stuff) if stuff else [Mention("the picture", ("notvisual",))]
    first: Sentence = (*listed(each), verb, "in front of", *backdrop)
    fixed: list[Sentence] = [first]
    if len(things) > 1:
        noun = str(rng.choice(("shapes", "objects")))
        group = ("group", *(t.segment_id for t in things))
        fixed.append((Mention(f"{NUMBER_WORDS[len(things)]} {noun}", group), "are drawn over", *backdrop))
        for word, adjective in (("left", "leftmost"), ("right", "rightmost"), ("biggest", "biggest")):
            target = extreme(scene, things, word)
            if target is not None:
                mention = Mention(f"the {adjective} shape", ("extreme", target.segment_id))
                fixed.append((mention, "is", each[things.index(target)]))
                break
    shuffled = [each[i] for i in rng.permutation(len(each))]
    spots: list[str | Mention] = []
    for i, (thing, mention) in enumerate(zip(things, each)):
        spots += ([] if i == 0 else ["and" if i == len(things) - 1 else ","]) + [mention, "is"]
        spots += place(scene, thing).replace(",", "").split()
    extras: list[Sentence] = [
        (Mention("the picture", ("notvisual",)), "shows", *listed(shuffled)),
        (*listed(shuffled), verb, "lit from above by", Mention("soft light", ("light",))),
        tuple(spots),
        (*backdrop, "with", *listed(shuffled)),
        ("there", verb, *listed(shuffled), "in", Mention("this picture", ("notvisual",))),
    ]
    chosen = [extras[i] for i in rng.choice(len(extras), n - len(fixed), replace=False)]
    return fixed + [chosen[i] for i in rng.permutation(len(chosen))]
