"""Settings every test starts from: the planner's cache in a temporary folder (a test never
writes the user's), and ``FASTBP_PLAN=off`` unless set, so a device's code paths follow their
fixed rules; the planner's own tests set ``FASTBP_PLAN`` themselves."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def planner_isolated(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("FASTBP_CACHE", str(tmp_path_factory.getbasetemp() / "fastbp-cache"))
    if not os.environ.get("FASTBP_PLAN"):
        monkeypatch.setenv("FASTBP_PLAN", "off")
