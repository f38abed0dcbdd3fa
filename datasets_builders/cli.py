"""``crayonflow shards ...``: inspect and check built datasets. Parses arguments, calls one function."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pyarrow.compute as pc
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from datasets_builders.store import ManifestError, load_manifest, verify_dataset
from datasets_builders.store.index import REJECTS_SCHEMA, read_table
from datasets_builders.store.layout import REJECTS_INDEX

shards_app = typer.Typer(help="Inspect and verify datasets of WebDataset shards.", no_args_is_help=True)
console = Console(soft_wrap=True)

DatasetDir = Annotated[Path, typer.Argument(help="A dataset folder (holds manifest.json and *.tar shards).")]


@shards_app.command()
def verify(root: DatasetDir) -> None:
    """Re-read every shard and check every member against the index and manifest."""
    report = verify_dataset(root)
    for problem in report.problems:
        console.print(f"[red]DAMAGED[/red] {escape(str(problem))}", highlight=False)
    summary = f"{report.shards} shards, {report.samples} samples, {report.members} members checked"
    if report.ok:
        console.print(f"[green]OK[/green] {escape(str(root))}: {summary}")
        return
    damaged = report.damaged_shards()
    console.print(f"[red]FAILED[/red] {escape(str(root))}: {len(report.problems)} problems; {summary}"
                  + (f"; damaged shards: {', '.join(damaged)}" if damaged else ""))
    raise typer.Exit(1)


@shards_app.command()
def info(
    root: DatasetDir,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest and reject counts as JSON.")] = False,
) -> None:
    """Counts per task and split, sizes, rejects and lineage of a committed dataset."""
    try:
        manifest = load_manifest(root)
    except ManifestError as e:
        console.print(f"[red]{escape(str(e))}[/red]")
        raise typer.Exit(1) from None
    if manifest is None:
        console.print(f"[red]{escape(str(root))}: no manifest.json; not a committed dataset "
                      f"(run `crayonflow shards verify {escape(str(root))}`)[/red]")
        raise typer.Exit(1)
    rejects = _rejects_by_reason(root)
    if as_json:
        print(json.dumps({**manifest.to_json(), "total_bytes": manifest.total_bytes, "rejects_by_reason": rejects}, indent=2))
        return

    spec, counts = manifest.spec, manifest.counts
    console.print(f"[bold]{spec.name}[/bold]  {escape(str(root))}")
    console.print(escape(f"built by {spec.builder} v{spec.builder_version} at {manifest.created}, "
                         f"code {manifest.code_revision}"))
    console.print(f"records read {counts.read}: {counts.records_written} written as {counts.written} samples, "
                  f"{counts.records_rejected} rejected ({counts.rejected} reject rows)")
    console.print(f"{len(manifest.shards)} shards, {manifest.total_bytes / 1e6:.1f} MB, fingerprint {manifest.fingerprint}")
    console.print(_table("samples by task", manifest.by_task))
    console.print(_table("samples by split", manifest.by_split))
    if rejects:
        console.print(_table("rejects by stage: reason", rejects))
    if spec.inputs:
        inputs = Table(title="inputs", title_justify="left")
        for column in ("name", "kind", "path", "xxh3", "bytes", "files"):
            inputs.add_column(column)
        for i in spec.inputs:
            inputs.add_row(*(escape(str(v)) for v in (i.name, i.kind, i.path, i.xxh3, i.bytes, i.files)))
        console.print(inputs)
    console.print(f"parameters: {escape(json.dumps(dict(spec.parameters), sort_keys=True))}", highlight=False)


def _rejects_by_reason(root: Path) -> dict[str, int]:
    rejects = read_table(root / REJECTS_INDEX, REJECTS_SCHEMA)
    if not rejects.num_rows:
        return {}
    labels = pc.binary_join_element_wise(rejects["stage"], rejects["reason"], ": ")
    return {c["values"]: c["counts"] for c in pc.value_counts(labels).to_pylist()}


def _table(title: str, counts: dict[str, int]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("name")
    table.add_column("count", justify="right")
    for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(escape(name), str(n))
    return table
