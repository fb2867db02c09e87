"""The conformance suite itself: it passes conforming toy methods and catches broken ones."""

from __future__ import annotations

import json
import unittest
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from bench_core import ConfigError, MethodSpec, SceneInfo, hookimpl, load_plugins
from bench_core.testing import (
    ALL_CHECKS,
    check_backward_every_param_has_grad,
    check_config_roundtrip,
    check_dense_validation_matches_scene_prediction,
    check_deterministic_under_seed,
    check_forward_shapes,
    check_loss_finite,
    check_method,
    check_method_tags,
    check_name,
    check_no_decay_parameters_get_zero_weight_decay,
    check_rejects_missing_modality,
    check_spec_metadata,
    method_checks,
    parametrize_with_method_checks,
    tiny_scene,
)

pytest_plugins = ["pytester"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------------- toy methods


class CentreLinear(nn.Module):
    """Patch method: a linear layer on the centre pixel's stacked spectra."""

    def __init__(self, config: Mapping[str, Any], info: SceneInfo) -> None:
        super().__init__()
        self.linear = nn.Linear(info.bands["hsi"] + info.bands["x"], info.num_classes)
        self.temperature = nn.Parameter(torch.ones(1))
        self.temperature._no_weight_decay = True  # type: ignore[attr-defined]

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        c = inputs["hsi"].shape[-1] // 2
        return self.linear(torch.cat([inputs["hsi"], inputs["x"]], dim=1)[:, :, c, c]) * self.temperature

    def bench_tags(self) -> dict[str, str]:
        return {"variant": "centre-linear"}


class DropsAClass(CentreLinear):
    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return super().forward(inputs)[:, :-1]


class DeadParameter(CentreLinear):
    def __init__(self, config: Mapping[str, Any], info: SceneInfo) -> None:
        super().__init__(config, info)
        self.unused = nn.Linear(4, 4)


class IgnoresSeed(CentreLinear):
    def __init__(self, config: Mapping[str, Any], info: SceneInfo) -> None:
        super().__init__(config, info)
        generator = torch.Generator()
        generator.seed()  # fresh OS entropy: the harness seed never reaches these weights
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(self.linear.weight.shape, generator=generator))


class DenseConv(nn.Module):
    """Dense method: a 1x1 convolution per pixel."""

    def __init__(self, config: Mapping[str, Any], info: SceneInfo) -> None:
        super().__init__()
        self.conv = nn.Conv2d(info.bands["hsi"] + info.bands["x"], info.num_classes, 1)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.conv(torch.cat([inputs["hsi"], inputs["x"]], dim=1))

    def bench_tags(self) -> dict[str, str]:
        return {"variant": "dense-1x1"}


class DensePooled(DenseConv):
    def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return super().forward(inputs).mean(dim=(2, 3))  # (B, K): not a dense output


class NearestCentroid:
    """Pixel method: nearest class mean, with honest counts."""

    def __init__(self, config: Mapping[str, Any], info: SceneInfo) -> None:
        self.offset = int(config.get("offset", 0))

    def fit(self, features: np.ndarray, targets: np.ndarray) -> NearestCentroid:
        self.classes_ = np.unique(targets)
        self.centres_ = np.stack([features[targets == k].mean(0) for k in self.classes_])
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        dist = ((features[:, None, :] - self.centres_[None]) ** 2).sum(-1)
        return self.classes_[dist.argmin(1)].astype(np.int64) + self.offset

    def n_parameters(self) -> int:
        return int(self.centres_.size)

    def flops_per_sample(self) -> int:
        return 3 * int(self.centres_.size)

    def bench_tags(self) -> dict[str, str]:
        return {"variant": "nearest-centroid"}


def toy(name: str = "toy", build: Any = CentreLinear, **overrides: Any) -> MethodSpec:
    fields: dict[str, Any] = {
        "name": name,
        "build": build,
        "input_kind": "patch",
        "patch_size": 3,
        "modalities": ("hsi", "x"),
        "profiles": {
            "paper": {"train": {"epochs": 20}, "model": {"width": 8}},
            "fast": {"train": {"epochs": 2, "batch_size": 16, "lr": 0.05}, "model": {"width": 4}},
        },
        "paper": "a toy for testing the conformance suite",
        "licence": "MIT",
    }
    fields.update(overrides)
    return MethodSpec(**fields)


# ----------------------------------------------------------------------------- good methods pass


@pytest.mark.parametrize(
    "spec",
    [
        toy(),
        toy("toy-dense", DenseConv, input_kind="dense", patch_size=9),
        toy("toy-pixel", NearestCentroid, input_kind="pixel", patch_size=1),
    ],
    ids=lambda s: s.name,
)
def test_conforming_toy_methods_pass_every_applicable_check(spec: MethodSpec) -> None:
    report = check_method(spec)
    assert set(report) == {check_name(c) for c in ALL_CHECKS}
    failed = {k: v for k, v in report.items() if not (v == "passed" or v.startswith("skipped: "))}
    assert not failed
    skipped = sorted(k for k, v in report.items() if v.startswith("skipped: "))
    dense_only = ["check_dense_validation_matches_scene_prediction", "check_trains_with_a_grid_epoch"]
    if spec.input_kind == "pixel":
        assert skipped == sorted(
            ["check_backward_every_param_has_grad", "check_loss_finite",
             "check_no_decay_parameters_get_zero_weight_decay", *dense_only]
        )
        assert "pixel estimator" in report["check_loss_finite"]
    elif spec.input_kind == "patch":
        assert skipped == dense_only
    else:
        assert skipped == ["check_no_decay_parameters_get_zero_weight_decay"]  # DenseConv flags none


# ----------------------------------------------------------------------------- broken methods fail


def test_tags_that_are_not_strings_fail_the_tag_check() -> None:
    class NumericTags(CentreLinear):
        def bench_tags(self) -> dict[str, str]:
            return {"blocks": 9}  # type: ignore[dict-item]

    with pytest.raises(AssertionError, match=r"bench_tags\(\) failed.*'blocks': 9.*str values"):
        check_method_tags(toy("numeric-tags", NumericTags))

    class BadKey(CentreLinear):
        def bench_tags(self) -> dict[str, str]:
            return {"clip weights?": "x"}

    with pytest.raises(AssertionError, match="not a valid MLflow key"):
        check_method_tags(toy("bad-key", BadKey))


def test_an_optimizer_that_decays_flagged_parameters_fails_the_no_decay_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import bench_core.training as training

    def one_group(model: nn.Module, train: Any, method: str = "") -> torch.optim.Optimizer:
        return torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)

    check_no_decay_parameters_get_zero_weight_decay(toy())
    monkeypatch.setattr(training, "make_optimizer", one_group)
    with pytest.raises(AssertionError, match=r"flagged parameters \['temperature'\] got weight decay"):
        check_no_decay_parameters_get_zero_weight_decay(toy())


def test_dense_output_that_depends_on_the_other_windows_fails_the_validation_check() -> None:
    class BatchCentred(DenseConv):
        def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
            out = super().forward(inputs)
            return out - 3.0 * out.mean(dim=0, keepdim=True)  # leaks across the batch's windows

    spec = toy("batch-centred", BatchCentred, input_kind="dense", patch_size=9)
    check_dense_validation_matches_scene_prediction(toy("toy-dense", DenseConv, input_kind="dense", patch_size=9))
    with pytest.raises(AssertionError, match="differently from whole-scene prediction"):
        check_dense_validation_matches_scene_prediction(spec)


def test_wrong_output_shape_fails_the_forward_check() -> None:
    with pytest.raises(AssertionError, match=r"shape \(3, 2\); expected \(3, 3\)"):
        check_forward_shapes(toy("drops-a-class", DropsAClass))


def test_dense_method_returning_per_crop_logits_fails_the_forward_check() -> None:
    with pytest.raises(AssertionError, match=r"expected \(3, 3, 9, 9\)"):
        check_forward_shapes(toy("pooled", DensePooled, input_kind="dense", patch_size=9))


def test_pixel_predictions_out_of_range_fail_the_forward_check() -> None:
    spec = toy(
        "off-by-one",
        NearestCentroid,
        input_kind="pixel",
        patch_size=1,
        profiles={"paper": {"model": {"offset": 1}}, "fast": {"model": {"offset": 1}}},
    )
    with pytest.raises(AssertionError, match=r"expected 0\.\.2"):
        check_forward_shapes(spec)


def test_dead_parameter_fails_the_gradient_check_naming_it() -> None:
    spec = toy("dead", DeadParameter)
    check_loss_finite(spec)  # the loss itself is fine
    with pytest.raises(AssertionError, match=r"unused\.weight.*no gradient"):
        check_backward_every_param_has_grad(spec)


def test_non_finite_loss_is_caught() -> None:
    class NaNLogits(CentreLinear):
        def forward(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
            return super().forward(inputs) * float("nan")

    with pytest.raises(AssertionError, match="expected a finite number"):
        check_loss_finite(toy("nan", NaNLogits))


def test_method_ignoring_the_seed_fails_the_determinism_check() -> None:
    expected = r"two runs under seed 123 ended with different \[.*'linear\.weight'"
    with pytest.raises(AssertionError, match=expected):
        check_deterministic_under_seed(toy("unseeded", IgnoresSeed))


def test_determinism_check_is_skipped_with_a_reason_when_not_declared() -> None:
    with pytest.raises(unittest.SkipTest, match="declares deterministic=False"):
        check_deterministic_under_seed(toy("unseeded", IgnoresSeed, deterministic=False))


def test_metadata_check_needs_provenance() -> None:
    with pytest.raises(AssertionError, match="paper and description are both empty"):
        check_spec_metadata(toy(paper="", description=""))
    check_spec_metadata(toy(paper="", description="what it is"))


def test_config_roundtrip_catches_values_json_cannot_carry() -> None:
    profiles = {"paper": {"model": {"bands": {1, 2}}}, "fast": {"model": {"bands": {1, 2}}}}
    with pytest.raises(AssertionError, match="not JSON-serialisable"):
        check_config_roundtrip(toy(profiles=profiles))


def test_config_roundtrip_catches_model_keys_that_collide_when_flattened() -> None:
    model = {"head.width": 4, "head": {"width": 8}}
    with pytest.raises(AssertionError, match="collide"):
        check_config_roundtrip(toy(profiles={"paper": {"model": model}, "fast": {"model": model}}))


def test_config_roundtrip_accepts_tuples_as_lists() -> None:
    model = {"widths": (4, 8), "act": "relu", "extra": {"p": 0.1, "on": True, "none": None}}
    check_config_roundtrip(toy(profiles={"paper": {"model": model}, "fast": {"model": model}}))


def test_missing_modality_check_names_each_needed_modality() -> None:
    check_rejects_missing_modality(toy())
    check_rejects_missing_modality(toy("needs-sar", modalities=("hsi", "sar")))


# ----------------------------------------------------------------------------- reports, xfail, ids


def test_expected_failures_are_reported_as_xfail_with_their_reason() -> None:
    report = check_method(
        toy("drops-a-class", DropsAClass),
        expected_failed_checks={
            "check_forward_shapes": "drops the last class on purpose",
            "check_trains_one_epoch": "the Trainer rejects the logits too",
            "check_rejects_missing_modality": "not expected to fail",
        },
    )
    assert report["check_forward_shapes"] == "xfail: drops the last class on purpose"
    assert report["check_trains_one_epoch"] == "xfail: the Trainer rejects the logits too"
    # A listed check that passes is a failure, so the list cannot go stale.
    stale = report["check_rejects_missing_modality"]
    assert stale.startswith("failed: expected to fail (not expected to fail)")
    assert report["check_spec_metadata"] == "passed"


def test_unexpected_failures_are_reported_with_their_message() -> None:
    report = check_method(toy("dead", DeadParameter))
    grad = report["check_backward_every_param_has_grad"]
    assert grad.startswith("failed: method 'dead': trainable parameters")
    assert report["check_loss_finite"] == "passed"


def test_expected_failed_checks_must_name_real_checks_with_reasons() -> None:
    with pytest.raises(ConfigError, match="check_forward_shape"):
        check_method(toy(), expected_failed_checks={"check_forward_shape": "typo"})
    with pytest.raises(ConfigError, match="non-empty reason"):
        check_method(toy(), expected_failed_checks={"check_forward_shapes": " "})


def test_method_checks_yields_every_check_once_for_the_spec() -> None:
    spec = toy()
    pairs = list(method_checks(spec))
    assert all(s is spec for s, _ in pairs)
    names = [check_name(c) for _, c in pairs]
    assert len(names) == len(set(names)) == len(ALL_CHECKS)
    assert all(n.startswith("check_") for n in names)


def test_parametrize_gives_one_item_per_method_and_check_with_xfail_marks() -> None:
    specs = [toy("alpha"), toy("beta")]
    mark = parametrize_with_method_checks(
        specs, expected_failed_checks=lambda s: {"check_loss_finite": "why"} if s.name == "beta" else {}
    ).mark
    assert mark.name == "parametrize" and mark.args[0] == "method, check"
    params = mark.args[1]
    ids = [p.id for p in params]
    assert len(ids) == 2 * len(ALL_CHECKS)
    assert "alpha-check_forward_shapes" in ids and "beta-check_trains_one_epoch" in ids
    marked = {p.id: p.marks for p in params if p.marks}
    assert list(marked) == ["beta-check_loss_finite"]
    (xfail,) = marked["beta-check_loss_finite"]
    assert xfail.name == "xfail" and xfail.kwargs == {"reason": "why", "strict": True}


class _ToyPlugin:
    """An in-process plugin object, as a third party's module would be."""

    __name__ = "toy_plugin"

    @staticmethod
    @hookimpl
    def bench_register_methods(register: Any) -> None:
        register(toy("toy-registered"))


def test_names_are_resolved_through_the_plugin_host() -> None:
    host = load_plugins(entry_points=False, extra={"toy": _ToyPlugin()})
    report = check_method("toy-registered", host=host)
    assert report["check_spec_metadata"] == "passed"


# ----------------------------------------------------------------------------- tiny_scene


def test_tiny_scene_is_seeded_complete_and_split() -> None:
    a, b, c = tiny_scene(seed=5), tiny_scene(seed=5), tiny_scene(seed=6)
    assert np.array_equal(a.modalities["hsi"], b.modalities["hsi"])
    assert not np.array_equal(a.modalities["hsi"], c.modalities["hsi"])
    assert a.bands == {"hsi": 8, "lidar": 1} and a.shape == (24, 24) and a.num_classes == 3
    train, test = np.asarray(a.official_train), np.asarray(a.official_test)
    labels = np.asarray(a.labels)
    assert not np.any((train > 0) & (test > 0))
    assert np.array_equal(np.where(train > 0, train, test), labels)
    for k in (1, 2, 3):
        assert np.sum(train == k) >= 2 and np.sum(test == k) >= 1
    assert np.sum(labels == 0) > 0


def test_tiny_scene_rejects_degenerate_sizes_naming_them() -> None:
    with pytest.raises(ConfigError, match="num_classes=1"):
        tiny_scene(num_classes=1)
    with pytest.raises(ConfigError, match="height=2"):
        tiny_scene(height=2)


def test_tiny_scene_is_learnable_from_either_modality() -> None:
    scene = tiny_scene(seed=2, num_classes=4, hsi_bands=6)
    labels = np.asarray(scene.labels).reshape(-1)
    train = np.flatnonzero(np.asarray(scene.official_train).reshape(-1) > 0)
    test = np.flatnonzero(np.asarray(scene.official_test).reshape(-1) > 0)
    for name in ("hsi", "lidar"):
        feats = scene.modalities[name].reshape(scene.bands[name], -1).T
        model = NearestCentroid({}, None).fit(feats[train], labels[train])  # type: ignore[arg-type]
        oa = np.mean(model.predict(feats[test]) == labels[test])
        assert oa > 0.6, (name, oa)


# ----------------------------------------------------------------------------- fixtures


def test_fixtures_are_usable_by_plugin_authors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os
        pytest_plugins = ["bench_core.testing.fixtures"]

        def test_fixtures(tiny_scene, plugin_host, tmp_bench_home):
            assert tiny_scene.bands == {"hsi": 8, "lidar": 1}
            assert "svm" in plugin_host.methods
            assert os.environ["BENCH_HOME"] == str(tmp_bench_home)
            assert os.environ["MLFLOW_TRACKING_URI"].endswith("mlflow.db")
            assert os.getcwd() == str(tmp_bench_home.parent)
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_checks_module_imports_neither_torch_nor_pytest_eagerly() -> None:
    import subprocess
    import sys

    code = (
        "import sys, json, bench_core.testing; "
        "print(json.dumps(['torch' in sys.modules, 'pytest' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [False, False]
