"""The run table as DomainLossLogger writes it: column names and an append-only writer.

Both belong to ``laws`` (formats' ``laws.schema`` and ``laws.runtable_writer``); they are used
from there as soon as they exist. Until then this module holds stand-ins with the same API
(``RunTableWriter(path, columns)``, ``append(row)``, ``truncate_after(run, step)``), so swapping
is a deletion here and nothing else.

Example:
    >>> loss_column("c4"), weight_column("c4"), realized_column("c4")
    ('c4_loss', 'weight_c4', 'realized_c4')
"""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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

try:
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
except ImportError:  # formats-api not merged yet
    RUN, STEP, MODEL_SIZE, N_TOKENS = "run", "step", "model_size", "n_tokens"
    MODEL_SIZE_TOTAL, MODEL_SIZE_NON_EMBEDDING = "model_size_total", "model_size_non_embedding"

    def weight_column(d: str) -> str:
        return f"weight_{d}"

    def loss_column(t: str) -> str:
        return f"{t}_loss"

    def realized_column(d: str) -> str:
        return f"realized_{d}"


try:
    from laws.runtable_writer import RunTableWriter
except ImportError:  # formats-api not merged yet

    class RunTableWriter:  # type: ignore[no-redef]
        """Stand-in for ``laws.runtable_writer.RunTableWriter`` (same API, fewer checks)."""

        def __init__(self, path: str | os.PathLike[str], columns: Sequence[str]) -> None:
            self.path = Path(path)
            columns = list(columns)
            if self.path.exists() and self.path.stat().st_size > 0:
                with open(self.path, newline="") as f:
                    header = next(csv.reader(f), [])
                if set(header) != set(columns):
                    missing = [c for c in columns if c not in header]
                    extra = [c for c in header if c not in columns]
                    raise ValueError(
                        f"run table {str(self.path)!r} has columns {header}, this run writes"
                        f" {columns} (missing there: {missing}, not written by this run:"
                        f" {extra}); append to a file with the same domains or choose another"
                        " path"
                    )
                self.columns = header  # keep the file's order
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                _append(self.path, _csv_line(columns))
                self.columns = columns

        def append(self, row: Mapping[str, Any]) -> None:
            for c, v in row.items():
                if isinstance(v, float) and not math.isfinite(v):
                    raise ValueError(f"run table {self.path}: {c} is {v!r}, not a finite number")
            _append(self.path, _csv_line([row.get(c, "") for c in self.columns]))

        def truncate_after(self, run: str, step: int) -> int:
            with open(self.path, newline="") as f:
                lines = f.readlines()
            header, body = lines[:1], lines[1:]
            cols = next(csv.reader(header))
            i_run, i_step = cols.index(RUN), cols.index(STEP)
            keep = []
            for line in body:
                cells = next(csv.reader([line]))
                if cells[i_run] == run and int(cells[i_step]) > step:
                    continue
                keep.append(line)
            dropped = len(body) - len(keep)
            if dropped:
                # Write aside and rename: a crash leaves the old table or the new, never half.
                fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + ".")
                with os.fdopen(fd, "w", newline="") as f:
                    f.writelines(header + keep)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            return dropped


def run_steps(path: str | os.PathLike[str], run: str) -> list[int]:
    """The steps of ``run``'s rows in the run table at ``path`` (empty when there is none)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or RUN not in reader.fieldnames:
            return []
        return [int(r[STEP]) for r in reader if r[RUN] == run]


def _append(path: Path, line: str) -> None:
    # One write of a whole line, then fsync: a SIGKILL can only lose the row being written.
    with open(path, "a", newline="") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def _csv_line(values: list[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(
        [repr(v) if isinstance(v, float) else v for v in values]
    )
    return buf.getvalue()
