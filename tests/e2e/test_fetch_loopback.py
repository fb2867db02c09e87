"""End to end (issue 3 acceptance): fetch fake Augsburg/Berlin files from a loopback server,
then `bench run --plugins all --datasets augsburg,berlin`; and a missing dataset fails its cells.

The fake files (tests/data/<dataset>/make_fake.py) carry the real names and layouts but not
the real bytes, so the test pins their checksums in the dataset plugin for its duration, as
torchgeo's tests point a dataset's URL and checksum at fakes. The server listens on
127.0.0.1 only and `--mirror` replaces the known public URLs, so nothing else is contacted.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench_core.cli import main
from bench_core.plugins import load_plugins
from tests.e2e.conftest import SHORT_BDGF, SHORT_TRAINING, SMALL_S2MAMBA_PATCHES

pytestmark = pytest.mark.slow

CITIES = ("augsburg", "berlin")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serve_folder(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """Serve ``folder`` on an ephemeral 127.0.0.1 port; yields (base URL, paths requested)."""
    requested: list[str] = []

    class Handler(_QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            requested.append(self.path)
            super().do_GET()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", requested
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _fakes(folder: Path) -> dict[str, dict[str, str]]:
    """Write the fake OUC zips; ``{city: {file name: sha256}}`` for the zip and each member."""
    from tests.data.augsburg.make_fake import make_fake as fake_augsburg
    from tests.data.berlin.make_fake import make_fake as fake_berlin

    out: dict[str, dict[str, str]] = {}
    for city, make in zip(CITIES, (fake_augsburg, fake_berlin)):
        shas = dict(make(folder, seed=0, layout="ouc-zip"))
        with zipfile.ZipFile(folder / f"{city}-ouc.zip") as archive:
            for info in archive.infolist():
                if not info.is_dir():
                    shas[Path(info.filename).name] = hashlib.sha256(archive.read(info)).hexdigest()
        out[city] = shas
    return out


def _pin(monkeypatch: pytest.MonkeyPatch, shas: dict[str, dict[str, str]]) -> None:
    """Pin the fakes' checksums in the Hong et al. 2021 plugin (read when the plugin registers)."""
    from bench_plugins.datasets import hong2021

    for city, files in shas.items():
        monkeypatch.setitem(hong2021.OUC_ZIP_SHA256, city, files[f"{city}-ouc.zip"])
        for name in hong2021.OUC_SHA256[city]:
            monkeypatch.setitem(hong2021.OUC_SHA256[city], name, files[name])


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("BENCH_HOME", str(home))
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("CI", "true")
    return home


def test_fetch_then_run_all_methods_on_augsburg_and_berlin(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shas = _fakes(mirror)
    _pin(monkeypatch, shas)
    with serve_folder(mirror) as (url, requested):
        for city in CITIES:
            assert main(["datasets", "fetch", city, "--mirror", url, "--retries", "0", "--timeout", "10"]) == 0
    assert sorted(requested) == ["/augsburg-ouc.zip", "/berlin-ouc.zip"]
    for city in CITIES:
        cached = home / "cache" / city
        assert (cached / f"{city}-ouc.zip").is_file()
        assert (cached / city.title() / f"{city}_hsi.mat").is_file()  # unpacked where the loader looks

    # The served files are 20 x 24 miniatures of the real ones; the declared-shape check that would
    # refuse them is tested in tests/e2e/test_faults_data.py.
    import bench_core.pipeline as pipeline

    monkeypatch.setattr(pipeline, "check_declared_shape", lambda dataset, scene: None)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    code = main(["run", "--plugins", "all", "--datasets", "augsburg,berlin", "--profile", "fast", "--tracking-uri", uri,
                 *SHORT_TRAINING, *SHORT_BDGF, *SMALL_S2MAMBA_PATCHES])
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("bench").experiment_id])
    failed = {r.info.run_name: r.data.tags.get("bench.error") for r in runs if r.info.status != "FINISHED"}
    assert code == 0 and not failed, failed
    methods = load_plugins().methods.names()
    assert len(runs) == len(methods) * len(CITIES)
    for run in runs:
        dataset = run.data.params["dataset"]
        inner = {n: s for n, s in shas[dataset].items() if not n.endswith(".zip")}
        tags = {k.removeprefix("bench.data_sha256."): v for k, v in run.data.tags.items()
                if k.startswith("bench.data_sha256.")}
        assert tags == inner, run.info.run_name
        (logged,) = run.inputs.dataset_inputs  # MLflow's Dataset column: where the files were found
        assert (logged.dataset.name, logged.dataset.digest) == (dataset, run.data.tags["bench.dataset_fingerprint"])
        assert logged.dataset.source_type == "local"
        assert logged.dataset.source == run.data.tags["bench.data_source_dir"]
        assert Path(logged.dataset.source).is_relative_to(home / "cache" / dataset)


def test_run_on_a_missing_dataset_fails_its_cells_and_says_how_to_get_it(home: Path) -> None:
    from mlflow.tracking import MlflowClient

    download_url = load_plugins().datasets.get("augsburg").files[0].urls[0]
    uri = f"sqlite:///{home / 'mlflow.db'}"
    code = main(["run", "--plugins", "svm", "--datasets", "augsburg,synthetic", "--profile", "fast",
                 "--tracking-uri", uri])
    assert code == 1
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("bench").experiment_id
    runs = {r.data.params["dataset"]: r for r in client.search_runs([experiment])}
    assert runs["synthetic"].info.status == "FINISHED"  # the other dataset's cells go on
    failed = runs["augsburg"]
    assert failed.info.status == "FAILED"
    error = failed.data.tags["bench.error"]
    for part in ("augsburg_hsi.mat", "data_HS_LR.mat", str(home / "cache"), "bench datasets fetch augsburg",
                 download_url):
        assert part in error, part
