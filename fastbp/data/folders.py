"""A data folder given by the user: its files found, or a message that names what is wrong (no
such folder, not a folder, unreadable, which files are missing); never a silent fallback."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Mapping

from ..errors import DataError


def _is_file(path: Path) -> bool:
    """Whether ``path`` is a file; ``DataError`` if its folder cannot be read."""
    try:
        return path.is_file()
    except OSError as exc:  # e.g. a folder of mode 000: PermissionError
        raise DataError(f"{path.parent}: the folder cannot be read ({exc.strerror or exc})") \
            from exc


def find(directory: Path, stems: Mapping[str, str]) -> dict[str, Path] | None:
    """``{key: path}`` of every file ``stems[key]`` (``NAME.gz`` or ``NAME``) in ``directory``,
    or None if one is missing; ``DataError`` if the folder cannot be read."""
    found = {}
    for key, stem in stems.items():
        for name in (stem + ".gz", stem):
            if _is_file(directory / name):
                found[key] = directory / name
                break
        else:
            return None
    return found


def find_in_given(directory: Path, stems: Mapping[str, str], source: str = "",
                  title: str = "MNIST") -> dict[str, Path]:
    """The files of :func:`find` in the folder the user named, or ``DataError`` saying what is
    wrong with it. ``source`` says where the name came from (e.g. ``"FASTBP_DATA="``), ``title``
    which data set it should hold."""
    where = f"{source}{directory}"
    names = ", ".join(stems.values())
    try:
        exists, is_dir = directory.exists(), directory.is_dir()
    except OSError as exc:
        raise DataError(f"{where}: cannot be read ({exc.strerror or exc})") from exc
    if not exists:
        raise DataError(f"{where}: no such folder; it should hold the four {title} files "
                        f"{names} (gzip or plain)")
    if not is_dir:
        raise DataError(f"{where}: not a folder; give the folder that holds {names}")
    if not os.access(directory, os.R_OK | os.X_OK):
        raise DataError(f"{where}: the folder cannot be read (permission denied)")
    found = find(directory, stems)
    if found is None:
        missing = [s for s in stems.values()
                   if not (_is_file(directory / (s + ".gz")) or _is_file(directory / s))]
        raise DataError(f"{where}: {title} is incomplete here: missing {', '.join(missing)} "
                        "(as NAME.gz or NAME)")
    return found


def check_cache(folder: Path, title: str, instead: str) -> None:
    """``DataError`` when something other than a folder is where fastbp keeps ``title``'s cache
    ``folder`` (or one of its parents), so it can neither be read nor made; ``instead`` says how
    to use other files (``"pass --data kmnist:DIR"``)."""
    for place in (folder, *folder.parents):
        try:
            mode = os.stat(place).st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:
            return  # the download's own error says why
        if not stat.S_ISDIR(mode):
            where = "" if place == folder else f" (for its {title} cache {folder})"
            raise DataError(f"{place}: a file where fastbp needs a folder{where}: move it away, "
                            f"or {instead}")
        return
