"""``NumbaBackend``: the ``cpu-jit`` device.

Arrays are NumPy arrays and every operation outside training is the ``cpu`` device's. What
differs is :meth:`NumbaBackend.sgd_epoch`: the whole epoch (gather, feedforward, BP1, BP2 and the
folded update, for every mini-batch) runs in one call of a Numba-compiled function
(:func:`fastbp_numba.epoch.sgd_epoch`, or with momentum, L1 or dropout
:func:`fastbp_numba.epoch.sgd_epoch_tech`), so no step returns to Python. The compiled code is
cached on disk, so only the first use on a machine compiles (a few seconds).
"""

from __future__ import annotations

import contextlib
import logging
import time
from types import ModuleType
from typing import Any

import numpy as np

from fastbp.core import dropout
from fastbp.core.costs import QuadraticCost
from fastbp.core.memory import translate_oom
from fastbp.core.ops import Scalar
from fastbp.core.plan import EpochPlan
from fastbp.devices.cpu import (
    chunk_buffers,
    find_cblas,
    half_helper,
    one_thread,
    prefetch_chunks,
    prefetch_mode,
    step_work,
)
from fastbp.errors import ConfigError, MissingDependency

from . import codes, halves, planning
from .cache import JitCache
from .codes import Spec
from .layer_ops import LayerOps
from .loading import retryable_import

log = logging.getLogger("fastbp")

# Mini-batches of at most this many rows run compiled loops, larger ones BLAS (see kernels):
# the feedforward's products (dot products: BLAS packs all of W for a few rows; one core of an
# AMD EPYC: 1.05–3.7× OpenBLAS's speed at 4–32 rows on the table's layers, but 10 × 30 at
# 16–32 rows, 1.2–3.6× MKL's; benchmarks/dot_products.py), then BP2's and the update's
# (matrix-vector products).
SMALL_ROWS = (32, 1)
# A network of fewer weights than this runs a batch of more rows than BLOCK_ROWS (on each thread)
# in blocks of that many, each kept in the cache from its gather to its last product
# (kernels.block_sums: 256 MNIST rows are 0.8 MB, within a core's L2 on the Xeon); a wider
# network's products are large enough to stream. The plain rule only: momentum, L1 and dropout
# run a batch whole. Intel Xeon (Ice Lake), two cores, samples/s, before → after:
# [784,30,10] batch 10000 715k → 1.02M, [784,100,10] 357k → 564k (blocks of 512 rows).
BLOCK_ROWS, BLOCKED_WEIGHTS = 256, 400_000


class NumbaBackend(LayerOps):
    """The ``cpu-jit`` device: NumPy arrays, a compiled epoch (float32 or float64)."""

    name = "cpu-jit"
    kind = "cpu"

    def __init__(self, dtype: str = "float32", index: int = 0) -> None:
        super().__init__(dtype=dtype, index=index)
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"device 'cpu-jit' computes in float32 or float64, not {self.dtype}; "
                              "use device 'cpu' for float16")
        if index != 0:
            raise ConfigError(f"device 'cpu-jit' has one device, 'cpu-jit' (got index {index})")
        self._compiled: Any = None

    @property
    def epoch(self) -> ModuleType:
        """:mod:`fastbp_numba.epoch`, the compiled whole epochs, imported (and so Numba loaded)
        when first needed."""
        if self._compiled is None:
            try:
                epoch = retryable_import(f"{__package__}.epoch")
            except ImportError as exc:
                raise MissingDependency(
                    f"device 'cpu-jit' needs Numba and SciPy ({exc}): pip install numba scipy"
                ) from exc
            if not compiled_before(epoch):
                log.info("fastbp: cpu-jit compiles its epoch (the first run on this machine: "
                         "a few seconds, kept for later runs)")
            self._compiled = epoch
        return self._compiled

    @property
    def kernels(self) -> ModuleType:
        """:mod:`fastbp_numba.kernels`, the compiled building blocks of one step."""
        self.epoch  # noqa: B018 - Numba's absence is reported there
        return retryable_import(f"{__package__}.kernels")

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        try:
            info["numba"] = retryable_import("numba").__version__
        except ImportError:  # pragma: no cover - a dependency of this distribution
            info["numba"] = None
        return info

    # -- training --------------------------------------------------------------------------
    def sgd_epoch(self, plan: EpochPlan) -> Scalar | None:
        """One epoch of mini-batch SGD in one compiled call; the same equations and order of
        operations as :func:`fastbp.devices.cpu.epoch.sgd_epoch` (see :mod:`fastbp_numba.epoch`).

        A plan with momentum, L1 or dropout runs the compiled twins (the ``*_tech`` epochs of
        :mod:`fastbp_numba.epoch`) on every strategy. A cost other than the three built in
        runs the ``cpu`` device's loop (its ``output_error`` is Python), and so does a neuron of
        the table without a compiled kernel (the table's form); either is said once in the log.
        """
        layers = plan.layers
        code = self._spec(layers.cost, layers.kinds, len(plan.params.weights))
        if code is None:
            if not getattr(self, "_warned_cost", False):
                missing = codes.not_compiled(self.kernels, layers.cost, layers.kinds)
                log.warning("fastbp: cpu-jit compiles %s; %s runs the cpu device's loop",
                            codes.compiles(self.kernels), missing)
                self._warned_cost = True
            return super().sgd_epoch(plan)
        choice = planning.choose(self, plan)
        mark, t0 = planning.planner.load_mark(), time.perf_counter()
        total, trials = planning.run_epoch(plan, choice,
                                           lambda p, name: self._epoch(p, code, name))
        if not trials:
            planning.after_epoch(plan, choice, time.perf_counter() - t0, mark)
        return total

    def stack_backprop(self, stack: Any, params: Any, x: Any, y: Any,
                       masks: Any) -> tuple[Scalar, list] | None:
        """A layer stack's backprop in two halves of the batch on two cores
        (:mod:`fastbp_numba.halves`) where there are two, else ``None`` (one matrix)."""
        if not halves.takes(int(x.shape[-1])):
            return None
        return halves.backprop(stack, params, x, y, masks)

    def fingerprint(self, a: Any) -> int | None:
        """:func:`fastbp_numba.fingerprint.fingerprint` of a contiguous NumPy array (30 ms for
        MNIST's training images), so ``train`` keeps its data's copy between calls."""
        if not isinstance(a, np.ndarray) or not (a.flags.c_contiguous or a.flags.f_contiguous):
            return None
        self.epoch  # noqa: B018 - Numba's absence is reported there
        return retryable_import(f"{__package__}.fingerprint").fingerprint(a)

    def between_epochs(self, plan: EpochPlan) -> contextlib.AbstractContextManager[None]:
        """BLAS on one thread between epochs of every strategy but ``blas-threads``: an idle
        BLAS thread of a threaded evaluation spins for a while after it, on the core the next
        epoch needs (the book's run at batch 10: 0.74 → 0.54 M samples/s)."""
        choice = planning.held(self, plan)
        if choice is None:
            return super().between_epochs(plan)
        return contextlib.nullcontext() if planning.blas_threaded(choice.name) else one_thread()

    def plan_for(self, plan: EpochPlan) -> planning.planner.Choice:
        """How epochs of ``plan`` will run here (:func:`fastbp_numba.planning.choose`): the
        cached, forced or default candidate, or ``measuring`` (the first epochs' trials settle
        it); ``generic`` for a cost or neuron the kernels do not compile (the ``cpu`` device's
        loop runs it, nothing to plan)."""
        code = self._spec(plan.layers.cost, plan.layers.kinds, len(plan.params.weights))
        if code is None:
            return planning.planner.Choice(
                "generic", f"the kernels do not compile "
                f"{codes.not_compiled(self.kernels, plan.layers.cost, plan.layers.kinds)}")
        return planning.choose(self, plan)

    def tune_plan(self, plan: EpochPlan) -> planning.planner.Choice:
        """:meth:`plan_for`, and where that is ``measuring``, its trials run now: the steps of
        the first epochs that they take, training ``plan``'s parameters (``fastbp tune``'s
        network of its own), in order, until the choice is settled."""
        choice = self.plan_for(plan)
        order, per = plan.cursor.order, planning.steps_per_epoch(plan)
        m, done = int(plan.settings.batch_size), 0
        while choice.source == "measuring":  # each pass: up to the trials laid out so far
            end = plan.cache.of(JitCache).trials[choice.key].end
            epoch, step = divmod(done, per)
            upto = min(end, (epoch + 1) * per)
            plan.start(order[step * m:(upto - epoch * per) * m], 0, step, epoch)
            self.sgd_epoch(plan)
            done = upto
        plan.start(order)
        return choice

    def _epoch(self, plan: EpochPlan, code: Spec, candidate: str) -> float:
        """One epoch of ``plan`` run as ``candidate`` (``STRATEGY/LIBRARY``, see
        :mod:`fastbp_numba.planning`); returns the summed cost. A plan that is not plain runs
        the same strategy on the ``*_tech`` epochs of :mod:`fastbp_numba.epoch`, a plain one of
        batches past :meth:`_blocks`' rows on the ``*_blocks`` ones."""
        strategy, library = candidate.split("/")
        lib = planning.library(library)
        k = self.epoch
        settings, params, sizes = plan.settings, plan.params, plan.layers.sizes
        m, first_step = int(settings.batch_size), int(plan.cursor.first_step)
        xbuf, ybuf, acts, deltas, scal = self._work(sizes, m, plan.cache.of(JitCache).rows)
        block, sums = self._blocks(sizes, plan.cache.of(JitCache).rows)
        weights = tuple(_contiguous(w, self.dtype, "weights") for w in params.weights)
        biases = tuple(_contiguous(b, self.dtype, "biases") for b in params.biases)
        xs = _contiguous(plan.data.xs, self.dtype, "training inputs")
        ys = _contiguous(plan.data.ys, self.dtype, "training targets")
        order = np.ascontiguousarray(plan.cursor.order, dtype=np.int64)
        eta, decay = float(settings.eta), float(settings.decay)
        blas = None if lib is None else lib.gemm_for(self.dtype)
        tech = None if settings.plain else self._techniques(plan, weights, biases, acts)
        if strategy == "two-threads":
            with one_thread():  # BLAS on one thread in each of the two
                return self._two_threads(k, weights, biases, xs, ys, order, m, eta, decay, code,
                                         (xbuf, ybuf, acts, deltas), blas, lib, tech,
                                         first_step, block, sums)
        threads = strategy == "blas-threads"
        with contextlib.nullcontext() if threads else one_thread():
            gathering = {"overlap": "overlap", "one-thread": None}.get(
                strategy, prefetch_mode(sizes, m, threads=True, rows=int(order.shape[0])))
            if gathering is None:
                if tech is not None:
                    return k.sgd_epoch_tech(weights, biases, xs, ys, order, m, eta, decay, code,
                                            tech[0], first_step, xbuf, ybuf, acts, deltas,
                                            tech[1], scal, SMALL_ROWS, blas)
                if m > block:
                    return k.sgd_epoch_blocks(weights, biases, xs, ys, order, m, eta, decay, code,
                                              xbuf, ybuf, acts, deltas, scal, SMALL_ROWS, blas,
                                              block, sums[0])
                return k.sgd_epoch(weights, biases, xs, ys, order, m, eta, decay, code, xbuf,
                                   ybuf, acts, deltas, scal, SMALL_ROWS, blas)
            total = 0.0  # the same steps, on rows gathered ahead (prefetch_chunks)
            done = 0  # rows of the epoch already trained (whole batches: chunks hold whole ones)
            chunks = prefetch_chunks(xs, ys, order, chunk_buffers(self, plan),
                                     parallel=gathering == "parallel")
            with contextlib.closing(chunks):  # an error waits for the gather in flight
                for x, y in chunks:
                    if tech is None and m > block:
                        total = k.sgd_rows_blocks(weights, biases, x, y, x.shape[0], m, eta,
                                                  decay, code, acts, deltas, scal, SMALL_ROWS,
                                                  blas, block, sums[0], total)
                        continue
                    if tech is None:
                        total = k.sgd_rows(weights, biases, x, y, x.shape[0], m, eta, decay,
                                           code, acts, deltas, scal, SMALL_ROWS, blas, total)
                        continue
                    total = k.sgd_rows_tech(
                        weights, biases, x, y, x.shape[0], m, eta, decay, code, tech[0],
                        first_step + done // m, acts, deltas, tech[1], scal,
                        SMALL_ROWS, blas, total)
                    done += int(x.shape[0])
            return total

    def _techniques(self, plan: EpochPlan, weights: tuple, biases: tuple, acts: tuple
                    ) -> tuple[tuple, tuple]:
        """The kernels' ``(tech, extra)`` for a plan with momentum, L1 or dropout
        (:mod:`fastbp_numba.techniques`): ``(μ, ηλ/n, ηλ₁/n, velocity?, dropout?, seed,
        ⌊p·2^32⌋, 1/(1 − p))`` and ``(masks, dropped, velocities)``. The parts a plan does not
        use are placeholders the kernels never touch (the activations, the parameters)."""
        s, vs = plan.settings, plan.params.velocities
        p = float(s.dropout)
        velocity = s.velocity
        tech = (float(s.mu), float(s.l2_step), float(s.l1_step), velocity, p > 0.0,
                int(plan.cursor.seed) & dropout.MASK32, dropout.threshold(p) if p else 0,
                dropout.scale(p))
        if p:
            masks, dropped = self._dropout_work(plan.layers.sizes, int(s.batch_size),
                                                plan.cache.of(JitCache).dropout)
        else:
            masks = dropped = acts
        if velocity:
            assert vs is not None  # EpochPlan checks it
            velocities = tuple(_contiguous(v, self.dtype, "velocities") for v in vs)
            if len(velocities) != 2 * len(weights):
                raise ConfigError(f"cpu-jit needs one velocity per weight and bias "
                                  f"({2 * len(weights)}), got {len(velocities)}")
        else:
            velocities = (*weights, *biases)
        return tech, (masks, dropped, velocities)

    def _dropout_work(self, sizes: list[int], m: int, cache: dict[Any, tuple]
                      ) -> tuple[tuple, tuple]:
        """``(masks, dropped)``: sample-major ``D^l`` and ``Ã^l`` buffers, ``(m, n_l)`` for every
        layer (the output layer's are not used), made once per shape in ``cache``."""
        key = (tuple(sizes), m, self.dtype)
        work = cache.get(key)
        if work is None:
            dt = self.dtype
            with translate_oom(self, sizes, m):
                work = cache[key] = (tuple(np.empty((m, n), dt) for n in sizes[1:]),
                                     tuple(np.empty((m, n), dt) for n in sizes[1:]))
        return work

    def _two_threads(self, k: ModuleType, weights: tuple, biases: tuple, xs: np.ndarray,
                     ys: np.ndarray, order: np.ndarray, m: int, eta: float, decay: float,
                     code: Spec, work: tuple, blas: Any, lib: Any, tech: Any = None,
                     first_step: int = 0, block: int = 0, sums: tuple = ()) -> float:
        """The epoch on two threads (:func:`fastbp_numba.epoch.sgd_epoch_half`, or
        :func:`fastbp_numba.epoch.sgd_epoch_half_tech` with ``tech``, the pair
        :meth:`_techniques` gives; :func:`fastbp_numba.epoch.sgd_epoch_half_blocks` for halves
        of more than ``block`` rows): this one and a helper, each with half of every step and
        BLAS on one thread. ``work``: the epoch's row buffers; ``block``, ``sums``: a large
        batch's blocks and each thread's sums (:meth:`_blocks`); ``blas``: :meth:`gemm_pointer`;
        ``first_step``: the number of the first mini-batch in its epoch."""
        xbuf, ybuf, acts, deltas = work
        h = (m + 1) // 2
        halves_of = (slice(0, h), slice(h, m))
        views = [(xbuf[rows], ybuf[rows], tuple(a[rows] for a in acts),
                  tuple(d[rows] for d in deltas)) for rows in halves_of]
        extra_views = None if tech is None else [
            (tuple(a[rows] for a in tech[1][0]), tuple(a[rows] for a in tech[1][1]))
            for rows in halves_of]
        sync = np.zeros(1, np.int64)  # arrivals at the barrier
        totals = [0.0, 0.0]
        errors: list[BaseException] = []

        def run(t: int) -> None:
            try:
                with lib.one_thread_here() if lib else contextlib.nullcontext():
                    if tech is None and h > block:
                        totals[t] = k.sgd_epoch_half_blocks(
                            t, weights, biases, xs, ys, order, m, eta, decay, code, views[t],
                            np.empty(4, self.dtype), SMALL_ROWS, blas, sync, block, sums)
                    elif tech is None:
                        totals[t] = k.sgd_epoch_half(t, weights, biases, xs, ys, order, m, eta,
                                                     decay, code, xbuf, acts, deltas, views[t],
                                                     np.empty(4, self.dtype), SMALL_ROWS, blas,
                                                     sync)
                    else:
                        assert extra_views is not None
                        totals[t] = k.sgd_epoch_half_tech(
                            t, weights, biases, xs, ys, order, m, eta, decay, code, tech[0],
                            first_step, xbuf, acts, deltas, tech[1], views[t], extra_views[t],
                            np.empty(4, self.dtype), SMALL_ROWS, blas, sync)
            except BaseException as exc:  # the other thread must not wait for this one
                errors.append(exc)
                sync[0] = 1 << 62

        with half_helper() as start:
            done = start(run, 1)
            try:
                run(0)
            finally:
                done()
        if errors:
            raise errors[0]
        return totals[0] + totals[1]

    def gemm_pointer(self) -> Any:
        """The CBLAS ``?gemm`` the kernels call (:func:`fastbp.devices.cpu.find_cblas`), or None for
        SciPy's BLAS."""
        lib = find_cblas()
        return None if lib is None else lib.gemm_for(self.dtype)

    def compiled_backprop(self, weights: list[np.ndarray], biases: list[np.ndarray], x: Any,
                          y: Any, cost: Any = QuadraticCost, kinds: Any = None
                          ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """``(nabla_b, nabla_w)`` summed over the columns of ``x`` ``(n_in, m)``, computed by the
        compiled kernels the epoch uses (BP1–BP4), shaped like the book's; ``kinds``: each
        layer's neuron (default sigmoid hidden layers and the cost's output)."""
        code = self._spec(cost, kinds, len(weights))
        if code is None:
            raise ConfigError(f"cpu-jit compiles {codes.compiles(self.kernels)}, not "
                              f"{codes.not_compiled(self.kernels, cost, kinds)}")
        dt = self.dtype
        ws = tuple(np.ascontiguousarray(w, dtype=dt) for w in weights)
        bs = tuple(np.ascontiguousarray(b, dtype=dt).reshape(-1, 1) for b in biases)
        rows_x = np.ascontiguousarray(np.asarray(x, dtype=dt).T)
        rows_y = np.ascontiguousarray(np.asarray(y, dtype=dt).T)
        m = rows_x.shape[0]
        acts = tuple(np.empty((m, w.shape[0]), dt) for w in ws)
        deltas = tuple(np.empty((m, w.shape[0]), dt) for w in ws)
        grad_w = tuple(np.empty_like(w) for w in ws)
        grad_b = tuple(np.empty_like(b) for b in bs)
        self.kernels.backprop(ws, bs, rows_x, rows_y, code, acts, deltas, grad_w, grad_b,
                              np.empty(4, dt), SMALL_ROWS, self.gemm_pointer())
        return list(grad_b), list(grad_w)

    def _spec(self, cost: Any, kinds: Any, layers: int) -> Spec | None:
        """The kernels' codes for ``cost`` and ``kinds`` (:func:`fastbp_numba.codes.spec`)."""
        return codes.spec(self.kernels, cost, kinds, layers)

    def _blocks(self, sizes: list[int], cache: dict[Any, tuple]) -> tuple[int, tuple]:
        """``(block, sums)``: the rows of a block of a large batch (:data:`BLOCK_ROWS` for a
        network of fewer than :data:`BLOCKED_WEIGHTS` weights, else no blocks) and two threads'
        sums ``(G, g)`` of one batch (``G^l`` shaped like ``W^l``, ``g^l`` like ``b^l``; empty
        where there are no blocks), made once per shape in ``cache``."""
        blocked = step_work(sizes, 1) < BLOCKED_WEIGHTS  # the network's weights
        key = ("sums", tuple(sizes), self.dtype)
        sums = cache.get(key)
        if sums is None:
            dt = self.dtype
            with translate_oom(self, sizes, 0):
                sums = cache[key] = tuple(
                    (tuple(np.zeros((n, k) if blocked else (0, 0), dt)
                           for k, n in zip(sizes[:-1], sizes[1:])),
                     tuple(np.zeros(n if blocked else 0, dt) for n in sizes[1:]))
                    for _ in range(2))
        return (BLOCK_ROWS if blocked else 1 << 62), sums

    def _work(self, sizes: list[int], m: int, cache: dict[Any, tuple]) -> tuple:
        """Sample-major buffers for batches of up to ``m`` rows, made once per shape. They live
        in the network's cache (:class:`JitCache`, not on this backend), so networks sharing
        one backend instance can train in different threads."""
        key = (tuple(sizes), m, self.dtype)
        work = cache.get(key)
        if work is None:
            dt = self.dtype
            with translate_oom(self, sizes, m):
                work = cache[key] = (
                    np.empty((m, sizes[0]), dt), np.empty((m, sizes[-1]), dt),
                    tuple(np.empty((m, n), dt) for n in sizes[1:]),
                    tuple(np.empty((m, n), dt) for n in sizes[1:]),
                    np.empty(4, dt),
                )
        return work


def compiled_before(module: Any) -> bool:
    """Whether Numba's cache already holds ``module``'s compiled epoch (an index file of its
    ``sgd_epoch`` beside the module or under ``$NUMBA_CACHE_DIR``): if not, the first epoch
    compiles it, which takes seconds."""
    import os
    from pathlib import Path

    here = Path(str(module.__file__)).resolve()
    places = [here.parent / "__pycache__"]
    if os.environ.get("NUMBA_CACHE_DIR"):
        places.append(Path(os.environ["NUMBA_CACHE_DIR"]))
    stem = here.stem
    return any(any(p.rglob(f"{stem}.sgd_epoch-*.nbi")) for p in places if p.is_dir())


def _contiguous(a: Any, dtype: str, what: str) -> np.ndarray:
    """``a`` itself when it is a C-contiguous NumPy array of ``dtype`` (updated in place)."""
    if isinstance(a, np.ndarray) and a.flags.c_contiguous and a.dtype == dtype:
        return a
    raise ConfigError(f"cpu-jit needs the {what} as C-contiguous {dtype} NumPy arrays, got "
                      f"{type(a).__name__} {getattr(a, 'dtype', '')}")
