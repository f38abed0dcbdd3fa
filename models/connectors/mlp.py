"""CoLLaVO's (LLaVA's ``mlp2x_gelu``) connector: Linear -> GELU -> Linear to the LLM width.

CoLLaVO uses two such MLPs of the same shape, one for the image tokens and one for the crayon
prompt (model-spec.md 1.2, 1.4). ``k > 1`` merges k consecutive tokens first, exactly as the
MiniGPT-v2 merger does, so an MLP can also shorten the visual sequence.
Parameters: (k D_in D_out + D_out) + (D_out^2 + D_out).
"""

from __future__ import annotations

from torch import Tensor, nn

from models.connectors.merger import merge_tokens


class MLPConnector(nn.Module):
    def __init__(self, in_width: int, out_width: int, k: int = 1) -> None:
        super().__init__()
        self.k = k
        self.fc1 = nn.Linear(k * in_width, out_width)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(out_width, out_width)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(merge_tokens(tokens, self.k))))
