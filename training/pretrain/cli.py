"""``crayonflow pretrain llm|vision``: the tiny model's parts, pretrained on the sample world.

The commands import the training code when they run, not when the command line starts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from training.pretrain.defaults import LLM_DEFAULTS, VISION_DEFAULTS, VISION_WORLD_SEED

pretrain_app = typer.Typer(help="Pretrain the tiny model's parts on the sample world (cached by fingerprint).",
                           no_args_is_help=True)


def llm_command(
    out: Path = typer.Option(..., "--out", help="Folder for the save_pretrained Llama and its tokenizer."),
    steps: int = typer.Option(LLM_DEFAULTS["steps"], help="Optimizer steps."),
    batch: int = typer.Option(LLM_DEFAULTS["batch"], help="Samples per step."),
    lr: float = typer.Option(LLM_DEFAULTS["lr"], help="Peak learning rate (warm-up, then cosine to 0)."),
    seed: int = typer.Option(0, help="Initialisation and sampling seed."),
    scenes: int = typer.Option(1000, help="Training scenes generated from the training world seed."),
    held_out_scenes: int = typer.Option(100, help="Held-out scenes (another seed) for the own/blind table."),
    threads: int = typer.Option(2, help="torch threads (speed only; on a busy machine 1 can be faster)."),
    weights: str = typer.Option("", help="Task shares of the rows, e.g. 'vqa=1,refer=2,identify=1' "
                                         "(default: each scene's questions alike)."),
) -> None:
    """Pretrain the tiny Llama on text versions of the sample world's tasks (scene as text in the image slot)."""
    from rich.console import Console

    from training.pretrain.llm import held_out_table, pretrain_llm

    try:
        task_weights = dict((name.strip(), float(share)) for name, share in
                            (item.split("=", 1) for item in weights.split(",") if item.strip())) or None
        report = pretrain_llm(out, steps=steps, batch=batch, lr=lr, seed=seed, scenes=scenes,
                              held_out_scenes=held_out_scenes, threads=threads, task_weights=task_weights)
    except ValueError as e:
        raise typer.BadParameter(f"{e} (--weights {weights!r}: task=share, comma-separated)") from None
    console = Console()
    console.print(held_out_table(report))
    state = "reused (fingerprint matches)" if report["reused"] else f"trained in {report['minutes']} min"
    console.print(f"{report['folder']}: {state}")


def vision_command(
    out: Annotated[Path, typer.Option(help="Folder for the pretrained tower (save_pretrained + patch-heads.pt).")],
    steps: Annotated[int, typer.Option(min=1, help="Optimiser steps.")] = VISION_DEFAULTS["steps"],
    batch: Annotated[int, typer.Option(min=1, help="Scenes per step.")] = VISION_DEFAULTS["batch"],
    lr: Annotated[float, typer.Option(help="Peak learning rate (warm-up, then cosine to a tenth).")]
    = VISION_DEFAULTS["lr"],
    image_size: Annotated[int, typer.Option(help="Input side in pixels (a multiple of 14).")]
    = VISION_DEFAULTS["image_size"],
    seed: Annotated[int, typer.Option(help="Seed of the initialisation and the batch order.")] = 0,
    scenes: Annotated[int, typer.Option(min=1, help="Freshly rendered training scenes.")] = VISION_DEFAULTS["scenes"],
    held_out: Annotated[int, typer.Option(min=1, help="Held-out scenes the accuracies are measured on.")]
    = VISION_DEFAULTS["held_out"],
    shape_radius: Annotated[int, typer.Option(min=0, help="Each patch predicts the shapes within this many "
                                                          "patches of it (0: its own).")] = VISION_DEFAULTS[
        "shape_radius"],
    flip: Annotated[bool, typer.Option(help="Mirror half the training pictures left-right.")]
    = VISION_DEFAULTS["flip"],
    world_seed: Annotated[int, typer.Option(help="The sample world the scenes come from.")] = VISION_WORLD_SEED,
) -> None:
    """Pretrain the tiny CLIP ViT on dense per-patch truth; reused while its arguments and code are unchanged."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

    from training.pretrain.vision import pretrain_vision

    console = Console(soft_wrap=True)
    with Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
             console=console) as bar:
        task = bar.add_task("rendering", total=None)

        def show(description: str, completed: int, total: int) -> None:
            bar.update(task, description=description, completed=completed, total=total)

        try:
            folder, report, reused = pretrain_vision(out, steps=steps, batch=batch, lr=lr, seed=seed,
                                                     world_seed=world_seed, scenes=scenes, held_out=held_out,
                                                     image_size=image_size, shape_radius=shape_radius, flip=flip,
                                                     progress=show)
        except ValueError as e:
            console.print(f"[red]{escape(str(e))}[/red]", highlight=False)
            raise typer.Exit(2) from None
    held = report.get("held_out", {})
    console.print(f"held-out per patch: category {held.get('category', float('nan')):.3f} (majority "
                  f"{held.get('majority_baseline', float('nan')):.3f}), on thing patches: colour "
                  f"{held.get('colour', float('nan')):.3f}, shape {held.get('shape', float('nan')):.3f}, "
                  f"thing recall {held.get('thing_recall', float('nan')):.3f}", highlight=False)
    state = "reused (fingerprint unchanged)" if reused else f"built in {report.get('minutes', 0):.1f} min"
    console.print(f"{escape(str(folder))}: {state}; load it with tiny(vision_checkpoint=...)", highlight=False)


pretrain_app.command("llm")(llm_command)
pretrain_app.command("vision")(vision_command)
