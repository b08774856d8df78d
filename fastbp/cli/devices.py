"""``fastbp devices``: every backend and device fastbp can see here, and why one cannot run.

For each backend (built in, registered, an installed plugin, or a plugin that ships with fastbp
but is not installed): each device with its kind, model, memory and library versions, or the
reason it cannot run here (with the command that fixes it, where there is one).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

# Keys of Backend.describe() printed in the first columns; the rest follow as "key value".
_HEAD = ("name", "kind", "device", "model", "memory")


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def format_bytes(n: Any) -> str:
    """``85899345920`` → ``80.0 GiB``."""
    try:
        n = float(n)
    except (TypeError, ValueError):
        return str(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def format_device(info: dict[str, Any]) -> str:
    """One line for one device: ``cuda:0  gpu  NVIDIA H100  80.0 GiB  cupy 14.2.0, ...``."""
    head = [str(info.get("device", info.get("name", "?"))), str(info.get("kind", "?"))]
    if info.get("model"):
        head.append(str(info["model"]))
    if info.get("memory") is not None:
        head.append(format_bytes(info["memory"]))
    rest = [f"{k} {v}" for k, v in info.items() if k not in _HEAD and v not in (None, "")]
    line = "  ".join(head)
    return f"{line}  ({', '.join(rest)})" if rest else line


def run(args: argparse.Namespace) -> int:
    from .. import __version__
    from ..devices.registry import probe_all, requested_device, resolve
    from ..errors import FastbpError

    reports = probe_all()
    if args.json:
        print(json.dumps([r.__dict__ for r in reports], indent=2, default=str))
        return 0
    spec = requested_device()
    chosen = ""
    if spec == "auto":
        try:
            chosen = f", which chooses {resolve('auto').device}"
        except FastbpError as exc:  # every device failing is reported below, device by device
            chosen = f", which cannot choose: {exc}"
    print(f"fastbp {__version__}; device in force: {spec}{chosen} "
          "(argument > use_device > $FASTBP_DEVICE > auto)")
    print(plans_line())
    for r in reports:
        print(f"{r.name} [{r.source}]")
        for info in r.devices:
            print(f"  {format_device(info)}")
            if r.error is None and "device" in info:
                print(f"    distributed gradient sum: {distributed_path(str(info['device']))}")
        if r.error is not None:
            print(f"  cannot run here: {r.error}")
    return 0


def distributed_path(device: str) -> str:
    """How ``fastbp train --distributed`` would sum gradients on ``device`` (see
    :func:`fastbp.parallel.distributed.reduction_path`), or how to make it possible."""
    import importlib.util

    if importlib.util.find_spec("mpi4py") is None:
        return 'unavailable (mpi4py not installed: pip install -e ".[mpi]")'
    from ..parallel.reduce import reduction_path

    return reduction_path(device)


def _named(entry: object) -> str:
    """A cached plan's choice, or that its measurement is under way (trials laid out, no
    choice yet: the next run of the configuration goes on with it)."""
    if isinstance(entry, dict) and entry.get("pending"):
        return "measuring"
    return str(entry.get("choice") if isinstance(entry, dict) else None)


def plans_line() -> str:
    """Where the planner's choices come from: ``$FASTBP_PLAN`` and the cache's content."""
    from ..devices import planner

    how, path = planner.mode(), planner.cache_path()
    if how == "off":
        return "plans: off (FASTBP_PLAN=off): every device runs its fixed defaults"
    try:
        doc = planner.load_cache(path)
        plans = dict(doc.get("plans") or {})
        for part in (doc.get("sections") or {}).values():  # a GPU's plans, in its own section
            plans.update((part or {}).get("plans") or {})
        cached = ", ".join(f"{k}: {_named(v)}" for k, v in sorted(plans.items())[:6])
        more = f", and {len(plans) - 6} more" if len(plans) > 6 else ""
        held = f"{len(plans)} cached in {path} ({cached}{more})" if plans else f"none in {path}"
        busy = sum(1 for v in plans.values() if isinstance(v, dict) and v.get("busy"))
        if busy:  # the fixed rule, recorded without measuring: kept until measured
            held += (f"; {busy} of them recorded on a busy machine without measuring (the fixed "
                     "rule): `fastbp tune` on a quiet machine measures them")
        others = len(doc.get("earlier") or [])
        if others:
            held += f"; the plans of {others} other setting{'s' if others > 1 else ''} kept too"
    except (OSError, ValueError, AttributeError):
        held = f"none readable in {path}"
    return (f"plans: FASTBP_PLAN={how}; measured on first use, {held}; "
            "`fastbp tune` plans the common configurations ahead")
