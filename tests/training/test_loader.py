"""The mixture loader over real shards: exact mixes, epochs without repeats, ranks, resume, failures."""

from __future__ import annotations

import shutil
import time
from collections import Counter

import numpy as np
import pytest

from datasets_builders.store import ShardDataset
from training.mixture.loader import LoaderError, MixtureLoader
from training.mixture.stream import stage_batches
from training.plan import PlanError, parse_plan


def plan(data_root, stages=None, seed=0):
    stages = stages or [{"name": "s1", "steps": 30, "global_batch": 8, "lr": {"max": 1e-3},
                         "datasets": {"refcoco": {"ratio": 2}, "vqa": {"ratio": 1},
                                      "unnatural-instructions": {"ratio": 1}}}]
    return parse_plan({"name": "t", "model": {"preset": "tiny"}, "data_root": str(data_root), "seed": seed,
                       "stages": stages})


def keys(loader, stage, steps, **kw):
    return [[(i.dataset, i.row) for i in loader.items(stage, s)] for s in steps]


def test_each_global_batch_holds_the_schedule_and_the_realised_counts_add_up(data_root):
    loader = MixtureLoader(plan(data_root))
    for step in range(30):
        counts = Counter(i.dataset for i in loader.items(0, step))
        assert counts == {"refcoco": 4, "vqa": 2, "unnatural-instructions": 2}
    assert loader.realised(0, 30) == {"refcoco": 120, "vqa": 60, "unnatural-instructions": 60}


def test_a_dataset_is_walked_without_repeats_until_its_epoch_ends_then_reshuffled(data_root):
    stages = [{"name": "a", "steps": 30, "global_batch": 4, "lr": {"max": 1e-3}, "datasets": {"vqa": {"ratio": 1}}}]
    loader = MixtureLoader(plan(data_root, stages))
    train_rows = [i for i, s in enumerate(ShardDataset(data_root / "vqa").index["split"].to_pylist()) if s == "train"]
    draws = sorted((i.draw, i.row, i.epoch) for s in range(30) for i in loader.items(0, s))
    n = len(train_rows)
    assert 2 * n <= len(draws)  # two full epochs are covered
    first, second = [r for _, r, _ in draws[:n]], [r for _, r, _ in draws[n:2 * n]]
    assert sorted(first) == sorted(second) == train_rows  # each epoch: every train sample exactly once
    assert first != second  # and a new order
    assert [e for _, _, e in draws[:n]] == [0] * n and draws[n][2] == 1


def test_rank_slices_are_disjoint_complete_and_the_same_for_any_world_size(data_root):
    p = plan(data_root)
    whole = MixtureLoader(p)
    for world in (2, 4, 8):
        ranks = [MixtureLoader(p, rank=r, world=world) for r in range(world)]
        for step in (0, 7, 29):
            slices = [loader.local_items(0, step) for loader in ranks]
            assert all(len(s) == 8 // world for s in slices)  # the same number on every rank
            assert [i for s in slices for i in s] == whole.items(0, step)
    with pytest.raises(ValueError, match="does not divide over 3 ranks"):
        MixtureLoader(p, rank=0, world=3)


def test_dataloader_workers_change_nothing_about_the_batches_or_their_order(data_root):
    from models.build import build_model
    from models.inputs import InputSpec
    from models.presets import tiny
    from training.collate import Collator

    p = plan(data_root)
    collator = Collator(InputSpec.of(build_model(tiny())), seed=0)
    loader = MixtureLoader(p)  # one loader: the inline pass leaves shard descriptors open in it
    inline = [(s, b.keys) for s, b in stage_batches(loader, collator, 0, 3, end=11)]
    pooled = [(s, b.keys) for s, b in stage_batches(loader, collator, 0, 3, end=11, workers=2)]
    assert inline == pooled and [s for s, _ in inline] == list(range(3, 11))


def test_resuming_at_any_step_gives_the_batches_an_uninterrupted_run_sees_and_is_instant(data_root):
    p = plan(data_root)
    uninterrupted = keys(MixtureLoader(p), 0, range(30))
    resumed = MixtureLoader(p)  # a new process would build the same loader from the plan
    assert keys(resumed, 0, range(17, 30)) == uninterrupted[17:]
    long = plan(data_root, [{"name": "long", "steps": 10_000_000, "global_batch": 24, "lr": {"max": 1e-3},
                             "datasets": {"refcoco": {"ratio": 25}, "vqa": {"ratio": 15},
                                          "unnatural-instructions": {"ratio": 10}}}])
    started = time.perf_counter()
    far = MixtureLoader(long).items(0, 9_876_543)
    assert time.perf_counter() - started < 2 and len(far) == 24


def test_a_dataset_used_in_two_stages_continues_its_walk_instead_of_restarting(data_root):
    stages = [{"name": "a", "steps": 5, "global_batch": 4, "lr": {"max": 1e-3}, "datasets": {"vqa": {"ratio": 1}}},
              {"name": "b", "steps": 5, "global_batch": 4, "lr": {"max": 1e-3},
               "datasets": {"refcoco": {"ratio": 1}, "vqa": {"ratio": 1}}}]
    loader = MixtureLoader(plan(data_root, stages))
    first_stage = [i.draw for s in range(5) for i in loader.items(0, s)]
    second_stage = sorted(i.draw for s in range(5) for i in loader.items(1, s) if i.dataset == "vqa")
    assert sorted(first_stage) == list(range(20)) and second_stage == list(range(20, 30))


def test_tasks_and_split_select_the_rows_and_an_empty_selection_names_the_stage(data_root):
    stages = [{"name": "a", "steps": 20, "global_batch": 4, "lr": {"max": 1e-3},
               "datasets": {"refcoco": {"ratio": 1, "tasks": ["identify"], "split": "val"}}}]
    loader = MixtureLoader(plan(data_root, stages))
    index = ShardDataset(data_root / "refcoco").index
    rows = {i.row for s in range(20) for i in loader.items(0, s)}
    assert all(index["task"][r].as_py() == "identify" and index["split"][r].as_py() == "val" for r in rows)
    stages[0]["datasets"]["refcoco"]["tasks"] = ["vqa"]
    with pytest.raises(PlanError, match=r"plan.stages\[0\].datasets.refcoco: .* has no 'val' samples of tasks vqa"):
        MixtureLoader(plan(data_root, stages))
    stages[0]["datasets"] = {"nowhere": {"ratio": 1}}
    with pytest.raises(PlanError, match="is not a committed dataset"):
        MixtureLoader(plan(data_root, stages))


def damaged_copy(data_root, tmp_path, rows):
    """A copy of vqa whose given storage rows have their JSON member overwritten with garbage."""
    root = tmp_path / "datasets"
    shutil.copytree(data_root / "vqa", root / "vqa")
    dataset = ShardDataset(root / "vqa")
    for row in rows:
        members = dataset.index["members"][row].as_py()
        json_member = next(m for m in members if m["ext"] == "json")
        shard = root / "vqa" / dataset.index["shard"][row].as_py()
        with shard.open("r+b") as f:
            f.seek(json_member["offset"])
            f.write(b"\xff" * json_member["size"])
    return root


def test_an_undecodable_sample_is_replaced_by_the_next_row_of_its_dataset_and_counted(data_root, tmp_path):
    stages = [{"name": "a", "steps": 40, "global_batch": 4, "lr": {"max": 1e-3}, "datasets": {"vqa": {"ratio": 1}}}]
    clean = MixtureLoader(plan(data_root, stages))
    victim = clean.items(0, 0)[0]
    root = damaged_copy(data_root, tmp_path, [victim.row])
    loader = MixtureLoader(plan(root, stages))
    fetched = loader.fetch(loader.items(0, 0)[0])
    order = loader.stages[0].orders[0]
    assert fetched.replaced == 1 and fetched.sample.key == ShardDataset(root / "vqa").key(order.next_row(victim.row))
    rows = np.asarray(order.rows)
    broken = damaged_copy(data_root, tmp_path / "all", rows.tolist())
    with pytest.raises(LoaderError, match="16 samples in a row failed to decode"):
        MixtureLoader(plan(broken, stages)).fetch(loader.items(0, 0)[0])
