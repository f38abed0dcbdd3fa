"""``crayonflow pretrain llm``: the tiny Llama, trained from scratch to look things up in a scene.

Why: a from-scratch 4-layer LLM inside the VLM never learns to read object-level content from a
few localised visual tokens, while one pretrained on text versions of the tasks does, and carries
that over to good visual tokens (model-looks-diagnosis.md section 4). Each training prompt is the
VLM's own (``encode_conversation``, MiniGPT-v2's template) with the scene written as text
(``scene_text``) in the slot between ``<Img>`` and ``</Img>`` where the visual tokens will sit;
all weights train, the loss is on answer tokens only.

Training scenes are generated fresh from ``world_seed`` (never the demo world's, seed 0); each
row draws a scene and one of its questions, with wording drawn anew each time. The held-out
report asks a fixed set of scenes from another seed greedily, with its own scene text and with
the next scene's ("blind": what the question alone gives), per task and question family.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from rich.table import Table
from tqdm import tqdm

from datasets_builders.formats.boxes import find_boxes, to_pixels
from datasets_builders.sample_world import scene_text as scene_text_module
from datasets_builders.sample_world.scene import Scene, generate_scene
from datasets_builders.sample_world.scene_text import TextSample, scene_text, text_samples
from models.build import build_llm
from models.config import LLMConfig
from models.presets import TINY_LLAMA
from models.prompt import IGNORE, Encoded, collate, encode_conversation, encode_prompt
from models.tokenizer import tiny_tokenizer
from training.pretrain.cache import cached_folder
from training.pretrain.defaults import LLM_DEFAULTS, LLM_WORLD_SEED as WORLD_SEED
from training.evaluate import ANSWER_TOKENS, exact, refer_hit
from training.optim import learning_rate, make_optimizer, set_learning_rate
from training.plan import Schedule

DEFAULT_STEPS, DEFAULT_BATCH, DEFAULT_LR = LLM_DEFAULTS["steps"], LLM_DEFAULTS["batch"], LLM_DEFAULTS["lr"]
HELD_OUT_SEED = 2_000_029  #: the fixed held-out scenes, a world of their own
EVAL_TASKS = ("vqa", "refer", "identify")
#: trained by default: the look-up tasks; captions teach no look-up and their long answers cost time
LOOKUP_TASKS = EVAL_TASKS
MAX_TEXT_TOKENS = 256  #: the tiny preset's max_text_tokens
EVAL_BATCH = 128  #: generate is bound by per-step overhead on CPU, not rows (model-looks.md)
FAMILY_NAMES = {"what color is the": "colour", "what": "shape", "how many": "count", "is there a": "is-there",
                "is there an": "is-there", "is this": "indoor"}  #: VQA question types, as the diagnosis names them


def pretrain_llm(out: Path, *, steps: int = DEFAULT_STEPS, batch: int = DEFAULT_BATCH, lr: float = DEFAULT_LR,
                 seed: int = 0, world_seed: int = WORLD_SEED, scenes: int = 1000, held_out_scenes: int = 100,
                 warmup: int = 50, weight_decay: float = 0.05, tasks: tuple[str, ...] = LOOKUP_TASKS,
                 eval_every: int = 0, threads: int = 2, progress: bool = True,
                 task_weights: dict[str, float] | None = None) -> dict[str, Any]:
    """Train (or reuse) the tiny Llama in ``out``; the report: held-out accuracies, minutes, the folder.

    ``eval_every`` > 0 also scores the held-out set every that many steps (``report["curve"]``),
    for experiments: one run then shows when look-up appears. ``threads`` and ``progress`` are left
    out of the fingerprint: they change the speed, not the recipe (on a machine shared with other
    jobs one torch thread ran a step about 3x faster than two). ``task_weights`` (task -> weight):
    each row draws its task by weight, then a scene that has a question of it; None: a scene, then
    any of its questions (a task's share is then its share of the questions)."""
    if task_weights is not None and (set(task_weights) - set(tasks) or min(task_weights.values()) < 0
                                     or not sum(task_weights.values()) > 0):
        raise ValueError(f"task_weights {task_weights} must give non-negative weights, not all 0, to tasks {tasks}")
    tokenizer = tiny_tokenizer()
    recipe = {"steps": steps, "batch": batch, "lr": lr, "seed": seed, "world_seed": world_seed, "scenes": scenes,
              "held_out_scenes": held_out_scenes, "warmup": warmup, "weight_decay": weight_decay,
              "tasks": list(tasks), "eval_every": eval_every, "llm": TINY_LLAMA,
              "tokenizer": hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()}
    if task_weights is not None:  # only when given: the fingerprints of unweighted recipes stay as they were
        recipe["task_weights"] = {task: float(task_weights.get(task, 0.0)) for task in tasks}
    sources = [Path(__file__), Path(scene_text_module.__file__)]

    def build(folder: Path) -> dict[str, Any]:
        return _train(folder, tokenizer, recipe, threads, progress)

    folder, report, reused = cached_folder(Path(out), recipe, sources, build)
    return {**report, "folder": str(folder), "reused": reused}


def _train(folder: Path, tokenizer, recipe: dict[str, Any], threads: int,  # noqa: ANN001
           progress: bool) -> dict[str, Any]:
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train_with_threads_set(folder, tokenizer, recipe, progress)
    finally:
        torch.set_num_threads(threads_before)


def _train_with_threads_set(folder: Path, tokenizer, recipe: dict[str, Any],  # noqa: ANN001
                            progress: bool) -> dict[str, Any]:
    torch.manual_seed(recipe["seed"])
    started = time.monotonic()
    llm = build_llm(LLMConfig(model_type="llama", init=TINY_LLAMA), tokenizer, None, quantize=False)
    train_scenes = [_without_pixels(generate_scene(recipe["world_seed"], i)) for i in range(recipe["scenes"])]
    held_out = HeldOut.make(tokenizer, recipe["held_out_scenes"])
    generating = time.monotonic() - started
    scene_ids = [_tokens(tokenizer, scene_text(scene)) for scene in train_scenes]
    optimizer = make_optimizer(llm, recipe["lr"], recipe["weight_decay"])
    schedule = Schedule(max=recipe["lr"], warmup=recipe["warmup"])
    rng = np.random.default_rng([recipe["seed"], recipe["world_seed"]])
    steps, losses, curve, window = recipe["steps"], [], [], []
    llm.train()
    bar = tqdm(range(steps), desc="pretrain llm", disable=not progress, mininterval=2.0)
    for step in bar:
        inputs = _draw_batch(tokenizer, train_scenes, scene_ids, rng, recipe["batch"], tuple(recipe["tasks"]),
                             recipe.get("task_weights"))
        set_learning_rate(optimizer, learning_rate(schedule, step, steps))
        loss = answer_loss(llm, inputs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(llm.parameters(), 1.0)
        optimizer.step()
        window.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(window[-50:]):.3f}", refresh=False)
        if (step + 1) % 100 == 0 or step + 1 == steps:
            losses.append([step + 1, round(float(np.mean(window)), 4)])
            window = []
        if recipe["eval_every"] and (step + 1) % recipe["eval_every"] == 0 and step + 1 < steps:
            curve.append({"step": step + 1, "minutes": round((time.monotonic() - started) / 60, 2),
                          "held_out": held_out.score(llm)})
            llm.train()
    training = time.monotonic() - started
    scores = held_out.score(llm)
    llm.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {"steps": steps, "minutes": round(training / 60, 2), "scene_minutes": round(generating / 60, 2),
            "losses": losses, "held_out": scores, "curve": curve, "held_out_questions": len(held_out.samples)}


def _draw_batch(tokenizer, scenes: list[Scene], scene_ids: list[list[int]], rng: np.random.Generator,  # noqa: ANN001
                batch: int, tasks: tuple[str, ...], weights: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    """``batch`` rows, each a random scene and one of its questions, worded afresh by ``rng``; with
    ``weights``, the row's task is drawn first and scenes without a question of it are passed over."""
    rows = []
    names = list(weights) if weights else []
    shares = np.array([weights[t] for t in names]) / sum(weights.values()) if weights else None
    for _ in range(batch):
        asked = (names[int(rng.choice(len(names), p=shares))],) if weights else tasks
        options: list[TextSample] = []
        while not options:
            index = int(rng.integers(len(scenes)))
            options = text_samples(scenes[index], rng, asked)
        rows.append(encode_in_slot(tokenizer, scene_ids[index], options[int(rng.integers(len(options)))]))
    return collate(rows, tokenizer.pad_token_id)


def answer_loss(llm, inputs: dict[str, torch.Tensor]) -> torch.Tensor:  # noqa: ANN001
    """Mean next-token loss on the answer tokens, as ``labels=`` computes it, with the vocabulary head run
    on those positions only: at width 128 the 2048-way head is ~30 % of the step on every position."""
    hidden = llm.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
    targets = inputs["labels"][:, 1:]
    answered = targets != IGNORE
    return torch.nn.functional.cross_entropy(llm.lm_head(hidden[:, :-1][answered]), targets[answered])


def encode_in_slot(tokenizer, scene_ids: list[int], sample: TextSample, *,  # noqa: ANN001
                   answer: bool = True) -> Encoded:
    """The VLM's encoding of ``sample`` with the scene's text tokens where its visual tokens go;
    ``answer`` False: the prompt alone, for generation."""
    if answer:
        encoded = encode_conversation(tokenizer, [("user", sample.instruction), ("assistant", sample.answer)],
                                      visual_tokens=len(scene_ids), max_text_tokens=MAX_TEXT_TOKENS)
    else:
        encoded = encode_prompt(tokenizer, sample.instruction, visual_tokens=len(scene_ids))
    ids, start = list(encoded.input_ids), encoded.image_mask.index(True)
    ids[start:start + len(scene_ids)] = scene_ids
    return replace(encoded, input_ids=ids, image_mask=[False] * len(ids))


@dataclass
class HeldOut:
    """Fixed held-out questions: each asked with its own scene's text and with the next scene's."""

    tokenizer: Any
    scene_ids: list[list[int]]
    samples: list[tuple[int, TextSample]]  #: (scene index, sample)

    @classmethod
    def make(cls, tokenizer, scenes: int) -> HeldOut:  # noqa: ANN001
        scene_ids, samples = [], []
        for index in range(scenes):
            scene = generate_scene(HELD_OUT_SEED, index)
            scene_ids.append(_tokens(tokenizer, scene_text(scene)))
            samples += [(index, s) for s in text_samples(scene, np.random.default_rng([HELD_OUT_SEED, index]),
                                                         EVAL_TASKS)]
        return cls(tokenizer, scene_ids, samples)

    @torch.no_grad()
    def score(self, llm) -> dict[str, dict[str, list[float]]]:  # noqa: ANN001
        """task -> family ("all" first) -> [own accuracy, blind accuracy, n]."""
        llm.eval()
        hits: dict[str, dict[str, list[list[float]]]] = {}
        for shift, column in ((0, 0), (1, 1)):  # shift 1: the next scene's text (blind)
            for task in EVAL_TASKS:
                asked = [(i, s) for i, s in self.samples if s.task == task]
                answers = self._answers(llm, [(self.scene_ids[(i + shift) % len(self.scene_ids)], s) for i, s in asked],
                                        ANSWER_TOKENS[task])
                for (_, sample), answer in zip(asked, answers):
                    hit = answer_hit(sample, answer)
                    family = FAMILY_NAMES.get(sample.family, sample.family)
                    for name in ("all", family):
                        hits.setdefault(task, {}).setdefault(name, [[], []])[column].append(hit)
        return {task: {family: [round(float(np.mean(own)), 3), round(float(np.mean(blind)), 3), len(own)]
                       for family, (own, blind) in families.items()} for task, families in hits.items()}

    def _answers(self, llm, asked: list[tuple[list[int], TextSample]],  # noqa: ANN001
                 max_new_tokens: int) -> list[str]:
        out = []
        for start in range(0, len(asked), EVAL_BATCH):
            chunk = asked[start:start + EVAL_BATCH]
            prompts = [encode_in_slot(self.tokenizer, ids, s, answer=False) for ids, s in chunk]
            inputs = collate(prompts, self.tokenizer.pad_token_id, left=True)
            generated = llm.generate(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                     max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id)
            out += self.tokenizer.batch_decode(generated[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        return out


def answer_hit(sample: TextSample, answer: str) -> float:
    """evaluate's metrics: refer acc@0.5 (IoU on the 0..100 grid the truth is written in), exact otherwise."""
    if sample.task == "refer":
        return refer_hit(answer, to_pixels(find_boxes(sample.answer)[0], 100, 100), 100, 100)
    return exact(answer, sample.references)


def held_out_table(report: dict[str, Any]) -> Table:
    """One row per task and family: n, accuracy with the own scene text and with another's."""
    table = Table("task", "family", "n", "own", "blind", title="held-out greedy accuracy")
    for task, families in report["held_out"].items():
        for family, (own, blind, n) in families.items():
            table.add_row(task if family == "all" else "", family, str(n), f"{own:.2f}", f"{blind:.2f}")
    return table


def _without_pixels(scene: Scene) -> Scene:
    """The scene's ground truth and size only: a thousand pictures would take gigabytes, text needs none."""
    return replace(scene, image=Image.new("1", scene.size), segments=np.zeros((0, 0), np.int32))


def _tokens(tokenizer, text: str) -> list[int]:  # noqa: ANN001
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
