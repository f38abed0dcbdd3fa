"""Global batch -> ranks -> DataLoader workers, by position: every rank gets the same steps.

A global batch is built whole, then rank r of W takes the contiguous slice
``[r B / W, (r + 1) B / W)``: the union over ranks is the global batch for any W dividing B, so
changing the number of GPUs changes nothing about what is trained on. Within a rank, DataLoader
worker w of N produces steps ``first + w, first + w + N, ...``; torch's DataLoader takes them
round-robin, so the rank still sees its steps in order.
"""

from __future__ import annotations


def rank_slice(batch: int, world: int, rank: int) -> slice:
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} of a world of {world}")
    if batch % world:
        raise ValueError(f"the global batch {batch} does not divide over {world} ranks; choose a world size "
                         f"dividing it (so every rank gets the same number of samples)")
    per_rank = batch // world
    return slice(rank * per_rank, (rank + 1) * per_rank)


def worker_steps(first: int, end: int, workers: int, worker: int) -> range:
    """The steps of ``[first, end)`` that DataLoader worker ``worker`` of ``workers`` produces."""
    return range(first + worker, end, max(workers, 1))
