"""Dual-LoRA: the formula by hand, init, dropout placement, merge refusal, wrapping real transformers models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from models.adapters.dual_lora import (
    DualLoRALinear,
    added_parameters,
    apply_dual_lora,
    dual_lora_parameters,
)

ADAPTER_SUFFIXES = ("skill.weight", "task.weight", "norm.weight", "norm.bias", "up.weight")


def _layer(d_in: int = 3, d_out: int = 2, r: int = 2, alpha: float = 4.0, dropout: float = 0.0) -> DualLoRALinear:
    torch.manual_seed(0)
    return DualLoRALinear(nn.Linear(d_in, d_out), r=r, alpha=alpha, dropout=dropout)


def _set(layer: DualLoRALinear, **tensors: list) -> None:
    with torch.no_grad():
        for path, value in tensors.items():
            layer.get_parameter(path.replace("__", ".")).copy_(torch.tensor(value))


def test_the_output_matches_the_formula_written_out_by_hand_including_a_gate_that_zeroes_one_rank() -> None:
    layer = _layer(alpha=4.0)  # scale = alpha / r = 2
    W, b = [[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]], [0.1, -0.2]
    S, T = [[1.0, 0.0, -1.0], [0.5, 2.0, 1.0]], [[1.0, 1.0, 0.0], [-1.0, 0.0, 1.0]]
    B, gamma, beta = [[1.0, -2.0], [0.5, 3.0]], [1.5, 0.5], [0.25, -0.75]
    _set(layer, base__weight=W, base__bias=b, skill__weight=S, task__weight=T, up__weight=B,
         norm__weight=gamma, norm__bias=beta)  # fmt: skip
    layer.eval()
    # Row 0: T x = (3, 2), both ranks open; row 1: T x = (3, -4), the gate zeroes rank 1.
    x = torch.tensor([[1.0, 2.0, 3.0], [2.0, 1.0, -2.0]])
    W_, b_, S_, T_, B_ = map(torch.tensor, (W, b, S, T, B))
    sx = x @ S_.T
    mean = sx.mean(dim=-1, keepdim=True)
    var = ((sx - mean) ** 2).mean(dim=-1, keepdim=True)
    ln = (sx - mean) / torch.sqrt(var + 1e-5) * torch.tensor(gamma) + torch.tensor(beta)
    gate = (x @ T_.T).clamp(min=0.0)
    assert gate[1, 1] == 0.0 and gate[1, 0] > 0.0
    expected = x @ W_.T + b_ + 2.0 * ((ln * gate) @ B_.T)
    assert_close(layer(x), expected)
    # The gate matters: without ReLU the second row would differ.
    ungated = x @ W_.T + b_ + 2.0 * ((ln * (x @ T_.T)) @ B_.T)
    assert not torch.allclose(layer(x)[1], ungated[1])


def test_at_init_the_output_is_the_base_linear_and_only_the_adapter_gets_gradients() -> None:
    layer = _layer(d_in=8, d_out=6, r=4, dropout=0.05)
    assert torch.count_nonzero(layer.up.weight) == 0
    assert layer.scale == 1.0
    x = torch.randn(5, 7, 8)
    out = layer(x)
    assert torch.equal(out, layer.base(x))
    (out.square().sum() + out.sum()).backward()
    assert layer.base.weight.grad is None and layer.base.bias.grad is None
    assert not layer.base.weight.requires_grad and not layer.base.bias.requires_grad
    names = dict(layer.named_parameters())
    for suffix in ADAPTER_SUFFIXES:
        assert names[suffix].grad is not None, suffix
    assert torch.count_nonzero(layer.up.weight.grad) > 0


def test_dropout_applies_to_the_skill_branch_only() -> None:
    # With S = 0 the skill branch is 0 whatever dropout does, so LN gives its bias beta; then
    # h = W x + b + s B(beta * ReLU(T x)) holds only if T saw the undropped x (p = 0.999 drops almost all of x).
    layer = _layer(d_in=16, d_out=4, r=3, alpha=3.0, dropout=0.999)
    with torch.no_grad():
        layer.skill.weight.zero_()
        layer.norm.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
        layer.up.weight.normal_()
    layer.train()
    torch.manual_seed(1)
    x = torch.randn(4, 16)
    expected = layer.base(x) + (layer.norm.bias * torch.relu(layer.task(x))) @ layer.up.weight.T
    assert_close(layer(x), expected)
    dropped_for_t = layer.base(x) + (layer.norm.bias * torch.relu(layer.task(F.dropout(x, 0.999)))) @ layer.up.weight.T
    assert not torch.allclose(dropped_for_t, expected)


def test_the_skill_branch_sees_exactly_one_dropout_mask_and_the_task_branch_none() -> None:
    layer = _layer(d_in=16, d_out=4, r=3, alpha=3.0, dropout=0.5)
    with torch.no_grad():
        layer.up.weight.normal_()
    layer.train()
    x = torch.randn(4, 16)
    torch.manual_seed(7)
    x_dropped = F.dropout(x, 0.5, training=True)
    torch.manual_seed(7)
    out = layer(x)
    adapter = layer.norm(layer.skill(x_dropped)) * torch.relu(layer.task(x))
    assert_close(out, layer.base(x) + adapter @ layer.up.weight.T)
    layer.eval()
    assert not torch.allclose(layer(x), out)


def test_merge_refuses_because_the_update_depends_on_the_input() -> None:
    with pytest.raises(NotImplementedError, match=r"cannot be merged into the base weight.*depends on the input"):
        _layer().merge()


def test_the_parameter_formula_gives_393280_per_4096_module_at_rank_32() -> None:
    assert added_parameters(4096, 4096, 32) == 3 * 32 * 4096 + 64 == 393_280
    layer = _layer(d_in=5, d_out=7, r=3)
    assert sum(p.numel() for _, p in dual_lora_parameters(layer)) == added_parameters(5, 7, 3)


def _only_adapter_params_get_grads(model: nn.Module) -> None:
    adapter = {name for name, _ in dual_lora_parameters(model)}
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    assert with_grad == adapter
    assert all(name.endswith(ADAPTER_SUFFIXES) for name in adapter)


def test_apply_on_a_tiny_llama_wraps_q_and_v_keeps_logits_and_trains_only_the_adapter() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=100)  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 100, (2, 6))
    with torch.no_grad():
        before = model(input_ids=ids).logits
    n_before = sum(p.numel() for p in model.parameters())
    model.requires_grad_(False)  # the caller freezes the rest; apply only freezes the wrapped bases

    replaced = apply_dual_lora(model, ["q_proj", "v_proj"], r=4, alpha=8.0)

    assert replaced == [f"model.layers.{i}.self_attn.{m}" for i in range(2) for m in ("q_proj", "v_proj")]
    assert all(isinstance(model.get_submodule(name), DualLoRALinear) for name in replaced)
    with torch.no_grad():
        assert_close(model(input_ids=ids).logits, before, rtol=0, atol=0)
    # Added = layers x modules x (r d_in 2 + r d_out + 2 r); q: 32 -> 32, v: 32 -> 16 (2 kv heads of dim 8).
    added = sum(p.numel() for p in model.parameters()) - n_before
    assert added == 2 * (added_parameters(32, 32, 4) + added_parameters(32, 16, 4))
    assert added == sum(p.numel() for _, p in dual_lora_parameters(model))
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    _only_adapter_params_get_grads(model)


def test_apply_on_a_tiny_jamba_wraps_only_its_attention_layers_and_backward_runs() -> None:
    from transformers import JambaConfig, JambaForCausalLM

    torch.manual_seed(0)
    config = JambaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=4, attn_layer_period=2,
                         attn_layer_offset=1, expert_layer_period=2, expert_layer_offset=1, num_experts=2,
                         num_experts_per_tok=1, num_attention_heads=4, num_key_value_heads=2, vocab_size=100,
                         mamba_d_state=4, mamba_dt_rank=4, mamba_expand=2, use_mamba_kernels=False)  # fmt: skip
    model = JambaForCausalLM(config).eval()
    ids = torch.randint(0, 100, (2, 6))
    with torch.no_grad():
        before = model(input_ids=ids).logits
    model.requires_grad_(False)

    replaced = apply_dual_lora(model, ("q_proj", "v_proj"), r=4, alpha=8.0)

    assert replaced == [f"model.layers.{i}.self_attn.{m}" for i in (1, 3) for m in ("q_proj", "v_proj")]
    with torch.no_grad():
        assert_close(model(input_ids=ids).logits, before, rtol=0, atol=0)
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    _only_adapter_params_get_grads(model)


def test_applying_twice_does_not_nest_adapters() -> None:
    model = nn.Sequential()
    model.add_module("q_proj", nn.Linear(4, 4))
    assert apply_dual_lora(model, ["q_proj"], r=2) == ["q_proj"]
    with pytest.raises(ValueError):  # the only q_proj is already wrapped; its inner "base" is not a target
        apply_dual_lora(model, ["q_proj", "base"], r=2)
    assert isinstance(model.q_proj, DualLoRALinear) and type(model.q_proj.base) is nn.Linear


def test_no_matching_linear_raises_a_value_error_naming_the_targets() -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ValueError, match=r"q_proj.*v_proj"):
        apply_dual_lora(model, ["v_proj", "q_proj"])
