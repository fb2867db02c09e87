"""The three reference baselines: they learn, their structure is what their docs say,
and their parameter/FLOP counts match a hand count."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

from bench_core import ConfigError, MethodSpec, Scene
from bench_core.testing import tiny_scene
from bench_core.training import Trainer, TrainData
from bench_plugins.methods import fusion_fcn, svm, two_branch_cnn

K = 6


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scene() -> Scene:
    """80x80, 32 HSI bands + 1 LiDAR band, 6 classes, ~300 training pixels."""
    return tiny_scene(
        seed=1, height=80, width=80, hsi_bands=32, aux_bands=1, num_classes=K, train_fraction=0.055
    )


def _train_and_score(spec: MethodSpec, scene: Scene) -> float:
    """Fast profile through the harness Trainer; overall accuracy on the official test pixels."""
    config = spec.resolve("fast")
    labels = np.asarray(scene.labels).reshape(-1)
    train_all = np.flatnonzero(np.asarray(scene.official_train).reshape(-1) > 0)
    test = np.flatnonzero(np.asarray(scene.official_test).reshape(-1) > 0)
    val = train_all[::10]
    train = np.setdiff1d(train_all, val)
    assert 250 <= train.size <= 350  # the size the fast profiles are made for
    inputs = scene.inputs_for(spec.modalities)
    trainer = Trainer(device="cpu", seed=0)
    info = scene.info(spec.modalities, patch_size=spec.effective_patch_size(config.train))
    model = trainer.build(spec, config, info)
    trainer.fit(spec, model, config, TrainData(inputs, train, labels[train] - 1, val, labels[val] - 1, K))
    predicted = trainer.predict(spec, model, config, inputs, test)
    return float(np.mean(predicted == labels[test] - 1))


@pytest.mark.slow
@pytest.mark.parametrize("module", [svm, two_branch_cnn, fusion_fcn], ids=lambda m: m.NAME)
def test_fast_profile_beats_chance_clearly(module, scene: Scene) -> None:
    oa = _train_and_score(module.method_spec(), scene)
    chance = 1.0 / K
    assert oa > chance + 0.5, f"{module.NAME}: OA {oa:.3f} vs chance {chance:.3f}"


def _info(scene: Scene, patch: int = 1):  # type: ignore[no-untyped-def]
    return scene.info(("hsi", "x"), patch_size=patch)


# ----------------------------------------------------------------------------- fusion-fcn


def _branch_layers(branch: nn.Module) -> tuple[list[nn.Conv2d], list[nn.BatchNorm2d], list[nn.AvgPool2d]]:
    mods = list(branch.modules())
    return (
        [m for m in mods if isinstance(m, nn.Conv2d)],
        [m for m in mods if isinstance(m, nn.BatchNorm2d)],
        [m for m in mods if isinstance(m, nn.AvgPool2d)],
    )


def test_fusion_fcn_has_three_conv_and_pool_layers_per_modality() -> None:
    scene = tiny_scene(hsi_bands=10, aux_bands=2, num_classes=4)
    model = fusion_fcn.build({"widths": [8, 12, 16]}, _info(scene))
    assert set(model.branches.keys()) == {"hsi", "x"}
    for name, in_ch in (("hsi", 10), ("x", 2)):
        convs, norms, pools = _branch_layers(model.branches[name])
        assert [c.kernel_size for c in convs] == [(3, 3)] * 3
        assert [(c.in_channels, c.out_channels) for c in convs] == [(in_ch, 8), (8, 12), (12, 16)]
        assert [n.num_features for n in norms] == [8, 12, 16]
        assert [p.kernel_size for p in pools] == [2, 2, 2]
    assert isinstance(model.classifier, nn.Conv2d) and model.classifier.kernel_size == (1, 1)
    assert (model.classifier.in_channels, model.classifier.out_channels) == (16, 4)


def test_fusion_fcn_fuses_by_addition_and_keeps_the_input_size() -> None:
    scene = tiny_scene(hsi_bands=6, num_classes=3)
    torch.manual_seed(0)
    model = fusion_fcn.build({"widths": [4, 4, 4], "pool_stride": 1}, _info(scene)).eval()
    x = {"hsi": torch.randn(2, 6, 13, 13), "x": torch.randn(2, 1, 13, 13)}
    with torch.no_grad():
        hsi_maps = model.branches["hsi"](x["hsi"])
        x_maps = model.branches["x"](x["x"])
        expected = model.classifier(hsi_maps + x_maps)
        logits = model(x)
    assert hsi_maps.shape[-2:] == (13, 13)  # "consistent spatial sizes at each level"
    assert torch.allclose(logits, expected)


@pytest.mark.parametrize("size", [16, 13])
def test_fusion_fcn_strided_pooling_is_upsampled_back(size: int) -> None:
    scene = tiny_scene(hsi_bands=6, num_classes=3)
    model = fusion_fcn.build({"widths": [4, 4, 4], "pool_stride": 2}, _info(scene)).eval()
    x = {"hsi": torch.randn(1, 6, size, size), "x": torch.randn(1, 1, size, size)}
    with torch.no_grad():
        inner = model.branches["hsi"](x["hsi"])
        logits = model(x)
    assert inner.shape[-1] == -(-size // 8)  # three halvings, edges kept
    assert logits.shape == (1, 3, size, size)


def test_fusion_fcn_parameter_count_matches_hand_count() -> None:
    scene = tiny_scene(hsi_bands=144, aux_bands=1, num_classes=15)  # Houston2013's band counts
    model = fusion_fcn.build({"widths": [32, 32, 32]}, _info(scene))
    # Counted layer by layer from the architecture (module docstring, CoMiX's description):
    # per modality three conv3x3 (no bias, BN follows) + BN (weight and bias), widths 32;
    # additive fusion; a 1x1 classifier with bias to 15 classes. Pooling has no parameters.
    hand_layers = [
        41_472,  # HSI conv1: 3 * 3 * 144 * 32
        64,  # HSI BN1: 32 + 32
        9_216,  # HSI conv2: 3 * 3 * 32 * 32
        64,  # HSI BN2
        9_216,  # HSI conv3: 3 * 3 * 32 * 32
        64,  # HSI BN3
        288,  # X conv1: 3 * 3 * 1 * 32
        64,  # X BN1
        9_216,  # X conv2
        64,  # X BN2
        9_216,  # X conv3
        64,  # X BN3
        495,  # classifier: 32 * 15 + 15
    ]
    layers = [
        sum(p.numel() for p in module.parameters(recurse=False))
        for module in model.modules()
        if any(True for _ in module.parameters(recurse=False))
    ]
    assert layers == hand_layers
    assert sum(p.numel() for p in model.parameters()) == sum(hand_layers) == 79_503
    # Same order as the 0.09M CoMiX reports for Fusion-FCN on Houston2013.
    assert 0.05e6 < sum(hand_layers) < 0.13e6


# ----------------------------------------------------------------------------- two-branch CNN


def test_two_branch_cnn_structure_and_output() -> None:
    scene = tiny_scene(hsi_bands=10, aux_bands=2, num_classes=4)
    config = {"spectral_width": 6, "hsi_widths": [8, 12], "x_widths": [5, 7], "dropout": 0.0}
    model = two_branch_cnn.build(config, _info(scene, 7))
    first = model.hsi_branch[0]
    assert isinstance(first, nn.Conv2d) and first.kernel_size == (1, 1) and first.out_channels == 6
    assert isinstance(model.hsi_branch[1], nn.BatchNorm2d)
    hsi_3x3 = [m for m in model.hsi_branch if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    x_convs = [m for m in model.x_branch if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in hsi_3x3] == [8, 12]
    x_layout = [(m.in_channels, m.out_channels, m.kernel_size) for m in x_convs]
    assert x_layout == [(2, 5, (3, 3)), (5, 7, (3, 3))]
    assert model.head.in_features == 12 + 7 and model.head.out_features == 4
    out = model.eval()({"hsi": torch.randn(5, 10, 7, 7), "x": torch.randn(5, 2, 7, 7)})
    assert out.shape == (5, 4)


def test_two_branch_cnn_parameter_count_matches_hand_count() -> None:
    scene = tiny_scene(hsi_bands=10, aux_bands=2, num_classes=4)
    config = {"spectral_width": 6, "hsi_widths": [8, 12], "x_widths": [5, 7]}
    model = two_branch_cnn.build(config, _info(scene, 7))
    hsi = (10 * 6 + 2 * 6) + (9 * 6 * 8 + 2 * 8) + (9 * 8 * 12 + 2 * 12)
    x = (9 * 2 * 5 + 2 * 5) + (9 * 5 * 7 + 2 * 7)
    head = (12 + 7) * 4 + 4
    assert sum(p.numel() for p in model.parameters()) == hsi + x + head


@pytest.mark.parametrize(
    ("config", "field"),
    [({"hsi_widths": []}, "hsi_widths"), ({"x_widths": [4, 0]}, "x_widths"), ({"depth": 3}, "depth")],
)
def test_two_branch_cnn_rejects_bad_config_naming_the_field(config: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        two_branch_cnn.build(config, _info(tiny_scene()))


def test_fusion_fcn_rejects_bad_config_naming_the_field() -> None:
    with pytest.raises(ConfigError, match="widths"):
        fusion_fcn.build({"widths": [8, 8]}, _info(tiny_scene()))
    with pytest.raises(ConfigError, match="pool_stride"):
        fusion_fcn.build({"pool_stride": 3}, _info(tiny_scene()))


# ----------------------------------------------------------------------------- svm


def _fitted_svm(num_classes: int = 4, **config) -> tuple[svm.RbfSvmEstimator, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (num_classes, 5))
    targets = np.repeat(np.arange(num_classes), 30)
    features = centres[targets] + rng.normal(0, 0.8, (targets.size, 5))
    model = svm.build(config, _info(tiny_scene(num_classes=num_classes)))
    return model.fit(features, targets), features, targets


def test_svm_parameter_count_is_the_stored_arrays() -> None:
    model, _, _ = _fitted_svm()
    pipe = model.pipeline_
    svc, scaler = pipe.named_steps["svc"], pipe.named_steps["scale"]
    stored = svc.support_vectors_.size + svc.dual_coef_.size + svc.intercept_.size
    stored += scaler.mean_.size + scaler.scale_.size
    assert model.n_parameters() == stored


def test_svm_flop_count_follows_the_decision_it_describes() -> None:
    model, features, _ = _fitted_svm(num_classes=4)
    pipe = model.pipeline_
    svc = pipe.named_steps["svc"]
    z_train = pipe.named_steps["scale"].transform(features)
    z = z_train[:7]
    gamma = 1.0 / (z_train.shape[1] * z_train.var())  # gamma="scale"
    # The one-vs-one RBF decision the docstring counts, written out with numpy.
    kernel = np.exp(-gamma * ((z[:, None, :] - svc.support_vectors_[None]) ** 2).sum(-1))
    starts = np.concatenate([[0], np.cumsum(svc.n_support_)])
    k = len(svc.classes_)
    decisions, pair = [], 0
    for i in range(k):
        for j in range(i + 1, k):
            si, sj = slice(starts[i], starts[i + 1]), slice(starts[j], starts[j + 1])
            value = kernel[:, si] @ svc.dual_coef_[j - 1, si] + kernel[:, sj] @ svc.dual_coef_[i, sj]
            decisions.append(value + svc.intercept_[pair])
            pair += 1
    assert np.allclose(np.stack(decisions, axis=1), svc.decision_function(z))
    n_sv, f = svc.support_vectors_.shape
    # standardise 2F; per SV: F sub, F square, F add, scale, exp; SV x (K-1) mul-adds;
    # K(K-1) intercepts and votes
    assert model.flops_per_sample() == 2 * f + n_sv * (3 * f + 2) + n_sv * (k - 1) * 2 + k * (k - 1)


def test_svm_is_seeded_and_caps_training_pixels_per_class() -> None:
    a, features, targets = _fitted_svm(max_train_samples=40, seed=3)
    b, _, _ = _fitted_svm(max_train_samples=40, seed=3)
    c, _, _ = _fitted_svm(max_train_samples=40, seed=4)
    assert 36 <= a.pipeline_.named_steps["scale"].n_samples_seen_ <= 40
    assert np.array_equal(a.predict(features), b.predict(features))
    svc_a, svc_b = a.pipeline_.named_steps["svc"], b.pipeline_.named_steps["svc"]
    assert np.array_equal(svc_a.support_vectors_, svc_b.support_vectors_)
    assert set(a.pipeline_.named_steps["svc"].classes_) == set(np.unique(targets))
    assert not np.array_equal(
        a.pipeline_.named_steps["scale"].mean_, c.pipeline_.named_steps["scale"].mean_
    ), "another seed should draw another subsample"


def test_svm_predicts_zero_based_classes_and_rejects_bad_config() -> None:
    model, features, targets = _fitted_svm()
    predicted = model.predict(features)
    assert predicted.dtype == np.int64 and predicted.shape == targets.shape
    assert np.mean(predicted == targets) > 0.8
    with pytest.raises(ConfigError, match="gamma"):
        svm.build({"gamma": -1.0}, _info(tiny_scene()))
    with pytest.raises(ConfigError, match="kernel"):
        svm.build({"kernel": "linear"}, _info(tiny_scene()))
    with pytest.raises(ConfigError, match="not fitted"):
        svm.build({}, _info(tiny_scene())).predict(features)


def test_profiles_are_small_enough_for_a_laptop_and_paper_profiles_cite_sources() -> None:
    for module in (svm, two_branch_cnn, fusion_fcn):
        spec = module.method_spec()
        fast = spec.resolve("fast").train
        assert fast.epochs <= 15, spec.name
        if spec.input_kind != "pixel":
            assert fast.steps_per_epoch is not None and fast.steps_per_epoch <= 20, spec.name
        assert spec.paper and spec.url.startswith("https://") and "MIT" in spec.licence, spec.name
        assert "our choice" in spec.description or "defaults" in spec.description, spec.name
    cnn = two_branch_cnn.method_spec()
    assert cnn.effective_patch_size(cnn.resolve("paper").train) == 11
    assert cnn.effective_patch_size(cnn.resolve("fast").train) == 7
