"""`crayonflow sample-world` then `crayonflow build`, as a user types them."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from datasets_builders.registry import SOURCES
from pipelines.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), terminal_width=200)


def test_sample_world_then_build_then_an_unchanged_rebuild(tmp_path):
    world = tmp_path / "raw"
    made = invoke("sample-world", "--out", str(world), "--images", "6", "--seed", "1")
    assert made.exit_code == 0, made.output
    for name in SOURCES:  # it tells the user the next command for every format it wrote
        assert f"crayonflow build {name} --input {world / name}" in made.output
    again = invoke("sample-world", "--out", str(world), "--images", "6")
    assert again.exit_code == 1 and "overwrite" in again.output

    out = tmp_path / "datasets" / "captions"
    built = invoke("build", "coco-captions", "--input", str(world / "coco-captions"), "--out", str(out))
    assert built.exit_code == 0, built.output
    assert "30 records -> 30 written as 30 samples, 0 rejected" in built.output
    assert f"crayonflow shards verify {out}" in built.output
    verified = invoke("shards", "verify", str(out))
    assert verified.exit_code == 0 and "OK" in verified.output
    unchanged = invoke("build", "coco-captions", "--input", str(world / "coco-captions"), "--out", str(out))
    assert unchanged.exit_code == 0 and "unchanged" in unchanged.output

    limited = invoke("build", "vqa", "--input", str(world / "vqa"), "--out", str(tmp_path / "vqa"),
                     "--split", "train", "--limit", "3")
    assert limited.exit_code == 0 and "3 records -> 3 written" in limited.output, limited.output


def test_a_wrong_input_fails_in_one_line_with_exit_code_2(tmp_path):
    (tmp_path / "empty").mkdir()
    wrong = invoke("build", "flickr30k-entities", "--input", str(tmp_path / "empty"), "--out", str(tmp_path / "out"))
    assert wrong.exit_code == 2
    assert len(wrong.output.strip().splitlines()) == 1 and str(tmp_path / "empty") in wrong.output
    missing = invoke("build", "vqa", "--input", str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    assert missing.exit_code == 2 and "no such folder" in missing.output
    unknown = invoke("build", "laion", "--input", str(tmp_path), "--out", str(tmp_path / "out"))
    assert unknown.exit_code == 2 and "coco-panoptic" in unknown.output


@pytest.mark.slow
def test_multiround_pseudo_labels_come_from_a_real_checkpoint_and_record_its_digest(tmp_path):
    import typer

    from datasets_builders.cli import build as data_layer_build
    from datasets_builders.store import ShardDataset, load_manifest

    world, out = tmp_path / "raw", tmp_path / "datasets"
    assert invoke("sample-world", "--out", str(world), "--images", "4").exit_code == 0
    for name in ("refcoco", "vqa"):
        assert invoke("build", name, "--input", str(world / name), "--out", str(out / name)).exit_code == 0
    assert invoke("model", "init", "--out", str(tmp_path / "ckpt")).exit_code == 0
    args = ["build", "multiround", "--input", str(out / "refcoco"), "--input", str(out / "vqa"), "--out",
            str(out / "mr"), "--pseudo-label-checkpoint", str(tmp_path / "ckpt"), "--pseudo-label-tasks", "caption",
            "--min-turns", "3", "--max-turns", "3"]
    built = invoke(*args)
    assert built.exit_code == 0, built.output
    recorded = load_manifest(out / "mr").spec.parameters["pseudo_label_checkpoint"]
    assert recorded.startswith(f"{tmp_path / 'ckpt'} xxh3:") and len(recorded.rsplit(":", 1)[1]) == 16
    rounds = [r for s in ShardDataset(out / "mr").samples() for r in s.meta["rounds"]]
    assert any(r["pseudo_label"] and r["task"] == "caption" for r in rounds)
    # the data layer alone has no model to load, and says so
    alone = typer.Typer()
    alone.command()(data_layer_build)
    refused = CliRunner().invoke(alone, ["multiround", "--input", str(out / "vqa"), "--out", str(out / "x"),
                                         "--pseudo-label-checkpoint", str(tmp_path / "ckpt")], terminal_width=200)
    assert refused.exit_code == 2 and "needs a model" in refused.output


def test_shards_info_through_a_pipe_keeps_whole_columns(tmp_path):
    """Piped (a log file, `make demo | tee`), rich used to cut tables at 80 columns: "re…", "samp…"."""
    import os
    import subprocess
    import sys

    invoke("sample-world", "--out", str(tmp_path / "raw"), "--images", "6")
    out = tmp_path / "a-dataset-folder-with-a-long-enough-name" / "visual-genome"
    assert invoke("build", "visual-genome", "--input", str(tmp_path / "raw" / "visual-genome"), "--out",
                  str(out)).exit_code == 0
    piped = subprocess.run([sys.executable, "-m", "pipelines.cli", "shards", "info", str(out)], capture_output=True,
                           text=True, check=True, env={**os.environ, "COLUMNS": "80"})
    assert "…" not in piped.stdout, piped.stdout
    assert str(tmp_path / "raw" / "visual-genome") in piped.stdout  # the inputs table's path column, whole
