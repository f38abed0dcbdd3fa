"""Training faults: a Ray Train worker SIGKILLed mid-step, and the latest checkpoint truncated,
bit-flipped or missing a file when the run resumes.

Every trial injects its fault into a real ``training.launch.train`` run (2 workers, Ray Train,
gloo on CPU) of a small two-stage plan over a generated sample world, and the run is held against
an uninterrupted reference run of the same plan. A few faults share one run, one after another:
a run costs ~45 s to start, a worker-group restart ~15 s. The promises (docs/training.md):

- the run finishes (``FailureConfig(max_failures)`` = the faults injected: no spare retries);
- after each fault it resumes from a checkpoint Ray recorded, never one it had not: for a kill,
  at or after the latest one recorded before the kill; for a damaged latest checkpoint, exactly
  at the previous one (``training.checkpoint.restorable_checkpoint``);
- the samples the final weights were trained on (each rank's ``seen-rank-<r>.jsonl``, a step
  re-run after a resume replacing the discarded one) are the reference's, step by step, and the
  weights of every stage's model equal the reference's bit for bit (CPU training is deterministic).

"lost" counts the reference's samples the faulted run's final trajectory never trained on; samples
trained twice are named in the trial's reason.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import random
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import psutil
import yaml
from safetensors.torch import load_file

from datasets_builders.build import build_dataset
from datasets_builders.ray_session import ray_session
from datasets_builders.sample_world.world import write_sample_world
from models.checkpoint import BASE, TRAINABLE
from training.launch import train
from tests.reliability.trials import Outcome, Scenario
from tests.training.test_train_ray import expected, write_plan

log = logging.getLogger(__name__)

DATASETS = ("refcoco", "vqa", "coco-captions", "unnatural-instructions")  #: what write_plan's stages read
STEPS = (40, 20)  #: steps per stage: long enough for a few faults per run
CHECKPOINT_EVERY = 5
RANKS = 2
FAULTS_PER_RUN = 5
SNAPSHOT = "checkpoint_manager_snapshot.json"  #: where Ray Train records the checkpoints it kept
STOP_SETTLE_S = 1.0  #: after SIGSTOP, how long the controller gets to record a report already in hand
WAIT_S = 240.0  #: longest wait for a run to get somewhere (a restart takes ~15 s on 2 cores)
CORRUPTIBLE = ("state.json", "optimizer.pt", "model/trainable.safetensors")
DAMAGE = ("truncate", "flip", "delete")


# -- the job: data, plan, reference ------------------------------------------------------------

def training_job(workdir: Path) -> Path:
    """The plan file of a small two-stage job over a 12-scene sample world built under ``workdir``."""
    data = workdir / "data"
    write_sample_world(data / "raw", images=12, seed=0)
    for name in DATASETS:
        build_dataset(name, data / "raw" / name, data / "datasets" / name)
    plan = write_plan(workdir, data / "datasets", checkpoint_every=CHECKPOINT_EVERY, log_every=CHECKPOINT_EVERY)
    doc = yaml.safe_load(plan.read_text())
    for stage, steps in zip(doc["stages"], STEPS):
        stage["steps"] = steps
    plan.write_text(yaml.safe_dump(doc))
    return plan


@dataclass(frozen=True)
class Reference:
    seen: dict[int, dict[int, list[str]]]  #: rank -> global step -> the keys it trained on
    weights: dict[str, dict[str, object]]  #: stage folder -> parameter -> tensor


def reference_run(plan: Path, storage: Path) -> Reference:
    """An uninterrupted run: what every faulted run must end up equal to. Its batches are checked
    against the plan's (the pure mixture order), so that a broken reference cannot pass for one."""
    result = train(plan, workers=RANKS, storage=storage, run="reference")
    seen = {rank: final_trajectory(read_seen(result.run_dir, rank)) for rank in range(RANKS)}
    planned = {global_step(s, t): keys for (s, t), keys in expected(plan).items()}
    if {g: seen[0].get(g, []) + seen[1].get(g, []) for g in planned} != planned:
        raise RuntimeError(f"{result.run_dir}: the uninterrupted reference run did not train on the planned batches")
    return Reference(seen, stage_weights(result.run_dir))


@cache
def shared_job() -> tuple[Path, Reference]:
    """The job's plan and its reference run, once per process, in a folder of their own: both
    scenarios of a session train on these very datasets (the sample order depends on the datasets'
    build fingerprints, which include their input paths, so a rebuild elsewhere would not do)."""
    home = Path(tempfile.mkdtemp(prefix="training-faults-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    plan = training_job(home)
    return plan, reference_run(plan, home / "runs")


# -- reading a run -----------------------------------------------------------------------------

def read_seen(run_dir: Path, rank: int) -> list[dict]:
    """Rank ``rank``'s step records in the order written (a torn last line, being written, is left out)."""
    path = run_dir / f"seen-rank-{rank}.jsonl"
    records = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return records
    for line in text.splitlines(keepends=True):
        if line.endswith("\n"):
            records.append(json.loads(line))
    return records


def global_step(stage: int, step: int) -> int:
    return sum(STEPS[:stage]) + step


def final_trajectory(records: list[dict]) -> dict[int, list[str]]:
    """Global step -> keys of the steps the final weights went through: a record of step g means
    the run (re)started there or went on, so every record of a step >= g before it was discarded."""
    kept: list[tuple[int, list[str]]] = []
    for record in records:
        g = global_step(record["stage"], record["step"])
        while kept and kept[-1][0] >= g:
            kept.pop()
        kept.append((g, record["keys"]))
    return dict(kept)


def stage_weights(run_dir: Path) -> dict[str, dict[str, object]]:
    weights = {}
    for k in range(len(STEPS)):
        folder = run_dir / f"stage-{k + 1}"
        weights[folder.name] = {f"{name}:{p}": t for name in (TRAINABLE, BASE) if (folder / name).is_file()
                                for p, t in load_file(folder / name).items()}
    return weights


def recorded_checkpoints(run_dir: Path) -> list[tuple[str, int]]:
    """(folder name, global step) of the checkpoints Ray Train has recorded and keeps, oldest first."""
    try:
        doc = json.loads((run_dir / SNAPSHOT).read_text())
    except (FileNotFoundError, ValueError):  # not written yet, or being written
        return []
    return [(r["checkpoint_dir_name"], int(r["metrics"]["global_step"])) for r in doc["checkpoint_results"]]


def compare(run_dir: Path, ref: Reference) -> tuple[list[str], int]:
    """(promises broken, samples lost) of a finished faulted run against the reference."""
    problems, lost, twice = [], 0, 0
    for rank in range(RANKS):
        got = final_trajectory(read_seen(run_dir, rank))
        for g, keys in ref.seen[rank].items():
            missing = Counter(keys) - Counter(got.get(g, []))
            extra = Counter(got.get(g, [])) - Counter(keys)
            lost += sum(missing.values())
            twice += sum(extra.values())
            if missing or extra:
                problems.append(f"rank {rank} step {g} trained on {got.get(g)} instead of {keys}")
        if unplanned := sorted(set(got) - set(ref.seen[rank])):
            problems.append(f"rank {rank} trained steps the plan does not have: {unplanned}")
    if twice:
        problems.append(f"{twice} samples trained twice or out of place")
    try:
        weights = stage_weights(run_dir)
    except OSError as e:
        return [*problems, f"a stage model is missing: {e}"], lost
    for stage, tensors in ref.weights.items():
        if tensors.keys() != weights[stage].keys():
            problems.append(f"{stage} holds other weights than the reference's")
        elif differ := [n for n, t in tensors.items() if not t.equal(weights[stage][n])]:
            problems.append(f"{stage}: {len(differ)} tensors differ from the reference, e.g. {differ[0]}")
    return problems[:5], lost


# -- a run with faults -------------------------------------------------------------------------

@dataclass
class Trial:
    problems: list[str] = field(default_factory=list)
    done: bool = False


class FaultedRun:
    """``train`` in this thread; ``inject`` (one call per fault, in a second thread) watches the
    run through its step records and Ray's checkpoint snapshot, strikes, and waits for the retry."""

    def __init__(self, plan: Path, storage: Path, faults: int, rng: random.Random) -> None:
        self.plan, self.storage, self.faults, self.rng = plan, storage, faults, rng
        self.run_dir = storage / "faulted"
        self.trials = [Trial() for _ in range(faults)]
        self.finished = threading.Event()
        self.replaced: set[int] = set()  #: pids of worker groups this harness brought down
        self.recorded_before: set[str] = set()  #: checkpoints Ray had recorded when it last struck
        self.resumed_at = [0]  #: the global step each attempt started at

    def run(self, inject: Callable[[FaultedRun, int, Trial], None]) -> str | None:
        """Train with the faults; the run's error, if it failed."""

        def injector() -> None:
            for i, trial in enumerate(self.trials):
                try:
                    inject(self, i, trial)
                except Exception as e:  # noqa: BLE001 - the trial failed; later ones cannot run
                    trial.problems.append(f"{type(e).__name__}: {e}")
                    trial.done = True
                    return
                trial.done = True

        thread = threading.Thread(target=injector, daemon=True)
        thread.start()
        error = None
        try:
            train(self.plan, workers=RANKS, storage=self.storage, run=self.run_dir.name, max_failures=self.faults)
        except Exception as e:  # noqa: BLE001 - what failed the run is the verdict
            error = f"{type(e).__name__}: {str(e)[:300]}"
        self.finished.set()
        thread.join(timeout=WAIT_S)
        return error

    def workers(self) -> dict[int, tuple[int, int]]:
        """rank -> (pid, global step of its latest record), for ranks whose latest record is from the
        current worker group."""
        now = {}
        for rank in range(RANKS):
            records = read_seen(self.run_dir, rank)
            if records and records[-1]["pid"] not in self.replaced:
                now[rank] = (records[-1]["pid"], global_step(records[-1]["stage"], records[-1]["step"]))
        return now

    def wait_for(self, what: str, ready: Callable[[], object]) -> object:
        deadline = time.monotonic() + WAIT_S
        while not (found := ready()):
            if self.finished.is_set():
                raise TimeoutError(f"the run ended before {what}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {WAIT_S:.0f} s")
            time.sleep(0.005)
        return found

    def group(self) -> dict[int, tuple[int, int]]:
        """Both ranks of the current worker group, once each has trained a step."""
        return self.wait_for("a running worker group", lambda: len(w := self.workers()) == RANKS and w)

    def fresh_checkpoints(self) -> list[tuple[str, int]]:
        """The checkpoints Ray recorded since the last fault."""
        return [c for c in recorded_checkpoints(self.run_dir) if c[0] not in self.recorded_before]

    def strike(self, pids: list[int]) -> int:
        """SIGKILL these real Ray worker processes (and see them gone); the global step the retry starts at."""
        group = self.group()
        processes = [psutil.Process(pid) for pid in pids]
        for process in processes:
            if not process.cmdline()[0].startswith("ray::"):
                raise RuntimeError(f"pid {process.pid} is not a Ray worker: {process.cmdline()}")
        self.replaced |= {pid for pid, _ in group.values()}
        self.recorded_before |= {name for name, _ in recorded_checkpoints(self.run_dir)}
        for process in processes:
            process.send_signal(signal.SIGKILL)
        if alive := psutil.wait_procs(processes, timeout=10)[1]:
            raise RuntimeError(f"pids {[p.pid for p in alive]} survived SIGKILL")
        retry = self.group()
        first = min(global_step(r["stage"], r["step"]) for rank, (pid, _) in retry.items()
                    for r in read_seen(self.run_dir, rank) if r["pid"] == pid)
        self.resumed_at.append(first)
        return first

    def target_step(self, i: int, span: float) -> int:
        """A random global step in the i-th of ``faults`` equal windows of the first ``span`` of the
        run, past where the current attempt started."""
        end = int(sum(STEPS) * span)
        lo, hi = end * i // self.faults, end * (i + 1) // self.faults - 1
        lo = max(lo, self.resumed_at[-1] + 1)
        return self.rng.randint(lo, max(lo, hi))


def checkpoint_steps() -> set[int]:
    """The global steps a checkpoint is written after (every CHECKPOINT_EVERY steps of a stage and at its end)."""
    steps, offset = set(), 0
    for n in STEPS:
        steps |= {offset + d for d in range(CHECKPOINT_EVERY, n + 1, CHECKPOINT_EVERY)} | {offset + n}
        offset += n
    return steps


def run_faults(plan: Path, ref: Reference, storage: Path, faults: int, rng: random.Random,
               inject: Callable[[FaultedRun, int, Trial], None], outcome: Outcome) -> None:
    """One faulted run; each of its faults becomes a trial of ``outcome``."""
    run = FaultedRun(plan, storage, faults, rng)
    error = run.run(inject)
    run_problems, lost = (compare(run.run_dir, ref) if error is None else ([f"the run failed: {error}"], 0))
    for i, trial in enumerate(run.trials):
        problems = trial.problems + ([] if trial.done else ["the fault was never injected"]) + run_problems
        outcome.trial(not problems, "; ".join(problems), lost=lost if i == faults - 1 else 0)
    log.info("%s: attempts started at steps %s", outcome.fault, run.resumed_at)


def scenario(fault: str, inject: Callable[[FaultedRun, int, Trial], None]) -> Callable[[int, int, Path], Outcome]:
    def run(trials: int, seed: int, workdir: Path) -> Outcome:
        outcome, rng = Outcome(fault), random.Random(seed)
        with quiet_ray():
            plan, ref = shared_job()
            for r, start in enumerate(range(0, trials, FAULTS_PER_RUN)):
                faults = min(FAULTS_PER_RUN, trials - start)
                run_faults(plan, ref, workdir / f"runs-{r}", faults, rng, inject, outcome)
        return outcome

    return run


@contextmanager
def quiet_ray() -> Iterator[None]:
    """The caller's Ray if one is running (a test session), else a private local one for the scenario."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    with ray_session():
        yield


# -- the faults --------------------------------------------------------------------------------

def kill_worker_mid_step(run: FaultedRun, i: int, trial: Trial) -> None:
    """SIGKILL one rank's process at a random point of a random step; the retry must resume from
    the latest checkpoint Ray had recorded (or a later one whose report was in flight)."""
    step, rank = run.target_step(i, span=0.9), run.rng.randrange(RANKS)
    pid = run.group()[rank][0]
    run.wait_for(f"rank {rank} past step {step}",
                 lambda: (w := run.workers().get(rank)) and w[0] == pid and w[1] >= step)
    time.sleep(run.rng.uniform(0, 0.15))  # somewhere inside the next step (or its checkpoint)
    latest = max((g for _, g in recorded_checkpoints(run.run_dir)), default=0)
    resumed = run.strike([pid])
    killed_in = 1 + max(global_step(r["stage"], r["step"]) for r in read_seen(run.run_dir, rank) if r["pid"] == pid)
    if not latest <= resumed <= killed_in:
        trial.problems.append(f"rank {rank} killed in step {killed_in} with Ray's latest checkpoint at step {latest}, "
                              f"but the retry started at step {resumed}")
    elif resumed not in checkpoint_steps() | {0}:
        trial.problems.append(f"the retry started at step {resumed}, where no checkpoint was written")


def damage(path: Path, kind: str, rng: random.Random) -> str:
    """Truncate, flip bytes in, or delete ``path``; what was done, for the trial's reason."""
    data = path.read_bytes()
    if kind == "truncate":
        size = rng.randrange(len(data))
        path.write_bytes(data[:size])
        return f"{path.name} truncated {len(data)} -> {size} bytes"
    if kind == "flip":
        flipped = bytearray(data)
        where = sorted(rng.sample(range(len(data)), k=min(3, len(data))))
        for offset in where:
            flipped[offset] ^= rng.randrange(1, 256)
        path.write_bytes(bytes(flipped))
        return f"{path.name} bytes {where} flipped"
    path.unlink()
    return f"{path.name} deleted"


def corrupt_latest_checkpoint(run: FaultedRun, i: int, trial: Trial) -> None:
    """Freeze both workers (so Ray records nothing more), damage a file of the latest checkpoint
    Ray recorded, SIGKILL them: Ray hands the damaged checkpoint to the retry, which must detect it
    and resume from the one recorded before it."""
    kind, name = DAMAGE[i % 3], CORRUPTIBLE[(i // 3 + i) % 3]  # the first three trials: every kind, every file
    step = run.target_step(i, span=0.6)
    run.wait_for(f"two checkpoints recorded, the latest past step {step}",
                 lambda: len(c := run.fresh_checkpoints()) >= 2 and c[-1][1] >= step)
    pids = [pid for pid, _ in run.group().values()]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    time.sleep(STOP_SETTLE_S)
    (latest, at), (_, previous) = recorded_checkpoints(run.run_dir)[-1], recorded_checkpoints(run.run_dir)[-2]
    what = damage(run.run_dir / latest / name, kind, run.rng)
    resumed = run.strike(pids)
    if resumed != previous:
        trial.problems.append(f"latest checkpoint (step {at}): {what}; the retry started at step {resumed}, "
                              f"not at the previous checkpoint's step {previous}")


SCENARIOS = [
    Scenario("train-worker-kill", scenario("Ray Train worker SIGKILLed mid-step (2 workers)", kill_worker_mid_step),
             full_trials=10, ci_trials=1),
    Scenario("checkpoint-corrupt", scenario("latest training checkpoint truncated / bit-flipped / a file deleted",
                                            corrupt_latest_checkpoint), full_trials=9, ci_trials=3),
]
