"""Conformance checks for method plugins (scikit-learn ``check_estimator`` style).

Each check is a plain function ``check_<property>(spec)`` that returns ``None`` when the
method conforms, raises ``AssertionError`` with a message naming the method, what was
seen and what was expected when it does not, and raises :class:`unittest.SkipTest`
(which pytest reports as a skip) with a reason when the property does not apply to
the method's declared capabilities (``input_kind``, ``deterministic``).

Everything runs on the CPU with the method's ``fast`` profile on the tiny scene of
:mod:`bench_core.testing.tiny`. torch and the Trainer are imported inside the checks, so
importing this module is cheap. :mod:`bench_core.testing.suite` runs them.
"""

from __future__ import annotations

import json
import re
import unittest
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import numpy as np

from bench_core.errors import MissingModalityError
from bench_core.scene import AUX, IGNORE_INDEX, Scene, SceneInfo
from bench_core.specs import NAME_RE, REQUIRED_PROFILES, MethodSpec, PixelEstimator, ResolvedConfig, TrainConfig
from bench_core.testing.tiny import labelled_sample, pixel_features, scene_for, split_pixels, windows

if TYPE_CHECKING:
    import torch

Check = Callable[[MethodSpec], None]

_MLFLOW_KEY_RE = re.compile(r"^[\w\-./ ]+$")
_MLFLOW_KEY_MAX = 250
_MLFLOW_VALUE_MAX = 6000


def _fast(spec: MethodSpec) -> ResolvedConfig:
    return spec.resolve("fast")


def _capped(spec: MethodSpec, epochs: int = 1, steps: int = 2) -> ResolvedConfig:
    """The fast profile cut to a handful of optimizer steps, no early stopping."""
    return spec.resolve(
        "fast",
        {
            "train": {
                "epochs": epochs,
                "steps_per_epoch": steps,
                "early_stopping_patience": None,
                "restore_best": False,
            }
        },
    )


def _info(spec: MethodSpec, scene: Scene, config: ResolvedConfig) -> SceneInfo:
    return scene.info(
        spec.modalities, f"method {spec.name!r}", patch_size=spec.effective_patch_size(config.train)
    )


def _built(spec: MethodSpec, scene: Scene, config: ResolvedConfig) -> Any:
    return spec.build(config.model, _info(spec, scene, config))


def _is_module(obj: Any) -> bool:
    import torch

    return isinstance(obj, torch.nn.Module)


def _require_module(spec: MethodSpec, model: Any, what: str) -> None:
    if spec.input_kind == "pixel":
        raise unittest.SkipTest(
            f"method {spec.name!r} is a pixel estimator: {what} applies to torch modules only"
        )
    assert _is_module(model), (
        f"method {spec.name!r} (input_kind {spec.input_kind!r}): build returned "
        f"{type(model).__name__}; expected a torch.nn.Module"
    )


def _logits(output: Any) -> Any:
    if isinstance(output, Mapping):
        assert "logits" in output, (
            f"forward returned a mapping with keys {sorted(output)}; expected a 'logits' key"
        )
        return output["logits"]
    return output


def _loss(model: Any, output: Any, targets: torch.Tensor) -> torch.Tensor:
    """The method's own ``loss(output, targets)`` if it has one, else masked cross-entropy."""
    import torch.nn.functional as F

    custom = getattr(model, "loss", None)
    if callable(custom):
        return custom(output, targets)
    return F.cross_entropy(_logits(output), targets, ignore_index=IGNORE_INDEX)


def _train_step_output(spec: MethodSpec, batch_size: int = 4) -> tuple[Any, Any, torch.Tensor]:
    """Build the fast profile and run one training-mode forward on real tiny-scene windows."""
    import torch

    config = _fast(spec)
    scene = scene_for(spec)
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(0)
        model = _built(spec, scene, config)
    _require_module(spec, model, "a differentiable loss")
    model.train()
    size = spec.effective_patch_size(config.train)
    batch, targets = windows(spec, scene, labelled_sample(scene, batch_size), size)
    return model, model(batch), targets


# ----------------------------------------------------------------------------- the checks


def check_spec_metadata(spec: MethodSpec) -> None:
    """Name, required profiles (each resolvable), provenance and capabilities are declared."""
    assert isinstance(spec, MethodSpec), f"expected a MethodSpec, got {type(spec).__name__}"
    assert isinstance(spec.name, str) and NAME_RE.match(spec.name), (
        f"method name {spec.name!r} is invalid; expected lowercase letters, digits, '_' or '-'"
    )
    missing = [p for p in REQUIRED_PROFILES if p not in spec.profiles]
    assert not missing, (
        f"method {spec.name!r}: profiles {missing} missing; every method needs {list(REQUIRED_PROFILES)}"
    )
    for profile in spec.profiles:
        spec.resolve(profile)  # raises ConfigError naming the bad key
    assert spec.paper.strip() or spec.description.strip(), (
        f"method {spec.name!r}: paper and description are both empty; expected provenance "
        f"(the paper it implements, or a description of what it is) in at least one"
    )
    assert spec.modalities and all(isinstance(m, str) and m for m in spec.modalities), (
        f"method {spec.name!r}: modalities {spec.modalities!r}; expected non-empty names such as ('hsi', 'x')"
    )
    assert spec.search_space is None or callable(spec.search_space), (
        f"method {spec.name!r}: search_space is {type(spec.search_space).__name__}; expected a callable or None"
    )
    assert isinstance(spec.deterministic, bool), (
        f"method {spec.name!r}: deterministic = {spec.deterministic!r}; expected True or False"
    )


def check_build_fast_profile(spec: MethodSpec) -> None:
    """``build`` with the fast profile returns the kind of model ``input_kind`` promises, on the CPU."""
    config = _fast(spec)
    scene = scene_for(spec)
    model = _built(spec, scene, config)
    if spec.input_kind == "pixel":
        assert isinstance(model, PixelEstimator), (
            f"method {spec.name!r} (pixel): build returned {type(model).__name__}; expected an "
            f"estimator with fit(features, targets) and predict(features)"
        )
        return
    _require_module(spec, model, "building")
    params = list(model.parameters())
    assert params, f"method {spec.name!r}: the built module has no parameters; expected a trainable model"
    off_cpu = sorted({str(p.device) for p in params} - {"cpu"})
    assert not off_cpu, (
        f"method {spec.name!r}: build put parameters on {off_cpu}; build on the CPU, "
        f"the Trainer moves the model"
    )
    bad = [name for name, p in model.named_parameters() if not bool(p.detach().isfinite().all())]
    assert not bad, f"method {spec.name!r}: parameters {bad} are not finite right after build"


def check_forward_shapes(spec: MethodSpec) -> None:
    """Patch -> (B, K) logits; dense -> (B, K, s, s); pixel -> predict gives (N,) classes in 0..K-1."""
    import torch

    config = _fast(spec)
    scene = scene_for(spec)
    k = scene.num_classes
    model = _built(spec, scene, config)
    if spec.input_kind == "pixel":
        train, _, test = split_pixels(scene)
        targets = np.asarray(scene.labels).reshape(-1)[train] - 1
        model.fit(pixel_features(spec, scene, train), targets)
        predicted = np.asarray(model.predict(pixel_features(spec, scene, test)))
        assert predicted.shape == (test.size,), (
            f"method {spec.name!r}: predict on {test.size} pixels returned shape {predicted.shape}; "
            f"expected ({test.size},)"
        )
        assert np.issubdtype(predicted.dtype, np.integer), (
            f"method {spec.name!r}: predict returned dtype {predicted.dtype}; expected integer class indices"
        )
        assert predicted.min() >= 0 and predicted.max() < k, (
            f"method {spec.name!r}: predicted classes span {predicted.min()}..{predicted.max()}; "
            f"expected 0..{k - 1}"
        )
        return
    _require_module(spec, model, "forward")
    size = spec.effective_patch_size(config.train)
    batch_size = 3
    batch, _ = windows(spec, scene, labelled_sample(scene, batch_size), size)
    model.eval()
    with torch.no_grad():
        logits = _logits(model(batch))
    expected = (batch_size, k) if spec.input_kind == "patch" else (batch_size, k, size, size)
    assert isinstance(logits, torch.Tensor), (
        f"method {spec.name!r}: forward returned {type(logits).__name__}; expected a tensor of logits"
    )
    assert tuple(logits.shape) == expected, (
        f"method {spec.name!r} ({spec.input_kind}, size {size}, {k} classes): forward returned "
        f"logits of shape {tuple(logits.shape)}; expected {expected}"
    )
    assert logits.dtype.is_floating_point, (
        f"method {spec.name!r}: logits dtype {logits.dtype}; expected floating point"
    )


def check_loss_finite(spec: MethodSpec) -> None:
    """One training-mode forward on real windows gives a finite scalar loss."""
    model, output, targets = _train_step_output(spec)
    loss = _loss(model, output, targets)
    assert loss.dim() == 0, f"method {spec.name!r}: loss has shape {tuple(loss.shape)}; expected a scalar"
    assert bool(loss.isfinite()), f"method {spec.name!r}: loss is {loss.item()}; expected a finite number"


def check_backward_every_param_has_grad(spec: MethodSpec) -> None:
    """After one backward pass every trainable parameter holds a finite gradient (timm)."""
    model, output, targets = _train_step_output(spec)
    _loss(model, output, targets).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, (
        f"method {spec.name!r}: trainable parameters {no_grad} got no gradient; every parameter "
        f"must be used by forward/loss (delete unused ones or set requires_grad=False)"
    )
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not bool(p.grad.isfinite().all())]
    assert not bad, f"method {spec.name!r}: parameters {bad} got non-finite gradients"


def _fit_once(
    spec: MethodSpec, seed: int, epochs: int = 1, steps: int = 2
) -> tuple[Any, np.ndarray, np.ndarray]:
    """Train the capped fast profile on the tiny scene; return (model, test index, predictions)."""
    from bench_core.pipeline import build_and_fit, prepare
    from bench_core.training import Trainer

    config = _capped(spec, epochs=epochs, steps=steps)
    scene = scene_for(spec)
    train, val, test = split_pixels(scene)
    cell = prepare(spec, config, scene, train, val, seed)
    fitted = build_and_fit(cell, Trainer(device="cpu", seed=seed))
    predicted = np.asarray(fitted.trainer.predict(spec, fitted.model, config, cell.inputs, test))
    return fitted.model, test, predicted


def check_deterministic_under_seed(spec: MethodSpec) -> None:
    """Two Trainers with one seed give identical weights and predictions (1 epoch, 2 steps)."""
    if not spec.deterministic:
        raise unittest.SkipTest(f"method {spec.name!r} declares deterministic=False")
    model_a, _, pred_a = _fit_once(spec, seed=123)
    model_b, _, pred_b = _fit_once(spec, seed=123)
    if _is_module(model_a):
        import torch

        state_b = model_b.state_dict()
        differing = [
            name
            for name, value in model_a.state_dict().items()
            if not (value.shape == state_b[name].shape and torch.equal(value, state_b[name]))
        ]
        assert not differing, (
            f"method {spec.name!r}: two runs under seed 123 ended with different {differing[:5]}; "
            f"draw all randomness from torch's seeded generator (no unseeded generators, "
            f"no time-based seeds) or declare deterministic=False"
        )
    assert np.array_equal(pred_a, pred_b), (
        f"method {spec.name!r}: two runs under seed 123 predicted differently on "
        f"{int(np.sum(pred_a != pred_b))} of {pred_a.size} pixels; expected identical predictions "
        f"(or declare deterministic=False)"
    )


def check_rejects_missing_modality(spec: MethodSpec) -> None:
    """A scene lacking a modality the method needs raises MissingModalityError naming it."""
    full = scene_for(spec)
    for needed in spec.modalities:
        if needed == AUX:
            kept = {k: v for k, v in full.modalities.items() if k == "hsi"}
        else:
            kept = {k: v for k, v in full.modalities.items() if k != needed}
        if not kept:  # a scene must hold something; give it an unrelated band
            kept = {"dsm": full.modalities["hsi"][:1]}
        scene = Scene(
            name="tiny-without-" + needed,
            modalities=kept,
            labels=full.labels,
            class_names=full.class_names,
            official_train=full.official_train,
            official_test=full.official_test,
        )
        method = f"method {spec.name!r}"
        calls = (lambda: scene.info(spec.modalities, method), lambda: scene.inputs_for(spec.modalities, method))
        for call in calls:
            try:
                call()
            except MissingModalityError as exc:
                text = str(exc)
                assert repr(needed) in text and spec.name in text, (
                    f"method {spec.name!r}: the error for a scene without {needed!r} reads "
                    f"{text!r}; expected it to name the modality {needed!r} and the method"
                )
            else:
                raise AssertionError(
                    f"method {spec.name!r}: a scene with only {sorted(kept)} was accepted although the "
                    f"method needs {needed!r}; expected MissingModalityError"
                )


def check_flops_and_params_countable(spec: MethodSpec) -> None:
    """count_parameters > 0; flops_per_sample > 0 (None only for estimators without a formula)."""
    from bench_core.timing import count_parameters, flops_per_sample

    config = _fast(spec)
    scene = scene_for(spec)
    model = _built(spec, scene, config)
    if _is_module(model):
        example, _ = windows(spec, scene, labelled_sample(scene, 1), spec.effective_patch_size(config.train))
    else:
        train, _, _ = split_pixels(scene)
        model.fit(pixel_features(spec, scene, train), np.asarray(scene.labels).reshape(-1)[train] - 1)
        example = {}
    total, trainable = count_parameters(model)
    assert isinstance(total, int) and total > 0, (
        f"method {spec.name!r}: count_parameters gave {total!r}; expected a positive integer "
        f"(pixel estimators: define n_parameters())"
    )
    assert 0 <= trainable <= total, f"method {spec.name!r}: {trainable} trainable of {total} parameters"
    flops = flops_per_sample(model, example)
    if flops is None:
        assert not _is_module(model) and not callable(getattr(model, "flops_per_sample", None)), (
            f"method {spec.name!r}: flops_per_sample gave None; expected a positive count (torch "
            f"modules are counted by torch.utils.flop_counter; register formulas for custom ops)"
        )
        return
    assert isinstance(flops, (int, np.integer)) and flops > 0, (
        f"method {spec.name!r}: flops_per_sample gave {flops!r}; expected a positive integer"
    )


def _plain(value: Any) -> Any:
    """Tuples as lists, as JSON and the MLflow params render them."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def check_config_roundtrip(spec: MethodSpec) -> None:
    """Each profile flattens to stable, distinct MLflow params and survives a JSON round trip."""
    for profile in spec.profiles:
        resolved = spec.resolve(profile)
        params = resolved.to_params()
        assert params == spec.resolve(profile).to_params(), (
            f"method {spec.name!r} profile {profile!r}: two resolutions gave different params; "
            f"expected a stable config (no random or time-dependent defaults)"
        )
        for key, value in params.items():
            assert isinstance(key, str) and _MLFLOW_KEY_RE.match(key) and len(key) <= _MLFLOW_KEY_MAX, (
                f"method {spec.name!r} profile {profile!r}: param key {key!r} is not a valid MLflow "
                f"key; expected <= {_MLFLOW_KEY_MAX} characters of letters, digits, _ - . / and space"
            )
            assert isinstance(value, str) and len(value) <= _MLFLOW_VALUE_MAX, (
                f"method {spec.name!r} profile {profile!r}: param {key} = {value!r:.80}; expected a "
                f"string of at most {_MLFLOW_VALUE_MAX} characters"
            )
        n_model = len(_flat_keys(resolved.model))
        expected = len(fields(TrainConfig)) + n_model
        assert len(params) == expected, (
            f"method {spec.name!r} profile {profile!r}: {len(params)} params for "
            f"{expected} config values; model keys collide after flattening "
            f"(e.g. 'a.b' and {{'a': {{'b': ...}}}})"
        )
        try:
            text = json.dumps(resolved.to_dict(), sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise AssertionError(
                f"method {spec.name!r} profile {profile!r}: resolved config is not JSON-serialisable "
                f"({exc}); use numbers, strings, booleans, None, lists and dicts only"
            ) from None
        loaded = json.loads(text)
        assert TrainConfig.from_mapping(loaded["train"]) == resolved.train, (
            f"method {spec.name!r} profile {profile!r}: train config changed through JSON"
        )
        assert loaded["model"] == _plain(resolved.model), (
            f"method {spec.name!r} profile {profile!r}: model config {dict(resolved.model)!r} came back "
            f"from JSON as {loaded['model']!r}"
        )


def _flat_keys(d: Mapping[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for k, v in d.items():
        out.extend(_flat_keys(v, f"{prefix}{k}.") if isinstance(v, Mapping) else [f"{prefix}{k}"])
    return out


def check_trains_one_epoch(spec: MethodSpec) -> None:
    """Trainer.fit runs the fast profile cut to one short epoch; predictions are classes per test pixel."""
    _, test, predicted = _fit_once(spec, seed=0)
    k = scene_for(spec).num_classes
    assert predicted.shape == (test.size,), (
        f"method {spec.name!r}: Trainer.predict on {test.size} pixels returned shape {predicted.shape}; "
        f"expected ({test.size},)"
    )
    assert np.issubdtype(predicted.dtype, np.integer) and predicted.min() >= 0 and predicted.max() < k, (
        f"method {spec.name!r}: predictions {predicted.dtype} in {predicted.min()}..{predicted.max()}; "
        f"expected integer classes in 0..{k - 1}"
    )


def check_method_tags(spec: MethodSpec) -> None:
    """``bench_tags()``, when a model defines it, gives str -> str entries that are valid MLflow tags."""
    from bench_core.pipeline import METHOD_TAG_PREFIX, method_tags

    config = _fast(spec)
    model = _built(spec, scene_for(spec), config)
    if not callable(getattr(model, "bench_tags", None)):
        raise unittest.SkipTest(f"method {spec.name!r} defines no bench_tags()")
    try:
        tags = method_tags(model, _cpu())
    except Exception as exc:  # noqa: BLE001 - reported as a conformance failure
        raise AssertionError(f"method {spec.name!r}: bench_tags() failed: {type(exc).__name__}: {exc}") from None
    for key, value in tags.items():
        assert _MLFLOW_KEY_RE.match(key) and len(key) <= _MLFLOW_KEY_MAX, (
            f"method {spec.name!r}: bench_tags() key {key[len(METHOD_TAG_PREFIX):]!r} makes the tag {key!r}, "
            f"not a valid MLflow key; use letters, digits, _ - . / and space"
        )
        assert len(value) <= 5000, f"method {spec.name!r}: tag {key} has {len(value)} characters; expected <= 5000"


def check_no_decay_parameters_get_zero_weight_decay(spec: MethodSpec) -> None:
    """Parameters flagged ``_no_weight_decay`` land in a weight-decay-0 group of the optimizer."""
    from bench_core.training import make_optimizer, no_decay

    config = _fast(spec)
    model = _built(spec, scene_for(spec), config)
    _require_module(spec, model, "weight decay groups")
    flagged = {name for name, p in model.named_parameters() if p.requires_grad and no_decay(p, config.train)}
    if not flagged:
        raise unittest.SkipTest(f"method {spec.name!r} flags no parameter as _no_weight_decay")
    # A non-zero decay, so that the groups can be told apart.
    train = TrainConfig.from_mapping({**config.train.to_dict(), "weight_decay": 0.05})
    optimizer = make_optimizer(model, train, spec.name)
    decay_of = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    wrong = [name for name, p in model.named_parameters() if name in flagged and decay_of.get(id(p)) != 0.0]
    assert not wrong, f"method {spec.name!r}: flagged parameters {wrong[:5]} got weight decay; expected 0"


def check_dense_validation_matches_scene_prediction(spec: MethodSpec) -> None:
    """Dense validation (only the windows around validation pixels) equals whole-scene prediction there."""
    if spec.input_kind != "dense":
        raise unittest.SkipTest(f"method {spec.name!r} is a {spec.input_kind} method; this is for dense ones")
    from bench_core.pipeline import build_and_fit, prepare
    from bench_core.training import Trainer

    config = _capped(spec, epochs=1, steps=1)
    scene = scene_for(spec)
    train, val, _ = split_pixels(scene)
    cell = prepare(spec, config, scene, train, val, 0)
    fitted = build_and_fit(cell, Trainer(device="cpu", seed=0))
    few = val[:: max(1, val.size // 3)][:3]  # few pixels: few windows, batched unlike the scene's
    scene_map = fitted.trainer.predict_scene(spec, fitted.model, config, cell.inputs).reshape(-1)
    differ = 0
    for chosen in (val, few):
        at_windows = fitted.trainer.predict_dense_at(spec, fitted.model, config, cell.inputs, chosen)
        differ += int(np.sum(at_windows != scene_map[chosen]))
    assert differ == 0, (
        f"method {spec.name!r}: validation on windows predicted {differ} of {val.size + few.size} pixels "
        f"differently from whole-scene prediction; the forward must not depend on the batch's other windows "
        f"(e.g. batch statistics in eval mode)"
    )


def check_trains_with_a_grid_epoch(spec: MethodSpec) -> None:
    """A dense method trains with ``crops_per_epoch = "grid:K"`` (the reference-code epoch)."""
    if spec.input_kind != "dense":
        raise unittest.SkipTest(f"method {spec.name!r} is a {spec.input_kind} method; grid epochs are for dense ones")
    from bench_core.pipeline import build_and_fit, prepare
    from bench_core.training import Trainer

    size = spec.effective_patch_size(_fast(spec).train)
    config = spec.resolve(
        "fast",
        {"train": {"epochs": 1, "steps_per_epoch": 1, "crops_per_epoch": f"grid:{max(1, size // 2)}",
                   "early_stopping_patience": None, "restore_best": False}},
    )
    scene = scene_for(spec)
    train, val, _ = split_pixels(scene)
    fitted = build_and_fit(prepare(spec, config, scene, train, val, 0), Trainer(device="cpu", seed=0))
    assert fitted.fit.steps == 1, f"method {spec.name!r}: a capped grid epoch ran {fitted.fit.steps} steps; expected 1"


def _cpu() -> torch.device:
    import torch

    return torch.device("cpu")


ALL_CHECKS: tuple[Check, ...] = (
    check_spec_metadata,
    check_build_fast_profile,
    check_forward_shapes,
    check_loss_finite,
    check_backward_every_param_has_grad,
    check_deterministic_under_seed,
    check_rejects_missing_modality,
    check_flops_and_params_countable,
    check_config_roundtrip,
    check_trains_one_epoch,
    check_method_tags,
    check_no_decay_parameters_get_zero_weight_decay,
    check_dense_validation_matches_scene_prediction,
    check_trains_with_a_grid_epoch,
)


__all__ = [
    "ALL_CHECKS",
    "Check",
    "check_backward_every_param_has_grad",
    "check_build_fast_profile",
    "check_config_roundtrip",
    "check_dense_validation_matches_scene_prediction",
    "check_deterministic_under_seed",
    "check_flops_and_params_countable",
    "check_forward_shapes",
    "check_loss_finite",
    "check_method_tags",
    "check_no_decay_parameters_get_zero_weight_decay",
    "check_rejects_missing_modality",
    "check_spec_metadata",
    "check_trains_one_epoch",
    "check_trains_with_a_grid_epoch",
]
