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

from mixsampler.checks import check_int
from mixsampler.sweep.runs import SweepRun
from mixsampler.sweep.train import SWEEP_PID_ENV

__all__ = [
    "PLAN_DIR_ENV",
    "Handle",
    "Launcher",
    "LauncherKind",
    "LocalLauncher",
    "open_run_log",
    "train_command",
    "trainer_env",
]

#: the plan folder, for trainers (also appended to their PYTHONPATH)
PLAN_DIR_ENV = "MIXSAMPLER_PLAN_DIR"


class LauncherKind(str, enum.Enum):
    LOCAL = "local"
    SLURM = "slurm"


def train_command(run: SweepRun) -> list[str]:
    """The command line one run trains with, the same under every launcher."""
    # `python -m` would put the working directory first on sys.path, so a folder named
    # `mixsampler` there (a clone of this repository, say) would shadow the installed package in
    # every trainer (an editable install is found after every sys.path entry). So the entry
    # removes the working directory, imports mixsampler, then puts it back at the end: the
    # user's own modules beside the plan (`callbacks.py`) still import, after the installed
    # packages, on every supported Python (`-P` exists from 3.11 only).
    return [sys.executable, "-u", "-c", _TRAIN_ENTRY, "train", str(run.config)]


_TRAIN_ENTRY = (
    "import sys; cwd = sys.path.pop(0); from mixsampler.cli import main;"
    " sys.path.append(cwd); sys.exit(main())"
)


def trainer_env(plan_dir: str | os.PathLike[str] | None, base: dict[str, str] | None = None):
    """The environment of a trainer: the plan folder appended to ``PYTHONPATH``.

    A model or callback module the user put in the plan folder imports in every trainer,
    after what ``PYTHONPATH`` already holds (so it never shadows an installed package).
    """
    env = dict(os.environ if base is None else base, PYTHONUNBUFFERED="1")
    if plan_dir is not None:
        folder = str(Path(plan_dir).resolve())
        parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if folder not in parts:
            parts.append(folder)
        env["PYTHONPATH"] = os.pathsep.join(parts)
        env[PLAN_DIR_ENV] = folder
    return env


def open_run_log(run: SweepRun, attempt: int, where: str) -> Any:
    """Open a run's ``train.log`` for appending, with a header line for this attempt."""
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

    def stop(self, wait: bool = True) -> None:
        """Stop the run (the sweep itself is being stopped); ``wait`` for it to end."""


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
    terminated: bool = False

    def poll(self) -> int | None:
        rc = self.proc.poll()
        if rc is not None and self.slot not in self.free:
            self.free.append(self.slot)
        return rc

    def stop(self, wait: bool = True) -> None:
        if self.proc.poll() is not None:
            return
        if not self.terminated:  # once: a second SIGTERM could cut the final checkpoint
            self.proc.terminate()  # Lightning stops on SIGTERM; the last checkpoint stays
            self.terminated = True
        if not wait:
            return
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
        plan_dir: the plan folder, appended to the trainers' ``PYTHONPATH``.
    """

    def __init__(
        self,
        jobs: int | None = None,
        *,
        gpus_per_run: int = 1,
        devices: Sequence[str] | None = None,
        plan_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        check_int("--gpus-per-run", gpus_per_run, low=1)
        devs = list(devices) if devices is not None else _visible_gpus()
        groups = [devs[i : i + gpus_per_run] for i in range(0, len(devs), gpus_per_run)]
        groups = [g for g in groups if len(g) == gpus_per_run]
        if devs and not groups:
            raise ValueError(
                f"--gpus-per-run {gpus_per_run}: only {len(devs)} GPU(s) are visible ({devs})"
            )
        if jobs is None:
            jobs = len(groups) or 1
        check_int("--jobs", jobs, low=1)
        if groups and jobs > len(groups):
            raise ValueError(
                f"--jobs {jobs}: only {len(groups)} group(s) of {gpus_per_run} GPU(s) are visible"
                f" ({','.join(devs)}), and two runs on one GPU would share its memory; use --jobs"
                f" {len(groups)} or fewer"
            )
        self.capacity: int | None = jobs
        self._plan_dir = plan_dir
        self._groups = groups
        self._free = list(range(jobs))
        # Without GPUs the runs share the CPU cores: split them rather than oversubscribe.
        self._threads = max(1, (os.cpu_count() or 1) // jobs)

    def start(self, runs: Sequence[SweepRun], attempt: int) -> list[Handle]:
        handles: list[Handle] = []
        for run in runs:
            slot = self._free.pop(0)
            env = trainer_env(self._plan_dir)
            env[SWEEP_PID_ENV] = str(os.getpid())
            if self._groups:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(self._groups[slot])
            else:
                env.setdefault("OMP_NUM_THREADS", str(self._threads))
            where = f"local slot {slot}"
            if self._groups:
                where += f", CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}"
            with open_run_log(run, attempt, where) as log:
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
