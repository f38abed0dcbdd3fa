"""The deficit schedule: exact shares per batch, running counts on target, a pure function of the step."""

from __future__ import annotations

import random

import numpy as np
import pytest

from training.mixture.schedule import BatchSchedule, ScheduleError, integer_weights

MINIGPT_STAGE3 = [50, 30, 10, 40, 20, 80, 80, 80, 80, 10, 30, 25, 25, 25, 10, 10, 10, 15, 8, 12, 50, 30]


def test_ratios_become_the_smallest_integers_in_exactly_their_proportion():
    assert integer_weights([1.5, 1]) == [3, 2]
    assert integer_weights([20, 40, 60]) == [1, 2, 3]
    assert integer_weights([0.1, 0.25]) == [2, 5]
    with pytest.raises(ScheduleError, match="positive"):
        integer_weights([1, 0])


@pytest.mark.parametrize("trial", range(40))
def test_every_batch_holds_each_share_within_one_and_running_counts_stay_on_target(trial):
    rng = random.Random(trial)
    weights = [rng.randint(1, 50) for _ in range(rng.randint(1, 9))]
    batch = rng.randint(1, 48)
    schedule = BatchSchedule(weights, batch)
    share = batch * np.array(schedule.weights) / sum(schedule.weights)
    for b in range(min(3 * schedule.period, 1500)):
        counts = schedule.counts(b)
        assert counts.sum() == batch and (np.abs(counts - share) < 1).all()
        target = (b + 1) * share
        assert (np.abs(schedule.drawn(b + 1) - target) < 1).all()


def test_drawn_is_the_sum_of_the_counts_before_any_step_without_replaying():
    schedule = BatchSchedule(MINIGPT_STAGE3, 24)
    assert schedule.period == 365
    running = np.zeros(22, np.int64)
    for b in range(800):
        assert np.array_equal(schedule.drawn(b), running)
        running += schedule.counts(b)
    far = 400_000
    assert schedule.drawn(far).sum() == far * 24
    assert np.abs(schedule.drawn(far) - far * 24 * np.array(MINIGPT_STAGE3) / 730).max() < 1


def test_per_batch_mode_gives_whole_batches_to_one_dataset_in_the_ratio_of_batches():
    schedule = BatchSchedule([3, 1], 8, "per_batch")
    batches = [tuple(schedule.counts(b)) for b in range(8)]
    assert all(sorted(c) == [0, 8] for c in batches)  # one dataset per batch
    assert [c[0] == 8 for c in batches].count(True) == 6  # 3 : 1 of the batches
    assert np.array_equal(schedule.drawn(400), [2400, 800])


def test_bad_inputs_are_refused():
    with pytest.raises(ScheduleError, match="global batch must be positive"):
        BatchSchedule([1], 0)
    with pytest.raises(ScheduleError, match="unknown mixture mode"):
        BatchSchedule([1, 2], 4, "random")
    with pytest.raises(ScheduleError, match="round them"):
        BatchSchedule([1, 999_999_937], 7)
