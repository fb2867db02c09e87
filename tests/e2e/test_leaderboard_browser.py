"""The leaderboard page and the MLflow UI in a real headless Chromium.

A small synthetic benchmark (two cheap methods, five seeds) runs in-process into a temporary
store; the HTML export is served on 127.0.0.1 and driven with Playwright using Debian's
chromium binary (never a downloaded browser). Screenshots go to ``$BENCH_TEST_ARTIFACTS``
(or the test's temporary folder).
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench_core.cli import main
from bench_core.cli.ui import free_port

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
METHODS = ("svm", "two-branch-cnn")
SEEDS = (0, 1, 2, 3, 4)
BOARD_TABLE = "table#board-synthetic-official-fast"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots and the exported page are kept for a person to look at."""
    root = os.environ.get("BENCH_TEST_ARTIFACTS")
    folder = Path(root) / "leaderboard_browser" if root else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


def _start_mlflow_ui(uri: str, artifacts: Path, port: int, log: Path) -> subprocess.Popen:
    """The MLflow UI on the store, in its own process group so that all its children stop with it."""
    env = dict(os.environ)
    # One worker and no background job runner: starts in seconds and leaves no helper processes.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--default-artifact-root",
           artifacts.as_uri(), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with log.open("w") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _wait_http(url: str, proc: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"MLflow UI exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"MLflow UI did not answer at {url} within {seconds:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory, shots: Path) -> Iterator[dict[str, Any]]:
    """Run the small benchmark, export the boards, serve the page, start the MLflow UI."""
    from bench_core.tracking import MLflowTracker

    home = tmp_path_factory.mktemp("bench-home")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    tracker = MLflowTracker(uri, "bench")  # the store exists before the UI opens it
    port = free_port()
    ui_log = home / "mlflow-ui.log"
    ui = _start_mlflow_ui(uri, home / "artifacts", port, ui_log)  # boots while the benchmark runs
    site = home / "site"
    site.mkdir()
    server = None
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(home)
            mp.setenv("BENCH_HOME", str(home))
            mp.delenv("MLFLOW_TRACKING_URI", raising=False)
            mp.setenv("MPLBACKEND", "Agg")
            code = main(["run", "--plugins", ",".join(METHODS), "--datasets", "synthetic", "--seeds",
                         ",".join(map(str, SEEDS)), "--set", "train.epochs=2", "--tracking-uri", uri])
            assert code == 0, "the small benchmark finished every cell"
            assert main(["leaderboard", "--tracking-uri", uri, "--format", "html", "--output",
                         str(site / "index.html")]) == 0
            assert main(["leaderboard", "--tracking-uri", uri, "--format", "md", "--output", str(home / "board.md")]) == 0
        shutil.copy(site / "index.html", shots / "leaderboard.html")
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(site))
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        ui_url = f"http://127.0.0.1:{port}"
        _wait_http(ui_url + "/health", ui, ui_log)
        yield {
            "uri": uri,
            "md": (home / "board.md").read_text(),
            "page": f"http://127.0.0.1:{server.server_address[1]}/index.html",
            "ui": ui_url,
            "experiment_id": tracker.experiment_id,
        }
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        _stop(ui)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Debian chromium driven by Playwright, with a fresh profile folder."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no chromium binary on this machine (CI installs Debian's: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra: pip install -e '.[test]'")
    manager = sync_api.sync_playwright().start()
    try:
        context = manager.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=chromium, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()
    finally:
        manager.stop()


def _column(page: Any, header: str) -> tuple[int, list[str], list[str]]:
    """(column index, method names in row order, that column's raw sort values in row order)."""
    headers = page.locator(f"{BOARD_TABLE} thead tr:last-child th").all_inner_texts()
    col = next(i for i, h in enumerate(headers) if h.strip().startswith(header))
    rows = page.locator(f"{BOARD_TABLE} tbody tr")
    methods = [rows.nth(i).locator("td").nth(1).inner_text() for i in range(rows.count())]
    values = [rows.nth(i).locator("td").nth(col).get_attribute("data-v") or "" for i in range(rows.count())]
    return col, methods, values


def test_markdown_board_has_seeds_cost_and_significance(bench: dict[str, Any]) -> None:
    md = bench["md"]
    assert md.count("\n## ") == 1, "one board: synthetic, official split, fast profile"
    header = next(line for line in md.splitlines() if line.startswith("| rank |"))
    for col in ("OA (%)", "AA (%)", "kappa (%)", "vs best", "params", "FLOPs/sample", "train (s)", "infer (s)", "px/s"):
        assert f"| {col} |" in header
    for m in METHODS:
        assert f"| {m} | 5 | " in md  # n = 5 seeds
    assert " ± " in md
    assert "| best |" in md and ("| ≈ (p" in md or "| < (p" in md)


def test_board_page_renders_without_network(bench: dict[str, Any], browser: Any, shots: Path) -> None:
    page = browser.new_page()
    requested: list[str] = []
    page.on("request", lambda req: requested.append(req.url))
    page.goto(bench["page"], wait_until="load")
    assert page.title() == "Leaderboard"
    assert page.locator("h2").first.inner_text().startswith("synthetic")
    rows = page.locator(f"{BOARD_TABLE} tbody tr")
    assert rows.count() == len(METHODS)
    assert sorted(rows.nth(i).locator("td").nth(1).inner_text() for i in range(rows.count())) == sorted(METHODS)
    assert "best" in page.locator(BOARD_TABLE).inner_text()
    page.screenshot(path=str(shots / "leaderboard.png"), full_page=True)
    # A self-contained page: the page itself is the only thing fetched.
    assert [u for u in requested if not u.startswith("data:")] == [bench["page"]]
    page.close()


def test_clicking_a_header_reorders_the_rows(bench: dict[str, Any], browser: Any, shots: Path) -> None:
    page = browser.new_page()
    page.goto(bench["page"], wait_until="load")
    _, initial, oa = _column(page, "OA (%)")
    assert [float(v) for v in oa] == sorted((float(v) for v in oa), reverse=True)  # ranked by OA
    page.locator(f"{BOARD_TABLE} thead tr:last-child th", has_text="OA (%)").first.click()
    _, ascending, oa_up = _column(page, "OA (%)")
    assert [float(v) for v in oa_up] == sorted(float(v) for v in oa_up)
    assert ascending == initial[::-1], "clicking OA sorts ascending, reversing the ranked order"
    page.locator(f"{BOARD_TABLE} thead tr:last-child th", has_text="params").first.click()
    _, _, params = _column(page, "params")
    assert [float(v) for v in params] == sorted(float(v) for v in params)
    page.locator(f"{BOARD_TABLE} thead tr:last-child th", has_text="params").first.click()
    _, _, params_down = _column(page, "params")
    assert [float(v) for v in params_down] == sorted((float(v) for v in params_down), reverse=True)
    assert page.locator(f"{BOARD_TABLE} th[aria-sort=descending]").inner_text().startswith("params")
    page.screenshot(path=str(shots / "leaderboard_sorted_by_params.png"))
    page.close()


def test_plots_and_classification_maps_are_loaded_images(bench: dict[str, Any], browser: Any) -> None:
    page = browser.new_page()
    page.goto(bench["page"], wait_until="load")
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => ({alt: e.alt, w: e.naturalWidth, h: e.naturalHeight, src: e.src.slice(0, 22)}))"
    )
    alts = [i["alt"] for i in images]
    for alt in ("accuracy vs training time", "accuracy vs parameters", "per-class accuracy"):
        assert alt in alts
    for m in METHODS:
        assert f"classification map of {m}" in alts
    assert all(i["w"] > 0 and i["h"] > 0 for i in images), images
    assert all(i["src"] == "data:image/png;base64," for i in images)
    page.close()


def test_mlflow_ui_lists_the_benchmark_runs(bench: dict[str, Any], browser: Any, shots: Path) -> None:
    query = urllib.parse.urlencode(
        {"searchFilter": "params.dataset = 'synthetic'", "orderByKey": "metrics.`test_oa`", "orderByAsc": "false"},
        quote_via=urllib.parse.quote,
    )
    page = browser.new_page()
    page.goto(f"{bench['ui']}/#/experiments/{bench['experiment_id']}/runs?{query}")
    names = [f"{m}.fast/synthetic/official/s{s}" for m in METHODS for s in SEEDS]
    page.get_by_text(names[0], exact=True).first.wait_for(timeout=60_000)
    for name in names:
        assert page.get_by_text(name, exact=True).count() >= 1, f"run {name} not listed in the MLflow UI"
    page.get_by_text(f"{len(names)} matching runs").first.wait_for(timeout=10_000)
    page.screenshot(path=str(shots / "mlflow_ui_runs.png"))
    page.close()
