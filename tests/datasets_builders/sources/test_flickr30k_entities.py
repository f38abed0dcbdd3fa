"""flickr30k-entities: the documented example image converts exactly; bad files become named rejects."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from datasets_builders.build import build_dataset
from datasets_builders.formats.boxes import parse_grounded
from datasets_builders.sources.contract import InputFormatError
from datasets_builders.sources.flickr30k_entities import parse_sentence
from datasets_builders.store import ShardDataset, verify_dataset
from tests.fixtures import real_fixture

EXAMPLE = "1000092795"

# Hand-checked boxes of the example (333x500). XML corners are 1-based inclusive, so the 0-based
# exclusive box is (xmin - 1, ymin - 1, xmax, ymax); x is /333*100 and y /500*100, truncated.
CHAIN_1_FIRST = "{<47><24><65><67>}"  # 159,125,219,335 -> 158/333=47.4, 124/500=24.8, 219/333=65.8, 335/500=67
CHAIN_1_AND_6 = "{<58><21><78><74>}"  # 197,110,261,373 -> 196/333=58.9, 109/500=21.8, 261/333=78.4, 373/500=74.6
BUSHES = "{<0><43><63><94>}<delim>{<82><42><99><67>}"  # 1,220,211,473 and 276,215,332,337 (chain 4)
TWO_GUYS = f"{CHAIN_1_FIRST}<delim>{CHAIN_1_AND_6}"


def write_jpeg(path: Path, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 60)).save(path, "JPEG")


def example_input(tmp_path: Path) -> Path:
    fixture = real_fixture("flickr30k_entities")
    root = tmp_path / "in"
    for folder in ("Sentences", "Annotations"):
        shutil.copytree(fixture / folder, root / folder)
    write_jpeg(root / "flickr30k-images" / f"{EXAMPLE}.jpg", (333, 500))
    return root


def xml(size: tuple[int, int], *objects: tuple[list[int], tuple[int, int, int, int] | None]) -> str:
    """An annotation file: each object is (chain ids, 1-based box or None for a nobndbox object)."""
    parts = [f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"]
    for names, box in objects:
        parts.append("<object>" + "".join(f"<name>{n}</name>" for n in names))
        if box is None:
            parts.append("<scene>0</scene><nobndbox>1</nobndbox></object>")
        else:
            parts.append("<bndbox>" + "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
                         + "</bndbox></object>")
    return "".join(parts) + "</annotation>"


def write_image(root: Path, image_id: str, sentences: list[str], annotation: str, size=(100, 50), image=True) -> None:
    for folder in ("Sentences", "Annotations"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "Sentences" / f"{image_id}.txt").write_text("".join(s + "\n" for s in sentences))
    (root / "Annotations" / f"{image_id}.xml").write_text(annotation)
    if image:
        write_jpeg(root / "flickr30k-images" / f"{image_id}.jpg", size)


def simple(root: Path, image_id: str, **kw) -> None:
    """An image whose one caption grounds one phrase (chain 1 at pixels 0..49 x 0..24)."""
    sentence = f"[/EN#1/people A person {image_id}] sits ."
    write_image(root, image_id, [sentence], xml((100, 50), ([1], (1, 1, 50, 25))), **kw)


def samples_by_key(root: Path) -> dict:
    return {s.key: s for s in ShardDataset(root).samples()}


def rejects(root: Path) -> list[tuple[str, str, str]]:
    return [(r["source_id"], r["stage"], r["reason"]) for r in pq.read_table(root / "rejects.parquet").to_pylist()]


def test_the_documented_example_converts_exactly(tmp_path):
    result = build_dataset("flickr30k-entities", example_input(tmp_path), tmp_path / "out")
    counts = result.manifest.counts
    assert (counts.read, counts.records_written, counts.written, counts.rejected) == (1, 1, 16, 0)
    assert result.manifest.repairs == {"no split lists: image put in train": 1}
    assert verify_dataset(result.root).ok
    s = samples_by_key(result.root)
    assert s[f"{EXAMPLE}-0-grounding"].turns[1].content == (
        f"<p>Two young guys</p> {TWO_GUYS} with shaggy hair look at their hands while hanging out in the yard .")
    assert s[f"{EXAMPLE}-0-detection"].turns[0].content == (
        "[detection] Two young guys with shaggy hair look at their hands while hanging out in the yard .")
    assert s[f"{EXAMPLE}-0-detection"].turns[1].content == f"<p>Two young guys</p> {TWO_GUYS}"
    assert s[f"{EXAMPLE}-1-grounding"].turns[1].content == (
        f"<p>Two young , White males</p> {TWO_GUYS} are outside near <p>many bushes</p> {BUSHES} .")
    assert s[f"{EXAMPLE}-3-grounding"].turns[1].content == (
        f"<p>A man</p> {CHAIN_1_AND_6} in a blue shirt standing in a garden .")
    assert s[f"{EXAMPLE}-4-grounding"].turns[1].content == (
        f"<p>Two friends</p> {TWO_GUYS} enjoy time spent together .")  # chain 10 is nobndbox: plain
    assert s[f"{EXAMPLE}-0-grounding"].meta == {
        "fields": {"caption": "Two young guys with shaggy hair look at their hands while hanging out in the yard .",
                   "phrases": [{"start": 0, "end": 14, "boxes": [[158, 124, 219, 335], [196, 109, 261, 373]]}]},
        "image_id": EXAMPLE, "sentence": 0, "chains": [{"id": 1, "types": ["people"]}]}
    phrases = {s[k].turns[1].content for k in s if s[k].task == "detection-phrase"}
    assert phrases == {f"<p>Two young guys</p> {TWO_GUYS}", f"<p>Two young , White males</p> {TWO_GUYS}",
                       f"<p>many bushes</p> {BUSHES}", f"<p>Two men</p> {TWO_GUYS}", f"<p>A man</p> {CHAIN_1_AND_6}",
                       f"<p>Two friends</p> {TWO_GUYS}"}
    assert s[f"{EXAMPLE}-p0"].meta["fields"] == {"phrase": "Two young guys",
                                                  "boxes": [[158, 124, 219, 335], [196, 109, 261, 373]]}
    assert {x.split for x in s.values()} == {"train"}


def test_grounded_answers_parse_back_with_the_shared_parser(tmp_path):
    result = build_dataset("flickr30k-entities", example_input(tmp_path), tmp_path / "out")
    sample = samples_by_key(result.root)[f"{EXAMPLE}-1-grounding"]
    assert parse_grounded(sample.turns[1].content) == [
        ("Two young , White males", [(47, 24, 65, 67), (58, 21, 78, 74)]),
        ("many bushes", [(0, 43, 63, 94), (82, 42, 99, 67)])]


def test_a_sentence_line_becomes_a_single_spaced_caption_with_phrase_spans_and_all_types():
    caption, mentions = parse_sentence("[/EN#6729/vehicles/scene The  subway] stops at [/EN#0/notvisual night] .")
    assert caption == "The subway stops at night ."
    assert [(caption[m.start:m.end], m.chain, m.types) for m in mentions] == [
        ("The subway", "6729", ("vehicles", "scene")), ("night", "0", ("notvisual",))]
    with pytest.raises(ValueError, match=r"unbalanced '\[' at character 0"):
        parse_sentence("[/EN#1/people Two guys look up .")
    with pytest.raises(ValueError, match=r"unbalanced '\]' at character 8"):
        parse_sentence("Two guys] look up .")


def test_a_phrase_with_two_types_is_grounded_and_keeps_both_types(tmp_path):
    root = tmp_path / "in"
    write_image(root, "5", ["[/EN#3/vehicles/scene the subway] arrives ."], xml((200, 100), ([3], (21, 11, 120, 60))),
                size=(200, 100))
    s = samples_by_key(build_dataset("flickr30k-entities", root, tmp_path / "out").root)
    assert s["5-0-grounding"].turns[1].content == "<p>the subway</p> {<10><10><60><60>} arrives ."
    assert s["5-0-grounding"].meta["chains"] == [{"id": 3, "types": ["vehicles", "scene"]}]


def test_bad_files_and_captions_are_rejected_with_what_is_wrong(tmp_path):
    root = tmp_path / "in"
    simple(root, "1")
    write_image(root, "2", ["x"], "<annotation><size><width>100</width></size>")  # cut short
    write_image(root, "3", ["[/EN#1/people A man] ."], xml((100, 50), ([1], (1, 1, 101, 25))))
    simple(root, "4", image=False)
    write_image(root, "6", ["[/EN#1/people A man] .", "[/EN#2/people A dog sits .",
                            "[/EN#9/other It] is [/EN#0/notvisual late] ."],
                xml((100, 50), ([1], (1, 1, 50, 25)), ([9], None)))
    simple(root, "7", size=(50, 50))
    (root / "UNRELATED_CAPTIONS").write_text("# format: <imageID> <sentence number>\n1 1\n")
    result = build_dataset("flickr30k-entities", root, tmp_path / "out")
    counts = result.manifest.counts
    assert (counts.read, counts.records_written, counts.records_rejected) == (6, 1, 5)
    assert counts.read == counts.records_written + counts.records_rejected
    images = root / "flickr30k-images"
    assert rejects(result.root) == [
        ("1", "convert", "caption 0 is listed in UNRELATED_CAPTIONS"),
        ("2", "read", "2.xml: not well-formed XML (no element found: line 1, column 43)"),
        ("3", "convert",
         "3.xml: object 0 (chain 1): box [0, 0, 101, 25] (x0, y0, x1, y1) lies outside the 100x50 image"),
        ("4", "image", f"image file {images / '4.jpg'} is missing"),
        ("6", "read", "6.txt: caption 1 is malformed (unbalanced '[' at character 0): '[/EN#2/people A dog sits .'"),
        ("6", "convert", "caption 2 has no phrase with a box"),
        ("7", "image", f"image {images / '7.jpg'} is 50x50 but the annotation says 100x50; its boxes would be wrong"),
    ]
    assert sorted(samples_by_key(result.root)) == ["6-0-detection", "6-0-grounding", "6-p0"]


def test_split_lists_assign_splits_and_reject_unlisted_images(tmp_path):
    root = tmp_path / "in"
    for image_id in ("10", "11", "12", "13"):
        simple(root, image_id)
    (root / "train.txt").write_text("10\n")
    (root / "val.txt").write_text("11\n14\n")
    (root / "test.txt").write_text("12\n")
    result = build_dataset("flickr30k-entities", root, tmp_path / "out")
    assert {(s.source.id, s.split) for s in ShardDataset(result.root).samples()} == {("10", "train"), ("11", "val"),
                                                                                      ("12", "test")}
    assert rejects(result.root) == [("13", "read", "image 13 is not in train.txt/val.txt/test.txt"),
                                    ("14", "read", "val.txt lists image 14 but there is no Sentences/14.txt")]
    assert result.manifest.repairs == {}


def test_split_val_reads_only_the_val_images(tmp_path):
    root = tmp_path / "in"
    for image_id in ("10", "11", "12", "13"):
        simple(root, image_id)
    (root / "train.txt").write_text("10\n12\n")
    (root / "val.txt").write_text("11\n")
    result = build_dataset("flickr30k-entities", root, tmp_path / "out", split="val")
    assert result.manifest.counts.read == 1
    assert sorted(samples_by_key(result.root)) == ["11-0-detection", "11-0-grounding", "11-p0"]
    assert samples_by_key(result.root)["11-p0"].turns[1].content == "<p>A person 11</p> {<0><0><50><50>}"


def test_a_folder_that_is_not_flickr30k_entities_fails_fast_with_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFormatError) as e:
        build_dataset("flickr30k-entities", tmp_path / "empty", tmp_path / "out")
    assert "expected Sentences/ and Annotations/ folders" in str(e.value) and "\n" not in str(e.value)
    root = tmp_path / "no-images"
    simple(root, "1", image=False)
    with pytest.raises(InputFormatError, match="holds the image '1.jpg'"):
        build_dataset("flickr30k-entities", root, tmp_path / "out2")
