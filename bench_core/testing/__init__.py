"""Conformance suite for method plugins (``bench_core.testing``).

Run every check on a method::

    from bench_core.testing import check_method
    check_method("my-method")          # {"check_forward_shapes": "passed", ...}

or make each (method, check) pair its own pytest item::

    from bench_core.testing import parametrize_with_method_checks

    @parametrize_with_method_checks(["my-method"])
    def test_conformance(method, check):
        check(method)

Fixtures (``tiny_scene``, ``plugin_host``, ``tmp_bench_home``) are opt-in:
``pytest_plugins = ["bench_core.testing.fixtures"]``. Importing this package does not
import torch or pytest.

The checks are in :mod:`bench_core.testing.checks`, the code that runs them in
:mod:`bench_core.testing.suite`, the tiny scene they use in :mod:`bench_core.testing.tiny`.
"""

from __future__ import annotations

from bench_core.testing.checks import (
    ALL_CHECKS,
    Check,
    check_backward_every_param_has_grad,
    check_build_fast_profile,
    check_config_roundtrip,
    check_dense_validation_matches_scene_prediction,
    check_deterministic_under_seed,
    check_flops_and_params_countable,
    check_forward_shapes,
    check_loss_finite,
    check_method_tags,
    check_no_decay_parameters_get_zero_weight_decay,
    check_rejects_missing_modality,
    check_spec_metadata,
    check_trains_one_epoch,
    check_trains_with_a_grid_epoch,
)
from bench_core.testing.suite import check_method, check_name, method_checks, parametrize_with_method_checks
from bench_core.testing.tiny import tiny_scene

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
    "check_method",
    "check_method_tags",
    "check_name",
    "check_no_decay_parameters_get_zero_weight_decay",
    "check_rejects_missing_modality",
    "check_spec_metadata",
    "check_trains_one_epoch",
    "check_trains_with_a_grid_epoch",
    "method_checks",
    "parametrize_with_method_checks",
    "tiny_scene",
]
