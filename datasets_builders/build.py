"""The one build loop: records -> samples -> the store, or rejects with reasons.

Every record a source yields is counted as read; it ends up with samples, or in
``rejects.parquet`` with the stage and reason, and the writer refuses to commit unless
read = records written + records rejected. A re-run with the same inputs, parameters and code
is a no-op (the committed manifest's fingerprint matches); an interrupted build resumes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import Any

from datasets_builders.formats.schema import Sample
from datasets_builders.registry import source_module
from datasets_builders.sources.contract import InputFormatError, Options, RecordError, Reject, Repair, SourceModule
from datasets_builders.store import BuildSpec, DatasetWriter, DuplicateKeyError, InputRef, Manifest, committed_build

# A record whose fields have the wrong shape raises one of these inside a converter; it is
# rejected with the exception's message instead of stopping a build of millions of records.
MALFORMED = (KeyError, IndexError, TypeError, ValueError, AttributeError, ArithmeticError)


@dataclass(frozen=True)
class BuildResult:
    root: Path
    manifest: Manifest
    reused: bool  #: an identical build was already committed; nothing was done


def build_dataset(
    source: str,
    inputs: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    limit: int | None = None,
    split: str | None = None,
    options: Options | None = None,
    overwrite: bool = False,
    max_samples: int = 5000,
    progress: Callable[[], None] | None = None,
) -> BuildResult:
    """Build ``out_dir`` (its folder name is the dataset name) from ``inputs``: one raw dataset
    folder, or for a derived builder (multiround, unnatural-blend) the committed datasets it reads."""
    options = options or Options()
    located = locate_inputs(source, inputs, options)
    out_dir = Path(out_dir)
    spec = located.spec(out_dir.name, limit=limit, split=split, options=options, max_samples=max_samples)
    done = committed_build(out_dir, spec)
    if done is not None:
        return BuildResult(out_dir, done, reused=True)
    return write_records(located.module, located.records(split, 0, limit), out_dir, spec,
                         overwrite=overwrite, progress=progress)


@dataclass(frozen=True)
class Located:
    """A builder with its checked and located inputs: where every build (whole or partitioned) starts."""

    module: SourceModule
    paths: tuple[Path, ...]
    layout: Any  #: what ``module.locate`` returned

    def spec(self, name: str, *, limit: int | None, split: str | None, options: Options, max_samples: int) -> BuildSpec:
        """The spec of a build of these inputs into dataset ``name``; hashes every input byte."""
        derived = getattr(self.module, "DERIVED", False)
        refs = (tuple(InputRef.dataset(p) for p in self.paths) if derived
                else (InputRef.raw(self.module.NAME, self.paths[0]),))
        return BuildSpec(name=name, builder=self.module.NAME, builder_version=self.module.VERSION,
                         parameters=parameters(self.module, limit=limit, split=split, options=options),
                         inputs=refs, max_samples=max_samples)

    def records(self, split: str | None, start: int = 0, stop: int | None = None) -> Iterator[object]:
        """Records ``start``..``stop`` in the source's (deterministic) order; lazy, nothing converted."""
        return islice(self.module.read_records(self.layout, split), start, stop)


def parameters(module: SourceModule, *, limit: int | None, split: str | None, options: Options) -> dict[str, Any]:
    """The build parameters a spec records: limit, split and the options this builder reads."""
    return {"limit": limit, "split": split, **{k: getattr(options, k) for k in module.OPTIONS}}


def locate_inputs(source: str, inputs: str | Path | Sequence[str | Path], options: Options) -> Located:
    """Check ``inputs`` for builder ``source`` and locate them; a wrong input fails here in one line."""
    module = source_module(source)
    paths = (Path(inputs),) if isinstance(inputs, str | Path) else tuple(Path(p) for p in inputs)
    derived = getattr(module, "DERIVED", False)
    if not derived and len(paths) != 1:
        raise InputFormatError(f"{module.NAME} reads one --input folder, got {len(paths)}")
    for path in paths:
        if not path.is_dir():
            raise InputFormatError(f"{path}: no such folder (--input of the {module.NAME} build)")
    return Located(module, paths, module.locate(paths if derived else paths[0], options))


def write_records(
    module: SourceModule,
    records: Iterator[object],
    out_dir: Path,
    spec: BuildSpec,
    *,
    overwrite: bool = False,
    resume: bool = True,
    progress: Callable[[], None] | None = None,
) -> BuildResult:
    """The build loop: count, convert and write (or reject) every record into ``out_dir`` under ``spec``."""
    first = list(islice(records, 1))  # a source reads its index files here: their errors come before any write
    with DatasetWriter(out_dir, spec, overwrite=overwrite, resume=resume) as writer:
        for record in chain(first, records):
            writer.count_read()
            if isinstance(record, Reject):
                writer.reject(record.source, record.stage, record.reason)
            else:
                _convert(module, record, writer)
            if progress is not None:
                progress()
    assert writer.manifest is not None
    return BuildResult(out_dir, writer.manifest, reused=False)


def _convert(module: SourceModule, record: object, writer: DatasetWriter) -> None:
    source = record.source  # type: ignore[attr-defined]
    try:
        # all or nothing: a record fails before any write, text that cannot be stored as UTF-8
        # (a lone surrogate) included, so each sample is encoded here, once, for the writer
        outcomes = [(o, o.members() if isinstance(o, Sample) else None) for o in module.to_samples(record)]
    except RecordError as e:
        writer.reject(source, e.stage, str(e))
        return
    except MALFORMED as e:
        writer.reject(source, "convert", f"malformed record ({type(e).__name__}: {e})")
        return
    accounted = False
    for outcome, members in outcomes:
        if isinstance(outcome, Sample):
            try:
                writer.write(outcome, members)
                accounted = True
            except DuplicateKeyError as e:  # the input lists the same record id twice
                writer.reject(outcome.source, "convert", str(e))
                accounted = True
        elif isinstance(outcome, Reject):
            writer.reject(outcome.source, outcome.stage, outcome.reason)
            accounted = True
        elif isinstance(outcome, Repair):
            writer.repair(outcome.kind)
    if not accounted:
        writer.reject(source, "convert", "the record produced no samples")
