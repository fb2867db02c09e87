"""``RealDataset.spec``: the registered DatasetSpec takes the loader's facts, so a plugin states them once."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from bench_core import DataFile, DatasetSpec, RegistryError, load_plugins
from bench_core.data import RealDataset

# The DatasetSpec fields spec() takes from the loader rather than from its arguments.
FROM_LOADER = {"name", "load", "modalities", "class_names", "url"}


def _loader(**overrides: object) -> RealDataset:
    kwargs: dict[str, object] = {
        "name": "toy-scene",
        "layouts": (),
        "class_names": ["water", "trees"],
        # not alphabetical: the spec keeps the scene order of `bands`
        "bands": {"sar": 4, "hsi": 180, "dsm": 1},
        "url": "https://example.org/toy",
        **overrides,
    }
    return RealDataset(**kwargs)  # type: ignore[arg-type]


def test_spec_takes_name_modalities_classes_and_url_from_the_loader() -> None:
    loader = _loader()
    files = [DataFile(name="toy.zip", sha256="0" * 64, urls=("https://example.org/toy.zip",))]
    spec = loader.spec(shape=(3, 5), files=files, paper="P", licence="L", citation="C", description="D",
                       recommended_profile="fast")
    assert spec == DatasetSpec(
        name="toy-scene", load=loader, modalities=("sar", "hsi", "dsm"), class_names=("water", "trees"),
        shape=(3, 5), recommended_profile="fast", files=tuple(files), paper="P", url="https://example.org/toy",
        licence="L", citation="C", description="D",
    )
    assert spec.load is loader and spec.num_classes == 2
    assert isinstance(spec.files, tuple)


def test_spec_defaults_are_datasetspecs() -> None:
    loader = _loader(url="")
    assert loader.spec() == DatasetSpec(
        name="toy-scene", load=loader, modalities=("sar", "hsi", "dsm"), class_names=("water", "trees")
    )


def test_spec_covers_every_datasetspec_field_with_its_default() -> None:
    """A field added to DatasetSpec must be added to spec() too (with the same default)."""
    params = inspect.signature(RealDataset.spec).parameters
    taken = {name: p.default for name, p in params.items() if name != "self"}
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for name, p in params.items() if name != "self")
    fields = {f.name: f.default for f in dataclasses.fields(DatasetSpec)}
    assert set(taken) | FROM_LOADER == set(fields) and not set(taken) & FROM_LOADER
    for name, default in taken.items():
        assert default == fields[name], f"spec({name}=...) defaults to {default!r}, DatasetSpec to {fields[name]!r}"


def test_spec_refuses_a_bad_name_like_datasetspec() -> None:
    with pytest.raises(RegistryError, match="dataset name 'Not A Name!' is invalid"):
        _loader(name="Not A Name!").spec()


def test_every_registered_real_dataset_states_its_facts_in_the_loader() -> None:
    host = load_plugins()
    real = [host.datasets.get(n) for n in host.datasets.names() if isinstance(host.datasets.get(n).load, RealDataset)]
    assert {s.name for s in real} >= {"augsburg", "augsburg-dsm", "berlin", "houston2013", "muufl", "trento",
                                      "dfc2018", "yellow-river", "lcz-hk"}
    for spec in real:
        loader = spec.load
        assert isinstance(loader, RealDataset)
        assert (spec.name, spec.modalities, spec.class_names, spec.url) == (
            loader.name, tuple(loader.bands), loader.class_names, loader.url
        ), spec.name
