"""The blind control and its statistics, shared by ``eval`` (generated answers) and ``looks``
(teacher-forced losses): which sample lends its picture to which, how sure a gap is, and which
question family a sample belongs to.

Why: a score says nothing about the picture until it stands beside the same questions asked with
another picture. The swap is a derangement within one task (and split): a fixed, seeded
permutation in which no sample keeps its own picture, nor another copy of the same bytes (several
questions share a picture), so the control keeps each task's answer distribution and removes only
the image's information.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import xxhash

BOOTSTRAP_DRAWS = 2000
CONFIDENCE = 0.95


def derangement(probes: Sequence[tuple[str, Hashable | None]], seed: int = 0) -> dict[int, int]:
    """Probe index -> the probe whose picture it is shown instead, for ``probes`` given as (task,
    picture id). Per task: the distinct pictures in a seeded order, probes grouped by picture, then
    a cyclic shift by the largest group, so no probe keeps its picture (unless one picture holds
    more than half of its task's probes, when no permutation can avoid it) and the map is a
    permutation of the task's probes. Probes without a picture, and tasks with one probe, are left
    out. Deterministic in (probes, seed)."""
    by_task: dict[str, list[tuple[int, Hashable, int]]] = {}
    for i, (task, picture) in enumerate(probes):
        if picture is not None:
            order = xxhash.xxh3_64_intdigest(f"{seed}\x1f{task}\x1f{picture!r}".encode())
            by_task.setdefault(task, []).append((order, picture, i))
    donors: dict[int, int] = {}
    for members in by_task.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda m: (m[0], m[2]))
        shift = max(Counter(picture for _, picture, _ in members).values())
        for k, (_, _, i) in enumerate(members):
            donors[i] = members[(k + shift) % len(members)][2]
    return donors


def gap_interval(own: Sequence[float], control: Sequence[float], seed: int = 0,
                 draws: int = BOOTSTRAP_DRAWS) -> tuple[float, float]:
    """The 95 % percentile-bootstrap interval of mean(own - control) over paired samples."""
    diff = np.asarray(own, np.float64) - np.asarray(control, np.float64)
    if diff.size == 0:
        return (float("nan"), float("nan"))
    if diff.size == 1:
        return (float(diff[0]), float(diff[0]))
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, (draws, diff.size))].mean(axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return (float(low), float(high))


def verdict(interval: tuple[float, float] | None, higher_is_better: bool = True) -> str:
    """"looking" when the interval lies wholly on the side that says the picture helps, else
    "not looking" (an interval that includes 0 is no evidence)."""
    if interval is None:
        return "not asked"
    low, high = interval
    return "looking" if (low > 0 if higher_is_better else high < 0) else "not looking"


def families(task: str, meta: Mapping[str, Any]) -> dict[str, str]:
    """The question families a sample belongs to, by the fields its builder kept: VQA's own
    ``question_type`` and ``answer_type``; for refer and identify, the kind of the chosen
    expression (attribute, position, both) where the sample world recorded it. Empty otherwise."""
    out: dict[str, str] = {}
    if task == "vqa":
        for name in ("question_type", "answer_type"):
            value = meta.get(name)
            if isinstance(value, str) and value:
                out[name] = value
    elif task in ("refer", "identify"):
        kinds, chosen = meta.get("sentence_kinds"), meta.get("sentence")
        if isinstance(kinds, list) and isinstance(chosen, int) and 0 <= chosen < len(kinds) \
                and isinstance(kinds[chosen], str):
            out["expression"] = kinds[chosen]
    return out
