"""``crayonflow pretrain llm|vision``: the tiny model's parts, pretrained on the sample world."""

from __future__ import annotations

import typer

from training.pretrain.llm import llm_command
from training.pretrain.vision import vision_command

pretrain_app = typer.Typer(help="Pretrain the tiny model's parts on the sample world (cached by fingerprint).",
                           no_args_is_help=True)
pretrain_app.command("llm")(llm_command)
pretrain_app.command("vision")(vision_command)
