"""The driver hands workers a plan whose checkpoint folders do not depend on a working folder."""

from __future__ import annotations

from pathlib import Path

from training.launch import _with_absolute_paths
from training.plan import parse_plan


def test_relative_checkpoint_folders_resolve_against_the_driver_folder_and_others_stay(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stage = {"datasets": {"vqa": {"ratio": 1}}, "global_batch": 2, "steps": 1, "lr": {"max": 1.0e-3}}
    plan = parse_plan({"name": "p", "model": {"preset": "tiny", "options": {
        "llm_checkpoint": "parts/llm", "vision_checkpoint": "/abs/vision", "connector": "mlp"}},
        "stages": [{"name": "a", **stage}, {"name": "b", "init": "runs/x/stage-1", **stage}]})
    resolved = _with_absolute_paths(plan)
    assert resolved.model.options == {"llm_checkpoint": str(tmp_path / "parts" / "llm"),
                                      "vision_checkpoint": "/abs/vision", "connector": "mlp"}
    assert [s.init for s in resolved.stages] == ["previous", str(tmp_path / "runs" / "x" / "stage-1")]
    assert Path(resolved.model.options["llm_checkpoint"]).is_absolute() and resolved.model.checkpoint is None
