"""Read a committed dataset through its index: sequential shard scans and random access.

The index already holds every member's offset and size, so reading needs no tar parsing: a scan
maps each shard once and slices members out of it; random access is one ``pread`` per sample.
Only datasets with a manifest open; an unfinished build is refused with the reason.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import xxhash

from datasets_builders.formats.schema import Sample
from datasets_builders.store.index import SAMPLES_SCHEMA, read_table
from datasets_builders.store.layout import MANIFEST, SAMPLES_INDEX
from datasets_builders.store.manifest import Manifest, load_manifest

RawSample = dict[str, Any]  #: webdataset-style: "__key__", "__url__", then bytes by extension


class DatasetNotCommittedError(FileNotFoundError):
    """The folder has no manifest.json: the build never finished (re-run it to resume)."""


class CorruptSampleError(ValueError):
    """A member's bytes do not match the checksum recorded when it was written."""


class ShardDataset:
    """A committed dataset: ``len``, ``scan()`` in storage order, ``read(i)`` for any sample."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        manifest = load_manifest(self.root)
        if manifest is None:
            raise DatasetNotCommittedError(
                f"{self.root / MANIFEST} not found: {self.root} is not a committed dataset "
                "(its build did not finish; run the build again to resume it)"
            )
        self.manifest: Manifest = manifest
        self.index: pa.Table = read_table(self.root / SAMPLES_INDEX, SAMPLES_SCHEMA)
        if self.index.num_rows != manifest.counts.written:
            raise ValueError(
                f"{self.root / SAMPLES_INDEX}: {self.index.num_rows} rows but the manifest counts "
                f"{manifest.counts.written} samples (run `crayonflow shards verify {self.root}`)"
            )
        self._keys: list[str] = self.index["key"].to_pylist()
        self._offset = self.index["offset"].to_numpy()
        self._size = self.index["size"].to_numpy()
        members = self.index["members"].combine_chunks()
        self._bounds: list[int] = members.offsets.to_numpy().tolist()
        flat = members.values
        self._ext: list[str] = flat.field("ext").to_pylist()
        self._moff: list[int] = flat.field("offset").to_numpy().tolist()
        self._msize: list[int] = flat.field("size").to_numpy().tolist()
        self._mxxh3 = flat.field("xxh3").to_numpy()
        counts = [s.samples for s in manifest.shards]
        self._shard_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._fds: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def shard_paths(self) -> list[Path]:
        return [self.root / s.name for s in self.manifest.shards]

    def key(self, i: int) -> str:
        return self._keys[i]

    def scan(self, shards: Iterable[int] | None = None, *, check: bool = False) -> Iterator[RawSample]:
        """Yield raw samples shard by shard in storage order; ``check`` verifies member xxh3."""
        for s in range(len(self.manifest.shards)) if shards is None else shards:
            path = self.root / self.manifest.shards[s].name
            lo, hi = int(self._shard_start[s]), int(self._shard_start[s + 1])
            with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
                url = str(path)
                for row in range(lo, hi):
                    sample: RawSample = {"__key__": self._keys[row], "__url__": url}
                    for m in range(self._bounds[row], self._bounds[row + 1]):
                        offset = self._moff[m]
                        data = view[offset : offset + self._msize[m]]
                        if check:
                            self._check(row, m, data)
                        sample[self._ext[m]] = data
                    yield sample

    def read(self, i: int, *, check: bool = False) -> RawSample:
        """Random access: sample ``i`` (storage order) with one ``pread``."""
        if not 0 <= i < len(self._keys):
            raise IndexError(f"sample {i} out of range for {self.root} ({len(self._keys)} samples)")
        s = int(np.searchsorted(self._shard_start, i, side="right") - 1)
        start = int(self._offset[i])
        blob = os.pread(self._fd(s), int(self._size[i]), start)
        sample: RawSample = {"__key__": self._keys[i], "__url__": str(self.root / self.manifest.shards[s].name)}
        for m in range(self._bounds[i], self._bounds[i + 1]):
            at = self._moff[m] - start
            data = blob[at : at + self._msize[m]]
            if check:
                self._check(i, m, data)
            sample[self._ext[m]] = data
        return sample

    def member(self, i: int, ext: str, *, check: bool = False) -> bytes:
        """One member of sample ``i`` (its ``json``, say) with one ``pread``: the others are not read."""
        if not 0 <= i < len(self._keys):
            raise IndexError(f"sample {i} out of range for {self.root} ({len(self._keys)} samples)")
        m = next((m for m in range(self._bounds[i], self._bounds[i + 1]) if self._ext[m] == ext), None)
        if m is None:
            raise KeyError(f"sample {self._keys[i]!r} of {self.root} has no {ext!r} member")
        s = int(np.searchsorted(self._shard_start, i, side="right") - 1)
        data = os.pread(self._fd(s), self._msize[m], self._moff[m])
        if check:
            self._check(i, m, data)
        return data

    def samples(self, *, check: bool = False) -> Iterator[Sample]:
        """Decoded samples (JSON parsed; image bytes left encoded)."""
        for raw in self.scan(check=check):
            yield Sample.from_members(raw["__key__"], raw)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> ShardDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        # A copy in another process (a DataLoader worker) opens its own descriptors: numbers from
        # this process would name nothing there, or the wrong file.
        return {**self.__dict__, "_fds": {}}

    def __del__(self) -> None:
        # A builder's layout holds its input datasets without closing them; a partitioned build
        # locates them once per part, so descriptors must go with the layout, not pile up.
        if getattr(self, "_fds", None):
            self.close()

    def _fd(self, shard: int) -> int:
        fd = self._fds.get(shard)
        if fd is None:
            fd = self._fds[shard] = os.open(self.root / self.manifest.shards[shard].name, os.O_RDONLY)
        return fd

    def _check(self, row: int, member: int, data: bytes) -> None:
        if xxhash.xxh3_64_intdigest(data) != int(self._mxxh3[member]):
            shard = self.manifest.shards[int(np.searchsorted(self._shard_start, row, side="right") - 1)].name
            raise CorruptSampleError(
                f"{self.root / shard}: member {self._keys[row]}.{self._ext[member]} fails its xxh3 check"
            )


def open_dataset(root: str | Path) -> ShardDataset:
    return ShardDataset(root)
