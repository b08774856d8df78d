"""What ``fastbp train`` checks before it trains, and how it keeps a run whose save fails.

Before the first epoch: every path the run will write (``--save``, the ``--resume`` file it saves
back to, ``--plot DIR``) is a place a regular file can be written (:mod:`fastbp.io.targets`), with
room for the model; the options a resumed model file carries have the right types. After the
last epoch, a save that still fails (the disk filled up meanwhile) keeps the network in the user
cache or the temp folder, says where, and the command exits with status 1.
"""

from __future__ import annotations

import math
import numbers
import sys
from typing import Any

from ..errors import ConfigError, FastbpError, ModelFormatError, SaveError
from ..io import network2, targets

# What each saved training option may hold: (type test, words for the message).
_COUNT = (lambda v: _is_int(v) and v >= 1, "an integer >= 1")
_OPTIONAL_COUNT = (lambda v: v is None or _COUNT[0](v), "null or an integer >= 1")
SAVED_OPTIONS = {
    "epochs": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "batch_size": _COUNT,
    "eta": (lambda v: _is_real(v) and v > 0, "a finite number > 0"),
    "lmbda": (lambda v: _is_real(v) and v >= 0, "a finite number >= 0"),
    "limit": _OPTIONAL_COUNT, "patience": _OPTIONAL_COUNT, "checkpoint_every": _OPTIONAL_COUNT,
    "seed": (lambda v: v is None or (_is_int(v) and v >= 0), "null or an integer >= 0"),
}
EARLY_STOPPING = {
    "best_accuracy": (lambda v: v is None or _is_real(v), "null or a number"),
    "best_epoch": (lambda v: v is None or (_is_int(v) and v >= 0), "null or an integer >= 0"),
    "wait": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "stopped_epoch": (lambda v: v is None or (_is_int(v) and v >= 0), "null or an integer >= 0"),
}


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def check_paths(args: Any, net: Any, save_path: str | None) -> None:
    """Refuse, before any training, every path this run could not write."""
    for option in ("save", "resume", "plot"):
        value = getattr(args, option, None)
        if value is not None and not str(value):
            raise ConfigError(f"--{option} needs a path, got an empty string")
    if save_path and getattr(args, "rank", 0) == 0:
        option = "--save" if args.save else "--resume"
        need = targets.model_bytes(net.sizes, net.dtype, max(args.epochs, len(net.history)))
        targets.check_file(save_path, f"{option} {save_path}", need)
        if network2.is_json_name(save_path):
            network2.check_fits(net.cost.name, net.kinds)
    if args.plot and getattr(args, "rank", 0) == 0:
        from ..io.plots import PICTURES

        targets.check_folder(args.plot, f"--plot {args.plot}", PICTURES)


def checked_extra(extra: Any, path: Any) -> dict[str, Any]:
    """The ``extra`` of a model file that ``--resume`` reads, its types checked: the training
    options, the monitor's lists and the early-stopping state; ``ModelFormatError`` names the
    first bad entry."""
    if not isinstance(extra, dict):
        raise ModelFormatError(f"{path}: extra must be a JSON object, got {type(extra).__name__}")
    train = _section(extra, "train", path)
    for key, (ok, words) in SAVED_OPTIONS.items():
        if key in train and not ok(train[key]):
            _bad(path, f'extra["train"]["{key}"]', train[key], words)
    for key, value in train.items():
        if key.startswith("monitor_") and not isinstance(value, bool):
            _bad(path, f'extra["train"]["{key}"]', value, "true or false")
    for key, value in _section(extra, "monitor", path).items():
        if not (isinstance(value, list) and all(_is_real(v) for v in value)):
            _bad(path, f'extra["monitor"]["{key}"]', value, "a list of numbers")
    for key, (ok, words) in EARLY_STOPPING.items():
        stopping = _section(extra, "early_stopping", path)
        if key in stopping and not ok(stopping[key]):
            _bad(path, f'extra["early_stopping"]["{key}"]', stopping[key], words)
    return extra


def _section(extra: dict[str, Any], name: str, path: Any) -> dict[str, Any]:
    value = extra.get(name, {})
    if not isinstance(value, dict):
        _bad(path, f'extra["{name}"]', value, "a JSON object")
    return value


def _bad(path: Any, where: str, value: Any, words: str) -> None:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise ModelFormatError(f"{path}: {where} is {shown}, expected {words}; the run's saved "
                           "options are damaged (the weights may still load with fastbp.load)")


def save_format(path: Any) -> str:
    """``network2`` (the book's JSON, :mod:`fastbp.io.network2`) for a ``.json`` path, else
    ``fastbp`` (the ``.npz`` model)."""
    return network2.FORMAT if network2.is_json_name(path) else "fastbp"


def save_or_rescue(net: Any, path: str, extra: dict[str, Any]) -> None:
    """``net.save(path)``; if that fails, the network saved in a rescue folder and a
    :class:`SaveError` (exit status 1) that says where, or that nothing could keep it."""
    try:
        net.save(path, extra=extra, format=save_format(path))
        return
    except (OSError, FastbpError) as exc:
        failure = exc
    name = targets.rescue_name(path)
    for folder in targets.rescue_folders():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            kept = net.save(folder / name, extra=extra)
        except (OSError, FastbpError):
            continue
        err = SaveError(f"could not save {path} ({_reason(failure)}); the trained network is "
                        f"kept at {kept}: move it where it belongs")
        err.exit_status = 1  # type: ignore[attr-defined]
        raise err from failure
    err = SaveError(f"could not save {path} ({_reason(failure)}), nor in "
                    + " or ".join(str(f) for f in targets.rescue_folders())
                    + "; the trained network is lost")
    err.exit_status = 1  # type: ignore[attr-defined]
    raise err from failure


def _reason(exc: BaseException) -> str:
    """Why a save failed, without the path the message repeats."""
    text = str(exc)
    if text.startswith("cannot save ") and ": " in text:
        text = text.split(": ", 1)[1]
    return getattr(exc, "strerror", None) or text


def warn_checkpoint(path: str, exc: BaseException) -> None:
    """One line on stderr: a checkpoint failed; training goes on (the final save tries again,
    with its rescue)."""
    print(f"fastbp: warning: checkpoint to {path} failed ({_reason(exc)}); training goes on",
          file=sys.stderr, flush=True)
