"""File names inside a dataset folder, in one place (docs/architecture.md draws the folder)."""

from __future__ import annotations

import re

MANIFEST = "manifest.json"  # written last: its presence means the dataset is committed
SAMPLES_INDEX = "samples.parquet"
REJECTS_INDEX = "rejects.parquet"
JOURNAL = ".building"  # resume journal of an unfinished build; removed at commit
LOCK = ".lock"  # flock'd by the one writer of the folder

DATASET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def shard_name(dataset: str, index: int) -> str:
    return f"{dataset}-{index:06d}.tar"


def shard_pattern(dataset: str) -> re.Pattern[str]:
    """Matches ``<dataset>-NNNNNN.tar``; group 1 is the shard number."""
    return re.compile(rf"^{re.escape(dataset)}-(\d{{6}})\.tar$")
