"""The dataset manifest: identity of a build, what it produced, and the commit marker.

``manifest.json`` is the last file a build writes. A folder without one is an unfinished build
and no reader accepts it; a folder with one holds exactly the shards the manifest lists, with
their checksums, so any later damage is detectable (``crayonflow shards verify``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from datasets_builders.formats.schema import encode_json
from datasets_builders.store.atomic import write_bytes_atomic
from datasets_builders.store.layout import DATASET_NAME, MANIFEST, REJECTS_INDEX, SAMPLES_INDEX, shard_pattern
from datasets_builders.store.lineage import code_hash, content_hash

FORMAT = "crayonflow-dataset/1"


class ManifestError(ValueError):
    """manifest.json is missing, unreadable or of an unknown format; the message names the file."""


@dataclass(frozen=True)
class InputRef:
    """One upstream input of a build: a raw dataset folder/file or a dataset we built earlier."""

    name: str
    path: str
    kind: str  #: "raw" or "dataset"
    xxh3: str  #: content hash (raw: every byte; dataset: its shard checksums)
    bytes: int
    files: int

    @classmethod
    def raw(cls, name: str, path: str | Path) -> InputRef:
        h = content_hash(path)
        return cls(name, str(path), "raw", h.xxh3, h.bytes, h.files)

    @classmethod
    def dataset(cls, path: str | Path) -> InputRef:
        """An upstream built dataset, identified by its committed shards' checksums."""
        m = load_manifest(path)
        if m is None:
            raise ManifestError(f"{Path(path) / MANIFEST}: upstream dataset is not committed")
        return cls(m.spec.name, str(path), "dataset", m.content_xxh3, m.total_bytes, len(m.shards))


@dataclass(frozen=True)
class BuildSpec:
    """Everything that determines a build's output; equal specs give byte-identical shards."""

    name: str  #: dataset name, also the shard file prefix
    builder: str
    builder_version: str
    parameters: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple[InputRef, ...] = ()
    max_samples: int = 5000  #: a shard closes at this many samples ...
    max_bytes: int = 256 << 20  #: ... or before it would exceed this size, headers included

    def __post_init__(self) -> None:
        if not DATASET_NAME.match(self.name):
            raise ValueError(f"dataset name {self.name!r} must be lowercase [a-z0-9_-] (it prefixes shard files)")
        if self.max_samples < 1 or self.max_bytes < 4096:
            raise ValueError(f"shard limits too small: max_samples={self.max_samples}, max_bytes={self.max_bytes}")
        encode_json(dict(self.parameters))  # parameters must be JSON, or the manifest cannot hold them
        object.__setattr__(self, "inputs", tuple(self.inputs))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "builder": {"name": self.builder, "version": self.builder_version},
            "parameters": dict(self.parameters),
            "inputs": [asdict(i) for i in self.inputs],
            "limits": {"max_samples": self.max_samples, "max_bytes": self.max_bytes},
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> BuildSpec:
        return cls(
            name=doc["name"],
            builder=doc["builder"]["name"],
            builder_version=doc["builder"]["version"],
            parameters=doc["parameters"],
            inputs=tuple(InputRef(**i) for i in doc["inputs"]),
            max_samples=doc["limits"]["max_samples"],
            max_bytes=doc["limits"]["max_bytes"],
        )

    @property
    def fingerprint(self) -> str:
        """Hash of the spec and of the builders' code: a resumed build must match it exactly."""
        return xxhash.xxh3_128_hexdigest(encode_json({**self.to_json(), "code": code_hash()}))


@dataclass(frozen=True)
class ShardEntry:
    name: str
    samples: int
    bytes: int
    xxh3: str  #: xxh3-64 hex of the whole file


@dataclass(frozen=True)
class FileEntry:
    bytes: int
    xxh3: str


@dataclass(frozen=True)
class Counts:
    """Accounting of a build: every record read is written, rejected, or both (partly)."""

    read: int  #: input records read
    written: int  #: samples written
    rejected: int  #: rows in rejects.parquet
    records_written: int  #: distinct input records with at least one sample
    records_rejected: int  #: distinct input records with rejects and no sample


@dataclass(frozen=True)
class Manifest:
    spec: BuildSpec
    fingerprint: str
    counts: Counts
    by_task: Mapping[str, int]
    by_split: Mapping[str, int]
    shards: tuple[ShardEntry, ...]
    index: Mapping[str, FileEntry]  #: samples.parquet and rejects.parquet
    code_revision: str
    code_hash: str
    created: str  #: UTC, ISO 8601
    repairs: Mapping[str, int] = field(default_factory=dict)  #: fixes the spec allows, counted by kind
    by_source: Mapping[str, int] = field(default_factory=dict)  #: samples per source dataset (blends keep both)

    def __post_init__(self) -> None:
        # Readers open these names under the dataset folder: a manifest we did not write must not
        # point them anywhere else (``../x.tar``, an absolute path, another dataset's shards).
        pattern = shard_pattern(self.spec.name)
        if bad := [s.name for s in self.shards if not pattern.match(s.name)]:
            raise ValueError(f"shard names {bad[:3]} are not {self.spec.name}-NNNNNN.tar files of this folder")
        if bad := sorted(set(self.index) - {SAMPLES_INDEX, REJECTS_INDEX}):
            raise ValueError(f"index files {bad[:3]} are not {SAMPLES_INDEX} or {REJECTS_INDEX}")

    @property
    def total_bytes(self) -> int:
        return sum(s.bytes for s in self.shards)

    @property
    def content_xxh3(self) -> str:
        """Identity of the committed content, independent of when it was built."""
        return xxhash.xxh3_128_hexdigest(encode_json([asdict(s) for s in self.shards]))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            **self.spec.to_json(),
            "fingerprint": self.fingerprint,
            "counts": asdict(self.counts),
            "by_task": dict(self.by_task),
            "by_split": dict(self.by_split),
            "repairs": dict(self.repairs),
            "by_source": dict(self.by_source),
            "shards": [asdict(s) for s in self.shards],
            "index": {name: asdict(e) for name, e in self.index.items()},
            "code": {"revision": self.code_revision, "hash": self.code_hash},
            "created": self.created,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Manifest:
        return cls(
            spec=BuildSpec.from_json(doc),
            fingerprint=doc["fingerprint"],
            counts=Counts(**doc["counts"]),
            by_task=doc["by_task"],
            by_split=doc["by_split"],
            repairs=doc.get("repairs", {}),
            by_source=doc.get("by_source", {}),
            shards=tuple(ShardEntry(**s) for s in doc["shards"]),
            index={name: FileEntry(**e) for name, e in doc["index"].items()},
            code_revision=doc["code"]["revision"],
            code_hash=doc["code"]["hash"],
            created=doc["created"],
        )


def load_manifest(root: str | Path) -> Manifest | None:
    """The committed manifest of the dataset at ``root``, or None if the build never finished."""
    path = Path(root) / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(raw)
        if doc.get("format") != FORMAT:
            raise ManifestError(f"{path}: format {doc.get('format')!r}, expected {FORMAT!r}")
        return Manifest.from_json(doc)
    except (ValueError, KeyError, TypeError) as e:
        if isinstance(e, ManifestError):
            raise
        raise ManifestError(f"{path}: unreadable manifest ({type(e).__name__}: {e})") from e


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Commit: after this returns, the dataset exists."""
    data = json.dumps(manifest.to_json(), indent=2, sort_keys=False, ensure_ascii=False).encode() + b"\n"
    write_bytes_atomic(root / MANIFEST, data)


def committed_build(root: str | Path, spec: BuildSpec) -> Manifest | None:
    """The manifest at ``root`` if that dataset was committed from exactly ``spec`` (re-run = no-op)."""
    manifest = load_manifest(root)
    return manifest if manifest is not None and manifest.fingerprint == spec.fingerprint else None
