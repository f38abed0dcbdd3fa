"""Hostile and malformed raw inputs against every builder: fuzzed files and hostile img2dataset shards.

Why: builders read files we did not write (publishers' JSON, XML and text, img2dataset's tars and
parquet). Whatever is in them, a build must end in one of two ways: it refuses the input with one
line naming a file under it (InputFormatError), or it commits a dataset that verifies, in which
every record of the input is written or in rejects.parquet with a reason. A crash, a hang, a file
created outside the output folder or a record that vanishes breaks that promise.

Each trial copies a clean raw folder (the sample world, and the real panopticapi and Flickr30k
Entities samples where ``tests.fixtures.FIXTURES`` has them), damages it with a seeded mutation,
and builds it in a forked child with a time bound, so a hang is killed and reported rather than
stalling the run. "Lost" counts records of the damaged input (counted here, independently of the
parsers) that the build neither wrote nor rejected.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import re
import resource
import shutil
import struct
import tarfile
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tests.fixtures import FIXTURES
from tests.reliability.trials import Outcome, Scenario

TRIAL_SECONDS = 60  #: per-input time bound: a build of these few-record folders takes well under a second
EXTRA_RSS = 192 * 1024 * 1024  #: a trial grows the child by ~40 MiB; a decoded bomb (>= 64 Mpx) or a slurped member (>= 300 MiB) would not fit
WORLD_IMAGES = 4

Verdict = tuple[bool, str, int]  #: (survived, why not, records lost)


# ---------------------------------------------------------------- one trial, isolated

def isolated(fn: Callable[..., Verdict], *args: Any, timeout: float = TRIAL_SECONDS) -> Verdict:
    """Run ``fn(*args)`` in a forked child: a crash comes back as its exception, a hang is killed."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(send, fn, args), daemon=True)
    child.start()
    send.close()
    try:
        if receive.poll(timeout):
            return receive.recv()
        return False, f"hang: no result within {timeout:.0f} s", 0
    except EOFError:
        return False, f"the build process died (exit code {child.exitcode})", 0
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        receive.close()


def _child(send: Any, fn: Callable[..., Verdict], args: tuple) -> None:
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:
        verdict = fn(*args)
    except Exception as e:  # the promise broken: an exception other than a refusal escaped the build
        frame = traceback.extract_tb(e.__traceback__)[-1]
        verdict = False, f"crash: {type(e).__name__}: {str(e)[:300]} (at {Path(frame.filename).name}:{frame.lineno})", 0
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    if grown > EXTRA_RSS and verdict[0]:
        verdict = False, f"memory: the build grew by {grown >> 20} MiB (limit {EXTRA_RSS >> 20} MiB)", verdict[2]
    send.send(verdict)
    send.close()


def build_and_check(name: str, root: Path, out: Path, expected: set[str] | int | None,
                    rejected_like: str = "", outside: tuple[Path, ...] = (), must_commit: bool = False) -> Verdict:
    """Build ``root`` with builder ``name`` and judge the result against the promises above.

    ``expected``: the record ids (or the number of records) the damaged input holds, counted
    here; ``rejected_like``: a regex some reject reason must match (the planted fault named);
    ``outside``: paths that must not exist afterwards (where a hostile member name points);
    ``must_commit``: refusing the whole input is a failure (one bad member must not cost the rest)."""
    from datasets_builders.build import build_dataset
    from datasets_builders.sources.contract import InputFormatError
    from datasets_builders.store import verify_dataset

    try:
        result = build_dataset(name, root, out)
    except InputFormatError as e:
        message = str(e)
        if must_commit:
            return False, f"refused the whole input: {message[:300]}", 0
        if "\n" in message or str(root) not in message:
            return False, f"refusal does not name a file under the input in one line: {message[:300]!r}", 0
        if (out / "manifest.json").exists():
            return False, f"refused ({message[:200]}) but a manifest was committed", 0
        if made := [str(p) for p in outside if p.exists() or p.is_symlink()]:
            return False, f"created outside the output folder: {made}", 0
        return True, "", 0
    counts = result.manifest.counts
    problems: list[str] = []
    lost = max(0, counts.read - counts.records_written - counts.records_rejected)
    if lost:
        problems.append(f"read {counts.read} records but wrote {counts.records_written} and rejected "
                        f"{counts.records_rejected}")
    rejects = pq.read_table(out / "rejects.parquet").to_pylist()
    if bad := [r for r in rejects if not (r["stage"] and r["reason"] and r["reason"].strip())]:
        problems.append(f"{len(bad)} rejects without a stage or reason, e.g. {bad[0]}")
    if isinstance(expected, int) and counts.read < expected:
        problems.append(f"the input holds {expected} records but only {counts.read} were read")
        lost += expected - counts.read
    elif isinstance(expected, set) and not any(r["source_id"].endswith(".parquet") for r in rejects):
        # (a parquet rejected as a whole, with its reason, accounts for its rows like a refused file)
        seen = {r["source_id"] for r in rejects}
        seen |= {s["source_id"] for s in pq.read_table(out / "samples.parquet", columns=["source_id"]).to_pylist()}
        if missing := sorted(expected - seen):
            problems.append(f"records neither written nor rejected: {missing[:5]}")
            lost += len(missing)
    if rejected_like and not any(re.search(rejected_like, r["reason"]) for r in rejects):
        problems.append(f"no reject names the planted fault (/{rejected_like}/); reasons: "
                        f"{[r['reason'][:120] for r in rejects][:4]}")
    if made := [str(p) for p in outside if p.exists() or p.is_symlink()]:
        problems.append(f"created outside the output folder: {made}")
    report = verify_dataset(out)
    if not report.ok:
        problems.append(f"verify fails: {[str(p) for p in report.problems][:3]}")
    return not problems, "; ".join(problems), lost


# ---------------------------------------------------------------- record counts, independent of the parsers

def _json_or_none(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None


def _list_len(doc: Any, key: str | None) -> int:
    items = doc if key is None else (doc.get(key) if isinstance(doc, dict) else None)
    return len(items) if isinstance(items, list) else 0


def expected_records(name: str, root: Path) -> set[str] | int | None:
    """How many records (or which record ids) the raw folder holds, by the format's own definition
    of a record; None where the damaged file no longer parses (then a refusal or a reject of the
    whole file is the expected outcome, and the writer's reconcile is what is checked)."""
    def total(paths: list[Path], key: str | None) -> int | None:
        docs = [_json_or_none(p) for p in paths]
        return None if any(d is None for d in docs) else sum(_list_len(d, key) for d in docs)

    if name == "coco-panoptic":  # a panoptic JSON: categories, and annotations carrying segments_info
        docs = [_json_or_none(p) for p in sorted([*root.glob("*.json"), *root.glob("*/*.json")])]
        return sum(len(d["annotations"]) for d in docs if isinstance(d, dict) and isinstance(d.get("categories"), list)
                   and isinstance(d.get("annotations"), list) and d["annotations"]
                   and isinstance(d["annotations"][0], dict) and "segments_info" in d["annotations"][0])
    if name == "coco-captions":
        return total(sorted(root.rglob("captions_*.json")), "annotations")
    if name == "vqa":
        return total(sorted(root.rglob("v2_OpenEnded_mscoco_*_questions.json")), "questions")
    if name == "aokvqa":
        docs = [_json_or_none(p) for p in sorted(root.rglob("aokvqa_v*_*.json"))]
        return None if any(d is None for d in docs) else sum(len(d) if isinstance(d, list) else 0 for d in docs)
    if name == "gqa":
        docs = [_json_or_none(p) for p in sorted(root.rglob("*_balanced_questions.json"))]
        return None if any(d is None for d in docs) else sum(len(d) if isinstance(d, dict) else 0 for d in docs)
    if name == "textcaps":
        return total(sorted(root.rglob("TextCaps_*.json")), "data")
    if name == "ocrvqa":
        doc = _json_or_none(root / "dataset.json")
        return len(doc) if isinstance(doc, dict) else None
    if name == "visual-genome":
        doc = _json_or_none(root / "region_descriptions.json")
        return len(doc) if isinstance(doc, list) else None
    if name == "okvqa":
        return total(sorted(root.rglob("OpenEnded_mscoco_*_questions.json")), "questions")
    if name == "refcoco":
        return total(sorted(root.glob("refs(*).json")), None)
    if name == "llava":
        docs = [_json_or_none(p) for p in sorted(root.glob("*.json"))]
        return sum(len(d) for d in docs if isinstance(d, list) and d and isinstance(d[0], dict))
    if name == "unnatural-instructions":
        path = root / "core_data.jsonl"
        return sum(1 for line in path.read_bytes().split(b"\n") if line.strip()) if path.is_file() else None
    if name == "flickr30k-entities":
        return len(list((root / "Sentences").glob("*.txt")))
    if name in ("grit", "image-text"):
        return _web_keys(root)
    raise ValueError(name)


def _web_keys(root: Path) -> set[str] | None:
    """Keys of an img2dataset folder: every url its parquet lists, downloaded or not."""
    keys: set[str] = set()
    for path in root.glob("*.parquet"):
        try:
            keys |= {str(k) for k in pq.read_table(path, columns=["key"])["key"].to_pylist() if k is not None}
        except (OSError, KeyError, pa.ArrowException):
            return None
    return keys


# ---------------------------------------------------------------- mutations

NASTY: tuple[Any, ...] = (
    None, True, False, 0, -1, 2**63, -(2**63) - 1, 10**400, 1e308, -5e-324, float("nan"), float("inf"),
    float("-inf"), 1.5, "", " ", "12", "🙂\u202e\u0000ü\u0301", "\ud800", "x" * 100_000, "../../etc/passwd",
    [], {}, [1, 2, 3, 4], [[0, 0], [1e9, 1e9]], {"id": 1}, "NaN",
)
DEEP = "__deep_nesting__"


def mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    op = rng.choice(("truncate", "flip", "insert", "delete", "repeat", "empty", "garbage"))
    at = rng.randrange(len(data) + 1)
    if op == "truncate":
        return data[:at], f"truncated at byte {at} of {len(data)}"
    if op == "flip" and data:
        out = bytearray(data)
        spots = [rng.randrange(len(data)) for _ in range(rng.randint(1, 8))]
        for i in spots:
            out[i] ^= 1 << rng.randrange(8)
        return bytes(out), f"bits flipped at {spots}"
    if op == "insert":
        junk = rng.randbytes(rng.randint(1, 64))
        return data[:at] + junk + data[at:], f"{len(junk)} random bytes inserted at {at}"
    if op == "delete":
        end = min(len(data), at + rng.randint(1, 256))
        return data[:at] + data[end:], f"bytes {at}..{end} deleted"
    if op == "repeat":
        end = min(len(data), at + rng.randint(1, 4096))
        return data[:end] + data[at:], f"bytes {at}..{end} repeated"
    if op == "garbage":
        return rng.randbytes(rng.randint(1, 2048)), "replaced with random bytes"
    return b"", "emptied"


def _walk(doc: Any, rng: random.Random) -> list[Any]:
    """A random path of keys/indexes from the root into ``doc`` (possibly empty: the root)."""
    path, node = [], doc
    while isinstance(node, (dict, list)) and node and rng.random() < 0.8:
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        path.append(key)
        node = node[key]
    return path


def mutate_json(doc: Any, rng: random.Random) -> tuple[str, str]:
    """Serialised ``doc`` with one node deleted, retyped, duplicated or nested deep."""
    path = _walk(doc, rng)
    op = rng.choice(("replace", "replace", "replace", "delete", "duplicate", "deep", "rename"))
    value = rng.choice(NASTY)
    where = "/" + "/".join(map(str, path))
    if not path:
        doc, what = (DEEP, "root nested 100000 deep") if op == "deep" else (value, f"root replaced by {value!r:.40}")
    else:
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        if op == "delete":
            del parent[key]
            what = f"{where} deleted"
        elif op == "duplicate" and isinstance(parent, list):
            parent.insert(key, json.loads(json.dumps(parent[key])))
            what = f"{where} duplicated"
        elif op == "deep":
            parent[key] = DEEP
            what = f"{where} nested 100000 deep"
        elif op == "rename" and isinstance(parent, dict):
            parent[rng.choice(("", key.upper(), key + "\u0301", " " + key))] = parent.pop(key)
            what = f"{where} key renamed"
        else:
            parent[key] = value
            what = f"{where} replaced by {value!r:.40}"
    text = json.dumps(doc, ensure_ascii=rng.random() < 0.5)
    return text.replace(json.dumps(DEEP), "[" * 100_000 + "]" * 100_000), what


_NUMBER = re.compile(rb"-?\d+(\.\d+)?")
BILLION_LAUGHS = (b'<?xml version="1.0"?>\n<!DOCTYPE annotation [<!ENTITY a0 "aaaaaaaaaa">'
                  + b"".join(b'<!ENTITY a%d "%s">' % (i, b"&a%d;" % (i - 1) * 10) for i in range(1, 10)) + b"]>\n")


def mutate_text(data: bytes, rng: random.Random, xml: bool) -> tuple[bytes, str]:
    """A markup-aware mutation of an XML or annotated-sentence file (numbers, brackets, entities)."""
    op = rng.choice(("number", "number", "line", "bracket", "unicode", "entity" if xml else "bracket"))
    numbers = list(_NUMBER.finditer(data))
    if op == "number" and numbers:
        m = rng.choice(numbers)
        new = rng.choice((b"-5", b"99999999999999999999999", b"nan", b"1e309", b"", b"0x10", b"-0", b"1.5"))
        return data[:m.start()] + new + data[m.end():], f"number {m.group().decode()} at {m.start()} -> {new.decode()}"
    lines = data.splitlines(keepends=True)
    if op == "line" and lines:
        i = rng.randrange(len(lines))
        dup = rng.random() < 0.5
        return b"".join(lines[:i] + ([lines[i]] * 2 if dup else []) + lines[i + 1:]), \
            f"line {i + 1} {'duplicated' if dup else 'deleted'}"
    if op == "bracket":
        marks = [m.start() for m in re.finditer(rb"[\[\]<>/]", data)]
        if marks:
            at = rng.choice(marks)
            return data[:at] + data[at + 1:], f"markup character {data[at:at + 1].decode()!r} at {at} deleted"
    if op == "entity":
        if rng.random() < 0.5:
            body = re.sub(rb"^<\?xml[^>]*>\s*", b"", data)
            return BILLION_LAUGHS + body.replace(b"<name>", b"<name>&a9;", 1), "billion-laughs entity expansion"
        doctype = b'<?xml version="1.0"?>\n<!DOCTYPE annotation [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
        body = re.sub(rb"^<\?xml[^>]*>\s*", b"", data)
        return doctype + body.replace(b"<name>", b"<name>&x;", 1), "external entity (file:///etc/passwd)"
    at = rng.randrange(len(data) + 1)
    text = rng.choice(("🙂", "\u202e", "\u0000", "é", "\ufeff", "\udcff")).encode("utf-8", "surrogateescape")
    return data[:at] + text + data[at:], f"character {text!r} inserted at {at}"


def mutate_tar_members(path: Path, rng: random.Random) -> str:
    """Rewrite one of our own generated tars with one member's content mutated."""
    with tarfile.open(path) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]
    i = rng.randrange(len(members))
    name, data = members[i]
    doc = _json_or_none_bytes(data) if name.endswith(".json") else None
    if doc is not None and rng.random() < 0.8:
        text, what = mutate_json(doc, rng)
        data = text.encode("utf-8", "surrogatepass")
    elif name.endswith(".txt") and rng.random() < 0.5:
        data, what = mutate_text(data, rng, xml=False)
    else:
        data, what = mutate_bytes(data, rng)
    members[i] = (name, data)
    write_tar(path, [(tarfile.TarInfo(n), d) for n, d in members])
    return f"member {name}: {what}"


def _json_or_none_bytes(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def mutate_parquet(path: Path, rng: random.Random) -> str:
    """img2dataset's parquet with a column dropped, retyped, nulled, or rows duplicated or invented."""
    table = pq.read_table(path)
    op = rng.choice(("drop", "retype", "null", "duplicate", "invent"))
    column = rng.choice(table.column_names)
    if op == "drop":
        table = table.drop_columns([column])
    elif op == "retype":
        table = table.set_column(table.column_names.index(column), column, pa.array(range(table.num_rows)))
    elif op == "null":
        table = table.set_column(table.column_names.index(column), column, pa.nulls(table.num_rows, table.schema.field(column).type))
    elif op == "duplicate":
        table = pa.concat_tables([table, table.slice(0, 1)])
    else:
        rows = table.slice(0, 1).to_pylist()
        rows[0].update(key="99999999", status="success")
        table = pa.concat_tables([table, pa.Table.from_pylist(rows, schema=table.schema)])
    pq.write_table(table, path)
    return f"parquet: {op} {column}" if op in ("drop", "retype", "null") else f"parquet: {op} a row"


def write_tar(path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    """A tar of exactly these headers; data None means a sparse hole of ``info.size`` bytes (a huge
    member that costs no disk). Written by hand so any header, however hostile, is kept as given."""
    with path.open("wb") as f:
        for info, data in entries:
            if data is not None and info.isfile():
                info.size = len(data)
            f.write(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))
            if data is None:
                f.seek(info.size + (-info.size % 512), 1)
            elif info.isfile():
                f.write(data + bytes(-len(data) % 512))
        f.write(bytes(1024))


# ---------------------------------------------------------------- clean inputs to damage

@dataclass(frozen=True)
class Base:
    name: str  #: builder
    root: Path  #: a clean raw folder (never modified: each trial copies it)
    label: str  #: "sample world" or the fixture


def bases(workdir: Path, seed: int) -> dict[str, list[Base]]:
    """Clean raw folders per builder: the sample world, plus the real fixtures where present."""
    from datasets_builders.registry import SOURCES
    from datasets_builders.sample_world.world import write_sample_world

    world = workdir / "clean-world"
    if not world.exists():
        write_sample_world(world, images=WORLD_IMAGES, seed=seed % 1000)
    found = {name: [Base(name, world / name, "sample world")] for name in SOURCES}
    if (FIXTURES / "coco_panoptic" / "panoptic_examples.json").is_file():
        found["coco-panoptic"].append(Base("coco-panoptic", FIXTURES / "coco_panoptic", "panopticapi sample"))
    flickr = FIXTURES / "flickr30k_entities"
    if (flickr / "Annotations").is_dir():
        local = workdir / "clean-flickr-fixture"
        if not local.exists():
            shutil.copytree(flickr, local)
            from PIL import Image
            (local / "flickr30k-images").mkdir()
            Image.new("RGB", (333, 500), (90, 120, 60)).save(local / "flickr30k-images" / "1000092795.jpg")
        found["flickr30k-entities"].append(Base("flickr30k-entities", local, "Flickr30k Entities sample"))
    return found


IMAGE_SUFFIXES = (".jpg", ".jpeg")


def damage(root: Path, rng: random.Random) -> str:
    """Apply one seeded mutation to one file of the raw folder ``root``; say what was done."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    annotations = [p for p in files if p.suffix not in IMAGE_SUFFIXES and not p.name.endswith("_stats.json")
                   and p.name not in ("README.md", "LICENSE-panopticapi.txt")]
    images = [p for p in files if p.suffix in IMAGE_SUFFIXES]
    target = rng.choice(images if images and rng.random() < 0.15 else annotations)
    where = str(target.relative_to(root))
    data = target.read_bytes()
    if rng.random() < 0.05:
        target.unlink()
        return f"{where}: deleted"
    if target.suffix == ".png" and rng.random() < 0.3:
        target.write_bytes(bomb_png(rng))
        return f"{where}: replaced by a decompression bomb PNG"
    if target.suffix == ".tar" and rng.random() < 0.7:
        return f"{where}: {mutate_tar_members(target, rng)}"
    if target.suffix == ".parquet" and rng.random() < 0.6:
        return f"{where}: {mutate_parquet(target, rng)}"
    if target.suffix in (".json", ".jsonl") and rng.random() < 0.8:
        if target.suffix == ".jsonl":
            lines = data.decode().splitlines()
            i = rng.randrange(len(lines))
            text, what = mutate_json(json.loads(lines[i]), rng)
            lines[i] = text
            target.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + b"\n")
            return f"{where} line {i + 1}: {what}"
        text, what = mutate_json(json.loads(data), rng)
        target.write_bytes(text.encode("utf-8", "surrogatepass"))
        return f"{where}: {what}"
    if target.suffix in (".xml", ".txt") and rng.random() < 0.7:
        new, what = mutate_text(data, rng, xml=target.suffix == ".xml")
    else:
        new, what = mutate_bytes(data, rng)
    target.write_bytes(new)
    return f"{where}: {what}"


# ---------------------------------------------------------------- decompression bombs

def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(rng: random.Random) -> bytes:
    """A small PNG whose header claims more pixels than any builder may decode (up to 2^31 per side)."""
    from datasets_builders.sources.images import MAX_PIXELS

    side = int(MAX_PIXELS ** 0.5) + 1
    width, height = rng.choice(((side, side), (2**31 - 1, 1 + rng.randrange(64)), (65535, 65535),
                                (rng.randint(side, 4 * side), rng.randint(side, 4 * side))))
    mode = rng.choice((2, 6))  # RGB, RGBA
    rows = zlib.compress(bytes(4096), 9)  # far too little data: only the header is ever looked at
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, mode, 0, 0, 0))
            + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b""))


def bomb_jpeg(jpeg: bytes, rng: random.Random) -> bytes:
    """A real JPEG with its frame header claiming up to 65535 x 65535 pixels."""
    at = next(m.start() for m in re.finditer(rb"\xff[\xc0-\xc2]", jpeg))
    height, width = rng.choice(((65535, 65535), (60000, 2000), (9000, 9000)))
    return jpeg[:at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9:]


# ---------------------------------------------------------------- scenarios: fuzzed raw files

def fuzz(name: str) -> Callable[[int, int, Path], Outcome]:
    def run(trials: int, seed: int, workdir: Path) -> Outcome:
        choices = bases(workdir, seed)[name]
        labels = " + ".join(b.label for b in choices)
        outcome = Outcome(f"fuzzed {name} files ({labels})")
        for trial in range(trials):
            rng = random.Random(f"{seed}-{name}-{trial}")
            base = choices[trial % len(choices)]
            root = workdir / f"trial-{trial}" / "raw"
            shutil.copytree(base.root, root)
            what = damage(root, rng)
            expected = expected_records(name, root)
            survived, why, lost = isolated(build_and_check, name, root, workdir / f"trial-{trial}" / "out", expected)
            outcome.trial(survived, f"{base.label} {what}: {why}", lost)
            shutil.rmtree(workdir / f"trial-{trial}")
        return outcome
    return run


# ---------------------------------------------------------------- scenarios: hostile img2dataset shards

SENTINEL = "crayonflow-hostile-sentinel"


def _members(tar_path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(tar_path) as tar:
        return [(tarfile.TarInfo(m.name), tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, size
    return info


def _plant(cls: str, entries: list[tuple[tarfile.TarInfo, bytes | None]], rng: random.Random, root: Path
           ) -> tuple[str, str, tuple[Path, ...]]:
    """Insert one hostile member of class ``cls``; returns (what, reason regex, paths it must not create)."""
    keys = sorted({info.name.partition(".")[0] for info, _ in entries})
    key = rng.choice(keys)
    at = rng.randrange(len(entries) + 1)
    outside = (root.parent / SENTINEL, Path("/tmp") / SENTINEL, root / SENTINEL)
    if cls == "paths":
        name = rng.choice((f"../{SENTINEL}.jpg", f"../../{SENTINEL}", f"/tmp/{SENTINEL}", f"{key}/../../{SENTINEL}.json",
                           f"..\\{SENTINEL}.txt", f"./{key}.json", f"{key}.json/..", f"sub/{key}.jpg"))
        entries.insert(at, (_info(name), b'{"caption": "escape"}'))
        return f"member named {name!r}", r"not a flat", outside
    if cls == "links":
        kind = rng.choice((tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE))
        name = rng.choice((f"{key}.jpg", f"{key}.json", SENTINEL, f"{SENTINEL}.txt"))
        link = rng.choice(("/etc/passwd", f"../../{SENTINEL}", f"{keys[0]}.jpg", "/dev/zero"))
        if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) and rng.random() < 0.5:  # link first, then a write through it
            entries.insert(at, (_info(name, kind, link), b""))
            entries.insert(at + 1, (_info(name), b"overwrite"))
        else:
            entries.insert(at, (_info(name, kind, link), b""))
        return f"{kind!r}-type member {name!r} -> {link!r}", r"not a regular file", outside
    if cls == "duplicates":
        info, data = next(e for e in entries if e[0].name.startswith(key))
        entries.insert(rng.randrange(len(entries) + 1), (_info(info.name), rng.choice((b"", b"{}", data[::-1], data))))
        return f"member {info.name} twice", r"occurs twice", outside
    if cls == "huge":
        size = rng.choice((300 << 20, 512 << 20, 1 << 30))
        name = f"{key}.{rng.choice(('jpg', 'json', 'txt'))}"
        entries[:] = [e for e in entries if e[0].name != name]
        entries.insert(at, (_info(name, size=size), None))
        return f"member {name} of {size} bytes", r"over the \d+ limit", outside
    if cls == "bombs":
        name = f"{key}.jpg"
        jpeg = next(d for i, d in entries if i.name == name)
        bomb = bomb_jpeg(jpeg, rng) if rng.random() < 0.4 else bomb_png(rng)
        entries[:] = [(i, bomb if i.name == name else d) for i, d in entries]
        return f"{name} replaced by a decompression bomb", r"pixels, over the \d+ limit|DecompressionBomb", outside
    if cls == "truncated":
        return "", r"not a readable tar|cut short|has no .* member|is not a regular|no json member", outside
    raise ValueError(cls)


def _hostile_trial(cls: str, base: Path, rng: random.Random, trial_dir: Path) -> tuple[str, Path, str, tuple[Path, ...]]:
    root = trial_dir / "raw"
    shutil.copytree(base, root)
    tar_path = root / "00000.tar"
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = list(_members(tar_path))
    what, pattern, outside = _plant(cls, entries, rng, root)
    write_tar(tar_path, entries)
    if cls == "truncated":
        size = tar_path.stat().st_size
        cut = rng.randrange(1, size - 1024)
        with tar_path.open("r+b") as f:
            f.truncate(cut)
        what = f"00000.tar cut at byte {cut} of {size}"
    return what, root, pattern, outside


HOSTILE_CLASSES = {
    "paths": "member names with .., absolute paths or folders",
    "links": "symlinks, hard links, devices, fifos and folders as members",
    "duplicates": "duplicate member names (keys)",
    "huge": "huge members (300 MiB - 1 GiB, over the member limit)",
    "bombs": "decompression bombs (PNG/JPEG headers over the pixel limit)",
    "truncated": "tars truncated at a random byte",
}


def hostile(cls: str) -> Callable[[int, int, Path], Outcome]:
    def run(trials: int, seed: int, workdir: Path) -> Outcome:
        world = bases(workdir, seed)
        outcome = Outcome(f"hostile shards: {HOSTILE_CLASSES[cls]} (grit, image-text)")
        for trial in range(trials):
            rng = random.Random(f"{seed}-{cls}-{trial}")
            name = ("grit", "image-text")[trial % 2]
            trial_dir = workdir / f"trial-{trial}"
            what, root, pattern, outside = _hostile_trial(cls, world[name][0].root, rng, trial_dir)
            survived, why, lost = isolated(build_and_check, name, root, trial_dir / "out", _web_keys(root),
                                           pattern, outside, True)
            outcome.trial(survived, f"{name} {what}: {why}", lost)
            for path in outside:  # a failed trial must not leave its escape behind for the next one
                if path.is_symlink() or path.is_file():
                    path.unlink()
            shutil.rmtree(trial_dir)
        return outcome
    return run


FUZZED = ("coco-panoptic", "flickr30k-entities", "refcoco", "vqa", "okvqa", "aokvqa", "gqa", "textcaps",
          "ocrvqa", "visual-genome", "coco-captions", "llava",
          "unnatural-instructions", "grit", "image-text")

SCENARIOS = [
    *(Scenario(f"fuzz-{name}", fuzz(name), full_trials=250, ci_trials=12) for name in FUZZED),
    *(Scenario(f"hostile-shards-{cls}", hostile(cls), full_trials=60, ci_trials=6) for cls in HOSTILE_CLASSES),
]
