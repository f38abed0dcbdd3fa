"""The collator: reproducible re-rendered wording, MiniGPT-v2 masks, pixels and crayon maps per row."""

from __future__ import annotations

import dataclasses

import pytest

from models.build import build_model
from models.inputs import InputSpec
from models.presets import tiny
from models.prompt import IGNORE
from training.collate import Collator
from training.mixture.loader import MixtureLoader
from training.plan import parse_plan


@pytest.fixture(scope="module")
def loader(data_root):
    return MixtureLoader(parse_plan({
        "name": "c", "model": {"preset": "tiny"}, "data_root": str(data_root),
        "stages": [{"name": "a", "steps": 40, "global_batch": 6, "lr": {"max": 1e-3},
                    "datasets": {"refcoco": {"ratio": 2}, "unnatural-instructions": {"ratio": 1},
                                 "coco-panoptic": {"ratio": 1, "tasks": ["crayon"]}, "vqa": {"ratio": 2}}}]}))


def test_wording_is_re_rendered_per_draw_reproducibly_and_stored_turns_stay_for_the_rest(loader):
    collator = Collator(InputSpec.of(build_model(tiny())), seed=0)
    refer = next(f for s in range(40) for f in map(loader.fetch, loader.items(0, s)) if f.sample.task == "refer")
    other_draw = dataclasses.replace(refer, item=dataclasses.replace(refer.item, draw=refer.item.draw + 1))
    first, again = collator.turns(refer), collator.turns(refer)
    assert first == again  # reproducible
    assert first[1] == (refer.sample.turns[1].role, refer.sample.turns[1].content)  # same answer (the box)
    wordings = {collator.turns(dataclasses.replace(refer, item=dataclasses.replace(refer.item, draw=d)))[0]
                for d in range(30)}
    assert len(wordings) > 1 and all(q[1].startswith("[refer]") for q in wordings)
    assert collator.turns(other_draw)[1] == first[1]
    text = next(f for s in range(40) for f in map(loader.fetch, loader.items(0, s)) if f.sample.image is None)
    assert collator.turns(text) == [(t.role, t.content) for t in text.sample.turns]
    fixed = Collator(InputSpec.of(build_model(tiny())), seed=0, vary_templates=False)
    assert fixed.turns(refer) == [(t.role, t.content) for t in refer.sample.turns]


def test_a_batch_has_one_image_per_image_row_crayon_maps_for_a_crayon_model_and_masked_labels(loader):
    model = build_model(tiny(crayon=True))
    collator = Collator(InputSpec.of(model), seed=0)
    fetched = [loader.fetch(i) for i in loader.items(0, 3)]
    batch = collator(fetched)
    images = sum(f.image is not None for f in fetched)
    t = batch.tensors
    assert t["pixel_values"].shape == (images, 3, 112, 112) and t["crayon"].shape == (images, 8, 8, 2)
    assert int(t["image_mask"].sum()) == images * model.visual_tokens
    assert (t["labels"] != IGNORE).sum(1).min() > 0  # every row supervises its answers
    crayon_rows = [k for k, f in enumerate(f for f in fetched if f.image is not None) if f.crayon is not None]
    assert all(t["crayon"][k].any() for k in crayon_rows)  # real maps where the sample has one
    assert batch.tasks == [f.sample.task for f in fetched] and len(batch.keys) == len(fetched)
    out = model(**t)
    assert out.loss.isfinite()
