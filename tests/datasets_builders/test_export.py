"""``crayonflow export --format llava``: read back, every sample's turns and picture bytes are the
shards', sample for sample; each picture is written once; text-only samples have no image."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from datasets_builders.build import build_dataset
from datasets_builders.export import IMAGE_TOKEN
from datasets_builders.store import ShardDataset
from pipelines.cli import app


def test_llava_export_round_trips_sample_for_sample(world, tmp_path):
    runner = CliRunner()
    for name in ("refcoco", "unnatural-instructions"):
        root = build_dataset(name, world / name, tmp_path / "datasets" / name).root
        done = runner.invoke(app, ["export", str(root), "--format", "llava", "--out", str(tmp_path / name)],
                             terminal_width=200)
        assert done.exit_code == 0, done.output
        entries = {e["id"]: e for e in json.loads((tmp_path / name / f"{name}.json").read_text())}
        samples = list(ShardDataset(root).samples())
        assert len(entries) == len(samples)
        pictures = set()
        for sample in samples:
            entry = entries[sample.key]
            values = [t["value"] for t in entry["conversations"]]
            roles = [t["from"] for t in entry["conversations"]]
            assert roles == ["human" if t.role == "user" else "gpt" for t in sample.turns]
            if sample.image is None:
                assert "image" not in entry and values == [t.content for t in sample.turns]
                continue
            assert values[0] == f"{IMAGE_TOKEN}\n{sample.turns[0].content}"
            assert values[1:] == [t.content for t in sample.turns[1:]]
            assert (tmp_path / name / "images" / entry["image"]).read_bytes() == sample.image.data
            pictures.add(entry["image"])
        assert len(list((tmp_path / name / "images").iterdir())) == len(pictures)
        if name == "refcoco":  # refer and identify of one object, objects of one picture: one file
            assert 0 < len(pictures) < len(samples) / 2
    assert len(pictures) == 0  # the last one exported is text-only
    wrong = runner.invoke(app, ["export", str(root), "--format", "coco", "--out", str(tmp_path / "x")])
    assert wrong.exit_code == 2 and "formats: llava" in wrong.output
