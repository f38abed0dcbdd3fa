"""Seeded synthetic scenes with exact ground truth: the embedded default data.

A scene is a photo-like picture of "stuff" regions (sky over grass, water or sand; or a wall over
a floor) with a few coloured "thing" objects of known shape on top. It is rendered together
with its panoptic segment-id map, so every visible pixel belongs to exactly one segment, and
each object's box and area are measured on the final map (occlusion included). Text made from
a scene (captions, expressions, answers) is therefore true of the picture. The same
``(seed, index)`` always gives the same scene, independently of every other scene.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

STUFF_COLOURS = {  # category -> base RGB
    "sky": (135, 185, 235),
    "grass": (80, 150, 60),
    "water": (40, 90, 160),
    "sand": (215, 195, 140),
    "wall": (190, 180, 165),
    "floor": (120, 90, 60),
}
OUTDOOR_GROUNDS = ("grass", "water", "sand")
GROUND_PREPOSITION = {"grass": "on", "water": "over", "sand": "on"}
THING_SHAPES = ("circle", "square", "triangle", "diamond")
THING_COLOURS = {
    "red": (210, 40, 40),
    "blue": (40, 70, 220),
    "yellow": (240, 210, 40),
    "purple": (140, 50, 170),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
    "black": (25, 25, 25),
}
MIN_VISIBLE = 0.6  # an object hidden beyond this is redrawn elsewhere, so text about it stays true


@dataclass(frozen=True)
class Thing:
    segment_id: int
    shape: str  #: the category
    colour: str
    bbox: tuple[int, int, int, int]  #: x, y, w, h of the visible pixels
    area: int  #: visible pixels

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Stuff:
    segment_id: int
    category: str
    bbox: tuple[int, int, int, int]
    area: int


@dataclass(frozen=True)
class Scene:
    index: int
    image: Image.Image  #: RGB
    segments: np.ndarray  #: (H, W) int32 segment ids; every pixel belongs to one segment
    things: tuple[Thing, ...]
    stuff: tuple[Stuff, ...]

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size

    def jpeg(self, quality: int = 90) -> bytes:
        out = io.BytesIO()
        self.image.save(out, "JPEG", quality=quality)
        return out.getvalue()


def generate_scene(
    seed: int,
    index: int,
    *,
    size_range: tuple[int, int] = (320, 512),
    max_things: int = 4,
    noise: float = 6.0,
) -> Scene:
    """Scene ``index`` of the world ``seed``; ``noise`` is the std-dev of pixel texture."""
    rng = np.random.default_rng([seed, index])
    width = int(rng.integers(size_range[0], size_range[1] + 1))
    height = int(rng.integers(size_range[0] * 3 // 4, size_range[1] * 3 // 4 + 1))
    canvas = Image.new("RGB", (width, height))
    ids = Image.new("I", (width, height), 0)
    draw, draw_ids = ImageDraw.Draw(canvas), ImageDraw.Draw(ids)

    outdoor = rng.random() < 0.75
    top, bottom = ("sky", str(rng.choice(OUTDOOR_GROUNDS))) if outdoor else ("wall", "floor")
    horizon = int(height * rng.uniform(0.35, 0.6))
    wave = rng.uniform(0, 2 * np.pi)
    edge = [(x, horizon + int(6 * np.sin(wave + x / 37))) for x in range(0, width + 8, 8)]
    draw.rectangle((0, 0, width, height), fill=STUFF_COLOURS[top])
    draw_ids.rectangle((0, 0, width, height), fill=1)
    lower = [(0, height), *edge, (width, height)]
    draw.polygon(lower, fill=STUFF_COLOURS[bottom])
    draw_ids.polygon(lower, fill=2)

    placed: list[tuple[int, str, str, tuple[int, int, int, int]]] = []
    wanted = int(rng.integers(1, max_things + 1))
    for _ in range(wanted * 4):  # a few tries per object; crowded scenes end up with fewer
        if len(placed) == wanted:
            break
        shape = str(rng.choice(THING_SHAPES))
        colour = str(rng.choice(list(THING_COLOURS)))
        r = int(rng.integers(min(width, height) // 14, min(width, height) // 5))
        cx, cy = int(rng.integers(r, width - r)), int(rng.integers(r, height - r))
        segment = 3 + len(placed)
        box = (cx - r, cy - r, cx + r, cy + r)
        if any(c == colour and _near(box, b) for _, _, c, b in placed):
            continue  # same-coloured objects that touch would read as one blob
        ids_before, canvas_before = np.asarray(ids).copy(), canvas.copy()
        _draw_shape(draw, shape, cx, cy, r, THING_COLOURS[colour])
        _draw_shape(draw_ids, shape, cx, cy, r, segment)
        ids_after = np.asarray(ids)
        # Keep the new object only if every earlier one stays mostly visible.
        if any((ids_after == s).sum() < MIN_VISIBLE * (ids_before == s).sum() for s, *_ in placed):
            canvas.paste(canvas_before)
            ids.paste(Image.fromarray(ids_before, "I"))
            continue
        placed.append((segment, shape, colour, box))

    segments = np.asarray(ids, dtype=np.int32)
    pixels = np.asarray(canvas, dtype=np.float32)
    shade = np.linspace(1.06, 0.94, height, dtype=np.float32)[:, None, None]  # soft light from above
    texture = rng.normal(0.0, noise, size=pixels.shape).astype(np.float32)
    image = Image.fromarray(np.clip(pixels * shade + texture, 0, 255).astype(np.uint8), "RGB")

    things = tuple(Thing(s, shape, colour, *_measure(segments, s)) for s, shape, colour, _ in placed)
    stuff = tuple(Stuff(s, name, *_measure(segments, s)) for s, name in ((1, top), (2, bottom)) if (segments == s).any())
    return Scene(index, image, segments, things, stuff)


def caption(scene: Scene) -> str:
    """A one-sentence description that is true of the picture (objects from left to right)."""
    things = [_article(t.name) for t in sorted(scene.things, key=lambda t: t.bbox[0])]
    listed = things[0] if len(things) == 1 else ", ".join(things[:-1]) + " and " + things[-1]
    categories = {s.category for s in scene.stuff}
    if "sky" in categories:
        ground = next((c for c in OUTDOOR_GROUNDS if c in categories), None)
        setting = (f"{GROUND_PREPOSITION[ground]} {ground} " if ground else "") + "under a blue sky"
    else:
        setting = "in a room"
    return f"{listed} {setting}" if things else f"an empty scene {setting}"


def _article(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def _near(a: tuple[int, int, int, int], b: tuple[int, int, int, int], margin: int = 4) -> bool:
    """Do two (x0, y0, x1, y1) boxes overlap or come within ``margin`` pixels?"""
    return a[0] - margin < b[2] and b[0] - margin < a[2] and a[1] - margin < b[3] and b[1] - margin < a[3]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: int, cy: int, r: int, fill: object) -> None:
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
    else:  # diamond
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)


def _measure(segments: np.ndarray, segment: int) -> tuple[tuple[int, int, int, int], int]:
    ys, xs = np.nonzero(segments == segment)
    x0, y0 = int(xs.min()), int(ys.min())
    return (x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1), int(len(xs))
