"""ModelConfig: JSON round trip, key-path errors for unknown keys / wrong types / bad literals, cross-field rules."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from models.config import (
    CLIP_MEAN,
    CLIP_STD,
    AdapterConfig,
    ConfigError,
    ConnectorConfig,
    CrayonConfig,
    LLMConfig,
    ModelConfig,
    VisionConfig,
)
from models.presets import TINY_JAMBA, TINY_LLAMA, TINY_VISION, minigptv2_7b, tiny

VARIANTS = {
    "tiny": lambda: tiny(),
    "tiny-mlp": lambda: tiny(connector="mlp"),
    "tiny-vce": lambda: tiny(connector="vce"),
    "tiny-crayon": lambda: tiny(crayon=True),
    "tiny-crayon-layers": lambda: tiny(crayon_layers=True),
    "tiny-jamba": lambda: tiny(llm="jamba"),
    "tiny-dual-lora": lambda: tiny(adapter="dual-lora"),
    "tiny-dual": lambda: tiny(adapter="dual"),
    "minigptv2-7b": lambda: minigptv2_7b("a", "b"),
}


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        ModelConfig.from_dict(data)
    return str(info.value)


# ---------------------------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_preset_survives_a_json_round_trip_unchanged(name: str) -> None:
    config = VARIANTS[name]()
    text = json.dumps(config.to_dict())
    again = ModelConfig.from_dict(json.loads(text))
    assert again == config
    assert json.dumps(again.to_dict()) == text  # and serialises to the same text again


@pytest.mark.parametrize("name", list(VARIANTS))
def test_from_dict_of_to_dict_without_json_gives_an_equal_config(name: str) -> None:
    config = VARIANTS[name]()
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_json_lists_come_back_as_tuples() -> None:
    config = ModelConfig.from_dict(json.loads(json.dumps(tiny(connector="vce").to_dict())))
    assert config.connector.vce_layers == (-2, -3, -4, -5)
    assert config.adapter.target_modules == ("q_proj", "v_proj")
    assert config.vision.mean == CLIP_MEAN and config.vision.std == CLIP_STD
    assert isinstance(config.crayon.layer_targets, tuple)


def test_the_round_trip_of_the_tiny_preset_keeps_its_numbers() -> None:
    config = ModelConfig.from_dict(json.loads(json.dumps(tiny(adapter="dual").to_dict())))
    assert config.vision == VisionConfig(model_type="clip_vision_model", init=TINY_VISION, feature_layer=-1)
    assert config.connector == ConnectorConfig(kind="merger", merge=4, vce_layers=(-2, -3, -4, -5), vce_heads=4,
                                               vce_points=2)
    assert config.crayon == CrayonConfig(enabled=False, num_classes=133, max_instances=20, dim=32, layer_rank=0)
    assert config.llm == LLMConfig(model_type="llama", init=TINY_LLAMA)
    assert config.adapter == AdapterConfig(kind="lora", rank=8, alpha=16.0, dropout=0.0,
                                           target_modules=("q_proj", "v_proj"), names=("crayon", "vl"))
    assert config.max_text_tokens == 256 and config.seed == 0
    assert tiny(llm="jamba").llm.init == TINY_JAMBA


def test_the_minigptv2_preset_has_the_papers_numbers_and_the_given_folders() -> None:
    config = minigptv2_7b("a", "b")
    assert config.vision.checkpoint == "a" and config.llm.checkpoint == "b"
    assert (config.vision.image_size, config.vision.feature_layer, config.vision.post_layernorm) == (448, -1, True)
    assert (config.connector.kind, config.connector.merge) == ("merger", 4)
    assert (config.adapter.kind, config.adapter.rank, config.adapter.alpha, config.adapter.dropout) == \
        ("lora", 64, 16.0, 0.05)
    assert config.adapter.target_modules == ("q_proj", "v_proj")
    assert config.max_text_tokens == 1024


def test_an_empty_mapping_gives_the_defaults() -> None:
    assert ModelConfig.from_dict({}) == ModelConfig()
    assert ModelConfig.from_dict({"adapter": {}}) == ModelConfig()


def test_to_dict_is_a_deep_copy_so_editing_it_leaves_the_config_alone() -> None:
    config = tiny()
    data = config.to_dict()
    data["vision"]["init"]["hidden_size"] = 999
    assert config.vision.init["hidden_size"] == 64


# ---------------------------------------------------------------------------------------------- unknown keys


@pytest.mark.parametrize(("data", "path"), [
    ({"vison": {}}, "model.vison"),
    ({"adapter": {"rnk": 8}}, "model.adapter.rnk"),
    ({"vision": {"featur_layer": -2}}, "model.vision.featur_layer"),
    ({"connector": {"kind": "merger", "merges": 4}}, "model.connector.merges"),
    ({"crayon": {"enabled": True, "classes": 10}}, "model.crayon.classes"),
    ({"llm": {"checkpoint": "x", "tokeniser": "y"}}, "model.llm.tokeniser"),
])
def test_an_unknown_key_at_any_depth_is_a_config_error_starting_with_its_path(data: dict[str, Any],
                                                                             path: str) -> None:
    message = _error(data)
    assert message.startswith(f"{path}: unknown key")


def test_an_unknown_key_error_lists_the_known_keys() -> None:
    message = _error({"adapter": {"rnk": 8}})
    assert message == ("model.adapter.rnk: unknown key; known: alpha, dropout, kind, names, quantize, rank, "
                       "target_modules")


def test_the_free_form_init_mapping_is_passed_through_not_checked() -> None:
    # transformers validates the init arguments when the model is built, not the config parser
    config = ModelConfig.from_dict({"vision": {"init": {"anything": [1, 2], "hidden_size": 32}}})
    assert config.vision.init == {"anything": [1, 2], "hidden_size": 32}


# ---------------------------------------------------------------------------------------------- wrong types


@pytest.mark.parametrize(("data", "expected"), [
    ({"adapter": {"rank": "8"}}, "model.adapter.rank: expected int, got str '8'"),
    ({"connector": {"merge": True}}, "model.connector.merge: expected int, got bool True"),
    ({"adapter": {"alpha": True}}, "model.adapter.alpha: expected float, got bool True"),
    ({"adapter": {"alpha": "16"}}, "model.adapter.alpha: expected float, got str '16'"),
    ({"vision": {"frozen": "yes"}}, "model.vision.frozen: expected bool, got str 'yes'"),
    ({"vision": {"image_size": 448.0}}, "model.vision.image_size: expected int, got float 448.0"),
    ({"vision": {"checkpoint": 3}}, "model.vision.checkpoint: expected str, got int 3"),
    ({"crayon": {"dim": "32"}}, "model.crayon.dim: expected int, got str '32'"),
    ({"max_text_tokens": 1.5}, "model.max_text_tokens: expected int, got float 1.5"),
    ({"adapter": {"target_modules": "q_proj"}}, "model.adapter.target_modules: expected a list, got str"),
    ({"adapter": {"target_modules": ["q_proj", 3]}}, "model.adapter.target_modules[1]: expected str, got int 3"),
    ({"connector": {"vce_layers": [-2, "x"]}}, "model.connector.vce_layers[1]: expected int, got str 'x'"),
    ({"vision": "clip"}, "model.vision: expected a mapping, got str"),
    ({"vision": {"init": [1]}}, "model.vision.init: expected a mapping, got list"),
])
def test_a_wrong_type_is_a_config_error_naming_the_path_the_type_and_the_value(data: dict[str, Any],
                                                                               expected: str) -> None:
    assert _error(data) == expected


def test_a_top_level_that_is_not_a_mapping_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^model: expected a mapping, got list$"):
        ModelConfig.from_dict([1, 2])


def test_a_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# ---------------------------------------------------------------------------------------------- literals


@pytest.mark.parametrize(("data", "expected"), [
    ({"adapter": {"kind": "lora2"}}, "model.adapter.kind: 'lora2' is not one of 'none', 'lora', 'dual-lora'"),
    ({"adapter": {"quantize": "int8"}}, "model.adapter.quantize: 'int8' is not one of 'none', 'nf4'"),
    ({"connector": {"kind": "qformer"}}, "model.connector.kind: 'qformer' is not one of 'merger', 'mlp', 'vce'"),
    ({"connector": {"kind": None}}, "model.connector.kind: None is not one of 'merger', 'mlp', 'vce'"),
])
def test_a_value_outside_its_choices_is_a_config_error_listing_the_choices(data: dict[str, Any],
                                                                           expected: str) -> None:
    assert _error(data) == expected


# ---------------------------------------------------------------------------------------------- numbers


def test_ints_are_accepted_for_floats_and_become_floats() -> None:
    config = ModelConfig.from_dict({"adapter": {"alpha": 16, "dropout": 0},
                                    "crayon": {"enabled": True, "layer_rank": 4, "layer_alpha": 8},
                                    "vision": {"mean": [0, 1, 0], "std": [1, 2, 1]}})
    assert config.adapter.alpha == 16.0 and type(config.adapter.alpha) is float
    assert config.adapter.dropout == 0.0 and type(config.adapter.dropout) is float
    assert config.crayon.layer_alpha == 8.0 and type(config.crayon.layer_alpha) is float
    assert config.vision.mean == (0.0, 1.0, 0.0) and all(type(v) is float for v in config.vision.mean)
    assert config.vision.std == (1.0, 2.0, 1.0)


def test_optional_fields_accept_null() -> None:
    config = ModelConfig.from_dict({"vision": {"checkpoint": None, "image_size": None},
                                    "crayon": {"dim": None, "layer_alpha": None}, "llm": {"tokenizer": None}})
    assert config.vision.checkpoint is None and config.vision.image_size is None
    assert config.crayon.dim is None and config.crayon.layer_alpha is None


# ---------------------------------------------------------------------------------------------- cross-field rules


@pytest.mark.parametrize(("data", "expected"), [
    ({"connector": {"merge": 0}}, "model.connector.merge: must be >= 1, got 0"),
    ({"connector": {"merge": -4}}, "model.connector.merge: must be >= 1, got -4"),
    ({"adapter": {"rank": 0}}, "model.adapter.rank: must be >= 1, got 0"),
    ({"adapter": {"kind": "dual-lora", "rank": -1}}, "model.adapter.rank: must be >= 1, got -1"),
    ({"adapter": {"names": []}}, "model.adapter.names: one name, or two distinct names (Dual LoRA), got []"),
    ({"adapter": {"names": ["a", "b", "c"]}},
     "model.adapter.names: one name, or two distinct names (Dual LoRA), got ['a', 'b', 'c']"),
    ({"adapter": {"names": ["a", "a"]}},
     "model.adapter.names: one name, or two distinct names (Dual LoRA), got ['a', 'a']"),
    ({"adapter": {"kind": "dual-lora", "names": ["a", "b"]}},
     "model.adapter.names: Dual-LoRA is one adapter (skill x task spaces); use one name"),
    ({"adapter": {"kind": "dual-lora", "quantize": "nf4"}},
     "model.adapter.quantize: nf4 (QLoRA) needs adapter.kind lora"),
    ({"adapter": {"kind": "none", "quantize": "nf4"}}, "model.adapter.quantize: nf4 (QLoRA) needs adapter.kind lora"),
    ({"crayon": {"enabled": True, "layer_rank": -1}}, "model.crayon.layer_rank: must be >= 0, got -1"),
    ({"crayon": {"enabled": False, "layer_rank": 8}},
     "model.crayon.layer_rank: the per-layer crayon branch needs crayon.enabled"),
])
def test_each_cross_field_rule_is_a_clear_config_error(data: dict[str, Any], expected: str) -> None:
    assert _error(data) == expected


@pytest.mark.parametrize("data", [
    {"connector": {"merge": 1}},
    {"adapter": {"kind": "none", "rank": 0}},  # no adapter: its rank is irrelevant
    {"adapter": {"names": ["crayon", "vl"]}},
    {"adapter": {"kind": "dual-lora", "names": ["default"]}},
    {"adapter": {"kind": "lora", "quantize": "nf4"}},
    {"crayon": {"enabled": True, "layer_rank": 8}},
    {"crayon": {"enabled": False, "layer_rank": 0}},
])
def test_the_edges_of_the_cross_field_rules_are_accepted(data: dict[str, Any]) -> None:
    ModelConfig.from_dict(data)


# ---------------------------------------------------------------------------------------------- replace


def test_replace_merges_a_partial_dict_into_one_part_and_keeps_the_rest() -> None:
    config = tiny()
    changed = config.replace(adapter={"kind": "none"})
    assert changed.adapter == AdapterConfig(kind="none", rank=8, alpha=16.0, dropout=0.0,
                                            target_modules=("q_proj", "v_proj"), names=("default",))
    assert (changed.vision, changed.connector, changed.crayon, changed.llm) == \
        (config.vision, config.connector, config.crayon, config.llm)
    assert config.adapter.kind == "lora"  # the original is untouched


def test_replace_takes_several_parts_and_plain_fields_at_once() -> None:
    changed = tiny().replace(connector={"kind": "mlp", "merge": 1}, vision={"feature_layer": -2},
                             max_text_tokens=512, seed=7)
    assert (changed.connector.kind, changed.connector.merge, changed.connector.vce_heads) == ("mlp", 1, 4)
    assert changed.vision.feature_layer == -2 and changed.vision.init == TINY_VISION
    assert (changed.max_text_tokens, changed.seed) == (512, 7)


def test_replace_swaps_a_whole_field_of_a_part_without_merging_inside_it() -> None:
    changed = tiny().replace(vision={"init": {"hidden_size": 32}})
    assert changed.vision.init == {"hidden_size": 32}


def test_replace_accepts_a_dataclass_part_whole() -> None:
    part = AdapterConfig(kind="none")
    assert tiny().replace(adapter=part).adapter == part


def test_replace_checks_the_result_like_from_dict() -> None:
    with pytest.raises(ConfigError, match=re.escape("model.adapter.rank: must be >= 1, got 0")):
        tiny().replace(adapter={"rank": 0})
    with pytest.raises(ConfigError, match=r"^model\.adapter\.rnk: unknown key"):
        tiny().replace(adapter={"rnk": 8})
    with pytest.raises(ConfigError, match=r"^model\.crayon\.layer_rank: the per-layer crayon branch"):
        tiny().replace(crayon={"layer_rank": 4})


def test_replace_with_an_unknown_part_is_a_config_error_not_a_key_error() -> None:
    with pytest.raises(ConfigError, match=r"^model\.adaptor: unknown key"):
        tiny().replace(adaptor={"kind": "none"})
    with pytest.raises(ConfigError, match=r"^model\.max_text_tokens: expected int, got dict"):
        tiny().replace(max_text_tokens={"value": 3})
