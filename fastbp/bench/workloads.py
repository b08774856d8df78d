"""What the benchmarks time: the cases (kind × device × implementation × sizes × batch × dtype),
which of them make sense where, the data, and a ready-to-time callable for each case.

Two kinds of work:

- ``step``: one SGD step on a fixed mini-batch of ``m`` samples already on the device (fastbp
  gathers it through its own ``sgd_epoch``, as in training);
- ``epoch``: one shuffled epoch over ``N`` samples (``EPOCH_SAMPLES``), fastbp through
  ``Network.train(X, Y, epochs=1, batch_size=m, eta=η, shuffle=True)``.

Implementations: ``matrix`` (fastbp, on every registered device that starts here), ``loop``
(the per-sample oracle :func:`fastbp.core.reference.sgd_epoch`, NumPy on the CPU), and the peers of
``benchmarks/peers/`` (see :mod:`fastbp.bench.peers`). Everything uses the quadratic cost, sigmoid
layers, the book's N(0, 1) initialisation (same seed for every implementation) and η = 3.0.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from .cases import LOOP, MATRIX, Case
from .data import BenchError, DataSource, data_source, mnist_data, synthetic_mnist
from .prepare import ETA, SEED, Prepared, initial_parameters, matrix_step, prepare

__all__ = [  # the data and the prepared callables are re-exported: one door for the suite
    "ETA", "LOOP", "MATRIX", "SEED", "BenchError", "Case", "DataSource", "Device", "Prepared",
    "data_source", "find_devices", "initial_parameters", "make_case", "matrix_step",
    "mnist_data", "plan_cases", "prepare", "skip_reason", "synthetic_mnist",
]

EPOCH_SAMPLES = 10_000
# At batch 1 an epoch is N Python-level steps for most implementations: 2,000 of them show the
# rate as well as 10,000 and keep the suite within its time.
SMALL_BATCH_EPOCH_SAMPLES = 2_000
CPU_SIZES: tuple[tuple[int, ...], ...] = ((784, 30, 10), (784, 100, 10), (784, 1024, 1024, 10))
GPU_SIZES: tuple[tuple[int, ...], ...] = CPU_SIZES + ((784, 4096, 4096, 10),)
ALL_SIZES = GPU_SIZES
BATCH_SIZES = (1, 10, 100, 1000, 10_000)
DTYPES = ("float32", "float64")
KINDS = ("step", "epoch")
# Above this many weights a network is "big": on a CPU its epochs at tiny batches and the
# per-sample loop take too long to time (the step benchmark still shows those pairs).
BIG_WEIGHTS = 1_000_000
# Above this many weights a network is for GPUs only.
GPU_ONLY_WEIGHTS = 10_000_000


def weight_count(sizes: Sequence[int]) -> int:
    return sum(k * n for k, n in zip(sizes[:-1], sizes[1:]))


@dataclass(frozen=True)
class Device:
    """A fastbp device that may be benchmarked: its name, its hardware (``cpu``, ``gpu``, ...:
    the backend's ``kind``), and why it cannot run here (``None`` when it can)."""

    name: str
    hardware: str = "cpu"
    unavailable: str | None = None

    @property
    def peer_kind(self) -> str:
        """The hardware the peers run on beside it: ``cpu`` or ``cuda``."""
        return "cpu" if self.hardware == "cpu" else "cuda"


def find_devices(names: Iterable[str] | None = None) -> list[Device]:
    """Every registered device (``fastbp.backend_names()``), or ``names``, tried once each.

    A device that does not start here (no GPU, plugin broken) comes back with the reason, so
    its cases are skipped with it instead of vanishing.
    """
    from .. import devices

    out = []
    if names is None:  # the built-in cpu first, then the plugins in name order
        names = sorted(devices.backend_names(), key=lambda n: (n != "cpu", n))
    for name in names:
        try:
            backend = devices.resolve(name, "float32")
        except Exception as exc:  # noqa: BLE001 - any failure to start is a reason to skip
            out.append(Device(name, "unknown", f"device {name!r} does not start here: {exc}"))
            continue
        out.append(Device(backend.device, str(getattr(backend, "kind", "cpu"))))
    return out


def skip_reason(case: Case, epoch_samples: int = EPOCH_SAMPLES) -> str | None:
    """Why ``case`` is not worth timing on its device (``None`` when it is)."""
    w = weight_count(case.sizes)
    on_cpu = case.hardware == "cpu"
    if on_cpu and w > GPU_ONLY_WEIGHTS:
        return (f"{case.sizes_label} ({w / 1e6:.0f} M weights) is for GPUs: on a CPU one epoch "
                "takes minutes")
    if case.workload == "epoch" and case.batch_size > epoch_samples:
        return f"batch {case.batch_size} is larger than the epoch ({epoch_samples} samples)"
    if case.impl == LOOP:
        if not on_cpu:
            return "the per-sample loop is NumPy code: it runs on the CPU only"
        if w > BIG_WEIGHTS and case.workload == "epoch":
            return (f"the per-sample loop at {case.sizes_label} takes several seconds per epoch "
                    f"of {case.samples} samples; the step benchmark shows it")
        if w > BIG_WEIGHTS and case.batch_size > 100:
            return (f"the per-sample loop at {case.sizes_label} costs the same per sample at "
                    "every batch size; batches above 100 only take longer to time")
    if on_cpu and case.workload == "epoch" and w > BIG_WEIGHTS and case.batch_size <= 10:
        return (f"an epoch of {case.samples} samples of {case.sizes_label} at batch "
                f"{case.batch_size} takes seconds per call on a CPU, too long for the suite's "
                "time for every implementation; the step benchmark shows it")
    if on_cpu and case.workload == "epoch" and w > BIG_WEIGHTS and case.batch_size >= epoch_samples:
        return (f"an epoch of {case.samples} samples at batch {case.batch_size} is a single "
                "step of seconds on a CPU; the step benchmark shows it")
    return None


def make_case(workload: str, device: Device | str, impl: str, sizes: Sequence[int], batch_size: int,
              dtype: str, epoch_samples: int = EPOCH_SAMPLES) -> Case:
    """A :class:`Case`; the loop and peers run on the device's kind (``cpu`` / ``cuda``)."""
    dev = device if isinstance(device, Device) else Device(device)
    label = dev.name if impl == MATRIX else dev.peer_kind
    samples = (batch_size if workload == "step" else
               epoch_size(batch_size, epoch_samples, sizes, dev.peer_kind))
    return Case(workload, label, impl, tuple(int(s) for s in sizes), int(batch_size), dtype,
                samples, dev.peer_kind)


def epoch_size(batch_size: int, epoch_samples: int = EPOCH_SAMPLES,
               sizes: Sequence[int] = (784, 30, 10), hardware: str = "cpu") -> int:
    """Samples in one epoch: ``epoch_samples``, but 2,000 at batch 1 and for big networks on a
    CPU (the same for every implementation, so their figures stay comparable)."""
    n = epoch_samples
    if batch_size == 1 or (hardware == "cpu" and weight_count(sizes) > BIG_WEIGHTS):
        n = min(n, SMALL_BATCH_EPOCH_SAMPLES)
    return max(n, batch_size)


def plan_cases(devices: Sequence[Device], *, kinds: Sequence[str] = KINDS,
               sizes: Sequence[Sequence[int]] | None = None,
               batch_sizes: Sequence[int] = BATCH_SIZES, dtypes: Sequence[str] = DTYPES,
               loop: bool = True, peers: dict[str, Any] | None = None,
               epoch_samples: int = EPOCH_SAMPLES) -> list[tuple[Case, str | None]]:
    """Every case with its skip reason (``None`` to time it), fastbp's devices first, then the
    loop, then each peer (so one library's thread pools do not linger over another's figures).

    ``sizes=None`` means :data:`GPU_SIZES` (the CPU skips the GPU-only one with a reason).
    The loop and the peers run once per device kind, not once per device.
    """
    sizes = [tuple(s) for s in (sizes if sizes is not None else GPU_SIZES)]
    out: list[tuple[Case, str | None]] = []

    def add(kind: str, dev: Device, impl: str, spec_kinds: Sequence[str] = KINDS,
            missing: str | None = None) -> None:
        if kind not in spec_kinds:
            return  # e.g. the lax.scan peer has no single-step form
        for s in sizes:
            for b in batch_sizes:
                for dt in dtypes:
                    case = make_case(kind, dev, impl, s, b, dt, epoch_samples)
                    reason = dev.unavailable or skip_reason(case, epoch_samples) or missing
                    out.append((case, reason))

    kinds_present = []
    for dev in devices:
        if dev.unavailable is None and dev.peer_kind not in kinds_present:
            kinds_present.append(dev.peer_kind)
    for dev in devices:
        for kind in kinds:
            add(kind, dev, MATRIX)
    for pk in kinds_present:
        if loop:
            for kind in kinds:
                add(kind, Device(pk, pk), LOOP)
        for name, spec in (peers or {}).items():
            missing = None
            if importlib.util.find_spec(spec.package) is None:
                missing = f"{spec.package} is not installed (pip install -e '.[peers]')"
            for kind in kinds:
                add(kind, Device(pk, pk), name, spec.kinds, missing)
    # A case can appear twice (two devices of one kind for the loop): keep the first.
    seen: set[str] = set()
    unique = []
    for case, reason in out:
        if case.name not in seen:
            seen.add(case.name)
            unique.append((case, reason))
    return unique
