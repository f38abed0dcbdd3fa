"""The ``segment`` command: a folder of images -> COCO panoptic predictions -> (next) crayon shards.

Mounted by the top-level ``crayonflow`` app. A wrong ``--images`` folder, a missing or unusable
checkpoint, a non-empty foreign ``--out``, or detectron2 not being installed exit with status 2
and one line; images that cannot be segmented are rejects and never stop the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console(soft_wrap=True)
SHOWN_REJECTS = 10


def segment(
    images: Annotated[Path, typer.Option(help="Folder of .jpg/.jpeg/.png images (its own files, not subfolders).")],
    out: Annotated[Path, typer.Option(help="Output folder (new, empty, or an earlier segment run to replace).")],
    backend: Annotated[str, typer.Option(help="mask2former (transformers) or detectron2 (installed separately).")]
    = "mask2former",
    checkpoint: Annotated[Path | None, typer.Option(
        help="Local model folder, never downloaded. mask2former: save_pretrained output (config, preprocessor "
             "config, weights); detectron2: config.yaml + model_final.pth.")] = None,
    tiny: Annotated[bool, typer.Option(help="A small random Mask2Former (fixed seed, sample-world labels) "
                                            "for tests and the demo.")] = False,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="Keep queries whose class score exceeds this "
                                                                    "(CoLLaVO: 0.5).")] = 0.5,
    mask_threshold: Annotated[float, typer.Option(min=0.0, max=1.0, help="Mask probability x score a segment's "
                                                                         "pixels must reach (CoLLaVO: 0.95).")] = 0.95,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass (and per Ray block).")] = 8,
    actors: Annotated[int, typer.Option(min=1, help="Model actors, one model each (one GPU each where the "
                                                    "cluster has GPUs).")] = 1,
    ray_address: Annotated[str | None, typer.Option(help="Join this Ray cluster (e.g. auto); default: reuse or "
                                                         "start a local one.")] = None,
    categories: Annotated[Path | None, typer.Option(
        help="COCO panoptic categories JSON, matched to labels by position after sorting by id; "
             "default: the model's id2label (133 labels: COCO panoptic, 0..79 things).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Segment only the first N images (sorted by name).")] = None,
) -> None:
    """Segment images with a panoptic model and write COCO panoptic files for `build coco-panoptic`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from datasets_builders.segment.prediction import SetupError
    from datasets_builders.segment.run import configure, list_images, segment_folder

    from datasets_builders.segment.run import quiet_ray_logs

    quiet_ray_logs()
    try:
        total = len(list_images(images, limit))
        config = configure(backend, checkpoint=checkpoint, preset="tiny" if tiny else None, categories_file=categories,
                           threshold=threshold, mask_threshold=mask_threshold, batch_size=batch_size)
        with Progress("segmenting", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                      transient=True) as bar:
            task = bar.add_task("segment", total=total)
            result = segment_folder(images, out, config, actors=actors, ray_address=ray_address, limit=limit,
                                    progress=lambda: bar.advance(task))
    except SetupError as e:
        console.print(f"[red]{escape(str(e))}[/red]", highlight=False)
        raise typer.Exit(2) from None
    c, seconds = result.counts, result.seconds
    console.print(f"{escape(str(out))}: {c['images']} images -> {c['segmented']} segmented ({c['segments']} segments), "
                  f"{c['rejected']} rejected in {seconds:.1f} s ({c['images'] / max(seconds, 1e-9):.2f} images/s, "
                  f"{actors} actor{'s' if actors > 1 else ''})", highlight=False)
    for reject in result.rejects[:SHOWN_REJECTS]:
        console.print(f"  [yellow]rejected[/yellow] {escape(reject['file'])}: {escape(reject['reason'])}",
                      highlight=False)
    if len(result.rejects) > SHOWN_REJECTS:
        console.print(f"  ... {len(result.rejects) - SHOWN_REJECTS} more in {escape(str(out / 'rejects.json'))}")
    console.print(f"next: crayonflow build coco-panoptic --input {escape(str(out))} "
                  f"--out data/datasets/{escape(out.name)}-crayon", highlight=False)

