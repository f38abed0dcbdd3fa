"""A publisher's files, one per split (or subtype), in the input folder or one folder down.

Why: VQA v2, OK-VQA, A-OKVQA, GQA and TextCaps ship one file per split under names that carry
the split, and users unzip them either flat or into a folder (``Questions/``, ``questions1.2/``);
each builder names its pattern, this finds the files and refuses two for the same split.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets_builders.formats.schema import Source
from datasets_builders.sources.contract import InputFormatError


def folders(path: Path) -> list[Path]:
    """The input folder, then each visible folder one level down, sorted: where publishers' files sit."""
    return [path, *sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))]


def split_files(path: Path, glob: str, name: re.Pattern[str], what: str) -> dict[str, Path]:
    """Split (``name``'s group 1) -> its file, for files matching ``glob`` and then ``name``; in
    split order as sorted. Two files for one split are an input error naming both."""
    found: dict[str, Path] = {}
    for folder in folders(path):
        for p in sorted(folder.glob(glob)):
            if (match := name.match(p.name)) is None:
                continue
            if match.group(1) in found:
                raise InputFormatError(f"{path}: two {what} files for {match.group(1)}: {found[match.group(1)]} and {p}")
            found[match.group(1)] = p
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class SplitLayout:
    """A builder's layout when it is one file per split: the input folder and (split, file) pairs."""

    root: Path
    files: tuple[tuple[str, Path], ...]

    def chosen(self, split: str | None) -> Iterator[tuple[str, Path]]:
        """The (split, file) pairs a build of ``split`` reads (None: all)."""
        return ((name, path) for name, path in self.files if split is None or name == split.lower())


@dataclass(frozen=True)
class EntryRecord:
    """One entry of such a file (a question, a caption): the builder's parsed entry, its split and
    the image folder."""

    source: Source
    entry: Any  #: the builder's own NamedTuple
    split: str
    image_dir: Path
