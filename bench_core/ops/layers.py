"""Small layers and initialisations shared by method plugins."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def trunc_normal_init(module: nn.Module, std: float = 0.02) -> None:
    """The ViT/VMamba/InternImage convention, for ``model.apply``.

    ``nn.Linear`` weights from a truncated normal (``std``), biases 0; ``nn.LayerNorm`` weight 1,
    bias 0. Other modules keep their own initialisation.
    """
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class Mlp(nn.Module):
    """Channel-last MLP: Linear(C -> hidden), GELU, Linear(hidden -> C), no dropout.

    VMamba's ``Mlp`` (M3amba's blocks) and CoMiX's FFN (Eq. 4); parameter names ``fc1``/``fc2``
    as in those references, so their checkpoints map by name.
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


__all__ = ["Mlp", "trunc_normal_init"]
