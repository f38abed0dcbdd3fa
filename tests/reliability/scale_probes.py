"""The measured side of the scale scenarios: one build, one read-back or one loader start per process.

Run as ``python -m tests.reliability.scale_probes COMMAND ARGS...``; each command prints one JSON
line, its peak RSS included. The parent (``scale.py``) starts a fresh process per measurement, so
a number covers exactly that work (and any process it spawns), never the harness or an earlier,
larger measurement. Heavy imports happen inside the commands, so the loader's
first-batch time includes them, as a training process would pay them.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

SOURCE = "coco-captions"  #: five caption records (one sample each) per image: the cheapest 100k samples
SMALL_IMAGES = (64, 96)  #: scene width range in pixels (JPEGs of about 2 KB)
RANDOM_ROWS = 1_000  #: distinct rows per random-access pass
CACHE_EVICT_BYTES = 64 << 20  #: written between timed passes: well over the per-core caches
MIN_PASSES = 3  #: per dataset and rate, however long they take


def world(out: str, images: str, seed: str) -> dict:
    """The sample world's COCO Captions layout for ``images`` small scenes (the other formats are
    not written: only this one is built)."""
    from datasets_builders.sample_world import coco_captions
    from datasets_builders.sample_world.common import WorldImage
    from datasets_builders.sample_world.scene import generate_scene
    from datasets_builders.sample_world.world import JPEG_QUALITY, split_of

    scenes = (generate_scene(int(seed), i, size_range=SMALL_IMAGES) for i in range(int(images)))
    world = [WorldImage(s.index, s.index + 1, split_of(s.index), s, s.jpeg(JPEG_QUALITY), int(seed)) for s in scenes]
    coco_captions.write(world, Path(out), int(seed))
    return {"images": len(world), "records": len(world) * coco_captions.CAPTIONS_PER_IMAGE}


def build(raw: str, out: str) -> dict:
    """``crayonflow build coco-captions`` of ``raw`` into ``out``, timed without interpreter start."""
    from datasets_builders.build import build_dataset

    started = time.perf_counter()
    counts = build_dataset(SOURCE, raw, out).manifest.counts
    return {"seconds": time.perf_counter() - started, "read": counts.read, "written": counts.written,
            "records_rejected": counts.records_rejected}


def read(seconds: str, seed: str, *roots: str) -> dict:
    """The read-back of each dataset in ``roots`` (every sample scanned once with checksums: what it
    sees is what was kept), then its scan and random-access ``read(i)`` rates: medians of passes
    taken in turns over all the datasets until ``seconds`` elapse, so the load that other work on
    this machine's shared cores puts on a measurement falls on every size alike.

    Passes start with the CPU caches holding none of the data, as a training run's reads over far
    more data than cache find it: without that, a 1k-sample dataset (about 4 MB, this machine's L2)
    is read from cache on every pass after the first and looks 1.5x faster per sample than 10k."""
    import numpy as np

    from datasets_builders.store import ShardDataset

    datasets = [ShardDataset(root) for root in roots]
    keys = [len({raw["__key__"] for raw in dataset.scan(check=True)}) for dataset in datasets]
    rng = np.random.default_rng(int(seed))
    rows = [[int(r) for r in rng.permutation(len(d))[:RANDOM_ROWS]] for d in datasets]  # distinct rows
    evict = np.zeros(CACHE_EVICT_BYTES, np.uint8)
    scans: list[list[float]] = [[] for _ in datasets]
    randoms: list[list[float]] = [[] for _ in datasets]
    deadline = time.perf_counter() + float(seconds)
    while len(scans[0]) < MIN_PASSES or time.perf_counter() < deadline:
        for dataset, picked, scan, random in zip(datasets, rows, scans, randoms):
            scan.append(_rate(lambda: sum(1 for _ in dataset.scan(check=True)), evict))
            random.append(_rate(lambda: len([dataset.read(row, check=True) for row in picked]), evict))
    return {"datasets": [{"root": root, "distinct_keys": n, "scan_rate": statistics.median(scan),
                          "random_rate": statistics.median(random)}
                         for root, n, scan, random in zip(roots, keys, scans, randoms)]}


def _rate(one_pass: Callable[[], int], evict) -> float:
    """Items/s of one pass of ``one_pass`` (which returns its item count), started after writing one
    byte per cache line of ``evict`` has pushed the data out of the CPU caches."""
    evict[::64] += 1
    started = time.perf_counter()
    items = one_pass()
    return items / (time.perf_counter() - started)


def shards(out: str, count: str) -> dict:
    """A dataset of ``count`` one-sample shards of tiny synthetic samples (setup, not measured)."""
    from tests.builds import build as build_samples
    from tests.builds import make_samples, spec_for

    manifest = build_samples(Path(out), make_samples(int(count), side=8), spec_for("many-shards", max_samples=1))
    return {"shards": len(manifest.shards)}


def first_batch(root: str, spawned: str, batch: str) -> dict:
    """A MixtureLoader over ``root``: imports, construction, then global batch (0, 0) fetched.
    ``spawned`` is the parent's ``time.time()`` just before starting this process."""
    entered = time.time()
    from training.mixture.loader import MixtureLoader
    from training.plan import parse_plan

    imported = time.time()
    plan = parse_plan({"name": "scale", "model": {"preset": "tiny"}, "data_root": str(Path(root).parent),
                       "stages": [{"name": "all", "steps": 4, "global_batch": int(batch), "lr": {"max": 1e-3},
                                   "datasets": {Path(root).name: {"ratio": 1}}}]})
    loader = MixtureLoader(plan)
    built = time.time()
    fetched = [loader.fetch(item) for item in loader.local_items(0, 0)]
    done = time.time()
    return {"startup_seconds": entered - float(spawned), "import_seconds": imported - entered,
            "construct_seconds": built - imported, "fetch_seconds": done - built,
            "total_seconds": done - float(spawned), "batch": len(fetched)}


COMMANDS = {"world": world, "build": build, "read": read, "shards": shards, "first-batch": first_batch}


def peak_rss() -> int:
    """Bytes: this process's high-water RSS (VmHWM of its own address space) or, if larger, its
    waited-for children's. Not the parent's ``wait4``: Linux carries the RSS high-water of the
    address space a child ran in before ``exec`` (the parent's, with vfork) into ``ru_maxrss``."""
    import resource

    status = Path("/proc/self/status").read_text()
    hwm = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024
    return max(hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)


if __name__ == "__main__":
    result = COMMANDS[sys.argv[1]](*sys.argv[2:])
    print(json.dumps({**result, "peak_rss": peak_rss()}), flush=True)
