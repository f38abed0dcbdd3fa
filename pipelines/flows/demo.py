"""``demo``: sample world -> every dataset -> three-stage training -> evaluation, as one flow run
whose subflows (build_all, segment_panoptic, train_three_stage, evaluate) show as its graph."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from pipelines.demo import DEMO_EVAL_BATCH, DEMO_EVAL_LIMIT, DEMO_PLAN, DEMO_ROOT, DEMO_VAL_SCENES
from pipelines.flows.build import build_all
from pipelines.flows.evaluate import evaluate
from pipelines.flows.train import train_three_stage


@flow(name="demo", log_prints=True)
def demo(data_dir: str = str(DEMO_ROOT), images: int = 64, seed: int = 0, train: bool = True,
         plan: str = str(DEMO_PLAN), workers: int = 2, cpus_per_worker: float | None = None,
         val_scenes: int = DEMO_VAL_SCENES, eval_limit: int | None = DEMO_EVAL_LIMIT) -> dict:
    """The whole pipeline on embedded defaults. A re-run with the same (images, seed, val_scenes)
    regenerates nothing and reuses every dataset; other values replace the previous demo's datasets."""
    root = Path(data_dir)
    summary: dict = {"datasets": build_all(raw_root=str(root / "raw" / "sample-world"),
                                           out_root=str(root / "datasets"), images=images, seed=seed,
                                           overwrite=True, val_scenes=val_scenes)}
    if train:
        trained = train_three_stage(plan=plan, data_root=str(root / "datasets"), storage=str(root / "runs"),
                                    workers=workers, cpus_per_worker=cpus_per_worker)
        summary["training"] = trained
        summary["evaluation"] = evaluate(checkpoint=trained["stages"][-1], data_root=str(root / "datasets"),
                                         baseline_plan=plan, limit=eval_limit, batch_size=DEMO_EVAL_BATCH)
    return summary
