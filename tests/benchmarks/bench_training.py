"""Loader and training speed, measured in one run: ``make bench``.

1. The mixture loader end to end (schedule, order, pread through the index with xxh3 checks,
   JSON, image decode to RGB with the builders' guards, crayon map) against bare ``webdataset``
   decoding of the same shards (``WebDataset(urls).decode("pilrgb")``): samples/s of each on one
   core, best of ``--rounds``, and the ratio (goal >= 0.95). The collator's cost (templates,
   tokens, resize, padding) is reported on top, as it has no webdataset counterpart.
2. Tiny three-stage-style training on Ray Train with 1 and 2 CPU workers (0.5 CPU each): samples/s
   of the steady part (from the first report to the last), on a short plan over the same data.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import torch  # noqa: E402
import webdataset as wds  # noqa: E402
import yaml  # noqa: E402

from datasets_builders.build import build_dataset  # noqa: E402
from datasets_builders.ray_session import loopback_node  # noqa: E402
from datasets_builders.sample_world.world import write_sample_world  # noqa: E402
from datasets_builders.store import ShardDataset  # noqa: E402
from models.build import build_model  # noqa: E402
from models.inputs import InputSpec  # noqa: E402
from models.presets import tiny  # noqa: E402
from training.collate import Collator  # noqa: E402
from training.mixture.loader import MixtureLoader  # noqa: E402
from training.plan import parse_plan  # noqa: E402

DATASETS = ("refcoco", "vqa", "coco-captions", "coco-panoptic")


def make_data(scratch: Path, images: int) -> Path:
    write_sample_world(scratch / "raw", images=images, seed=0)
    for name in DATASETS:
        build_dataset(name, scratch / "raw" / name, scratch / "datasets" / name)
    return scratch / "datasets"


def one_epoch_plan(root: Path, name: str, samples: int) -> dict:
    return {"name": "bench", "model": {"preset": "tiny"}, "data_root": str(root),
            "stages": [{"name": "all", "steps": samples // 8, "global_batch": 8, "lr": {"max": 1e-3},
                        "datasets": {name: {"ratio": 1, "split": "train"}}}]}


def loader_rate(root: Path, name: str, samples: int) -> tuple[float, float]:
    """(fetch samples/s, fetch + collate samples/s) over ``samples`` samples of one dataset."""
    plan = parse_plan(one_epoch_plan(root, name, samples))
    loader = MixtureLoader(plan)
    collator = Collator(InputSpec.of(build_model(tiny())), seed=0)
    started = time.perf_counter()
    fetched = [[loader.fetch(i) for i in loader.items(0, s)] for s in range(plan.stages[0].num_steps)]
    fetch_s = time.perf_counter() - started
    started = time.perf_counter()
    for batch in fetched:
        collator(batch)
    collate_s = time.perf_counter() - started
    n = sum(len(b) for b in fetched)
    return n / fetch_s, n / (fetch_s + collate_s)


def webdataset_rate(root: Path, samples: int) -> float:
    """Bare webdataset as its users write it: stream the shards, decode JSON and images to RGB PIL."""
    urls = [str(p) for p in sorted(root.glob("*.tar"))]
    started, n = time.perf_counter(), 0
    while n < samples:
        for _ in wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("pilrgb"):
            n += 1
            if n == samples:
                break
    return n / (time.perf_counter() - started)


def loader_bench(root: Path, rounds: int) -> None:
    print(f"{'dataset':16} {'webdataset/s':>13} {'loader/s':>9} {'ratio':>6} {'+collate/s':>11}")
    for name in DATASETS:
        samples = max(8, train_samples(root / name) // 8 * 8)
        best = [0.0, 0.0, 0.0]
        for _ in range(rounds):  # alternating, best of the rounds
            bare = webdataset_rate(root / name, samples)
            fetch, collated = loader_rate(root, name, samples)
            best = [max(best[0], bare), max(best[1], fetch), max(best[2], collated)]
        print(f"{name:16} {best[0]:>13,.0f} {best[1]:>9,.0f} {best[1] / best[0]:>6.2f} {best[2]:>11,.0f}")


def train_samples(root: Path) -> int:
    return ShardDataset(root).index["split"].to_pylist().count("train")


def training_bench(scratch: Path, root: Path, steps: int) -> None:
    import ray

    from training.launch import train

    with loopback_node():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        rates = {}
        for workers in (1, 2):
            plan = {"name": f"bench-{workers}", "model": {"preset": "tiny"}, "data_root": str(root),
                    "checkpoint_every": steps, "log_every": steps // 4,
                    "stages": [{"name": "mixed", "steps": steps, "global_batch": 8,
                                "lr": {"max": 1e-3, "warmup": 5}, "trainable": ["connector", "adapter", "llm"],
                                "datasets": {"refcoco": {"ratio": 2}, "vqa": {"ratio": 1},
                                             "coco-captions": {"ratio": 1}}}]}
            path = scratch / f"plan-{workers}.yaml"
            path.write_text(yaml.safe_dump(plan))
            reports: list[tuple[float, int]] = []
            result = train(path, workers=workers, storage=scratch / "runs",
                           progress=lambda m: reports.append((time.perf_counter(), m["global_step"])))
            (t0, s0), (t1, s1) = reports[0], reports[-1]
            rates[workers] = (s1 - s0) * 8 / max(t1 - t0, 1e-9)
            print(f"training, {workers} worker{'s' if workers > 1 else ''} (0.5 CPU each): {rates[workers]:,.0f} "
                  f"samples/s steady, {result.seconds:.0f} s whole run of {steps} steps")
        print(f"2 vs 1 workers: {rates[2] / rates[1]:.2f}x ({os.cpu_count()} CPUs)")
    finally:
        ray.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--loader-only", action="store_true", help="skip the Ray Train part")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        scratch = Path(tmp)
        root = make_data(scratch, args.images)
        loader_bench(root, args.rounds)
        if not args.loader_only:
            training_bench(scratch, root, args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
