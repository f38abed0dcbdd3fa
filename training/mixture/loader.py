"""MixtureLoader: the plan's global batches, this rank's slice, and the samples read from the store.

Global batch (stage s, step b) is built from the schedule (how many per dataset), the orders
(which rows: each dataset's draw counter continues across stages where the same data is used)
and a seeded shuffle of the B positions (so a rank's slice mixes datasets as the batch does).
``fetch`` reads one item through the shard index (checksums verified), decodes the JSON, the
image (pixel cap and bomb guard of the builders) and the crayon map; a sample that fails is
replaced by the next row of the same dataset and the replacement is counted; 16 consecutive
failures stop the run with an error naming the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from datasets_builders.formats.schema import Sample
from datasets_builders.sources.images import decode_bytes
from datasets_builders.store import ShardDataset
from training.mixture.order import DatasetOrder
from training.mixture.schedule import BatchSchedule
from training.mixture.sharding import rank_slice
from training.plan import Plan, PlanError

MAX_CONSECUTIVE_FAILURES = 16


class LoaderError(RuntimeError):
    """A dataset keeps failing to decode: the run stops rather than train on a shifted mixture."""


@dataclass(frozen=True)
class Item:
    stage: int
    step: int
    position: int  #: place in the global batch
    dataset: str
    row: int  #: storage row in that dataset
    draw: int  #: the dataset's draw counter (across stages)
    epoch: int  #: the dataset epoch this draw belongs to


@dataclass(frozen=True)
class Fetched:
    item: Item
    sample: Sample
    image: PILImage.Image | None
    crayon: np.ndarray | None  #: (H, W, 2) semantic, numbering
    replaced: int = 0  #: failed rows skipped before this one


@dataclass(frozen=True)
class StageMixture:
    names: tuple[str, ...]
    orders: tuple[DatasetOrder, ...]
    schedule: BatchSchedule
    offsets: np.ndarray  #: (K,) draws each dataset made in earlier stages
    roots: tuple[Path, ...]


class MixtureLoader:
    def __init__(self, plan: Plan, *, data_root: Path | None = None, rank: int = 0, world: int = 1) -> None:
        self.plan, self.rank, self.world = plan, rank, world
        self._datasets: dict[Path, ShardDataset] = {}
        drawn: dict[str, int] = {}  # identity -> draws so far, carried from stage to stage
        stages = []
        for s, stage in enumerate(plan.stages):
            rank_slice(stage.global_batch, world, rank)  # fails early if the world does not divide the batch
            names, orders, roots = [], [], []
            for name, use in stage.datasets.items():
                root = plan.dataset_path(name, use, data_root)
                order = self._order(root, name, use, where=f"plan.stages[{s}].datasets.{name}")
                names.append(name), orders.append(order), roots.append(root)
            schedule = BatchSchedule([u.ratio for u in stage.datasets.values()], stage.global_batch, stage.mode)
            offsets = np.array([drawn.get(o.identity, 0) for o in orders], np.int64)
            for order, total in zip(orders, offsets + schedule.drawn(stage.num_steps)):
                drawn[order.identity] = int(total)
            stages.append(StageMixture(tuple(names), tuple(orders), schedule, offsets, tuple(roots)))
        self.stages = tuple(stages)

    def _order(self, root: Path, name: str, use, where: str) -> DatasetOrder:
        if not (root / "manifest.json").is_file():
            raise PlanError(f"{where}: {root} is not a committed dataset (no manifest.json); build it first")
        dataset = self._dataset(root)
        split = np.asarray(dataset.index["split"].to_numpy(zero_copy_only=False) == use.split)
        tasks = dataset.index["task"].to_numpy(zero_copy_only=False)
        keep = split & (np.isin(tasks, list(use.tasks)) if use.tasks else True)
        rows = np.flatnonzero(keep)
        if len(rows) == 0:
            raise PlanError(f"{where}: {root} has no {use.split!r} samples"
                            f"{' of tasks ' + ', '.join(use.tasks) if use.tasks else ''}")
        identity = f"{name}|{dataset.manifest.fingerprint}|{use.split}|{','.join(use.tasks)}"
        return DatasetOrder(rows, self.plan.seed, identity)

    def _dataset(self, root: Path) -> ShardDataset:
        if root not in self._datasets:
            self._datasets[root] = ShardDataset(root)
        return self._datasets[root]

    # ---- which samples ---------------------------------------------------------------------
    def items(self, stage: int, step: int) -> list[Item]:
        """Global batch (stage, step), in batch order."""
        mix = self.stages[stage]
        counts, before = mix.schedule.counts(step), mix.offsets + mix.schedule.drawn(step)
        slots = [(k, int(before[k]) + n) for k in range(len(mix.names)) for n in range(int(counts[k]))]
        shuffle = np.random.default_rng([self.plan.seed, stage, step, 0x6D6978]).permutation(len(slots))
        out = []
        for position, slot in enumerate(shuffle):
            k, draw = slots[slot]
            order = mix.orders[k]
            out.append(Item(stage, step, position, mix.names[k], order.row(draw), draw, order.epoch(draw)))
        return out

    def local_items(self, stage: int, step: int) -> list[Item]:
        """This rank's contiguous slice of global batch (stage, step)."""
        return self.items(stage, step)[rank_slice(self.plan.stages[stage].global_batch, self.world, self.rank)]

    def realised(self, stage: int, steps: int) -> dict[str, int]:
        """Samples per dataset in the stage's first ``steps`` batches."""
        mix = self.stages[stage]
        return dict(zip(mix.names, (int(v) for v in mix.schedule.drawn(steps))))

    def epochs(self, stage: int, steps: int) -> dict[str, float]:
        """Dataset epochs completed after the stage's first ``steps`` batches (draws / size, across stages)."""
        mix = self.stages[stage]
        total = mix.offsets + mix.schedule.drawn(steps)
        return {name: round(int(t) / len(o), 3) for name, t, o in zip(mix.names, total, mix.orders)}

    def key(self, item: Item) -> str:
        """``<dataset>/<sample key>`` of an item without reading it: what ``seen-rank-*.jsonl`` records."""
        mix = self.stages[item.stage]
        return f"{item.dataset}/{self._dataset(mix.roots[mix.names.index(item.dataset)]).key(item.row)}"

    # ---- reading ---------------------------------------------------------------------------
    def fetch(self, item: Item) -> Fetched:
        mix = self.stages[item.stage]
        k = mix.names.index(item.dataset)
        dataset, order = self._dataset(mix.roots[k]), mix.orders[k]
        row, errors = item.row, []
        while len(errors) < MAX_CONSECUTIVE_FAILURES:
            try:
                sample, image, crayon = decode_row(dataset, row)
                return Fetched(item, sample, image, crayon, replaced=len(errors))
            except (OSError, ValueError, KeyError) as e:  # corrupt member, bad JSON, undecodable image
                errors.append(f"row {row}: {e}")
                row = order.next_row(row)
        raise LoaderError(f"{mix.roots[k]}: {MAX_CONSECUTIVE_FAILURES} samples in a row failed to decode "
                          f"(dataset {item.dataset}); first: {errors[0]}")


def decode_row(dataset: ShardDataset, row: int) -> tuple[Sample, PILImage.Image | None, np.ndarray | None]:
    """One stored row as training reads it: the sample, its picture as RGB, its crayon map (semantic, numbering)."""
    raw = dataset.read(row, check=True)
    sample = Sample.from_members(raw["__key__"], raw)
    where = f"{dataset.root} sample {sample.key}"
    image = crayon = None
    if sample.image is not None:
        image = _rgb(decode_bytes(sample.image.data, where))
    if "crayon.png" in sample.extras:  # R = semantic, G = numbering (docs/sample-schema.md)
        crayon = np.asarray(_rgb(decode_bytes(sample.extras["crayon.png"], f"{where} crayon.png")))[..., :2]
    return sample, image, crayon


def _rgb(picture: PILImage.Image) -> PILImage.Image:
    return picture if picture.mode == "RGB" else picture.convert("RGB")
