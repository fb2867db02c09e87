"""EPA (UNETR++ efficient paired attention): equal to a readable per-head reference, both switches,
the reusable pieces CMFeX needs, parameter layout and errors."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench_core.errors import BenchError, ConfigError
from bench_core.ops.epa import (
    EPA,
    EPA_SCALINGS,
    EPA_SPATIAL_LAYOUTS,
    EPAInputError,
    EPAMaps,
)

B, N, C, HEADS, P = 2, 12, 8, 2, 5


def _softmax_rows(m: torch.Tensor) -> torch.Tensor:
    e = torch.exp(m - m.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def reference_epa(epa: EPA, x: torch.Tensor) -> torch.Tensor:
    """EPA written per sample and per head from the UNETR++ equations (row-major token matrices).

    For head i with channels i*d..(i+1)*d of each quarter of ``qkvv``: Q, K, V_spe, V_spa are
    (N, d); E is the token projection (p, N) with bias; K_proj = E K, V_proj = E V_spa (p, d).
    unetrpp scaling: Q and K normalised per channel over the tokens, temperatures t1 (spectral)
    and t2 (spatial); paper scaling: no normalisation, 1/sqrt(d) for both.
    SE = softmax(Q^T K) (d, d), Y_spe = V_spe SE^T (N, d); SA = softmax(Q K_proj^T) (N, p),
    Y_spa = SA V_proj (N, d). Heads side by side in channel blocks; the "unetrpp" layout instead
    writes the (head, token, channel) array in (channel, head, token) order into (N, C).
    """
    c, d, h = epa.hidden_size, epa.head_dim, epa.num_heads
    w = epa.qkvv.weight.detach()
    wb = epa.qkvv.bias.detach() if epa.qkvv.bias is not None else torch.zeros(4 * c, dtype=x.dtype)
    e_w, e_b = epa.E.weight.detach(), epa.E.bias.detach()
    outs = []
    for sample in x.detach():
        spatial_heads, y_spe = [], torch.zeros(sample.shape[0], c, dtype=x.dtype)
        for i in range(h):
            rows = [slice(quarter * c + i * d, quarter * c + (i + 1) * d) for quarter in range(4)]
            q, k, v_spe, v_spa = (sample @ w[r].T + wb[r] for r in rows)  # each (N, d)
            k_proj = e_w @ k + e_b[:, None]  # (p, d), from the un-normalised keys
            v_proj = e_w @ v_spa + e_b[:, None]  # (p, d)
            if epa.scaling == "unetrpp":
                q = q / q.norm(dim=0, keepdim=True).clamp_min(1e-12)
                k = k / k.norm(dim=0, keepdim=True).clamp_min(1e-12)
                t1, t2 = float(epa.temperature[i].detach()), float(epa.temperature2[i].detach())
            else:
                t1 = t2 = 1.0 / math.sqrt(d)
            se = _softmax_rows((q.T @ k) * t1)  # (d, d)
            y_spe[:, i * d : (i + 1) * d] = v_spe @ se.T
            sa = _softmax_rows((q @ k_proj.T) * t2)  # (N, p)
            spatial_heads.append(sa @ v_proj)  # (N, d)
        stacked = torch.stack(spatial_heads)  # (h, N, d)
        if epa.spatial_layout == "paper":
            y_spa = stacked.permute(1, 0, 2).reshape(-1, c)
        else:
            y_spa = stacked.permute(2, 0, 1).reshape(-1, c)  # (d, h, N) read row by row
        out_spa = y_spa @ epa.out_proj.weight.detach().T + epa.out_proj.bias.detach()
        out_spe = y_spe @ epa.out_proj2.weight.detach().T + epa.out_proj2.bias.detach()
        outs.append(torch.cat([out_spa, out_spe], dim=-1))
    return torch.stack(outs)


def _epa(seed: int = 0, **kwargs: Any) -> EPA:
    torch.manual_seed(seed)
    epa = EPA(N, C, P, HEADS, **kwargs).double()
    with torch.no_grad():
        if epa.temperature is not None:
            epa.temperature.copy_(torch.tensor([0.7, 1.9]).view(HEADS, 1, 1))
            epa.temperature2.copy_(torch.tensor([1.3, 0.4]).view(HEADS, 1, 1))
    return epa


def _x(seed: int = 1, tokens: int = N) -> torch.Tensor:
    return torch.randn(B, tokens, C, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("layout", EPA_SPATIAL_LAYOUTS)
@pytest.mark.parametrize("scaling", EPA_SCALINGS)
@pytest.mark.parametrize("qkv_bias", [False, True])
def test_epa_equals_per_head_reference(layout: str, scaling: str, qkv_bias: bool) -> None:
    epa = _epa(spatial_layout=layout, scaling=scaling, qkv_bias=qkv_bias)
    x = _x()
    out = epa(x)
    assert out.shape == (B, N, C)
    torch.testing.assert_close(out, reference_epa(epa, x), atol=1e-12, rtol=1e-12)


def test_unetrpp_layout_reproduces_the_quirk() -> None:
    """Same weights: the channel half agrees, the spatial half is the released code's scramble."""
    paper, quirk = _epa(spatial_layout="paper"), _epa(spatial_layout="unetrpp")
    quirk.load_state_dict(paper.state_dict())
    x = _x()
    a, b = paper(x), quirk(x)
    torch.testing.assert_close(a[..., C // 2 :], b[..., C // 2 :], atol=0, rtol=0)
    assert (a[..., : C // 2] - b[..., : C // 2]).abs().max() > 1e-3
    m = paper.maps(x)
    y = m.spatial @ m.v_spatial.transpose(-2, -1)  # (B, h, N, d)
    torch.testing.assert_close(quirk.attend_spatial(m.spatial, m.v_spatial), y.permute(0, 3, 1, 2).reshape(B, N, C))
    torch.testing.assert_close(paper.attend_spatial(m.spatial, m.v_spatial), y.permute(0, 2, 1, 3).reshape(B, N, C))


def test_scaling_switch_changes_maps_and_parameters() -> None:
    unetrpp, paper = _epa(scaling="unetrpp"), _epa(scaling="paper")
    assert paper.temperature is None and paper.temperature2 is None
    assert {n for n, _ in paper.named_parameters()} == {n for n, _ in unetrpp.named_parameters()} - {
        "temperature", "temperature2"}
    paper.load_state_dict(unetrpp.state_dict(), strict=False)
    x = _x()
    assert (paper(x) - unetrpp(x)).abs().max() > 1e-3


def test_maps_shapes_and_rows_sum_to_one() -> None:
    epa = _epa()
    m = epa.maps(_x())
    assert isinstance(m, EPAMaps)
    d = C // HEADS
    assert m.spatial.shape == (B, HEADS, N, P) and m.channel.shape == (B, HEADS, d, d)
    assert m.v_spatial.shape == (B, HEADS, d, P) and m.v_channel.shape == (B, HEADS, d, N)
    torch.testing.assert_close(m.spatial.sum(-1), torch.ones(B, HEADS, N, dtype=torch.float64))
    torch.testing.assert_close(m.channel.sum(-1), torch.ones(B, HEADS, d, d, dtype=torch.float64)[..., 0])
    sa, se, v_spa, v_spe = m  # the tuple order the brief names: (SA, SE, v_spa_proj, v_spe)
    torch.testing.assert_close(epa.combine(sa, se, v_spa, v_spe), epa(_x()), atol=0, rtol=0)


def test_pieces_cross_maps_between_modalities_with_different_token_counts() -> None:
    """CMFeX: one modality's maps with the other's values (HSI N = H*W*D, X N = H*W)."""
    depth = 3
    hw = N // depth
    hsi = EPA(N, C, P, HEADS, token_shape=(2, 2, depth)).double()
    xmod = EPA(hw, C, P, HEADS).double()
    m_hsi, m_x = hsi.maps(_x(2)), xmod.maps(_x(3, tokens=hw))
    y = hsi.attend_spatial(m_x.spatial, m_hsi.v_spatial)  # SA_x . V_hsi_proj -> H*W tokens
    assert y.shape == (B, hw, C)
    y_spe = hsi.attend_channel(m_x.channel, m_hsi.v_channel)  # V_hsi_spe . SE_x -> H*W*D tokens
    assert y_spe.shape == (B, N, C)
    out = hsi.project(y.repeat_interleave(depth, dim=1), y_spe)
    assert out.shape == (B, N, C)
    x_spa = xmod.attend_spatial(m_hsi.spatial, m_x.v_spatial)  # SA_hsi . V_x_proj -> H*W*D tokens
    assert x_spa.shape == (B, N, C)
    # per head, the crossed product is the plain matrix product of map and values
    d = C // HEADS
    head0 = m_x.spatial[:, 0] @ m_hsi.v_spatial[:, 0].transpose(-2, -1)
    torch.testing.assert_close(y[..., :d], head0)
    with pytest.raises(EPAInputError, match="expected two"):
        hsi.combine(m_x.spatial, m_x.channel, m_hsi.v_spatial, m_hsi.v_channel)


def test_parameter_layout_matches_unetrpp_and_e_is_f() -> None:
    epa = EPA(input_size=N, hidden_size=C, proj_size=P, num_heads=HEADS)
    assert epa.E is epa.F
    assert {n: tuple(t.shape) for n, t in epa.named_parameters()} == {
        "temperature": (HEADS, 1, 1),
        "temperature2": (HEADS, 1, 1),
        "qkvv.weight": (4 * C, C),
        "E.weight": (P, N),
        "E.bias": (P,),
        "out_proj.weight": (C // 2, C),
        "out_proj.bias": (C // 2,),
        "out_proj2.weight": (C // 2, C),
        "out_proj2.bias": (C // 2,),
    }
    assert {"F.weight", "F.bias", "E.weight"} <= set(epa.state_dict())  # upstream checkpoints carry both names
    assert epa.temperature._no_weight_decay and epa.temperature2._no_weight_decay
    flagged = [n for n, t in epa.named_parameters() if getattr(t, "_no_weight_decay", False)]
    assert flagged == ["temperature", "temperature2"]
    torch.testing.assert_close(epa.temperature.detach(), torch.ones(HEADS, 1, 1))


def test_every_parameter_gets_a_gradient() -> None:
    for scaling in EPA_SCALINGS:
        epa = _epa(scaling=scaling, qkv_bias=True)
        epa(_x()).square().sum().backward()
        assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in epa.parameters())


def test_attention_matmuls_are_counted_as_flops() -> None:
    epa = EPA(N, C, P, HEADS)
    with FlopCounterMode(display=False) as counter:
        epa(torch.randn(B, N, C))
    d = C // HEADS
    linear = 2 * B * N * C * 4 * C + 2 * 2 * B * HEADS * d * N * P + 2 * 2 * B * N * C * (C // 2)
    attention = 2 * B * HEADS * (d * N * d + N * d * P + d * d * N + N * P * d)
    assert counter.get_total_flops() == linear + attention


def test_wrong_token_count_names_the_build_size() -> None:
    epa = EPA(N, C, P, HEADS, token_shape=(2, 2, 3))
    with pytest.raises(EPAInputError, match=r"N = 16 tokens; .*Linear\(12 -> 5\) was built for N = 12 = a token "
                                            r"grid \(2, 2, 3\), fixed by the crop size") as info:
        epa(torch.randn(B, 16, C))
    assert isinstance(info.value, BenchError) and isinstance(info.value, ValueError)
    with pytest.raises(EPAInputError, match=r"expected tokens \(B, N, C\) with C = 8"):
        epa(torch.randn(B, N, C + 2))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hidden_size": 9, "num_heads": 3}, "hidden_size=9 is odd"),
        ({"hidden_size": 8, "num_heads": 3}, "not divisible by num_heads=3"),
        ({"spatial_layout": "code"}, "spatial_layout='code'; expected one of paper, unetrpp"),
        ({"scaling": "sqrt"}, "scaling='sqrt'; expected one of unetrpp, paper"),
        ({"proj_size": 0}, "proj_size=0"),
        ({"token_shape": (3, 3)}, r"token_shape=\(3, 3\) holds 9 tokens; expected input_size=12"),
        ({"channel_attn_drop": 1.0}, "channel_attn_drop=1.0"),
    ],
)
def test_config_errors(kwargs: dict[str, Any], match: str) -> None:
    args = {"input_size": N, "hidden_size": C, "proj_size": P, "num_heads": HEADS, **kwargs}
    with pytest.raises(ConfigError, match=match):
        EPA(**args)


def test_dropout_acts_on_the_maps_in_training_only() -> None:
    epa = _epa(channel_attn_drop=0.5, spatial_attn_drop=0.5)
    x = _x()
    epa.eval()
    torch.testing.assert_close(epa(x), reference_epa(epa, x), atol=1e-12, rtol=1e-12)
    epa.train()
    torch.manual_seed(3)
    m = epa.maps(x)
    assert (m.spatial == 0).any() and (m.channel == 0).any()
