"""The build loop: every record read ends up written or rejected, re-runs are reused, limits count records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from datasets_builders.build import _convert, build_dataset
from datasets_builders.formats.schema import Sample, Source, Turn
from datasets_builders.sources.contract import InputFormatError, RecordError
from datasets_builders.store import DatasetWriter, ShardDataset, load_manifest, verify_dataset
from tests.builds import GOOD, NO_OUTPUT, spec_for, write_input

@dataclass(frozen=True)
class FakeRecord:
    source: Source
    keys: tuple[str, ...] = ()  #: one sample per key
    error: Exception | None = None  #: raised by to_samples instead


class FakeSource:
    """The least a build loop needs of a source module: to_samples."""

    NAME, VERSION = "fake", "1"

    @staticmethod
    def to_samples(record: FakeRecord):
        if record.error is not None:
            raise record.error
        for key in record.keys:
            yield Sample(key, "text", (Turn("user", "q"), Turn("assistant", "a")), record.source)


def convert_all(root: Path, records: list[FakeRecord]) -> DatasetWriter:
    with DatasetWriter(root, spec_for()) as writer:
        for record in records:
            writer.count_read()
            _convert(FakeSource, record, writer)
    return writer


def rejects(root: Path) -> list[tuple[str, str, str]]:
    return [(r["source_id"], r["stage"], r["reason"]) for r in pq.read_table(root / "rejects.parquet").to_pylist()]


def counts(root: Path) -> tuple[int, int, int, int, int]:
    c = load_manifest(root).counts
    assert c.read == c.records_written + c.records_rejected  # the reconciliation, checked in every test
    return c.read, c.written, c.rejected, c.records_written, c.records_rejected


def test_a_record_that_yields_nothing_is_rejected(tmp_path):
    convert_all(tmp_path / "ds", [FakeRecord(Source("fake", "1"), ("k1",)), FakeRecord(Source("fake", "2"))])
    assert rejects(tmp_path / "ds") == [("2", "convert", "the record produced no samples")]
    assert counts(tmp_path / "ds") == (2, 1, 1, 1, 1)


def test_a_malformed_record_is_rejected_with_the_exception_message(tmp_path):
    convert_all(tmp_path / "ds", [FakeRecord(Source("fake", "1"), error=KeyError("instances")),
                                  FakeRecord(Source("fake", "2"), error=RecordError("image gone", "image")),
                                  FakeRecord(Source("fake", "3"), ("k3",))])
    assert rejects(tmp_path / "ds") == [("1", "convert", "malformed record (KeyError: 'instances')"),
                                        ("2", "image", "image gone")]
    assert counts(tmp_path / "ds") == (3, 1, 2, 1, 2)


def test_a_duplicate_key_across_records_is_rejected_not_fatal(tmp_path):
    convert_all(tmp_path / "ds", [FakeRecord(Source("fake", "1"), ("same",)), FakeRecord(Source("fake", "2"), ("same",)),
                                  FakeRecord(Source("fake", "3"), ("other",))])
    assert rejects(tmp_path / "ds") == [("2", "convert", "duplicate sample key 'same' in dataset 'toy' "
                                                         "(second use from source record fake:2)")]
    assert [s.key for s in ShardDataset(tmp_path / "ds").samples()] == ["same", "other"]
    assert counts(tmp_path / "ds") == (3, 2, 1, 2, 1)


def test_a_real_source_build_writes_good_lines_and_rejects_bad_ones_with_reasons(tmp_path):
    raw = write_input(tmp_path / "raw", GOOD, "{not json", NO_OUTPUT, GOOD)
    result = build_dataset("unnatural-instructions", raw, tmp_path / "ui")
    assert not result.reused
    assert counts(result.root) == (4, 2, 2, 2, 2)
    assert rejects(result.root) == [
        ("core_data.jsonl:2", "read", "core_data.jsonl line 2: not valid JSON (Expecting property name enclosed in "
                                      "double quotes at column 2)"),
        ("core_data.jsonl:3", "convert", "core_data.jsonl line 3: instances[0].output is missing or not text"),
    ]
    samples = list(ShardDataset(result.root).samples())
    assert [(s.key, s.turns[0].content, s.turns[1].content) for s in samples] == [
        ("core_data-1", "say hi", "hi"), ("core_data-4", "say hi", "hi")]
    assert verify_dataset(result.root).ok
    assert result.manifest.by_task == {"text": 2} and result.manifest.by_split == {"train": 2}


def test_an_identical_rerun_is_reused_and_rewrites_nothing(tmp_path):
    raw = write_input(tmp_path / "raw", GOOD, GOOD)
    first = build_dataset("unnatural-instructions", raw, tmp_path / "ui")
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in first.root.iterdir() if p.is_file()}
    second = build_dataset("unnatural-instructions", raw, tmp_path / "ui")
    assert second.reused and second.manifest.fingerprint == first.manifest.fingerprint
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in second.root.iterdir() if p.is_file()} == before
    (raw / "core_data.jsonl").write_text(json.dumps(GOOD) + "\n")  # changed input: not reused
    with pytest.raises(FileExistsError, match="built from different inputs or parameters"):
        build_dataset("unnatural-instructions", raw, tmp_path / "ui")
    assert not build_dataset("unnatural-instructions", raw, tmp_path / "ui", overwrite=True).reused


def test_limit_counts_records_read_including_rejected_ones(tmp_path):
    raw = write_input(tmp_path / "raw", GOOD, "{not json", GOOD, GOOD)
    result = build_dataset("unnatural-instructions", raw, tmp_path / "ui", limit=3)
    assert counts(result.root) == (3, 2, 1, 2, 1)
    one = build_dataset("unnatural-instructions", raw, tmp_path / "one", limit=1)
    assert counts(one.root) == (1, 1, 0, 1, 0)


def test_a_split_the_source_does_not_have_builds_an_empty_reconciled_dataset(tmp_path):
    raw = write_input(tmp_path / "raw", GOOD)
    result = build_dataset("unnatural-instructions", raw, tmp_path / "ui", split="val")
    assert counts(result.root) == (0, 0, 0, 0, 0)


def test_a_missing_input_folder_is_an_input_error_naming_it(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(InputFormatError) as err:
        build_dataset("unnatural-instructions", missing, tmp_path / "ui")
    assert str(err.value) == f"{missing}: no such folder (--input of the unnatural-instructions build)"
    assert not (tmp_path / "ui").exists()


def test_a_folder_that_is_not_the_format_fails_before_anything_is_written(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "notes.txt").write_text("hello")
    with pytest.raises(InputFormatError, match="expected Unnatural Instructions data"):
        build_dataset("unnatural-instructions", tmp_path / "raw", tmp_path / "ui")
    assert not (tmp_path / "ui").exists()


def test_a_record_with_several_samples_counts_as_one_record(tmp_path):
    convert_all(tmp_path / "ds", [FakeRecord(Source("fake", "1"), ("a", "b")), FakeRecord(Source("fake", "2"), ("c",))])
    assert counts(tmp_path / "ds") == (2, 3, 0, 2, 0)
