"""img2dataset's WebDataset output, read one way for every captioned web-image source.

Why: LAION, CC3M, SBU and GRIT-20M are published as URL lists, and users fetch the pictures with
img2dataset (``--output_format webdataset``). Per shard it writes ``NNNNN.tar`` (for each
downloaded url the members ``<key>.jpg``, ``<key>.txt`` with the caption and ``<key>.json`` with
url, caption, key, status, error_message, width, height, original_width, original_height, exif,
sha256 and any ``--save_additional_columns``), ``NNNNN.parquet`` (one row per input url, failed
ones included) and ``NNNNN_stats.json``. Keys are the shard number followed by the url's index.

Reading: each tar is indexed from its headers and its members are read in place, by offset (no
member is ever extracted, so a hostile name cannot reach outside the folder; names that are not a
flat ``<key>.<ext>`` are refused). Keys come out sorted, so builds do not depend on the order the
downloads finished in. Every parquet row whose status is not "success" becomes a "read" reject
with its error message, so read = written + rejected covers every url of the download.
"""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from datasets_builders.formats.schema import Image, Source
from datasets_builders.sources.contract import RecordError, Reject, require
from datasets_builders.sources.images import image_from_bytes

IMAGE_EXTS = ("jpg", "png", "webp")  #: img2dataset's --encode_format choices
MAX_MEMBER_BYTES = 256 * 1024 * 1024  # a larger member is refused rather than read into memory
LAYOUT = "expected img2dataset webdataset output: shards 00000.tar, 00001.tar, ... (with 00000.parquet)"


@dataclass(frozen=True)
class Shard:
    tar: Path
    parquet: Path | None  #: None when the download's parquet files were not kept


@dataclass(frozen=True)
class Layout:
    root: Path
    shards: tuple[Shard, ...]


class Member(NamedTuple):
    offset: int  #: of the data in the tar
    size: int


@dataclass(frozen=True)
class WebRecord:
    """One downloaded url: its members in one tar shard."""

    source: Source
    key: str
    tar: Path
    members: Mapping[str, Member]  #: extension -> where its bytes are

    @property
    def where(self) -> str:
        return f"{self.tar.name} sample {self.key}"


class _Row(NamedTuple):  # one url's outcome in the shard's parquet
    status: str
    error: str | None
    url: str | None


def locate_shards(path: Path, hint: str = "") -> Layout:
    """The shards of an img2dataset folder; InputFormatError (one line) when there are none."""
    tars = sorted((p for p in path.glob("*.tar") if p.stem.isdigit() and p.is_file()),
                  key=lambda p: (int(p.stem), p.name))
    require(bool(tars), path, LAYOUT + (f"; {hint}" if hint else ""))
    return Layout(path, tuple(Shard(t, p if (p := t.with_suffix(".parquet")).is_file() else None) for t in tars))


def read_web_records(layout: Layout, dataset: str, split: str | None) -> Iterator[WebRecord | Reject]:
    """Every url of every shard, by key: a record per downloaded one, a reject per failed one.
    These formats have no splits: everything is "train", and another ``split`` reads nothing."""
    if split is not None and split.lower() != "train":
        return
    for shard in layout.shards:
        yield from _shard_records(shard, dataset)


def read_member(record: WebRecord, ext: str) -> bytes:
    """The bytes of ``<key>.<ext>``, read in place; RecordError("read") when cut short."""
    member = record.members[ext]
    name = f"{record.key}.{ext}"
    if member.size > MAX_MEMBER_BYTES:
        raise RecordError(f"{record.where}: {name} is {member.size} bytes, over the {MAX_MEMBER_BYTES} limit", "read")
    with record.tar.open("rb") as f:
        f.seek(member.offset)
        data = f.read(member.size)
    if len(data) != member.size:
        raise RecordError(f"{record.where}: {name} is cut short ({len(data)} of {member.size} bytes)", "read")
    return data


def load_meta(record: WebRecord) -> dict[str, Any]:
    """The sample's ``json`` member as a dict; RecordError("read") when absent or not a JSON object."""
    if "json" not in record.members:
        raise RecordError(f"{record.where} has no json member (members: {', '.join(sorted(record.members))})", "read")
    try:
        doc = json.loads(read_member(record, "json"))
    except json.JSONDecodeError as e:
        raise RecordError(f"{record.where}: {record.key}.json is not valid JSON "
                          f"(line {e.lineno}, column {e.colno}: {e.msg})", "read") from None
    except UnicodeDecodeError as e:
        raise RecordError(f"{record.where}: {record.key}.json is not UTF-8 ({e.reason})", "read") from None
    except RecursionError:
        raise RecordError(f"{record.where}: {record.key}.json is nested too deeply to parse", "read") from None
    if not isinstance(doc, dict):
        raise RecordError(f"{record.where}: {record.key}.json is a {type(doc).__name__}, not a JSON object", "read")
    return doc


def caption_text(record: WebRecord, meta: Mapping[str, Any]) -> str:
    """The raw caption: the ``txt`` member, else the json's ``caption`` (img2dataset writes both)."""
    if "txt" in record.members:
        try:
            text = read_member(record, "txt").decode("utf-8")
        except UnicodeDecodeError as e:
            raise RecordError(f"{record.where}: {record.key}.txt is not UTF-8 ({e.reason})", "read") from None
        if text.strip():
            return text
    caption = meta.get("caption")
    return caption if isinstance(caption, str) else ""


def declared_size(meta: Mapping[str, Any]) -> tuple[int, int] | None:
    """The json's ``width`` x ``height`` (the stored picture's size), when it gives both as integers."""
    width, height = meta.get("width"), meta.get("height")
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (width, height)):
        return None
    return width, height


def load_picture(record: WebRecord, expect_size: tuple[int, int] | None) -> Image:
    """The image member fully decoded and stored as its original bytes; RecordError("image") says why not."""
    ext = next((e for e in IMAGE_EXTS if e in record.members), None)
    if ext is None:
        raise RecordError(f"{record.where} has no image member ({record.key}.jpg)", "image")
    name = f"{record.key}.{ext}"
    image = image_from_bytes(read_member(record, ext), f"{record.where}: {name}")
    if expect_size is not None and (image.width, image.height) != tuple(expect_size):
        raise RecordError(f"{record.where}: {name} is {image.width}x{image.height} but its json says "
                          f"{expect_size[0]}x{expect_size[1]}", "image")
    return image


def _shard_records(shard: Shard, dataset: str) -> Iterator[WebRecord | Reject]:
    members, problems = _index_tar(shard.tar)
    for what, reason in problems:
        yield Reject(Source(dataset, what), "read", reason)
    rows: dict[str, _Row] = {}
    if shard.parquet is not None:
        rows, problem = _read_rows(shard.parquet)
        if problem:
            yield Reject(Source(dataset, shard.parquet.name), "read", problem)
    parquet = shard.parquet.name if shard.parquet else ""
    for key in sorted(members.keys() | rows.keys()):
        source, row, found = Source(dataset, key), rows.get(key), members.get(key)
        if found:
            yield WebRecord(source, key, shard.tar, found)
        elif row is not None and row.status != "success":
            yield Reject(source, "read", f"{parquet}: {row.url or 'the url'} was not downloaded "
                                         f"({row.status}: {row.error})")
        else:
            yield Reject(source, "read", f"{parquet} lists {key} as downloaded but {shard.tar.name} "
                                         f"has no {key}.* member")


def _index_tar(path: Path) -> tuple[dict[str, dict[str, Member]], list[tuple[str, str]]]:
    """Key -> extension -> member, from the headers only; plus (source id, reason) of what is refused."""
    found: dict[str, dict[str, Member]] = {}
    problems: list[tuple[str, str]] = []
    refusals: Counter[str] = Counter()
    count = 0
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                count += 1
                key, _, ext = info.name.partition(".")
                if refused := _refused(info, key, ext, found):
                    # a name refused again gets "#<n>": each refusal is its own reject, so the counts reconcile
                    refusals[info.name] += 1
                    again = f"#{refusals[info.name]}" if refusals[info.name] > 1 else ""
                    problems.append((f"{path.name}:{info.name}{again}", f"{path.name}: member {info.name!r} {refused}"))
                else:
                    found.setdefault(key, {})[ext] = Member(info.offset_data, info.size)
            end = tar.offset
        if not _zero_block(path, end):  # tarfile takes a header cut short for the end of the archive
            raise tarfile.ReadError("it ends inside a member header")
    except (tarfile.TarError, OSError, EOFError) as e:
        after = f" after {count} member{'s' if count != 1 else ''}" if count else ""
        problems.append((path.name, f"{path.name}: not a readable tar{after} ({e}); the members before that are read"))
    return found, problems


def _refused(info: tarfile.TarInfo, key: str, ext: str, found: Mapping[str, Mapping[str, Member]]) -> str | None:
    if not info.isfile():
        return "is not a regular file; not read"
    if not key or not ext or ".." in info.name or any(c in info.name for c in "/\\"):
        return "is not a flat <key>.<ext> file name; not read"
    if ext in found.get(key, {}):
        return "occurs twice; the first is read"
    return None


def _zero_block(path: Path, offset: int) -> bool:
    """Is there a whole end-of-archive block (512 zero bytes) at ``offset``?"""
    with path.open("rb") as f:
        f.seek(offset)
        return f.read(tarfile.BLOCKSIZE) == bytes(tarfile.BLOCKSIZE)


def _read_rows(path: Path) -> tuple[dict[str, _Row], str | None]:
    """Key -> row of the shard's parquet, or the reason it cannot be used."""
    lost = "failed downloads of this shard are not counted"
    try:
        names = set(pq.read_schema(path).names)
        if not {"key", "status"} <= names:
            return {}, f"{path.name}: has no key and status columns; {lost}"
        columns = [c for c in ("key", "status", "error_message", "url") if c in names]
        table = pq.read_table(path, columns=columns).to_pylist()
    except (OSError, pa.ArrowException) as e:
        return {}, f"{path.name}: not a readable parquet file ({e}); {lost}"
    return {str(r["key"]): _Row(str(r["status"]), r.get("error_message"), r.get("url")) for r in table
            if r["key"] is not None}, None
