"""The model commands: ``chat`` and ``model init|export|info``.

``model init --preset tiny --out DIR`` writes an untrained tiny checkpoint (the demo and tests
start from it); ``chat`` answers one instruction about one image from any checkpoint. A folder
that is not a checkpoint, an unreadable image or a configuration that cannot be built exits
with status 2 and one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

model_app = typer.Typer(help="Create, inspect and export model checkpoints.", no_args_is_help=True)
console = Console(soft_wrap=True)

Checkpoint = Annotated[Path, typer.Option(help="A checkpoint folder (model.json, tokenizer/, *.safetensors).")]


def chat(
    instruction: Annotated[str, typer.Argument(help='With its task identifier, e.g. "[refer] where is the red circle"')],
    checkpoint: Checkpoint,
    image: Annotated[Path, typer.Option(help="The picture to ask about (JPEG or PNG).")],
    crayon: Annotated[Path | None, typer.Option(help="Its crayon.png (crayon models; default: no segments).")] = None,
    draw: Annotated[Path | None, typer.Option(help="Save the image with the answer's boxes drawn here.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Longest answer, in tokens.")] = 64,
) -> None:
    """Answer one instruction about one image; box answers are printed in pixels."""
    import numpy as np
    from PIL import Image as PILImage

    from datasets_builders.formats.crayon import read_crayon
    from models.chat import ask, draw_boxes

    with _one_line_errors():
        model = _load(checkpoint)
        try:
            with PILImage.open(image) as opened:
                picture = opened.convert("RGB")
            crayon_map = np.stack(read_crayon(crayon.read_bytes()), -1) if crayon else None
        except OSError as e:
            raise ValueError(f"{image if crayon is None else f'{image} or {crayon}'}: cannot be read ({e})") from None
        answer = ask(model, picture, instruction, crayon=crayon_map, max_new_tokens=max_new_tokens)
    console.print(escape(answer.text) if answer.text else "[dim](empty answer)[/dim]", highlight=False)
    for i, box in enumerate(answer.boxes, start=1):
        console.print(f"box {i}: x0={box.x0:.0f} y0={box.y0:.0f} x1={box.x1:.0f} y1={box.y1:.0f} px "
                      f"({picture.width}x{picture.height} image)", highlight=False)
    if draw is not None:
        draw_boxes(picture, answer.boxes).save(draw)
        console.print(f"drew {len(answer.boxes)} boxes: {escape(str(draw))}", highlight=False)


@model_app.command()
def init(
    out: Annotated[Path, typer.Option(help="New checkpoint folder.")],
    preset: Annotated[str, typer.Option(help="tiny")] = "tiny",
    connector: Annotated[str, typer.Option(help="merger, mlp or vce")] = "merger",
    crayon: Annotated[bool, typer.Option(help="Add CoLLaVO's crayon prompt.")] = False,
    crayon_layers: Annotated[bool, typer.Option(help="Also its per-layer branch.")] = False,
    llm: Annotated[str, typer.Option(help="llama or jamba")] = "llama",
    adapter: Annotated[str, typer.Option(help="lora, dual (two named LoRAs) or dual-lora")] = "lora",
) -> None:
    """Write an untrained checkpoint of a preset (random weights, locally trained tokenizer)."""
    from models.build import build_model
    from models.checkpoint import save_model
    from models.presets import PRESETS

    with _one_line_errors():
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)} "
                             "(minigptv2-7b needs local folders: models.presets.minigptv2_7b)")
        config = PRESETS[preset](connector=connector, crayon=crayon, crayon_layers=crayon_layers, llm=llm,
                                 adapter=adapter)
        model = build_model(config)
        save_model(model, out)
    console.print(f"{escape(str(out))}: {preset} checkpoint, {_count(model)}", highlight=False)


@model_app.command()
def info(checkpoint: Annotated[Path, typer.Argument(help="A checkpoint folder.")]) -> None:
    """Parameters per part and the configuration of a checkpoint."""
    import json

    with _one_line_errors():
        model = _load(checkpoint)
    console.print(f"{escape(str(checkpoint))}: {_count(model)}", highlight=False)
    console.print(escape(json.dumps(model.config.to_dict(), indent=1)), highlight=False)


@model_app.command()
def export(checkpoint: Checkpoint, out: Annotated[Path, typer.Option(help="New folder for the export.")]) -> None:
    """A standalone copy with LoRA merged into the LLM (transformers folders llm/ and vision/)."""
    from models.checkpoint import export_merged

    with _one_line_errors():
        export_merged(checkpoint, out)
    console.print(f"{escape(str(out))}: exported from {escape(str(checkpoint))}, LoRA merged", highlight=False)


def _load(checkpoint: Path):  # noqa: ANN202 - a GroundedVLM
    from models.checkpoint import load_model

    return load_model(checkpoint)


def _count(model) -> str:  # noqa: ANN001
    from models.grounded_vlm import PARTS

    sizes = {part: sum(p.numel() for _, p in model.part_parameters(part)) for part in PARTS}
    total = sum(p.numel() for p in model.parameters())
    return f"{total:,} parameters; " + ", ".join(f"{part} {n:,}" for part, n in sizes.items() if n)


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """ValueError (ConfigError, CheckpointError, bad input) -> its message in red, exit status 2."""
    try:
        yield
    except ValueError as e:
        console.print(f"[red]{escape(str(e))}[/red]", highlight=False)
        raise typer.Exit(2) from None
