"""How the ``cuda`` device runs an epoch, measured on this GPU (:mod:`fastbp.devices.planner`).

The candidates for a configuration (GPU, layer sizes, batch size, dtype, and the techniques
that change the step's kernels: :func:`techniques`):

- ``graph``: the full mini-batches replay the step captured as CUDA graphs of raw kernels
  (:mod:`fastbp_cupy.graph`); a last, shorter batch runs eagerly;
- ``eager``: every step launched from Python, the products on cuBLAS (:mod:`fastbp_cupy.eager`).

The default (``FASTBP_PLAN=off``, and what a measurement must beat by the planner's margin) is
the estimate the backend used before it planned: ``graph`` for batches of at most
``CuPyBackend.graph_max_batch`` on networks of at most ``graph_max_weights`` weights, else
``eager``. ``FASTBP_CUDA_GRAPHS=0`` or ``CuPyBackend(graphs=False)`` runs ``eager`` without
planning, and so does a backend whose capture has failed; the plan line says which.

The first epoch of a configuration runs each candidate on a short trial of real steps on copies
of the parameters and velocities (the training's own arrays are never touched), or takes the
cached choice. Before its trial, a candidate other than ``eager`` runs the first mini-batch from
the same start as ``eager`` does; if the two states differ by more than float rounding allows
(:func:`agreement_bound`), the candidate fails its trial with one warning and is neither chosen
nor cached. The plans live in the ``cuda`` section of the planner's cache, under the GPU's
own fingerprint (model, compute capability, CuPy and CUDA versions).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import time
from typing import Any, Callable

import numpy as np

from fastbp.core.neurons import kinds_of
from fastbp.core.plan import Cache, DeviceCaches, Parameters
from fastbp.devices import planner

log = logging.getLogger("fastbp")

CANDIDATES = ("graph", "eager")
REFERENCE = "eager"  # the candidate every other one must agree with (cuBLAS and CuPy's kernels)
SECTION = "cuda"  # the planner cache's section for GPU plans
TRIAL_ROWS = 4096  # rows of one candidate's timed trial (at least two batches)
# Environment variables that change how fast the candidates run on the GPU.
GPU_ENV_KEYS = ("CUPY_TF32", "NVIDIA_TF32_OVERRIDE", "CUPY_ACCELERATORS",
                "CUPY_CUDA_COMPILE_WITH_DEBUG")


class CudaChoices:
    """The ``cuda`` device's cache in a network's :class:`~fastbp.core.plan.Cache`: the
    planner's choice per configuration key, kept for the plan's later epochs (and the
    network's later plans)."""

    def __init__(self) -> None:
        self.choices: dict[str, planner.Choice] = {}


def default(backend: Any, plan: Any) -> str:
    """The fixed choice (``FASTBP_PLAN=off``): the backend's estimates
    (:meth:`fastbp_cupy.backend.CuPyBackend.graph_estimate`)."""
    return "graph" if backend.graph_estimate(plan) else "eager"


def fingerprint(backend: Any) -> dict[str, Any]:
    """This GPU as the cache knows it: :func:`fastbp.devices.planner.fingerprint` (the host,
    which launches the steps) plus the GPU's model, compute capability, CuPy's and CUDA's
    versions and the variables that change cuBLAS's speed."""
    cp = backend.cp
    props = cp.cuda.runtime.getDeviceProperties(backend.index)
    model = props.get("name", b"?")
    model = model.decode() if isinstance(model, bytes) else str(model)
    return planner.fingerprint({
        "gpu": model, "compute_capability": f"{props.get('major')}.{props.get('minor')}",
        "cupy": getattr(cp, "__version__", "?"),
        "cuda_runtime": int(cp.cuda.runtime.runtimeGetVersion()),
        "cuda_driver": int(cp.cuda.runtime.driverGetVersion()),
        "gpu_env": {k: os.environ[k] for k in GPU_ENV_KEYS if k in os.environ},
    })


def techniques(plan: Any) -> str:
    """What of ``plan`` changes which kernels a step runs, for the cache key: the neurons when
    not all sigmoid, the cost when not quadratic, momentum, L1 and dropout; ``""`` for the
    book's plain network (``momentum+l1 dropout cost=cross-entropy neurons=relu,sigmoid``)."""
    parts = []
    s, layers = plan.settings, plan.layers
    if s.velocity:
        parts.append("+".join(name for name, on in (("momentum", s.mu), ("l1", s.l1)) if on))
    if s.dropout:
        parts.append("dropout")
    cost = getattr(layers.cost, "__name__", type(layers.cost).__name__)
    if cost != "QuadraticCost":
        name = re.sub(r"(?<!^)(?=[A-Z])", "-", cost.removesuffix("Cost")).lower()
        parts.append(f"cost={name}")
    kinds = kinds_of(layers.kinds, len(plan.params.weights))
    if any(kind != "sigmoid" for kind in kinds):
        parts.append("neurons=" + ",".join(kinds))
    return " ".join(parts)


def choose(backend: Any, plan: Any, run: Callable[[Any, str], Any]) -> planner.Choice:
    """The candidate for ``plan``'s configuration, kept on the plan for its later epochs:
    ``eager`` where graphs are switched off or failed here, else cached, forced, the default,
    or measured now with ``run(trial_plan, candidate)`` (one epoch of ``trial_plan``)."""
    key = planner.config_key(backend.device, plan.layers.sizes, plan.settings.batch_size,
                             backend.dtype, techniques(plan))
    choices = plan.cache.of(CudaChoices).choices
    held = choices.get(key)
    if held is not None:
        return held
    off = backend.graphs_off_reason()
    if off is not None:
        choice = planner.Choice("eager", off)
    else:
        fixed = default(backend, plan)
        choice = planner.choose(key, list(CANDIDATES), fixed,
                                lambda: trials(backend, plan, run), fingerprint(backend),
                                section=SECTION)
    log.info("fastbp: cuda plan for %s: %s", key, choice.describe())
    choices[key] = choice
    return choice


def trials(backend: Any, plan: Any, run: Callable[[Any, str], Any]
           ) -> dict[str, Callable[[int], float]]:
    """The trial of each candidate, or none when the plan's order holds fewer than two full
    mini-batches (the default stands, and nothing is cached)."""
    if int(plan.cursor.order.shape[0]) // int(plan.settings.batch_size) < 2:
        return {}
    return {name: functools.partial(trial, backend, plan, name, run) for name in CANDIDATES}


def trial(backend: Any, plan: Any, name: str, run: Callable[[Any, str], Any],
          scale: int = 1) -> float:
    """Samples/s of candidate ``name`` on the first full mini-batches of the plan's order
    (``scale`` times :data:`TRIAL_ROWS`), on copies of the parameters and velocities (training
    is not touched): the same rows once to build the programs and capture the graphs, then
    timed, with the GPU synchronised before and after."""
    m = int(plan.settings.batch_size)
    n = int(plan.cursor.order.shape[0]) // m * m
    rows = min(n, max(2 * m, scale * TRIAL_ROWS // m * m))
    if name != REFERENCE and scale == 1:
        verify(backend, plan, name, run)
    copy = trial_plan(backend, plan, rows)
    run(copy, name)
    backend.synchronize()
    t0 = time.perf_counter()
    run(copy, name)
    backend.synchronize()
    return rows / max(time.perf_counter() - t0, 1e-9)


def trial_plan(backend: Any, plan: Any, rows: int) -> Any:
    """``plan`` over its first ``rows`` rows, on copies of its parameters and velocities."""
    cp = backend.cp

    def copies(arrays: Any) -> list[Any]:
        return [cp.copy(a, order="K") for a in arrays]

    params, cursor = plan.params, plan.cursor
    velocities = None if params.velocities is None else copies(params.velocities)
    copy = dataclasses.replace(plan, params=Parameters(copies(params.weights),
                                                       copies(params.biases), velocities),
                               cache=Cache(), bound=DeviceCaches())
    copy.start(cursor.order[:rows], cursor.seed, cursor.first_step)
    return copy


class WrongResult(Exception):
    """A candidate's step does not compute what the reference step does (the message says by
    how much): the planner leaves it out."""


def verify(backend: Any, plan: Any, name: str, run: Callable[[Any, str], Any]) -> None:
    """Candidate ``name``'s first mini-batch against :data:`REFERENCE`'s from the same start
    (copies of the parameters and velocities, the same rows and masks): ``WrongResult`` when
    the two states differ by more than :func:`agreement_bound`, so a fast wrong kernel is never
    chosen nor cached."""
    m = int(plan.settings.batch_size)
    start = [backend.to_numpy(a).astype(np.float64) for a in state(plan)]
    ref, cand = trial_plan(backend, plan, m), trial_plan(backend, plan, m)
    run(ref, REFERENCE)
    run(cand, name)
    got = [backend.to_numpy(a).astype(np.float64) for a in state(cand)]
    want = [backend.to_numpy(a).astype(np.float64) for a in state(ref)]
    diff = norm([g - w for g, w in zip(got, want)])
    bound = agreement_bound(plan, start, want)
    if not diff <= bound:  # NaN fails too
        raise WrongResult(f"its first mini-batch differs from the {REFERENCE} step's by "
                          f"{diff:.3g} (float rounding allows {bound:.3g})")


VERIFY_FACTOR = 16  # the rounding bound's safety factor


def agreement_bound(plan: Any, start: list[np.ndarray], after: list[np.ndarray]) -> float:
    """How far two correct implementations of one SGD step may end apart, in the norm over the
    parameters (and velocities): each state rounds once (``u ‖start‖``), and the update
    ``after − start`` is a sum of products of length at most ``K`` (the widest layer or the
    batch) that each path rounds within ``K u`` of its size; times :data:`VERIFY_FACTOR`."""
    u = float(np.finfo(str(plan.data.xs.dtype)).eps) / 2
    widest = max([*plan.layers.sizes, int(plan.settings.batch_size)])
    step = norm([a - s for a, s in zip(after, start)])
    return VERIFY_FACTOR * u * (norm(start) + widest * step)


def state(plan: Any) -> list[Any]:
    return plan.params.arrays()


def norm(arrays: list[np.ndarray]) -> float:
    return float(np.sqrt(sum(float(np.sum(a * a)) for a in arrays)))


def fall_back(choice: planner.Choice) -> None:
    """The plan runs ``eager`` from now on: its graph could not be captured here."""
    choice.name, choice.source = "eager", "fallback"
