"""``evaluate``: held-out scores of a checkpoint beside its blind control (the same questions with
deranged images), and, for reference, of the plan's untrained start.

Writes ``eval-<split>-<name>.json`` beside the checkpoint's stages and one table artifact that
sets them side by side, keyed per run so successive evaluations are versions of one key.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from pipelines import lineage
from pipelines.demo import DEMO_PLAN, DEMO_ROOT
from training.evaluate import blind_cells


@flow(name="evaluate", log_prints=True)
def evaluate(checkpoint: str = str(DEMO_ROOT / "runs" / "tiny-demo" / "stage-3"),
             data_root: str = str(DEMO_ROOT / "datasets"), split: str = "val",
             baseline_plan: str | None = str(DEMO_PLAN), limit: int | None = None, batch_size: int = 64) -> dict:
    """Score ``checkpoint`` on ``split``; ``baseline_plan``'s start model too, so the gain is measured."""
    reports = {"trained": score.with_options(name="score-trained")(checkpoint, data_root, split, limit, blind=True,
                                                                   batch_size=batch_size)}
    if baseline_plan:
        reports["untrained"] = score.with_options(name="score-untrained")(f"plan:{baseline_plan}", data_root,
                                                                          split, limit, batch_size=batch_size)
    run_dir = Path(checkpoint).parent
    for name, report in reports.items():
        (run_dir / f"eval-{split}-{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    create_table_artifact(comparison_rows(reports), key=lineage.artifact_key("eval", run_dir.name, split),
                          description=f"held-out ({split}) scores of {checkpoint}")
    return reports


@task(cache_policy=NO_CACHE)
def score(model: str, data_root: str, split: str, limit: int | None, blind: bool = False,
          batch_size: int = 64) -> dict:
    """``model`` is a checkpoint folder, or ``plan:<file>`` for that plan's starting model; ``blind``
    adds the deranged-image control."""
    from models.checkpoint import load_model
    from training.evaluate import evaluate as evaluate_model
    from training.plan import load_plan
    from training.train_loop import start_model

    loaded = start_model(load_plan(Path(model[5:]))) if model.startswith("plan:") else load_model(Path(model))
    return evaluate_model(loaded, Path(data_root), split=split, limit=limit, blind=blind,
                          batch_size=batch_size).to_json()


def comparison_rows(reports: dict[str, dict]) -> list[dict]:
    first = next(iter(reports.values()))
    rows = []
    for i, s in enumerate(first["scores"]):
        row = {"task": s["task"], "family": s["family"] or "", "metric": s["metric"], "n": s["n"]}
        row.update({name: round(r["scores"][i]["value"], 3) for name, r in reports.items()})
        blind, gap, verdict = blind_cells(s)
        row.update({"blind": blind, "gap [95% CI]": gap, "verdict": verdict})
        rows.append(row)
    return rows
