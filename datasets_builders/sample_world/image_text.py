"""The world as captioned web images downloaded with img2dataset (``--output_format webdataset``).

The layout is img2dataset's, also used by the GRIT writer: per shard of ``SAMPLES_PER_SHARD``
urls, ``NNNNN.tar`` (``<key>.jpg``, ``<key>.json``, ``<key>.txt`` per downloaded url),
``NNNNN.parquet`` (one row per url, failed ones included) and ``NNNNN_stats.json``. A key is the
shard number (5 digits) followed by the url's index in its shard (``ceil(log10(SAMPLES_PER_SHARD))``
digits), as img2dataset computes it. Url ``DEAD_AT`` of every block of ``DEAD_EVERY`` is a dead
link that is no scene: a ``failed_to_download`` row in the parquet only, so builders meet a failed
download. Every image of the world is listed, whatever its split (these formats have none).
The bytes are a pure function of the world: tar members have time 0 and fixed owners, stats no times.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import tarfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from datasets_builders.sample_world.common import WorldImage, write_text
from datasets_builders.sample_world.language import captions

SALT = 7
SAMPLES_PER_SHARD = 100
DEAD_EVERY, DEAD_AT = 25, 3
HOST = "https://images.sample-world.invalid"
NOT_FOUND = "HTTP Error 404: Not Found"
GONE = "a picture that is no longer online"
Columns = list[tuple[str, pa.DataType]]
STATUS_COLUMNS: Columns = [
    ("key", pa.string()), ("status", pa.string()), ("error_message", pa.string()),
    ("width", pa.int32()), ("height", pa.int32()), ("original_width", pa.int32()), ("original_height", pa.int32()),
    ("exif", pa.string()), ("sha256", pa.string()),
]


@dataclass(frozen=True)
class Url:
    """One row of the url list img2dataset reads."""

    url: str
    caption: str
    extra: dict[str, Any]  #: the --save_additional_columns values
    image: WorldImage | None  #: None: a dead link


def url_list(world: list[WorldImage], seed: int, describe: Callable[[WorldImage], tuple[str, dict[str, Any]]],
             dead: Callable[[int], dict[str, Any]]) -> list[Url]:
    """Every image's url with its caption and extra columns, and a dead link at each ``DEAD_AT``."""
    rows: list[Url] = []
    for image in world:
        if len(rows) % DEAD_EVERY == DEAD_AT:
            rows.append(Url(f"{HOST}/{seed}/gone-{len(rows)}.jpg", GONE, dead(len(rows)), None))
        caption, extra = describe(image)
        rows.append(Url(f"{HOST}/{seed}/{image.index:06d}.jpg", caption, extra, image))
    return rows


def write_download(out_dir: Path, urls: list[Url], extra_columns: Columns) -> None:
    """What img2dataset writes for ``urls`` (nothing is resized: stored size = original size)."""
    schema = pa.schema(extra_columns + [("caption", pa.string()), ("url", pa.string())] + STATUS_COLUMNS)
    digits = math.ceil(math.log10(SAMPLES_PER_SHARD))
    for shard, first in enumerate(range(0, len(urls), SAMPLES_PER_SHARD)):
        rows, members = [], []
        for i, url in enumerate(urls[first:first + SAMPLES_PER_SHARD]):
            row = download_row(url, f"{shard:05d}{i:0{digits}d}")
            rows.append(row)
            if url.image is not None:
                key = row["key"]
                members += [(f"{key}.jpg", url.image.jpeg), (f"{key}.json", json.dumps(row, indent=4).encode()),
                            (f"{key}.txt", url.caption.encode())]
        name = f"{shard:05d}"
        write_tar(out_dir / f"{name}.tar", sorted(members))
        write_parquet(out_dir / f"{name}.parquet", rows, schema)
        write_text(out_dir / f"{name}_stats.json", json.dumps(stats(rows), indent=4))


def download_row(url: Url, key: str) -> dict[str, Any]:
    """img2dataset's metadata of one url: its columns, then key, status and the stored picture."""
    row = {**url.extra, "caption": url.caption, "url": url.url, "key": key}
    if url.image is None:
        return {**row, "status": "failed_to_download", "error_message": NOT_FOUND, "width": None, "height": None,
                "original_width": None, "original_height": None, "exif": None, "sha256": None}
    w, h = url.image.width, url.image.height
    return {**row, "status": "success", "error_message": None, "width": w, "height": h, "original_width": w,
            "original_height": h, "exif": "{}", "sha256": hashlib.sha256(url.image.jpeg).hexdigest()}


def stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``NNNNN_stats.json``'s counts (img2dataset's ``status_dict`` counts successes and each error)."""
    ok = sum(r["status"] == "success" for r in rows)
    failed = Counter(r["error_message"] for r in rows if r["error_message"])
    return {"count": len(rows), "successes": ok, "failed_to_download": len(rows) - ok, "failed_to_resize": 0,
            "duration": 0.0, "start_time": 0.0, "end_time": 0.0, "status_dict": {"success": ok, **failed}}


def write_tar(path: Path, members: Iterable[tuple[str, bytes]]) -> None:
    """A plain tar of ``(name, bytes)`` in the given order, time 0 and fixed owners: same input, same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o444
            info.uname = info.gname = "bigdata"  # webdataset's TarWriter default
            tar.addfile(info, io.BytesIO(data))


def write_parquet(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def describe(image: WorldImage) -> tuple[str, dict[str, Any]]:
    """One of the image's true captions, as a web page's alt text would give one."""
    rng = image.rng(SALT)
    options = captions(image.scene, rng)
    return options[int(rng.integers(len(options)))], {}


def write(world: list[WorldImage], out_dir: Path, seed: int) -> None:
    write_download(out_dir, url_list(world, seed, describe, lambda position: {}), [])
