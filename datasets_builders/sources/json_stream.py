"""Items out of a big JSON file one at a time, so a build's memory does not grow with the file.

Why: COCO-style annotation files are one JSON document of up to several GB (COCO panoptic train:
118k images, 1.1 M segments); ``json.load`` holds all of it, as Python objects several times the
file's size, in every process that reads it. ``ijson`` (yajl's C parser) walks the file and
builds one item at a time: a pass costs time, not memory. Errors are the readers' contract: a
broken file is an :class:`InputFormatError` naming it and where the parser stopped, a transient
I/O error is re-raised for the orchestrator to retry.

A broken tail is found only when a pass reaches it, after the items before it were yielded;
the build loop's plan counts every record first (one full pass), so a build refuses such a file
before it writes anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import ijson
import numpy as np

from datasets_builders.sources.contract import InputFormatError, is_transient

EXACT_WHERE_BYTES = 64 << 20  #: files up to this size get the line and column of a fault
MAX_DEPTH = 100  #: of arrays and objects; COCO's files need 6
_DEPTH_CHUNK = 16 << 20
_BRACKET = np.zeros(256, bool)
_BRACKET[[91, 93, 123, 125]] = True
_STEP = np.zeros(256, np.int64)
_STEP[[91, 123]], _STEP[[93, 125]] = 1, -1
_DEPTH_CHECKED: dict[str, tuple[int, int]] = {}  #: path -> (size, mtime_ns) checked by this process


def json_items(path: Path, prefix: str) -> Iterator[Any]:
    """The values at ``prefix`` in ijson's path syntax (``annotations.item``: each element of the
    top-level ``annotations`` list), in file order; numbers with a fraction come as floats."""
    return _stream(path, lambda f: ijson.items(f, prefix, use_float=True))


def json_pairs(path: Path, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """The ``(key, value)`` pairs of the object at ``prefix`` (``""``: the top level), in file
    order: for files that are one big dict, as GQA's questions (question id -> question)."""
    return _stream(path, lambda f: ijson.kvitems(f, prefix, use_float=True))


def json_events(path: Path) -> Iterator[tuple[str, str, Any]]:
    """ijson's ``(prefix, event, value)`` stream, for checks that stop early (the shape of a file)."""
    return _stream(path, lambda f: ijson.parse(f, use_float=True))


def top_level(path: Path) -> str | None:
    """``"map"`` or ``"array"`` (or None for a scalar or an empty file): what the document is, from
    its first event, before a reader uses any of it."""
    first = next(json_events(path), None)
    return first[1].removeprefix("start_") if first is not None and first[1] in ("start_map", "start_array") else None


def _stream(path: Path, walk: Callable[[BinaryIO], Iterator[Any]]) -> Iterator[Any]:
    with _open(path) as f:
        try:
            yield from walk(f)
        except ijson.JSONError as e:
            raise _broken(path, f, e) from None
        except (OSError, UnicodeDecodeError) as e:
            raise _unreadable(path, e) from None


def _open(path: Path):  # noqa: ANN202 - a binary file
    try:
        stat = path.stat()
        if _DEPTH_CHECKED.get(str(path)) != (stat.st_size, stat.st_mtime_ns):
            with path.open("rb") as f:
                check_depth(f, path)
            _DEPTH_CHECKED[str(path)] = (stat.st_size, stat.st_mtime_ns)
        return path.open("rb")
    except OSError as e:
        raise _unreadable(path, e) from None


def check_depth(f: BinaryIO, path: Path, limit: int = MAX_DEPTH) -> None:
    """Refuse a file nested deeper than ``limit`` before ijson sees it: ijson names every event
    by its full path, so a file of 100,000 ``[`` costs quadratic time and memory (gigabytes from
    its first 64 KB buffer). A vectorised pass over the bytes (numpy, a few seconds per GB):
    brackets count outside strings; a quote counts unless an odd run of backslashes precedes it
    (rare, so those few are counted one by one)."""
    depth, in_string, offset, trail = 0, False, 0, 0  # trail: backslashes ending what was read so far
    while chunk := f.read(_DEPTH_CHUNK):
        a = np.frombuffer(chunk, np.uint8)
        quotes = np.flatnonzero(a == 34)
        after_backslash = quotes[(quotes > 0) & (a[np.maximum(quotes - 1, 0)] == 92)].tolist()
        if len(quotes) and quotes[0] == 0 and trail:
            after_backslash.insert(0, 0)
        escaped = [q for q in after_backslash if _backslashes_before(chunk, q, trail) % 2]
        counted = np.setdiff1d(quotes, np.array(escaped, np.int64), assume_unique=True) if escaped else quotes
        brackets = np.flatnonzero(_BRACKET[a])
        inside = (np.searchsorted(counted, brackets) + in_string) % 2 == 1
        outside = brackets[~inside]
        levels = depth + np.cumsum(_STEP[a[outside]])
        if len(levels) and levels.max() > limit:
            at = offset + int(outside[int(np.argmax(levels > limit))])
            raise InputFormatError(f"{path}: not usable JSON (nested more than {limit} deep at byte {at:,})")
        depth = int(levels[-1]) if len(levels) else depth
        in_string = bool((len(counted) + in_string) % 2)
        trail = _backslashes_before(chunk, len(chunk), trail)
        offset += len(a)


def _backslashes_before(chunk: bytes, position: int, carried: int) -> int:
    """The run of backslashes just before ``position``, ``carried`` added when it reaches the start."""
    run = 0
    while run < position and chunk[position - 1 - run] == 92:
        run += 1
    return run + (carried if run == position else 0)


def _broken(path: Path, f: Any, error: Exception) -> InputFormatError:
    """yajl says what but not where; a file up to ``EXACT_WHERE_BYTES`` is parsed again by ``json``
    for the line and column (the same message ``read_json`` gives), a bigger one gets the byte
    offset the reader had reached."""
    try:
        if path.stat().st_size <= EXACT_WHERE_BYTES:
            json.loads(path.read_bytes())
    except json.JSONDecodeError as e:
        return InputFormatError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})")
    except (RecursionError, OSError, UnicodeDecodeError, ValueError):
        pass
    what = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    try:
        where = f"before byte {f.tell():,}: "  # the reader's buffer end: the fault is at most one buffer back
    except (OSError, ValueError):
        where = ""
    return InputFormatError(f"{path}: not valid JSON ({where}{what})")


def _unreadable(path: Path, error: BaseException) -> BaseException:
    if is_transient(error):
        return error
    return InputFormatError(f"{path}: cannot read ({error})")
