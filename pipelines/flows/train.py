"""``train_three_stage``: the Ray Train job of a stage plan as a flow, with its lineage and curves.

The flow process is the Ray driver (``training.launch.train`` calls ``TorchTrainer.fit``): local
Ray by default, ``ray_address`` to join a cluster. While it runs, a progress artifact follows the
global step; after it, each stage's checkpoint is materialized as an asset that depends on the
dataset versions the stage read, the run's artifacts show target against realised mixture per
stage, the last metrics per stage, the loss curve (and the ``looks`` curve when the plan probes
it), and each consumed dataset's lineage card gains this run under "Consumed by".
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, get_run_logger, runtime, task
from prefect.artifacts import (
    Artifact,
    create_image_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.assets import add_asset_metadata, materialize
from prefect.cache_policies import NO_CACHE

from datasets_builders.store import load_manifest
from pipelines import lineage
from pipelines.demo import DEMO_PLAN, DEMO_ROOT
from training.launch import TrainResult, train
from training.plan import load_plan


@flow(name="train_three_stage", log_prints=True)
def train_three_stage(plan: str = str(DEMO_PLAN), data_root: str = str(DEMO_ROOT / "datasets"),
                      storage: str = str(DEMO_ROOT / "runs"), run: str | None = None, workers: int = 2,
                      cpus_per_worker: float | None = None, ray_address: str | None = None,
                      max_failures: int = 3) -> dict:
    """Train ``plan`` on ``workers`` Ray workers; a re-run of the same ``run`` resumes it."""
    result = run_training(plan, data_root, storage, run, workers, cpus_per_worker, ray_address, max_failures)
    stages = load_plan(Path(plan)).stages
    consumed = consumed_datasets(Path(plan), Path(data_root))
    for k, folder in enumerate(result.stages):
        publish_checkpoint(folder, result.run_dir.name, k + 1,
                           [consumed[name] for name in stages[k].datasets if name in consumed])
    publish_training(Path(plan), result)
    record_consumers(consumed, result.run_dir.name)
    return {"run_dir": str(result.run_dir), "stages": [str(s) for s in result.stages], "seconds": result.seconds,
            "metrics": result.metrics}


@task(name="train", cache_policy=NO_CACHE)
def run_training(plan: str, data_root: str, storage: str, run: str | None, workers: int,
                 cpus_per_worker: float | None, ray_address: str | None, max_failures: int) -> TrainResult:
    """Not cached: the run itself resumes from its last checkpoint, which is the right kind of reuse here."""
    total = load_plan(Path(plan)).total_steps
    progress_id = create_progress_artifact(0.0, key=lineage.artifact_key("training-progress"),
                                           description=f"global step of {Path(plan).name} ({total} steps)")
    last = [-1.0]

    def progress(state: dict) -> None:
        done = round(100.0 * state.get("global_step", 0) / max(total, 1), 1)
        if done > last[0]:
            last[0] = done
            update_progress_artifact(progress_id, done)

    result = train(Path(plan), workers=workers, cpus_per_worker=cpus_per_worker, ray_address=ray_address,
                   storage=Path(storage), run=run, data_root=Path(data_root), max_failures=max_failures,
                   progress=progress)
    update_progress_artifact(progress_id, 100.0)
    get_run_logger().info("trained %d stages in %.0f s: %s", len(result.stages), result.seconds, result.run_dir)
    return result


def consumed_datasets(plan: Path, data_root: Path) -> dict[str, tuple[str, Path]]:
    """Dataset name -> (asset key of the version on disk, folder), for every dataset the plan reads."""
    p = load_plan(plan)
    out = {}
    for stage in p.stages:
        for name, use in stage.datasets.items():
            folder = p.dataset_path(name, use, data_root)
            manifest = load_manifest(folder)
            if manifest is not None:
                out[name] = (lineage.dataset_key(manifest.spec.name, manifest.fingerprint), folder)
    return out


def publish_checkpoint(folder: Path, run: str, stage: int, inputs: list[tuple[str, Path]]) -> None:
    from models.checkpoint import checkpoint_digest

    key = lineage.checkpoint_key(run, stage, checkpoint_digest(folder))
    _materialize_checkpoint.with_options(assets=[key], asset_deps=[k for k, _ in inputs],
                                         name=f"checkpoint-stage-{stage}")(folder, key)


@materialize("crayonflow://checkpoints/placeholder", cache_policy=NO_CACHE)
def _materialize_checkpoint(folder: Path, key: str) -> str:
    """The asset event of one stage checkpoint (the files are already written by rank 0)."""
    document = json.loads((Path(folder) / "model.json").read_text())
    add_asset_metadata(key, {"folder": str(folder), "stage": document.get("stage"),
                             "realised": document.get("realised"), "epochs": document.get("epochs")})
    return str(folder)


@task(name="training-artifacts", cache_policy=NO_CACHE)
def publish_training(plan: Path, result: TrainResult) -> None:
    p = load_plan(plan)
    run = result.run_dir.name
    metrics = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    stages = [(s.name, {n: u.ratio for n, u in s.datasets.items()}) for s in p.stages]
    create_table_artifact(lineage.mixture_rows(stages, lineage.seen_per_stage(result.run_dir)),
                          key=lineage.artifact_key("training-mixture", run),
                          description=f"{run}: target vs realised share of samples per dataset and stage "
                                      "(realised = the sample keys the workers recorded)")
    create_table_artifact(lineage.metrics_rows(metrics), key=lineage.artifact_key("training-metrics", run),
                          description=f"{run}: last report of each stage")
    starts, total = [], 0
    for stage in p.stages:
        starts.append(total)
        total += stage.num_steps
    png = lineage.loss_curve_png([(m["global_step"], m["loss"]) for m in metrics], stage_starts=starts)
    (result.run_dir / "loss.png").write_bytes(png)
    create_image_artifact(lineage.data_url(png), key=lineage.artifact_key("training-loss", run),
                          description=f"{run}: loss per reported step; dashed lines start stages")
    if any("looks" in m for m in metrics):
        looks_png = lineage.looks_curve_png(metrics, stage_starts=starts)
        (result.run_dir / "looks.png").write_bytes(looks_png)
        create_image_artifact(lineage.data_url(looks_png), key=lineage.artifact_key("training-looks", run),
                              description=f"{run}: held-out answer loss per task with its own picture (solid) and "
                                          "another sample's (dashed); a model that uses its picture keeps solid "
                                          "below dashed")


@task(name="record-consumers", cache_policy=NO_CACHE)
def record_consumers(consumed: dict[str, tuple[str, Path]], run: str) -> None:
    """Append this run to each consumed dataset's lineage card (a new version of the card's key)."""
    flow_run = runtime.flow_run.id
    for name, (asset, _) in consumed.items():
        key = lineage.artifact_key("lineage", name)
        card = Artifact.get(key)
        version = asset.rsplit("/", 1)[1]
        if card is None or not isinstance(card.data, str) or version not in card.data:
            continue  # the card is of another version (rebuilt since), or the dataset never ran as a flow
        line = f"training run `{run}` (flow run {flow_run})"
        create_markdown_artifact(lineage.add_consumer(card.data, line), key=key, description=card.description)

