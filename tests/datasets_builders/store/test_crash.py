"""A build killed with SIGKILL at random moments: only complete shards, no manifest, exact resume."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datasets_builders.store import load_manifest, verify_dataset
from tests.builds import build_with_rejects, make_samples

REPO = Path(__file__).resolve().parents[3]
N_SAMPLES, MAX_SAMPLES, SIDE = 240, 8, 48
CHILD = (
    "import sys; from tests.builds import build_with_rejects, make_samples; "
    f"build_with_rejects(sys.argv[1], make_samples({N_SAMPLES}, side={SIDE}), max_samples={MAX_SAMPLES})"
)


def shards(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.glob("*.tar"))}


@pytest.mark.slow
def test_sigkill_mid_build_leaves_only_complete_shards_and_resumes_byte_identically(tmp_path):
    samples = make_samples(N_SAMPLES, side=SIDE)
    reference = tmp_path / "reference"
    build_with_rejects(reference, samples, max_samples=MAX_SAMPLES)
    expected = shards(reference)
    samples_in = {s.name: s.samples for s in load_manifest(reference).shards}
    rng = random.Random(1234)
    kill_points, crashed = [], 0
    for trial in range(6):
        root = tmp_path / f"trial{trial}"
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(root)], cwd=REPO)
        target = rng.randrange(0, len(expected))  # kill once this many shards exist, after a random pause
        deadline = time.monotonic() + 60
        while child.poll() is None and len(list(root.glob("*.tar"))) < target and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.02))
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        left = shards(root)
        kill_points.append(len(left))

        if (root / "manifest.json").exists():
            continue  # the child finished before the kill: nothing to check about a crash
        crashed += 1
        assert all(left[name] == expected[name] for name in left), "a shard under its final name is incomplete"
        report = verify_dataset(root)
        assert not report.committed and report.shards == len(left)
        assert [p.message.split(":")[0] for p in report.problems] == ["missing"], report.problems

        resumed = build_with_rejects(root, samples, max_samples=MAX_SAMPLES)
        assert resumed.resumed_samples == sum(samples_in[name] for name in left)
        assert shards(root) == expected
        assert verify_dataset(root).ok
    assert crashed >= 4 and len(set(kill_points)) >= 3, f"{crashed} crashes; shards at each kill: {kill_points}"


FULL_DISK_CHILD = """
import resource, signal, sys
from tests.builds import build_with_rejects, make_samples
from datasets_builders.store import DatasetWriteError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit, write() fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))  # no file may grow past 60 kB
try:
    build_with_rejects(sys.argv[1], make_samples(120, side=48), max_samples=40)
except DatasetWriteError as e:
    print(e)
    sys.exit(3)
"""


@pytest.mark.slow
def test_a_full_disk_fails_naming_the_dataset_and_a_rerun_completes(tmp_path):
    root = tmp_path / "ds"
    child = subprocess.run([sys.executable, "-c", FULL_DISK_CHILD, str(root)], cwd=REPO, capture_output=True, text=True)
    assert child.returncode == 3, child.stderr
    assert "dataset 'toy' at" in child.stdout and "toy-000000.tar failed: File too large" in child.stdout
    assert not (root / "manifest.json").exists() and not list(root.glob("*.tar"))
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]

    build_with_rejects(root, make_samples(120, side=48), max_samples=40)  # space freed: re-run completes
    reference = tmp_path / "reference"
    build_with_rejects(reference, make_samples(120, side=48), max_samples=40)
    assert shards(root) == shards(reference) and verify_dataset(root).ok
