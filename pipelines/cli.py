"""The ``crayonflow`` command: mounts each package's commands; heavy imports stay inside commands."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from datasets_builders.cli import make_build_command, sample_world, shards_app
from datasets_builders.segment.cli import segment
from models.cli import chat, model_app
from training.cli import train_command
from training.cli import evaluate_command

def _pseudo_labeler(checkpoint: Path):  # noqa: ANN202 - see datasets_builders.cli.LabelerFactory
    """Multiround's pseudo-labels come from a trained model: the layer that owns models makes the labeler."""
    from models.chat import pseudo_labeler

    return pseudo_labeler(checkpoint)


app = typer.Typer(
    help="Crayonflow: build grounded vision-language datasets and train on them.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("sample-world")(sample_world)
app.command("build")(make_build_command(labeler_factory=_pseudo_labeler))
app.command("segment")(segment)
app.add_typer(shards_app, name="shards")
app.command("chat")(chat)
app.add_typer(model_app, name="model")
app.command("train")(train_command)
app.command("eval")(evaluate_command)
console = Console(soft_wrap=True)

DEFAULT_DATA_DIR = Path(os.environ.get("CRAYONFLOW_DATA", "data"))


@app.command()
def demo(
    data_dir: Annotated[Path, typer.Option(help="Where raw data and datasets land (env CRAYONFLOW_DATA).")] = DEFAULT_DATA_DIR,
    images: Annotated[int, typer.Option(min=1, help="Generated scenes to build from.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the generated world.")] = 0,
    train: Annotated[bool, typer.Option(help="Also train the tiny model through the plan and evaluate it.")] = True,
    plan: Annotated[Path | None, typer.Option(help="Stage plan (default: training/recipes/tiny-demo.yaml).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Ray Train workers.")] = 2,
) -> None:
    """Run the whole pipeline on embedded defaults (a generated sample world) and check what it wrote."""
    from rich import box
    from rich.table import Table

    from datasets_builders.segment.run import quiet_ray_logs
    from pipelines.demo import run_demo

    quiet_ray_logs()
    result = run_demo(data_dir, images=images, seed=seed)
    console.print(f"sample world: {escape(str(result.world))} ({images} scenes, seed {seed}"
                  f"{', reused' if result.world_reused else ''})")
    table = Table(title=f"datasets in {escape(str(data_dir / 'datasets'))}", title_justify="left",
                  box=box.SIMPLE, pad_edge=False, collapse_padding=True)
    for column in ("dataset", "read", "samples", "rejects", "MB", "state"):
        table.add_column(column, justify="left" if column in ("dataset", "state") else "right", no_wrap=True)
    for d in result.datasets:
        m = d.build.manifest
        verdict = "[green]verified[/green]" if d.report.ok else "[red]DAMAGED[/red]"
        state = f"{'reused' if d.build.reused else 'built'}, {verdict}"
        table.add_row(escape(d.name), str(m.counts.read), str(m.counts.written), str(m.counts.records_rejected),
                      f"{m.total_bytes / 1e6:.1f}", state)
    console.print(table)
    for d in result.datasets:
        for problem in d.report.problems:
            console.print(f"[red]DAMAGED[/red] {escape(str(problem))}")
    if not result.ok:
        raise typer.Exit(1)
    console.print(f"inspect one with: crayonflow shards info {escape(str(data_dir / 'datasets' / result.datasets[0].name))}")
    if train:
        _demo_training(data_dir, plan, workers)


def _demo_training(data_dir: Path, plan: Path | None, workers: int) -> None:
    from rich import box
    from rich.table import Table

    from pipelines.demo import DEMO_PLAN, run_demo_training
    from training.cli import training_progress
    from training.plan import load_plan

    plan = plan or DEMO_PLAN
    with training_progress(load_plan(plan).total_steps) as show:
        result = run_demo_training(data_dir, plan=plan, workers=workers, progress=show)
    console.print(f"trained {len(result.stages)} stages on {workers} Ray workers in {result.seconds:.0f} s: "
                  f"{escape(str(result.run_dir))}")
    table = Table(title=f"held-out ({result.trained['split']}) scores", title_justify="left", box=box.SIMPLE,
                  pad_edge=False, collapse_padding=True)
    for column in ("task", "metric", "n", "untrained", "trained"):
        table.add_column(column, justify="left" if column in ("task", "metric") else "right")
    before = {(s["task"], s["metric"]): s["value"] for s in result.untrained["scores"]}
    for s in result.trained["scores"]:
        table.add_row(s["task"], s["metric"], str(s["n"]), f"{before[(s['task'], s['metric'])]:.3f}",
                      f"{s['value']:.3f}")
    console.print(table)
    picture = next(iter(sorted((data_dir / "raw" / "sample-world" / "coco-panoptic").glob("val2017/*.jpg"))), None)
    console.print(escape(f"ask it: crayonflow chat --checkpoint {result.stages[-1]} --image {picture or 'IMAGE'} "
                         '"[vqa] what color is the circle?"'), highlight=False)


if __name__ == "__main__":
    app()
