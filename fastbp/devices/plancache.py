"""The plan cache: the planner's choices per machine fingerprint, in one JSON file
(``plans.json`` in the user cache), as FFTW keeps its wisdom.

Reading trusts nothing: only a regular file of at most :data:`MAX_CACHE_BYTES` is read (a FIFO
or a link to ``/dev/zero`` there is refused unread, never waited on), and a file that is not
this format, is nested too deeply, or holds a plan whose ``choice`` is not a name or whose
``speeds`` are not numbers, is damaged: ignored with one warning, measured again and rewritten.
Writing is atomic, through a temporary file of an unpredictable name created exclusively beside
the cache (``mkstemp``: ``O_CREAT | O_EXCL``, so a link planted there is never followed), under
a lock (threads; ``flock`` across processes where the system has it) so that concurrent writers
add their plans to each other's instead of losing them.

Plans made under another fingerprint are not thrown away when the fingerprint changes: a run
with ``OPENBLAS_NUM_THREADS=1`` (a benchmark's one-thread row) or another ``$FASTBP_BLAS`` moves
the plans of the settings before it into the part's ``earlier`` list (the :data:`KEPT_SETTINGS`
newest), and the next run under those settings finds them there instead of measuring again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from ..errors import DataError
from ..files import read_bounded

log = logging.getLogger("fastbp")

CACHE_ENV = "FASTBP_CACHE"
FORMAT = "fastbp-plans"
FORMAT_VERSION = 1
MAX_CACHE_BYTES = 4 << 20  # 4 MiB: thousands of plans; a larger file is not one of ours
KEPT_SETTINGS = 8  # fingerprints whose plans are kept beside the newest one's

_warned: set[str] = set()


def cache_path() -> Path:
    """``$FASTBP_CACHE/plans.json``, else ``$XDG_CACHE_HOME/fastbp/plans.json``, else
    ``~/.cache/fastbp/plans.json``."""
    base = os.environ.get(CACHE_ENV)
    if base:
        return Path(base) / "plans.json"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "fastbp" / "plans.json"


def _warn_once(what: str, message: str) -> None:
    if what not in _warned:
        _warned.add(what)
        log.warning(message)


def load_cache(path: Path) -> dict[str, Any]:
    """The cache file's document, checked: ``ValueError`` (or ``OSError``) when it is not a
    plan cache of this format; a missing file is ``FileNotFoundError``. Only a regular file of
    at most :data:`MAX_CACHE_BYTES` is read (a FIFO or ``/dev/zero`` there is an ``OSError``)."""
    try:
        raw = read_bounded(path, MAX_CACHE_BYTES, "the most a plan cache holds")
    except DataError as exc:  # not a regular file, or too large: read nothing
        raise OSError(str(exc).removeprefix(f"{path}: ")) from exc
    try:
        doc = json.loads(raw.decode("utf-8"))
        if doc.get("format") != FORMAT or doc.get("version") != FORMAT_VERSION:
            raise ValueError(f"format {doc.get('format')!r} version {doc.get('version')!r}")
        if not isinstance(doc["plans"], dict):
            raise ValueError("plans is not an object")
    except (KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc
    return doc


def damaged_entry(entry: Any) -> str | None:
    """Why a cached plan is unusable (``None`` if it is fine): a plan is an object whose
    ``choice`` is a candidate's name, whose ``speeds`` map names to samples/s (finite
    numbers >= 0), and whose ``finalists``, if any, are lists (a group's) of lists (a round's)
    of names."""
    if not isinstance(entry, dict):
        return f"a {type(entry).__name__}, not an object"
    if not isinstance(entry.get("choice"), str):
        return f"choice {entry.get('choice')!r} is not a name"
    speeds = entry.get("speeds", {})
    if not isinstance(speeds, dict):
        return f"speeds is a {type(speeds).__name__}, not an object"
    for name, value in speeds.items():
        if (not isinstance(value, (int, float)) or isinstance(value, bool)
                or not math.isfinite(value) or value < 0):
            return f"the speed of {name} is {value!r}, not a number of samples/s"
    finalists = entry.get("finalists", [])
    if not (isinstance(finalists, list) and all(
            isinstance(group, list) and all(
                isinstance(names, list) and all(isinstance(n, str) for n in names)
                for names in group) for group in finalists)):
        return f"finalists {finalists!r} is not a list (per group) of lists of names per round"
    return None


def _usable(plans: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The plans whose entries are intact; the damaged ones are dropped, saying so once."""
    bad = {key: why for key, entry in plans.items() if (why := damaged_entry(entry))}
    if bad:
        key, why = next(iter(bad.items()))
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        _warn_once(f"damaged plans {where}", f"fastbp: the plan cache {where} is damaged "
                   f"({key!r}: {why}{more}); those plans are ignored and will be measured again")
    return {key: entry for key, entry in plans.items() if key not in bad}


def _section(doc: Mapping[str, Any], section: str | None) -> Any:
    return doc if section is None else (doc.get("sections") or {}).get(section)


def read_cache(machine: Mapping[str, Any], section: str | None = None) -> dict[str, Any]:
    """The cached choices for this machine (``{key: {"choice": ..., "speeds": ...}}``); a
    missing cache is empty, a corrupt or stale one (another machine, other library versions, an
    older format) is ignored with one warning and rewritten at the next choice, and so is a
    damaged plan in it. A device whose fingerprint is its own (a GPU's) keeps its plans in
    ``section`` of the same file."""
    path = cache_path()
    try:
        doc = load_cache(path)
    except FileNotFoundError:
        return {}
    except ValueError as exc:  # json.JSONDecodeError too
        _warn_once(f"corrupt {path}", f"fastbp: the plan cache {path} is damaged ({exc}); "
                   "it is ignored and will be rewritten")
        return {}
    except OSError as exc:
        _warn_once(f"unreadable {path}", f"fastbp: the plan cache {path} cannot be read "
                   f"({getattr(exc, 'strerror', None) or exc}); planning anew")
        return {}
    part = _section(doc, section)
    if not isinstance(part, dict) or not isinstance(part.get("plans"), dict) or not part["plans"]:
        return {}  # nothing cached here: nothing stale to say
    found = part.get("fingerprint")
    known: dict[str, Any] = found if isinstance(found, dict) else {}
    where = f"{path}" if section is None else f"{path} ({section})"
    if known != _jsonable(machine):
        for kept in _earlier(part):  # this machine's plans under its other settings, kept
            if kept["fingerprint"] == _jsonable(machine):
                return _usable(kept["plans"], where)
        changed = sorted(k for k in {**machine, **known}
                         if _jsonable(machine).get(k) != known.get(k))
        _warn_once(f"stale {where}", f"fastbp: the plan cache {where} was made for another "
                   f"machine or other libraries (differs in {', '.join(changed)}); planning anew")
        return {}
    return _usable(part["plans"], where)


_write_lock = threading.Lock()


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One writer of the cache at a time: the threads of this process by a lock, processes by
    ``flock`` on the cache's folder where the system has it."""
    with _write_lock:
        fd = None
        try:
            import fcntl

            fd = os.open(folder, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except (ImportError, OSError):
            pass  # no flock here (Windows, some network file systems): the last writer wins
        try:
            yield
        finally:
            if fd is not None:
                os.close(fd)  # releases the flock


def write_cache(machine: Mapping[str, Any], plans: Mapping[str, Any],
                section: str | None = None, drop: Sequence[str] = ()) -> None:
    """Write ``plans`` into the cache, keeping what the file already holds for this machine
    (plans that other threads or processes wrote meanwhile, other sections) less the keys in
    ``drop``. Atomic: a temporary file of an unpredictable name, created exclusively beside the
    cache (no link there is ever followed), renamed over it. A cache that cannot be written only
    costs measuring again, so it says so once and goes on."""
    path = cache_path()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path.parent):
            try:
                doc = load_cache(path)
            except (OSError, ValueError):
                doc = {"fingerprint": {}, "plans": {}}
            doc.update(format=FORMAT, version=FORMAT_VERSION)
            if section is not None and not isinstance(doc.get("sections"), dict):
                doc["sections"] = {}
            part = _section(doc, section)
            fresh: dict[str, Any] = {"fingerprint": _jsonable(machine), "plans": {}}
            here = part if isinstance(part, dict) else {}
            earlier = _earlier(here)
            if here.get("fingerprint") != fresh["fingerprint"]:
                # another machine's or setting's plans move to "earlier"; this one's come back
                if isinstance(here.get("plans"), dict) and here["plans"]:
                    earlier.insert(0, {"fingerprint": here.get("fingerprint"),
                                       "plans": here["plans"]})
                here = next((e for e in earlier if e["fingerprint"] == fresh["fingerprint"]),
                            {})
                earlier = [e for e in earlier if e["fingerprint"] != fresh["fingerprint"]]
            if isinstance(here.get("plans"), dict):
                fresh["plans"] = {k: v for k, v in here["plans"].items()
                                  if damaged_entry(v) is None and k not in drop}
            fresh["plans"].update(plans)
            fresh["earlier"] = earlier[:KEPT_SETTINGS]
            if section is None:
                doc.update(fresh)
            else:
                doc["sections"][section] = fresh
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(doc, indent=1, sort_keys=True))
            os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        _warn_once(f"unwritable {path}", f"fastbp: the plan cache {path} cannot be written "
                   f"({getattr(exc, 'strerror', None) or exc}); plans will be measured again "
                   "next time")


def _earlier(part: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The plans a part of the cache keeps for other fingerprints (the same machine under other
    settings: another BLAS, other thread variables), newest first; malformed ones left out."""
    found = part.get("earlier")
    if not isinstance(found, list):
        return []
    return [e for e in found if isinstance(e, dict) and isinstance(e.get("fingerprint"), dict)
            and isinstance(e.get("plans"), dict)]


def forget(key: str, machine: Mapping[str, Any], section: str | None = None) -> None:
    """Mark ``key``'s recorded choice for measuring again at its next run (a recorded trial
    that another process disturbed): :func:`fastbp.devices.planner.choose` then measures it
    against the candidates that round as it does, so a seed's numbers stay the same."""
    entry = read_cache(machine, section).get(key)
    if isinstance(entry, dict) and not entry.get("remeasure"):
        write_cache(machine, {key: {**entry, "remeasure": True}}, section)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))
