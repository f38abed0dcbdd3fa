"""img2dataset WebDataset output -> caption samples: exact turns, every reject class, shards, splits.

``write_download`` below writes a tiny download the way img2dataset does (a tar per shard with
``<key>.jpg/.txt/.json`` members, a parquet row per url); the GRIT tests use it too.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image as PILImage

from datasets_builders.build import build_dataset
from datasets_builders.sample_world.image_text import write_parquet, write_tar
from datasets_builders.sources.contract import InputFormatError
from datasets_builders.store import ShardDataset, verify_dataset
from datasets_builders.templates.render import choose, pools

NOT_FOUND = "HTTP Error 404: Not Found"


def picture(size: tuple[int, int], fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", size, "green").save(out, fmt)
    return out.getvalue()


def meta(key: str, caption: str | None, size: tuple[int, int] | None, **extra) -> dict:
    """A downloaded url's json as img2dataset writes it (extra: --save_additional_columns, overrides)."""
    w, h = size if size else (None, None)
    return {**extra, "caption": caption, "url": f"https://example.com/{key}.jpg", "key": key, "status": "success",
            "error_message": None, "width": w, "height": h, "original_width": extra.get("original_width", w),
            "original_height": extra.get("original_height", h), "exif": "{}", "sha256": "0" * 64}


def sample(key: str, caption: str | None, size: tuple[int, int], **extra) -> list[tuple[str, bytes]]:
    """The three members of one downloaded url."""
    doc = meta(key, caption, size, **extra)
    return [(f"{key}.jpg", picture(size)), (f"{key}.json", json.dumps(doc, indent=4).encode()),
            (f"{key}.txt", (caption or "").encode())]


def failed(key: str, status: str = "failed_to_download", error: str = NOT_FOUND) -> dict:
    return {**meta(key, "lost", None), "status": status, "error_message": error, "exif": None, "sha256": None}


def write_download(root: Path, shard: str, members: list[tuple[str, bytes]], rows: list[dict] | None = None) -> Path:
    """``<shard>.tar`` with ``members`` in the given order; ``<shard>.parquet`` with a success row per key
    of a json member plus ``rows`` (None: no parquet at all)."""
    write_tar(root / f"{shard}.tar", members)
    if rows is not None:
        done = [json.loads(data) for name, data in members if name.endswith(".json") and _is_json(data)]
        table = [{k: r.get(k) for k in ("url", "caption", "key", "status", "error_message")} for r in done + rows]
        write_parquet(root / f"{shard}.parquet", table, pa.schema([(k, pa.string()) for k in table[0]]))
    return root


def _is_json(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), dict)
    except ValueError:
        return False


def rejects(root: Path) -> list[tuple[str, str, str]]:
    return [(r["source_id"], r["stage"], r["reason"]) for r in pq.read_table(root / "rejects.parquet").to_pylist()]


def samples(root: Path) -> dict:
    return {s.key: s for s in ShardDataset(root).samples()}


def test_downloaded_urls_become_caption_samples_in_key_order_with_exact_turns(tmp_path):
    png = ("000000000.png", picture((16, 16), "PNG"))
    no_txt = [png, ("000000000.json", json.dumps(meta("000000000", "Two (2) cats.", (16, 16))).encode())]
    backwards = list(reversed(sample("000000001", "A Dog; running!", (32, 24))))  # txt, json, jpg
    raw = write_download(tmp_path / "raw", "00000", [*backwards, *no_txt], rows=[])
    build_dataset("image-text", raw, tmp_path / "out")
    out = samples(tmp_path / "out")
    assert list(out) == ["000000000", "000000001"]  # sorted keys, not tar order
    dog = out["000000001"]
    assert [(t.role, t.content) for t in dog.turns] == [
        ("user", pools()["caption"][choose("caption", "000000001")]), ("assistant", "a dog running")]
    assert (dog.task, dog.split, dict(dog.meta)) == (
        "caption", "train", {"fields": {"caption": "a dog running"}, "url": "https://example.com/000000001.jpg"})
    assert (dog.image.data, dog.image.format, dog.image.width, dog.image.height) == (picture((32, 24)), "jpg", 32, 24)
    cats = out["000000000"]  # no txt member: the json's caption; a PNG stays a PNG
    assert (cats.turns[1].content, cats.image.format, cats.image.data) == ("two 2 cats", "png", png[1])


def test_failed_downloads_and_broken_members_are_rejected_with_reasons_and_counts_reconcile(tmp_path):
    members = [
        *sample("000000000", "a good one", (32, 24)),
        *[m for m in sample("000000003", "no picture", (32, 24)) if not m[0].endswith(".jpg")],
        *[m for m in sample("000000004", "no json", (32, 24)) if not m[0].endswith(".json")],
        ("000000005.jpg", picture((32, 24))[:40]), *sample("000000005", "cut", (32, 24))[1:],
        ("000000006.jpg", picture((32, 24))), ("000000006.json", b"{not json"),
        *sample("000000007", "...", (32, 24)),
        ("000000008.jpg", picture((16, 16))), *sample("000000008", "too small", (32, 24))[1:],
        ("../evil.jpg", b"x"), ("sub/000000010.jpg", picture((8, 8))),
    ]
    raw = write_download(tmp_path / "raw", "00000", members,
                         rows=[failed("000000001"), failed("000000002", "failed_to_resize", "image is too small"),
                               {**meta("000000009", "gone", (4, 4))}])
    with tarfile.open(raw / "00000.tar", "a") as tar:
        link = tarfile.TarInfo("000000011.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    manifest = build_dataset("image-text", raw, tmp_path / "out").manifest
    got = rejects(tmp_path / "out")
    assert got[7][:2] == ("000000005", "image")
    assert got[7][2].startswith("00000.tar sample 000000005: 000000005.jpg cannot be decoded (")
    del got[7]
    assert got == [
        ("00000.tar:../evil.jpg", "read",
         "00000.tar: member '../evil.jpg' is not a flat <key>.<ext> file name; not read"),
        ("00000.tar:sub/000000010.jpg", "read",
         "00000.tar: member 'sub/000000010.jpg' is not a flat <key>.<ext> file name; not read"),
        ("00000.tar:000000011.jpg", "read", "00000.tar: member '000000011.jpg' is not a regular file; not read"),
        ("000000001", "read", f"00000.parquet: https://example.com/000000001.jpg was not downloaded "
                              f"(failed_to_download: {NOT_FOUND})"),
        ("000000002", "read", "00000.parquet: https://example.com/000000002.jpg was not downloaded "
                              "(failed_to_resize: image is too small)"),
        ("000000003", "image", "00000.tar sample 000000003 has no image member (000000003.jpg)"),
        ("000000004", "read", "00000.tar sample 000000004 has no json member (members: jpg, txt)"),
        ("000000006", "read", "00000.tar sample 000000006: 000000006.json is not valid JSON "
                              "(line 1, column 2: Expecting property name enclosed in double quotes)"),
        ("000000007", "convert", "00000.tar sample 000000007: caption is empty after normalisation (raw '...')"),
        ("000000008", "image", "00000.tar sample 000000008: 000000008.jpg is 16x16 but its json says 32x24"),
        ("000000009", "read", "00000.parquet lists 000000009 as downloaded but 00000.tar has no 000000009.* member"),
    ]
    c = manifest.counts
    assert (c.read, c.records_written, c.records_rejected, c.written, c.rejected) == (13, 1, 12, 1, 12)
    assert verify_dataset(tmp_path / "out").ok


def test_shards_are_read_in_order_and_only_the_train_split_exists(tmp_path):
    raw = write_download(tmp_path / "raw", "00001", sample("000010000", "second shard", (8, 8)), rows=[])
    write_download(raw, "00000", [*sample("000000001", "first shard b", (8, 8)), *sample("000000000", "a", (8, 8))],
                   rows=[failed("000000002")])
    result = build_dataset("image-text", raw, tmp_path / "all")
    assert list(samples(tmp_path / "all")) == ["000000000", "000000001", "000010000"]
    assert (result.manifest.counts.read, result.manifest.by_split) == (4, {"train": 3})
    assert build_dataset("image-text", raw, tmp_path / "val", split="val").manifest.counts.read == 0
    limited = build_dataset("image-text", raw, tmp_path / "two", limit=2).manifest.counts
    assert (limited.read, limited.written) == (2, 2)


def test_a_download_without_parquets_or_with_damaged_shards_still_builds_what_it_can(tmp_path):
    two = [*sample("000000000", "kept", (8, 8)), *sample("000000001", "x", (8, 8))]
    raw = write_download(tmp_path / "raw", "00000", two)
    cut(raw / "00000.tar", 4100)  # img2dataset interrupted inside 000000001.jpg's data
    write_download(raw, "00001", sample("000010000", "fine", (8, 8)))
    (raw / "00001.parquet").write_bytes(b"PAR1 not really")
    write_download(raw, "00002", sample("000020000", "header cut", (8, 8)))
    cut(raw / "00002.tar", 1600)  # inside the second member's header, which tarfile alone takes for the end
    build_dataset("image-text", raw, tmp_path / "out")
    assert list(samples(tmp_path / "out")) == ["000000000", "000010000"]
    got = rejects(tmp_path / "out")
    assert [(source, stage) for source, stage, _ in got] == [
        ("00000.tar", "read"), ("000000001", "read"), ("00001.parquet", "read"), ("00002.tar", "read"),
        ("000020000", "read")]
    assert got[0][2] == ("00000.tar: not a readable tar after 4 members (unexpected end of data); "
                         "the members before that are read")
    assert got[1][2] == "00000.tar sample 000000001 has no json member (members: jpg)"
    assert got[2][2].startswith("00001.parquet: not a readable parquet file (")
    assert got[2][2].endswith("); failed downloads of this shard are not counted")
    assert got[3][2] == ("00002.tar: not a readable tar after 1 member (it ends inside a member header); "
                         "the members before that are read")


def cut(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


def test_a_folder_without_shards_is_an_input_error_in_one_line(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "images.tar").write_bytes(b"")
    with pytest.raises(InputFormatError) as e:
        build_dataset("image-text", tmp_path / "raw", tmp_path / "out")
    assert str(e.value) == (f"{tmp_path / 'raw'}: expected img2dataset webdataset output: shards 00000.tar, "
                            "00001.tar, ... (with 00000.parquet)")
