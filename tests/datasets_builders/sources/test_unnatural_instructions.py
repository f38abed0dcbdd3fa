"""The unnatural-instructions source: instances[0] -> one text-only sample, as MiniGPT-v2 uses it."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest

from datasets_builders.formats.schema import Source, Turn
from datasets_builders.sources import unnatural_instructions as ui
from datasets_builders.sources.contract import InputFormatError, Options, RecordError, Reject

SORT = {
    "instruction": "You are given a list of numbers. Sort them in ascending order.",
    "instances": [{
        "instruction_with_input": "You are given a list of numbers. Sort them in ascending order.\nInput: 3, 1, 2",
        "input": "3, 1, 2",
        "constraints": "The output should be comma-separated.",
        "output": "1, 2, 3",
    }],
}


def instance(iwi: str = "Say hi.", output: str = "Hi!", constraints: str | None = None, **extra) -> dict:
    return {"instruction": "x", "instances": [{"instruction_with_input": iwi, "input": "", "constraints": constraints,
                                               "output": output, **extra}]}


def jsonl(*lines: object) -> str:
    return "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)


def outcomes(root: Path, split: str | None = None) -> list:
    return list(ui.read_records(ui.locate(root, Options()), split))


def converted(root: Path) -> list:
    """Samples, or the RecordError message, per record read."""
    out = []
    for item in outcomes(root):
        if isinstance(item, Reject):
            out.append(item)
            continue
        try:
            out += list(ui.to_samples(item))
        except RecordError as e:
            out.append(str(e))
    return out


def test_a_core_data_line_becomes_one_normalised_text_sample(tmp_path):
    (tmp_path / "core_data.jsonl").write_text(jsonl(SORT))
    [sample] = converted(tmp_path)
    assert sample.key == "core_data-1"
    assert sample.source == Source("unnatural-instructions", "core_data.jsonl:1")
    assert (sample.task, sample.split, sample.image) == ("text", "train", None)
    instruction = ("you are given a list of numbers sort them in ascending order input 3, 1, 2 "
                   "the output should be comma-separated")
    assert sample.turns == (Turn("user", instruction), Turn("assistant", "1, 2, 3"))
    assert dict(sample.meta) == {"fields": {"instruction": instruction, "answer": "1, 2, 3"},
                                 "constraints": "The output should be comma-separated."}


def test_constraints_are_appended_unless_null_and_a_none_string_is_not_null(tmp_path):
    lines = jsonl(instance("Add: 2 + 2", "Four."), instance("Add: 2 + 2", "Four.", "None."))
    (tmp_path / "core_data.jsonl").write_text(lines)
    first, second = converted(tmp_path)
    assert first.turns[0].content == "add 2 + 2" and first.meta["constraints"] is None
    assert second.turns[0].content == "add 2 + 2 none" and second.meta["constraints"] == "None."
    assert first.turns[1].content == second.turns[1].content == "four"


def test_only_the_first_instance_is_used_and_reformulations_are_ignored(tmp_path):
    record = dict(instance("First one.", "A"), reformulations=[{"instruction_with_input": "Other", "output": "B"}])
    record["instances"].append({"instruction_with_input": "Second one.", "constraints": None, "output": "C"})
    (tmp_path / "full_data.jsonl").write_text(jsonl(record))
    [sample] = converted(tmp_path)
    assert sample.turns == (Turn("user", "first one"), Turn("assistant", "a"))
    assert sample.key == "full_data-1"


def test_both_sides_are_cut_to_fifty_words(tmp_path):
    words = " ".join(f"W{i}" for i in range(60))
    (tmp_path / "core_data.jsonl").write_text(jsonl(instance(words, words)))
    [sample] = converted(tmp_path)
    expected = " ".join(f"w{i}" for i in range(50))
    assert sample.turns[0].content == sample.turns[1].content == expected


def test_a_malformed_line_is_a_read_reject_naming_file_and_line_and_the_rest_goes_on(tmp_path):
    lines = jsonl(instance(), '{"instruction": "x" "instances": []}', "", instance("Two?", "Yes."))
    (tmp_path / "core_data.jsonl").write_bytes(lines.encode() + b'{"a": "\xff"}\n')
    got = converted(tmp_path)
    assert got[1] == Reject(Source("unnatural-instructions", "core_data.jsonl:2"), "read",
                            "core_data.jsonl line 2: not valid JSON (Expecting ',' delimiter at column 21)")
    assert got[2].source.id == "core_data.jsonl:4"  # the blank line 3 is no record, but it is counted
    assert got[3] == Reject(Source("unnatural-instructions", "core_data.jsonl:5"), "read",
                            "core_data.jsonl line 5: not valid JSON (not UTF-8 at byte 7)")
    assert [g.key for g in (got[0], got[2])] == ["core_data-1", "core_data-4"]


@pytest.mark.parametrize(("line", "reason"), [
    ([1, 2], "core_data.jsonl line 1: expected a JSON object, got list"),
    ({"instruction": "x"}, 'core_data.jsonl line 1: field "instances" is missing, empty or not a list'),
    ({"instruction": "x", "instances": []}, 'core_data.jsonl line 1: field "instances" is missing, empty or not a list'),
    ({"instruction": "x", "instances": ["text"]}, "core_data.jsonl line 1: instances[0] is not an object"),
    ({"instances": [{"output": "y", "constraints": None}]},
     "core_data.jsonl line 1: instances[0].instruction_with_input is missing or not text"),
    ({"instances": [{"instruction_with_input": "q", "constraints": None}]},
     "core_data.jsonl line 1: instances[0].output is missing or not text"),
    (instance(constraints=3), "core_data.jsonl line 1: instances[0].constraints is neither text nor null"),
    (instance("...!!"), "core_data.jsonl line 1: instances[0].instruction_with_input is empty after normalisation"),
    (instance(output=" ;: "), "core_data.jsonl line 1: instances[0].output is empty after normalisation"),
])
def test_a_record_with_missing_or_empty_fields_is_rejected_naming_the_field(tmp_path, line, reason):
    (tmp_path / "core_data.jsonl").write_text(jsonl(line))
    assert converted(tmp_path) == [reason]


def test_a_missing_constraints_key_counts_as_null(tmp_path):
    (tmp_path / "core_data.jsonl").write_text(jsonl({"instances": [{"instruction_with_input": "Q?", "output": "A"}]}))
    [sample] = converted(tmp_path)
    assert sample.turns[0].content == "q?" and sample.meta["constraints"] is None


def test_the_repository_zip_is_streamed_and_gives_the_same_records_as_the_jsonl(tmp_path):
    text = jsonl(SORT, instance("Q?", "A"))
    plain, zipped = tmp_path / "plain", tmp_path / "zipped"
    plain.mkdir(), zipped.mkdir()
    (plain / "core_data.jsonl").write_text(text)
    with zipfile.ZipFile(zipped / "core_data.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("core_data.jsonl", text)
        archive.writestr("__MACOSX/._core_data.jsonl", "junk")
    assert ui.locate(zipped, Options()) == ui.Layout(zipped / "core_data.zip", "core_data.jsonl", "core_data.jsonl")
    assert converted(zipped) == converted(plain)
    assert sorted(p.name for p in zipped.iterdir()) == ["core_data.zip"]  # nothing extracted


def test_minigptv2_filtered_json_list_is_read_by_list_index(tmp_path):
    (tmp_path / "filtered_unnatural_instruction.json").write_text(json.dumps([SORT, instance("Q?", "A"), "oops"]))
    first, second, third = converted(tmp_path)
    assert (first.key, first.source.id) == ("filtered_unnatural_instruction-0", "filtered_unnatural_instruction.json:0")
    assert (second.key, second.turns[0].content) == ("filtered_unnatural_instruction-1", "q?")
    assert third == "filtered_unnatural_instruction.json entry 2: expected a JSON object, got str"


def test_only_the_preferred_file_is_read_when_several_are_present(tmp_path, caplog):
    (tmp_path / "full_data.jsonl").write_text(jsonl(instance("Full?", "A")))
    (tmp_path / "core_data.jsonl").write_text(jsonl(instance("Core?", "A")))
    [sample] = converted(tmp_path)
    assert sample.source.id == "core_data.jsonl:1"
    assert "reading core_data.jsonl only; ignoring full_data.jsonl (the same instructions again)" in caplog.text


def test_only_the_train_split_exists(tmp_path):
    (tmp_path / "core_data.jsonl").write_text(jsonl(SORT))
    assert outcomes(tmp_path, "test") == []
    assert len(outcomes(tmp_path, "train")) == 1


def test_a_folder_without_the_data_fails_at_once_naming_it(tmp_path):
    (tmp_path / "data.jsonl").write_text(jsonl(SORT))
    with pytest.raises(InputFormatError, match="^" + re.escape(f"{tmp_path}: expected Unnatural Instructions data: "
                                                               "filtered_unnatural_instruction.json, core_data.jsonl")):
        ui.locate(tmp_path, Options())


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("core_data.zip", b"not a zip", "core_data.zip: not a readable zip archive"),
    ("filtered_unnatural_instruction.json", b'{"instances": []}',
     "filtered_unnatural_instruction.json: expected a JSON list of Unnatural Instructions records"),
    ("filtered_unnatural_instruction.json", b"[{",
     "filtered_unnatural_instruction.json: not valid JSON (line 1, column 3"),
])
def test_a_broken_top_level_file_fails_at_once_naming_it(tmp_path, name, content, expected):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputFormatError, match="^" + re.escape(f"{tmp_path / expected}")):
        ui.locate(tmp_path, Options())


def test_a_zip_without_the_jsonl_fails_at_once(tmp_path):
    with zipfile.ZipFile(tmp_path / "full_data.zip", "w") as archive:
        archive.writestr("README.md", "hello")
    with pytest.raises(InputFormatError, match=re.escape(f"{tmp_path / 'full_data.zip'}: expected one member named "
                                                         "full_data.jsonl (members in the archive: 1)")):
        ui.locate(tmp_path, Options())
