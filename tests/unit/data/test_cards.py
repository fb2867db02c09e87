"""Dataset cards: generated from the specs, valid TOML, and the committed ones are current."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from bench_core import DataFile, DatasetSpec, load_plugins
from bench_core.cli import main
from bench_core.data import card_for, card_toml
from bench_core.data.cards import to_toml
from bench_core.errors import DatasetError
from tests.conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the backport pyproject.toml declares for it
    import tomli as tomllib

REAL = ("augsburg", "augsburg-dsm", "berlin", "houston2013", "muufl", "trento", "dfc2018", "yellow-river", "lcz-hk")
SHA = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture(scope="module")
def specs() -> dict[str, DatasetSpec]:
    host = load_plugins()
    return {name: host.datasets.get(name) for name in REAL}


def test_toml_writer_round_trips_through_tomllib() -> None:
    data = {"name": 'a "quoted" näme', "n": 3, "x": 0.5, "flag": True, "list": [1, 2], "empty": [],
            "table": {"k": "v", "sub": {"deep": 1}}, "rows": [{"a": 1, "files": [{"f": "x"}]}, {"a": 2}],
            "with space": "ok"}
    assert tomllib.loads(to_toml(data)) == data


def test_toml_writer_escapes_control_characters() -> None:
    # U+007F (DEL) is where a JSON string stops being a TOML basic string; the others are the C0 range
    text = "del\x7f nul\x00 bell\x07 esc\x1b tab\t newline\n cr\r unit\x1f quote\" backslash\\ é"
    data = {"description": text, "notes": [text, "\x7f"], "table": {"key\x7f": text}}
    assert tomllib.loads(to_toml(data)) == data


def test_toml_writer_drops_none_and_refuses_what_toml_cannot_hold() -> None:
    assert tomllib.loads(to_toml({"a": 1, "b": None, "t": {"c": None, "d": 2}})) == {"a": 1, "t": {"d": 2}}
    with pytest.raises(DatasetError, match=r"card value card\.x = nan: expected a finite number"):
        to_toml({"x": float("nan")})
    with pytest.raises(DatasetError, match="unsupported type.*expected str, int"):
        to_toml({"x": object()})


@pytest.mark.parametrize("name", REAL)
def test_card_parses_back_to_the_spec(name: str, specs: dict[str, DatasetSpec]) -> None:
    spec = specs[name]
    card = tomllib.loads(card_toml(spec))
    assert card == card_for(spec)
    assert card["name"] == name and card["modalities"] == list(spec.modalities)
    assert [c["name"] for c in card["classes"]] == list(spec.class_names)
    assert card["licence"] and card["citation"] and card["url"]
    assert sum(card["bands"].values()) >= 2 and list(card["bands"]) == list(spec.modalities)
    for f in card["files"]:
        assert SHA.match(f["sha256"]) and f["urls"] and all(u.startswith("https://") for u in f["urls"])
    for layout in card["layouts"]:
        assert layout["files"] and layout["description"]
        for f in layout["files"]:
            assert "sha256" not in f or SHA.match(f["sha256"])
    if spec.name in ("yellow-river", "lcz-hk"):  # no official split: the published per-class totals instead
        assert "official_split" not in card and all(c["labelled"] > 0 for c in card["classes"])
        return
    split = card["official_split"]
    if all("official_train" in c for c in card["classes"]):
        assert sum(c["official_train"] for c in card["classes"]) == split["train"]
    if all("official_test" in c for c in card["classes"]):
        assert sum(c["official_test"] for c in card["classes"]) == split["test"]


def test_card_of_a_plain_spec_has_the_spec_fields() -> None:
    spec = DatasetSpec(name="third-party", load=lambda ctx: None, modalities=("hsi", "lidar"),  # type: ignore[arg-type]
                       class_names=("a", "b"), files=(DataFile("x.mat", "0" * 64, ("https://h/x.mat",), 10),),
                       licence="CC-BY-4.0")
    card = tomllib.loads(card_toml(spec))
    assert card["classes"] == [{"label": 1, "name": "a"}, {"label": 2, "name": "b"}]
    assert card["files"] == [{"name": "x.mat", "sha256": "0" * 64, "urls": ["https://h/x.mat"], "size": 10}]


def test_committed_cards_are_current(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["datasets", "export-cards", *REAL, "--check", "--dir", str(REPO / "datasets")])
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    assert out.out.count("unchanged") == len(REAL)


def test_check_reports_drift_and_export_fixes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "datasets"
    shutil.copytree(REPO / "datasets", folder)
    card = folder / "berlin.toml"
    card.write_text(card.read_text().replace("train = 2820", "train = 2821"))
    (folder / "trento.toml").unlink()
    assert main(["datasets", "export-cards", *REAL, "--check", "--dir", str(folder)]) == 1
    out = capsys.readouterr()
    assert f"differs    {card}" in out.out and f"missing    {folder / 'trento.toml'}" in out.out
    assert "2 card(s) out of date" in out.err
    assert "train = 2821" in card.read_text()  # --check writes nothing
    assert main(["datasets", "export-cards", *REAL, "--dir", str(folder)]) == 0
    assert main(["datasets", "export-cards", *REAL, "--check", "--dir", str(folder)]) == 0


def test_default_selection_skips_generated_datasets(tmp_path: Path) -> None:
    assert main(["datasets", "export-cards", "--dir", str(tmp_path)]) == 0
    names = {p.stem for p in tmp_path.glob("*.toml")}
    assert set(REAL) <= names and "synthetic" not in names
