"""The one build loop: records -> samples -> the store, or rejects with reasons.

Every record a source yields is counted as read; it ends up with samples, or in
``rejects.parquet`` with the stage and reason, and the writer refuses to commit unless
read = records written + records rejected. A re-run with the same inputs, parameters and code
is a no-op (the committed manifest's fingerprint matches); an interrupted build resumes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

from datasets_builders.formats.schema import Sample
from datasets_builders.registry import source_module
from datasets_builders.sources.contract import InputFormatError, Options, RecordError, Reject, Repair, SourceModule
from datasets_builders.store import BuildSpec, DatasetWriter, DuplicateKeyError, InputRef, Manifest, committed_build

# A record whose fields have the wrong shape raises one of these inside a converter; it is
# rejected with the exception's message instead of stopping a build of millions of records.
MALFORMED = (KeyError, IndexError, TypeError, ValueError, AttributeError)


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
    module = source_module(source)
    options = options or Options()
    paths = (Path(inputs),) if isinstance(inputs, str | Path) else tuple(Path(p) for p in inputs)
    derived = getattr(module, "DERIVED", False)
    if not derived and len(paths) != 1:
        raise InputFormatError(f"{module.NAME} reads one --input folder, got {len(paths)}")
    for path in paths:
        if not path.is_dir():
            raise InputFormatError(f"{path}: no such folder (--input of the {module.NAME} build)")
    out_dir = Path(out_dir)
    layout = module.locate(paths if derived else paths[0], options)
    refs = tuple(InputRef.dataset(p) for p in paths) if derived else (InputRef.raw(module.NAME, paths[0]),)
    spec = BuildSpec(
        name=out_dir.name,
        builder=module.NAME,
        builder_version=module.VERSION,
        parameters={"limit": limit, "split": split, **{k: getattr(options, k) for k in module.OPTIONS}},
        inputs=refs,
        max_samples=max_samples,
    )
    done = committed_build(out_dir, spec)
    if done is not None:
        return BuildResult(out_dir, done, reused=True)
    records = islice(module.read_records(layout, split), limit)
    first = list(islice(records, 1))  # a source reads its index files here: their errors come before any write
    with DatasetWriter(out_dir, spec, overwrite=overwrite) as writer:
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
        outcomes = list(module.to_samples(record))  # all or nothing: a record fails before any write
    except RecordError as e:
        writer.reject(source, e.stage, str(e))
        return
    except MALFORMED as e:
        writer.reject(source, "convert", f"malformed record ({type(e).__name__}: {e})")
        return
    accounted = False
    for outcome in outcomes:
        if isinstance(outcome, Sample):
            try:
                writer.write(outcome)
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
