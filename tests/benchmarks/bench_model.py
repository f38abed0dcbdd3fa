"""Model speed and size, measured in one run: ``make bench``.

CPU, the tiny preset: forward + backward tokens/s on one batch of 8 rows (MiniGPT-v2 template,
a 16-visual-token image per row and a short answer), against the same rows text-only (the
vision tower and connector skipped): the ratio is what the vision path costs. Then every option
of the tiny preset: its parameters (total, trainable) and forward + backward time, as a ratio to
the plain tiny model measured in the same run. Median of ``--repeats`` timed steps after warm-up,
one torch thread.

``--gpu`` (CUDA only; says so and skips otherwise): a ~1B-parameter configuration (CLIP-L-sized
tower at 224 px, Llama with width 2048 and 18 layers, LoRA r=64 on q/v) in bf16: tokens/s and
model FLOPs utilisation, counting 6 x parameters FLOPs per token for forward + backward (the usual
convention; with a frozen base the weight gradients are skipped, so this overstates the work
done) against the device's dense bf16 peak given by ``--peak-tflops``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from models.build import build_model
from models.config import ModelConfig
from models.presets import tiny
from models.prompt import collate, encode_conversation

OPTIONS = {"merger (MiniGPT-v2)": {}, "mlp connector": {"connector": "mlp"}, "vce connector": {"connector": "vce"},
           "crayon prompt": {"crayon": True}, "crayon + per-layer branch": {"crayon_layers": True},
           "jamba llm": {"llm": "jamba"}, "dual-lora": {"adapter": "dual-lora"}, "dual (two) lora": {"adapter": "dual"}}


def batch(model, rows: int, images: bool, device: str = "cpu") -> dict:
    tok, side = model.tokenizer, model.vision.image_size
    encoded = [encode_conversation(tok, [("user", f"[refer] where is the red circle number {i} ?"),
                                         ("assistant", "{<12><30><45><77>}")],
                                   visual_tokens=model.visual_tokens if images else None) for i in range(rows)]
    out = collate(encoded, tok.pad_token_id)
    if images:
        out["pixel_values"] = torch.randn(rows, 3, side, side)
        if model.crayon is not None:
            out["crayon"] = torch.randint(0, 10, (rows, model.vision.grid, model.vision.grid, 2))
    return {k: v.to(device) for k, v in out.items()}


def step_seconds(model, inputs: dict, repeats: int) -> float:
    """Median wall time of forward + backward (gradients cleared each time)."""
    times = []
    for i in range(repeats + 2):
        model.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        model(**inputs).loss.backward()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if i >= 2:  # warm-up steps are not counted
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def cpu_bench(repeats: int) -> None:
    torch.set_num_threads(1)
    model = build_model(tiny()).train()
    with_images, text_only = batch(model, 8, True), batch(model, 8, False)
    seconds = {name: step_seconds(model, b, repeats) for name, b in (("images", with_images), ("text", text_only))}
    tokens = {"images": int(with_images["attention_mask"].sum()), "text": int(text_only["attention_mask"].sum())}
    for name in seconds:
        print(f"tiny, fwd+bwd, 8 rows {'with' if name == 'images' else 'without'} the vision path: "
              f"{tokens[name]} tokens, {seconds[name] * 1e3:.1f} ms, {tokens[name] / seconds[name]:,.0f} tokens/s")
    print(f"vision path: {seconds['images'] / seconds['text']:.2f}x the step time for "
          f"{tokens['images'] / tokens['text']:.2f}x the tokens")
    print(f"\n{'option':28} {'parameters':>12} {'trainable':>10} {'fwd+bwd ms':>11} {'vs merger':>10}")
    baseline = None
    for name, options in OPTIONS.items():
        variant = build_model(tiny(**options)).train()
        ms = step_seconds(variant, batch(variant, 8, True), repeats) * 1e3
        baseline = baseline or ms
        total = sum(p.numel() for p in variant.parameters())
        trainable = sum(p.numel() for p in variant.parameters() if p.requires_grad)
        print(f"{name:28} {total:>12,} {trainable:>10,} {ms:>11.1f} {ms / baseline:>9.2f}x")


def gpu_bench(repeats: int, peak_tflops: float) -> None:
    if not torch.cuda.is_available():
        print("--gpu: no CUDA device here; the ~1B bf16 measurement is skipped")
        return
    config = ModelConfig.from_dict({
        "vision": {"model_type": "clip_vision_model", "init": {"hidden_size": 1024, "intermediate_size": 4096,
                                                               "num_hidden_layers": 24, "num_attention_heads": 16,
                                                               "image_size": 224, "patch_size": 14}},
        "connector": {"kind": "merger", "merge": 4},
        "llm": {"model_type": "llama", "init": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 18,
                                                "num_attention_heads": 16, "num_key_value_heads": 16,
                                                "max_position_embeddings": 4096}},
        "adapter": {"kind": "lora", "rank": 64, "alpha": 16.0, "target_modules": ["q_proj", "v_proj"]},
    })
    model = build_model(config).to("cuda", torch.bfloat16).train()
    inputs = batch(model, 16, True, "cuda")
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
    seconds = step_seconds(model, inputs, repeats)
    tokens = int(inputs["attention_mask"].sum())
    params = sum(p.numel() for p in model.parameters())
    achieved = 6 * params * tokens / seconds / 1e12
    print(f"~1B ({params / 1e9:.2f} B parameters) bf16 on {torch.cuda.get_device_name(0)}: {tokens / seconds:,.0f} "
          f"tokens/s, {achieved:.1f} TFLOP/s = {achieved / peak_tflops:.1%} MFU (6N per token, peak {peak_tflops:g})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--gpu", action="store_true", help="also the ~1B bf16 configuration, where CUDA is")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100/H200 SXM: 989)")
    args = parser.parse_args()
    cpu_bench(args.repeats)
    if args.gpu:
        gpu_bench(args.repeats, args.peak_tflops)
    return 0


if __name__ == "__main__":
    sys.exit(main())
