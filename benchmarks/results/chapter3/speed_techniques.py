"""Samples/s of plain SGD, momentum and momentum + dropout on MNIST, epochs alternating."""
import fastbp
from fastbp.data.mnist import load_mnist
from fastbp.devices.cpu.backend import cpu_model

d = load_mnist()
X, y = d.train.X, d.train.labels
print(cpu_model())
SETS = {"plain": {}, "momentum 0.9": {"momentum": 0.9},
        "momentum 0.9 + dropout 0.5": {"momentum": 0.9, "dropout": 0.5}}
for device in ("cpu-jit", "cpu"):
    for batch in (10, 100):
        nets = {name: fastbp.Network([784, 100, 10], activation="relu", cost="log-likelihood",
                                     device=device, seed=1) for name in SETS}
        best = {name: 0.0 for name in SETS}
        for r in range(3):
            for name, net in nets.items():
                h = net.train(X, y, epochs=1, batch_size=batch, eta=0.01, **SETS[name])
                best[name] = max(best[name], h[-1].samples_per_s)
                print(f"{device} batch {batch} round {r + 1} {name}: {h[-1].samples_per_s:,.0f}",
                      flush=True)
        for name in SETS:
            print(f"BEST {device} batch {batch} {name}: {best[name]:,.0f} "
                  f"({best[name] / best['plain']:.2f}x plain)", flush=True)
