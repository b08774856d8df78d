"""The test run ends by naming every group of skipped tests and how to enable it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

_spec = importlib.util.spec_from_file_location(
    "root_conftest", Path(__file__).resolve().parents[1] / "conftest.py")
assert _spec is not None and _spec.loader is not None
root_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(root_conftest)


def test_skipped_groups_are_named_with_their_counts() -> None:
    lines: list[str] = []
    skipped = [SimpleNamespace(longrepr=("f.py", 3, "Skipped: MNIST not found: set FASTBP_DATA"))
               ] * 3 + [SimpleNamespace(longrepr=("g.py", 1, "Skipped: needs two GPUs"))]
    reporter = SimpleNamespace(stats={"skipped": skipped}, write_line=lines.append)
    root_conftest.pytest_terminal_summary(reporter, 0, None)
    assert lines == ["skipped: 3 × MNIST not found: set FASTBP_DATA; 1 × needs two GPUs"]


def test_nothing_is_said_when_nothing_skipped() -> None:
    lines: list[str] = []
    root_conftest.pytest_terminal_summary(SimpleNamespace(stats={}, write_line=lines.append), 0,
                                          None)
    assert lines == []
