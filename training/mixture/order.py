"""Which sample: dataset i's j-th draw, as a pure function of (seed, dataset identity, j).

A dataset's candidate rows (its index rows of the stage's split and tasks, in storage order) are
walked in a permutation drawn without replacement: draw j is ``rows[perm_e[j % n]]`` with epoch
``e = j // n`` and ``perm_e`` seeded by (seed, identity, e), so every sample is seen once per
epoch and each epoch reshuffles. The identity is the dataset's name, its manifest fingerprint,
split and tasks: the same data gives the same order on any machine, changed data a new one.
Permutations are computed once per epoch reached (n int64 each) and kept for the last two.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import xxhash


class DatasetOrder:
    def __init__(self, rows: np.ndarray, seed: int, identity: str) -> None:
        if len(rows) == 0:
            raise ValueError(f"dataset {identity}: no samples of the requested split and tasks")
        self.rows, self.seed, self.identity = np.asarray(rows, dtype=np.int64), seed, identity
        digest = xxhash.xxh3_64_intdigest(identity.encode())
        self._key = (digest >> 32, digest & 0xFFFFFFFF)
        self._permutation = lru_cache(maxsize=2)(self._draw_permutation)

    def __reduce__(self):
        """Pickles as its inputs (DataLoader workers start from a forkserver); the cache is rebuilt there."""
        return DatasetOrder, (self.rows, self.seed, self.identity)

    def __len__(self) -> int:
        return len(self.rows)

    def epoch(self, j: int) -> int:
        return j // len(self.rows)

    def row(self, j: int) -> int:
        """The storage row of draw j."""
        epoch, position = divmod(j, len(self.rows))
        return int(self.rows[self._permutation(epoch)[position]])

    def next_row(self, row: int) -> int:
        """The candidate after ``row`` in storage order (wrapping): a failed sample's replacement."""
        at = int(np.searchsorted(self.rows, row))
        return int(self.rows[(at + 1) % len(self.rows)])

    def _draw_permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, *self._key, epoch]).permutation(len(self.rows))
