"""Rebuild ``curves.csv`` and ``summary.md`` from the logs that ``run.sh`` wrote.

``curves.csv`` has one row per (run, epoch): the test accuracy curve of every run.
``summary.md`` has one row per run: best and final accuracy, the epoch of the best, wall time.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
EPOCH = re.compile(r"^Epoch (\d+): test (\d+) / (\d+) \(([\d.]+) %\), cost ([\d.]+), "
                   r"([\d.]+) s, ([\d,]+) samples/s")
WALL = re.compile(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)")
CPU = re.compile(r"(?:User|System) time \(seconds\): ([\d.]+)")
LOAD = re.compile(r"load average: ([\d.]+)")
NAME = re.compile(r"^(?P<sizes>[\d-]+)_(?P<init>\w+)_seed(?P<seed>\d+)$")


def wall_seconds(path: Path) -> float | None:
    if not path.is_file():
        return None
    m = WALL.search(path.read_text())
    if not m:
        return None
    h, mnt, s = m.groups()
    return int(h or 0) * 3600 + int(mnt) * 60 + float(s)


def cpu_seconds(path: Path) -> float | None:
    """User + system CPU seconds of the run (less sensitive to other load than wall time)."""
    found = CPU.findall(path.read_text()) if path.is_file() else []
    return sum(float(x) for x in found) if found else None


def load_at_start(path: Path) -> float | None:
    m = LOAD.search(path.read_text()) if path.is_file() else None
    return float(m[1]) if m else None


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "?" if x is None else format(x, spec)


def main() -> None:
    rows, summary = [], []
    def order(log: Path) -> tuple:
        m = NAME.match(log.stem)
        if not m:
            return ((), "", 0)
        return (tuple(int(k) for k in m["sizes"].split("-")), m["init"] != "standard",
                int(m["seed"]))

    for log in sorted((HERE / "logs").glob("*.log"), key=order):
        meta = NAME.match(log.stem)
        if not meta:
            continue
        curve = [EPOCH.match(line) for line in log.read_text().splitlines()]
        curve = [c for c in curve if c]
        if not curve:
            continue
        for c in curve:
            rows.append({"run": log.stem, "sizes": meta["sizes"].replace("-", ","),
                         "init": meta["init"], "seed": meta["seed"], "epoch": int(c[1]),
                         "accuracy_pct": float(c[4]), "cost": float(c[5]),
                         "epoch_s": float(c[6]), "samples_per_s": int(c[7].replace(",", ""))})
        accs = [float(c[4]) for c in curve]
        best = max(accs)
        summary.append((meta["sizes"].replace("-", ","), meta["init"], meta["seed"], len(curve),
                        best, accs.index(best), accs[-1], wall_seconds(log.with_suffix(".time")),
                        cpu_seconds(log.with_suffix(".time")),
                        load_at_start(log.with_suffix(".meta"))))
    with open(HERE / "curves.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = ["| sizes | init | seed | epochs | best test accuracy | best epoch | final | wall s "
             "| CPU s | load at start |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s, i, seed, n, best, at, last, wall, cpu, load in summary:
        lines.append(f"| {s} | {i} | {seed} | {n} | {best:.2f} % | {at} | {last:.2f} % | "
                     f"{fmt(wall)} | {fmt(cpu)} | {fmt(load, '.2f')} |")
    (HERE / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
