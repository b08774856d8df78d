"""Reading a file safely: only a regular file is read, and never more than it should hold.

Every reader of fastbp (model files, network2 JSON, IDX data, the plan cache) opens through
:func:`open_regular`: a non-blocking open (so a FIFO cannot hang it), then ``fstat`` on the
open descriptor (so what is checked is what is read): a FIFO, a device (``/dev/zero``), a
socket or a folder is refused with one line, before a byte is read. :func:`read_bounded` reads a
whole file only when its size is within a cap that the caller derives from what the file should
hold, and reads at most one byte past the cap (a file that grows meanwhile is refused too).

A leaf module, as :mod:`fastbp.errors` is: every layer may use it.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from .errors import DataError, FastbpError

_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0) | _NONBLOCK


def kind(mode: int) -> str | None:
    """What a non-regular file is, in words (``None`` for a regular file)."""
    for test, words in ((stat.S_ISCHR, "a character device (like /dev/null)"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                        (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return words
    return None if stat.S_ISREG(mode) else "not a regular file"


def open_regular(path: str | os.PathLike, error: type[FastbpError] = DataError, *,
                 follow: bool = True) -> BinaryIO:
    """``path`` opened for binary reading if it is a regular file; ``error`` naming what it is
    otherwise. ``follow=False`` refuses a symbolic link too (``O_NOFOLLOW``). A missing or
    unreadable file raises the ``OSError`` of the open (``FileNotFoundError``, ...)."""
    flags = _FLAGS | (0 if follow else _NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if not follow and os.path.islink(path):  # ELOOP (Linux) or EMLINK (FreeBSD)
            raise error(f"{os.fspath(path)}: it is a symbolic link, which fastbp does not "
                        "follow here: give the file itself") from exc
        raise
    try:
        what = kind(os.fstat(fd).st_mode)
        if what:
            raise error(f"{os.fspath(path)}: it is {what}; fastbp reads only regular files")
        if _NONBLOCK:
            import fcntl

            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: str | os.PathLike, cap: int, why: str,
                 error: type[FastbpError] = DataError, *, follow: bool = True) -> bytes:
    """The bytes of the regular file ``path`` (:func:`open_regular`), or ``error`` when it holds
    more than ``cap`` bytes, ``why`` saying where the cap comes from (e.g. "the most a plan cache
    holds"); the file is then not read at all."""
    with open_regular(path, error, follow=follow) as f:
        size = os.fstat(f.fileno()).st_size
        if size <= cap:
            data = f.read(size + 1)  # a read allocates what it asks for: no more than the file
            while size < len(data) <= cap:  # it grew meanwhile: on, up to one past the cap
                more = f.read(min(1 << 16, cap + 1 - len(data)))
                if not more:
                    break
                data += more
            size = len(data)
        if size > cap:
            raise error(f"{os.fspath(path)}: {size:,} bytes, more than {why} ({cap:,} bytes); "
                        "it is refused unread")
    return data


def is_regular(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a regular file (a link to one counts); never blocks, never raises."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False
