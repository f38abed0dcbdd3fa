"""Named model configurations, numbers written out: ``tiny`` for tests and the demo, ``minigptv2-7b``.

``tiny`` (random weights, builds in about two seconds on CPU): a 4-layer CLIP ViT (width 64,
112 px, patch 14: 8 x 8 patches), MiniGPT-v2's 4-token merger (16 visual tokens), a 4-layer
Llama (width 128) and the locally trained 2048-token BPE tokenizer, LoRA r=8 on q/v. The option
variants switch one part each: ``connector`` (merger | mlp | vce), ``crayon`` (prompt, optionally
the per-layer branch), ``llm`` (llama | jamba), ``adapter`` (lora | dual-lora | dual: two
named LoRAs).

``minigptv2-7b`` is the paper's configuration (minigptv2-data-spec.md 1, model-spec.md 5): EVA
ViT-g/14 as ``Blip2VisionModel`` at 448 px (its 224 px position embeddings interpolated; 1024
patches), ``post_layernorm`` as ``ln_vision``, 4-token merger + Linear(5632 -> 4096) (256 visual
tokens), Llama-2-7b-chat, LoRA r=64 alpha=16 dropout 0.05 on q_proj/v_proj, max_txt_len 1024.
Both paths are local ``save_pretrained`` folders (the BLIP-2 checkpoint's vision part, or a
converted ``eva_vit_g.pth``); nothing is downloaded.
"""

from __future__ import annotations

from typing import Any

from models.config import ModelConfig

TINY_VISION = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
               "image_size": 112, "patch_size": 14}
TINY_LLAMA = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
              "num_key_value_heads": 2, "max_position_embeddings": 2048, "tie_word_embeddings": False}
TINY_JAMBA = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
              "num_key_value_heads": 2, "attn_layer_period": 2, "attn_layer_offset": 1, "expert_layer_period": 2,
              "expert_layer_offset": 1, "num_experts": 2, "num_experts_per_tok": 1, "mamba_d_state": 8,
              "mamba_dt_rank": 8, "mamba_expand": 2, "tie_word_embeddings": False}


def tiny(*, connector: str = "merger", crayon: bool = False, crayon_layers: bool = False, llm: str = "llama",
         adapter: str = "lora", llm_checkpoint: str | None = None, vision_checkpoint: str | None = None) -> ModelConfig:
    """The tiny model with one option per part switched (see the module docstring); ``llm_checkpoint``:
    a local folder (``crayonflow pretrain llm``) whose Llama and tokenizer replace the random ones;
    ``vision_checkpoint``: one from ``crayonflow pretrain vision`` (its image size comes with it)."""
    data: dict[str, Any] = {
        "vision": {"model_type": "clip_vision_model", "init": TINY_VISION, "feature_layer": -1,
                   "checkpoint": vision_checkpoint},
        "connector": {"kind": connector, "merge": 4, "vce_layers": [-2, -3, -4, -5], "vce_heads": 4,
                      "vce_points": 2},
        "crayon": {"enabled": crayon or crayon_layers, "num_classes": 133, "max_instances": 20, "dim": 32,
                   "layer_rank": 8 if crayon_layers else 0},
        "llm": {"model_type": llm, "init": TINY_LLAMA if llm == "llama" else TINY_JAMBA, "checkpoint": llm_checkpoint},
        "adapter": {"kind": "dual-lora" if adapter == "dual-lora" else "lora", "rank": 8, "alpha": 16.0,
                    "dropout": 0.0, "target_modules": ["q_proj", "v_proj"],
                    "names": ["crayon", "vl"] if adapter == "dual" else ["default"]},
        "max_text_tokens": 256,
    }
    return ModelConfig.from_dict(data)


def minigptv2_7b(vision_checkpoint: str, llm_checkpoint: str) -> ModelConfig:
    """MiniGPT-v2 as released; ``vision_checkpoint`` holds EVA ViT-g, ``llm_checkpoint`` Llama-2-7b-chat."""
    return ModelConfig.from_dict({
        "vision": {"checkpoint": vision_checkpoint, "image_size": 448, "feature_layer": -1, "post_layernorm": True},
        "connector": {"kind": "merger", "merge": 4},
        "llm": {"checkpoint": llm_checkpoint},
        "adapter": {"kind": "lora", "rank": 64, "alpha": 16.0, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
        "max_text_tokens": 1024,
    })


PRESETS = {"tiny": tiny}  #: presets that need no arguments (minigptv2-7b needs its two local folders)
