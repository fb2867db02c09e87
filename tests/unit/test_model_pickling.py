"""Every built-in method's built model survives pickling (torch.save / torch.load of the whole module).

Models are module-level classes in each plugin's ``model`` submodule, not classes defined inside
``build``; a class created by ``build`` cannot be pickled (Ray workers, checkpoints of whole models).
"""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch

from bench_core import load_plugins
from bench_core.testing.checks import _built, _fast, _logits
from bench_core.testing.tiny import labelled_sample, scene_for, windows

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HOST = load_plugins(only=[
    "svm", "two-branch-cnn", "fusion-fcn", "mft", "s2mamba", "m3amba", "comix", "bdgf",
])
BUILTIN_METHODS = HOST.methods.names()


def test_every_builtin_method_is_covered() -> None:
    assert not HOST.errors, HOST.errors
    assert len(BUILTIN_METHODS) >= 8, BUILTIN_METHODS


@pytest.mark.parametrize("name", BUILTIN_METHODS)
def test_built_model_round_trips_through_torch_save(name: str) -> None:
    spec = HOST.methods.get(name)
    config = _fast(spec)
    scene = scene_for(spec)
    torch.manual_seed(0)
    model = _built(spec, scene, config)
    local = [type(m).__qualname__ for m in _parts(model) if "<locals>" in type(m).__qualname__]
    assert not local, f"method {name!r} builds classes defined inside a function: {local}"

    buffer = io.BytesIO()
    torch.save(model, buffer)  # pickles the whole object, classes by reference
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=False)
    assert type(restored) is type(model)
    if spec.input_kind == "pixel":
        assert pickle.loads(pickle.dumps(model)).__class__ is type(model)
        return

    before, after = model.state_dict(), restored.state_dict()
    assert list(before) == list(after)
    for key in before:
        assert torch.equal(before[key], after[key]), f"method {name!r}: {key} changed through torch.save"
    size = spec.effective_patch_size(config.train)
    batch, _ = windows(spec, scene, labelled_sample(scene, 2), size)
    model.eval()
    restored.eval()
    with torch.no_grad():
        expected, got = _logits(model(batch)), _logits(restored(batch))
    np.testing.assert_array_equal(got.numpy(), expected.numpy())


def _parts(model: object) -> list[object]:
    return list(model.modules()) if isinstance(model, torch.nn.Module) else [model]
