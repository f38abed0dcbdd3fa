"""Partitioned builds: parts over record ranges, merged, equal a whole build up to shard boundaries."""

from __future__ import annotations

import json
import logging
import pickle
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from datasets_builders import partitioned
from datasets_builders.build import BuildResult, build_dataset
from datasets_builders.partitioned import BuildPlan, build_part, build_partitioned, merge_parts, plan_build
from datasets_builders.sources.contract import Options
from datasets_builders.store import (
    BuildSpec,
    DatasetBusyError,
    DatasetExistsError,
    DatasetWriter,
    ReconcileError,
    ShardDataset,
    committed_build,
    load_manifest,
    verify_dataset,
)
from datasets_builders.store import writer as store_writer
from tests.builds import GOOD, NO_OUTPUT, build, make_sample, spec_for, write_input

MAX_SAMPLES = 3  # small shards, so each part has several and ends in a partial one
DERIVED = {"multiround": ("coco-panoptic", "refcoco", "vqa"), "unnatural-blend": ("llava", "unnatural-instructions")}


@pytest.fixture(scope="module")
def task_datasets(world, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("partitioned-inputs")
    names = {n for inputs in DERIVED.values() for n in inputs}
    return {n: build_dataset(n, world / n, out / n).root for n in sorted(names)}


def input_of(name: str, world: Path, task_datasets: dict[str, Path]) -> Path | list[Path]:
    return [task_datasets[n] for n in DERIVED[name]] if name in DERIVED else world / name


def members(root: Path) -> list[tuple[str, dict[str, bytes]]]:
    """Every sample as webdataset reads the shards (not through our index)."""
    urls = [str(root / s.name) for s in load_manifest(root).shards]
    return [(s["__key__"], {k: v for k, v in s.items() if not k.startswith("__")})
            for s in wds.WebDataset(urls, shardshuffle=False)]


def rejects(root: Path) -> list[dict[str, str]]:
    return pq.read_table(root / "rejects.parquet").to_pylist()


def four_parts(total: int) -> int:
    return max(1, -(-total // 4))


def assert_same_dataset(whole: BuildResult, merged: BuildResult) -> None:
    """Identical samples, bytes, rejects and counts; a valid, readable, committed dataset."""
    a, b = whole.manifest, merged.manifest
    assert members(merged.root) == members(whole.root)
    assert ShardDataset(merged.root).index["key"].to_pylist() == ShardDataset(whole.root).index["key"].to_pylist()
    assert rejects(merged.root) == rejects(whole.root)
    assert (b.counts, b.by_task, b.by_split, b.by_source, b.repairs) == (a.counts, a.by_task, a.by_split,
                                                                         a.by_source, a.repairs)
    assert b.counts.read == b.counts.records_written + b.counts.records_rejected
    report = verify_dataset(merged.root)
    assert report.ok, report.problems
    assert len(ShardDataset(merged.root)) == b.counts.written
    assert not (merged.root / partitioned.PARTS).exists()


@pytest.mark.parametrize("name", ["coco-panoptic", "vqa", "refcoco", "unnatural-instructions", *DERIVED])
def test_parts_merged_equal_the_whole_build(name, world, task_datasets, tmp_path):
    src = input_of(name, world, task_datasets)
    options = Options(max_instances=1) if name == "coco-panoptic" else None  # repairs in every part
    whole = build_dataset(name, src, tmp_path / "whole" / name, options=options, max_samples=MAX_SAMPLES)
    total = whole.manifest.counts.read
    plan = plan_build(name, src, tmp_path / "parted" / name, options=options, max_samples=MAX_SAMPLES,
                      records_per_part=four_parts(total))
    assert len(plan.parts) >= 3 and plan.records == total and not plan.committed
    assert plan.parts[0][0] == 0 and plan.parts[-1][1] == total
    results = [build_part(plan, i, options=options) for i in reversed(range(len(plan.parts)))][::-1]  # any order
    assert not any(r.reused for r in results) and sum(r.samples for r in results) == whole.manifest.counts.written
    merged = merge_parts(plan, results, options=options)
    assert not merged.reused
    assert_same_dataset(whole, merged)
    spec = BuildSpec.from_json(json.loads(plan.spec))
    assert spec.parameters == {**load_manifest(whole.root).spec.parameters, "records_per_part": four_parts(total)}
    assert committed_build(merged.root, spec).fingerprint == merged.manifest.fingerprint == plan.fingerprint
    assert plan_build(name, src, merged.root, options=options, max_samples=MAX_SAMPLES,
                      records_per_part=four_parts(total)).committed


def test_every_record_is_accounted_across_parts_and_threads(tmp_path):
    raw = write_input(tmp_path / "raw", GOOD, "{not json", NO_OUTPUT, GOOD, GOOD, "[1]", NO_OUTPUT, GOOD, GOOD, GOOD)
    whole = build_dataset("unnatural-instructions", raw, tmp_path / "whole" / "ui", max_samples=2, limit=9)
    merged = build_partitioned("unnatural-instructions", raw, tmp_path / "parted" / "ui", workers=3, max_samples=2,
                               limit=9, records_per_part=2)
    c = merged.manifest.counts
    assert (c.read, c.records_written, c.records_rejected) == (9, 5, 4)
    assert_same_dataset(whole, merged)


def test_a_rerun_is_reused_and_rewrites_nothing(world, tmp_path):
    out = tmp_path / "vqa"
    first = build_partitioned("vqa", world / "vqa", out, max_samples=MAX_SAMPLES, records_per_part=20)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    plan = plan_build("vqa", world / "vqa", out, max_samples=MAX_SAMPLES, records_per_part=20)
    assert plan.committed and plan.records == first.manifest.counts.read
    parts = [build_part(plan, i) for i in range(len(plan.parts))]  # a flow that maps the parts anyway
    assert all(p.reused for p in parts) and not (out / partitioned.PARTS).exists()
    again = merge_parts(plan, parts)
    assert again.reused and again.manifest.fingerprint == first.manifest.fingerprint
    assert build_partitioned("vqa", world / "vqa", out, max_samples=MAX_SAMPLES, records_per_part=20).reused
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    # another layout is another build: refused before any part is built, unless overwrite
    with pytest.raises(DatasetExistsError, match="built from different inputs or parameters"):
        plan_build("vqa", world / "vqa", out, max_samples=MAX_SAMPLES, records_per_part=30)
    assert not (out / partitioned.PARTS).exists()
    assert not build_partitioned("vqa", world / "vqa", out, max_samples=MAX_SAMPLES, records_per_part=30,
                                 overwrite=True).reused


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
def test_parts_do_not_leak_the_descriptors_of_their_input_datasets(task_datasets, tmp_path):
    src = [task_datasets[n] for n in DERIVED["multiround"]]
    before = len(list(Path("/proc/self/fd").iterdir()))
    result = build_partitioned("multiround", src, tmp_path / "mr", records_per_part=1, workers=2)
    assert len(result.manifest.shards) == result.manifest.counts.read  # one part per record
    assert len(list(Path("/proc/self/fd").iterdir())) <= before


def fail_on_call(n: int, real):
    calls = []

    def fake(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise RuntimeError("killed")
        return real(*args, **kwargs)
    return fake


@pytest.mark.parametrize("where", ["link_or_copy", "write_manifest"])  # after 2 shards, after all of them
def test_a_killed_merge_leaves_no_manifest_and_a_rerun_completes_byte_identically(where, world, tmp_path, monkeypatch):
    options = dict(max_samples=MAX_SAMPLES, records_per_part=4)
    reference = build_partitioned("coco-panoptic", world / "coco-panoptic", tmp_path / "ref" / "coco", **options)
    out = tmp_path / "crash" / "coco"
    plan = plan_build("coco-panoptic", world / "coco-panoptic", out, **options)
    parts = [build_part(plan, i) for i in range(len(plan.parts))]
    monkeypatch.setattr(store_writer, where, fail_on_call(3 if where == "link_or_copy" else 1,
                                                          getattr(store_writer, where)))
    with pytest.raises(RuntimeError, match="killed"):
        merge_parts(plan, parts)
    assert not (out / "manifest.json").exists() and list(out.glob("coco-*.tar"))
    assert not verify_dataset(out).committed
    assert all(verify_dataset(p.root).ok for p in parts)  # parts stay whole
    monkeypatch.undo()
    result = build_partitioned("coco-panoptic", world / "coco-panoptic", out, **options)
    assert not result.reused and verify_dataset(out).ok
    files = [*(s.name for s in reference.manifest.shards), "samples.parquet", "rejects.parquet"]
    assert sorted(p.name for p in out.glob("*.tar")) == sorted(s.name for s in reference.manifest.shards)
    assert {f: (out / f).read_bytes() for f in files} == {f: (reference.root / f).read_bytes() for f in files}
    assert result.manifest.shards == reference.manifest.shards


def blend_inputs(root: Path, *, far: bool) -> list[Path]:
    """Inputs of unnatural-blend (ratio 2) whose blended keys collide: instruction sample ``t-k0`` of
    dataset ``a`` and text sample ``k0`` of dataset ``a-t`` both become ``a-t-k0``, as different
    source records. The text one comes third; the instruction one last (far: another part) or fourth."""
    images = [replace(make_sample(i), key=f"k{i}") for i in range(20) if i % 5 != 4][:11]
    images.insert(len(images) if far else 2, replace(make_sample(13), key="t-k0"))
    texts = [replace(make_sample(i), key=f"k{j}") for j, i in enumerate(range(4, 20, 5))]
    build(root / "a", images, spec_for("a"))
    build(root / "a-t", texts, spec_for("a-t"))
    return [root / "a", root / "a-t"]


@pytest.mark.parametrize("far", [True, False], ids=["across-parts", "within-a-part"])
def test_a_duplicate_key_is_rejected_as_in_a_whole_build(far, tmp_path, caplog):
    src, options = blend_inputs(tmp_path / "in", far=far), Options(ratio=2)
    whole = build_dataset("unnatural-blend", src, tmp_path / "whole" / "blend", options=options, max_samples=MAX_SAMPLES)
    assert [(r["source_dataset"], r["source_id"], r["reason"]) for r in rejects(whole.root)] == [
        ("a", "t-k0", "duplicate sample key 'a-t-k0' in dataset 'blend' (second use from source record a:t-k0)")]
    kwargs = dict(options=options, max_samples=MAX_SAMPLES, records_per_part=4)
    with caplog.at_level(logging.WARNING, logger=partitioned.__name__):
        merged = build_partitioned("unnatural-blend", src, tmp_path / "parted" / "blend", **kwargs)
    assert ("building the whole dataset sequentially" in caplog.text) == far
    assert_same_dataset(whole, merged)
    if far:  # the sequential fallback has the whole build's shard boundaries
        assert merged.manifest.shards == whole.manifest.shards
    assert build_partitioned("unnatural-blend", src, tmp_path / "parted" / "blend", **kwargs).reused


def test_a_duplicated_record_id_fails_a_partitioned_build_as_it_fails_a_whole_one(world, tmp_path):
    """coco-captions keys are its annotation ids: a duplicated id is one record read twice, which no
    build may commit (ReconcileError); parts, each holding it once, must not hide that."""
    raw = shutil.copytree(world / "coco-captions", tmp_path / "raw")
    path = raw / "annotations" / "captions_train2017.json"
    doc = json.loads(path.read_text())
    anns = sorted(doc["annotations"], key=lambda a: (a["image_id"], a["id"]))
    anns[-1]["id"] = anns[0]["id"]  # first and last record: different parts
    path.write_text(json.dumps({**doc, "annotations": anns}))
    for build_it in (build_dataset, build_partitioned):
        with pytest.raises(ReconcileError, match="100 records read but 99 have samples"):
            build_it("coco-captions", raw, tmp_path / build_it.__name__ / "captions", max_samples=MAX_SAMPLES,
                     **({"records_per_part": 25} if build_it is build_partitioned else {}))


def test_a_missing_part_is_built_by_the_merge_and_an_empty_plan_commits_an_empty_dataset(world, tmp_path):
    plan = plan_build("refcoco", world / "refcoco", tmp_path / "refcoco", max_samples=MAX_SAMPLES, records_per_part=15)
    parts = [build_part(plan, i) for i in range(len(plan.parts))]
    shutil.rmtree(parts[1].root)
    merged = merge_parts(plan, parts)
    assert_same_dataset(build_dataset("refcoco", world / "refcoco", tmp_path / "whole" / "refcoco",
                                      max_samples=MAX_SAMPLES), merged)
    empty = build_partitioned("refcoco", world / "refcoco", tmp_path / "none", split="nosuchsplit")
    assert empty.manifest.counts.read == 0 and not empty.manifest.shards and verify_dataset(empty.root).ok


def test_the_plan_is_plain_data_and_parts_must_match_it(world, tmp_path):
    out = tmp_path / "coco"
    plan = plan_build("coco-panoptic", world / "coco-panoptic", out, records_per_part=7)
    assert BuildPlan(**json.loads(json.dumps(asdict(plan)))) == plan == pickle.loads(pickle.dumps(plan))
    with pytest.raises(ValueError, match="options or the builders' code differ"):
        build_part(plan, 0, options=Options(max_instances=5))
    parts = [build_part(plan, i) for i in range(len(plan.parts))]
    with pytest.raises(ValueError, match="part results of this plan in order"):
        merge_parts(plan, parts[::-1])
    holder = DatasetWriter(out, BuildSpec.from_json(json.loads(plan.spec)))  # another build holds the folder
    with pytest.raises(DatasetBusyError):
        merge_parts(plan, parts)
    holder.abort()
    assert verify_dataset(merge_parts(plan, parts).root).ok
