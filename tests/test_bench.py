"""The benchmark machinery (``fastbp.bench``, ``fastbp bench``): what it counts, which cases it
keeps and why, that a minimal run writes its files, and that peers are held to fastbp's
gradients. Nothing here asserts a speed."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from fastbp.bench import flops, runner
from fastbp.bench import workloads as wl
from fastbp.bench.peers import PeerCheckFailed, check_gradients, load_peers
from fastbp.cli import main

PEERS_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "peers"


def test_flops_count_six_per_weight_plus_elementwise():
    sizes = [784, 30, 10]
    w = 784 * 30 + 30 * 10
    assert flops.weight_count(sizes) == w
    assert flops.parameter_count(sizes) == w + 40
    per = flops.flops_per_sample(sizes, 10)
    assert per == 6 * w + 9 * 40 + 3 * 10 + 2 * (w + 40) / 10
    # the first layer's W^T delta is not needed: 2 * 784 * 30 less
    assert flops.needed_flops_per_sample(sizes, 10) == per - 2 * 784 * 30
    assert flops.flops_per_sample(sizes, 1000) < per  # the update spreads over the batch


def test_gemm_peak_is_positive_and_says_its_size():
    from fastbp.devices.cpu.backend import NumpyBackend

    peak = flops.gemm_peak(NumpyBackend("float64"), n=64, repeats=2)
    assert peak["gflops"] > 0 and peak["n"] == 64 and peak["dtype"] == "float64"


@pytest.mark.parametrize("kind,device_kind,impl,sizes,batch,says", [
    ("step", "cpu", "matrix", (784, 4096, 4096, 10), 100, "for GPUs"),
    ("step", "cuda", "loop", (784, 30, 10), 10, "CPU only"),
    ("epoch", "cpu", "loop", (784, 1024, 1024, 10), 100, "seconds per epoch"),
    ("step", "cpu", "loop", (784, 1024, 1024, 10), 1000, "same per sample"),
    ("epoch", "cpu", "matrix", (784, 1024, 1024, 10), 1, "seconds per call"),
    ("epoch", "cpu", "matrix", (784, 30, 10), 20000, "larger than the epoch"),
])
def test_pairs_that_make_no_sense_are_skipped_with_a_reason(kind, device_kind, impl, sizes,
                                                            batch, says):
    dev = wl.Device(device_kind, device_kind)
    case = wl.make_case(kind, dev, impl, sizes, batch, "float32")
    assert says in wl.skip_reason(case)


@pytest.mark.parametrize("kind,device_kind,impl,sizes,batch", [
    ("step", "cpu", "matrix", (784, 1024, 1024, 10), 1),
    ("step", "cuda", "matrix", (784, 4096, 4096, 10), 1),
    ("epoch", "cpu", "loop", (784, 100, 10), 10_000),
    ("epoch", "cpu", "torch-eager", (784, 30, 10), 1),
])
def test_sensible_pairs_are_kept(kind, device_kind, impl, sizes, batch):
    case = wl.make_case(kind, wl.Device(device_kind, device_kind), impl, sizes, batch, "float32")
    assert wl.skip_reason(case) is None


def test_plan_puts_fastbp_first_then_loop_then_peers_and_keeps_unavailable_devices():
    devices = [wl.Device("cpu"), wl.Device("cuda", "unknown", "no GPU here")]
    fake = {"x-peer": type("Spec", (), {"kinds": ("epoch",), "package": "no_such_package_xyz"})}
    cases = wl.plan_cases(devices, sizes=[(784, 30, 10)], batch_sizes=[10], dtypes=["float32"],
                          peers=fake)
    impls = [c.impl for c, _ in cases]
    assert impls == ["matrix", "matrix", "matrix", "matrix", "loop", "loop", "x-peer"]
    reasons = {(c.device, c.impl, c.workload): r for c, r in cases}
    assert reasons[("cuda", "matrix", "step")] == "no GPU here"
    assert reasons[("cpu", "matrix", "step")] is None
    assert "not installed" in reasons[("cpu", "x-peer", "epoch")]  # and no step: it has none


def test_find_devices_lists_every_registered_device_and_why_one_cannot_start():
    import fastbp

    found = {d.name: d for d in wl.find_devices()}
    assert set(fastbp.backend_names()) <= set(found) | {"auto"}
    assert found["cpu"].unavailable is None and found["cpu"].hardware == "cpu"
    broken = wl.find_devices(["no-such-device"])[0]
    assert "does not start here" in broken.unavailable


def test_synthetic_data_is_mnist_shaped_read_only_and_sample_major():
    X, labels, Y = wl.synthetic_mnist(500, "float32")
    assert X.shape == (784, 500) and X.dtype == np.float32 and X.flags.f_contiguous
    assert 0.1 < np.count_nonzero(X) / X.size < 0.3 and X.min() >= 0 and X.max() <= 1
    assert (Y.argmax(axis=0) == labels).all() and not X.flags.writeable


def test_stats_follow_pytest_benchmark():
    s = runner.stats_of([1.0, 2.0, 3.0, 4.0, 100.0], iterations=2)
    assert s["min"] == 1.0 and s["max"] == 100.0 and s["median"] == 3.0 and s["rounds"] == 5
    assert s["iqr_outliers"] == 1 and s["total"] == 2 * 110.0 and s["iterations"] == 2


def test_every_implementation_runs_one_step_and_one_epoch(monkeypatch):
    """What each prepared callable times is the case's work: from the shared initial
    parameters, one step (or one shuffled epoch) lands where the per-sample oracle does."""
    from fastbp.bench import prepare as prep
    from fastbp.core import reference

    made = {}
    real_initial, real_network = prep.initial_parameters, prep._network

    def initial(sizes, dtype):
        weights, biases = real_initial(sizes, dtype)
        made["params"] = weights + biases  # the loop updates these arrays in place
        made["start"] = [p.copy() for p in weights + biases]
        return weights, biases

    def network(case, weights, biases):
        made["net"] = real_network(case, weights, biases)
        return made["net"]

    monkeypatch.setattr(prep, "initial_parameters", initial)
    monkeypatch.setattr(prep, "_network", network)
    data = wl.data_source("synthetic")
    for kind in ("step", "epoch"):
        for impl in ("matrix", "loop"):
            case = wl.make_case(kind, wl.Device("cpu"), impl, (12, 6, 3), 4, "float64",
                                epoch_samples=16)
            run = wl.prepare(case, data).run
            n = case.samples
            X, _, Y = data(n, "float64", 12, 3)
            X, Y = X[:, :n], Y[:, :n]
            if kind == "step":
                order, m = np.arange(n), n
            elif impl == "matrix":  # the network draws the epoch's order from its generator
                order, m = copy.deepcopy(made["net"].rng).permutation(n), case.batch_size
            else:
                order, m = np.random.default_rng(wl.SEED).permutation(n), case.batch_size
            run()
            got = ([*made["net"].weights, *made["net"].biases] if impl == "matrix"
                   else made["params"])
            want = [p.copy() for p in made["start"]]
            reference.sgd_epoch(want[:2], want[2:], X, Y, m, wl.ETA, order=order)
            for g, w, s in zip(got, want, made["start"]):
                np.testing.assert_allclose(g, w, rtol=0, atol=1e-10, err_msg=f"{kind} {impl}")
                assert not np.allclose(g, s), f"{kind} {impl}: a parameter did not move"


def _bench(tmp_path, *extra):
    out = tmp_path / "run"
    code = main(["bench", "--quick", "--samples", "200", "--target-s", "0.001",
                 "--batch-sizes", "10,100", "--out", str(out), *extra])
    return code, out


def test_bench_quick_writes_json_machine_table_and_chart(tmp_path, capsys):
    code, out = _bench(tmp_path)
    text = capsys.readouterr().out
    assert code == 0
    assert "× loop" in text and "% peak" in text and "GEMM peak" in text
    doc = json.loads((out / "bench.json").read_text())
    names = {b["name"] for b in doc["benchmarks"]}
    assert "test_epoch[cpu-matrix-784-30-10-b10-float32]" in names
    assert "test_step[cpu-loop-784-30-10-b100-float32]" in names
    for b in doc["benchmarks"]:
        e = b["extra_info"]
        assert e["samples_per_s"] > 0 and e["gflops"] > 0 and e["pct_gemm_peak"] > 0
        assert "other_cores" in e
        assert b["stats"]["rounds"] >= 1 and len(b["stats"]["data"]) == b["stats"]["rounds"]
    machine = json.loads((out / "machine.json").read_text())
    assert machine["cpu"]["usable_cores"] >= 1 and "numpy" in machine["versions"]
    assert (out / "table.md").read_text().startswith("| kind")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no chart" in text
    else:
        assert (out / "chart.png").stat().st_size > 1000


def test_bench_compare_prints_ratios(tmp_path, capsys):
    _, out = _bench(tmp_path, "--kinds", "step", "--no-loop")
    capsys.readouterr()
    assert main(["bench", "--compare", str(out), str(out / "bench.json")]) == 0
    text = capsys.readouterr().out
    assert "B / A" in text and "1.00" in text
    assert "geometric mean" in text or "its ratio measures the load" in text


def test_compare_marks_cases_timed_under_load_and_leaves_them_out_of_the_mean():
    from fastbp.bench import report

    def run(speeds, others):
        return {"benchmarks": [{"extra_info": {
            "kind": "epoch", "device": "cpu", "impl": "fastbp", "sizes": "784-30-10",
            "batch_size": m, "dtype": "float32", "samples_per_s": v, "other_cores": o}}
            for m, v, o in zip((10, 100), speeds, others)]}

    text = report.compare(run([100.0, 100.0], [0.0, 0.9]), run([200.0, 50.0], [0.0, 0.0]))
    flagged = [line.split() for line in text.splitlines() if line.startswith("epoch")]
    assert flagged[0][-3:] == ["2.00", "0.00", "0.00"]
    assert flagged[1][-5:] == ["0.50", "!", "0.90", "!", "0.00"]  # the ratio and others A
    assert "its ratio measures the load" in text and "its ratio measures the load" in text
    assert "geometric mean of B / A: cpu fastbp 2.00 (1)" in text


def test_bench_without_matplotlib_says_so(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out = _bench(tmp_path, "--kinds", "step", "--no-loop")
    assert code == 0 and not (out / "chart.png").exists()
    assert "matplotlib is not installed" in capsys.readouterr().out


@pytest.mark.parametrize("args,says", [
    (["--compare", "nowhere.json", "nowhere.json"], "no saved run"),
    (["--kinds", "lunch"], "--kinds takes step"),
    (["--peers", "no-such-peer", "--peers-dir", str(PEERS_DIR)], "unknown peer"),
    (["--data", "mnist", "--sizes", "20,5,3", "--kinds", "step", "--no-loop", "--out", "none"],
     "need --data synthetic"),
])
def test_bench_bad_options_are_clear_errors(args, says, capsys):
    code = main(["bench", *args])
    text = capsys.readouterr()
    assert says in text.err + text.out
    assert code != 0 or "FAILED" in text.err


class _WrongPeer:
    """A 'peer' whose weight gradients are off by 1 %: the check must refuse it."""

    def __init__(self, net):
        self.net = net

    def gradients(self, X, Y):
        nb, nw = self.net.backprop(X, Y)
        return nb, [w * 1.01 for w in nw]


def test_a_peer_with_wrong_gradients_is_refused(rng):
    import fastbp

    sizes = [6, 5, 3]
    net = fastbp.Network(sizes, dtype="float64", seed=2)
    X = rng.random((6, 4))
    Y = np.eye(3)[:, rng.integers(0, 3, 4)]
    ws, bs = list(net.weights), list(net.biases)
    with pytest.raises(PeerCheckFailed, match="differs from fastbp"):
        check_gradients("wrong", _WrongPeer(net), sizes, ws, bs, X, Y, "float64")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_installed_peers_match_fastbp_and_run(dtype):
    """Each installed peer (PyTorch, JAX) passes the gradient check and runs a step and an
    epoch; skipped when neither library is installed."""
    import importlib.util

    peers = {k: v for k, v in load_peers(PEERS_DIR).items()
             if importlib.util.find_spec(v.package) is not None and k != "torch-compile"}
    if not peers:
        pytest.skip("no peer library installed (pip install -e '.[peers]')")
    data = wl.data_source("synthetic")
    for name, spec in peers.items():
        for kind in spec.kinds:
            case = wl.make_case(kind, wl.Device("cpu"), name, (20, 7, 3), 4, dtype,
                                epoch_samples=12)
            prepared = wl.prepare(case, data, peers)  # runs the gradient check
            assert prepared.info["gradient_check_rel_err"] <= 2e-3
            prepared.run()


def test_a_gpu_gets_the_big_network_and_no_per_sample_loop():
    devices = [wl.Device("cpu"), wl.Device("cuda", "gpu")]
    cases = wl.plan_cases(devices, kinds=["step"], sizes=[(784, 30, 10), (784, 4096, 4096, 10)],
                          batch_sizes=[10], dtypes=["float32"])
    reasons = {(c.device, c.impl, c.sizes_label): r for c, r in cases}
    assert reasons[("cuda", "matrix", "784-4096-4096-10")] is None
    assert "for GPUs" in reasons[("cpu", "matrix", "784-4096-4096-10")]
    assert "CPU only" in reasons[("cuda", "loop", "784-30-10")]
    assert reasons[("cpu", "loop", "784-30-10")] is None
    epoch = wl.make_case("epoch", devices[1], "matrix", (784, 1024, 1024, 10), 100, "float32")
    assert epoch.samples == wl.EPOCH_SAMPLES  # a GPU gets full epochs even for big networks


def test_other_load_is_measured_and_waiting_is_bounded():
    from fastbp.bench.contention import OtherLoad, wait_for_quiet

    with OtherLoad() as load:
        sum(range(100_000))
    assert load.cores is None or load.cores >= 0.0
    assert wait_for_quiet(0.0) < 0.5


def _doc(cores_by_name, rate=100.0, peak=None):
    benches = []
    for name, cores in cores_by_name.items():
        e = {"kind": "step", "device": "cpu", "impl": name, "sizes": "4-3-2", "batch_size": 10,
             "dtype": "float32", "samples_per_s": rate, "gflops": 1.0, "other_cores": cores}
        if peak:
            e.update(gemm_peak_gflops=peak, pct_gemm_peak=100.0 / peak)
        benches.append({"name": name, "extra_info": e})
    return {"benchmarks": benches}


def test_merge_replaces_only_disturbed_cases_by_less_disturbed_retimings():
    from fastbp.bench.report import merge, rows_of

    base = _doc({"quiet": 0.0, "busy": 1.0, "busier-again": 0.6}, rate=100.0, peak=10.0)
    again = _doc({"quiet": 0.0, "busy": 0.02, "busier-again": 0.9}, rate=300.0, peak=20.0)
    merged, replaced = merge(base, again)
    assert replaced == ["busy"] and merged["retimed"] == ["busy"]
    rates = {r.impl: r.samples_per_s for r in rows_of(merged)}
    assert rates == {"quiet": 100.0, "busy": 300.0, "busier-again": 100.0}
    busy = next(b for b in merged["benchmarks"] if b["name"] == "busy")["extra_info"]
    assert busy["gemm_peak_gflops"] == 10.0 and busy["pct_gemm_peak"] == 10.0  # base's peak
    assert base["benchmarks"][1]["extra_info"]["other_cores"] == 1.0  # base left untouched
