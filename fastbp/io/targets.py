"""Where fastbp writes: checked before any work, so a finished run is never lost to a bad path.

A save writes only a regular file. A character or block device (``/dev/null``), a FIFO, a
socket or a folder at the path is refused, never replaced. A **symbolic link** at the path is
followed, as the shell's ``>`` follows one: the file it points to is replaced (it must be a
regular file, or not exist yet in a folder that does), and the link stays. As Linux's
``protected_symlinks`` does, a link in a world-writable sticky folder (``/tmp``) that belongs to
someone else is refused. A new file gets the mode the user's umask gives (``0o666 & ~umask``),
never the mode of the file it replaces.

:func:`check_file` and :func:`check_folder` also create and remove a temporary file where the
output will go, and :func:`check_room` compares the bytes a model needs with the free space and
the file-size limit (``ulimit -f``). Temporary files of saves (``.NAME.fastbp-XXXXXXXX.tmp``) that
an interrupted save left are removed by the next save to the same folder once a day old.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Sequence

from ..errors import SaveError
from ..files import kind as _kind

TEMP_INFIX = ".fastbp-"
STALE_SECONDS = 24 * 3600
# .NAME.fastbp-XXXXXXXX.tmp (a save), .fastbp-probe-XXXXXXXX.tmp (a check), and
# .NAME.npz.XXXXXXXX.tmp (saves of fastbp 0.1, before the infix)
_TEMP = re.compile(r"^\..*(\.fastbp-|fastbp-probe-|\.npz\.)[a-z0-9_]{8}\.tmp$")


def temp_prefix(target: Path) -> str:
    """The ``mkstemp`` prefix of a save to ``target`` (suffix ``.tmp``)."""
    return f".{target.name}{TEMP_INFIX}"


def file_mode() -> int:
    """The mode a new file gets here: ``0o666`` less the umask."""
    return 0o666 & ~umask()


def umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def resolve(path: str | os.PathLike, label: str) -> Path:
    """The regular file a save to ``path`` writes (a link's target), or ``SaveError`` with
    ``label`` (e.g. ``"--save x.npz"``) saying why nothing may be written there."""
    if not os.fspath(path):
        raise SaveError(f"{label}: the path is empty; give a file name")
    path = Path(path)
    link = ""
    try:
        if path.is_symlink():
            _check_link(path, label)
            target = Path(os.path.realpath(path))
            link = f" (a symbolic link to {target})"
            path = target
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise SaveError(f"{label}{link}: cannot be used ({exc.strerror or exc})") from exc
    if st is not None and _kind(st.st_mode):
        give = "a file name inside it" if stat.S_ISDIR(st.st_mode) else "another path"
        raise SaveError(f"{label}{link}: it is {_kind(st.st_mode)}; fastbp writes only regular "
                        f"files and never replaces anything else: give {give}")
    parent = path.parent
    if not parent.is_dir():
        raise SaveError(f"{label}{link}: directory {parent} does not exist")
    return path


def _check_link(path: Path, label: str) -> None:
    """Refuse a link that ``protected_symlinks`` would not let this process follow."""
    folder = os.stat(path.parent)
    sticky = folder.st_mode & stat.S_ISVTX and folder.st_mode & stat.S_IWOTH
    owner = os.lstat(path).st_uid
    if sticky and hasattr(os, "geteuid") and owner not in (os.geteuid(), folder.st_uid):
        raise SaveError(f"{label}: a symbolic link in the shared folder {path.parent} that "
                        "belongs to another user; fastbp does not follow it: give another path")


def probe(folder: Path, label: str) -> None:
    """Create and remove a temporary file in ``folder``, or ``SaveError`` saying why not."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".fastbp-probe-", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise SaveError(f"{label}: cannot write in {folder} ({exc.strerror or exc})") from exc
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def check_file(path: str | os.PathLike, label: str, need: int | None = None) -> Path:
    """Everything that can be known before a save to ``path``: :func:`resolve`, :func:`probe`
    of its folder and, given the bytes it will take (``need``), :func:`check_room`. Returns the
    file."""
    target = resolve(path, label)
    probe(target.parent, label)
    if need is not None:
        check_room(target.parent, need, label)
    return target


def check_folder(path: str | os.PathLike, label: str, names: Sequence[str] = ()) -> Path:
    """An output folder (``--plot DIR``, ``bench --out DIR``): a writable folder, or a new one
    whose parent is a writable folder (it is not created here). The files ``names`` that will
    be written in it are checked as a save's path is (:func:`resolve`: a regular file or none)."""
    if not os.fspath(path):
        raise SaveError(f"{label}: the path is empty; give a directory")
    folder = Path(path)
    if folder.exists():
        if not folder.is_dir():
            raise SaveError(f"{label}: it is {_kind(folder.stat().st_mode) or 'a file'}, not "
                            "a directory: give a directory (new or existing)")
        probe(folder, label)
        for name in names:
            resolve(folder / name, f"{label}: {folder / name}")
        return folder
    parent = folder.parent
    if not parent.is_dir():
        raise SaveError(f"{label}: directory {parent} does not exist")
    probe(parent, label)
    return folder


def check_room(folder: Path, need: int, label: str) -> None:
    """``SaveError`` if ``need`` bytes cannot be written in ``folder``: less space free, or a
    smaller file-size limit (``ulimit -f``)."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and limit < need:
            raise SaveError(f"{label}: the file-size limit (ulimit -f) is {limit:,} bytes; the "
                            f"model needs about {need:,}")
    except ImportError:  # not POSIX
        pass
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < need:
        raise SaveError(f"{label}: {folder} has {free:,} bytes free; the model needs about "
                        f"{need:,}")


def model_bytes(sizes: list[int], dtype: str, epochs: int = 0, velocities: bool = False) -> int:
    """About the size of a model file: the parameters (twice with momentum's velocities, which
    the file holds beside them), the metadata (a few hundred bytes per epoch of history) and
    the archive's headers."""
    import numpy as np

    params = sum(n * (k + 1) for k, n in zip(sizes[:-1], sizes[1:]))
    copies = 2 if velocities else 1
    return copies * params * np.dtype(dtype).itemsize + 300 * epochs + 16384


JSON_NUMBER_BYTES = 26
"""The most a float64 takes in ``json.dumps`` text with its separator: 17 significant digits,
sign, point, exponent (``-1.2345678901234567e-123``) and ``", "``."""


def json_bytes(sizes: list[int]) -> int:
    """At most the size of the book's ``network2.py`` JSON of a network of ``sizes``: every
    parameter as float64 text (:data:`JSON_NUMBER_BYTES`), plus brackets (a few per row)."""
    params = sum(n * (k + 1) for k, n in zip(sizes[:-1], sizes[1:]))
    rows = sum(2 * n for n in sizes[1:])
    return JSON_NUMBER_BYTES * params + 4 * rows + 1024


def clean_stale(folder: Path, now: float | None = None) -> list[str]:
    """Remove the temporary files of fastbp's own saves in ``folder`` that are more than a day
    old (an interrupted save leaves one); returns their names."""
    now = time.time() if now is None else now
    gone = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return gone
    for entry in entries:
        if not _TEMP.match(entry.name):
            continue
        with contextlib.suppress(OSError):
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode) and now - st.st_mtime > STALE_SECONDS:
                os.unlink(entry.path)
                gone.append(entry.name)
    return gone


def rescue_folders() -> list[Path]:
    """Where a model goes when its own path fails at the end of a run: the user cache
    (``$XDG_CACHE_HOME/fastbp/rescued`` or ``~/.cache/fastbp/rescued``), then the temp folder."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return [Path(base) / "fastbp" / "rescued", Path(tempfile.gettempdir())]


def rescue_name(path: Any) -> str:
    """``NAME-YYYYmmdd-HHMMSS-PID.npz`` for a model that was meant for ``path``."""
    stem = Path(os.fspath(path)).stem or "model"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.npz"


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Run ``write(file)`` on a temporary file beside ``path`` (or the file a link there points
    to), then make it that file: flush, fsync, ``os.replace``, fsync the directory. On error the
    temporary file is removed; ``SaveError`` says what went wrong."""
    label = f"cannot save {path}"
    target = resolve(path, label)  # a regular file, or SaveError
    directory = target.parent
    clean_stale(directory)
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target), suffix=".tmp",
                                   dir=directory)
    except OSError as exc:
        raise SaveError(f"{label}: cannot write in {directory} ({exc.strerror or exc})") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(OSError):  # mkstemp makes 0600: the umask's mode instead
            os.chmod(tmp, file_mode())
        resolve(path, label)  # nothing else took the path meanwhile
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, SaveError):
            raise SaveError(f"{label}: {exc.strerror or exc}") from exc
        raise
    fsync_directory(directory)


def write_file(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` as a save does (:func:`atomic_write`: a regular file only,
    never a FIFO or device there). Returns the path."""
    path = Path(path)
    atomic_write(path, lambda f: f.write(data))
    return path


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
