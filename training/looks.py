"""``looks``: does the model use its picture? A one-minute, teacher-forced probe.

Why: mean loss falls whether or not the model reads its image, and generated answers (``eval``)
are slow and coarse. Here each held-out sample's answer-token loss (teacher forced, the stored
turns tokenised as the Collator does for training) is measured three times:

- ``own``: with its own picture;
- ``deranged``: with the picture (and crayon map) of another sample of the same task, by
  ``controls.derangement``, so no sample sees its own picture or another copy of the same bytes;
- ``zero``: with all-zero pixel values (and an all-unknown crayon map): no picture at all.

A model that uses its picture has ``own`` below ``deranged``; ``gap`` = deranged - own, with a
95 % bootstrap interval of the paired per-sample difference, says how sure. Per task and per
question family (``controls.families``). The subset is fixed: the first ``per_task`` rows of the
split per task, in storage order. Samples without a picture are skipped; a sample whose donor
shows the same picture (one picture holds most of the task) has no control and is left out of
``deranged`` and ``gap`` (``paired`` counts the rest).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.table import Column, Table

from datasets_builders.store import ShardDataset
from models.grounded_vlm import inference
from models.inputs import InputSpec
from training.collate import Collator
from training.controls import derangement, families, gap_interval, verdict
from training.evaluate import EvalError, image_hash, find_datasets
from training.mixture.loader import Fetched, Item, decode_row


@dataclass(frozen=True)
class Probe:
    """One held-out sample as the Collator takes it, and the picture it shows."""

    fetched: Fetched
    picture: int | None  #: the image member's xxh3: equal numbers, the same picture

    @property
    def task(self) -> str:
        return self.fetched.sample.task


@dataclass(frozen=True)
class LooksRow:
    task: str
    family: str | None  #: e.g. "question_type=color"; None: the whole task
    n: int
    own: float  #: mean answer-token loss with the sample's own picture (nats)
    zero: float  #: ... with all-zero pixels
    paired: int  #: samples whose donor shows another picture
    deranged: float | None  #: ... with the donor's picture, over the paired samples
    gap: float | None  #: mean(deranged - own) over the paired samples
    interval: tuple[float, float] | None  #: its 95 % bootstrap interval

    @property
    def verdict(self) -> str:
        return verdict(self.interval)


@dataclass(frozen=True)
class LooksReport:
    split: str
    datasets: tuple[str, ...]
    rows: tuple[LooksRow, ...]

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(r.task for r in self.rows if r.family is None)

    def row(self, task: str, family: str | None = None) -> LooksRow:
        return next(r for r in self.rows if r.task == task and r.family == family)

    def summary(self) -> dict[str, dict[str, float | None]]:
        """Per task: own, deranged, zero (what the trainer logs)."""
        return {r.task: {"own": r.own, "deranged": r.deranged, "zero": r.zero} for r in self.rows if r.family is None}

    def to_json(self) -> dict[str, Any]:
        return {"split": self.split, "datasets": list(self.datasets),
                "rows": [asdict(r) | {"verdict": r.verdict} for r in self.rows]}

    def table(self) -> Table:
        table = Table("task", "family", Column("n", justify="right"), Column("own", justify="right"),
                      Column("deranged", justify="right"), Column("zero", justify="right"),
                      Column("gap", justify="right"), Column("95% interval", justify="right"), "uses its picture?",
                      title=f"{self.split} split: {', '.join(self.datasets)} (answer-token loss in nats; deranged: "
                            "another sample's picture; zero: no picture)")
        for r in self.rows:
            gap = "-" if r.gap is None else f"{r.gap:+.3f}"
            interval = "-" if r.interval is None else f"[{r.interval[0]:+.3f}, {r.interval[1]:+.3f}]"
            table.add_row(r.task if r.family is None else "", r.family or "(all)", str(r.n), f"{r.own:.3f}",
                          "-" if r.deranged is None else f"{r.deranged:.3f}", f"{r.zero:.3f}", gap, interval,
                          r.verdict if r.family is None or r.interval is not None else "-")
        return table


def looks(model, datasets: Mapping[str, Path] | Path, split: str = "val", per_task: int = 64,  # noqa: ANN001
          seed: int = 0, batch_size: int = 64) -> LooksReport:
    """The three losses of every probe (``per_task`` per task with a picture) and their report.
    Raises EvalError when the folder holds no datasets or the split no pictured samples."""
    datasets = dict(datasets) if isinstance(datasets, Mapping) else find_datasets(datasets)
    pictured(datasets, split)
    probed = list(probes(datasets, split, per_task))
    donors = derangement([(p.task, p.picture) for p in probed], seed)
    donors = {i: d for i, d in donors.items() if probed[d].picture != probed[i].picture}
    own, deranged, zero = losses(model, probed, donors, batch_size)
    groups: dict[tuple[str, str | None], list[int]] = {}
    for i, p in enumerate(probed):
        groups.setdefault((p.task, None), []).append(i)
        for name, value in families(p.task, p.fetched.sample.meta).items():
            groups.setdefault((p.task, f"{name}={value}"), []).append(i)
    rows = [_row(task, family, members, own, deranged, zero, donors, seed)
            for (task, family), members in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1] or ""))]
    return LooksReport(split, tuple(datasets), tuple(rows))


def pictured(datasets: Mapping[str, Path], split: str) -> dict[str, int]:
    """Samples with a picture per task in the split, from the indexes alone (no image read); an
    EvalError when there are none, so a command can say so before it loads a model."""
    counts: Counter[str] = Counter()
    for path in datasets.values():
        with ShardDataset(path) as ds:
            tasks, splits = ds.index["task"].to_pylist(), ds.index["split"].to_pylist()
            counts.update(t for row, (t, s) in enumerate(zip(tasks, splits))
                          if s == split and image_hash(ds, row) is not None)
    if not counts:
        raise EvalError(f"no {split!r} samples with a picture in {', '.join(map(str, datasets.values()))}")
    return dict(counts)


def probes(datasets: Mapping[str, Path], split: str, per_task: int) -> Iterator[Probe]:
    """The first ``per_task`` pictured samples of each task in the split, dataset by dataset in storage
    order (the count runs across datasets), decoded as the training loader decodes them."""
    taken: Counter[str] = Counter()
    for name, path in datasets.items():
        with ShardDataset(path) as ds:
            tasks, splits = ds.index["task"].to_pylist(), ds.index["split"].to_pylist()
            for row, (task, s) in enumerate(zip(tasks, splits)):
                picture = image_hash(ds, row) if s == split and taken[task] < per_task else None
                if picture is None:  # another split, the task is full, or no picture (text-only)
                    continue
                sample, image, crayon = decode_row(ds, row)
                taken[task] += 1
                yield Probe(Fetched(Item(0, 0, row, name, row, 0, 0), sample, image, crayon), picture)


def losses(model, probed: Sequence[Probe], donors: Mapping[int, int],  # noqa: ANN001 - a GroundedVLM
           batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per probe: mean answer-token loss with its own picture, its donor's (NaN without a donor) and none."""
    spec = InputSpec.of(model)
    collator = Collator(spec, seed=0, vary_templates=False)
    device = next(model.parameters()).device
    own, deranged, zero = (np.full(len(probed), np.nan) for _ in range(3))
    with inference(model):
        for start in range(0, len(probed), batch_size):
            rows = list(range(start, min(start + batch_size, len(probed))))
            tensors = {k: v.to(device) for k, v in collator([probed[i].fetched for i in rows]).tensors.items()}
            own[rows] = _answer_loss(model, tensors)
            blank = {"pixel_values": torch.zeros_like(tensors["pixel_values"])}
            if "crayon" in tensors:
                blank["crayon"] = torch.zeros_like(tensors["crayon"])
            zero[rows] = _answer_loss(model, tensors | blank)
            swapped = [i for i in rows if i in donors]
            if swapped:
                lent = [probed[donors[i]].fetched if i in donors else probed[i].fetched for i in rows]
                pictures = {"pixel_values": spec.pixels([f.image for f in lent]).to(device)}
                crayons = spec.crayons([f.crayon for f in lent])
                if crayons is not None:
                    pictures["crayon"] = crayons.to(device)
                deranged[swapped] = _answer_loss(model, tensors | pictures)[[rows.index(i) for i in swapped]]
    return own, deranged, zero


def _answer_loss(model, tensors: Mapping[str, torch.Tensor]) -> np.ndarray:  # noqa: ANN001
    out = model(**tensors)
    return (out.token_loss.sum(1) / out.supervised.sum(1).clamp(min=1)).float().cpu().numpy()


def _row(task: str, family: str | None, members: Sequence[int], own: np.ndarray, deranged: np.ndarray,
         zero: np.ndarray, donors: Mapping[int, int], seed: int) -> LooksRow:
    paired = [i for i in members if i in donors]
    if not paired:
        return LooksRow(task, family, len(members), float(own[members].mean()), float(zero[members].mean()), 0,
                        None, None, None)
    control, base = deranged[paired], own[paired]
    return LooksRow(task, family, len(members), float(own[members].mean()), float(zero[members].mean()),
                    len(paired), float(control.mean()), float((control - base).mean()),
                    gap_interval(control, base, seed))
