"""bench_core.config: model options checked against a dataclass (model_options, option), unknown keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pytest

from bench_core import ConfigError, TrainConfig, model_options, option
from bench_core.config import reject_unknown_keys

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True)
class Probe:
    """One field of every supported kind."""

    width: int = option(64, ge=1, hint="channels, 64 in the paper")
    blocks: int = option(0, ge=0)
    dropout: float = option(0.1, ge=0, lt=1)
    ratio: float = option(4.0, gt=0)
    scale: float = option(1.0, gt=0, le=1)
    norm: bool = True
    name: str = "probe"
    mode: Literal["a", "b"] = "a"
    stride: Literal[1, 2] = option(1, expect="1 (same size) or 2 (halved)")
    widths: tuple[int, ...] = option((8, 16), ge=1)
    kernels: tuple[int, ...] = option((3, 3, 7, 7), ge=1, length=4, hint="one per stage")
    beta: tuple[float, float] = option((1e-4, 0.02), gt=0, lt=1)
    seed: int | None = option(None, ge=0, hint="null: the cell's seed")
    gamma: float | Literal["scale"] = option("scale", gt=0)
    arch: str | Mapping[str, Any] = "small"
    anything: Any = None
    backend: str = "auto"


def _check(config: Mapping[str, Any], **kwargs: Any) -> Probe:
    return model_options(Probe, config, method="probe", **kwargs)


def test_defaults_fill_the_keys_left_out_and_values_keep_their_type() -> None:
    assert _check({}) == Probe()
    options = _check({"width": 32, "ratio": 2, "widths": [4, 8, 12], "beta": [0.001, 0.5], "arch": {"w": 1}})
    assert isinstance(options, Probe)
    assert (options.width, options.ratio, options.arch) == (32, 2, {"w": 1})
    assert type(options.ratio) is int, "an int given for a float field is kept as given"
    assert options.widths == (4, 8, 12), "lists come back as tuples"
    assert options.beta == (0.001, 0.5)
    assert all(type(b) is float for b in _check({"beta": [1e-3, 0.5]}).beta)
    assert _check({"beta": (1e-3, 0.5)}).beta == (1e-3, 0.5)


def test_unknown_keys_are_named_with_the_expected_ones() -> None:
    with pytest.raises(ConfigError) as err:
        _check({"widht": 3, "depht": 2})
    message = str(err.value)
    assert message.startswith("probe model config: unknown key(s) ['depht', 'widht']; expected some of ['anything',")
    assert "'width'" in message


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"width": 0}, "probe model.width = 0: expected a positive integer (channels, 64 in the paper)"),
        ({"width": True}, "probe model.width = True: expected a positive integer (channels, 64 in the paper)"),
        ({"width": 2.0}, "probe model.width = 2.0: expected a positive integer (channels, 64 in the paper)"),
        ({"width": "64"}, "probe model.width = '64': expected a positive integer (channels, 64 in the paper)"),
        ({"blocks": -1}, "probe model.blocks = -1: expected an integer >= 0"),
        ({"dropout": 1.0}, "probe model.dropout = 1.0: expected a number in [0, 1)"),
        ({"dropout": -0.1}, "probe model.dropout = -0.1: expected a number in [0, 1)"),
        ({"dropout": True}, "probe model.dropout = True: expected a number in [0, 1)"),
        ({"dropout": float("nan")}, "probe model.dropout = nan: expected a number in [0, 1)"),
        ({"ratio": 0}, "probe model.ratio = 0: expected a positive number"),
        ({"ratio": float("inf")}, "probe model.ratio = inf: expected a positive number"),
        ({"ratio": "abc"}, "probe model.ratio = 'abc': expected a positive number"),
        ({"scale": 1.5}, "probe model.scale = 1.5: expected a number in (0, 1]"),
        ({"norm": 1}, "probe model.norm = 1: expected true or false"),
        ({"name": 3}, "probe model.name = 3: expected a string"),
        ({"mode": "c"}, "probe model.mode = 'c': expected one of ['a', 'b']"),
        ({"stride": 3}, "probe model.stride = 3: expected 1 (same size) or 2 (halved)"),
        ({"stride": True}, "probe model.stride = True: expected 1 (same size) or 2 (halved)"),
        ({"stride": 1.0}, "probe model.stride = 1.0: expected 1 (same size) or 2 (halved)"),
        ({"widths": []}, "probe model.widths = []: expected a non-empty list of integers >= 1"),
        ({"widths": "ab"}, "probe model.widths = 'ab': expected a non-empty list of integers >= 1"),
        ({"widths": [4, 0]}, "probe model.widths = [4, 0]: expected a non-empty list of integers >= 1"),
        ({"widths": [4, True]}, "probe model.widths = [4, True]: expected a non-empty list of integers >= 1"),
        ({"kernels": [3, 3, 7]}, "probe model.kernels = [3, 3, 7]: expected 4 integers >= 1 (one per stage)"),
        ({"beta": [0.1]}, "probe model.beta = [0.1]: expected 2 numbers in (0, 1)"),
        ({"beta": [0.1, 1.0]}, "probe model.beta = [0.1, 1.0]: expected 2 numbers in (0, 1)"),
        ({"seed": -1}, "probe model.seed = -1: expected null or an integer >= 0 (null: the cell's seed)"),
        ({"gamma": "auto"}, "probe model.gamma = 'auto': expected a positive number or 'scale'"),
        ({"gamma": -1.0}, "probe model.gamma = -1.0: expected a positive number or 'scale'"),
        ({"arch": 3}, "probe model.arch = 3: expected a string or a mapping"),
    ],
)
def test_a_bad_value_names_method_key_value_and_expectation(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _check(config)
    assert str(err.value) == message


@pytest.mark.parametrize(
    "config",
    [{"seed": None}, {"seed": 0}, {"gamma": 0.5}, {"gamma": "scale"}, {"anything": object()}, {"arch": {}},
     {"mode": "b"}, {"stride": 2}, {"dropout": 0}, {"scale": 1}, {"blocks": 0}, {"widths": (1,)}],
)
def test_values_inside_the_declaration_are_accepted(config: dict[str, Any]) -> None:
    options = _check(config)
    key, value = next(iter(config.items()))
    assert getattr(options, key) == (tuple(value) if isinstance(value, list) else value)


def test_choices_known_only_at_run_time_narrow_a_str_field() -> None:
    assert _check({"backend": "cuda"}, choices={"backend": ("auto", "cuda")}).backend == "cuda"
    with pytest.raises(ConfigError, match=r"^probe model.backend = 'triton': expected one of \['auto', 'cuda'\]$"):
        _check({"backend": "triton"}, choices={"backend": ("auto", "cuda")})
    with pytest.raises(TypeError, match="not fields"):
        _check({}, choices={"colour": ("red",)})


def test_the_declaration_itself_is_checked() -> None:
    with pytest.raises(TypeError, match="not a dataclass"):
        model_options(dict, {}, method="probe")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="one lower bound"):
        option(1, ge=0, gt=0)
    with pytest.raises(TypeError, match="finite number"):
        option(1.0, lt=float("inf"))
    with pytest.raises(TypeError, match="length"):
        option((1,), length=0)

    @dataclass(frozen=True)
    class Unsupported:
        values: list[int] = field(default_factory=list)

    with pytest.raises(TypeError, match="not supported"):
        model_options(Unsupported, {}, method="probe")

    @dataclass(frozen=True)
    class Required:
        width: int

    assert model_options(Required, {"width": 3}, method="probe") == Required(3)
    with pytest.raises(ConfigError, match="probe model config: key 'width' is missing"):
        model_options(Required, {}, method="probe")


def test_an_annotation_that_only_exists_for_type_checkers_is_named() -> None:
    @dataclass(frozen=True)
    class Hidden:
        where: Path | None = None  # Path is imported under TYPE_CHECKING only

    with pytest.raises(TypeError, match="names 'Path', which is not defined at run time"):
        model_options(Hidden, {}, method="probe")


def test_unknown_keys_helper_serves_the_train_section_too() -> None:
    reject_unknown_keys("x", {"a": 1}, ["a", "b"])
    with pytest.raises(ConfigError, match=r"^x: unknown key\(s\) \['c'\]; expected some of \['a', 'b'\]$"):
        reject_unknown_keys("x", {"c": 1, "a": 2}, ["b", "a"])
    with pytest.raises(ConfigError, match=r"^train config: unknown key\(s\) \['lr_max'\]; expected some of \["):
        TrainConfig.from_mapping({"lr_max": 1.0})
