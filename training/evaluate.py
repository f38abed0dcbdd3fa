"""Held-out scores of a checkpoint on our task datasets: did training teach each task at all?

Why: a falling loss says the model reproduces training answers; these numbers say whether it
answers unseen samples (the ``val`` split: images no training sample shows) as each task asks.
Every stored sample of the split is asked its stored first user turn (identifier included),
greedily, in left-padded batches, and scored against the sample's own truth:

- ``refer`` acc@0.5: the answer's first well-formed box, in pixels, vs ``meta.fields.box``;
  a hit when IoU > 0.5 (exclusive edges). No box is a miss.
- ``identify`` exact: the normalised answer equals one of the ref's expressions (``meta.sentences``:
  RefCOCO gives each object one to three, each of which fits it alone; else the stored answer).
- ``vqa`` accuracy: min(#annotators who gave the normalised answer / 3, 1), from the counts in
  ``meta.fields.answers`` (else 1 when it equals the stored answer). The official metric also
  averages over the 10 leave-one-out annotator subsets and maps numbers and articles.
- ``caption`` exact and token-f1: the references are every stored caption of the same image
  bytes in the split; exact = equals one, token-f1 = best SQuAD word F1 against one, averaged
  over samples (untrained ~0; f1 rises long before exact does). Neither is CIDEr.
- ``c2b`` accuracy (CoLLaVO's Class2Binary): per crayon image, one class it shows (truth "yes")
  and one it does not (truth "no") among the classes the dataset's crayon samples name in any
  split; ``b2c`` accuracy (Box2Class): one segment's box as CoLLaVO's unit-box text, a hit when
  the answer is its class. Choices hash the sample key. A crayon model reads the stored
  (ground-truth) crayon map for these probes: an upper bound of what predicted maps give.

**The blind control.** Each question is asked twice: with its own image, and with the image (and
crayon map) of another probe of the same task, a fixed seeded derangement that never gives a probe
a picture with the same bytes where the task has two or more pictures (``controls.derangement``).
The truth stays the question's own, so the second score is what the model reaches from the
question alone, its language prior. ``Score.gap_low``..``gap_high`` is the 95 % bootstrap interval of the
paired per-question difference; a row whose interval includes 0 reads "not looking": no evidence
the model reads its image, however high the score is.

**Families.** Each task row is followed by one row per question family the samples carry
(``controls.families``: VQA's ``question_type`` and ``answer_type``; the sample world's
expression kind for refer and identify), so "vqa 0.29" splits into the colour questions it
cannot answer and the yes/no ones it guesses half right.

Normalisation is ``blip_normalise`` with every other punctuation mark removed too. Limits:
exact matches miss synonyms and plurals; C2B/B2C are per image, not CoLLaVO's per-category
averages over COCO's 80 thing classes; the sample world has one val image in ten, so its scores
are coarse; derived datasets (inputs of kind "dataset": multiround, unnatural-blend) repeat their
inputs' samples and are skipped.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import xxhash
from PIL import Image as PILImage
from rich.table import Column, Table

from datasets_builders.formats.boxes import PixelBox, find_boxes, to_pixels
from datasets_builders.formats.crayon import read_crayon, text_name
from datasets_builders.formats.schema import Image, Sample
from datasets_builders.formats.text import blip_normalise
from datasets_builders.store import ShardDataset
from datasets_builders.templates.render import unit_box
from models.grounded_vlm import inference
from models.inputs import InputSpec
from models.prompt import collate, encode_prompt
from training.controls import derangement, families, gap_interval, verdict

STORED_TASKS = ("refer", "identify", "vqa", "caption", "crayon")
C2B = ('Is there an instance of the category "{}" in the image? There may be multiple instances which are '
       "grouped together. Answer the question using either yes or no.")
B2C = "What is the main object located in {} in the image? Answer the question using a single word or phrase."
METRICS = {"refer": ("acc@0.5",), "identify": ("exact",), "vqa": ("accuracy",), "caption": ("exact", "token-f1"),
           "c2b": ("accuracy",), "b2c": ("accuracy",)}
EXAMPLES = 5
#: new tokens generated per task: over twice the longest answer the task's data holds (a box is 10
#: tokens with EOS), so a right answer is never cut, while an untrained model's rambling is
ANSWER_TOKENS = {"refer": 24, "identify": 24, "vqa": 12, "caption": 48, "c2b": 8, "b2c": 12}
_MARKS = re.compile(r"[^\w\s]")


class EvalError(ValueError):
    """No datasets in the folder, or no held-out samples of the split: nothing to score."""


@dataclass(frozen=True)
class Prompt:
    """One question for the model: what an answer function receives."""

    task: str  #: refer, identify, vqa, caption, c2b, b2c
    dataset: str
    key: str  #: the sample's key
    instruction: str
    image: Image | None  #: encoded bytes as stored
    crayon: bytes | None = None  #: the sample's crayon.png (crayon probes only)


AnswerFn = Callable[[list[Prompt]], list[str]]


@dataclass(frozen=True)
class Example:
    instruction: str
    answer: str
    expected: str


@dataclass(frozen=True)
class Score:
    task: str
    metric: str
    n: int
    value: float  #: mean over the task's n questions, in [0, 1]
    blind: float | None = None  #: the same questions with deranged images (None: not asked)
    gap_low: float | None = None  #: 95 % bootstrap interval of the paired (value - blind)
    gap_high: float | None = None
    family: str | None = None  #: e.g. "question_type=what color is the"; None: the whole task

    @property
    def gap(self) -> float | None:
        return None if self.blind is None else self.value - self.blind

    @property
    def verdict(self) -> str:
        return verdict(None if self.gap_low is None else (self.gap_low, self.gap_high))

    @property
    def looks(self) -> bool:
        return self.verdict == "looking"

    @property
    def label(self) -> str:
        """The row's name: the task, or "  question_type=how many" under it."""
        return self.task if self.family is None else f"  {self.family}"


@dataclass(frozen=True)
class EvalReport:
    split: str
    datasets: tuple[str, ...]
    scores: tuple[Score, ...]
    examples: Mapping[str, tuple[Example, ...]] = field(default_factory=dict)

    def score(self, task: str, metric: str | None = None, family: str | None = None) -> Score:
        return next(s for s in self.scores if s.task == task and metric in (None, s.metric) and s.family == family)

    def to_json(self) -> dict[str, Any]:
        return {"split": self.split, "datasets": list(self.datasets),
                "scores": [asdict(s) | {"gap": s.gap, "verdict": s.verdict} for s in self.scores],
                "examples": {t: [asdict(e) for e in ex] for t, ex in self.examples.items()}}

    def table(self) -> Table:
        table = Table("task", "metric", Column("n", justify="right"), Column("score", justify="right"),
                      Column("blind", justify="right"), Column("gap [95% CI]", justify="right"), "verdict",
                      title=f"{self.split} split: {', '.join(self.datasets)} (blind: the same questions with the "
                            "images deranged among the task's samples)")
        for s in self.scores:
            table.add_row(s.label, s.metric, str(s.n), f"{s.value:.3f}", *blind_cells(s))
        return table


def blind_cells(score: Score | Mapping[str, Any]) -> tuple[str, str, str]:
    """The blind, gap-with-interval and verdict cells of a score (a Score or its JSON), for every
    table that shows one."""
    s = score if isinstance(score, Mapping) else asdict(score)
    if s.get("blind") is None:
        return "-", "-", "not asked"
    interval = (s["gap_low"], s["gap_high"])
    return (f"{s['blind']:.3f}", f"{s['value'] - s['blind']:+.3f} [{interval[0]:+.2f}, {interval[1]:+.2f}]",
            verdict(interval))


def looking_summary(scores: Sequence[Score | Mapping[str, Any]]) -> str:
    """One line: the tasks with a metric above its blind control (and, for the others, any family
    that is), and the tasks with none."""
    rows = [s if isinstance(s, Mapping) else asdict(s) for s in scores]
    asked = [r for r in rows if r.get("blind") is not None]
    if not asked:
        return "looks at its picture for: not measured (no blind control was asked)"
    looking = [r for r in asked if verdict((r["gap_low"], r["gap_high"])) == "looking"]
    tasks = list(dict.fromkeys(r["task"] for r in looking if r["family"] is None))
    families_ = list(dict.fromkeys(f"{r['task']} ({r['family']})" for r in looking
                                   if r["family"] is not None and r["task"] not in tasks))
    others = [t for t in dict.fromkeys(r["task"] for r in asked) if t not in tasks]
    found, missing = ", ".join(tasks + families_) or "no task", ", ".join(others) or "none"
    return f"looks at its picture for: {found}; not for: {missing}"


# ---- metrics -----------------------------------------------------------------------------


def normalise(text: str) -> str:
    """blip_normalise, then every remaining punctuation mark to a space, whitespace collapsed."""
    return " ".join(_MARKS.sub(" ", blip_normalise(text)).split())


def iou(a: PixelBox, b: PixelBox) -> float:
    """Intersection over union of two pixel boxes with exclusive right/bottom edges (touching = 0)."""
    w, h = min(a.x1, b.x1) - max(a.x0, b.x0), min(a.y1, b.y1) - max(a.y0, b.y0)
    inter = max(0.0, w) * max(0.0, h)
    union = (a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - inter
    return inter / union if union > 0 else 0.0


def token_f1(answer: str, reference: str) -> float:
    """SQuAD's F1 over normalised words (multiset overlap); two empty texts agree."""
    a, r = normalise(answer).split(), normalise(reference).split()
    if not a or not r:
        return float(a == r)
    common = sum((Counter(a) & Counter(r)).values())
    return 0.0 if common == 0 else 2 * common / (len(a) + len(r))


def refer_hit(answer: str, truth: PixelBox, width: int, height: int) -> float:
    boxes = find_boxes(answer)
    return float(bool(boxes) and iou(to_pixels(boxes[0], width, height), truth) > 0.5)


def exact(answer: str, references: Sequence[str]) -> float:
    return float(normalise(answer) in {normalise(r) for r in references})


def vqa_accuracy(answer: str, counts: Mapping[str, int] | None, stored: str) -> float:
    if not counts:
        return exact(answer, [stored])
    said = normalise(answer)
    return min(sum(c for a, c in counts.items() if normalise(a) == said) / 3, 1.0)


# ---- the driver --------------------------------------------------------------------------


def find_datasets(folder: Path) -> dict[str, Path]:
    """Committed, non-derived dataset folders directly under ``folder`` (or ``folder`` itself)."""
    folder = Path(folder)
    roots = [folder] if (folder / "manifest.json").is_file() else \
        [m.parent for m in sorted(folder.glob("*/manifest.json"))]
    found = {r.name: r for r in roots if all(i.kind != "dataset" for i in ShardDataset(r).manifest.spec.inputs)}
    if not found:
        raise EvalError(f"{folder}: no dataset folders (with manifest.json) to evaluate")
    return found


def held_out(datasets: Mapping[str, Path], split: str) -> dict[str, int]:
    """Samples of each evaluated task in the split, from the indexes alone."""
    counts: Counter[str] = Counter()
    for path in datasets.values():
        index = ShardDataset(path).index
        counts.update(t for t, s in zip(index["task"].to_pylist(), index["split"].to_pylist())
                      if s == split and t in STORED_TASKS)
    if not counts:
        where = ", ".join(map(str, datasets.values()))
        raise EvalError(f"no {split!r} samples of {', '.join(STORED_TASKS)} in {where}")
    return dict(counts)


def evaluate(model, datasets: Mapping[str, Path] | Path, *, split: str = "val",  # noqa: ANN001 - a GroundedVLM
             limit: int | None = None, batch_size: int = 64, max_new_tokens: int = 48,
             answer_fn: AnswerFn | None = None, blind: bool = True, seed: int = 0) -> EvalReport:
    """Ask every held-out sample (at most ``limit`` per stored task; crayon: per image) and score the
    answers; ``blind`` asks each question again with a deranged image (the control, drawn with
    ``seed``). ``answer_fn`` replaces the model's greedy generation (tests; other answerers)."""
    datasets = dict(datasets) if isinstance(datasets, Mapping) else find_datasets(datasets)
    held_out(datasets, split)
    answer = answer_fn or generator(model, max_new_tokens)
    index = [(a.prompt.task, a.picture, a.source) for a in _probes(datasets, split, limit)] if blind else []
    donors = derangement([(task, picture) for task, picture, _ in index], seed)
    results: dict[str, list[_Result]] = {t: [] for t in METRICS}
    examples: dict[str, list[Example]] = {t: [] for t in METRICS}
    with _Pictures(datasets, [source for _, _, source in index]) as pictures:
        asked = enumerate(_probes(datasets, split, limit))
        while batch := list(islice(asked, batch_size)):
            prompts = [a.prompt for _, a in batch]
            prompts += [pictures.swap(a.prompt, donors[i]) for i, a in batch if i in donors]
            answers = answer(prompts)
            if len(answers) != len(prompts):
                raise ValueError(f"the answerer gave {len(answers)} answers to {len(prompts)} prompts")
            blind_answers = iter(answers[len(batch):])
            for (i, a), text in zip(batch, answers, strict=False):
                control = a.check(next(blind_answers)) if i in donors else None
                results[a.prompt.task].append(_Result(a.check(text), control, a.families))
                examples[a.prompt.task].append(Example(a.prompt.instruction, text, a.expected))
    scores = tuple(score for task, found in results.items() if found for score in _task_scores(task, found, seed))
    return EvalReport(split, tuple(datasets), scores, {t: tuple(e[:EXAMPLES]) for t, e in examples.items() if e})


@dataclass(frozen=True)
class _Result:
    own: tuple[float, ...]  #: one value per metric of the task
    control: tuple[float, ...] | None  #: the same with the deranged image (None: not asked)
    families: Mapping[str, str]


def _task_scores(task: str, results: Sequence[_Result], seed: int) -> Iterator[Score]:
    """The task's rows (one per metric), then one per (family, value) of its samples."""
    groups: dict[str | None, list[_Result]] = {None: list(results)}
    for r in results:
        for name, value in r.families.items():
            groups.setdefault(f"{name}={value}", []).append(r)
    for family in [None, *sorted(f for f in groups if f is not None)]:
        for column, metric in enumerate(METRICS[task]):
            yield _score(task, metric, column, groups[family], family, seed)


def _score(task: str, metric: str, column: int, results: Sequence[_Result], family: str | None,
           seed: int) -> Score:
    own = [r.own[column] for r in results]
    value = sum(own) / len(own)
    if any(r.control is None for r in results):
        return Score(task, metric, len(own), value, family=family)
    control = [r.control[column] for r in results]
    low, high = gap_interval(own, control, seed)
    return Score(task, metric, len(own), value, sum(control) / len(control), low, high, family)


class _Pictures:
    """Reads a donor probe's picture (and crayon map) for the blind control, datasets kept open."""

    def __init__(self, datasets: Mapping[str, Path], sources: Sequence[tuple[str, int]]) -> None:
        self.paths, self.sources = datasets, sources  #: probe index -> (dataset, row)
        self.open: dict[str, ShardDataset] = {}

    def __enter__(self) -> _Pictures:
        return self

    def __exit__(self, *exc: object) -> None:
        for ds in self.open.values():
            ds.close()

    def swap(self, prompt: Prompt, donor: int) -> Prompt:
        name, row = self.sources[donor]
        ds = self.open.get(name) or self.open.setdefault(name, ShardDataset(self.paths[name]))
        sample = Sample.from_members(ds.key(row), ds.read(row))
        crayon = sample.extras.get("crayon.png") if prompt.crayon is not None else None
        return replace(prompt, image=sample.image, crayon=crayon)


def generator(model, max_new_tokens: int = 48) -> AnswerFn:  # noqa: ANN001
    """The model's batched greedy answers: left-padded prompts, image rows and text rows mixed; at most
    ``max_new_tokens``, and at most the batch's longest ``ANSWER_TOKENS``."""
    spec, tok = InputSpec.of(model), model.tokenizer

    def answer(prompts: list[Prompt]) -> list[str]:
        longest = min(max_new_tokens, max(ANSWER_TOKENS.get(p.task, max_new_tokens) for p in prompts))
        encoded = [encode_prompt(tok, p.instruction, visual_tokens=model.visual_tokens if p.image else None)
                   for p in prompts]
        batch = collate(encoded, tok.pad_token_id, left=True)
        pictured = [p for p in prompts if p.image is not None]
        pixels = spec.pixels([PILImage.open(io.BytesIO(p.image.data)).convert("RGB") for p in pictured]) \
            if pictured else None
        crayons = spec.crayons([np.stack(read_crayon(p.crayon), -1) if p.crayon else None for p in pictured]) \
            if pictured else None
        with inference(model):
            ids = model.generate(batch["input_ids"], batch["attention_mask"], batch["image_mask"], pixels, crayons,
                                 max_new_tokens=longest)
        return [tok.decode(row, skip_special_tokens=True).strip() for row in ids]

    return answer


@dataclass(frozen=True)
class _Asked:
    """One probe: the prompt, the truth shown in examples, its scorer, and where its picture lives."""

    prompt: Prompt
    expected: str
    check: Callable[[str], tuple[float, ...]]
    source: tuple[str, int]  #: (dataset, row)
    picture: int | None  #: the picture's xxh3: probes with equal numbers show the same picture
    families: Mapping[str, str]  #: controls.families of the sample


def _probes(datasets: Mapping[str, Path], split: str, limit: int | None) -> Iterator[_Asked]:
    """The split's questions, dataset by dataset in storage order; ``limit`` counts across datasets."""
    taken: Counter[str] = Counter()
    for name, path in datasets.items():
        with ShardDataset(path) as ds:
            tasks, splits = ds.index["task"].to_pylist(), ds.index["split"].to_pylist()
            rows = [i for i, (t, s) in enumerate(zip(tasks, splits)) if s == split and t in STORED_TASKS]
            captions = _references(ds, [i for i in rows if tasks[i] == "caption"])
            crayons = [i for i, t in enumerate(tasks) if t == "crayon"]  # every split: the class list
            classes = sorted({c for doc in _docs(ds, crayons) for c in _classes(doc["meta"])})
            for i in rows:
                if limit is None or taken[tasks[i]] < limit:
                    taken[tasks[i]] += 1
                    sample, picture = Sample.from_members(ds.key(i), ds.read(i)), image_hash(ds, i)
                    grouped = families(sample.task, sample.meta)
                    for prompt, expected, check in _sample_probes(name, sample, captions.get(picture, ()), classes):
                        yield _Asked(prompt, expected, check, (name, i), picture,
                                     grouped if prompt.task == sample.task else {})


#: prompt, expected answer, scorer
Probe = tuple[Prompt, str, Callable[[str], tuple[float, ...]]]


def _sample_probes(dataset: str, s: Sample, references: Sequence[str], classes: Sequence[str]) -> Iterator[Probe]:
    fields, stored = s.meta.get("fields", {}), s.turns[1].content
    ask = Prompt(s.task, dataset, s.key, s.turns[0].content, s.image)
    width, height = (s.image.width, s.image.height) if s.image else (1, 1)
    if s.task == "refer":
        yield ask, stored, lambda a: (refer_hit(a, PixelBox(*fields["box"]), width, height),)
    elif s.task == "identify":
        expressions = s.meta.get("sentences") or [stored]
        yield ask, stored, lambda a: (exact(a, expressions),)
    elif s.task == "vqa":
        yield ask, stored, lambda a: (vqa_accuracy(a, fields.get("answers"), stored),)
    elif s.task == "caption":
        refs = tuple(references) or (stored,)
        yield ask, stored, lambda a: (exact(a, refs), max(token_f1(a, r) for r in refs))
    elif s.task == "crayon":
        segments = s.meta.get("segments") or fields.get("segments") or []
        present = sorted(_classes(s.meta))
        crayon = s.extras.get("crayon.png")
        absent = [c for c in classes if c not in present]
        for cls, truth in ((_pick(s.key, "c2b-yes", present), "yes"), (_pick(s.key, "c2b-no", absent), "no")):
            if cls is not None:
                yield Prompt("c2b", dataset, s.key, C2B.format(cls), s.image, crayon), truth, \
                    lambda a, t=truth: (exact(a, [t]),)
        segment = _pick(s.key, "b2c", segments)
        if segment is not None:
            name = text_name(segment["class"])
            yield Prompt("b2c", dataset, s.key, B2C.format(unit_box(segment["box"], width, height)), s.image, crayon), \
                name, lambda a: (exact(a, [name]),)


def _pick(key: str, purpose: str, options: Sequence[Any]) -> Any:
    """One of ``options`` chosen by a hash of (purpose, key): the same probe on every run."""
    return options[xxhash.xxh3_64_intdigest(f"{purpose}\x1f{key}".encode()) % len(options)] if options else None


def _classes(meta: Mapping[str, Any]) -> set[str]:
    return {text_name(s["class"]) for s in meta.get("segments") or meta.get("fields", {}).get("segments") or []}


def _references(ds: ShardDataset, rows: Sequence[int]) -> dict[int, tuple[str, ...]]:
    """Image hash -> every stored caption of that image among ``rows``."""
    refs: dict[int, list[str]] = {}
    for i, doc in zip(rows, _docs(ds, rows)):
        refs.setdefault(image_hash(ds, i), []).append(doc["turns"][1]["content"])
    return {h: tuple(r) for h, r in refs.items() if h is not None}


def image_hash(ds: ShardDataset, row: int) -> int | None:
    """The index's xxh3 of the sample's image member: the same picture, the same number."""
    members = ds.index["members"][row].as_py()
    return next((m["xxh3"] for m in members if m["ext"] in ("jpg", "png")), None)


def _docs(ds: ShardDataset, rows: Sequence[int]) -> Iterator[dict[str, Any]]:
    """The json members of ``rows`` alone (one pread each, images never read)."""
    for i in rows:
        yield json.loads(ds.member(i, "json"))
