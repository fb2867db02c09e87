"""The timing protocol: clocks, parameter and FLOP counts, peak memory, environment."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench_core import timing
from bench_core.errors import BenchError, ConfigError
from bench_core.timing import (
    PeakMemory,
    Stopwatch,
    TimingError,
    count_parameters,
    environment,
    flops_per_sample,
    measure_throughput,
    resolve_device,
    synchronize,
)

CPU = torch.device("cpu")


# --------------------------------------------------------------------------- devices


def test_importing_bench_core_does_not_import_torch() -> None:
    code = "import sys, bench_core; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize("name", ["cpu", " CPU ", torch.device("cpu")])
def test_resolve_device_cpu(name: str | torch.device) -> None:
    assert resolve_device(name) == CPU


def test_resolve_device_auto_follows_cuda_availability(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == CPU
    assert resolve_device() == CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_resolve_device_cuda_without_cuda_names_value_and_fix(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_device(name)
    assert repr(name) in str(info.value) and "--device cpu" in str(info.value)


def test_resolve_device_cuda_index_beyond_device_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ConfigError, match="'cuda:2'.*2 CUDA device"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("name", ["gpu0", "", "meta"])
def test_resolve_device_rejects_unknown_names(name: str) -> None:
    with pytest.raises(ConfigError, match=repr(name)):
        resolve_device(name)


def test_synchronize_on_cpu_is_a_no_op() -> None:
    assert synchronize(CPU) is None
    assert synchronize(None) is None


# --------------------------------------------------------------------------- Stopwatch


def test_stopwatch_measures_a_sleep() -> None:
    with Stopwatch() as clock:
        time.sleep(0.05)
    # A correctness check of the unit (seconds, not ms or ns), with a generous range.
    assert 0.04 <= clock.elapsed < 1.0
    assert not clock.running


def test_stopwatch_accumulates_and_does_not_tick_while_stopped() -> None:
    clock = Stopwatch(CPU)
    first = clock.start().stop()
    frozen = clock.elapsed
    assert frozen == first
    time.sleep(0.02)
    assert clock.elapsed == frozen  # stopped: no time passes on the watch
    clock.start()
    time.sleep(0.02)
    assert clock.running and clock.elapsed > frozen  # the open interval is included
    second = clock.stop()
    assert clock.elapsed == pytest.approx(first + second)
    assert second >= 0.015
    clock.reset()
    assert clock.elapsed == 0.0


def test_stopwatch_synchronizes_on_enter_and_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, torch.device]] = []
    monkeypatch.setattr(timing, "synchronize", lambda device: calls.append(("sync", device)))
    with Stopwatch("cpu"):
        calls.append(("work", CPU))
    assert calls == [("sync", CPU), ("work", CPU), ("sync", CPU)]


def test_stopwatch_stops_when_the_body_raises() -> None:
    clock = Stopwatch()
    with pytest.raises(KeyError):
        with clock:
            raise KeyError("boom")
    assert not clock.running and clock.elapsed > 0


def test_stopwatch_misuse_raises() -> None:
    clock = Stopwatch()
    with pytest.raises(TimingError, match="not running"):
        clock.stop()
    clock.start()
    with pytest.raises(TimingError, match="already running"):
        clock.start()
    with pytest.raises(TimingError, match="reset"):
        clock.reset()
    assert issubclass(TimingError, BenchError)


def test_measure_throughput() -> None:
    assert measure_throughput(100, 2.0) == 50.0
    assert measure_throughput(0, 1.0) == 0.0
    assert math.isnan(measure_throughput(10, 0.0))
    for bad in ((-1, 1.0), (1, -1.0), (1, float("nan")), (1, float("inf"))):
        with pytest.raises(TimingError, match="measure_throughput"):
            measure_throughput(*bad)


# --------------------------------------------------------------------------- parameters


def test_count_parameters_with_a_frozen_part() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    model[0].requires_grad_(False)
    frozen, head = 4 * 3 + 3, 3 * 2 + 2
    assert count_parameters(model) == (frozen + head, head)


def test_count_parameters_counts_shared_weights_once() -> None:
    layer = nn.Linear(5, 5)
    model = nn.Sequential(layer, layer)
    assert count_parameters(model) == (5 * 5 + 5, 5 * 5 + 5)


def test_count_parameters_of_non_modules() -> None:
    class Forest:
        def n_parameters(self) -> int:
            return 1234

    class Bare:
        pass

    class Broken:
        def n_parameters(self) -> float:
            return 1.5

    class NumpyCount:
        def n_parameters(self) -> np.int64:
            return np.int64(7)

    assert count_parameters(Forest()) == (1234, 1234)
    got = count_parameters(NumpyCount())
    assert got == (7, 7) and all(type(v) is int for v in got)
    assert count_parameters(Bare()) == (0, 0)
    with pytest.raises(TimingError, match="Broken.n_parameters\\(\\) returned 1.5"):
        count_parameters(Broken())


def test_count_parameters_rejects_lazy_modules() -> None:
    with pytest.raises(TimingError, match="lazy.*forward pass"):
        count_parameters(nn.LazyLinear(3))


# --------------------------------------------------------------------------- FLOPs


class _DictInput(nn.Module):
    """Takes the harness's input dict, like every method."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.seen: list[tuple[bool, bool]] = []

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        self.seen.append((self.training, torch.is_grad_enabled()))
        return self.body(inputs["hsi"])


def test_flops_of_linear_is_two_per_multiply_add() -> None:
    model = _DictInput(nn.Linear(16, 10))
    assert flops_per_sample(model, {"hsi": torch.zeros(1, 16)}) == 2 * 16 * 10


def test_flops_of_conv2d_by_hand() -> None:
    c_in, c_out, k, size = 3, 8, 3, 7
    model = _DictInput(nn.Conv2d(c_in, c_out, kernel_size=k, padding=0))
    out = size - k + 1
    expected = 2 * c_out * out * out * c_in * k * k
    assert flops_per_sample(model, {"hsi": torch.zeros(1, c_in, size, size)}) == expected


def test_flops_runs_in_eval_without_grad_and_restores_modes() -> None:
    model = _DictInput(nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)))
    model.train()
    model.body[1].eval()  # a submodule in its own mode must keep it
    flops_per_sample(model, {"hsi": torch.zeros(1, 4)})
    assert model.seen == [(False, False)]
    assert model.training and model.body.training and model.body[0].training
    assert not model.body[1].training


def test_flops_custom_formula_counts_an_op_without_one() -> None:
    model = _DictInput(nn.ReLU())
    example = {"hsi": torch.zeros(1, 6, 5)}
    assert flops_per_sample(model, example) == 0  # elementwise ops are not counted

    def relu_flops(*_shapes: object, out_shape: tuple[int, ...], **_kw: object) -> int:
        return math.prod(out_shape)

    for op in (torch.ops.aten.relu, torch.ops.aten.relu.default):  # packet or overload
        assert flops_per_sample(model, example, custom_formulas={op: relu_flops}) == 6 * 5


def test_flops_requires_a_batch_of_one() -> None:
    model = _DictInput(nn.Linear(4, 2))
    with pytest.raises(TimingError, match="'hsi' has shape \\(3, 4\\).*x\\[:1\\]"):
        flops_per_sample(model, {"hsi": torch.zeros(3, 4)})
    with pytest.raises(TimingError, match="no input tensors"):
        flops_per_sample(model, {})


def test_flops_of_non_modules() -> None:
    class WithFormula:
        def flops_per_sample(self) -> int:
            return 777

    class Without:
        pass

    assert flops_per_sample(WithFormula(), {}) == 777
    assert flops_per_sample(Without(), {}) is None


# --------------------------------------------------------------------------- memory

_MB = 1_000_000


def test_peak_memory_sees_a_touched_allocation() -> None:
    with PeakMemory() as peak:
        block = np.ones(200 * _MB, dtype=np.uint8)  # np.ones writes every page
        assert block[-1] == 1
    assert peak.kind == "process_rss"
    assert peak.peak_bytes - peak.baseline_bytes >= 150 * _MB


def test_peak_memory_sampler_catches_memory_freed_before_exit() -> None:
    with PeakMemory(CPU) as peak:
        block = np.ones(200 * _MB, dtype=np.uint8)
        time.sleep(0.3)  # ~15 sampling intervals while the block is alive
        del block
    # Only the background samples could have seen it: the exit sample comes after the free.
    assert peak.peak_bytes - peak.baseline_bytes >= 150 * _MB


def test_peak_memory_without_proc_falls_back_to_maxrss(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(timing, "_STATM", tmp_path / "missing")
    with PeakMemory() as peak:
        pass
    assert peak.kind == "process_maxrss" and peak.peak_bytes > 0


def test_peak_memory_misuse_raises() -> None:
    with pytest.raises(TimingError, match="interval_s=0"):
        PeakMemory(interval_s=0)
    peak = PeakMemory()
    with peak:
        with pytest.raises(TimingError, match="already active"):
            peak.__enter__()


# --------------------------------------------------------------------------- environment


def test_environment_has_the_recorded_keys() -> None:
    env = environment(CPU)
    expected = {
        "python", "platform", "cpu_model", "cpu_count", "cpu_available", "torch", "torch_threads",
        "cuda", "numpy", "scikit_learn", "mlflow", "bench", "device",
    }
    assert expected <= set(env)
    assert all(isinstance(v, str) and v for v in env.values())
    assert env["torch"] == torch.__version__
    assert env["numpy"] == np.__version__
    assert env["device"] == "cpu"
    assert int(env["cpu_count"]) >= 1 and int(env["torch_threads"]) >= 1
    assert "gpu_name" not in env
