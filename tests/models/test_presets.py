"""The presets: tiny builds fast; minigptv2-7b's code path (BLIP-2 ViT at 448 px, ln_vision, local
Llama folder and its tokenizer) runs on stand-in folders of the same kinds, shrunk."""

from __future__ import annotations

import time

import torch
from transformers import Blip2VisionConfig, Blip2VisionModel, LlamaConfig, LlamaForCausalLM

from models.build import build_model
from models.presets import minigptv2_7b, tiny
from models.prompt import collate, encode_conversation
from models.tokenizer import tiny_tokenizer


def test_the_tiny_preset_builds_in_seconds():
    tiny_tokenizer()  # the corpus is made once per process; time the model itself
    started = time.perf_counter()
    model = build_model(tiny())
    assert time.perf_counter() - started < 5
    assert model.visual_tokens == 16 and sum(p.numel() for p in model.parameters()) < 2_000_000


def test_the_minigptv2_configuration_is_the_papers():
    config = minigptv2_7b("eva", "llama")
    assert (config.vision.image_size, config.vision.post_layernorm, config.vision.feature_layer) == (448, True, -1)
    assert (config.connector.kind, config.connector.merge) == ("merger", 4)
    adapter = config.adapter
    assert (adapter.kind, adapter.rank, adapter.alpha, adapter.dropout, adapter.target_modules) == \
        ("lora", 64, 16.0, 0.05, ("q_proj", "v_proj"))
    assert config.max_text_tokens == 1024


def test_the_minigptv2_code_path_runs_on_local_folders_of_the_same_kinds(tmp_path):
    vision = Blip2VisionModel(Blip2VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                num_attention_heads=2, image_size=224, patch_size=14))
    vision.save_pretrained(tmp_path / "eva")
    tok = tiny_tokenizer()
    tok.pad_token = None  # like Llama-2's tokenizer
    llm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4))
    llm.save_pretrained(tmp_path / "llama")
    tok.save_pretrained(tmp_path / "llama")
    model = build_model(minigptv2_7b(str(tmp_path / "eva"), str(tmp_path / "llama")))
    # 448 px on a 224 px checkpoint: 32 x 32 patches, interpolated position embeddings, 256 visual tokens
    assert model.vision.interpolate and model.vision.grid == 32 and model.visual_tokens == 256
    assert model.tokenizer.pad_token == model.tokenizer.eos_token  # "$$" is not one token in this vocabulary
    maps = model.vision.features(torch.randn(1, 3, 448, 448), [-1])
    assert maps[0].shape == (1, 1024, 32)  # CLS dropped, ln_vision applied
    batch = collate([encode_conversation(model.tokenizer, [("user", "[refer] the circle"), ("assistant", "{<1><2><3><4>}")],
                                         visual_tokens=256)], model.tokenizer.pad_token_id)
    out = model(**batch, pixel_values=torch.randn(1, 3, 448, 448))
    out.loss.backward()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("connector.") or ".lora_" in n for n in trainable)
    assert model.connector.project.proj.in_features == 4 * 32  # k = 4 tokens of width 32
