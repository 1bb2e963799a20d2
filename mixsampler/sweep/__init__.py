"""Run the proxy sweep a plan folder describes: on this machine or on SLURM, resumable.

``train`` runs one config (``mixsampler train``), ``run_sweep`` all of a plan folder
(``mixsampler sweep``); nothing here imports torch until a run is trained.

Example:
    >>> from mixsampler.sweep import run_sweep
    >>> result = run_sweep("sweep/", launcher="local", jobs=2)  # doctest: +SKIP
    >>> result.success, result.next_command  # doctest: +SKIP
    (True, 'mixsampler fit sweep/runs/*.csv --law joint --target all -o sweep/LAW.json')
"""

from __future__ import annotations

from mixsampler.sweep.runner import Failure, SweepResult, run_sweep
from mixsampler.sweep.runs import RunStatus, SweepRun, read_plan_dir, run_status
from mixsampler.sweep.train import TrainResult, train

__all__ = [
    "Failure",
    "RunStatus",
    "SweepResult",
    "SweepRun",
    "TrainResult",
    "read_plan_dir",
    "run_status",
    "run_sweep",
    "train",
]
