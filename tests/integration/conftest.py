"""pytest fixtures for rktlet's integration tests (run them with tests/integration/run-harness)."""

import os
import signal

import pytest

import rktlet_test

# The packaged system test boots a Debian tree (minutes, and what tests/integration/system-prepare
# made first): only when asked, as scripts/test does once.
collect_ignore = [] if os.environ.get("RKTLET_SYSTEM") == "1" else ["test_system.py"]


def pytest_configure(config):
    if os.environ.get("RKTLET_HARNESS") != "1":
        pytest.exit("the integration tests run only inside the harness: "
                    "tests/integration/run-harness BUILD_DIR [pytest args]", returncode=4)
    if not os.access(rktlet_test.RKTLET, os.X_OK):
        pytest.exit(f"no rktlet binary at {rktlet_test.RKTLET}", returncode=4)
    rktlet_test.stubs()
    config.addinivalue_line("markers", "disturbs_systemd: re-executes the harness's user manager or restarts its "
                            "bus; run after every other test")


def pytest_collection_modifyitems(session, config, items):
    """Tests that re-execute the harness's one user manager or restart its bus run last: every
    test shares that manager, and one known bug (an OOM kill reported Error after it, see
    test_containers.py::test_oom_killed) shows it is not quite the same manager afterwards."""
    items.sort(key=lambda item: item.get_closest_marker("disturbs_systemd") is not None)


def skip_reason(report):
    if isinstance(report.longrepr, tuple):
        return report.longrepr[2].removeprefix("Skipped: ")
    return str(report.longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if rktlet_test.STRICT and report.skipped and not hasattr(report, "wasxfail"):
        reason = skip_reason(report)
        if not reason.startswith(rktlet_test.MACHINE):
            report.outcome = "failed"
            report.longrepr = (f"skipped where nothing may be (CI=true or scripts/test): scripts/deps installs "
                               f"what this test needs, so this is a broken install: {reason}")


_passed, _failed, _skipped = set(), set(), {}


def pytest_runtest_logreport(report):
    if report.failed:
        _failed.add(report.nodeid)  # in its setup, call or teardown
    elif report.skipped:
        _skipped[report.nodeid] = skip_reason(report)
    elif report.passed and report.when == "call":
        _passed.add(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    """$RKTLET_TEST_REPORT (set by scripts/test) gets the counts and every skip with its reason."""
    path = os.environ.get("RKTLET_TEST_REPORT")
    if path:
        import json
        with open(path, "w") as f:
            json.dump({"passed": len(_passed - _failed), "failed": len(_failed),
                       "skipped": sorted(_skipped.items())}, f)


@pytest.fixture(scope="session")
def pb():
    return rktlet_test.stubs()[0]


@pytest.fixture
def make_daemon(tmp_path):
    """Factory for daemons; every daemon still running at the end must stop cleanly with exit 0."""
    made = []

    def make(name="rktlet", start=True, **kwargs):
        d = rktlet_test.Daemon(tmp_path / name, **kwargs)
        made.append(d)
        if start:
            d.start()
        return d

    yield make
    failures = []
    for d in made:
        if d.proc is None or (d.stopped and d.proc.poll() is not None):
            continue
        if d.proc.poll() is not None and not getattr(d, "expect_exit", False):
            failures.append(f"rktlet {d.dir} died during the test with {d.proc.returncode}:\n{d.log()}")
            continue
        rc = d.stop(signal.SIGTERM)
        if rc != 0 and not getattr(d, "expect_exit", False):
            failures.append(f"rktlet {d.dir} exited with {rc} on SIGTERM:\n{d.log()}")
    if failures:
        pytest.fail("\n".join(failures))


@pytest.fixture
def daemon(make_daemon):
    return make_daemon()


@pytest.fixture
def user_manager_pid():
    return int(os.environ["RKTLET_USER_MANAGER_PID"])


@pytest.fixture
def stopped_systemd(user_manager_pid):
    """The systemd user manager frozen with SIGSTOP: bus calls to it wait until the test ends."""
    os.kill(user_manager_pid, signal.SIGSTOP)
    try:
        yield user_manager_pid
    finally:
        os.kill(user_manager_pid, signal.SIGCONT)
