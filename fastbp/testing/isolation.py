"""The pytest plugin every fastbp test run starts from (the checkout's ``conftest.py`` and a
plugin's own test folder both load it): the planner's cache in a temporary folder, so a test
never reads or writes the user's, and ``FASTBP_PLAN=off`` unless set, so a device's code paths
follow their fixed rules; the planner's own tests set ``FASTBP_PLAN`` themselves."""

from __future__ import annotations

import os
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def planner_isolated(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: Any) -> None:
    monkeypatch.setenv("FASTBP_CACHE", str(tmp_path_factory.getbasetemp() / "fastbp-cache"))
    if not os.environ.get("FASTBP_PLAN"):
        monkeypatch.setenv("FASTBP_PLAN", "off")
