"""Dataset builds as flows: one flow per builder, and ``build_all`` for every dataset at once.

A build is four kinds of task (``datasets_builders.partitioned`` does the work):

    plan     hash the inputs, count records, cut them into parts          (never cached: it is the check)
    part k   build records [start, stop) into <out>/.parts/<k>/           (cached: INPUTS + TASK_SOURCE)
    merge    the parts -> the committed dataset; materializes its asset   (cached: INPUTS + TASK_SOURCE)
    publish  verify every byte; the dataset's table and lineage card       (never cached: it reports)

The plan carries the build fingerprint (content hashes of the inputs, parameters, builder code),
so the cache keys of parts and merge change exactly when the dataset would: an unchanged re-run is
all cache hits, a changed source rebuilds only what reads it. A cached result is trusted only while
its output is on disk (the final dataset committed with that fingerprint, or the part itself);
otherwise the task runs again. Parts run in a thread pool here, or as Ray tasks with
``ray_address`` (``prefect-ray``'s RayTaskRunner; the folders must then be on shared storage).
"""

from __future__ import annotations

import contextvars
import json
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from prefect import Flow, flow, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.assets import add_asset_metadata, materialize
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner

from datasets_builders.partitioned import BuildPlan, PartResult, build_part, merge_parts, plan_build
from datasets_builders.registry import DERIVED, SOURCES
from datasets_builders.sources.contract import Options, is_transient
from datasets_builders.store import BuildSpec, ManifestError, load_manifest, verify_dataset
from datasets_builders.store.index import REJECTS_SCHEMA, read_table
from datasets_builders.store.layout import REJECTS_INDEX
from pipelines import lineage
from pipelines.demo import DEMO_ROOT, MULTIROUND_INPUTS, SEGMENTED, ensure_sample_world
from pipelines.flows.segment import segment_panoptic

RECORDS_PER_PART = 256  #: input records per part task (a record may make several samples)
THREADS = 4  #: parallel tasks of the local thread pool
CACHED = INPUTS + TASK_SOURCE


def transient_io(task, task_run, state) -> bool:  # noqa: ANN001 - Prefect's retry_condition_fn signature
    """Retry only I/O errors that may pass (a flaky mount, a busy file); bad input fails at once."""
    return is_transient(state.result(raise_on_failure=False))


@task(name="plan", cache_policy=NO_CACHE)
def plan(source: str, inputs: list[str], out: str, limit: int | None, split: str | None, options: dict,
         records_per_part: int, overwrite: bool) -> BuildPlan:
    return plan_build(source, inputs, out, limit=limit, split=split, options=make_options(options),
                      records_per_part=records_per_part, overwrite=overwrite)


@task(name="part", cache_policy=CACHED, retries=2, retry_delay_seconds=2, retry_condition_fn=transient_io)
def part(build: BuildPlan, k: int, options: dict) -> PartResult:
    return build_part(build, k, options=make_options(options))


@materialize("crayonflow://datasets/placeholder", name="merge", cache_policy=(INPUTS - "overwrite") + TASK_SOURCE,
             retries=2, retry_delay_seconds=2, retry_condition_fn=transient_io)
def merge(build: BuildPlan, parts: list[PartResult], options: dict, overwrite: bool) -> str:
    """``overwrite`` is not in the cache key: it decides whether an old version may be replaced,
    not what the dataset holds."""
    result = merge_parts(replace(build, overwrite=overwrite), parts, options=make_options(options))
    add_asset_metadata(lineage.dataset_key(build.name, build.fingerprint), lineage.asset_metadata(result.manifest))
    return str(result.root)


@task(name="publish", cache_policy=NO_CACHE)
def publish(out: str, reused: bool) -> dict:
    """Verify the committed dataset, then publish its table and lineage card (new versions of their keys)."""
    root = Path(out)
    manifest = load_manifest(root)
    report = verify_dataset(root)
    rejects = read_table(root / REJECTS_INDEX, REJECTS_SCHEMA).select(["stage", "reason"]).to_pylist()
    name = manifest.spec.name
    create_table_artifact(lineage.dataset_table(manifest, [(r["stage"], r["reason"]) for r in rejects]),
                          key=lineage.artifact_key("dataset", name),
                          description=f"{name} {manifest.fingerprint[:lineage.VERSION_CHARS]}: shards, samples per "
                                      "task and split, rejects by reason, checksums")
    create_markdown_artifact(lineage.lineage_card(manifest, root), key=lineage.artifact_key("lineage", name),
                             description=f"where {name} came from and who read it")
    problems = [str(p) for p in report.problems]
    if problems:
        raise RuntimeError(f"{root}: verify found {len(problems)} problems: {'; '.join(problems[:5])}")
    c = manifest.counts
    return {"dataset": name, "read": c.read, "samples": c.written, "rejects": c.records_rejected,
            "bytes": manifest.total_bytes, "shards": len(manifest.shards), "reused": reused, "verified": report.ok,
            "version": manifest.fingerprint[:lineage.VERSION_CHARS], "path": str(root)}


def submit_build(build: BuildPlan, options: dict, progress: BuildProgress | None = None) -> PrefectFuture:
    """Parts, merge and publish of one planned build; returns the future of publish's summary.

    The tasks get the plan without its ``committed`` and ``overwrite`` flags, so the cache key is
    the same before and after the first commit, whoever may replace what; whether a cached result may be trusted is decided here instead:
    the merge only while the dataset is committed with the plan's fingerprint, a part also while
    its own folder is there (merge_parts rebuilds a missing part in any case)."""
    keyed = replace(build, committed=False, overwrite=False)
    parts = [part.with_options(name=f"part-{build.name}-{k}", refresh_cache=not (build.committed or _part_on_disk(build, k)))
             .submit(keyed, k, options) for k in range(len(build.parts))]
    if progress is not None:
        progress.expect(parts)
    inputs = BuildSpec.from_json(json.loads(build.spec)).inputs
    merged = merge.with_options(
        name=f"merge-{build.name}", assets=[lineage.dataset_key(build.name, build.fingerprint)],
        asset_deps=[lineage.input_key(ref) for ref in inputs], refresh_cache=not build.committed,
    ).submit(keyed, parts, options, build.overwrite)
    return publish.with_options(name=f"publish-{build.name}").submit(merged, build.committed)


def _part_on_disk(build: BuildPlan, k: int) -> bool:
    try:
        return load_manifest(build.part_dir(k)) is not None
    except ManifestError:
        return False


class BuildProgress:
    """One progress artifact for a flow's builds: the share of part tasks finished, raised from the
    futures' completion callbacks (any thread), never lowered."""

    def __init__(self, key: str, description: str) -> None:
        self._id = create_progress_artifact(0.0, key=key, description=description)
        self._lock = threading.Lock()
        self._total = self._done = 0

    def expect(self, futures: Sequence[PrefectFuture]) -> None:
        with self._lock:
            self._total += len(futures)
        context = contextvars.copy_context()  # the flow's settings and client, for callbacks on other threads
        for future in futures:
            future.add_done_callback(lambda _: context.copy().run(self._finished))

    def _finished(self) -> None:
        with self._lock:
            self._done += 1
            share = round(100.0 * self._done / max(self._total, 1), 1)
        update_progress_artifact(self._id, share)

    def close(self) -> None:
        update_progress_artifact(self._id, 100.0)


def make_options(options: dict | None) -> Options:
    """Flow parameters are JSON; lists become the tuples Options holds; a pseudo-label checkpoint
    becomes the labeler (made here, as the layer that may import models)."""
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in (options or {}).items()}
    if values.get("pseudo_label_checkpoint"):
        from models.chat import pseudo_labeler

        values["pseudo_labeler"] = pseudo_labeler(Path(values["pseudo_label_checkpoint"]))
    return Options(**values)


def on_ray(this: Flow, ray_address: str, parameters: dict) -> dict:
    """Run this flow's graph again as a subflow whose tasks go to the Ray cluster at ``ray_address``."""
    from prefect_ray import RayTaskRunner

    return this.with_options(name=f"{this.name}-on-ray", task_runner=RayTaskRunner(address=ray_address))(
        **{**parameters, "ray_address": None})


def builder_flow(source: str) -> Flow:
    """The flow of one builder, named ``build-<source>``, defaulting to the demo's folders."""
    default_inputs = ([str(DEMO_ROOT / "datasets" / n) for n in _derived_inputs(source)] if source in DERIVED
                      else [str(DEMO_ROOT / "raw" / "sample-world" / source)])

    @flow(name=f"build-{source}", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=THREADS))
    def build(inputs: list[str] = default_inputs, out: str = str(DEMO_ROOT / "datasets" / source),  # noqa: B006
              limit: int | None = None, split: str | None = None, options: dict | None = None,
              records_per_part: int = RECORDS_PER_PART, overwrite: bool = False,
              ray_address: str | None = None) -> dict:
        if ray_address:
            return on_ray(build, ray_address, dict(inputs=inputs, out=out, limit=limit, split=split, options=options,
                                                   records_per_part=records_per_part, overwrite=overwrite))
        options = options or {}
        progress = BuildProgress(lineage.artifact_key("build-progress", source), f"part tasks of {source} finished")
        summary = submit_build(plan(source, inputs, out, limit, split, options, records_per_part, overwrite), options,
                               progress).result()
        progress.close()
        return summary

    build.__doc__ = f"Build the {source} dataset from ``inputs`` into ``out``, in parts of ``records_per_part``."
    return build


def _derived_inputs(source: str) -> Sequence[str]:
    return MULTIROUND_INPUTS if source == "multiround" else ("llava", "unnatural-instructions")


ALL = (*SOURCES, SEGMENTED, *DERIVED)  #: build_all's datasets, in the order they are started


@flow(name="build_all", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=THREADS))
def build_all(raw_root: str = str(DEMO_ROOT / "raw" / "sample-world"), out_root: str = str(DEMO_ROOT / "datasets"),
              images: int | None = 64, seed: int = 0, builders: list[str] | None = None,
              records_per_part: int = RECORDS_PER_PART, overwrite: bool = False,
              ray_address: str | None = None, val_scenes: int = 0) -> dict[str, dict]:
    """Every dataset: ``<raw_root>/<builder>`` for each raw builder (``images``: first write a sample
    world of that many scenes, and ``val_scenes`` val-only ones, there; 0 or None: use what is
    there), ``llava-crayon`` from LLaVA's
    pictures segmented by the tiny Mask2Former, then the derived datasets over the built ones.
    Independent builds run in parallel: the raw builds' parts while the segmenter runs, a derived
    build as soon as its upstream datasets are published. ``overwrite``: a new version of a dataset
    replaces the one committed at its folder (else that build fails, naming the folder)."""
    if ray_address:
        return on_ray(build_all, ray_address, dict(raw_root=raw_root, out_root=out_root, images=images, seed=seed,
                                                   builders=builders, records_per_part=records_per_part, overwrite=overwrite,
                                                   val_scenes=val_scenes))
    raw, out = Path(raw_root), Path(out_root)
    chosen = [name for name in ALL if name in set(builders or ALL)]
    unknown = sorted(set(builders or ()) - set(ALL))
    if unknown:
        raise ValueError(f"unknown builders {unknown}; known: {', '.join(ALL)}")
    if images:
        sample_world(raw, images, seed, val_scenes)
    progress = BuildProgress(lineage.artifact_key("build-progress", "all"), f"part tasks of {len(chosen)} datasets finished")
    plans = {name: plan.with_options(name=f"plan-{name}").submit(name, [str(raw / name)], str(out / name), None, None,
                                                                  {}, records_per_part, overwrite)
             for name in SOURCES if name in chosen}
    published = {name: submit_build(p.result(), {}, progress) for name, p in plans.items()}
    if SEGMENTED in chosen:
        predictions = raw.parent / "segmented" / "llava"
        segment_panoptic(images=str(raw / "llava" / "coco" / "train2017"), out=str(predictions))
        planned = plan.with_options(name=f"plan-{SEGMENTED}")("coco-panoptic", [str(predictions)], str(out / SEGMENTED),
                                                              None, None, {}, records_per_part, overwrite)
        published[SEGMENTED] = submit_build(planned, {}, progress)
    failed: dict[str, str] = {}
    for name in DERIVED:
        if name in chosen:
            broken = [n for n in _derived_inputs(name) if n in published and not _succeeded(published[n])]
            if broken:
                failed[name] = f"not built: its inputs {broken} failed"
                continue
            planned = plan.with_options(name=f"plan-{name}")(
                name, [str(out / n) for n in _derived_inputs(name)], str(out / name), None, None, {},
                records_per_part, overwrite)
            published[name] = submit_build(planned, {}, progress)
    summaries = {}
    for name, future in published.items():
        if _succeeded(future):
            summaries[name] = future.result()
        else:
            failed[name] = f"{future.state.name}: {future.state.message}"
    progress.close()
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(chosen)} datasets failed ({len(summaries)} built): "
                           + "; ".join(f"{n}: {why}" for n, why in failed.items()))
    return {name: summaries[name] for name in chosen}


def _succeeded(future: PrefectFuture) -> bool:
    future.wait()
    return future.state.is_completed()


@task(name="sample-world", cache_policy=NO_CACHE)
def sample_world(out: Path, images: int, seed: int, val_scenes: int = 0) -> str:
    """Writes the world only when the one there has other (images, seed, val_scenes): cheap to check."""
    return str(ensure_sample_world(out, images=images, seed=seed, val_scenes=val_scenes)[0])


BUILDERS = {name: builder_flow(name) for name in (*SOURCES, *DERIVED)}
# Module attributes, so prefect.yaml can name each as an entrypoint (pipelines/flows/build.py:build_vqa).
globals().update({f"build_{name.replace('-', '_')}": f for name, f in BUILDERS.items()})
