"""One dataset build split into parts over contiguous record ranges, built in parallel, then merged.

    plan = plan_build(source, inputs, out_dir, records_per_part=10_000)   # checks inputs, counts records
    parts = [build_part(plan, i) for i in range(len(plan.parts))]          # any order, threads or tasks
    result = merge_parts(plan, parts)                                      # the one committed dataset

Plain functions with a plain, picklable plan, so a Prefect flow can map ``build_part`` over the
parts (this package does not import Prefect). Each part is an ordinary committed dataset of the
records ``[start, stop)`` in ``<out_dir>/.parts/<part:05d>/``, built by the same loop as
:func:`~datasets_builders.build.build_dataset`; builders convert each record on its own, so the parts
hold exactly the samples and rejects a whole build would, in the same order. The merge adopts the
parts' shards as ``<name>-000000.tar`` ... in part order (hard links: no byte is rewritten and
the parts stay whole until the merged manifest is written last), so a killed merge leaves no
manifest and running it again starts it over. Only shard boundaries differ from a whole build:
each part ends with a partial shard; ``records_per_part`` is recorded in the spec, so the
layout is part of the fingerprint.

Duplicate keys across parts: a whole build rejects the second use of a key (DuplicateKeyError as
the reason), but a part cannot see the other parts' keys. The merge detects the clash and falls
back to building the whole dataset sequentially under the same spec, which gives exactly the
whole build's samples and rejects (with its shard boundaries). A clash within one part is
rejected by that part's writer with the same reason as in a whole build: parts carry the final
dataset name for that reason.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from datasets_builders.build import BuildResult, locate_inputs, parameters, write_records
from datasets_builders.formats.schema import Source
from datasets_builders.registry import source_module
from datasets_builders.sources.contract import Options
from datasets_builders.store import BuildSpec, DatasetWriter, DuplicateKeyError, committed_build, load_manifest
from datasets_builders.store.index import REJECTS_SCHEMA, SAMPLES_SCHEMA, read_table
from datasets_builders.store.layout import REJECTS_INDEX, SAMPLES_INDEX
from datasets_builders.store.writer import check_writable

log = logging.getLogger(__name__)

PARTS = ".parts"  #: under the final dataset folder; removed once the merged dataset is committed


@dataclass(frozen=True)
class BuildPlan:
    """What every part and the merge need, as plain values (JSON via ``dataclasses.asdict``; lists
    given back become tuples). The spec is kept whole so that parts need not hash the inputs again."""

    source: str
    inputs: tuple[str, ...]
    out_dir: str
    name: str
    spec: str  #: the final BuildSpec as JSON: build_dataset's spec plus parameter records_per_part
    fingerprint: str  #: of that spec (and of the builders' code at plan time)
    records: int  #: input records the build reads (limit applied)
    parts: tuple[tuple[int, int], ...]  #: record range [start, stop) per part
    committed: bool  #: the final dataset was already committed with this fingerprint at plan time
    overwrite: bool = False  #: the merge may replace a different committed dataset at out_dir

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "parts", tuple((int(a), int(b)) for a, b in self.parts))

    def part_dir(self, part: int) -> Path:
        return Path(self.out_dir) / PARTS / f"{part:05d}"


@dataclass(frozen=True)
class PartResult:
    root: str  #: the part's dataset folder
    samples: int  #: samples it holds (0 when the final dataset was already committed: nothing built)
    rejects: int  #: rows in its rejects.parquet
    reused: bool  #: an identical part (or the final dataset) was already committed; nothing was done


def plan_build(
    source: str,
    inputs: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    limit: int | None = None,
    split: str | None = None,
    options: Options | None = None,
    overwrite: bool = False,
    max_samples: int = 5000,
    records_per_part: int = 10_000,
) -> BuildPlan:
    """Check the inputs exactly as build_dataset does, hash them once, count the records (read,
    not converted) and cut them into ranges of ``records_per_part``. A different dataset already
    committed at ``out_dir`` is refused here, before any part is built, unless ``overwrite``."""
    if records_per_part < 1:
        raise ValueError(f"records_per_part must be at least 1, got {records_per_part}")
    options = options or Options()
    located = locate_inputs(source, inputs, options)
    out = Path(out_dir)
    whole = located.spec(out.name, limit=limit, split=split, options=options, max_samples=max_samples)
    spec = replace(whole, parameters={**whole.parameters, "records_per_part": records_per_part})
    done = committed_build(out, spec)
    if done is None:
        check_writable(out, spec.fingerprint, overwrite=overwrite)
    records = done.counts.read if done is not None else sum(1 for _ in located.records(split, 0, limit))
    return BuildPlan(
        source=source,
        inputs=tuple(str(p) for p in located.paths),
        out_dir=str(out),
        name=spec.name,
        spec=json.dumps(spec.to_json()),
        fingerprint=spec.fingerprint,
        records=records,
        parts=tuple((a, min(a + records_per_part, records)) for a in range(0, records, records_per_part)),
        committed=done is not None,
        overwrite=overwrite,
    )


def build_part(plan: BuildPlan, part: int, *, options: Options | None = None,
               progress: Callable[[], None] | None = None) -> PartResult:
    """Build the plan's records ``plan.parts[part]`` into ``plan.part_dir(part)``; an identical
    committed part is reused. ``options`` must be the plan's (a model callable cannot travel in
    the plan). Thread-safe across different parts: each has its own inputs, writer and folder."""
    options = options or Options()
    final = _final_spec(plan, options)
    root = plan.part_dir(part)
    if committed_build(plan.out_dir, final) is not None:
        return PartResult(str(root), 0, 0, reused=True)
    spec = _part_spec(plan, part, final)
    done, reused = committed_build(root, spec), True
    if done is None:
        located = locate_inputs(plan.source, plan.inputs, options)
        records = located.records(final.parameters["split"], *plan.parts[part])
        done = write_records(located.module, records, root, spec, overwrite=True, progress=progress).manifest
        reused = False
    return PartResult(str(root), done.counts.written, done.counts.rejected, reused)


def merge_parts(plan: BuildPlan, parts: Sequence[PartResult], *, options: Options | None = None) -> BuildResult:
    """Commit ``plan.out_dir`` from the parts (``parts``: build_part's results in plan order; a part
    missing on disk is built here first). The final folder's writer lock is held from the first
    adopted shard to the commit, so no other build writes there meanwhile. Returns the committed
    dataset with reused=True if it already exists with the plan's fingerprint."""
    out = Path(plan.out_dir)
    options = options or Options()
    final = _final_spec(plan, options)
    done = committed_build(out, final)
    if done is not None:
        shutil.rmtree(out / PARTS, ignore_errors=True)
        return BuildResult(out, done, reused=True)
    expected = [str(plan.part_dir(i)) for i in range(len(plan.parts))]
    if [p.root for p in parts] != expected:
        raise ValueError(f"{out}: merge_parts needs the {len(expected)} part results of this plan in order, "
                         f"got {len(parts)} results of other folders or in another order")
    for i in range(len(plan.parts)):
        if committed_build(plan.part_dir(i), _part_spec(plan, i, final)) is None:
            build_part(plan, i, options=options)
    try:
        with DatasetWriter(out, final, overwrite=plan.overwrite, resume=False) as writer:
            for i in range(len(plan.parts)):
                _adopt_part(writer, plan.part_dir(i))
        manifest = writer.manifest
    except DuplicateKeyError as e:
        log.warning("%s: %s; building the whole dataset sequentially instead", out, e)
        located = locate_inputs(plan.source, plan.inputs, options)
        records = located.records(final.parameters["split"], 0, plan.records)
        manifest = write_records(located.module, records, out, final, overwrite=plan.overwrite, resume=False).manifest
    assert manifest is not None
    shutil.rmtree(out / PARTS, ignore_errors=True)
    return BuildResult(out, manifest, reused=False)


def build_partitioned(
    source: str,
    inputs: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    workers: int = 4,
    options: Options | None = None,
    progress: Callable[[], None] | None = None,
    **plan: Any,
) -> BuildResult:
    """plan_build (``plan``: its limit, split, overwrite, max_samples, records_per_part), build_part on
    ``workers`` threads, merge_parts: what the Prefect flow does with tasks. ``progress`` is called
    once per record, from the worker threads."""
    built = plan_build(source, inputs, out_dir, options=options, **plan)
    if built.committed:
        return merge_parts(built, (), options=options)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(lambda i: build_part(built, i, options=options, progress=progress),
                              range(len(built.parts))))
    return merge_parts(built, parts, options=options)


def _final_spec(plan: BuildPlan, options: Options) -> BuildSpec:
    """The plan's spec, checked against the options and code of this call: a part built with other
    options (or after a code change) would not belong to the plan's dataset."""
    spec = BuildSpec.from_json(json.loads(plan.spec))
    p = spec.parameters
    ours = replace(spec, parameters={**parameters(source_module(plan.source), limit=p["limit"], split=p["split"],
                                                  options=options), "records_per_part": p["records_per_part"]})
    if ours.fingerprint != plan.fingerprint:
        raise ValueError(f"{plan.out_dir}: the options or the builders' code differ from the plan's; plan the build again")
    return ours


def _part_spec(plan: BuildPlan, part: int, final: BuildSpec) -> BuildSpec:
    """A part is a dataset of the final name (so writer messages in rejects read as in a whole
    build) whose identity is its record range of the plan's fingerprint."""
    start, stop = plan.parts[part]
    return replace(final, parameters={"part_of": plan.fingerprint, "records": [start, stop]})


def _adopt_part(writer: DatasetWriter, root: Path) -> None:
    """Hand one committed part to the final writer: records read, repairs, rejects, then its shards."""
    manifest = load_manifest(root)
    assert manifest is not None
    writer.count_read(manifest.counts.read)
    for kind, n in manifest.repairs.items():
        writer.repair(kind, n)
    for row in read_table(root / REJECTS_INDEX, REJECTS_SCHEMA).to_pylist():
        writer.reject(Source(row["source_dataset"], row["source_id"]), row["stage"], row["reason"])
    samples, at = read_table(root / SAMPLES_INDEX, SAMPLES_SCHEMA), 0
    for entry in manifest.shards:
        writer.adopt(root / entry.name, samples.slice(at, entry.samples), entry)
        at += entry.samples
