"""`bench run` on fake dfc2018, yellow-river and lcz-hk files of every layout: pixel and patch methods finish.

Every built-in pixel and patch method runs on each dataset's first layout; a second layout of the
same dataset (same modalities, other files) feeds a pixel and a patch method.

The fakes are scaled down (the loaders take any grid; the published shape and per-class counts
then differ and are recorded, with BENCH_VERIFY_CHECKSUMS=0). One test loads a real-size LCZ HK
fake with BDGF's exact per-class totals with verification on.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench_core.tracking import MLflowTracker
from tests.data.dfc2018 import make_fake as dfc_fake
from tests.data.lcz_hk import make_fake as lcz_fake
from tests.data.yellow_river import make_fake as yre_fake
from tests.e2e.conftest import (
    BENCH_ENV,
    SHORT_BDGF,
    SHORT_TRAINING,
    SMALL_S2MAMBA_PATCHES,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

EVERY_METHOD = "svm,two-branch-cnn,mft,s2mamba"
"""The plugins of every built-in pixel and patch method but BDGF (added where the flag says so,
with its DDPM stage shortened too); the s2mamba plugin's methods include its variants."""
BOTH_KINDS = "svm,two-branch-cnn"
"""A pixel and a patch method, both reading every modality: enough for a dataset's second layout,
whose modalities and their meaning are the first layout's (only the files differ)."""
FAKES = {  # (dataset, layout): (make_fake, environment, the layout's name in data.layout, methods, with BDGF)
    ("dfc2018", "official"): (dfc_fake.make_fake, {}, "official", EVERY_METHOD, True),
    ("dfc2018", "ouc"): (dfc_fake.make_fake, {}, "ouc", BOTH_KINDS, False),
    ("yellow-river", "hhk"): (yre_fake.make_fake, {}, "hhk", EVERY_METHOD, True),
    ("lcz-hk", "mdl-rs"): (lcz_fake.make_fake, {}, "mdl-rs", EVERY_METHOD, True),
    ("lcz-hk", "custom"): (lcz_fake.make_fake, lcz_fake.CUSTOM_ENV, "mdl-rs+cfg-", BOTH_KINDS, False),
}


@pytest.fixture
def bench_env() -> tuple[str, ...]:
    """``bench`` runs without the data-folder, normalisation, DFC2018 and LCZ HK settings."""
    return (*BENCH_ENV, "BENCH_DFC2018_X", *lcz_fake.CUSTOM_ENV)


@pytest.mark.parametrize(("dataset", "layout"), sorted(FAKES))
def test_every_layout_feeds_pixel_and_patch_methods(dataset: str, layout: str, bench, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    make, env, layout_name, methods, with_bdgf = FAKES[(dataset, layout)]
    make(tmp_path / "data" / dataset, layout=layout)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    # Short training and small patches: the test is about reading each layout into every method's
    # input, which depends on neither.
    common = ["--datasets", dataset, "--data-dir", str(tmp_path / "data"), "--profile", "fast",
              "--splits", "per-class:5", *SHORT_TRAINING]
    if "s2mamba" in methods.split(","):
        common += SMALL_S2MAMBA_PATCHES
    if with_bdgf:
        methods, common = f"{methods},bdgf", [*common, *SHORT_BDGF]
    code, out = bench("run", "--plugins", methods, *common)
    assert code == 0, out
    expected = set(methods.split(","))
    runs = MLflowTracker(bench.uri, "bench").runs()  # type: ignore[attr-defined]
    assert expected <= {r.data.params["method"] for r in runs}  # the s2mamba plugin adds its variants
    for r in runs:
        assert r.info.status == "FINISHED", (r.info.run_name, r.data.tags.get("bench.error"))
        p = r.data.params
        assert p["dataset"] == dataset and p["data.layout"].startswith(layout_name)
        assert p["data.verified"].startswith("no (") and "test_oa" in r.data.metrics
        if dataset == "dfc2018":
            assert p["data.hsi_storage"] == "float16" and p["data.x"] == ("ndsm" if layout == "official"
                                                                           else "houston_lidar")


def test_lcz_hk_at_the_real_size_with_bdgfs_totals_runs_verified(bench, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from bench_plugins.datasets.lcz_hk import FACTS

    monkeypatch.delenv("BENCH_VERIFY_CHECKSUMS")  # verification on: shape and the 13 totals must match
    lcz_fake.make_fake(tmp_path / "data" / "lcz-hk", shape=FACTS.shape, counts=FACTS.labelled)  # type: ignore[arg-type]
    code, out = bench("run", "--plugins", "svm", "--datasets", "lcz-hk", "--data-dir", str(tmp_path / "data"),
                      "--profile", "fast", "--splits", "per-class:50")
    assert code == 0, out
    (run,) = MLflowTracker(bench.uri, "bench").runs()  # type: ignore[attr-defined]
    assert run.info.status == "FINISHED"
    assert run.data.params["data.verified"] == "yes" and run.data.params["data.layout"] == "mdl-rs"
    assert run.data.metrics["n_train"] + run.data.metrics["n_val"] == 13 * 50


def test_a_dataset_whose_counts_differ_fails_its_cells_naming_the_class(bench, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENCH_VERIFY_CHECKSUMS")
    yre_fake.make_fake(tmp_path / "data" / "yellow-river")
    code, out = bench("run", "--plugins", "svm", "--datasets", "yellow-river", "--data-dir", str(tmp_path / "data"),
                      "--profile", "fast", "--splits", "per-class:5")
    assert code == 1 and "FAILED" in out
    (run,) = MLflowTracker(bench.uri, "bench").runs()  # type: ignore[attr-defined]
    error = run.data.tags["bench.error"]
    assert "class 1 'Spartina alterniflora': labelled pixels expected 39784, found" in error
    assert not any(k.startswith("test_") for k in run.data.metrics)
