"""Training checkpoints: model, optimiser and loader state in one folder, every file checksummed."""

from __future__ import annotations

import pytest
import torch

from models.build import build_model
from models.presets import tiny
from training.checkpoint import (TrainingCheckpointError, load_training_model, read_optimizer_state,
                                 read_training_state, restorable_checkpoint, save_training_checkpoint)
from training.mixture.state import LoaderState
from training.optim import make_optimizer


@pytest.fixture
def saved(tmp_path):
    model = build_model(tiny())
    optimizer = make_optimizer(model, 1e-3, 0.05)
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.ones_like(p)
    optimizer.step()
    folder = save_training_checkpoint(tmp_path / "ckpt", model, optimizer, LoaderState(1, 7), "multitask",
                                      {"metrics": {"loss": 1.5}})
    return folder, model, optimizer


def test_a_checkpoint_restores_the_loader_position_the_weights_and_the_optimiser(saved):
    folder, model, optimizer = saved
    state = read_training_state(folder)
    assert (state.loader, state.stage_name, state.extra["metrics"]) == (LoaderState(1, 7), "multitask", {"loss": 1.5})
    restored = load_training_model(folder)
    for (name, a), (_, b) in zip(model.named_parameters(), restored.named_parameters()):
        assert torch.equal(a, b), name
    again = make_optimizer(restored, 1e-3, 0.05)
    again.load_state_dict(read_optimizer_state(folder))
    assert again.state_dict()["state"].keys() == optimizer.state_dict()["state"].keys()
    assert not list(folder.parent.glob(".*.tmp"))  # written under a temporary name, then renamed


def test_a_truncated_or_corrupt_file_is_detected_before_anything_loads(saved):
    folder, _, _ = saved
    weights = folder / "model" / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(TrainingCheckpointError, match="model/trainable.safetensors is missing or does not match"):
        read_training_state(folder)
    (folder / "state.json").write_text("{")
    with pytest.raises(TrainingCheckpointError, match="no readable state.json"):
        read_training_state(folder)


def test_the_loader_state_steps_through_a_stage_and_into_the_next():
    assert LoaderState(0, 3).advance(5) == LoaderState(0, 4)
    assert LoaderState(0, 4).advance(5) == LoaderState(1, 0)
    assert LoaderState.from_dict(LoaderState(2, 9).to_dict()) == LoaderState(2, 9)


def test_a_changed_value_in_state_json_is_detected_by_its_own_checksum(saved):
    folder, _, _ = saved
    path = folder / "state.json"
    path.write_text(path.read_text().replace('"step": 7', '"step": 8'))  # still valid JSON, files intact
    with pytest.raises(TrainingCheckpointError, match="state.json does not match its own checksum"):
        read_training_state(folder)


def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_earlier_one_that_verifies(saved, tmp_path):
    folder, model, optimizer = saved
    older = save_training_checkpoint(tmp_path / "older", model, optimizer, LoaderState(1, 2), "multitask")
    oldest = save_training_checkpoint(tmp_path / "oldest", model, optimizer, LoaderState(0, 5), "multitask")
    assert restorable_checkpoint(folder, [older, oldest])[0] == folder  # the latest, when it verifies
    (folder / "optimizer.pt").unlink()
    chosen, state = restorable_checkpoint(folder, [older, oldest])
    assert (chosen, state.loader) == (older, LoaderState(1, 2))
    (older / "model" / "trainable.safetensors").write_bytes(b"")
    (oldest / "state.json").unlink()
    with pytest.raises(TrainingCheckpointError, match="no checkpoint to resume from verifies: .*optimizer.pt.*"
                                                      "trainable.safetensors.*no readable state.json"):
        restorable_checkpoint(folder, [older, oldest])
