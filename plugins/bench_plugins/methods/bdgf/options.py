"""The training network's ``model.*`` options: validated without importing torch.

:mod:`.network` builds the network from them; the package validates them at registration
and in ``validate_model`` without importing the network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

from bench_core import ConfigError, model_options, option

NAME = "bdgf"
MambaSequence = Literal["pixels", "bands"]
GroupAttention = Literal["literal", "shared"]
MAMBA_SEQUENCES: tuple[str, ...] = get_args(MambaSequence)
GROUP_ATTENTION_MODES: tuple[str, ...] = get_args(GroupAttention)
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

    embed_dim: int = option(64, ge=1)
    heads: int = option(8, ge=1)
    hsi_tokens: int = option(4, ge=1)  # MFT tokenizer tokens for HSI
    x_tokens: int = option(1, ge=1)  # for X
    temperature: str = "learned"  # or "fixed:<T>"
    mamba_d_state: int = option(16, ge=1)
    mamba_expand: int = option(2, ge=1)
    mamba_d_conv: int = option(4, ge=1)
    mamba_sequence: MambaSequence = "pixels"
    group_attention: GroupAttention = "literal"  # Q, K, V convs on each input incl. dif; "shared": dif -> E first

    def net_options(self) -> NetOptions:
        """These settings alone (a subclass's options carry more)."""
        return NetOptions(**{f.name: getattr(self, f.name) for f in fields(NetOptions)})

    def validate(self) -> None:
        """Raise ConfigError naming the first bad ``model.*`` value."""
        model_options(NetOptions, vars(self.net_options()), method=NAME)  # types and bounds
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
        parse_temperature(self.temperature)
