"""The shard store: datasets of WebDataset shards with a write-time index and a manifest.

    DatasetWriter(root, BuildSpec(...))  write samples, record rejects, commit
    ShardDataset(root)                   scan or randomly read a committed dataset
    verify_dataset(root)                 re-check every byte against the index and manifest
"""

from datasets_builders.store.keys import InvalidKeyError, check_key
from datasets_builders.store.manifest import BuildSpec, InputRef, Manifest, ManifestError, committed_build, load_manifest
from datasets_builders.store.reader import CorruptSampleError, DatasetNotCommittedError, ShardDataset, open_dataset
from datasets_builders.store.verify import Problem, VerifyReport, verify_dataset
from datasets_builders.store.writer import (
    DatasetBusyError,
    DatasetExistsError,
    DatasetWriteError,
    DatasetWriter,
    DuplicateKeyError,
    ReconcileError,
    ResumeMismatchError,
)

__all__ = [
    "BuildSpec", "CorruptSampleError", "DatasetBusyError", "DatasetExistsError", "DatasetNotCommittedError",
    "DatasetWriteError", "DatasetWriter", "DuplicateKeyError", "InputRef", "InvalidKeyError", "Manifest",
    "ManifestError", "Problem", "ReconcileError", "ResumeMismatchError", "ShardDataset", "VerifyReport",
    "check_key", "committed_build", "load_manifest", "open_dataset", "verify_dataset",
]
