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
    assert wrong.exit_code == 2 and "formats: llava, minigptv2" in wrong.output
    not_flickr = runner.invoke(app, ["export", str(root), "--format", "minigptv2", "--out", str(tmp_path / "y")])
    assert not_flickr.exit_code == 1 and "from a flickr30k-entities dataset" in not_flickr.output


def test_minigptv2_flickr_files_round_trip_to_the_samples_turns(world, tmp_path):
    root = build_dataset("flickr30k-entities", world / "flickr30k-entities", tmp_path / "flickr").root
    done = CliRunner().invoke(app, ["export", str(root), "--format", "minigptv2", "--out", str(tmp_path / "mg")])
    assert done.exit_code == 0, done.output
    read = {name: json.loads((tmp_path / "mg" / name).read_text())
            for name in ("groundedcaption.json", "captiontobbox.json", "phrasetobbox.json")}
    samples = list(ShardDataset(root).samples())
    by_task = {t: [s for s in samples if s.task == t] for t in ("grounding", "detection-caption", "detection-phrase")}
    assert [len(read[n]) for n in read] == [len(by_task[t]) for t in by_task] and all(by_task.values())
    for entry, sample in zip(read["groundedcaption.json"], by_task["grounding"]):
        assert entry["grounded_caption"] == sample.turns[1].content
    for entry, sample in zip(read["captiontobbox.json"], by_task["detection-caption"]):  # the class's own template
        assert (f"[detection] {entry['caption']}", entry["output"]) == (sample.turns[0].content, sample.turns[1].content)
    for entry, sample in zip(read["phrasetobbox.json"], by_task["detection-phrase"]):
        assert f"<p>{entry['phrase']}</p> {entry['bbox']}" == sample.turns[1].content
        picture = tmp_path / "mg" / "images" / f"{entry['image_id']}.jpg"
        assert picture.read_bytes() == sample.image.data
