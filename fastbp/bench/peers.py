"""Peers: the same network, cost and SGD step written in another library, timed beside fastbp.

A peer lives in one small file of ``benchmarks/peers/`` (in a fastbp checkout) that defines
``PEERS``, a list of :class:`PeerSpec`. Its library is imported only when the peer is built, so a
missing library makes the peer unavailable (:class:`PeerUnavailable`, with the reason), never an
import error. Before a peer is timed its gradients are checked against fastbp's backprop of the
same parameters on the same batch (:func:`check_gradients`), so the comparison is of equal work.

The model a peer builds (``PeerSpec.build(sizes, weights, biases, device_kind, dtype)``) has:

- ``gradients(X, Y) -> (nabla_b, nabla_w)``: NumPy arrays shaped like fastbp's, the gradient of
  the quadratic cost ``C = ½ Σ_x ‖a^L(x) − y(x)‖²`` summed over the columns of ``X``;
- ``step(X, Y, eta) -> run``: ``run()`` does one SGD step ``W ← W − (η/m) ∇W`` on that fixed
  batch (already on the device) and waits for the device;
- ``epoch(X, Y, batch_size, eta) -> run``: ``run()`` does one shuffled epoch over all columns;
- ``describe() -> dict``: threads, versions, device (goes into the results' ``extra_info``).

``X`` is ``(n_in, N)`` and ``Y`` one-hot ``(n_out, N)``, NumPy, in ``dtype``.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError, FastbpError

PEERS_ENV = "FASTBP_PEERS_DIR"


class PeerUnavailable(Exception):
    """This peer cannot run here (library missing, no such device, dtype unsupported)."""


class PeerCheckFailed(FastbpError):
    """A peer's gradients differ from fastbp's: its figures would not compare equal work."""


@dataclass(frozen=True)
class PeerSpec:
    """One peer implementation: its name, the benchmark kinds it runs, and how to build it."""

    name: str
    kinds: tuple[str, ...]
    build: Callable[[Sequence[int], list[np.ndarray], list[np.ndarray], str, str], Any]
    package: str


def default_peers_dir() -> Path | None:
    """``$FASTBP_PEERS_DIR``, else ``benchmarks/peers`` of the checkout fastbp was installed
    from (editable), else ``./benchmarks/peers``; ``None`` when none exists."""
    env = os.environ.get(PEERS_ENV)
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2] / "benchmarks" / "peers",
                   Path.cwd() / "benchmarks" / "peers"]
    for d in candidates:
        if d.is_dir():
            return d
    return None


def load_peers(directory: str | os.PathLike | None = None) -> dict[str, PeerSpec]:
    """Every :class:`PeerSpec` declared by the ``*.py`` files of ``directory`` (see above)."""
    d = Path(directory) if directory is not None else default_peers_dir()
    if d is None or not d.is_dir():
        raise ConfigError(
            "the peers live in benchmarks/peers of a fastbp checkout, which was not found here: "
            f"run from the checkout, or set {PEERS_ENV} (or --peers-dir) to that folder"
        )
    found: dict[str, PeerSpec] = {}
    for path in sorted(d.glob("*.py")):
        if path.name.startswith("_"):
            continue
        spec = importlib.util.spec_from_file_location(f"fastbp_peer_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for peer in getattr(module, "PEERS", ()):
            found[peer.name] = peer
    return found


def tolerance(dtype: str) -> float:
    """Largest relative gradient difference accepted: rounding of the dtype, summed over layers."""
    return 1e-9 if dtype == "float64" else 2e-3


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """``max |got − want| / max |want|`` (0 when both are zero)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return float("inf")
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    diff = float(np.max(np.abs(got - want))) if want.size else 0.0
    return diff / scale if scale > 0 else diff


def check_gradients(name: str, model: Any, sizes: Sequence[int], weights: list[np.ndarray],
                    biases: list[np.ndarray], X: np.ndarray, Y: np.ndarray, dtype: str) -> float:
    """Compare ``model.gradients(X, Y)`` with fastbp's ``Network.backprop`` of the same
    parameters; return the worst relative error, or raise :class:`PeerCheckFailed`."""
    from ..model.network import Network

    net = Network(list(sizes), dtype=dtype, device="cpu")
    net.weights, net.biases = weights, biases
    want_b, want_w = net.backprop(X, Y)
    got_b, got_w = model.gradients(X, Y)
    worst = 0.0
    for what, got, want in (("nabla_b", got_b, want_b), ("nabla_w", got_w, want_w)):
        if len(got) != len(want):
            raise PeerCheckFailed(f"peer {name}: {len(got)} {what} arrays, fastbp has {len(want)}")
        for l, (g, w) in enumerate(zip(got, want)):
            err = relative_error(np.reshape(g, np.shape(w)) if np.size(g) == np.size(w) else g, w)
            worst = max(worst, err)
            if not err <= tolerance(dtype):
                raise PeerCheckFailed(
                    f"peer {name} ({dtype}): {what}[{l}] differs from fastbp's backprop by "
                    f"{err:.2e} (relative), more than {tolerance(dtype):.0e}; its timing would "
                    "not be of the same work"
                )
    return worst
