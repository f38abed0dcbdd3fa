"""What a GroundedVLM is made of: typed dataclasses, parsed once at the edge.

A model is fully described by a ``ModelConfig``: which vision tower, connector, crayon modules,
LLM and adapters, and where their weights come from (a local ``save_pretrained`` folder, or a
transformers config for a random initialisation). ``to_dict`` / ``from_dict`` round-trip it
through JSON (checkpoints store it as ``model.json``); an unknown key, a wrong type or a value
outside its choices is a ``ConfigError`` naming the key path, e.g. ``adapter.rank: unknown key``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ConfigError(ValueError):
    """A model configuration that cannot be built; the message starts with the key path."""


@dataclass(frozen=True)
class VisionConfig:
    checkpoint: str | None = None  #: local folder (CLIP, SigLIP or BLIP-2 vision weights)
    model_type: str = "clip_vision_model"  #: for a random init: clip/siglip/blip_2 vision model
    init: dict[str, Any] = field(default_factory=dict)  #: that transformers config's arguments
    image_size: int | None = None  #: input side; differs from the checkpoint's -> position embeddings interpolated
    feature_layer: int = -1  #: hidden_states index the merger/MLP reads (CLS dropped)
    post_layernorm: bool = False  #: apply the tower's post_layernorm (BLIP-2: MiniGPT-v2's ln_vision)
    frozen: bool = True
    mean: tuple[float, ...] = CLIP_MEAN
    std: tuple[float, ...] = CLIP_STD


@dataclass(frozen=True)
class ConnectorConfig:
    kind: Literal["merger", "mlp", "vce"] = "merger"
    merge: int = 4  #: consecutive patch tokens (raster order) per visual token; 1 = none
    vce_layers: tuple[int, ...] = (-2, -8, -14, -20)  #: VCE levels, anchor first
    vce_heads: int = 16
    vce_points: int = 4


@dataclass(frozen=True)
class CrayonConfig:
    enabled: bool = False
    num_classes: int = 133  #: semantic table has num_classes + 1 rows (0 = unknown)
    max_instances: int = 20  #: numbering table has max_instances + 1 rows (0 = none)
    dim: int | None = None  #: embedding width; None = the vision tower's width (CoLLaVO)
    layer_rank: int = 0  #: > 0: CoLLaVO's per-layer low-rank crayon branch at image positions
    layer_alpha: float | None = None  #: scale = alpha / rank; None = rank (scale 1, as released)
    layer_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj")


@dataclass(frozen=True)
class LLMConfig:
    checkpoint: str | None = None  #: local AutoModelForCausalLM folder
    model_type: str = "llama"  #: for a random init: any transformers causal-LM type (llama, jamba)
    init: dict[str, Any] = field(default_factory=dict)
    tokenizer: str | None = None  #: local tokenizer folder; None = the checkpoint's (or the tiny one)


@dataclass(frozen=True)
class AdapterConfig:
    kind: Literal["none", "lora", "dual-lora"] = "lora"
    rank: int = 64
    alpha: float = 16.0
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    names: tuple[str, ...] = ("default",)  #: two names = Dual (Q)LoRA: both active, one trained per batch
    quantize: Literal["none", "nf4"] = "none"  #: nf4 = QLoRA (bitsandbytes, CUDA only)


@dataclass(frozen=True)
class ModelConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    connector: ConnectorConfig = field(default_factory=ConnectorConfig)
    crayon: CrayonConfig = field(default_factory=CrayonConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    max_text_tokens: int = 1024  #: MiniGPT-v2's max_txt_len: answers and later turns
    seed: int = 0  #: random initialisation of everything not loaded

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ModelConfig:
        config = parse_strict(cls, data, "model")
        _check(config)
        return config

    def replace(self, **parts: Any) -> ModelConfig:
        """A copy with whole parts or fields of parts replaced: ``replace(adapter={"kind": "none"})``."""
        merged = self.to_dict()
        for name, value in parts.items():
            merged[name] = ({**merged[name], **value} if isinstance(value, dict) and isinstance(merged.get(name), dict)
                            else value)
        return ModelConfig.from_dict(merged)


def parse_strict(kind: Any, value: Any, path: str) -> Any:
    """``value`` (JSON/YAML data) as type ``kind``: dataclasses, Literal, Optional, tuple, dict, scalars.
    Unknown keys, wrong types and values outside a Literal raise ConfigError starting with ``path``."""
    if dataclasses.is_dataclass(kind):
        if isinstance(value, kind):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        hints = typing.get_type_hints(kind)
        known = {f.name for f in dataclasses.fields(kind)}
        for key in value:
            if key not in known:
                raise ConfigError(f"{path}.{key}: unknown key; known: {', '.join(sorted(known))}")
        return kind(**{k: parse_strict(hints[k], v, f"{path}.{k}") for k, v in value.items()})
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{path}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):  # the first type that takes the value
            try:
                return parse_strict(option, value, path)
            except ConfigError as e:
                errors.append(e)
        raise errors[-1] if len(errors) == 1 else ConfigError(
            f"{path}: {value!r} fits none of {' | '.join(getattr(a, '__name__', str(a)) for a in args)}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__}")
        return tuple(parse_strict(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        if args and args[1] is not Any:
            return {parse_strict(args[0], k, path): parse_strict(args[1], v, f"{path}.{k}") for k, v in value.items()}
        return dict(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{path}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _check(config: ModelConfig) -> None:
    """Cross-field rules a type cannot say."""
    if config.connector.merge < 1:
        raise ConfigError(f"model.connector.merge: must be >= 1, got {config.connector.merge}")
    if config.adapter.kind != "none" and config.adapter.rank < 1:
        raise ConfigError(f"model.adapter.rank: must be >= 1, got {config.adapter.rank}")
    names = config.adapter.names
    if not 1 <= len(names) <= 2 or len(set(names)) != len(names):
        raise ConfigError(f"model.adapter.names: one name, or two distinct names (Dual LoRA), got {list(names)}")
    if config.adapter.kind == "dual-lora" and len(names) != 1:
        raise ConfigError("model.adapter.names: Dual-LoRA is one adapter (skill x task spaces); use one name")
    if config.adapter.quantize == "nf4" and config.adapter.kind != "lora":
        raise ConfigError("model.adapter.quantize: nf4 (QLoRA) needs adapter.kind lora")
    if config.crayon.layer_rank < 0:
        raise ConfigError(f"model.crayon.layer_rank: must be >= 0, got {config.crayon.layer_rank}")
    if config.crayon.layer_rank and not config.crayon.enabled:
        raise ConfigError("model.crayon.layer_rank: the per-layer crayon branch needs crayon.enabled")
