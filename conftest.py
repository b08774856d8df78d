"""Settings every test starts from (:mod:`fastbp.testing.isolation`: the planner's cache in a
temporary folder, ``FASTBP_PLAN=off`` unless set), and the closing line on skipped tests."""

from __future__ import annotations

pytest_plugins = ["fastbp.testing.isolation"]


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    """One closing line naming every group of skipped tests and how to enable it (``-q`` hides
    the reasons behind a count): ``skipped: 46 × MNIST not found: set FASTBP_DATA ...``."""
    groups: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else ""
        reason = str(reason).removeprefix("Skipped: ").strip() or "no reason given"
        groups[reason] = groups.get(reason, 0) + 1
    if groups:
        ordered = sorted(groups.items(), key=lambda kv: -kv[1])
        terminalreporter.write_line(
            "skipped: " + "; ".join(f"{n} × {reason}" for reason, n in ordered))
