"""The training network's ``model.*`` options: validated without importing torch.

:mod:`.network` builds the network from them; the package validates them at registration
and in ``validate_model`` without importing the network.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from bench_core import ConfigError

NAME = "bdgf"
MAMBA_SEQUENCES = ("pixels", "bands")
GROUP_ATTENTION_MODES = ("literal", "shared")
SPECTRAL_DEPTH = 8  # the 3D stem's spectral slices (E = 8 x E/8 "channels")

__all__ = [
    "GROUP_ATTENTION_MODES", "MAMBA_SEQUENCES", "SPECTRAL_DEPTH", "NetOptions", "parse_temperature", "positive_int",
]


# --------------------------------------------------------------------------- options


def parse_temperature(text: str) -> float | None:
    """``"learned"`` -> None (per-sample T from the temperature FCs); ``"fixed:<T>"`` -> T > 0."""
    expectation = "expected 'learned' or 'fixed:<T>' with T a positive number (e.g. 'fixed:4')"
    if not isinstance(text, str):
        raise ConfigError(f"{NAME} model.temperature = {text!r}: {expectation}")
    if text == "learned":
        return None
    head, sep, tail = text.partition(":")
    if head != "fixed" or not sep:
        raise ConfigError(f"{NAME} model.temperature = {text!r}: {expectation}")
    try:
        value = float(tail)
    except ValueError:
        raise ConfigError(f"{NAME} model.temperature = {text!r}: {expectation}") from None
    if not (math.isfinite(value) and value > 0.0):
        raise ConfigError(f"{NAME} model.temperature = {text!r}: {expectation}")
    return value


def positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{NAME} {key} = {value!r}: expected a positive integer")
    return value


@dataclass(frozen=True)
class NetOptions:
    """``model.*`` settings of the training network (defaults = the paper profile and our choices)."""

    embed_dim: int = 64
    heads: int = 8
    hsi_tokens: int = 4  # MFT tokenizer tokens for HSI
    x_tokens: int = 1  # for X
    temperature: str = "learned"  # or "fixed:<T>"
    mamba_d_state: int = 16
    mamba_expand: int = 2
    mamba_d_conv: int = 4
    mamba_sequence: str = "pixels"  # or "bands"
    group_attention: str = "literal"  # Q, K, V convs on each input incl. dif; "shared": dif -> E first

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> NetOptions:
        """Options from the ``model.*`` keys this network knows (others are the caller's)."""
        known = {f.name for f in fields(cls)}
        options = cls(**{k: v for k, v in config.items() if k in known})
        options.validate()
        return options

    def validate(self) -> None:
        """Raise ConfigError naming the first bad ``model.*`` value."""
        for key in ("embed_dim", "heads", "hsi_tokens", "x_tokens", "mamba_d_state", "mamba_expand",
                    "mamba_d_conv"):
            positive_int(f"model.{key}", getattr(self, key))
        if self.embed_dim % SPECTRAL_DEPTH:
            raise ConfigError(
                f"{NAME} model.embed_dim = {self.embed_dim}: expected a multiple of {SPECTRAL_DEPTH} (the "
                f"3D stem's {SPECTRAL_DEPTH} spectral slices x embed_dim/{SPECTRAL_DEPTH} channels); use 64"
            )
        if self.embed_dim % self.heads:
            raise ConfigError(
                f"{NAME} model.heads = {self.heads}: does not divide model.embed_dim = {self.embed_dim}; "
                f"expected a divisor (the paper: 8 heads of 64)"
            )
        if self.mamba_sequence not in MAMBA_SEQUENCES:
            raise ConfigError(
                f"{NAME} model.mamba_sequence = {self.mamba_sequence!r}: expected one of {list(MAMBA_SEQUENCES)}"
            )
        if self.group_attention not in GROUP_ATTENTION_MODES:
            raise ConfigError(
                f"{NAME} model.group_attention = {self.group_attention!r}: expected one of "
                f"{list(GROUP_ATTENTION_MODES)}"
            )
        parse_temperature(self.temperature)
