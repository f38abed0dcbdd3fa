"""The driver side: a Ray Train ``TorchTrainer`` for a whole stage plan.

``train(plan_file, ...)`` checks the plan and its datasets on the driver first (so a wrong path
fails in one line before any worker starts), then runs one TorchTrainer with

- ``ScalingConfig(num_workers, use_gpu, resources_per_worker={"CPU": c})``: gloo on CPU, nccl on
  GPU (one per worker); on a machine with no more CPUs than workers each worker takes 0.5 CPU,
  so a second worker fits two cores and Ray still has room for its own tasks;
- ``RunConfig(name=run, storage_path=storage)``: re-running the same run name resumes from the
  last checkpoint Ray recorded there;
- ``FailureConfig(max_failures)``: a failed worker group restarts from that checkpoint;
- ``CheckpointConfig(num_to_keep=2)``.

Outputs under ``<storage>/<run>/``: Ray's checkpoints, ``stage-<k>/`` model checkpoints,
``metrics.jsonl`` and ``progress.json`` (which ``progress`` polls for a progress bar).
``ray_address`` joins an existing cluster (storage must then be visible to every node); otherwise
a running local Ray is reused or one is started (no dashboard) and stopped after.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from datasets_builders.ray_session import ray_session
from training.mixture.loader import MixtureLoader
from training.plan import Plan, PlanError, load_plan
from training.plan_check import check_plan, missing_lines


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    stages: tuple[Path, ...]  #: the plain model checkpoint of each stage
    metrics: dict  #: the last reported metrics
    seconds: float


def train(plan_file: Path, *, workers: int = 2, cpus_per_worker: float | None = None, ray_address: str | None = None,
          storage: Path = Path("data/runs"), run: str | None = None, data_root: Path | None = None,
          strategy: str = "ddp", loader_workers: int = 0, max_failures: int = 3,
          fail_at: tuple[int, int] | None = None,
          progress: Callable[[dict], None] | None = None) -> TrainResult:
    plan = load_plan(plan_file)
    for stage in plan.stages:
        if stage.global_batch % workers:
            raise PlanError(f"{plan_file}: stage {stage.name}'s global batch {stage.global_batch} does not divide "
                            f"over {workers} workers")
    if gaps := missing_lines(check_plan(plan, data_root)):
        raise PlanError(f"{plan_file}: datasets the plan reads cannot serve (crayonflow plan check lists all):\n"
                        + "\n".join(gaps))
    MixtureLoader(plan, data_root=data_root)  # the schedules build
    if strategy not in ("ddp", "fsdp"):
        raise PlanError(f"unknown strategy {strategy!r}; choose ddp or fsdp")
    run = run or plan.name
    storage = Path(storage).resolve()
    run_dir = storage / run
    started = time.perf_counter()
    with ray_session(ray_address) as cluster:
        config = _config(plan, run_dir, data_root, strategy, loader_workers, fail_at, cluster, workers,
                         cpus_per_worker)
        with _watch(run_dir / "progress.json", progress):
            result = _trainer(config, workers, run, storage, max_failures).fit()
    if result.error is not None:
        raise result.error
    stages = tuple(run_dir / f"stage-{k + 1}" for k in range(len(plan.stages)))
    return TrainResult(run_dir, stages, dict(result.metrics or {}), time.perf_counter() - started)


def _config(plan: Plan, run_dir: Path, data_root: Path | None, strategy: str, loader_workers: int,
            fail_at: tuple[int, int] | None, cluster: dict, workers: int, cpus_per_worker: float | None) -> dict:
    import dataclasses

    gpus = int(cluster.get("GPU", 0))
    cpus = cluster.get("CPU", 1)
    if strategy == "fsdp" and gpus < workers:
        raise PlanError(f"FSDP needs one GPU per worker ({workers}; the cluster has {gpus}): Ray Train refuses it "
                        "on CPU. Use --strategy ddp")
    per_worker = cpus_per_worker if cpus_per_worker is not None else (0.5 if cpus <= workers else 1.0)
    return {"plan": dataclasses.asdict(_with_absolute_paths(plan)), "run_dir": str(run_dir),
            "data_root": str(Path(data_root).resolve()) if data_root else None, "strategy": strategy,
            "loader_workers": loader_workers, "fail_at": list(fail_at) if fail_at else None,
            "threads": max(1, int(per_worker)), "use_gpu": gpus >= workers, "cpus": per_worker}


def _with_absolute_paths(plan: Plan) -> Plan:
    """The plan's checkpoint folders (the model's, its ``*_checkpoint`` options, stage inits) resolved
    against the driver's working folder: Ray workers may run in another."""
    from dataclasses import replace

    def absolute(path: str | None) -> str | None:
        return None if path is None else str(Path(path).resolve())

    options = {k: absolute(v) if k.endswith("checkpoint") and isinstance(v, str) else v
               for k, v in plan.model.options.items()}
    model = replace(plan.model, checkpoint=absolute(plan.model.checkpoint), options=options)
    stages = tuple(s if s.init == "previous" else replace(s, init=absolute(s.init)) for s in plan.stages)
    return replace(plan, model=model, stages=stages)


def _trainer(config: dict, workers: int, run: str, storage: Path, max_failures: int):  # noqa: ANN202
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from training.train_loop import train_loop_per_worker

    return TorchTrainer(
        train_loop_per_worker, train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=config["use_gpu"],
                                     resources_per_worker={"CPU": config["cpus"]}),
        run_config=RunConfig(name=run, storage_path=str(storage), failure_config=FailureConfig(max_failures=max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)))


@contextmanager
def _watch(path: Path, progress: Callable[[dict], None] | None) -> Iterator[None]:
    """Poll the run's progress.json (written by rank 0) in a thread and hand each new state to ``progress``."""
    if progress is None:
        yield
        return
    stop = threading.Event()

    def poll() -> None:
        seen = None
        while not stop.wait(0.5):
            try:
                text = path.read_text()
            except OSError:
                continue
            if text != seen:
                seen = text
                try:
                    progress(json.loads(text))
                except ValueError:
                    continue

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
