"""Where the runs of a sweep train: subprocesses on this machine, or SLURM through submitit.

Both launchers run the same thing, ``python -m mixsampler.cli train CONFIG`` with its output
appended to ``<run dir>/train.log``, and report only an exit status; whether a run finished is
read from its ``DONE.json`` afterwards (see :mod:`mixsampler.sweep.runs`), never inferred from the
launcher. The scheduler (:mod:`mixsampler.sweep.runner`) starts runs as ``capacity`` allows and
polls the handles.

Example:
    >>> launcher = LocalLauncher(jobs=2)  # doctest: +SKIP
    >>> handles = launcher.start([run], attempt=1)  # doctest: +SKIP
"""

from __future__ import annotations

import enum
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mixsampler.sweep.runs import SweepRun
from mixsampler.sweep.train import SWEEP_PID_ENV

__all__ = [
    "Handle",
    "Launcher",
    "LauncherKind",
    "LocalLauncher",
    "train_command",
]


class LauncherKind(str, enum.Enum):
    LOCAL = "local"
    SLURM = "slurm"


def train_command(run: SweepRun) -> list[str]:
    """The command line one run trains with, the same under every launcher."""
    # `python -m` would put the working directory first on sys.path, so a folder named
    # `mixsampler` there (a clone of this repository, say) would shadow the installed package in
    # every trainer. `-c` with the first path entry removed imports only what is installed or on
    # PYTHONPATH, on every supported Python (`-P` exists from 3.11 only).
    return [sys.executable, "-u", "-c", _TRAIN_ENTRY, "train", str(run.config)]


_TRAIN_ENTRY = "import sys; del sys.path[0]; from mixsampler.cli import main; sys.exit(main())"


def _open_log(run: SweepRun, attempt: int, where: str) -> Any:
    run.log.parent.mkdir(parents=True, exist_ok=True)
    f = open(run.log, "a")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    f.write(f"=== mixsampler sweep: {run.name}, attempt {attempt}, {where}, {stamp} UTC ===\n")
    f.flush()
    return f


class Handle(Protocol):
    """A run in flight."""

    run: SweepRun
    attempt: int

    def poll(self) -> int | None:
        """The exit status once the run ended, else None."""

    def stop(self) -> None:
        """Stop the run (the sweep itself is being stopped)."""


class Launcher(Protocol):
    #: runs in flight at most (None: as many as are pending; the cluster queues them)
    capacity: int | None

    def start(self, runs: Sequence[SweepRun], attempt: int) -> list[Handle]: ...


@dataclass
class _ProcessHandle:
    run: SweepRun
    attempt: int
    proc: subprocess.Popen
    slot: int
    free: list[int]  # the launcher's free slots: this one goes back when the process ends

    def poll(self) -> int | None:
        rc = self.proc.poll()
        if rc is not None and self.slot not in self.free:
            self.free.append(self.slot)
        return rc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # Lightning stops on SIGTERM; the last checkpoint stays
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class LocalLauncher:
    """``jobs`` runs at a time as subprocesses of this one, one GPU (or ``gpus_per_run``) each.

    The subprocesses stay in the sweep's process group, so stopping the group (Ctrl-C, or a
    kill of the group) stops them too, and a restarted sweep never races a leftover trainer.

    Args:
        jobs: runs at a time; default: one per visible GPU group, or 1 without GPUs.
        gpus_per_run: GPUs each run sees through ``CUDA_VISIBLE_DEVICES``.
        devices: the GPU ids to hand out; default: ``CUDA_VISIBLE_DEVICES`` or every GPU torch
            sees.
    """

    def __init__(
        self,
        jobs: int | None = None,
        *,
        gpus_per_run: int = 1,
        devices: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(gpus_per_run, int) or isinstance(gpus_per_run, bool) or gpus_per_run < 1:
            raise ValueError(f"--gpus-per-run must be a positive integer, got {gpus_per_run!r}")
        devs = list(devices) if devices is not None else _visible_gpus()
        groups = [devs[i : i + gpus_per_run] for i in range(0, len(devs), gpus_per_run)]
        groups = [g for g in groups if len(g) == gpus_per_run]
        if devs and not groups:
            raise ValueError(
                f"--gpus-per-run {gpus_per_run}: only {len(devs)} GPU(s) are visible ({devs})"
            )
        if jobs is None:
            jobs = len(groups) or 1
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"--jobs must be a positive integer, got {jobs!r}")
        if groups and jobs > len(groups):
            raise ValueError(
                f"--jobs {jobs}: only {len(groups)} group(s) of {gpus_per_run} GPU(s) are visible"
                f" ({','.join(devs)}), and two runs on one GPU would share its memory; use --jobs"
                f" {len(groups)} or fewer"
            )
        self.capacity: int | None = jobs
        self._groups = groups
        self._free = list(range(jobs))
        # Without GPUs the runs share the CPU cores: split them rather than oversubscribe.
        self._threads = max(1, (os.cpu_count() or 1) // jobs)

    def start(self, runs: Sequence[SweepRun], attempt: int) -> list[Handle]:
        handles: list[Handle] = []
        for run in runs:
            slot = self._free.pop(0)
            env = dict(os.environ, PYTHONUNBUFFERED="1", **{SWEEP_PID_ENV: str(os.getpid())})
            if self._groups:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(self._groups[slot])
            else:
                env.setdefault("OMP_NUM_THREADS", str(self._threads))
            where = f"local slot {slot}"
            if self._groups:
                where += f", CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}"
            with _open_log(run, attempt, where) as log:
                proc = subprocess.Popen(
                    train_command(run), stdout=log, stderr=subprocess.STDOUT, env=env
                )
            handles.append(_ProcessHandle(run, attempt, proc, slot, self._free))
        return handles


def _visible_gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    if not Path("/proc/driver/nvidia").exists() and shutil.which("nvidia-smi") is None:
        return []  # no NVIDIA driver: spare the sweep process a torch import
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no usable torch build: run on CPU
        return []
