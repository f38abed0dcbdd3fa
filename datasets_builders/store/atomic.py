"""Durable publishing: a file appears under its final name complete, or not at all.

POSIX ``rename`` within one directory is atomic, and ``fsync`` of the file before and of the
directory after makes the new name survive a power cut. Every file the store commits goes
through here.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(final: Path) -> Path:
    """Hidden temporary sibling of ``final``; readers and globs for ``*.tar`` never see it."""
    return final.with_name(f".{final.name}.tmp")


def publish(tmp: Path, final: Path) -> None:
    """Atomically move an fsynced ``tmp`` to ``final`` and make the rename durable."""
    os.replace(tmp, final)
    fsync_dir(final.parent)


@contextmanager
def discarded_on_error(tmp: Path) -> Iterator[Path]:
    """Remove the temp file ``tmp`` if writing it fails (a full disk): no half-written file stays."""
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(final: Path, data: bytes) -> None:
    with discarded_on_error(temp_name(final)) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    publish(tmp, final)


def link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` (a temp name, published next) hold the complete file ``src``: a hard link where
    the file system allows (no byte moves and ``src`` stays whole), else an fsynced copy."""
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
        with open(dst, "rb") as f:
            os.fsync(f.fileno())
