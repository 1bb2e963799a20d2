"""The run-table writer: one validated CSV line per row, on disk before training goes on.

Proxy runs are killed (preempted, out of time) at any moment, and a resumed run replays the
steps after its checkpoint. So every row is written in one ``write`` and fsynced (a kill loses
at most the row being written), and :meth:`RunTableWriter.truncate_after` drops the rows a
resume is about to write again, so no evaluation point is counted twice.

Example:
    >>> w = RunTableWriter("runs.csv", ["run", "step", "model_size", "n_tokens",
    ...                    "weight_a", "weight_b", "a_loss"])  # doctest: +SKIP
    >>> w.append({"run": "r1", "step": 100, "model_size": 1e8, "n_tokens": 4e8,
    ...           "weight_a": 0.5, "weight_b": 0.5, "a_loss": 3.2})  # doctest: +SKIP
    >>> w.truncate_after("r1", 50)  # resuming from step 50  # doctest: +SKIP
    1
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixsampler.laws.schema import (
    RUN,
    STEP,
    bad_input,
    check_value,
    check_weight_sum,
    domain_of,
    is_numeric,
    parse_number,
)

if TYPE_CHECKING:
    from mixsampler.laws.runtable import RunTable

__all__ = ["RunTableWriter", "write_runs"]


class RunTableWriter:
    """Append validated rows to a run-table CSV.

    Args:
        path: the CSV. A new (or empty) file gets the header ``columns``; an existing one must
            have the same set of columns (its order is kept, so appending never reorders it).
        columns: the column names, unique; see :mod:`laws.schema`.

    Raises:
        FormatError: duplicated or empty column names, or an existing file whose header
            differs (naming the file and the columns on either side).

    Example:
        >>> w = RunTableWriter("runs.csv", ["run", "step", "model_size", "n_tokens",
        ...                    "weight_a", "a_loss"])  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str], columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.columns = self.__init_columns(columns)
        self.__init_file()

    def __init_columns(self, columns: Sequence[str]) -> list[str]:
        if isinstance(columns, str) or not isinstance(columns, Sequence) or not columns:
            raise bad_input(self.path, "columns must be a non-empty list of names", value=columns)
        out = []
        for c in columns:
            if not isinstance(c, str) or not c.strip() or c != c.strip():
                raise bad_input(
                    self.path, "column names must be non-empty strings without padding", value=c
                )
            out.append(c)
        dups = sorted({c for c in out if out.count(c) > 1})
        if dups:
            raise bad_input(self.path, "duplicated column names", value=dups)
        return out

    def __init_file(self) -> None:
        if self.path.is_dir():
            raise bad_input(self.path, "is a directory, expected a run-table CSV file")
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open(newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), [])
            if set(header) != set(self.columns) or len(header) != len(self.columns):
                missing = [c for c in self.columns if c not in header]
                extra = [c for c in header if c not in self.columns]
                dups = sorted({c for c in header if header.count(c) > 1})
                raise bad_input(
                    self.path,
                    f"its header differs from the columns written (missing there: {missing}, "
                    f"not written: {extra}, duplicated there: {dups}); append to a file with "
                    "the same columns or choose another path",
                )
            self.columns = header  # the file's order
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _write_durably(self.path, _csv_line(self.columns), "a")

    def append(self, row: Mapping[str, Any]) -> None:
        """Validate one row and append it as one line, flushed and fsynced.

        Unset columns are written empty. Numbers must be finite (losses may be NaN: missing),
        N and D positive, losses >= 0, and the ``weight_*`` values must sum to 1.

        Raises:
            FormatError: an unknown column or a value breaking its column's rule; nothing is
                written then.
        """
        self.append_many([row])

    def append_many(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Validate every row, then append them all in one write (none if any is bad)."""
        text = "".join(_csv_line(self._cells(row)) for row in rows)
        if text:
            _write_durably(self.path, text, "a")

    def _cells(self, row: Mapping[str, Any]) -> list[Any]:
        if not isinstance(row, Mapping):
            raise bad_input(self.path, "a row must map column names to values", value=row)
        unknown = sorted(set(row) - set(self.columns))
        if unknown:
            raise bad_input(
                self.path,
                f"row names unknown columns; the columns are {self.columns}",
                value=unknown,
            )
        cells: list[Any] = []
        weights: dict[str, float] = {}
        for c in self.columns:
            v = row.get(c)
            if v is None or (isinstance(v, str) and v == ""):
                cells.append("")
            elif is_numeric(c) or isinstance(v, (bool, int, float)):
                x = check_value(
                    c, parse_number(v, self.path, None, c, allow_missing=True), self.path, raw=v
                )
                if math.isinf(x) or (math.isnan(x) and not is_numeric(c)):
                    raise bad_input(self.path, "must be finite", column=c, value=v)
                if domain_of(c):
                    weights[c] = x
                # ints stay ints (step, N); floats are written with repr, bit-exact.
                cells.append("" if math.isnan(x) else v if type(v) is int else x)
            else:
                cells.append(str(v))
        if weights:
            check_weight_sum(weights, self.path, None)
        return cells

    def truncate_after(self, run: str, step: int) -> int:
        """Drop this run's rows with a step above ``step``, atomically; how many were dropped.

        A run resumed from the checkpoint of ``step`` writes the later steps again; dropping
        them first keeps each evaluation point once. Other runs' rows are untouched.
        """
        if RUN not in self.columns or STEP not in self.columns:
            raise bad_input(self.path, f"truncate_after needs the columns {RUN!r} and {STEP!r}")
        with self.path.open(newline="", encoding="utf-8") as f:
            lines = list(csv.reader(f))
        header, body = lines[0], lines[1:]
        i_run, i_step = header.index(RUN), header.index(STEP)
        keep = [header]
        dropped = 0
        for n, cells in enumerate(body, start=2):
            if len(cells) == len(header) and cells[i_run] == str(run):
                s = parse_number(cells[i_step], self.path, n, STEP, allow_missing=True)
                if not math.isnan(s) and s > step:
                    dropped += 1
                    continue
            keep.append(cells)
        if dropped:
            tmp = self.path.with_name(self.path.name + ".tmp")
            _write_durably(tmp, "".join(_csv_line(c) for c in keep), "w")
            os.replace(tmp, self.path)
        return dropped


def write_runs(path: str | os.PathLike[str], table: RunTable) -> Path:
    """Write a whole table (its columns and raw rows) to a new CSV, atomically.

    What :func:`laws.runtable.load_runs` reads back is the same table.

    Example:
        >>> write_runs("subset.csv", load_runs("runs.csv", where="model_size < 1e9"))
        ... # doctest: +SKIP
    """
    path = Path(path)
    if path.is_dir():
        raise bad_input(path, "is a directory; name the CSV to write")
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        RunTableWriter(tmp, table.columns).append_many(table.rows)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_durably(path: Path, text: str, mode: str) -> None:
    # One write of the whole text, then fsync: a SIGKILL can only lose the line being written.
    with path.open(mode, newline="", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _csv_line(values: Sequence[Any]) -> str:
    buf = io.StringIO()
    # repr keeps every float bit, so the reader gets back exactly what was measured.
    csv.writer(buf, lineterminator="\n").writerow(
        [repr(v) if isinstance(v, float) else v for v in values]
    )
    return buf.getvalue()
