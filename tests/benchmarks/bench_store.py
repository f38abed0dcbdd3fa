"""Shard store vs webdataset, same samples, same run, same core: ``make bench``.

Write: our DatasetWriter (checksums, index, fsync, rename, manifest) against a plain
``webdataset.ShardWriter`` loop; goal >= 1.0x. Read: our index-driven raw scan (no decode)
against ``webdataset.WebDataset`` iterating the same shards; goal >= 2.0x. Samples are generated
scenes as ~70 KB JPEGs plus their JSON. Each measurement is the median of several alternating
rounds, so page-cache and frequency effects hit both sides alike. Exits 1 if a goal is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import webdataset as wds

from datasets_builders.formats.schema import Image, Sample, Source, Turn
from datasets_builders.sample_world.scene import caption, generate_scene
from datasets_builders.store import BuildSpec, DatasetWriter, ShardDataset

GOALS = {"write": 1.0, "read": 2.0}


def make_samples(n: int, unique_images: int) -> list[Sample]:
    scenes = [generate_scene(2024, i, size_range=(448, 576), noise=11) for i in range(unique_images)]
    images = [Image(s.jpeg(), "jpg", *s.size) for s in scenes]
    texts = [caption(s) for s in scenes]
    return [
        Sample(
            key=f"bench{i:07d}",
            task="caption",
            turns=(Turn("user", "[caption] Briefly describe this image."), Turn("assistant", texts[i % unique_images])),
            source=Source("sample-world", str(i)),
            image=images[i % unique_images],
        )
        for i in range(n)
    ]


def write_ours(samples: list[Sample], out: Path, per_shard: int) -> None:
    spec = BuildSpec("bench", "bench", "1", {"n": len(samples)}, max_samples=per_shard, max_bytes=1 << 40)
    with DatasetWriter(out, spec) as writer:
        for sample in samples:
            writer.count_read()
            writer.write(sample)


def write_webdataset(records: list[dict], out: Path, per_shard: int) -> None:
    out.mkdir(parents=True)
    with wds.ShardWriter(str(out / "bench-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
        for record in records:
            sink.write(record)


def read_ours(root: Path, check: bool = False) -> int:
    return sum(1 for _ in ShardDataset(root).scan(check=check))


def read_webdataset(root: Path) -> int:
    urls = [str(p) for p in sorted(root.glob("*.tar"))]
    return sum(1 for _ in wds.WebDataset(urls, shardshuffle=False))


def timed(fn: Callable[[], object], setup: Callable[[], None] | None = None) -> float:
    if setup:
        setup()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--unique-images", type=int, default=200)
    parser.add_argument("--per-shard", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, like a loader worker

    scratch = Path(tempfile.mkdtemp(prefix="crayonflow-bench-", dir=args.dir))
    try:
        samples = make_samples(args.samples, args.unique_images)
        records = [{"__key__": s.key, **s.members()} for s in samples]
        payload = sum(len(v) for r in records for k, v in r.items() if k != "__key__")
        mean_jpeg = sum(len(s.image.data) for s in samples) / len(samples)
        print(f"{len(samples)} samples, mean JPEG {mean_jpeg / 1000:.1f} KB, {payload / 1e6:.0f} MB payload, "
              f"{args.per_shard} samples/shard, median of {args.rounds} rounds, 1 core")

        ours_dir, theirs_dir = scratch / "ours", scratch / "webdataset"
        write = {"ours": [], "webdataset": []}
        for _ in range(args.rounds):
            write["webdataset"].append(timed(lambda: write_webdataset(records, theirs_dir, args.per_shard),
                                             lambda: shutil.rmtree(theirs_dir, ignore_errors=True)))
            write["ours"].append(timed(lambda: write_ours(samples, ours_dir, args.per_shard),
                                       lambda: shutil.rmtree(ours_dir, ignore_errors=True)))
        read = {"ours": [], "ours+xxh3": [], "webdataset": []}
        assert read_ours(ours_dir) == read_webdataset(ours_dir) == len(samples)  # warm the page cache
        for _ in range(args.rounds):
            read["webdataset"].append(timed(lambda: read_webdataset(ours_dir)))
            read["ours"].append(timed(lambda: read_ours(ours_dir)))
            read["ours+xxh3"].append(timed(lambda: read_ours(ours_dir, check=True)))

        sizes = {name: sum(p.stat().st_size for p in d.glob("*.tar")) for name, d in
                 (("ours", ours_dir), ("webdataset", theirs_dir))}
        print(f"shard bytes: ours {sizes['ours'] / 1e6:.1f} MB, webdataset {sizes['webdataset'] / 1e6:.1f} MB "
              f"({sizes['webdataset'] / sizes['ours'] - 1:+.1%} PAX headers)")
        ratios = {}
        for phase, results in (("write", write), ("read", read)):
            base = statistics.median(results["webdataset"])
            print(f"\n{phase}")
            for name, times in results.items():
                t = statistics.median(times)
                print(f"  {name:<11} {len(samples) / t:>9,.0f} samples/s {payload / t / 1e6:>7,.0f} MB/s"
                      f"   {base / t:>5.2f}x webdataset")
            ratios[phase] = base / statistics.median(results["ours"])
        print()
        missed = []
        for phase, goal in GOALS.items():
            ok = ratios[phase] >= goal
            missed += [] if ok else [phase]
            print(f"{phase} ratio {ratios[phase]:.2f}x (goal >= {goal:.1f}x): {'met' if ok else 'MISSED'}")
        return 1 if missed else 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
