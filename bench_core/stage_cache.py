"""A disk cache for what method stages compute (a pretrained network, a feature map).

A stage that pretrains without labels (BDGF's diffusion model) gives the same result for
every cell and tuning trial that shares its inputs, its configuration and its seed, so it is
computed once and reused. Layout::

    <BENCH_HOME>/cache/stages/<method>/<entry>-<key>/   one finished entry (any files)
        manifest.json                                    what the key was made of
    <BENCH_HOME>/cache/stages/<method>/.tmp-...          an entry being written

The key hashes the entry name, the parts the stage passes (method version, stage config,
seed) and the **dataset fingerprint**: a hash of the input arrays the stage receives, so a
different scene, crop, band selection or normalisation is a different entry. An entry is
written into a temporary folder and renamed into place when complete (atomic on one file
system); an interrupted write leaves no entry, and of two processes writing the same entry
the first rename wins. Every lookup is recorded as ``hit`` or ``miss`` (run tags
``bench.stage_cache.<entry>``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from bench_core.errors import ConfigError
from bench_core.specs import check_name


def inputs_fingerprint(inputs: Mapping[str, np.ndarray]) -> str:
    """Hash (hex, 20 chars) of named arrays: names, dtypes, shapes and every value."""
    digest = hashlib.blake2b(digest_size=10)
    for name in sorted(inputs):
        arr = np.ascontiguousarray(inputs[name])
        digest.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        digest.update(memoryview(arr).cast("B"))
    return digest.hexdigest()


def _key_text(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    if isinstance(value, np.generic):
        return value.item()
    raise ConfigError(
        f"stage cache key part {value!r} ({type(value).__name__}) is not JSON-serialisable; pass "
        f"numbers, strings, lists and dicts"
    )


class StageCache:
    """The stage cache of one method on one set of inputs.

    Args:
        root: ``<BENCH_HOME>/cache/stages/<method>``.
        inputs: the arrays the stage receives (their hash is the dataset fingerprint,
            computed on first use).
    """

    def __init__(self, root: Path, inputs: Mapping[str, np.ndarray]) -> None:
        self.root = Path(root)
        self._inputs = inputs
        self.events: dict[str, str] = {}
        """``{entry name: "hit" | "miss"}`` in the order of lookup."""

    @cached_property
    def dataset_fingerprint(self) -> str:
        return inputs_fingerprint(self._inputs)

    def entry(self, name: str, parts: Mapping[str, Any]) -> CacheEntry:
        """The entry ``name`` for ``parts`` (method version, stage config, seed, ...)."""
        check_name("stage cache entry", name)
        payload = {"entry": name, "parts": dict(parts), "dataset_fingerprint": self.dataset_fingerprint}
        text = json.dumps(payload, sort_keys=True, default=_key_text)
        key = hashlib.sha256(text.encode()).hexdigest()[:20]
        return CacheEntry(self, name, key, payload)


class CacheEntry:
    """One keyed entry: find it (:meth:`open`) or write it (:meth:`write`)."""

    def __init__(self, cache: StageCache, name: str, key: str, payload: Mapping[str, Any]) -> None:
        self.cache = cache
        self.name = name
        self.key = key
        self.payload = payload
        self.path = cache.root / f"{name}-{key}"

    def open(self) -> Path | None:
        """The entry's folder if a finished entry exists (a ``hit``), else ``None`` (a ``miss``)."""
        found = (self.path / "manifest.json").is_file()
        self.cache.events[self.name] = "hit" if found else "miss"
        return self.path if found else None

    @contextmanager
    def write(self) -> Iterator[Path]:
        """Yield an empty folder to write the entry into; it becomes the entry on success.

        On an exception the folder is deleted and nothing is stored. If another process
        stored the same entry meanwhile, its copy is kept and this one discarded (same key,
        same content). Afterwards read the files from :attr:`path`.
        """
        self.cache.root.mkdir(parents=True, exist_ok=True)
        tmp = self.cache.root / f".tmp-{self.name}-{self.key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            yield tmp
            (tmp / "manifest.json").write_text(json.dumps(self.payload, indent=2, sort_keys=True, default=_key_text))
            try:
                os.rename(tmp, self.path)
            except OSError:
                if not (self.path / "manifest.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["CacheEntry", "StageCache", "inputs_fingerprint"]
