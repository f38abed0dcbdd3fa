"""Checkpoints: trainable parts as safetensors, identical outputs after loading, merged export."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from models.build import build_model
from models.checkpoint import BASE, TRAINABLE, CheckpointError, export_merged, load_model, read_config, save_model
from models.presets import tiny
from tests.models.batches import VARIANTS, batch_for


def trained(config, steps: int = 3):
    """A model whose trainable parts moved away from their initialisation (LoRA B is no longer 0)."""
    model = build_model(config)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = batch_for(model)
    for _ in range(steps):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    return model.eval(), batch


@pytest.mark.parametrize("variant", ["merger", "vce", "crayon-layers", "jamba", "dual-lora", "dual-qlora-on-cpu"])
def test_a_loaded_checkpoint_computes_exactly_what_was_saved(variant, tmp_path):
    model, batch = trained(tiny(**VARIANTS[variant]))
    save_model(model, tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt").eval()
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)
    names = set(load_file(tmp_path / "ckpt" / TRAINABLE))
    assert names == {n for part in ("connector", "crayon", "adapter") for n, _ in model.part_parameters(part)}
    assert not any(n.startswith("vision.") for n in names)


def test_trainable_weights_load_into_a_fresh_base_drawn_from_the_same_seed(tmp_path):
    model, batch = trained(tiny())
    save_model(model, tmp_path / "ckpt")
    (tmp_path / "ckpt" / BASE).unlink()  # the random base is redrawn from the config's seed
    loaded = load_model(tmp_path / "ckpt").eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, loaded(**batch).logits)


def test_an_export_merges_lora_into_transformers_folders_and_computes_the_same(tmp_path):
    model, batch = trained(tiny(crayon_layers=True))
    save_model(model, tmp_path / "ckpt")
    export_merged(tmp_path / "ckpt", tmp_path / "export")
    config, document = read_config(tmp_path / "export")
    assert document["merged"] and config.adapter.kind == "none"
    assert (tmp_path / "export" / "llm" / "config.json").is_file() and (tmp_path / "export" / "vision").is_dir()
    assert not (tmp_path / "export" / BASE).exists()  # everything base now lives in the transformers folders
    exported = load_model(tmp_path / "export").eval()
    assert not any(".lora_" in n for n, _ in exported.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(exported(**batch).logits, model(**batch).logits, atol=1e-5, rtol=1e-4)


def test_two_named_adapters_are_merged_together(tmp_path):
    model, batch = trained(tiny(adapter="dual"))
    save_model(model, tmp_path / "ckpt")
    exported = load_model(export_merged(tmp_path / "ckpt", tmp_path / "export")).eval()
    with torch.no_grad():
        torch.testing.assert_close(exported(**batch).logits, model(**batch).logits, atol=1e-5, rtol=1e-4)


def test_dual_lora_cannot_be_merged_and_says_so(tmp_path):
    save_model(build_model(tiny(adapter="dual-lora")), tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="dual-lora cannot be merged exactly"):
        export_merged(tmp_path / "ckpt", tmp_path / "export")


def test_broken_checkpoints_name_the_folder_and_the_problem(tmp_path):
    with pytest.raises(CheckpointError, match=f"^{tmp_path}: not a model checkpoint"):
        load_model(tmp_path)
    save_model(build_model(tiny()), tmp_path / "ckpt")
    document = json.loads((tmp_path / "ckpt" / "model.json").read_text())
    document["config"]["adapter"]["rnk"] = 3
    (tmp_path / "ckpt" / "model.json").write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="model.adapter.rnk: unknown key"):
        load_model(tmp_path / "ckpt")
    document["config"]["adapter"].pop("rnk")
    document["config"]["crayon"]["enabled"] = True  # the weights lack the crayon prompt this config asks for
    (tmp_path / "ckpt" / "model.json").write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="lacks .* trainable weights, e.g. crayon."):
        load_model(tmp_path / "ckpt")


def test_a_trained_base_llm_is_saved_even_when_it_came_from_a_local_folder(tmp_path):
    from models.config import ModelConfig

    source = build_model(tiny())
    source.llm.get_base_model().save_pretrained(tmp_path / "llm")
    source.tokenizer.save_pretrained(tmp_path / "llm")
    config = ModelConfig.from_dict({**tiny().to_dict(), "llm": {"checkpoint": str(tmp_path / "llm")}})
    model = build_model(config)
    model.set_trainable(("connector", "llm"))  # a from-scratch LLM learns its own weights
    batch = batch_for(model)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(**batch).loss.backward()
    optimizer.step()
    model.set_trainable(("connector", "adapter"))  # a later stage: the LLM's weights stay changed
    save_model(model.eval(), tmp_path / "ckpt")
    assert any(k.startswith("llm.") for k in load_file(tmp_path / "ckpt" / BASE))
    loaded = load_model(tmp_path / "ckpt").eval()
    assert loaded.base_trained == {"llm"}
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)
