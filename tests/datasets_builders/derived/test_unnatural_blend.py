"""Unnatural Instructions blends: exact ratio in every shard, provenance and both sources' counts."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from datasets_builders.build import build_dataset
from datasets_builders.sources.contract import InputFormatError, Options
from datasets_builders.store import ShardDataset, load_manifest, verify_dataset


def blend(task_datasets, out, instructions="vqa", ratio=4, max_samples=17):
    return build_dataset("unnatural-blend", [task_datasets[instructions], task_datasets["unnatural-instructions"]],
                         out, options=Options(ratio=ratio), max_samples=max_samples)


@pytest.mark.parametrize("ratio", [1, 4, 7])
def test_every_shard_holds_its_exact_text_share_within_one(task_datasets, tmp_path, ratio):
    result = blend(task_datasets, tmp_path / "blend", ratio=ratio)
    index = pq.read_table(result.root / "samples.parquet").to_pylist()
    is_text = [row["source_dataset"] == "unnatural-instructions" for row in index]
    pattern = ([False] * ratio + [True]) * (len(index) // (ratio + 1))
    assert is_text[: len(pattern)] == pattern  # one text sample after every `ratio` instruction samples
    for shard in {row["shard"] for row in index}:
        rows = [t for t, row in zip(is_text, index) if row["shard"] == shard]
        assert abs(sum(rows) - len(rows) / (ratio + 1)) <= 1, (shard, sum(rows), len(rows))
    assert verify_dataset(result.root).ok


def test_provenance_and_both_sources_counts_are_kept(task_datasets, tmp_path):
    result = blend(task_datasets, tmp_path / "blend", ratio=4)
    vqa = load_manifest(task_datasets["vqa"]).counts.written
    manifest = result.manifest
    assert manifest.by_source == {"unnatural-instructions": vqa // 4, "vqa": vqa}
    assert manifest.counts.read == manifest.counts.records_written == vqa + vqa // 4
    originals = {s.key: s for s in ShardDataset(task_datasets["vqa"]).samples()}
    for sample in ShardDataset(result.root).samples():
        origin = sample.meta["blend"]
        assert sample.key.startswith(origin["dataset"] + "-")
        if origin["dataset"] == "vqa":
            assert sample.turns == originals[origin["key"]].turns and sample.image == originals[origin["key"]].image


def test_a_short_text_dataset_is_reused_and_each_reuse_is_its_own_record(task_datasets, tmp_path):
    result = blend(task_datasets, tmp_path / "blend", instructions="coco-captions", ratio=1, max_samples=1000)
    texts = load_manifest(task_datasets["unnatural-instructions"]).counts.written
    ids = [r["source_id"] for r in pq.read_table(result.root / "samples.parquet").to_pylist()
           if r["source_dataset"] == "unnatural-instructions"]
    assert len(ids) == load_manifest(task_datasets["coco-captions"]).counts.written > texts
    assert len(set(ids)) == len(ids) and any(i.endswith("#2") for i in ids)
    counts = result.manifest.counts
    assert counts.read == counts.records_written


def test_inputs_must_be_one_instruction_and_one_text_dataset(task_datasets, tmp_path):
    with pytest.raises(InputFormatError, match="exactly one input must be text-only"):
        build_dataset("unnatural-blend", [task_datasets["vqa"], task_datasets["refcoco"]], tmp_path / "x")
    with pytest.raises(InputFormatError, match="two --input datasets"):
        build_dataset("unnatural-blend", [task_datasets["vqa"]], tmp_path / "x")
