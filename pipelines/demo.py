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
#: extra val-only scenes: at least 200 held-out samples of every task the demo scores (one crayon
#: image gives one B2C probe), so a score can be told from its blind control
DEMO_VAL_SCENES = 200
DEMO_EVAL_LIMIT = 200  #: held-out samples scored per task (crayon: images), to keep the demo within minutes
#: questions per generation batch: on CPU a tiny model's decoding step costs about the same for 16 rows or 256
DEMO_EVAL_BATCH = 128


def ensure_sample_world(out: Path, *, images: int, seed: int, val_scenes: int = 0) -> tuple[Path, bool]:
    """The sample world at ``out`` for (images, seed, val_scenes), written only if what is there
    differs; returns it and whether the one there was reused. Deterministic in its arguments."""
    try:
        summary = json.loads((out / "sample-world.json").read_text())
        if (summary["images"], summary["seed"], summary.get("val_scenes", 0)) == (images, seed, val_scenes):
            return out, True
    except (OSError, ValueError, KeyError, TypeError):
        pass
    write_sample_world(out, images=images, seed=seed, val_scenes=val_scenes, overwrite=True)
    return out, False
