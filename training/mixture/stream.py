"""A stage's steps as a torch DataLoader: worker processes read and collate, the rank sees steps in order.

Each DataLoader worker produces whole local batches for its steps (``sharding.worker_steps``);
``batch_size=None`` passes them through untouched, and torch takes workers round-robin, so the
batches come out in step order whatever the worker count. Starting at any step is the same as
having run up to it: nothing is buffered across steps.

Workers start from a forkserver, not by forking the rank: a process that has run a Prefect flow
carries Prefect's background services, whose at-exit drain fails in a forked child (exit code 1),
and a clean start also keeps the rank's threads and locks out of the workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from training.mixture.loader import Fetched, MixtureLoader
from training.mixture.sharding import worker_steps


class StageSteps(IterableDataset):
    def __init__(self, loader: MixtureLoader, collator: Callable[[Sequence[Fetched]], object], stage: int,
                 first: int, end: int) -> None:
        self.loader, self.collator, self.stage, self.first, self.end = loader, collator, stage, first, end

    def __iter__(self) -> Iterator[tuple[int, object]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for step in worker_steps(self.first, self.end, workers, worker):
            items = self.loader.local_items(self.stage, step)
            yield step, self.collator([self.loader.fetch(item) for item in items])


def stage_batches(loader: MixtureLoader, collator: Callable[[Sequence[Fetched]], object], stage: int, first: int,
                  *, workers: int = 0, end: int | None = None) -> Iterator[tuple[int, object]]:
    """(step, batch) for steps ``first .. end`` (default: the stage's last) of ``stage``, this rank's slice."""
    end = loader.plan.stages[stage].num_steps if end is None else end
    steps = StageSteps(loader, collator, stage, first, end)
    if workers == 0:
        yield from steps
        return
    yield from DataLoader(steps, batch_size=None, num_workers=workers, prefetch_factor=2,
                          multiprocessing_context="forkserver")
