"""Run independent jobs (targets, held-out folds, laws) in worker processes, and die cleanly.

``concurrent.futures`` alone leaves three failure modes to the caller: a worker killed by the
OOM killer surfaces as a bare ``BrokenProcessPool``; SIGTERM to the parent (a cluster's time
limit, ``kill``) kills the parent but leaves its workers computing; and a parent killed with
SIGKILL leaves orphans. :func:`run_jobs` handles all three: a dead worker becomes a
:class:`WorkerDiedError` naming its exit code and the job, SIGTERM and Ctrl-C kill the workers
before the parent exits, and each worker exits by itself within a second of losing its
parent.

Example:
    >>> run_jobs(abs, [-1, 2, -3], jobs=1)
    [1, 2, 3]
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from mixsampler.checks import check_int
from mixsampler.threads import requested_blas_threads, restore_blas_threads, set_blas_threads

__all__ = ["WorkerDiedError", "run_jobs"]

T = TypeVar("T")
R = TypeVar("R")

_LOGGER = "mixsampler.laws"
# How often a worker checks that its parent is alive (seconds).
_PARENT_POLL_S = 0.5


class WorkerDiedError(RuntimeError):
    """A worker process died without returning (killed, out of memory, a crash in C code)."""


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(_PARENT_POLL_S)
        if os.getppid() != parent:
            # Orphaned: the parent was killed (SIGKILL gives it no chance to clean up).
            os._exit(1)


def _worker_init(level: int, parent: int) -> None:
    # Ctrl-C reaches the whole process group; the parent decides and kills the workers, so a
    # worker printing its own KeyboardInterrupt traceback is only noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    logging.getLogger(_LOGGER).setLevel(level)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _workers(pool: ProcessPoolExecutor) -> dict[int, Any]:
    # The executor has no public kill before Python 3.14 (kill_workers); its process table is
    # the only handle on the workers. Read it while the pool is healthy: a broken pool drops it.
    return dict(getattr(pool, "_processes", None) or {})


def _kill(procs: dict[int, Any]) -> None:
    for p in procs.values():
        if p.is_alive():
            p.kill()
    for p in procs.values():
        p.join(timeout=5)


def _exit_codes(procs: dict[int, Any]) -> list[int]:
    for p in procs.values():
        p.join(timeout=1)
    return [p.exitcode for p in procs.values() if p.exitcode not in (None, 0)]


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def run_jobs(
    fn: Callable[[T], R],
    items: Sequence[T],
    jobs: int,
    *,
    desc: str = "jobs",
    progress: bool = False,
    label: Callable[[T], str] = repr,
) -> list[R]:
    """``[fn(x) for x in items]`` in up to ``jobs`` spawned processes, one BLAS thread each.

    Args:
        fn: a picklable function (module level).
        items: its arguments, one job each; results come back in this order.
        jobs: worker processes; 1 (or one item) runs in this process.
        desc: what the jobs are, for the progress bar and errors (``"fit targets"``).
        progress: show a tqdm bar over finished jobs.
        label: names a job in an error (default ``repr``).

    Returns:
        The results in the order of ``items``.

    Raises:
        ValueError: ``jobs`` < 1.
        WorkerDiedError: a worker died without a result; the other workers are killed.
        Exception: the first exception a job raised, re-raised here; the others are killed.
        SystemExit: SIGTERM reached this process (exit status 143); the workers are killed.
    """
    check_int("jobs", jobs, low=1)
    from tqdm.auto import tqdm

    # disable=None: a bar on a terminal only; logs and captured stderr keep one line per error.
    bar = tqdm(total=len(items), desc=desc, unit="job", disable=None if progress else True)
    if jobs == 1 or len(items) <= 1:
        out = []
        for x in items:
            out.append(fn(x))
            bar.update()
        bar.close()
        return out
    import multiprocessing as mp

    # BLAS reads these when numpy loads, before any initializer runs, so the children get
    # them from the environment they are spawned with. The fits are small matrix ops where
    # threads only contend. MIXSAMPLER_BLAS_THREADS overrides (0: leave the environment).
    threads = requested_blas_threads()
    saved = set_blas_threads(threads) if threads is not None else {}
    pool = ProcessPoolExecutor(
        max_workers=min(jobs, len(items)),
        mp_context=mp.get_context("spawn"),
        initializer=_worker_init,
        initargs=(logging.getLogger(_LOGGER).getEffectiveLevel(), os.getpid()),
    )
    old_term = None
    if threading.current_thread() is threading.main_thread():

        def on_term(signum: int, frame: Any) -> None:
            raise SystemExit(128 + signum)

        old_term = signal.signal(signal.SIGTERM, on_term)
    clean = False
    procs: dict[int, Any] = {}
    try:
        futures: list[Future[R]] = [pool.submit(fn, x) for x in items]
        procs = _workers(pool)
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                if f.exception() is not None:
                    break
                bar.update()
            else:
                continue
            break
        for i, f in enumerate(futures):
            try:
                if f.done() and f.exception() is not None:
                    f.result()
            except BrokenProcessPool:
                codes = _exit_codes(procs)
                how = ", ".join(_describe(c) for c in codes) or "no exit code"
                raise WorkerDiedError(
                    f"a worker process running {desc} died without a result ({how}) at or "
                    f"before job {i + 1} of {len(items)} ({label(items[i])[:200]}); out of "
                    "memory or killed? rerun with --jobs 1 to run in one process and see its "
                    "error"
                ) from None
        clean = True
        return [f.result() for f in futures]
    finally:
        bar.close()
        if not clean:
            _kill(procs or _workers(pool))
        pool.shutdown(wait=clean, cancel_futures=True)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        restore_blas_threads(saved)
