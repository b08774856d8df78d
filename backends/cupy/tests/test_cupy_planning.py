"""The ``cuda`` device's plan (graph or eager, :mod:`fastbp_cupy.planning`) on the CuPy stand-in:
measured once per configuration and cached, ``FASTBP_PLAN`` (off, a forced candidate) and the
graph switches honoured, trials that leave training untouched, a graph that cannot be captured
falling back to eager, and the plan in ``fastbp tune`` and ``fastbp devices``. The speeds here
are the emulator's and mean nothing; only that the right candidate runs is checked."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

import fastbp
from fastbp.cli import main
from fastbp.devices import planner

fastbp_cupy = pytest.importorskip("fastbp_cupy")
from fastbp_cupy import planning  # noqa: E402
from fastbp_cupy.backend import CuPyBackend  # noqa: E402
from fastbp_fake_cupy import install  # noqa: E402

SIZES = [10, 6, 4]
KEY = "cuda [10,6,4] m=4 float64"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for var in ("FASTBP_DEVICE", "FASTBP_CUDA_GRAPHS", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def auto(monkeypatch, tmp_path):
    """Planning on, a fresh cache folder, a fresh set of one-time warnings."""
    monkeypatch.setenv("FASTBP_PLAN", "auto")
    monkeypatch.setenv("FASTBP_CACHE", str(tmp_path))
    planner._warned.clear()
    return tmp_path / "plans.json"


def data(n=43, sizes=SIZES, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((sizes[0], n)), rng.integers(0, sizes[-1], n)


def backend(graphs=None, **attrs):
    be = CuPyBackend(dtype="float64", graphs=graphs)
    be.graph_steps = 3  # the emulator runs every launch: keep the graphs short
    for k, v in attrs.items():
        setattr(be, k, v)
    return be


def train(be, epochs=2, seed=3, **kw):
    X, labels = data()
    net = fastbp.Network(SIZES, dtype="float64", seed=seed, device=be)
    history = net.train(X, labels, epochs=epochs, batch_size=4, eta=1.0, **kw)
    return net, history


def plan_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "cuda plan for" in r.getMessage()]


def state(net) -> list[np.ndarray]:
    return [np.array(a) for a in (*net.weights, *net.biases, *(net.velocities or ()))]


def cached(path):
    return json.loads(path.read_text())["sections"]["cuda"]["plans"]


# -- measured once, then read back --------------------------------------------------------------
def test_a_configuration_is_measured_once_then_read_from_the_cache(monkeypatch, auto, caplog):
    fake = install(monkeypatch)
    with caplog.at_level(logging.INFO, logger="fastbp"):
        train(backend())
        captures = fake.calls["capture"]
        train(backend())
    first, second = plan_lines(caplog)
    assert KEY in first and "(measured" in first and "(cache" in second
    entry = cached(auto)[KEY]
    assert entry["choice"] in planning.CANDIDATES
    assert set(entry["speeds"]) == set(planning.CANDIDATES)
    assert all(v > 0 for v in entry["speeds"].values())
    assert captures > 0  # the graph's trial captured a graph on its copies
    doc = json.loads(auto.read_text())
    assert doc["sections"]["cuda"]["fingerprint"]["gpu"] == "Fake GPU"
    assert doc["plans"] == {}  # the host devices' plans are not the GPU's


def test_the_gpu_plans_keep_the_host_plans_beside_them(monkeypatch, auto):
    """cpu-jit's plans (the file's top level) and the GPU's (its ``cuda`` section) have
    fingerprints of their own: writing one keeps the other, reading one never calls the other
    stale."""
    host = {"cpu": "test cpu", "cores": 2}
    trials = lambda: {"a/x": lambda s: 1.0, "b/x": lambda s: 2.0}  # noqa: E731
    planner.choose("host [1] m=1 float32", ["a/x", "b/x"], "a/x", trials, host)
    install(monkeypatch)
    train(backend())
    doc = json.loads(auto.read_text())
    assert doc["fingerprint"] == host and list(doc["plans"]) == ["host [1] m=1 float32"]
    assert KEY in doc["sections"]["cuda"]["plans"]
    planner.choose("host [2] m=1 float32", ["a/x", "b/x"], "a/x", trials, host)
    doc = json.loads(auto.read_text())
    assert len(doc["plans"]) == 2 and KEY in doc["sections"]["cuda"]["plans"]
    assert planner.choose("host [1] m=1 float32", ["a/x", "b/x"], "a/x", trials,
                          host).source == "cache"


# -- FASTBP_PLAN and the switches -----------------------------------------------------------------
@pytest.mark.parametrize("max_batch,path", [(128, "graph"), (2, "eager")])
def test_plan_off_keeps_the_estimates(monkeypatch, auto, caplog, max_batch, path):
    monkeypatch.setenv("FASTBP_PLAN", "off")
    fake = install(monkeypatch)
    be = backend(graph_max_batch=max_batch)
    with caplog.at_level(logging.INFO, logger="fastbp"):
        train(be)
    (line,) = plan_lines(caplog)
    assert f": {path} (default)" in line and be.last_epoch_path == path
    assert not auto.exists()  # nothing measured, nothing cached
    # no trial captured: only the epochs' own graphs (K steps and 1 step), or none
    assert fake.calls.get("capture", 0) == (2 if path == "graph" else 0)


@pytest.mark.parametrize("forced,limit", [("eager", 128), ("graph", 1)])
def test_a_forced_candidate_runs_whatever_the_estimate(monkeypatch, auto, caplog, forced,
                                                       limit):
    monkeypatch.setenv("FASTBP_PLAN", forced)
    install(monkeypatch)
    be = backend(graph_max_batch=limit)  # the estimate says the other one
    with caplog.at_level(logging.INFO, logger="fastbp"):
        train(be)
    (line,) = plan_lines(caplog)
    assert f": {forced} (forced)" in line and be.last_epoch_path == forced
    assert not auto.exists()


def test_a_candidate_that_does_not_exist_is_a_config_error(monkeypatch, auto):
    monkeypatch.setenv("FASTBP_PLAN", "two-threads")
    install(monkeypatch)
    with pytest.raises(fastbp.ConfigError, match="candidates: graph, eager"):
        train(backend())


@pytest.mark.parametrize("how,reason", [("env", "FASTBP_CUDA_GRAPHS=0"),
                                        ("flag", "graphs=False")])
def test_graphs_switched_off_run_eager_and_the_plan_says_why(monkeypatch, auto, caplog, how,
                                                             reason):
    monkeypatch.setenv("FASTBP_PLAN", "graph")  # the switch wins over a forced plan
    fake = install(monkeypatch)
    if how == "env":
        monkeypatch.setenv("FASTBP_CUDA_GRAPHS", "0")
    be = backend(graphs=False if how == "flag" else None)
    with caplog.at_level(logging.INFO, logger="fastbp"):
        train(be)
    (line,) = plan_lines(caplog)
    assert f": eager ({reason})" in line and be.last_epoch_path == "eager"
    assert fake.calls.get("capture", 0) == 0 and not auto.exists()


# -- trials leave training untouched ------------------------------------------------------------
@pytest.mark.parametrize("kw", [{}, {"momentum": 0.6, "l1": 0.5, "dropout": 0.3}],
                         ids=["plain", "techniques"])
def test_measuring_leaves_training_bit_identical(monkeypatch, auto, kw):
    """The same seed gives the same network (parameters, velocities, generator) whether the
    plan was measured in the first epoch or forced to the same candidate."""
    install(monkeypatch)
    measured, hm = train(backend(), **kw)
    (entry,) = cached(auto).values()
    choice = entry["choice"]
    monkeypatch.setenv("FASTBP_PLAN", choice)
    forced, hf = train(backend(), **kw)
    for a, b in zip(state(measured), state(forced)):
        np.testing.assert_array_equal(a, b)
    assert [r.cost for r in hm] == [r.cost for r in hf]
    assert measured.rng.bit_generator.state == forced.rng.bit_generator.state


def test_the_trials_run_on_copies_of_the_parameters_and_velocities(monkeypatch, auto):
    fake = install(monkeypatch)
    be = backend()
    X, labels = data()
    net = fastbp.Network(SIZES, dtype="float64", seed=2, device=be)
    plan = net.epoch_plan(X, labels, batch_size=4, eta=1.0, momentum=0.9)
    plan.start(be.index_array(np.arange(43)))
    plan.params.velocities[0][...] = 0.25  # velocities a trial would change
    arrays = [*plan.params.weights, *plan.params.biases, *plan.params.velocities]
    before = [np.array(a) for a in arrays]
    choice = be.plan_for(plan)
    assert choice.source == "measured" and set(choice.speeds) == {"graph", "eager"}
    assert fake.calls["graph"] > 0 and fake.calls["gemm"] > 0  # both ran real steps
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(a, b)
    assert be.plan_for(plan) is choice  # kept on the plan: measured once


def test_too_few_batches_to_measure_keep_the_default_uncached(monkeypatch, auto, caplog):
    install(monkeypatch)
    be = backend()
    X, labels = data(n=7)
    with caplog.at_level(logging.INFO, logger="fastbp"):
        fastbp.Network(SIZES, dtype="float64", device=be).train(X, labels, epochs=1,
                                                                 batch_size=4, eta=1.0)
    (line,) = plan_lines(caplog)
    assert ": graph (default)" in line and not auto.exists()


# -- a graph that cannot be captured ------------------------------------------------------------
def test_a_graph_that_fails_its_trial_is_not_chosen(monkeypatch, auto, caplog):
    fake = install(monkeypatch)
    fake.fail_capture = "cudaErrorStreamCaptureUnsupported: operation not permitted"
    be = backend()
    with caplog.at_level(logging.INFO, logger="fastbp"):
        net, history = train(be)
    (line,) = plan_lines(caplog)
    assert ": eager (measured" in line and be.last_epoch_path == "eager"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "candidate graph failed its trial" in warnings[0]
    assert "cudaErrorStreamCaptureUnsupported" in warnings[0]
    assert cached(auto)[KEY]["choice"] == "eager"
    cpu = fastbp.Network(SIZES, dtype="float64", seed=3, device="cpu")
    X, labels = data()
    hc = cpu.train(X, labels, epochs=2, batch_size=4, eta=1.0)
    for a, b in zip(state(net), state(cpu)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
    np.testing.assert_allclose([r.cost for r in history], [r.cost for r in hc], rtol=1e-10)


@pytest.mark.parametrize("how", ["forced", "cached"])
def test_a_graph_plan_that_fails_at_run_time_falls_back_to_eager_once(monkeypatch, auto,
                                                                      caplog, how):
    fake = install(monkeypatch)
    if how == "forced":
        monkeypatch.setenv("FASTBP_PLAN", "graph")
    else:  # a plan cached while capture worked
        train(backend())
        plans = cached(auto)
        plans[KEY]["choice"] = "graph"
        planner.write_cache(planning.fingerprint(backend()), plans, planning.SECTION)
    fake.fail_capture = "cudaErrorStreamCaptureUnsupported: operation not permitted"
    be = backend()
    X, labels = data()
    net = fastbp.Network(SIZES, dtype="float64", seed=3, device=be)
    cpu = net.to("cpu")
    plan_seen = []
    with caplog.at_level(logging.WARNING, logger="fastbp"):
        history = net.train(X, labels, epochs=3, batch_size=4, eta=1.0,
                            callback=lambda record, n: plan_seen.append(n.backend.last_epoch_path))
    hc = cpu.train(X, labels, epochs=3, batch_size=4, eta=1.0)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "falls back to eager" in warnings[0]
    assert "cudaErrorStreamCaptureUnsupported" in warnings[0]
    assert plan_seen == ["eager"] * 3
    for a, b in zip(state(net), state(cpu)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
    np.testing.assert_allclose([r.cost for r in history], [r.cost for r in hc], rtol=1e-10)
    # the next configuration on this backend knows, and says so
    assert be.graphs_off_reason().startswith("fallback: capture failed here")


# -- the commands -------------------------------------------------------------------------------
def test_fastbp_tune_measures_the_cuda_plan(monkeypatch, auto, capsys):
    install(monkeypatch)
    monkeypatch.setattr(CuPyBackend, "graph_steps", 3)
    assert main(["tune", "--device", "cuda", "--sizes", "10,6,4", "--batch-sizes", "4", "8",
                 "--samples", "40", "--dtype", "float64"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("cuda [10,6,4]")]
    assert len(lines) == 2
    for line in lines:
        assert line.split()[4] in planning.CANDIDATES
        assert "graph " in line and "eager " in line  # both candidates' samples/s
    assert set(cached(auto)) == {KEY, "cuda [10,6,4] m=8 float64"}


def test_fastbp_devices_shows_the_cuda_plans(monkeypatch, auto, capsys):
    install(monkeypatch)
    train(backend())
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("  cuda  gpu"))
    assert "plans graph or eager measured per configuration; 1 cached" in line
    assert "[10,6,4] m=4 float64: " in line
    monkeypatch.setenv("FASTBP_PLAN", "off")
    main(["devices"])
    assert "plans estimates (FASTBP_PLAN=off" in capsys.readouterr().out
    monkeypatch.setenv("FASTBP_CUDA_GRAPHS", "0")
    main(["devices"])
    assert "plans eager (FASTBP_CUDA_GRAPHS=0)" in capsys.readouterr().out


# -- the key names what changes the step's kernels --------------------------------------------
def test_a_plan_measured_for_plain_sgd_is_not_reused_with_other_techniques(monkeypatch, auto,
                                                                          caplog):
    """Momentum, L1, dropout, another cost or other neurons run other kernels: each is a
    configuration of its own, measured once, never the plain run's cached choice."""
    install(monkeypatch)
    runs = [{}, {"momentum": 0.9}, {"momentum": 0.9, "l1": 0.1}, {"dropout": 0.5},
            {"cost": fastbp.CrossEntropyCost}, {"activation": "tanh"}, {"momentum": 0.9}]
    with caplog.at_level(logging.INFO, logger="fastbp"):
        for kw in runs:
            built = {k: kw.pop(k) for k in ("cost", "activation") if k in kw}
            X, labels = data()
            net = fastbp.Network(SIZES, dtype="float64", seed=3, device=backend(), **built)
            net.train(X, labels, epochs=1, batch_size=4, eta=1.0, **kw)
    lines = plan_lines(caplog)
    assert len(lines) == len(runs)
    assert all("(measured" in line for line in lines[:-1]), lines
    assert "(cache" in lines[-1], lines[-1]  # momentum again: its own entry, read back
    keys = set(cached(auto))
    assert {KEY, f"{KEY} momentum", f"{KEY} momentum+l1", f"{KEY} dropout",
            f"{KEY} cost=cross-entropy"} < keys and len(keys) == 6, keys
    assert any(k.startswith(f"{KEY} neurons=tanh,") for k in keys), keys


# -- every candidate is verified before it is chosen ----------------------------------------
@pytest.mark.parametrize("kw", [{}, {"momentum": 0.6, "dropout": 0.3}], ids=["plain",
                                                                              "techniques"])
def test_a_fast_wrong_graph_is_rejected_with_one_warning_and_never_cached(monkeypatch, auto,
                                                                          caplog, kw):
    """A raw GEMM that computes a wrong product (on the graph path only: the eager step's
    products are cuBLAS's) makes the graph's first mini-batch differ from eager's: the graph
    fails its trial, eager runs, and the cache holds no graph speed to choose later."""
    from fastbp_cupy import emulator

    install(monkeypatch)
    real = emulator.gemm_tiled

    def wrong(*args, **kwargs):
        real(*args, **kwargs)
        emulator.Pointer(args[6])[0] += 0.25  # C: one output off in every product

    monkeypatch.setattr(emulator, "gemm_tiled", wrong)
    monkeypatch.setattr(emulator, "gemm_dot", wrong)
    with caplog.at_level(logging.INFO, logger="fastbp"):
        net, _ = train(backend(), epochs=1, **kw)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "graph" in warnings[0] and "differs" in warnings[0], warnings
    assert net.backend.last_epoch_path == "eager"
    (entry,) = cached(auto).values()
    assert entry["choice"] == "eager" and "graph" not in entry["speeds"]


def test_a_correct_graph_passes_its_verification_in_float32(monkeypatch, auto, caplog):
    """float32 on the stand-in: the graph and eager agree within the rounding bound, both are
    measured, nothing is rejected."""
    install(monkeypatch)
    be = CuPyBackend(dtype="float32")
    be.graph_steps = 3
    X, labels = data()
    net = fastbp.Network(SIZES, seed=3, device=be)
    with caplog.at_level(logging.INFO, logger="fastbp"):
        net.train(X, labels, epochs=1, batch_size=4, eta=3.0, momentum=0.5, dropout=0.2)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    (entry,) = cached(auto).values()
    assert set(entry["speeds"]) == {"graph", "eager"}
