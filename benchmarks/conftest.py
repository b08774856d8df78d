"""The benchmark suite's settings, its cases, and what it writes beside ``--benchmark-json``.

Run everything (every registered device that starts here, peers when installed)::

    pytest benchmarks/ --benchmark-json=benchmarks/results/RUN/bench.json

Narrow it with options or the matching environment variables:

- ``--bench-smoke`` / ``FASTBP_BENCH_SMOKE=1``: the smallest sizes only (``[784,30,10]``,
  batches 1 and 10, float32, 200-sample epochs); with ``--benchmark-disable`` it times nothing
  and only checks that every case runs (CI does this);
- ``--bench-devices cpu,cuda`` / ``FASTBP_BENCH_DEVICES``: default every registered device;
- ``--bench-sizes "784,30,10;784,100,10"`` / ``FASTBP_BENCH_SIZES``;
- ``--bench-batches 1,10,100`` / ``FASTBP_BENCH_BATCHES``;
- ``--bench-dtypes float32`` / ``FASTBP_BENCH_DTYPES``;
- ``--bench-peers none|all|torch-eager,jax-scan`` / ``FASTBP_BENCH_PEERS`` (default all);
- ``--bench-samples N`` / ``FASTBP_BENCH_SAMPLES``: samples per epoch (default 10,000);
- ``--bench-target-s S`` / ``FASTBP_BENCH_TARGET_S``: seconds of timed rounds per case;
- ``--bench-wait-quiet S`` / ``FASTBP_BENCH_WAIT_QUIET``: before each case wait up to ``S``
  seconds for other processes to leave the cores (each result's ``other_cores`` says how many
  cores others used while it was timed).

With ``--benchmark-json=DIR/bench.json`` the run also writes ``DIR/machine.json``,
``DIR/table.md`` and ``DIR/chart.png`` (with matplotlib), and lists the skipped cases with their
reasons in the JSON.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from fastbp.bench import workloads as wl
from fastbp.bench.machine import load_average
from fastbp.bench.peers import load_peers
from fastbp.bench.suite import PeakCache

PEERS_DIR = Path(__file__).resolve().parent / "peers"
SMOKE = dict(sizes=[(784, 30, 10)], batches=[1, 10], dtypes=["float32"], samples=200)

OPTIONS = {  # option: (environment variable, help)
    "smoke": ("FASTBP_BENCH_SMOKE", "smallest sizes only (CI smoke mode)"),
    "devices": ("FASTBP_BENCH_DEVICES", "comma-separated fastbp devices (default: all)"),
    "sizes": ("FASTBP_BENCH_SIZES", "semicolon-separated layer sizes, e.g. 784,30,10;784,100,10"),
    "batches": ("FASTBP_BENCH_BATCHES", "comma-separated batch sizes"),
    "dtypes": ("FASTBP_BENCH_DTYPES", "comma-separated dtypes"),
    "peers": ("FASTBP_BENCH_PEERS", "none, all, or comma-separated peer names"),
    "samples": ("FASTBP_BENCH_SAMPLES", "samples per epoch"),
    "target-s": ("FASTBP_BENCH_TARGET_S", "seconds of timed rounds per case"),
    "wait-quiet": ("FASTBP_BENCH_WAIT_QUIET", "before each case, wait up to this many seconds "
                   "for other processes to leave the cores"),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fastbp-bench")
    for name, (env, help_text) in OPTIONS.items():
        if name == "smoke":
            group.addoption("--bench-smoke", action="store_true", help=f"{help_text} [{env}]")
        else:
            group.addoption(f"--bench-{name}", default=None, help=f"{help_text} [{env}]")


def _opt(config: pytest.Config, name: str) -> str | None:
    value = config.getoption(f"--bench-{name}")
    return value if value not in (None, False) else os.environ.get(OPTIONS[name][0]) or None


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def pytest_configure(config: pytest.Config) -> None:
    smoke = bool(config.getoption("--bench-smoke")) or os.environ.get(
        "FASTBP_BENCH_SMOKE", "") not in ("", "0")
    sizes = SMOKE["sizes"] if smoke else None
    batches = SMOKE["batches"] if smoke else list(wl.BATCH_SIZES)
    dtypes = SMOKE["dtypes"] if smoke else list(wl.DTYPES)
    samples = SMOKE["samples"] if smoke else wl.EPOCH_SAMPLES
    if text := _opt(config, "sizes"):
        sizes = [tuple(int(x) for x in s.split(",")) for s in text.split(";") if s.strip()]
    if text := _opt(config, "batches"):
        batches = [int(b) for b in _csv(text)]
    if text := _opt(config, "dtypes"):
        dtypes = _csv(text)
    if text := _opt(config, "samples"):
        samples = int(text)
    names = _csv(text) if (text := _opt(config, "devices")) else None
    devices = wl.find_devices(names)
    peers = load_peers(PEERS_DIR)
    wanted = (_opt(config, "peers") or "all").lower()
    if wanted == "none":
        peers = {}
    elif wanted != "all":
        peers = {k: v for k, v in peers.items() if k in _csv(wanted)}
    cases = wl.plan_cases(devices, sizes=sizes, batch_sizes=batches, dtypes=dtypes,
                          peers=peers, epoch_samples=samples)
    config._fastbp_bench = SimpleNamespace(
        devices=devices, peers=peers, cases=cases, order={c.name: i for i, (c, _) in
                                                          enumerate(cases)},
        data=wl.data_source("synthetic"), peaks=PeakCache(devices),
        target_s=float(_opt(config, "target-s") or 1.0), skipped=[],
        wait_quiet_s=float(_opt(config, "wait-quiet") or 0.0),
        load_before=load_average())


@pytest.fixture(scope="session")
def bench(pytestconfig: pytest.Config) -> SimpleNamespace:
    """The suite's devices, peers, data, GEMM peaks and settings."""
    return pytestconfig._fastbp_bench


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    env = metafunc.config._fastbp_bench
    kind = metafunc.function.__name__.removeprefix("test_")
    params = []
    for case, reason in env.cases:
        if case.workload != kind:
            continue
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        if reason:
            env.skipped.append({"name": case.name, **case.params, "reason": reason})
        params.append(pytest.param(case, id=case.param_id, marks=marks))
    metafunc.parametrize("case", params)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """fastbp's devices first, then the loop, then each peer: a library's thread pools then
    never linger over another's figures. Without pytest-benchmark, skip with the reason."""
    env = config._fastbp_bench
    order = env.order

    def key(item: pytest.Item) -> int:
        spec = getattr(item, "callspec", None)
        case = spec.params.get("case") if spec else None
        return order.get(case.name, -1) if case is not None else -1

    items.sort(key=key)
    try:
        import pytest_benchmark  # noqa: F401
    except ImportError:
        skip = pytest.mark.skip(reason="pytest-benchmark is not installed: pip install -e "
                                "'.[bench]'")
        for item in items:
            item.add_marker(skip)


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    from fastbp.bench.machine import describe_machine

    env = config._fastbp_bench
    info = describe_machine([d.name for d in env.devices])
    info["load_average"], info["load_average_after"] = env.load_before, load_average()
    info["gemm_peaks"] = env.peaks.all()
    machine_info["fastbp"] = info


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list,
                                 output_json: dict) -> None:
    """Skipped cases with their reasons; every % of peak against the final GEMM peaks."""
    env = config._fastbp_bench
    output_json["skipped"] = env.skipped
    env.peaks.finalize([b.get("extra_info", {}) for b in output_json.get("benchmarks", [])])
    fb = output_json.get("machine_info", {}).get("fastbp")
    if fb is not None:
        fb["gemm_peaks"] = env.peaks.all()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Beside ``--benchmark-json`` (written when the session finished): ``machine.json``,
    ``table.md`` and ``chart.png``."""
    target = config.getoption("--benchmark-json", default=None)
    if not target:
        return
    path = Path(target if isinstance(target, (str, os.PathLike)) else target.name)
    if not path.is_file():
        return
    from fastbp.bench.report import write_companions

    write_companions(path)
