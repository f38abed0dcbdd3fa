"""The world as GRIT-20M downloaded with img2dataset (the dataset card's command), in the layout of
:mod:`datasets_builders.sample_world.image_text`.

Each json carries GRIT's columns: id, caption, clip similarities, and ``noun_chunks`` /
``ref_exps`` as ``[start, end, x_min, y_min, x_max, y_max, confidence]`` (offsets into the
caption, the box as fractions of the picture; floats, as img2dataset copies GRIT's
``list<list<double>>`` columns). The caption names the ground and every object from left to
right: "a grassy field with the circle on the left, the blue square and a red triangle". An object
that some expression singles out is named by it (language.py's referring expressions, "... object"
ones only when there is no other), giving a
referring expression span whose noun chunk is its head ("the circle"); any other object is named
"a/an <colour> <shape>", a noun chunk only. An outdoor ground ("a grassy field") is a noun chunk
boxed to its region. Spans are listed by confidence (0.6-0.95), highest first, as GRIT's are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from datasets_builders.sample_world.common import WorldImage
from datasets_builders.sample_world.image_text import url_list, write_download
from datasets_builders.sample_world.language import PLACES, article, ground, left_to_right, referring_expressions
from datasets_builders.sample_world.scene import OUTDOOR_GROUNDS

SALT = 8
FIRST_ID = 4_000_000_000_000
SPANS = pa.list_(pa.list_(pa.float64()))
COLUMNS = [("id", pa.int64()), ("noun_chunks", SPANS), ("ref_exps", SPANS),
           ("clip_similarity_vitb32", pa.float64()), ("clip_similarity_vitl14", pa.float64())]
_TAILS = (" on the ", " at the ")  # "the circle on the left": the noun chunk ends before these


def describe(image: WorldImage) -> tuple[str, dict[str, Any]]:
    """The caption and GRIT's columns for one image."""
    scene, rng = image.scene, image.rng(SALT)
    bottom = ground(scene)
    caption = PLACES.get(bottom or "", "a plain scene") + " with "
    spans: list[tuple[list[float], tuple[int, int] | None]] = []  # (noun chunk, ref exp span)
    if bottom in OUTDOOR_GROUNDS:
        region = next(s for s in scene.stuff if s.category == bottom)
        spans.append((_span(0, len(caption) - len(" with "), region.bbox, image), None))
    things = left_to_right(scene)
    for i, thing in enumerate(things):
        if i:
            caption += " and " if i == len(things) - 1 else ", "
        expressions = referring_expressions(scene, thing)
        named = [e for e in expressions if "object" not in e] or expressions  # "the object on the left" reads oddly
        words = str(rng.choice(named)) if named else article(thing.name)
        head = min((words.index(t) for t in _TAILS if t in words), default=len(words))
        refer = (len(caption), len(caption) + len(words)) if expressions else None
        spans.append((_span(len(caption), len(caption) + head, thing.bbox, image), refer))
        caption += words
    confidences = [round(float(rng.uniform(0.6, 0.95)), 8) for _ in spans]
    ranked = sorted(zip(spans, confidences), key=lambda item: -item[1])
    chunks = [[*chunk, c] for (chunk, _), c in ranked]
    refs = [[float(r[0]), float(r[1]), *chunk[2:], c] for (chunk, r), c in ranked if r is not None]
    clip = [round(float(v), 6) for v in rng.uniform(0.28, 0.4, 2)]
    extra = {"id": FIRST_ID + image.index, "noun_chunks": chunks, "ref_exps": refs,
             "clip_similarity_vitb32": clip[0], "clip_similarity_vitl14": clip[1]}
    return caption, extra


def dead(position: int) -> dict[str, Any]:
    """GRIT's columns of a url that no longer answers."""
    return {"id": FIRST_ID - 1 - position, "noun_chunks": [], "ref_exps": [],
            "clip_similarity_vitb32": 0.3, "clip_similarity_vitl14": 0.3}


def write(world: list[WorldImage], out_dir: Path, seed: int) -> None:
    write_download(out_dir, url_list(world, seed, describe, dead), COLUMNS)


def _span(start: int, end: int, bbox: tuple[int, int, int, int], image: WorldImage) -> list[float]:
    """``[start, end, x_min, y_min, x_max, y_max]`` with the box as fractions of the picture."""
    x, y, w, h = bbox
    return [float(start), float(end), x / image.width, y / image.height, (x + w) / image.width, (y + h) / image.height]
