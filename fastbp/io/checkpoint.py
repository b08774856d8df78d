"""Keep a trained network: a documented, versioned, pickle-free file, written atomically.

The format (``fastbp-model``, version 3) is an ordinary NumPy ``.npz`` archive (a zip of
``.npy`` files) that loads with ``numpy.load(path, allow_pickle=False)``:

* ``weights_{i}`` — ``W^{i+2}``, shape ``(sizes[i+1], sizes[i])``, for ``i = 0 .. L-2``;
* ``biases_{i}`` — ``b^{i+2}``, shape ``(sizes[i+1], 1)``;
* ``velocity_weights_{i}``, ``velocity_biases_{i}`` — the momentum velocities ``v`` of ``W^{i+2}``
  and ``b^{i+2}``, same shapes, all present or none (version 3; a network trained with momentum
  or L1 has them, and resumes with them);
* ``metadata`` — a 1-D ``uint8`` array holding UTF-8 JSON::

      {"format": "fastbp-model", "format_version": 3, "fastbp_version": "0.1.0",
       "sizes": [784, 30, 10], "cost": "quadratic", "dtype": "float32", "init": "standard",
       "kinds": ["sigmoid", "sigmoid"],   # each layer's neuron after the input (version 2)
       "epoch": 5,                       # epochs trained so far (the next one is numbered 5)
       "history": [{"epoch": 0, "cost": ..., "accuracy": ..., "correct": ...,
                    "seconds": ..., "samples_per_s": ...}, ...],
       "rng": {"bit_generator": "PCG64", "state": {...}, ...},   # numpy bit_generator.state
       "extra": {...}}                   # free JSON, e.g. the command line's training options

Version 1 files (no ``kinds``) still load: every layer of theirs is sigmoid; version 1 and 2
files hold no velocities. Every array has the
network's dtype (``float32`` or ``float64``) and is stored exactly, so a
network loaded from a file trains on bit for bit as the one that was saved.

Saving writes a temporary file in the target's directory, flushes and fsyncs it, renames it over
the target (``os.replace``, atomic on POSIX and Windows) and fsyncs the directory: a crash at
any moment leaves either the old file or the new one, never half of one (a stray
``.NAME.fastbp-*.tmp`` may remain; the next save to that folder removes it once a day old).
Only a regular file is written: what else may be at the path, and what a symbolic link there
means, is in :mod:`fastbp.io.targets`. Loading opens only a regular file (a FIFO or a device is
refused before a byte is read), checks the zip directory against the arrays the metadata's sizes
declare (no other member, none larger than its shape takes in float64, metadata of at most
:data:`MAX_METADATA`) before decompressing any array, then the format name and version, every
array's name, shape and dtype, and that the values are finite, and raises
:class:`ModelFormatError` otherwise.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..core.layers.spec import from_spec
from ..core.records import EpochRecord, History
from ..errors import ConfigError, ModelFormatError
from ..files import open_regular
from ..version import __version__
from .archive import MAX_HEADER, ZIP_ERRORS, check_members, check_npz, member_sizes
from .targets import atomic_write, fsync_directory  # noqa: F401 - the save's own steps

FORMAT = "fastbp-model"
FORMAT_VERSION = 4  # a file of a fully connected stack is written as version 3
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
MAX_METADATA = 64 << 20  # 64 MiB of JSON: the history of some 200,000 epochs
MAX_ITEMSIZE = 8  # float64, the widest dtype a model has: the most bytes a value takes
_TOP_KEYS = ("format", "format_version", "fastbp_version", "sizes", "cost", "dtype", "init",
             "epoch", "history", "rng", "extra")


@dataclass
class ModelState:
    """What a model file holds, as plain values (no network): the layer sizes, the cost's name,
    the dtype and initialisation, ``W^l`` and ``b^l`` as host arrays, the random generator, the
    per-epoch history and the caller's ``extra`` JSON."""

    sizes: list[int]
    cost: str
    dtype: str
    init: str
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    rng: np.random.Generator
    history: History
    extra: dict[str, Any] = field(default_factory=dict)
    kinds: list[str] | None = None  # each layer's neuron; None: all sigmoid (version 1 files)
    velocities: list[np.ndarray] | None = None  # v of every W^l, then of every b^l (version 3)
    layers: list[dict[str, Any]] | None = None  # the layer kinds' specs (version 4)


# -- saving ---------------------------------------------------------------------------------
def metadata_of(state: ModelState) -> dict[str, Any]:
    """The JSON metadata that :func:`save` writes for ``state``."""
    meta = {
        "format": FORMAT, "format_version": 3, "fastbp_version": __version__,
        "sizes": list(state.sizes), "cost": state.cost, "dtype": state.dtype,
        "init": state.init, "kinds": list(state.kinds or ["sigmoid"] * (len(state.sizes) - 1)),
        "epoch": len(state.history), "history": state.history.as_dicts(),
        "rng": _to_json(state.rng.bit_generator.state), "extra": state.extra or {},
    }
    if state.layers is not None:
        meta.update(format_version=FORMAT_VERSION, layers=list(state.layers))
    return meta


def save(state: ModelState, path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` (exactly that name; ``.npz`` is the usual suffix), atomically.

    ``state.extra`` is any JSON-serialisable dict stored with the model. Returns the path.
    """
    path = as_path(path)
    try:
        meta = json.dumps(metadata_of(state), allow_nan=True).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"cannot save {path}: extra metadata is not JSON ({exc})") from exc
    arrays = {"metadata": np.frombuffer(meta, dtype=np.uint8)}
    for i, (w, b) in enumerate(zip(state.weights, state.biases)):
        arrays[f"weights_{i}"], arrays[f"biases_{i}"] = w, b
    if state.velocities is not None:
        L = len(state.weights)
        for i in range(L):
            arrays[f"velocity_weights_{i}"] = state.velocities[i]
            arrays[f"velocity_biases_{i}"] = state.velocities[L + i]
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return path


def as_path(path: Any) -> Path:
    """``path`` as a ``Path``; ``ConfigError`` if it is not a ``str`` or ``os.PathLike``."""
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"a model path is a str or os.PathLike, got {path!r}")
    return Path(path)


# -- loading --------------------------------------------------------------------------------
def read_state(path: str | os.PathLike) -> tuple[ModelState, dict[str, Any]]:
    """The model saved at ``path`` as plain state, with its raw metadata; raises
    :class:`ModelFormatError` for anything that is not an intact fastbp model."""
    path = as_path(path)
    meta, arrays = read(path)
    L = len(meta["sizes"]) - 1
    history = _history(path, meta["history"])
    if len(history) != meta["epoch"]:
        raise ModelFormatError(f"{path}: metadata says {meta['epoch']} epochs but holds a "
                               f"history of {len(history)}")
    state = ModelState(
        sizes=list(meta["sizes"]), cost=meta["cost"], dtype=meta["dtype"], init=meta["init"],
        weights=[arrays[f"weights_{i}"] for i in range(L)],
        biases=[arrays[f"biases_{i}"] for i in range(L)],
        rng=_generator(path, meta["rng"]), history=history, extra=dict(meta["extra"]),
        kinds=meta.get("kinds"), layers=meta.get("layers"),
        velocities=([arrays[f"velocity_weights_{i}"] for i in range(L)]
                    + [arrays[f"velocity_biases_{i}"] for i in range(L)])
        if "velocity_weights_0" in arrays else None)
    return state, meta


def read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The checked metadata and arrays of a model file, without building a network. The file
    is opened once, as a regular file; the zip directory is checked against the shapes its
    metadata declares before any array is decompressed."""
    path = as_path(path)
    with _open(path) as file:
        if not zipfile.is_zipfile(file):
            raise ModelFormatError(
                f"{path}: not a fastbp model (a model is an .npz archive; this file is not a "
                "zip archive, or it is truncated)")
        check_npz(path, file)  # sizes and .npy headers checked before NumPy allocates anything
        try:
            sizes = member_sizes(file)
            if sizes.get("metadata", 0) > MAX_METADATA:
                raise ModelFormatError(f"{path}: metadata of {sizes['metadata']:,} bytes, more "
                                       f"than the {MAX_METADATA:,} a model's holds (refused "
                                       "unread)")
            with np.load(file, allow_pickle=False) as npz:
                meta = _metadata(path, npz["metadata"] if "metadata" in sizes else None)
                shapes = _expected(meta, any(n.startswith("velocity_") for n in sizes), path)
                check_members(path, sizes, {"metadata": MAX_METADATA, **{
                    name: math.prod(shape) * MAX_ITEMSIZE + MAX_HEADER + 128
                    for name, shape in shapes.items()}}, f"sizes {meta['sizes']}")
                arrays = {name: npz[name] for name in npz.files if name != "metadata"}
        except ValueError as exc:  # object arrays need pickle, which is refused
            if "pickle" in str(exc):
                raise ModelFormatError(
                    f"{path}: holds pickled Python objects; fastbp models never do, and loading "
                    "them could run arbitrary code, so it is refused") from exc
            raise ModelFormatError(f"{path}: damaged archive ({exc})") from exc
        except ZIP_ERRORS as exc:
            raise ModelFormatError(f"{path}: truncated or damaged archive ({exc})") from exc
    odd = sorted(name for name, a in arrays.items() if not isinstance(a, np.ndarray))
    if odd:
        raise ModelFormatError(f"{path}: not a fastbp model ({', '.join(odd)} are not .npy "
                               "arrays)")
    _check_arrays(path, meta, arrays)
    kinds = meta.get("kinds", ["sigmoid"] * (len(meta["sizes"]) - 1))
    if (not isinstance(kinds, list) or len(kinds) != len(meta["sizes"]) - 1
            or not all(isinstance(k, str) for k in kinds)):
        raise ModelFormatError(f"{path}: kinds must list one neuron name per layer after the "
                               f"input, got {kinds!r}")
    return meta, arrays


def _open(path: Path) -> BinaryIO:
    """``path`` open for reading as a regular file, or ``ModelFormatError`` naming the cause
    (no such file, a dangling link, a directory, a FIFO or device, no permission)."""
    try:
        if path.is_symlink() and not path.exists():
            raise ModelFormatError(f"{path}: a symbolic link to {os.readlink(path)}, which does "
                                   "not exist")
        if path.is_dir():
            raise ModelFormatError(f"{path}: no such model file (it is a directory)")
        file = open_regular(path, ModelFormatError)
        try:
            file.read(4)  # a file that fails to read (/proc/self/mem) fails here, in one line
            file.seek(0)
        except BaseException:
            file.close()
            raise
        return file
    except FileNotFoundError as exc:
        raise ModelFormatError(f"{path}: no such model file") from exc
    except OSError as exc:
        raise ModelFormatError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def _metadata(path: Path, raw: np.ndarray | None) -> dict[str, Any]:
    if raw is None:
        raise ModelFormatError(f"{path}: not a fastbp model (no metadata entry)")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFormatError(f"{path}: metadata must be a 1-D uint8 array of UTF-8 JSON")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFormatError(f"{path}: metadata is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ModelFormatError(f"{path}: not a fastbp model (format {found!r}, "
                               f"expected {FORMAT!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFormatError(f"{path}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{path}: written by fastbp {meta.get('fastbp_version', '?')} in format version "
            f"{version}; this fastbp reads versions 1 to {FORMAT_VERSION}: upgrade fastbp")
    missing = [k for k in _TOP_KEYS if k not in meta]
    if missing:
        raise ModelFormatError(f"{path}: metadata lacks {', '.join(missing)}")
    sizes = meta["sizes"]
    if (not isinstance(sizes, list) or len(sizes) < 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes)):
        raise ModelFormatError(f"{path}: sizes must be a list of positive integers, got {sizes!r}")
    if version >= 2 and "kinds" not in meta:
        raise ModelFormatError(f"{path}: metadata lacks kinds")
    if meta["dtype"] not in ("float16", "float32", "float64"):
        raise ModelFormatError(f"{path}: unsupported dtype {meta['dtype']!r}")
    epoch = meta["epoch"]
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise ModelFormatError(f"{path}: epoch must be an integer >= 0, got {epoch!r}")
    if not isinstance(meta["history"], list) or not isinstance(meta["extra"], dict):
        raise ModelFormatError(f"{path}: history must be a list and extra an object")
    return meta


Shapes = tuple[tuple[int, ...], tuple[int, ...]]


def layer_shapes(meta: dict[str, Any], path: Any = "model") -> list[Shapes]:
    """``(W shape, b shape)`` of every layer: from the layer specs of a version 4 file (checked
    against its sizes), else ``(n_l, n_{l-1})``, ``(n_l, 1)`` from the sizes."""
    sizes = meta["sizes"]
    if "layers" not in meta:
        return [((n, k), (n, 1)) for k, n in zip(sizes[:-1], sizes[1:])]
    specs = meta["layers"]
    if not isinstance(specs, list) or len(specs) != len(sizes) - 1:
        raise ModelFormatError(f"{path}: layers must list {len(sizes) - 1} layer specs (one "
                               f"per size after the input), got {str(specs)[:80]}")
    try:
        layers = [from_spec(spec) for spec in specs]
    except ConfigError as exc:
        raise ModelFormatError(f"{path}: invalid layer spec ({exc})") from exc
    flat = [int(math.prod(layers[0].in_shape)), *(int(math.prod(la.out_shape)) for la in layers)]
    if flat != sizes:
        raise ModelFormatError(f"{path}: the layer specs give sizes {flat}, the metadata {sizes}")
    return [layer.param_shapes() for layer in layers]


def _expected(meta: dict[str, Any], velocities: bool, path: Any = "model"
              ) -> dict[str, tuple[int, ...]]:
    """The arrays a model of ``meta``'s sizes (or layer specs) holds, by name, and their
    shapes."""
    expected = {}
    for i, (wshape, bshape) in enumerate(layer_shapes(meta, path)):
        expected[f"weights_{i}"], expected[f"biases_{i}"] = wshape, bshape
        if velocities:  # all or none
            expected[f"velocity_weights_{i}"], expected[f"velocity_biases_{i}"] = wshape, bshape
    return expected


def _check_arrays(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    sizes, dtype = meta["sizes"], np.dtype(meta["dtype"])
    expected = _expected(meta, any(name.startswith("velocity_") for name in arrays), path)
    missing = sorted(set(expected) - set(arrays))
    unknown = sorted(set(arrays) - set(expected))
    if missing or unknown:
        raise ModelFormatError(
            f"{path}: arrays do not match sizes {sizes}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unexpected {', '.join(unknown)}" if unknown else ""))
    for name, shape in expected.items():
        a = arrays[name]
        if a.shape != shape:
            raise ModelFormatError(f"{path}: {name} has shape {a.shape}, expected {shape} "
                                   f"for sizes {sizes}")
        if a.dtype != dtype:
            raise ModelFormatError(f"{path}: {name} has dtype {a.dtype}, expected {dtype}")
        if not np.isfinite(a).all():
            raise ModelFormatError(f"{path}: {name} contains NaN or inf")


def _generator(path: Path, state: Any) -> np.random.Generator:
    """A ``numpy.random.Generator`` in the saved state."""
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in BIT_GENERATORS:
        raise ModelFormatError(f"{path}: unknown random generator {name!r}; "
                               f"expected one of {BIT_GENERATORS}")
    bit_generator = getattr(np.random, name)()
    try:
        raw = _from_json(state)
        key = raw.get("state", {}).get("key") if name == "MT19937" else None
        if key is not None and np.shape(key) != (624,):  # NumPy reads past a short one
            raise ValueError(f"its key holds {np.size(key)} numbers, not 624")
        bit_generator.state = raw
    except (TypeError, ValueError, KeyError, IndexError, OverflowError, RecursionError,
            AttributeError) as exc:
        raise ModelFormatError(f"{path}: invalid random state ({name}: {exc})") \
            from exc
    return np.random.Generator(bit_generator)


_RECORD_TYPES = {  # what each EpochRecord field may hold in a file, and in words
    "epoch": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "cost": (lambda v: _is_real(v, finite=False), "a number"),
    "accuracy": (lambda v: v is None or (_is_real(v) and 0 <= v <= 1), "null or in [0, 1]"),
    "correct": (lambda v: v is None or (_is_int(v) and v >= 0), "null or an integer >= 0"),
    "seconds": (lambda v: _is_real(v) and v >= 0, "a number >= 0"),
    "samples_per_s": (lambda v: _is_real(v, finite=False) and v >= 0, "a number >= 0"),
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any, finite: bool = True) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and (not finite or math.isfinite(v)))


def _history(path: Path, records: list[Any]) -> History:
    """The saved per-epoch records, each field's type checked (:data:`_RECORD_TYPES`)."""
    names = {f.name for f in fields(EpochRecord)}
    out = History()
    for i, r in enumerate(records):
        if not isinstance(r, dict) or set(r) != names:
            raise ModelFormatError(f"{path}: history entry {i} must have the keys {sorted(names)}")
        for key, (ok, words) in _RECORD_TYPES.items():
            if not ok(r[key]):
                shown = repr(r[key])[:40]
                raise ModelFormatError(f"{path}: history entry {i} has {key} {shown}, expected "
                                       f"{words}; the file's history is damaged")
        out.append(EpochRecord(**r))
    return out


def _to_json(obj: Any) -> Any:
    """NumPy scalars and arrays (MT19937's key) as plain JSON values."""
    if isinstance(obj, dict):
        return {k: _to_json(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": obj.dtype.name}
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _from_json(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__ndarray__", "dtype"}:
            return np.asarray(obj["__ndarray__"], dtype=np.dtype(obj["dtype"]))
        return {k: _from_json(v) for k, v in obj.items()}
    return obj
