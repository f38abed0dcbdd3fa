"""The loop every Ray Train worker runs, top to bottom: no hidden trainer.

1. Who am I (rank, world), what device, which plan.
2. Start: the last reported checkpoint if Ray hands one over (a retry, or a re-run of the same
   run name), else the plan's model at stage 0 step 0. A handed-over checkpoint that fails its
   checksums (truncated, corrupted, a file gone) is skipped for the newest earlier one of the run
   that verifies, with a warning.
3. For each remaining stage: its start weights (``previous`` = the model as it is), its
   trainable parts, DDP (or FSDP) around the model, AdamW, then the stage's batches from the
   mixture loader, each one forward, backward, step.
4. Every ``log_every`` steps all ranks report metrics (loss per task, summed over ranks; the
   realised mixture; the learning rate); every ``checkpoint_every`` steps and at each stage's end
   rank 0 also writes a training checkpoint that Ray keeps. At each stage's end rank 0 writes the
   plain model checkpoint ``<run>/stage-<k>`` too, before that stage's last training checkpoint: a
   worker lost in between is retried from an earlier one and writes it again, never skips it.
   Every rank appends the keys of each step's samples (and its pid) to
   ``<run>/seen-rank-<r>.jsonl``, so what any step trained on can be looked up. With the plan's
   ``looks_every``, rank 0 also probes whether the model uses its picture (``training.looks`` on
   the data root's val split) every that many global steps and at each stage's end, into metrics.

Dual LoRA (a stage whose ``adapter`` names one adapter per dataset, in per_batch mode): both
adapters stay active and trainable under DDP; after backward the gradients of the adapters not
named for this batch's dataset are dropped, so AdamW leaves them untouched.

Testing hook: ``fail_at`` = (global step, rank) makes that worker exit hard once (a marker file
in the run folder keeps the retry from failing again), the way a lost node would. It waits 3 s
first: Ray Train's controller collects reports every 2 s, and a worker that dies sooner after a
checkpoint loses it (the run then restarts from the one before, which is correct but not the
case under test).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from models.build import build_model
from models.checkpoint import load_model, save_model
from models.inputs import InputSpec
from models.presets import PRESETS
from training.checkpoint import (load_training_model, read_optimizer_state, restorable_checkpoint,
                                 save_training_checkpoint)
from training.collate import Collator
from training.evaluate import EvalError
from training.looks import looks
from training.mixture.loader import MixtureLoader
from training.mixture.state import LoaderState
from training.mixture.stream import stage_batches
from training.optim import (learning_rate, load_optimizer_state, make_optimizer, part_learning_rates,
                            set_learning_rate)
from training.plan import Plan, parse_plan

FAIL_DELAY_S = 3.0  #: a test failure waits this long, so it tests resuming, not a report in flight

_log = logging.getLogger(__name__)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    # 1. who, where, what
    plan = parse_plan(config["plan"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(config.get("threads", 1))
    device = ray.train.torch.get_device()
    run_dir = Path(config["run_dir"])

    # 2. start or resume
    resumed = ray.train.get_checkpoint()
    optimizer_state = None
    if resumed is not None:
        with resumed.as_directory() as latest:
            folder, restored = restorable_checkpoint(Path(latest), _earlier_checkpoints(run_dir, Path(resumed.path)))
            if folder != Path(latest):
                _log.warning("rank %d: %s does not verify; resuming from %s (%s)", rank, resumed.path, folder,
                             restored.loader)
            state = restored.loader
            model = load_training_model(folder)
            optimizer_state = read_optimizer_state(folder)
    else:
        state, model = LoaderState(), start_model(plan)
    loader = MixtureLoader(plan, data_root=Path(config["data_root"]) if config.get("data_root") else None,
                           rank=rank, world=world)
    collator = Collator(InputSpec.of(model), plan.seed)

    # 3. the stages
    while state.stage < len(plan.stages):
        s, stage = state.stage, plan.stages[state.stage]
        if state.step == 0 and stage.init != "previous":
            model = load_model(Path(stage.init))
        model.set_trainable(stage.trainable)
        model.to(device).train()
        net = _wrap(model, config.get("strategy", "ddp"), world)
        optimizer = make_optimizer(model, stage.lr.max, stage.weight_decay, stage.lr.parts)
        if optimizer_state is not None and state.step > 0:  # resuming inside this stage
            load_optimizer_state(optimizer, optimizer_state)
        optimizer_state = None
        window = _Window()
        for step, batch in stage_batches(loader, collator, s, state.step, workers=config.get("loader_workers", 0)):
            rate = learning_rate(stage.lr, step, stage.num_steps)
            set_learning_rate(optimizer, rate)
            out = net(**{k: v.to(device) for k, v in batch.tensors.items()})
            out.loss.backward()
            if isinstance(stage.adapter, dict):
                _keep_only_adapter(model, stage.adapter[batch.keys[0].split("/", 1)[0]])
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            window.add(batch, out)
            _record_seen(run_dir, rank, s, step, batch.keys)
            _maybe_fail(config, run_dir, plan, s, step, rank)
            state, done = state.advance(stage.num_steps), step + 1

            # 4. report, checkpoint (the stage's model first: a retry from its last checkpoint starts the next stage)
            if done == stage.num_steps and rank == 0:
                save_model(model, run_dir / f"stage-{s + 1}", extra={
                    "stage": stage.name, "plan": plan.name, "realised": loader.realised(s, stage.num_steps),
                    "epochs": loader.epochs(s, stage.num_steps)})
            checkpoint_now = done % plan.checkpoint_every == 0 or done == stage.num_steps
            looks_now = plan.looks_every > 0 and (_global_step(plan, s, done) % plan.looks_every == 0
                                                  or done == stage.num_steps)
            if checkpoint_now or looks_now or done % plan.log_every == 0:
                metrics = window.metrics(world) | {"stage": s, "stage_name": stage.name, "step": done,
                                                   "global_step": _global_step(plan, s, done), "lr": rate,
                                                   "realised": loader.realised(s, done),
                                                   "epochs": loader.epochs(s, done)}
                if stage.lr.parts:
                    metrics["lr_parts"] = part_learning_rates(optimizer)
                if looks_now and rank == 0:
                    metrics |= _looks_metrics(model, plan, config, world)
                _report(metrics, model, optimizer, state, stage.name, checkpoint_now and rank == 0, run_dir, rank)
                window = _Window()


def start_model(plan: Plan):  # noqa: ANN201 - a GroundedVLM
    source = plan.model
    if source.checkpoint is not None:
        return load_model(Path(source.checkpoint))
    return build_model(PRESETS[source.preset](**source.options))


class _Window:
    """Per-task loss sums since the last report (summed over ranks when reported)."""

    def __init__(self) -> None:
        self.loss: dict[str, list[float]] = {}
        self.replaced, self.started = 0, time.perf_counter()
        self.samples = 0

    def add(self, batch, out) -> None:  # noqa: ANN001
        per_row = out.token_loss.detach().sum(1).cpu().tolist()
        counts = out.supervised.sum(1).cpu().tolist()
        for task, loss, n in zip(batch.tasks, per_row, counts):
            entry = self.loss.setdefault(task, [0.0, 0.0])
            entry[0] += loss
            entry[1] += n
        self.replaced += batch.replaced
        self.samples += len(batch.tasks)

    def metrics(self, world: int) -> dict[str, Any]:
        parts = [(self.loss, self.replaced, self.samples)]
        if world > 1:
            parts = [None] * world
            dist.all_gather_object(parts, (self.loss, self.replaced, self.samples))
        totals: dict[str, list[float]] = {}
        for losses, _, _ in parts:
            for task, (loss, n) in losses.items():
                entry = totals.setdefault(task, [0.0, 0.0])
                entry[0] += loss
                entry[1] += n
        tokens = sum(n for _, n in totals.values())
        seconds = time.perf_counter() - self.started
        return {"loss": sum(v for v, _ in totals.values()) / max(tokens, 1),
                "loss_per_task": {t: v / max(n, 1) for t, (v, n) in sorted(totals.items())},
                "replaced": sum(p[1] for p in parts), "samples_per_s": sum(p[2] for p in parts) / max(seconds, 1e-9)}


def _report(metrics: dict, model, optimizer, state: LoaderState, stage_name: str, checkpoint: bool,  # noqa: ANN001
            run_dir: Path, rank: int) -> None:
    import ray.train

    if rank == 0:
        _append_progress(run_dir, metrics)
    if not checkpoint:
        ray.train.report(_flat(metrics))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_training_checkpoint(Path(tmp) / "checkpoint", model, optimizer, state, stage_name,
                                          {"metrics": metrics})
        ray.train.report(_flat(metrics), checkpoint=ray.train.Checkpoint.from_directory(str(folder)))


def _looks_metrics(model, plan: Plan, config: dict, world: int) -> dict:  # noqa: ANN001
    """Rank 0's ``looks`` probe of the val split of every dataset under the data root:
    ``{"looks": {task: {"own", "deranged", "zero"}}}``, or nothing when no dataset has val pictures.
    Not under FSDP with several ranks: rank 0 alone holds only a shard of the weights."""
    if config.get("strategy", "ddp") == "fsdp" and world > 1:
        _log.warning("looks skipped: FSDP shards the model across ranks")
        return {}
    try:
        report = looks(model, Path(config.get("data_root") or plan.data_root), split="val",
                       per_task=plan.looks_samples, seed=plan.seed)
    except EvalError as e:
        _log.warning("looks skipped: %s", e)
        return {}
    return {"looks": report.summary()}


def _flat(metrics: dict, prefix: str = "") -> dict:
    """Ray keeps scalars best: nested dicts become ``loss_per_task/refer`` (``looks/refer/own``) style keys."""
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _append_progress(run_dir: Path, metrics: dict) -> None:
    """metrics.jsonl for the record, progress.json for the driver's progress bar."""
    run_dir.mkdir(parents=True, exist_ok=True)
    line = json.dumps(metrics, sort_keys=True)
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write(line + "\n")
    tmp = run_dir / ".progress.json.tmp"
    tmp.write_text(line)
    tmp.replace(run_dir / "progress.json")


def _record_seen(run_dir: Path, rank: int, stage: int, step: int, keys: list[str]) -> None:
    """What each step trained on, per rank: ``seen-rank-<r>.jsonl`` answers "what did step N see"
    (and which process trained it: a retry after a lost worker shows as a new pid)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / f"seen-rank-{rank}.jsonl").open("a") as f:
        f.write(json.dumps({"stage": stage, "step": step, "keys": keys, "pid": os.getpid()}) + "\n")


def _earlier_checkpoints(run_dir: Path, latest: Path) -> list[Path]:
    """The run's other checkpoint folders that Ray wrote before ``latest``, newest first (Ray names
    them ``checkpoint_<timestamp>``, so name order is age order)."""
    return sorted((p for p in run_dir.glob("checkpoint_*") if p.is_dir() and p.name < latest.name), reverse=True)


def _wrap(model, strategy: str, world: int):  # noqa: ANN001, ANN202
    import ray.train.torch

    if world == 1:
        return model
    kwargs = {"find_unused_parameters": True} if strategy == "ddp" else {"use_orig_params": True}
    return ray.train.torch.prepare_model(model, move_to_device=False, parallel_strategy=strategy,
                                         parallel_strategy_kwargs=kwargs)


def _keep_only_adapter(model, name: str) -> None:  # noqa: ANN001
    for param_name, param in model.part_parameters("adapter"):
        if f".{name}." not in param_name:
            param.grad = None


def _global_step(plan: Plan, stage: int, step: int) -> int:
    return sum(s.num_steps for s in plan.stages[:stage]) + step


def _maybe_fail(config: dict, run_dir: Path, plan: Plan, stage: int, step: int, rank: int) -> None:
    fail_at = config.get("fail_at")
    if not fail_at or rank != fail_at[1] or _global_step(plan, stage, step + 1) != fail_at[0]:
        return
    marker = run_dir / f".failed-at-{fail_at[0]}"
    if marker.exists():
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text("this worker was made to fail here once\n")
    time.sleep(FAIL_DELAY_S)  # let Ray's controller collect the reports already made (it polls every 2 s)
    os._exit(1)
