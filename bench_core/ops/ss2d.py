"""VMamba's SS2D block (v2) and the generic pieces that S2Mamba and M3amba build on.

Functions (``b`` = batch, ``D`` = channels, ``L`` = sequence length, ``K`` = directions,
``N`` = state size):

* :func:`cross_scan` ``(b, D, H, W) -> (b, 4, D, H*W)``: direction 0 row-major, 1
  column-major (flatten of the H/W-transposed map), 2 and 3 the reverses of 0 and 1.
* :func:`cross_merge` ``(b, 4, D, H, W)`` or ``(b, 4, D, H*W)`` ``-> (b, D, H*W)``: every
  direction back to row-major order, then their SUM (not mean), as VMamba does.
  ``cross_merge(cross_scan(x), H, W) == 4 * x.flatten(2)``.
* :func:`cross_scan_1d` ``(b, D, L) -> (b, 2, D, L)`` (forward, reversed) and
  :func:`cross_merge_1d` ``(b, 2, D, L) -> (b, D, L)`` (sum after flipping back): the
  bidirectional scan, e.g. S2Mamba's spectral mixer with the p*p positions as channels.
* :func:`directional_scan` runs K directions as ONE grouped selective scan:
  ``xs``/``dts`` (b, K, D, L) or (b, K*D, L); ``As`` (K*D, N) or (K, D, N); ``Bs``/``Cs``
  (b, K, N, L); ``Ds``/``delta_bias`` (K*D,), (K, D) or None; softplus on the deltas by
  default. Returns ``ys`` in the layout of ``xs``. Direction k's channels use B[:, k], C[:, k].

Modules:

* :class:`DirectionalSSM` holds the per-direction parameters of a K-direction scan with
  VMamba's initialisation (``x_proj_weight`` (K, R+2N, D), ``dt_projs_weight`` (K, D, R),
  ``dt_projs_bias`` (K, D), ``A_logs`` (K*D, N), ``Ds`` (K*D,)), and splits the work into
  overridable steps: ``project(xs) -> (dts, Bs, Cs)``, ``scan_params() -> (As, Ds,
  delta_bias)``, ``forward(xs) -> ys``. S2Mamba's spatial mixer uses K=4 on cross-scanned
  maps, its spectral mixer K=2 on ``cross_scan_1d`` output with D = p*p.
* :class:`SS2D`: channel-last ``(b, H, W, d_model) -> (b, H, W, d_model)``: in_proj to x, z;
  depthwise conv + SiLU on x; cross scan; projection and scan (delta_bias, softplus);
  cross merge; LayerNorm(d_inner); times act(z) (SiLU as VMamba, GELU as S2Mamba);
  out_proj; dropout. Steps ``encode`` and ``decode`` are reusable by variants.
* :class:`CrossSS2D`: M3amba's two-stream variant built from those steps: stream x is
  scanned with ``A = (A_x + A_g) / 2`` (continuous A, averaged before discretisation) and
  ``B`` from the guide stream g, and symmetrically. (The paper's Eq. 12 averages the
  discretised matrices instead; this follows the released code.)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bench_core.errors import ConfigError
from bench_core.ops.selective_scan import SCAN_BACKENDS, ScanInputError, selective_scan

__all__ = [
    "CrossSS2D",
    "DirectionalSSM",
    "SS2D",
    "cross_merge",
    "cross_merge_1d",
    "cross_scan",
    "cross_scan_1d",
    "directional_scan",
]

GATE_ACTIVATIONS = ("silu", "gelu")


# --------------------------------------------------------------------------- scans of maps


def cross_scan(x: torch.Tensor) -> torch.Tensor:
    """Four scan orders of a (b, D, H, W) map: (b, 4, D, H*W); see the module docstring."""
    if x.ndim != 4:
        raise ScanInputError(
            f"cross_scan: x has shape {tuple(x.shape)}; expected (batch, D, H, W); "
            f"permute channel-last maps with x.permute(0, 3, 1, 2)"
        )
    rows = x.flatten(2)
    cols = x.transpose(2, 3).flatten(2)
    forward = torch.stack((rows, cols), dim=1)
    return torch.cat((forward, forward.flip(-1)), dim=1)


def cross_merge(y: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Sum of the four directions of ``y`` back in row-major order: (b, D, H*W)."""
    if y.ndim == 5:
        y = y.flatten(3)
    if y.ndim != 4 or y.shape[1] != 4 or y.shape[3] != H * W:
        raise ScanInputError(
            f"cross_merge: y has shape {tuple(y.shape)}; expected (batch, 4, D, H*W) or "
            f"(batch, 4, D, H, W) with H*W = {H}*{W} = {H * W}; pass the output of a scan "
            f"over cross_scan's sequences and the map's H and W"
        )
    batch, _, dim, length = y.shape
    pairs = y[:, :2] + y[:, 2:].flip(-1)
    cols = pairs[:, 1].reshape(batch, dim, W, H).transpose(2, 3).reshape(batch, dim, length)
    return pairs[:, 0] + cols


def cross_scan_1d(x: torch.Tensor) -> torch.Tensor:
    """Forward and reversed copies of a (b, D, L) sequence: (b, 2, D, L)."""
    if x.ndim != 3:
        raise ScanInputError(
            f"cross_scan_1d: x has shape {tuple(x.shape)}; expected (batch, D, L)"
        )
    return torch.stack((x, x.flip(-1)), dim=1)


def cross_merge_1d(y: torch.Tensor) -> torch.Tensor:
    """Sum of the forward direction and the flipped-back reversed one: (b, D, L)."""
    if y.ndim != 4 or y.shape[1] != 2:
        raise ScanInputError(
            f"cross_merge_1d: y has shape {tuple(y.shape)}; expected (batch, 2, D, L), the "
            f"scan of cross_scan_1d's output"
        )
    return y[:, 0] + y[:, 1].flip(-1)


# --------------------------------------------------------------------------- grouped scan


def directional_scan(
    xs: torch.Tensor,
    dts: torch.Tensor,
    As: torch.Tensor,
    Bs: torch.Tensor,
    Cs: torch.Tensor,
    Ds: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    *,
    delta_softplus: bool = True,
    backend: str = "auto",
) -> torch.Tensor:
    """K directions in one grouped selective scan; shapes in the module docstring.

    Direction k is channel group k of the scan, so B[:, k] and C[:, k] drive exactly the
    channels of xs[:, k]. The result has the layout of ``xs``.
    """
    if Bs.ndim != 4 or Cs.shape != Bs.shape:
        raise ScanInputError(
            f"directional_scan: Bs {tuple(Bs.shape)} and Cs {tuple(Cs.shape)}; expected both "
            f"(batch, K, N, L), one B and C per direction"
        )
    batch, k, _, length = Bs.shape
    if xs.ndim == 4:
        if xs.shape[1] != k:
            raise ScanInputError(
                f"directional_scan: xs has shape {tuple(xs.shape)}; expected (batch, K, D, L) with "
                f"K = {k} (Bs.shape[1]); give one B and C per direction"
            )
        flat = xs.reshape(batch, -1, length)
    else:
        flat = xs
    channels = flat.shape[1] if flat.ndim == 3 else -1
    if As.ndim not in (2, 3) or As.numel() != channels * As.shape[-1]:
        raise ScanInputError(
            f"directional_scan: As has shape {tuple(As.shape)}; expected (K*D, N) or (K, D, N) "
            f"with K*D = {channels} channels (one row of A per channel of every direction)"
        )
    if dts.shape != xs.shape:
        raise ScanInputError(
            f"directional_scan: dts has shape {tuple(dts.shape)}; expected xs's shape "
            f"{tuple(xs.shape)}"
        )
    ys = selective_scan(
        flat,
        dts.reshape(flat.shape),
        As.reshape(flat.shape[1], -1),
        Bs,
        Cs,
        Ds.reshape(-1) if Ds is not None else None,
        None,
        delta_bias.reshape(-1) if delta_bias is not None else None,
        delta_softplus,
        backend=backend,
    )
    assert isinstance(ys, torch.Tensor)
    return ys.reshape(xs.shape)


# --------------------------------------------------------------------------- parameters


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r}; expected a positive int")
    return value


class DirectionalSSM(nn.Module):
    """Per-direction selective-scan parameters for K directions over ``d_inner`` channels.

    Initialisation (VMamba, mamba_simple): ``x_proj_weight`` uniform in
    +-d_inner^-0.5 (nn.Linear's default), ``dt_projs_weight`` uniform in
    +-dt_scale*dt_rank^-0.5, ``dt_projs_bias`` = inverse softplus of dt drawn log-uniformly
    in [dt_min, dt_max] and floored at dt_init_floor, ``A_logs`` = log(1..N) per channel,
    ``Ds`` = 1. ``A_logs`` and ``Ds`` carry ``_no_weight_decay = True``.
    """

    def __init__(
        self,
        d_inner: int,
        dt_rank: int,
        d_state: int = 16,
        directions: int = 4,
        *,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        dt_scale: float = 1.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.d_inner = _positive_int("d_inner", d_inner)
        self.d_state = _positive_int("d_state", d_state)
        self.dt_rank = _positive_int("dt_rank", dt_rank)
        self.directions = _positive_int("directions", directions)
        if not 0 < dt_min <= dt_max:
            raise ConfigError(f"dt_min={dt_min!r}, dt_max={dt_max!r}; expected 0 < dt_min <= dt_max")
        self.dt_min, self.dt_max, self.dt_init_floor, self.dt_scale = dt_min, dt_max, dt_init_floor, dt_scale
        if backend not in SCAN_BACKENDS:
            raise ConfigError(f"backend={backend!r}; expected one of {', '.join(SCAN_BACKENDS)}")
        self.backend = backend
        k, d, r, n = self.directions, self.d_inner, self.dt_rank, self.d_state
        self.x_proj_weight = nn.Parameter(torch.empty(k, r + 2 * n, d))
        self.dt_projs_weight = nn.Parameter(torch.empty(k, d, r))
        self.dt_projs_bias = nn.Parameter(torch.empty(k, d))
        self.A_logs = nn.Parameter(torch.empty(k * d, n))
        self.Ds = nn.Parameter(torch.empty(k * d))
        self.A_logs._no_weight_decay = True  # type: ignore[attr-defined]
        self.Ds._no_weight_decay = True  # type: ignore[attr-defined]
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """(Re)draw every parameter with VMamba's initialisation (class docstring)."""
        bound = self.d_inner**-0.5
        self.x_proj_weight.uniform_(-bound, bound)
        self.dt_projs_weight.uniform_(-self.dt_scale * self.dt_rank**-0.5, self.dt_scale * self.dt_rank**-0.5)
        log_lo, log_hi = math.log(self.dt_min), math.log(self.dt_max)
        dt = torch.exp(torch.rand(self.dt_projs_bias.shape) * (log_hi - log_lo) + log_lo)
        dt = dt.clamp(min=self.dt_init_floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        n = torch.arange(1, self.d_state + 1, dtype=torch.float32)
        self.A_logs.copy_(torch.log(n).expand_as(self.A_logs))
        self.Ds.fill_(1.0)

    def project(self, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-direction projections of ``xs`` (b, K, D, L): dts (b, K, D, L), Bs and Cs (b, K, N, L)."""
        if xs.ndim != 4 or xs.shape[1] != self.directions or xs.shape[2] != self.d_inner:
            raise ScanInputError(
                f"DirectionalSSM.project: xs has shape {tuple(xs.shape)}; expected (batch, "
                f"{self.directions}, {self.d_inner}, L) (K directions of d_inner channels)"
            )
        # matmul, not einsum: einsum turns a rank-1 contraction into a product that
        # FlopCounterMode does not count
        x_dbl = torch.matmul(self.x_proj_weight, xs)  # (b, K, R + 2N, L)
        dts, Bs, Cs = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=2)
        return torch.matmul(self.dt_projs_weight, dts), Bs, Cs

    def scan_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As = -exp(A_logs) (K*D, N), Ds (K*D,) and the delta bias (K*D,)."""
        return -torch.exp(self.A_logs), self.Ds, self.dt_projs_bias.reshape(-1)

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        """Scan ``xs`` (b, K, D, L) along L in every direction: ys (b, K, D, L)."""
        dts, Bs, Cs = self.project(xs)
        As, Ds, delta_bias = self.scan_params()
        return directional_scan(xs, dts, As, Bs, Cs, Ds, delta_bias, backend=self.backend)


# --------------------------------------------------------------------------- SS2D


class SS2D(nn.Module):
    """VMamba's SS2D v2 block, channel-last: (b, H, W, d_model) -> (b, H, W, d_model).

    ``d_inner = int(ssm_ratio * d_model)``; ``dt_rank="auto"`` gives ceil(d_model / 16);
    ``gate_act`` is ``"silu"`` (VMamba, M3amba) or ``"gelu"`` (S2Mamba). in_proj and
    out_proj have no bias unless ``bias``; the depthwise conv has one unless ``conv_bias``
    is false. Parameters of the scan live in ``self.ssm`` (:class:`DirectionalSSM`, K=4).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        dt_rank: int | str = "auto",
        d_conv: int = 3,
        *,
        conv_bias: bool = True,
        bias: bool = False,
        gate_act: str = "silu",
        dropout: float = 0.0,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        dt_scale: float = 1.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.d_model = _positive_int("d_model", d_model)
        self.d_inner = int(ssm_ratio * d_model)
        if self.d_inner < 1:
            raise ConfigError(f"ssm_ratio={ssm_ratio!r}; expected ssm_ratio * d_model >= 1")
        if dt_rank == "auto":
            dt_rank = math.ceil(d_model / 16)
        self.dt_rank = _positive_int("dt_rank", dt_rank)
        if isinstance(d_conv, bool) or not isinstance(d_conv, int) or d_conv < 1 or d_conv % 2 == 0:
            raise ConfigError(f"d_conv={d_conv!r}; expected an odd positive int (3 in VMamba)")
        if gate_act not in GATE_ACTIVATIONS:
            raise ConfigError(f"gate_act={gate_act!r}; expected one of {', '.join(GATE_ACTIVATIONS)}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout={dropout!r}; expected 0 <= dropout < 1")
        self._ssm_options = {
            "d_inner": self.d_inner, "d_state": d_state, "dt_rank": self.dt_rank, "directions": 4,
            "dt_min": dt_min, "dt_max": dt_max, "dt_init_floor": dt_init_floor, "dt_scale": dt_scale,
            "backend": backend,
        }
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv2d = nn.Conv2d(self.d_inner, self.d_inner, d_conv, padding=(d_conv - 1) // 2,
                                groups=self.d_inner, bias=conv_bias)
        self.ssm = self.make_ssm()
        self.out_norm = nn.LayerNorm(self.d_inner)
        self.gate_act: nn.Module = nn.SiLU() if gate_act == "silu" else nn.GELU()
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        self.dropout: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def make_ssm(self) -> DirectionalSSM:
        """A fresh set of scan parameters with this block's options (variants add more)."""
        return DirectionalSSM(**self._ssm_options)  # type: ignore[arg-type]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """in_proj, depthwise conv + SiLU, cross scan: xs (b, 4, d_inner, H*W) and the gate input z."""
        if x.ndim != 4 or x.shape[-1] != self.d_model:
            raise ScanInputError(
                f"{type(self).__name__}: input has shape {tuple(x.shape)}; expected channel-last "
                f"(batch, H, W, {self.d_model}); permute channel-first maps with x.permute(0, 2, 3, 1)"
            )
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2)))
        return cross_scan(x), z

    def decode(self, ys: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Cross merge, LayerNorm, gate by act(z), out_proj, dropout: (b, H, W, d_model)."""
        batch, height, width, _ = z.shape
        y = cross_merge(ys, height, width).transpose(1, 2).reshape(batch, height, width, self.d_inner)
        y = self.out_norm(y) * self.gate_act(z)
        return self.dropout(self.out_proj(y))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """SS2D of a channel-last map (b, H, W, d_model)."""
        xs, z = self.encode(x)
        dts, Bs, Cs = self.ssm.project(xs)
        As, Ds, delta_bias = self.ssm.scan_params()
        ys = directional_scan(xs, dts, As, Bs, Cs, Ds, delta_bias, backend=self.ssm.backend)
        return self.decode(ys, z)


class CrossSS2D(SS2D):
    """M3amba's Cross-SS2D: two streams sharing in_proj, conv, out_norm and out_proj.

    ``self.ssm`` belongs to the first stream (x), ``self.ssm_guide`` to the second (g).
    ``forward(x, g) -> (out_x, out_g)``: x is scanned with its own dt, C, D and delta bias,
    ``A = (A_x + A_g) / 2`` and the guide's B; g symmetrically with x's B. With identical
    inputs and identical stream parameters, ``out_x`` equals :class:`SS2D`'s output.
    ``forward_x(x, g)`` is ``out_x`` alone, without the guide stream's scan and decode.
    """

    def __init__(self, d_model: int, *args: object, **kwargs: object) -> None:
        super().__init__(d_model, *args, **kwargs)  # type: ignore[arg-type]
        self.ssm_guide = self.make_ssm()

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, guide: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both streams (b, H, W, d_model) -> both outputs, same shape."""
        out_x, out_g = self._streams(x, guide, guide_output=True)
        assert out_g is not None
        return out_x, out_g

    def forward_x(self, x: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """Stream x's output alone, equal to ``self(x, guide)[0]``.

        The guide is still encoded and projected (x's scan needs its B and A), but its own
        scan and decode are skipped: M3amba's blocks discard the guide's output.
        """
        return self._streams(x, guide, guide_output=False)[0]

    def _streams(
        self, x: torch.Tensor, guide: torch.Tensor, guide_output: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Stream x's output, and the guide stream's when ``guide_output`` (else None)."""
        if guide.shape != x.shape:
            raise ScanInputError(
                f"CrossSS2D: guide has shape {tuple(guide.shape)}; expected x's shape "
                f"{tuple(x.shape)} (both streams on the same grid)"
            )
        xs, z_x = self.encode(x)
        gs, z_g = self.encode(guide)
        dts_x, B_x, C_x = self.ssm.project(xs)
        dts_g, B_g, C_g = self.ssm_guide.project(gs)
        A_x, D_x, bias_x = self.ssm.scan_params()
        A_g, D_g, bias_g = self.ssm_guide.scan_params()
        A_mean = (A_x + A_g) / 2
        backend = self.ssm.backend
        ys_x = directional_scan(xs, dts_x, A_mean, B_g, C_x, D_x, bias_x, backend=backend)
        if not guide_output:
            return self.decode(ys_x, z_x), None
        ys_g = directional_scan(gs, dts_g, A_mean, B_x, C_g, D_g, bias_g, backend=backend)
        return self.decode(ys_x, z_x), self.decode(ys_g, z_g)
