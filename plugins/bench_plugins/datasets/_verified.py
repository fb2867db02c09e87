"""Bring-your-own-file datasets: published facts verified at load, layouts chosen by settings.

Shared by ``dfc2018``, ``yellow-river`` and ``lcz-hk``, whose files may not be redistributed
or have no public download: the user supplies them (``--data-dir``), the loader checks them
against what the papers publish. :class:`VerifiedDataset` is a
:class:`~bench_core.data.RealDataset` (same search, checksums, cache, fingerprint) plus:

* :class:`PublishedFacts` per layout: the scene's (rows, cols) and per-class pixel counts
  (all labelled pixels, or the official train and test maps). A difference raises
  :class:`~bench_core.errors.DatasetError` naming the class, the expected and the found
  count, before anything is cached. ``BENCH_VERIFY_CHECKSUMS=0`` (the switch that accepts
  files whose sha256 differs) loads them anyway and records every difference in the scene
  metadata (``facts_mismatch``) and the run param ``data.verified``, as for checksums.
* ``configure(env) -> layouts``: layouts that depend on settings (environment variables,
  e.g. which LiDAR rasters form X). A non-default setting gives a layout name of its own
  (``<base>+<setting>``), so the cache folder and the data fingerprint (hence the cell key)
  change with it.
* ``obtain``: where the files come from, added to the "files not found" message.
* ``metadata["run_params"]``: ``{name: value}`` the runner logs as ``data.<name>`` params;
  ``data.layout`` (the layout used) is always logged.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench_core import DatasetContext, DatasetError, Scene
from bench_core.data import (
    DATA_DIR_ENV,
    DEFAULT_NORMALISATION,
    VERIFY_ENV,
    Layout,
    Located,
    RealDataset,
    locate,
)

__all__ = ["MISMATCH_KEY", "PublishedFacts", "VerifiedDataset", "class_counts", "layout_base", "verify_enabled"]

MISMATCH_KEY = "facts_mismatch"
"""Scene metadata key: the differences from the published facts (only when loaded with the switch off)."""
EXTRA_KEY = "facts_extra"
"""Raw-scene metadata key a reader may fill with its own differences (e.g. unknown label codes)."""
log = logging.getLogger("bench.data")


def verify_enabled(env: Mapping[str, str]) -> bool:
    """Whether ``BENCH_VERIFY_CHECKSUMS`` asks for verification (the default)."""
    return env.get(VERIFY_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def layout_base(name: str) -> str:
    """``official`` of ``official+x-dsm``: the layout's name without its setting."""
    return name.split("+", 1)[0]


def class_counts(label_map: np.ndarray | None, k: int) -> np.ndarray | None:
    """Pixels per class 1..k of an (H, W) label map (``None`` passes through)."""
    if label_map is None:
        return None
    flat = np.asarray(label_map).reshape(-1)
    return np.bincount(flat[(flat > 0) & (flat <= k)], minlength=k + 1)[1 : k + 1]


@dataclass(frozen=True)
class PublishedFacts:
    """What a paper publishes about a dataset variant, checked against the loaded scene.

    Attributes:
        source: where the facts come from (shown in messages and cards).
        shape: (rows, cols) of the scene.
        labelled: pixels per class over all labelled pixels.
        train, test: pixels per class of the official train / test maps.
    """

    source: str
    shape: tuple[int, int] | None = None
    labelled: tuple[int, ...] | None = None
    train: tuple[int, ...] | None = None
    test: tuple[int, ...] | None = None

    def checks(self) -> str:
        """What is checked, in words: ``shape 960 x 1170 and 5 per-class labelled counts``."""
        parts = []
        if self.shape is not None:
            parts.append(f"shape {self.shape[0]} x {self.shape[1]}")
        for what, counts in (("labelled", self.labelled), ("official train", self.train),
                             ("official test", self.test)):
            if counts is not None:
                parts.append(f"{len(counts)} per-class {what} counts (total {sum(counts)})")
        return " and ".join(parts) or "nothing"

    def mismatches(
        self,
        class_names: Sequence[str],
        shape: tuple[int, int],
        labels: np.ndarray | None = None,
        train: np.ndarray | None = None,
        test: np.ndarray | None = None,
    ) -> list[str]:
        """One line per difference: ``class 7 'Water': official train pixels expected 1064, found 1063``."""
        out: list[str] = []
        if self.shape is not None and tuple(int(v) for v in shape) != tuple(self.shape):
            out.append(f"scene shape (rows x cols) expected {self.shape[0]} x {self.shape[1]}, "
                       f"found {shape[0]} x {shape[1]}")
        k = len(class_names)
        for what, expected, found in (("labelled pixels", self.labelled, labels),
                                      ("official train pixels", self.train, train),
                                      ("official test pixels", self.test, test)):
            if expected is None:
                continue
            if found is None:
                out.append(f"{what}: expected per-class counts, but the layout gives no such map")
                continue
            counts = class_counts(found, k)
            assert counts is not None
            for i, (e, f) in enumerate(zip(expected, counts.tolist())):
                if e != f:
                    out.append(f"class {i + 1} {class_names[i]!r}: {what} expected {e}, found {f}")
        return out


class VerifiedDataset(RealDataset):
    """A :class:`RealDataset` whose scenes are checked against :class:`PublishedFacts` (see the module).

    Args:
        facts: ``{layout base name: PublishedFacts}``; a layout without an entry is not checked.
        configure: ``configure(env) -> layouts`` for the current settings (default: ``layouts``).
        obtain: how to get the files, appended to the "not found" message.
        settings: ``{environment variable: what it sets}``, for cards and messages.
        **kwargs: :class:`RealDataset`'s arguments (``layouts`` are the default-setting layouts).
    """

    def __init__(
        self,
        *,
        facts: Mapping[str, PublishedFacts],
        configure: Callable[[Mapping[str, str]], tuple[Layout, ...]] | None = None,
        obtain: str = "",
        settings: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.facts = dict(facts)
        self.configure = configure
        self.obtain = obtain
        self.settings = dict(settings or {})
        self._verify = True

    # ------------------------------------------------------------------ settings and search

    def layouts_for(self, env: Mapping[str, str] | None = None) -> tuple[Layout, ...]:
        """The layouts of the current settings (``env``, default ``os.environ``)."""
        env = os.environ if env is None else env
        return tuple(self.configure(env)) if self.configure is not None else self.layouts

    def facts_for(self, layout: Layout) -> PublishedFacts | None:
        """The published facts a scene read with ``layout`` must match."""
        return self.facts.get(layout_base(layout.name))

    def _locate(self, context: DatasetContext, env: Mapping[str, str]) -> Located:
        layouts = self.layouts_for(env)
        try:
            return locate(self.name, layouts, context, aliases=self.aliases, url=self.download_url,
                          fetchable=self.fetchable, env=env)
        except DatasetError as exc:
            raise DatasetError(self._with_obtain(str(exc))) from None

    def _with_obtain(self, message: str) -> str:
        lines = message.splitlines()
        if self.obtain:
            lines = [
                f"Fix: get the files (below), then pass their folder with --data-dir or {DATA_DIR_ENV} (no public "
                f"download, so `bench datasets fetch {self.name}` cannot)." if line.startswith("Fix: download") else line
                for line in lines
            ]
            lines.append(f"Where to get them: {self.obtain}")
        if self.settings:
            lines.append("Settings: " + "; ".join(f"{k}: {v}" for k, v in self.settings.items()))
        return "\n".join(lines)

    # ------------------------------------------------------------------ loading

    def load(
        self, context: DatasetContext, normalisation: str | None = None, env: Mapping[str, str] | None = None
    ) -> Scene:
        """:meth:`RealDataset.load`, then refuse a (cached) scene that differs from the published facts."""
        env = os.environ if env is None else env
        self._verify = verify_enabled(env)
        scene = super().load(context, normalisation, env)
        problems = scene.metadata.get(MISMATCH_KEY)
        if problems and self._verify:
            raise DatasetError(self.facts_message(str(scene.metadata.get("layout", "")),
                                                  str(scene.metadata.get("source_dir", "")), list(problems)))
        return scene

    def build(
        self,
        located: Located,
        normalisation: str = DEFAULT_NORMALISATION,
        sha256: Mapping[str, str] | None = None,
        mismatches: Mapping[str, tuple[str, str]] | None = None,
    ) -> Scene:
        """:meth:`RealDataset.build` with the published facts checked (raises before caching)."""
        scene = super().build(located, normalisation, sha256, mismatches)
        extra = list(scene.metadata.get(EXTRA_KEY, ()))
        problems = self.check_facts(located, scene.class_names, scene.shape, np.asarray(scene.labels),
                                    scene.official_train, scene.official_test, extra)
        meta = {k: v for k, v in scene.metadata.items() if k != EXTRA_KEY}
        return dataclasses.replace(scene, metadata=self.with_verification(meta, located.layout, problems))

    def check_facts(
        self,
        located: Located,
        class_names: Sequence[str],
        shape: tuple[int, int],
        labels: np.ndarray | None,
        train: np.ndarray | None,
        test: np.ndarray | None,
        extra: Sequence[str] = (),
    ) -> list[str]:
        """The differences from the published facts; raises at once when verification is on."""
        facts = self.facts_for(located.layout)
        problems = list(extra)
        if facts is not None:
            problems = facts.mismatches(class_names, shape, labels, train, test) + problems
        if problems:
            if self._verify:
                raise DatasetError(self.facts_message(located.layout.name, str(located.folder), problems))
            log.warning("dataset %r: %d difference(s) from the published facts, loaded anyway (%s=0): %s",
                        self.name, len(problems), VERIFY_ENV, "; ".join(problems[:5]))
        return problems

    def with_verification(self, metadata: Mapping[str, Any], layout: Layout, problems: Sequence[str]) -> dict[str, Any]:
        """``metadata`` plus :meth:`verification_metadata` (the ``run_params`` merged)."""
        extra = self.verification_metadata(layout, problems)
        run_params = {**dict(metadata.get("run_params") or {}), **extra.pop("run_params")}
        return {**dict(metadata), **extra, "run_params": run_params}

    def verification_metadata(self, layout: Layout, problems: Sequence[str]) -> dict[str, Any]:
        """``verification`` (text), ``facts_mismatch`` (when any) and the ``data.verified`` run param."""
        facts = self.facts_for(layout)
        if facts is None and not problems:
            text, param = "no published facts for this layout", "unchecked"
        elif not problems:
            assert facts is not None
            text, param = f"matches {facts.source}: {facts.checks()}", "yes"
        else:
            source = facts.source if facts is not None else "the published facts"
            text = f"DIFFERS from {source} in {len(problems)} place(s), loaded with {VERIFY_ENV}=0"
            param = f"no ({len(problems)} difference(s), {VERIFY_ENV}=0)"
        meta: dict[str, Any] = {"verification": text, "run_params": {"verified": param}}
        if problems:
            meta[MISMATCH_KEY] = list(problems)
        return meta

    def facts_message(self, layout: str, folder: str, problems: Sequence[str]) -> str:
        facts = self.facts.get(layout_base(layout))
        source = facts.source if facts is not None else "the published facts"
        shown = list(problems[:25])
        more = [f"... and {len(problems) - len(shown)} more"] if len(problems) > len(shown) else []
        where = f" in {folder}" if folder else ""
        return "\n".join([
            f"dataset {self.name!r} ({layout} layout): the files{where} differ from {source}:",
            *(f"  {p}" for p in shown + more),
            ("They are another variant, a crop or a corrupt copy of the data. Fix: use the files the card "
            f"(`bench datasets info {self.name}`) describes, or set {VERIFY_ENV}=0 to use them anyway (the "
            f"differences are then recorded in the scene metadata as {MISMATCH_KEY!r} and in the run param "
            "'data.verified')."),
        ])

    # ------------------------------------------------------------------ cards

    def card_info(self) -> dict[str, Any]:
        """:meth:`RealDataset.card_info` plus per-class labelled counts, the verified facts and the settings."""
        info = super().card_info()
        labelled = {
            name: facts.labelled for name, facts in self.facts.items() if facts.labelled is not None
        }
        if len(labelled) == 1 and self.official is None:
            (counts,) = labelled.values()
            for row, n in zip(info["classes"], counts):
                row["labelled"] = n
        info["verified_at_load"] = [
            {"layout": name, "source": facts.source, "checks": facts.checks(),
             **({"shape": list(facts.shape)} if facts.shape else {}),
             **({"labelled": list(facts.labelled)} if facts.labelled else {})}
            for name, facts in self.facts.items()
        ]
        if self.obtain:
            info["obtain"] = self.obtain
        if self.settings:
            info["settings"] = dict(self.settings)
        return info
