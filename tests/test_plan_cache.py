"""The plan cache as a file: only a regular file of a sane size is read, never waited on; a
damaged file or plan costs one warning and a new measurement, never a crash; writes go through
a temporary file of an unpredictable name, and concurrent writers keep each other's plans."""

from __future__ import annotations

import json
import logging
import os
import threading

import pytest
from nonregular import link_to_dev_zero, make_fifo, needs_dev_zero, needs_fifo, returns_within

from fastbp.cli import devices as devices_cli
from fastbp.devices import plancache, planner

MACHINE = {"cpu": "test cpu", "cores": 2}
CANDIDATES = ["a/x", "b/x", "c/x"]


def trials():
    speeds = {"a/x": 1.0, "b/x": 3.0, "c/x": 2.0}
    return {name: (lambda scale, name=name: speeds[name]) for name in speeds}


def choose():
    return planner.choose("k", CANDIDATES, "a/x", trials, MACHINE)


def cache_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "plan cache" in r.getMessage()]


def document(plans: dict) -> str:
    return json.dumps({"format": "fastbp-plans", "version": 1, "fingerprint": MACHINE,
                       "plans": plans})


@needs_fifo
def test_a_fifo_as_the_cache_is_refused_with_one_warning_never_waited_on(auto, caplog):
    make_fifo(auto)
    with caplog.at_level(logging.WARNING, logger="fastbp"):
        assert returns_within(10, lambda: planner.read_cache(MACHINE), fifo=auto) == {}
        assert "none readable" in returns_within(10, devices_cli.plans_line, fifo=auto)
        choice = returns_within(10, choose, fifo=auto)
    assert (choice.name, choice.source) == ("b/x", "measured")
    [warned] = cache_warnings(caplog)
    assert "cannot be read (it is a FIFO (named pipe)" in warned and str(auto) in warned
    assert json.loads(auto.read_text())["plans"]["k"]["choice"] == "b/x"  # rewritten


@needs_dev_zero
def test_a_link_to_dev_zero_as_the_cache_is_refused_unread(auto, caplog):
    link_to_dev_zero(auto)
    with caplog.at_level(logging.WARNING, logger="fastbp"):
        assert returns_within(10, lambda: planner.read_cache(MACHINE)) == {}
    [warned] = cache_warnings(caplog)
    assert "it is a character device" in warned


def test_a_cache_larger_than_the_cap_is_refused_unread(auto, caplog):
    auto.write_text(document({"k": {"choice": "b/x", "speeds": {}}})
                    + " " * plancache.MAX_CACHE_BYTES)
    with caplog.at_level(logging.WARNING, logger="fastbp"):
        assert planner.read_cache(MACHINE) == {}
    [warned] = cache_warnings(caplog)
    assert f"more than the most a plan cache holds ({plancache.MAX_CACHE_BYTES:,} bytes)" in warned


def test_a_deeply_nested_cache_is_damaged_not_a_crash(auto, caplog):
    auto.write_text("[" * 200_000 + "]" * 200_000)
    with caplog.at_level(logging.WARNING, logger="fastbp"):
        assert choose().name == "b/x"
    [warned] = cache_warnings(caplog)
    assert "is damaged (nested too deeply)" in warned


@pytest.mark.parametrize("entry, why", [
    ({"choice": "b/x", "speeds": {"b/x": "fast"}}, "the speed of b/x is 'fast'"),
    ({"choice": "b/x", "speeds": {"b/x": None}}, "the speed of b/x is None"),
    ({"choice": "b/x", "speeds": {"b/x": True}}, "the speed of b/x is True"),
    ({"choice": "b/x", "speeds": [3.0]}, "speeds is a list"),
    ({"choice": ["b/x"], "speeds": {}}, "choice ['b/x'] is not a name"),
    ({"choice": 3, "speeds": {}}, "choice 3 is not a name"),
    ("b/x", "a str, not an object")])
def test_a_damaged_plan_is_measured_again_with_one_warning(auto, caplog, entry, why):
    auto.write_text(document({"k": entry, "other": {"choice": "a/x", "speeds": {"a/x": 1.0}}}))
    with caplog.at_level(logging.WARNING, logger="fastbp"):
        for _ in range(3):
            choice = choose()
            assert choice.name == "b/x" and choice.speeds["b/x"] == 3.0
    [warned] = cache_warnings(caplog)
    assert f"is damaged ('k': {why}" in warned and "measured again" in warned
    plans = json.loads(auto.read_text())["plans"]
    assert plans["k"]["choice"] == "b/x" and plans["other"]["choice"] == "a/x"  # kept


def test_a_nan_speed_is_a_damaged_plan(auto, caplog):
    auto.write_text(document({"k": {"choice": "b/x", "speeds": {"b/x": float("nan")}}}))
    with caplog.at_level(logging.WARNING, logger="fastbp"):
        assert choose().source == "measured"
    assert "the speed of b/x is nan" in cache_warnings(caplog)[0]


def test_a_link_planted_at_a_temporary_name_is_never_followed(auto, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    for name in (f".plans.json.{os.getpid()}.tmp", ".plans.json.tmp"):
        (tmp_path / name).symlink_to(victim)
    planner.write_cache(MACHINE, {"k": {"choice": "b/x", "speeds": {"b/x": 3.0}}})
    assert victim.read_text() == "keep me"
    assert json.loads(auto.read_text())["plans"]["k"]["choice"] == "b/x"
    assert not auto.is_symlink()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([".plans.json.tmp", f".plans.json.{os.getpid()}.tmp", "plans.json",
                           "victim.txt"])  # no temporary of its own left behind


def test_temporary_names_are_unpredictable_and_created_exclusively(auto, monkeypatch):
    made = []
    real = plancache.tempfile.mkstemp
    monkeypatch.setattr(plancache.tempfile, "mkstemp",
                        lambda **kw: made.append(real(**kw)) or made[-1])
    for i in range(3):
        planner.write_cache(MACHINE, {f"k{i}": {"choice": "a/x", "speeds": {}}})
    names = [os.path.basename(path) for _, path in made]  # mkstemp: O_CREAT | O_EXCL
    assert len(set(names)) == 3 and all(n.startswith(".plans.json.") for n in names)
    assert f".plans.json.{os.getpid()}.tmp" not in names


def test_four_threads_writing_at_once_keep_every_plan(auto, caplog):
    rounds, barrier = 25, threading.Barrier(4)
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            barrier.wait()
            for r in range(rounds):  # as choose does: read the plans, add one, write them
                plans = planner.read_cache(MACHINE)
                plans[f"t{t}-{r}"] = {"choice": "a/x", "speeds": {"a/x": float(r)}}
                planner.write_cache(MACHINE, plans)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    with caplog.at_level(logging.WARNING, logger="fastbp"):
        threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
    assert errors == [] and cache_warnings(caplog) == []
    plans = json.loads(auto.read_text())["plans"]
    assert sorted(plans) == sorted(f"t{t}-{r}" for t in range(4) for r in range(rounds))
    assert [p.name for p in auto.parent.iterdir()] == ["plans.json"]


def test_writers_of_different_sections_keep_each_other(auto):
    barrier = threading.Barrier(4)

    def writer(t: int) -> None:
        barrier.wait()
        planner.write_cache({"gpu": t}, {"k": {"choice": "x", "speeds": {}}}, section=f"s{t}")

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    sections = json.loads(auto.read_text())["sections"]
    assert sorted(sections) == ["s0", "s1", "s2", "s3"]
    assert all(sections[f"s{t}"]["fingerprint"] == {"gpu": t} for t in range(4))


def test_forget_marks_one_plan_and_keeps_the_others(auto):
    planner.write_cache(MACHINE, {"a": {"choice": "a/x", "speeds": {}},
                                  "b": {"choice": "b/x", "speeds": {}}})
    planner.forget("a", MACHINE)
    plans = planner.read_cache(MACHINE)
    assert sorted(plans) == ["a", "b"] and plans["a"]["remeasure"] and "remeasure" not in plans["b"]
    planner.write_cache(MACHINE, {}, drop=("a",))
    assert sorted(planner.read_cache(MACHINE)) == ["b"]
    planner.write_cache({"cpu": "another"}, {"c": {"choice": "c/x", "speeds": {}}})
    assert sorted(planner.read_cache({"cpu": "another"})) == ["c"]  # another machine: replaced


def test_plans_of_other_settings_are_kept_and_found_again(auto, caplog):
    """A run under other settings (a one-thread benchmark row, another BLAS) plans for its own
    fingerprint without throwing this one's plans away: switching back finds them, silently."""
    one_thread = {**MACHINE, "env": {"OPENBLAS_NUM_THREADS": "1"}}
    planner.write_cache(MACHINE, {"a": {"choice": "a/x", "speeds": {}}})
    planner.write_cache(one_thread, {"b": {"choice": "b/x", "speeds": {}}})
    with caplog.at_level(logging.WARNING, logger="fastbp"):
        assert sorted(planner.read_cache(MACHINE)) == ["a"]
        assert sorted(planner.read_cache(one_thread)) == ["b"]
    assert not cache_warnings(caplog)
    planner.write_cache(MACHINE, {"c": {"choice": "c/x", "speeds": {}}})  # back: added to "a"
    assert sorted(planner.read_cache(MACHINE)) == ["a", "c"]
    assert sorted(planner.read_cache(one_thread)) == ["b"]
    doc = json.loads(auto.read_text())
    assert doc["fingerprint"] == MACHINE and len(doc["earlier"]) == 1


def test_the_newest_settings_are_kept_the_oldest_dropped(auto):
    settings = [{**MACHINE, "env": {"FASTBP_BLAS": str(i)}}
                for i in range(plancache.KEPT_SETTINGS + 2)]
    for i, machine in enumerate(settings):
        planner.write_cache(machine, {f"k{i}": {"choice": "a/x", "speeds": {}}})
    doc = json.loads(auto.read_text())
    assert len(doc["earlier"]) == plancache.KEPT_SETTINGS
    assert planner.read_cache(settings[0]) == {}  # the oldest went
    assert sorted(planner.read_cache(settings[1])) == ["k1"]
    assert sorted(planner.read_cache(settings[-1])) == [f"k{len(settings) - 1}"]


def test_a_malformed_list_of_earlier_plans_is_left_out(auto, caplog):
    auto.write_text(json.dumps({"format": "fastbp-plans", "version": 1, "fingerprint": MACHINE,
                                "plans": {"a": {"choice": "a/x", "speeds": {}}},
                                "earlier": [3, {"fingerprint": "x"}, {"plans": {}}, None]}))
    assert planner.read_cache({"cpu": "other"}) == {}
    planner.write_cache({"cpu": "other"}, {"b": {"choice": "b/x", "speeds": {}}})
    assert sorted(planner.read_cache(MACHINE)) == ["a"]
    assert json.loads(auto.read_text())["earlier"] == [
        {"fingerprint": MACHINE, "plans": {"a": {"choice": "a/x", "speeds": {}}}}]


def test_fastbp_devices_names_plans_recorded_on_a_busy_machine(auto):
    """A plan recorded on a busy machine is the fixed rule, kept until measured: `fastbp
    devices` counts them and names `fastbp tune`; it also says other settings' plans are kept."""
    planner.write_cache(MACHINE, {"a": {"choice": "a/x", "speeds": {}, "busy": True},
                                  "b": {"choice": "b/x", "speeds": {}, "busy": False}})
    line = devices_cli.plans_line()
    assert "1 of them recorded on a busy machine" in line and "fastbp tune" in line
    planner.write_cache({"cpu": "other"}, {"c": {"choice": "c/x", "speeds": {}}})
    assert "plans of 1 other setting kept" in devices_cli.plans_line()


def test_fastbp_devices_names_a_measurement_under_way(auto):
    """A plan whose trials are laid out but not all run (a run cut short inside them) shows
    as measuring, not as its placeholder choice."""
    planner.write_cache(MACHINE, {"a": {"choice": "a/x", "speeds": {}, "pending": True,
                                        "finalists": [[["a/x"]]]}})
    line = devices_cli.plans_line()
    assert "a: measuring" in line and "a/x" not in line


@pytest.mark.parametrize("finalists", [3, "a/x", [3], ["a/x"], [["a/x"]], [[[1]]]])
def test_a_plan_whose_finalists_are_not_lists_of_names_is_damaged(finalists):
    """Finalists are per group, per round, a list of names; anything else is damage."""
    assert "finalists" in plancache.damaged_entry({"choice": "a/x", "finalists": finalists})
    fine = {"choice": "a/x", "finalists": [[["a/x", "b/x"], ["a/x"]], [[]]]}
    assert plancache.damaged_entry(fine) is None
