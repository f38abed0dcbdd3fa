"""The ``train`` and ``eval`` commands.

``train`` runs a stage plan on Ray Train with a progress bar; a wrong plan, a missing dataset or
a world size that does not divide a global batch exits with status 2 and one line before any
worker starts. ``eval`` scores a checkpoint on a held-out split as a table and JSON; a folder
without datasets, a split with no samples of the evaluated tasks, or a folder that is not a
checkpoint exits with status 2 and one line (the first two checked before the model loads).
``looks`` asks whether the model uses its picture (teacher-forced losses with its own picture,
another's and none); it fails as ``eval`` does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from datasets_builders.console import table_console

console = table_console()


plan_app = typer.Typer(help="Check stage plans against built datasets.", no_args_is_help=True)


@plan_app.command("check")
def plan_check_command(
    plan: Annotated[Path, typer.Argument(help="A stage plan, e.g. training/recipes/minigptv2.yaml.")],
    data: Annotated[Path | None, typer.Option(help="Folder of the plan's datasets (default: the plan's data_root).")]
    = None,
    raw: Annotated[str, typer.Option(help="Folder of the raw datasets, for the build commands shown.")] = "data/raw",
) -> None:
    """Every dataset the plan reads: built or not, its builder, its samples of the split and tasks; exit 1 if any is missing."""
    from rich.table import Table

    from training.plan import PlanError, load_plan
    from training.plan_check import check_plan, missing_lines

    try:
        statuses = check_plan(load_plan(plan), data)
    except PlanError as e:
        console.print(f"[red]{escape(str(e))}[/red]", highlight=False)
        raise typer.Exit(2) from None
    table = Table(title=f"{plan}: the datasets it reads")
    for column in ("stage", "entry", "folder", "split / tasks", "samples", "built", "status"):
        table.add_column(column, justify="right" if column == "samples" else "left")
    for s in statuses:
        table.add_row(s.stage, s.entry, str(s.folder), s.split + (f" / {', '.join(s.tasks)}" if s.tasks else ""),
                      f"{s.samples:,}", s.built or "-", "ok" if s.ok else f"[red]{escape(s.problem or '')}[/red]")
    console.print(table)
    if gaps := missing_lines(statuses, raw):
        console.print(f"{len([s for s in statuses if not s.ok])} of {len(statuses)} entries cannot serve:", highlight=False)
        for line in gaps:
            console.print(escape(line), highlight=False)
        raise typer.Exit(1)
    console.print(f"all {len(statuses)} entries are built with samples of their split and tasks", highlight=False)


def train_command(
    plan: Annotated[Path, typer.Option(help="A stage plan, e.g. training/recipes/tiny-demo.yaml.")],
    workers: Annotated[int, typer.Option(min=1, help="Ray Train workers (one GPU each where there are GPUs).")] = 2,
    cpus_per_worker: Annotated[float | None, typer.Option(
        help="CPUs each worker reserves (default: 0.5 when the cluster has no more CPUs than workers, else 1).")] = None,
    ray_address: Annotated[str | None, typer.Option(help="Join this Ray cluster (e.g. auto); default: a local one.")]
    = None,
    storage: Annotated[Path, typer.Option(help="Where runs live: <storage>/<run>/ (shared storage on a cluster).")]
    = Path("data/runs"),
    run: Annotated[str | None, typer.Option(help="Run name (default: the plan's); the same name resumes.")] = None,
    data: Annotated[Path | None, typer.Option(help="Folder of the plan's datasets (default: the plan's data_root).")]
    = None,
    strategy: Annotated[str, typer.Option(help="ddp, or fsdp (GPUs only: Ray Train refuses FSDP on CPU).")] = "ddp",
    loader_workers: Annotated[int, typer.Option(min=0, help="DataLoader worker processes per rank.")] = 0,
    max_failures: Annotated[int, typer.Option(min=0, help="Worker-group restarts from the last checkpoint.")] = 3,
) -> None:
    """Train through a stage plan on Ray Train; re-running the same run name resumes it."""
    from training.launch import train
    from training.plan import PlanError, load_plan

    try:
        total = load_plan(plan).total_steps
    except PlanError as e:
        console.print(f"[red]{escape(str(e))}[/red]", highlight=False)
        raise typer.Exit(2) from None
    with training_progress(total) as show:
        try:
            result = train(plan, workers=workers, cpus_per_worker=cpus_per_worker, ray_address=ray_address,
                           storage=storage, run=run, data_root=data, strategy=strategy,
                           loader_workers=loader_workers, max_failures=max_failures, progress=show)
        except (PlanError, ValueError) as e:
            console.print(f"[red]{escape(str(e))}[/red]", highlight=False)
            raise typer.Exit(2) from None
    m = result.metrics
    console.print(f"{escape(str(result.run_dir))}: {m.get('global_step', 0)} steps in {result.seconds:.0f} s, "
                  f"last loss {m.get('loss', float('nan')):.3f}", highlight=False)
    for stage in result.stages:
        console.print(f"  {escape(str(stage))}", highlight=False)
    console.print(f"next: crayonflow eval --checkpoint {escape(str(result.stages[-1]))} --data "
                  f"{escape(str(data or 'data/datasets'))}", highlight=False)


@contextmanager
def training_progress(total: int) -> Iterator[Callable[[dict], None]]:
    """A progress bar over a plan's steps; the callback takes the metrics rank 0 reports."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("training", total=total)

        def show(metrics: dict) -> None:
            bar.update(task, completed=metrics["global_step"],
                       description=f"{metrics['stage_name']}: loss {metrics['loss']:.3f}")

        yield show


def evaluate_command(
    checkpoint: Annotated[Path, typer.Option(help="A checkpoint folder (model.json, tokenizer/, *.safetensors).")],
    data: Annotated[Path, typer.Option(help="A folder of dataset folders (each with manifest.json).")],
    split: Annotated[str, typer.Option(help="The held-out split to score.")] = "val",
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many samples per task.")] = None,
    out: Annotated[Path | None, typer.Option(help="The JSON report (default: <checkpoint>/eval-<split>.json).")]
    = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Questions per generation batch (twice as many prompts "
                                                        "with the blind control).")] = 64,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Longest answer, in tokens.")] = 48,
    blind: Annotated[bool, typer.Option(help="Also ask every question with another sample's image (the blind "
                                              "control; twice the answering time).")] = True,
    seed: Annotated[int, typer.Option(help="Seed of the blind control's derangement and bootstrap.")] = 0,
) -> None:
    """Score refer, identify, vqa, caption and the crayon probes (C2B, B2C) on a held-out split, per
    task and question family, each beside its blind control (the same questions with the images
    deranged among the task's samples) and the gap's 95 % bootstrap interval."""
    from models.checkpoint import load_model
    from training.evaluate import evaluate, find_datasets, held_out, looking_summary

    try:
        datasets = find_datasets(data) if data.is_dir() else None
        if datasets is None:
            raise ValueError(f"{data}: no such folder (--data: a folder of dataset folders)")
        counts = held_out(datasets, split)
        model = load_model(checkpoint)
        console.print(f"{split}: " + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())) + " samples",
                      highlight=False)
        with console.status("answering"):
            report = evaluate(model, datasets, split=split, limit=limit, batch_size=batch_size,
                              max_new_tokens=max_new_tokens, blind=blind, seed=seed)
        target = out or checkpoint / f"eval-{split}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    except (ValueError, OSError) as e:
        console.print(f"[red]{escape(str(e))}[/red]", highlight=False)
        raise typer.Exit(2) from None
    console.print(report.table())
    console.print(escape(looking_summary(report.scores)), highlight=False)
    console.print(f"wrote {escape(str(target))}", highlight=False)


def looks_command(
    checkpoint: Annotated[Path, typer.Option(help="A checkpoint folder (model.json, tokenizer/, *.safetensors).")],
    data: Annotated[Path, typer.Option(help="A folder of dataset folders (each with manifest.json).")],
    split: Annotated[str, typer.Option(help="The held-out split to probe.")] = "val",
    per_task: Annotated[int, typer.Option(min=1, help="The first N samples with a picture of each task.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the derangement and the bootstrap.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON only.")] = False,
) -> None:
    """Does the model use its picture? Answer-token loss with its own picture, another sample's and
    none, per task and question family (teacher forced: a minute, not a generation run)."""
    from models.checkpoint import load_model
    from training.evaluate import find_datasets
    from training.looks import looks, pictured

    try:
        if not data.is_dir():
            raise ValueError(f"{data}: no such folder (--data: a folder of dataset folders)")
        datasets = find_datasets(data)
        pictured(datasets, split)
        model = load_model(checkpoint)
        report = looks(model, datasets, split=split, per_task=per_task, seed=seed)
    except (ValueError, OSError) as e:
        console.print(f"[red]{escape(str(e))}[/red]", highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        console.print(report.table())
