"""The checks ``fastbp bench`` makes before it times anything: numbers in range, devices that
exist, an output folder that can be written, saved runs that are runs (``--compare``)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def check_numbers(args: Any) -> None:
    """``--samples``, ``--target-s``, ``--wait-quiet``, ``--batch-sizes`` and ``--sizes``:
    ``ConfigError`` for a value no run could use (0 samples, a negative or NaN time, ...)."""
    from ..core.validate import check_count, check_sizes

    if args.samples is not None:
        check_count("--samples", args.samples, low=1)
    for option, value, zero in (("--target-s", args.target_s, False),
                                ("--wait-quiet", args.wait_quiet, True)):
        if value is not None and not (math.isfinite(value) and (value > 0 or
                                                                (zero and value == 0))):
            raise ConfigError(f"{option} must be a number of seconds {'>= 0' if zero else '> 0'}"
                              f", got {value}")
    if args.batch_sizes is not None:
        if not args.batch_sizes:
            raise ConfigError("--batch-sizes needs at least one batch size, e.g. 10,100")
        for b in args.batch_sizes:
            check_count("--batch-sizes", b, low=1)
    for sizes in args.sizes or []:
        try:
            check_sizes(sizes)
        except ConfigError as exc:
            raise ConfigError(f"--sizes {','.join(map(str, sizes))}: {exc}") from None


def check_data(value: str | None) -> None:
    """``--data DIR``: the folder holds the four MNIST files (``DataError`` naming the missing
    ones), checked before any case rather than failing every one of them."""
    if value in (None, "synthetic", "mnist") or not Path(value).is_dir():
        return
    from ..data.mnist import locate

    locate(value, download=False)


def check_devices(names: list[str]) -> None:
    """Every device named on the command line exists here (a malformed, unknown or not
    installed one is a ``DeviceError``); one that exists but cannot start is skipped later,
    with its reason."""
    from ..devices.registry import check_spec

    for name in names:
        if name == "all":
            if len(names) > 1:
                raise ConfigError("--devices all stands alone; it means every device")
            continue
        check_spec(name)


def output_folder(out: str | None) -> Path | None:
    """Where the results go: ``--out DIR`` checked for writing (its parent must exist, as for
    ``train --save``), None for ``--out none``, else a new ``fastbp-bench/<date-time>``."""
    from ..io import targets

    if out is not None and out.lower() == "none":
        return None
    if out is None:
        return Path("fastbp-bench") / time.strftime("%Y%m%d-%H%M%S")
    return targets.check_folder(out, f"--out {out}",
                                ("bench.json", "machine.json", "table.md", "chart.png"))


def load_run(path: str) -> dict[str, Any]:
    """A run saved by ``fastbp bench`` (``bench.json`` or its folder), or ``ConfigError``
    saying why ``path`` is not one."""
    from ..bench import report

    p = Path(path)
    if p.is_dir():
        p = p / "bench.json"
    if not p.is_file():
        raise ConfigError(f"no saved run at {path!r} (expected a bench.json or its folder)")
    try:
        doc = report.load(p)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not JSON"
        raise ConfigError(f"{path}: not a saved fastbp bench run ({why})") from None
    try:
        if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks", []), list):
            raise TypeError("no list of benchmarks")
        bad = [r for r in report.rows_of(doc)  # a ratio and its logarithm need figures > 0
               if not (math.isfinite(r.samples_per_s) and r.samples_per_s > 0)]
        if not bad:
            report.compare(doc, doc)
    except (TypeError, KeyError, ValueError, AttributeError, ZeroDivisionError) as exc:
        raise ConfigError(f"{path}: not a saved fastbp bench run (its JSON does not have the "
                          f"layout bench writes: {type(exc).__name__} {exc})") from None
    if bad:
        r = bad[0]
        raise ConfigError(f"{path}: the case {r.workload} {r.device} {r.impl} {r.sizes} "
                          f"m={r.batch_size} has samples_per_s {r.samples_per_s!r}; a saved "
                          "run's figures are numbers > 0")
    return doc
