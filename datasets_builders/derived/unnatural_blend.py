"""Text-only samples interleaved into an instruction dataset at an exact ratio.

MiniGPT-v2 mixes Unnatural Instructions into stage 3 to keep the LLM's pure-language skill
(minigptv2-data-spec.md 8.2). This writes one dataset in which, walking the instruction dataset in
storage order, every ``ratio`` instruction samples are followed by one text-only sample. Any run
of consecutive samples, so every shard, then holds its exact text share within +-1.

Inputs: two committed datasets, exactly one of them text-only (every sample without an image).
Each blended sample keeps its content and its original source record; its key is prefixed with
its input's name, and ``meta.blend`` says which input and key it came from. The manifest's
``by_source`` counts each input's samples. Text samples are read only as far as the ratio needs
them; if the text dataset runs out it starts again, and a second use is its own record
(``<key>#2``), so the counts still reconcile.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from datasets_builders.formats.schema import Sample, Source
from datasets_builders.sources.contract import InputFormatError, Options, make_key
from datasets_builders.store import ShardDataset, load_manifest
from datasets_builders.store.index import SAMPLES_SCHEMA, read_table
from datasets_builders.store.layout import SAMPLES_INDEX

NAME = "unnatural-blend"
VERSION = "1"
DERIVED = True  #: reads committed datasets, not a raw folder
OPTIONS = ("ratio",)


@dataclass(frozen=True)
class Input:
    name: str
    dataset: ShardDataset
    splits: tuple[str, ...]  #: split of each sample, in storage order
    text_only: bool


@dataclass(frozen=True)
class Layout:
    instructions: Input
    text: Input
    ratio: int


@dataclass(frozen=True)
class BlendRecord:
    source: Source
    input: Input
    row: int
    use: int  #: 1 for the first use of a text sample, 2 for the second, ...


def locate(paths: tuple[Path, ...], options: Options) -> Layout:
    if len(paths) != 2:
        raise InputFormatError(f"unnatural-blend takes two --input datasets (instructions and text), got {len(paths)}")
    if options.ratio < 1:
        raise InputFormatError(f"unnatural-blend: ratio {options.ratio} must be at least 1")
    inputs = [_load(path) for path in paths]
    text = [i for i in inputs if i.text_only]
    if len(text) != 1:
        raise InputFormatError(f"unnatural-blend: exactly one input must be text-only (no images); "
                               f"{len(text)} of {', '.join(str(p) for p in paths)} are")
    instructions = next(i for i in inputs if i is not text[0])
    if instructions.name == text[0].name:
        raise InputFormatError(f"unnatural-blend: both inputs are named {text[0].name!r}; keys would collide")
    return Layout(instructions, text[0], options.ratio)


def read_records(layout: Layout, split: str | None) -> Iterator[BlendRecord]:
    inst, text = layout.instructions, layout.text
    rows = [r for r, s in enumerate(inst.splits) if split is None or s == split]
    used = 0
    for n, row in enumerate(rows, start=1):
        yield BlendRecord(Source(inst.name, inst.dataset.key(row)), inst, row, 1)
        if n % layout.ratio == 0 and text.splits:
            row_t, use = used % len(text.splits), used // len(text.splits) + 1
            key = text.dataset.key(row_t)
            yield BlendRecord(Source(text.name, key if use == 1 else f"{key}#{use}"), text, row_t, use)
            used += 1


def to_samples(record: BlendRecord) -> Iterator[Sample]:
    raw = record.input.dataset.read(record.row)
    original = Sample.from_members(raw["__key__"], raw)
    parts = (record.input.name, original.key) if record.use == 1 else (record.input.name, original.key, record.use)
    yield Sample(
        key=make_key(*parts),
        task=original.task,
        turns=original.turns,
        source=record.source,
        split=original.split,
        image=original.image,
        extras=dict(original.extras),
        meta={**original.meta, "blend": {"dataset": record.input.name, "key": original.key, "use": record.use,
                                         "source": {"dataset": original.source.dataset, "id": original.source.id}}},
    )


def _load(path: Path) -> Input:
    manifest = load_manifest(path)
    if manifest is None:
        raise InputFormatError(f"{path}: not a committed dataset (no manifest.json); build it first")
    index = read_table(path / SAMPLES_INDEX, SAMPLES_SCHEMA)
    text_only = all(m["ext"] not in ("jpg", "png") for members in index["members"].to_pylist() for m in members)
    return Input(manifest.spec.name, ShardDataset(path), tuple(index["split"].to_pylist()), text_only)
