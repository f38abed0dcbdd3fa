"""verify: a clean dataset passes; every kind of damage is caught and named."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from datasets_builders.store import ShardDataset, verify_dataset
from datasets_builders.store.tar import BLOCK
from pipelines.cli import app
from tests.builds import build, make_samples, spec_for


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "ds"
    build(root, make_samples(30), spec_for(max_samples=10))
    return root


def flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_clean_dataset_verifies(dataset):
    report = verify_dataset(dataset)
    assert report.ok, report.problems
    assert (report.shards, report.samples, report.members) == (3, 30, 30 + 24 + 8)


def test_one_flipped_byte_in_a_member_is_caught_and_named(dataset):
    ds = ShardDataset(dataset)
    member = ds.index["members"][13].as_py()[0]  # sample 13 lives in shard 1
    flip(dataset / "toy-000001.tar", member["offset"] + member["size"] // 2)
    report = verify_dataset(dataset)
    assert not report.ok
    assert report.damaged_shards() == ["toy-000001.tar"]
    named = [p for p in report.problems if p.member]
    assert [(p.member, p.message) for p in named] == [(f"{ds.key(13)}.{member['ext']}", "content does not match its xxh3 (corrupted)")]
    assert any(p.member is None and "xxh3" in p.message for p in report.problems)  # whole-file check too


def test_a_flipped_byte_in_a_tar_header_is_caught(dataset):
    flip(dataset / "toy-000002.tar", 3 * BLOCK + 10)  # inside a later member's name field
    report = verify_dataset(dataset)
    assert report.damaged_shards() == ["toy-000002.tar"]
    assert any("invalid tar header at byte" in p.message for p in report.problems)


def test_a_truncated_shard_is_caught(dataset):
    path = dataset / "toy-000000.tar"
    path.write_bytes(path.read_bytes()[:-4000])
    report = verify_dataset(dataset)
    assert report.damaged_shards() == ["toy-000000.tar"]
    assert any("bytes, expected" in p.message for p in report.problems)


def test_missing_and_unlisted_shards_are_caught(dataset):
    shutil.move(dataset / "toy-000001.tar", dataset / "toy-000007.tar")
    messages = {(p.path.rsplit("/", 1)[-1], p.message) for p in verify_dataset(dataset).problems}
    assert messages == {("toy-000001.tar", "missing"), ("toy-000007.tar", "shard not listed in the manifest")}


def test_a_damaged_index_is_caught(dataset):
    flip(dataset / "samples.parquet", 200)
    report = verify_dataset(dataset)
    assert any(p.path.endswith("samples.parquet") for p in report.problems)


def test_cli_verify_exits_non_zero_naming_each_damaged_shard_and_member(dataset):
    ds = ShardDataset(dataset)
    member = ds.index["members"][2].as_py()[0]
    flip(dataset / "toy-000000.tar", member["offset"])
    result = CliRunner().invoke(app, ["shards", "verify", str(dataset)], terminal_width=400)
    assert result.exit_code == 1
    assert f"toy-000000.tar [{ds.key(2)}.{member['ext']}]: content does not match its xxh3" in result.output
    assert "damaged shards: toy-000000.tar" in result.output


def test_cli_verify_and_info_on_a_clean_dataset(dataset):
    runner = CliRunner()
    ok = runner.invoke(app, ["shards", "verify", str(dataset)], terminal_width=400)
    assert ok.exit_code == 0 and "OK" in ok.output and "3 shards, 30 samples, 62 members checked" in ok.output
    info = runner.invoke(app, ["shards", "info", str(dataset)], terminal_width=400)
    assert info.exit_code == 0 and "samples by task" in info.output and "caption" in info.output
    doc = json.loads(runner.invoke(app, ["shards", "info", str(dataset), "--json"]).output)
    assert doc["by_split"] == {"train": 27, "val": 3} and doc["counts"]["written"] == 30
    assert doc["builder"] == {"name": "test-builder", "version": "1"} and len(doc["shards"]) == 3


def test_cli_info_refuses_an_unfinished_build(tmp_path):
    result = CliRunner().invoke(app, ["shards", "info", str(tmp_path)], terminal_width=400)
    assert result.exit_code == 1 and "not a committed dataset" in result.output
