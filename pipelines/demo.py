"""The demo's embedded defaults: where it writes, which plan it trains, how its sample world is made.

Everything the demo makes lands under ``DEMO_ROOT`` (``demo-output/``, git-ignored): ``raw/`` (the
generated sample world and the segmenter's predictions), ``datasets/<name>/``, ``runs/<run>/``
(checkpoints per stage, eval JSON, the loss curve) and ``prefect/`` (the local server's
PREFECT_HOME). The flows in ``pipelines/flows/`` use these as their default parameters.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from datasets_builders.sample_world.world import write_sample_world

DEMO_ROOT = Path("demo-output")
DEMO_PLAN = Path(str(resources.files("training") / "recipes" / "tiny-demo.yaml"))
MULTIROUND_INPUTS = ("coco-panoptic", "flickr30k-entities", "refcoco", "vqa", "coco-captions")
SEGMENTED = "llava-crayon"  #: crayon shards of LLaVA's pictures, segmented by the tiny Mask2Former


def ensure_sample_world(out: Path, *, images: int, seed: int) -> tuple[Path, bool]:
    """The sample world at ``out`` for (images, seed), written only if what is there differs;
    returns it and whether the one there was reused. Deterministic for (images, seed)."""
    try:
        summary = json.loads((out / "sample-world.json").read_text())
        if (summary["images"], summary["seed"]) == (images, seed):
            return out, True
    except (OSError, ValueError, KeyError, TypeError):
        pass
    write_sample_world(out, images=images, seed=seed, overwrite=True)
    return out, False
