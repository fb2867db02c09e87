"""Benchmarks: run with `pytest benchmarks --benchmark-only` (never part of the default run).

Each benchmark measures its candidates side by side in one process and records the
ratio in benchmarks/results/<name>.json, quoted in docs/performance.md.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parent / "results"


def best_of(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Minimum wall time of ``repeats`` calls after ``warmup`` calls (least noisy estimator)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def paired_best_of(
    fn_a: Callable[[], object], fn_b: Callable[[], object], repeats: int = 5, warmup: int = 1
) -> tuple[float, float]:
    """Best times of two candidates measured alternately, so drifting machine load hits both alike."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    best_a = best_b = float("inf")
    for _ in range(repeats):
        for fn, which in ((fn_a, "a"), (fn_b, "b")):
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            if which == "a":
                best_a = min(best_a, elapsed)
            else:
                best_b = min(best_b, elapsed)
    return best_a, best_b


def write_result(name: str, payload: dict) -> Path:
    import torch

    RESULTS.mkdir(exist_ok=True)
    payload = {
        "benchmark": name,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


@pytest.fixture
def record() -> Callable[[str, dict], Path]:
    return write_result
