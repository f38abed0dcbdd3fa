"""The llava source: LLaVA-Instruct JSON lists -> multi-turn samples, cleaned as MiniGPT-v2 does."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image as PILImage

from datasets_builders.build import build_dataset
from datasets_builders.formats.schema import Source, Turn
from datasets_builders.sources import llava
from datasets_builders.sources.contract import InputFormatError, Options, RecordError, Reject
from datasets_builders.store import ShardDataset

BUS = "000000033471"
DOG = "000000052846"


def entry(image_id: str, *rounds: tuple[str, str], image: bool = True) -> dict:
    turns = []
    for question, answer in rounds:
        turns += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
    out = {"id": image_id, "conversations": turns}
    if image:
        out["image"] = f"{image_id}.jpg"
    return out


def write_raw(root: Path, files: dict[str, list], images=(BUS, DOG), folder="coco/train2017", prefix="") -> Path:
    """A LLaVA input folder: the JSON files at the top, COCO images below."""
    image_dir = root / folder
    image_dir.mkdir(parents=True, exist_ok=True)
    for i, image_id in enumerate(images):
        PILImage.new("RGB", (64 + i, 48), (200, 40 * i, 30)).save(image_dir / f"{prefix}{image_id}.jpg", "JPEG")
    for name, entries in files.items():
        (root / name).write_text(json.dumps(entries), encoding="utf-8")
    return root


def records(root: Path, split: str | None = None) -> list:
    return list(llava.read_records(llava.locate(root, Options()), split))


def samples_of(record) -> list:
    return list(llava.to_samples(record))


def test_a_conversation_entry_keeps_its_turns_raw_except_the_image_placeholder(tmp_path):
    conv = entry(BUS, ("<image>\nWhat are the colors of the bus in the image?",
                       "The bus in the image is white and red."),
                 ("What feature can be seen on the back of the bus?", "The back of the bus features an advertisement."))
    root = write_raw(tmp_path, {"conversation_58k.json": [conv]})
    [record] = records(root)
    [sample] = samples_of(record)
    assert sample.key == "conversation_58k-000000033471"
    assert sample.source == Source("llava", "conversation_58k:000000033471")
    assert (sample.task, sample.split) == ("llava-conversation", "train")
    assert sample.turns == (
        Turn("user", "What are the colors of the bus in the image?"),
        Turn("assistant", "The bus in the image is white and red."),
        Turn("user", "What feature can be seen on the back of the bus?"),
        Turn("assistant", "The back of the bus features an advertisement."),
    )
    assert dict(sample.meta) == {"file": "conversation_58k.json", "image_id": BUS, "file_name": f"{BUS}.jpg",
                                 "fields": {"rounds": 2}}
    image_file = root / "coco/train2017" / f"{BUS}.jpg"
    assert sample.image.data == image_file.read_bytes()  # original bytes, not re-encoded
    assert (sample.image.format, sample.image.width, sample.image.height) == ("jpg", 64, 48)


def test_detail_and_reasoning_instructions_are_blip_normalised_but_answers_are_not(tmp_path):
    detail = entry(BUS, ("What do you see happening in this image?\n<image>", "The Image shows a Bus: it is RED."))
    reason = entry(DOG, ("<image>\nWhat might be the PURPOSE (of this dog's vest)?   Explain; briefly!",
                         "It is likely a Service Dog."))
    root = write_raw(tmp_path, {"detail_23k.json": [detail], "complex_reasoning_77k.json": [reason]})
    by_task = {s.task: s for r in records(root) for s in samples_of(r)}
    assert by_task["llava-detail"].turns == (Turn("user", "what do you see happening in this image?"),
                                             Turn("assistant", "The Image shows a Bus: it is RED."))
    assert by_task["llava-reason"].turns == (Turn("user",
                                                  "what might be the purpose of this dog's vest ? explain briefly"),
                                             Turn("assistant", "It is likely a Service Dog."))
    assert by_task["llava-detail"].key == "detail_23k-000000033471"


def test_later_questions_of_a_reasoning_file_are_normalised_too_while_conversations_stay_raw(tmp_path):
    rounds = (("<image>\nFirst?", "One."), ("Second: WHY?", "Two."))
    root = write_raw(tmp_path, {"complex_reasoning_77k.json": [entry(BUS, *rounds)],
                                "conversation_58k.json": [entry(BUS, *rounds)]})
    turns = {r.task: samples_of(r)[0].turns for r in records(root)}
    assert [t.content for t in turns["llava-reason"]] == ["first?", "One.", "second why?", "Two."]
    assert [t.content for t in turns["llava-conversation"]] == ["First?", "One.", "Second: WHY?", "Two."]


def test_the_task_comes_from_the_file_stem():
    assert llava.task_for("detail_23k") == "llava-detail"
    assert llava.task_for("complex_reasoning_77k") == "llava-reason"
    assert llava.task_for("conversation_58k") == "llava-conversation"
    assert llava.task_for("llava_instruct_150k") == "llava-conversation"


def test_records_come_grouped_by_image_then_id_file_by_file(tmp_path):
    conv = [entry(DOG, ("<image>\nq", "a")), entry(BUS, ("<image>\nq", "a"))]
    detail = [entry(DOG, ("<image>\nq", "a"))]
    root = write_raw(tmp_path, {"detail_23k.json": detail, "conversation_58k.json": conv})
    assert [r.source.id for r in records(root)] == [
        "conversation_58k:000000033471", "conversation_58k:000000052846", "detail_23k:000000052846"]


def test_an_id_repeated_in_one_file_gets_numbered_sources_and_distinct_keys(tmp_path):
    # llava_instruct_150k.json lists each image once per kind (conversation, detail, reasoning).
    merged = [entry(BUS, ("<image>\nfirst", "a")), entry(BUS, ("<image>\nsecond", "b")),
              entry(BUS, ("<image>\nthird", "c"))]
    root = write_raw(tmp_path, {"llava_instruct_150k.json": merged})
    recs = records(root)
    assert [r.source.id for r in recs] == ["llava_instruct_150k:000000033471", "llava_instruct_150k:000000033471#2",
                                           "llava_instruct_150k:000000033471#3"]
    assert [samples_of(r)[0].turns[0].content for r in recs] == ["first", "second", "third"]  # file order kept
    assert [r.key for r in recs] == ["llava_instruct_150k-000000033471", "llava_instruct_150k-000000033471-2",
                                     "llava_instruct_150k-000000033471-3"]


@pytest.mark.parametrize(("turns", "reason"), [
    ([], 'conversation_58k.json entry 000000033471: "conversations" is missing, empty or not a list'),
    ([{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}, {"from": "human", "value": "q2"}],
     "conversation_58k.json entry 000000033471: an odd number of turns (3); needs human/gpt pairs "
     "(turn 2 has no answer)"),
    ([{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}],
     "conversation_58k.json entry 000000033471: turn 0 is from 'gpt', expected 'human' (strict human/gpt alternation)"),
    ([{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"},
      {"from": "human", "value": "q2"}, {"from": "human", "value": "q3"}],
     "conversation_58k.json entry 000000033471: turn 3 is from 'human', expected 'gpt' (strict human/gpt alternation)"),
    ([{"from": "human", "value": "<image>\n"}, {"from": "gpt", "value": "a"}],
     "conversation_58k.json entry 000000033471: turn 0 (human) is empty after removing <image> and newlines"),
    ([{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "  "}],
     "conversation_58k.json entry 000000033471: turn 1 (gpt) is empty"),
    ([{"from": "human", "value": "<image>\nq"}, {"from": "gpt"}],
     'conversation_58k.json entry 000000033471: turn 1 (gpt) has no text "value"'),
])
def test_broken_conversations_reject_the_record_naming_the_turn(tmp_path, turns, reason):
    root = write_raw(tmp_path, {"conversation_58k.json": [{"id": BUS, "image": f"{BUS}.jpg", "conversations": turns}]})
    [record] = records(root)
    with pytest.raises(RecordError) as err:
        samples_of(record)
    assert (str(err.value), err.value.stage) == (reason, "convert")


def test_a_detail_question_that_is_only_punctuation_is_rejected_after_normalisation(tmp_path):
    root = write_raw(tmp_path, {"detail_23k.json": [entry(BUS, ("<image>\n...!", "a"))]})
    [record] = records(root)
    with pytest.raises(RecordError, match=r"^detail_23k.json entry 000000033471: turn 0 \(human\) is empty after "
                                          r"removing <image> and newlines and blip normalisation$"):
        samples_of(record)


def test_a_missing_or_undecodable_image_is_an_image_stage_reject(tmp_path):
    conv = [entry(BUS, ("<image>\nq", "a")), entry("000000000009", ("<image>\nq", "a")), entry(DOG, ("<image>\nq", "a"))]
    root = write_raw(tmp_path, {"conversation_58k.json": conv})
    (root / "coco/train2017" / f"{DOG}.jpg").write_bytes(b"not a jpeg at all")
    by_id = {r.id: r for r in records(root)}
    with pytest.raises(RecordError) as missing:
        samples_of(by_id["000000000009"])
    assert missing.value.stage == "image"
    assert str(missing.value) == f"image file {root / 'coco/train2017/000000000009.jpg'} is missing"
    with pytest.raises(RecordError, match="cannot be decoded") as broken:
        samples_of(by_id[DOG])
    assert broken.value.stage == "image"


def test_entries_without_an_image_become_text_only_samples_with_their_text_untouched(tmp_path):
    text_only = entry("sharegpt-17", ("Write a haiku.\nAbout rain.", "Soft rain on the roof."), image=False)
    root = write_raw(tmp_path, {"conversation_58k.json": [entry(BUS, ("<image>\nq", "a")), text_only]})
    sample = next(s for r in records(root) for s in samples_of(r) if s.image is None)
    assert sample.turns[0] == Turn("user", "Write a haiku.\nAbout rain.")
    assert dict(sample.meta) == {"file": "conversation_58k.json", "image_id": "sharegpt-17", "fields": {"rounds": 1}}
    assert sample.key == "conversation_58k-sharegpt-17"


def test_an_entry_without_an_id_is_a_read_reject_naming_the_file_and_index(tmp_path):
    no_id = {"image": "x.jpg", "conversations": []}
    root = write_raw(tmp_path, {"conversation_58k.json": [entry(BUS, ("<image>\nq", "a")), no_id]})
    outcomes = records(root)
    assert outcomes[0] == Reject(Source("llava", "conversation_58k:[1]"), "read",
                                 'conversation_58k.json entry 1: no "id" (expected a string or number)')
    assert [type(o).__name__ for o in outcomes] == ["Reject", "LlavaRecord"]


def test_an_image_path_leaving_the_input_folder_is_rejected(tmp_path):
    bad = dict(entry("1", ("q", "a")), image="../secret.jpg")
    root = write_raw(tmp_path, {"conversation_58k.json": [entry(BUS, ("<image>\nq", "a")), bad]})
    record = next(r for r in records(root) if r.id == "1")
    with pytest.raises(RecordError, match=r"image '\.\./secret\.jpg' is not a file name inside the input folder"):
        samples_of(record)


def test_image_paths_with_folders_are_relative_to_the_input_folder(tmp_path):
    mix = {"id": BUS, "image": f"coco/train2017/{BUS}.jpg", "conversations": [{"from": "human", "value": "<image>\nq"},
                                                                          {"from": "gpt", "value": "a"}]}
    root = write_raw(tmp_path, {"llava_v1_5_mix665k.json": [mix]})
    [sample] = samples_of(records(root)[0])
    assert sample.image.data == (root / "coco/train2017" / f"{BUS}.jpg").read_bytes()


def test_minigptv2_train2014_image_names_are_found_too(tmp_path):
    root = write_raw(tmp_path, {"conversation_58k.json": [entry(BUS, ("<image>\nq", "a"))]},
                     folder="train2014", prefix="COCO_train2014_")
    [sample] = samples_of(records(root)[0])
    assert sample.image.data == (root / "train2014" / f"COCO_train2014_{BUS}.jpg").read_bytes()
    assert sample.meta["file_name"] == f"{BUS}.jpg"


def test_only_the_train_split_exists(tmp_path):
    root = write_raw(tmp_path, {"conversation_58k.json": [entry(BUS, ("<image>\nq", "a"))]})
    assert records(root, "val") == []
    assert len(records(root, "train")) == 1


def test_other_json_files_in_the_folder_are_ignored(tmp_path):
    root = write_raw(tmp_path, {"conversation_58k.json": [entry(BUS, ("<image>\nq", "a"))],
                                "instances_train2017.json": {"images": [], "annotations": []},
                                "notes.json": [{"text": "no conversations here"}]})
    assert llava.locate(root, Options()).files == (root / "conversation_58k.json",)


def test_a_folder_that_is_not_llava_fails_at_once_naming_it(tmp_path):
    (tmp_path / "notes.json").write_text("[]")
    with pytest.raises(InputFormatError, match="^" + re.escape(f"{tmp_path}: expected LLaVA-Instruct JSON files")):
        llava.locate(tmp_path, Options())
    (tmp_path / "detail_23k.json").write_text('[{"id": "1", "conversations": [')
    with pytest.raises(InputFormatError, match="^" + re.escape(f"{tmp_path / 'detail_23k.json'}: not valid JSON")):
        llava.locate(tmp_path, Options())


def test_a_folder_without_the_images_fails_at_once(tmp_path):
    root = write_raw(tmp_path, {"conversation_58k.json": [entry("000000000123", ("<image>\nq", "a"))]})
    with pytest.raises(InputFormatError, match=r"holds the entries' images, e.g. '000000000123.jpg' or "
                                               r"'COCO_train2014_000000000123.jpg'"):
        llava.locate(root, Options())


def test_one_missing_image_does_not_hide_the_image_folder(tmp_path):
    conv = [entry("000000000001", ("<image>\nq", "a")), entry(BUS, ("<image>\nq", "a"))]
    root = write_raw(tmp_path, {"conversation_58k.json": conv})
    assert llava.locate(root, Options()).image_dir == root / "coco/train2017"


def test_a_build_writes_good_entries_rejects_bad_ones_and_reconciles(tmp_path):
    conv = [entry(BUS, ("<image>\nWhat is this?", "A bus.")), entry(DOG, ("<image>\nq", "a"), ("q2", "a2")),
            {"id": "000000000005", "image": "000000000005.jpg", "conversations": [{"from": "gpt", "value": "a"}]},
            entry("000000000006", ("<image>\nq", "a"))]
    detail = [entry(BUS, ("<image>\nQ.", "A."))]
    root = write_raw(tmp_path / "raw", {"conversation_58k.json": conv, "detail_23k.json": detail})
    result = build_dataset("llava", root, tmp_path / "llava")
    counts = result.manifest.counts
    assert (counts.read, counts.written, counts.records_written, counts.records_rejected) == (5, 3, 3, 2)
    assert result.manifest.by_task == {"llava-conversation": 2, "llava-detail": 1}
    rejects = pq.read_table(result.root / "rejects.parquet").to_pylist()
    assert [(r["source_id"], r["stage"]) for r in rejects] == [("conversation_58k:000000000005", "convert"),
                                                                ("conversation_58k:000000000006", "image")]
    assert rejects[0]["reason"] == ("conversation_58k.json entry 000000000005: an odd number of turns (1); "
                                    "needs human/gpt pairs (turn 0 has no answer)")
    stored = {s.key: s for s in ShardDataset(result.root).samples()}
    assert stored["conversation_58k-000000033471"].turns[0] == Turn("user", "What is this?")
    assert stored["detail_23k-000000033471"].turns[0] == Turn("user", "q")
    again = build_dataset("llava", root, tmp_path / "again" / "llava")
    shards = sorted(p.name for p in result.root.glob("*.tar"))
    assert [(result.root / n).read_bytes() for n in shards] == [(again.root / n).read_bytes() for n in shards]
