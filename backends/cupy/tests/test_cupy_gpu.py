"""The ``cuda`` device on a real GPU: CuPy against a float64 reference, graphs against eager.

Run with ``pytest -m gpu`` on a machine with an NVIDIA GPU and ``fastbp-cupy``. Without CuPy or
a GPU every test here is skipped, with the reason. ``benchmarks/gpu/check.sh --dry-run`` runs
them on the NumPy stand-in for CuPy, which checks the tests themselves, not the GPU.

How float32 results are judged: every float32 run is compared with a float64 run of the same
network from the same (float32-rounded) parameters, data and sample order, by the relative norm
``‖got − ref‖ / ‖ref‖`` over all parameters. The tolerance is derived from float32 rounding as
it shows on this very problem: the CPU's own float32 run is measured against the same float64
reference, and the GPU may be at most :data:`F32_FACTOR` times further off, never held below
:data:`F32_FLOOR` float32 ulps (two correct float32 implementations differ by 1–5e-6 after an
epoch; a wrong index or a missing term is off by 1e-3 or more). Float64 runs are held to 1e-10.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastbp


def _probe() -> tuple[object | None, int, str]:
    """CuPy and the number of GPUs, or why the GPU tests cannot run here."""
    try:
        import fastbp_cupy  # noqa: F401
    except ImportError:
        return None, 0, 'the fastbp-cupy plugin is not installed: pip install -e "./backends/cupy"'
    try:
        import cupy
    except ImportError:
        return None, 0, 'CuPy is not installed: pip install -e "./backends/cupy[cuda12]"'
    try:
        return cupy, int(cupy.cuda.runtime.getDeviceCount()), ""
    except Exception as exc:  # noqa: BLE001 - CUDARuntimeError where there is no driver or GPU
        return None, 0, f"no usable GPU: {exc}"


cp, N_GPUS, WHY_NOT = _probe()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(cp is None, reason=WHY_NOT)]
STAND_IN = cp is not None and str(getattr(cp, "__version__", "")).endswith("fake")

if cp is not None:
    from fastbp_cupy import CuPyBackend

EPS = {d: float(np.finfo(d).eps) for d in ("float16", "float32", "float64")}
F32_FACTOR = 10.0
F32_FLOOR = 100  # ulps
F64_TOL = 1e-10


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for var in ("FASTBP_DEVICE", "FASTBP_CUDA_GRAPHS"):
        monkeypatch.delenv(var, raising=False)


def samples(n):
    """``n`` samples on a GPU; fewer on the stand-in, whose kernels run in Python."""
    return max(130, n // 5) if STAND_IN else n


def data(sizes, n, seed=0, binary=False):
    """``X`` in [0, 1) and integer labels; with ``binary`` (``n_out`` = 1), 0/1 targets
    ``(1, n)`` instead (one-hot of a single output is all ones)."""
    rng = np.random.default_rng(seed)
    X = rng.random((sizes[0], n))
    if binary:
        return X, rng.integers(0, 2, (1, n)).astype(np.float64)
    return X, rng.integers(0, sizes[-1], n)


def params(net):
    return [np.asarray(p, dtype=np.float64) for p in list(net.weights) + list(net.biases)]


def rel(got, ref):
    """``‖got − ref‖ / ‖ref‖`` over lists of arrays (or two arrays, or two numbers)."""
    if not isinstance(got, (list, tuple)):
        got, ref = [got], [ref]
    g = np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in got])
    r = np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in ref])
    return float(np.linalg.norm(g - r) / max(np.linalg.norm(r), 1e-300))


def twin(net, dtype, device="cpu"):
    """A copy of ``net`` (its parameters' values, its cost, its random state) in ``dtype`` on
    ``device``: trained alike, it sees the same mini-batches."""
    other = fastbp.Network(net.sizes, dtype=dtype, seed=0, device=device, cost=net.cost)
    other.weights = [np.asarray(w, np.float64) for w in net.weights]
    other.biases = [np.asarray(b, np.float64) for b in net.biases]
    other.rng.bit_generator.state = net.rng.bit_generator.state
    return other


def tolerance(dtype, err_cpu):
    """What a ``dtype`` run on the GPU may differ from float64 (see the module docstring)."""
    if dtype == "float64":
        return F64_TOL
    return max(F32_FACTOR * err_cpu, F32_FLOOR * EPS[dtype])


def against_float64(net, X, Y, **train):
    """Train ``net`` (on the GPU), its float64 twin and its same-dtype CPU twin alike; checks
    the epochs' costs and returns ``(error of net's parameters, its tolerance, histories)``,
    errors relative to the float64 twin."""
    ref = twin(net, "float64")
    cpu = twin(net, net.dtype)
    Xr = np.asarray(X, dtype=net.dtype).astype(np.float64)  # the inputs every run sees
    hg = net.train(Xr, Y, **train)
    hr = ref.train(Xr, Y, **train)
    hc = cpu.train(Xr, Y, **train)
    tol = tolerance(net.dtype, rel(params(cpu), params(ref)))
    cost_tol = tolerance(net.dtype, rel([r.cost for r in hc], [r.cost for r in hr]))
    cost_err = rel([r.cost for r in hg], [r.cost for r in hr])
    assert cost_err <= cost_tol, f"cost off by {cost_err:.3g} (tolerance {cost_tol:.3g})"
    return rel(params(net), params(ref)), tol, (hg, hr, hc)


def backend(dtype="float32", graphs=True, **attrs):
    be = CuPyBackend(dtype=dtype, graphs=graphs)
    for k, v in attrs.items():
        setattr(be, k, v)
    return be


# -- the matrix form against float64 ---------------------------------------------------------
@pytest.mark.parametrize("sizes", [[784, 30, 10], [20, 15, 10, 5], [20, 1], [784, 10]])
@pytest.mark.parametrize("cost", ["quadratic", "cross-entropy"])
def test_feedforward_and_backprop_agree_with_float64(sizes, cost):
    X, labels = data(sizes, 37)
    Y = np.ones((1, 37)) if sizes[-1] == 1 else np.eye(sizes[-1])[:, labels]
    gpu = fastbp.Network(sizes, seed=1, device="cuda", cost=cost)
    ref, cpu = twin(gpu, "float64"), twin(gpu, "float32")
    X = X.astype(np.float32).astype(np.float64)
    assert isinstance(gpu._weights[0], cp.ndarray)
    tol = tolerance("float32", rel(cpu.feedforward(X), ref.feedforward(X)))
    assert rel(gpu.feedforward(X), ref.feedforward(X)) <= tol
    g, r, c = gpu.backprop(X, Y), ref.backprop(X, Y), cpu.backprop(X, Y)
    tol = tolerance("float32", rel(sum(c, []), sum(r, [])))
    assert all(type(a) is np.ndarray for a in sum(g, []))
    assert rel(sum(g, []), sum(r, [])) <= tol


# -- one epoch of float32 training against float64: the shapes that are easy to get wrong ----
CASES = [  # sizes, batch, samples, the path with graphs on
    ([784, 30, 10], 10, 2003, "graph"),
    ([784, 30, 10], 1, 301, "graph"),       # batch 1
    ([784, 30, 10], 128, 2003, "graph"),    # the largest captured batch
    ([784, 30, 10], 129, 2003, "eager"),    # the smallest eager one
    ([784, 10], 10, 1003, "graph"),         # one layer
    ([30, 20, 1], 7, 503, "graph"),         # one output
    ([784, 100, 10], 100, 2003, "graph"),
]


@pytest.mark.parametrize("graphs", [True, False])
@pytest.mark.parametrize("cost", ["quadratic", "cross-entropy"])
@pytest.mark.parametrize("sizes,m,n,path", CASES)
def test_one_epoch_float32_against_float64(graphs, cost, sizes, m, n, path):
    X, Y = data(sizes, samples(n), binary=sizes[-1] == 1)
    # scaled initial weights: no output saturates, where the clipped cross-entropy of float32
    # and float64 differ by design
    net = fastbp.Network(sizes, seed=2, device=backend(graphs=graphs), cost=cost, init="scaled")
    err, tol, _ = against_float64(net, X, Y, epochs=1, batch_size=m, eta=0.5)
    be = net.backend
    assert be.last_epoch_path == (path if graphs else "eager")
    assert be.graph_error is None and be.raw_error is None
    assert err <= tol, f"parameters off by {err:.3g} (tolerance {tol:.3g})"


@pytest.mark.parametrize("graphs", [True, False])
@pytest.mark.parametrize("cost", ["quadratic", "cross-entropy"])
@pytest.mark.parametrize("sizes,m", [([784, 30, 10], 10), ([50, 40, 30, 20, 10], 7),
                                     ([784, 100, 10], 100), ([30, 1], 1), ([784, 30, 10], 129)])
def test_epochs_equal_numpy_in_float64(graphs, cost, sizes, m):
    """The raw kernels (cross-entropy through the graph too) and the eager step in float64,
    with L2 decay and a last partial batch, held to the cpu device."""
    X, Y = data(sizes, samples(503), binary=sizes[-1] == 1)
    gpu = fastbp.Network(sizes, dtype="float64", seed=3, device=backend("float64", graphs),
                         cost=cost)
    cpu = twin(gpu, "float64")
    hg = gpu.train(X, Y, epochs=2, batch_size=m, eta=0.3, lmbda=0.5)
    hc = cpu.train(X, Y, epochs=2, batch_size=m, eta=0.3, lmbda=0.5)
    assert gpu.backend.last_epoch_path == ("graph" if graphs and m <= 128 else "eager")
    assert rel(params(gpu), params(cpu)) <= F64_TOL
    assert rel([r.cost for r in hg], [r.cost for r in hc]) <= F64_TOL


# -- chapter 3: momentum, L1 and dropout on the device's own kernels ---------------------------
TECHNIQUES = {"momentum": {"momentum": 0.9}, "l1": {"l1": 2.0}, "dropout": {"dropout": 0.5},
              "all": {"momentum": 0.6, "l1": 1.0, "dropout": 0.3}}


@pytest.mark.parametrize("graphs", [True, False])
@pytest.mark.parametrize("name", list(TECHNIQUES))
@pytest.mark.parametrize("sizes,m", [([784, 30, 10], 10), ([50, 40, 30, 10], 7),
                                     ([784, 100, 10], 129)])
def test_techniques_equal_numpy_in_float64(graphs, name, sizes, m):
    """Momentum, L1 and dropout through the graph (the masks drawn inside it from the seed in
    device memory) and the eager step, with L2 and a last partial batch, held to the cpu; the
    velocities too."""
    X, Y = data(sizes, samples(503))
    gpu = fastbp.Network(sizes, dtype="float64", seed=3, device=backend("float64", graphs),
                         cost="cross-entropy")
    cpu = twin(gpu, "float64")
    train = dict(epochs=2, batch_size=m, eta=0.3, lmbda=0.5, **TECHNIQUES[name])
    hg = gpu.train(X, Y, **train)
    hc = cpu.train(X, Y, **train)
    assert gpu.backend.last_epoch_path == ("graph" if graphs and m <= 128 else "eager")
    assert gpu.backend.graph_error is None and gpu.backend.raw_error is None
    assert rel(params(gpu), params(cpu)) <= F64_TOL
    if cpu.velocities is not None:
        assert rel(list(gpu.velocities), list(cpu.velocities)) <= F64_TOL
    assert rel([r.cost for r in hg], [r.cost for r in hc]) <= F64_TOL


@pytest.mark.parametrize("graphs", [True, False])
def test_momentum_and_dropout_in_float32_against_float64(graphs):
    sizes = [784, 30, 10]
    X, labels = data(sizes, samples(1003))
    net = fastbp.Network(sizes, seed=8, device=backend(graphs=graphs), init="scaled")
    err, tol, _ = against_float64(net, X, labels, epochs=1, batch_size=10, eta=0.5,
                                  momentum=0.9, dropout=0.5)
    assert net.backend.last_epoch_path == ("graph" if graphs else "eager")
    assert err <= tol, f"parameters off by {err:.3g} (tolerance {tol:.3g})"


@pytest.mark.parametrize("graphs", [True, False])
def test_techniques_with_poisoned_buffers_are_bit_equal(graphs):
    """Two runs with momentum, L1 and dropout, the second with every work buffer NaN at first:
    bit for bit the same (no kernel reads what none wrote; the graph replays deterministically)."""
    sizes = [784, 30, 20, 10]
    X, labels = data(sizes, samples(507))
    runs = []
    for poisoned in (False, True):
        net = fastbp.Network(sizes, seed=9,
                             device=backend(graphs=graphs, poison_buffers=poisoned))
        h = net.train(X, labels, epochs=2, batch_size=10, eta=0.5, momentum=0.6, l1=0.5,
                      dropout=0.3)
        assert net.backend.last_epoch_path == ("graph" if graphs else "eager")
        runs.append((params(net) + [np.asarray(v) for v in net.velocities],
                     [r.cost for r in h]))
    assert all(np.isfinite(runs[1][1]))
    for a, b in zip(runs[0][0], runs[1][0]):
        np.testing.assert_array_equal(a, b)
    assert runs[0][1] == runs[1][1]


def test_graph_and_eager_are_each_within_float32_rounding():
    sizes = [784, 30, 10]
    X, labels = data(sizes, samples(1000))
    runs = {}
    for graphs in (True, False):
        net = fastbp.Network(sizes, seed=4, device=backend(graphs=graphs), init="scaled")
        err, tol, _ = against_float64(net, X, labels, epochs=1, batch_size=10, eta=3.0,
                                         shuffle=False)
        assert err <= tol, (graphs, err, tol)
        runs[graphs] = (net, tol)
    assert runs[True][0].backend.last_epoch_path == "graph"
    assert runs[False][0].backend.last_epoch_path == "eager"
    assert rel(params(runs[True][0]), params(runs[False][0])) <= 2 * runs[True][1]
