"""bench_core.data.fetch against a loopback HTTP server (127.0.0.1 only, never another address).

The server serves in-memory files, honours ``Range`` requests (unless told not to), and can
cut a response short, answer 404/503, serve wrong bytes, or stall, to exercise checksum
pass and mismatch, resume, mirror fallback, retries and timeouts.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import threading
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from bench_core import ConfigError, DataFile, DatasetError, DatasetSpec, Scene
from bench_core.data.fetch import (
    CHUNK_SIZE,
    ChecksumMismatchError,
    DownloadError,
    ResumableDownloader,
    dataset_folder,
    fetch_dataset,
    fetch_file,
    mirror_urls,
    unpack_archive,
)

# ----------------------------------------------------------------------------- the loopback server


@dataclass
class LoopbackServer:
    """An HTTP server on 127.0.0.1 serving ``files`` by path, with fault injection.

    Attributes:
        files: ``{"/dir/name": bytes}``.
        cut_after: ``{path: n}``: the next response for ``path`` announces the full length
            but sends only ``n`` bytes, then closes the connection (once per entry).
        status: ``{path: [code, ...]}``: answer these codes (consumed in order) before serving.
        ranges: whether ``Range`` requests are honoured (else the whole file with 200).
        stall: ``{path}``: hold the response until the server stops (for timeouts).
        range_start: ``{path: n}``: answer any range request with the bytes from ``n`` (a broken server).
        requests: ``(path, Range header or None)`` of every request, in order.
    """

    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: dict[str, int] = field(default_factory=dict)
    status: dict[str, list[int]] = field(default_factory=dict)
    ranges: bool = True
    stall: set[str] = field(default_factory=set)
    range_start: dict[str, int] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    url: str = ""
    released: threading.Event = field(default_factory=threading.Event)

    def requests_for(self, path: str) -> list[str | None]:
        return [rng for p, rng in self.requests if p == path]


def _handler(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path
            server.requests.append((path, self.headers.get("Range")))
            if path in server.stall:
                server.released.wait(30)
                return
            codes = server.status.get(path)
            if codes:
                self.send_error(codes.pop(0))
                return
            if path not in server.files:
                self.send_error(404)
                return
            data = server.files[path]
            start, code = 0, 200
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            if match and server.ranges:
                start = server.range_start.get(path, int(match.group(1)))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                code = 206
            body = data[start:]
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes" if server.ranges else "none")
            if code == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            cut = server.cut_after.pop(path, None)
            self.wfile.write(body if cut is None else body[:cut])
            self.wfile.flush()
            if cut is not None:
                self.close_connection = True

    return Handler


@contextmanager
def serve(**kwargs: object) -> Iterator[LoopbackServer]:
    """Run a :class:`LoopbackServer` on an ephemeral port of 127.0.0.1 in a thread."""
    state = LoopbackServer(**kwargs)  # type: ignore[arg-type]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.released.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def payload(size: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size=size, dtype=np.uint8).tobytes()


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    """Files in ``folder`` (recursively, hidden ones included) other than ``keep``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name not in keep)


FAST = {"retries": 0, "timeout": 5.0, "backoff_s": 0.0}


# ----------------------------------------------------------------------------- checksums


def test_a_good_file_is_downloaded_verified_and_then_found_present(tmp_path: Path) -> None:
    data = payload(300_000)
    with serve(files={"/m/a.mat": data}) as server:
        file = DataFile("a.mat", sha(data), urls=(f"{server.url}/m/a.mat",))
        got = fetch_file(file, tmp_path, **FAST)
        assert got.action == "downloaded" and got.verified and got.url == f"{server.url}/m/a.mat"
        assert got.sha256 == sha(data) and (tmp_path / "a.mat").read_bytes() == data
        assert leftovers(tmp_path, {"a.mat"}) == []  # no .part, no temporary file
        again = fetch_file(file, tmp_path, **FAST)
        assert again.action == "present" and again.url is None
        assert len(server.requests) == 1  # the second call verified the file on disk, no request


def test_a_wrong_checksum_names_file_hashes_url_and_fix_and_leaves_nothing(tmp_path: Path) -> None:
    data = payload(5000)
    expected = sha(b"the real file")
    with serve(files={"/m/a.mat": data}) as server:
        file = DataFile("a.mat", expected, urls=(f"{server.url}/m/a.mat",))
        with pytest.raises(ChecksumMismatchError) as info:
            fetch_file(file, tmp_path, dataset="toy", **FAST)
    message = str(info.value)
    for part in ("toy", "a.mat", expected, sha(data), f"{server.url}/m/a.mat", "Fix", "--mirror"):
        assert part in message, part
    assert isinstance(info.value, DatasetError)
    assert leftovers(tmp_path, set()) == []  # the bad download is gone, no partial file either


def test_a_wrong_checksum_falls_back_to_the_next_mirror(tmp_path: Path) -> None:
    good = payload(4000, seed=1)
    with serve(files={"/bad/a.mat": payload(4000, seed=2), "/good/a.mat": good}) as server:
        file = DataFile("a.mat", sha(good), urls=(f"{server.url}/bad/a.mat", f"{server.url}/good/a.mat"))
        got = fetch_file(file, tmp_path, **FAST)
    assert got.url.endswith("/good/a.mat") and (tmp_path / "a.mat").read_bytes() == good
    assert server.requests_for("/bad/a.mat") == [None]  # a mismatch is not retried on the same mirror


def test_an_existing_corrupt_file_is_replaced_only_by_a_verified_one(tmp_path: Path) -> None:
    data = payload(2000)
    (tmp_path / "a.mat").write_bytes(b"corrupt")
    with serve(files={"/m/a.mat": data}) as server:
        got = fetch_file(DataFile("a.mat", sha(data), urls=(f"{server.url}/m/a.mat",)), tmp_path, **FAST)
    assert got.action == "downloaded" and (tmp_path / "a.mat").read_bytes() == data


# ----------------------------------------------------------------------------- resume


def test_an_interrupted_download_is_resumed_with_a_range_request(tmp_path: Path) -> None:
    data = payload(250_000)
    with serve(files={"/m/a.mat": data}, cut_after={"/m/a.mat": 100_000}) as server:
        file = DataFile("a.mat", sha(data), urls=(f"{server.url}/m/a.mat",))
        got = fetch_file(file, tmp_path, retries=2, timeout=5.0, backoff_s=0.0)
    assert got.action == "resumed"
    first, second = server.requests_for("/m/a.mat")
    assert first is None
    # the bytes kept are those received before the cut, less at most one unfinished read
    offset = int(re.fullmatch(r"bytes=(\d+)-", second).group(1))
    assert 100_000 - CHUNK_SIZE < offset <= 100_000
    assert (tmp_path / "a.mat").read_bytes() == data
    assert leftovers(tmp_path, {"a.mat"}) == []


def test_a_partial_file_survives_a_failed_run_and_the_next_run_resumes_it(tmp_path: Path) -> None:
    data = payload(300_000)
    with serve(files={"/m/a.mat": data}, cut_after={"/m/a.mat": 200_000}) as server:
        file = DataFile("a.mat", sha(data), urls=(f"{server.url}/m/a.mat",))
        with pytest.raises(DownloadError) as info:
            fetch_file(file, tmp_path, **FAST)
        assert not isinstance(info.value, ChecksumMismatchError)
        assert "partial downloads resume" in str(info.value)
        kept = (tmp_path / "a.mat.part").stat().st_size
        assert 200_000 - CHUNK_SIZE < kept <= 200_000
        assert not (tmp_path / "a.mat").exists()  # never a half file under the real name
        got = fetch_file(file, tmp_path, **FAST)
    assert got.action == "resumed" and server.requests_for("/m/a.mat")[-1] == f"bytes={kept}-"
    assert (tmp_path / "a.mat").read_bytes() == data


def test_a_server_without_ranges_makes_the_download_start_over(tmp_path: Path) -> None:
    data = payload(30_000)
    (tmp_path / "a.mat.part").write_bytes(data[:10_000])
    with serve(files={"/m/a.mat": data}, ranges=False) as server:
        got = fetch_file(DataFile("a.mat", sha(data), urls=(f"{server.url}/m/a.mat",)), tmp_path, **FAST)
    assert got.action == "downloaded" and server.requests_for("/m/a.mat") == ["bytes=10000-"]
    assert (tmp_path / "a.mat").read_bytes() == data


def test_a_range_answered_from_another_offset_is_not_appended(tmp_path: Path) -> None:
    data = payload(40_000)
    (tmp_path / "a.mat.part").write_bytes(data[:5000])
    with serve(files={"/m/a.mat": data}, range_start={"/m/a.mat": 0}) as server:
        got = fetch_file(DataFile("a.mat", sha(data), urls=(f"{server.url}/m/a.mat",)), tmp_path,
                         retries=1, timeout=5.0, backoff_s=0.0)
    assert server.requests_for("/m/a.mat") == ["bytes=5000-", None]  # discarded, then a fresh download
    assert got.action == "downloaded" and (tmp_path / "a.mat").read_bytes() == data


def test_a_part_that_already_holds_the_whole_file_is_finished_without_a_body(tmp_path: Path) -> None:
    data = payload(8000)
    (tmp_path / "a.mat.part").write_bytes(data)
    with serve(files={"/m/a.mat": data}) as server:
        got = fetch_file(DataFile("a.mat", sha(data), urls=(f"{server.url}/m/a.mat",)), tmp_path, **FAST)
    assert got.sha256 == sha(data) and (tmp_path / "a.mat").read_bytes() == data


def test_a_corrupt_part_ends_in_a_mismatch_and_is_not_kept(tmp_path: Path) -> None:
    data = payload(8000)
    (tmp_path / "a.mat.part").write_bytes(b"x" * 3000)  # not a prefix of the real file
    with serve(files={"/m/a.mat": data}) as server:
        file = DataFile("a.mat", sha(data), urls=(f"{server.url}/m/a.mat",))
        with pytest.raises(ChecksumMismatchError):
            fetch_file(file, tmp_path, **FAST)
        assert leftovers(tmp_path, set()) == []
        got = fetch_file(file, tmp_path, **FAST)  # the next run starts clean
    assert got.action == "downloaded" and (tmp_path / "a.mat").read_bytes() == data


class _CountingSha256:
    """hashlib.sha256 that adds the bytes it hashes to a shared count."""

    def __init__(self, counted: list[int]) -> None:
        self._digest, self._counted = hashlib.sha256(), counted

    def update(self, data: bytes) -> None:
        self._counted[0] += len(data)
        self._digest.update(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


@pytest.mark.parametrize("cut", [None, 70_000])
def test_each_downloaded_byte_is_hashed_once(cut: int | None, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import bench_core.data.fetch as fetch

    counted = [0]
    monkeypatch.setattr(fetch, "hashlib", SimpleNamespace(sha256=lambda: _CountingSha256(counted)))
    data = payload(200_000)
    with serve(files={"/m/a.mat": data}, cut_after={"/m/a.mat": cut} if cut else {}) as server:
        got = fetch_file(DataFile("a.mat", sha(data), urls=(f"{server.url}/m/a.mat",)), tmp_path,
                         retries=1, timeout=5.0, backoff_s=0.0)
    assert got.action == ("resumed" if cut else "downloaded") and got.sha256 == sha(data)
    assert counted[0] == len(data)  # hashed while streaming; a retry continues the hash: no second pass


# ----------------------------------------------------------------------------- mirrors, retries, timeouts


def test_a_404_moves_to_the_fallback_mirror_without_retrying(tmp_path: Path) -> None:
    data = payload(1000)
    with serve(files={"/second/a.mat": data}) as server:
        urls = (f"{server.url}/first/a.mat", f"{server.url}/second/a.mat")
        got = fetch_file(DataFile("a.mat", sha(data), urls=urls), tmp_path, retries=3, timeout=5.0, backoff_s=0.0)
    assert got.url == urls[1]
    assert server.requests_for("/first/a.mat") == [None]


def test_a_503_is_retried_on_the_same_mirror(tmp_path: Path) -> None:
    data = payload(1000)
    with serve(files={"/m/a.mat": data}, status={"/m/a.mat": [503, 503]}) as server:
        got = fetch_file(DataFile("a.mat", sha(data), urls=(f"{server.url}/m/a.mat",)), tmp_path,
                         retries=2, timeout=5.0, backoff_s=0.0)
    assert got.action == "downloaded" and len(server.requests_for("/m/a.mat")) == 3


def test_when_every_mirror_fails_the_error_lists_each_url_and_reason(tmp_path: Path) -> None:
    with serve(status={"/b/a.mat": [503, 503]}) as server:
        urls = (f"{server.url}/a/a.mat", f"{server.url}/b/a.mat", "http://127.0.0.1:9/a.mat")
        with pytest.raises(DownloadError) as info:
            fetch_file(DataFile("a.mat", "0" * 64, urls=urls), tmp_path, dataset="toy", retries=1,
                       timeout=5.0, backoff_s=0.0)
    message = str(info.value)
    assert f"{urls[0]}: HTTP 404" in message and f"{urls[1]}: HTTP 503" in message
    assert f"{urls[2]}: connection failed" in message
    assert "could not download a.mat" in message and "Fix:" in message
    assert not isinstance(info.value, ChecksumMismatchError)


def test_a_stalled_server_times_out_instead_of_hanging(tmp_path: Path) -> None:
    with serve(stall={"/m/a.mat"}) as server:
        with pytest.raises(DownloadError, match="timed out"):
            fetch_file(DataFile("a.mat", "0" * 64, urls=(f"{server.url}/m/a.mat",)), tmp_path,
                       retries=0, timeout=0.3, backoff_s=0.0)


def test_mirrors_replace_the_known_urls_and_take_the_file_name(tmp_path: Path) -> None:
    file = DataFile("a.mat", "0" * 64, urls=("https://example.invalid/a.mat",))
    assert mirror_urls(file) == ("https://example.invalid/a.mat",)
    assert mirror_urls(file, ["http://127.0.0.1:1/x/", "http://127.0.0.1:2"]) == (
        "http://127.0.0.1:1/x/a.mat",
        "http://127.0.0.1:2/a.mat",
    )
    data = payload(500)
    with serve(files={"/x/a.mat": data}) as server:
        got = fetch_file(DataFile("a.mat", sha(data), urls=()), tmp_path, mirrors=[f"{server.url}/x"], **FAST)
    assert got.url == f"{server.url}/x/a.mat"


def test_a_file_without_any_url_asks_the_user_to_bring_it(tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as info:
        fetch_file(DataFile("houston.tif", "ab" * 32), tmp_path, dataset="houston2013", **FAST)
    message = str(info.value)
    assert "houston.tif" in message and "no public download" in message and str(tmp_path) in message
    data = b"user's own copy"
    (tmp_path / "houston.tif").write_bytes(data)
    assert fetch_file(DataFile("houston.tif", sha(data)), tmp_path, **FAST).action == "present"


def test_the_downloader_rejects_a_non_positive_timeout(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="timeout = 0"):
        ResumableDownloader(tmp_path / "a.part", timeout=0)


# ----------------------------------------------------------------------------- archives and datasets


def zip_bytes(members: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as handle:
        for name, data in members.items():
            handle.writestr(name, data)
    return buffer.getvalue()


def toy_spec(files: tuple[DataFile, ...]) -> DatasetSpec:
    def load(context: object) -> Scene:
        raise AssertionError("fetch must not load the dataset")

    return DatasetSpec(name="toy", load=load, modalities=("hsi",), class_names=("a",), files=files)


def test_fetch_dataset_downloads_every_file_and_unpacks_archives(tmp_path: Path) -> None:
    members = {"Toy/toy_hsi.mat": payload(3000, 1), "Toy/toy_gt.mat": payload(200, 2)}
    archive, extra = zip_bytes(members), payload(100, 3)
    with serve(files={"/r/toy.zip": archive, "/r/extra.txt": extra}) as server:
        spec = toy_spec((
            DataFile("toy.zip", sha(archive), urls=(f"{server.url}/r/toy.zip",)),
            DataFile("extra.txt", sha(extra), urls=(f"{server.url}/r/extra.txt",)),
        ))
        folder = tmp_path / "toy"
        report = fetch_dataset(spec, folder, **FAST)
    assert [f.name for f in report.files] == ["toy.zip", "extra.txt"]
    for name, data in members.items():
        assert (folder / name).read_bytes() == data
    assert sorted(p.name for p in report.files[0].unpacked) == ["toy_gt.mat", "toy_hsi.mat"]
    assert leftovers(folder, {"toy.zip", "extra.txt", "toy_hsi.mat", "toy_gt.mat"}) == []


def test_unpacking_again_keeps_complete_members_and_restores_missing_ones(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_bytes({"d/x.bin": b"x" * 10, "d/y.bin": b"y" * 20}))
    unpack_archive(archive)
    stamp = (tmp_path / "d/x.bin").stat().st_mtime_ns
    (tmp_path / "d/y.bin").write_bytes(b"y")  # truncated: different size
    unpack_archive(archive)
    assert (tmp_path / "d/x.bin").stat().st_mtime_ns == stamp
    assert (tmp_path / "d/y.bin").read_bytes() == b"y" * 20
    assert leftovers(tmp_path, {"a.zip", "x.bin", "y.bin"}) == []


def test_tar_archives_are_unpacked_too(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as handle:
        info = tarfile.TarInfo("t/z.bin")
        info.size = 5
        handle.addfile(info, io.BytesIO(b"zzzzz"))
    (tmp_path / "a.tar.gz").write_bytes(buffer.getvalue())
    assert unpack_archive(tmp_path / "a.tar.gz") == (tmp_path / "t/z.bin",)
    assert (tmp_path / "t/z.bin").read_bytes() == b"zzzzz"


def test_an_archive_member_escaping_the_folder_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "in" / "evil.zip"
    archive.parent.mkdir()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as handle:
        handle.writestr("../outside.txt", b"no")
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(DatasetError, match="outside"):
        unpack_archive(archive)
    assert not (tmp_path / "outside.txt").exists()


def test_dataset_folder_prefers_the_data_dir_over_the_cache(tmp_path: Path) -> None:
    assert dataset_folder("augsburg", tmp_path / "data", tmp_path / "cache") == tmp_path / "data" / "augsburg"
    assert dataset_folder("augsburg", None, tmp_path / "cache") == tmp_path / "cache" / "augsburg"


# ----------------------------------------------------------------------------- the command


def _host_with(spec: DatasetSpec) -> SimpleNamespace:
    return SimpleNamespace(datasets=SimpleNamespace(get=lambda name: spec))


def test_cli_fetch_uses_the_mirror_and_the_cache_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench_core.cli import main

    data = payload(2000)
    spec = toy_spec((DataFile("a.mat", sha(data), urls=("https://example.invalid/a.mat",)),))
    monkeypatch.setattr("bench_core.plugins.load_plugins", lambda *a, **k: _host_with(spec))
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    with serve(files={"/mirror/a.mat": data}) as server:
        code = main(["datasets", "fetch", "toy", "--mirror", f"{server.url}/mirror", "--retries", "0", "--json"])
    assert code == 0
    cached = Path(os.environ["BENCH_HOME"]) / "cache" / "toy" / "a.mat"
    assert cached.read_bytes() == data
    assert [p for p, _ in server.requests] == ["/mirror/a.mat"]  # the known (non-loopback) URL was never tried


def test_cli_fetch_reports_a_mismatch_with_exit_code_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench_core.cli import main

    spec = toy_spec((DataFile("a.mat", "1" * 64),))
    monkeypatch.setattr("bench_core.plugins.load_plugins", lambda *a, **k: _host_with(spec))
    with serve(files={"/m/a.mat": b"something else"}) as server:
        code = main(["datasets", "fetch", "toy", "--data-dir", str(tmp_path / "data"),
                     "--mirror", f"{server.url}/m", "--retries", "0"])
    err = capsys.readouterr().err
    assert code == 1
    assert "1" * 64 in err and sha(b"something else") in err and f"{server.url}/m/a.mat" in err
    assert not (tmp_path / "data" / "toy" / "a.mat").exists()


def test_cli_fetch_of_a_generated_dataset_has_nothing_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench_core.cli import main

    monkeypatch.setattr("bench_core.plugins.load_plugins", lambda *a, **k: _host_with(toy_spec(())))
    assert main(["datasets", "fetch", "toy"]) == 0
    assert "no source files to download" in capsys.readouterr().out


def test_json_summary_is_serialisable(tmp_path: Path) -> None:
    from bench_core.data.fetch import summary

    data = payload(10)
    (tmp_path / "a.mat").write_bytes(data)
    report = fetch_dataset(toy_spec((DataFile("a.mat", sha(data)),)), tmp_path, **FAST)
    decoded = json.loads(json.dumps(summary(report)))
    assert decoded["files"][0] == {
        "name": "a.mat", "path": str(tmp_path / "a.mat"), "sha256": sha(data), "action": "present",
        "url": None, "verified": True, "unpacked": [],
    }
