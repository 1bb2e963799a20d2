"""The run-table writer: one validated CSV line per row, on disk before training goes on.

Proxy runs are killed (preempted, out of time) at any moment, disks fill up, and a resumed run
replays the steps after its checkpoint. So:

- every row is written in one ``write`` and fsynced (a kill loses at most the row being
  written);
- a write that fails part-way (``ENOSPC``, an I/O error) is cut back to the last complete row
  before the error is raised, so no partial row is ever left by this process;
- a partial last row left by a process killed mid-write (a line without its newline) is
  dropped, with a :class:`PartialRowWarning` naming file, line and text, before anything is
  appended after it: a new row is never glued onto half of an old one (issue 21);
- :meth:`RunTableWriter.truncate_after` drops the rows a resume is about to write again, so no
  evaluation point is counted twice.

The reader (:func:`laws.runtable.load_runs`) refuses a table whose last row has no newline, so
a cut row is never read as a (wrong) number either.

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
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mixsampler.laws.schema import (
    N_TOKENS_UNIT,
    N_TOKENS_UNITS,
    RUN,
    STEP,
    bad_input,
    check_columns,
    check_value,
    check_weight_sum,
    domain_of,
    is_numeric,
    parse_number,
    realized_domain_of,
    target_of,
    val_batches_domain_of,
)

if TYPE_CHECKING:
    from mixsampler.laws.runtable import RunTable

__all__ = ["PartialRowWarning", "RunTableWriter", "drop_partial_row", "write_runs"]


class PartialRowWarning(UserWarning):
    """A run table ended in a row cut short (no newline): it was dropped before appending."""


def drop_partial_row(path: str | os.PathLike[str]) -> str | None:
    r"""Cut a run table back to its last complete line; return the dropped text, if any.

    A line without its newline at the end of the file is what a write cut short leaves (a
    process killed mid-write, a full disk on another writer). Appending after it would glue the
    next row onto it, so it is removed, with a :class:`PartialRowWarning` naming the file, the
    line and the text. A file that ends in a newline (or is empty) is left untouched.

    Example:
        >>> import pathlib, tempfile, warnings
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "runs.csv"
        >>> _ = p.write_text("run,step\nr1,1\nr1,2\nr2,")
        >>> with warnings.catch_warnings(record=True):
        ...     drop_partial_row(p)
        'r2,'
        >>> p.read_text()
        'run,step\nr1,1\nr1,2\n'
    """
    path = Path(path)
    with path.open("rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return None
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return None
        # Find the last newline by reading backwards in blocks: rows are short, files may not be.
        end, block = size, 1 << 16
        cut = 0
        while end > 0:
            start = max(0, end - block)
            f.seek(start)
            chunk = f.read(end - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                cut = start + i + 1
                break
            end = start
        f.seek(0)
        line = f.read(cut).count(b"\n") + 1
        f.seek(cut)
        dropped = f.read().decode("utf-8", errors="replace")
        f.truncate(cut)
        f.flush()
        os.fsync(f.fileno())
    shown = dropped if len(dropped) <= 120 else dropped[:117] + "..."
    warnings.warn(
        f"{path}, row {line}: dropped a partial last row {shown!r} (no newline: a write cut short"
        " by a kill or a full disk); its run writes that evaluation again when it resumes",
        PartialRowWarning,
        stacklevel=2,
    )
    return dropped


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
        self._size = -1  # the file's size after our last write: unknown yet
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
        _check_roles(out, self.path)
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
            drop_partial_row(self.path)  # repaired on open, before anything is appended
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
            # Another process (a killed attempt of this run) may have left a cut row since our
            # last write; a file of the size we left it is ours, ending in a newline (one stat).
            if os.stat(self.path).st_size != self._size:
                drop_partial_row(self.path)
            self._size = _append_whole(self.path, text)

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
            elif c == N_TOKENS_UNIT and v not in N_TOKENS_UNITS:
                raise bad_input(
                    self.path, f"must be one of {', '.join(N_TOKENS_UNITS)}", column=c, value=v
                )
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
        drop_partial_row(self.path)
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
            from mixsampler.atomic import atomic_write

            atomic_write(self.path, "".join(_csv_line(c) for c in keep))
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


def _check_roles(columns: Sequence[str], path: Path) -> None:
    """Refuse names whose columns would collide (``weight_foo_loss``); see laws.schema."""
    domains = [d for c in columns if (d := domain_of(c))]
    others = [d for c in columns if (d := realized_domain_of(c) or val_batches_domain_of(c))]
    targets = [t for c in columns if (t := target_of(c))]
    check_columns(domains + [d for d in others if d not in domains], targets, path)


def _write_durably(path: Path, text: str, mode: str) -> None:
    # One write of the whole text, then fsync: a SIGKILL can only lose the line being written.
    with path.open(mode, newline="", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _append_whole(path: Path, text: str) -> int:
    """Append ``text`` and fsync it, or leave the file as it was and raise one clear OSError.

    Returns the file's size after the write.

    A full disk can fail a write part-way; the file is then cut back to its size before this
    call, so the table never holds a partial row from this process.
    """
    data = text.encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                if n <= 0:  # a short write that makes no progress: treat as a full disk
                    raise OSError(28, os.strerror(28))
                view = view[n:]
            os.fsync(fd)
            return start + len(data)
        except OSError as err:
            try:
                os.ftruncate(fd, start)
                os.fsync(fd)
                kept = "nothing of these rows was kept; the earlier rows are intact"
            except OSError:
                kept = "a partial row may remain; the next writer drops it before appending"
            raise OSError(
                err.errno, f"cannot append to run table {path}: {err.strerror or err}; {kept}"
            ) from None
    finally:
        os.close(fd)


def _csv_line(values: Sequence[Any]) -> str:
    buf = io.StringIO()
    # repr keeps every float bit, so the reader gets back exactly what was measured.
    csv.writer(buf, lineterminator="\n").writerow(
        [repr(v) if isinstance(v, float) else v for v in values]
    )
    return buf.getvalue()
