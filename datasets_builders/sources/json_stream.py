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

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ijson

from datasets_builders.sources.contract import InputFormatError, is_transient


def json_items(path: Path, prefix: str) -> Iterator[Any]:
    """The values at ``prefix`` in ijson's path syntax (``annotations.item``: each element of the
    top-level ``annotations`` list), in file order; numbers with a fraction come as floats."""
    with _open(path) as f:
        try:
            yield from ijson.items(f, prefix, use_float=True)
        except ijson.JSONError as e:
            raise _broken(path, f, e) from None
        except (OSError, UnicodeDecodeError) as e:
            raise _unreadable(path, e) from None


def json_events(path: Path) -> Iterator[tuple[str, str, Any]]:
    """ijson's ``(prefix, event, value)`` stream, for checks that stop early (the shape of a file)."""
    with _open(path) as f:
        try:
            yield from ijson.parse(f, use_float=True)
        except ijson.JSONError as e:
            raise _broken(path, f, e) from None
        except (OSError, UnicodeDecodeError) as e:
            raise _unreadable(path, e) from None


def _open(path: Path):  # noqa: ANN202 - a binary file
    try:
        return path.open("rb")
    except OSError as e:
        raise _unreadable(path, e) from None


def _broken(path: Path, f: Any, error: Exception) -> InputFormatError:
    """yajl's message ends in a picture of the text around the fault; its first line says what."""
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
