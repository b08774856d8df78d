"""What the benchmarks time: the cases (kind × device × implementation × sizes × batch × dtype),
which of them make sense where, the data, and a ready-to-time callable for each case.

Two kinds of work:

- ``step``: one SGD step on a fixed mini-batch of ``m`` samples already on the device (fastbp
  gathers it through its own ``sgd_epoch``, as in training);
- ``epoch``: one shuffled epoch over ``N`` samples (``EPOCH_SAMPLES``), fastbp through
  ``Network.train(X, Y, epochs=1, batch_size=m, eta=η, shuffle=True)``.

Implementations: ``matrix`` (fastbp, on every registered device that starts here), ``loop``
(the per-sample oracle :func:`fastbp.reference.sgd_epoch`, NumPy on the CPU), and the peers of
``benchmarks/peers/`` (see :mod:`fastbp.bench.peers`). Everything uses the quadratic cost, sigmoid
layers, the book's N(0, 1) initialisation (same seed for every implementation) and η = 3.0.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..core.epoch import run_epoch
from ..errors import FastbpError

ETA = 3.0
SEED = 1234
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
MATRIX, LOOP = "matrix", "loop"
# Above this many weights a network is "big": on a CPU its epochs at tiny batches and the
# per-sample loop take too long to time (the step benchmark still shows those pairs).
BIG_WEIGHTS = 1_000_000
# Above this many weights a network is for GPUs only.
GPU_ONLY_WEIGHTS = 10_000_000


def sizes_label(sizes: Sequence[int]) -> str:
    """``[784, 30, 10]`` → ``784-30-10`` (how sizes appear in names and tables)."""
    return "-".join(str(s) for s in sizes)


def weight_count(sizes: Sequence[int]) -> int:
    return sum(k * n for k, n in zip(sizes[:-1], sizes[1:]))


@dataclass(frozen=True)
class Device:
    """A fastbp device that may be benchmarked: its name, kind (``cpu``, ``cuda``, ...), and
    why it cannot run here (``None`` when it can)."""

    name: str
    kind: str = "cpu"
    unavailable: str | None = None

    @property
    def peer_kind(self) -> str:
        """The device kind the peers run on beside it: ``cpu`` or ``cuda``."""
        return "cpu" if self.kind == "cpu" else "cuda"


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


@dataclass(frozen=True)
class Case:
    """One thing to time. ``device`` is a fastbp device for ``matrix``, the device kind for the
    loop and the peers; ``samples`` is what one call processes (``m`` or ``N``)."""

    kind: str
    device: str
    impl: str
    sizes: tuple[int, ...]
    batch_size: int
    dtype: str
    samples: int
    device_kind: str = "cpu"

    @property
    def sizes_label(self) -> str:
        return sizes_label(self.sizes)

    @property
    def group(self) -> str:
        """Cases that compare like with like: same work, same shapes, same dtype."""
        return f"{self.kind} {self.sizes_label} batch {self.batch_size} {self.dtype}"

    @property
    def param_id(self) -> str:
        return f"{self.device}-{self.impl}-{self.sizes_label}-b{self.batch_size}-{self.dtype}"

    @property
    def name(self) -> str:
        return f"test_{self.kind}[{self.param_id}]"

    @property
    def params(self) -> dict[str, Any]:
        return {"kind": self.kind, "device": self.device, "impl": self.impl,
                "sizes": self.sizes_label, "batch_size": self.batch_size, "dtype": self.dtype}


def skip_reason(case: Case, epoch_samples: int = EPOCH_SAMPLES) -> str | None:
    """Why ``case`` is not worth timing on its device (``None`` when it is)."""
    w = weight_count(case.sizes)
    on_cpu = case.device_kind == "cpu"
    if on_cpu and w > GPU_ONLY_WEIGHTS:
        return (f"{case.sizes_label} ({w / 1e6:.0f} M weights) is for GPUs: on a CPU one epoch "
                "takes minutes")
    if case.kind == "epoch" and case.batch_size > epoch_samples:
        return f"batch {case.batch_size} is larger than the epoch ({epoch_samples} samples)"
    if case.impl == LOOP:
        if not on_cpu:
            return "the per-sample loop is NumPy code: it runs on the CPU only"
        if w > BIG_WEIGHTS and case.kind == "epoch":
            return (f"the per-sample loop at {case.sizes_label} takes several seconds per epoch "
                    f"of {case.samples} samples; the step benchmark shows it")
        if w > BIG_WEIGHTS and case.batch_size > 100:
            return (f"the per-sample loop at {case.sizes_label} costs the same per sample at "
                    "every batch size; batches above 100 only take longer to time")
    if on_cpu and case.kind == "epoch" and w > BIG_WEIGHTS and case.batch_size <= 10:
        return (f"an epoch of {case.samples} samples of {case.sizes_label} at batch "
                f"{case.batch_size} takes seconds per call on a CPU, too long for the suite's "
                "time for every implementation; the step benchmark shows it")
    if on_cpu and case.kind == "epoch" and w > BIG_WEIGHTS and case.batch_size >= epoch_samples:
        return (f"an epoch of {case.samples} samples at batch {case.batch_size} is a single "
                "step of seconds on a CPU; the step benchmark shows it")
    return None


def make_case(kind: str, device: Device | str, impl: str, sizes: Sequence[int], batch_size: int,
              dtype: str, epoch_samples: int = EPOCH_SAMPLES) -> Case:
    """A :class:`Case`; the loop and peers run on the device's kind (``cpu`` / ``cuda``)."""
    dev = device if isinstance(device, Device) else Device(device)
    label = dev.name if impl == MATRIX else dev.peer_kind
    samples = (batch_size if kind == "step" else
               epoch_size(batch_size, epoch_samples, sizes, dev.peer_kind))
    return Case(kind, label, impl, tuple(int(s) for s in sizes), int(batch_size), dtype, samples,
                dev.peer_kind)


def epoch_size(batch_size: int, epoch_samples: int = EPOCH_SAMPLES,
               sizes: Sequence[int] = (784, 30, 10), device_kind: str = "cpu") -> int:
    """Samples in one epoch: ``epoch_samples``, but 2,000 at batch 1 and for big networks on a
    CPU (the same for every implementation, so their figures stay comparable)."""
    n = epoch_samples
    if batch_size == 1 or (device_kind == "cpu" and weight_count(sizes) > BIG_WEIGHTS):
        n = min(n, SMALL_BATCH_EPOCH_SAMPLES)
    return max(n, batch_size)


# -- data ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def synthetic_mnist(n: int, dtype: str = "float32", n_in: int = 784, n_out: int = 10,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MNIST-shaped data: ``X (n_in, n)`` with about 19 % of the pixels lit (uniform in [0, 1],
    the rest 0, as in MNIST), integer labels ``(n,)`` and one-hot ``Y (n_out, n)``.

    ``X`` is stored sample-major (Fortran order as ``(n_in, n)``), so ``Network.train`` takes it
    without a copy. The arrays are cached: treat them as read-only.
    """
    rng = np.random.default_rng(seed)
    images = rng.random((n, n_in), dtype=np.float64)
    images[rng.random((n, n_in)) >= 0.19] = 0.0
    return _finish(images.astype(dtype), rng.integers(0, n_out, n), n_out)


@functools.lru_cache(maxsize=4)
def mnist_data(n: int, dtype: str = "float32", path: str | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``n`` MNIST training images (repeated when ``n`` exceeds 50,000), as
    :func:`synthetic_mnist` returns them."""
    from ..data.mnist import load_mnist

    train = load_mnist(path).train
    idx = np.arange(n) % len(train)
    return _finish(np.asarray(train.images[idx], dtype=dtype), np.asarray(train.labels)[idx], 10)


def _finish(images: np.ndarray, labels: np.ndarray, n_out: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(labels)
    onehot = np.zeros((n, n_out), dtype=images.dtype)
    onehot[np.arange(n), labels] = 1.0
    X, Y = np.ascontiguousarray(images).T, onehot.T
    for a in (X, Y, labels):
        a.flags.writeable = False
    return X, labels.astype(np.int64), Y


DataSource = Callable[[int, str, int, int], tuple[np.ndarray, np.ndarray, np.ndarray]]


def data_source(kind: str = "synthetic", path: str | None = None) -> DataSource:
    """``(n, dtype, n_in, n_out) -> (X, labels, Y)`` for ``synthetic`` or ``mnist`` data."""
    if kind == "synthetic":
        return lambda n, dtype, n_in=784, n_out=10: synthetic_mnist(n, dtype, n_in, n_out)
    if kind == "mnist":
        def mnist(n: int, dtype: str, n_in: int = 784, n_out: int = 10) -> Any:
            if (n_in, n_out) != (784, 10):
                raise BenchError(f"MNIST has 784 inputs and 10 classes; sizes {n_in}→{n_out} "
                                 "need --data synthetic")
            return mnist_data(n, dtype, path)

        return mnist
    raise BenchError(f"--data must be synthetic or mnist, got {kind!r}")


class BenchError(FastbpError):
    """A benchmark that cannot be set up as asked."""


# -- ready-to-time callables --------------------------------------------------------------------
@dataclass
class Prepared:
    """``run()`` does the case's work once and returns when the device has finished it."""

    run: Callable[[], Any]
    info: dict[str, Any] = field(default_factory=dict)


def initial_parameters(sizes: Sequence[int], dtype: str) -> tuple[list, list]:
    """The book's N(0, 1) weights and biases, from :data:`SEED`: every implementation starts
    from these."""
    rng = np.random.default_rng(SEED)
    pairs = list(zip(sizes[:-1], sizes[1:]))
    biases = [rng.standard_normal((n, 1)).astype(dtype) for _, n in pairs]
    weights = [rng.standard_normal((n, k)).astype(dtype) for k, n in pairs]
    return weights, biases


def prepare(case: Case, data: DataSource, peers: dict[str, Any] | None = None) -> Prepared:
    """The callable that times ``case``; peers are gradient-checked here first."""
    X, labels, Y = data(case.samples, case.dtype, case.sizes[0], case.sizes[-1])
    X, labels, Y = X[:, : case.samples], labels[: case.samples], Y[:, : case.samples]
    weights, biases = initial_parameters(case.sizes, case.dtype)
    if case.impl == MATRIX:
        return _prepare_matrix(case, X, labels, weights, biases)
    if case.impl == LOOP:
        return _prepare_loop(case, X, Y, weights, biases)
    if peers is None or case.impl not in peers:
        raise BenchError(f"unknown implementation {case.impl!r}")
    return _prepare_peer(case, peers[case.impl], X, Y, weights, biases)


def _network(case: Case, weights: list, biases: list) -> Any:
    from ..model.network import Network

    net = Network(list(case.sizes), device=case.device, dtype=case.dtype, seed=SEED)
    net.weights, net.biases = weights, biases
    return net


def _prepare_matrix(case: Case, X: np.ndarray, labels: np.ndarray, weights: list,
                    biases: list) -> Prepared:
    net = _network(case, weights, biases)
    be = net.backend
    info = {"backend": type(be).__name__}
    if case.kind == "epoch":
        def epoch() -> None:
            net.train(X, labels, epochs=1, batch_size=case.batch_size, eta=ETA, shuffle=True)
            be.synchronize()

        return Prepared(epoch, info)
    step = matrix_step(net, X, labels, ETA)
    return Prepared(step, info)


def matrix_step(net: Any, X: Any, labels: Any, eta: float) -> Callable[[], None]:
    """One SGD step of ``net`` on the whole batch ``X`` (``m`` columns), repeatable.

    Goes through the backend's own ``sgd_epoch`` (a compiled device runs its compiled loop) over
    an epoch plan of exactly one mini-batch, so it is the step ``Network.train`` takes, without
    the per-call checks and the move of the data to the device.
    """
    be = net.backend
    m = int(np.shape(X)[1])
    with be.activate():
        plan = net.epoch_plan(X, labels, batch_size=m, eta=eta)
        plan.order = be.index_array(np.arange(m))

    def step() -> None:
        with be.activate():
            run_epoch(be, plan)
            be.synchronize()

    return step


def _prepare_loop(case: Case, X: np.ndarray, Y: np.ndarray, weights: list,
                  biases: list) -> Prepared:
    from ..core import reference

    X, Y = np.ascontiguousarray(X), np.ascontiguousarray(Y)
    rng = np.random.default_rng(SEED)
    m = case.batch_size

    def run() -> None:
        order = rng.permutation(X.shape[1]) if case.kind == "epoch" else None
        reference.sgd_epoch(weights, biases, X, Y, m, ETA, order=order)

    return Prepared(run, {"backend": "numpy per-sample loop"})


def _prepare_peer(case: Case, spec: Any, X: np.ndarray, Y: np.ndarray, weights: list,
                  biases: list) -> Prepared:
    from .peers import check_gradients

    model = spec.build(case.sizes, weights, biases, case.device_kind, case.dtype)
    m = min(case.batch_size, 64)
    err = check_gradients(spec.name, model, case.sizes, weights, biases, np.asarray(X[:, :m]),
                          np.asarray(Y[:, :m]), case.dtype)
    if case.kind == "step":
        run = model.step(np.asarray(X), np.asarray(Y), ETA)
    else:
        run = model.epoch(np.asarray(X), np.asarray(Y), case.batch_size, ETA)
    info = dict(model.describe())
    info["gradient_check_rel_err"] = float(f"{err:.3g}")
    return Prepared(run, info)


# -- the matrix of cases ------------------------------------------------------------------------
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
