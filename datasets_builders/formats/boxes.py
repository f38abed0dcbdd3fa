"""MiniGPT-v2's location text: ``{<x1><y1><x2><y2>}`` boxes and ``<p>phrase</p> {box}`` spans.

Every builder formats boxes here and every consumer (tests, evaluation, the chat demo) parses
them here, so the two can never drift. Rules (docs: minigptv2-data-spec.md section 4):

- corners in 0..100, each ``int(corner / size * 100)``: truncated, never rounded, against the
  *original* image width or height (the model's plain resize keeps relative positions);
- no spaces inside a box; several boxes of one phrase are joined ``}<delim>{``;
- a grounded phrase is ``<p>phrase</p> {box}``: one space before the brace.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

DELIM = "<delim>"
EDGE_SLACK = 1e-3  # pixels: float sums like x + w may overshoot the image edge by rounding noise
_BOX = r"\{<\d{1,3}><\d{1,3}><\d{1,3}><\d{1,3}>\}"
BOX = re.compile(r"\{<(\d{1,3})><(\d{1,3})><(\d{1,3})><(\d{1,3})>\}")
# A grounded span ends at a "}" that is not followed by "<" (MiniGPT-v2's demo parser does the same).
SPAN = re.compile(rf"<p>(.*?)</p> ({_BOX}(?:<delim>{_BOX})*)(?!<)")


class BoxError(ValueError):
    """A box is empty, inverted, outside its image, or not in the box-string format."""


@dataclass(frozen=True)
class PixelBox:
    """A box in original-image pixels, 0-based, right/bottom edges exclusive (COCO's x+w, y+h)."""

    x0: float
    y0: float
    x1: float
    y1: float

    @classmethod
    def from_xywh(cls, box: Sequence[float]) -> PixelBox:
        x, y, w, h = (float(v) for v in box)
        return cls(x, y, x + w, y + h)

    def xywh(self) -> list[float]:
        return [self.x0, self.y0, self.x1 - self.x0, self.y1 - self.y0]

    def xyxy(self) -> list[float]:
        return [self.x0, self.y0, self.x1, self.y1]

    def check(self, width: int, height: int) -> PixelBox:
        """Return self if it is a non-empty box inside a ``width`` x ``height`` image, else raise."""
        if not (self.x1 > self.x0 and self.y1 > self.y0):
            raise BoxError(f"box {_show(self)} has zero or negative area")
        if min(self.x0, self.y0) < -EDGE_SLACK or self.x1 > width + EDGE_SLACK or self.y1 > height + EDGE_SLACK:
            raise BoxError(f"box {_show(self)} lies outside the {width}x{height} image")
        return self


def normalise(box: PixelBox, width: int, height: int) -> tuple[int, int, int, int]:
    """Corners as integer percent of the original size, truncated (MiniGPT-v2's ``int()``)."""
    box.check(width, height)
    return (_percent(box.x0, width), _percent(box.y0, height), _percent(box.x1, width), _percent(box.y1, height))


def format_box(box: PixelBox, width: int, height: int) -> str:
    """``{<x1><y1><x2><y2>}`` for a pixel box of an image of the given original size."""
    x0, y0, x1, y1 = normalise(box, width, height)
    return f"{{<{x0}><{y0}><{x1}><{y1}>}}"


def format_boxes(boxes: Sequence[PixelBox], width: int, height: int) -> str:
    """Several boxes of one phrase, joined ``}<delim>{`` in the given order."""
    if not boxes:
        raise BoxError("a phrase needs at least one box")
    return DELIM.join(format_box(b, width, height) for b in boxes)


def format_phrase(phrase: str, boxes: Sequence[PixelBox], width: int, height: int) -> str:
    """``<p>phrase</p> {box}[<delim>{box}...]``."""
    return f"<p>{phrase}</p> {format_boxes(boxes, width, height)}"


def parse_box(text: str) -> tuple[int, int, int, int]:
    """The four integers of exactly one box string; raises BoxError for anything else."""
    m = BOX.fullmatch(text)
    if m is None:
        raise BoxError(f"not a box string: {text!r}")
    corners = tuple(int(v) for v in m.groups())
    if any(v > 100 for v in corners) or corners[2] < corners[0] or corners[3] < corners[1]:
        raise BoxError(f"box string {text!r} has corners outside 0..100 or inverted")
    return corners  # type: ignore[return-value]


def parse_boxes(text: str) -> list[tuple[int, int, int, int]]:
    """Boxes joined with ``<delim>`` (one box is the one-element case)."""
    return [parse_box(part) for part in text.split(DELIM)]


def parse_grounded(text: str) -> list[tuple[str, list[tuple[int, int, int, int]]]]:
    """Every ``<p>phrase</p> {box}...`` span in running text, in order: (phrase, boxes)."""
    return [(m.group(1), parse_boxes(m.group(2))) for m in SPAN.finditer(text)]


def strip_grounding(text: str) -> str:
    """The plain text of a grounded caption: markup and boxes removed."""
    return SPAN.sub(lambda m: m.group(1), text)


def find_boxes(text: str) -> list[tuple[int, int, int, int]]:
    """Every well-formed box anywhere in free text (a model's answer), in order; malformed ones skipped."""
    found = []
    for m in BOX.finditer(text):
        try:
            found.append(parse_box(m.group(0)))
        except BoxError:
            continue
    return found


def to_pixels(corners: Sequence[int], width: int, height: int) -> PixelBox:
    """Percent corners back to pixels of a ``width`` x ``height`` image (the truncation is not undone)."""
    x0, y0, x1, y1 = corners
    return PixelBox(x0 / 100 * width, y0 / 100 * height, x1 / 100 * width, y1 / 100 * height)


def _percent(value: float, size: int) -> int:
    return min(100, max(0, int(value / size * 100)))


def _show(box: PixelBox) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box.xyxy()) + "] (x0, y0, x1, y1)"
