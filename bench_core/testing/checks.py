"""Conformance checks for method plugins (scikit-learn ``check_estimator`` style).

Each check is a plain function ``check_<property>(spec)`` that returns ``None`` when the
method conforms, raises ``AssertionError`` with a message naming the method, what was
seen and what was expected when it does not, and raises :class:`unittest.SkipTest`
(which pytest reports as a skip) with a reason when the property does not apply to
the method's declared capabilities (``input_kind``, ``deterministic``).

Everything runs on the CPU with the method's ``fast`` profile on :func:`tiny_scene`.
torch and the Trainer are imported inside the checks, so importing this module is cheap.
"""

from __future__ import annotations

import json
import re
import unittest
from collections.abc import Callable, Iterator, Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import numpy as np

from bench_core.errors import ConfigError, MissingModalityError
from bench_core.scene import AUX, IGNORE_INDEX, Scene, SceneInfo
from bench_core.specs import NAME_RE, REQUIRED_PROFILES, MethodSpec, PixelEstimator, ResolvedConfig, TrainConfig

if TYPE_CHECKING:
    import torch

Check = Callable[[MethodSpec], None]

_DEFAULT_AUX = ("lidar",)
_MLFLOW_KEY_RE = re.compile(r"^[\w\-./ ]+$")
_MLFLOW_KEY_MAX = 250
_MLFLOW_VALUE_MAX = 6000


# ----------------------------------------------------------------------------- the tiny scene


def tiny_scene(
    seed: int = 0,
    height: int = 24,
    width: int = 24,
    hsi_bands: int = 8,
    aux_bands: int = 1,
    num_classes: int = 3,
    *,
    aux_modalities: tuple[str, ...] = _DEFAULT_AUX,
    unlabelled_fraction: float = 0.1,
    train_fraction: float = 0.3,
) -> Scene:
    """A small random but learnable multimodal scene with official train/test maps.

    Classes fill spatially coherent Voronoi regions; each class has its own HSI
    spectrum and its own height in every auxiliary modality, plus Gaussian noise, so
    a working method beats chance within a few optimizer steps. ``official_train`` /
    ``official_test`` are label maps (0 outside the split) holding ``train_fraction``
    of each class's labelled pixels (at least 2) and the rest.
    """
    if height < 4 or width < 4 or num_classes < 2 or hsi_bands < 1 or aux_bands < 1:
        raise ConfigError(
            f"tiny_scene(height={height}, width={width}, num_classes={num_classes}, "
            f"hsi_bands={hsi_bands}, aux_bands={aux_bands}): expected height, width >= 4, "
            f"num_classes >= 2 and at least one band per modality"
        )
    rng = np.random.default_rng(seed)
    n_sites = 2 * num_classes
    site_y = rng.uniform(0, height, n_sites)
    site_x = rng.uniform(0, width, n_sites)
    yy, xx = np.mgrid[0:height, 0:width]
    dist = (yy[..., None] - site_y) ** 2 + (xx[..., None] - site_x) ** 2
    classes = (np.arange(n_sites) % num_classes)[dist.argmin(axis=-1)]
    # Guarantee every class a 2x2 block at its first site, however the regions fell.
    for k in range(num_classes):
        y0 = min(int(site_y[k]), height - 2)
        x0 = min(int(site_x[k]), width - 2)
        classes[y0 : y0 + 2, x0 : x0 + 2] = k

    labels = (classes + 1).astype(np.int64)
    unlabelled = rng.random((height, width)) < unlabelled_fraction
    for k in range(num_classes):  # keep >= 4 labelled pixels per class
        members = np.argwhere(classes == k)
        keep = members[: min(4, len(members))]
        unlabelled[keep[:, 0], keep[:, 1]] = False
    labels[unlabelled] = 0

    # Smooth class spectra (a random walk), so bands are correlated as in real HSI.
    spectra = np.cumsum(rng.normal(0, 0.15, (num_classes, hsi_bands)), axis=1) + rng.uniform(
        0.3, 0.7, (num_classes, 1)
    )
    hsi = spectra[classes].transpose(2, 0, 1) + rng.normal(0, 0.05, (hsi_bands, height, width))
    modalities: dict[str, np.ndarray] = {"hsi": hsi.astype(np.float32)}
    for name in aux_modalities:
        heights = rng.permutation(np.linspace(0.0, 1.0, num_classes))
        aux = heights[classes][None] + rng.normal(0, 0.1, (aux_bands, height, width))
        modalities[name] = aux.astype(np.float32)

    train = np.zeros_like(labels)
    test = np.zeros_like(labels)
    flat = labels.reshape(-1)
    for k in range(1, num_classes + 1):
        members = rng.permutation(np.flatnonzero(flat == k))
        n_train = max(2, int(round(train_fraction * members.size)))
        train.reshape(-1)[members[:n_train]] = k
        test.reshape(-1)[members[n_train:]] = k
    return Scene(
        name="tiny",
        modalities=modalities,
        labels=labels,
        class_names=tuple(f"class_{k}" for k in range(1, num_classes + 1)),
        official_train=train,
        official_test=test,
        metadata={"source": f"bench_core.testing.tiny_scene(seed={seed})"},
    )


def _scene_for(spec: MethodSpec, seed: int = 0) -> Scene:
    """A tiny scene holding every modality the method names, big enough for its crops."""
    named = tuple(m for m in spec.modalities if m not in ("hsi", AUX))
    side = 24
    if spec.input_kind == "dense":
        side = max(side, spec.effective_patch_size(_fast(spec).train) + 1)
    return tiny_scene(seed=seed, height=side, width=side, aux_modalities=named or _DEFAULT_AUX)


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


# ----------------------------------------------------------------------------- sample data


def _split(scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) flat indices from the official maps; every 5th train pixel validates."""
    assert scene.official_train is not None and scene.official_test is not None
    train_all = np.flatnonzero(np.asarray(scene.official_train).reshape(-1) > 0)
    val = train_all[::5]
    train = np.setdiff1d(train_all, val)
    test = np.flatnonzero(np.asarray(scene.official_test).reshape(-1) > 0)
    return train, val, test


def _pixel_features(spec: MethodSpec, scene: Scene, index: np.ndarray) -> np.ndarray:
    """(N, F) spectra: the requested inputs stacked along bands, as pixel methods get them."""
    inputs = scene.inputs_for(spec.modalities, f"method {spec.name!r}")
    stacked = np.concatenate([inputs[m] for m in spec.modalities], axis=0)
    return stacked.reshape(stacked.shape[0], -1)[:, index].T.astype(np.float32)


def _windows(
    spec: MethodSpec, scene: Scene, index: np.ndarray, size: int
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-input (B, C, size, size) windows centred on ``index`` and their targets.

    Targets are the centre pixels' classes (patch methods, (B,)) or the windows' label
    maps (dense methods, (B, size, size)), 0-based with IGNORE_INDEX outside labels.
    """
    import torch

    r = size // 2
    width = scene.shape[1]
    rows, cols = np.divmod(index, width)
    inputs = scene.inputs_for(spec.modalities, f"method {spec.name!r}")
    batch: dict[str, torch.Tensor] = {}
    for name, array in inputs.items():
        padded = np.pad(array, ((0, 0), (r, r), (r, r)))
        wins = np.stack([padded[:, y : y + size, x : x + size] for y, x in zip(rows, cols)])
        batch[name] = torch.from_numpy(np.ascontiguousarray(wins, dtype=np.float32))
    labels = np.pad(np.asarray(scene.labels, dtype=np.int64), r)
    maps = np.stack([labels[y : y + size, x : x + size] for y, x in zip(rows, cols)]) - 1
    maps[maps < 0] = IGNORE_INDEX
    target = maps if spec.input_kind == "dense" else maps[:, r, r]
    return batch, torch.from_numpy(np.ascontiguousarray(target))


def _labelled_sample(scene: Scene, n: int) -> np.ndarray:
    train, _, _ = _split(scene)
    return train[np.linspace(0, train.size - 1, num=min(n, train.size)).astype(int)]


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
    scene = _scene_for(spec)
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(0)
        model = _built(spec, scene, config)
    _require_module(spec, model, "a differentiable loss")
    model.train()
    size = spec.effective_patch_size(config.train)
    batch, targets = _windows(spec, scene, _labelled_sample(scene, batch_size), size)
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
    scene = _scene_for(spec)
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
    scene = _scene_for(spec)
    k = scene.num_classes
    model = _built(spec, scene, config)
    if spec.input_kind == "pixel":
        train, _, test = _split(scene)
        targets = np.asarray(scene.labels).reshape(-1)[train] - 1
        model.fit(_pixel_features(spec, scene, train), targets)
        predicted = np.asarray(model.predict(_pixel_features(spec, scene, test)))
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
    batch, _ = _windows(spec, scene, _labelled_sample(scene, batch_size), size)
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
    scene = _scene_for(spec)
    train, val, test = _split(scene)
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
    full = _scene_for(spec)
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
    scene = _scene_for(spec)
    model = _built(spec, scene, config)
    if _is_module(model):
        example, _ = _windows(spec, scene, _labelled_sample(scene, 1), spec.effective_patch_size(config.train))
    else:
        train, _, _ = _split(scene)
        model.fit(_pixel_features(spec, scene, train), np.asarray(scene.labels).reshape(-1)[train] - 1)
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
    k = _scene_for(spec).num_classes
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
    model = _built(spec, _scene_for(spec), config)
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
    model = _built(spec, _scene_for(spec), config)
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
    scene = _scene_for(spec)
    train, val, _ = _split(scene)
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
    scene = _scene_for(spec)
    train, val, _ = _split(scene)
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


# ----------------------------------------------------------------------------- running them

ExpectedFailures = Mapping[str, str] | Callable[[MethodSpec], Mapping[str, str]] | None


def check_name(check: Check) -> str:
    """``check_<property>`` of a check function (or of the function a partial wraps)."""
    return getattr(check, "__name__", None) or getattr(getattr(check, "func", None), "__name__", repr(check))


def method_checks(spec: MethodSpec) -> Iterator[tuple[MethodSpec, Check]]:
    """Yield ``(spec, check)`` for every conformance check, in a fixed order."""
    for check in ALL_CHECKS:
        yield spec, check


def _resolve_spec(spec_or_name: MethodSpec | str, host: Any = None) -> MethodSpec:
    if isinstance(spec_or_name, MethodSpec):
        return spec_or_name
    if host is None:
        from bench_core.plugins import load_plugins

        host = load_plugins()
    return host.methods.get(spec_or_name)


def _expected_for(spec: MethodSpec, expected_failed_checks: ExpectedFailures) -> dict[str, str]:
    if expected_failed_checks is None:
        return {}
    table = expected_failed_checks(spec) if callable(expected_failed_checks) else expected_failed_checks
    known = {check_name(c) for c in ALL_CHECKS}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"expected_failed_checks for method {spec.name!r} names unknown check(s) {unknown}; "
            f"expected some of {sorted(known)}"
        )
    for name, reason in table.items():
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigError(
                f"expected_failed_checks[{name!r}] for method {spec.name!r} = {reason!r}; "
                f"expected a non-empty reason"
            )
    return dict(table)


def check_method(
    spec_or_name: MethodSpec | str,
    host: Any = None,
    expected_failed_checks: ExpectedFailures = None,
) -> dict[str, str]:
    """Run every check on one method and report each outcome.

    Args:
        spec_or_name: a :class:`MethodSpec`, or a registered method name (looked up in
            ``host.methods``, or in a fresh :func:`bench_core.load_plugins` host).
        host: a :class:`bench_core.PluginHost` to resolve names with.
        expected_failed_checks: ``{check_name: reason}`` (or ``spec -> {...}``) of
            known failures.

    Returns:
        ``{check_name: "passed" | "failed: <msg>" | "skipped: <reason>" | "xfail: <reason>"}``.
        A check listed as expected to fail that passes is reported as failed, so the
        list cannot go stale.
    """
    spec = _resolve_spec(spec_or_name, host)
    expected = _expected_for(spec, expected_failed_checks)
    report: dict[str, str] = {}
    for _, check in method_checks(spec):
        name = check_name(check)
        try:
            check(spec)
        except unittest.SkipTest as skip:
            report[name] = f"skipped: {skip}"
            continue
        except Exception as exc:  # a check's failure is data here, not a crash
            msg = str(exc) if isinstance(exc, AssertionError) else f"{type(exc).__name__}: {exc}"
            report[name] = f"xfail: {expected[name]}" if name in expected else f"failed: {msg}"
            continue
        if name in expected:
            report[name] = (
                f"failed: expected to fail ({expected[name]}) but passed; "
                f"remove it from expected_failed_checks"
            )
        else:
            report[name] = "passed"
    return report


def parametrize_with_method_checks(
    names_or_specs: Any,
    expected_failed_checks: ExpectedFailures = None,
) -> Any:
    """A ``pytest.mark.parametrize("method, check", ...)`` with one item per (method, check).

    Item ids are ``<method>-check_<property>``, so ``pytest -k check_forward_shapes``
    selects one property across methods. Names are resolved through
    :func:`bench_core.load_plugins` at collection time. Checks in
    ``expected_failed_checks`` (``{check_name: reason}`` for every method, or
    ``spec -> {check_name: reason}``) are marked ``xfail(strict=True)`` with the reason.

    Use it as::

        @parametrize_with_method_checks(["my-method"])
        def test_conformance(method, check):
            check(method)
    """
    import pytest

    if isinstance(names_or_specs, (str, MethodSpec)):  # one method given bare, not its characters
        names_or_specs = [names_or_specs]
    host = None
    specs: list[MethodSpec] = []
    for item in names_or_specs:
        if not isinstance(item, MethodSpec) and host is None:
            from bench_core.plugins import load_plugins

            host = load_plugins()
        specs.append(_resolve_spec(item, host))
    params = []
    for spec in specs:
        expected = _expected_for(spec, expected_failed_checks)
        for _, check in method_checks(spec):
            name = check_name(check)
            marks = [pytest.mark.xfail(reason=expected[name], strict=True)] if name in expected else []
            params.append(pytest.param(spec, check, id=f"{spec.name}-{name}", marks=marks))
    return pytest.mark.parametrize("method, check", params)


__all__ = [
    "ALL_CHECKS",
    "Check",
    "check_backward_every_param_has_grad",
    "check_build_fast_profile",
    "check_config_roundtrip",
    "check_deterministic_under_seed",
    "check_flops_and_params_countable",
    "check_forward_shapes",
    "check_loss_finite",
    "check_method",
    "check_name",
    "check_rejects_missing_modality",
    "check_spec_metadata",
    "check_trains_one_epoch",
    "method_checks",
    "parametrize_with_method_checks",
    "tiny_scene",
]
