"""CoMiX: one paper-profile training step on the CPU (time and peak memory).

The paper configuration (calibrated, ``comix`` paper profile: 22.4 M parameters) on Houston2013
shapes: HSI 144 bands + LiDAR 1 band, 15 classes, 128 x 128 crops, batch 4 (the paper's), float32,
Adam with weight decay 0.01 from the harness's ``make_optimizer``, masked cross-entropy with 2 %
of the crop pixels labelled (dense training targets hold only training pixels). A step is
zero_grad + forward + loss + backward + optimizer step.

Everything runs in a fresh Python process (Linux only): a warm-up step of the same architecture
at a 16 x 16 crop initialises thread pools and kernels, then the peak-RSS mark is reset
(``/proc/self/clear_refs``) and two full steps run; we report each step's forward, backward and
total time and how far the peak resident set size (``VmHWM``) rose above the RSS before the
first step (model, optimizer and inputs already allocated; the first step also allocates
Adam's state, the second runs with it). ``COMIX_STEP_BATCH`` overrides the batch (for
machines with less memory; the result file records the batch used). Threads: torch's default
for the environment (``OMP_NUM_THREADS``), recorded with the machine's load average, which
skews every timing on a shared machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

BATCH = int(os.environ.get("COMIX_STEP_BATCH", "4"))
CROP, HSI_BANDS, X_BANDS, CLASSES, LABELLED = 128, 144, 1, 15, 0.02

_STEP_SCRIPT = """
import json, sys, time
import torch
import torch.nn.functional as F
from bench_core import SceneInfo, TrainConfig
from bench_core.training import make_optimizer
from bench_plugins.methods import comix

batch, crop, hsi_bands, x_bands, classes, labelled = json.loads(sys.argv[1])

def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field + " missing from /proc/self/status")

def setup(side, n):
    info = SceneInfo(dataset="houston2013-shapes", bands={"hsi": hsi_bands, "x": x_bands}, num_classes=classes,
                     class_names=tuple(f"c{k}" for k in range(classes)), image_shape=(349, 1905), patch_size=side)
    torch.manual_seed(0)
    spec = comix.method_spec()
    model = comix.build(spec.profiles["paper"]["model"], info).train()
    optimizer = make_optimizer(model, TrainConfig.from_mapping(spec.profiles["paper"]["train"]), comix.NAME)
    gen = torch.Generator().manual_seed(0)
    inputs = {"hsi": torch.rand(n, hsi_bands, side, side, generator=gen),
              "x": torch.rand(n, x_bands, side, side, generator=gen)}
    targets = torch.randint(0, classes, (n, side, side), generator=gen)
    targets[torch.rand(n, side, side, generator=gen) >= labelled] = -1
    return model, optimizer, inputs, targets

def step(model, optimizer, inputs, targets):
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    logits = model(inputs)
    forward = time.perf_counter()
    loss = F.cross_entropy(logits, targets, ignore_index=-1)
    loss.backward()
    backward = time.perf_counter()
    optimizer.step()
    end = time.perf_counter()
    return {"forward_s": forward - start, "backward_s": backward - forward, "step_s": end - start,
            "loss": float(loss.detach())}

step(*setup(16, 2))  # thread pools and kernels initialised on a 16 x 16 model of the same widths
model, optimizer, inputs, targets = setup(crop, batch)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
before = status_kib("VmRSS")
steps = []
for _ in range(2):
    steps.append(step(model, optimizer, inputs, targets))
    steps[-1]["peak_kib"] = status_kib("VmHWM")
print(json.dumps({"rss_before_kib": before, "steps": steps, "threads": torch.get_num_threads(),
                  "params": sum(p.numel() for p in model.parameters())}))
"""


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def _run_steps() -> dict:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    args = json.dumps([BATCH, CROP, HSI_BANDS, X_BANDS, CLASSES, LABELLED])
    done = subprocess.run([sys.executable, "-c", _STEP_SCRIPT, args], cwd=repo, env=env,
                          capture_output=True, text=True, check=True, timeout=3600)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.benchmark(group="comix")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak memory is read from /proc (Linux)")
def test_comix_paper_step_on_cpu(benchmark, record) -> None:
    load_before = _load()
    raw = _run_steps()
    before_mib = raw["rss_before_kib"] / 1024
    steps = [
        {
            "forward_s": round(s["forward_s"], 2), "backward_s": round(s["backward_s"], 2),
            "step_s": round(s["step_s"], 2), "loss": round(s["loss"], 4),
            "peak_rise_mib": round(s["peak_kib"] / 1024 - before_mib, 1),
        }
        for s in raw["steps"]
    ]
    assert all(torch.isfinite(torch.tensor(s["loss"])) for s in steps)
    peak_rise = max(s["peak_rise_mib"] for s in steps)
    benchmark.extra_info.update({"batch": BATCH, "step_s": [s["step_s"] for s in steps], "peak_rise_mib": peak_rise})
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)  # measured in the subprocess above
    record(f"comix_paper_step_b{BATCH}", {
        "method": "comix", "profile": "paper", "shapes": "Houston2013 (hsi 144, x 1, 15 classes)",
        "crop": CROP, "batch": BATCH, "dtype": "float32", "labelled_fraction": LABELLED,
        "params": raw["params"], "torch_threads_in_subprocess": raw["threads"],
        "pass": "zero_grad + forward + masked CE + backward + Adam step (harness make_optimizer, wd 0.01)",
        "memory_method": "VmHWM rise over VmRSS before the first step (model, optimizer, inputs allocated), "
                         "fresh process after a 16x16 warm-up step, peak mark reset via /proc/self/clear_refs",
        "rss_before_mib": round(before_mib, 1), "steps": steps, "peak_rise_mib": peak_rise,
        "load_average_before": load_before, "load_average_after": _load(),
    })
    print(f"\ncomix paper step, batch {BATCH}, {CROP}x{CROP}, {raw['threads']} thread(s): "
          + "; ".join(f"step {i + 1}: {s['step_s']:.1f} s (fwd {s['forward_s']:.1f}, bwd {s['backward_s']:.1f}), "
                      f"peak +{s['peak_rise_mib']:.0f} MiB" for i, s in enumerate(steps))
          + f" over {before_mib:.0f} MiB; load {load_before} -> {_load()}")
