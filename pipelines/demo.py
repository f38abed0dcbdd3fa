"""The demo on embedded defaults: generated scenes -> a caption dataset -> verified.

Until the raw-format builders land (issue 3), scenes go straight into the store as caption
samples; the demo grows from here into sample world -> all datasets -> training -> evaluation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from datasets_builders.formats.schema import Image, Sample, Source, Turn
from datasets_builders.sample_world.scene import caption, generate_scene
from datasets_builders.store import BuildSpec, DatasetWriter, Manifest, VerifyReport, committed_build, verify_dataset


@dataclass(frozen=True)
class DemoResult:
    dataset: Path
    manifest: Manifest
    report: VerifyReport
    reused: bool  #: True when an identical build was already committed


def run_demo(data_dir: Path, *, images: int = 64, seed: int = 0) -> DemoResult:
    root = data_dir / "datasets" / "scene-captions"
    spec = BuildSpec(
        name="scene-captions",
        builder="demo-scene-captions",
        builder_version="1",
        parameters={"images": images, "seed": seed},
        max_samples=16,
    )
    manifest = committed_build(root, spec)
    reused = manifest is not None
    if manifest is None:
        # A different earlier demo build (other parameters) is replaced, never mixed in.
        with DatasetWriter(root, spec, overwrite=True) as writer:
            for sample in _caption_samples(images, seed):
                writer.count_read()
                writer.write(sample)
        manifest = writer.manifest
    return DemoResult(root, manifest, verify_dataset(root), reused)


def _caption_samples(images: int, seed: int) -> Iterator[Sample]:
    for index in range(images):
        scene = generate_scene(seed, index)
        width, height = scene.size
        yield Sample(
            key=f"scene{index:06d}",
            task="caption",
            turns=(Turn("user", "[caption] Briefly describe this image."), Turn("assistant", caption(scene))),
            source=Source("sample-world", str(index)),
            split="val" if index % 10 == 8 else "test" if index % 10 == 9 else "train",
            image=Image(scene.jpeg(), "jpg", width, height),
            meta={"objects": [{"name": t.name, "bbox": list(t.bbox)} for t in scene.things]},
        )
