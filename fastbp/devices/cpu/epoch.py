"""The ``cpu`` device's own epoch loop: NumPy for elementwise passes, BLAS for GEMMs.

The same equations as :func:`fastbp.core.epoch.sgd_epoch`, with the per-step Python cost cut down:
the buffers are sample-major (one sample per **row**, so the last, shorter mini-batch is a prefix
of the same buffers), every GEMM is one BLAS call on Fortran-ordered views (a C-ordered ``(m, n)``
array is its own transpose in Fortran order, so no copy is made), and the SGD update is folded
into the weight-gradient GEMM:

- feedforward: ``(Z^l)ᵀ = W^l (A^{l-1})ᵀ``, then ``A^l = f(Z^l + b^l)`` (:func:`activate`:
  σ, tanh, relu, or softmax along each row)
- BP1: ``Δ^L = (A^L − Y) ⊙ A^L ⊙ (1 − A^L)`` (quadratic; other costs via ``output_error``)
- BP2: ``(Δ^l)ᵀ = (W^{l+1})ᵀ (Δ^{l+1})ᵀ``, then ``⊙ f'(Z^l)`` from ``A^l`` (:func:`mul_prime`)
- BP3 + BP4 + SGD: ``(W^l)ᵀ ← decay·(W^l)ᵀ − (η/m) (A^{l-1})ᵀ Δ^l`` (one GEMM, β = decay) and
  ``b^l ← b^l − (η/m) (Δ^l)ᵀ 1`` (one GEMV)

Chapter 3's techniques (:class:`Techniques`): with momentum or L1 the GEMM writes the velocity,
``Vᵀ ← μ Vᵀ − (η/m) (A^{l-1})ᵀ Δ^l`` (β = μ), in-place passes subtract ``(ηλ/n) W`` and
``(ηλ₁/n) sgn W``, then ``W ← W + V``; the biases likewise with one GEMV. With dropout each hidden
layer's mask ``D^l`` is drawn into a sample-major buffer (entry ``[c, j]``: neuron ``j`` of sample
``c``, hash index ``j·m + c``, :mod:`fastbp.core.dropout`); the next layer and BP4 read
``Ã^l = A^l ⊙ D^l``, BP2 takes ``f'`` from the unmasked ``A^l`` and multiplies by ``D^l``.

Steps of at least :data:`DIRECT_WORK` multiply-adds call MKL or NumPy's OpenBLAS directly
(:mod:`.cblas`) and take their rows from chunks gathered ahead (:mod:`.prefetch`); smaller ones
call SciPy's BLAS wrappers, which cost less per call, and gather their own rows.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ...core import dropout
from ...core.costs import QuadraticCost
from ...core.memory import translate_oom
from ...core.neurons import kinds_of, neuron
from ...core.plan import EpochPlan
from . import cblas, prefetch
from .blas_threads import narrow, step_threads, step_work, threaded

# Steps of at least this many multiply-adds call CBLAS directly (.cblas); below it the few
# microseconds a ctypes call costs outweigh the faster library, and SciPy's wrappers run.
DIRECT_WORK = 1_000_000
SIMD_SIGMOID = 4096  # elements from which sigmoid() runs as four vectorised passes
FLUSH_EVERY = 16  # steps between flushes of subnormal velocities to 0 (Techniques.flush)


def applies(plan: EpochPlan) -> bool:
    """Whether this loop can run ``plan``: SciPy present, float32 or float64 NumPy arrays, the
    parameters C-contiguous (their transposes are then the Fortran arrays BLAS updates in place)."""
    xs, ys = plan.data.xs, plan.data.ys
    dtype = np.dtype(getattr(xs, "dtype", "O"))
    if dtype not in (np.float32, np.float64):
        return False
    try:
        import scipy.linalg.blas  # noqa: F401
        import scipy.special  # noqa: F401
    except ImportError:
        return False
    arrays = [xs, ys, plan.cursor.order, *plan.params.arrays()]
    return all(isinstance(a, np.ndarray) and a.flags.c_contiguous for a in arrays) and all(
        a.dtype == dtype for a in arrays[:2] + arrays[3:])


class RowBuffers:
    """Sample-major work buffers for mini-batches of up to ``m`` rows."""

    def __init__(self, sizes: list[int], m: int, dtype: str) -> None:
        self.m = m
        self.x = np.empty((m, sizes[0]), dtype)
        self.y = np.empty((m, sizes[-1]), dtype)
        self.a = [np.empty((m, n), dtype) for n in sizes[1:]]
        self.d = [np.empty((m, n), dtype) for n in sizes[1:]]
        self.s = [np.empty((m, n), dtype) for n in sizes[1:]]
        self.ones = np.ones(m, dtype)

    def rows(self, r: int) -> tuple[Any, ...]:
        """Views of the first ``r`` rows of every buffer: ``x, y, a, d, s, ones``."""
        return (self.x[:r], self.y[:r], [a[:r] for a in self.a], [d[:r] for d in self.d],
                [s[:r] for s in self.s], self.ones[:r])


class Techniques:
    """Chapter 3's buffers for mini-batches of up to ``m`` rows: each hidden layer's mask ``D``,
    masked activations ``Ã = A ⊙ D`` and hash words (``(m, n_l)``, sample-major), and a scratch
    of each ``W^l``'s shape for the L2 and L1 terms of the velocity step."""

    def __init__(self, sizes: list[int], m: int, dtype: str) -> None:
        hidden = sizes[1:-1]
        self.masks = [np.empty((m, n), dtype) for n in hidden]
        self.dropped = [np.empty((m, n), dtype) for n in hidden]
        self.words = [np.empty((m, n), np.uint32) for n in hidden]
        self.shifted = [np.empty((m, n), np.uint32) for n in hidden]
        self.scratch = [np.empty((n, k), dtype) for k, n in zip(sizes[:-1], sizes[1:])]
        self.small = [np.empty((n, k), bool) for k, n in zip(sizes[:-1], sizes[1:])]
        self.tiny = np.finfo(dtype).tiny
        self.hidden = hidden
        self._rows: dict[int, list[tuple[np.ndarray, ...]]] = {}

    def flush(self, velocities: list[np.ndarray]) -> None:
        """Velocities below the smallest normal number set to 0. A weight whose gradient is
        mostly 0 (an input pixel that is nearly always dark, a dead relu) keeps a velocity that
        decays by ``μ`` each step through the subnormal range, where x86 arithmetic takes a slow
        microcode path (momentum ran 2× slower on MNIST without this; the compiled epoch runs
        with flush-to-zero on for the same reason)."""
        # W^l's velocity, then b^l's, which uses the first entries of the same layer's scratch
        for v, sw, small in zip(velocities, self.scratch * 2, self.small * 2):
            a, mask = sw.reshape(-1)[: v.size].reshape(v.shape), small.reshape(-1)[: v.size]
            np.abs(v, out=a)
            np.less(a, self.tiny, out=mask.reshape(v.shape))
            np.putmask(v, mask.reshape(v.shape), 0.0)

    def rows(self, r: int) -> list[tuple[np.ndarray, ...]]:
        """Per hidden layer ``(index, words, shifted, mask)`` for an ``r``-sample batch, the
        buffers' first ``r`` rows, where ``index[c, j] = j·r + c`` (made once per ``r``)."""
        views = self._rows.get(r)
        if views is None:
            views = self._rows[r] = [
                (np.ascontiguousarray(np.arange(n * r, dtype=np.uint32).reshape(n, r).T),
                 h[:r], t[:r], d[:r])
                for n, h, t, d in zip(self.hidden, self.words, self.shifted, self.masks)]
        return views

    def draw(self, seed: int, step: int, p: float, r: int) -> list[np.ndarray]:
        """The masks ``D^l`` (first ``r`` rows) of mini-batch ``step``:
        ``D[c, j] = 1/(1 − p)`` if ``mix(key_l + j·r + c) ≥ ⌊p·2^32⌋``, else 0."""
        cut, keep = np.uint32(dropout.threshold(p)), dropout.scale(p)
        masks = []
        for l, (idx, h, t, d) in enumerate(self.rows(r)):
            np.add(idx, np.uint32(dropout.step_key(seed, step, l)), out=h)  # wraps mod 2^32
            dropout.mix_array(np, h, scratch=t)  # in place
            np.greater_equal(h, cut, out=d)
            np.multiply(d, keep, out=d)
            masks.append(d)
        return masks


def sgd_epoch(backend: Any, plan: EpochPlan) -> float:
    """One pass of mini-batch SGD over ``plan.cursor.order`` (see module docstring); returns the
    summed cost of the batches, each taken before its update. BLAS threads: see
    :mod:`.blas_threads` (one thread where a step is too small or a network too narrow)."""
    threads = epoch_threads(plan)
    with step_threads(plan.layers.sizes, plan.settings.batch_size, threads):
        return _sgd_epoch(backend, plan, threads)


def epoch_threads(plan: EpochPlan) -> bool:
    """Whether this loop's epochs of ``plan`` call BLAS on its threads (else on one): a step
    worth threads (:func:`.blas_threads.threaded`) of a network that is not narrow."""
    sizes, m = plan.layers.sizes, plan.settings.batch_size
    return threaded(sizes, m) and not narrow(sizes)


def _need(extra: Techniques | None) -> Techniques:
    """The techniques' buffers of a plan that has them (only such a plan asks)."""
    assert extra is not None
    return extra


def _sgd_epoch(backend: Any, plan: EpochPlan, threads: bool) -> float:
    from scipy.linalg import blas

    layers, settings, params = plan.layers, plan.settings, plan.params
    sizes, m = layers.sizes, settings.batch_size
    dtype = np.dtype(plan.data.xs.dtype)
    gemm, gemv = (blas.sgemm, blas.sgemv) if dtype == np.float32 else (blas.dgemm, blas.dgemv)
    lib = cblas.find()
    direct = lib is not None and step_work(sizes, m) >= DIRECT_WORK
    if lib is not None and direct:  # MKL or NumPy's OpenBLAS: faster on skinny products
        gemm = cblas.FortranGemm(lib, dtype)
        # the bias step as a GEMM too (b is an (n_l, 1) column), so that one library and one
        # thread pool run the whole step: two pools would spin against each other
        gemv = _gemv_as_gemm(gemm)
    weights, biases, cost = params.weights, params.biases, layers.cost
    quadratic = cost is QuadraticCost
    kinds = kinds_of(layers.kinds, len(weights))
    eta, decay = settings.eta, settings.decay
    cache = plan.cache.of(CpuCache)
    buffers = cache.rows_for(backend, sizes, m, dtype.name)
    add, subtract, multiply, vdot = np.add, np.subtract, np.multiply, np.vdot
    w_t = [w.T for w in weights]  # Fortran-ordered (n_{l-1}, n_l) views, updated in place
    b_row = [b.T for b in biases]  # (1, n_l) views for the broadcast add
    b_vec = [b.reshape(-1) for b in biases]  # (n_l,) views for the GEMV
    top = len(weights) - 1
    p, seed = settings.dropout, plan.cursor.seed
    extra = None if settings.plain else cache.techniques_for(backend, sizes, m, dtype.name)
    momentum = settings.velocity
    velocities: list[np.ndarray] = params.velocities or []
    if momentum:  # v's of the W's (transposed, like w_t), then of the b's
        mu, l2, l1 = settings.mu, settings.l2_step, settings.l1_step
        v_t = [v.T for v in velocities[: top + 1]]
        v_w = velocities[: top + 1]
        vb_vec = [v.reshape(-1) for v in velocities[top + 1 :]]
    masks = None
    total = 0.0
    r = -1
    for step, (x, y) in enumerate(_batches(backend, plan, buffers, threads),
                                  plan.cursor.first_step):
        if x.shape[0] != r:  # the first batch, and a shorter last one
            r = int(x.shape[0])
            _, _, a, d, s, ones = buffers.rows(r)
            fed = a if not p else [ai[:r] for ai in _need(extra).dropped] + a[top:]
            inputs_t = [x.T] + [ai.T for ai in fed[:-1]]
            a_t, d_t = [ai.T for ai in a], [di.T for di in d]
        else:
            inputs_t[0] = x.T
        if p:
            masks = _need(extra).draw(seed, step, p, r)
        # feedforward: (Z^l)ᵀ = W^l (Ã^{l-1})ᵀ, then A^l = f(Z^l + b^l), Ã^l = A^l ⊙ D^l
        for l in range(top + 1):
            gemm(1.0, w_t[l], inputs_t[l], 0.0, a_t[l], 1, 0, 1)
            add(a[l], b_row[l], out=a[l])
            activate(a[l], kinds[l], s[l])
            if masks is not None and l < top:
                multiply(a[l], masks[l], out=fed[l])
        # BP1
        if quadratic:
            subtract(a[top], y, out=d[top])
            total += 0.5 * float(vdot(d[top], d[top]))
            _mul_sigmoid_prime(d[top], a[top], s[top], subtract, multiply)
        else:
            total += float(cost.output_error(backend, a[top], y, d[top], s[top]))
        # BP2: (Δ^l)ᵀ = (W^{l+1})ᵀ (Δ^{l+1})ᵀ, then the hadamard with f'(Z^l), from A^l, and D^l
        for l in range(top - 1, -1, -1):
            gemm(1.0, w_t[l + 1], d_t[l + 1], 0.0, d_t[l], 0, 0, 1)
            mul_prime(d[l], a[l], s[l], kinds[l])
            if masks is not None:
                multiply(d[l], masks[l], out=d[l])
        # BP3 and BP4 folded into the update
        alpha = -eta / r
        if not momentum:
            for l in range(top + 1):
                gemm(alpha, inputs_t[l], d_t[l], decay, w_t[l], 0, 1, 1)
                gemv(alpha, d_t[l], ones, 1.0, b_vec[l], 0, 1, 0, 1, 0, 1)
            continue
        # Vᵀ ← μ Vᵀ − (η/m)(Ã^{l-1})ᵀ Δ^l − (ηλ/n) Wᵀ − (ηλ₁/n) sgn Wᵀ; W ← W + V; b likewise
        for l in range(top + 1):
            gemm(alpha, inputs_t[l], d_t[l], mu, v_t[l], 0, 1, 1)
            w, v, sw = weights[l], v_w[l], _need(extra).scratch[l]
            if l2:
                multiply(w, l2, out=sw)
                subtract(v, sw, out=v)
            if l1:
                np.sign(w, out=sw)
                multiply(sw, l1, out=sw)
                subtract(v, sw, out=v)
            add(w, v, out=w)
            gemv(alpha, d_t[l], ones, mu, vb_vec[l], 0, 1, 0, 1, 0, 1)
            add(b_vec[l], vb_vec[l], out=b_vec[l])
        if step % FLUSH_EVERY == FLUSH_EVERY - 1:
            _need(extra).flush(velocities)
    return total


def _batches(backend: Any, plan: EpochPlan, buffers: RowBuffers, threads: bool
             ) -> Iterator[tuple[np.ndarray, ...]]:
    """The epoch's mini-batches as ``(X rows, Y rows)``: for steps of at least
    :data:`DIRECT_WORK` multiply-adds gathered ahead by another core (:mod:`.prefetch`), else
    gathered here, one batch at a time (a small batch costs less to gather than to hand
    over)."""
    xs, ys, order = plan.data.xs, plan.data.ys, plan.cursor.order
    sizes, m = plan.layers.sizes, plan.settings.batch_size
    gathering = None
    if step_work(sizes, m) >= DIRECT_WORK:
        gathering = prefetch.mode(sizes, m, threads, int(order.shape[0]))
    if gathering is None:
        for start in range(0, int(order.shape[0]), m):
            idx = order[start : start + m]
            x, y = buffers.x[: idx.shape[0]], buffers.y[: idx.shape[0]]
            np.take(xs, idx, 0, x, "clip")  # indices are a permutation: no bounds check needed
            np.take(ys, idx, 0, y, "clip")
            yield x, y
        return
    chunks = prefetch.chunks(xs, ys, order, prefetch.chunk_buffers(backend, plan),
                             gathering == "parallel")
    with contextlib.closing(chunks):  # an error waits for the gather in flight
        for x, y in chunks:
            for start in range(0, x.shape[0], m):
                yield x[start : start + m], y[start : start + m]


def _gemv_as_gemm(gemm: Any) -> Any:
    """SciPy's ``gemv(alpha, a, x, beta, y, ...)`` (``y ← α a x + β y``, the calls below) as one
    call of ``gemm`` on ``x`` and ``y`` seen as columns."""

    def gemv(alpha: float, a: Any, x: Any, beta: float, y: Any, *flags: Any) -> Any:
        return gemm(alpha, a, x.reshape(-1, 1), beta, y.reshape(-1, 1), 0, 0, 1)

    return gemv


@functools.cache
def _expit() -> Callable[..., Any]:
    """SciPy's ``expit``, imported on first use (``scipy.special`` takes 0.15 s to import)."""
    from scipy.special import expit

    return expit


def sigmoid(z: np.ndarray) -> None:
    """In place: ``z ← σ(z) = 1 / (1 + e^{−z})``.

    Large arrays take four passes of NumPy's vectorised ufuncs (``e^x`` in SIMD: 4–5× faster
    than SciPy's ``expit``, which computes one element at a time); small ones one call of
    ``expit`` (fewer calls). ``e^{−z}`` overflows to inf for ``z < −88`` (float32), where σ is
    0 either way."""
    if z.size < SIMD_SIGMOID:
        _expit()(z, out=z)
        return
    np.negative(z, out=z)
    with np.errstate(over="ignore"):
        np.exp(z, out=z)
    np.add(z, 1.0, out=z)
    np.reciprocal(z, out=z)


def _softmax_rows(z: np.ndarray, scratch: np.ndarray) -> None:
    """Softmax along each row (one sample), shifted by the row's largest entry, with no
    allocation (``scratch``: a buffer of ``z``'s shape)."""
    top = scratch[:, :1]
    np.max(z, axis=1, keepdims=True, out=top)
    np.subtract(z, top, out=z)
    np.exp(z, out=z)
    np.sum(z, axis=1, keepdims=True, out=top)
    np.divide(z, top, out=z)


# this device's own kernels by neuron kind; the rest are the neuron table's (fastbp.core.neurons)
ACTIVATE: dict[str, Callable[[np.ndarray, np.ndarray], None]] = {
    "sigmoid": lambda z, scratch: sigmoid(z), "softmax": _softmax_rows}
MUL_PRIME: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], None]] = {
    "sigmoid": lambda d, a, s: _mul_sigmoid_prime(d, a, s, np.subtract, np.multiply)}


def activate(z: np.ndarray, kind: str, scratch: np.ndarray) -> None:
    """In place on sample-major rows: ``z ← f(z)``; softmax runs along each row (one sample)."""
    own = ACTIVATE.get(kind)
    if own is not None:
        own(z, scratch)
    else:
        neuron(kind).activate(np, z, 1)


def mul_prime(d: np.ndarray, a: np.ndarray, s: np.ndarray, kind: str) -> None:
    """In place: ``Δ ← Δ ⊙ f'(Z)`` from ``A``: ``A(1 − A)``, ``1 − A²`` or ``[A > 0]``."""
    own = MUL_PRIME.get(kind)
    if own is not None:
        own(d, a, s)
        return
    prime = neuron(kind).prime
    assert prime is not None, f"BP2 has no derivative for a {kind} layer"
    prime(np, a, s)
    np.multiply(d, s, out=d)


def _mul_sigmoid_prime(d: np.ndarray, a: np.ndarray, s: np.ndarray, subtract: Any,
                       multiply: Any) -> None:
    """In place: ``Δ ← Δ ⊙ A ⊙ (1 − A)``."""
    subtract(1.0, a, out=s)
    multiply(s, a, out=s)
    multiply(d, s, out=d)


class CpuCache:
    """The ``cpu`` device's cache in a network's :class:`~fastbp.core.plan.Cache`: its
    :class:`RowBuffers` and :class:`Techniques` by ``(sizes, m, dtype)``. It lives with the
    network, not on the backend: networks sharing a backend instance may train in different
    threads without sharing buffers."""

    def __init__(self) -> None:
        self.rows: dict[tuple[tuple[int, ...], int, str], RowBuffers] = {}
        self.techniques: dict[tuple[tuple[int, ...], int, str], Techniques] = {}

    def rows_for(self, backend: Any, sizes: list[int], m: int, dtype: str) -> RowBuffers:
        """The row buffers for this shape and batch size (made once)."""
        key = (tuple(sizes), m, dtype)
        buf = self.rows.get(key)
        if buf is None:
            with translate_oom(backend, sizes, m):  # MemoryError -> DeviceError, with numbers
                buf = self.rows[key] = RowBuffers(list(sizes), m, dtype)
        return buf

    def techniques_for(self, backend: Any, sizes: list[int], m: int, dtype: str
                       ) -> Techniques:
        """The :class:`Techniques` buffers for this shape and batch size (made once)."""
        key = (tuple(sizes), m, dtype)
        buf = self.techniques.get(key)
        if buf is None:
            with translate_oom(backend, sizes, m):
                buf = self.techniques[key] = Techniques(list(sizes), m, dtype)
        return buf
