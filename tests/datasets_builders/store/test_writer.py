"""The writer: round trips, limits, keys, accounting, determinism, commit and resume."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from datasets_builders.formats.schema import Sample, Source
from datasets_builders.store import (
    DatasetBusyError,
    DatasetExistsError,
    DatasetWriter,
    DuplicateKeyError,
    InvalidKeyError,
    ReconcileError,
    ResumeMismatchError,
    ShardDataset,
    committed_build,
    load_manifest,
    verify_dataset,
)
from datasets_builders.store.tar import closed_size
from tests.builds import build, build_with_rejects, make_sample, make_samples, spec_for


def files(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def shard_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.glob("*.tar"))}


def test_samples_read_back_exactly_as_written(tmp_path):
    samples = make_samples(40)
    manifest = build(tmp_path / "ds", samples, spec_for(max_samples=16))
    ds = ShardDataset(tmp_path / "ds")
    assert len(ds) == 40 and manifest.counts.written == 40
    for original, raw in zip(samples, ds.scan(check=True)):
        assert raw["__key__"] == original.key
        assert {k: v for k, v in raw.items() if not k.startswith("__")} == original.members()
        assert Sample.from_members(raw["__key__"], raw) == original
    assert all(ds.read(i, check=True)["__key__"] == samples[i].key for i in (0, 17, 39))
    text_only = ds.read(4)
    assert sorted(text_only) == ["__key__", "__url__", "json"]  # no image member at all


def test_manifest_records_counts_per_task_split_and_shard(tmp_path):
    manifest = build(tmp_path / "ds", make_samples(40), spec_for(max_samples=16))
    assert [s.samples for s in manifest.shards] == [16, 16, 8]
    assert manifest.by_task == {"caption": 32, "text": 8}
    assert manifest.by_split == {"train": 36, "val": 4}
    assert files(tmp_path / "ds") == [".lock", "manifest.json", "rejects.parquet", "samples.parquet",
                                      "toy-000000.tar", "toy-000001.tar", "toy-000002.tar"]
    assert sum(s.bytes for s in manifest.shards) == sum(p.stat().st_size for p in (tmp_path / "ds").glob("*.tar"))


def test_rejects_are_recorded_and_counts_reconcile(tmp_path):
    root = tmp_path / "ds"
    with DatasetWriter(root, spec_for()) as w:
        for i in range(10):
            w.count_read()
            if i in (3, 7):
                w.reject(Source("synthetic", str(i)), "parse", f"record {i} is broken")
            else:
                w.write(make_sample(i))
        w.count_read()  # record 10: one sample written and one part of it rejected
        w.write(make_sample(10))
        w.reject(Source("synthetic", "10"), "convert", "box 2 lies outside the image")
    counts = w.manifest.counts
    assert (counts.read, counts.written, counts.rejected) == (11, 9, 3)
    assert (counts.records_written, counts.records_rejected) == (9, 2)
    import pyarrow.parquet as pq
    assert pq.read_table(root / "rejects.parquet").to_pylist()[0] == {
        "source_dataset": "synthetic", "source_id": "3", "stage": "parse", "reason": "record 3 is broken"}


def test_a_record_neither_written_nor_rejected_blocks_the_commit(tmp_path):
    root = tmp_path / "ds"
    with pytest.raises(ReconcileError, match="3 records read but 2 have samples and 0 more were rejected"):
        with DatasetWriter(root, spec_for()) as w:
            for i in range(3):
                w.count_read()
                if i != 1:  # record 1 silently dropped: a builder bug
                    w.write(make_sample(i))
            w.commit()
    assert not (root / "manifest.json").exists()


def test_shards_close_at_max_bytes_counting_headers_and_padding(tmp_path):
    samples = make_samples(60, side=40)
    limit = 40_000
    manifest = build(tmp_path / "ds", samples, spec_for(max_bytes=limit))
    ds = ShardDataset(tmp_path / "ds")
    sizes = ds.index["size"].to_pylist()
    assert len(manifest.shards) > 3
    start = 0
    for shard in manifest.shards:
        on_disk = (tmp_path / "ds" / shard.name).stat().st_size
        assert on_disk == shard.bytes <= limit
        used = sum(sizes[start : start + shard.samples])
        assert on_disk == closed_size(used)
        start += shard.samples
        if start < len(sizes):  # closed because the next sample would not have fit
            assert closed_size(used + sizes[start]) > limit


def test_a_sample_larger_than_max_bytes_gets_a_shard_of_its_own(tmp_path):
    big = make_sample(1, side=300)  # a PNG of noise, well over the limit
    manifest = build(tmp_path / "ds", [make_sample(0), big, make_sample(2)], spec_for(max_bytes=8192))
    assert [s.samples for s in manifest.shards] == [1, 1, 1]
    assert manifest.shards[1].bytes > 8192
    assert verify_dataset(tmp_path / "ds").ok


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("img.v2.001", r"sample key 'img\.v2\.001' \(from source record synthetic:0\).*'\.'.*dots split keys"),
        ("a/b", r"'a/b'.*slashes create paths"),
        ("x" * 101, r"101 characters, at most 100"),
        ("", r"non-empty"),
        ("tab\there", r"characters '\\t' are not allowed"),
    ],
)
def test_bad_keys_are_rejected_naming_key_and_source(tmp_path, key, message):
    sample = make_sample(0)
    bad = Sample(key, sample.task, sample.turns, sample.source, image=sample.image)
    with DatasetWriter(tmp_path / "ds", spec_for()) as w:
        with pytest.raises(InvalidKeyError, match=message):
            w.write(bad)
        w.abort()


def test_duplicate_keys_are_rejected(tmp_path):
    with DatasetWriter(tmp_path / "ds", spec_for()) as w:
        w.write(make_sample(0))
        clash = Sample(make_sample(0).key, "caption", make_sample(1).turns, Source("synthetic", "1"))
        with pytest.raises(DuplicateKeyError, match=r"duplicate sample key 's0-000000'.*synthetic:1"):
            w.write(clash)
        w.abort()


def test_hundred_character_keys_use_pax_names_and_read_back(tmp_path):
    import webdataset as wds

    sample = make_sample(3)
    long = Sample("k" * 100, sample.task, sample.turns, sample.source, image=sample.image, extras=sample.extras)
    build(tmp_path / "ds", [long])
    got = next(iter(wds.WebDataset(str(tmp_path / "ds" / "toy-000000.tar"), shardshuffle=False)))
    assert got["__key__"] == "k" * 100 and got["crayon.png"] == long.extras["crayon.png"]
    assert verify_dataset(tmp_path / "ds").ok


def test_two_builds_of_the_same_input_are_byte_identical(tmp_path):
    build(tmp_path / "a", make_samples(30), spec_for(max_samples=7))
    build(tmp_path / "b", make_samples(30), spec_for(max_samples=7))
    a, b = shard_bytes(tmp_path / "a"), shard_bytes(tmp_path / "b")
    assert len(a) == 5 and a == b
    assert (tmp_path / "a" / "samples.parquet").read_bytes() == (tmp_path / "b" / "samples.parquet").read_bytes()


def test_a_committed_dataset_is_not_overwritten_unless_asked(tmp_path):
    root = tmp_path / "ds"
    build(root, make_samples(5))
    assert committed_build(root, spec_for()) is not None
    with pytest.raises(DatasetExistsError, match="same inputs and parameters"):
        DatasetWriter(root, spec_for())
    other = spec_for(parameters={"test": False})
    assert committed_build(root, other) is None
    with pytest.raises(DatasetExistsError, match="different inputs or parameters; pass overwrite"):
        DatasetWriter(root, other)
    manifest = build(root, make_samples(3), other, overwrite=True)
    assert manifest.counts.written == 3 and len(ShardDataset(root)) == 3
    assert load_manifest(root).spec.parameters == {"test": False}


def test_only_one_writer_per_folder(tmp_path):
    with DatasetWriter(tmp_path / "ds", spec_for()) as w:
        with pytest.raises(DatasetBusyError, match=f"pid {os.getpid()}"):
            DatasetWriter(tmp_path / "ds", spec_for())
        w.abort()


def test_an_empty_dataset_has_no_shards_but_commits(tmp_path):
    root = tmp_path / "ds"
    with DatasetWriter(root, spec_for()) as w:
        w.count_read()
        w.reject(Source("synthetic", "0"), "parse", "unreadable")
    assert w.manifest.shards == () and not list(root.glob("*.tar"))
    assert verify_dataset(root).ok and len(ShardDataset(root)) == 0


class Interrupted(Exception):
    pass


def interrupted_build(root: Path, samples: list[Sample], stop_at: int, **spec_kwargs) -> None:
    with pytest.raises(Interrupted):
        with DatasetWriter(root, spec_for(**spec_kwargs)) as w:
            for i, sample in enumerate(samples):
                if i == stop_at:
                    raise Interrupted
                w.count_read()
                if i % 9 == 8:
                    w.reject(sample.source, "filter", "every ninth record")
                else:
                    w.write(sample)


def test_an_interrupted_build_leaves_complete_shards_and_resumes_identically(tmp_path):
    samples = make_samples(50)
    build_with_rejects(tmp_path / "reference", samples)

    root = tmp_path / "ds"
    # Records 0..34 read, 8/17/26 rejected: 32 samples = 5 closed shards of 6 + 2 in the open one.
    interrupted_build(root, samples, stop_at=35, max_samples=6)
    assert not (root / "manifest.json").exists()
    assert not [n for n in files(root) if n.endswith(".tmp")]
    complete = shard_bytes(root)
    assert len(complete) == 5
    assert all(complete[n] == shard_bytes(tmp_path / "reference")[n] for n in complete)

    resumed = build_with_rejects(root, samples)
    assert resumed.resumed_samples == 30
    assert shard_bytes(root) == shard_bytes(tmp_path / "reference")
    assert resumed.manifest.counts == load_manifest(tmp_path / "reference").counts
    assert verify_dataset(root).ok


def test_resume_refuses_samples_that_differ_from_the_interrupted_build(tmp_path):
    root = tmp_path / "ds"
    interrupted_build(root, make_samples(30), stop_at=20, max_samples=6)
    changed = make_samples(30, seed=1)  # same spec, different content: inputs changed under us
    with pytest.raises(ResumeMismatchError, match="differs from the one the interrupted build wrote"):
        build_with_rejects(root, changed)
    build_with_rejects(root, changed, resume=False)  # resume off: rebuilt from scratch
    assert ShardDataset(root).key(0) == changed[0].key


def test_a_partial_build_of_another_spec_is_discarded(tmp_path):
    root = tmp_path / "ds"
    interrupted_build(root, make_samples(30), stop_at=20, max_samples=6)
    assert shard_bytes(root)
    manifest = build(root, make_samples(4), spec_for(name="toy", max_samples=100))
    assert [s.samples for s in manifest.shards] == [4]
    assert files(root) == [".lock", "manifest.json", "rejects.parquet", "samples.parquet", "toy-000000.tar"]


def test_a_failed_commit_releases_the_folder(tmp_path):
    root = tmp_path / "ds"
    with pytest.raises(ReconcileError):
        with DatasetWriter(root, spec_for()) as w:
            w.count_read(2)
            w.write(make_sample(0))
    build(root, make_samples(2))  # the lock is free again; the fixed build completes
    assert verify_dataset(root).ok


def test_replacing_a_dataset_of_another_name_leaves_none_of_its_shards(tmp_path):
    root = tmp_path / "ds"
    build(root, make_samples(12), spec_for(name="old", max_samples=4))
    interrupted_build(root / "partial", make_samples(30), stop_at=20, max_samples=6)
    build(root, make_samples(5), spec_for(name="new"), overwrite=True)
    assert sorted(p.name for p in root.glob("*.tar")) == ["new-000000.tar"]
    assert verify_dataset(root).ok

    partial = root / "partial"  # an interrupted build named "toy", then a build named "other" there
    assert list(partial.glob("toy-*.tar"))
    build(partial, make_samples(3), spec_for(name="other"))
    assert sorted(p.name for p in partial.glob("*.tar")) == ["other-000000.tar"]


def test_one_member_reads_alone_and_a_missing_one_is_named(tmp_path):
    samples = make_samples(20)
    build(tmp_path / "ds", samples, spec_for(max_samples=8))
    ds = ShardDataset(tmp_path / "ds")
    for i in (0, 9, 19):
        assert ds.member(i, "json", check=True) == samples[i].members()["json"]
    with pytest.raises(KeyError, match=f"sample {samples[4].key!r} of .* has no 'jpg' member"):
        ds.member(4, "jpg")  # text-only
    with pytest.raises(IndexError):
        ds.member(20, "json")
