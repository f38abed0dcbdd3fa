"""Segment a folder of images on Ray Data: read tasks feed a pool of actors that each hold one model.

The sorted listing (``*.jpg``, ``*.jpeg``, ``*.png`` directly in the folder) is cut into blocks of
``batch_size`` images; a read task decodes each block in full (undecodable, truncated, non-JPEG/PNG
or oversized files become rejects with the reason, as the builders judge them) and passes RGB
pixels on; ``map_batches`` with a callable class runs a pool of ``actors`` actors, each building
its model once, and segments one block per forward pass. A batch that fails is retried image by
image, and an image that still fails is a reject: nothing stops the run. Actors return PNG bytes
and segments_info; the driver writes them (coco_writer) and the JSON files last.

Determinism: batches are the blocks, fixed before Ray sees them, and the actor groups rows by their
block number even if Ray were to merge blocks; models are built with a fixed seed in eval mode and
CPU actors run one torch thread each. So 1 and 2 actors write byte-identical files.

Resources: with GPUs in the cluster each actor takes one GPU (and CUDA + bf16 inside); on CPU the
actors share the cluster's CPUs minus what the read tasks need, at most one each, so 2 actors fit
a 2-CPU cluster next to the reads. ``ray_address`` joins an existing cluster (the images folder and
OUT must then be on storage every node sees, and this package installed there); otherwise an
initialised Ray is reused, or a local one is started (all CPUs, no dashboard) and stopped after.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from datasets_builders.ray_session import ray_session
from datasets_builders.segment.coco_writer import OutputLayout, PanopticWriter, encode
from datasets_builders.segment.prediction import CategoryTable, PanopticPrediction, SetupError
from datasets_builders.sources.contract import RecordError
from datasets_builders.sources.images import decode_file

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
BACKENDS = ("mask2former", "detectron2")
READ_CPUS = 0.5
_FORMATS = ("JPEG", "PNG")  # what the coco-panoptic builder stores


@dataclass(frozen=True)
class SegmentConfig:
    """Everything an actor needs to build its segmenter (picklable)."""

    backend: str
    categories: CategoryTable
    checkpoint: Path | None = None
    preset: str | None = None  #: mask2former random model: "tiny" (--tiny) or "swin-base"
    threshold: float = 0.5
    mask_threshold: float = 0.95
    batch_size: int = 8
    categories_file: Path | None = None  #: where the category names came from (None: the model)
    threads: int | None = None  #: torch CPU threads per actor (None: leave as is)

    def parameters(self, images: Path, limit: int | None) -> dict[str, Any]:
        """What segment.json records: every setting that can change the output (not the actor count)."""
        return {"backend": self.backend, "model": f"random:{self.preset}" if self.preset else str(self.checkpoint),
                "threshold": self.threshold, "mask_threshold": self.mask_threshold, "label_ids_to_fuse": [],
                "batch_size": self.batch_size, "categories": str(self.categories_file or "model"),
                "images": str(images), "limit": limit}


@dataclass(frozen=True)
class RunResult:
    out: Path
    counts: dict[str, int]  #: images, segmented, rejected, segments
    rejects: list[dict[str, str]]
    seconds: float


def configure(backend: str, *, checkpoint: Path | None, preset: str | None, categories_file: Path | None,
              threshold: float, mask_threshold: float, batch_size: int) -> SegmentConfig:
    """Checks the backend, checkpoint and categories on the driver; SetupError says what is wrong."""
    if backend not in BACKENDS:
        raise SetupError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "detectron2":
        from datasets_builders.segment.detectron2 import require_detectron2

        require_detectron2()
        if preset is not None or checkpoint is None or not Path(checkpoint).is_dir():
            raise SetupError("the detectron2 backend needs --checkpoint DIR (config.yaml + model_final.pth); "
                             "--tiny is mask2former only")
        if categories_file is None:
            raise SetupError("the detectron2 backend needs --categories FILE (COCO panoptic categories)")
        categories = CategoryTable.from_file(categories_file, None)
    else:
        from datasets_builders.segment import mask2former

        mask2former.require_scipy()
        if preset is not None and checkpoint is not None:
            raise SetupError("--tiny builds a random model; leave out --checkpoint (or --tiny)")
        spec = mask2former.ModelSpec(checkpoint, preset)
        categories = (CategoryTable.from_file(categories_file, mask2former.num_labels(spec)) if categories_file
                      else mask2former.categories(spec))
    return SegmentConfig(backend, categories, checkpoint, preset, threshold, mask_threshold, batch_size,
                         categories_file)


def list_images(folder: Path, limit: int | None = None) -> list[str]:
    """Image file names directly in ``folder``, sorted; SetupError if there are none."""
    if not folder.is_dir():
        raise SetupError(f"--images {folder} is not a folder")
    names = sorted(p.name for p in folder.iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file())
    if not names:
        raise SetupError(f"--images {folder} holds no {'/'.join(IMAGE_SUFFIXES)} files")
    return names[:limit] if limit else names


def segment_folder(images: Path, out: Path, config: SegmentConfig, *, actors: int = 1, ray_address: str | None = None,
                   limit: int | None = None, progress: Callable[[], None] | None = None) -> RunResult:
    """Segment every listed image of ``images`` into COCO panoptic files under ``out``."""
    started = time.perf_counter()
    files = list_images(images, limit)
    layout = OutputLayout(out)
    layout.prepare()
    writer = PanopticWriter(layout, images, config.categories)
    with ray_session(ray_address):
        for row in _results(images, files, config, actors):
            if row["error"]:
                writer.reject(row["file"], row["error"])
            else:
                writer.add(row["file"], row["image_id"], row["width"], row["height"], row["png"],
                           json.loads(row["segments"]))
            if progress:
                progress()
    writer.finish(config.parameters(images, limit))
    rejects = sorted(writer.rejects, key=lambda r: r["file"])
    return RunResult(out, writer.counts(), rejects, time.perf_counter() - started)


def read_block(table: Any, folder: str) -> Any:
    """A block of file names -> decoded RGB pixels, or the reason an image cannot be used."""
    import pyarrow as pa

    rows = table.to_pylist()
    for row in rows:
        path = Path(folder) / row["file"]
        row.update(width=0, height=0, pixels=b"", error="")
        try:
            _, picture = decode_file(path, "image")
            if picture.format not in _FORMATS:
                raise RecordError(f"image {path} is {picture.format}; only JPEG and PNG are stored (as their bytes)")
            row.update(width=picture.width, height=picture.height, pixels=picture.convert("RGB").tobytes())
        except (OSError, ValueError) as e:  # RecordError is a ValueError; the others come from convert()
            row["error"] = str(e) if isinstance(e, RecordError) else f"image {path}: no RGB ({type(e).__name__}: {e})"
    return pa.Table.from_pylist(rows)


class SegmentActor:
    """One model per actor; a block of decoded images in, PNGs and segments_info out."""

    def __init__(self, config: SegmentConfig) -> None:
        self.segmenter = make_segmenter(config)

    def __call__(self, table: Any) -> Any:
        import pyarrow as pa

        rows = table.to_pylist()
        groups: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            if not row["error"]:
                groups.setdefault(row["group"], []).append(row)
        predictions: dict[str, PanopticPrediction | str] = {}
        for group in groups.values():
            images = [PILImage.frombytes("RGB", (r["width"], r["height"]), r["pixels"]) for r in group]
            predictions.update(zip((r["file"] for r in group), self._predict(images)))
        return pa.Table.from_pylist([_result_row(r, predictions.get(r["file"])) for r in rows])

    def _predict(self, images: list[PILImage.Image]) -> list[PanopticPrediction | str]:
        """Predictions, or per image the reason it failed: a failed batch is retried one by one."""
        if not images:
            return []
        try:
            return list(self.segmenter.predict(images))
        except Exception as e:  # noqa: BLE001 - any model failure becomes a reject, never a stopped run
            if len(images) == 1:
                return [f"segmentation failed ({type(e).__name__}: {e})"]
            return [p for image in images for p in self._predict([image])]


def _result_row(row: dict[str, Any], prediction: PanopticPrediction | str | None) -> dict[str, Any]:
    error, png, segments = row["error"], b"", "[]"
    if not error:
        try:
            if not isinstance(prediction, PanopticPrediction):
                raise ValueError(prediction)
            encoded = encode(prediction)
            png, segments = encoded.png, json.dumps(encoded.segments)
        except ValueError as e:
            error = f"image {row['file']}: {e}"
    return {"file": row["file"], "image_id": row["image_id"], "width": row["width"], "height": row["height"],
            "error": error, "png": png, "segments": segments}


def make_segmenter(config: SegmentConfig) -> Any:
    if config.backend == "detectron2":
        from datasets_builders.segment.detectron2 import Detectron2Segmenter

        return Detectron2Segmenter(config.checkpoint, config.categories)
    from datasets_builders.segment.mask2former import Mask2FormerSegmenter, ModelSpec

    return Mask2FormerSegmenter(ModelSpec(config.checkpoint, config.preset), threshold=config.threshold,
                                mask_threshold=config.mask_threshold, threads=config.threads)


def _results(images: Path, files: list[str], config: SegmentConfig, actors: int) -> Iterator[dict[str, Any]]:
    import pyarrow as pa
    import ray

    size = config.batch_size
    blocks = []
    for first in range(0, len(files), size):  # one block per batch; image id = position in the listing + 1
        names = files[first:first + size]
        blocks.append(pa.table({"file": names, "image_id": range(first + 1, first + 1 + len(names)),
                                "group": [first // size] * len(names)}))
    resources, config = _actor_resources(actors, config)
    dataset = (ray.data.from_arrow(blocks)
               .map_batches(read_block, batch_size=size, batch_format="pyarrow", num_cpus=READ_CPUS,
                            fn_kwargs={"folder": str(images)})
               .map_batches(SegmentActor, batch_size=size, batch_format="pyarrow",
                            compute=ray.data.ActorPoolStrategy(size=actors),
                            fn_constructor_kwargs={"config": config}, **resources))
    for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
        yield from batch.to_pylist()


def _actor_resources(actors: int, config: SegmentConfig) -> tuple[dict[str, float], SegmentConfig]:
    import dataclasses

    import ray

    cluster = ray.cluster_resources()
    gpus = int(cluster.get("GPU", 0))
    if gpus:
        if actors > gpus:
            raise SetupError(f"--actors {actors} but the Ray cluster has {gpus} GPUs (one per actor)")
        return {"num_gpus": 1, "num_cpus": 1}, config
    share = min(1.0, (cluster.get("CPU", 1) - READ_CPUS) / actors)
    if share <= 0:
        raise SetupError(f"the Ray cluster has {cluster.get('CPU', 0)} CPUs: too few for {actors} actors and the reads")
    return {"num_cpus": share}, dataclasses.replace(config, threads=1)


def quiet_ray_logs() -> None:
    """For commands that draw their own progress: Ray Data's per-operator log lines would bury it."""
    import logging

    import ray

    ray.data.DataContext.get_current().enable_progress_bars = False
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
