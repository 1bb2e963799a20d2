"""The sweep loop: skip finished runs, start the rest as the launcher allows, retry failures.

Whether a run finished is decided by its ``DONE.json`` alone (written by ``mixsampler train``
for this very config), so a sweep can be killed at any moment and started again: finished runs
are skipped, killed ones resume from their last checkpoint. After the last run, every run table
is checked (present, rows, one row per step): a duplicated or empty table would give a law fit
that looks right and is not, so it fails the sweep with the table's path.

Example:
    >>> result = run_sweep("sweep/", jobs=2)  # doctest: +SKIP
    >>> print(result.summary())  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import os
import signal
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixsampler.sweep.launchers import Handle, Launcher, LauncherKind, LocalLauncher
from mixsampler.sweep.runs import RunStatus, SweepRun, read_done, read_plan_dir, run_status

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
        table_problems: run tables that are missing, empty, or hold a step twice.
        next_command: the ``mixsampler fit`` command over the run tables.
        seconds: wall time of the sweep.
    """

    success: bool
    skipped: list[str] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    table_problems: list[str] = field(default_factory=list)
    next_command: str = ""
    seconds: float = 0.0

    def summary(self) -> str:
        """Lines for the terminal: counts, each failure with its log, table problems, next step."""
        n = len(self.skipped) + len(self.trained) + len(self.failed)
        lines = [
            f"{n} runs: {len(self.skipped)} already finished, {len(self.trained)} trained,"
            f" {len(self.failed)} failed ({self.seconds:.0f} s)"
        ]
        for f in self.failed:
            lines.append(
                f"FAILED {f.run} after {f.attempts} attempt(s), exit status {f.exit_status}:"
                f" {f.last_line} (log: {f.log})"
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
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"--retries must be a non-negative integer, got {retries!r}")
    runs = read_plan_dir(plan_dir)
    status = {r.name: run_status(r) for r in runs}
    stale = [r for r in runs if status[r.name] is RunStatus.STALE]
    if stale:
        raise ValueError(
            f"{stale[0].done_path}: run {stale[0].name} finished under another version of"
            f" {stale[0].config} ({len(stale)} such run(s)); restore the config, or delete the"
            " run folder and its run table to train it again"
        )
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
    finally:
        signal.signal(signal.SIGTERM, previous)
        for h in running:  # only when interrupted: stop what this sweep started
            h.stop()
        bar.close()
    result.table_problems = _check_tables([r for r in runs if r.name not in _names(result.failed)])
    result.next_command = _next_command(runs, Path(plan_dir))
    result.success = not result.failed and not result.table_problems
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
    if h.attempt <= retries:
        say(f"retry   {h.run.name}: {why}; attempt {h.attempt + 1} resumes (log: {h.run.log})")
        pending.append((h.run, h.attempt + 1))
        return False
    last = _last_line(h.run.log) or why
    result.failed.append(Failure(h.run.name, h.attempt, rc, h.run.log, last))
    say(f"FAILED  {h.run.name}: {last} (log: {h.run.log})")
    return True


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
    """Run tables that would mislead a fit: missing, without rows, or with a step twice."""
    problems = []
    for r in runs:
        if r.table is None:
            continue
        if not r.table.is_file():
            problems.append(f"{r.table}: run {r.name} finished but wrote no run table")
            continue
        with open(r.table, newline="") as f:
            rows = [row for row in csv.DictReader(f) if row.get("run") == r.name]
        if not rows:
            problems.append(
                f"{r.table}: no rows for run {r.name} (no validation ran: set"
                " trainer.val_check_interval in the base config)"
            )
            continue
        twice = sorted((s for s, n in Counter(row.get("step") for row in rows).items() if n > 1))
        if twice:
            problems.append(
                f"{r.table}: run {r.name} has {len(twice)} step(s) twice (first: step"
                f" {twice[0]}), rows from before and after a resume; keep the last row of each"
                " step before fitting"
            )
    return problems


def _next_command(runs: list[SweepRun], plan_dir: Path) -> str:
    tables = sorted({str(r.table.parent) for r in runs if r.table is not None})
    where = " ".join(f"{t}/*.csv" for t in tables) or f"{plan_dir}/runs/*.csv"
    return f"mixsampler fit {where} --law joint --target all -o {plan_dir / 'LAW.json'}"


def _make_launcher(
    launcher: Any, jobs: int | None, gpus_per_run: int, slurm: Any, plan_dir: Path
) -> Launcher:
    if not isinstance(launcher, (str, LauncherKind)):
        return launcher
    kinds = [k.value for k in LauncherKind]
    if str(getattr(launcher, "value", launcher)) not in kinds:
        raise ValueError(f"--launcher can be {', '.join(kinds)}, got {launcher!r}")
    if LauncherKind(launcher) is LauncherKind.LOCAL:
        return LocalLauncher(jobs, gpus_per_run=gpus_per_run)
    from mixsampler.sweep.slurm import SlurmOptions, SubmititLauncher

    return SubmititLauncher(plan_dir / "slurm", slurm or SlurmOptions(), jobs)
