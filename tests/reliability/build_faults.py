"""Build faults: real builder processes SIGKILLed at random points, and builds on a full disk.

Every trial runs a real builder on a small generated sample world in a child process (the build
loop of ``datasets_builders.build``, a partitioned build on two threads, or the ``crayonflow
build`` command), injects the fault, and holds the result against a reference build of the same
job made without faults. The promises (docs/architecture.md, "Crash safety"):

- only complete files under final names: every shard, index or manifest in the folder is
  byte-identical to the reference's file of that name, and ``manifest.json`` appears only once
  the build has committed;
- ``verify_dataset`` finds nothing but "missing" in an unfinished build;
- running the build again keeps the complete shards (same inode and mtime: not rewritten) and
  ends byte-identical to the reference (the manifest up to its timestamp and git revision);
- "lost" counts the reference's input records (source ids in its samples and rejects reports)
  found in neither report after the re-run.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from datasets_builders.build import build_dataset
from datasets_builders.partitioned import PARTS, build_part, build_partitioned, merge_parts, plan_build
from datasets_builders.sample_world.world import write_sample_world
from datasets_builders.store import verify_dataset
from datasets_builders.store.layout import JOURNAL, LOCK, MANIFEST, REJECTS_INDEX, SAMPLES_INDEX
from tests.builds import NO_OUTPUT
from tests.reliability.process_faults import kill_when, python_child, spawn
from tests.reliability.trials import Outcome, Scenario

IMAGES = 40  #: scenes in the sample world: every builder makes 40-600 samples in well under a second
CHILD = """
import json, sys
from datasets_builders.store import DatasetWriteError
source, inputs, out, kwargs = json.loads(sys.argv[1])
if "records_per_part" in kwargs:
    from datasets_builders.partitioned import build_partitioned as build
else:
    from datasets_builders.build import build_dataset as build
try:
    build(source, inputs, out, **kwargs)
except DatasetWriteError as e:
    print(e)
    sys.exit(3)
"""
WRITE_FAILED = 3  #: CHILD's exit status on a DatasetWriteError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One build of a builder's sample-world folder into a dataset folder named after the builder."""

    source: str
    max_samples: int = 5000  #: small values give many shards, so kills land between and inside them
    records_per_part: int | None = None  #: a partitioned build: parts on two threads, then the merge
    cli: bool = False  #: through the ``crayonflow build`` command (it has no shard-size option)

    def kwargs(self) -> dict[str, int]:
        if self.records_per_part is None:
            return {"max_samples": self.max_samples}
        return {"max_samples": self.max_samples, "records_per_part": self.records_per_part, "workers": 2}

    def build_here(self, world: Path, out: Path) -> None:
        """The same build in this process: the reference, and the re-run after a fault."""
        build = build_partitioned if self.records_per_part is not None else build_dataset
        build(self.source, world / self.source, out / self.source, **self.kwargs())

    def start(self, world: Path, out: Path, *, fsize_limit: int | None = None) -> subprocess.Popen[str]:
        if self.cli:
            command = Path(sys.executable).with_name("crayonflow")
            return spawn([str(command), "build", self.source, "--input", str(world / self.source),
                          "--out", str(out / self.source)], fsize_limit=fsize_limit)
        job = [self.source, str(world / self.source), str(out / self.source), self.kwargs()]
        return python_child(CHILD, json.dumps(job), fsize_limit=fsize_limit)

    def __str__(self) -> str:
        how = " (partitioned)" if self.records_per_part else " (crayonflow build)" if self.cli else ""
        return self.source + how


SIGKILL_JOBS = (Job("vqa", 8), Job("refcoco", 10), Job("flickr30k-entities", 30), Job("coco-captions", 10),
                Job("unnatural-instructions", 2), Job("coco-panoptic", 2), Job("grit", 12))
PARTITIONED_JOBS = (Job("refcoco", 10, records_per_part=30), Job("grit", 12, records_per_part=12))
FULL_DISK_JOBS = (Job("vqa", 8), Job("refcoco", cli=True), Job("coco-panoptic", 2),
                  Job("unnatural-instructions", cli=True), Job("grit", 12))


# -- the reference builds ------------------------------------------------------------------------


@dataclass
class Reference:
    """A job built without faults: what every trial of that job must end equal to."""

    files: dict[str, bytes]  #: the committed dataset's files (not the hidden lock)
    records: frozenset[tuple[str, str]]  #: every input record, as (source dataset, id)
    seconds_per_shard: float
    parts: list[dict[str, bytes]] = field(default_factory=list)  #: partitioned: each committed part
    merge_seconds: float = 0.0

    @property
    def shards(self) -> int:
        return sum(name.endswith(".tar") for name in self.files)

    @property
    def part_shards(self) -> int:
        return sum(name.endswith(".tar") for part in self.parts for name in part)


def sample_world(workdir: Path, seed: int) -> Path:
    """The sample world, with bad lines among Unnatural Instructions' so that a build has rejects
    to journal and replay (grit's and image-text's worlds plant a dead link each already)."""
    world = workdir / "world"
    write_sample_world(world, images=IMAGES, seed=seed)
    jsonl = world / "unnatural-instructions" / "core_data.jsonl"
    lines = jsonl.read_text(encoding="utf-8").splitlines()
    bad = [json.dumps(NO_OUTPUT), "{not json"]
    mixed = [line for i, good in enumerate(lines) for line in ([good, bad[i // 5 % 2]] if i % 5 == 4 else [good])]
    jsonl.write_text("\n".join(mixed) + "\n", encoding="utf-8")
    return world


def build_reference(job: Job, world: Path, out: Path) -> Reference:
    root = out / job.source
    started = time.monotonic()
    if job.records_per_part is None:
        job.build_here(world, out)
        reference = Reference(visible_files(root), records_of(root), 0.0)
    else:  # the steps of build_partitioned one by one, to keep the parts and time the merge
        plan = plan_build(job.source, world / job.source, root, max_samples=job.max_samples,
                          records_per_part=job.records_per_part)
        parts = [build_part(plan, i) for i in range(len(plan.parts))]
        part_files = [visible_files(plan.part_dir(i)) for i in range(len(plan.parts))]
        merging = time.monotonic()
        merge_parts(plan, parts)
        reference = Reference(visible_files(root), records_of(root), 0.0, part_files, time.monotonic() - merging)
    reference.seconds_per_shard = (time.monotonic() - started) / max(1, reference.shards + reference.part_shards)
    return reference


def references(jobs: tuple[Job, ...], world: Path, out: Path) -> dict[Job, Reference]:
    return {job: build_reference(job, world, out / f"{i:02d}") for i, job in enumerate(jobs)}


# -- what a dataset folder holds, and the checks -----------------------------------------------------


def visible_files(root: Path) -> dict[str, bytes]:
    """Every file under a final name (hidden names are temp files, the journal, the lock, parts)."""
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.is_file() and not p.name.startswith(".")}


def manifest_content(data: bytes) -> dict:
    """The manifest without what differs between two builds of one spec: when it was committed,
    and the checkout's git revision then (lineage of the run, not content of the dataset)."""
    doc = json.loads(data)
    doc.pop("created")
    doc["code"].pop("revision")
    return doc


def records_of(root: Path) -> frozenset[tuple[str, str]]:
    """The input records a committed dataset accounts for: source ids of its samples and rejects."""
    ids: set[tuple[str, str]] = set()
    for index in (SAMPLES_INDEX, REJECTS_INDEX):
        table = pq.read_table(root / index, columns=["source_dataset", "source_id"])
        ids.update(zip(table["source_dataset"].to_pylist(), table["source_id"].to_pylist()))
    return frozenset(ids)


def identities(paths: list[Path]) -> dict[Path, tuple[int, int]]:
    """(inode, mtime) per file: unchanged means the re-run kept the file and did not rewrite it."""
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in paths}


def shards_in(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*.tar") if p.is_file()) if root.is_dir() else []


def check_folder(root: Path, expected: dict[str, bytes]) -> list[str]:
    """The promises about one dataset folder at any moment: each file under a final name is the
    reference's; with a manifest the dataset is complete and verifies, without one verify finds
    only that the build is unfinished and checks every shard it left."""
    if not root.is_dir():
        return []
    problems, files = [], visible_files(root)
    for name, data in files.items():
        want = expected.get(name)
        if want is None:
            problems.append(f"{root.name}/{name} is not a file of the reference build")
        elif (manifest_content(data) != manifest_content(want)) if name == MANIFEST else data != want:
            problems.append(f"{root.name}/{name} under its final name differs from the reference build's "
                            f"({len(data)} vs {len(want)} bytes)")
    report = verify_dataset(root)
    if MANIFEST in files:
        if missing := sorted(set(expected) - set(files)):
            problems.append(f"{root.name} committed without {', '.join(missing)}")
        if not report.ok:
            problems.append(f"verify of the committed {root.name}: {report.problems[0]}")
    else:
        if other := [p for p in report.problems if not p.message.startswith("missing")]:
            problems.append(f"verify of the unfinished {root.name}: {other[0]}")
        if report.shards != sum(name.endswith(".tar") for name in files):
            problems.append(f"verify checked {report.shards} of the {root.name} shards left")
    return problems


def state(root: Path, reference: Reference) -> str:
    """Where the fault struck, for the trial's record: shards (and parts) there, commit files."""
    text = f"{len(shards_in(root))}/{reference.shards} shards"
    if reference.parts:
        text += f", parts {len(shards_in_parts(root))}/{reference.part_shards} shards"
    return text + "".join(f", {name}" for name in (SAMPLES_INDEX, MANIFEST) if (root / name).exists())


def shards_in_parts(root: Path) -> list[Path]:
    return sorted(p for p in (root / PARTS).glob("*/*.tar") if p.is_file())


def check_all(root: Path, reference: Reference) -> list[str]:
    """check_folder on the dataset folder and, for a partitioned build, on every part folder."""
    problems = check_folder(root, reference.files)
    for i, part in enumerate(reference.parts):
        problems += check_folder(root / PARTS / f"{i:05d}", part)
    return problems


def rerun(job: Job, world: Path, out: Path, reference: Reference, kept: dict[Path, tuple[int, int]],
          *, committed_before: bool) -> tuple[list[str], int]:
    """Run the build again (no fault) and hold it against the reference: (problems, records lost)."""
    root = out / job.source
    try:
        job.build_here(world, out)
    except Exception as e:  # noqa: BLE001 - any failure of the re-run breaks the promise
        return [f"the re-run failed: {type(e).__name__}: {e}"], len(reference.records)
    problems = check_folder(root, reference.files)
    if not (root / MANIFEST).exists():
        return [*problems, "the re-run did not commit"], len(reference.records)
    now = {identity for identity in identities(shards_in(root)).values()}
    if rewritten := sorted(p.name for p, identity in kept.items() if identity not in now):
        problems.append(f"the re-run rewrote or dropped complete shards {rewritten[:3]} instead of keeping them")
    allowed = {LOCK, JOURNAL} if committed_before else {LOCK}  # killed between commit and clean-up
    if leftovers := sorted(p.name for p in root.iterdir() if p.name.startswith(".") and p.name not in allowed):
        problems.append(f"left behind after the re-run: {leftovers}")
    return problems, len(reference.records - records_of(root))


def verdict(outcome: Outcome, where: str, problems: list[str], lost: int) -> None:
    log.info("%s: %s", where, "; ".join(problems) or "survived")
    outcome.trial(not problems, f"{where}: {'; '.join(problems[:3])}" if problems or lost else "", lost)


# -- SIGKILL -------------------------------------------------------------------------------------------


def kill_point(root: Path, reference: Reference, rng: random.Random,
               trial: int) -> tuple[Callable[[], bool], float, str]:
    """A random moment of the build, as (condition, then a delay, its description). Whole builds:
    once k of the reference's n shards exist (k = n: in the commit), a fraction of a shard's time
    later. Partitioned builds alternate: inside the parts (k of their shards) or inside the merge."""
    delay = rng.uniform(0, reference.seconds_per_shard)
    if reference.parts and trial % 2:
        delay = rng.uniform(0, reference.merge_seconds)
        return (lambda: (root / JOURNAL).is_dir()), delay, f"merge +{delay * 1000:.0f} ms"
    if reference.parts:
        k = rng.randint(0, reference.part_shards)
        return (lambda: len(shards_in_parts(root)) >= k and (root / PARTS).is_dir()), delay, \
            f"parts at {k} shards +{delay * 1000:.0f} ms"
    k = rng.randint(0, reference.shards)
    if k == 0:
        return (lambda: (root / JOURNAL).is_dir()), delay, f"journal started +{delay * 1000:.0f} ms"
    return (lambda: len(shards_in(root)) >= k), delay, f"{k} shards +{delay * 1000:.0f} ms"


def sigkill_trial(outcome: Outcome, job: Job, reference: Reference, world: Path, out: Path,
                  rng: random.Random, trial: int) -> None:
    root = out / job.source
    for _attempt in range(3):  # a kill point after the child's exit is drawn again
        shutil.rmtree(out, ignore_errors=True)
        ready, delay, where = kill_point(root, reference, rng, trial)
        child = job.start(world, out)
        if killed := kill_when(child, ready, delay):
            break
        if child.returncode != 0:
            verdict(outcome, f"{job}", [f"the build failed by itself ({child.returncode})"], 0)
            return
    where = f"{job}, {'killed' if killed else 'finished before the kill'} at {where}: {state(root, reference)}"
    problems = check_all(root, reference)
    kept = identities(shards_in(root) + shards_in_parts(root))
    more, lost = rerun(job, world, out, reference, kept, committed_before=(root / MANIFEST).exists())
    verdict(outcome, where, problems + more, lost)


def run_sigkill(jobs: tuple[Job, ...], fault: str) -> Callable[[int, int, Path], Outcome]:
    def run(trials: int, seed: int, workdir: Path) -> Outcome:
        world = sample_world(workdir, seed)
        refs = references(jobs, world, workdir / "reference")
        rng, outcome = random.Random(seed), Outcome(fault)
        for trial in range(trials):
            job = jobs[trial % len(jobs)]
            sigkill_trial(outcome, job, refs[job], world, workdir / "trial" / f"{trial:03d}", rng, trial)
            shutil.rmtree(workdir / "trial", ignore_errors=True)
        return outcome

    return run


run_build_sigkill = run_sigkill(SIGKILL_JOBS, f"SIGKILL of a build at a random point ({len(SIGKILL_JOBS)} builders)")
run_partitioned_sigkill = run_sigkill(PARTITIONED_JOBS, "SIGKILL of a partitioned build, in its parts or its merge")


# -- full disk -----------------------------------------------------------------------------------------

TINY = (16, 200)  #: bytes: the disk fills while the journal starts (spec.json) or the first shard opens
TINY_SHARE = 0.2  #: of the trials (at least one); the others fill it somewhere among the shards


def file_limit(reference: Reference, trial: int, trials: int, rng: random.Random) -> int:
    """The RLIMIT_FSIZE of one trial: tiny for the first fifth of the trials, then spread evenly
    from the smallest shard to the largest, so a prefix of complete shards is written before one
    fails. (Shards are the largest files, so a per-file limit never strikes the commit.)"""
    tiny = max(1, round(trials * TINY_SHARE))
    if trial < tiny:
        return int(TINY[0] * (TINY[1] / TINY[0]) ** ((trial + rng.random()) / tiny))
    shards = [len(data) for name, data in reference.files.items() if name.endswith(".tar")]
    others = [len(data) for name, data in reference.files.items() if not name.endswith(".tar")]
    low = min(shards) if min(shards) < max(shards) else max(others)
    return int(low + (max(shards) - low) * (trial - tiny + rng.random()) / max(1, trials - tiny))


def full_disk_trial(outcome: Outcome, job: Job, reference: Reference, world: Path, out: Path, limit: int) -> None:
    root = out / job.source
    child = job.start(world, out, fsize_limit=limit)
    output = child.communicate(timeout=300)[0].strip()
    where = f"{job}, files limited to {limit} bytes: {state(root, reference)}"
    problems = []
    if child.returncode != (1 if job.cli else WRITE_FAILED):
        problems.append(f"exit status {child.returncode}, not a write error: {output[-300:]!r}")
    elif f"dataset {job.source!r}" not in output or "File too large" not in output:
        problems.append(f"the error does not name the dataset and the cause: {output[-300:]!r}")
    elif job.cli and len(output.splitlines()) != 1:
        problems.append(f"the command printed {len(output.splitlines())} lines, not one clear error: {output[-300:]!r}")
    if (root / MANIFEST).exists():
        problems.append("committed under a limit below its largest file")
    problems += check_folder(root, reference.files)
    if temps := sorted(str(p.relative_to(root)) for p in root.rglob(".*.tmp")) if root.is_dir() else []:
        problems.append(f"half-written files left: {temps}")
    more, lost = rerun(job, world, out, reference, identities(shards_in(root)), committed_before=False)
    verdict(outcome, where, problems + more, lost)


def run_full_disk(trials: int, seed: int, workdir: Path) -> Outcome:
    world = sample_world(workdir, seed)
    refs = references(FULL_DISK_JOBS, world, workdir / "reference")
    rng = random.Random(seed)
    outcome = Outcome("Full disk (RLIMIT_FSIZE per file) during a build, then a re-run with space")
    for trial in range(trials):
        job = FULL_DISK_JOBS[trial % len(FULL_DISK_JOBS)]
        limit = file_limit(refs[job], trial, trials, rng)
        full_disk_trial(outcome, job, refs[job], world, workdir / "trial" / f"{trial:03d}", limit)
        shutil.rmtree(workdir / "trial", ignore_errors=True)
    return outcome


SCENARIOS = [
    Scenario("build-sigkill", run_build_sigkill, full_trials=42, ci_trials=5),
    Scenario("build-sigkill-partitioned", run_partitioned_sigkill, full_trials=16, ci_trials=2),
    Scenario("build-full-disk", run_full_disk, full_trials=10, ci_trials=2),
]
