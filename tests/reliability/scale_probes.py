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


def build(raw: str, out: str, source: str = SOURCE) -> dict:
    """``crayonflow build SOURCE`` of ``raw`` into ``out``, timed without interpreter start."""
    from datasets_builders.build import build_dataset

    started = time.perf_counter()
    counts = build_dataset(source, raw, out).manifest.counts
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


PANOPTIC_SIDE = 16  #: pixels per side of the generated panoptic images (the JSON, not the pixels, is measured)
PANOPTIC_SEGMENTS = (9, 10, 9)  #: segments per image, cycled: COCO panoptic train averages 9.3


def panoptic(out: str, images: str) -> dict:
    """A COCO panoptic train layout of ``images`` tiny pictures whose JSON has COCO's shape per
    image (about 9.3 segments, each with id, category, box, area and iscrowd): at 118k images it is
    the size of panoptic_train2017.json. Written as it is generated, so this probe stays small."""
    import io

    import numpy as np
    from PIL import Image

    root, count = Path(out), int(images)
    pngs, pictures = root / "annotations" / "panoptic_train2017", root / "train2017"
    pngs.mkdir(parents=True)
    pictures.mkdir(parents=True)
    jpeg = io.BytesIO()
    Image.new("RGB", (PANOPTIC_SIDE, PANOPTIC_SIDE), (90, 140, 60)).save(jpeg, "JPEG")
    png_of, segments_of = {}, {}
    for n in set(PANOPTIC_SEGMENTS):  # segment k (id k + 1) owns a band of rows
        rows = [k * PANOPTIC_SIDE // n for k in range(n + 1)]
        ids = np.zeros((PANOPTIC_SIDE, PANOPTIC_SIDE), np.int64)
        for k in range(n):
            ids[rows[k]:rows[k + 1]] = _segment_id(k)
        rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, "PNG")
        png_of[n] = buffer.getvalue()
        segments_of[n] = [(k, 0, rows[k], PANOPTIC_SIDE, rows[k + 1] - rows[k]) for k in range(n)]
    categories = [{"id": i, "name": f"class {i}", "supercategory": "thing" if i <= 80 else "stuff",
                   "isthing": int(i <= 80)} for i in range(1, 134)]
    total = 0
    with (root / "annotations" / "panoptic_train2017.json").open("w") as f:
        f.write('{"info": {"description": "generated: COCO panoptic train\'s shape"}, "licenses": [], "images": [')
        for i in range(count):
            name = f"{i + 1:012d}.jpg"
            f.write(("," if i else "") + json.dumps({
                "license": 1 + i % 8, "file_name": name, "coco_url": f"http://images.cocodataset.org/train2017/{name}",
                "height": PANOPTIC_SIDE, "width": PANOPTIC_SIDE, "date_captured": "2013-11-14 17:02:52",
                "flickr_url": f"http://farm7.staticflickr.com/6116/{6255196340 + i}_da26cf2c9e_z.jpg", "id": i + 1}))
        f.write('], "annotations": [')
        for i in range(count):
            n = PANOPTIC_SEGMENTS[i % len(PANOPTIC_SEGMENTS)]
            info = [{"id": _segment_id(k), "category_id": 1 + (i * 7 + k * 13) % 133, "iscrowd": 0,
                     "bbox": [x, y, w, h], "area": w * h} for k, x, y, w, h in segments_of[n]]
            total += n
            f.write(("," if i else "") + json.dumps({"segments_info": info, "file_name": f"{i + 1:012d}.png",
                                                      "image_id": i + 1}))
            (pngs / f"{i + 1:012d}.png").write_bytes(png_of[n])
            (pictures / f"{i + 1:012d}.jpg").write_bytes(jpeg.getvalue())
        f.write('], "categories": ' + json.dumps(categories) + "}")
    size = (root / "annotations" / "panoptic_train2017.json").stat().st_size
    return {"images": count, "segments": total, "json_bytes": size}


def _segment_id(k: int) -> int:
    """COCO-sized ids (R + 256 G + 256^2 B of a colour), so the JSON's digits are COCO's too."""
    return 3_226_956 + 65_537 * k


def json_load(path: str) -> dict:
    """What reading the whole file costs (the readers before streaming: ``json.load``, per reading
    thread): peak RSS of one load."""
    started = time.perf_counter()
    with open(path, "rb") as f:
        doc = json.load(f)
    return {"seconds": time.perf_counter() - started, "annotations": len(doc["annotations"])}


COMMANDS = {"world": world, "build": build, "read": read, "shards": shards, "first-batch": first_batch,
            "panoptic": panoptic, "json-load": json_load}


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
