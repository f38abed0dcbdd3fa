"""The world as Unnatural Instructions core data: one text task per scene index, as JSONL.

No images: the point is a text-only source in its real layout. Each task's output is computed,
so it is exactly right; ``constraints`` is sometimes the string "None.", sometimes a rule for
the output's form and sometimes null, as in the real file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from datasets_builders.sample_world.common import WorldImage, write_jsonl

SALT = 6
WORDS = (
    "circle", "square", "triangle", "diamond", "window", "garden", "river", "pencil", "crayon",
    "lantern", "meadow", "harbour", "planet", "orange", "yellow", "purple", "basket", "mirror",
)
Task = tuple[str, str, "str | None", str]  # instruction, input, constraints, output


def _numbers(rng: np.random.Generator) -> list[int]:
    return [int(n) for n in rng.integers(0, 100, int(rng.integers(4, 8)))]


def _phrase(rng: np.random.Generator) -> str:
    return " ".join(str(w) for w in rng.choice(WORDS, int(rng.integers(2, 5)), replace=False))


def sort_numbers(rng: np.random.Generator) -> Task:
    numbers, descending = _numbers(rng), bool(rng.random() < 0.5)
    order = "descending" if descending else "ascending"
    output = ", ".join(str(n) for n in sorted(numbers, reverse=descending))
    return (f"You are given a list of numbers. Sort them in {order} order.",
            ", ".join(map(str, numbers)), "None." if rng.random() < 0.5 else None, output)


def reverse_word(rng: np.random.Generator) -> Task:
    word = str(rng.choice(WORDS))
    return "Write the given word backwards, letter by letter.", word, "The output should be a single word.", word[::-1]


def count_letter(rng: np.random.Generator) -> Task:
    text = _phrase(rng)
    letter = str(rng.choice(sorted(set(text.replace(" ", "")))))
    return (f"Count how many times the letter '{letter}' appears in the given text.", text,
            "The output should be a whole number.", str(text.count(letter)))


def arithmetic(rng: np.random.Generator) -> Task:
    a, b = (int(n) for n in rng.integers(1, 50, 2))
    op = str(rng.choice(["+", "-", "×"]))  # not "*": the text normalisation turns it into a space
    result = {"+": a + b, "-": a - b, "×": a * b}[op]
    return "Work out the value of the arithmetic expression.", f"{a} {op} {b}", "None.", str(result)


def even_or_odd(rng: np.random.Generator) -> Task:
    n = int(rng.integers(0, 1000))
    return ("Decide whether the given number is even or odd.", str(n),
            "The output should be 'even' or 'odd'.", "odd" if n % 2 else "even")


def count_words(rng: np.random.Generator) -> Task:
    # Tasks about letter case would be false after MiniGPT-v2's normalisation lowercases the answer.
    text = _phrase(rng)
    return "How many words are in the given phrase?", text, None, str(len(text.split()))


KINDS: tuple[Callable[[np.random.Generator], Task], ...] = (
    sort_numbers, reverse_word, count_letter, arithmetic, even_or_odd, count_words,
)


def record(rng: np.random.Generator) -> dict[str, Any]:
    instruction, given, constraints, output = KINDS[int(rng.integers(len(KINDS)))](rng)
    instance = {"instruction_with_input": f"{instruction}\nInput: {given}", "input": given,
                "constraints": constraints, "output": output}
    return {"instruction": instruction, "instances": [instance]}


def write(world: list[WorldImage], out_dir: Path, seed: int) -> None:
    write_jsonl(out_dir / "core_data.jsonl", (record(image.rng(SALT)) for image in world))
