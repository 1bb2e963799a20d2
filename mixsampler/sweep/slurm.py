"""The SLURM launcher: one job array through submitit, one task per run.

submitit is the standard way to reach SLURM from Python (it writes the sbatch script, submits
arrays, and reads job states through ``sacct``); its local executor runs the same submission and
polling code on one machine, which is how this launcher is tested. Each task runs the same
``mixsampler train CONFIG`` subprocess as the local launcher, with the output appended to the
run's ``train.log``; submitit's own logs (the sbatch script, stdout/stderr of the task wrapper)
go to ``<plan>/slurm/``.

Example:
    >>> opts = SlurmOptions(partition="gpu", time_min=240, gpus=1, cpus=8, mem_gb=64)
    >>> launcher = SubmititLauncher("sweep/slurm", opts, jobs=16)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixsampler.checks import check_int
from mixsampler.sweep.launchers import Handle, open_run_log, train_command, trainer_env
from mixsampler.sweep.runs import SweepRun

__all__ = ["CLUSTERS", "SlurmOptions", "SubmititLauncher"]

#: submitit executors this launcher accepts: ``slurm``, or ``local`` to try the same path here.
CLUSTERS: tuple[str, ...] = ("slurm", "local")


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of each task (one run); None leaves the cluster's default.

    Attributes:
        partition: ``--partition``.
        time_min: time limit per task in minutes (a killed task resumes on retry).
        gpus: GPUs per task (``--gpus-per-node``; one run per task).
        cpus: CPUs per task, for the data loader workers.
        mem_gb: memory per task in GB.
        account: ``--account``, where the cluster bills jobs to one.
        extra: further sbatch options (name without ``--`` -> value), e.g. ``{"qos": "high"}``.
        cluster: ``slurm``, or ``local`` for submitit's local executor (tests, trying it out).
    """

    partition: str | None = None
    time_min: int | None = None
    gpus: int | None = None
    cpus: int | None = None
    mem_gb: float | None = None
    account: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    cluster: str = "slurm"

    def __post_init__(self) -> None:
        if self.cluster not in CLUSTERS:
            raise ValueError(f"--slurm-cluster can be {', '.join(CLUSTERS)}, got {self.cluster!r}")
        for name, flag, low in (
            ("time_min", "--time", 1),
            ("gpus", "--gpus", 0),
            ("cpus", "--cpus", 1),
        ):
            check_int(flag, getattr(self, name), low=low, allow_none=True)
        if self.mem_gb is not None and not self.mem_gb > 0:
            raise ValueError(f"--mem must be a positive number of GB, got {self.mem_gb!r}")

    def parameters(self, jobs: int | None) -> dict[str, Any]:
        """``executor.update_parameters`` arguments (submitit's generic names where they exist)."""
        params: dict[str, Any] = {"name": "mixsampler-sweep", "tasks_per_node": 1, "nodes": 1}
        for key, value in (
            ("timeout_min", self.time_min),
            ("gpus_per_node", self.gpus),
            ("cpus_per_task", self.cpus),
            ("mem_gb", self.mem_gb),
            ("slurm_partition", self.partition),
            ("slurm_account", self.account),
            ("slurm_array_parallelism", jobs),
        ):
            if value is not None:
                params[key] = value
        if self.cluster == "local" and self.time_min is None:
            params["timeout_min"] = 24 * 60  # the local executor's default would be 2 minutes
        if self.extra:
            params["slurm_additional_parameters"] = dict(self.extra)
        return params


def _train_task(
    config: str, run_dir: str, attempt: int, cwd: str, plan_dir: str | None = None
) -> int:
    """What one array task runs (pickled by submitit): the train subprocess, its exit status."""
    run = SweepRun(Path(config).stem, Path(config), Path(run_dir), None)
    where = "job " + os.environ.get("SLURM_JOB_ID", os.environ.get("SUBMITIT_LOCAL_JOB_ID", "?"))
    with open_run_log(run, attempt, where) as log:
        env = trainer_env(plan_dir)
        return subprocess.run(
            train_command(run), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd
        ).returncode


@dataclass
class _JobHandle:
    run: SweepRun
    attempt: int
    job: Any

    def poll(self) -> int | None:
        if not self.job.done():
            return None
        try:
            return int(self.job.result())
        except Exception:  # the task itself died (timeout, node failure, cancelled)
            return -1

    def stop(self, wait: bool = True) -> None:  # a cancel does not wait
        try:
            self.job.cancel(check=False)
        except Exception:  # already gone
            pass


class SubmititLauncher:
    """Submit pending runs as one submitit job array; the cluster throttles it to ``jobs``.

    submitit's local executor has no array throttle (it starts every task at once), so there the
    launcher submits at most ``jobs`` tasks at a time; the submission and polling code is the same.

    Args:
        folder: submitit's folder (sbatch scripts, pickles, task wrapper logs).
        options: resources per task.
        jobs: tasks running at once (``--array=...%jobs``); None: no limit.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        options: SlurmOptions,
        jobs: int | None,
        plan_dir: str | os.PathLike[str] | None = None,
    ):
        import submitit

        self._plan_dir = None if plan_dir is None else str(Path(plan_dir).resolve())
        check_int("--jobs", jobs, low=1, allow_none=True)
        if options.cluster == "slurm" and shutil.which("sbatch") is None:
            raise ValueError(
                "--launcher slurm: sbatch is not on PATH; run the sweep on the cluster's login"
                " node, or use --launcher local here"
            )
        self.capacity: int | None = jobs if options.cluster == "local" else None
        self._executor = submitit.AutoExecutor(folder=Path(folder) / "%j", cluster=options.cluster)
        self._executor.update_parameters(**options.parameters(jobs))

    def start(self, runs: Sequence[SweepRun], attempt: int) -> list[Handle]:
        cwd = os.getcwd()
        with self._executor.batch():
            jobs = [
                self._executor.submit(
                    _train_task, str(r.config), str(r.run_dir), attempt, cwd, self._plan_dir
                )
                for r in runs
            ]
        return [_JobHandle(r, attempt, j) for r, j in zip(runs, jobs, strict=True)]
