"""The blind control's building blocks: the derangement, the bootstrap interval, the families."""

from __future__ import annotations

from collections import Counter

import pytest

from training.controls import derangement, families, gap_interval, verdict


def probes_of(pictures_per_task: dict[str, list[int]]) -> list[tuple[str, int]]:
    return [(task, p) for task, pictures in pictures_per_task.items() for p in pictures]


PROBES = probes_of({"refer": [1, 1, 1, 2, 3, 3, 4, 5, 5], "vqa": [7, 7, 8, 8, 9, 9, 9], "caption": [10]})


def test_the_derangement_is_a_permutation_within_each_task_that_never_shows_a_probe_its_own_picture():
    donors = derangement(PROBES, seed=0)
    assert sorted(donors) == sorted(donors.values()) == list(range(16))  # the lone caption probe is left out
    for i, j in donors.items():
        assert PROBES[i][0] == PROBES[j][0], (i, j)  # same task
        assert PROBES[i][1] != PROBES[j][1], (i, j)  # another picture, not just another probe


def test_the_derangement_is_deterministic_and_the_seed_changes_it():
    assert derangement(PROBES, seed=3) == derangement(PROBES, seed=3)
    assert len({tuple(sorted(derangement(PROBES, seed=s).items())) for s in range(6)}) > 1


@pytest.mark.parametrize("seed", range(20))
def test_no_fixed_points_for_any_seed_on_random_multiplicities(seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    pictures = [int(p) for p in rng.integers(0, 12, 40)]
    if max(Counter(pictures).values()) > len(pictures) / 2:
        pytest.skip("one picture holds most probes: no derangement exists")
    donors = derangement([("t", p) for p in pictures], seed)
    assert all(pictures[i] != pictures[j] for i, j in donors.items())
    assert sorted(donors.values()) == list(range(40))


def test_probes_without_a_picture_are_not_swapped():
    assert derangement([("t", None), ("t", 1), ("t", 2)]) == {1: 2, 2: 1}


def test_the_bootstrap_interval_brackets_a_clear_gap_and_straddles_no_gap():
    own, control = [1.0] * 40 + [0.0] * 10, [0.0] * 40 + [1.0] * 10
    low, high = gap_interval(own, control)
    assert 0.3 < low < 0.6 < high < 0.9 and verdict((low, high)) == "looking"
    low, high = gap_interval([1, 0] * 25, [0, 1] * 25)
    assert low < 0 < high and verdict((low, high)) == "not looking"
    assert gap_interval([1.0, 1.0], [1.0, 1.0]) == (0.0, 0.0)
    assert verdict((-0.5, -0.1), higher_is_better=False) == "looking"  # a loss: lower with the own image


def test_families_come_from_the_fields_the_builders_keep():
    assert families("vqa", {"question_type": "how many", "answer_type": "number"}) == \
        {"question_type": "how many", "answer_type": "number"}
    assert families("vqa", {"question_type": None}) == {}
    meta = {"sentences": ["the red circle", "the left object"], "sentence_kinds": ["attribute", "position"],
            "sentence": 1}
    assert families("refer", meta) == families("identify", meta) == {"expression": "position"}
    assert families("refer", {"sentences": ["a"], "sentence": 0}) == {}  # real RefCOCO: no kinds
    assert families("caption", {"question_type": "x"}) == {}
