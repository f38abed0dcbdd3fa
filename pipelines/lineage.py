"""What the Prefect UI shows about where data came from and where it went: pure functions, no Prefect.

Asset keys (``crayonflow://datasets/<name>/<version>``, the version being the first 16 hex of
the build fingerprint) are what ``@materialize`` emits; the self-hosted UI has no asset graph,
so the same facts also go into keyed artifacts built here: a table per dataset (shards, counts
per task and split, rejects by reason, index checksums) and a markdown lineage card (upstream
inputs with hashes, builder, parameters, and the training runs that consumed it). For training:
target against realised mixture per stage, the metrics, the loss curve as a PNG and, when the
run probed it, the ``looks`` curve (own vs another sample's picture per task).
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from datasets_builders.store import InputRef, Manifest, ManifestError, load_manifest

VERSION_CHARS = 16
CONSUMERS = "## Consumed by"
_ARTIFACT_KEY = re.compile(r"[^a-z0-9-]+")


def dataset_key(name: str, fingerprint: str) -> str:
    return f"crayonflow://datasets/{name}/{fingerprint[:VERSION_CHARS]}"


def raw_key(ref: InputRef) -> str:
    return f"crayonflow://raw/{ref.name}/{ref.xxh3[:VERSION_CHARS]}"


def checkpoint_key(run: str, stage: int, digest: str) -> str:
    return f"crayonflow://checkpoints/{run}/stage-{stage}/{digest[:VERSION_CHARS]}"


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return _ARTIFACT_KEY.sub("-", "-".join(parts).lower()).strip("-")


def input_key(ref: InputRef) -> str:
    """The asset key of one upstream input: a raw folder by content hash, a dataset by its version."""
    if ref.kind != "dataset":
        return raw_key(ref)
    try:
        upstream = load_manifest(ref.path)
    except ManifestError:
        upstream = None
    if upstream is not None and upstream.content_xxh3 == ref.xxh3:
        return dataset_key(ref.name, upstream.fingerprint)
    return f"crayonflow://datasets/{ref.name}/content-{ref.xxh3[:VERSION_CHARS]}"  # rebuilt since


def asset_metadata(manifest: Manifest) -> dict:
    """What the materialization event carries: counts and checksums, small enough for an event."""
    return {"samples": manifest.counts.written, "records_read": manifest.counts.read,
            "records_rejected": manifest.counts.records_rejected, "shards": len(manifest.shards),
            "bytes": manifest.total_bytes, "content_xxh3": manifest.content_xxh3,
            "fingerprint": manifest.fingerprint, "by_task": dict(manifest.by_task),
            "builder": f"{manifest.spec.builder} {manifest.spec.builder_version}"}


def dataset_table(manifest: Manifest, rejects: Iterable[tuple[str, str]], *, top: int = 20) -> list[dict]:
    """One table for the dataset's page: rows of (what, name, count, bytes, xxh3).

    ``rejects`` are (stage, reason) rows; the ``top`` most common reasons get rows of their own."""
    rows = [{"what": "shard", "name": s.name, "count": s.samples, "bytes": s.bytes, "xxh3": s.xxh3}
            for s in manifest.shards]
    rows += [{"what": "task", "name": t, "count": n, "bytes": "", "xxh3": ""} for t, n in sorted(manifest.by_task.items())]
    rows += [{"what": "split", "name": s, "count": n, "bytes": "", "xxh3": ""} for s, n in sorted(manifest.by_split.items())]
    reasons = Counter(f"{stage}: {reason}" for stage, reason in rejects).most_common()
    rows += [{"what": "rejects", "name": r, "count": n, "bytes": "", "xxh3": ""} for r, n in reasons[:top]]
    if len(reasons) > top:
        rows.append({"what": "rejects", "name": f"({len(reasons) - top} other reasons)",
                     "count": sum(n for _, n in reasons[top:]), "bytes": "", "xxh3": ""})
    rows += [{"what": "repair", "name": k, "count": n, "bytes": "", "xxh3": ""} for k, n in manifest.repairs.items()]
    rows += [{"what": "index", "name": name, "count": "", "bytes": e.bytes, "xxh3": e.xxh3}
             for name, e in manifest.index.items()]
    c = manifest.counts
    rows.append({"what": "total", "name": f"read {c.read} = written {c.records_written} + rejected "
                 f"{c.records_rejected} records", "count": c.written, "bytes": manifest.total_bytes,
                 "xxh3": manifest.content_xxh3})
    return rows


def lineage_card(manifest: Manifest, root: Path, *, consumers: Iterable[str] = ()) -> str:
    """Markdown: the dataset's version, where it came from, how it was built, who read it."""
    spec, c = manifest.spec, manifest.counts
    lines = [
        f"# {spec.name} — lineage",
        "",
        f"**Version** `{manifest.fingerprint[:VERSION_CHARS]}` · asset `{dataset_key(spec.name, manifest.fingerprint)}`  ",
        f"**Folder** `{root}` · built {manifest.created}  ",
        f"**Builder** `{spec.builder}` {spec.builder_version} · code `{manifest.code_hash[:VERSION_CHARS]}` "
        f"(revision `{manifest.code_revision}`)  ",
        f"**Counts** {c.read} records read → {c.written} samples in {len(manifest.shards)} shards; "
        f"{c.records_rejected} records rejected ({c.rejected} reject rows)  ",
        f"**Content** xxh3 `{manifest.content_xxh3}`",
        "",
        "## Upstream inputs",
        "",
        "| input | kind | path | xxh3 | bytes | files | asset |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {i.name} | {i.kind} | `{i.path}` | `{i.xxh3}` | {i.bytes} | {i.files} | `{input_key(i)}` |"
              for i in spec.inputs]
    lines += ["", "## Parameters", "", "```json", json.dumps(dict(spec.parameters), indent=1, sort_keys=True), "```",
              "", CONSUMERS, ""]
    consumers = list(consumers)
    lines += [f"- {line}" for line in consumers] or ["- (no training run has read this version yet)"]
    return "\n".join(lines) + "\n"


def add_consumer(card: str, line: str) -> str:
    """The card with one more training run in its "Consumed by" list (the placeholder goes)."""
    head, _, tail = card.partition(CONSUMERS)
    entries = [e for e in tail.strip().splitlines() if e.startswith("- ") and not e.startswith("- (")]
    if f"- {line}" not in entries:
        entries.append(f"- {line}")
    return f"{head}{CONSUMERS}\n\n" + "\n".join(entries) + "\n"


def seen_per_stage(run_dir: Path) -> dict[int, Counter]:
    """Samples per dataset per stage as the workers recorded them (``seen-rank-*.jsonl``); a step
    repeated after a worker failure counts once."""
    steps: dict[tuple[int, int, str], list[str]] = {}
    for file in sorted(run_dir.glob("seen-rank-*.jsonl")):
        for line in file.read_text().splitlines():
            row = json.loads(line)
            steps[(row["stage"], row["step"], file.name)] = row["keys"]
    per_stage: dict[int, Counter] = {}
    for (stage, _, _), keys in steps.items():
        per_stage.setdefault(stage, Counter()).update(k.split("/", 1)[0] for k in keys)
    return per_stage


def mixture_rows(stages: Iterable[tuple[str, Mapping[str, float]]], seen: Mapping[int, Counter]) -> list[dict]:
    """Target share (from the plan's ratios) against the realised share of samples seen, per stage."""
    rows = []
    for k, (name, ratios) in enumerate(stages):
        total_ratio = sum(ratios.values())
        counts = seen.get(k, Counter())
        total = sum(counts.values())
        for dataset, ratio in ratios.items():
            rows.append({"stage": f"{k + 1} {name}", "dataset": dataset, "target": round(ratio / total_ratio, 4),
                         "realised": round(counts[dataset] / total, 4) if total else 0.0,
                         "samples": counts[dataset]})
    return rows


def metrics_rows(metrics: Iterable[Mapping]) -> list[dict]:
    """The last report of each stage: loss overall and per task, throughput, replaced samples, and the
    learning rates when the stage gives parts their own (the base rate, then each part's)."""
    last: dict[int, Mapping] = {}
    for m in metrics:
        last[m["stage"]] = m
    rows = []
    for stage, m in sorted(last.items()):
        row = {"stage": f"{stage + 1} {m['stage_name']}", "step": m["step"], "loss": round(m["loss"], 4),
               "samples_per_s": round(m["samples_per_s"], 1), "replaced": m["replaced"]}
        row.update({f"loss {t}": round(v, 4) for t, v in m.get("loss_per_task", {}).items()})
        if m.get("lr_parts"):
            row["lr"] = float(f"{m['lr']:.4g}")
            row.update({f"lr {part}": float(f"{rate:.4g}") for part, rate in m["lr_parts"].items()})
        rows.append(row)
    return rows


class Series(NamedTuple):
    """One line of a chart: its legend name, (global step, value) points, colour and style."""

    name: str
    points: list[tuple[int, float]]
    colour: str = "#1f6feb"
    dashed: bool = False


#: one colour per task in multi-line charts (matplotlib's tab10)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


def loss_curve_png(points: list[tuple[int, float]], *, size: tuple[int, int] = (720, 360),
                   stage_starts: Iterable[int] = ()) -> bytes:
    """A plain line chart of (global step, loss), stage boundaries dashed: enough to see it fall."""
    return line_chart_png([Series("training loss", points)], title="training loss", size=size,
                          stage_starts=stage_starts)


def looks_curve_png(metrics: Iterable[Mapping], *, size: tuple[int, int] = (720, 360),
                    stage_starts: Iterable[int] = ()) -> bytes:
    """Per task, the ``looks`` probe's loss with the own picture (solid) and another sample's (dashed)
    over global steps: a model that uses its picture draws the solid line below the dashed one."""
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for m in metrics:
        for task, losses in m.get("looks", {}).items():
            for which in ("own", "deranged"):
                if losses.get(which) is not None:
                    curves.setdefault(task, {}).setdefault(which, []).append((m["global_step"], losses[which]))
    series = [Series(f"{task} {which}", points, PALETTE[k % len(PALETTE)], dashed=which == "deranged")
              for k, (task, lines) in enumerate(sorted(curves.items())) for which, points in lines.items()]
    return line_chart_png(series, title="looks: answer loss, own picture (solid) vs another's (dashed)", size=size,
                          stage_starts=stage_starts)


def line_chart_png(series: Sequence[Series], *, title: str, size: tuple[int, int] = (720, 360),
                   stage_starts: Iterable[int] = ()) -> bytes:
    """Lines of (global step, value) on shared axes, stage boundaries dashed; with several lines,
    the title and a legend (four entries a row) above the plot."""
    from PIL import Image, ImageDraw

    width, height = size
    legend_rows = math.ceil(len(series) / 4) if len(series) > 1 else 0
    margin_l, margin_r, margin_t, margin_b = 56, 16, 16 + (18 + 12 * legend_rows if legend_rows else 0), 36
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    points = [p for s in series for p in s.points]
    if not points:
        draw.text((margin_l, height // 2), "no metrics reported", fill="black")
        return _png(image)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = min(0.0, min(ys)), max(ys) * 1.05 or 1.0

    def at(x: float, y: float) -> tuple[float, float]:
        return (margin_l + (x - x0) / (x1 - x0) * (width - margin_l - margin_r),
                height - margin_b - (y - y0) / (y1 - y0) * (height - margin_t - margin_b))

    draw.rectangle([margin_l, margin_t, width - margin_r, height - margin_b], outline="#888888")
    for boundary in stage_starts:
        if x0 < boundary < x1:
            _dashed(draw, [at(boundary, y1), at(boundary, y0)], "#aaaaaa", 1)
    for tick in range(5):
        y = y0 + (y1 - y0) * tick / 4
        draw.text((4, at(x0, y)[1] - 6), f"{y:.2f}", fill="black")
    draw.text((margin_l, height - margin_b + 8), f"step {x0}", fill="black")
    draw.text((width - margin_r - 80, height - margin_b + 8), f"step {x1}", fill="black")
    for s in series:
        line = [at(x, y) for x, y in s.points]
        if s.dashed:
            _dashed(draw, line, s.colour, 2)
        elif len(line) > 1:
            draw.line(line, fill=s.colour, width=2)
        else:
            draw.ellipse([line[0][0] - 2, line[0][1] - 2, line[0][0] + 2, line[0][1] + 2], fill=s.colour)
    if not legend_rows:
        draw.text((margin_l + 8, margin_t + 4), title, fill="black")
        return _png(image)
    draw.text((margin_l, 4), title, fill="black")
    column = (width - margin_l - margin_r) // 4
    for k, s in enumerate(series):
        draw.text((margin_l + column * (k % 4), 20 + 12 * (k // 4)), f"{'- -' if s.dashed else '---'} {s.name}",
                  fill=s.colour)
    return _png(image)


def _dashed(draw, line: Sequence[tuple[float, float]], colour: str, width: int, dash: float = 4.0,  # noqa: ANN001
            gap: float = 4.0) -> None:
    """A polyline drawn as dashes (PIL has no dash style); one point is a dot."""
    if len(line) == 1:
        x, y = line[0]
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
    for (ax, ay), (bx, by) in zip(line, line[1:]):
        length = math.hypot(bx - ax, by - ay)
        t = 0.0
        while t < length:
            u, v = t / length, min(t + dash, length) / length
            draw.line([(ax + (bx - ax) * u, ay + (by - ay) * u), (ax + (bx - ax) * v, ay + (by - ay) * v)],
                      fill=colour, width=width)
            t += dash + gap


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _png(image) -> bytes:  # noqa: ANN001
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
