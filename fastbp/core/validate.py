"""Checks at the API boundary: done once per call, never inside the training loop."""

from __future__ import annotations

import math
import numbers
import os
import sys
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError, ShapeError


def check_sizes(sizes: Any) -> list[int]:
    """Layer sizes: at least two layers, each a positive integer."""
    try:
        out = [int(s) for s in sizes]
        if any(isinstance(s, bool) or o != s for o, s in zip(out, sizes)):
            raise ValueError
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"sizes must be a list of integers like [784, 30, 10], got {sizes!r}") from exc
    if len(out) < 2:
        raise ConfigError(f"sizes needs at least 2 layers (input and output), got {out}")
    bad = [s for s in out if s < 1]
    if bad:
        raise ConfigError(f"every layer size must be >= 1, got {out}")
    limit = np.iinfo(np.intp).max // 8  # bytes of a float64 array must fit in a pointer
    for layer, (k, n) in enumerate(zip(out[:-1], out[1:]), start=2):
        if n * (k + 1) > limit:
            raise ConfigError(
                f"sizes {out}: layer {layer} would hold {n:,} × {k + 1:,} parameters, more "
                "than any array can address; use smaller layers")
    return out


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """A finite real number > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return float(value)


def check_count(name: str, value: Any, *, low: int = 1, high: int | None = None) -> int:
    """An integer in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    count = int(value)
    if count < low or (high is not None and count > high):
        span = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ConfigError(f"{name} must be {span}, got {value}")
    return count


def check_momentum(momentum: Any) -> float:
    """Momentum ``μ`` in ``[0, 1)``."""
    mu = check_positive("momentum", momentum, allow_zero=True)
    if mu >= 1.0:
        raise ConfigError(f"momentum must be in [0, 1), got {momentum!r} (1 or more never "
                          "slows the velocity down)")
    return mu


def check_step(eta: Any, lmbda: Any = 0.0, momentum: Any = 0.0, l1: Any = 0.0,
               dropout: Any = 0.0) -> tuple[float, float, float, float, float]:
    """The step settings ``(η, λ, μ, λ₁, p)``, each checked: what ``Network.train`` and the
    command line both check, the command line before it reads any data."""
    from .dropout import check_dropout

    return (check_positive("eta", eta), check_positive("lmbda", lmbda, allow_zero=True),
            check_momentum(momentum), check_positive("l1", l1, allow_zero=True),
            check_dropout(dropout))


def check_batch(x: Any, n_in: int, name: str = "X") -> Any:
    """A 2-D batch ``(n_in, m)``, one sample per column, with finite entries."""
    shape = getattr(x, "shape", None)
    if shape is None:
        x = np.asarray(x)
        shape = x.shape
    if len(shape) != 2 or shape[0] != n_in:
        raise ShapeError(
            f"{name} has shape {tuple(shape)}; expected ({n_in}, m) with one sample per column"
            + (" (transpose it: X.T)" if len(shape) == 2 and shape[1] == n_in else "")
        )
    if shape[1] < 1:
        raise ShapeError(f"{name} has no samples (shape {tuple(shape)})")
    return check_finite(x, name)


def check_targets(y: Any, n_out: int, m: int, name: str = "Y") -> Any:
    """One-hot targets ``(n_out, m)`` matching a batch of ``m`` samples."""
    shape = getattr(y, "shape", None)
    if shape is None:
        y = np.asarray(y)
        shape = y.shape
    if tuple(shape) != (n_out, m):
        raise ShapeError(f"{name} has shape {tuple(shape)}; expected ({n_out}, {m}) to match X")
    return check_finite(y, name)


def check_finite(a: Any, name: str) -> Any:
    """``a`` if it holds real numbers and no NaN or inf; an object array becomes float64."""
    if isinstance(a, np.ndarray) and a.dtype.kind not in "biuf":
        if a.dtype.kind != "O":
            raise ShapeError(f"{name} must hold real numbers, got dtype {a.dtype}")
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ShapeError(f"{name} must hold real numbers: {exc}") from exc
    if not _all_finite(a):
        raise ShapeError(f"{name} contains NaN or inf")
    return a


def check_labels(labels: Any, n_out: int, m: int, name: str = "labels") -> np.ndarray:
    """Integer class labels: ``m`` of them, each in ``[0, n_out)``; one-hot columns are accepted."""
    lab = np.asarray(labels)
    if lab.ndim == 2 and lab.shape == (n_out, m):
        lab = lab.argmax(axis=0)
    lab = lab.reshape(-1) if lab.ndim == 2 and 1 in lab.shape else lab
    if lab.ndim != 1 or lab.shape[0] != m:
        raise ShapeError(f"{name} has shape {lab.shape}; expected ({m},) integer labels or "
                         f"({n_out}, {m}) one-hot columns, one per sample")
    if np.issubdtype(lab.dtype, np.floating):
        if not np.all(np.isfinite(lab)) or np.any(lab != np.round(lab)):
            raise ShapeError(f"{name} must be integers, got non-integer values")
    elif lab.dtype.kind not in "iub":
        raise ShapeError(f"{name} must be integers, got dtype {lab.dtype}")
    if m and (lab.min() < 0 or lab.max() >= n_out):
        raise ShapeError(
            f"{name} out of range: found {lab.min()}..{lab.max()}, expected 0..{n_out - 1}"
        )
    return lab.astype(np.int64)


def _all_finite(a: Any) -> bool:
    if isinstance(a, np.ndarray):
        if a.dtype.kind not in "fc":
            return True
        with np.errstate(over="ignore", invalid="ignore"):  # a NaN or ±inf makes the sum one
            if np.isfinite(a.sum()):  # one read, no temporary: twice as fast as isfinite(a)
                return True
        return bool(np.isfinite(a).all())  # an overflowing sum of finite values lands here
    try:
        return bool(np.isfinite(np.asarray(a)).all())
    except (TypeError, RuntimeError):  # a device array: check it where it lives
        # (CuPy arrays have no __array_namespace__: their module is the namespace)
        ns = getattr(a, "__array_namespace__", None)
        xp = ns() if ns is not None else sys.modules[type(a).__module__.split(".")[0]]
        return bool(xp.all(xp.isfinite(a)))


def check_seed(seed: Any) -> np.random.Generator:
    """``numpy.random.default_rng(seed)``; ``seed`` is ``None``, an integer >= 0, or a NumPy
    ``SeedSequence``/``BitGenerator``/``Generator``."""
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"seed must be None or an integer >= 0, got {seed!r}") from exc


def check_callable(name: str, f: Any) -> Any:
    """``None`` or something callable."""
    if f is not None and not callable(f):
        raise ConfigError(f"{name} must be a function or None, got {f!r}")
    return f


def check_flag(name: str, value: Any) -> bool:
    """``True`` or ``False`` (a string like ``"no"`` would silently count as true)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name} must be True or False, got {value!r}")
    return bool(value)


# -- casting to the network's dtype ------------------------------------------------------------
def may_overflow(source: Any, target: Any) -> bool:
    """Whether values of dtype ``source`` can exceed the range of the float dtype ``target``
    (``float64`` into ``float32``, ``int32`` into ``float16``); unknown dtypes count as can."""
    try:
        src, dst = np.dtype(_dtype_name(source)), np.dtype(target)
    except TypeError:
        return True
    if np.issubdtype(src, np.floating):
        return bool(np.finfo(src).max > np.finfo(dst).max)
    if src.kind in "iu":
        return bool(np.iinfo(src).max > np.finfo(dst).max)
    return src.kind not in "b"


def _dtype_name(dtype: Any) -> Any:
    """A NumPy-readable name for ``dtype`` (Array API dtypes print as ``module.float64``)."""
    if isinstance(dtype, (np.dtype, type, str)):
        return dtype
    return str(getattr(dtype, "name", dtype)).rsplit(".", 1)[-1]


def cast_checked(ops: Any, source: Any, name: str, move: Callable[[Any], Any] | None = None
                 ) -> Any:
    """``move(source)`` (default ``ops.asarray``: ``source`` on the device in ``ops.dtype``),
    checked for values the cast made inf: ``ShapeError`` naming the overflow. The check is one
    pass on the device, made only where ``source``'s dtype can exceed ``ops.dtype``."""
    with np.errstate(over="ignore"):  # NumPy warns on such a cast; the error below says more
        cast = (move or ops.asarray)(source)
    dtype = ops.dtype
    if not may_overflow(getattr(source, "dtype", np.float64), dtype) or ops.all_finite(cast):
        return cast
    top = float(np.finfo(dtype).max)
    wider = {"float16": "float32", "float32": "float64"}.get(dtype)
    raise ShapeError(
        f"{name} overflows {dtype}: it holds values beyond ±{top:.6g}, the largest {dtype} "
        f"number, which become inf in the network's dtype; scale the data (e.g. to [0, 1])"
        + (f" or use dtype='{wider}'" if wider else ""))


# -- environment variables ---------------------------------------------------------------------
FLAG_WORDS = {"1": True, "true": True, "yes": True, "on": True,
              "0": False, "false": False, "no": False, "off": False}


def env_flag(name: str, default: bool) -> bool:
    """The boolean environment variable ``name``: ``1/true/yes/on`` or ``0/false/no/off`` (any
    case); unset or empty gives ``default``; anything else is a ``ConfigError``."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return FLAG_WORDS[value.lower()]
    except KeyError:
        raise ConfigError(f"{name}={value!r} is not a switch: use 1 (on) or 0 (off)") from None


def env_int(name: str, *, low: int = 0, high: int | None = None, hint: str = "") -> int | None:
    """The integer environment variable ``name`` in ``[low, high]`` (``5e7`` is read as
    50000000), or None when unset or empty; anything else is a ``ConfigError``."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    span = f"between {low} and {high}" if high is not None else f">= {low}"
    if (not math.isfinite(number) or number != int(number) or number < low
            or (high is not None and number > high)):
        raise ConfigError(f"{name}={value!r} must be a whole number {span}"
                          + (f" ({hint})" if hint else ""))
    return int(number)


def env_choice(name: str, choices: Sequence[str]) -> str | None:
    """The environment variable ``name`` if it is one of ``choices``; None when unset or empty;
    anything else is a ``ConfigError``."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if value not in choices:
        raise ConfigError(f"{name}={value!r}: use one of {', '.join(choices)}")
    return value
