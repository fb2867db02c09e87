"""The synthetic grid (every built-in method by default, 5 seeds) sequential vs ``--executor ray``, same machine.

Both commands start from an empty store (a fresh ``BENCH_HOME``), so every cell runs. The
sequential run is one process with torch on every core (and, as a second baseline, on one
thread); the Ray run is a private local Ray
instance with one task per cell, each reserving one CPU (torch on one thread), so as many
cells run at once as the machine has cores. Reports the wall times, their ratio and the CPUs
used in benchmarks/results/ray_grid_synthetic.json (quoted in docs/performance.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.conftest import write_result

pytest.importorskip("ray")

SEEDS = "0,1,2,3,4"
# Every method by default; BENCH_RAY_GRID_PLUGINS narrows it (a shared 2-core machine cannot
# run comix/m3amba/bdgf x 5 seeds twice in an hour: see docs/performance.md).
PLUGINS = os.environ.get("BENCH_RAY_GRID_PLUGINS", "all")
# BENCH_RAY_GRID_SEQ1=0 skips the third, one-thread sequential run (it costs as much as the first).
RUN_SEQUENTIAL_1THREAD = os.environ.get("BENCH_RAY_GRID_SEQ1", "1") != "0"
GRID = ["--plugins", PLUGINS, "--datasets", "synthetic", "--seeds", SEEDS, "--device", "cpu"]


def _timed(args: list[str], home: Path, **env: str) -> tuple[float, str]:
    bench = str(Path(sys.executable).parent / "bench")
    full_env = {**os.environ, "BENCH_HOME": str(home), "CI": "1", **env}
    start = time.perf_counter()
    out = subprocess.run([bench, "run", *args], env=full_env, capture_output=True, text=True, timeout=7200)
    elapsed = time.perf_counter() - start
    assert out.returncode in (0, 1), out.stdout[-3000:] + out.stderr[-3000:]
    return elapsed, out.stdout


def test_synthetic_grid_sequential_vs_ray(benchmark, tmp_path: Path) -> None:
    cpus = os.cpu_count() or 1
    results: dict[str, float] = {}

    def both() -> None:
        results["sequential_s"], seq_out = _timed(GRID, tmp_path / "seq", OMP_NUM_THREADS=str(cpus))
        results["load_average_after_sequential"] = os.getloadavg()[0]
        results["ray_s"], ray_out = _timed([*GRID, "--executor", "ray"], tmp_path / "ray", OMP_NUM_THREADS="1")
        results["load_average_after_ray"] = os.getloadavg()[0]
        if RUN_SEQUENTIAL_1THREAD:
            # The sequential run on one torch thread too: what Ray's parallelism adds by itself.
            results["sequential_1thread_s"], _ = _timed(GRID, tmp_path / "seq1", OMP_NUM_THREADS="1")
        results["ray_cells_finished"] = float(ray_out.count("FINISHED test_oa"))
        results["sequential_cells_finished"] = float(seq_out.count("FINISHED test_oa"))

    benchmark.pedantic(both, rounds=1, iterations=1)
    ratio = results["ray_s"] / results["sequential_s"]
    write_result("ray_grid_synthetic", {
        "grid": " ".join(GRID), "cpus": cpus, "ray_cpus_per_cell": 1, "sequential_torch_threads": cpus,
        **results, "ratio_ray_over_sequential": round(ratio, 3),
        **({"ratio_ray_over_sequential_1thread": round(results["ray_s"] / results["sequential_1thread_s"], 3)}
           if RUN_SEQUENTIAL_1THREAD else {}),
        "load_average_at_end": os.getloadavg()[0],
    })
    print(f"sequential {results['sequential_s']:.1f} s, ray {results['ray_s']:.1f} s, ratio {ratio:.3f}")
