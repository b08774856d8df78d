"""The compiled steps' sources as one: a digest of every module whose compiled code a step
runs, which keys both caches that outlive a process.

- The planner's (:func:`fastbp_numba.planning.fingerprint`): a plan timed on other kernels is
  measured again.
- Numba's disk cache of the compiled functions (:func:`stamp_numba_cache`): Numba stamps a
  cached function with its own file alone, so ``epoch.py``'s compiled epochs would go on
  running the old ``kernels.dots`` after ``kernels.py`` changed (each module calls the others'
  functions, compiled into it). Here every function of these modules is stamped with the
  digest of all of them, so a change to any recompiles them all.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

# the modules whose compiled code a candidate's steps run, calling one another
KERNEL_SOURCES = ("machine.py", "neurons.py", "kernels.py", "techniques.py", "epoch.py")
FOLDER = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=4)
def kernels_digest(folder: Path = FOLDER) -> str:
    """A short hash of :data:`KERNEL_SOURCES` in ``folder`` (a missing file hashes as empty)."""
    h = hashlib.sha256()
    for name in KERNEL_SOURCES:
        path = folder / name
        h.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b""))
    return h.hexdigest()[:12]


def compiled_here(py_file: str) -> bool:
    """Whether ``py_file`` is one of :data:`KERNEL_SOURCES` of this package."""
    path = Path(py_file).resolve()
    return path.parent == FOLDER and path.name in KERNEL_SOURCES


_stamped: list[Any] = []  # the locator classes installed (once a process)


def stamp_numba_cache() -> None:
    """Make Numba stamp the disk cache of every function in :data:`KERNEL_SOURCES` with
    :func:`kernels_digest` instead of its own file's hash: for each place Numba may keep a cache
    (the user's ``NUMBA_CACHE_DIR``, ``__pycache__`` beside the module, the user-wide one), a
    locator that takes only these modules' functions, ahead of Numba's own. Call before the
    modules' functions are decorated (:mod:`fastbp_numba.neurons` does, and every other of them
    imports it first)."""
    if _stamped:
        return
    from numba.core import caching

    def stamped(base: type) -> type:
        class Stamped(base):  # type: ignore[valid-type, misc]
            def get_source_stamp(self) -> tuple[str, str]:
                return ("fastbp_numba", kernels_digest())

            @classmethod
            def from_function(cls, py_func: Any, py_file: str) -> Any:
                return super().from_function(py_func, py_file) if compiled_here(py_file) else None

        Stamped.__name__ = Stamped.__qualname__ = f"Stamped{base.__name__}"
        return Stamped

    def public_or_private(name: str) -> Any:  # Numba 0.61 and later name them without "_"
        return getattr(caching, name, None) or getattr(caching, f"_{name}", None)

    impl = public_or_private("CacheImpl")
    bases = [public_or_private(f"{place}CacheLocator")
             for place in ("UserProvided", "InTree", "UserWide")]
    if impl is None or None in bases:  # another Numba: its own stamps stay
        return
    _stamped.extend(stamped(base) for base in bases)
    impl._locator_classes[:0] = _stamped
