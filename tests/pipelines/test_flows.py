"""The flows on one session-scoped Prefect test server: builds as cached tasks, their lineage
artifacts and asset keys, and a builder's parts on a Ray cluster through prefect-ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import webdataset as wds

from pipelines import lineage
from pipelines.flows.build import ALL, build_all, build_vqa
from tests.pipelines.local import wait_for

pytestmark = pytest.mark.slow


def task_states(flow_run_id) -> dict[str, str]:
    """Task-run name prefix (``part-vqa-0``) -> state name, for one flow run (not its subflows)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    def settled() -> dict[str, str] | None:  # task-run states reach the server as events, after the flow returns
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        if runs and all(run.state is not None and run.state.is_final() for run in runs):
            return {run.name.rsplit("-", 1)[0]: run.state.name for run in runs}
        return None

    return wait_for(settled, f"the task runs of flow run {flow_run_id} to reach final states", 30, every=0.5)


def materializations(asset: str) -> list[dict]:
    """The asset's materialization events, from the API's event store (the self-hosted Event Feed)."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    response = httpx.post(f"{PREFECT_API_URL.value()}/events/filter", timeout=30, json={"limit": 50, "filter": {
        "event": {"name": ["prefect.asset.materialization.succeeded"]}, "resource": {"id": [asset]},
        "occurred": {"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"}}})
    response.raise_for_status()
    return response.json()["events"]


def run(flow, **parameters):
    state = flow(return_state=True, **parameters)
    assert state.is_completed(), state.message
    return state.state_details.flow_run_id, state.result()


def test_build_all_publishes_verified_datasets_then_reruns_from_cache_and_rebuilds_only_what_a_change_reaches(
        prefect_server, ray_cluster, tmp_path):
    from prefect.artifacts import Artifact

    raw, out = tmp_path / "raw" / "sample-world", tmp_path / "datasets"
    first_id, first = run(build_all, raw_root=str(raw), out_root=str(out), images=6, seed=2, records_per_part=4)
    assert list(first) == list(ALL)
    for name, summary in first.items():
        assert summary["verified"] and not summary["reused"] and summary["samples"] > 0, name
        urls = sorted(str(p) for p in (out / name).glob("*.tar"))
        assert sum(1 for _ in wds.WebDataset(urls, shardshuffle=False)) == summary["samples"], name
        assert not (out / name / ".parts").exists(), name
    states = task_states(first_id)
    assert sum(1 for k in states if k.startswith("part-flickr30k-entities-")) == 2  # 6 records, 4 per part
    assert {s for k, s in states.items() if k.startswith(("part-", "merge-"))} == {"Completed"}

    table = Artifact.get(lineage.artifact_key("dataset", "vqa"))
    rows = json.loads(table.data)
    assert {"what": "total", "count": first["vqa"]["samples"]}.items() <= rows[-1].items()
    card = Artifact.get(lineage.artifact_key("lineage", "multiround")).data
    manifest = json.loads((out / "multiround" / "manifest.json").read_text())
    assert manifest["fingerprint"][:16] in card and str(out / "vqa") in card  # upstream datasets with hashes
    vqa = lineage.dataset_key("vqa", json.loads((out / "vqa" / "manifest.json").read_text())["fingerprint"])
    [event] = wait_for(lambda: materializations(lineage.dataset_key("multiround", manifest["fingerprint"])),
                       "the multiround asset event", 30)  # events reach the store asynchronously
    assert vqa in {r["prefect.resource.id"] for r in event["related"]}  # its asset_deps: upstream datasets
    assert event["payload"]["samples"] == first["multiround"]["samples"]  # metadata: counts and checksums
    progress = Artifact.get(lineage.artifact_key("build-progress", "all"))
    assert progress.type == "progress" and float(progress.data) == 100.0

    again_id, again = run(build_all, raw_root=str(raw), out_root=str(out), images=6, seed=2, records_per_part=4)
    assert all(s["reused"] for s in again.values())
    assert {s for k, s in task_states(again_id).items() if k.startswith(("part-", "merge-"))} == {"Cached"}

    instructions = raw / "unnatural-instructions" / "core_data.jsonl"  # one more record in one source
    first_line = json.loads(instructions.read_text().splitlines()[0])
    first_line["instances"][0]["output"] += " (checked)"
    instructions.write_text(instructions.read_text() + json.dumps(first_line) + "\n")
    changed_id, changed = run(build_all, raw_root=str(raw), out_root=str(out), images=None, records_per_part=4,
                              overwrite=True)
    rebuilt = {name for name, s in changed.items() if not s["reused"]}
    assert rebuilt == {"unnatural-instructions", "unnatural-blend"}
    assert changed["unnatural-instructions"]["read"] == first["unnatural-instructions"]["read"] + 1
    states = task_states(changed_id)
    assert states["merge-unnatural-blend"] == "Completed" and states["merge-vqa"] == "Cached"


def test_a_different_dataset_at_the_output_is_refused_without_overwrite(prefect_server, tmp_path):
    from pipelines.demo import ensure_sample_world

    world, _ = ensure_sample_world(tmp_path / "raw", images=4, seed=0)
    out = tmp_path / "vqa"
    run(build_vqa, inputs=[str(world / "vqa")], out=str(out))
    state = build_vqa(inputs=[str(world / "vqa")], out=str(out), limit=3, return_state=True)
    assert state.is_failed() and str(out) in state.message and "overwrite" in state.message
    _, replaced = run(build_vqa, inputs=[str(world / "vqa")], out=str(out), limit=3, overwrite=True)
    assert replaced["read"] == 3


def test_a_builder_runs_its_parts_on_a_ray_cluster(prefect_server, ray_cluster, tmp_path):
    import ray

    from pipelines.demo import ensure_sample_world

    world, _ = ensure_sample_world(tmp_path / "raw", images=6, seed=1)
    address = ray.get_runtime_context().gcs_address
    _, local = run(build_vqa, inputs=[str(world / "vqa")], out=str(tmp_path / "local" / "vqa"), records_per_part=5)
    _, on_ray = run(build_vqa, inputs=[str(world / "vqa")], out=str(tmp_path / "ray" / "vqa"), records_per_part=5,
                    ray_address=address)
    assert on_ray["verified"] and on_ray["samples"] == local["samples"]
    shards = lambda root: [p.read_bytes() for p in sorted(Path(root).glob("*.tar"))]  # noqa: E731
    assert len(shards(tmp_path / "ray" / "vqa")) > 1  # several parts, one shard each
    assert shards(tmp_path / "ray" / "vqa") == shards(tmp_path / "local" / "vqa")  # byte-identical wherever parts ran
