"""Write one dataset of WebDataset shards: crash-safe, reproducible, and fully accounted.

What a build leaves in its folder, in the order it appears::

    .lock                            held while writing: one build per folder
    .building/spec.json              the build fingerprint (journal for resume)
    .<name>-000003.tar.tmp           the shard being written
    .building/<name>-000003.tar.*    its index rows, rejects and checksum, journaled first
    <name>-000003.tar                renamed into place after fsync: complete or absent
    samples.parquet, rejects.parquet then manifest.json, the commit marker; .building/ removed

A build killed at any moment therefore leaves only complete shards and no manifest. Running the
same build again (same :class:`BuildSpec` fingerprint) *resumes*: complete shards are checked
against their journaled xxh3 and kept, and the first samples the builder produces again are
matched against them (key and member checksums) instead of being written twice. A different
fingerprint rebuilds from scratch. Builders must therefore produce samples in a deterministic
order, which they do anyway so that two builds give identical bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import xxhash

from datasets_builders.formats.schema import Sample, Source, encode_json
from datasets_builders.store import tar
from datasets_builders.store.atomic import fsync_dir, link_or_copy, publish, temp_name, write_bytes_atomic
from datasets_builders.store.index import (
    REJECTS_SCHEMA,
    SAMPLES_SCHEMA,
    SampleRows,
    accounted_records,
    read_table,
    rejects_table,
    value_counts,
    write_table_atomic,
)
from datasets_builders.store.keys import check_key
from datasets_builders.store.layout import JOURNAL, LOCK, MANIFEST, REJECTS_INDEX, SAMPLES_INDEX, shard_name, shard_pattern
from datasets_builders.store.lineage import code_hash, code_revision, file_xxh3
from datasets_builders.store.manifest import (
    BuildSpec,
    Counts,
    FileEntry,
    Manifest,
    ManifestError,
    ShardEntry,
    load_manifest,
    write_manifest,
)

log = logging.getLogger(__name__)



class DatasetExistsError(FileExistsError):
    """The folder already holds a committed dataset and ``overwrite`` was not given."""


class DatasetBusyError(RuntimeError):
    """Another process is writing the same folder."""


class DuplicateKeyError(ValueError):
    """Two samples of one dataset share a key."""


class ResumeMismatchError(RuntimeError):
    """A resumed build produced different samples than the interrupted one had written."""


class DatasetWriteError(OSError):
    """Writing the dataset failed (disk full, permissions): names the dataset and the file."""


class ReconcileError(RuntimeError):
    """Records read do not equal records written plus records rejected: something was lost."""


class DatasetWriter:
    """Rolling shard writer for one dataset folder. Use as a context manager::

        with DatasetWriter(out_dir, spec) as w:
            for record in records:
                w.count_read()
                try:
                    for sample in to_samples(record):
                        w.write(sample)
                except RecordError as e:
                    w.reject(record.source, "convert", str(e))
        # leaving the block commits (writes manifest.json); an exception leaves it resumable
    """

    def __init__(self, root: str | Path, spec: BuildSpec, *, overwrite: bool = False, resume: bool = True) -> None:
        """``overwrite`` replaces a committed dataset; ``resume`` (default) continues an
        interrupted build of the same spec instead of starting it over."""
        self.root = Path(root)
        self.spec = spec
        self.fingerprint = spec.fingerprint
        self._journal = self.root / JOURNAL
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = _acquire_lock(self.root)

        self._shards: list[ShardEntry] = []
        self._keys: set[str] = set()
        self._read = self._written = self._rejected = 0
        self._rows = SampleRows()
        self._pending_rejects: list[tuple[str, str, str, str]] = []
        self._repairs: Counter[str] = Counter()
        self._file = None
        self._file_name = ""
        self._shard_hash = xxhash.xxh3_64()
        self._shard_bytes = 0
        self._replay: list[tuple[str, list[tuple[str, int]]]] = []
        self._replay_rejects: list[tuple[str, str, str, str]] = []
        self._warned_oversize = False
        self.manifest: Manifest | None = None  #: set by commit()
        try:
            self._start(overwrite, resume)
        except BaseException:
            self._release()
            raise

    # -- the builder's calls -------------------------------------------------------------------

    @property
    def resumed_samples(self) -> int:
        """Samples recovered from an interrupted build of the same spec (0 on a fresh build)."""
        return len(self._replay)

    def count_read(self, n: int = 1) -> None:
        """Count input records read; at commit each must be written or rejected."""
        self._read += n

    def write(self, sample: Sample, members: Mapping[str, bytes] | None = None) -> None:
        """``members``: ``sample.members()`` if the caller already encoded them (once per sample)."""
        key = check_key(sample.key, f"{sample.source.dataset}:{sample.source.id}")
        if key in self._keys:
            raise DuplicateKeyError(
                f"duplicate sample key {key!r} in dataset {self.spec.name!r} "
                f"(second use from source record {sample.source.dataset}:{sample.source.id})"
            )
        self._keys.add(key)
        members = sorted((sample.members() if members is None else members).items())  # sorted by extension
        sums = [xxhash.xxh3_64_intdigest(data) for _, data in members]
        self._written += 1
        if self._written <= len(self._replay):
            self._match_replay(key, [(ext, s) for (ext, _), s in zip(members, sums)])
            return

        parts: list[bytes] = []
        layout: list[tuple[str, int, int, int]] = []  # (ext, data offset within the sample, size, xxh3)
        size = 0
        for (ext, data), checksum in zip(members, sums):
            header = tar.member_header(f"{key}.{ext}", len(data))
            pad = tar.padding(len(data))
            layout.append((ext, size + len(header), len(data), checksum))
            parts += (header, data, pad)
            size += len(header) + len(data) + len(pad)
        if tar.closed_size(size) > self.spec.max_bytes and not self._warned_oversize:
            log.warning("sample %r alone exceeds max_bytes=%d; it gets a shard of its own", key, self.spec.max_bytes)
            self._warned_oversize = True

        with self._io_guard("writing"):
            if self._file is not None and tar.closed_size(self._shard_bytes + size) > self.spec.max_bytes:
                self._close_shard()
            if self._file is None:
                self._open_shard()
            base = self._shard_bytes
            for part in parts:
                self._file.write(part)
                self._shard_hash.update(part)
            self._rows.add(key, base, size, [(e, base + o, n, c) for e, o, n, c in layout],
                           sample.source.dataset, sample.source.id, sample.task, sample.split)
            self._shard_bytes += size
            if len(self._rows) >= self.spec.max_samples:
                self._close_shard()

    def adopt(self, shard: Path, rows: pa.Table, entry: ShardEntry) -> None:
        """Take a complete shard of another committed dataset (one part of a partitioned build) as
        this dataset's next shard, with its index ``rows`` and manifest ``entry``, without rewriting
        it: members are named by sample key alone, so bytes and checksum stay. The file is
        hard-linked (copied where the file system cannot link), so the source dataset stays whole
        until this one commits. A key this dataset already has raises DuplicateKeyError."""
        self._check_open()
        if self._file is not None or self._replay:
            raise RuntimeError(f"{self.root}: adopt() needs a writer with no open shard and nothing to resume")
        keys = rows["key"].to_pylist()
        clash = self._keys.intersection(keys)
        if clash:
            raise DuplicateKeyError(f"duplicate sample key {min(clash)!r} in dataset {self.spec.name!r} "
                                    f"(again in shard {shard})")
        self._keys.update(keys)
        name = shard_name(self.spec.name, len(self._shards))
        renamed = pa.array([name] * len(keys), pa.string())
        rows = rows.set_column(rows.schema.get_field_index("shard"), "shard", renamed)
        with self._io_guard(f"adopting {shard} as {name}"):
            link_or_copy(shard, temp_name(self.root / name))
            self._publish_shard(replace(entry, name=name), rows)
        self._written += len(keys)

    def reject(self, source: Source, stage: str, reason: str) -> None:
        """Record that (part of) an input record was not turned into samples, and why."""
        if not stage or not reason:
            raise ValueError(f"reject of {source.dataset}:{source.id} needs a stage and a reason")
        row = (source.dataset, str(source.id), stage, reason)
        self._rejected += 1
        if self._rejected <= len(self._replay_rejects):
            if self._replay_rejects[self._rejected - 1] != row:
                raise ResumeMismatchError(
                    f"{self.root}: reject #{self._rejected} {row} differs from the interrupted build's "
                    f"{self._replay_rejects[self._rejected - 1]}; the inputs changed, rebuild with resume off"
                )
            return
        self._pending_rejects.append(row)

    def repair(self, kind: str, n: int = 1) -> None:
        """Count a fix the spec allows (e.g. "numbering clamped to 20"); totals go in the manifest.

        Counted afresh by every run: a resumed build re-converts its records, so totals stay exact."""
        self._repairs[kind] += n

    def commit(self) -> Manifest:
        """Close the last shard, write both indexes, reconcile counts, then write the manifest.

        If anything fails, nothing is committed and the writer is closed (complete shards stay)."""
        self._check_open()
        try:
            self.manifest = self._commit()
        except BaseException:
            self.abort()
            raise
        return self.manifest

    def _commit(self) -> Manifest:
        if self._written < len(self._replay) or self._rejected < len(self._replay_rejects):
            raise ResumeMismatchError(
                f"{self.root}: this run produced {self._written} samples and {self._rejected} rejects, fewer "
                f"than the interrupted build had already written ({len(self._replay)}, "
                f"{len(self._replay_rejects)}); the inputs changed, rebuild with resume off"
            )
        if self._file is not None:
            with self._io_guard("closing"):
                self._close_shard()
        samples = self._concat_journal("samples", SAMPLES_SCHEMA)
        rejects = pa.concat_tables([self._concat_journal("rejects", REJECTS_SCHEMA), rejects_table(self._pending_rejects)])
        assert samples.num_rows == self._written, (samples.num_rows, self._written)
        counts = self._reconcile(samples, rejects)

        index = {}
        with self._io_guard("committing"):
            for name, table in ((SAMPLES_INDEX, samples), (REJECTS_INDEX, rejects)):
                write_table_atomic(table, self.root / name)
                index[name] = _file_entry(self.root / name)
        manifest = Manifest(
            spec=self.spec,
            fingerprint=self.fingerprint,
            counts=counts,
            by_task=value_counts(samples, "task"),
            by_split=value_counts(samples, "split"),
            repairs=dict(sorted(self._repairs.items())),
            by_source=value_counts(samples, "source_dataset"),
            shards=tuple(self._shards),
            index=index,
            code_revision=code_revision(),
            code_hash=code_hash(),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        with self._io_guard("committing"):
            write_manifest(self.root, manifest)
        shutil.rmtree(self._journal, ignore_errors=True)
        self._release()
        return manifest

    def abort(self) -> None:
        """Stop without committing: drop the open shard, keep complete ones for a resume."""
        if self._lock_fd is None:
            return
        if self._file is not None:
            with contextlib.suppress(OSError):  # flushing onto a full disk fails again; the file goes anyway
                self._file.close()
            temp_name(self.root / self._file_name).unlink(missing_ok=True)
            self._file = None
        self._release()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._lock_fd is None:  # already committed or aborted explicitly
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    # -- shards ----------------------------------------------------------------------------------

    def _open_shard(self) -> None:
        self._file_name = shard_name(self.spec.name, len(self._shards))
        self._file = open(temp_name(self.root / self._file_name), "wb")
        self._shard_hash = xxhash.xxh3_64()
        self._shard_bytes = 0
        self._rows = SampleRows()

    def _close_shard(self) -> None:
        tail = tar.trailer(self._shard_bytes)
        self._file.write(tail)
        self._shard_hash.update(tail)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        name = self._file_name
        entry = ShardEntry(name, len(self._rows), tar.closed_size(self._shard_bytes), self._shard_hash.hexdigest())
        self._publish_shard(entry, self._rows.to_table(name))
        self._file = None

    def _publish_shard(self, entry: ShardEntry, rows: pa.Table) -> None:
        """Journal first, then publish the complete temp file: a shard under its final name always
        has its index rows (and the rejects since the previous shard) in the journal."""
        name = entry.name
        write_table_atomic(rows, self._journal / f"{name}.samples.parquet")
        write_table_atomic(rejects_table(self._pending_rejects), self._journal / f"{name}.rejects.parquet")
        write_bytes_atomic(self._journal / f"{name}.json", encode_json(asdict(entry)))
        publish(temp_name(self.root / name), self.root / name)
        self._shards.append(entry)
        self._pending_rejects = []

    # -- start, resume, commit helpers -------------------------------------------------------------

    def _start(self, overwrite: bool, resume: bool) -> None:
        committed = check_writable(self.root, self.fingerprint, overwrite=overwrite)
        if (self.root / MANIFEST).exists():  # only with overwrite: check_writable refused otherwise
            (self.root / MANIFEST).unlink()  # un-commit before touching anything else
            fsync_dir(self.root)
            if committed is not None:
                self._wipe_from(committed.spec.name, 0)
        journal = self._read_journal_spec()
        if resume and journal.get("fingerprint") == self.fingerprint:
            self._recover()
        else:
            for name in {self.spec.name, journal.get("name", self.spec.name)}:
                self._wipe_from(name, 0)
            shutil.rmtree(self._journal, ignore_errors=True)
            spec = {"fingerprint": self.fingerprint, "name": self.spec.name}
            with self._io_guard("starting the build journal"):  # a full disk can strike here first
                self._journal.mkdir()
                write_bytes_atomic(self._journal / "spec.json", encode_json(spec))
        for name in (SAMPLES_INDEX, REJECTS_INDEX):
            (self.root / name).unlink(missing_ok=True)

    def _read_journal_spec(self) -> dict[str, str]:
        try:
            return dict(json.loads((self._journal / "spec.json").read_bytes()))
        except (OSError, ValueError, TypeError):
            return {}

    def _recover(self) -> None:
        """Keep the complete, checksum-valid prefix of shards; drop everything after it."""
        while True:
            name = shard_name(self.spec.name, len(self._shards))
            try:
                entry = ShardEntry(**json.loads((self._journal / f"{name}.json").read_bytes()))
                samples = read_table(self._journal / f"{name}.samples.parquet", SAMPLES_SCHEMA)
                rejects = read_table(self._journal / f"{name}.rejects.parquet", REJECTS_SCHEMA)
            except (OSError, ValueError, TypeError):
                break
            path = self.root / name
            if not path.exists() or path.stat().st_size != entry.bytes or file_xxh3(path)[0] != entry.xxh3:
                break
            for key, members in zip(samples["key"].to_pylist(), samples["members"].to_pylist()):
                self._replay.append((key, [(m["ext"], m["xxh3"]) for m in members]))
            self._replay_rejects += [tuple(r.values()) for r in rejects.to_pylist()]
            self._shards.append(entry)
        self._wipe_from(self.spec.name, len(self._shards))
        if self._shards:
            log.info("%s: resuming after %d complete shards (%d samples)", self.root, len(self._shards), len(self._replay))

    def _wipe_from(self, dataset: str, first: int) -> None:
        """Remove ``dataset``'s shards numbered ``first`` and up, their journal entries, temp files."""
        shard = shard_pattern(dataset)
        ours = "|".join(re.escape(n) for n in (SAMPLES_INDEX, REJECTS_INDEX, MANIFEST))
        temp = re.compile(rf"^\.({re.escape(dataset)}-\d{{6}}\.tar|{ours})\.tmp$")
        journaled = re.compile(rf"^{re.escape(dataset)}-(\d{{6}})\.tar\.")
        for path in self.root.iterdir():
            m = shard.match(path.name)
            if (m and int(m.group(1)) >= first) or temp.match(path.name):
                path.unlink()
        if self._journal.is_dir():
            for path in self._journal.iterdir():
                m = journaled.match(path.name)
                if (m and int(m.group(1)) >= first) or path.name.endswith(".tmp"):
                    path.unlink()
        fsync_dir(self.root)

    def _match_replay(self, key: str, members: list[tuple[str, int]]) -> None:
        expected_key, expected_members = self._replay[self._written - 1]
        if (key, members) != (expected_key, expected_members):
            raise ResumeMismatchError(
                f"{self.root}: sample #{self._written} ({key!r}) differs from the one the interrupted build "
                f"wrote ({expected_key!r}); the inputs changed without changing the build spec, rebuild with resume off"
            )

    def _concat_journal(self, kind: str, schema: pa.Schema) -> pa.Table:
        tables = [read_table(self._journal / f"{s.name}.{kind}.parquet", schema) for s in self._shards]
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def _reconcile(self, samples: pa.Table, rejects: pa.Table) -> Counts:
        records_written, records_rejected = accounted_records(samples, rejects)
        counts = Counts(self._read, samples.num_rows, rejects.num_rows, records_written, records_rejected)
        if counts.read != counts.records_written + counts.records_rejected:
            raise ReconcileError(
                f"{self.root}: {counts.read} records read but {counts.records_written} have samples and "
                f"{counts.records_rejected} more were rejected; every record read must be written or rejected "
                f"(a builder bug; the dataset was not committed)"
            )
        return counts

    @contextlib.contextmanager
    def _io_guard(self, doing: str) -> Iterator[None]:
        """An I/O error (a full disk, say) closes the writer: complete shards stay for a resume,
        the open one is dropped, and the error names the dataset and what was being written."""
        try:
            yield
        except OSError as e:
            shard = f" shard {self._file_name}" if self._file is not None else ""
            self.abort()
            raise DatasetWriteError(
                f"dataset {self.spec.name!r} at {self.root}: {doing}{shard} failed: {e.strerror or e}; "
                "complete shards are kept, run the build again to resume"
            ) from e

    def _check_open(self) -> None:
        if self._lock_fd is None:
            raise RuntimeError(f"writer for {self.root} is already closed")

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None


def check_writable(root: Path, fingerprint: str, *, overwrite: bool) -> Manifest | None:
    """The committed manifest a build of ``fingerprint`` into ``root`` would replace (None if there is
    none). Without ``overwrite`` a committed (or unreadable) one is refused: DatasetExistsError
    (ManifestError). Separate from the writer so that a build split into parts can refuse before
    building them."""
    try:
        committed = load_manifest(root)
    except ManifestError:
        if not overwrite:
            raise
        committed = None
    if (root / MANIFEST).exists() and not overwrite:
        same = committed is not None and committed.fingerprint == fingerprint
        raise DatasetExistsError(
            f"{root} already holds dataset {committed.spec.name if committed else '?'!r}, "
            + ("built from the same inputs and parameters (nothing to do)" if same
               else "built from different inputs or parameters; pass overwrite to rebuild it")
        )
    return committed


def _acquire_lock(root: Path) -> int:
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise DatasetBusyError(f"{root} is being written by another build (pid {holder}); wait for it or stop it") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _file_entry(path: Path) -> FileEntry:
    digest, size = file_xxh3(path)
    return FileEntry(size, digest)
