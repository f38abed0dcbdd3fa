"""RefCOCO / RefCOCO+ / RefCOCOg as the REFER toolkit ships them -> [refer] and [identify].

A folder holds ``instances.json`` (COCO instances of the referred images) and the refs,
``refs(<partition>).p``: a pickled list of ``{ref_id, ann_id, image_id, split, sentences}``.
The same list as JSON, ``refs(<partition>).json``, is read as is; a pickle only with
``--trust-pickle``, through an unpickler that refuses every class (refs need none), because
unpickling runs code. When a folder has several partitions (RefCOCO ships unc and google), the
first of unc, umd, google (then others by name) is used: the ones MiniGPT-v2 trains on.

One record is one ref; it gives two samples with the same box: "refer" (expression -> box) and
"identify" (box -> expression). MiniGPT-v2 draws one of a ref's sentences per access; here each
sample's sentence is picked by a hash of its key, and all normalised sentences go into
``meta["sentences"]`` so training can draw again. Where every kept sentence carries a string
``kind`` (the sample world records what the expression names its object by; real refs do not),
``meta["sentence_kinds"]`` keeps them in the same order, for per-kind evaluation.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import xxhash

from datasets_builders.formats.boxes import BoxError, PixelBox
from datasets_builders.formats.schema import Sample, Source
from datasets_builders.formats.text import blip_normalise
from datasets_builders.sources.coco_images import (
    CocoImage,
    ImageTable,
    image_table,
    integer,
    locate_images,
    lookup_image,
    parse_entries,
    streamed_list,
    string,
)
from datasets_builders.sources.contract import (
    InputFormatError,
    Options,
    Outcome,
    RecordError,
    Reject,
    make_key,
    read_json,
    require,
)
from datasets_builders.sources.images import load_image
from datasets_builders.templates.render import render

NAME = "refcoco"
VERSION = "1"
OPTIONS = ("trust_pickle",)
TASKS = ("refer", "identify")
PREFERRED = ("unc", "umd", "google")  # partitions, in the order they are chosen
_REFS = re.compile(r"^refs\((.+)\)\.(json|p)$")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    root: Path
    instances: Path
    refs: Path  #: refs(<partition>).json, or .p when trusted


@dataclass(frozen=True)
class RefRecord:
    source: Source
    ref: Mapping[str, Any]  #: the raw ref
    ref_id: int
    image_id: int
    split: str
    images: ImageTable  #: shared by every record of the build
    boxes: Mapping[int, tuple[Any, Any]]  #: annotation id -> (image id, raw bbox), shared
    image_dir: Path


def locate(path: Path, options: Options) -> Layout:
    expected = "expected instances.json and refs(<partition>).json as the REFER toolkit lays out RefCOCO"
    require((path / "instances.json").is_file(), path, expected)
    found: dict[str, dict[str, Path]] = {}
    for p in path.iterdir():
        if (m := _REFS.match(p.name)) and p.is_file():
            found.setdefault(m.group(1), {})[m.group(2)] = p
    require(bool(found), path, expected)
    partition = min(found, key=lambda name: (PREFERRED.index(name) if name in PREFERRED else len(PREFERRED), name))
    files = found[partition]
    if "json" in files:
        return Layout(path, path / "instances.json", files["json"])
    if not options.trust_pickle:
        raise InputFormatError(f"{files['p']}: refs are a pickle, which can run code when read; pass --trust-pickle "
                               f"(only plain lists, dicts, strings and numbers are accepted) or convert it to "
                               f"refs({partition}).json")
    return Layout(path, path / "instances.json", files["p"])


def read_records(layout: Layout, split: str | None) -> Iterator[RefRecord | Reject]:
    # streamed: COCO's instances JSON is mostly segmentation polygons, of which only boxes are kept
    images = image_table(streamed_list(layout.instances, "images", "COCO instances"))
    boxes = _boxes(streamed_list(layout.instances, "annotations", "COCO instances"))
    refs = _load_refs(layout.refs)
    require(isinstance(refs, list), layout.refs, "expected a list of refs")
    parsed, rejects = parse_entries(refs, _parse_ref, NAME, layout.refs.name, "ref_id", keep=_in_split(split))
    yield from rejects
    chosen = sorted(parsed, key=lambda r: (r.image_id, r.ref_id))
    names = (image.file_name for r in chosen if isinstance(image := images.get(r.image_id), CocoImage))
    image_dir = locate_images(layout.root, names, fallback=layout.root)
    seen: Counter[int] = Counter()
    for r in chosen:
        seen[r.ref_id] += 1
        if seen[r.ref_id] > 1:  # a repeat cannot be a record under the same id: it is rejected as the n-th
            yield Reject(Source(NAME, f"{r.ref_id}#{seen[r.ref_id]}"), "read",
                         f"{layout.refs.name}: ref_id {r.ref_id} occurs more than once; the first is read")
            continue
        yield RefRecord(Source(NAME, str(r.ref_id)), r.ref, r.ref_id, r.image_id, r.split, images, boxes, image_dir)


def to_samples(record: RefRecord) -> Iterator[Outcome]:
    where = f"ref {record.ref_id}"
    image = lookup_image(record.images, record.image_id, "instances.json")
    box = _box(record, image.width, image.height)
    sentences, kinds, empty = _sentences(record.ref, where)
    for i in empty:
        yield Reject(record.source, "convert", f"{where}: sentence {i} is empty after normalisation")
    loaded = load_image(record.image_dir / image.file_name, (image.width, image.height))
    for task in TASKS:
        key = make_key(f"ref{record.ref_id}", task)
        chosen = _pick(key, len(sentences))
        fields = {"expression": sentences[chosen], "box": box}
        meta = {"fields": fields, "image_id": image.id, "file_name": image.file_name,
                "ann_id": record.ref["ann_id"], "sentences": sentences, "sentence": chosen}
        if kinds is not None:
            meta["sentence_kinds"] = kinds
        yield Sample(key=key, task=task, turns=render(task, fields, key=key, width=image.width, height=image.height),
                     source=record.source, split=record.split, image=loaded, meta=meta)


class _Ref(NamedTuple):
    ref: Mapping[str, Any]
    ref_id: int
    image_id: int
    split: str


def _in_split(split: str | None) -> Callable[[Any], bool]:
    """Refs of ``split`` (any case); a broken ref whose split cannot be read is kept, to be rejected."""
    def keep(ref: Any) -> bool:
        value = ref.get("split") if isinstance(ref, dict) else None
        return split is None or not isinstance(value, str) or value.lower() == split.lower()
    return keep


def _parse_ref(ref: Any) -> _Ref:
    return _Ref(ref, integer(ref, "ref_id"), integer(ref, "image_id"), string(ref, "split").lower())


def _boxes(annotations: Iterable[Any]) -> dict[int, tuple[Any, Any]]:
    """Annotation id -> (image id, bbox); entries without an integer id cannot be referred to."""
    out = {}
    for ann in annotations:
        if isinstance(ann, dict) and isinstance(ann.get("id"), int):
            out[ann["id"]] = (ann.get("image_id"), ann.get("bbox"))
    return out


def _box(record: RefRecord, width: int, height: int) -> list[float]:
    where = f"ref {record.ref_id}"
    if "ann_id" not in record.ref:
        raise RecordError(f"{where} has no ann_id")
    ann_id = record.ref["ann_id"]
    if ann_id not in record.boxes:
        raise RecordError(f"{where}: annotation {ann_id!r} is not in instances.json")
    ann_image, bbox = record.boxes[ann_id]
    if ann_image != record.image_id:
        raise RecordError(f"{where}: annotation {ann_id} belongs to image {ann_image!r}, "
                          f"not the ref's image {record.image_id}")
    try:
        return PixelBox.from_xywh(bbox).check(width, height).xyxy()
    except BoxError as e:
        raise RecordError(f"{where}: annotation {ann_id}: {e}") from None
    except (TypeError, ValueError):
        raise RecordError(f"{where}: annotation {ann_id} has bbox {bbox!r}, not [x, y, width, height]") from None


def _sentences(ref: Mapping[str, Any], where: str) -> tuple[list[str], list[str] | None, list[int]]:
    """The normalised sentences ("raw", else "sent"), their kinds (None unless every kept sentence has
    one) and the positions of those that came out empty."""
    raw = ref.get("sentences")
    if not isinstance(raw, list) or not raw:
        raise RecordError(f"{where} has no sentences")
    kept, kinds, empty = [], [], []
    for i, sentence in enumerate(raw):
        texts = [sentence.get(k) for k in ("raw", "sent")] if isinstance(sentence, dict) else []
        normalised = next((n for t in texts if isinstance(t, str) and (n := blip_normalise(t))), "")
        if normalised:
            kept.append(normalised)
            kinds.append(sentence.get("kind"))
        else:
            empty.append(i)
    if not kept:
        raise RecordError(f"{where}: all {len(raw)} sentences are empty after normalisation")
    return kept, kinds if all(isinstance(k, str) for k in kinds) else None, empty


def _pick(key: str, n: int) -> int:
    """A sentence index from the sample key: stable across builds and machines."""
    return xxhash.xxh3_64_intdigest(f"sentence\x1f{key}".encode()) % n


class _PlainUnpickler(pickle.Unpickler):
    """Refs are lists, dicts, strings and numbers, which unpickle without any class: refuse all."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: refs need no classes")


def _load_refs(path: Path) -> Any:
    if path.suffix == ".json":
        return read_json(path)
    log.warning("%s: reading a pickle because --trust-pickle was given (classes are refused)", path)
    try:
        with path.open("rb") as f:
            # The REFER pickles come from Python 2: their str values arrive as bytes, decoded below.
            return _decoded(_PlainUnpickler(f, encoding="bytes").load())
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, OverflowError) as e:
        raise InputFormatError(f"{path}: not a plain pickle of refs ({type(e).__name__}: {e})") from None
    except OSError as e:
        raise InputFormatError(f"{path}: cannot read ({e})") from None


def _decoded(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.decode("latin-1")
    if isinstance(value, dict):
        return {_decoded(k): _decoded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_decoded(v) for v in value]
    return value
