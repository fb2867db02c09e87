"""The timing protocol: clocks, cost counts and the environment recorded with every number.

* Wall time uses :func:`time.perf_counter`; :class:`Stopwatch` synchronises the device
  when it starts and stops, because CUDA kernels run asynchronously and an unsynchronised
  clock measures only the launch (AlgoPerf's ``_get_time``).
* Parameters: :func:`count_parameters` gives (total, trainable) of a torch module, or
  ``n_parameters()`` of a pixel estimator.
* FLOPs: :func:`flops_per_sample` counts the forward pass of ONE sample with
  :class:`torch.utils.flop_counter.FlopCounterMode`. Convention: one multiply-add = 2
  FLOPs (so ``Linear(16, 10)`` costs 2 * 16 * 10); only ops with a registered formula are
  counted (matmul, conv, attention, ...), elementwise ops, norms and activations are not.
  Custom ops (e.g. a selective scan) need a formula, registered with
  :func:`torch.utils.flop_counter.register_flop_formula` or passed as ``custom_formulas``.
* Peak memory: :class:`PeakMemory` reads the CUDA caching allocator's peak on CUDA, and
  samples this process's resident set size (RSS) on the CPU.
* :func:`environment` lists hardware and software versions to store beside each number.

This module imports torch; ``import bench_core`` does not import it.
"""

from __future__ import annotations

import importlib.metadata
import numbers
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from bench_core.errors import ConfigError, TimingError

__all__ = [
    "PeakMemory",
    "Stopwatch",
    "TimingError",
    "count_parameters",
    "environment",
    "flops_per_sample",
    "measure_throughput",
    "resolve_device",
    "synchronize",
]

_STATM = Path("/proc/self/statm")
_CPUINFO = Path("/proc/cpuinfo")
_SAMPLE_INTERVAL_S = 0.02


# --------------------------------------------------------------------------- devices


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The torch device for ``name``: ``"auto"`` is CUDA when available, else the CPU.

    Raises :class:`~bench_core.errors.ConfigError` for a device this machine lacks.
    """
    if isinstance(name, torch.device):
        text = str(name)
    elif isinstance(name, str):
        text = name.strip().lower()
    else:
        raise ConfigError(f"device={name!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:<index>'")
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"device={name!r} is not a torch device ({exc}); expected 'auto', 'cpu', 'cuda' "
            f"or 'cuda:<index>'"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device={name!r} but CUDA is not available here (torch {torch.__version__}, "
                f"built with CUDA {torch.version.cuda or 'none'}); run with --device cpu or "
                f"--device auto"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"device={name!r} but this machine has {count} CUDA device(s), indices "
                f"0..{count - 1}; pick one of those or use --device cuda"
            )
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"device={name!r} but MPS is not available here; run with --device cpu")
    elif device.type != "cpu":
        raise ConfigError(f"device={name!r} is not supported; expected 'auto', 'cpu', 'cuda' or 'mps'")
    return device


def _as_device(device: torch.device | str | None) -> torch.device:
    if device is None:
        return torch.device("cpu")
    return device if isinstance(device, torch.device) else torch.device(device)


def synchronize(device: torch.device | str | None) -> None:
    """Wait for all queued work on ``device`` (CUDA, MPS); a no-op on the CPU."""
    dev = _as_device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type == "mps":
        torch.mps.synchronize()


# --------------------------------------------------------------------------- clocks


class Stopwatch:
    """Wall-clock timer that synchronises ``device`` at start and stop.

    Use as ``with Stopwatch(device) as clock: ...`` then read ``clock.elapsed`` (seconds),
    or call :meth:`start` / :meth:`stop` repeatedly: the intervals accumulate.
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = _as_device(device)
        self._accumulated = 0.0
        self._started_at: float | None = None

    @property
    def running(self) -> bool:
        """Whether an interval is open."""
        return self._started_at is not None

    @property
    def elapsed(self) -> float:
        """Seconds accumulated so far, including the open interval if running."""
        if self._started_at is None:
            return self._accumulated
        return self._accumulated + (time.perf_counter() - self._started_at)

    def start(self) -> Stopwatch:
        """Open an interval (after waiting for queued device work)."""
        if self._started_at is not None:
            raise TimingError("Stopwatch.start() called while already running; call stop() first")
        synchronize(self.device)
        self._started_at = time.perf_counter()
        return self

    def stop(self) -> float:
        """Close the interval (after waiting for the device); returns that interval's seconds."""
        if self._started_at is None:
            raise TimingError("Stopwatch.stop() called while not running; call start() first")
        synchronize(self.device)
        interval = time.perf_counter() - self._started_at
        self._started_at = None
        self._accumulated += interval
        return interval

    def reset(self) -> None:
        """Forget all intervals (the watch must not be running)."""
        if self._started_at is not None:
            raise TimingError("Stopwatch.reset() called while running; call stop() first")
        self._accumulated = 0.0

    def __enter__(self) -> Stopwatch:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def measure_throughput(n_samples: int, seconds: float) -> float:
    """Samples per second; NaN when ``seconds`` is 0 (nothing was timed, rate undefined)."""
    if n_samples < 0 or not seconds >= 0 or seconds == float("inf"):
        raise TimingError(
            f"measure_throughput(n_samples={n_samples!r}, seconds={seconds!r}); expected a "
            f"non-negative sample count and a finite non-negative duration"
        )
    if seconds == 0:
        return float("nan")
    return float(n_samples) / float(seconds)


# --------------------------------------------------------------------------- costs


def count_parameters(model: Any) -> tuple[int, int]:
    """(total, trainable) parameter counts.

    A torch module counts its (shared-once) parameters, trainable = ``requires_grad``.
    Another object uses its ``n_parameters()`` (all counted as trainable), else (0, 0).
    """
    if isinstance(model, torch.nn.Module):
        total = trainable = 0
        for name, param in model.named_parameters():
            if torch.nn.parameter.is_lazy(param):
                raise TimingError(
                    f"parameter {name!r} of {type(model).__name__} is an uninitialised lazy "
                    f"parameter; expected materialised weights: run one forward pass first"
                )
            total += param.numel()
            if param.requires_grad:
                trainable += param.numel()
        return total, trainable
    counter = getattr(model, "n_parameters", None)
    if not callable(counter):
        return 0, 0
    count = counter()
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 0:
        raise TimingError(
            f"{type(model).__name__}.n_parameters() returned {count!r}; expected a "
            f"non-negative int"
        )
    return int(count), int(count)


def _packets(formulas: Mapping[Any, Callable[..., int]] | None) -> dict[Any, Callable[..., int]]:
    """Key formulas by op packet: FlopCounterMode looks ops up as ``aten.relu``, not ``aten.relu.default``."""
    return {getattr(op, "_overloadpacket", op): formula for op, formula in (formulas or {}).items()}


def flops_per_sample(
    model: Any,
    example: Mapping[str, torch.Tensor],
    custom_formulas: Mapping[Any, Callable[..., int]] | None = None,
) -> int | None:
    """Forward FLOPs (2 per multiply-add) of one sample.

    ``example`` is the input dict of a batch of ONE sample, on the model's device. The
    module runs in eval mode under ``torch.no_grad()``; its train/eval flags are restored.
    ``custom_formulas`` maps extra ops (``torch.ops.aten.relu`` or ``torch.ops.aten.relu.default``)
    to FLOP formulas ``f(*input_shapes, out_shape, **kwargs) -> int`` (FlopCounterMode's
    ``custom_mapping``). Another object uses its ``flops_per_sample()``, else None.
    """
    from torch.utils.flop_counter import FlopCounterMode

    if not isinstance(model, torch.nn.Module):
        counter = getattr(model, "flops_per_sample", None)
        if not callable(counter):
            return None
        flops = counter()
        if isinstance(flops, bool) or not isinstance(flops, numbers.Integral) or flops < 0:
            raise TimingError(
                f"{type(model).__name__}.flops_per_sample() returned {flops!r}; expected a "
                f"non-negative int"
            )
        return int(flops)
    if not example:
        raise TimingError(
            f"flops_per_sample({type(model).__name__}) got no input tensors; expected the "
            f"model's input dict for one sample, e.g. {{'hsi': tensor of shape (1, C, p, p)}}"
        )
    for key, tensor in example.items():
        if not isinstance(tensor, torch.Tensor) or tensor.ndim == 0 or tensor.shape[0] != 1:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise TimingError(
                f"flops_per_sample: input {key!r} has shape {shape}; expected a batch of one "
                f"sample (leading dimension 1): slice it with x[:1]"
            )
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            counter_mode = FlopCounterMode(display=False, custom_mapping=_packets(custom_formulas))
            with counter_mode:
                model(dict(example))
        return int(counter_mode.get_total_flops())
    finally:
        for module, training in modes.items():
            module.training = training


# --------------------------------------------------------------------------- memory


def _rss_bytes() -> int | None:
    """Resident set size of this process, or None where /proc is missing."""
    try:
        resident_pages = int(_STATM.read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def _maxrss_bytes() -> int:
    """Lifetime peak RSS from getrusage (kilobytes on Linux, bytes on macOS)."""
    import resource  # Unix only; reached only where /proc is missing

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


class PeakMemory:
    """Peak memory while the context is active; read ``peak_bytes`` and ``kind`` after.

    Kinds:
      * ``"cuda_allocator"``: ``torch.cuda.max_memory_allocated`` after resetting the
        peak on entry (tensors only, not the allocator's cache or the CUDA context).
      * ``"process_rss"``: this process's RSS from ``/proc/self/statm``, sampled by a
        daemon thread every ~20 ms plus once at entry and exit (a spike shorter than
        the interval between samples can be missed).
      * ``"process_maxrss"``: where ``/proc`` is missing, the process's lifetime peak RSS
        from ``getrusage`` (an upper bound: it may predate the context).

    ``baseline_bytes`` is the same quantity at entry, so ``peak_bytes - baseline_bytes``
    is the growth during the context.
    """

    def __init__(self, device: torch.device | str | None = None, interval_s: float = _SAMPLE_INTERVAL_S) -> None:
        if not interval_s > 0:
            raise TimingError(f"PeakMemory(interval_s={interval_s!r}); expected a positive sampling interval")
        self.device = _as_device(device)
        self.interval_s = interval_s
        self.kind = "cuda_allocator" if self.device.type == "cuda" else "process_rss"
        self.peak_bytes = 0
        self.baseline_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._active = False

    def _sample(self) -> None:
        value = _rss_bytes()
        if value is not None and value > self.peak_bytes:
            self.peak_bytes = value

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> PeakMemory:
        if self._active:
            raise TimingError("PeakMemory entered while already active; use a new PeakMemory")
        self._active = True
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_bytes = self.peak_bytes = int(torch.cuda.memory_allocated(self.device))
            return self
        baseline = _rss_bytes()
        if baseline is None:
            self.kind = "process_maxrss"
            self.baseline_bytes = self.peak_bytes = _maxrss_bytes()
            return self
        self.kind = "process_rss"
        self.baseline_bytes = self.peak_bytes = baseline
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="bench-peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._active = False
        if self.kind == "cuda_allocator":
            synchronize(self.device)
            self.peak_bytes = int(torch.cuda.max_memory_allocated(self.device))
        elif self.kind == "process_maxrss":
            self.peak_bytes = _maxrss_bytes()
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
                self._thread = None
            self._sample()


# --------------------------------------------------------------------------- environment


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        fields: dict[str, str] = {}
        for line in _CPUINFO.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
    except OSError:
        fields = {}
    # x86 names the model in "model name"; some ARM kernels only in "hardware".
    for key in ("model name", "hardware", "cpu model"):
        if fields.get(key):
            return fields[key]
    return platform.processor() or platform.machine() or "unknown"


def environment(device: torch.device | str | None = None) -> dict[str, str]:
    """Hardware and software versions to record beside every number (all values strings).

    Keys: python, platform, cpu_model, cpu_count, cpu_available, torch, torch_threads,
    cuda, numpy, scikit_learn, mlflow, bench, device; plus gpu_name and gpu_memory_bytes
    when ``device`` is a CUDA device.
    """
    import bench_core

    dev = _as_device(device)
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on every platform
        available = os.cpu_count() or 0
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": str(os.cpu_count() or 0),
        "cpu_available": str(available),
        "torch": torch.__version__,
        "torch_threads": str(torch.get_num_threads()),
        "cuda": torch.version.cuda or "none",
        "numpy": _version("numpy"),
        "scikit_learn": _version("scikit-learn"),
        "mlflow": _version("mlflow"),
        "bench": bench_core.__version__,
        "device": str(dev),
    }
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        env["gpu_name"] = props.name
        env["gpu_memory_bytes"] = str(props.total_memory)
    return env
