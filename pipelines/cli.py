"""The ``crayonflow`` command: mounts each package's commands; heavy imports stay inside commands."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from datasets_builders.cli import shards_app

app = typer.Typer(
    help="Crayonflow: build grounded vision-language datasets and train on them.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(shards_app, name="shards")
console = Console(soft_wrap=True)

DEFAULT_DATA_DIR = Path(os.environ.get("CRAYONFLOW_DATA", "data"))


@app.command()
def demo(
    data_dir: Annotated[Path, typer.Option(help="Where datasets land (env CRAYONFLOW_DATA).")] = DEFAULT_DATA_DIR,
    images: Annotated[int, typer.Option(min=1, help="Generated scenes to build from.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the generated world.")] = 0,
) -> None:
    """Run the whole pipeline on embedded defaults (generated data) and check what it wrote."""
    from pipelines.demo import run_demo

    result = run_demo(data_dir, images=images, seed=seed)
    m, report = result.manifest, result.report
    verb = "reused (identical build already committed)" if result.reused else "built"
    console.print(f"{escape(str(result.dataset))}: {verb}: {m.counts.written} samples in {len(m.shards)} shards, "
                  f"{m.total_bytes / 1e6:.1f} MB")
    if not report.ok:
        for problem in report.problems:
            console.print(f"[red]DAMAGED[/red] {escape(str(problem))}")
        raise typer.Exit(1)
    console.print(f"[green]verified[/green] {report.shards} shards, {report.members} members; "
                  f"inspect with: crayonflow shards info {escape(str(result.dataset))}")


if __name__ == "__main__":
    app()
