"""The run table as DomainLossLogger writes it: formats' column names and writer, one reader.

Column names come from ``laws.schema`` and rows go through ``laws.runtable_writer`` (validated,
fsynced, ``truncate_after`` for resumes); this module only adds the one question the callback
asks of an existing table.

Example:
    >>> loss_column("c4"), weight_column("c4"), realized_column("c4")
    ('c4_loss', 'weight_c4', 'realized_c4')
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mixsampler.laws.runtable_writer import RunTableWriter
from mixsampler.laws.schema import (
    MODEL_SIZE,
    MODEL_SIZE_NON_EMBEDDING,
    MODEL_SIZE_TOTAL,
    N_TOKENS,
    N_TOKENS_UNIT,
    RUN,
    STEP,
    loss_column,
    realized_column,
    val_batches_column,
    weight_column,
)

__all__ = [
    "RUN",
    "STEP",
    "MODEL_SIZE",
    "MODEL_SIZE_TOTAL",
    "MODEL_SIZE_NON_EMBEDDING",
    "N_TOKENS",
    "N_TOKENS_UNIT",
    "RunTableWriter",
    "loss_column",
    "realized_column",
    "weight_column",
    "make_row",
    "val_batches_column",
    "reconcile_rows",
    "row_columns",
    "run_steps",
]


def run_steps(path: str | os.PathLike[str], run: str) -> list[int]:
    """The steps of ``run``'s rows in the run table at ``path`` (empty when there is none)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or RUN not in reader.fieldnames:
            return []
        return [int(float(r[STEP])) for r in reader if r[RUN] == run]


def reconcile_rows(path: Path, run: str, step: int, *, resumed: bool) -> int:
    """Make the table at ``path`` ready for ``run`` to write rows after ``step``.

    A resumed run drops its rows after ``step`` (training repeats those steps; two rows for one
    (run, step) would both enter the fit) and returns how many; a fresh run under a name the
    table already holds is an error.
    """
    if not path.exists() or path.stat().st_size == 0:
        return 0
    if resumed:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
        # The file's own columns: this run's domains may be known only at its first validation.
        return RunTableWriter(path, header).truncate_after(run, step)
    steps = run_steps(path, run)
    if steps:
        raise ValueError(
            f"run table {str(path)!r} already holds {len(steps)} rows of run {run!r} (steps"
            f" {steps[0]}..{steps[-1]}), and this run starts from scratch; resume it with"
            " ckpt_path=..., give DomainLossLogger another run=, or delete those rows"
        )
    return 0


def row_columns(train: Sequence[str], val: Sequence[str]) -> list[str]:
    """The columns DomainLossLogger writes for these training and validation domains."""
    return (
        [RUN, STEP, MODEL_SIZE, MODEL_SIZE_TOTAL, MODEL_SIZE_NON_EMBEDDING, N_TOKENS, N_TOKENS_UNIT]
        + [weight_column(d) for d in train]
        + [loss_column(d) for d in val]
        + [realized_column(d) for d in train]
        + [val_batches_column(d) for d in val]
    )


def make_row(
    run: str | None,
    step: int,
    sizes: tuple[int | None, int | None, int | None],
    weights: Mapping[str, float] | None,
    losses: Mapping[str, float],
    consumed: Mapping[str, float],
) -> dict[str, Any]:
    """One row (without ``n_tokens``): N three ways, weights, losses, realized shares.

    ``consumed`` is what each training domain gave so far, in the sampler's unit; a NaN loss
    (no data for that domain) is an empty cell.
    """
    row: dict[str, Any] = {RUN: run, STEP: step}
    row.update(zip((MODEL_SIZE, MODEL_SIZE_TOTAL, MODEL_SIZE_NON_EMBEDDING), sizes, strict=True))
    denom = sum(consumed.values())
    for d in consumed:
        row[weight_column(d)] = weights[d] if weights else ""
        row[realized_column(d)] = consumed[d] / denom if denom > 0 else ""
    for d, value in losses.items():
        row[loss_column(d)] = "" if math.isnan(value) else value
    return row
