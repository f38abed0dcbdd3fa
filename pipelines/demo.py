"""The demo on embedded defaults: a sample world -> every dataset, verified -> three-stage training -> evaluation.

Raw builders first (one dataset per raw format), then the derived ones on top of them: the
multi-round conversations over the image task datasets, and LLaVA blended with Unnatural
Instructions (1 text sample per 20). Last, LLaVA's pictures, which have no panoptic ground
truth, are segmented by the tiny random Mask2Former on Ray (``crayonflow segment --tiny``) and
the predictions built into crayon shards (``llava-crayon``) by the unchanged coco-panoptic builder.

Then ``run_demo_training`` trains the tiny model through ``training/recipes/tiny-demo.yaml`` on
Ray Train (2 CPU workers by default) and scores the last stage's checkpoint and the untrained
model (the plan's start, same seed) on the held-out split, so the gain is measured, not assumed.

Plain functions (the Prefect flow of the same name wraps them). Everything is deterministic for
(images, seed): a re-run regenerates nothing and reuses every committed dataset; other
parameters rebuild, replacing the previous demo's datasets rather than mixing with them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from collections.abc import Callable
from importlib import resources

from datasets_builders.build import BuildResult, build_dataset
from datasets_builders.registry import SOURCES
from datasets_builders.sample_world.world import write_sample_world
from datasets_builders.segment.run import SegmentConfig, configure, segment_folder
from datasets_builders.store import VerifyReport, verify_dataset

DEMO_PLAN = Path(str(resources.files("training") / "recipes" / "tiny-demo.yaml"))
MULTIROUND_INPUTS = ("coco-panoptic", "flickr30k-entities", "refcoco", "vqa", "coco-captions")
SEGMENTED = "llava-crayon"  #: crayon shards of predicted panoptic maps


@dataclass(frozen=True)
class DemoDataset:
    name: str
    build: BuildResult
    report: VerifyReport


@dataclass(frozen=True)
class DemoResult:
    world: Path
    world_reused: bool
    datasets: tuple[DemoDataset, ...]

    @property
    def ok(self) -> bool:
        return all(d.report.ok for d in self.datasets)


def run_demo(data_dir: Path, *, images: int = 64, seed: int = 0) -> DemoResult:
    world, world_reused = ensure_sample_world(data_dir / "raw" / "sample-world", images=images, seed=seed)
    out = data_dir / "datasets"
    builds = {name: build_dataset(name, world / name, out / name, overwrite=True) for name in SOURCES}
    builds["multiround"] = build_dataset("multiround", [out / n for n in MULTIROUND_INPUTS], out / "multiround",
                                         overwrite=True)
    builds["unnatural-blend"] = build_dataset("unnatural-blend", [out / "llava", out / "unnatural-instructions"],
                                              out / "unnatural-blend", overwrite=True)
    predictions = ensure_segmented(world / "llava" / "coco" / "train2017", data_dir / "raw" / "segmented" / "llava",
                                   reuse=world_reused)
    builds[SEGMENTED] = build_dataset("coco-panoptic", predictions, out / SEGMENTED, overwrite=True)
    datasets = tuple(DemoDataset(name, result, verify_dataset(result.root)) for name, result in builds.items())
    return DemoResult(world, world_reused, datasets)


def ensure_sample_world(out: Path, *, images: int, seed: int) -> tuple[Path, bool]:
    """The sample world at ``out`` for (images, seed), written only if what is there differs."""
    try:
        summary = json.loads((out / "sample-world.json").read_text())
        if (summary["images"], summary["seed"]) == (images, seed):
            return out, True
    except (OSError, ValueError, KeyError, TypeError):
        pass
    write_sample_world(out, images=images, seed=seed, overwrite=True)
    return out, False


def ensure_segmented(images: Path, out: Path, *, reuse: bool) -> Path:
    """COCO panoptic predictions of the tiny model for ``images``, redone unless ``reuse`` (the
    images are unchanged) and a complete earlier run there had the same parameters."""
    config = tiny_segmenter()
    try:
        earlier = json.loads((out / "segment.json").read_text())
        if reuse and {k: earlier.get(k) for k in config.parameters(images, None)} == config.parameters(images, None):
            return out
    except (OSError, ValueError):
        pass
    segment_folder(images, out, config)
    return out


def tiny_segmenter() -> SegmentConfig:
    return configure("mask2former", checkpoint=None, preset="tiny", categories_file=None, threshold=0.5,
                     mask_threshold=0.95, batch_size=8)


@dataclass(frozen=True)
class DemoTraining:
    run_dir: Path
    stages: tuple[Path, ...]  #: the model checkpoint of each stage
    seconds: float
    trained: dict  #: EvalReport.to_json() of the last stage on the held-out split
    untrained: dict  #: the same for the plan's starting model


def run_demo_training(data_dir: Path, *, plan: Path = DEMO_PLAN, workers: int = 2, split: str = "val",
                      progress: Callable[[dict], None] | None = None) -> DemoTraining:
    from models.checkpoint import load_model
    from training.evaluate import evaluate
    from training.launch import train
    from training.plan import load_plan
    from training.train_loop import start_model

    datasets = data_dir / "datasets"
    result = train(plan, workers=workers, storage=data_dir / "runs", data_root=datasets, progress=progress)
    reports = {}
    for name, model in (("trained", load_model(result.stages[-1])), ("untrained", start_model(load_plan(plan)))):
        reports[name] = evaluate(model, datasets, split=split).to_json()
        (result.run_dir / f"eval-{split}-{name}.json").write_text(json.dumps(reports[name], indent=2) + "\n")
    return DemoTraining(result.run_dir, result.stages, result.seconds, reports["trained"], reports["untrained"])
