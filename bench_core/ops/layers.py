"""Small layers and initialisations shared by method plugins."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from bench_core.errors import ConfigError


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


def crop_inputs(
    method: str, inputs: Mapping[str, torch.Tensor], bands: tuple[int, int], crop: int, why: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``hsi`` and ``x`` crops of a dense method whose layers are sized by the crop side.

    Raises ConfigError naming the input, its shape and the expected ``(batch, bands, crop, crop)``;
    ``why`` (appended as is) says which layer fixes the crop side.
    """
    missing = [k for k in ("hsi", "x") if k not in inputs]
    if missing:
        raise ConfigError(f"{method}: inputs {sorted(inputs)} lack {missing}; expected 'hsi' and 'x' crops")
    hsi, x = inputs["hsi"], inputs["x"]
    for name, tensor, count in (("hsi", hsi, bands[0]), ("x", x, bands[1])):
        if tensor.ndim != 4 or tensor.shape[1] != count or tuple(tensor.shape[-2:]) != (crop, crop):
            raise ConfigError(
                f"{method}: input {name!r} has shape {tuple(tensor.shape)}; expected (batch, {count}, "
                f"{crop}, {crop}){why}"
            )
    return hsi, x


__all__ = ["Mlp", "crop_inputs", "trunc_normal_init"]
