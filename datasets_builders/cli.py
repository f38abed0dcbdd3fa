"""The data commands: ``sample-world``, ``build`` and ``shards info|verify``.

Each parses its arguments, calls one function, and prints a short report; heavy imports stay
inside the commands so ``crayonflow --help`` is quick.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated

import pyarrow.compute as pc
import typer
from rich.markup import escape
from rich.table import Table

from datasets_builders.console import table_console
from datasets_builders.registry import DERIVED, SOURCES
from datasets_builders.store import DatasetExistsError, DatasetWriteError, ManifestError, load_manifest, verify_dataset
from datasets_builders.store.index import REJECTS_SCHEMA, SAMPLES_SCHEMA, read_table
from datasets_builders.store.layout import REJECTS_INDEX, SAMPLES_INDEX

shards_app = typer.Typer(help="Inspect and verify datasets of WebDataset shards.", no_args_is_help=True)
console = table_console()

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
def show(
    root: DatasetDir,
    key: Annotated[str | None, typer.Option(help="The sample with this key.")] = None,
    task: Annotated[str | None, typer.Option(help="Samples of this task (with --random: N of them).")] = None,
    random: Annotated[int, typer.Option(min=1, help="How many samples, drawn with --seed.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the draw.")] = 0,
    out: Annotated[Path | None, typer.Option(help="PNG to write (default: <key>.png here; one per sample).")] = None,
) -> None:
    """Draw samples: the picture with every box of the conversation labelled, the crayon map beside
    it, the conversation under it; writes PNGs and prints their paths."""
    import numpy as np

    from datasets_builders.formats.schema import Sample
    from datasets_builders.show import render_sample
    from datasets_builders.store import ShardDataset

    if load_manifest(root) is None:
        console.print(f"[red]{escape(str(root))}: no manifest.json; not a committed dataset[/red]")
        raise typer.Exit(1)
    with ShardDataset(root) as dataset:
        keys = [dataset.key(i) for i in range(len(dataset))]
        if key is not None:
            rows = [keys.index(key)] if key in keys else []
            if not rows:
                console.print(f"[red]{escape(str(root))} has no sample {escape(key)!r}[/red]")
                raise typer.Exit(1)
        else:
            tasks = read_table(root / SAMPLES_INDEX, SAMPLES_SCHEMA)["task"].to_pylist()
            candidates = [i for i, t in enumerate(tasks) if task is None or t == task]
            if not candidates:
                console.print(f"[red]{escape(str(root))} has no samples of task {escape(str(task))!r}[/red]")
                raise typer.Exit(1)
            picked = np.random.default_rng(seed).choice(len(candidates), min(random, len(candidates)), replace=False)
            rows = [candidates[int(i)] for i in picked]
        for n, row in enumerate(rows):
            raw = dataset.read(row, check=True)
            sample = Sample.from_members(raw["__key__"], raw)
            path = (out if out is not None and len(rows) == 1 else
                    (out.with_name(f"{out.stem}-{n}{out.suffix}") if out is not None else Path(f"{sample.key}.png")))
            path.parent.mkdir(parents=True, exist_ok=True)
            render_sample(sample).save(path)
            console.print(f"{escape(sample.key)} ({escape(sample.task)}): {escape(str(path))}", highlight=False)


def export(
    root: DatasetDir,
    out: Annotated[Path, typer.Option(help="Folder for <dataset>.json and images/.")],
    fmt: Annotated[str, typer.Option("--format", help="llava (conversation JSON + an image folder), or minigptv2 "
                                                      "(its Flickr30k JSONs, from flickr30k-entities).")] = "llava",
    split: Annotated[str | None, typer.Option(help="Only this split's samples.")] = None,
) -> None:
    """Write a built dataset in another project's format: each picture once, the conversations as JSON."""
    from datasets_builders.export import export_llava, export_minigptv2

    exporters = {"llava": export_llava, "minigptv2": export_minigptv2}
    if fmt not in exporters:
        console.print(f"[red]unknown format {escape(fmt)!r}; formats: {', '.join(exporters)}[/red]")
        raise typer.Exit(2)
    if load_manifest(root) is None:
        console.print(f"[red]{escape(str(root))}: no manifest.json; not a committed dataset[/red]")
        raise typer.Exit(1)
    try:
        report = exporters[fmt](root, out, split)
    except ValueError as e:
        console.print(f"[red]{escape(str(e))}[/red]", highlight=False)
        raise typer.Exit(1) from None
    console.print(f"{escape(str(report.json_path))}: {report.samples} samples, {report.images} pictures in "
                  f"{escape(str(out / 'images'))}", highlight=False)


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
    if len(manifest.by_source) > 1:
        console.print(_table("samples by source dataset", manifest.by_source))
    if manifest.repairs:
        console.print(_table("repairs (fixes the spec allows)", manifest.repairs))
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


def _table(title: str, counts: Mapping[str, int], limit: int = 20) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("name")
    table.add_column("count", justify="right")
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    for name, n in ranked[:limit]:
        table.add_row(escape(name), str(n))
    if len(ranked) > limit:
        rest = sum(n for _, n in ranked[limit:])
        table.add_row(f"... {len(ranked) - limit} more (crayonflow shards info --json lists all)", str(rest))
    return table


def sample_world(
    out: Annotated[Path, typer.Option(help="Folder to write the raw datasets into (one subfolder per builder).")],
    images: Annotated[int, typer.Option(min=1, help="Scenes to generate.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the world: same seed, same bytes.")] = 0,
    val_scenes: Annotated[int, typer.Option(min=0, help="Extra scenes, all in the val split (a bigger held-out "
                                                        "set; training data unchanged).")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace a sample world already in --out.")] = False,
) -> None:
    """Generate scenes with exact ground truth and write them in every raw format the builders read."""
    from datasets_builders.sample_world.world import write_sample_world

    started = time.perf_counter()
    try:
        summary = write_sample_world(out, images=images, seed=seed, val_scenes=val_scenes, overwrite=overwrite)
    except FileExistsError as e:
        console.print(f"[red]{escape(str(e))}[/red]")
        raise typer.Exit(1) from None
    extra = f" + {val_scenes} val-only" if val_scenes else ""
    console.print(f"{escape(str(out))}: {images}{extra} scenes (seed {seed}) in {time.perf_counter() - started:.1f} s; "
                  f"splits {escape(json.dumps(summary.splits))}")
    for name in summary.formats:
        console.print(f"  crayonflow build {name} --input {escape(str(out / name))} --out data/datasets/{name}")


#: checkpoint folder -> (image bytes, instruction -> answer; an identity to record, content hash included)
LabelerFactory = Callable[[Path], tuple[Callable[[bytes, str], str], str]]


def make_build_command(labeler_factory: LabelerFactory | None = None) -> Callable[..., None]:
    """The ``build`` command; ``labeler_factory`` (passed in by the layer that owns models) serves
    multiround's ``--pseudo-label-checkpoint``, which this layer cannot load itself."""

    def build(
        source: Annotated[str, typer.Argument(help=f"Builder: {', '.join({**SOURCES, **DERIVED})}.")],
        inputs: Annotated[list[Path], typer.Option("--input", help="The raw dataset folder, laid out as its publisher ships "
                                                   "it; derived builders take committed datasets, --input once per dataset.")],
        out: Annotated[Path, typer.Option(help="Dataset folder to write; its name is the dataset name.")],
        limit: Annotated[int | None, typer.Option(min=1, help="Read at most this many records.")] = None,
        split: Annotated[str | None, typer.Option(help="Build only this split (train, val, test, ...).")] = None,
        overwrite: Annotated[bool, typer.Option(help="Replace a committed dataset built differently.")] = False,
        trust_pickle: Annotated[bool, typer.Option(help="refcoco: allow reading refs(*).p pickles (no classes).")] = False,
        max_instances: Annotated[int, typer.Option(min=1, max=255, help="coco-panoptic: clamp of the numbering index.")] = 20,
        min_confidence: Annotated[float, typer.Option(min=0, max=1, help="grit: drop spans below this confidence.")] = 0.0,
        max_region_area: Annotated[int, typer.Option(min=1, help="visual-genome: leave out regions of this many px "
                                                                 "or more (MiniGPT-v2: 16384).")] = 16384,
        seed: Annotated[int, typer.Option(help="multiround: seed of the task draws.")] = 0,
        tasks: Annotated[str, typer.Option(help="multiround: comma-separated tasks to mix (default: all).")] = "",
        min_turns: Annotated[int, typer.Option(min=2, help="multiround: fewest rounds per conversation.")] = 2,
        max_turns: Annotated[int, typer.Option(min=2, help="multiround: most rounds per conversation.")] = 4,
        token_budget: Annotated[int, typer.Option(min=1, help="multiround: answer tokens per conversation.")] = 1024,
        tokenizer: Annotated[str | None, typer.Option(help="multiround: local tokenizer folder (default: word proxy).")] = None,
        ratio: Annotated[int, typer.Option(min=1, help="unnatural-blend: instruction samples per text sample.")] = 20,
        pseudo_label_checkpoint: Annotated[Path | None, typer.Option(
            help="multiround: a trained model checkpoint that answers tasks an image has no truth for.")] = None,
        pseudo_label_tasks: Annotated[str, typer.Option(
            help="multiround: comma-separated tasks it may fill (caption, grounding).")] = "",
    ) -> None:
        """Convert a raw dataset (or combine built ones) into a dataset of shards; every record is written or rejected."""
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        from datasets_builders.build import build_dataset
        from datasets_builders.sources.contract import InputFormatError, Options

        builders = {**SOURCES, **DERIVED}
        if source not in builders:
            console.print(f"[red]unknown builder {escape(source)!r}; choose one of: {', '.join(builders)}[/red]")
            raise typer.Exit(2)
        labeler, labeler_id = None, None
        if pseudo_label_checkpoint is not None:
            if labeler_factory is None:
                console.print("[red]--pseudo-label-checkpoint needs a model: run it through the crayonflow command, "
                              "which passes one in[/red]")
                raise typer.Exit(2)
            try:
                labeler, labeler_id = labeler_factory(pseudo_label_checkpoint)
            except ValueError as e:
                console.print(f"[red]{escape(str(e))}[/red]", highlight=False)
                raise typer.Exit(2) from None
        options = Options(trust_pickle=trust_pickle, max_instances=max_instances, min_confidence=min_confidence,
                          max_region_area=max_region_area, seed=seed,
                          tasks=_list(tasks), min_turns=min_turns, max_turns=max_turns, token_budget=token_budget,
                          tokenizer=tokenizer, ratio=ratio, pseudo_label_tasks=_list(pseudo_label_tasks),
                          pseudo_label_checkpoint=labeler_id, pseudo_labeler=labeler)
        started = time.perf_counter()
        with Progress(SpinnerColumn(), TextColumn("{task.description} {task.completed} records"), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task(f"building {source}")
            try:
                result = build_dataset(source, inputs, out, limit=limit, split=split, overwrite=overwrite,
                                       options=options, progress=lambda: bar.advance(task))
            except (InputFormatError, DatasetExistsError, DatasetWriteError, ValueError) as e:  # a full disk: one line
                console.print(f"[red]{escape(str(e))}[/red]", highlight=False)
                raise typer.Exit(2 if isinstance(e, InputFormatError) else 1) from None
        m, seconds = result.manifest, time.perf_counter() - started
        if result.reused:
            console.print(f"{escape(str(out))}: unchanged (same inputs, parameters and code): {m.counts.written} samples")
            return
        c = m.counts
        console.print(f"{escape(str(out))}: {c.read} records -> {c.records_written} written as {c.written} samples, "
                      f"{c.records_rejected} rejected; {len(m.shards)} shards, {m.total_bytes / 1e6:.1f} MB in {seconds:.1f} s "
                      f"({c.read / max(seconds, 1e-9):.0f} records/s)")
        console.print(_table("samples by task", m.by_task))
        if m.repairs:
            console.print(_table("repairs (fixes the spec allows)", m.repairs))
        rejects = _rejects_by_reason(out)
        if rejects:
            console.print(_table("rejects by stage: reason", rejects, limit=10))
        console.print(f"check it: crayonflow shards verify {escape(str(out))}")

    return build


build = make_build_command()  #: without a model: --pseudo-label-checkpoint is refused in one line


def _list(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())
