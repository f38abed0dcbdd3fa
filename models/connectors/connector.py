"""The connector a config asks for: which vision layers it reads, and the module that projects them.

- ``merger`` (MiniGPT-v2): layer ``vision.feature_layer`` -> k-token merge -> Linear.
- ``mlp`` (CoLLaVO): layer ``vision.feature_layer`` -> (k-token merge) -> Linear-GELU-Linear.
- ``vce`` (VCE + Dual-LoRA): layers ``connector.vce_layers`` (anchor first) -> VCE enhancement of
  the anchor -> (k-token merge) -> Linear-GELU-Linear, the "usual projector MLP" after VCE.
"""

from __future__ import annotations

from torch import Tensor, nn

from models.config import ConnectorConfig
from models.connectors.merger import Merger
from models.connectors.mlp import MLPConnector
from models.connectors.vce import VCE


class Connector(nn.Module):
    """Vision feature maps (B, N, D_v) -> visual tokens (B, N / k, D_llm)."""

    def __init__(self, config: ConnectorConfig, feature_layer: int, vision_width: int, llm_width: int,
                 grid: int) -> None:
        super().__init__()
        self.kind, self.grid = config.kind, grid
        self.layers = tuple(config.vce_layers) if config.kind == "vce" else (feature_layer,)
        self.vce = (VCE(vision_width, levels=len(self.layers), heads=config.vce_heads, points=config.vce_points)
                    if config.kind == "vce" else None)
        self.project = (Merger(vision_width, llm_width, config.merge) if config.kind == "merger"
                        else MLPConnector(vision_width, llm_width, config.merge))

    def forward(self, maps: list[Tensor]) -> Tensor:
        tokens = maps[0] if self.vce is None else self.vce(maps[0], maps, (self.grid, self.grid))
        return self.project(tokens)
