"""DFC2018 at full size: first load, cached load and peak RSS of a load and of one pixel-method cell.

A fake contest tree of the real size is written streaming (tests/data/dfc2018/make_fake.py,
``make_full_size``): HSI 1202 x 4172 x 50 uint16 (ENVI, BIL, 501 MB), the two LiDAR rasters of the
default X (DSM_C12, DEM_C123_TLI; 2404 x 8344 float32, 80 MB each, with no-data sentinels),
GT_TR and Test_Labels with the 40 official per-class counts. Each step runs in its own
process, whose peak RSS (``ru_maxrss`` from ``wait4``) and peak anonymous / file-backed RSS
(sampled from /proc every 0.1 s) are recorded:

1. first load: locate, hash, verify the shape and the 40 counts, build band by band into
   memory maps, write the cache (HSI float16);
2. cached load: stat the sources and memory-map the cache (best of 5, in one process);
3. one cell: ``bench run --plugins svm --datasets dfc2018 --splits per-class:5 --profile fast``
   from the cache (load, split, fit, the 2.36 M test pixels and the 20 M-pixel
   classification map predicted in chunks, artifacts).

The scene is 2404 x 8344 x 49 = 983 M values (3.9 GB as float32). Target: every step within a
24 GiB machine. Needs about 4 GB of free disk (``BENCH_DFC2018_DIR`` chooses the folder; default
a pytest temporary folder). Run: ``pytest benchmarks/test_dfc2018_scale.py --benchmark-only -s``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GIB = 2**30

FIRST_LOAD = """
import json, time
from pathlib import Path
import dataclasses
from bench_core import DatasetContext
from bench_plugins.datasets import dfc2018
loader = dfc2018.make_loader()
configure = loader.configure
# fake files: not the published sha256; without them verification of the shape and counts stays on
loader.configure = lambda env: tuple(dataclasses.replace(lay, sha256={{}}) for lay in configure(env))
start = time.perf_counter()
scene = loader.load(DatasetContext(data_dir=Path({data!r}), cache_dir=Path({cache!r})), env={{}})
print(json.dumps({{"seconds": time.perf_counter() - start, "shape": list(scene.shape), "bands": scene.bands,
                  "dtypes": {{k: str(v.dtype) for k, v in scene.modalities.items()}},
                  "verification": scene.metadata["verification"], "nodata": scene.metadata["nodata"]}}))
"""

CACHED_LOAD = """
import json, time
from pathlib import Path
import numpy as np
from bench_core import DatasetContext
from bench_plugins.datasets import dfc2018
loader = dfc2018.make_loader()
context = DatasetContext(data_dir=Path({data!r}), cache_dir=Path({cache!r}))
env = {{"BENCH_VERIFY_CHECKSUMS": "0"}}
times = []
for _ in range(5):
    start = time.perf_counter()
    scene = loader.load(context, env=env)
    float(np.asarray(scene.modalities["hsi"])[0, 0, 0])
    times.append(time.perf_counter() - start)
print(json.dumps({{"seconds": min(times), "all": times}}))
"""


def _measured(args: list[str], env: dict[str, str]) -> dict:
    """Run ``args``; wall time, peak RSS (wait4) and sampled peak anonymous / file-backed RSS of the process."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    peaks = {"RssAnon": 0, "RssFile": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    key = line.split(":")[0]
                    if key in peaks:
                        peaks[key] = max(peaks[key], int(line.split()[1]) * 1024)
            except OSError:
                pass
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read()  # type: ignore[union-attr]
    err = proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, f"{args[:3]} failed ({proc.returncode}):\n{out[-3000:]}\n{err[-3000:]}"
    return {"wall_s": time.perf_counter() - start, "peak_rss_bytes": usage.ru_maxrss * 1024,
            "peak_anon_bytes": peaks["RssAnon"], "peak_file_bytes": peaks["RssFile"], "stdout": out}


@pytest.mark.benchmark(group="dfc2018-scale")
def test_dfc2018_full_size_load_cache_and_one_cell(benchmark, record, tmp_path: Path) -> None:
    root = Path(os.environ.get("BENCH_DFC2018_DIR") or tmp_path)
    if shutil.disk_usage(root.parent if not root.exists() else root).free < 5 * GIB:
        pytest.skip(f"needs about 5 GB free disk under {root}")
    data, home = root / "data", root / "home"
    cache = home / "cache"
    for folder in (data, home):
        shutil.rmtree(folder, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "BENCH_HOME": str(home), "CI": "true"}
    for var in ("BENCH_VERIFY_CHECKSUMS", "BENCH_DFC2018_X", "BENCH_NORMALISATION", "BENCH_DATA_DIR"):
        env.pop(var, None)

    generate = _measured([sys.executable, "-c", (
        "from pathlib import Path; from tests.data.dfc2018.make_fake import make_full_size; "
        f"make_full_size(Path({str(data / 'dfc2018')!r}))")], env)
    sources = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    first = _measured([sys.executable, "-c", FIRST_LOAD.format(data=str(data), cache=str(cache))], env)
    first_info = json.loads(first["stdout"].strip().splitlines()[-1])
    assert first_info["shape"] == [2404, 8344] and first_info["bands"] == {"hsi": 48, "lidar": 1}
    assert first_info["dtypes"] == {"hsi": "float16", "lidar": "float32"}
    assert first_info["verification"].startswith("matches CoMiX Table III")
    cache_bytes = sum(p.stat().st_size for p in cache.rglob("*.npy"))
    cached = _measured([sys.executable, "-c", CACHED_LOAD.format(data=str(data), cache=str(cache))], env)
    cached_s = json.loads(cached["stdout"].strip().splitlines()[-1])["seconds"]
    bench = str(Path(sys.executable).parent / "bench")
    cell = _measured([bench, "run", "--plugins", "svm", "--datasets", "dfc2018",
                      "--data-dir", str(data), "--profile", "fast", "--splits", "per-class:5"],
                     {**env, "BENCH_VERIFY_CHECKSUMS": "0"})  # the fake .pix and GT_TR are not the published bytes
    assert "FINISHED test_oa=" in cell["stdout"], cell["stdout"][-2000:]
    from bench_core.tracking import MLflowTracker

    (run,) = MLflowTracker(f"sqlite:///{home / 'mlflow.db'}", "bench").runs()
    cell_metrics = {k: run.data.metrics[k] for k in ("test_oa", "n_train", "n_val", "n_test", "time_train_s",
                                                      "time_infer_s", "mem_peak_bytes")}
    cell_params = {k: v for k, v in run.data.params.items() if k.startswith("data.")}

    def cached_load() -> None:
        from bench_plugins.datasets import dfc2018

        from bench_core import DatasetContext

        dfc2018.make_loader().load(DatasetContext(data_dir=data, cache_dir=cache), env={"BENCH_VERIFY_CHECKSUMS": "0"})

    benchmark.pedantic(cached_load, rounds=3, iterations=1)
    steps = {"generate_fake": generate, "first_load": first, "cached_load_process": cached, "svm_cell": cell}
    result = {
        "scene": "fake DFC2018 official tree at full size: 2404 x 8344 at 0.5 m, HSI 1202 x 4172 x 50 uint16 "
                 "(48 kept, upsampled x2), X = NDSM from 2 float32 rasters; the 40 official per-class counts",
        "source_bytes": sources, "cache_npy_bytes": cache_bytes,
        "first_load_s": first_info["seconds"], "cached_load_s": cached_s,
        "first_load_verification": first_info["verification"],
        "steps": {name: {k: v for k, v in s.items() if k != "stdout"} for name, s in steps.items()},
        "cell_metrics": cell_metrics, "cell_data_params": cell_params,
        "cell_note": "time_infer_s = the test pixels; the rest of the cell's wall time is mostly the 20 M-pixel "
                     "classification map (SVM predictions in chunks of 262,144 pixels)",
        "target": "every step's peak RSS < 24 GiB",
    }
    record("dfc2018_scale", result)
    for name, s in steps.items():
        print(f"{name}: {s['wall_s']:.1f} s, peak RSS {s['peak_rss_bytes'] / GIB:.2f} GiB "
              f"(anon {s['peak_anon_bytes'] / GIB:.2f}, file-backed {s['peak_file_bytes'] / GIB:.2f})")
    print(f"first load {first_info['seconds']:.1f} s, cached load {cached_s * 1000:.1f} ms, "
          f"cache {cache_bytes / GIB:.2f} GiB, sources {sources / GIB:.2f} GiB")
    assert all(s["peak_rss_bytes"] < 24 * GIB for s in steps.values())
