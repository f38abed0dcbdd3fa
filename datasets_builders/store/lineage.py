"""Where a dataset came from: content hashes of its inputs and of the code that built it.

Both go into the build fingerprint, so a resumed build can prove it is finishing the same build,
and into the manifest, so a user can tell which raw files and which code made a dataset.
Hashing reads every input byte (xxh3 runs at memory speed; the disk is the cost, about one pass
over the raw data per build).
"""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import xxhash

_CHUNK = 1 << 20
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # datasets_builders/


@dataclass(frozen=True)
class ContentHash:
    xxh3: str  #: xxh3-128 hex over relative paths, sizes and contents
    bytes: int
    files: int


def content_hash(path: str | os.PathLike[str]) -> ContentHash:
    """Hash a file, or a directory tree in sorted path order (hidden files included)."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"input {root} does not exist")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    tree = xxhash.xxh3_128()
    total = 0
    for file in files:
        rel = file.name if file == root else file.relative_to(root).as_posix()
        digest, size = file_xxh3(file)
        tree.update(f"{rel}\0{size}\0{digest}\n".encode())
        total += size
    return ContentHash(tree.hexdigest(), total, len(files))


def file_xxh3(file: Path) -> tuple[str, int]:
    """(xxh3-64 hex, size) of one file, read in 1 MiB chunks."""
    h = xxhash.xxh3_64()
    size = 0
    with open(file, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


@functools.cache
def code_hash() -> str:
    """xxh3 of the builders' own source: any edit to them changes every build fingerprint."""
    tree = xxhash.xxh3_128()
    for file in sorted(_PACKAGE_ROOT.rglob("*")):
        if file.suffix in (".py", ".yaml", ".json") and "__pycache__" not in file.parts:
            tree.update(file.relative_to(_PACKAGE_ROOT).as_posix().encode() + b"\0" + file.read_bytes())
    return tree.hexdigest()


@functools.cache
def code_revision() -> str:
    """The git commit of the checkout (``+dirty`` with uncommitted changes), or ``unknown``."""
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(_PACKAGE_ROOT), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        rev = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}+dirty" if dirty else rev
