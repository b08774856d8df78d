"""Reading saved runs: the results table, the ratio table of two runs, and the chart.

Works on the JSON of ``fastbp bench`` and on pytest-benchmark's ``--benchmark-json`` of the
``benchmarks/`` suite alike: both carry the case and its throughput in each ``extra_info``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..io.targets import atomic_write, write_file
from .cases import LOOP, MATRIX

KIND_ORDER = {"step": 0, "epoch": 1}
BUSY = 0.25
"""Cores other processes may take while a case is timed before its figures are flagged."""
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
IMPL_ORDER = {MATRIX: 0, LOOP: 1, "torch-eager": 2, "torch-compile": 3, "jax-jit": 4,
              "jax-scan": 5}


@dataclass(frozen=True)
class Row:
    """One timed case of a saved run; ``workload``: ``step`` or ``epoch`` (the key ``kind`` of
    the result file)."""

    workload: str
    device: str
    impl: str
    sizes: str
    batch_size: int
    dtype: str
    samples_per_s: float
    gflops: float | None
    pct_peak: float | None
    other_cores: float | None = None

    @property
    def key(self) -> tuple[str, str, str, str, int, str]:
        return (self.workload, self.device, self.impl, self.sizes, self.batch_size, self.dtype)

    @property
    def group_key(self) -> tuple[str, str, int, str]:
        return (self.workload, self.sizes, self.batch_size, self.dtype)

    @property
    def line(self) -> str:
        """The chart's line this row belongs to: device × implementation."""
        return f"{self.device} {self.impl}"


def load(path: str | os.PathLike) -> dict[str, Any]:
    """A saved run (JSON)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def rows_of(doc: dict[str, Any]) -> list[Row]:
    """The timed cases of a run, in table order."""
    rows = []
    for b in doc.get("benchmarks", []):
        e = b.get("extra_info") or {}
        if "samples_per_s" not in e:
            continue
        rows.append(Row(e["kind"], e["device"], e["impl"], str(e["sizes"]),
                        int(e["batch_size"]), e["dtype"], float(e["samples_per_s"]),
                        e.get("gflops"), e.get("pct_gemm_peak"), e.get("other_cores")))
    return sorted(rows, key=_order)


def _order(r: Row) -> tuple:
    weights = sum(a * b for a, b in _pairs(r.sizes))
    return (KIND_ORDER.get(r.workload, 9), weights, r.batch_size, r.dtype,
            IMPL_ORDER.get(r.impl, 8), r.impl, r.device)


def _pairs(label: str) -> Iterable[tuple[int, int]]:
    s = [int(x) for x in label.split("-")]
    return zip(s[:-1], s[1:])


def speedups(rows: Sequence[Row]) -> dict[tuple, float]:
    """Each row's samples/s over the per-sample loop's at the same kind, sizes, batch, dtype."""
    loop = {r.group_key: r.samples_per_s for r in rows if r.impl == LOOP}
    return {r.key: r.samples_per_s / loop[r.group_key] for r in rows if r.group_key in loop}


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def fmt_opt(x: float | None, spec: str, suffix: str = "") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:{spec}}{suffix}"


def fmt_pct(pct: float | None) -> str:
    """% of the GEMM peak, capped: above 100 the peak itself was measured low (under load)."""
    if pct is not None and not math.isnan(pct) and pct > 100.0:
        return ">100 *"
    return fmt_opt(pct, ".1f")


def fmt_others(cores: float | None) -> str:
    """Cores other processes took while the case was timed, ``!`` when above :data:`BUSY`."""
    return fmt_opt(cores, ".2f") + (" !" if cores is not None and cores > BUSY else "")


def table(rows: Sequence[Row], markdown: bool = False) -> str:
    """The results table: device, implementation, sizes, batch, dtype, samples/s, speed-up over
    the loop, GFLOP/s, % of the GEMM peak, and the cores other processes took meanwhile, with a
    note under it for the figures taken under load."""
    ups = speedups(rows)
    head = ["kind", "device", "impl", "sizes", "batch", "dtype", "samples/s", "× loop",
            "GFLOP/s", "% peak", "others"]
    body = [[r.workload, r.device, r.impl, r.sizes, str(r.batch_size), r.dtype,
             fmt_rate(r.samples_per_s), fmt_opt(ups.get(r.key), ".1f", "×"),
             fmt_opt(r.gflops, ".2f"), fmt_pct(r.pct_peak),
             fmt_others(r.other_cores)] for r in rows]
    notes = []
    if any(row[9].endswith("*") for row in body):
        notes.append("* above the GEMM peak measured through the device's own GEMM: that "
                     "peak was taken under load, or this implementation's GEMM beats it")
    if any(row[10].endswith("!") for row in body):
        notes.append(f"! other processes took more than {BUSY} cores while the case was "
                     "timed: its samples/s are low")
    text = render(head, body, markdown, right_from=4)
    return "\n\n".join([text, *notes]) if notes else text


def render(head: list[str], body: list[list[str]], markdown: bool, right_from: int) -> str:
    """Align a table as text, or lay it out as a Markdown table."""
    if markdown:
        sep = ["---" if i < right_from else "---:" for i in range(len(head))]
        lines = [head, sep, *body]
        return "\n".join("| " + " | ".join(r) + " |" for r in lines)
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]

    def line(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if i >= right_from else c.ljust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, body)])


def pivot(rows: Sequence[Row], kind: str, sizes: str, dtype: str, markdown: bool = True,
          peak: bool = False) -> str:
    """Samples/s (or % of GEMM peak) of one kind, sizes and dtype: a row per batch size, a
    column per device × implementation."""
    sel = [r for r in rows if r.workload == kind and r.sizes == sizes and r.dtype == dtype]
    lines = sorted({r.line for r in sel},
                   key=lambda s: (IMPL_ORDER.get(s.split()[1], 8), s))
    batches = sorted({r.batch_size for r in sel})
    cell = {(r.batch_size, r.line): r for r in sel}

    def fmt(r: Row | None) -> str:
        if r is None:
            return "—"
        if peak:
            return fmt_pct(r.pct_peak) if (r.pct_peak or 0) > 100 else fmt_opt(r.pct_peak,
                                                                              ".0f", " %")
        return fmt_rate(r.samples_per_s)

    head = ["batch", *lines]
    body = [[str(b), *(fmt(cell.get((b, ln))) for ln in lines)] for b in batches]
    return render(head, body, markdown, right_from=0)


def compare(a: dict[str, Any], b: dict[str, Any], markdown: bool = False) -> str:
    """The ratio table of two runs (B over A) on the cases both timed, with the cores other
    processes took during each (``!`` above :data:`BUSY`, as in :func:`table`), and the
    geometric mean of the ratios per device × implementation over the undisturbed cases."""
    ra = {r.key: r for r in rows_of(a)}
    rb = {r.key: r for r in rows_of(b)}
    common = sorted((k for k in ra if k in rb), key=lambda k: _order(ra[k]))
    head = ["kind", "device", "impl", "sizes", "batch", "dtype", "A samples/s", "B samples/s",
            "B / A", "others A", "others B"]
    body, logs, noisy = [], {}, 0
    for k in common:
        ratio = rb[k].samples_per_s / ra[k].samples_per_s
        disturbed = any(r.other_cores is not None and r.other_cores > BUSY
                        for r in (ra[k], rb[k]))
        noisy += disturbed
        if not disturbed:
            logs.setdefault(ra[k].line, []).append(math.log(ratio))
        body.append([*map(str, k), fmt_rate(ra[k].samples_per_s), fmt_rate(rb[k].samples_per_s),
                     f"{ratio:.2f}" + (" !" if disturbed else ""),
                     fmt_others(ra[k].other_cores), fmt_others(rb[k].other_cores)])
    out = [render(head, body, markdown, right_from=4)] if body else ["no case in common"]
    if noisy:
        out.append("")
        out.append(f"! other processes took more than {BUSY} cores while A or B timed the case: "
                   f"its ratio measures the load, not the code ({noisy} of {len(body)} cases; "
                   "left out of the means below)")
    if logs:
        out.append("")
        out.append("geometric mean of B / A: " + ", ".join(
            f"{line} {math.exp(sum(v) / len(v)):.2f} ({len(v)})" for line, v in logs.items()))
    only_a, only_b = len(set(ra) - set(rb)), len(set(rb) - set(ra))
    if only_a or only_b:
        out.append(f"cases only in A: {only_a}, only in B: {only_b}")
    ma, mb = _cpu(a), _cpu(b)
    if ma != mb:
        out.append(f"warning: different machines (A: {ma}; B: {mb}): ratios mix machine and code")
    return "\n".join(out)


def merge(base: dict[str, Any], retimed: dict[str, Any], threshold: float = 0.25
          ) -> tuple[dict[str, Any], list[str]]:
    """``base`` with each case that other processes disturbed (``other_cores`` above
    ``threshold``) replaced by its retiming from the same machine, when that one was less
    disturbed. The retimed figures are put against ``base``'s GEMM peaks. Returns the merged
    run and the names replaced (also listed in its ``"retimed"`` key)."""
    import copy

    out = copy.deepcopy(base)
    again = {b["name"]: b for b in retimed.get("benchmarks", [])}
    replaced = []
    for i, b in enumerate(out["benchmarks"]):
        new = again.get(b["name"])
        old_load = b.get("extra_info", {}).get("other_cores") or 0.0
        if new is None or old_load <= threshold:
            continue
        if (new["extra_info"].get("other_cores") or 0.0) >= old_load:
            continue
        new = copy.deepcopy(new)
        e, peak = new["extra_info"], b["extra_info"].get("gemm_peak_gflops")
        if peak:
            e["gemm_peak_gflops"] = peak
            e["pct_gemm_peak"] = 100.0 * e["gflops"] / peak
        e["retimed"] = True
        out["benchmarks"][i] = new
        replaced.append(b["name"])
    out["retimed"] = sorted(set(base.get("retimed", [])) | set(replaced))
    return out, replaced


def _cpu(doc: dict[str, Any]) -> str:
    info = doc.get("machine_info", {})
    fb = info.get("fastbp", {})
    return str(fb.get("cpu", {}).get("model") or info.get("processor") or "unknown")


def chart(rows: Sequence[Row], path: str | os.PathLike, title: str = "") -> bool:
    """Samples/s against batch size (log-log), one line per device × implementation, one panel
    per kind × sizes; float32 solid, float64 dashed with hollow markers. Each line has its
    colour and each device its marker, so many lines in one panel stay apart; the legend sits
    under the panels.
    Returns ``False`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
        from matplotlib.ticker import LogLocator, NullFormatter
    except ImportError:
        return False
    if not rows:
        return False
    kinds = sorted({r.workload for r in rows}, key=lambda k: KIND_ORDER.get(k, 9))
    sizes = sorted({r.sizes for r in rows}, key=lambda s: sum(a * b for a, b in _pairs(s)))
    lines = sorted({r.line for r in rows},
                   key=lambda s: (IMPL_ORDER.get(s.split()[1], 8), s))
    devices = sorted({ln.split()[0] for ln in lines})
    cmap = plt.get_cmap("tab10" if len(lines) <= 10 else "tab20")
    colors = {ln: cmap(i % cmap.N) for i, ln in enumerate(lines)}
    markers = {ln: MARKERS[devices.index(ln.split()[0]) % len(MARKERS)] for ln in lines}
    dtypes = sorted({r.dtype for r in rows})
    labels = list(lines) if len(dtypes) > 1 else [f"{ln} ({dtypes[0]})" for ln in lines]
    ncol = min(4, len(labels) + (2 if len(dtypes) > 1 else 0))
    legend_rows = -(-(len(labels) + (2 if len(dtypes) > 1 else 0)) // ncol)
    width, height = 4.2 * len(sizes) + 0.6, 3.3 * len(kinds) + 0.5 + 0.22 * legend_rows
    fig, axes = plt.subplots(len(kinds), len(sizes), squeeze=False, figsize=(width, height))
    for i, kind in enumerate(kinds):
        for j, size in enumerate(sizes):
            ax = axes[i][j]
            for ln in lines:
                for dtype, style in (("float32", "-"), ("float64", "--")):
                    pts = sorted((r.batch_size, r.samples_per_s) for r in rows
                                 if r.workload == kind and r.sizes == size and r.line == ln
                                 and r.dtype == dtype)
                    if pts:
                        ax.plot(*zip(*pts), style, marker=markers[ln], ms=4, lw=1.2,
                                color=colors[ln], mfc="white" if dtype == "float64" else None)
            ax.set_xscale("log")
            ax.set_yscale("log")
            for axis in (ax.xaxis, ax.yaxis):  # labels on 1, 2, 5 × 10^k only, never minor ones
                axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                axis.set_minor_formatter(NullFormatter())
            ax.set_title(f"{kind}, [{size.replace('-', ',')}]", fontsize=9)
            ax.set_xlabel("batch size", fontsize=8)
            ax.set_ylabel("samples/s", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(True, which="major", alpha=0.35)
            ax.grid(True, which="minor", alpha=0.1)
    handles = [Line2D([], [], color=colors[ln], marker=markers[ln], ms=4) for ln in lines]
    if len(dtypes) > 1:
        handles += [Line2D([], [], color="gray", ls="-"),
                    Line2D([], [], color="gray", ls="--", marker="o", mfc="white", ms=4)]
        labels += ["float32", "float64"]
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    bottom = (0.22 * legend_rows + 0.15) / height
    fig.tight_layout(rect=(0, bottom, 1, 0.97 if title else 1))
    try:
        atomic_write(Path(path), lambda f: fig.savefig(f, dpi=110, format="png"))
    finally:
        plt.close(fig)
    return True


def write_companions(path: str | os.PathLike) -> None:
    """Beside a saved run: ``machine.json``, ``table.md`` and ``chart.png`` (with matplotlib)."""
    path = Path(path)
    doc = load(path)
    machine = doc.get("machine_info", {}).get("fastbp", {})
    write_file(path.parent / "machine.json", (json.dumps(machine, indent=2) + "\n").encode())
    rows = rows_of(doc)
    write_file(path.parent / "table.md", (table(rows, markdown=True) + "\n").encode())
    chart(rows, path.parent / "chart.png", title=machine.get("cpu", {}).get("model", ""))
