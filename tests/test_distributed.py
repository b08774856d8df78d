"""Data-parallel training over MPI: one rank is bit for bit ``Network.train``; ``mpiexec -n 2``
and ``-n 3`` (uneven shares) reach the parameters of one process with the same seed to rounding;
a device's own reducer is used when it offers one; a rank that raises or dies ends the job."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fastbp import Network
from fastbp.distributed import FlatGradients, reduction_path, shard

HERE = Path(__file__).resolve().parent
WORKER = HERE / "mpi_worker.py"
sys.path.insert(0, str(HERE))
from conftest import mnist_dir  # noqa: E402
from mpi_worker import data  # noqa: E402


def find_mpiexec() -> str | None:
    """The ``mpiexec`` beside this Python (the mpich wheel puts it there), else on PATH."""
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else shutil.which("mpiexec")


MPIEXEC = find_mpiexec()
HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None
needs_mpi = pytest.mark.skipif(
    not (HAVE_MPI4PY and MPIEXEC),
    reason="needs mpi4py and mpiexec: pip install -e \".[mpi]\"",
)


@functools.lru_cache(maxsize=1)
def launcher_flags() -> list[str]:
    """Flags that make a single-machine launch work in a container, by MPI implementation."""
    try:
        version = subprocess.run([MPIEXEC, "--version"], capture_output=True, text=True,
                                 timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        version = ""
    if "HYDRA" in version:  # MPICH: start the ranks here by fork, never over ssh
        return ["-launcher", "fork"]
    if "Open MPI" in version or "OpenRTE" in version:  # more ranks than cores, CI runs as root
        return ["--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    return []


def mpirun(n: int, args: list[str], *, fault: str | None = None, reduction: str | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess:
    """``mpiexec -n n python args...`` with one BLAS thread per rank; the whole process group
    is killed if it outlives ``timeout``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env.pop("FASTBP_TEST_FAULT", None)
    env.pop("FASTBP_TEST_REDUCTION", None)
    if fault:
        env["FASTBP_TEST_FAULT"] = fault
    if reduction:
        env["FASTBP_TEST_REDUCTION"] = reduction
    cmd = [MPIEXEC, *launcher_flags(), "-n", str(n), *args]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} still ran after {timeout} s:\n{out}\n{err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def single_process(sizes: list[int], dtype: str, batch: int, epochs: int, n: int,
                   lmbda: float) -> tuple[Network, list[dict]]:
    """The reference: ``Network.train`` in this process with rank 0's seed and data."""
    X, labels = data(sizes, n)
    net = Network(sizes, dtype=dtype, seed=1)
    history = net.train(X, labels, epochs=epochs, batch_size=batch, eta=0.5,
                        test=(X[:, :50], labels[:50]), lmbda=lmbda, shuffle=True)
    return net, history.as_dicts()


# -- without MPI ------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
def test_shards_tile_each_batch_in_rank_order(size):
    for m in range(0, 23):
        shares = [shard(m, size, r) for r in range(size)]
        assert shares[0][0] == 0 and shares[-1][1] == m
        assert all(a[1] == b[0] for a, b in zip(shares, shares[1:]))
        counts = [hi - lo for lo, hi in shares]
        assert max(counts) - min(counts) <= 1 and counts == sorted(counts, reverse=True)


def test_gradients_are_views_of_one_flat_buffer():
    net = Network([5, 4, 3], dtype="float64")
    g = FlatGradients(net.backend, net.sizes)
    assert g.flat.shape == (5 * 4 + 4 + 4 * 3 + 3 + 1,)
    for a in (*g.grad_w, *g.grad_b, g.cost):
        assert np.shares_memory(a, g.flat)
    g.flat[...] = np.arange(g.flat.size)
    assert g.grad_w[0][0, 0] == 0 and g.grad_b[0][0, 0] == 20 and g.cost[0] == g.flat.size - 1


class FakeComm:
    """``allgather`` as if the other ranks had reported ``others``."""

    def __init__(self, others: list) -> None:
        self.others = others

    def allgather(self, value):
        return [value, *self.others]


def test_a_parameter_checksum_mismatch_is_a_clear_error():
    from fastbp.distributed import DistributedError, check_parameters, parameter_checksum

    net = Network([5, 4, 3], dtype="float64", seed=0)
    total = parameter_checksum(net)
    assert total == pytest.approx(sum(w.sum() for w in net.weights) + sum(b.sum() for b in
                                                                           net.biases))
    check_parameters(net, FakeComm([total, total]), epoch=3)  # agreement passes
    with pytest.raises(DistributedError, match=r"differ between ranks after epoch 3.*\[2\]"):
        check_parameters(net, FakeComm([total, total + 1e-12]), epoch=3)


def test_ranks_that_disagree_on_data_or_options_are_told_which():
    from fastbp.distributed import DistributedError, agree

    agree(FakeComm([(1, 2)]), "options", (1, 2))
    with pytest.raises(DistributedError, match=r"disagree on options.*rank\(s\) \[1\]"):
        agree(FakeComm([(1, 3), (1, 2)]), "options", (1, 2))


def test_import_fastbp_does_not_import_mpi4py():
    code = ("import sys, fastbp, fastbp.cli; fastbp.cli.build_parser(); "
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_without_mpi4py_the_error_says_what_to_install(monkeypatch):
    from fastbp.distributed import DistributedError, mpi

    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(DistributedError, match=r"fastbp\[mpi\]"):
        mpi()
    assert reduction_path("cpu") == "unavailable"


def test_arrays_other_than_numpy_or_cupy_are_refused_by_name():
    import types

    from fastbp.devices.backend import Backend
    from fastbp.distributed import DistributedError, backend_path

    other = Backend(types.SimpleNamespace(__name__="array_api_strict"), dtype="float64")
    with pytest.raises(DistributedError, match="NumPy or CuPy.*array_api_strict"):
        backend_path(other)


def test_each_rank_takes_the_gpu_of_its_local_rank(monkeypatch):
    import fastbp.parallel.mpi as mpi

    monkeypatch.setattr(mpi, "local_rank", lambda comm=None: 6)
    monkeypatch.setattr(mpi, "gpu_count", lambda: 4)
    assert mpi.rank_device("cuda") == "cuda:2" and mpi.rank_device("auto") == "cuda:2"
    assert mpi.rank_device("cuda:3") == "cuda:3" and mpi.rank_device("cpu") == "cpu"
    monkeypatch.setattr(mpi, "gpu_count", lambda: 0)
    assert mpi.rank_device("cuda") == "cuda"  # and the Network says why it cannot run


def test_reduction_path_names_the_path():
    assert reduction_path("cpu") == ("mpi" if HAVE_MPI4PY else "unavailable")
    assert reduction_path("no-such-device") == "unavailable"


class OwnSum:
    """A device's own reducer, as a plugin gives it (it never runs here)."""

    path = "own"

    def __init__(self, comm) -> None:  # noqa: ANN001
        self.comm = comm


def backend_with_own_reducer(xp_name: str | None = None):
    """A NumPy device (or, with ``xp_name``, one computing with another module) that offers its
    own gradient reducer."""
    import types

    from fastbp.devices import Backend, NumpyBackend

    class WithOwn(NumpyBackend if xp_name is None else Backend):
        def gradient_reducer(self, comm, flat):  # noqa: ANN001
            return OwnSum(comm)

    if xp_name is None:
        return WithOwn(dtype="float64")
    return WithOwn(types.SimpleNamespace(__name__=xp_name), dtype="float64")


def test_a_device_reducer_is_taken_when_every_rank_offers_it(monkeypatch):
    from fastbp.distributed import REDUCTION_ENV, DistributedError, backend_path, make_reducer

    own = backend_with_own_reducer()
    assert backend_path(own) == "own"
    flat = own.zeros((5,))
    comm = FakeComm([("own", True)])
    reducer = make_reducer(comm, own, flat)
    assert isinstance(reducer, OwnSum) and reducer.comm is comm
    with pytest.raises(DistributedError, match="mix host and device arrays"):
        make_reducer(FakeComm([("host", False)]), own, flat)
    # A device whose arrays MPI cannot take is welcome when it sums gradients itself.
    other = backend_with_own_reducer("array_api_strict")
    assert backend_path(other) == "own"
    monkeypatch.setenv(REDUCTION_ENV, "nccl")
    with pytest.raises(DistributedError, match="'nccl'.*takes one of own, cuda-aware-mpi, host"):
        backend_path(other)


def fake_nccl(monkeypatch) -> list:
    """``cupy``, ``cupy.cuda`` and ``cupy.cuda.nccl`` stand-ins that record every NCCL call."""
    import types

    calls: list = []

    class Communicator:
        def __init__(self, size, uid, rank):  # noqa: ANN001
            calls.append(("communicator", size, uid, rank))

        def allReduce(self, *args):  # noqa: ANN002, N802 - NCCL's name
            calls.append(("allReduce", *args))

    nccl = types.ModuleType("cupy.cuda.nccl")
    nccl.NCCL_FLOAT16, nccl.NCCL_FLOAT32, nccl.NCCL_FLOAT64, nccl.NCCL_SUM = 6, 7, 8, 0
    nccl.get_unique_id = lambda: "uid-0"
    nccl.NcclCommunicator = Communicator
    cuda = types.ModuleType("cupy.cuda")
    cuda.nccl = nccl
    cuda.get_current_stream = lambda: types.SimpleNamespace(ptr=99)
    cupy = types.ModuleType("cupy")
    cupy.cuda = cuda
    for name, mod in (("cupy", cupy), ("cupy.cuda", cuda), ("cupy.cuda.nccl", nccl)):
        monkeypatch.setitem(sys.modules, name, mod)
    return calls


class BcastComm:
    """Rank ``rank`` of ``size``; ``bcast`` hands out rank 0's value."""

    def __init__(self, rank: int, size: int) -> None:
        self.rank, self.size, self.bcasts = rank, size, 0

    def Get_rank(self):  # noqa: N802 - mpi4py's names
        return self.rank

    def Get_size(self):  # noqa: N802
        return self.size

    def bcast(self, value, root=0):  # noqa: ANN001
        self.bcasts += 1
        return "uid-0"


def test_the_nccl_reducer_connects_on_its_first_call_and_sums_in_place(monkeypatch):
    import types

    nccl_mod = pytest.importorskip("fastbp_cupy.nccl")
    calls = fake_nccl(monkeypatch)
    assert nccl_mod.nccl_available()
    comm = BcastComm(rank=1, size=2)
    reduce = nccl_mod.NcclReducer(comm, "float32")
    assert reduce.path == "nccl" and comm.bcasts == 0 and calls == []  # built silently
    flat = types.SimpleNamespace(data=types.SimpleNamespace(ptr=1234), size=10)
    reduce(flat)
    reduce(flat)
    assert comm.bcasts == 1
    assert calls == [("communicator", 2, "uid-0", 1), ("allReduce", 1234, 1234, 10, 7, 0, 99),
                     ("allReduce", 1234, 1234, 10, 7, 0, 99)]


@needs_mpi
def test_one_rank_is_bit_for_bit_network_train():
    """``train`` on a one-rank communicator runs the plain epoch through the same driver:
    MNIST-sized data, float64, η = 3, two epochs, every bit of every parameter equal."""
    from mpi4py import MPI

    from fastbp.distributed import train

    X, labels = data([784, 30, 10], 3000)
    test = (X[:, :500], labels[:500])
    one = Network([784, 30, 10], dtype="float64", seed=1)
    h1 = one.train(X, labels, epochs=2, batch_size=10, eta=3.0, test=test)
    dist = Network([784, 30, 10], dtype="float64", seed=1)
    h2 = train(dist, X, labels, epochs=2, batch_size=10, eta=3.0, test=test, comm=MPI.COMM_SELF)
    assert h2.ranks == 1 and h2.reduction == "none"
    for a, b in zip([*one.weights, *one.biases], [*dist.weights, *dist.biases]):
        assert np.array_equal(a, b)
    assert [(r.cost, r.correct) for r in h1] == [(r.cost, r.correct) for r in h2]
    assert one.rng.bit_generator.state == dist.rng.bit_generator.state
    assert len(dist.history) == 2 and dist.history[-1] is h2[-1]


# -- under mpiexec -----------------------------------------------------------------------------
CASES = [  # ranks, dtype, batch size, epochs, samples, lambda[, reduction path forced]
    (2, "float64", 10, 3, 95, 0.0),
    (3, "float64", 10, 3, 95, 0.0),   # 10 = 4 + 3 + 3, last batch 5 = 2 + 2 + 1
    (3, "float64", 2, 2, 31, 0.0),    # 2 samples for 3 ranks: one rank idles every step
    (2, "float64", 16, 2, 100, 5.0),  # with L2 weight decay
    (2, "float32", 10, 3, 95, 0.0),
    (3, "float32", 7, 2, 60, 0.0),
    (2, "float64", 10, 2, 45, 0.0, "host"),            # the GPU paths' code on NumPy arrays
    (2, "float64", 10, 2, 45, 0.0, "cuda-aware-mpi"),
    (2, "float64", 10, 2, 45, 0.0, "device"),  # the device's own reducer
    (1, "float64", 10, 2, 95, 5.0),  # one rank: bit for bit, nothing to sum
    (1, "float32", 7, 2, 60, 0.0),
]


@pytest.mark.mpi
@needs_mpi
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_ranks_reach_the_single_process_parameters(tmp_path, case):
    ranks, dtype, batch, epochs, n, lmbda, *forced = case
    sizes = [20, 7, 3]
    out = tmp_path / "trained.npz"
    res = mpirun(ranks, [sys.executable, str(WORKER), str(out), "20,7,3", dtype, str(batch),
                         str(epochs), str(n), str(lmbda)], reduction=forced[0] if forced else None)
    assert res.returncode == 0, res.stdout + res.stderr
    got = np.load(out)
    want = ({"device": "device-own"}.get(forced[0], forced[0]) if forced else "mpi")
    assert bytes(got["reduction"]).decode() == (want if ranks > 1 else "none")
    if forced == ["device"]:  # one reduction per step
        assert int(got["device_reductions"]) == epochs * -(-n // batch)
    net, history = single_process(sizes, dtype, batch, epochs, n, lmbda)
    tol = dict(rtol=0, atol=1e-10) if dtype == "float64" else dict(rtol=1e-5, atol=1e-5)
    if ranks == 1:
        tol = dict(rtol=0, atol=0)
    for i, (w, b) in enumerate(zip(net.weights, net.biases)):
        np.testing.assert_allclose(got[f"w{i}"], w, **tol)
        np.testing.assert_allclose(got[f"b{i}"], b, **tol)
    # The same permutations were drawn: the generators end in the same state.
    assert json.loads(bytes(got["rng"])) == net.rng.bit_generator.state
    dist = json.loads(bytes(got["history"]))
    assert [r["correct"] for r in dist] == [r["correct"] for r in history]
    np.testing.assert_allclose([r["cost"] for r in dist], [r["cost"] for r in history],
                               rtol=0 if ranks == 1 else 1e-6 if dtype == "float32" else 1e-12)
    assert np.all((got["comm_share"] >= 0) & (got["comm_share"] <= 1.01))


def long_run(tmp_path: Path) -> list[str]:
    """A training that would run for minutes: the fault must end it."""
    return [sys.executable, str(WORKER), str(tmp_path / "never.npz"), "784,30,10", "float64",
            "10", "100000", "500"]


@pytest.mark.mpi
@needs_mpi
def test_a_rank_that_raises_aborts_the_job(tmp_path):
    start = time.monotonic()
    res = mpirun(3, long_run(tmp_path), fault="raise:1:1")
    assert time.monotonic() - start < 30
    assert res.returncode != 0
    assert "rank 1 of 3 failed: RuntimeError: injected failure on rank 1" in res.stderr
    assert not (tmp_path / "never.npz").exists()


@pytest.mark.mpi
@needs_mpi
def test_a_rank_killed_mid_training_ends_the_job(tmp_path):
    start = time.monotonic()
    res = mpirun(2, long_run(tmp_path), fault="kill:1:1.0")
    assert time.monotonic() - start < 30
    assert res.returncode != 0
    # Either the launcher reports the dead rank, or a survivor's failed Allreduce aborts.
    text = res.stdout + res.stderr
    assert re.search(r"(?i)killed|signal 9|bad termination|rank 0 of 2 failed", text), text


@pytest.mark.mpi
@needs_mpi
def test_command_line_prints_once_and_matches_one_process():
    mnist = mnist_dir()
    if mnist is None:
        pytest.skip("MNIST not found: set FASTBP_DATA to the directory of the IDX files")
    opts = ["train", "--limit", "300", "--epochs", "2", "--seed", "3", "--dtype", "float64",
            "--data", str(mnist)]
    fastbp = [sys.executable, "-m", "fastbp"]
    res = mpirun(2, [*fastbp, *opts, "--distributed"])
    assert res.returncode == 0, res.stdout + res.stderr
    one = subprocess.run([*fastbp, *opts], capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr

    def epochs(text: str) -> list[str]:  # accuracy and cost, not the timings
        return [line.split(", ")[0] + line.split(", ")[1] for line in text.splitlines()
                if line.startswith("Epoch")]

    assert len(epochs(res.stdout)) == 2  # rank 0 alone prints
    assert epochs(res.stdout) == epochs(one.stdout)
    assert "2 rank(s) over MPI" in res.stdout and "gradients summed by mpi" in res.stdout


@pytest.mark.mpi
@needs_mpi
def test_one_rank_on_the_command_line_is_bit_for_bit_the_plain_run(tmp_path):
    mnist = mnist_dir()
    if mnist is None:
        pytest.skip("MNIST not found: set FASTBP_DATA to the directory of the IDX files")
    import fastbp

    opts = ["train", "--limit", "3000", "--epochs", "2", "--seed", "1", "--dtype", "float64",
            "--data", str(mnist), "--quiet"]
    fastbp_cmd = [sys.executable, "-m", "fastbp"]
    res = mpirun(1, [*fastbp_cmd, *opts, "--distributed", "--save", str(tmp_path / "d.npz")])
    assert res.returncode == 0, res.stdout + res.stderr
    one = subprocess.run([*fastbp_cmd, *opts, "--save", str(tmp_path / "p.npz")],
                         capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr
    d, p = fastbp.load(tmp_path / "d.npz"), fastbp.load(tmp_path / "p.npz")
    for a, b in zip([*d.weights, *d.biases], [*p.weights, *p.biases]):
        assert np.array_equal(a, b)
    assert d.rng.bit_generator.state == p.rng.bit_generator.state
    assert [r.cost for r in d.history] == [r.cost for r in p.history]


@pytest.mark.mpi
@needs_mpi
def test_the_schedule_runs_with_distributed_training_as_in_one_process(tmp_path):
    """``--schedule`` over two ranks halves η at the epochs one process does, and stops with
    it (every rank scores the same parameters)."""
    mnist = mnist_dir()
    if mnist is None:
        pytest.skip("MNIST not found: set FASTBP_DATA to the directory of the IDX files")
    import fastbp.model.persist as persist

    opts = ["train", "--limit", "300", "--epochs", "12", "--seed", "3", "--dtype", "float64",
            "--data", str(mnist), "--quiet", "--schedule", "1,2", "--momentum", "0.5",
            "--cost", "cross-entropy", "--eta", "4"]
    fastbp_cmd = [sys.executable, "-m", "fastbp"]
    res = mpirun(2, [*fastbp_cmd, *opts, "--distributed", "--save", str(tmp_path / "d.npz")])
    assert res.returncode == 0, res.stdout + res.stderr
    one = subprocess.run([*fastbp_cmd, *opts, "--save", str(tmp_path / "p.npz")],
                         capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr
    d = persist.load_checkpoint(tmp_path / "d.npz")
    p = persist.load_checkpoint(tmp_path / "p.npz")
    assert d.extra["schedule"]["halved"] == p.extra["schedule"]["halved"] == 2
    assert d.extra["schedule"]["stopped_epoch"] == p.extra["schedule"]["stopped_epoch"] < 11
    for a, b in zip([*d.network.weights, *d.network.biases],
                    [*p.network.weights, *p.network.biases]):
        np.testing.assert_allclose(a, b, atol=1e-9)


def test_an_mpi4py_without_its_library_is_one_clear_error(monkeypatch):
    """mpi4py raises RuntimeError where its MPI library does not load (a copied environment):
    a DistributedError saying so, so `fastbp devices` reports it instead of a traceback."""
    import builtins

    from fastbp.parallel import mpi as mpi_module

    real = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "mpi4py":
            raise RuntimeError("cannot load MPI library\nlibmpi.so: cannot open shared object")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    with pytest.raises(mpi_module.DistributedError, match="cannot load an MPI library"):
        mpi_module.mpi()
