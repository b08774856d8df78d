"""Loading Numba so that an interrupted load can be tried again."""

from __future__ import annotations

import importlib
import sys
from typing import Any


def retryable_import(name: str) -> Any:
    """``importlib.import_module(name)``; an import that fails or is interrupted (Ctrl-C while
    Numba first loads) takes out every module it added, so that the next try loads them afresh
    instead of meeting Numba's half-initialised modules ("partially initialized module")."""
    before = set(sys.modules)
    try:
        return importlib.import_module(name)
    except BaseException:
        for added in set(sys.modules) - before:
            sys.modules.pop(added, None)
        raise
