"""The ``crayonflow`` command: mounts each package's commands; heavy imports stay inside commands."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from datasets_builders.cli import export, make_build_command, sample_world, shards_app
from datasets_builders.console import table_console
from datasets_builders.segment.cli import segment
from models.cli import chat, model_app
from training.cli import evaluate_command, looks_command, plan_app, train_command
from training.pretrain.cli import pretrain_app

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
app.command("export")(export)
app.command("chat")(chat)
app.add_typer(model_app, name="model")
app.command("train")(train_command)
app.add_typer(plan_app, name="plan")
app.command("eval")(evaluate_command)
app.add_typer(pretrain_app, name="pretrain")
app.command("looks")(looks_command)
console = table_console()

DEFAULT_DATA_DIR = Path(os.environ.get("CRAYONFLOW_DATA", "demo-output"))


@app.command()
def demo(
    data_dir: Annotated[Path, typer.Option(help="Where everything lands (env CRAYONFLOW_DATA).")] = DEFAULT_DATA_DIR,
    images: Annotated[int, typer.Option(min=1, help="Generated scenes to build from.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the generated world.")] = 0,
    train: Annotated[bool, typer.Option(help="Also train the tiny model through the plan and evaluate it.")] = True,
    plan: Annotated[Path | None, typer.Option(help="Stage plan (default: training/recipes/tiny-demo.yaml).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Ray Train workers.")] = 2,
    val_scenes: Annotated[int | None, typer.Option(min=0, help="Extra val-only scenes, so every scored task has "
                                                               "enough held-out samples (default: 200).")] = None,
) -> None:
    """Run the whole pipeline as the ``demo`` flow on the project's local Prefect server (started
    if it is not running; it keeps running so you can look at the run), and report what it made."""
    from datasets_builders.segment.run import quiet_ray_logs
    from pipelines.demo import DEMO_PLAN, DEMO_VAL_SCENES
    from pipelines.server import LocalServer, ensure_server, using

    quiet_ray_logs()
    server = LocalServer(data_dir / "prefect")
    started = ensure_server(server)
    console.print(f"Prefect server {'started' if started else 'running'} at {server.ui_url} "
                  f"(PREFECT_HOME {escape(str(server.home))})")
    with using(server):
        from pipelines.flows.demo import demo as demo_flow

        state = demo_flow(data_dir=str(data_dir), images=images, seed=seed, train=train,
                          plan=str(plan or DEMO_PLAN), workers=workers, return_state=True,
                          val_scenes=DEMO_VAL_SCENES if val_scenes is None else val_scenes)
        run_id = state.state_details.flow_run_id
        summary = state.result(raise_on_failure=False)
    if not state.is_completed():
        console.print(f"[red]the demo flow run ended {state.name}[/red]: {escape(str(state.message or summary))}\n"
                      f"see its logs at {server.ui_url}/runs/flow-run/{run_id}")
        raise typer.Exit(1)
    _print_datasets(data_dir, summary["datasets"])
    if train:
        _print_training(data_dir, summary["training"], summary["evaluation"], workers)
    console.print(f"\n[bold]open[/bold] {server.ui_url}/runs/flow-run/{run_id} : the demo run, its subflow graph and "
                  f"artifacts;\n     {server.ui_url}/artifacts : dataset tables (dataset-*), lineage cards (lineage-*), "
                  "training mixture, metrics and loss curve (training-*)\n"
                  f"stop the server with: make ui-stop (or prefect server stop with PREFECT_HOME={escape(str(server.home))})")


@app.command()
def server(
    data_dir: Annotated[Path, typer.Option(help="Its PREFECT_HOME is <data-dir>/prefect.")] = DEFAULT_DATA_DIR,
    stop: Annotated[bool, typer.Option(help="Stop the background server instead.")] = False,
    foreground: Annotated[bool, typer.Option(help="Run in this terminal until Ctrl-C.")] = False,
) -> None:
    """The project's local Prefect server (SQLite under <data-dir>/prefect, 127.0.0.1; port from
    CRAYONFLOW_PREFECT_PORT, default 4200): the UI, and the API that workers and deployments use."""
    from pipelines.server import LocalServer, ensure_server, exec_prefect, stop_server

    local = LocalServer(data_dir / "prefect")
    if stop:
        stop_server(local)
        console.print(f"stopped the server of {escape(str(local.home))}")
    elif foreground:
        local.home.mkdir(parents=True, exist_ok=True)
        console.print(f"Prefect UI at {local.ui_url} (Ctrl-C stops it)")
        exec_prefect(local, "server", "start", "--host", local.host, "--port", str(local.port))
    else:
        started = ensure_server(local)
        console.print(f"Prefect UI {'started' if started else 'already running'} at {local.ui_url}")


WORK_POOL = "local-process"  #: prefect.yaml's process pool


@app.command()
def deploy(
    data_dir: Annotated[Path, typer.Option(help="The local server's data folder.")] = DEFAULT_DATA_DIR,
) -> None:
    """Register every deployment of prefect.yaml with the local server (started if needed): the
    process work pool, the repo_root variable (this checkout), then `prefect deploy --all`."""
    from pipelines.server import LocalServer, ensure_server, prefect_command

    local = LocalServer(data_dir / "prefect")
    ensure_server(local)
    repo_root = Path(__file__).resolve().parents[1]
    steps = (("work-pool", "create", WORK_POOL, "--type", "process", "--overwrite"),
             ("variable", "set", "repo_root", str(repo_root), "--overwrite"),
             ("--no-prompt", "deploy", "--all"))
    for step in steps:
        done = prefect_command(local, *step, cwd=repo_root, capture_output=True, text=True)
        if done.returncode != 0:
            console.print(f"[red]prefect {' '.join(step)} failed[/red] ({done.returncode}):\n"
                          f"{escape(done.stdout[-3000:])}{escape(done.stderr[-3000:])}")
            raise typer.Exit(1)
    console.print(f"registered prefect.yaml's deployments at {local.ui_url}/deployments (runs start in "
                  f"{escape(str(repo_root))}); start a worker with: make worker")


@app.command()
def worker(
    data_dir: Annotated[Path, typer.Option(help="The local server's data folder.")] = DEFAULT_DATA_DIR,
    limit: Annotated[int, typer.Option(min=1, help="Flow runs at once (1 on 2 cores: training takes both).")] = 1,
) -> None:
    """A process worker for the local-process pool, in this terminal until Ctrl-C."""
    from pipelines.server import LocalServer, exec_prefect

    local = LocalServer(data_dir / "prefect")
    if not local.healthy():
        console.print(f"[red]no Prefect server at {local.ui_url}[/red]: run make ui (or make deploy) first")
        raise typer.Exit(1)
    exec_prefect(local, "worker", "start", "--pool", WORK_POOL, "--limit", str(limit))


def _print_datasets(data_dir: Path, datasets: dict[str, dict]) -> None:
    from rich import box
    from rich.table import Table

    table = Table(title=f"datasets in {escape(str(data_dir / 'datasets'))}", title_justify="left",
                  box=box.SIMPLE, pad_edge=False, collapse_padding=True)
    for column in ("dataset", "version", "read", "samples", "rejects", "MB", "state"):
        table.add_column(column, justify="left" if column in ("dataset", "version", "state") else "right", no_wrap=True)
    for name, d in datasets.items():
        verdict = "[green]verified[/green]" if d["verified"] else "[red]DAMAGED[/red]"
        table.add_row(escape(name), d["version"], str(d["read"]), str(d["samples"]), str(d["rejects"]),
                      f"{d['bytes'] / 1e6:.1f}", f"{'reused' if d['reused'] else 'built'}, {verdict}")
    console.print(table)
    first = next(iter(datasets.values()))
    console.print(f"inspect one with: crayonflow shards info {escape(first['path'])}")


def _print_training(data_dir: Path, training: dict, evaluation: dict, workers: int) -> None:
    from rich import box
    from rich.table import Table

    from training.evaluate import blind_cells, looking_summary

    console.print(f"trained {len(training['stages'])} stages on {workers} Ray workers in {training['seconds']:.0f} s: "
                  f"{escape(training['run_dir'])}")
    trained, untrained = evaluation["trained"], evaluation["untrained"]
    table = Table(title=f"held-out ({trained['split']}) scores", title_justify="left", box=box.SIMPLE,
                  pad_edge=False, collapse_padding=True)
    for column in ("task", "metric", "n", "untrained", "trained", "blind", "gap [95% CI]", "verdict"):
        table.add_column(column, justify="left" if column in ("task", "metric", "verdict") else "right",
                         no_wrap=True)
    before = {(s["task"], s["metric"], s["family"]): s["value"] for s in untrained["scores"]}
    for s in trained["scores"]:
        label = s["task"] if s["family"] is None else f"  {s['family']}"
        table.add_row(escape(label), s["metric"], str(s["n"]), f"{before[(s['task'], s['metric'], s['family'])]:.3f}",
                      f"{s['value']:.3f}", *blind_cells(s))
    console.print(table)
    console.print("blind: the trained model asked the same questions with the images deranged among each task's "
                  "samples; a gap whose 95% interval includes 0 is no evidence the model reads its image",
                  highlight=False)
    console.print(escape(looking_summary(trained["scores"])), highlight=False)
    picture = next(iter(sorted((data_dir / "raw" / "sample-world" / "coco-panoptic").glob("val2017/*.jpg"))), None)
    console.print(escape(f"ask it: crayonflow chat --checkpoint {training['stages'][-1]} --image {picture or 'IMAGE'} "
                         '"[vqa] what color is the circle?"'), highlight=False)


if __name__ == "__main__":
    app()
