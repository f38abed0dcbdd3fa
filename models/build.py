"""build_model(config): the only place a ModelConfig becomes modules.

Order matters and is fixed: seed; tokenizer; vision tower; LLM (random from a transformers config
sized to the tokenizer, or a local checkpoint, 4-bit for QLoRA); adapters on the LLM; connector;
crayon prompt and its per-layer branch (hooked onto the adapted linears, so the branch adds to
what the adapter computes). The same config and seed give the same random weights.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

from models.adapters.lora import apply_adapters, quantization_config, require_qlora
from models.config import ConfigError, LLMConfig, ModelConfig
from models.connectors.connector import Connector
from models.crayon_prompt import CrayonLayers, CrayonPrompt
from models.grounded_vlm import GroundedVLM
from models.tokenizer import load_tokenizer, tiny_tokenizer
from models.vision_tower import local_folder, build_vision_tower

MINIGPT_PAD = "$$"  #: MiniGPT-v2 pads with this plain-text token when the tokenizer has no pad token


def build_model(config: ModelConfig, *, base_dir: Path | None = None, tokenizer=None) -> GroundedVLM:
    """A GroundedVLM for ``config``; relative checkpoint paths resolve against ``base_dir``."""
    if config.adapter.quantize == "nf4":
        require_qlora()
    torch.manual_seed(config.seed)
    tokenizer = tokenizer or build_tokenizer(config.llm, base_dir)
    vision = build_vision_tower(config.vision, base_dir)
    llm = build_llm(config.llm, tokenizer, base_dir, quantize=config.adapter.quantize == "nf4")
    width = int(llm.config.hidden_size)
    try:
        llm = apply_adapters(llm, config.adapter)
    except ValueError as e:
        raise ConfigError(f"model.adapter: {e}") from None
    connector = Connector(config.connector, config.vision.feature_layer, vision.width, width, vision.grid)
    crayon = layers = None
    if config.crayon.enabled:
        crayon = CrayonPrompt(config.crayon, config.crayon.dim or vision.width, width, config.connector.merge)
        if config.crayon.layer_rank:
            layers = CrayonLayers(llm, config.crayon, width)
    return GroundedVLM(config, tokenizer, vision, connector, llm, crayon, layers)


def build_tokenizer(config: LLMConfig, base_dir: Path | None = None):  # noqa: ANN201 - a transformers tokenizer
    """The configured tokenizer folder, else the LLM checkpoint's, else the tiny locally trained one."""
    folder = config.tokenizer or config.checkpoint
    if folder is None:
        return tiny_tokenizer()
    path = Path(folder) if Path(folder).is_absolute() or base_dir is None else base_dir / folder
    tokenizer = load_tokenizer(path)
    if tokenizer.pad_token is None:  # Llama-2 has none; MiniGPT-v2 pads with "$$" (one token in its vocabulary)
        tokenizer.pad_token = MINIGPT_PAD if MINIGPT_PAD in tokenizer.get_vocab() else tokenizer.eos_token
    return tokenizer


def build_llm(config: LLMConfig, tokenizer, base_dir: Path | None, *, quantize: bool) -> nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    if config.checkpoint is None:
        try:
            llm_config = AutoConfig.for_model(config.model_type, **{
                "vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
                "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id, **config.init})
        except (ValueError, TypeError) as e:
            raise ConfigError(f"model.llm: cannot make a {config.model_type!r} config ({e})") from None
        llm = AutoModelForCausalLM.from_config(llm_config)
        if not quantize:
            return llm
        with tempfile.TemporaryDirectory() as tmp:  # bitsandbytes quantises while loading
            llm.save_pretrained(tmp)
            return AutoModelForCausalLM.from_pretrained(tmp, quantization_config=quantization_config())
    path = local_folder(config.checkpoint, base_dir, "model.llm.checkpoint")
    extra = {"quantization_config": quantization_config()} if quantize else {}
    llm = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, **extra)
    if len(tokenizer) > llm.get_input_embeddings().num_embeddings:
        raise ConfigError(f"model.llm: the tokenizer has {len(tokenizer)} tokens but {path} embeds only "
                          f"{llm.get_input_embeddings().num_embeddings}")
    return llm
