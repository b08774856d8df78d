"""The planner: candidates measured once per machine and configuration, cached, reused; a
damaged or stale cache ignored with one warning; ``FASTBP_PLAN`` honoured; a busy machine on one
thread. (Speed itself is measured by the benchmarks, never asserted here.)"""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pytest

import fastbp
from fastbp.devices import planner

MACHINE = {"cpu": "test cpu", "cores": 2}


def fake_trials(calls: list[str]):
    speeds = {"a/x": 1.0, "b/x": 3.0, "c/x": 2.0}

    def trials():
        return {name: (lambda scale, name=name: calls.append(name) or speeds[name])
                for name in speeds}

    return trials


def test_the_fastest_is_measured_once_then_read_from_the_cache(auto):
    calls: list[str] = []
    first = planner.choose("k", ["a/x", "b/x", "c/x"], "a/x", fake_trials(calls), MACHINE)
    assert (first.name, first.source) == ("b/x", "measured")
    assert sorted(calls) == ["a/x"] * 4 + ["b/x"] * 4 + ["c/x"] * 4  # short, then long 3 times
    doc = json.loads(auto.read_text())
    assert doc["plans"]["k"]["choice"] == "b/x" and doc["fingerprint"] == MACHINE
    again = planner.choose("k", ["a/x", "b/x", "c/x"], "a/x", fake_trials(calls), MACHINE)
    assert (again.name, again.source) == ("b/x", "cache") and len(calls) == 12
    assert again.speeds == {"a/x": 1.0, "b/x": 3.0, "c/x": 2.0}


def test_measure_ignores_the_cache(auto, monkeypatch):
    calls: list[str] = []
    planner.choose("k", ["a/x", "b/x"], "a/x", fake_trials(calls), MACHINE)
    monkeypatch.setenv("FASTBP_PLAN", "measure")
    assert planner.choose("k", ["a/x", "b/x"], "a/x", fake_trials(calls),
                          MACHINE).source == "measured"
    assert len(calls) == 16  # measured twice, the two candidates four trials each


@pytest.mark.parametrize("content", ["{not json", '{"format": "other"}', "[]",
                                     '{"format": "fastbp-plans", "version": 1, "plans": 3}'])
def test_a_damaged_cache_is_ignored_with_one_warning_and_rewritten(auto, content, caplog):
    auto.parent.mkdir(parents=True, exist_ok=True)
    auto.write_text(content)
    with caplog.at_level(logging.WARNING, logger="fastbp"):
        for _ in range(3):
            choice = planner.choose("k", ["a/x", "b/x", "c/x"], "a/x", fake_trials([]), MACHINE)
            assert choice.name == "b/x"
            auto.write_text(content) if _ == 0 else None
    warned = [r.getMessage() for r in caplog.records if "plan cache" in r.getMessage()]
    assert len(warned) == 1 and "damaged" in warned[0] and str(auto) in warned[0]


def test_a_stale_cache_is_ignored_with_one_warning(auto, caplog):
    planner.choose("k", ["a/x", "b/x"], "a/x", fake_trials([]), MACHINE)
    other = {**MACHINE, "cpu": "another cpu"}
    with caplog.at_level(logging.WARNING, logger="fastbp"):
        choice = planner.choose("k", ["a/x", "b/x"], "a/x", fake_trials([]), other)
        planner.choose("j", ["a/x", "b/x"], "a/x", fake_trials([]), MACHINE)
    assert choice.source == "measured"
    warned = [r.getMessage() for r in caplog.records if "plan cache" in r.getMessage()]
    assert len(warned) == 1 and "differs in cpu" in warned[0]
    assert json.loads(auto.read_text())["fingerprint"] == MACHINE  # rewritten for this one


def test_off_gives_the_default_and_writes_nothing(auto, monkeypatch):
    monkeypatch.setenv("FASTBP_PLAN", "off")
    calls: list[str] = []
    choice = planner.choose("k", ["a/x", "b/x"], "a/x", fake_trials(calls), MACHINE)
    assert (choice.name, choice.source) == ("a/x", "default") and not calls
    assert not auto.exists()


def test_a_candidate_can_be_forced_by_name(auto, monkeypatch):
    monkeypatch.setenv("FASTBP_PLAN", "c")
    assert planner.choose("k", ["a/x", "c/x"], "a/x", fake_trials([]), MACHINE).name == "c/x"
    monkeypatch.setenv("FASTBP_PLAN", "zzz")
    with pytest.raises(fastbp.ConfigError, match="FASTBP_PLAN='zzz' is not a candidate"):
        planner.choose("k", ["a/x", "c/x"], "a/x", fake_trials([]), MACHINE)
    monkeypatch.setenv("FASTBP_PLAN", "a b")
    with pytest.raises(fastbp.ConfigError, match="FASTBP_PLAN"):
        planner.mode()


def test_a_candidate_that_fails_its_trial_is_not_chosen(auto, caplog):
    def trials():
        return {"a/x": lambda scale: 1.0, "b/x": lambda scale: 1 / 0}

    with caplog.at_level(logging.WARNING, logger="fastbp"):
        assert planner.choose("k", ["a/x", "b/x"], "b/x", trials, MACHINE).name == "a/x"
    assert any("b/x failed its trial" in r.getMessage() for r in caplog.records)


def test_a_busy_machine_records_the_default_without_measuring(auto):
    """A busy machine would skew the trials: the default is recorded, so a later quiet run
    takes the same plan (and a seed the same numbers); nothing was timed."""
    calls: list[str] = []
    choice = planner.choose("k", ["a/x", "b/x"], "a/x", fake_trials(calls), MACHINE, busy=True)
    assert (choice.name, choice.source) == ("a/x", "default, busy") and not calls
    assert json.loads(auto.read_text())["plans"]["k"]["choice"] == "a/x"
    quiet = planner.choose("k", ["a/x", "b/x"], "a/x", fake_trials(calls), MACHINE)
    assert (quiet.name, quiet.source) == ("a/x", "cache") and not calls


def test_a_disturbed_choice_is_measured_again_only_against_candidates_that_round_alike(auto):
    """:func:`planner.forget` marks a recorded choice; the next run measures it against the
    candidates of the same rounding only (here ``a`` and ``c``, not the faster ``b``)."""
    calls: list[str] = []
    rounding = {"a/x": "whole", "b/x": "halves", "c/x": "whole"}.__getitem__
    planner._record("k", "a/x", {"a/x": 9.0}, 0.0, MACHINE, None, busy=False)
    planner.forget("k", MACHINE)
    choice = planner.choose("k", ["a/x", "b/x", "c/x"], "b/x", fake_trials(calls), MACHINE,
                            rounding=rounding)
    assert set(calls) == {"a/x", "c/x"}
    assert (choice.name, choice.source) == ("c/x", "measured")  # 2.0 > 1.05 × 1.0


def test_a_candidate_that_fails_a_later_trial_is_never_chosen(auto):
    """A candidate that passes its short trial and fails the long one is left out and never
    recorded, however fast its short trial was."""
    def trials():
        def flaky(scale: int) -> float:
            if scale > 1:
                raise RuntimeError("thread died")
            return 100.0
        return {"a/x": lambda scale: 1.0, "b/x": flaky}

    choice = planner.choose("k", ["a/x", "b/x"], "a/x", trials, MACHINE)
    assert choice.name == "a/x" and "b/x" not in choice.speeds
    assert "b/x" not in json.loads(auto.read_text())["plans"]["k"]["speeds"]


def test_an_unwritable_cache_costs_only_a_warning(auto, monkeypatch, caplog, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("FASTBP_CACHE", str(blocker / "below"))
    with caplog.at_level(logging.WARNING, logger="fastbp"):
        assert planner.choose("k", ["a/x", "b/x"], "a/x", fake_trials([]), MACHINE).name == "b/x"
    assert any("cannot be written" in r.getMessage() for r in caplog.records)


# -- cpu-jit ----------------------------------------------------------------------------------
jit = pytest.importorskip("fastbp_numba.planning")
sources = pytest.importorskip("fastbp_numba.sources")


def data(n=jit.TRIAL_ROWS, sizes=(20, 8, 4), seed=0):  # the fewest rows that are measured
    rng = np.random.default_rng(seed)
    X = rng.random((sizes[0], n))
    return X, rng.integers(0, sizes[-1], n)


def plan_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "cpu-jit plan for" in r.getMessage()]


def test_cpu_jit_plans_a_configuration_once_and_reads_it_back(auto, caplog):
    X, labels = data()
    with caplog.at_level(logging.INFO, logger="fastbp"):
        net = fastbp.Network([20, 8, 4], device="cpu-jit", seed=1)
        net.train(X, labels, epochs=2, batch_size=10, eta=1.0)
        fastbp.Network([20, 8, 4], device="cpu-jit", seed=1).train(X, labels, epochs=1,
                                                                    batch_size=10, eta=1.0)
    lines = plan_lines(caplog)
    assert len(lines) == 2 and "(measured" in lines[0] and "(cache" in lines[1]
    key = "cpu-jit [20,8,4] m=10 float32"
    entry = json.loads(auto.read_text())["plans"][key]
    assert entry["choice"] in jit.candidates([20, 8, 4], 10, jit.TRIAL_ROWS)
    assert set(entry["speeds"]) <= set(jit.candidates([20, 8, 4], 10, jit.TRIAL_ROWS))


def test_cpu_jit_trials_are_real_steps_of_the_epoch(auto, monkeypatch):
    """The trials train: every sample of an epoch once, in its order, whichever candidate
    runs it. In float64 (the candidates round apart by ~1e-16) the epochs that measure give
    the network of epochs forced to one candidate all through; a trial that skipped or
    repeated steps would not."""
    X, labels = data()
    measured = fastbp.Network([20, 8, 4], device="cpu-jit", seed=3, dtype="float64")
    measured.train(X, labels, epochs=2, batch_size=10, eta=1.0)  # the trials fit two
    assert json.loads(auto.read_text())["plans"]["cpu-jit [20,8,4] m=10 float64"]["choice"]
    monkeypatch.setenv("FASTBP_PLAN", "one-thread")
    forced = fastbp.Network([20, 8, 4], device="cpu-jit", seed=3, dtype="float64")
    forced.train(X, labels, epochs=2, batch_size=10, eta=1.0)
    start = fastbp.Network([20, 8, 4], device="cpu-jit", seed=3, dtype="float64")
    for a, b, c in zip([*measured.weights, *measured.biases], [*forced.weights, *forced.biases],
                       [*start.weights, *start.biases]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
        assert np.abs(a - c).max() > 1e-3  # and it trained
    assert measured.rng.bit_generator.state == forced.rng.bit_generator.state


def test_cpu_jit_on_a_busy_machine_records_its_default(auto, monkeypatch, caplog):
    """Other processes busy during the trials skew them: the default is recorded instead."""
    monkeypatch.setattr(planner, "busy_since", lambda mark: True)
    X, labels = data()
    with caplog.at_level(logging.INFO, logger="fastbp"):
        fastbp.Network([20, 8, 4], device="cpu-jit").train(X, labels, epochs=2, batch_size=10,
                                                           eta=1.0)
    assert any("busy machine" in r.getMessage() and "fastbp tune" in r.getMessage()
               for r in caplog.records)
    entry = json.loads(auto.read_text())["plans"]["cpu-jit [20,8,4] m=10 float32"]
    assert entry["choice"] == jit.default([20, 8, 4], 10, jit.TRIAL_ROWS) and entry["busy"]


def test_a_busy_epoch_moves_only_to_a_plan_that_rounds_alike(monkeypatch, caplog):
    """Under load ``overlap`` moves to ``one-thread`` (the same steps in the same order); a
    split step (``two-threads``) keeps its plan: a seed's numbers never change mid-run."""
    from fastbp.core.plan import Cursor

    monkeypatch.setattr(planner, "busy_since", lambda mark: True)  # other processes ran

    class Plan:
        cursor = Cursor(np.arange(10_000))

    for name, after in (("overlap/mkl", "one-thread/mkl"), ("two-threads/mkl", "two-threads/mkl")):
        choice = planner.Choice(name, "cache", {name: 1e6})
        with caplog.at_level(logging.WARNING, logger="fastbp"):
            jit.after_epoch(Plan(), choice, seconds=1.0)  # the first epoch: loading, not judged
            assert choice.name == name
            jit.after_epoch(Plan(), choice, seconds=0.009)  # 1.1 M samples/s: as planned
            assert choice.name == name
            jit.after_epoch(Plan(), choice, seconds=0.1)  # 100 k samples/s: busy
        assert choice.name == after and jit.rounding(after) == jit.rounding(name)
    assert any("machine is busy" in r.getMessage() for r in caplog.records)


def test_a_slow_epoch_with_nothing_else_running_says_a_core_ran_slow(monkeypatch, caplog):
    """An epoch on two cores at a third of its trial's speed while no other process ran (a
    virtual machine's host slowing a core) is not blamed on a busy machine."""
    from fastbp.core.plan import Cursor

    monkeypatch.setattr(planner, "busy_since", lambda mark: False)  # nothing else ran

    class Plan:
        cursor = Cursor(np.arange(10_000))

    choice = planner.Choice("two-threads/mkl", "cache", {"two-threads/mkl": 1e6})
    with caplog.at_level(logging.WARNING, logger="fastbp"):
        jit.after_epoch(Plan(), choice, seconds=1.0)
        jit.after_epoch(Plan(), choice, seconds=0.03)
    (message,) = [r.getMessage() for r in caplog.records]
    assert "a core ran slow with nothing else running" in message and "busy" not in message
    assert choice.name == "two-threads/mkl"


def test_a_cached_plan_far_slower_than_its_epochs_is_measured_again(auto, caplog):
    """An epoch at over 1.5× its cached trial's speed means that trial ran while another
    process held a core: the entry is marked, and the next run measures anew. (The epochs that
    run trials, two here, and the first after them are not judged: four epochs.)"""
    X, labels = data()
    fastbp.Network([20, 8, 4], device="cpu-jit").train(X, labels, epochs=2, batch_size=10,
                                                       eta=1.0)
    key = "cpu-jit [20,8,4] m=10 float32"
    doc = json.loads(auto.read_text())
    assert key in doc["plans"]
    doc["plans"][key]["speeds"] = {k: 1.0 for k in doc["plans"][key]["speeds"]}  # "disturbed"
    auto.write_text(json.dumps(doc))
    with caplog.at_level(logging.INFO, logger="fastbp"):
        fastbp.Network([20, 8, 4], device="cpu-jit").train(X, labels, epochs=4, batch_size=10,
                                                           eta=1.0)
    assert json.loads(auto.read_text())["plans"][key]["remeasure"]
    assert any("that trial was disturbed" in r.getMessage() for r in caplog.records)


def test_an_epoch_too_short_for_a_trial_is_not_measured_or_cached(auto, caplog):
    """A plan of fewer rows than one trial (a benchmark's single step, a small test) runs the
    default and leaves the cache alone: a few rows would rank the candidates by noise."""
    X, labels = data(n=jit.TRIAL_ROWS - 10)
    with caplog.at_level(logging.INFO, logger="fastbp"):
        fastbp.Network([20, 8, 4], device="cpu-jit").train(X, labels, epochs=1, batch_size=10,
                                                           eta=1.0)
    (line,) = plan_lines(caplog)
    assert "too few rows to measure" in line and not auto.exists()


def test_the_default_plan_follows_the_fixed_rules(monkeypatch):
    from fastbp.devices.cpu import blas_threads, prefetch

    monkeypatch.setattr(prefetch, "cores", lambda: 2)
    monkeypatch.setattr(jit, "library_threads", lambda: 2)
    monkeypatch.setenv(blas_threads.ENV_VAR, "0")  # every step threaded
    assert jit.default([784, 30, 10], 100, 50_000).startswith("two-threads/")
    assert jit.default([784, 1024, 1024, 10], 256, 50_000).startswith("blas-threads/")
    monkeypatch.setenv(blas_threads.ENV_VAR, str(10**15))  # no step threaded
    assert jit.default([784, 30, 10], 10, 50_000).startswith("overlap/")
    assert jit.default([784, 30, 10], 10, 1_000).startswith("one-thread/")


def test_the_fastest_four_are_measured_again_on_a_longer_trial(auto):
    """Successive halving: a short trial for every candidate, then trials four times as long
    for the four fastest, whose figures decide (a short trial flatters a quick start)."""
    short = {"a/x": 5.0, "b/x": 4.0, "c/x": 3.0, "d/x": 2.0, "e/x": 1.0, "f/x": 0.5}
    long = {"a/x": 1.0, "b/x": 2.0, "c/x": 6.0, "d/x": 3.0}
    scales: list[tuple[str, int]] = []

    def trials():
        return {name: (lambda scale, name=name: scales.append((name, scale))
                       or (short if scale == 1 else long)[name]) for name in short}

    choice = planner.choose("k", list(short), "a/x", trials, MACHINE)
    assert choice.name == "c/x"
    assert sorted(n for n, s in scales if s == 4) == sorted(["a/x", "b/x", "c/x", "d/x"]
                                                            * planner.ROUNDS)
    assert sorted(n for n, s in scales if s == 1) == sorted(short)


def test_the_default_stands_unless_a_candidate_is_clearly_faster(auto):
    """Trials are short and machines noisy: the device's fixed rule is kept unless another
    candidate measures at least 5 % faster."""
    def trials(speeds):
        return lambda: {name: (lambda scale, v=v: v) for name, v in speeds.items()}

    near = planner.choose("k1", ["a/x", "b/x"], "a/x", trials({"a/x": 1.0, "b/x": 1.03}), MACHINE)
    assert near.name == "a/x" and near.speeds == {"a/x": 1.0, "b/x": 1.03}
    far = planner.choose("k2", ["a/x", "b/x"], "a/x", trials({"a/x": 1.0, "b/x": 1.2}), MACHINE)
    assert far.name == "b/x"


# -- one test per rule of the planner --------------------------------------------------------
def trials_of(speed):
    """Stand-in candidates: ``speed(name, scale, call)`` samples/s on the ``call``-th trial."""
    calls: dict[str, int] = {}

    def trials():
        def run(name, scale):
            calls[name] = calls.get(name, 0) + 1
            return speed(name, scale, calls[name])
        return {n: (lambda scale, n=n: run(n, scale)) for n in ("a/x", "b/x", "c/x", "d/x",
                                                                "e/x", "f/x")}
    return trials, calls


CANDIDATES = ["a/x", "b/x", "c/x", "d/x", "e/x", "f/x"]


def test_the_choice_is_the_fastest_on_long_trials_not_the_fastest_starter(auto):
    """``f`` starts slowly (threads starting) and runs fastest; ``b`` starts fast and slows
    down: the long trials decide, and only the short trial's four fastest get them."""
    base = {"a/x": 100, "b/x": 400, "c/x": 120, "d/x": 130, "e/x": 90, "f/x": 150}

    def speed(name, scale, call):
        if name == "f/x":
            return 150.0 if scale == 1 else 500.0
        if name == "b/x":
            return 400.0 if scale == 1 else 200.0
        return float(base[name])

    trials, calls = trials_of(speed)
    choice = planner.choose("k", CANDIDATES, "a/x", trials, MACHINE)
    assert choice.name == "f/x" and choice.speeds["f/x"] == 500.0
    long_trialled = {n for n, c in calls.items() if c > 1}
    assert long_trialled == {"b/x", "f/x", "d/x", "c/x", "a/x"}  # four fastest + the default
    assert calls["e/x"] == 1


def test_the_median_of_three_long_trials_counts(auto):
    """A moment of noise in one long trial cannot decide, either way: ``b``'s disturbed round
    does not sink it, and ``c``'s one lucky round does not lift it past ``b``."""
    def speed(name, scale, call):
        if name == "b/x" and call == 2:  # b's first long trial was disturbed
            return 10.0
        if name == "c/x" and call == 3:  # c's second long trial was lucky
            return 1000.0
        return {"b/x": 300.0, "c/x": 150.0}.get(name, 100.0)

    trials, calls = trials_of(speed)
    choice = planner.choose("k", CANDIDATES, "a/x", trials, MACHINE)
    assert choice.name == "b/x" and choice.speeds["c/x"] == 150.0
    assert calls["b/x"] == 1 + planner.ROUNDS


def test_no_candidate_is_timed_beside_a_spinning_thread_pool(auto):
    """``e`` uses a BLAS library's threads, which keep spinning after its trials and halve the
    speed of the next two trials of the others on the other core (``f``, two threads of its
    own, is the fastest when timed alone). With ``spins`` every trial of the others runs before
    any of ``e``'s, so ``f`` is chosen; without it, timed in the usual order, ``f`` is not."""
    base = {"a/x": 100.0, "b/x": 110.0, "c/x": 120.0, "d/x": 130.0, "e/x": 150.0, "f/x": 170.0}
    order = ["a/x", "b/x", "c/x", "e/x", "f/x", "d/x"]

    def candidates(spins):
        pool = {"left": 0}
        calls: list[str] = []

        def run(name, scale):
            calls.append(name)
            if name == "e/x":
                pool["left"] = 2
                return base[name]
            slowed = pool["left"] > 0
            pool["left"] = max(0, pool["left"] - 1)
            return base[name] / 2 if slowed else base[name]

        def trials():
            return {n: (lambda scale, n=n: run(n, scale)) for n in order}

        choice = planner.choose(f"k{len(spins)}", order, "a/x", trials, MACHINE, spins=spins)
        return choice, calls

    chosen, calls = candidates(spins={"e/x"})
    assert chosen.name == "f/x" and chosen.speeds["f/x"] == 170.0
    assert calls.index("e/x") > max(i for i, n in enumerate(calls) if n != "e/x")
    unaware, _ = candidates(spins=set())
    assert unaware.name == "e/x"  # f's trials after e's fell beside the spinning pool


@pytest.mark.parametrize("b_speed,chosen", [(104.0, "a/x"), (106.0, "b/x")])
def test_the_default_stands_unless_another_is_five_percent_faster(auto, b_speed, chosen):
    trials, _ = trials_of(lambda name, scale, call: {"b/x": b_speed}.get(name, 100.0))
    assert planner.choose("k", CANDIDATES, "a/x", trials, MACHINE).name == chosen


def test_the_default_is_always_measured_in_full(auto):
    """However slow its short trial, the default gets the long trials (the margin compares
    like with like)."""
    trials, calls = trials_of(lambda name, scale, call: 1.0 if name == "a/x" else 100.0)
    planner.choose("k", CANDIDATES, "a/x", trials, MACHINE)
    assert calls["a/x"] == 1 + planner.ROUNDS


def test_off_and_forced_modes_measure_nothing(auto, monkeypatch):
    trials, calls = trials_of(lambda name, scale, call: 100.0)
    monkeypatch.setenv("FASTBP_PLAN", "off")
    assert planner.choose("k", CANDIDATES, "c/x", trials, MACHINE).source == "default"
    monkeypatch.setenv("FASTBP_PLAN", "e")
    assert planner.choose("k", CANDIDATES, "c/x", trials, MACHINE).name == "e/x"
    assert not calls and not auto.exists()


def test_the_fingerprint_names_what_makes_timings_comparable(monkeypatch):
    """A cache shared between machines must not lend one CPU's plan to another: the
    fingerprint holds the CPU model, the cores, the library versions and the BLAS variables."""
    import os
    import platform

    from fastbp.devices.cpu.backend import cpu_model

    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    info = planner.fingerprint({"gemm": {"mkl": "2026.2"}})
    assert info["cpu"] == cpu_model() and info["cpu"]
    assert info["cores"] == os.cpu_count() and info["machine"] == platform.machine()
    assert info["numpy"] == np.__version__ and info["python"] == platform.python_version()
    assert info["env"] == {"OPENBLAS_NUM_THREADS": "1"} and info["gemm"] == {"mkl": "2026.2"}
    other = dict(info, cpu="another CPU")
    assert planner.digest(other) != planner.digest(info)


def test_the_cpu_jit_fingerprint_holds_the_gemm_libraries_and_numba():
    import numba

    info = jit.fingerprint()
    assert info["numba"] == numba.__version__ and set(info["gemm"]) == {"mkl", "openblas"}
    assert "blas_threads" in info and info["cpu"]
    assert info["kernels"] == sources.kernels_digest()


def test_a_plan_timed_on_other_kernels_is_not_reused(tmp_path):
    """The fingerprint holds a hash of the compiled steps' sources: a change in any of them
    (an upgrade) gives another fingerprint, so its plans are measured again."""
    for name in sources.KERNEL_SOURCES:
        (tmp_path / name).write_text(f"# {name}\n")
    before = sources.kernels_digest(tmp_path)
    for name in sources.KERNEL_SOURCES:
        sources.kernels_digest.cache_clear()
        text = (tmp_path / name).read_text()
        (tmp_path / name).write_text(text + "x = 1\n")
        assert sources.kernels_digest(tmp_path) != before, name
        (tmp_path / name).write_text(text)
    sources.kernels_digest.cache_clear()
    assert sources.kernels_digest(tmp_path) == before


def test_a_plan_from_another_cpu_is_not_reused(auto):
    calls: list[str] = []
    planner.choose("k", ["a/x", "b/x"], "a/x", fake_trials(calls), MACHINE)
    elsewhere = dict(MACHINE, cpu="another cpu")
    choice = planner.choose("k", ["a/x", "b/x"], "a/x", fake_trials(calls), elsewhere)
    assert choice.source == "measured"


BOOK = [784, 30, 10]
WIDE = [784, 100, 10]
BIG = [784, 1024, 1024, 10]
FOUR = ["one-thread/openblas", "overlap/openblas", "two-threads/openblas",
        "blas-threads/openblas"]


@pytest.mark.parametrize("sizes,m,warm,timed", [
    (BOOK, 1, 2048, 4199), (BOOK, 10, 204, 420), (BOOK, 100, 20, 42), (BOOK, 1000, 2, 5),
    (BOOK, 10_000, 1, 1), (WIDE, 10, 126, 410), (WIDE, 100, 13, 41), (WIDE, 1000, 2, 5),
    (BIG, 256, 1, 1), (BIG, 1024, 1, 1)])
def test_cpu_jit_trials_are_sized_by_rows_and_work(sizes, m, warm, timed):
    """A timed trial holds TRIAL_ROWS rows (whole chunks gathered ahead) or TRIAL_WORK
    multiply-adds, whichever is more, and at most four times that work (a big network's step
    alone); its warm-up a chunk, or one long step. Four candidates, 50,000 samples."""
    assert jit.trial_steps(sizes, m, 50_000, 4) == (warm, timed)


@pytest.mark.parametrize("sizes,m", [(BOOK, 10), (BOOK, 100), (WIDE, 100), (BIG, 256),
                                     (BIG, 1024)])
def test_cpu_jit_trials_of_four_candidates_fit_two_epochs(sizes, m):
    trials = jit.schedule(sizes, m, 50_000, FOUR)
    assert trials[-1].start + trials[-1].steps <= jit.TRIAL_EPOCHS * 50_000 // m


def test_cpu_jit_a_small_epoch_shrinks_the_trials_to_fit():
    warm, timed = jit.trial_steps([40, 16, 10], 10, 4192, 4)
    assert 1 <= warm < timed
    trials = jit.schedule([40, 16, 10], 10, 4192, FOUR)
    assert trials[-1].start + trials[-1].steps <= 2 * 419


def test_cpu_jit_trials_are_rounds_in_turn_each_warmed_up_the_spinning_pool_last():
    """Each timed trial follows an untimed warm-up of its own candidate; the candidates take
    ROUNDS trials in turn, ``blas-threads`` (whose pool spins on after it) after every other
    trial. The trials follow each other from the run's first step, and the same configuration
    gives the same schedule (every run trains the same steps)."""
    trials = jit.schedule(BOOK, 10, 50_000, FOUR)
    assert trials == jit.schedule(BOOK, 10, 50_000, list(FOUR))
    names = [t.name.split("/")[0] for t in trials[::2]]
    quiet = ["one-thread", "overlap", "two-threads"]
    assert names == quiet * jit.ROUNDS + ["blas-threads"] * jit.ROUNDS
    assert all(not w.timed and t.timed and w.name == t.name
               for w, t in zip(trials[::2], trials[1::2]))
    assert all(t.steps == 420 for t in trials[1::2])  # timed
    first = {0, 2, 4, 18}  # a candidate's first warm-up (the first round) is as long
    assert all(t.steps == (420 if i in first else 204) for i, t in enumerate(trials) if i % 2 == 0)
    assert [t.start for t in trials] == [sum(u.steps for u in trials[:i])
                                         for i in range(len(trials))]


def test_cpu_jit_an_epoch_too_short_or_a_single_candidate_has_no_trials():
    assert jit.schedule(BOOK, 10, jit.TRIAL_ROWS - 1, FOUR) == ()
    assert jit.schedule(BOOK, 10, 50_000, FOUR[:1]) == ()


def trained_choice(pace) -> planner.Choice:
    """The choice after the first two epochs (where the trials are) of a plan of 8,192 rows
    at batch 64, ``pace(name, call)`` the seconds a row of candidate ``name`` takes in its
    ``call``-th run."""
    rng = np.random.default_rng(0)
    net = fastbp.Network([20, 8, 5], device="cpu-jit", seed=1)
    X = rng.random((20, 8192)).astype(np.float32)
    plan = net.epoch_plan(X, rng.integers(0, 5, 8192), batch_size=64, eta=0.1)
    plan.start(net.backend.index_array(rng.permutation(8192)))
    calls: dict[str, int] = {}

    def run(p, name):
        calls[name] = calls.get(name, 0) + 1
        time.sleep(int(p.cursor.order.shape[0]) * pace(name, calls[name]))
        return 0.0

    choice = jit.choose(net.backend, plan)
    for epoch in range(jit.TRIAL_EPOCHS):  # the trials span the first two epochs
        plan.start(plan.cursor.order, 0, 0, epoch)
        jit.run_epoch(plan, choice, run)
    return choice


THREE = ["one-thread/openblas", "overlap/openblas", "two-threads/openblas"]
KEY64 = "cpu-jit [20,8,5] m=64 float32"


@pytest.mark.parametrize("faster,after,says", [
    ("one-thread/openblas", "one-thread/openblas", "the same numbers"),
    ("two-threads/openblas", "overlap/openblas", "fastbp tune")])
def test_cpu_jit_a_recorded_choice_is_checked_against_each_runs_trials(
        auto, monkeypatch, caplog, faster, after, says):
    """A run that reads a choice back trains its trials again and times them: a candidate that
    rounds as the recorded one and runs 1.25× as fast takes over (recorded; the numbers stay),
    one that rounds otherwise is named with `fastbp tune` (the plan stays)."""
    monkeypatch.setattr(jit, "candidates", lambda sizes, m, rows: THREE)
    monkeypatch.setattr(jit, "default", lambda sizes, m, rows: THREE[0])
    planner._record(KEY64, "overlap/openblas", {n: 1e6 for n in THREE}, 0.0, jit.fingerprint(),
                    None, busy=False, extra={"finalists": jit.every_round(THREE)})
    with caplog.at_level(logging.INFO, logger="fastbp"):
        choice = trained_choice(lambda name, call: 1e-7 if name == faster else 1e-6)
    assert choice.name == after
    assert json.loads(auto.read_text())["plans"][KEY64]["choice"] == after
    assert any("ran at" in r.getMessage() and says in r.getMessage() for r in caplog.records)


def measured_choice(pace) -> planner.Choice:
    """The choice a fresh cache's trials settle (:func:`trained_choice`)."""
    choice = trained_choice(pace)
    assert choice.source == "measured"
    return choice


def test_cpu_jit_the_choice_is_the_fastest_after_its_first_steps(auto, monkeypatch):
    """Stand-in candidates whose speed changes after their first steps: one fast on its
    first call (a warm-up) and slow after it, one slow to start (loading its code) and fast
    after. The choice is the one fastest on the timed trials, not the fastest starter."""
    names = ["one-thread/openblas", "overlap/openblas", "two-threads/openblas"]
    monkeypatch.setattr(jit, "candidates", lambda sizes, m, rows: names)
    monkeypatch.setattr(jit, "default", lambda sizes, m, rows: names[0])
    row = 2e-6

    def pace(name, call):
        if name == names[1]:  # a fast starter
            return row / 10 if call == 1 else 3 * row
        if name == names[2]:  # a slow starter
            return 50 * row if call == 1 else row / 2
        return row

    choice = measured_choice(pace)
    assert (choice.name, choice.source) == (names[2], "measured")
    assert choice.speeds[names[2]] > choice.speeds[names[0]] > choice.speeds[names[1]]


def test_cpu_jit_a_candidate_far_behind_after_one_trial_takes_no_more(auto, monkeypatch):
    """Successive halving on real steps: a candidate under 70 % of the fastest after its first
    trial takes no more (its slow steps are training time lost), nor one under 80 % after its
    second, the default too; the finalists are recorded with the choice, so a run that reads
    it back trains the same trials."""
    names = ["one-thread/openblas", "overlap/openblas", "two-threads/openblas"]
    monkeypatch.setattr(jit, "candidates", lambda sizes, m, rows: names)
    monkeypatch.setattr(jit, "default", lambda sizes, m, rows: names[1])
    timed: list[str] = []

    def pace(name, call):
        timed.append(name)
        # overlap (the default) far behind, two-threads behind by 1/4
        return {names[0]: 1e-5, names[1]: 5e-5, names[2]: 1.33e-5}[name]  # sleeps of ms

    choice = measured_choice(pace)
    assert choice.name == names[0]
    # calls: a warm-up and a timed trial a round (a trial may run in two calls across an
    # epoch's end)
    assert 2 <= timed.count(names[1]) <= 3 and 4 <= timed.count(names[2]) <= 5
    assert timed.count(names[0]) >= 2 * jit.ROUNDS
    entry = json.loads(auto.read_text())["plans"]["cpu-jit [20,8,5] m=64 float32"]
    assert entry["finalists"] == [[[names[0], names[2]], [names[0]]]]


@pytest.mark.parametrize("slow_starter,chosen", [
    ("two-threads/openblas", "two-threads/openblas"), ("overlap/openblas", "one-thread/openblas")])
def test_cpu_jit_a_two_core_candidate_slowed_in_its_first_trial_takes_the_next(
        auto, monkeypatch, slow_starter, chosen):
    """A second core that runs a slow stretch during a candidate's first trial (its warm-up
    and timed steps at half the fastest's speed) does not end a candidate that computes on two
    cores: its next trials show it fastest. One that computes on one core, as slow, is done."""
    names = ["one-thread/openblas", "overlap/openblas", "two-threads/openblas"]
    monkeypatch.setattr(jit, "candidates", lambda sizes, m, rows: names)
    monkeypatch.setattr(jit, "default", lambda sizes, m, rows: names[0])
    row = 1e-5  # sleeps of milliseconds: a loaded machine's scheduling noise is small beside them

    def pace(name, call):
        if name == slow_starter:
            return row / 0.5 if call <= 2 else row / 1.5
        return row if name == names[0] else 4 * row

    choice = measured_choice(pace)
    assert choice.name == chosen


def test_cpu_jit_a_candidate_that_fails_a_later_trial_is_never_chosen(auto, monkeypatch):
    """A candidate that passes its warm-up and first trial, then fails, is left out however
    fast it was: its steps run again as one-thread (the parameters put back)."""
    names = ["one-thread/openblas", "two-threads/openblas"]
    monkeypatch.setattr(jit, "candidates", lambda sizes, m, rows: names)
    monkeypatch.setattr(jit, "default", lambda sizes, m, rows: names[0])

    def pace(name, call):
        if name == names[1] and call > 2:
            raise RuntimeError("thread died")
        return 1e-7 if name == names[1] else 1e-6

    choice = measured_choice(pace)
    assert choice.name == names[0] and names[1] not in choice.speeds


def test_tune_runs_every_trial_of_a_configuration_over_its_epochs(auto):
    """``tune_plan`` (``fastbp tune``) runs the trials now, across epochs and as they are laid
    out group by group: every candidate gets timed, the spinning pool's last, and the choice
    is settled and recorded."""
    X, labels = data(n=jit.TRIAL_ROWS + 200)
    net = fastbp.Network([20, 8, 4], device="cpu-jit", seed=1)
    plan = net.epoch_plan(X, labels, batch_size=10, eta=0.5)
    plan.start(net.backend.index_array(np.arange(X.shape[1])))
    choice = net.backend.tune_plan(plan)
    options = jit.candidates([20, 8, 4], 10, X.shape[1])
    assert choice.source == "measured" and set(choice.speeds) == set(options)
    assert json.loads(auto.read_text())["plans"]["cpu-jit [20,8,4] m=10 float32"]["choice"]
    from fastbp_numba.cache import JitCache

    trials = plan.cache.of(JitCache).trials[choice.key]
    timed = [i for i, t in enumerate(trials.schedule) if t.timed]
    # every timed trial ran whole (the one over an epoch's end holds its short last batch)
    assert all((trials.schedule[i].steps - 1) * 10 < trials.rows.get(i, 0)
               <= trials.schedule[i].steps * 10 for i in timed)


def test_tune_reports_what_planning_cost_beside_a_30_epoch_run(tmp_path, monkeypatch, capsys):
    """`fastbp tune` sets each configuration's measuring time against 30 epochs of its samples
    at the chosen candidate's speed (the issue's yardstick for what planning may cost)."""
    from fastbp.cli import main, tune

    choice = planner.Choice("a/x", "measured", {"a/x": 500_000.0}, seconds=0.6)
    # 30 epochs of 50,000 samples at 500k/s take 3 s: 0.6 s of measuring is a fifth of that
    assert tune.planning_share(choice, 50_000) == pytest.approx(0.2)
    assert tune._outcome(choice, 50_000) == ("measuring cost 0.6 s (20.0% of 30 epochs), "
                                             "recorded")
    assert tune.planning_share(planner.Choice("a/x", "default"), 50_000) is None
    monkeypatch.setenv(planner.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv(planner.ENV_VAR, "auto")  # tune sets it to measure: restored after
    assert main(["tune", "--sizes", "20,8,5", "--batch-sizes", "64", "--samples", "8192"]) == 0
    row = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("cpu-jit [20,8,5]")]
    assert len(row) == 1 and "% of 30 epochs)" in row[0]  # "recorded", or "not" on a busy machine
