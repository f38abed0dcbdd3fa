"""The sample contract: what every builder writes and every loader reads.

A sample is one training example: an optional image, a conversation of alternating user/assistant
turns, and where it came from. On disk it is a group of WebDataset members sharing one key
(``<key>.jpg``, ``<key>.json``, optional extras such as ``<key>.crayon.png``); the full schema is
in ``docs/sample-schema.md``. Validation happens here, at construction, so a bad sample fails in
the builder that made it, with the record that caused it, not hours later in a training worker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

SCHEMA_VERSION = 1
IMAGE_FORMATS = ("jpg", "png")
ROLES = ("user", "assistant")

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_EXTRA_EXT = re.compile(r"^[a-z0-9]+(\.[a-z0-9]+)*$")


class SampleError(ValueError):
    """A sample breaks the contract; the message names the sample's source record."""


@dataclass(frozen=True)
class Turn:
    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True)
class Source:
    """The input record a sample was made from: the unit a build counts as read."""

    dataset: str  #: name of the raw dataset, e.g. "refcoco"
    id: str  #: the record's id in that dataset, e.g. a ref id or an image id


@dataclass(frozen=True)
class Image:
    """Encoded image bytes as stored in the shard; never re-encoded by the store."""

    data: bytes
    format: Literal["jpg", "png"]
    width: int
    height: int


@dataclass(frozen=True)
class Sample:
    key: str  #: unique within its dataset; WebDataset key rules apply (see store.keys)
    task: str  #: short task name, e.g. "refer", "vqa", "crayon", "text"
    turns: tuple[Turn, ...]  #: user, assistant, user, assistant, ... (at least one pair)
    source: Source
    split: str = "train"
    image: Image | None = None  #: None for text-only samples
    extras: Mapping[str, bytes] = field(default_factory=dict)  #: extra members by extension
    meta: Mapping[str, Any] = field(default_factory=dict)  #: builder-specific JSON-able details

    def __post_init__(self) -> None:
        where = f"sample {self.key!r} (source {self.source.dataset}:{self.source.id})"
        if not _NAME.match(self.task):
            raise SampleError(f"{where}: task {self.task!r} must be lowercase [a-z0-9_-]")
        if not _NAME.match(self.split):
            raise SampleError(f"{where}: split {self.split!r} must be lowercase [a-z0-9_-]")
        _check_turns(self.turns, where)
        if self.image is not None:
            _check_image(self.image, where)
        for ext, data in self.extras.items():
            if not _EXTRA_EXT.match(ext) or ext in ("json", *IMAGE_FORMATS):
                raise SampleError(f"{where}: extra member extension {ext!r} is not allowed")
            if not isinstance(data, bytes):
                raise SampleError(f"{where}: extra member {ext!r} must be bytes")
        # Freeze the mappings so a sample cannot change after it was validated.
        object.__setattr__(self, "turns", tuple(self.turns))
        object.__setattr__(self, "extras", MappingProxyType(dict(self.extras)))
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))

    def to_json(self) -> dict[str, Any]:
        """The ``json`` member's content (image bytes and extras travel as their own members)."""
        image = None
        if self.image is not None:
            image = {"width": self.image.width, "height": self.image.height, "format": self.image.format}
        return {
            "schema": SCHEMA_VERSION,
            "task": self.task,
            "turns": [{"role": t.role, "content": t.content} for t in self.turns],
            "image": image,
            "source": {"dataset": self.source.dataset, "id": self.source.id},
            "split": self.split,
            "extras": sorted(self.extras),
            "meta": dict(self.meta),
        }

    def members(self) -> dict[str, bytes]:
        """Member payloads by extension, as they go into the tar."""
        out = {"json": encode_json(self.to_json())}
        if self.image is not None:
            out[self.image.format] = self.image.data
        out.update(self.extras)
        return out

    @classmethod
    def from_members(cls, key: str, members: Mapping[str, bytes]) -> Sample:
        """Rebuild a sample from its members (the inverse of :meth:`members`)."""
        if "json" not in members:
            raise SampleError(f"sample {key!r}: no json member (members: {sorted(members)})")
        doc = json.loads(members["json"])
        image = None
        if doc.get("image") is not None:
            info = doc["image"]
            fmt = info["format"]
            if fmt not in members:
                raise SampleError(f"sample {key!r}: json names a {fmt} image but there is no {fmt} member")
            image = Image(bytes(members[fmt]), fmt, int(info["width"]), int(info["height"]))
        return cls(
            key=key,
            task=doc["task"],
            turns=tuple(Turn(t["role"], t["content"]) for t in doc["turns"]),
            source=Source(doc["source"]["dataset"], str(doc["source"]["id"])),
            split=doc.get("split", "train"),
            image=image,
            extras={ext: bytes(members[ext]) for ext in doc.get("extras", [])},
            meta=doc.get("meta", {}),
        )


def encode_json(obj: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, no whitespace, UTF-8 (same input, same bytes)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _check_turns(turns: tuple[Turn, ...], where: str) -> None:
    if len(turns) < 2 or len(turns) % 2:
        raise SampleError(f"{where}: needs user/assistant pairs, got {len(turns)} turns")
    for i, turn in enumerate(turns):
        expected = ROLES[i % 2]
        if turn.role != expected:
            raise SampleError(f"{where}: turn {i} has role {turn.role!r}, expected {expected!r}")
        if not isinstance(turn.content, str) or not turn.content.strip():
            raise SampleError(f"{where}: turn {i} ({turn.role}) has empty or non-text content")


def _check_image(image: Image, where: str) -> None:
    if image.format not in IMAGE_FORMATS:
        raise SampleError(f"{where}: image format {image.format!r} not in {IMAGE_FORMATS}")
    if not isinstance(image.data, bytes) or not image.data:
        raise SampleError(f"{where}: image has no bytes")
    if image.width <= 0 or image.height <= 0:
        raise SampleError(f"{where}: image size {image.width}x{image.height} is not positive")
