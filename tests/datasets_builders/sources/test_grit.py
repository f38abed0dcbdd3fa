"""GRIT-20M downloaded with img2dataset -> grounding, refer and identify samples: exact turns,
confidence threshold, merged and overlapping noun chunks, resized downloads, every reject class."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from datasets_builders.build import build_dataset
from datasets_builders.sources.contract import InputFormatError, Options
from datasets_builders.sources.grit import BELOW, OVERLAP
from datasets_builders.store import ShardDataset, verify_dataset
from datasets_builders.templates.render import choose, pools
from tests.datasets_builders.sources.test_image_text import failed, picture, sample, write_download

CAPTION = "a dog and a red ball on grass"  # "a dog" 0..5, "a red ball" 10..20, "a red ball on grass" 10..29
DOG = [0.0, 5.0, 0.1, 0.2, 0.5, 0.9, 0.8]
BALL = [10.0, 20.0, 0.6, 0.5, 0.8, 0.7, 0.7]
BALL_ON_GRASS = [10.0, 29.0, 0.6, 0.5, 0.8, 0.7, 0.7]


def grit(key: str, caption: str = CAPTION, chunks=(DOG, BALL), refs=(BALL_ON_GRASS,), size=(200, 100), **extra):
    """One downloaded GRIT url's members (json fields as the dataset card's img2dataset command saves them)."""
    columns = {"id": 1795296605919, "noun_chunks": [list(c) for c in chunks], "ref_exps": [list(r) for r in refs],
               "clip_similarity_vitb32": 0.35, "clip_similarity_vitl14": 0.29}
    return sample(key, caption, size, **{**columns, **extra})


def without_spans(data: bytes) -> bytes:
    """A json as downloaded without --save_additional_columns."""
    return json.dumps({k: v for k, v in json.loads(data).items() if k not in ("noun_chunks", "ref_exps")}).encode()


def turns(s) -> list[tuple[str, str]]:
    return [(t.role, t.content) for t in s.turns]


def rejects(root: Path) -> list[tuple[str, str, str]]:
    return [(r["source_id"], r["stage"], r["reason"]) for r in pq.read_table(root / "rejects.parquet").to_pylist()]


def build(tmp_path: Path, members, rows=(), **options):
    raw = write_download(tmp_path / "raw", "00000", list(members), rows=list(rows))
    result = build_dataset("grit", raw, tmp_path / "out", options=Options(**options))
    return result, {s.key: s for s in ShardDataset(tmp_path / "out").samples()}


def test_noun_chunks_ground_the_caption_and_each_ref_exp_gives_refer_and_identify(tmp_path):
    _, out = build(tmp_path, grit("000000007"))
    assert sorted(out) == ["000000007-grounding", "000000007-r0-identify", "000000007-r0-refer"]
    grounding = out["000000007-grounding"]
    assert turns(grounding) == [
        ("user", pools()["grounding"][choose("grounding", "000000007-grounding")]),
        ("assistant", "<p>a dog</p> {<10><20><50><90>} and <p>a red ball</p> {<60><50><80><70>} on grass")]
    assert dict(grounding.meta) == {
        "fields": {"caption": CAPTION, "phrases": [{"start": 0, "end": 5, "boxes": [[20.0, 20.0, 100.0, 90.0]]},
                                                  {"start": 10, "end": 20, "boxes": [[120.0, 50.0, 160.0, 70.0]]}]},
        "grit_id": 1795296605919, "url": "https://example.com/000000007.jpg", "confidence": [[0.8], [0.7]]}
    refer, identify = out["000000007-r0-refer"], out["000000007-r0-identify"]
    assert turns(refer) == [
        ("user", pools()["refer"][choose("refer", "000000007-r0-refer")].format("a red ball on grass")),
        ("assistant", "{<60><50><80><70>}")]
    assert turns(identify) == [
        ("user", pools()["identify"][choose("identify", "000000007-r0-identify")].format("{<60><50><80><70>}")),
        ("assistant", "a red ball on grass")]
    assert dict(refer.meta) == {"fields": {"expression": "a red ball on grass", "box": [120.0, 50.0, 160.0, 70.0]},
                                "grit_id": 1795296605919, "url": "https://example.com/000000007.jpg",
                                "confidence": 0.7, "span": [10, 29]}
    assert {(s.task, s.split, s.image.data) for s in out.values()} == {
        (t, "train", picture((200, 100))) for t in ("grounding", "refer", "identify")}


def test_a_download_resized_with_its_aspect_ratio_keeps_the_fractions_in_its_own_pixels(tmp_path):
    chunk = [0.0, 5.0, 0.29, 0.2, 0.5, 0.9, 0.8]  # 0.29 of 100 px: int(29 / 100 * 100) is 28 in floats
    _, out = build(tmp_path, grit("000000000", chunks=[chunk], refs=[], size=(100, 50),
                                  original_width=400, original_height=201))
    (grounding,) = out.values()
    assert grounding.meta["fields"]["phrases"] == [{"start": 0, "end": 5, "boxes": [[29.0, 10.0, 50.0, 45.0]]}]
    assert grounding.turns[1].content == "<p>a dog</p> {<28><20><50><90>} and a red ball on grass"


def test_spans_below_min_confidence_are_dropped_and_counted(tmp_path):
    low = grit("000000001", chunks=[[*DOG[:6], 0.3]], refs=[[*BALL_ON_GRASS[:6], 0.5]])
    result, out = build(tmp_path, [*grit("000000000"), *low], min_confidence=0.75)
    assert sorted(out) == ["000000000-grounding"]
    assert out["000000000-grounding"].turns[1].content == "<p>a dog</p> {<10><20><50><90>} and a red ball on grass"
    assert result.manifest.repairs == {BELOW: 2}  # the ball's chunk and ref of 000000000; 000000001 is rejected whole
    assert rejects(tmp_path / "out") == [
        ("000000001", "convert", "00000.tar sample 000000001: no span at or above min_confidence 0.75")]
    assert result.manifest.spec.parameters["min_confidence"] == 0.75


def test_chunks_with_one_span_share_a_phrase_and_of_overlapping_ones_the_most_confident_stays(tmp_path):
    caption = "two dogs near a tree"  # "two dogs" 0..8, "dogs" 4..8, "a tree" 14..20
    chunks = [[14, 20, 0.5, 0.1, 0.9, 0.9, 0.7], [4, 8, 0.0, 0.0, 0.2, 0.2, 0.85],
              [0, 8, 0.1, 0.5, 0.3, 0.9, 0.6], [0, 8, 0.35, 0.5, 0.45, 0.9, 0.9]]
    result, out = build(tmp_path, grit("000000000", caption=caption, chunks=chunks, refs=[]))
    assert out["000000000-grounding"].turns[1].content == (
        "<p>two dogs</p> {<10><50><30><90>}<delim>{<35><50><45><90>} near <p>a tree</p> {<50><10><90><90>}")
    assert result.manifest.repairs == {OVERLAP: 1}


def test_each_bad_span_or_record_is_rejected_with_a_reason_and_counts_reconcile(tmp_path):
    members = [
        *grit("000000000"),
        *grit("000000002", chunks=[DOG, [5, 99, 0.1, 0.1, 0.2, 0.2, 0.9]], refs=[[10, 20, 0.5, 0.5, 1.2, 0.9, 0.9]]),
        *grit("000000003", chunks=[[0, 5, 0.5, 0.5, 0.5, 0.9, 0.9], [1, 2, 3]], refs=[]),
        *grit("000000004", size=(100, 100), original_width=200, original_height=100),
        *grit("000000005", caption="...", chunks=[], refs=[[0, 3, 0.1, 0.1, 0.2, 0.2, 0.9]]),
        *[m for m in grit("000000006") if not m[0].endswith(".jpg")],
        ("000000007.jpg", picture((200, 100))), ("000000007.json", b"[1, 2]"),
        *[(name, without_spans(data) if name.endswith(".json") else data) for name, data in grit("000000008")],
    ]
    result, out = build(tmp_path, members, rows=[failed("000000001")])
    where = "00000.tar sample"
    assert rejects(tmp_path / "out") == [
        ("000000001", "read", "00000.parquet: https://example.com/000000001.jpg was not downloaded "
                              "(failed_to_download: HTTP Error 404: Not Found)"),
        ("000000002", "convert", f"{where} 000000002: noun_chunks[1]: characters 5..99 are empty or outside the "
                                 "29-character caption"),
        ("000000002", "convert", f"{where} 000000002: ref_exps[0]: box [0.5, 0.5, 1.2, 0.9] lies outside 0..1"),
        ("000000003", "convert", f"{where} 000000003: no span at or above min_confidence 0; 2 unusable, the first: "
                                 "noun_chunks[0]: box [0.5, 0.5, 0.5, 0.9] is empty"),
        ("000000004", "convert", f"{where} 000000004: stored 100x100 but the original is 200x100: aspect ratio "
                                 "changed by the download (resize_mode border/center_crop?); "
                                 "normalised boxes would be wrong"),
        ("000000005", "convert", f"{where} 000000005: ref_exps[0] '...' is empty after normalisation"),
        ("000000006", "image", f"{where} 000000006 has no image member (000000006.jpg)"),
        ("000000007", "read", f"{where} 000000007: 000000007.json is a list, not a JSON object"),
        ("000000008", "convert", f"{where} 000000008: json has no noun_chunks or ref_exps (download with "
                                 "--save_additional_columns "
                                 "'[\"id\",\"noun_chunks\",\"ref_exps\",\"clip_similarity_vitb32\","
                                 "\"clip_similarity_vitl14\"]')"),
    ]
    assert sorted(out) == ["000000000-grounding", "000000000-r0-identify", "000000000-r0-refer", "000000002-grounding"]
    c = result.manifest.counts
    assert (c.read, c.records_written, c.records_rejected) == (9, 2, 7)
    assert verify_dataset(tmp_path / "out").ok


def test_malformed_spans_are_named_with_their_published_value(tmp_path):
    result, _ = build(tmp_path, grit("000000000", chunks=[DOG, [1, 2, 3], [0.5, 5, 0.1, 0.1, 0.2, 0.2, 0.9]]))
    assert [r[2] for r in rejects(tmp_path / "out")] == [
        "00000.tar sample 000000000: noun_chunks[1] [1, 2, 3] is not "
        "[start, end, x_min, y_min, x_max, y_max, confidence]",
        "00000.tar sample 000000000: noun_chunks[2]: offsets 0.5..5 are not whole characters"]
    assert result.manifest.counts.records_written == 1


def test_the_grit_url_list_itself_is_refused_with_a_hint(tmp_path):
    (tmp_path / "GRIT").mkdir()
    (tmp_path / "GRIT" / "coyo_0_snappy.parquet").write_bytes(b"")
    with pytest.raises(InputFormatError) as e:
        build_dataset("grit", tmp_path / "GRIT", tmp_path / "out")
    assert str(e.value) == (f"{tmp_path / 'GRIT'}: expected img2dataset webdataset output: shards 00000.tar, "
                            "00001.tar, ... (with 00000.parquet); coyo_*_snappy.parquet is GRIT's url list: "
                            "download its images with img2dataset first")
