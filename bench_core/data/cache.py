"""The on-disk scene cache: memory-mappable ``.npy`` files + a JSON manifest.

The first load of a dataset converts its source files into one folder::

    <cache_dir>/scenes/<dataset>/<layout>-<normalisation>/
        manifest.json          format, loader version, source files (size, mtime, sha256),
                               class names, palette, metadata, array shapes
        modality-hsi.npy, ...  one (C, H, W) float32 array per modality
        labels.npy             (H, W) int64
        official_train.npy, official_test.npy   when the dataset has them

Later loads stat the source files and ``np.load(..., mmap_mode="r")`` the arrays, so an
Augsburg-sized scene opens in milliseconds. A source file whose path, size or mtime
changed is hashed again; a different sha256 (or loader version) makes the cache stale and the
scene is rebuilt.

Writes are atomic: everything goes into a temporary sibling folder, each file is
fsync'ed, then the folder is renamed into place with :func:`os.replace`. A crash or
an exception mid-write leaves at most a ``.tmp-*`` folder that no reader looks at (it
is removed by the next write once its process is gone); a half-written cache is never
visible.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench_core.errors import DatasetError
from bench_core.scene import Scene

__all__ = ["CACHE_FORMAT", "CachedScene", "SceneCache", "SourceStat", "sha256_file", "sha256_file_once"]

CACHE_FORMAT = 1
"""Bumped whenever the folder layout or manifest changes; older caches are rebuilt."""
MANIFEST = "manifest.json"
_CHUNK = 1 << 20
log = logging.getLogger("bench.data")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


_HASHED: dict[tuple[object, ...], str] = {}


def sha256_file_once(path: Path) -> str:
    """:func:`sha256_file`, hashed once per process while the file stays the same.

    The file is the same while its resolved path, device, inode, size, mtime and ctime are
    (ctime changes on every write and cannot be set back), so the data fingerprint taken
    before a run and the loader's checksum check share one read of each file.
    """
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _HASHED:
        _HASHED[key] = sha256_file(path)
    return _HASHED[key]


@dataclass(frozen=True)
class SourceStat:
    """What the cache remembers of one source file."""

    name: str
    path: str
    size: int
    mtime_ns: int
    sha256: str

    @classmethod
    def of(cls, name: str, path: Path, sha256: str) -> SourceStat:
        st = Path(path).stat()
        return cls(name=name, path=str(path), size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=sha256)


@dataclass(frozen=True)
class CachedScene:
    """A scene opened from the cache and the sha256 of the files it was made from."""

    scene: Scene
    sha256: Mapping[str, str]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_array(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        json.dump(payload, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but not ours
        return True
    return True


class SceneCache:
    """One cache folder for one (dataset, layout, normalisation).

    Args:
        folder: the final folder, e.g. ``<cache_dir>/scenes/augsburg/ouc-minmax``.
        version: the loader's version; a cache written by another version is stale.
    """

    def __init__(self, folder: Path, version: str) -> None:
        self.folder = Path(folder)
        self.version = str(version)

    # ------------------------------------------------------------------ reading

    def manifest(self) -> dict[str, Any] | None:
        """The manifest if the folder holds a complete cache of this format and version."""
        path = self.folder / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if data.get("format") != CACHE_FORMAT or data.get("loader_version") != self.version:
            return None
        return data

    def load(self, sources: Mapping[str, Path]) -> CachedScene | None:
        """The cached scene if it was made from exactly ``sources`` ({name: path}); else ``None``.

        Path, size and mtime are compared first; a file whose path, size or mtime changed
        is hashed, and the cache is used only if its sha256 is unchanged (the manifest is
        then refreshed so the next load is fast again).
        """
        manifest = self.manifest()
        if manifest is None:
            return None
        recorded = {s["name"]: s for s in manifest["sources"]}
        if set(recorded) != set(sources):
            return None
        refreshed = False
        for name, path in sources.items():
            rec = recorded[name]
            try:
                st = Path(path).stat()
            except OSError:
                return None
            if st.st_size == rec["size"] and st.st_mtime_ns == rec["mtime_ns"] and rec["path"] == str(path):
                continue
            if st.st_size != rec["size"] or sha256_file(path) != rec["sha256"]:
                log.info("cache %s is stale: %s changed", self.folder, path)
                return None
            recorded[name] = {**rec, "path": str(path), "mtime_ns": st.st_mtime_ns}
            refreshed = True
        try:
            scene = self._open(manifest)
        except (OSError, ValueError, KeyError, DatasetError) as exc:
            log.warning("cache %s is unreadable (%s); rebuilding it", self.folder, exc)
            return None
        if refreshed:
            manifest["sources"] = [recorded[n] for n in sorted(recorded)]
            self._rewrite_manifest(manifest)
        return CachedScene(scene=scene, sha256={n: r["sha256"] for n, r in recorded.items()})

    def recorded_sha256(self, sources: Mapping[str, Path]) -> dict[str, str]:
        """The sha256 the manifest records for each of ``sources`` still at the same path, size and mtime.

        What the cache verified when it was made, without reading the files; a file that
        moved or changed (or a cache of another format or loader version) is left out.
        """
        manifest = self.manifest()
        if manifest is None:
            return {}
        recorded = {s["name"]: s for s in manifest.get("sources", [])}
        out: dict[str, str] = {}
        for name, path in sources.items():
            rec = recorded.get(name)
            if rec is None or rec.get("path") != str(path):
                continue
            try:
                st = Path(path).stat()
            except OSError:
                continue
            if st.st_size == rec.get("size") and st.st_mtime_ns == rec.get("mtime_ns"):
                out[name] = str(rec["sha256"])
        return out

    def _open(self, manifest: Mapping[str, Any]) -> Scene:
        arrays: dict[str, np.ndarray] = {}
        for key, info in manifest["arrays"].items():
            array = np.load(self.folder / info["file"], mmap_mode="r", allow_pickle=False)
            if list(array.shape) != info["shape"] or str(array.dtype) != info["dtype"]:
                raise ValueError(f"{info['file']} has shape {array.shape} {array.dtype}, manifest says {info}")
            arrays[key] = array
        palette = manifest.get("palette")
        return Scene(
            name=manifest["dataset"],
            modalities={m: arrays[f"modality:{m}"] for m in manifest["modalities"]},
            labels=arrays["labels"],
            class_names=tuple(manifest["class_names"]),
            official_train=arrays.get("official_train"),
            official_test=arrays.get("official_test"),
            palette=tuple(tuple(c) for c in palette) if palette else None,
            metadata=manifest.get("metadata", {}),
        )

    def _rewrite_manifest(self, manifest: Mapping[str, Any]) -> None:
        tmp = self.folder / f".{MANIFEST}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        try:
            _write_json(tmp, manifest)
            os.replace(tmp, self.folder / MANIFEST)
        except OSError as exc:  # read-only cache: still usable, just re-hashed next time
            log.warning("could not refresh %s (%s)", self.folder / MANIFEST, exc)
            tmp.unlink(missing_ok=True)

    # ------------------------------------------------------------------ writing

    def store(self, scene: Scene, sources: Mapping[str, Path], sha256: Mapping[str, str]) -> CachedScene:
        """Write ``scene`` atomically and return it re-opened from the cache (memory-mapped).

        ``metadata`` must be JSON-serialisable. Raises ``OSError`` if the cache folder is
        not writable (the caller may then use the in-memory scene).
        """
        parent = self.folder.parent
        parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temporaries()
        tmp = parent / f".tmp-{self.folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            arrays: dict[str, np.ndarray] = {f"modality:{m}": a for m, a in scene.modalities.items()}
            arrays["labels"] = np.asarray(scene.labels, dtype=np.int64)
            for attr in ("official_train", "official_test"):
                value = getattr(scene, attr)
                if value is not None:
                    arrays[attr] = np.asarray(value, dtype=np.int64)
            listing: dict[str, dict[str, Any]] = {}
            for key, array in arrays.items():
                file = f"modality-{key[9:]}.npy" if key.startswith("modality:") else f"{key}.npy"
                _write_array(tmp / file, array)
                listing[key] = {"file": file, "shape": list(array.shape), "dtype": str(np.asarray(array).dtype)}
            manifest = {
                "format": CACHE_FORMAT,
                "loader_version": self.version,
                "dataset": scene.name,
                "modalities": list(scene.modalities),
                "class_names": list(scene.class_names),
                "palette": [list(c) for c in scene.palette] if scene.palette else None,
                "metadata": _jsonable(dict(scene.metadata)),
                "sources": [SourceStat.of(n, sources[n], sha256[n]).__dict__ for n in sorted(sources)],
                "arrays": listing,
            }
            _write_json(tmp / MANIFEST, manifest)  # last: a folder with a manifest is complete
            _fsync_dir(tmp)
            self._swap_into_place(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(parent)
        cached = self.load(sources)
        if cached is None:  # a source changed while converting, or another writer replaced the cache
            raise DatasetError(
                f"cache {self.folder} does not match its source files after writing it; expected the "
                f"sources {sorted(sources)} to stay unchanged during the conversion. Run again (the "
                f"cache is rebuilt from the current files)"
            )
        return cached

    def _swap_into_place(self, tmp: Path) -> None:
        try:
            os.replace(tmp, self.folder)  # atomic when the folder is absent (or empty)
            return
        except OSError:
            if not self.folder.exists():
                raise
        trash = self.folder.parent / f".old-{self.folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.replace(self.folder, trash)  # readers now see no cache, never a partial one
        try:
            os.replace(tmp, self.folder)
        except OSError:
            if not self.folder.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # a concurrent writer won; its copy is complete
        shutil.rmtree(trash, ignore_errors=True)

    def _remove_stale_temporaries(self) -> None:
        """Remove ``.tmp-``/``.old-`` folders of this cache left by processes that died."""
        for prefix in (".tmp-", ".old-"):
            for path in self.folder.parent.glob(f"{prefix}{self.folder.name}-*"):
                pid_text = path.name[len(prefix) + len(self.folder.name) + 1 :].split("-")[0]
                if pid_text.isdigit() and not _pid_alive(int(pid_text)):
                    shutil.rmtree(path, ignore_errors=True)


def _jsonable(value: Any) -> Any:
    """Metadata as JSON: tuples -> lists, numpy scalars/arrays -> Python values."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise DatasetError(
        f"scene metadata value {value!r} of type {type(value).__name__} cannot be cached; "
        f"expected JSON-serialisable metadata (str, numbers, lists, dicts)"
    )
