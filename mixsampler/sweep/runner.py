"""The sweep loop: skip finished runs, start the rest as the launcher allows, retry failures.

Whether a run finished is decided by its ``DONE.json`` alone (written by ``mixsampler train``
for this very config), so a sweep can be killed at any moment and started again: finished runs
are skipped, killed ones resume from their last checkpoint. After the last run, every run table
is read by the fit's own reader (:func:`laws.runtable.check_run_tables`): a table the fit would
refuse, or a run without rows, fails the sweep with the table's path.

A trainer's exit status says what to do next: 0 with a ``DONE.json`` is finished; 2 is a usage
error (a bad config value, a missing data path) that another attempt would repeat, so it is not
retried and its message is shown; 3 is a ``class_path`` that does not import, which every run
would hit, so the sweep starts nothing more and says why; anything else (a crash, a kill, a
full disk) is retried, before the runs not yet started, resuming from the last checkpoint.

Example:
    >>> result = run_sweep("sweep/", jobs=2)  # doctest: +SKIP
    >>> print(result.summary())  # doctest: +SKIP
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixsampler.checks import check_int
from mixsampler.sweep.launchers import Handle, Launcher, LauncherKind, LocalLauncher
from mixsampler.sweep.runs import (
    RunStatus,
    SweepRun,
    plan_law,
    read_done,
    read_plan_dir,
    run_status,
)
from mixsampler.sweep.train import CLASS_PATH_EXIT

#: a trainer's usage error (argparse and mixsampler's convention): retrying repeats it
USAGE_EXIT = 2

__all__ = ["Failure", "SweepResult", "run_sweep"]


@dataclass(frozen=True)
class Failure:
    """A run that failed every attempt."""

    run: str
    attempts: int
    exit_status: int
    log: Path
    last_line: str


@dataclass
class SweepResult:
    """Outcome of a sweep (scipy-style: check ``success``; nothing raises for a failed run).

    Attributes:
        success: every run finished and every run table has one row per step.
        skipped: runs finished before this sweep started.
        trained: runs that finished in this sweep.
        failed: runs that failed all their attempts, with their logs.
        table_problems: run tables the fit would refuse, or without rows for their run.
        next_command: the ``mixsampler fit`` command over the run tables.
        seconds: wall time of the sweep.
        stopped: why the sweep started no more runs (a class_path that does not import), or "".
        not_started: runs left unstarted because of ``stopped``.
    """

    success: bool
    skipped: list[str] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    table_problems: list[str] = field(default_factory=list)
    next_command: str = ""
    seconds: float = 0.0
    stopped: str = ""
    not_started: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Lines for the terminal: counts, each failure with its log, table problems, next step."""
        n = len(self.skipped) + len(self.trained) + len(self.failed) + len(self.not_started)
        lines = [
            f"{n} runs: {len(self.skipped)} already finished, {len(self.trained)} trained,"
            f" {len(self.failed)} failed"
            + (f", {len(self.not_started)} not started" if self.not_started else "")
            + f" ({self.seconds:.0f} s)"
        ]
        if self.stopped:
            lines.append(f"STOPPED: {self.stopped}")
        for f in self.failed:
            lines.append(
                f"FAILED {f.run} after {f.attempts} attempt(s), exit status {f.exit_status}"
                f"{_NOT_RETRIED.get(f.exit_status, '')}: {f.last_line} (log: {f.log})"
            )
        lines += [f"BAD TABLE {p}" for p in self.table_problems]
        if self.success:
            lines.append(f"next: {self.next_command}")
        else:
            lines.append(
                "not every run is usable yet: fix the above and run the same mixsampler sweep"
                " again (finished runs are skipped, killed ones resume)"
            )
        return "\n".join(lines)


def run_sweep(
    plan_dir: str | os.PathLike[str],
    *,
    launcher: str | LauncherKind | Launcher = LauncherKind.LOCAL,
    jobs: int | None = None,
    retries: int = 1,
    gpus_per_run: int = 1,
    slurm: Any = None,
    poll_s: float = 0.5,
    progress: bool = True,
) -> SweepResult:
    """Train every unfinished run of a plan folder.

    Args:
        plan_dir: what ``mixsampler plan`` wrote (``plan.csv``, ``configs/``).
        launcher: ``local``, ``slurm``, or a launcher object.
        jobs: runs at a time (local: default one per GPU, else 1; slurm: the array throttle).
        retries: attempts after the first for a run that fails (each resumes from its last
            checkpoint).
        gpus_per_run: GPUs per run with the local launcher.
        slurm: a :class:`mixsampler.sweep.slurm.SlurmOptions` for the slurm launcher.
        poll_s: seconds between polls of the runs in flight.
        progress: show the tqdm bar and a line per finished run.

    Returns:
        A :class:`SweepResult`.

    Raises:
        FileNotFoundError, ValueError: not a plan folder, a missing config, bad options, or a
            run that finished under another config (each naming the path or argument).
    """
    from tqdm.auto import tqdm

    t0 = time.monotonic()
    check_int("--retries", retries, low=0)
    runs = read_plan_dir(plan_dir)
    status = {r.name: run_status(r) for r in runs}
    stale = [r for r in runs if status[r.name] is RunStatus.STALE]
    if stale:
        raise ValueError(
            f"{stale[0].done_path}: run {stale[0].name} finished under another version of"
            f" {stale[0].config} ({len(stale)} such run(s)); restore the config, or delete the"
            " run folder and its run table to train it again"
        )
    _check_writable(runs)
    launch = _make_launcher(launcher, jobs, gpus_per_run, slurm, Path(plan_dir))
    result = SweepResult(success=False)
    result.skipped = [r.name for r in runs if status[r.name] is RunStatus.DONE]
    pending = deque((r, 1) for r in runs if status[r.name] is not RunStatus.DONE)
    bar = tqdm(
        total=len(runs), initial=len(result.skipped), desc="sweep", unit="run", disable=not progress
    )
    say = bar.write if progress else print
    for r in runs:
        if status[r.name] is RunStatus.PARTIAL:
            say(f"resume  {r.name} from its last checkpoint")
    running: list[Handle] = []
    started: dict[str, float] = {}
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        while pending or running:
            free = len(pending) if launch.capacity is None else launch.capacity - len(running)
            by_attempt: dict[int, list[SweepRun]] = {}
            for _ in range(min(free, len(pending))):
                run, attempt = pending.popleft()
                by_attempt.setdefault(attempt, []).append(run)
                started[run.name] = time.monotonic()
            for attempt, batch in by_attempt.items():
                running += launch.start(batch, attempt)
            time.sleep(poll_s)
            for h in list(running):
                rc = h.poll()
                if rc is None:
                    continue
                running.remove(h)
                secs = time.monotonic() - started[h.run.name]
                if _settle(h, rc, retries, pending, result, say, secs):
                    bar.update(1)
                if result.stopped and pending:
                    result.not_started = [r.name for r, _ in pending]
                    pending.clear()
                    say(f"STOPPED: {result.stopped}; {len(result.not_started)} run(s) not started")
    finally:
        signal.signal(signal.SIGTERM, previous)
        # Only when interrupted (Ctrl-C, SIGTERM from the user or the scheduler): forward the
        # stop to every trainer at once, then wait; each keeps its last checkpoint.
        for h in running:
            h.stop(wait=False)
        for h in running:
            h.stop()
        bar.close()
    unusable = _names(result.failed) | set(result.not_started)
    result.table_problems = _check_tables([r for r in runs if r.name not in unusable])
    result.next_command = _next_command(runs, Path(plan_dir))
    result.success = (
        not result.failed
        and not result.table_problems
        and not result.stopped
        and not result.not_started
    )
    result.seconds = time.monotonic() - t0
    return result


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _names(failures: list[Failure]) -> set[str]:
    return {f.run for f in failures}


def _settle(
    h: Handle, rc: int, retries: int, pending: deque, result: SweepResult, say: Any, secs: float
) -> bool:
    """Record a run that ended: finished (its marker says so), retried, or failed for good.

    Returns False when the run went back into ``pending`` for another attempt.
    """
    try:
        done = read_done(h.run.done_path) if rc == 0 else None
        finished = done is not None and run_status(h.run) is RunStatus.DONE
    except ValueError:
        done, finished = None, False
    if finished:
        result.trained.append(h.run.name)
        say(f"done    {h.run.name}: step {done['step']} in {secs:.0f} s (attempt {h.attempt})")
        return True
    why = f"exit status {rc}" if rc != 0 else "exited 0 without a DONE.json"
    last = _last_line(h.run.log) or why
    if rc == CLASS_PATH_EXIT:
        result.stopped = f"{h.run.name}: {last} (log: {h.run.log})"
    elif rc == USAGE_EXIT:
        pass  # a usage error (bad config value, missing data path) repeats on every attempt
    elif h.attempt <= retries:
        say(f"retry   {h.run.name}: {why}; attempt {h.attempt + 1} resumes (log: {h.run.log})")
        # First in the queue, as announced: it resumes now, not after every unstarted run.
        pending.appendleft((h.run, h.attempt + 1))
        return False
    result.failed.append(Failure(h.run.name, h.attempt, rc, h.run.log, last))
    say(f"FAILED  {h.run.name} ({why}{_NOT_RETRIED.get(rc, '')}): {last} (log: {h.run.log})")
    return True


_NOT_RETRIED = {USAGE_EXIT: ", a usage error: not retried"}


def _last_line(log: Path) -> str:
    """The last non-empty line of a log: usually the error that ended the run."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4096))
            lines = [x.strip() for x in f.read().decode(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [x for x in lines if x and not x.startswith("===")]
    return lines[-1][:300] if lines else ""


def _check_tables(runs: list[SweepRun]) -> list[str]:
    """Problems of the runs' tables, as the fit's reader finds them (one line each)."""
    from mixsampler.laws.runtable.check import check_run_tables

    expected: dict[Path, list[str]] = {}
    for r in runs:
        if r.table is not None:
            expected.setdefault(r.table, []).append(r.name)
    return check_run_tables(expected)


def _check_writable(runs: list[SweepRun]) -> None:
    """Refuse, before anything starts, a run folder or run table the sweep could not write.

    Each folder is probed by creating a file in it (``os.access`` misses read-only mounts
    and says yes to root), the nearest existing one for folders not made yet.
    """
    import tempfile

    probed: set[Path] = set()
    for r in runs:
        for what, path in (("trainer.default_root_dir", r.run_dir), ("run table", r.table)):
            if path is None:
                continue
            folder = path if what != "run table" else path.parent
            while not folder.exists() and folder != folder.parent:
                folder = folder.parent
            if folder in probed:
                continue
            probed.add(folder)
            try:
                with tempfile.TemporaryFile(dir=folder, prefix=".mixsampler-probe-"):
                    pass
            except OSError as err:
                raise PermissionError(
                    err.errno,
                    f"run {r.name}: cannot write its {what} in {folder} ({err.strerror}); the"
                    " sweep writes checkpoints, logs and run tables there: make it writable or"
                    " plan into a writable folder",
                    str(folder),
                ) from None


def _next_command(runs: list[SweepRun], plan_dir: Path) -> str:
    tables = sorted({str(r.table.parent) for r in runs if r.table is not None})
    where = " ".join(f"{t}/*.csv" for t in tables) or f"{plan_dir}/runs/*.csv"
    law = plan_law(plan_dir) or "joint"  # the law the plan was sized for, when it says
    return f"mixsampler fit {where} --law {law} --target all -o {plan_dir / 'LAW.json'}"


def _make_launcher(
    launcher: Any, jobs: int | None, gpus_per_run: int, slurm: Any, plan_dir: Path
) -> Launcher:
    if not isinstance(launcher, (str, LauncherKind)):
        return launcher
    kinds = [k.value for k in LauncherKind]
    if str(getattr(launcher, "value", launcher)) not in kinds:
        raise ValueError(f"--launcher can be {', '.join(kinds)}, got {launcher!r}")
    if LauncherKind(launcher) is LauncherKind.LOCAL:
        return LocalLauncher(jobs, gpus_per_run=gpus_per_run, plan_dir=plan_dir)
    from mixsampler.sweep.slurm import SlurmOptions, SubmititLauncher

    return SubmititLauncher(plan_dir / "slurm", slurm or SlurmOptions(), jobs, plan_dir)
