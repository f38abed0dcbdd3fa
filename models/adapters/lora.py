"""LoRA, QLoRA and Dual QLoRA through peft; Dual-LoRA through our own layer.

- ``lora``: ``peft.get_peft_model`` with ``LoraConfig(r, lora_alpha, lora_dropout, target_modules,
  bias="none")`` (MiniGPT-v2: r=64, alpha=16, q_proj/v_proj). With two adapter names it is
  CoLLaVO's **Dual (Q)LoRA** (model-spec.md 1.7): both adapters stay active in every forward
  (``LoraModel.set_adapter([a, b])``), and ``train_adapter(name)`` makes only one of them
  trainable for a batch (peft's ``set_requires_grad``), so AdamW with ``zero_grad(set_to_none)``
  leaves the other untouched.
- ``quantize: nf4`` is QLoRA: the base LLM is loaded in 4-bit NF4 with double quantisation and
  bf16 compute (bitsandbytes) and prepared with ``prepare_model_for_kbit_training``. It needs a
  CUDA GPU; ``require_qlora`` says so in one line otherwise.
- ``dual-lora``: ``models.adapters.dual_lora`` (skill x task-activation spaces; not mergeable).
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Iterator

from torch import nn

from models.adapters.dual_lora import apply_dual_lora, dual_lora_parameters
from models.config import AdapterConfig, ConfigError


def require_qlora() -> None:
    import torch

    if not torch.cuda.is_available():
        raise ConfigError("model.adapter.quantize: nf4 (QLoRA) needs a CUDA GPU (bitsandbytes 4-bit); this "
                          "machine has none. Use adapter.quantize: none (plain LoRA, same code path) on CPU")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("model.adapter.quantize: nf4 (QLoRA) needs bitsandbytes: pip install bitsandbytes")


def quantization_config():  # noqa: ANN201 - a transformers BitsAndBytesConfig
    """4-bit NF4, double quantisation, bf16 compute: QLoRA as CoLLaVO configured it."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def apply_adapters(llm: nn.Module, config: AdapterConfig) -> nn.Module:
    """The LLM with its base weights frozen and the configured adapters added (the returned module
    replaces ``llm``: peft wraps it)."""
    llm.requires_grad_(False)
    if config.kind == "none":
        return llm
    if config.kind == "dual-lora":
        apply_dual_lora(llm, config.target_modules, r=config.rank, alpha=config.alpha, dropout=config.dropout)
        return llm
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.quantize == "nf4":
        llm = prepare_model_for_kbit_training(llm, use_gradient_checkpointing=False)

    def lora() -> LoraConfig:
        return LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                          target_modules=list(config.target_modules), bias="none", task_type="CAUSAL_LM")

    first, *others = config.names
    try:
        with warnings.catch_warnings():  # peft 0.21 asks transformers 5 a deprecated question on wrap
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
            model = get_peft_model(llm, lora(), adapter_name=first)
    except ValueError as e:  # peft: "Target modules {...} not found in the base model"
        raise ConfigError(f"model.adapter.target_modules: {e}") from None
    for name in others:
        model.add_adapter(name, lora())
    model.base_model.set_adapter(list(config.names))  # every adapter active in every forward
    return model


def train_adapter(llm: nn.Module, config: AdapterConfig, name: str | None) -> None:
    """Make adapter ``name`` trainable and every other one frozen (None: all frozen)."""
    if config.kind == "dual-lora":
        for _, param in adapter_parameters(llm, config):
            param.requires_grad_(name is not None)
        return
    if config.kind == "none":
        return
    if name is not None and name not in config.names:
        raise ValueError(f"unknown adapter {name!r}; this model has {', '.join(config.names)}")
    for adapter in config.names:
        llm.set_requires_grad(adapter, adapter == name)


def adapter_parameters(llm: nn.Module, config: AdapterConfig) -> Iterator[tuple[str, nn.Parameter]]:
    """Every adapter parameter of the LLM (all names), in module order."""
    if config.kind == "dual-lora":
        yield from dual_lora_parameters(llm)
    elif config.kind == "lora":
        for name, param in llm.named_parameters():
            if ".lora_A." in name or ".lora_B." in name:
                yield name, param
