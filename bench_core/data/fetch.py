"""Download a dataset's files from its mirrors: sha256-verified, retried, resumable.

``bench datasets fetch NAME`` calls :func:`fetch_dataset`. Each :class:`~bench_core.specs.DataFile`
of the dataset is streamed with ``requests`` into ``<name>.part`` by :class:`ResumableDownloader`,
which hashes every byte once as it arrives; only a file whose sha256 matches the pinned one is
moved (atomically) to its final name. A file with the wrong checksum is deleted, never left where
a loader would take it. An interrupted download keeps its ``.part`` file and is continued with an
HTTP ``Range`` request when the server supports it (docs/architecture.md, "Downloads: why
requests + hashlib", says why this is not pooch).

Mirrors are tried in order: the file's own ``urls``, or the ``mirrors`` given (base URLs the
file name is appended to) instead of them. Per mirror, network failures (timeouts, refused
or dropped connections, 5xx) are retried with back-off and resume; a 4xx answer or a wrong
checksum moves on to the next mirror at once. Every request has a timeout, so nothing hangs.
Two fetches of one dataset into one folder at the same time would share the ``.part``
file; run one at a time.

Archives (``.zip``, ``.tar``, ``.tar.gz``, ``.tgz``) are unpacked next to themselves after
verification, through a hidden temporary folder, so a half-unpacked file is never visible
under its real name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench_core.errors import ConfigError, DatasetError
from bench_core.specs import DataFile, DatasetSpec

__all__ = [
    "ARCHIVE_SUFFIXES",
    "ChecksumMismatchError",
    "DownloadError",
    "FetchReport",
    "FetchedFile",
    "ResumableDownloader",
    "Transfer",
    "dataset_folder",
    "fetch_dataset",
    "fetch_file",
    "mirror_urls",
    "summary",
    "unpack_archive",
]

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
PART_SUFFIX = ".part"
CHUNK_SIZE = 1 << 16
"""Bytes per read; a read cut off by a dropped connection is lost, so at most this much is fetched twice."""
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class DownloadError(DatasetError):
    """A dataset file could not be downloaded from any of its mirrors."""


class ChecksumMismatchError(DownloadError):
    """A mirror served a file whose sha256 differs from the pinned one (the download was deleted)."""


class IncompleteDownloadError(OSError):
    """The connection ended before the announced number of bytes arrived (retried, resumed)."""


@dataclass(frozen=True)
class FetchedFile:
    """One file of a dataset after fetching.

    Attributes:
        name: file name (as in the dataset spec).
        path: where it is now.
        sha256: its sha256 (equal to the pinned one when ``verified``).
        action: ``"present"`` (already there, checksum good), ``"downloaded"`` or ``"resumed"``.
        url: the mirror it came from (``None`` when present).
        verified: whether a pinned sha256 was checked (``False`` only for unpinned files).
        unpacked: files unpacked from it, when it is an archive.
    """

    name: str
    path: Path
    sha256: str
    action: Literal["present", "downloaded", "resumed"]
    url: str | None = None
    verified: bool = True
    unpacked: tuple[Path, ...] = ()


@dataclass(frozen=True)
class FetchReport:
    """What :func:`fetch_dataset` did: the dataset folder and each file."""

    dataset: str
    folder: Path
    files: tuple[FetchedFile, ...] = field(default_factory=tuple)


@dataclass
class _Failure:
    url: str
    reason: str
    actual_sha256: str | None = None


# ----------------------------------------------------------------------------- the downloader


def _sha256_of(path: Path) -> Any:
    """The sha256 state (``hashlib``) of the bytes of ``path``, to read or to continue."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_SIZE), b""):
            digest.update(block)
    return digest


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``(start, total)`` of a ``Content-Range: bytes a-b/n`` (or ``bytes */n``) header."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[len("bytes ") :].partition("/")
    start = span.partition("-")[0]
    return (int(start) if start.isdigit() else None), (int(total) if total.isdigit() else None)


@dataclass(frozen=True)
class Transfer:
    """A complete download in the ``.part`` file: its sha256, size and the byte it resumed from (0 = fresh)."""

    sha256: str
    size: int
    resumed_from: int = 0


class ResumableDownloader:
    """Streams a URL into ``part``, continuing an earlier partial download with an HTTP Range request.

    ``ResumableDownloader(part, timeout).download(url)`` appends to ``part`` from its current
    size when the server answers ``206`` with a matching ``Content-Range``, starts over when it
    answers ``200`` (ranges unsupported), and returns a :class:`Transfer` once the file is
    complete. Each byte is hashed once, as it arrives; a retry continues the hash kept from the
    attempt before, and only a part left by an earlier process is read back.
    A dropped connection raises :class:`IncompleteDownloadError` and leaves ``part`` for the
    next attempt. The caller checks the sha256 and moves ``part`` into place.
    """

    def __init__(self, part: Path, timeout: float = 60.0, chunk_size: int = CHUNK_SIZE) -> None:
        if not timeout > 0:
            raise ConfigError(f"timeout = {timeout!r}: expected a positive number of seconds")
        self.part = Path(part)
        self.timeout = float(timeout)
        self.chunk_size = int(chunk_size)
        # the running sha256 of the part and how many bytes it covers, kept across attempts
        # so a retry of this downloader resumes the hash as well as the file
        self._digest: Any = None
        self._hashed = -1

    def _digest_of_part(self, size: int) -> Any:
        """The sha256 state of the part's ``size`` bytes: the one kept from the last attempt, else read back."""
        if self._digest is not None and self._hashed == size:
            return self._digest
        return _sha256_of(self.part)

    def download(self, url: str) -> Transfer:
        """Make ``part`` hold all of ``url``; raises ``requests`` errors or :class:`IncompleteDownloadError`."""
        import requests

        self.part.parent.mkdir(parents=True, exist_ok=True)
        offset = self.part.stat().st_size if self.part.is_file() else 0
        # identity: a compressed transfer would make Range offsets and lengths mismatch
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as response:
            if offset and response.status_code == 416:
                # the part already holds everything (or is longer than the file): check, else start over
                _, total = _content_range(response.headers.get("Content-Range"))
                if total != offset:
                    self.part.unlink(missing_ok=True)
                    raise IncompleteDownloadError(
                        f"{url}: the partial file {self.part} ({offset} bytes) does not fit the "
                        f"server's file ({total} bytes); discarded, downloading again"
                    )
                return Transfer(self._digest_of_part(offset).hexdigest(), offset, resumed_from=offset)
            response.raise_for_status()
            start, total = _content_range(response.headers.get("Content-Range"))
            encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
            if response.status_code == 206 and (encoded or start != offset):
                # compressed ranges count other bytes than we store; a range elsewhere cannot be appended
                self.part.unlink(missing_ok=True)
                raise IncompleteDownloadError(
                    f"{url}: the server answered the range request for byte {offset} with an unusable "
                    f"partial response (Content-Range {response.headers.get('Content-Range')!r}, "
                    f"Content-Encoding {response.headers.get('Content-Encoding')!r}); restarting from byte 0"
                )
            if response.status_code == 206:
                mode, digest, resumed_from = "ab", self._digest_of_part(offset), offset
                log.info("resuming %s at byte %d", url, offset)
            else:
                mode, digest, offset, resumed_from = "wb", hashlib.sha256(), 0, 0
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() and not encoded else None
            written = offset
            self._digest, self._hashed = None, -1  # the part changes from here on
            with open(self.part, mode) as handle:
                try:
                    for chunk in response.iter_content(self.chunk_size):
                        handle.write(chunk)
                        digest.update(chunk)
                        written += len(chunk)
                finally:  # also when the connection drops: the hash covers exactly what was written
                    self._digest, self._hashed = digest, written
                handle.flush()
                os.fsync(handle.fileno())  # the part is renamed into place next: its bytes must be on disk
        if total is not None and written != total:
            raise IncompleteDownloadError(
                f"{url}: the connection ended after {written} of {total} bytes; "
                f"kept {self.part} to resume from there"
            )
        log.debug("downloaded %s: %d bytes, sha256 %s", url, written, digest.hexdigest())
        return Transfer(digest.hexdigest(), written, resumed_from)


# ----------------------------------------------------------------------------- one file


def mirror_urls(file: DataFile, mirrors: Sequence[str] = ()) -> tuple[str, ...]:
    """URLs to try for ``file``: ``<mirror>/<name>`` for each mirror given, else the file's own urls."""
    if mirrors:
        return tuple(f"{m.rstrip('/')}/{file.name}" for m in mirrors)
    return tuple(file.urls)


def _is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def _classify(exc: BaseException) -> tuple[str, bool]:
    """``(reason, retry on the same mirror?)`` for a failed attempt."""
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        return f"HTTP {status} {exc.response.reason or ''}".strip(), status in RETRYABLE_STATUS
    if isinstance(exc, requests.Timeout):
        return f"timed out ({exc.__class__.__name__})", True
    if isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        return f"connection failed: {exc}", True
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema)):
        return f"invalid URL: {exc}", False
    if isinstance(exc, (IncompleteDownloadError, requests.RequestException)):
        return str(exc), True
    return f"{exc.__class__.__name__}: {exc}", False


def _failure_message(dataset: str, file: DataFile, folder: Path, failures: Sequence[_Failure]) -> str:
    lines = [f"dataset {dataset!r}: could not download {file.name} (expected sha256 {file.sha256 or 'not pinned'})."]
    for failure in failures:
        lines.append(f"  {failure.url}: {failure.reason}")
    mismatched = [f for f in failures if f.actual_sha256]
    if mismatched:
        lines.append(
            f"Each file with the wrong checksum was deleted; nothing was written to {folder / file.name}."
        )
        lines.append(
            "Fix: try another mirror (`--mirror URL`), or check whether the dataset changed upstream "
            "(then the pinned sha256 in its spec must be updated); if you placed a file there yourself, "
            f"delete {folder / file.name} and fetch again."
        )
    else:
        lines.append(
            "Fix: check the network and run the command again (partial downloads resume), "
            f"pass another mirror with `--mirror URL`, or download {file.name} by hand into {folder}."
        )
    return "\n".join(lines)


def fetch_file(
    file: DataFile,
    folder: Path,
    *,
    dataset: str = "",
    mirrors: Sequence[str] = (),
    retries: int = 3,
    timeout: float = 60.0,
    backoff_s: float = 1.0,
    note: Callable[[str], None] | None = None,
) -> FetchedFile:
    """Make ``folder / file.name`` hold ``file`` with its pinned sha256, downloading if needed.

    Tries :func:`mirror_urls` in order; ``retries`` extra attempts per mirror after
    network failures (waiting ``backoff_s``, doubling, at most 30 s), resuming the
    partial download. Raises :class:`ChecksumMismatchError` if a mirror served a file
    with another sha256 and no mirror served the right one, :class:`DownloadError` for
    other failures (each names the file, the URLs, the reasons and the fix).
    """
    import requests

    if not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries = {retries!r}: expected a non-negative integer")
    if backoff_s < 0:
        raise ConfigError(f"backoff_s = {backoff_s!r}: expected a non-negative number of seconds")
    say = note or (lambda message: log.info("%s", message))
    folder = Path(folder)
    target = folder / file.name
    expected = file.sha256.lower().removeprefix("sha256:")
    if target.is_file():
        actual = _sha256_of(target).hexdigest()
        if not expected or actual == expected:
            return FetchedFile(file.name, target, actual, "present", verified=bool(expected))
        say(f"{target} has sha256 {actual}, expected {expected}: downloading it again")
    urls = mirror_urls(file, mirrors)
    if not urls:
        raise DownloadError(
            f"dataset {dataset!r}: file {file.name} (sha256 {expected or 'not pinned'}) has no public "
            f"download (licence terms or distribution by request); obtain it from the dataset's "
            f"provider and put it in {folder} (or a folder passed with --data-dir), or pass a "
            f"mirror that serves it with `--mirror URL`."
        )
    folder.mkdir(parents=True, exist_ok=True)
    downloader = ResumableDownloader(folder / (file.name + PART_SUFFIX), timeout=timeout)
    failures: list[_Failure] = []
    for url in urls:
        for attempt in range(retries + 1):
            part = downloader.part
            resume = f", resuming at byte {part.stat().st_size}" if part.is_file() else ""
            say(f"{file.name}: downloading from {url}{resume}")
            try:
                transfer = downloader.download(url)
            except (OSError, requests.RequestException) as exc:
                reason, retry = _classify(exc)
                failures.append(_Failure(url, reason))
                if not retry or attempt == retries:
                    say(f"{file.name}: {url} failed ({reason})")
                    break
                wait = min(backoff_s * 2**attempt, 30.0)
                say(f"{file.name}: {url} failed ({reason}); retrying in {wait:g} s")
                time.sleep(wait)
                continue
            if expected and transfer.sha256 != expected:
                # a resumed part could be the bad half: drop it all, so the next mirror starts clean
                part.unlink(missing_ok=True)
                failures.append(_Failure(
                    url, f"sha256 {transfer.sha256} does not match the expected {expected}", transfer.sha256,
                ))
                say(f"{file.name}: wrong checksum from {url}; trying the next mirror")
                break
            os.replace(part, target)
            action: Literal["downloaded", "resumed"] = "resumed" if transfer.resumed_from else "downloaded"
            return FetchedFile(file.name, target, transfer.sha256, action, url=url, verified=bool(expected))
    error = ChecksumMismatchError if any(f.actual_sha256 for f in failures) else DownloadError
    raise error(_failure_message(dataset, file, folder, failures))


# ----------------------------------------------------------------------------- archives


def unpack_archive(archive: Path, folder: Path | None = None) -> tuple[Path, ...]:
    """Unpack a ``.zip``/``.tar``/``.tar.gz``/``.tgz`` into ``folder`` (default: beside it).

    Members already present with the same size are kept. New members are unpacked into a
    hidden temporary folder first and then moved into place one by one, so no file is ever
    visible half-written. Members that would escape ``folder`` are refused.
    """
    archive = Path(archive)
    folder = Path(folder) if folder is not None else archive.parent
    name = archive.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as handle:
            members = {i.filename: i.file_size for i in handle.infolist() if not i.is_dir()}
    elif name.endswith(ARCHIVE_SUFFIXES):
        with tarfile.open(archive) as handle:
            members = {m.name: m.size for m in handle.getmembers() if m.isfile()}
    else:
        raise DatasetError(f"{archive}: not an archive this harness unpacks; expected one of {ARCHIVE_SUFFIXES}")
    root = folder.resolve()
    for member in members:
        resolved = (root / member).resolve()
        if member.startswith(("/", "\\")) or (resolved != root and root not in resolved.parents):
            raise DatasetError(
                f"{archive}: member {member!r} would be written outside {folder}; refusing to unpack "
                f"(delete the archive and fetch it from another mirror)"
            )
    missing = [m for m, size in members.items() if not ((folder / m).is_file() and (folder / m).stat().st_size == size)]
    if not missing:
        return tuple(folder / m for m in members)
    with tempfile.TemporaryDirectory(prefix=".unpack-", dir=folder) as tmp:
        if name.endswith(".zip"):
            with zipfile.ZipFile(archive) as handle:
                handle.extractall(tmp, members=missing)
        else:
            with tarfile.open(archive) as handle:
                wanted = [m for m in handle.getmembers() if m.name in set(missing)]
                # members were checked above (regular files inside folder); the "data" filter adds
                # its own checks where Python has it (3.10.12+, 3.11.4+)
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                handle.extractall(tmp, members=wanted, **safe)
        for member in missing:
            destination = folder / member
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(tmp) / member, destination)
    return tuple(folder / m for m in members)


# ----------------------------------------------------------------------------- a dataset


def dataset_folder(name: str, data_dir: Path | None, cache_dir: Path) -> Path:
    """Where ``bench datasets fetch`` puts dataset ``name``: ``<data_dir or cache_dir>/<name>``.

    ``data_dir`` is ``--data-dir`` or ``$BENCH_DATA_DIR``; ``cache_dir`` is
    ``$BENCH_HOME/cache``. The loaders search the sub-folder named after the dataset
    in each of these roots (:mod:`bench_core.data.locate`).
    """
    return Path(data_dir if data_dir is not None else cache_dir) / name


def fetch_dataset(
    spec: DatasetSpec,
    folder: Path,
    *,
    mirrors: Sequence[str] = (),
    retries: int = 3,
    timeout: float = 60.0,
    backoff_s: float = 1.0,
    note: Callable[[str], None] | None = None,
) -> FetchReport:
    """Fetch every file of ``spec.files`` into ``folder`` (see :func:`fetch_file`), unpacking archives.

    Files are fetched in the spec's order; the first failure raises (files already
    fetched stay, verified). A dataset without files (generated, such as ``synthetic``)
    gives an empty report.
    """
    done: list[FetchedFile] = []
    for file in spec.files:
        fetched = fetch_file(
            file, folder, dataset=spec.name, mirrors=mirrors, retries=retries, timeout=timeout,
            backoff_s=backoff_s, note=note,
        )
        if _is_archive(file.name):
            try:
                unpacked = unpack_archive(fetched.path)
            except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
                raise DatasetError(
                    f"dataset {spec.name!r}: archive {fetched.path} (sha256 {fetched.sha256}) cannot be "
                    f"unpacked: {exc}; delete it and fetch again"
                ) from exc
            fetched = FetchedFile(**{**fetched.__dict__, "unpacked": unpacked})
        done.append(fetched)
    return FetchReport(dataset=spec.name, folder=Path(folder), files=tuple(done))


def summary(report: FetchReport) -> Mapping[str, Any]:
    """JSON-able form of a :class:`FetchReport`."""
    return {
        "dataset": report.dataset,
        "folder": str(report.folder),
        "files": [
            {"name": f.name, "path": str(f.path), "sha256": f.sha256, "action": f.action, "url": f.url,
             "verified": f.verified, "unpacked": [str(p) for p in f.unpacked]}
            for f in report.files
        ],
    }
