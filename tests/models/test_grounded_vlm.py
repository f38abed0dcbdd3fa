"""GroundedVLM: splicing, loss, what trains, and every option forward and backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.build import build_model
from models.config import ConfigError
from models.presets import tiny
from models.prompt import IGNORE, collate, encode_conversation
from tests.models.batches import VARIANTS, batch_for

@pytest.fixture(scope="module")
def model():
    return build_model(tiny(crayon=True))


def test_visual_tokens_land_exactly_at_the_image_positions(model):
    batch = batch_for(model)
    embeds = model.embed(batch["input_ids"], batch["image_mask"], batch["pixel_values"], batch["crayon"])
    visual, _ = model.encode_images(batch["pixel_values"], batch["crayon"])
    mask = batch["image_mask"]
    assert model.visual_tokens == 16 and mask.sum() == 32
    torch.testing.assert_close(embeds[mask], visual.reshape(-1, visual.shape[-1]))
    token_embeds = model.llm.get_input_embeddings()(batch["input_ids"])
    torch.testing.assert_close(embeds[~mask], token_embeds[~mask])
    # images are taken in row order: row 0 gets image 0, row 2 image 1
    torch.testing.assert_close(embeds[2][mask[2]], visual[1])


def test_the_loss_is_the_llms_own_causal_loss_over_answers(model):
    batch = batch_for(model)
    out = model(**batch)
    embeds = model.embed(batch["input_ids"], batch["image_mask"], batch["pixel_values"], batch["crayon"])
    reference = model.llm(inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    torch.testing.assert_close(out.loss, reference)
    manual = F.cross_entropy(out.logits[:, :-1].reshape(-1, out.logits.shape[-1]), batch["labels"][:, 1:].reshape(-1),
                             ignore_index=IGNORE)
    torch.testing.assert_close(out.loss, manual)
    assert out.supervised.sum() == (batch["labels"] != IGNORE).sum()


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_option_runs_forward_and_backward_and_only_trainable_parts_get_gradients(variant):
    model = build_model(tiny(**VARIANTS[variant]))
    out = model(**batch_for(model))
    assert torch.isfinite(out.loss) and out.loss > 0
    out.loss.backward()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    assert with_grad == trainable  # every trainable part is reached, nothing else is
    expected = {name for part in ("connector", "crayon", "adapter") for name, _ in model.part_parameters(part)}
    assert trainable == expected
    assert not any(n.startswith("vision.") for n in trainable)
    assert any(".lora_" in n or ".skill." in n for n in trainable)


def test_a_batch_without_images_skips_the_vision_path(model):
    tok = model.tokenizer
    batch = collate([encode_conversation(tok, [("user", "hi"), ("assistant", "there")], visual_tokens=None)],
                    tok.pad_token_id)
    out = model(**batch)
    assert torch.isfinite(out.loss)


def test_images_and_their_positions_must_agree(model):
    batch = batch_for(model)
    with pytest.raises(ValueError, match="image_mask holds 2 images but 1 pixel_values were passed"):
        model(**{**batch, "pixel_values": batch["pixel_values"][:1], "crayon": batch["crayon"][:1]})
    broken = batch["image_mask"].clone()
    broken[0, 1] = True
    with pytest.raises(ValueError, match="not a multiple of the 16 visual tokens"):
        model(**{**batch, "image_mask": broken})
    with pytest.raises(ValueError, match="pass crayon maps"):
        model(**{**batch, "crayon": None})


def test_dual_lora_adapters_are_both_active_and_one_trains_per_batch():
    model = build_model(tiny(adapter="dual"))
    batch = batch_for(model)
    before = model(**batch).logits
    for adapter in ("crayon", "vl"):  # perturbing either adapter changes the forward: both are active
        name, param = next((n, p) for n, p in model.part_parameters("adapter") if f".lora_B.{adapter}." in n)
        with torch.no_grad():
            param.add_(0.5)
        assert not torch.allclose(model(**batch).logits, before), name
        with torch.no_grad():
            param.sub_(0.5)
    model.set_trainable(("connector", "adapter"), adapter="vl")
    trains = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trains and all(".vl." in n for n in trains if ".lora_" in n)
    assert any(n.startswith("connector.") for n in trains)
    model(**batch).loss.backward()
    assert all(p.grad is None for n, p in model.named_parameters() if ".lora_" in n and ".crayon." in n)
    with pytest.raises(ValueError, match="unknown adapter 'text'"):
        model.set_trainable(("adapter",), adapter="text")


def test_a_stage_can_train_the_vision_tower_too(model):
    model.set_trainable(("vision", "connector"))
    assert all(p.requires_grad for _, p in model.part_parameters("vision"))
    assert not any(p.requires_grad for _, p in model.part_parameters("adapter"))
    model.train()
    assert model.vision.training  # a trained tower leaves eval mode
    model(**batch_for(model)).loss.backward()
    reached = {n for n, p in model.part_parameters("vision") if p.grad is not None}  # gradients reach it,
    assert reached == {n for n, _ in model.part_parameters("vision") if "post_layernorm" not in n}  # all it uses
    model.zero_grad(set_to_none=True)
    model.set_trainable(("connector", "crayon", "adapter"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error; this machine has CUDA")
def test_qlora_without_cuda_fails_in_one_clear_line():
    config = tiny().replace(adapter={"quantize": "nf4"})
    with pytest.raises(ConfigError, match=r"^model.adapter.quantize: nf4 \(QLoRA\) needs a CUDA GPU"):
        build_model(config)


@pytest.mark.parametrize("variant", ["merger", "crayon-layers", "jamba"])
def test_generation_returns_new_tokens_only(variant):
    model = build_model(tiny(**VARIANTS[variant])).eval()
    from models.prompt import encode_prompt

    tok = model.tokenizer
    batch = collate([encode_prompt(tok, "[refer] where is the circle", visual_tokens=model.visual_tokens)],
                    tok.pad_token_id)
    pixels = torch.randn(1, 3, 112, 112)
    crayon = torch.zeros(1, 8, 8, 2, dtype=torch.long) if model.crayon is not None else None
    answer = model.generate(batch["input_ids"], batch["attention_mask"], batch["image_mask"], pixels, crayon,
                            max_new_tokens=6)[0]
    assert 0 < len(answer) <= 6 and tok.eos_token_id not in answer
    # greedy: the first new token is the argmax of the forward pass at the prompt's last position
    logits = model(batch["input_ids"], batch["attention_mask"], batch["image_mask"], pixel_values=pixels,
                   crayon=crayon).logits
    assert answer[0] == int(logits[0, -1].argmax())


def test_batched_generation_of_left_padded_prompts_equals_one_at_a_time():
    from models.prompt import encode_prompt

    model = build_model(tiny()).eval()
    tok = model.tokenizer
    prompts = [encode_prompt(tok, "[refer] where is the circle", visual_tokens=model.visual_tokens),
               encode_prompt(tok, "[caption] a much longer instruction than the first one is", visual_tokens=None),
               encode_prompt(tok, "[vqa] what colour is the square on the left ?", visual_tokens=model.visual_tokens)]
    pixels = torch.randn(2, 3, 112, 112)
    batch = collate(prompts, tok.pad_token_id, left=True)
    together = model.generate(batch["input_ids"], batch["attention_mask"], batch["image_mask"], pixels,
                              max_new_tokens=5)
    images = iter(pixels)
    for prompt, answer in zip(prompts, together):
        one = collate([prompt], tok.pad_token_id)
        image = next(images)[None] if prompt.has_image else None
        assert model.generate(one["input_ids"], one["attention_mask"], one["image_mask"], image,
                              max_new_tokens=5)[0] == answer
