"""Multi-task, multi-round conversations per image, made from our own task datasets.

MiniGPT-v2's stage 3 used a "multi-task conversation" set whose builder was never published
(minigptv2-data-spec.md 7). This rebuilds it: samples of the input datasets that show the same
image (same image bytes, found through each dataset's index without reading any image) are
grouped; per image, 2..N rounds of *different* tasks are drawn, each round one question-answer
pair of a source sample with its task identifier (never two rounds from one source record, so a
[refer] round cannot hand away an [identify] answer), and the rounds are kept while their answers fit
a token budget (MiniGPT-v2's ``max_txt_len``, 1024). Draws come from a generator seeded by
(seed, image hash), so the output does not depend on input order. Every round records the
dataset, key and source record it came from.

Pseudo-labels (``pseudo_label_tasks`` with ``pseudo_label_checkpoint``): tasks an image has no
ground truth for join its draw, their instruction taken from the task's template pool and their
answer from a trained model (``pseudo_labeler``: image bytes, instruction -> answer; the
pipelines layer makes it from the checkpoint, as this layer does not import models). Only
``caption`` and ``grounding`` qualify: every other task's instruction needs a truth (a question,
an expression, a box). Such rounds record ``pseudo_label: true`` and the checkpoint instead of a
source sample; a failing or empty model answer rejects the image with that reason.

Record = one image group (Source id = the image's xxh3); an image with fewer tasks than
``min_turns``, or whose rounds do not fit the budget, is rejected with that reason.

Token counts: a local tokenizer folder (``--tokenizer``) counts exactly (answer tokens plus the
end-of-sequence token). Without one, a proxy: every run of letters is one token, every digit and
every other non-space character is one token, plus one for the end of sequence. Box strings such
as ``{<47><24><65><67>}`` cost 18 tokens under it, a little above LLaMA's SentencePiece.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets_builders.formats.schema import Sample, Source, Turn
from datasets_builders.sources.contract import InputFormatError, Options, RecordError, make_key
from datasets_builders.store import ShardDataset, load_manifest
from datasets_builders.store.index import SAMPLES_SCHEMA, read_table
from datasets_builders.store.layout import SAMPLES_INDEX
from datasets_builders.templates.render import choose, pools

NAME = "multiround"
VERSION = "1"
DERIVED = True  #: reads committed datasets, not a raw folder
OPTIONS = ("seed", "tasks", "min_turns", "max_turns", "token_budget", "tokenizer", "pseudo_label_tasks",
           "pseudo_label_checkpoint")
PSEUDO_TASKS = ("caption", "grounding")  #: tasks whose instruction needs no ground truth (their pools have no slot)
TASKS = ("refer", "identify", "grounding", "detection-caption", "detection-phrase", "vqa", "caption", "crayon")
IMAGE_EXTS = ("jpg", "png")
_PROXY = re.compile(r"[A-Za-z]+|[^\sA-Za-z]")


@dataclass(frozen=True)
class Candidate:
    dataset: int  #: index into Layout.datasets
    row: int  #: storage position in that dataset
    key: str
    task: str


@dataclass(frozen=True)
class ImageGroup:
    source: Source
    split: str
    image_xxh3: int
    candidates: tuple[Candidate, ...]  #: sorted by (dataset, row)
    layout: Layout


@dataclass(frozen=True)
class Layout:
    names: tuple[str, ...]
    datasets: tuple[ShardDataset, ...]
    tasks: tuple[str, ...]
    seed: int
    min_turns: int
    max_turns: int
    token_budget: int
    count_tokens: Callable[[str], int]
    pseudo_tasks: tuple[str, ...] = ()
    labeler: Callable[[bytes, str], str] | None = None
    labeler_checkpoint: str | None = None


def locate(paths: tuple[Path, ...], options: Options) -> Layout:
    tasks = tuple(options.tasks) or TASKS
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise InputFormatError(f"multiround: unknown tasks {unknown}; choose among {', '.join(TASKS)}")
    if not 2 <= options.min_turns <= options.max_turns:
        raise InputFormatError(f"multiround: need 2 <= min_turns <= max_turns, got {options.min_turns}, {options.max_turns}")
    if options.token_budget < 1:
        raise InputFormatError(f"multiround: token budget {options.token_budget} must be positive")
    pseudo = tuple(options.pseudo_label_tasks)
    if sorted(set(pseudo) - set(PSEUDO_TASKS)):
        raise InputFormatError(f"multiround: pseudo-labels exist only for {', '.join(PSEUDO_TASKS)} (their "
                               f"instructions need no ground truth), not {sorted(set(pseudo) - set(PSEUDO_TASKS))}")
    if pseudo and (options.pseudo_label_checkpoint is None or options.pseudo_labeler is None):
        raise InputFormatError("multiround: --pseudo-label-tasks needs --pseudo-label-checkpoint (a trained model)")
    names = []
    for path in paths:
        manifest = load_manifest(path)
        if manifest is None:
            raise InputFormatError(f"{path}: not a committed dataset (no manifest.json); build it first")
        names.append(manifest.spec.name)
    if len(set(names)) != len(names):
        raise InputFormatError(f"multiround: two inputs have the same dataset name ({', '.join(names)})")
    return Layout(tuple(names), tuple(ShardDataset(p) for p in paths), tasks, options.seed, options.min_turns,
                  options.max_turns, options.token_budget, token_counter(options.tokenizer), pseudo,
                  options.pseudo_labeler if pseudo else None, options.pseudo_label_checkpoint if pseudo else None)


def read_records(layout: Layout, split: str | None) -> Iterator[ImageGroup]:
    groups: dict[tuple[str, int], list[Candidate]] = {}
    for d, dataset in enumerate(layout.datasets):
        index = read_table(dataset.root / SAMPLES_INDEX, SAMPLES_SCHEMA).select(["key", "task", "split", "members"])
        for row, (key, task, sample_split, members) in enumerate(zip(*(c.to_pylist() for c in index.columns))):
            image = next((m["xxh3"] for m in members if m["ext"] in IMAGE_EXTS), None)
            if task in layout.tasks and image is not None and (split is None or sample_split == split):
                groups.setdefault((sample_split, image), []).append(Candidate(d, row, key, task))
    for (group_split, image), candidates in sorted(groups.items()):
        yield ImageGroup(Source(NAME, f"{image:016x}"), group_split, image, tuple(candidates), layout)


def to_samples(group: ImageGroup) -> Iterator[Sample]:
    layout = group.layout
    by_task: dict[str, list[Candidate]] = {}
    for c in group.candidates:
        by_task.setdefault(c.task, []).append(c)
    missing = [t for t in layout.pseudo_tasks if t not in by_task]  # the model answers these
    if len(by_task) + len(missing) < layout.min_turns:
        raise RecordError(f"image {group.source.id} has {len(by_task)} task(s) ({', '.join(sorted(by_task))}); "
                          f"a conversation needs at least {layout.min_turns} different tasks")
    rng = np.random.default_rng([layout.seed, group.image_xxh3])
    order = [str(t) for t in rng.permutation(sorted([*by_task, *missing]))]
    wanted = int(rng.integers(layout.min_turns, layout.max_turns + 1))
    rounds, provenance, spent = [], [], 0
    first = _read(layout, group.candidates[0])  # the image every round is about
    used: set[tuple[str, str]] = set()
    for task in order:
        if len(provenance) == wanted:
            break
        if task in missing:
            question, answer, origin = _pseudo_round(layout, task, group, first)
        else:
            pick = by_task[task][int(rng.integers(len(by_task[task])))]
            sample = _read(layout, pick)
            if (sample.source.dataset, sample.source.id) in used:
                continue  # e.g. [identify] after [refer] of the same object would give its answer away
            used.add((sample.source.dataset, sample.source.id))
            pairs = [sample.turns[i:i + 2] for i in range(0, len(sample.turns), 2)]
            r = int(rng.integers(len(pairs)))
            question, answer = pairs[r]
            origin = {"dataset": layout.names[pick.dataset], "key": pick.key, "round": r,
                      "source": {"dataset": sample.source.dataset, "id": sample.source.id}, "pseudo_label": False}
        cost = layout.count_tokens(answer.content)
        if spent + cost > layout.token_budget:
            continue  # this task's answer does not fit; a later, shorter one may
        spent += cost
        rounds += [question, answer]
        provenance.append({"task": task, **origin, "answer_tokens": cost})
    if len(provenance) < layout.min_turns:
        raise RecordError(f"image {group.source.id}: only {len(provenance)} round(s) fit the budget of "
                          f"{layout.token_budget} answer tokens (need {layout.min_turns})")
    assert first.image is not None
    yield Sample(
        key=make_key("mr", group.source.id),
        task="multiround",
        turns=tuple(Turn(t.role, t.content) for t in rounds),
        source=group.source,
        split=group.split,
        image=first.image,
        extras=_crayon(layout, by_task),
        meta={"rounds": provenance, "answer_tokens": spent, "token_budget": layout.token_budget,
              "pseudo_labelled": sum(r["pseudo_label"] for r in provenance),
              "image_xxh3": f"{group.image_xxh3:016x}"},
    )


def _pseudo_round(layout: Layout, task: str, group: ImageGroup, sample: Sample) -> tuple[Turn, Turn, dict]:
    """A round the image has no truth for: an instruction of the task's pool, answered by the model."""
    pool = pools()[task]
    instruction = pool[choose(task, group.source.id)]
    assert layout.labeler is not None and sample.image is not None
    try:
        answer = layout.labeler(sample.image.data, instruction).strip()
    except Exception as e:  # noqa: BLE001 - a model failure rejects this image, never the build
        raise RecordError(f"image {group.source.id}: the pseudo-label model failed on [{task}] "
                          f"({type(e).__name__}: {e})") from None
    if not answer:
        raise RecordError(f"image {group.source.id}: the pseudo-label model gave an empty [{task}] answer")
    origin = {"dataset": None, "key": None, "round": 0, "source": None, "pseudo_label": True,
              "labeler": layout.labeler_checkpoint}
    return Turn("user", instruction), Turn("assistant", answer), origin


def token_counter(tokenizer: str | None) -> Callable[[str], int]:
    """Answer tokens of a text, end of sequence included: exact with a local tokenizer, else the proxy."""
    if tokenizer is None:
        return lambda text: len(_PROXY.findall(text)) + 1
    from transformers import AutoTokenizer  # only when asked: transformers is slow to import

    path = Path(tokenizer)
    if not path.is_dir():
        raise InputFormatError(f"{path}: no such tokenizer folder (--tokenizer takes a local folder)")
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"]) + 1


def _read(layout: Layout, pick: Candidate) -> Sample:
    raw = layout.datasets[pick.dataset].read(pick.row)
    if raw["__key__"] != pick.key:
        raise RecordError(f"{layout.names[pick.dataset]}: index row {pick.row} is {raw['__key__']!r}, not {pick.key!r}")
    return Sample.from_members(pick.key, raw)


def _crayon(layout: Layout, by_task: dict[str, list[Candidate]]) -> dict[str, bytes]:
    """The image's crayon map travels with the conversation when an input has one."""
    if "crayon" not in by_task:
        return {}
    return {"crayon.png": _read(layout, by_task["crayon"][0]).extras["crayon.png"]}
