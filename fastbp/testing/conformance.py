"""The backend conformance suite: the tests every fastbp device passes, in one line.

In a test module of a device (built in, shipped in ``backends/``, or a third party's)::

    from fastbp.testing import conformance; conformance.install(globals(), device="my-device")

``install`` adds the suite's tests (``test_conformance_*``) and their fixtures to the module, so
pytest runs them on that device: backprop and feedforward against the per-sample oracle in
float64, one epoch of SGD against the book's per-sample SGD on every path a step can take
(:mod:`fastbp.testing.paths`), with and without L2, in float64 and float32, the gradient check,
float32 σ to a few ulp through the device's own epoch, the same for tanh and relu hidden layers
and the softmax output with the log-likelihood cost (:mod:`fastbp.testing.checks_neurons`),
momentum, L1 and dropout (:mod:`fastbp.testing.checks_techniques`), chapter 6's convolution
and max-pooling against their per-pixel oracle (:mod:`fastbp.testing.checks_conv`), arrays of
another device refused, out of memory as a clear ``DeviceError``, and the save/load round trip.
Needs pytest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from ..core.costs import QuadraticCost
from ..model.network import Network
from . import checks_conv, checks_device, checks_math, checks_neurons, checks_techniques
from .paths import PATHS, Path, forced

Setup = Callable[[pytest.MonkeyPatch], Any]


@dataclass(frozen=True)
class Device:
    """The device under test: its string, and networks on it."""

    name: str

    def network(self, sizes: Sequence[int], *, cost: Any = QuadraticCost,
                dtype: str = "float64", seed: int = 1, init: str = "standard",
                activation: Any = "sigmoid") -> Network:
        """A seeded ``Network`` on this device (float64 unless asked otherwise)."""
        return Network(list(sizes), cost=cost, device=self.name, dtype=dtype, seed=seed,
                       init=init, activation=activation)

    def __str__(self) -> str:
        return self.name


def tests() -> dict[str, Callable[..., None]]:
    """Every test of the suite by name."""
    found = {}
    for module in (checks_math, checks_device, checks_neurons, checks_techniques, checks_conv):
        found.update({name: fn for name, fn in vars(module).items()
                      if name.startswith("test_conformance_") and callable(fn)})
    return found


@pytest.fixture(params=PATHS, ids=[p.name for p in PATHS])
def conformance_path(request: pytest.FixtureRequest) -> Iterator[Path]:
    """Each path of :data:`fastbp.testing.paths.PATHS`, its settings in force."""
    with forced(request.param) as path:
        yield path


def install(namespace: dict[str, Any], device: str | Sequence[str], *,
            setup: Setup | None = None) -> None:
    """Add the suite to a test module: ``install(globals(), device="cpu-jit")``.

    ``device``: a device string (``name`` or ``name:N``), or several, each a run of the suite.
    ``setup(monkeypatch)``, if given, runs before each test (e.g. to put a stand-in library in
    place); what it patches is undone after the test. ``$FASTBP_DEVICE`` is cleared meanwhile,
    so networks built without a device get ``cpu``, as the suite's checks expect."""
    names = [device] if isinstance(device, str) else list(device)

    @pytest.fixture(params=names, ids=names)
    def conformance_device(request: pytest.FixtureRequest,
                           monkeypatch: pytest.MonkeyPatch) -> Device:
        monkeypatch.delenv("FASTBP_DEVICE", raising=False)
        if setup is not None:
            setup(monkeypatch)
        return Device(request.param)

    namespace["conformance_device"] = conformance_device
    namespace["conformance_path"] = conformance_path
    namespace.update(tests())
