"""BDGF training network: parameter count at the paper's shapes, output shapes, group attention
against a loop implementation of Eqs. 21-23, the mutual-learning loss, gradients reaching every
parameter, determinism and option errors (seed-methods.md 5a, 5b, 5g item 4)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from bench_plugins.methods.bdgf.network import (
    PAIRS,
    BDGFNet,
    GroupAttention,
    MambaBlock,
    NetOptions,
    mutual_learning_loss,
    parse_temperature,
)

from bench_core import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PAPER_PARAMS = 16.38e6
SMALL = {"hsi_bands": 10, "x_bands": 2, "dif_channels": 16, "num_classes": 3, "patch": 5}


def _count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _meta_net(hsi_bands: int, classes: int, options: NetOptions | None = None) -> BDGFNet:
    with torch.device("meta"):
        return BDGFNet(hsi_bands, 4, 8192, classes, 9, options or NetOptions())


def _small_net(seed: int = 0, **options: object) -> BDGFNet:
    torch.manual_seed(seed)
    return BDGFNet(**SMALL, options=NetOptions(**options))  # type: ignore[arg-type]


def _small_batch(batch: int = 6, seed: int = 1, patch: int = 5) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, SMALL["hsi_bands"], patch, patch, generator=g),
        torch.rand(batch, SMALL["x_bands"], patch, patch, generator=g),
        torch.randn(batch, SMALL["dif_channels"], patch, patch, generator=g),
    )


# --------------------------------------------------------------------------- parameters


def test_parameter_count_matches_paper_at_augsburg_and_berlin_shapes() -> None:
    augsburg = _count(_meta_net(180, 7))
    berlin = _count(_meta_net(244, 8))
    for name, count in (("Augsburg", augsburg), ("Berlin", berlin)):
        assert abs(count / PAPER_PARAMS - 1) < 0.03, (
            f"{name}: {count:,} params, paper 16.38 M ({count / PAPER_PARAMS - 1:+.2%}); "
            f"Augsburg {augsburg:,}, Berlin {berlin:,}"
        )
    # band-count-dependent layers are tiny: the paper reports the same 16.38 M for both
    assert 0 < berlin - augsburg < 50_000, f"Augsburg {augsburg:,}, Berlin {berlin:,}"


def test_shared_group_attention_saves_two_dif_projections() -> None:
    literal = _count(_meta_net(180, 7))
    shared = _count(_meta_net(180, 7, NetOptions(group_attention="shared")))
    f, e = 8192, 64
    # literal: Q, K, V read dif (3 (F E + E)); shared: one F -> E map, then three E -> E
    assert literal - shared == 3 * (f * e + e) - (f * e + e) - 3 * (e * e + e)


def test_scan_parameters_have_no_weight_decay() -> None:
    net = _meta_net(180, 7)
    flagged = {n for n, p in net.named_parameters() if getattr(p, "_no_weight_decay", False)}
    assert flagged == {f"{s}.block.{p}" for s in ("mamba_hsi", "mamba_x") for p in ("A_log", "D")}


# --------------------------------------------------------------------------- forward


@pytest.mark.parametrize(
    ("patch", "options"),
    [(5, {}), (9, {}), (5, {"mamba_sequence": "bands"}), (5, {"group_attention": "shared", "hsi_tokens": 2})],
)
def test_output_shapes_and_finite_logits(patch: int, options: dict[str, object]) -> None:
    torch.manual_seed(0)
    net = BDGFNet(**{**SMALL, "patch": patch}, options=NetOptions(**options))  # type: ignore[arg-type]
    out = net(*_small_batch(batch=3, patch=patch))
    assert out["logits"].shape == (3, 3)
    assert torch.isfinite(out["logits"]).all()
    assert set(out["branch_logits"]) == set(out["branch_features"]) == {"cnn", "trans", "mamba"}
    for branch in ("cnn", "trans", "mamba"):
        assert out["branch_logits"][branch].shape == (3, 3)
        assert out["branch_features"][branch].shape == (3, 64)
        assert torch.isfinite(out["branch_logits"][branch]).all()


def test_wrong_input_shape_is_refused_naming_the_input() -> None:
    net = _small_net()
    hsi, x, dif = _small_batch()
    with pytest.raises(ConfigError, match="'dif'"):
        net(hsi, x, dif[:, :8])
    with pytest.raises(ConfigError, match="'hsi'"):
        net(hsi[..., :4, :4], x, dif)


def test_mamba_block_is_causal() -> None:
    torch.manual_seed(0)
    block = MambaBlock(16, d_state=4)
    tokens = torch.randn(2, 7, 16)
    changed = tokens.clone()
    changed[:, -1] += 1.0
    a, b = block(tokens), block(changed)
    torch.testing.assert_close(a[:, :-1], b[:, :-1])
    assert not torch.allclose(a[:, -1], b[:, -1])


# --------------------------------------------------------------------------- group attention


@torch.no_grad()
def _channel_attention_loop(module: GroupAttention, index: int, f: torch.Tensor) -> torch.Tensor:
    """Eqs. 21-23 with explicit loops over samples and rows of E."""
    def project(conv: torch.nn.Conv2d, sample: torch.Tensor) -> torch.Tensor:
        weight = conv.weight[:, :, 0, 0]
        return weight @ sample.flatten(1) + conv.bias[:, None]  # (E, N)

    lam = float(module.lambdas[index])
    out = []
    for sample in f:
        q = project(module.query[index], sample)
        k = project(module.key[index], sample)
        v = project(module.value[index], sample)
        rows = []
        for i in range(q.shape[0]):
            e_row = [float((q[i] * k[j]).sum()) for j in range(k.shape[0])]
            e_prime = [max(e_row) - e for e in e_row]
            top = max(e_prime)
            weights = [math.exp(e - top) for e in e_prime]
            total = sum(weights)
            attended = sum((w / total) * v[j] for j, w in enumerate(weights))
            rows.append(lam * attended + v[i])
        out.append(torch.stack(rows).reshape(-1, *f.shape[-2:]))
    return torch.stack(out)


def test_group_attention_equals_loop_implementation() -> None:
    torch.manual_seed(0)
    module = GroupAttention((4, 6, 4), dim=4).double()
    with torch.no_grad():
        module.lambdas.copy_(torch.tensor([0.7, -0.3, 1.2]))
    features = [torch.randn(2, c, 3, 3, dtype=torch.float64) for c in (4, 6, 4)]
    attended = []
    for i, f in enumerate(features):
        expected = _channel_attention_loop(module, i, f)
        torch.testing.assert_close(module.channel_attention(i, f), expected, atol=1e-5, rtol=0)
        attended.append(expected)
    fused = torch.einsum("oc,bchw->bohw", module.fuse.weight[:, :, 0, 0], torch.cat(attended, dim=1))
    fused = fused + module.fuse.bias[:, None, None]
    expected_ga = fused * features[0] + features[0]
    torch.testing.assert_close(module(features), expected_ga, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- mutual learning


def _branch_outputs(identical: bool, batch: int = 5) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    if identical:
        z, f = torch.randn(batch, 3, generator=g), torch.randn(batch, 64, generator=g)
        return {b: f.clone() for b in ("cnn", "trans", "mamba")}, {b: z.clone() for b in ("cnn", "trans", "mamba")}
    feats = {b: torch.randn(batch, 64, generator=g) for b in ("cnn", "trans", "mamba")}
    logits = {b: 2 * torch.randn(batch, 3, generator=g) for b in ("cnn", "trans", "mamba")}
    return feats, logits


def test_mutual_loss_zero_for_identical_branches_positive_otherwise() -> None:
    net = _small_net()
    seen: list[torch.Tensor] = []

    def recording(pair: tuple[str, str], temp_in: torch.Tensor) -> torch.Tensor:
        t = net._temperature(pair, temp_in)
        seen.append(t.detach())
        return t

    loss, mean_t = mutual_learning_loss(*_branch_outputs(identical=True), recording)
    assert abs(loss.item()) < 1e-6
    loss, mean_t = mutual_learning_loss(*_branch_outputs(identical=False), recording)
    assert loss.item() > 0
    assert all(bool((t > 0).all()) for t in seen) and len(seen) == 2 * len(PAIRS)
    assert mean_t.item() == pytest.approx(float(torch.stack(seen[len(PAIRS):]).mean()))


def test_fixed_temperature_is_used_and_has_no_fcs() -> None:
    net = _small_net(temperature="fixed:4")
    assert net.temperature_fcs is None
    assert not [n for n, _ in net.named_parameters() if "temperature" in n]
    feats, logits = _branch_outputs(identical=False)
    loss, mean_t = mutual_learning_loss(feats, logits, net._temperature)
    expected = sum(
        16 * F.kl_div((logits[a] / 4).log_softmax(-1), (logits[b] / 4).log_softmax(-1),
                      reduction="batchmean", log_target=True)
        for a, b in PAIRS
    )
    torch.testing.assert_close(loss, expected)
    assert float(mean_t) == 4.0
    out = net(*_small_batch())
    net.loss(out, torch.tensor([0, 1, 2, -1, 0, 1]))
    assert net.last_temperature == 4.0


def test_loss_records_learned_temperature_and_ignores_unlabelled() -> None:
    net = _small_net()
    assert net.last_temperature is None
    out = net(*_small_batch())
    loss = net.loss(out, torch.full((6,), -1))  # no labelled sample: CE part 0, not nan
    assert torch.isfinite(loss)
    assert isinstance(net.last_temperature, float) and net.last_temperature > 0


@pytest.mark.parametrize("text", ["hot", "fixed", "fixed:", "fixed:0", "fixed:-2", "fixed:abc", "fixed:nan", 4])
def test_bad_temperature_text_names_the_key(text: object) -> None:
    with pytest.raises(ConfigError, match=r"model\.temperature"):
        parse_temperature(text)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"model\.temperature"):
        BDGFNet(**SMALL, options=NetOptions(temperature=text))  # type: ignore[arg-type]


def test_parse_temperature_values() -> None:
    assert parse_temperature("learned") is None
    assert parse_temperature("fixed:4") == 4.0
    assert parse_temperature("fixed:0.5") == 0.5


# --------------------------------------------------------------------------- gradients


def test_every_parameter_gets_a_gradient() -> None:
    """Lambda starts at 0 (DANet), so Q and K of the group attention get exactly zero gradient on
    the first step; every other parameter, the lambdas included, gets one at once. After one SGD
    step (lambda != 0) every parameter gets a gradient."""
    net = _small_net()
    net.train()
    batch = _small_batch(batch=8)
    targets = torch.tensor([0, 1, 2, 0, 1, 2, -1, 0])
    net.loss(net(*batch), targets).backward()
    zero = {n for n, p in net.named_parameters() if p.grad is None or float(p.grad.abs().sum()) == 0}
    assert zero == {f"group_attention.{qk}.{i}.{w}" for qk in ("query", "key") for i in range(3)
                    for w in ("weight", "bias")}
    assert float(net.group_attention.lambdas.grad.abs().min()) > 0
    assert net.temperature_fcs is not None and len(net.temperature_fcs) == 3
    with torch.no_grad():
        for p in net.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad
    net.zero_grad(set_to_none=True)
    net.loss(net(*batch), targets).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or float(p.grad.abs().sum()) == 0]
    assert not missing, f"no gradient after one step: {missing}"


# --------------------------------------------------------------------------- determinism and options


def test_same_seed_gives_identical_outputs() -> None:
    batch = _small_batch()
    targets = torch.tensor([0, 1, 2, -1, 0, 1])
    results = []
    for _ in range(2):
        net = _small_net(seed=7)
        out = net(*batch)
        results.append((out["logits"], net.loss(out, targets)))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])
    other = _small_net(seed=8)(*batch)["logits"]
    assert not torch.equal(results[0][0], other)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"heads": 6}, "model.heads"),
        ({"embed_dim": 20, "heads": 4}, "model.embed_dim"),
        ({"embed_dim": 0}, "model.embed_dim"),
        ({"hsi_tokens": 0}, "model.hsi_tokens"),
        ({"mamba_d_state": True}, "model.mamba_d_state"),
        ({"mamba_sequence": "spiral"}, "model.mamba_sequence"),
        ({"group_attention": "loop"}, "model.group_attention"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        BDGFNet(**SMALL, options=NetOptions(**options))  # type: ignore[arg-type]


def test_bad_shape_arguments_are_refused() -> None:
    with pytest.raises(ConfigError, match="dif_channels"):
        BDGFNet(**{**SMALL, "dif_channels": 0}, options=NetOptions())  # type: ignore[arg-type]
