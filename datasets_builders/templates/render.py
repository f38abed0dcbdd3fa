"""Structured fields -> conversation text, the one place a task's wording is decided.

Builders call :func:`render` with a sample's key, so the stored text is reproducible; the
training collator calls it again with another ``template`` index to vary the wording per epoch,
as MiniGPT-v2 does. The fields each task takes (pixel boxes are 0-based ``[x0, y0, x1, y1]``
with exclusive right/bottom edges, in the original image):

    caption            {"caption"}
    vqa                {"question", "answer"}
    refer, identify    {"expression", "box"}
    grounding,
    detection-caption  {"caption", "phrases": [{"start", "end", "boxes"}]}  (character spans)
    detection-phrase   {"phrase", "boxes"}
    crayon             {"segments": [{"class", "number", "box"}], "select_class"}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

import xxhash
import yaml

from datasets_builders.formats.boxes import PixelBox, format_box, format_boxes, format_phrase
from datasets_builders.formats.schema import Turn

Fields = Mapping[str, Any]
CRAYON_KINDS = ("crayon-objects", "crayon-boxes", "crayon-class")


class TemplateError(ValueError):
    """The template file is malformed or a task has no pool."""


@cache
def pools() -> dict[str, tuple[str, ...]]:
    """The template pools of ``instructions.yaml``, validated once."""
    text = resources.files("datasets_builders.templates").joinpath("instructions.yaml").read_text("utf-8")
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        raise TemplateError("instructions.yaml: expected a mapping of task -> list of templates")
    for task, pool in doc.items():
        if not isinstance(pool, list) or not pool or not all(isinstance(t, str) and t.strip() for t in pool):
            raise TemplateError(f"instructions.yaml: task {task!r} needs a non-empty list of template strings")
    return {task: tuple(pool) for task, pool in doc.items()}


def choose(task: str, key: str) -> int:
    """The template index for a sample: a hash of (task, key), so it never depends on build order."""
    return xxhash.xxh3_64_intdigest(f"{task}\x1f{key}".encode()) % len(_pool(task))


def render(task: str, fields: Fields, *, key: str, width: int = 0, height: int = 0,
           template: int | None = None) -> tuple[Turn, ...]:
    """The turns of one sample; ``template`` overrides the key's choice (taken modulo the pool)."""
    if task not in _RENDERERS:
        raise TemplateError(f"no renderer for task {task!r} (known: {sorted(_RENDERERS)})")
    pairs = _RENDERERS[task](fields, lambda kind: _template(kind, key, template), width, height)
    return tuple(Turn(role, text) for q, a in pairs for role, text in (("user", q), ("assistant", a)))


def grounded_caption(caption: str, phrases: Sequence[Fields], width: int, height: int) -> str:
    """The caption with every boxed phrase replaced by ``<p>phrase</p> {box}[<delim>{box}]``."""
    out, at = [], 0
    for p in sorted(phrases, key=lambda p: p["start"]):
        out += [caption[at:p["start"]], format_phrase(caption[p["start"]:p["end"]], _boxes(p["boxes"]), width, height)]
        at = p["end"]
    return "".join(out) + caption[at:]


def unit_box(box: Sequence[float], width: int, height: int) -> str:
    """CoLLaVO's box text: corners as fractions of the image size with two decimals."""
    x0, y0, x1, y1 = box
    return f"[{x0 / width:.2f}, {y0 / height:.2f}, {x1 / width:.2f}, {y1 / height:.2f}]"


def _template(kind: str, key: str, template: int | None) -> str:
    pool = _pool(kind)
    return pool[(choose(kind, key) if template is None else template) % len(pool)]


def _pool(kind: str) -> tuple[str, ...]:
    try:
        return pools()[kind]
    except KeyError:
        raise TemplateError(f"instructions.yaml has no pool for {kind!r}") from None


def _boxes(boxes: Sequence[Sequence[float]]) -> list[PixelBox]:
    return [PixelBox(*b) for b in boxes]


Pick = Callable[[str], str]
Pairs = list[tuple[str, str]]


def _caption(f: Fields, pick: Pick, w: int, h: int) -> Pairs:
    return [(pick("caption"), f["caption"])]


def _vqa(f: Fields, pick: Pick, w: int, h: int) -> Pairs:
    return [(pick("vqa").format(f["question"]), f["answer"])]


def _refer(f: Fields, pick: Pick, w: int, h: int) -> Pairs:
    return [(pick("refer").format(f["expression"]), format_box(PixelBox(*f["box"]), w, h))]


def _identify(f: Fields, pick: Pick, w: int, h: int) -> Pairs:
    return [(pick("identify").format(format_box(PixelBox(*f["box"]), w, h)), f["expression"])]


def _grounding(f: Fields, pick: Pick, w: int, h: int) -> Pairs:
    return [(pick("grounding"), grounded_caption(f["caption"], f["phrases"], w, h))]


def _detection_caption(f: Fields, pick: Pick, w: int, h: int) -> Pairs:
    caption = f["caption"]
    spans = sorted(f["phrases"], key=lambda p: p["start"])
    listed = ", ".join(format_phrase(caption[p["start"]:p["end"]], _boxes(p["boxes"]), w, h) for p in spans)
    return [(pick("detection-caption").format(caption), listed)]


def _detection_phrase(f: Fields, pick: Pick, w: int, h: int) -> Pairs:
    return [(pick("detection-phrase").format(f["phrase"]), f"<p>{f['phrase']}</p> {format_boxes(_boxes(f['boxes']), w, h)}")]


def _crayon(f: Fields, pick: Pick, w: int, h: int) -> Pairs:
    segments = f["segments"]
    named = [f"#{s['number']} {s['class']}" for s in segments]
    boxed = [f"(#{s['number']} {s['class']}) {unit_box(s['box'], w, h)}" for s in segments]
    chosen = [b for s, b in zip(segments, boxed) if s["class"] == f["select_class"]]
    if not segments:
        return [(pick("crayon-objects"), "None.")]
    return [
        (pick("crayon-objects"), ", ".join(named)),
        (pick("crayon-boxes"), "Sure, it is " + ", ".join(boxed) + "."),
        (pick("crayon-class").format(f["select_class"]), "Sure, it is " + ", ".join(chosen) + "." if chosen else "None."),
    ]


_RENDERERS: dict[str, Callable[[Fields, Pick, int, int], Pairs]] = {
    "caption": _caption,
    "vqa": _vqa,
    "refer": _refer,
    "identify": _identify,
    "grounding": _grounding,
    "detection-caption": _detection_caption,
    "detection-phrase": _detection_phrase,
    "crayon": _crayon,
}
TASKS = tuple(_RENDERERS)
