"""Run the proxy sweep a plan folder describes: on this machine or on SLURM, resumable.

Example:
    >>> from mixsampler.sweep import run_sweep
    >>> result = run_sweep("sweep/", launcher="local", jobs=2)  # doctest: +SKIP
    >>> result.success, result.next_command  # doctest: +SKIP
    (True, 'mixsampler fit sweep/runs/*.csv --law joint --target all -o sweep/LAW.json')
"""

from __future__ import annotations

from mixsampler.sweep.runs import RunStatus, SweepRun, read_plan_dir, run_status

__all__ = ["RunStatus", "SweepRun", "read_plan_dir", "run_status"]
