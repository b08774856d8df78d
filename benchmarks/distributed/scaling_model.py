"""The scaling estimate of SCALING.md: step time = compute + ring Allreduce, no overlap.

Ring Allreduce of ``S`` bytes over ``p`` ranks: ``2(p−1)/p · S / B + 2(p−1) · α`` (reduce-scatter
then all-gather, ``p−1`` steps each; ``B`` the bandwidth of one rank's link, ``α`` the latency
of one step). fastbp reduces once per step, after the backward pass, so a step takes
``t_compute(b) + t_allreduce(p) + t_update + t_overhead`` and ``p`` ranks of ``b`` samples
each train ``p·b / step`` samples/s.

Run: ``python benchmarks/distributed/scaling_model.py [results.jsonl]`` (with the file, the
measured rows of this machine are printed first).
"""

from __future__ import annotations

import json
import sys

SIZES = [784, 4096, 4096, 10]

# Assumptions (estimates, not measurements): see SCALING.md for where each comes from.
GPU_FLOPS = 25e12        # FP32 SGEMM rate one H100 keeps up on these shapes (peak 67e12)
HBM_BYTES_S = 2.5e12     # H100 memory bandwidth reached by the update (peak ~3.35e12)
STEP_OVERHEAD_S = 0.2e-3  # Python and ~40 kernel launches per step, per GPU
LINKS = {
    "8 GPUs, NVLink (one node)": dict(p=8, bandwidth=350e9, latency=5e-6),
    "64 nodes, InfiniBand HDR 200 Gb/s": dict(p=64, bandwidth=22e9, latency=5e-6),
    "64 nodes, InfiniBand NDR 400 Gb/s": dict(p=64, bandwidth=45e9, latency=5e-6),
}
PER_RANK_BATCH = (64, 256, 1024)


def parameters(sizes: list[int]) -> tuple[int, int]:
    """(weights, biases)."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    return sum(k * n for k, n in pairs), sum(n for _, n in pairs)


def flops_per_sample(sizes: list[int]) -> int:
    """Feedforward ``2·W`` + BP4 ``2·W`` + BP2 ``2·W`` for every layer but the first."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    w = sum(k * n for k, n in pairs)
    return 2 * w + 2 * w + 2 * sum(k * n for k, n in pairs[1:])


def ring_allreduce_s(nbytes: float, p: int, bandwidth: float, latency: float) -> float:
    return 2 * (p - 1) / p * nbytes / bandwidth + 2 * (p - 1) * latency


def main(argv: list[str]) -> None:
    w, b = parameters(SIZES)
    grad_bytes = (w + b + 1) * 4  # float32, with the cost slot
    fps = flops_per_sample(SIZES)
    update_s = 3 * grad_bytes / HBM_BYTES_S + STEP_OVERHEAD_S  # read W, ΣdC/dW; write W
    print(f"{SIZES}: {w:,} weights + {b:,} biases; gradient buffer {grad_bytes:,} B "
          f"({grad_bytes / 1e6:.2f} MB, float32); {fps / 1e6:.2f} MFLOP per sample; "
          f"update and per-step overhead {update_s * 1e3:.3f} ms\n")
    if len(argv) > 1:
        rows = [json.loads(line) for line in open(argv[1])]
        for r in rows:
            if r["kind"] == "train" and r["sizes"] == SIZES:
                print(f"measured here, {r['label']}: {r['samples_per_s']:,.1f} samples/s, "
                      f"step {r['step_s'] * 1e3:,.1f} ms, Allreduce alone "
                      f"{r['allreduce_s'] * 1e3:,.1f} ms, comm share {100 * r['comm_share']:.0f} %")
        print()
    print("| link | p | ring Allreduce (ms) | b per rank | compute (ms) | step (ms) | "
          "samples/s | speed-up vs 1 GPU | efficiency |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, link in LINKS.items():
        p = link["p"]
        t_ar = ring_allreduce_s(grad_bytes, p, link["bandwidth"], link["latency"])
        for per in PER_RANK_BATCH:
            t_c = per * fps / GPU_FLOPS
            one = per / (t_c + update_s)
            step = t_c + t_ar + update_s
            rate = p * per / step
            print(f"| {name} | {p} | {t_ar * 1e3:.2f} | {per} | {t_c * 1e3:.2f} | "
                  f"{step * 1e3:.2f} | {rate:,.0f} | {rate / one:.1f}x | "
                  f"{rate / one / p:.0%} |")


if __name__ == "__main__":
    main(sys.argv)
