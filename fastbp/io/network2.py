"""The book's model file: the JSON that ``network2.py``'s ``Network.save`` writes and its
``load`` reads, as plain state (no network).

The file is one JSON object with exactly four keys::

    {"sizes": [784, 30, 10],
     "weights": [W^2, ..., W^L],   # W^l as nested lists, shape (sizes[l-1], sizes[l-2])
     "biases": [b^2, ..., b^L],    # b^l as nested lists, shape (sizes[l-1], 1)
     "cost": "CrossEntropyCost"}   # the name of network2.py's cost class

``network2.py`` knows sigmoid neurons and its two costs, ``QuadraticCost`` and
``CrossEntropyCost``; only such a network is written in this format. Reading checks every key,
type, shape and value and raises :class:`ModelFormatError` naming what is wrong; only a regular
file is read (a FIFO or a device is refused before a byte is read), and at most what its network
takes (:func:`max_bytes`: from the sizes the file declares first, as ``network2.py`` writes them,
else from :data:`MAX_PARAMETERS`), so a huge file is refused unread. The values are
read as ``float64`` (as ``network2.py`` holds them), so a loaded network computes what the book's
does. Saving is atomic, as every fastbp save (:func:`fastbp.io.targets.atomic_write`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..core.records import History
from ..errors import ModelFormatError
from ..files import open_regular, read_bounded
from .checkpoint import ModelState, as_path
from .targets import atomic_write

FORMAT = "network2"
COSTS = {"QuadraticCost": "quadratic", "CrossEntropyCost": "cross-entropy"}
"""``network2.py``'s cost class names and fastbp's names for the same costs."""
KEYS = ("sizes", "weights", "biases", "cost")
MAX_PARAMETERS = 10_000_000  # 100 times the book's largest network ([784, 100, 10])
NUMBER_BYTES = 48  # a number, its separator and its share of brackets and indentation
# (network2.py writes at most 26: a float64's 24 characters and ", ")
SLACK = 1 << 16  # the keys, the cost's name, the sizes
MAX_BYTES = MAX_PARAMETERS * NUMBER_BYTES + SLACK
_SIZES_FIRST = re.compile(rb'\s*\{\s*"sizes"\s*:\s*\[([0-9,\s]{0,4000})\]')


def is_json(path: Path) -> bool:
    """Whether ``path`` is meant as a ``network2.py`` file: a ``.json`` name, or text that
    starts with ``{`` (read only from a regular file: a FIFO is never waited on)."""
    if path.suffix.lower() == ".json":
        return True
    try:
        with open_regular(path, ModelFormatError) as f:
            return f.read(64).lstrip()[:1] == b"{"
    except (OSError, ModelFormatError):
        return False


def max_bytes(sizes: list[int] | None = None) -> tuple[int, str]:
    """The most bytes a ``network2.py`` file of ``sizes`` (``None``: of any network fastbp
    reads, at most :data:`MAX_PARAMETERS` parameters) takes, and that limit in words."""
    if sizes is None:
        return MAX_BYTES, (f"the most a network2.py model of {MAX_PARAMETERS:,} parameters "
                           f"takes at {NUMBER_BYTES} bytes a number")
    params = sum(n * (k + 1) for k, n in zip(sizes[:-1], sizes[1:]))
    return (params * NUMBER_BYTES + SLACK,
            f"what its sizes {sizes} take at {NUMBER_BYTES} bytes a number")


def _cap(path: Path) -> tuple[int, str]:
    """The cap on reading ``path``: from the sizes it declares first, as ``network2.py``
    writes them, else :func:`max_bytes` of any network."""
    with open_regular(path, ModelFormatError) as f:
        match = _SIZES_FIRST.match(f.read(4096))
    sizes = [int(v) for v in match.group(1).split(b",") if v.strip()] if match else []
    if len(sizes) < 2:
        return max_bytes()
    cap, why = max_bytes(sizes)
    return (cap, why) if cap <= MAX_BYTES else max_bytes()


# -- saving ---------------------------------------------------------------------------------
def is_json_name(path: str | os.PathLike) -> bool:
    """Whether a save to ``path`` writes this format (a ``.json`` name)."""
    return Path(path).suffix.lower() == ".json"


def check_fits(cost: str, kinds: list[str] | tuple[str, ...]) -> None:
    """``ModelFormatError`` unless ``network2.py`` can hold a network of this cost and these
    neurons (sigmoid layers, the quadratic or cross-entropy cost)."""
    if cost not in COSTS.values() or set(kinds) != {"sigmoid"}:
        raise ModelFormatError(
            f"network2.py holds sigmoid neurons with the quadratic or cross-entropy cost; this "
            f"network has {list(kinds)} neurons and the {cost} cost: save it in fastbp's own "
            "format (an .npz) instead")


def document(state: ModelState) -> dict[str, Any]:
    """The JSON object ``network2.py``'s ``save`` writes for ``state``; ``ModelFormatError`` if
    ``network2.py`` could not hold this network (other neurons or cost)."""
    names = {v: k for k, v in COSTS.items()}
    check_fits(state.cost, state.kinds or ["sigmoid"] * (len(state.sizes) - 1))
    return {"sizes": [int(s) for s in state.sizes],
            "weights": [np.asarray(w, dtype=np.float64).tolist() for w in state.weights],
            "biases": [np.asarray(b, dtype=np.float64).tolist() for b in state.biases],
            "cost": names[state.cost]}


def save(state: ModelState, path: str | os.PathLike) -> Path:
    """Write ``state`` as ``network2.py``'s JSON to ``path``, atomically. Returns the path."""
    path = as_path(path)
    text = json.dumps(document(state)).encode("utf-8")
    atomic_write(path, lambda f: f.write(text))
    return path


# -- loading --------------------------------------------------------------------------------
def read_state(path: str | os.PathLike) -> ModelState:
    """The network in the ``network2.py`` file at ``path`` as plain state (``float64``, a fresh
    random generator, no history); ``ModelFormatError`` for anything else."""
    path = as_path(path)
    doc = _document(path)
    sizes, cost = doc["sizes"], doc["cost"]
    if (not isinstance(sizes, list) or len(sizes) < 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes)):
        raise ModelFormatError(f"{path}: sizes must be a list of positive integers, got {sizes!r}")
    params = sum(n * (k + 1) for k, n in zip(sizes[:-1], sizes[1:]))
    if params > MAX_PARAMETERS:
        raise ModelFormatError(f"{path}: sizes {sizes} hold {params:,} parameters, more than "
                               f"the {MAX_PARAMETERS:,} fastbp reads from a network2.py file")
    if not isinstance(cost, str) or cost not in COSTS:
        raise ModelFormatError(f"{path}: unknown cost {cost!r}; network2.py's costs are "
                               f"{', '.join(COSTS)}")
    pairs = list(zip(sizes[:-1], sizes[1:]))
    weights = _arrays(path, doc["weights"], "weights", [(n, k) for k, n in pairs])
    biases = _arrays(path, doc["biases"], "biases", [(n, 1) for _, n in pairs])
    return ModelState(sizes=list(sizes), cost=COSTS[cost], dtype="float64", init="scaled",
                      weights=weights, biases=biases, rng=np.random.default_rng(),
                      history=History(), kinds=["sigmoid"] * len(pairs))


def _document(path: Path) -> dict[str, Any]:
    """The file's JSON object with exactly :data:`KEYS`, or ``ModelFormatError``."""
    try:
        if path.is_dir():
            raise ModelFormatError(f"{path}: no such model file (it is a directory)")
        cap, why = _cap(path)
        text = read_bounded(path, cap, why, ModelFormatError)
    except FileNotFoundError as exc:
        raise ModelFormatError(f"{path}: no such model file") from exc
    except OSError as exc:
        raise ModelFormatError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    try:
        doc = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFormatError(f"{path}: not a network2.py model (not valid JSON: {exc})") \
            from exc
    if not isinstance(doc, dict):
        raise ModelFormatError(f"{path}: not a network2.py model (a JSON "
                               f"{type(doc).__name__}, not an object with keys {list(KEYS)})")
    missing = [k for k in KEYS if k not in doc]
    unknown = sorted(k for k in doc if k not in KEYS)
    if missing or unknown:
        raise ModelFormatError(
            f"{path}: not a network2.py model (its JSON holds exactly {', '.join(KEYS)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unexpected {', '.join(unknown)}" if unknown else "") + ")")
    return doc


def _arrays(path: Path, values: Any, name: str, shapes: list[tuple[int, int]]) -> list[np.ndarray]:
    """``values`` as float64 arrays of ``shapes``, or ``ModelFormatError`` naming the layer."""
    if not isinstance(values, list) or len(values) != len(shapes):
        raise ModelFormatError(f"{path}: {name} must be a list of {len(shapes)} matrices (one "
                               "per layer after the input)")
    out = []
    for i, (v, shape) in enumerate(zip(values, shapes)):
        odd = _not_a_number(v)
        if odd is not None:
            raise ModelFormatError(f"{path}: {name}[{i}] is not a matrix of numbers (it holds "
                                   f"{odd!r}; JSON numbers only, not strings or booleans)")
        try:
            a = np.array(v, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ModelFormatError(f"{path}: {name}[{i}] is not a matrix of numbers "
                                   f"({exc})") from exc
        if a.shape != shape:
            raise ModelFormatError(f"{path}: {name}[{i}] has shape {a.shape}, expected {shape} "
                                   "for its sizes")
        if not np.isfinite(a).all():
            raise ModelFormatError(f"{path}: {name}[{i}] contains NaN or inf")
        out.append(a)
    return out


def _not_a_number(matrix: Any) -> Any:
    """The first entry of a matrix as nested JSON lists that is not a JSON number (a string,
    a boolean, null, an object), or ``None``; ``np.array(..., float64)`` would read ``"1.5"``
    and ``true`` as numbers."""
    rows = matrix if isinstance(matrix, list) else [matrix]
    for row in rows:
        for x in (row if isinstance(row, list) else [row]):
            if type(x) is not float and type(x) is not int:
                if isinstance(x, list):  # deeper nesting: the shape check names it
                    continue
                return x
    return None
