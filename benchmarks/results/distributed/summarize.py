"""results.jsonl (from bench_distributed.py) as the Markdown tables of results.md."""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    rows = [json.loads(line) for line in open(path)]
    train = [r for r in rows if r["kind"] == "train"]
    labels = list(dict.fromkeys(r["label"] for r in train))
    print("# Data-parallel training: samples/s and the Allreduce's share of a step\n")
    print(f"Machine: {train[0]['machine']}, {train[0]['dtype']}, data: {train[0]['data']}; "
          "1-minute load average at each run's start: "
          + ", ".join(f"{r['label']}: {r['load_avg_1min']:.1f}"
                      for r in {x['label']: x for x in train}.values()) + ".\n")
    print("samples/s: best of 2 epochs of 10,000 images after a warm-up epoch ([784,4096,4096,10]: "
          "one epoch of 384 images, 6 steps, after a warm-up epoch). comm share: "
          "time a rank spends in the gradient Allreduce / time of the SGD steps (it includes "
          "waiting for the slower rank). allreduce: the Allreduce of the gradient alone, after "
          "a Barrier (median).\n")
    head = "| net | batch | gradient |" + "".join(f" {lab} |" for lab in labels)
    head += " 2 ranks: comm share | 2 ranks: allreduce | speed-up 2 ranks vs 1 rank x 2 threads |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    keys = list(dict.fromkeys((tuple(r["sizes"]), r["batch_size"]) for r in train))
    for sizes, batch in keys:
        by = {r["label"]: r for r in train
              if (tuple(r["sizes"]), r["batch_size"]) == (sizes, batch)}
        any_r = next(iter(by.values()))
        cells = [f"{by[lab]['samples_per_s']:,.0f}" if lab in by else "" for lab in labels]
        two = next((r for r in by.values() if r["ranks"] == 2), None)
        one = next((r for r in by.values() if r["ranks"] == 1 and r["blas_threads"] == "2"), None)
        extra = ["", "", ""]
        if two:
            extra[0] = f"{100 * two['comm_share']:.0f} %"
            extra[1] = f"{1e6 * two['allreduce_s']:,.0f} µs"
            if one:
                extra[2] = f"{two['samples_per_s'] / one['samples_per_s']:.2f}x"
        net = "[" + ",".join(map(str, sizes)) + "]"
        grad = f"{any_r['gradient_bytes'] / 1e6:.2f} MB"
        print(f"| {net} | {batch} | {grad} | " + " | ".join(cells + extra) + " |")
    sweep = [r for r in rows if r["kind"] == "allreduce"]
    if sweep:
        print("\n## Allreduce on this machine (2 ranks, shared memory)\n")
        print("| bytes | seconds | GB/s (bytes / time) |")
        print("|---|---|---|")
        for r in sweep:
            print(f"| {r['bytes']:,} | {r['allreduce_s'] * 1e6:,.1f} µs | "
                  f"{r['bytes'] / r['allreduce_s'] / 1e9:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results.jsonl")
