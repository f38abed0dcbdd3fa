"""Manifest and lineage: what a dataset records about itself, and what changes a fingerprint."""

from __future__ import annotations

import json
import subprocess

import pytest

from datasets_builders.store import (DatasetNotCommittedError, InputRef, Manifest, ManifestError, ShardDataset,
                                     load_manifest)
from datasets_builders.store.lineage import code_revision, content_hash
from tests.builds import build, make_samples, spec_for


def test_manifest_json_holds_the_lineage_and_round_trips(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "annotations.json").write_text('{"images": []}')
    spec = spec_for(inputs=(InputRef.raw("coco-panoptic", raw),), max_samples=4)
    manifest = build(tmp_path / "ds", make_samples(10), spec)
    doc = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert {"name", "builder", "parameters", "inputs", "counts", "shards", "code", "created", "fingerprint",
            "index", "by_task", "by_split", "repairs", "by_source", "limits", "format"} == set(doc)
    assert doc["inputs"][0] | {"path": None} == {"name": "coco-panoptic", "path": None, "kind": "raw",
                                                  "xxh3": content_hash(raw).xxh3, "bytes": 14, "files": 1}
    assert doc["counts"] == {"read": 10, "written": 10, "rejected": 0, "records_written": 10, "records_rejected": 0}
    assert [set(s) for s in doc["shards"]] == [{"name", "samples", "bytes", "xxh3"}] * 3
    assert Manifest.from_json(doc) == manifest == load_manifest(tmp_path / "ds")


def test_code_revision_is_the_checkout_commit():
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    if not head:
        pytest.skip("not a git checkout")
    assert code_revision().removesuffix("+dirty") == head


def test_content_hash_follows_every_byte_and_name(tmp_path):
    folder = tmp_path / "raw"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_bytes(b"alpha")
    (folder / "sub" / "b.txt").write_bytes(b"beta")
    before = content_hash(folder)
    assert (before.files, before.bytes) == (2, 9) and content_hash(folder) == before
    (folder / "sub" / "b.txt").write_bytes(b"betA")
    changed = content_hash(folder)
    (folder / "sub" / "b.txt").rename(folder / "sub" / "c.txt")
    renamed = content_hash(folder)
    assert len({before.xxh3, changed.xxh3, renamed.xxh3}) == 3
    with pytest.raises(FileNotFoundError, match="does not exist"):
        content_hash(tmp_path / "nope")


def test_fingerprint_changes_with_parameters_inputs_and_limits(tmp_path):
    base = spec_for()
    (tmp_path / "f").write_text("x")
    variants = [
        spec_for(parameters={"test": False}),
        spec_for(max_samples=7),
        spec_for(max_bytes=1 << 20),
        spec_for(inputs=(InputRef.raw("raw", tmp_path / "f"),)),
        spec_for(name="other"),
    ]
    assert len({base.fingerprint, *(v.fingerprint for v in variants)}) == 1 + len(variants)
    assert spec_for().fingerprint == base.fingerprint


def test_an_upstream_dataset_is_identified_by_its_shards_not_by_when_it_was_built(tmp_path):
    build(tmp_path / "a", make_samples(6))
    build(tmp_path / "b", make_samples(6))  # same content, built later
    build(tmp_path / "c", make_samples(6, seed=1))
    a, b, c = (InputRef.dataset(tmp_path / n) for n in "abc")
    assert a.kind == "dataset" and a.xxh3 == b.xxh3 != c.xxh3
    with pytest.raises(ValueError, match="upstream dataset is not committed"):
        InputRef.dataset(tmp_path)


def test_readers_refuse_an_unfinished_build(tmp_path):
    with pytest.raises(DatasetNotCommittedError, match="not a committed dataset.*run the build again to resume"):
        ShardDataset(tmp_path)


@pytest.mark.parametrize("shard", ["../x-000000.tar", "/etc/passwd", "other-000000.tar", "sub/ds-000000.tar"])
def test_a_manifest_naming_files_outside_its_folder_is_refused_before_anything_opens_them(tmp_path, shard):
    build(tmp_path / "ds", make_samples(3), spec_for(max_samples=2))
    path = tmp_path / "ds" / "manifest.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "shards": [{**doc["shards"][0], "name": shard}, *doc["shards"][1:]]}))
    with pytest.raises(ManifestError, match=f"{path}: unreadable manifest .*not .*-NNNNNN.tar files of this folder"):
        ShardDataset(tmp_path / "ds")
    path.write_text(json.dumps({**doc, "index": {**doc["index"], "../outside.parquet": doc["index"]["samples.parquet"]}}))
    with pytest.raises(ManifestError, match="index files .*outside.parquet.* are not samples.parquet"):
        load_manifest(tmp_path / "ds")
