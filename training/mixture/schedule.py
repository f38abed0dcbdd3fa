"""How many samples each dataset gives to global batch b: exact ratios, deterministic, O(1) per batch.

``exact`` mode (shapes: K datasets, B global batch, integer weights w summing to W): dataset i
gets ``floor(B w_i / W)`` samples of every batch, and the ``R = B - sum(floor)`` leftover slots
go to the R datasets with a fractional share whose cumulative deficit (target ``(b+1) B w_i / W``
minus what they got) is largest, ties to the lower index. So every batch holds each share within
+-1 sample (floor or ceil) and the running counts follow the targets (within +-1, tested). With
integer weights the deficits return to zero after ``P = W / gcd(B, W)`` batches, so the process
is periodic: one period is computed once and batch b is ``table[b % P]``; no replay, any b.

``per_batch`` mode (MiniGPT-v2's choice: a batch comes from one dataset): whole batches go to
datasets by smooth weighted round-robin over batches (each step every dataset's credit grows by
w_i, the largest credit wins and pays W), period W, batch shares w_i / W.

Ratios may be any positive numbers written in decimal; they are made integers exactly (1.5 : 1
-> 3 : 2). A period over 20 million (batch, dataset) cells is refused: round the ratios.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from functools import reduce

import numpy as np

MAX_CELLS = 20_000_000


class ScheduleError(ValueError):
    """Ratios or batch sizes a schedule cannot be built from."""


def integer_weights(ratios: Sequence[float]) -> list[int]:
    """The smallest integers in exactly the proportion of ``ratios`` (as written in decimal)."""
    fractions = [Fraction(str(r)) for r in ratios]
    if not fractions or any(f <= 0 for f in fractions):
        raise ScheduleError(f"ratios must be positive, got {list(ratios)}")
    scale = reduce(math.lcm, (f.denominator for f in fractions), 1)
    ints = [int(f * scale) for f in fractions]
    g = reduce(math.gcd, ints)
    return [v // g for v in ints]


class BatchSchedule:
    """``counts(b)``: samples per dataset in global batch b; ``drawn(b)``: per dataset, before batch b."""

    def __init__(self, ratios: Sequence[float], batch: int, mode: str = "exact") -> None:
        if batch < 1:
            raise ScheduleError(f"the global batch must be positive, got {batch}")
        self.weights, self.batch, self.mode = integer_weights(ratios), batch, mode
        total = sum(self.weights)
        period = total // math.gcd(batch, total) if mode == "exact" else total
        if period * len(self.weights) > MAX_CELLS:
            raise ScheduleError(f"ratios {list(ratios)} repeat only every {period} batches; round them")
        if mode == "exact":
            self.table = _exact_period(self.weights, batch, period)
        elif mode == "per_batch":
            self.table = _per_batch_period(self.weights, batch)
        else:
            raise ScheduleError(f"unknown mixture mode {mode!r}; modes are exact, per_batch")
        self.period = period
        self.prefix = np.vstack([np.zeros((1, len(self.weights)), np.int64), np.cumsum(self.table, axis=0)])

    def counts(self, b: int) -> np.ndarray:
        """(K,) samples of each dataset in global batch b; they sum to the batch size."""
        return self.table[b % self.period]

    def drawn(self, b: int) -> np.ndarray:
        """(K,) samples each dataset gave to batches 0..b-1."""
        cycles, rest = divmod(b, self.period)
        return cycles * self.prefix[-1] + self.prefix[rest]


def _exact_period(weights: list[int], batch: int, period: int) -> np.ndarray:
    total, k = sum(weights), len(weights)
    share = np.array([batch * w for w in weights], dtype=np.int64)  # batch share times total
    base = share // total
    fractional = share % total != 0
    leftover = batch - int(base.sum())
    got = np.zeros(k, np.int64)
    table = np.empty((period, k), np.int64)
    order = np.arange(k)
    for b in range(period):
        counts = base.copy()
        if leftover:
            deficit = (b + 1) * share - (got + base) * total  # in units of 1 / total
            ranked = sorted(order[fractional], key=lambda i: (-deficit[i], i))
            counts[ranked[:leftover]] += 1
        got += counts
        table[b] = counts
    if not np.array_equal(got * total, period * share):  # the deficits must close the period
        raise ScheduleError(f"internal: schedule for weights {weights} and batch {batch} does not repeat")
    return table


def _per_batch_period(weights: list[int], batch: int) -> np.ndarray:
    total, k = sum(weights), len(weights)
    credit = np.zeros(k, np.int64)
    table = np.zeros((total, k), np.int64)
    for b in range(total):
        credit += weights
        winner = int(np.argmax(credit))  # first of the largest: ties to the lower index
        credit[winner] -= total
        table[b, winner] = batch
    return table
