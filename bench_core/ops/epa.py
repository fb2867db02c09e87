"""Efficient paired attention (EPA, UNETR++), in pieces that a cross-modal block can recombine.

Layout and names follow UNETR++'s ``EPA`` (Amshaker/unetr_plus_plus,
``network_architecture/*/transformerblock.py``), so its checkpoints map 1:1. Tokens x (B, N, C),
h heads of d = C/h channels, token projection size p:

* ``qkvv`` Linear(C, 4C, bias=qkv_bias) gives, in this order, the shared queries q, the shared
  keys k, the channel ("spectral") values v_spe and the spatial values v_spa, each (B, h, d, N)
  (feature ``c*C + head*d + j`` of the 4C outputs is chunk c, head, channel j).
* ``E`` = ``F``: ONE Linear(N, p) (two names for the same layer, as upstream) projects k and
  v_spa along the token axis: k_proj = E(k), v_spa_proj = F(v_spa), both (B, h, d, p).
* Maps (``scaling="unetrpp"``, the default): q and k L2-normalised along the tokens (k_proj
  is computed from the un-normalised k, as upstream does);
  spectral map SE = softmax(q k^T * temperature) (B, h, d, d); spatial map
  SA = softmax(q^T k_proj * temperature2) (B, h, N, p); ``temperature``, ``temperature2``
  (h, 1, 1) start at 1 and carry ``_no_weight_decay = True``.
  ``scaling="paper"`` is CoMiX's printed Eqs. 5-6 / 11-14: no normalisation, a fixed
  1/sqrt(d) (d = head channels) in both maps and no temperature parameters.
* Outputs: spectral Y_spe = SE v_spe -> (B, N, C); spatial Y_spa = SA v_spa_proj^T (B, h, N, d)
  -> (B, N, C); ``out_proj`` Linear(C, C/2) on Y_spa, ``out_proj2`` Linear(C, C/2) on Y_spe,
  concatenated **spatial first**.
* ``spatial_layout="paper"`` (default) turns (B, h, N, d) into tokens with
  ``permute(0, 2, 1, 3)``; ``"unetrpp"`` reproduces the released code's ``permute(0, 3, 1, 2)``,
  which interleaves tokens and channels (the maintainer agreed the paper's layout is meant and
  measured no accuracy difference, Amshaker/unetr_plus_plus#62).

Pieces for CoMiX's CMFeX, which applies one modality's maps to the other modality's values:
:meth:`EPA.maps` ``(x) -> EPAMaps(spatial, channel, v_spatial, v_channel)``,
:meth:`EPA.attend_spatial`, :meth:`EPA.attend_channel` (the two attention products, token
counts free), :meth:`EPA.project` (the two output projections and the concatenation) and
:meth:`EPA.combine` (all three for maps and values with the same token count);
``forward(x) == combine(*maps(x))``.

``E`` fixes N at build time (N = H*W*D of the crop for CoMiX's HSI tokens), so a forward at
another size is refused with a message that names the expected token count.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from bench_core.errors import BenchError, ConfigError

__all__ = ["EPA", "EPA_SCALINGS", "EPA_SPATIAL_LAYOUTS", "EPAInputError", "EPAMaps"]

EPA_SPATIAL_LAYOUTS = ("paper", "unetrpp")
EPA_SCALINGS = ("unetrpp", "paper")


class EPAInputError(BenchError, ValueError):
    """Tokens, maps or values given to EPA do not have the expected shapes."""


class EPAMaps(NamedTuple):
    """The attention maps and values of one modality (B = batch, h heads, d = C/h, N tokens, p)."""

    spatial: torch.Tensor  # SA (B, h, N, p), rows sum to 1
    channel: torch.Tensor  # SE (B, h, d, d), rows sum to 1
    v_spatial: torch.Tensor  # F(v_spa) (B, h, d, p)
    v_channel: torch.Tensor  # v_spe (B, h, d, N)


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


class EPA(nn.Module):
    """UNETR++ efficient paired attention; see the module docstring for the computation.

    ``input_size`` N (tokens, fixed by the crop), ``hidden_size`` C (even, divisible by
    ``num_heads``), ``proj_size`` p. ``token_shape`` (optional, e.g. (H, W, D)) only makes
    the wrong-size error name the grid the layer was built for.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        proj_size: int,
        num_heads: int = 4,
        qkv_bias: bool = False,
        channel_attn_drop: float = 0.0,
        spatial_attn_drop: float = 0.0,
        *,
        spatial_layout: str = "paper",
        scaling: str = "unetrpp",
        token_shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("proj_size", proj_size), ("num_heads", num_heads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"EPA: {name}={value!r}; expected a positive int")
        if hidden_size % num_heads:
            raise ConfigError(f"EPA: hidden_size={hidden_size} is not divisible by num_heads={num_heads}")
        if hidden_size % 2:
            raise ConfigError(
                f"EPA: hidden_size={hidden_size} is odd; expected an even size (the two output projections "
                f"give C/2 channels each)"
            )
        if spatial_layout not in EPA_SPATIAL_LAYOUTS:
            raise ConfigError(
                f"EPA: spatial_layout={spatial_layout!r}; expected one of {', '.join(EPA_SPATIAL_LAYOUTS)}"
            )
        if scaling not in EPA_SCALINGS:
            raise ConfigError(f"EPA: scaling={scaling!r}; expected one of {', '.join(EPA_SCALINGS)}")
        for name, p in (("channel_attn_drop", channel_attn_drop), ("spatial_attn_drop", spatial_attn_drop)):
            if not 0.0 <= float(p) < 1.0:
                raise ConfigError(f"EPA: {name}={p!r}; expected a probability in [0, 1)")
        if token_shape is not None and math.prod(token_shape) != input_size:
            raise ConfigError(
                f"EPA: token_shape={tuple(token_shape)} holds {math.prod(token_shape)} tokens; expected "
                f"input_size={input_size}"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.proj_size = proj_size
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.spatial_layout = spatial_layout
        self.scaling = scaling
        self.token_shape = tuple(token_shape) if token_shape is not None else None
        self.qkvv = nn.Linear(hidden_size, 4 * hidden_size, bias=qkv_bias)
        self.E = nn.Linear(input_size, proj_size)
        self.F = self.E  # one shared layer under both upstream names (state dicts carry E.* and F.*)
        self.attn_drop = nn.Dropout(channel_attn_drop)
        self.attn_drop_2 = nn.Dropout(spatial_attn_drop)
        self.out_proj = nn.Linear(hidden_size, hidden_size // 2)
        self.out_proj2 = nn.Linear(hidden_size, hidden_size // 2)
        self.temperature: nn.Parameter | None
        self.temperature2: nn.Parameter | None
        if scaling == "unetrpp":
            self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
            self.temperature2 = nn.Parameter(torch.ones(num_heads, 1, 1))
            # UNETR++'s no_weight_decay(): the optimizer must not pull the temperatures to 0
            self.temperature._no_weight_decay = True  # type: ignore[attr-defined]
            self.temperature2._no_weight_decay = True  # type: ignore[attr-defined]
        else:
            # the paper's fixed 1/sqrt(d) has no parameter; registering None keeps the names known
            self.register_parameter("temperature", None)
            self.register_parameter("temperature2", None)

    # ------------------------------------------------------------------ pieces

    def _check_tokens(self, x: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[-1] != self.hidden_size:
            raise EPAInputError(
                f"EPA: x has shape {_shape(x)}; expected tokens (B, N, C) with C = {self.hidden_size}"
            )
        if x.shape[1] != self.input_size:
            grid = f" = a token grid {self.token_shape}" if self.token_shape is not None else ""
            raise EPAInputError(
                f"EPA: x has N = {x.shape[1]} tokens; the token projection E = F = Linear({self.input_size} -> "
                f"{self.proj_size}) was built for N = {self.input_size}{grid}, fixed by the crop size at build "
                f"time; run at the crop size the model was built for"
            )

    def maps(self, x: torch.Tensor) -> EPAMaps:
        """Attention maps and values of tokens ``x`` (B, N, C): ``EPAMaps(SA, SE, v_spa_proj, v_spe)``.

        Dropout (training only) is applied to the maps, as upstream does after the softmax.
        """
        self._check_tokens(x)
        b, n, _ = x.shape
        h, d = self.num_heads, self.head_dim
        qkvv = self.qkvv(x).reshape(b, n, 4, h, d).permute(2, 0, 3, 4, 1)  # (4, B, h, d, N)
        q, k, v_channel, v_spatial = qkvv.unbind(0)
        k_proj = self.E(k)  # (B, h, d, p), from the un-normalised keys
        v_spatial_proj = self.F(v_spatial)  # (B, h, d, p)
        if self.scaling == "unetrpp":
            assert self.temperature is not None and self.temperature2 is not None
            q = F.normalize(q, dim=-1)
            k = F.normalize(k, dim=-1)
            channel_logits = (q @ k.transpose(-2, -1)) * self.temperature
            spatial_logits = (q.transpose(-2, -1) @ k_proj) * self.temperature2
        else:
            scale = 1.0 / math.sqrt(d)
            channel_logits = (q @ k.transpose(-2, -1)) * scale
            spatial_logits = (q.transpose(-2, -1) @ k_proj) * scale
        channel = self.attn_drop(channel_logits.softmax(dim=-1))  # (B, h, d, d)
        spatial = self.attn_drop_2(spatial_logits.softmax(dim=-1))  # (B, h, N, p)
        return EPAMaps(spatial=spatial, channel=channel, v_spatial=v_spatial_proj, v_channel=v_channel)

    def attend_spatial(self, spatial: torch.Tensor, v_spatial: torch.Tensor) -> torch.Tensor:
        """Y_spa = SA . v_spa_proj as tokens (B, N_q, C); N_q is the map's token count.

        ``spatial`` (B, h, N_q, p) may come from another modality than ``v_spatial`` (B, h, d, p):
        only p must agree. Layout by ``spatial_layout`` (module docstring).
        """
        b, h, d = self._check_heads("attend_spatial", "v_spatial", v_spatial)
        if spatial.ndim != 4 or _shape(spatial)[:2] != (b, h) or spatial.shape[3] != v_spatial.shape[3]:
            raise EPAInputError(
                f"EPA.attend_spatial: spatial map has shape {_shape(spatial)}; expected (B, h, N, p) = "
                f"({b}, {h}, N, {v_spatial.shape[3]}) to match v_spatial {_shape(v_spatial)}"
            )
        n = spatial.shape[2]
        y = spatial @ v_spatial.transpose(-2, -1)  # (B, h, N, d)
        if self.spatial_layout == "paper":
            return y.permute(0, 2, 1, 3).reshape(b, n, h * d)
        return y.permute(0, 3, 1, 2).reshape(b, n, h * d)  # UNETR++'s released layout (#62)

    def attend_channel(self, channel: torch.Tensor, v_channel: torch.Tensor) -> torch.Tensor:
        """Y_spe = SE . v_spe as tokens (B, N_v, C); N_v is the values' token count.

        ``channel`` (B, h, d, d) may come from another modality than ``v_channel`` (B, h, d, N_v).
        """
        b, h, d = self._check_heads("attend_channel", "v_channel", v_channel)
        if _shape(channel) != (b, h, d, d):
            raise EPAInputError(
                f"EPA.attend_channel: channel map has shape {_shape(channel)}; expected (B, h, d, d) = "
                f"({b}, {h}, {d}, {d})"
            )
        n = v_channel.shape[3]
        return (channel @ v_channel).permute(0, 3, 1, 2).reshape(b, n, h * d)

    def project(self, y_spatial: torch.Tensor, y_channel: torch.Tensor) -> torch.Tensor:
        """``cat(out_proj(y_spatial), out_proj2(y_channel))``: (B, N, C), spatial half first."""
        if y_spatial.shape != y_channel.shape or y_spatial.ndim != 3 or y_spatial.shape[-1] != self.hidden_size:
            raise EPAInputError(
                f"EPA.project: y_spatial {_shape(y_spatial)} and y_channel {_shape(y_channel)}; expected two "
                f"(B, N, {self.hidden_size}) tensors of the same shape (broadcast or pool the token axis first)"
            )
        return torch.cat((self.out_proj(y_spatial), self.out_proj2(y_channel)), dim=-1)

    def combine(
        self, spatial: torch.Tensor, channel: torch.Tensor, v_spatial: torch.Tensor, v_channel: torch.Tensor
    ) -> torch.Tensor:
        """Both attention products and the output projections: (B, N, C).

        Maps and values may come from different modalities when the spatial map's token count
        equals the channel values' (else use :meth:`attend_spatial`, :meth:`attend_channel`
        and :meth:`project`, reshaping the token axis in between).
        """
        return self.project(self.attend_spatial(spatial, v_spatial), self.attend_channel(channel, v_channel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """EPA of tokens ``x`` (B, N, C) -> (B, N, C)."""
        return self.combine(*self.maps(x))

    def _check_heads(self, where: str, name: str, t: torch.Tensor) -> tuple[int, int, int]:
        if t.ndim != 4 or t.shape[1] != self.num_heads or t.shape[2] != self.head_dim:
            raise EPAInputError(
                f"EPA.{where}: {name} has shape {_shape(t)}; expected (B, h, d, .) with h = {self.num_heads} "
                f"heads of d = {self.head_dim} channels"
            )
        return int(t.shape[0]), self.num_heads, self.head_dim

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, proj_size={self.proj_size}, "
                f"num_heads={self.num_heads}, spatial_layout={self.spatial_layout!r}, scaling={self.scaling!r}")
