"""Shards read back unchanged by the readers other tools use: webdataset, Ray Data, GNU tar."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.builds import build, make_samples, spec_for


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("compat") / "ds"
    samples = make_samples(25)
    build(root, samples, spec_for(max_samples=10))
    return root, samples


def test_webdataset_reads_every_member_unchanged(dataset):
    import webdataset as wds

    root, samples = dataset
    urls = [str(p) for p in sorted(root.glob("*.tar"))]
    got = list(wds.WebDataset(urls, shardshuffle=False, empty_check=True))
    assert [g["__key__"] for g in got] == [s.key for s in samples]
    for g, s in zip(got, samples):
        assert {k: v for k, v in g.items() if not k.startswith("__")} == s.members()


def test_webdataset_decodes_images_and_json(dataset):
    import webdataset as wds

    root, samples = dataset
    got = next(iter(wds.WebDataset(str(root / "toy-000000.tar"), shardshuffle=False).decode("pil")))
    assert got["jpg"].size == (samples[0].image.width, samples[0].image.height)
    assert got["json"]["turns"][1]["content"] == samples[0].turns[1].content


@pytest.mark.slow
def test_ray_data_reads_every_sample(dataset, ray_cluster):
    import ray

    root, samples = dataset
    # A dataset folder also holds parquet and JSON: point Ray at the tars only.
    rows = ray.data.read_webdataset(str(root), file_extensions=["tar"], decoder=None, override_num_blocks=2).take_all()
    by_key = {r["__key__"]: r for r in rows}
    assert sorted(by_key) == sorted(s.key for s in samples)
    for s in samples:
        row = by_key[s.key]
        for ext, data in s.members().items():
            assert bytes(row[ext]) == data, (s.key, ext)
    decoded = ray.data.read_webdataset([str(p) for p in sorted(root.glob("*.tar"))]).take(3)
    assert all(json.loads(json.dumps(r["json"]))["source"]["dataset"] == "synthetic" for r in decoded)


def test_gnu_tar_lists_members_in_sample_order(dataset):
    root, samples = dataset
    listing = subprocess.run(["tar", "-tf", str(root / "toy-000000.tar")], capture_output=True, text=True, check=True)
    expected = [f"{s.key}.{ext}" for s in samples[:10] for ext in sorted(s.members())]
    assert listing.stdout.split() == expected
    assert listing.stderr == ""
    verbose = subprocess.run(["tar", "-tvf", str(root / "toy-000000.tar")], capture_output=True, text=True, check=True)
    assert all(line.startswith("-rw-r--r-- 0/0") and "1970-01-01 00:00" in line for line in verbose.stdout.splitlines())
