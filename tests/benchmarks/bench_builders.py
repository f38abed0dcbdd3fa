"""Builders on the sample world, against the bare shard store, same run, one core: ``make bench``.

Per builder: records/s and samples/s of ``crayonflow build`` (parse, validate, decode every image
in full, render, write, index, commit), against the shard store writing the very same samples'
image bytes unconverted (a trivial JSON each). The ratio is the share of the store's speed a
builder keeps; it has no goal, it shows where conversion time goes. Disk: each dataset's shard
bytes against its distinct pictures stored once plus its JSON (issue 18's goal <= 1.1x).

Crayon maps: ``formats.crayon.crayon_map`` (run-length, vectorised) against a per-segment loop
written here (a boolean mask per segment for area, box and both index maps), on the same
decoded id maps of the sample world's panoptic PNGs (and the real fixture's when present);
goal >= 10x. Exits 1 if it is missed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import xxhash
from PIL import Image as PILImage

from datasets_builders.build import build_dataset
from datasets_builders.formats.crayon import Categories, crayon_map, decode_ids
from datasets_builders.formats.schema import Sample, Source, Turn
from datasets_builders.registry import SOURCES
from datasets_builders.sample_world.world import write_sample_world
from datasets_builders.store import BuildSpec, DatasetWriter, ShardDataset

CRAYON_GOAL = 10.0
SHARED_FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
FIXTURE = Path(os.environ.get("CRAYONFLOW_FIXTURES", SHARED_FIXTURES)) / "coco_panoptic"


def store_only(samples: list[Sample], out: Path) -> None:
    spec = BuildSpec(out.name, "bench-store-only", "1", {"n": len(samples)})
    with DatasetWriter(out, spec) as writer:
        for sample in samples:
            writer.count_read()
            writer.write(sample)


def unconverted(root: Path) -> list[Sample]:
    """The built dataset's samples reduced to what the store alone would write: same keys and
    image bytes, a fixed two-turn text."""
    turns = (Turn("user", "x"), Turn("assistant", "y"))
    return [Sample(s.key, "raw", turns, Source("bench", s.key), image=s.image) for s in ShardDataset(root).samples()]


def per_segment_reference(ids: np.ndarray, segments_info: list[dict], categories: Categories) -> tuple:
    """The straightforward implementation: one full-image mask per segment."""
    semantic = np.zeros(ids.shape, np.uint8)
    numbering = np.zeros(ids.shape, np.uint8)
    known = np.array([0] + [s["id"] for s in segments_info], np.uint32)
    if not np.isin(ids, known).all():
        raise ValueError("unknown segment id")
    seen: dict[int, int] = {}
    boxes = []
    for s in sorted(segments_info, key=lambda s: s["id"]):
        mask = ids == s["id"]
        ys, xs = np.nonzero(mask)
        area = len(xs)
        box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
        seen[s["category_id"]] = seen.get(s["category_id"], 0) + 1
        semantic[mask] = categories.semantic(s["category_id"])
        numbering[mask] = min(seen[s["category_id"]], 20)
        boxes.append((box, area))
    return semantic, numbering, boxes


def panoptic_cases(world: Path) -> list[tuple[str, np.ndarray, list[dict], Categories]]:
    cases = []
    sources = [(world / "coco-panoptic" / "annotations", "panoptic_train2017")]
    if FIXTURE.is_dir():
        sources.append((FIXTURE, "panoptic_examples"))
    for folder, stem in sources:
        doc = json.loads((folder / f"{stem}.json").read_text())
        categories = Categories.from_coco(doc["categories"])
        for ann in doc["annotations"]:
            png = PILImage.open(folder / stem / ann["file_name"])
            cases.append((f"{stem}/{ann['file_name']}", decode_ids(np.asarray(png)), ann["segments_info"], categories))
    return cases


def bench_crayon(world: Path, rounds: int) -> float:
    cases = panoptic_cases(world)
    for _, ids, info, cats in cases:  # same answer before timing anything
        ours, ref = crayon_map(ids, info, cats), per_segment_reference(ids, info, cats)
        assert np.array_equal(ours.semantic, ref[0]) and np.array_equal(ours.numbering, ref[1])
        assert [(s.bbox, s.area) for s in ours.segments] == ref[2]
    groups = {"all": cases}
    for stem in sorted({name.split("/")[0] for name, *_ in cases}):
        groups[stem] = [c for c in cases if c[0].startswith(stem + "/")]
    print(f"\ncrayon maps from decoded panoptic PNGs, median of {rounds} rounds")
    ratios = {}
    for group, members in groups.items():
        timings: dict[str, list[float]] = {"per-segment loop": [], "vectorised": []}
        for _ in range(rounds):
            for name, fn in (("per-segment loop", per_segment_reference), ("vectorised", crayon_map)):
                start = time.perf_counter()
                for _, ids, info, cats in members:
                    fn(ids, info, cats)
                timings[name].append(time.perf_counter() - start)
        loop, ours = (statistics.median(timings[k]) / len(members) for k in ("per-segment loop", "vectorised"))
        pixels = sum(ids.size for _, ids, _, _ in members) / len(members)
        segments = sum(len(info) for _, _, info, _ in members) / len(members)
        ratios[group] = loop / ours
        print(f"  {group:<20} {len(members):>4} maps, {pixels / 1e3:5.0f} k px, {segments:5.1f} segments: "
              f"loop {loop * 1e3:6.2f} ms, vectorised {ours * 1e3:5.2f} ms = {loop / ours:5.1f}x")
    decode = _decode_time(world)
    print(f"  (decoding one panoptic PNG costs {decode * 1e3:.2f} ms on top of either)")
    return ratios["all"]


def _decode_time(world: Path) -> float:
    pngs = sorted((world / "coco-panoptic" / "annotations" / "panoptic_train2017").glob("*.png"))[:20]
    data = [p.read_bytes() for p in pngs]
    start = time.perf_counter()
    for d in data:
        decode_ids(np.asarray(PILImage.open(io.BytesIO(d))))
    return (time.perf_counter() - start) / len(data)


DISK_GOAL = 1.1  #: issue 18: shard bytes within 10 % of each distinct image once plus the JSON


def disk_factor(root: Path) -> tuple[float, float]:
    """(shard bytes / (each distinct image's bytes once + every other member), images stored per
    distinct image): what storing one copy of each picture would save."""
    shards = sum(p.stat().st_size for p in root.glob("*.tar"))
    distinct: dict[int, int] = {}
    other = stored = 0
    for raw in ShardDataset(root).scan():
        for ext, data in raw.items():
            if ext.startswith("__"):
                continue
            if ext in ("jpg", "jpeg", "png", "webp"):
                distinct[xxhash.xxh3_64_intdigest(data)] = len(data)
                stored += 1
            else:
                other += len(data)
    return shards / (sum(distinct.values()) + other), stored / max(len(distinct), 1)


def bench_builders(world: Path, scratch: Path, rounds: int) -> None:
    print(f"\n{'builder':<24} {'records/s':>10} {'samples/s':>10} {'store only':>11} {'ratio':>6}  samples"
          f"  {'disk':>6} {'copies':>6}")
    for name in SOURCES:
        build_times, store_times = [], []
        for _ in range(rounds):
            out = scratch / "built" / name
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            result = build_dataset(name, world / name, out)
            build_times.append(time.perf_counter() - start)
            samples = unconverted(out)
            base_out = scratch / "store" / name
            shutil.rmtree(base_out, ignore_errors=True)
            start = time.perf_counter()
            store_only(samples, base_out)
            store_times.append(time.perf_counter() - start)
        counts = result.manifest.counts
        t, b = statistics.median(build_times), statistics.median(store_times)
        factor, copies = disk_factor(out)
        print(f"{name:<24} {counts.read / t:>10,.0f} {counts.written / t:>10,.0f} {counts.written / b:>11,.0f} "
              f"{b / t:>6.2f}  {counts.written:>7} {factor:>6.2f}x {copies:>5.1f}")
    print(f"disk = shard bytes / (each distinct image once + the other members); goal <= {DISK_GOAL}x for "
          "every builder (issue 18: one copy of each image per dataset, not built yet); copies = image "
          "members stored per distinct image")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    scratch = Path(tempfile.mkdtemp(prefix="crayonflow-bench-builders-", dir=args.dir))
    try:
        world = scratch / "world"
        start = time.perf_counter()
        write_sample_world(world, images=args.images, seed=0)
        print(f"sample world: {args.images} scenes in {time.perf_counter() - start:.1f} s (1 core); "
              f"median of {args.rounds} rounds below; ratio = builder samples/s / store-only samples/s")
        bench_builders(world, scratch, args.rounds)
        ratio = bench_crayon(world, rounds=max(args.rounds, 5))
        ok = ratio >= CRAYON_GOAL
        print(f"\ncrayon ratio {ratio:.1f}x (goal >= {CRAYON_GOAL:.0f}x): {'met' if ok else 'MISSED'}")
        return 0 if ok else 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
