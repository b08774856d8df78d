"""What every test of the plugin starts from, as the checkout's root ``conftest.py`` gives the
whole suite, for runs from this folder (``pytest backends/cupy/tests`` takes this plugin's
``pyproject.toml`` as its root and leaves the checkout's conftest out): the planner's cache in a
temporary folder, and ``FASTBP_PLAN=off`` unless set, so the device's paths follow their fixed
rules; the planner's own tests set ``FASTBP_PLAN`` themselves."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def plugin_planner_isolated(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("FASTBP_CACHE", str(tmp_path_factory.getbasetemp() / "fastbp-cache"))
    if not os.environ.get("FASTBP_PLAN"):
        monkeypatch.setenv("FASTBP_PLAN", "off")
