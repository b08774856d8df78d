"""The CUDA kernels of the CuPy backend.

Two families:

* **Fused elementwise kernels** (``cupy.ElementwiseKernel``) for the eager path, where cuBLAS
  does the products: ``a = f(z + b)`` (feedforward: σ, tanh, relu), ``x ← x ⊙ f'(z)`` from
  ``a`` (the hadamard of BP1/BP2: ``a(1 − a)``, ``1 − a²``, ``[a > 0]``), ``x ← x ⊙ F`` (BP2
  under dropout, ``F = f'(z) ⊙ D`` from the dropout kernel), and the SGD update
  ``p ← β p − α g``. A softmax layer adds its bias, then runs ``fastbp_softmax_columns``.
* **Raw kernels** (``cupy.RawModule``). cuBLAS cannot be called while a stream is being captured
  into a CUDA graph, so the captured step does its products with its own small GEMMs whose
  epilogues fuse the rest of each equation (see ``GEMM_*`` below), gathers its mini-batch
  through a step counter kept in device memory, and reduces the cost and the bias gradient with
  its own deterministic kernels (no CUB scratch, no allocation). The eager step uses the
  output-error kernel too, so that it allocates nothing per step either.

Chapter 3's techniques (:mod:`fastbp.core.dropout`, ``Backend.velocity_update``) are raw kernels
shared by both steps: ``fastbp_dropout_key`` / ``fastbp_dropout_step`` draw a hidden layer's mask
``D`` with the counter hash (unsigned 32-bit arithmetic, the key given, or derived in the kernel
from the epoch's seed and the step counter in device memory) and write ``ã = a ⊙ D`` and BP2's
factor ``F = f'(z) ⊙ D``; ``fastbp_velocity_apply`` finishes the momentum step after the GEMM
``v ← μ v − α δ aᵀ`` (``v ← v − l2 W − l1 sgn W``, ``W ← W + v``), and ``fastbp_bias_velocity``
does the biases' whole step in one launch.

The sources are plain strings, so they can be compiled (and checked) without a GPU.
"""

from __future__ import annotations

from typing import Any

from .techniques_source import TECHNIQUES_SOURCE

# -- the eager path: fused elementwise kernels ------------------------------------------------
# Each entry: (in_params, out_params, operation, name). ``T`` is float or double.
ELEMENTWISE = {
    # feedforward: a^l = σ(z^l + b^l), in place on z (b broadcasts along the columns)
    "bias_sigmoid": ("T b", "T z", "z = T(1) / (T(1) + exp(-(z + b)))", "fastbp_bias_sigmoid"),
    # out = σ(z)
    "sigmoid": ("T z", "T out", "out = T(1) / (T(1) + exp(-z))", "fastbp_sigmoid"),
    # out = σ'(z) = a ⊙ (1 − a)
    "sigmoid_prime": ("T a", "T out", "out = a * (T(1) - a)", "fastbp_sigmoid_prime"),
    # BP1/BP2 hadamard, in place: x ← x ⊙ a ⊙ (1 − a)
    "mul_sigmoid_prime": ("T a", "T x", "x = x * a * (T(1) - a)", "fastbp_mul_sigmoid_prime"),
    # the other neurons: a = tanh(z + b), relu(z + b), z + b (before the softmax kernel)
    "bias_tanh": ("T b", "T z", "z = tanh(z + b)", "fastbp_bias_tanh"),
    "bias_relu": ("T b", "T z", "z = fmax(z + b, T(0))", "fastbp_bias_relu"),
    "bias_add": ("T b", "T z", "z = z + b", "fastbp_bias_add"),
    # BP2's hadamard from a: tanh' = 1 − a², relu' = [a > 0]
    "mul_tanh_prime": ("T a", "T x", "x = x * (T(1) - a * a)", "fastbp_mul_tanh_prime"),
    "mul_relu_prime": ("T a", "T x", "x = x * T(a > T(0))", "fastbp_mul_relu_prime"),
    # BP2 under dropout: x ← x ⊙ F, F = f'(z) ⊙ D written by the dropout kernel
    "mul_factor": ("T f", "T x", "x = x * f", "fastbp_mul_factor"),
    # the SGD update where it is not folded into a GEMM: p ← β p − α g
    "sgd_update": ("T g, T alpha, T beta", "T p", "p = beta * p - alpha * g", "fastbp_sgd_update"),
    # compiled and run once when a backend is built: the compiler and its headers work
    "probe": ("T x", "T y", "y = x + T(1)", "fastbp_probe"),
}

_elementwise_cache: dict[tuple[int, str], Any] = {}


def elementwise(cp: Any, name: str) -> Any:
    """The ``cupy.ElementwiseKernel`` called ``name`` (built once per CuPy module)."""
    key = (id(cp), name)
    kernel = _elementwise_cache.get(key)
    if kernel is None:
        in_params, out_params, operation, kname = ELEMENTWISE[name]
        kernel = cp.ElementwiseKernel(in_params, out_params, operation, kname)
        _elementwise_cache[key] = kernel
    return kernel


# -- raw kernels ------------------------------------------------------------------------------
GEMM_FORWARD = 0  # C = σ(A B + v_i)                 feedforward, v = b^l (bias column)
GEMM_BP2 = 1      # C = (A B) ⊙ v ⊙ (1 − v)           BP2, A = (W^{l+1})ᵀ, v = a^l
GEMM_SGD = 2      # C = β C − α (A B)                 BP4 + SGD, A = δ^l, B = (a^{l-1})ᵀ;
#                   β = 0: C = −α (A B), C not read (as cuBLAS: a NaN there does not stay)
GEMM_FORWARD_TANH = 3  # C = tanh(A B + v_i)
GEMM_FORWARD_RELU = 4  # C = max(A B + v_i, 0)
GEMM_FORWARD_LINEAR = 5  # C = A B + v_i             (a softmax layer, before its kernel)
GEMM_BP2_TANH = 6      # C = (A B) ⊙ (1 − v²)
GEMM_BP2_RELU = 7      # C = (A B) ⊙ [v > 0]
GEMM_BP2_FACTOR = 8    # C = (A B) ⊙ v               BP2 under dropout, v = F = f'(z) ⊙ D
FORWARD_MODE = {"sigmoid": GEMM_FORWARD, "tanh": GEMM_FORWARD_TANH, "relu": GEMM_FORWARD_RELU,
                "softmax": GEMM_FORWARD_LINEAR}
BP2_MODE = {"sigmoid": GEMM_BP2, "tanh": GEMM_BP2_TANH, "relu": GEMM_BP2_RELU}
# the dropout kernels' code for f' from a: a(1 − a), 1 − a², [a > 0]
PRIME_KIND = {"sigmoid": 0, "tanh": 1, "relu": 2}

# ``layout`` bits of the tiled GEMM: which way its threads walk each operand's tile.
LOAD_A_ALONG_ROWS = 1  # threadIdx.x walks A's row index i (A's unit stride runs down a column)
LOAD_B_ALONG_ROWS = 2  # threadIdx.x walks B's row index p (B's unit stride runs down a column)

COST_QUADRATIC = 0
COST_CROSS_ENTROPY = 1
COST_LOG_LIKELIHOOD = 2
SOFTMAX_THREADS = 128    # threads per block of the softmax kernel (one column each)

TILE = 16           # the tiled GEMM's block is TILE × TILE threads
DOT_THREADS = 128   # threads per block of the warp-per-output GEMM (4 warps)
REDUCE_THREADS = 256
REDUCE_MAX_BLOCKS = 64   # blocks of the output-error kernel (its partial sums' buffer)
REDUCE_PER_THREAD = 4    # about this many outputs per thread before another block is added
BIAS_THREADS = 128       # threads per block of the bias update (one warp per row)
ELEMENT_THREADS = 256    # threads per block of the elementwise raw kernels (dropout, velocity)
ELEMENT_MAX_BLOCKS = 1024

RAW_SOURCE = r"""
// fastbp: raw kernels of the training step. `real` is float or double.
// A logical matrix M is (pointer, stride of a row step, stride of a column step) in elements:
// M[i, j] = M[i * s0 + j * s1]. Views (transposes, batches seen column-wise) are just strides.

__device__ __forceinline__ real fastbp_sigma(real z) { return real(1) / (real(1) + exp(-z)); }

__device__ __forceinline__ void fastbp_epilogue(
        real acc, long long i, long long j, real* C, long long c0, long long c1,
        const real* v, long long v0, long long v1, int mode, real alpha, real beta) {
    real* c = C + i * c0 + j * c1;
    if (mode == 0) {                       // forward: σ(acc + b_i)
        *c = fastbp_sigma(acc + v[i * v0 + j * v1]);
    } else if (mode == 1) {                // BP2: acc ⊙ a ⊙ (1 − a)
        real a = v[i * v0 + j * v1];
        *c = acc * a * (real(1) - a);
    } else if (mode == 2) {                // SGD: C ← β C − α acc; β = 0 never reads C
        *c = beta == real(0) ? -alpha * acc : beta * (*c) - alpha * acc;
    } else if (mode == 3) {                // forward: tanh(acc + b_i)
        *c = tanh(acc + v[i * v0 + j * v1]);
    } else if (mode == 4) {                // forward: max(acc + b_i, 0)
        const real z = acc + v[i * v0 + j * v1];
        *c = z > real(0) ? z : real(0);
    } else if (mode == 5) {                // forward: acc + b_i (softmax follows)
        *c = acc + v[i * v0 + j * v1];
    } else if (mode == 6) {                // BP2: acc ⊙ (1 − a²)
        const real a = v[i * v0 + j * v1];
        *c = acc * (real(1) - a * a);
    } else if (mode == 8) {                // BP2 under dropout: acc ⊙ F, F = f'(z) ⊙ D
        *c = acc * v[i * v0 + j * v1];
    } else {                               // BP2: acc ⊙ [a > 0]
        *c = v[i * v0 + j * v1] > real(0) ? acc : real(0);
    }
}

// C (M×N) = epilogue(A (M×K) · B (K×N)): TILE×TILE threads per block, one output each.
// Tile loads coalesce when consecutive threadIdx.x read consecutive addresses, so `layout` says,
// per operand, which index threadIdx.x walks while loading: bit 0 set, A's row index i (A's unit
// stride runs down its columns, e.g. Wᵀ); bit 1 set, B's row index p (e.g. a batch seen as
// x_rowsᵀ). Either way every element of the tile is loaded exactly once.
extern "C" __global__ void fastbp_gemm_tiled(
        const real* A, long long a0, long long a1, const real* B, long long b0, long long b1,
        real* C, long long c0, long long c1, int M, int N, int K,
        const real* v, long long v0, long long v1, int mode, real alpha, real beta, int layout) {
    __shared__ real As[TILE][TILE + 1];   // As[r][q] = A[row0 + r, p0 + q]
    __shared__ real Bs[TILE][TILE + 1];   // Bs[q][c] = B[p0 + q, col0 + c]
    const int tx = threadIdx.x, ty = threadIdx.y;
    const long long row0 = (long long)blockIdx.y * TILE, col0 = (long long)blockIdx.x * TILE;
    const long long i = row0 + ty, j = col0 + tx;
    const bool a_rows = (layout & 1) != 0, b_rows = (layout & 2) != 0;
    real acc = 0;
    for (int p0 = 0; p0 < K; p0 += TILE) {
        {   // A's tile: thread (ty, tx) loads As[r][q]
            const int r = a_rows ? tx : ty, q = a_rows ? ty : tx;
            const long long ai = row0 + r;
            const int ap = p0 + q;
            As[r][q] = (ai < M && ap < K) ? A[ai * a0 + ap * a1] : real(0);
        }
        {   // B's tile: thread (ty, tx) loads Bs[q][c]
            const int q = b_rows ? tx : ty, c = b_rows ? ty : tx;
            const int bp = p0 + q;
            const long long bj = col0 + c;
            Bs[q][c] = (bp < K && bj < N) ? B[bp * b0 + bj * b1] : real(0);
        }
        __syncthreads();
        #pragma unroll
        for (int q = 0; q < TILE; ++q) acc += As[ty][q] * Bs[q][tx];
        __syncthreads();
    }
    if (i < M && j < N) fastbp_epilogue(acc, i, j, C, c0, c1, v, v0, v1, mode, alpha, beta);
}

// The same product with one warp per output: for few outputs over a long K (the first layer's
// feedforward, 784 inputs), every lane strides along K and the warp sums with shuffles. Used
// only where both operands have unit stride along K (a1 == 1, b0 == 1), so lanes coalesce.
extern "C" __global__ void fastbp_gemm_dot(
        const real* A, long long a0, long long a1, const real* B, long long b0, long long b1,
        real* C, long long c0, long long c1, int M, int N, int K,
        const real* v, long long v0, long long v1, int mode, real alpha, real beta, int layout) {
    const long long warp = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (warp >= (long long)M * N) return;   // whole warps leave together
    const long long i = warp / N, j = warp % N;
    real acc = 0;
    for (long long p = lane; p < K; p += 32) acc += A[i * a0 + p * a1] * B[p * b0 + j * b1];
    #pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
    if (lane == 0) fastbp_epilogue(acc, i, j, C, c0, c1, v, v0, v1, mode, alpha, beta);
}

// The mini-batch of step *step: x_rows[r, :] = xs[order[*step * m + r], :], same for y.
extern "C" __global__ void fastbp_gather(
        const real* xs, const real* ys, const long long* order, const int* step, int m,
        int n_in, int n_out, real* x_rows, real* y_rows) {
    const long long base = (long long)(*step) * m;
    const long long total = (long long)m * (n_in + n_out);
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total;
         t += (long long)gridDim.x * blockDim.x) {
        if (t < (long long)m * n_in) {
            const long long r = t / n_in, c = t % n_in;
            x_rows[t] = xs[order[base + r] * n_in + c];
        } else {
            const long long u = t - (long long)m * n_in;
            const long long r = u / n_out, c = u % n_out;
            y_rows[u] = ys[order[base + r] * n_out + c];
        }
    }
}

// Sums part[0 .. blockDim.x) in shared memory as a fixed tree; the result is in part[0].
__device__ __forceinline__ void fastbp_block_sum(double* part) {
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if (threadIdx.x < k) part[threadIdx.x] += part[threadIdx.x + k];
        __syncthreads();
    }
}

// BP1 and the cost: δ^L = (a − y) ⊙ a(1 − a) and Σ ½(a − y)² (quadratic), or δ^L = a − y and
// Σ −ln max(1 − |a − y|, tiny) (cross-entropy, one-hot y). a, delta are (n_out, m) row-major;
// y_rows is (m, n_out). Each block sums its part as a tree and writes partial[blockIdx.x]; the
// last block to finish (a ticket in *done) adds the partial sums in block order to *cost and
// resets *done. The grid is fixed per program, so every replay sums in the same order.
extern "C" __global__ void fastbp_output_error(
        const real* a, const real* y_rows, real* delta, int n_out, int m, int cost_code, real tiny,
        double* partial, unsigned int* done, double* cost) {
    __shared__ double part[REDUCE_THREADS];
    __shared__ bool last;
    const long long total = (long long)n_out * m;
    double s = 0;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total;
         t += (long long)gridDim.x * blockDim.x) {
        const long long i = t / m, j = t % m;
        const real av = a[t];
        const real d = av - y_rows[j * n_out + i];
        if (cost_code == 0) {               // quadratic
            delta[t] = d * av * (real(1) - av);
            s += 0.5 * (double)d * (double)d;
        } else if (cost_code == 2) {        // log-likelihood of a softmax output: −y ln a
            delta[t] = d;
            const real yv = y_rows[j * n_out + i];
            if (yv != real(0)) s -= (double)yv * (double)log(av > tiny ? av : tiny);
        } else {
            delta[t] = d;
            real q = real(1) - fabs(d);
            q = q > tiny ? q : tiny;
            s -= (double)log(q);
        }
    }
    part[threadIdx.x] = s;
    fastbp_block_sum(part);
    if (threadIdx.x == 0) {
        partial[blockIdx.x] = part[0];
        __threadfence();                    // the partial is visible before the ticket is taken
        last = atomicAdd(done, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (last) {                             // uniform in the block
        double u = 0;
        for (int k = threadIdx.x; k < gridDim.x; k += blockDim.x) {
            u += ((volatile double*)partial)[k];
        }
        part[threadIdx.x] = u;
        fastbp_block_sum(part);
        if (threadIdx.x == 0) {
            *cost += part[0];
            *done = 0;                      // ready for the next launch
        }
    }
}

// Softmax down each column of z (n, m) row-major, one thread per column: z_ij ← e^{z_ij − max}
// / Σ_k e^{z_kj − max}, shifted by the column's largest entry so no exponent overflows.
extern "C" __global__ void fastbp_softmax_columns(real* z, int n, int m) {
    const long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= m) return;
    real top = z[j];
    for (int i = 1; i < n; ++i) top = fmax(top, z[(long long)i * m + j]);
    real s = 0;
    for (int i = 0; i < n; ++i) {
        const real e = exp(z[(long long)i * m + j] - top);
        z[(long long)i * m + j] = e;
        s += e;
    }
    const real inv = real(1) / s;
    for (int i = 0; i < n; ++i) z[(long long)i * m + j] *= inv;
}

// Σ_j δ_ij of row i = `row` of δ (n, m) row-major, summed by one warp: the lanes read
// consecutive δ_ij and the warp adds them with shuffles, in a fixed order.
__device__ __forceinline__ real fastbp_warp_row_sum(const real* delta, long long row, int m,
                                                    int lane) {
    real s = 0;
    for (int j = lane; j < m; j += 32) s += delta[row * m + j];
    #pragma unroll
    for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(0xffffffffu, s, off);
    return s;                               // lane 0 holds Σ_j δ_row,j
}

// BP3 + SGD for the biases: b_i ← b_i − α Σ_j δ_ij, one warp per row i (δ is (n, m) row-major):
// the lanes read consecutive δ_ij and the warp sums with shuffles, in a fixed order. With
// advance != 0, thread 0 of block 0 also moves the step counter on; the gather, the only kernel
// that reads it, ran earlier in the step.
extern "C" __global__ void fastbp_bias_update(
        real* b, const real* delta, int n, int m, real alpha, int* step, int advance) {
    if (advance && blockIdx.x == 0 && threadIdx.x == 0) *step += 1;
    const long long row = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (row >= n) return;                   // whole warps leave together
    const real s = fastbp_warp_row_sum(delta, row, m, lane);
    if (lane == 0) b[row] -= alpha * s;
}

"""

RAW_SOURCE += TECHNIQUES_SOURCE  # chapter 3: dropout and momentum

RAW_KERNELS = ("fastbp_gemm_tiled", "fastbp_gemm_dot", "fastbp_gather", "fastbp_output_error",
               "fastbp_bias_update", "fastbp_softmax_columns", "fastbp_dropout_key",
               "fastbp_dropout_step", "fastbp_velocity_apply", "fastbp_bias_velocity")


def raw_source(real: str) -> str:
    """The raw kernels' source for ``real`` = ``float`` or ``double``."""
    if real not in ("float", "double"):
        raise ValueError(f"the raw kernels run in float or double, not {real}")
    return (f"typedef {real} real;\n#define TILE {TILE}\n#define REDUCE_THREADS {REDUCE_THREADS}\n"
            + RAW_SOURCE)


# A timing helper, not part of training: one thread that holds its stream for ``ns``
# nanoseconds (the GPU's global timer), so work issued behind it queues up and then runs back to
# back, timed by CUDA events without the host's launch cost (benchmarks/speed_cuda.py).
SPIN_SOURCE = r"""
extern "C" __global__ void fastbp_spin(long long ns) {
    unsigned long long t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    } while ((long long)(t - t0) < ns);
}
"""


def spin_kernel(cp: Any) -> Any:
    """``fastbp_spin`` as a ``cupy.RawKernel`` (launch it ``(1,), (1,), (np.int64(ns),)``)."""
    return cp.RawKernel(SPIN_SOURCE, "fastbp_spin")


_module_cache: dict[tuple[int, str], Any] = {}


def raw_module(cp: Any, real: str) -> Any:
    """The compiled ``cupy.RawModule`` for ``real`` (compiled once per CuPy module)."""
    key = (id(cp), real)
    module = _module_cache.get(key)
    if module is None:
        module = cp.RawModule(code=raw_source(real), options=("-std=c++17",))
        _module_cache[key] = module
    return module


_function_cache: dict[tuple[int, str, int], dict[str, Any]] = {}


def raw_functions(cp: Any, real: str, device: int = 0) -> dict[str, Any]:
    """Every raw kernel of :data:`RAW_KERNELS` compiled and loaded on GPU ``device`` (the current
    one); loading happens here, never during a capture."""
    key = (id(cp), real, int(device))
    functions = _function_cache.get(key)
    if functions is None:
        module = raw_module(cp, real)
        functions = {name: module.get_function(name) for name in RAW_KERNELS}
        _function_cache[key] = functions
    return functions
