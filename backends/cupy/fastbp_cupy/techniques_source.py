"""The CUDA source of chapter 3's raw kernels (:mod:`fastbp_cupy.kernels` appends it to the
training step's): the dropout masks (``fastbp_dropout_key``, ``fastbp_dropout_step``), the
weights' momentum step (``fastbp_velocity_apply``) and the biases' (``fastbp_bias_velocity``).
It uses ``real``, ``fastbp_warp_row_sum`` and ``fastbp_bias_update``'s conventions from there.
"""

TECHNIQUES_SOURCE = r"""
// -- chapter 3: dropout and momentum ------------------------------------------------------------
// lowbias32, the integer hash of fastbp.core.dropout (unsigned 32-bit, products wrap mod 2^32).
__device__ __forceinline__ unsigned int fastbp_mix(unsigned int x) {
    x ^= x >> 16;
    x *= 0x7FEB352Du;
    x ^= x >> 15;
    x *= 0x846CA68Bu;
    x ^= x >> 16;
    return x;
}

// The mask key of layer `layer` in mini-batch `step`: mix(seed ^ mix(step * 2^8 + layer)).
__device__ __forceinline__ unsigned int fastbp_step_key(unsigned int seed, unsigned int step,
                                                        unsigned int layer) {
    return fastbp_mix(seed ^ fastbp_mix((step << 8) + layer));
}

// One hidden layer's dropout, a and the outputs (n, m) row-major, entry t = j * m + c: neuron j
// of sample c is kept when mix(key + t) >= threshold, D = scale (1/(1 − p)) if kept, else 0.
// Writes dropped = a ⊙ D (what the next layer and BP4 read) and factor = f'(z) ⊙ D with f' from
// the unmasked a (neuron 0: a(1 − a), 1: 1 − a², 2: [a > 0]; PRIME_KIND), BP2's hadamard.
__device__ __forceinline__ void fastbp_dropout_body(
        unsigned int key, const real* a, real* factor, real* dropped, long long total, int neuron,
        unsigned int threshold, real scale) {
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total;
         t += (long long)gridDim.x * blockDim.x) {
        const unsigned int h = fastbp_mix(key + (unsigned int)t);
        const real d = h >= threshold ? scale : real(0);
        const real av = a[t];
        real fp;
        if (neuron == 0) fp = av * (real(1) - av);
        else if (neuron == 1) fp = real(1) - av * av;
        else fp = av > real(0) ? real(1) : real(0);
        dropped[t] = av * d;
        factor[t] = fp * d;
    }
}

// The eager step's dropout: the key computed on the host.
extern "C" __global__ void fastbp_dropout_key(
        const real* a, real* factor, real* dropped, int n, int m, unsigned int key, int neuron,
        unsigned int threshold, real scale) {
    fastbp_dropout_body(key, a, factor, dropped, (long long)n * m, neuron, threshold, scale);
}

// The captured step's dropout: the key from device memory, seed[0] the epoch's mask seed and
// seed[1] the number of the epoch's mini-batch where the replays start (written before them),
// *step the step counter the graph moves on; the mini-batch is seed[1] + *step.
extern "C" __global__ void fastbp_dropout_step(
        const real* a, real* factor, real* dropped, int n, int m, const unsigned int* seed,
        const int* step, int layer, int neuron, unsigned int threshold, real scale) {
    const unsigned int key = fastbp_step_key(seed[0], seed[1] + (unsigned int)(*step),
                                             (unsigned int)layer);
    fastbp_dropout_body(key, a, factor, dropped, (long long)n * m, neuron, threshold, scale);
}

// The momentum step after the GEMM v ← μ v − α δ aᵀ: v ← v − l2 p − l1 sgn(p), then p ← p + v
// (p and v contiguous, `size` entries; l2 = ηλ/n, l1 = ηλ₁/n).
extern "C" __global__ void fastbp_velocity_apply(real* p, real* v, long long size, real l2,
                                                 real l1) {
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < size;
         t += (long long)gridDim.x * blockDim.x) {
        const real pv = p[t];
        const real sg = pv > real(0) ? real(1) : (pv < real(0) ? real(-1) : real(0));
        const real vv = v[t] - l2 * pv - l1 * sg;
        v[t] = vv;
        p[t] = pv + vv;
    }
}

// BP3 with momentum for the biases: v_i ← μ v_i − α Σ_j δ_ij, b_i ← b_i + v_i; one warp per
// row as fastbp_bias_update, which it replaces (the step counter likewise).
extern "C" __global__ void fastbp_bias_velocity(
        real* b, real* vb, const real* delta, int n, int m, real alpha, real mu, int* step,
        int advance) {
    if (advance && blockIdx.x == 0 && threadIdx.x == 0) *step += 1;
    const long long row = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (row >= n) return;                   // whole warps leave together
    const real s = fastbp_warp_row_sum(delta, row, m, lane);
    if (lane == 0) {
        const real v = mu * vb[row] - alpha * s;
        vb[row] = v;
        b[row] += v;
    }
}
"""
