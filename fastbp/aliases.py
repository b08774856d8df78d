"""Old module paths, kept working from one table: ``fastbp.network``, ``fastbp.mnist_loader``, ….

Code written against earlier layouts (and the book's ``import network3``) imports modules that
now live elsewhere. Instead of a file per old path, :data:`MOVED` names the module each old path
now *is*, and :data:`GATHERED` the names an old module gathered from several; :class:`AliasFinder`
(on ``sys.meta_path`` from ``import fastbp``) answers those imports, and no other:

- a moved module is the same module object under both names (``fastbp.plots is
  fastbp.io.plots``), so a monkeypatch through either is seen by both;
- a gathered module is built once on first import, holding the very same objects
  (``fastbp.network.Network is fastbp.Network``).

A name in neither table is not found here, so ``import fastbp.nosuch`` still raises
``ModuleNotFoundError``. Nothing is imported until an old path is.
"""

from __future__ import annotations

import importlib
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Sequence

MOVED: dict[str, str] = {
    "fastbp.distributed": "fastbp.parallel.distributed",
    "fastbp.mnist_loader": "fastbp.data.mnist_loader",
    "fastbp.plots": "fastbp.io.plots",
    "fastbp.network3": "fastbp.model.network3",  # the book's chapter 6: import fastbp.network3
}
"""Old path → the module it is now (the same object under both names)."""

GATHERED: dict[str, tuple[str, dict[str, str]]] = {
    "fastbp.backend": (
        "The device interface (:mod:`fastbp.devices`) and the ``cpu`` device "
        "(:mod:`fastbp.devices.cpu`), under their old module name.",
        {"DTYPES": "fastbp.devices.backend", "Array": "fastbp.devices.backend",
         "Backend": "fastbp.devices.backend", "array_device": "fastbp.devices.backend",
         "check_dtype": "fastbp.devices.backend", "NumpyBackend": "fastbp.devices.cpu.backend",
         "blas_description": "fastbp.devices.cpu.backend",
         "cpu_model": "fastbp.devices.cpu.backend"}),
    "fastbp.datasets": (
        "Data sets fastbp trains on: MNIST (:mod:`fastbp.data.mnist`), Fashion-MNIST and KMNIST "
        "(:mod:`fastbp.data.sets`), any of them by name with ``load``, and the book's expanded "
        "training set (:mod:`fastbp.data.expand`).",
        {"MNIST": "fastbp.data.mnist", "Split": "fastbp.data.mnist",
         "load_mnist": "fastbp.data.mnist", "expand": "fastbp.data.expand",
         "load": "fastbp.data.sets", "load_fashion_mnist": "fastbp.data.sets",
         "load_kmnist": "fastbp.data.sets"}),
    "fastbp.network": (
        "The book's ``network`` module: :class:`Network` (:mod:`fastbp.model.network`), its "
        "costs and σ (:mod:`fastbp.core.costs`) and the records (:mod:`fastbp.core.records`).",
        {"CrossEntropyCost": "fastbp.core.costs", "QuadraticCost": "fastbp.core.costs",
         "sigmoid": "fastbp.core.costs", "sigmoid_prime": "fastbp.core.costs",
         "EpochRecord": "fastbp.core.records", "History": "fastbp.core.records",
         "format_record": "fastbp.core.records", "stack_pairs": "fastbp.model.inputs",
         "Network": "fastbp.model.network"}),
}
"""Old path → (its docstring, each name it offers → the module that defines it)."""


class AliasFinder:
    """The meta-path finder and loader of the old paths in :data:`MOVED` and :data:`GATHERED`."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname in MOVED or fullname in GATHERED:
            return ModuleSpec(fullname, self)
        return None

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return None  # the default module; exec_module fills it or puts the moved one in its place

    def exec_module(self, module: ModuleType) -> None:
        name = module.__name__
        if name in MOVED:
            # the import system returns what sys.modules holds after this call: the real module
            sys.modules[name] = importlib.import_module(MOVED[name])
            return
        doc, names = GATHERED[name]
        module.__doc__ = doc
        for attr, where in names.items():
            setattr(module, attr, getattr(importlib.import_module(where), attr))
        module.__all__ = sorted(names)  # type: ignore[attr-defined]


def install() -> None:
    """Put one :class:`AliasFinder` first on ``sys.meta_path``, so an old path is always this
    table's (never a stale file of an earlier install); calling it again changes nothing."""
    if not any(type(f).__name__ == "AliasFinder" for f in sys.meta_path):
        sys.meta_path.insert(0, AliasFinder())
