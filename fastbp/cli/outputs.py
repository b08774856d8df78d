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
from pathlib import Path
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
    "momentum": (lambda v: _is_real(v) and 0 <= v < 1, "a number in [0, 1)"),
    "l1": (lambda v: _is_real(v) and v >= 0, "a finite number >= 0"),
    "dropout": (lambda v: _is_real(v) and 0 <= v < 1, "a number in [0, 1)"),
    "expand": (lambda v: isinstance(v, bool), "true or false"),
    "schedule": (lambda v: v is None or (isinstance(v, list) and len(v) == 2
                                         and all(_COUNT[0](k) for k in v)),
                 "null or [N, K], two integers >= 1 (as --schedule N,K)"),
}
"""The command line's checks of each option, for the same option read from a model file."""
SCHEDULE = {
    "eta": (lambda v: v is None or (_is_real(v) and v > 0), "null or a finite number > 0"),
    "halved": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "best_accuracy": (lambda v: v is None or _is_real(v), "null or a number"),
    "wait": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "stopped_epoch": (lambda v: v is None or (_is_int(v) and v >= 0), "null or an integer >= 0"),
    "etas": (lambda v: isinstance(v, list) and all(_is_real(e) and e > 0 for e in v),
             "a list of numbers > 0"),
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
    """Refuse, before any training, every path this run could not write, and a save the
    file-size limit or the free space could not hold (counted in the file's format: the
    velocities of momentum or L1 double the parameters; a ``.json`` is float64 text and its
    :func:`state_file` beside it holds the rest)."""
    for option in ("save", "resume", "plot"):
        value = getattr(args, option, None)
        if value is not None and not str(value):
            raise ConfigError(f"--{option} needs a path, got an empty string")
    if save_path and getattr(args, "rank", 0) == 0:
        label = f"{'--save' if args.save else '--resume'} {save_path}"
        velocities = bool(args.momentum or args.l1) or net.velocities is not None
        need = targets.model_bytes(net.sizes, net.dtype, max(args.epochs, len(net.history)),
                                   velocities=velocities)
        if network2.is_json_name(save_path):
            network2.check_fits(net.cost.name, net.kinds)
            targets.check_file(save_path, label, targets.json_bytes(net.sizes))
            state = state_file(save_path)
            targets.check_file(state, f"{label} (its training state, {state})", need)
        else:
            targets.check_file(save_path, label, need)
    if args.plot and getattr(args, "rank", 0) == 0:
        from ..io.plots import PICTURES

        targets.check_folder(args.plot, f"--plot {args.plot}", PICTURES)


def state_file(path: Any) -> Path:
    """Where ``fastbp train --save NAME.json`` keeps what the book's JSON cannot hold (the
    random state, history, velocities, training options and the parameters in their own
    dtype): ``NAME.fastbp.npz`` beside it, a fastbp model file."""
    path = Path(path)
    return path.with_name(path.stem + ".fastbp.npz")


def write_model(net: Any, path: Any, extra: dict[str, Any]) -> None:
    """Save ``net`` to ``path``: a fastbp model, or for a ``.json`` name the book's file and
    its :func:`state_file` (the JSON first: a state file never names newer weights than it)."""
    if network2.is_json_name(path):
        net.save(path, format=network2.FORMAT)
        net.save(state_file(path), extra=extra)
    else:
        net.save(path, extra=extra)


def checked_extra(extra: Any, path: Any) -> dict[str, Any]:
    """The ``extra`` of a model file that ``--resume`` reads, checked as the command line checks
    the same values: the training options, the monitor's lists, the early-stopping and the
    schedule's state; ``ModelFormatError`` names the first bad entry."""
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
    for section, checks in (("early_stopping", EARLY_STOPPING), ("schedule", SCHEDULE)):
        state = _section(extra, section, path)
        for key, (ok, words) in checks.items():
            if key in state and not ok(state[key]):
                _bad(path, f'extra["{section}"]["{key}"]', state[key], words)
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


def save_or_rescue(net: Any, path: str, extra: dict[str, Any]) -> None:
    """``net`` saved to ``path``; if that fails, in a rescue folder, and a :class:`SaveError`
    (exit status 1) that says where, or that nothing could keep it."""
    kept, failure = save_somewhere(net, path, extra)
    if failure is None:
        return
    if kept is not None:
        err = SaveError(f"could not save {path} ({_reason(failure)}); the trained network is "
                        f"kept at {kept}: move it where it belongs")
    else:
        err = SaveError(f"could not save {path} ({_reason(failure)}), nor in "
                        + " or ".join(str(f) for f in targets.rescue_folders())
                        + "; the trained network is lost")
    err.exit_status = 1  # type: ignore[attr-defined]
    raise err from failure


def save_somewhere(net: Any, path: str, extra: dict[str, Any]
                   ) -> tuple[Path | None, BaseException | None]:
    """Save ``net`` to ``path`` (:func:`write_model`), else as a fastbp model in the first
    rescue folder that takes it. Returns where it went (``None``: nowhere) and why ``path``
    failed (``None``: it did not)."""
    try:
        write_model(net, path, extra)
        return Path(path), None
    except (OSError, FastbpError) as exc:
        failure = exc
    name = targets.rescue_name(path)
    for folder in targets.rescue_folders():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return net.save(folder / name, extra=extra), failure
        except (OSError, FastbpError):
            continue
    return None, failure


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
