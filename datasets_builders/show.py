"""One sample as a picture a person can check: its image with every box of its conversation drawn
and labelled, the crayon map beside it, and the conversation under it.

Why: a grounded sample is a picture with boxes and phrases, and its JSON says nothing to the eye;
a box that is off by a resize, a phrase on the wrong object or a crayon map shifted against its
image are obvious here and invisible in the numbers. Pillow only.

Boxes are read from the turns (``{<x0><y0><x1><y1>}`` in the 0..100 grid of the image's own
size); each is labelled with its ``<p>phrase</p>`` where it has one, else with the turn it came
from ("user 1", "assistant 1"): for refer the box is the answer, the expression the question.
"""

from __future__ import annotations

import io
import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from datasets_builders.formats.boxes import SPAN, find_boxes, parse_boxes, to_pixels
from datasets_builders.formats.crayon import read_crayon
from datasets_builders.formats.schema import Sample

PANEL = 448  #: the longer side of each picture panel, in pixels
COLOURS = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (0, 128, 128), (170, 110, 40))
TEXT_WIDTH = 100  #: characters per line of the conversation under the pictures


def labelled_boxes(sample: Sample) -> list[tuple[str, tuple[int, int, int, int]]]:
    """(label, grid box) for every box in the conversation, in order."""
    found = []
    for turn_index, turn in enumerate(sample.turns):
        where = f"{turn.role} {turn_index // 2 + 1}"
        grounded = SPAN.finditer(turn.content)
        spans = [(m.start(), m.end(), m.group(1), parse_boxes(m.group(2))) for m in grounded]
        for _, _, phrase, boxes in spans:
            found += [(phrase, box) for box in boxes]
        rest = "".join(part for part in _outside(turn.content, spans))
        found += [(where, box) for box in find_boxes(rest)]
    return found


def render_sample(sample: Sample) -> Image.Image:
    """The sample as one RGB picture: image with boxes | crayon map (if any); conversation below."""
    font = ImageFont.load_default()
    panels = []
    if sample.image is not None:
        with Image.open(io.BytesIO(sample.image.data)) as picture:
            image = picture.convert("RGB")
        scale = PANEL / max(image.size)
        shown = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
        draw = ImageDraw.Draw(shown)
        labels_at: dict[tuple[int, int, int, int], int] = {}  # a box named twice gets its labels stacked
        for n, (label, box) in enumerate(labelled_boxes(sample)):
            pixels = to_pixels(box, shown.width, shown.height)
            colour = COLOURS[n % len(COLOURS)]
            stacked = labels_at[box] = labels_at.get(box, -1) + 1
            draw.rectangle((pixels.x0, pixels.y0, pixels.x1, pixels.y1), outline=colour, width=3)
            draw.text((pixels.x0 + 3, max(0, pixels.y0 - 12) + 12 * stacked), label[:40], fill=colour, font=font)
        panels.append(shown)
        if "crayon.png" in sample.extras:
            panels.append(crayon_panel(sample.extras["crayon.png"], shown.size))
    lines = [f"{sample.key}  task {sample.task}  split {sample.split}  source {sample.source.dataset}:"
             f"{sample.source.id}"]
    for turn in sample.turns:
        lines += textwrap.wrap(f"{turn.role}: {turn.content}", TEXT_WIDTH) or [f"{turn.role}:"]
    line_height = 14
    width = max(sum(p.width for p in panels) + 10 * max(len(panels) - 1, 0), 6 * TEXT_WIDTH + 20)
    height = max((p.height for p in panels), default=0) + 20 + line_height * len(lines)
    canvas = Image.new("RGB", (width, height), "white")
    x = 0
    for panel in panels:
        canvas.paste(panel, (x, 0))
        x += panel.width + 10
    top = max((p.height for p in panels), default=0) + 10
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((10, top + i * line_height), line, fill="black", font=font)
    return canvas


def crayon_panel(png: bytes, size: tuple[int, int]) -> Image.Image:
    """The crayon map in colour: hue by semantic class, lighter for higher instance numbers."""
    semantic, numbering = read_crayon(png)
    palette = np.array([(0, 0, 0), *COLOURS], np.float32)
    colour = palette[np.where(semantic > 0, 1 + semantic % len(COLOURS), 0)]
    colour = colour + (255 - colour) * np.clip(numbering[..., None].astype(np.float32) * 0.12, 0, 0.6)
    return Image.fromarray(colour.astype(np.uint8)).resize(size, Image.NEAREST)


def _outside(text: str, spans: list[tuple[int, int, str, list]]) -> list[str]:
    parts, at = [], 0
    for start, end, _, _ in spans:
        parts.append(text[at:start])
        at = end
    return [*parts, text[at:]]
