"""Flickr30k Entities -> MiniGPT-v2's [grounding] and [detection] samples.

Why: MiniGPT-v2 learns grounded captions and object parsing from "filtered Flickr30k" JSONs that
were never published with their conversion code (minigptv2-data-spec.md 6.3); this module makes
them from the raw release (6.1) so every box can be traced to its XML object.

Layout: ``Sentences/<id>.txt`` (five bracket-annotated captions), ``Annotations/<id>.xml``
(PASCAL-VOC-like boxes, 1-based and inclusive), optional ``train.txt``/``val.txt``/``test.txt``
and ``UNRELATED_CAPTIONS`` next to them, images in whichever folder holds ``<first id>.jpg``.

Record = one image; Source id = its image id. Per caption ``i`` (0-based among the file's
non-empty lines, as the official parser counts): the plain caption keeps the original case and
words, single-spaced; phrases whose chain owns at least one box become ``<p>phrase</p> {boxes}``
(all boxes of the chain, in XML order); phrases of chain 0, scene, nobndbox or box-less chains
stay plain. Samples: ``<id>-<i>-grounding`` and ``<id>-<i>-detection`` per caption with a boxed
phrase, and ``<id>-p<k>`` per distinct (phrase, boxes) of the image. ``UNRELATED_CAPTIONS`` numbers
sentences from 1 (its entries run 1..5), so entry ``n`` drops caption ``n - 1``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets_builders.formats.boxes import BoxError, PixelBox
from datasets_builders.formats.schema import Sample, Source
from datasets_builders.sources.contract import InputFormatError, Options, RecordError, Reject, Repair, make_key, require
from datasets_builders.sources.images import find_image_dir, load_image
from datasets_builders.templates.render import render

NAME = "flickr30k-entities"
VERSION = "1"
OPTIONS = ()
SPLITS = ("train", "val", "test")
UNRELATED = "UNRELATED_CAPTIONS"
NO_LISTS = "no split lists: image put in train"
_PHRASE = re.compile(r"\[/EN#(\d+)((?:/[^/\s\[\]]+)+) ([^\[\]]*)\]")
_IMAGE_PROBES = 5  # ids tried when looking for the image folder


@dataclass(frozen=True)
class Layout:
    sentences: Path
    annotations: Path
    image_dir: Path
    ids: tuple[str, ...]  #: the images with a sentence file, in id order
    splits: dict[str, str] | None  #: image id -> split; None when no split list exists
    listed_in: dict[str, str] = field(default_factory=dict)  #: image id -> the list naming it
    unrelated: dict[str, frozenset[int]] = field(default_factory=dict)  #: image id -> 0-based captions


@dataclass(frozen=True)
class FlickrRecord:
    source: Source
    split: str
    layout: Layout


@dataclass(frozen=True)
class Mention:
    """One annotated phrase of a caption, as a character span of the plain caption."""

    start: int
    end: int
    chain: str
    types: tuple[str, ...]


def locate(path: Path, options: Options) -> Layout:
    base = next((d for d in (path, *sorted(p for p in path.iterdir() if p.is_dir()))
                 if (d / "Sentences").is_dir() and (d / "Annotations").is_dir()), None)
    require(base is not None, path, "expected Sentences/ and Annotations/ folders (Flickr30k Entities), "
            "here or one level down")
    assert base is not None
    ids = tuple(sorted((p.stem for p in (base / "Sentences").glob("*.txt")), key=_id_order))
    require(bool(ids), base / "Sentences", "expected <image id>.txt sentence files")
    splits, listed_in = _split_lists(path, base)
    return Layout(base / "Sentences", base / "Annotations", _image_dir(path, ids), ids, splits, listed_in,
                  _unrelated(path, base))


def read_records(layout: Layout, split: str | None) -> Iterator[FlickrRecord | Reject]:
    have = set(layout.ids)
    listed_only = [i for i in layout.listed_in if i not in have]
    for image_id in sorted([*layout.ids, *listed_only], key=_id_order):
        source = Source(NAME, image_id)
        image_split = "train" if layout.splits is None else layout.splits.get(image_id)
        if split is not None and image_split != split:
            continue
        if image_id not in have:
            yield Reject(source, "read", f"{layout.listed_in[image_id]} lists image {image_id} but there is "
                                         f"no {layout.sentences.name}/{image_id}.txt")
        elif image_split is None:
            yield Reject(source, "read", f"image {image_id} is not in train.txt/val.txt/test.txt")
        else:
            yield FlickrRecord(source, image_split, layout)


def to_samples(record: FlickrRecord) -> Iterator[Sample | Reject | Repair]:
    layout, source, image_id = record.layout, record.source, record.source.id
    width, height, chains = _read_xml(layout.annotations / f"{image_id}.xml")
    image = load_image(layout.image_dir / f"{image_id}.jpg", expect_size=(width, height))
    sentence_file = layout.sentences / f"{image_id}.txt"
    lines = [line for line in _read_text(sentence_file).splitlines() if line.strip()]
    phrase_keys: dict[tuple[str, tuple[tuple[int, ...], ...]], str] = {}

    def sample(key: str, task: str, fields: dict[str, Any], sentence: int, mentions: list[Mention]) -> Sample:
        chain_info = [{"id": int(m.chain), "types": list(m.types)} for m in mentions]
        return Sample(key=key, task=task, turns=render(task, fields, key=key, width=width, height=height),
                      source=source, split=record.split, image=image,
                      meta={"fields": fields, "image_id": image_id, "sentence": sentence, "chains": chain_info})

    for i, line in enumerate(lines):
        if i in layout.unrelated.get(image_id, ()):
            yield Reject(source, "convert", f"caption {i} is listed in {UNRELATED}")
            continue
        try:
            caption, mentions = parse_sentence(line)
        except ValueError as e:
            yield Reject(source, "read", f"{sentence_file.name}: caption {i} is malformed ({e}): {line!r}")
            continue
        boxed = [m for m in mentions if m.chain != "0" and chains.get(m.chain)]
        if not boxed:
            yield Reject(source, "convert", f"caption {i} has no phrase with a box")
            continue
        phrases = [{"start": m.start, "end": m.end, "boxes": chains[m.chain]} for m in boxed]
        fields = {"caption": caption, "phrases": phrases}
        yield sample(make_key(image_id, i, "grounding"), "grounding", fields, i, boxed)
        yield sample(make_key(image_id, i, "detection"), "detection-caption", fields, i, boxed)
        for m in boxed:
            text = caption[m.start:m.end]
            identity = (text, tuple(map(tuple, chains[m.chain])))
            if identity not in phrase_keys:
                phrase_keys[identity] = key = make_key(image_id, f"p{len(phrase_keys)}")
                yield sample(key, "detection-phrase", {"phrase": text, "boxes": chains[m.chain]}, i, [m])
    if layout.splits is None:
        yield Repair(source, NO_LISTS)


def parse_sentence(line: str) -> tuple[str, list[Mention]]:
    """The plain caption and its annotated phrases; ValueError for a line that is not the format."""
    words: list[str] = []
    mentions: list[Mention] = []
    at = 0

    def add(text: str, offset: int) -> tuple[int, int]:
        stray = next((k for k, c in enumerate(text) if c in "[]"), None)
        if stray is not None:
            raise ValueError(f"unbalanced {text[stray]!r} at character {offset + stray}")
        start = len(" ".join(words)) + (1 if words else 0)
        words.extend(text.split())
        return start, len(" ".join(words))

    for m in _PHRASE.finditer(line):
        add(line[at:m.start()], at)
        start, end = add(m.group(3), m.start(3))
        if end <= start:
            raise ValueError(f"empty phrase at character {m.start()}")
        mentions.append(Mention(start, end, m.group(1), tuple(m.group(2).strip("/").split("/"))))
        at = m.end()
    add(line[at:], at)
    if not words:
        raise ValueError("no words")
    return " ".join(words), mentions


def _read_xml(path: Path) -> tuple[int, int, dict[str, list[list[int]]]]:
    """Image size and each chain's boxes (0-based, exclusive right/bottom), in XML file order."""
    try:
        root = ET.fromstring(_read_text(path))
    except ET.ParseError as e:
        raise RecordError(f"{path.name}: not well-formed XML ({e})", "read") from None
    try:
        width, height = (int(root.findtext(f"size/{t}", "").strip()) for t in ("width", "height"))
    except ValueError:
        raise RecordError(f"{path.name}: <size> has no integer <width> and <height>", "read") from None
    chains: dict[str, list[list[int]]] = {}
    for k, obj in enumerate(root.iter("object")):
        names = [(n.text or "").strip() for n in obj.findall("name")]
        box = obj.find("bndbox")
        if box is None:
            continue
        where = f"{path.name}: object {k} (chain {', '.join(names)})"
        try:
            x0, y0, x1, y1 = (int(box.findtext(t, "").strip()) for t in ("xmin", "ymin", "xmax", "ymax"))
            pixels = PixelBox(x0 - 1, y0 - 1, x1, y1).check(width, height)
        except ValueError as e:  # BoxError is a ValueError too
            detail = str(e) if isinstance(e, BoxError) else "its <bndbox> needs integer xmin, ymin, xmax, ymax"
            raise RecordError(f"{where}: {detail}") from None
        for name in names:
            chains.setdefault(name, []).append([int(v) for v in pixels.xyxy()])
    return width, height, chains


def _read_text(path: Path) -> str:
    try:
        return path.read_text("utf-8")
    except FileNotFoundError:
        raise RecordError(f"{path.parent.name}/{path.name} is missing", "read") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RecordError(f"{path.parent.name}/{path.name} cannot be read ({e})", "read") from None


def _split_lists(root: Path, base: Path) -> tuple[dict[str, str] | None, dict[str, str]]:
    """image id -> split and image id -> list file name, or (None, {}) when no list exists."""
    splits: dict[str, str] = {}
    listed_in: dict[str, str] = {}
    found = False
    for split in SPLITS:
        path = next((d / f"{split}.txt" for d in (root, base) if (d / f"{split}.txt").is_file()), None)
        if path is None:
            continue
        found = True
        for image_id in _lines(path):
            splits.setdefault(image_id, split)  # an id in two lists stays in the first (train, val, test)
            listed_in.setdefault(image_id, path.name)
    return (splits if found else None), listed_in


def _unrelated(root: Path, base: Path) -> dict[str, frozenset[int]]:
    path = next((d / UNRELATED for d in (root, base) if (d / UNRELATED).is_file()), None)
    out: dict[str, set[int]] = {}
    for line in _lines(path) if path else []:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) < 1:
            raise InputFormatError(f"{path}: expected '<image id> <sentence number from 1>' lines, got {line!r}")
        out.setdefault(parts[0], set()).add(int(parts[1]) - 1)
    return {k: frozenset(v) for k, v in out.items()}


def _lines(path: Path) -> list[str]:
    """Non-empty, non-comment lines of a small text file."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputFormatError(f"{path}: cannot read ({e})") from None
    return [s for s in (line.strip() for line in text.splitlines()) if s and not s.startswith("#")]


def _image_dir(root: Path, ids: tuple[str, ...]) -> Path:
    """The folder of ``<id>.jpg``, probing a few ids so that one missing image does not stop a build."""
    first_error = None
    for image_id in ids[:_IMAGE_PROBES]:
        try:
            return find_image_dir(root, f"{image_id}.jpg")
        except InputFormatError as e:
            first_error = first_error or e
    assert first_error is not None
    raise first_error


def _id_order(image_id: str) -> tuple[int, int, str]:
    return (0, int(image_id), "") if image_id.isdigit() else (1, 0, image_id)
