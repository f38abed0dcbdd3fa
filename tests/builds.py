"""Deterministic synthetic samples and one-call builds for tests (importable by child processes too)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from datasets_builders.formats.schema import Image, Sample, Source, Turn
from datasets_builders.store import BuildSpec, DatasetWriter, Manifest


def _encode(pixels: np.ndarray, fmt: str) -> bytes:
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, "JPEG" if fmt == "jpg" else "PNG")
    return out.getvalue()


def make_sample(i: int, *, seed: int = 0, side: int = 24) -> Sample:
    """Sample ``i``: every 5th is text-only, every 3rd carries a crayon.png extra, the rest vary."""
    rng = np.random.default_rng([seed, i])
    turns = (Turn("user", f"[caption] describe image {i}"), Turn("assistant", f"a synthetic picture number {i}"))
    if i % 7 == 6:  # some two-round conversations
        turns += (Turn("user", "and the colour?"), Turn("assistant", "mostly noise, ünïcode included"))
    image, extras = None, {}
    if i % 5 != 4:
        fmt = "png" if i % 4 == 1 else "jpg"
        w, h = side + i % 5, side
        image = Image(_encode(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), fmt), fmt, w, h)
        if i % 3 == 0:
            extras = {"crayon.png": _encode(rng.integers(0, 20, (h, w, 3), dtype=np.uint8), "png")}
    return Sample(
        key=f"s{seed}-{i:06d}",
        task="text" if image is None else "caption",
        turns=turns,
        source=Source("synthetic", str(i)),
        split="val" if i % 10 == 0 else "train",
        image=image,
        extras=extras,
        meta={"index": i},
    )


def make_samples(n: int, *, seed: int = 0, side: int = 24) -> list[Sample]:
    return [make_sample(i, seed=seed, side=side) for i in range(n)]


def spec_for(name: str = "toy", **kwargs) -> BuildSpec:
    kwargs.setdefault("parameters", {"test": True})
    return BuildSpec(name=name, builder="test-builder", builder_version="1", **kwargs)


def build(root: Path, samples: Iterable[Sample], spec: BuildSpec | None = None, **writer_kwargs) -> Manifest:
    """Write ``samples`` as one dataset, counting each as one record read."""
    with DatasetWriter(root, spec or spec_for(), **writer_kwargs) as writer:
        for sample in samples:
            writer.count_read()
            writer.write(sample)
    return writer.manifest


def build_with_rejects(root: Path, samples: list[Sample], *, max_samples: int = 6, **writer_kwargs) -> DatasetWriter:
    """Like :func:`build`, but every ninth record is rejected instead of written."""
    with DatasetWriter(root, spec_for(max_samples=max_samples), **writer_kwargs) as writer:
        for i, sample in enumerate(samples):
            writer.count_read()
            if i % 9 == 8:
                writer.reject(sample.source, "filter", "every ninth record")
            else:
                writer.write(sample)
    return writer


# Unnatural Instructions lines (core_data.jsonl): a good one, and one whose instance has no output.
GOOD = {"instruction": "x", "instances": [{"instruction_with_input": "Say hi.", "constraints": None, "output": "Hi!"}]}
NO_OUTPUT = {"instruction": "x", "instances": [{"instruction_with_input": "Say hi.", "constraints": None}]}


def write_input(folder: Path, *lines: object) -> Path:
    """An Unnatural Instructions folder whose core_data.jsonl holds ``lines`` (str: written as is)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    (folder / "core_data.jsonl").write_text(text, encoding="utf-8")
    return folder
