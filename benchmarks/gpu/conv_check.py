"""Chapter 6's conv net on the ``cuda`` device: correctness against the ``cpu`` device in float64
and training speed in float32.

The book's ``ConvPool 20×5×5 /2 → ConvPool 40×5×5 /2 → FC 100 → softmax 10`` ReLU network
(``fastbp.network3``) is built from the same seed on both devices; one epoch of the book's SGD on
the same data must end at the same parameters (relative norm ≤ 1e-10 in float64). Then float32
epochs are timed on the GPU at mini-batches 10 and 100 (samples/s, after a warm-up epoch, with a
device synchronize before the clock stops). ``--out`` writes the figures as JSON::

    python benchmarks/gpu/conv_check.py --out conv.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

F64_TOL = 1e-10


def book_net(m: int, device: str, dtype: str) -> object:
    from fastbp.network3 import ConvPoolLayer, FullyConnectedLayer, Network, ReLU, SoftmaxLayer

    np.random.seed(1)  # network3 draws its initial parameters from NumPy's global generator
    return Network([
        ConvPoolLayer(image_shape=(m, 1, 28, 28), filter_shape=(20, 1, 5, 5), poolsize=(2, 2),
                      activation_fn=ReLU),
        ConvPoolLayer(image_shape=(m, 20, 12, 12), filter_shape=(40, 20, 5, 5), poolsize=(2, 2),
                      activation_fn=ReLU),
        FullyConnectedLayer(n_in=40 * 4 * 4, n_out=100, activation_fn=ReLU),
        SoftmaxLayer(n_in=100, n_out=10)], m, device=device, dtype=dtype)


def data(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 784)).astype(np.float32), rng.integers(0, 10, n)


def host(net: object) -> np.ndarray:
    be = net.backend  # type: ignore[attr-defined]
    return np.concatenate([np.ravel(be.to_numpy(a)) for pair in net.params  # type: ignore
                           for a in pair])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=2000, help="samples of a timed epoch")
    p.add_argument("--check-samples", type=int, default=60, help="samples of the float64 check")
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    out: dict = {"device": args.device}
    x, y = data(args.check_samples)
    ends = []
    for device in ("cpu", args.device):
        net = book_net(10, device, "float64")
        net.sgd_epoch(net.on_device((x, y)), eta=0.03, lmbda=0.1)  # type: ignore[attr-defined]
        ends.append(host(net))
    rel = float(np.linalg.norm(ends[1] - ends[0]) / np.linalg.norm(ends[0]))
    out["float64_relative_difference"] = rel
    print(f"float64 one epoch, {args.device} against cpu: relative difference {rel:.3g} "
          f"(at most {F64_TOL:g})", flush=True)
    x, y = data(args.samples)
    for m in (10, 100):
        net = book_net(m, args.device, "float32")
        train = net.on_device((x, y))  # type: ignore[attr-defined]
        net.sgd_epoch(train, eta=0.03)  # type: ignore[attr-defined]  # warm-up: kernels built
        net.backend.synchronize()  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        net.sgd_epoch(train, eta=0.03)  # type: ignore[attr-defined]
        net.backend.synchronize()  # type: ignore[attr-defined]
        rate = train.batches * m / (time.perf_counter() - t0)
        out[f"samples_per_s_m{m}"] = rate
        print(f"float32 mini-batch {m}: {rate:,.0f} training samples/s", flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
    return 0 if rel <= F64_TOL else 1


if __name__ == "__main__":
    sys.exit(main())
