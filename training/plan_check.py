"""``crayonflow plan check``: for each dataset a plan reads, is it built, and with what it needs?

Why: a plan like minigptv2.yaml reads 22 entries from 15 folders; a missing or unsuitable one
used to surface only when a Ray worker's loader opened it, minutes into a run. The check reads
each entry's committed manifest and index (never the shards): built or not, its builder and
version, and how many samples it has of the entry's split and tasks; for what is missing, the
``crayonflow build`` command that makes it. ``train`` runs it before any worker starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datasets_builders.registry import DERIVED, SOURCES
from datasets_builders.store import ManifestError, load_manifest
from datasets_builders.store.layout import SAMPLES_INDEX
from training.plan import Plan

#: folders whose builder has another name (MiniGPT-v2's dataset names); the rest are named after theirs
BUILDER_OF = {"vqav2": "vqa", "refcoco-plus": "refcoco", "refcocog": "refcoco", "multitask-conversation": "multiround",
              "laion": "image-text", "cc3m": "image-text", "sbu": "image-text"}


@dataclass(frozen=True)
class EntryStatus:
    stage: str
    entry: str
    folder: Path
    split: str
    tasks: tuple[str, ...]
    samples: int  #: of the split and tasks; 0 when not built
    built: str | None  #: "<builder> v<version>" of the committed dataset, None when there is none
    problem: str | None  #: why it cannot serve (None: it can)

    @property
    def ok(self) -> bool:
        return self.problem is None

    def build_command(self, raw_root: str = "data/raw") -> str:
        """The command that makes this entry's folder (the builder named after it, or BUILDER_OF's)."""
        builder = BUILDER_OF.get(self.folder.name, self.folder.name)
        if builder in SOURCES:
            return f"crayonflow build {builder} --input {raw_root}/{self.folder.name} --out {self.folder}"
        if builder in DERIVED:
            return f"crayonflow build {builder} --input <built datasets> --out {self.folder}  (docs/builders.md)"
        return f"no builder makes {self.folder.name!r} (see the plan's header)"


def check_plan(plan: Plan, data_root: Path | None = None) -> list[EntryStatus]:
    """One status per (stage, entry), in the plan's order; each folder's index is read once."""
    counted: dict[Path, tuple[str | None, str | None, pa.Table | None]] = {}
    statuses = []
    for stage in plan.stages:
        for name, use in stage.datasets.items():
            folder = plan.dataset_path(name, use, data_root)
            if folder not in counted:
                counted[folder] = _read(folder)
            built, problem, index = counted[folder]
            samples = _count(index, use.split, use.tasks) if index is not None else 0
            if problem is None and samples == 0:
                wanted = f"tasks {', '.join(use.tasks)}" if use.tasks else "samples"
                problem = f"built, but no {use.split} {wanted}"
            statuses.append(EntryStatus(stage.name, name, folder, use.split, use.tasks, samples, built, problem))
    return statuses


def missing(statuses: Iterable[EntryStatus]) -> list[EntryStatus]:
    return [s for s in statuses if not s.ok]


def _read(folder: Path) -> tuple[str | None, str | None, pa.Table | None]:
    try:
        manifest = load_manifest(folder)
    except ManifestError as e:
        return None, f"unreadable manifest ({e})", None
    if manifest is None:
        return None, "not built", None
    built = f"{manifest.spec.builder} v{manifest.spec.builder_version}"
    try:
        index = pq.read_table(folder / SAMPLES_INDEX, columns=["task", "split"])
    except (OSError, ValueError) as e:
        return built, f"unreadable {SAMPLES_INDEX} ({e})", None
    return built, None, index


def _count(index: pa.Table, split: str, tasks: tuple[str, ...]) -> int:
    keep = pc.equal(index["split"], split)
    if tasks:
        keep = pc.and_(keep, pc.is_in(index["task"], value_set=pa.array(list(tasks))))
    return int(pc.sum(keep.cast("int64")).as_py() or 0)


def missing_lines(statuses: Iterable[EntryStatus], raw_root: str = "data/raw") -> list[str]:
    """One line per entry that cannot serve, with the command that makes its folder (once per folder)."""
    lines, commands = [], {}
    for s in missing(statuses):
        tasks = f" tasks {', '.join(s.tasks)}" if s.tasks else ""
        lines.append(f"  {s.stage} / {s.entry} ({s.split}{tasks}): {s.folder}: {s.problem}")
        if s.built is None:
            commands.setdefault(s.folder, s.build_command(raw_root))
    return lines + [f"  make it: {c}" for c in commands.values()]
