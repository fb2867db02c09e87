"""Errors raised by the harness.

Every message names the thing, the value, what was expected and how to fix it.
"""

from __future__ import annotations


class BenchError(Exception):
    """Base class of every error the harness raises on purpose."""


class ConfigError(BenchError, ValueError):
    """A configuration value is invalid (the message names the field)."""


class RegistryError(BenchError):
    """A name is unknown, malformed or registered twice."""


class PluginLoadError(BenchError):
    """A plugin could not be imported or registered."""


class MissingModalityError(BenchError, KeyError):
    """A method needs a modality the scene does not provide."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class SplitError(BenchError, ValueError):
    """A split protocol cannot be applied to a scene."""


class DatasetError(BenchError):
    """A dataset cannot be found, read or validated."""


class SamplingError(BenchError, ValueError):
    """Inputs, targets or indices given to a sampler do not fit together."""


class ModelOutputError(BenchError, ValueError):
    """A method's module returned logits of the wrong type or shape."""


class MetricError(BenchError, ValueError):
    """Labels, predictions or a confusion matrix cannot be scored as given."""


class TimingError(BenchError, ValueError):
    """A timing or cost measurement got invalid input or was used out of order."""


class ScanInputError(BenchError, ValueError):
    """Tensors given to a selective scan or an SS2D op do not have the expected shapes."""


class StudyError(BenchError):
    """An Optuna study is missing, of the wrong kind, or was made with other settings."""


class TrackingError(BenchError):
    """The MLflow tracking store cannot be reached (e.g. a server that does not answer)."""


class NonFiniteLossError(BenchError, FloatingPointError):
    """Training produced a NaN or infinite loss; the cell stops with this reason."""


class NonFiniteOutputError(BenchError, FloatingPointError):
    """A model's outputs at validation or test time hold NaN or infinity; the cell stops with this
    reason instead of scoring them as some class."""


class TestSplitAccessError(BenchError, RuntimeError):
    """The test split was read before the final evaluation."""

    __test__ = False  # not a pytest test class
