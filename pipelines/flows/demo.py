"""``demo``: sample world -> every dataset -> three-stage training -> evaluation, as one flow run
whose subflows (build_all, segment_panoptic, train_three_stage, evaluate) show as its graph."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from pipelines.demo import DEMO_PLAN, DEMO_ROOT
from pipelines.flows.build import build_all
from pipelines.flows.evaluate import evaluate
from pipelines.flows.train import train_three_stage


@flow(name="demo", log_prints=True)
def demo(data_dir: str = str(DEMO_ROOT), images: int = 64, seed: int = 0, train: bool = True,
         plan: str = str(DEMO_PLAN), workers: int = 2, cpus_per_worker: float | None = None) -> dict:
    """The whole pipeline on embedded defaults. A re-run with the same (images, seed) regenerates
    nothing and reuses every dataset; other values replace the previous demo's datasets."""
    root = Path(data_dir)
    summary: dict = {"datasets": build_all(raw_root=str(root / "raw" / "sample-world"),
                                           out_root=str(root / "datasets"), images=images, seed=seed,
                                           overwrite=True)}
    if train:
        trained = train_three_stage(plan=plan, data_root=str(root / "datasets"), storage=str(root / "runs"),
                                    workers=workers, cpus_per_worker=cpus_per_worker)
        summary["training"] = trained
        summary["evaluation"] = evaluate(checkpoint=trained["stages"][-1], data_root=str(root / "datasets"),
                                         baseline_plan=plan)
    return summary
