"""Held-out scores of a checkpoint on our task datasets: did training teach each task at all?

Why: a falling loss says the model reproduces training answers; these numbers say whether it
answers unseen samples (the ``val`` split: images no training sample shows) as each task asks.
Every stored sample of the split is asked its stored first user turn (identifier included),
greedily, in left-padded batches, and scored against the sample's own truth:

- ``refer`` acc@0.5: the answer's first well-formed box, in pixels, vs ``meta.fields.box``;
  a hit when IoU > 0.5 (exclusive edges). No box is a miss.
- ``identify`` exact: normalised answer == normalised stored answer (the expression).
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
from dataclasses import asdict, dataclass, field
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

STORED_TASKS = ("refer", "identify", "vqa", "caption", "crayon")
C2B = ('Is there an instance of the category "{}" in the image? There may be multiple instances which are '
       "grouped together. Answer the question using either yes or no.")
B2C = "What is the main object located in {} in the image? Answer the question using a single word or phrase."
METRICS = {"refer": ("acc@0.5",), "identify": ("exact",), "vqa": ("accuracy",), "caption": ("exact", "token-f1"),
           "c2b": ("accuracy",), "b2c": ("accuracy",)}
EXAMPLES = 5
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


@dataclass(frozen=True)
class EvalReport:
    split: str
    datasets: tuple[str, ...]
    scores: tuple[Score, ...]
    examples: Mapping[str, tuple[Example, ...]] = field(default_factory=dict)

    def score(self, task: str, metric: str | None = None) -> Score:
        return next(s for s in self.scores if s.task == task and metric in (None, s.metric))

    def to_json(self) -> dict[str, Any]:
        return {"split": self.split, "datasets": list(self.datasets), "scores": [asdict(s) for s in self.scores],
                "examples": {t: [asdict(e) for e in ex] for t, ex in self.examples.items()}}

    def table(self) -> Table:
        table = Table("task", "metric", Column("n", justify="right"), Column("value", justify="right"),
                      title=f"{self.split} split: {', '.join(self.datasets)}")
        for s in self.scores:
            table.add_row(s.task, s.metric, str(s.n), f"{s.value:.3f}")
        return table


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
             limit: int | None = None, batch_size: int = 16, max_new_tokens: int = 48,
             answer_fn: AnswerFn | None = None) -> EvalReport:
    """Ask every held-out sample (at most ``limit`` per stored task; crayon: per image) and score the
    answers. ``answer_fn`` replaces the model's greedy generation (tests; other answerers)."""
    datasets = dict(datasets) if isinstance(datasets, Mapping) else find_datasets(datasets)
    held_out(datasets, split)
    answer = answer_fn or generator(model, max_new_tokens)
    results: dict[str, list[tuple[tuple[float, ...], Example]]] = {t: [] for t in METRICS}
    probes = _probes(datasets, split, limit)
    while batch := list(islice(probes, batch_size)):
        answers = answer([p for p, _, _ in batch])
        for (prompt, expected, check), text in zip(batch, answers, strict=True):
            results[prompt.task].append((check(text), Example(prompt.instruction, text, expected)))
    scores = tuple(Score(t, m, len(r), sum(v[i] for v, _ in r) / len(r))
                   for t, r in results.items() if r for i, m in enumerate(METRICS[t]))
    examples = {t: tuple(e for _, e in r[:EXAMPLES]) for t, r in results.items() if r}
    return EvalReport(split, tuple(datasets), scores, examples)


def generator(model, max_new_tokens: int = 48) -> AnswerFn:  # noqa: ANN001
    """The model's batched greedy answers: left-padded prompts, image rows and text rows mixed."""
    spec, tok = InputSpec.of(model), model.tokenizer

    def answer(prompts: list[Prompt]) -> list[str]:
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
                                 max_new_tokens=max_new_tokens)
        return [tok.decode(row, skip_special_tokens=True).strip() for row in ids]

    return answer


Probe = tuple[Prompt, str, Callable[[str], tuple[float, ...]]]  #: prompt, expected answer, scorer


def _probes(datasets: Mapping[str, Path], split: str, limit: int | None) -> Iterator[Probe]:
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
                    sample = Sample.from_members(ds.key(i), ds.read(i))
                    yield from _sample_probes(name, sample, captions.get(_image_hash(ds, i), ()), classes)


def _sample_probes(dataset: str, s: Sample, references: Sequence[str], classes: Sequence[str]) -> Iterator[Probe]:
    fields, stored = s.meta.get("fields", {}), s.turns[1].content
    ask = Prompt(s.task, dataset, s.key, s.turns[0].content, s.image)
    width, height = (s.image.width, s.image.height) if s.image else (1, 1)
    if s.task == "refer":
        yield ask, stored, lambda a: (refer_hit(a, PixelBox(*fields["box"]), width, height),)
    elif s.task == "identify":
        yield ask, stored, lambda a: (exact(a, [stored]),)
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
        refs.setdefault(_image_hash(ds, i), []).append(doc["turns"][1]["content"])
    return {h: tuple(r) for h, r in refs.items() if h is not None}


def _image_hash(ds: ShardDataset, row: int) -> int | None:
    """The index's xxh3 of the sample's image member: the same picture, the same number."""
    members = ds.index["members"][row].as_py()
    return next((m["xxh3"] for m in members if m["ext"] in ("jpg", "png")), None)


def _docs(ds: ShardDataset, rows: Sequence[int]) -> Iterator[dict[str, Any]]:
    """The json members of ``rows`` alone (one pread each, images never read)."""
    for i in rows:
        yield json.loads(ds.member(i, "json"))
