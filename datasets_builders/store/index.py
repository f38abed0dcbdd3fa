"""The write-time index: ``samples.parquet`` and ``rejects.parquet``.

One row per sample with the byte offset, size and xxh3 of each member, so readers can fetch any
sample without scanning a tar, and ``verify`` can check every byte. Rows are collected in
columns (plain lists) while a shard is written and turned into Arrow once per shard.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datasets_builders.store.atomic import discarded_on_error, publish, temp_name

MEMBER_TYPE = pa.struct(
    [("ext", pa.string()), ("offset", pa.int64()), ("size", pa.int64()), ("xxh3", pa.uint64())]
)
SAMPLES_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("shard", pa.string()),
        ("offset", pa.int64()),  # first header byte of the sample
        ("size", pa.int64()),  # through the last member's padding
        ("members", pa.list_(MEMBER_TYPE)),  # data offset/size/xxh3-64 per member, in tar order
        ("source_dataset", pa.string()),
        ("source_id", pa.string()),
        ("task", pa.string()),
        ("split", pa.string()),
    ]
)
REJECTS_SCHEMA = pa.schema(
    [("source_dataset", pa.string()), ("source_id", pa.string()), ("stage", pa.string()), ("reason", pa.string())]
)


@dataclass
class SampleRows:
    """Index rows of one shard, column by column."""

    key: list[str] = field(default_factory=list)
    offset: list[int] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    member_bounds: list[int] = field(default_factory=lambda: [0])
    ext: list[str] = field(default_factory=list)
    member_offset: list[int] = field(default_factory=list)
    member_size: list[int] = field(default_factory=list)
    member_xxh3: list[int] = field(default_factory=list)
    source_dataset: list[str] = field(default_factory=list)
    source_id: list[str] = field(default_factory=list)
    task: list[str] = field(default_factory=list)
    split: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.key)

    def add(self, key: str, offset: int, size: int, members: list[tuple[str, int, int, int]],
            source_dataset: str, source_id: str, task: str, split: str) -> None:
        """One sample at ``offset`` taking ``size`` bytes; members as (ext, data offset, size, xxh3)."""
        self.key.append(key)
        self.offset.append(offset)
        self.size.append(size)
        for ext, member_offset, member_size, checksum in members:
            self.ext.append(ext)
            self.member_offset.append(member_offset)
            self.member_size.append(member_size)
            self.member_xxh3.append(checksum)
        self.member_bounds.append(len(self.ext))
        self.source_dataset.append(source_dataset)
        self.source_id.append(source_id)
        self.task.append(task)
        self.split.append(split)

    def to_table(self, shard: str) -> pa.Table:
        members = pa.ListArray.from_arrays(
            pa.array(self.member_bounds, pa.int32()),
            pa.StructArray.from_arrays(
                [
                    pa.array(self.ext, pa.string()),
                    pa.array(self.member_offset, pa.int64()),
                    pa.array(self.member_size, pa.int64()),
                    pa.array(self.member_xxh3, pa.uint64()),
                ],
                fields=list(MEMBER_TYPE),
            ),
        )
        n = len(self.key)
        return pa.Table.from_arrays(
            [
                pa.array(self.key, pa.string()),
                pa.array([shard] * n, pa.string()),
                pa.array(self.offset, pa.int64()),
                pa.array(self.size, pa.int64()),
                members,
                pa.array(self.source_dataset, pa.string()),
                pa.array(self.source_id, pa.string()),
                pa.array(self.task, pa.string()),
                pa.array(self.split, pa.string()),
            ],
            schema=SAMPLES_SCHEMA,
        )


def rejects_table(rows: list[tuple[str, str, str, str]]) -> pa.Table:
    columns = list(zip(*rows)) if rows else [[], [], [], []]
    return pa.Table.from_arrays([pa.array(c, pa.string()) for c in columns], schema=REJECTS_SCHEMA)


def write_table_atomic(table: pa.Table, path: Path) -> None:
    with discarded_on_error(temp_name(path)) as tmp:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    publish(tmp, path)


def read_table(path: Path, schema: pa.Schema) -> pa.Table:
    table = pq.read_table(path)
    if not table.schema.equals(schema):
        raise ValueError(f"{path}: schema {table.schema} does not match the store's {schema}")
    return table


def accounted_records(samples: pa.Table, rejects: pa.Table) -> tuple[int, int]:
    """(records with samples, records rejected with no sample): a record is a (dataset, id) pair."""
    written = _record_ids(samples)
    rejected = _record_ids(rejects)
    rejected_only = len(rejected) - (pc.sum(pc.is_in(rejected, value_set=written)).as_py() or 0)
    return len(written), rejected_only


def _record_ids(table: pa.Table) -> pa.Array:
    joined = pc.binary_join_element_wise(table["source_dataset"], table["source_id"], "\x1f")
    return pc.unique(joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined)


def value_counts(table: pa.Table, column: str) -> dict[str, int]:
    counts = pc.value_counts(table[column]).to_pylist()
    return {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: c["values"])}
