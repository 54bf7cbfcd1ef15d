"""The strict skip gate: a test that skips fails the run.

A missing install step (torch, olah, git, onnxruntime...) shows up as ``pytest.importorskip`` or a skip inside
a fixture; counted as a pass it would turn a broken CI install green. So any skip, at collection or at run
time, makes the session exit with 1 and names the skipped tests. ``CFZOO_ALLOW_SKIPS=1`` lets a developer
with a partial install run what they have. Loaded by ``conftest.py``; ``-p strict_skips`` loads it alone.
"""

from __future__ import annotations

import os

import pytest

ALLOW_VARIABLE = "CFZOO_ALLOW_SKIPS"
skipped_tests: list[str] = []


def _reason(report) -> str:
    longrepr = report.longrepr
    return longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def _gate_is_on() -> bool:
    return os.environ.get(ALLOW_VARIABLE, "") in ("", "0")


def pytest_collectreport(report):
    if report.skipped:
        skipped_tests.append(f"{report.nodeid or 'collection'}: {_reason(report)}")


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        skipped_tests.append(f"{report.nodeid}: {_reason(report)}")


def pytest_sessionfinish(session, exitstatus):
    if skipped_tests and _gate_is_on() and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if skipped_tests and _gate_is_on():
        terminalreporter.section("strict skip gate", red=True)
        for line in skipped_tests:
            terminalreporter.write_line(f"skipped: {line}")
        terminalreporter.write_line(
            f"{len(skipped_tests)} skipped, which fails the run: install what they need "
            f"(README's test command: pip install -e '.[cpu,dev,train,scale]', torchattacks --no-deps, git), or set {ALLOW_VARIABLE}=1 for a partial local run",
            red=True,
        )
