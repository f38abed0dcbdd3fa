"""Stage plans: YAML in ``training/recipes/``, parsed once into dataclasses, checked before training.

A plan names the model to start from, a seed and the stages in order. Each stage lists its
datasets with sampling ratios (and optionally which of a dataset's tasks to use), its length in
steps or samples, the global batch, the learning-rate schedule (linear warm-up, then cosine;
``lr.parts`` gives a part its own peak on the same curve),
which parts of the model train, the text length, and where its weights start: ``previous``
(stage k-1's result; the first stage starts from the plan's model) or a checkpoint folder.
An unknown key, a wrong type or an impossible value is a ``PlanError`` naming its path, e.g.
``plan.stages[1].lr.warmpu: unknown key``; dataset folders are checked when the loader opens them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from models.config import ConfigError, parse_strict
from models.grounded_vlm import PARTS


class PlanError(ValueError):
    """A plan that cannot run; the message starts with the key path (or the file)."""


@dataclass(frozen=True)
class DatasetUse:
    ratio: float  #: relative share of the stage's samples (or batches, in per_batch mode)
    path: str | None = None  #: dataset folder; default: <data_root>/<name>
    tasks: tuple[str, ...] = ()  #: only these tasks of the dataset (empty: all)
    split: str = "train"


@dataclass(frozen=True)
class Schedule:
    max: float  #: peak learning rate
    min: float = 0.0  #: cosine floor
    warmup: int = 0  #: steps of linear warm-up from ``start`` to ``max``
    start: float = 0.0
    #: a part's own peak rate; it follows the same curve scaled by (its peak / max), start and min too
    parts: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    name: str
    datasets: dict[str, DatasetUse]
    global_batch: int
    lr: Schedule
    steps: int | None = None
    samples: int | None = None  #: instead of steps: ceil(samples / global_batch) steps
    mode: Literal["exact", "per_batch"] = "exact"
    trainable: tuple[str, ...] = ("connector", "adapter")
    adapter: str | dict[str, str] | None = None  #: the adapter that trains; per dataset for Dual LoRA
    weight_decay: float = 0.05
    max_text_tokens: int | None = None  #: default: the model's
    init: str = "previous"  #: "previous" or a model checkpoint folder
    note: str = ""  #: e.g. "after the paper's intent; no ratios were published"

    @property
    def num_steps(self) -> int:
        return self.steps if self.steps is not None else math.ceil(self.samples / self.global_batch)


@dataclass(frozen=True)
class ModelSource:
    preset: str | None = None  #: e.g. "tiny"
    options: dict[str, Any] = field(default_factory=dict)  #: arguments of the preset (connector=..., ...)
    checkpoint: str | None = None  #: or a model checkpoint folder


@dataclass(frozen=True)
class Plan:
    name: str
    model: ModelSource
    stages: tuple[Stage, ...]
    seed: int = 0
    data_root: str = "data/datasets"
    checkpoint_every: int = 100  #: steps between training checkpoints
    log_every: int = 10
    looks_every: int = 0  #: global steps between ``looks`` probes on the val split (0: never; also at stage ends)
    looks_samples: int = 32  #: probes per task of each ``looks``

    def dataset_path(self, name: str, use: DatasetUse, data_root: Path | None = None) -> Path:
        """``<root>/<name>``, or ``use.path``: absolute as is, relative under the root (``--data`` or data_root)."""
        return Path(data_root or self.data_root) / (use.path or name)

    @property
    def total_steps(self) -> int:
        return sum(s.num_steps for s in self.stages)


def load_plan(path: Path) -> Plan:
    path = Path(path)
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except OSError as e:
        raise PlanError(f"{path}: cannot be read ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise PlanError(f"{path}: not valid YAML ({e})") from None
    try:
        return parse_plan(data)
    except PlanError as e:
        raise PlanError(f"{path}: {e}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, but two equal keys in one mapping are an error (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):  # noqa: ANN001, ANN201
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_plan(data: Any) -> Plan:
    try:
        plan = parse_strict(Plan, data, "plan")
    except ConfigError as e:
        raise PlanError(str(e)) from None
    _check(plan)
    return plan


def _check(plan: Plan) -> None:
    if (plan.model.preset is None) == (plan.model.checkpoint is None):
        raise PlanError("plan.model: give exactly one of preset or checkpoint")
    if not plan.stages:
        raise PlanError("plan.stages: at least one stage")
    for key in ("checkpoint_every", "log_every", "looks_samples"):
        if getattr(plan, key) < 1:
            raise PlanError(f"plan.{key}: must be positive, got {getattr(plan, key)}")
    if plan.looks_every < 0:
        raise PlanError(f"plan.looks_every: must be 0 (never) or positive, got {plan.looks_every}")
    if len({s.name for s in plan.stages}) != len(plan.stages):
        raise PlanError("plan.stages: stage names must be distinct")
    for i, stage in enumerate(plan.stages):
        where = f"plan.stages[{i}]"
        if (stage.steps is None) == (stage.samples is None):
            raise PlanError(f"{where}: give exactly one of steps or samples")
        if stage.global_batch < 1 or stage.num_steps < 1:
            raise PlanError(f"{where}: steps and global_batch must be positive")
        if not stage.datasets:
            raise PlanError(f"{where}.datasets: at least one dataset")
        for name, use in stage.datasets.items():
            if not use.ratio > 0:
                raise PlanError(f"{where}.datasets.{name}.ratio: must be positive, got {use.ratio}")
        unknown = sorted(set(stage.trainable) - set(PARTS))
        if unknown:
            raise PlanError(f"{where}.trainable: unknown parts {unknown}; parts are {', '.join(PARTS)}")
        if isinstance(stage.adapter, dict):
            if stage.mode != "per_batch":
                raise PlanError(f"{where}.adapter: one adapter per dataset needs mode per_batch (CoLLaVO's Dual "
                                "QLoRA trains one adapter per batch, so a batch holds one data type)")
            missing = sorted(set(stage.datasets) - set(stage.adapter))
            if missing:
                raise PlanError(f"{where}.adapter: no adapter named for datasets {missing}")
            extra = sorted(set(stage.adapter) - set(stage.datasets))
            if extra:
                raise PlanError(f"{where}.adapter: datasets {extra} are not in the stage")
        lr = stage.lr
        if not (0 <= lr.min <= lr.max and 0 <= lr.start <= lr.max and 0 <= lr.warmup <= stage.num_steps):
            raise PlanError(f"{where}.lr: need 0 <= min <= max, 0 <= start <= max and 0 <= warmup <= steps")
        _check_part_rates(stage, f"{where}.lr")


def _check_part_rates(stage: Stage, where: str) -> None:
    """A part's rate scales the stage's curve, so it needs a positive base peak and a part that trains."""
    for part, rate in stage.lr.parts.items():
        if part not in PARTS:
            raise PlanError(f"{where}.parts.{part}: unknown part; parts are {', '.join(PARTS)}")
        if not rate > 0:
            raise PlanError(f"{where}.parts.{part}: must be positive, got {rate}")
        if part not in stage.trainable:
            raise PlanError(f"{where}.parts.{part}: {part} is not in the stage's trainable "
                            f"({', '.join(stage.trainable) or 'none'}), so this rate would never train it")
    if stage.lr.parts and not stage.lr.max > 0:
        raise PlanError(f"{where}.parts: part rates scale the stage's curve, so max must be positive")
