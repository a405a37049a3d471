"""A pytest plugin for bench/gpu_check.sh: one line per test, written the moment it ends.

    PYTHONPATH=bench python3 -m pytest -p pytest_outcomes ...   (file: $GPU_CHECK_OUTCOMES)

A stage stopped by its time limit loses pytest's closing summary; these lines are already
on disk, one per finished test, with the first line of the reason for any failure, so the
few files that come back from a GPU machine say which test passed, failed or was skipped.
"""
import os


def _reason(report):
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message.splitlines()[0] if crash.message else ""
    if isinstance(report.longrepr, tuple):          # a skip: (file, line, reason)
        return str(report.longrepr[2])
    text = str(report.longrepr or "").strip()
    return text.splitlines()[-1] if text else ""


def pytest_runtest_logreport(report):
    path = os.environ.get("GPU_CHECK_OUTCOMES")
    # The call's outcome; a setup or teardown only when it did not pass (skips happen in setup).
    if not path or (report.when != "call" and report.passed):
        return
    outcome = report.outcome.upper()
    if report.failed and report.when != "call":
        outcome = f"ERROR in {report.when}"
    line = f"{outcome:<7} {report.duration:7.1f}s  {report.nodeid}"
    if not report.passed:
        line += f"  | {_reason(report)[:300]}"
    with open(path, "a") as f:
        f.write(line + "\n")


def pytest_collectreport(report):
    """A test module that cannot be collected loses all its tests: say so, in the same file."""
    path = os.environ.get("GPU_CHECK_OUTCOMES")
    if path and report.failed:
        with open(path, "a") as f:
            f.write(f"ERROR   collecting {report.nodeid}  | {_reason(report)[:300]}\n")
