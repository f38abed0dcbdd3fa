"""``segment_panoptic``: predicted COCO panoptic files for pictures that have no ground truth.

A thin wrapper over ``datasets_builders.segment.run.segment_folder`` (Ray Data actors). The task
is cached on its inputs, the images' content hash among them, plus its code; a cached result is
only trusted while the output folder still records the same parameters.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE

from datasets_builders.segment.run import configure, segment_folder
from datasets_builders.store.lineage import content_hash
from pipelines import lineage


@flow(name="segment_panoptic", log_prints=True)
def segment_panoptic(images: str, out: str, backend: str = "mask2former", checkpoint: str | None = None,
                     preset: str | None = "tiny", threshold: float = 0.5, mask_threshold: float = 0.95,
                     batch_size: int = 8, actors: int = 1, ray_address: str | None = None) -> dict:
    """Segment every picture in ``images`` into ``out`` (``crayonflow build coco-panoptic --input out``)."""
    settings = {"backend": backend, "checkpoint": checkpoint, "preset": preset, "threshold": threshold,
                "mask_threshold": mask_threshold, "batch_size": batch_size}
    images_xxh3 = hash_images(images)
    fresh = segmented_with(Path(out), _config(settings).parameters(Path(images), None))
    counts = segment.with_options(refresh_cache=not fresh)(images, out, images_xxh3, settings, actors, ray_address)
    create_markdown_artifact(
        f"# segmented `{images}`\n\n{counts['segmented']} of {counts['images']} images segmented into `{out}` "
        f"({counts['segments']} segments, {counts['rejected']} rejected); images xxh3 `{images_xxh3}`; "
        f"model `{_config(settings).parameters(Path(images), None)['model']}`\n",
        key=lineage.artifact_key("segmented", Path(out).name))
    return counts


@task(cache_policy=NO_CACHE)
def hash_images(images: str) -> str:
    return content_hash(images).xxh3


@task(cache_policy=INPUTS + TASK_SOURCE, retries=1, retry_delay_seconds=5)
def segment(images: str, out: str, images_xxh3: str, settings: dict, actors: int, ray_address: str | None) -> dict:
    """``images_xxh3`` is in the signature only for the cache key: new pictures, new predictions."""
    result = segment_folder(Path(images), Path(out), _config(settings), actors=actors, ray_address=ray_address)
    return dict(result.counts)


def segmented_with(out: Path, parameters: dict) -> bool:
    """Whether ``out`` holds a complete segment run (segment.json is written last) with ``parameters``."""
    try:
        earlier = json.loads((out / "segment.json").read_text())
        return {k: earlier.get(k) for k in parameters} == parameters
    except (OSError, ValueError, AttributeError):
        return False


def _config(settings: dict):  # noqa: ANN202 - a SegmentConfig
    return configure(settings["backend"], checkpoint=Path(settings["checkpoint"]) if settings["checkpoint"] else None,
                     preset=settings["preset"], categories_file=None, threshold=settings["threshold"],
                     mask_threshold=settings["mask_threshold"], batch_size=settings["batch_size"])
