"""Task datasets built once from the session's sample world: the inputs of the derived builders."""

from __future__ import annotations

import pytest

from datasets_builders.build import build_dataset

INPUTS = ("coco-panoptic", "flickr30k-entities", "refcoco", "vqa", "coco-captions", "llava", "unnatural-instructions")


@pytest.fixture(scope="session")
def task_datasets(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("task-datasets")
    return {name: build_dataset(name, world / name, out / name).root for name in INPUTS}
