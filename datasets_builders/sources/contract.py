"""What a source module promises the build loop, and the outcomes it hands back.

``locate`` checks the folder up front and fails with one line (:class:`InputFormatError`) when it
is not the format; ``read_records`` yields records, or a :class:`Reject` for one it cannot even
parse; ``to_samples`` yields samples, plus a :class:`Reject` for a part it drops or a
:class:`Repair` it counts, and raises :class:`RecordError` to reject the whole record. The loop
counts each yielded record as read, so every record ends up written or rejected.
"""

from __future__ import annotations

import errno
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import xxhash

from datasets_builders.formats.schema import Sample, Source


#: errno values of I/O errors that may pass on a retry (a flaky mount, a busy file), unlike bad input
TRANSIENT_ERRNOS = frozenset({errno.EIO, errno.EAGAIN, errno.EBUSY, errno.ETIMEDOUT, errno.ESTALE, errno.ECONNRESET,
                              errno.EINTR})


def is_transient(error: BaseException | None) -> bool:
    """Whether ``error`` or one of its causes is an I/O error worth retrying. Readers re-raise
    these instead of turning them into rejects or input errors, so an orchestrator can retry."""
    while error is not None:
        if isinstance(error, TimeoutError | ConnectionError) or getattr(error, "errno", None) in TRANSIENT_ERRNOS:
            return True
        error = error.__cause__
    return False


class InputFormatError(ValueError):
    """``--input`` is missing or is not this source's format: the message is one line naming it."""


class RecordError(ValueError):
    """One record cannot become samples; the build rejects it with this reason and goes on."""

    def __init__(self, reason: str, stage: str = "convert") -> None:
        super().__init__(reason)
        self.stage = stage


@dataclass(frozen=True)
class Options:
    """Builder settings from the command line. Each module lists the fields it reads in its
    ``OPTIONS``; only those go into the build's recorded parameters (and its fingerprint)."""

    trust_pickle: bool = False  #: refcoco: refs(*).p may be unpickled (no classes are allowed)
    max_instances: int = 20  #: coco-panoptic: numbering index clamp
    min_confidence: float = 0.0  #: grit: spans below this confidence are dropped
    max_region_area: int = 16384  #: visual-genome: regions of this many px or more are left out (MiniGPT-v2's filter)
    seed: int = 0  #: multiround: task choice per image
    tasks: tuple[str, ...] = ()  #: multiround: tasks to mix (empty: every task the inputs have)
    min_turns: int = 2  #: multiround: question-answer rounds per conversation, at least ...
    max_turns: int = 4  #: ... and at most
    token_budget: int = 1024  #: multiround: answer tokens per conversation (MiniGPT-v2's max_txt_len)
    tokenizer: str | None = None  #: multiround: local tokenizer folder; None: the documented word proxy
    ratio: int = 20  #: unnatural-blend: instruction samples per text-only sample
    pseudo_label_tasks: tuple[str, ...] = ()  #: multiround: tasks a model may answer where an image has no truth
    pseudo_label_checkpoint: str | None = None  #: multiround: that model's checkpoint (recorded in parameters)
    #: multiround: (image bytes, instruction) -> answer, made from the checkpoint by the layer that owns
    #: models (pipelines); never recorded, the checkpoint path stands for it
    pseudo_labeler: Callable[[bytes, str], str] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Reject:
    """A record, or part of one, that produced no sample: stage is "read", "image" or "convert"."""

    source: Source
    stage: str
    reason: str


@dataclass(frozen=True)
class Repair:
    """A fix the spec allows (e.g. a clamped instance number), counted per ``kind`` in the manifest."""

    source: Source
    kind: str


Outcome = Sample | Reject | Repair


class Record(Protocol):
    source: Source


class SourceModule(Protocol):
    NAME: str
    VERSION: str
    OPTIONS: tuple[str, ...]

    def locate(self, path: Path, options: Options) -> Any: ...
    def read_records(self, layout: Any, split: str | None) -> Iterator[Record | Reject]: ...
    def to_samples(self, record: Any) -> Iterator[Outcome]: ...


_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def make_key(*parts: object) -> str:
    """A sample key from id parts; characters the key rules forbid become ``_`` plus a hash suffix,
    so two ids that differ only in such characters still get different keys."""
    raw = "-".join(str(p) for p in parts)
    safe = _KEY_UNSAFE.sub("_", raw)
    if safe != raw or len(safe) > 100:
        safe = f"{safe[:83]}-{xxhash.xxh3_64_hexdigest(raw.encode())}"
    return safe


def read_json(path: Path) -> Any:
    """A whole JSON file; a broken one is an input error naming the file, line and column."""
    try:
        with path.open("rb") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputFormatError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except RecursionError:  # json's decoder gives up on arrays/objects nested thousands deep
        raise InputFormatError(f"{path}: not usable JSON (nested too deeply to parse)") from None
    except (OSError, UnicodeDecodeError) as e:
        if is_transient(e):
            raise
        raise InputFormatError(f"{path}: cannot read ({e})") from None


def require(condition: bool, path: Path, expected: str) -> None:
    """Fail fast on a folder that is not the format: ``<path>: expected <what>``."""
    if not condition:
        raise InputFormatError(f"{path}: {expected}")
