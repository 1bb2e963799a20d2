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
import os
from pathlib import Path

from laws.runtable_writer import RunTableWriter
from laws.schema import (
    MODEL_SIZE,
    MODEL_SIZE_NON_EMBEDDING,
    MODEL_SIZE_TOTAL,
    N_TOKENS,
    RUN,
    STEP,
    loss_column,
    realized_column,
    weight_column,
)

__all__ = [
    "RUN",
    "STEP",
    "MODEL_SIZE",
    "MODEL_SIZE_TOTAL",
    "MODEL_SIZE_NON_EMBEDDING",
    "N_TOKENS",
    "RunTableWriter",
    "loss_column",
    "realized_column",
    "weight_column",
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
