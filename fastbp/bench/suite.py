"""Running a list of cases without pytest: the engine of ``fastbp bench``."""

from __future__ import annotations

import sys
from typing import Any, Callable, Sequence, TextIO

from .contention import OtherLoad, wait_for_quiet
from .flops import gemm_peak
from .peers import PeerUnavailable
from .runner import benchmark_record, calibrate, throughput_info, time_rounds
from .workloads import Case, DataSource, Device, prepare


class PeakCache:
    """The GEMM peak of each kind of hardware (``cpu``, ``cuda``) and dtype: the best rate any
    device of that kind reached on ``C = A B`` (every CPU device runs on the same cores, so they
    share one limit). Each device is measured when first used and again at the end
    (:meth:`finalize`); the loop and the peers use their kind's peak."""

    def __init__(self, devices: Sequence[Device], n: int | None = None, repeats: int = 5) -> None:
        self.by_kind: dict[str, str] = {}
        self.kind_of: dict[str, str] = {}
        for d in devices:
            if d.unavailable is None:
                self.by_kind.setdefault(d.peer_kind, d.name)
                self.kind_of[d.name] = d.peer_kind
        self.n, self.repeats = n, repeats
        self._peaks: dict[tuple[str, str], dict[str, Any] | None] = {}

    def device_for(self, case: Case) -> str:
        """The fastbp device whose GEMM stands for ``case``'s hardware."""
        return case.device if case.impl == "matrix" else self.by_kind.get(case.hardware, "cpu")

    def _measure(self, name: str, dtype: str) -> dict[str, Any] | None:
        from .. import devices

        try:
            backend = devices.resolve(name, dtype)
            return {"device": name, **gemm_peak(backend, self.n, self.repeats)}
        except Exception:  # noqa: BLE001 - no peak is a missing column, not a failed run
            return None

    def best(self, kind: str, dtype: str) -> dict[str, Any] | None:
        """The best figure measured so far on ``kind`` hardware in ``dtype``."""
        found = [p for (name, dt), p in self._peaks.items()
                 if p and dt == dtype and self.kind_of.get(name, "cpu") == kind]
        return max(found, key=lambda p: p["gflops"], default=None)

    def get(self, case: Case) -> dict[str, Any] | None:
        key = (self.device_for(case), case.dtype)
        if key not in self._peaks:
            self._peaks[key] = self._measure(*key)
        return self.best(self.kind_of.get(key[0], case.hardware), case.dtype)

    def all(self) -> list[dict[str, Any]]:
        """Every measurement (per device and dtype)."""
        return [p for p in self._peaks.values() if p]

    def remeasure(self) -> None:
        """Measure every peak again and keep the better figure: a peak taken while the machine
        was busy would flatter every fraction of it."""
        for (name, dtype), old in list(self._peaks.items()):
            new = self._measure(name, dtype) if old is not None else None
            if new is not None and new["gflops"] > old["gflops"]:
                self._peaks[(name, dtype)] = new

    def finalize(self, infos: Sequence[dict[str, Any]]) -> None:
        """Re-measure the peaks, then set each ``extra_info``'s peak and % of peak to the final
        figures (every result of a run is then a fraction of the same peak)."""
        self.remeasure()
        for info in infos:
            name = info.get("gemm_peak_device", "")
            peak = self.best(self.kind_of.get(name, info.get("device_kind", "cpu")),
                             info.get("dtype", ""))
            if peak and "gflops" in info:
                info["gemm_peak_gflops"] = peak["gflops"]
                info["gemm_peak_n"] = peak["n"]
                info["pct_gemm_peak"] = 100.0 * info["gflops"] / peak["gflops"]


def run_cases(cases: Sequence[tuple[Case, str | None]], data: DataSource,
              peers: dict[str, Any] | None, peaks: PeakCache, *, target_s: float = 1.0,
              min_rounds: int = 3, wait_quiet_s: float = 0.0, out: TextIO = sys.stdout,
              on_record: Callable[[dict[str, Any]], None] | None = None,
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Time every case not skipped; return ``(records, skipped)`` for the JSON.

    Before each case, wait up to ``wait_quiet_s`` for other processes to leave the cores; each
    record's ``other_cores`` says how many cores they used during its timed rounds anyway.

    A peer that turns out unavailable (library missing, no GPU for it) is skipped with its
    reason; a peer whose gradients differ from fastbp's is skipped as failed, loudly.
    """
    records, skipped = [], []
    todo = [c for c, r in cases if r is None]
    for case, reason in cases:
        if reason is not None:
            skipped.append({"name": case.name, **case.params, "reason": reason})
    for i, case in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {case.workload} {case.device} {case.impl} {case.sizes_label} "
              f"batch {case.batch_size} {case.dtype}", end=" ", file=out, flush=True)
        try:
            prepared = prepare(case, data, peers)
            rounds, iterations, _ = calibrate(prepared.run, target_s, min_rounds=min_rounds)
            if wait_quiet_s > 0:
                wait_for_quiet(wait_quiet_s)
            with OtherLoad() as load:
                times = time_rounds(prepared.run, rounds, iterations)
        except PeerUnavailable as exc:
            print(f"skipped: {exc}", file=out, flush=True)
            skipped.append({"name": case.name, **case.params, "reason": str(exc)})
            continue
        except Exception as exc:  # noqa: BLE001 - one failing case must not lose the others
            print(f"FAILED: {type(exc).__name__}: {exc}", file=out, flush=True)
            skipped.append({"name": case.name, **case.params,
                            "reason": f"failed: {type(exc).__name__}: {exc}"})
            continue
        extra = throughput_info(case, min(times), peaks.get(case))
        extra["gemm_peak_device"] = peaks.device_for(case)
        extra["other_cores"] = load.cores
        extra.update(prepared.info)
        record = benchmark_record(case, times, iterations, extra)
        records.append(record)
        if on_record:
            on_record(record)
        print(f"{extra['samples_per_s']:,.0f} samples/s ({rounds}×{iterations})", file=out,
              flush=True)
    peaks.finalize([r["extra_info"] for r in records])
    return records, skipped
