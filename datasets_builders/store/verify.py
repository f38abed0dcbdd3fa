"""Re-read a dataset and check every byte against what was recorded when it was written.

Checks, per committed dataset: the manifest parses; both index files match their recorded size
and xxh3; every listed shard exists with its recorded size and xxh3; its tar headers walk
cleanly and list exactly the members the index lists, at the same offsets; every member's xxh3
matches; counts agree between manifest, shards and index; no unlisted shard lies beside them.
For an unfinished build it reports that, and still checks the complete shards it left against
their journal entries (so "killed mid-build" can be told apart from "damaged").
"""

from __future__ import annotations

import json
import mmap
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import xxhash

from datasets_builders.store import tar
from datasets_builders.store.index import REJECTS_SCHEMA, SAMPLES_SCHEMA, read_table
from datasets_builders.store.layout import JOURNAL, MANIFEST, REJECTS_INDEX, SAMPLES_INDEX
from datasets_builders.store.lineage import file_xxh3
from datasets_builders.store.manifest import ManifestError, load_manifest

_ANY_SHARD = re.compile(r"^[a-z0-9][a-z0-9_-]*-\d{6}\.tar$")


@dataclass(frozen=True)
class Problem:
    path: str  #: the damaged file
    member: str | None  #: the damaged member, when one can be named
    message: str

    def __str__(self) -> str:
        return f"{self.path}" + (f" [{self.member}]" if self.member else "") + f": {self.message}"


@dataclass
class VerifyReport:
    root: Path
    committed: bool = False
    shards: int = 0  #: shards whose every byte was checked
    samples: int = 0
    members: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.committed and not self.problems

    def damaged_shards(self) -> list[str]:
        return sorted({Path(p.path).name for p in self.problems if p.path.endswith(".tar")})


def verify_dataset(root: str | Path) -> VerifyReport:
    root = Path(root)
    report = VerifyReport(root)
    try:
        manifest = load_manifest(root)
    except ManifestError as e:
        report.problems.append(Problem(str(root / MANIFEST), None, str(e)))
        return report
    if manifest is None:
        _verify_unfinished(root, report)
        return report
    report.committed = True

    for name, entry in manifest.index.items():
        _check_file(root / name, entry.bytes, entry.xxh3, report)
    try:
        index = read_table(root / SAMPLES_INDEX, SAMPLES_SCHEMA)
        rejects = read_table(root / REJECTS_INDEX, REJECTS_SCHEMA)
    except (OSError, ValueError) as e:
        report.problems.append(Problem(str(root), None, f"index unreadable: {e}"))
        return report

    counts = manifest.counts
    if index.num_rows != counts.written or sum(s.samples for s in manifest.shards) != counts.written:
        report.problems.append(Problem(str(root / MANIFEST), None, (
            f"manifest counts {counts.written} samples, shards list {sum(s.samples for s in manifest.shards)}, "
            f"index has {index.num_rows}"
        )))
    if rejects.num_rows != counts.rejected:
        report.problems.append(Problem(str(root / REJECTS_INDEX), None,
                                       f"{rejects.num_rows} rejects, manifest counts {counts.rejected}"))

    by_shard = _members_by_shard(index)
    for entry in manifest.shards:
        path = root / entry.name
        n_samples, expected = by_shard.get(entry.name, (0, []))
        if n_samples != entry.samples:
            report.problems.append(Problem(str(path), None, f"index lists {n_samples} samples, manifest {entry.samples}"))
        if _check_shard(path, entry.bytes, entry.xxh3, expected, report):
            report.shards += 1
            report.samples += entry.samples
    listed = {s.name for s in manifest.shards}
    for path in sorted(root.glob(f"{manifest.spec.name}-*.tar")):
        if path.name not in listed:
            report.problems.append(Problem(str(path), None, "shard not listed in the manifest"))
    return report


def _check_file(path: Path, size: int, digest: str, report: VerifyReport) -> None:
    if not path.exists():
        report.problems.append(Problem(str(path), None, "missing"))
        return
    actual, actual_size = file_xxh3(path)
    _compare_whole(path, actual_size, actual, size, digest, report)


def _compare_whole(path: Path, actual_size: int, actual: str, size: int, digest: str, report: VerifyReport) -> None:
    if actual_size != size:
        report.problems.append(Problem(str(path), None, f"{actual_size} bytes, expected {size}"))
    elif actual != digest:
        report.problems.append(Problem(str(path), None, f"xxh3 {actual}, expected {digest}"))


def _check_shard(path: Path, size: int, digest: str, expected: list[tuple[str, int, int, int]],
                 report: VerifyReport) -> bool:
    """Whole-file size and xxh3, then a strict walk comparing every member with the index
    (name, place, xxh3); one read of the file. False if it is missing."""
    if not path.exists():
        report.problems.append(Problem(str(path), None, "missing"))
        return False
    with open(path, "rb") as f:
        if f.seek(0, 2) == 0:
            report.problems.append(Problem(str(path), None, "empty file"))
            return True
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
            _compare_whole(path, len(view), xxhash.xxh3_64_hexdigest(view), size, digest, report)
            _check_members(path, view, expected, report)
    return True


def _check_members(path: Path, view: mmap.mmap, expected: list[tuple[str, int, int, int]], report: VerifyReport) -> None:
    """Walk the tar strictly; every member must be the index's next one, at its place, intact."""
    seen = 0
    try:
        for name, offset, size in tar.walk(view):
            if seen >= len(expected):
                report.problems.append(Problem(str(path), name, f"member at byte {offset} is not in the index"))
                continue
            want_name, want_offset, want_size, want_xxh3 = expected[seen]
            seen += 1
            if (name, offset, size) != (want_name, want_offset, want_size):
                report.problems.append(Problem(str(path), want_name, (
                    f"tar has {name!r} at byte {offset} ({size} bytes), "
                    f"index says byte {want_offset} ({want_size} bytes)"
                )))
            _check_member(path, view, want_name, want_offset, want_size, want_xxh3, report)
    except tar.ShardFormatError as e:
        report.problems.append(Problem(str(path), None, str(e)))
        # The structure is broken; still check the remaining members' bytes where the
        # index says they are, so the report names every damaged member.
        for want in expected[seen:]:
            _check_member(path, view, *want, report)
        return
    for want_name, *_ in expected[seen:]:
        report.problems.append(Problem(str(path), want_name, "in the index but not in the tar"))


def _check_member(path: Path, view: mmap.mmap, name: str, offset: int, size: int, digest: int,
                  report: VerifyReport) -> None:
    report.members += 1
    data = view[offset : offset + size]
    if len(data) != size:
        report.problems.append(Problem(str(path), name, "truncated: member runs past the end of the file"))
    elif xxhash.xxh3_64_intdigest(data) != digest:
        report.problems.append(Problem(str(path), name, "content does not match its xxh3 (corrupted)"))


def _members_by_shard(index: pa.Table) -> dict[str, tuple[int, list[tuple[str, int, int, int]]]]:
    """Per shard: sample count and expected members in tar order (name, data offset, size, xxh3)."""
    out: dict[str, tuple[int, list[tuple[str, int, int, int]]]] = {}
    for shard, key, members in zip(index["shard"].to_pylist(), index["key"].to_pylist(), index["members"].to_pylist()):
        count, expected = out.get(shard, (0, []))
        expected.extend((f"{key}.{m['ext']}", m["offset"], m["size"], m["xxh3"]) for m in members)
        out[shard] = (count + 1, expected)
    return out


def _verify_unfinished(root: Path, report: VerifyReport) -> None:
    journal = root / JOURNAL
    shards = [p for p in sorted(root.glob("*.tar")) if _ANY_SHARD.match(p.name)]
    report.problems.append(Problem(str(root / MANIFEST), None, (
        f"missing: the build did not finish ({len(shards)} complete shards so far; "
        "run the same build again to resume it)" if journal.is_dir() else "missing: not a dataset folder"
    )))
    for path in shards:
        try:
            entry = json.loads((journal / f"{path.name}.json").read_bytes())
            fragment = read_table(journal / f"{path.name}.samples.parquet", SAMPLES_SCHEMA)
        except (OSError, ValueError):
            report.problems.append(Problem(str(path), None, "shard without a readable journal entry"))
            continue
        expected = _members_by_shard(fragment).get(path.name, (0, []))[1]
        if _check_shard(path, entry["bytes"], entry["xxh3"], expected, report):
            report.shards += 1
            report.samples += entry["samples"]

