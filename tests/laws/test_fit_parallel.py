"""laws.parallel.run_jobs: results in order, and it dies cleanly (dead worker, SIGTERM, parent
killed). Jobs are stdlib functions, so spawned workers unpickle them without this module."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mixsampler.laws.parallel import WorkerDiedError, run_jobs


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by a dead parent's reaper) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def test_results_in_item_order_serial_and_parallel() -> None:
    items = [16.0, 1.0, 81.0, 4.0]
    assert run_jobs(math.sqrt, items, 1) == [4.0, 1.0, 9.0, 2.0]
    assert run_jobs(math.sqrt, items, 2) == [4.0, 1.0, 9.0, 2.0]


@pytest.mark.parametrize("jobs", [0, -1, 1.5, True])
def test_bad_jobs_named(jobs: object) -> None:
    with pytest.raises(ValueError, match="jobs must be an integer >= 1"):
        run_jobs(math.sqrt, [1.0], jobs)  # type: ignore[arg-type]


def test_job_exception_is_reraised_with_its_type() -> None:
    with pytest.raises(ValueError, match="math domain error"):
        run_jobs(math.sqrt, [1.0, -1.0, 4.0], 2)


def test_dead_worker_is_a_clear_error_naming_the_exit_code() -> None:
    # os._exit(7) kills the worker without a result, as the OOM killer would.
    with pytest.raises(WorkerDiedError, match=r"exit code 7.*--jobs 1"):
        run_jobs(os._exit, [7, 7], 2, desc="fit targets")


_SCRIPT = """
import os, sys, time
from mixsampler.laws.parallel import run_jobs
# Each worker writes its pid, then sleeps far longer than the test waits.
def main():
    run_jobs(time.sleep, [600.0, 600.0], 2)
if __name__ == "__main__":
    main()
"""


def _start(tmp_path: Path) -> tuple[subprocess.Popen[bytes], list[int]]:
    script = tmp_path / "runner.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path)
    # The workers are the parent's children; wait until both are up.
    end = time.monotonic() + 60
    kids: list[int] = []
    while time.monotonic() < end and len(kids) < 2:
        time.sleep(0.2)
        try:
            text = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text()
        except OSError:
            text = ""
        # The spawn context also starts a resource tracker; workers are the rest.
        kids = [int(p) for p in text.split()]
        kids = [p for p in kids if b"resource_tracker" not in _cmdline(p)]
    assert len(kids) >= 2, f"workers did not start: {kids}"
    return proc, kids


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_sigterm_kills_the_workers_and_exits_143(tmp_path: Path) -> None:
    proc, kids = _start(tmp_path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    assert _wait_gone(kids) == []


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_workers_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    proc, kids = _start(tmp_path)
    proc.kill()  # SIGKILL: the parent cannot clean up; the workers notice by themselves
    proc.wait(timeout=30)
    assert _wait_gone(kids) == []
