"""Reading run tables (CSV or JSONL) into a :class:`RunTable`, checking every cell.

Every error names the file, the row (the line an editor shows; the CSV header is line 1), the
column and the value, through :func:`laws.schema.bad_input`.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mixsampler.laws.runtable.table import RunTable
from mixsampler.laws.runtable.where import parse_where
from mixsampler.laws.schema import (
    MODEL_SIZE,
    MODEL_SIZE_COLUMNS,
    N_TOKENS,
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
    weight_column,
)

__all__ = ["load_runs", "read_rows"]

_JSONL = (".jsonl", ".ndjson", ".json")


def read_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Read a CSV or JSONL file into ``(columns, [(line, row)])`` with string values.

    Raises:
        FileNotFoundError: no such file.
        FormatError: a directory, an empty file, no rows, duplicated or unnamed columns, a CSV
            row whose field count differs from the header's, or a line that is not a JSON object.
    """
    if not path.exists():
        raise FileNotFoundError(f"run table {path} does not exist")
    if path.is_dir():
        raise bad_input(path, "is a directory, expected a run table (CSV or JSONL file)")
    try:
        if path.suffix.lower() in _JSONL:
            cols, rows = _read_jsonl(path)
        else:
            cols, rows = _read_csv(path)
    except UnicodeDecodeError as err:
        raise bad_input(path, f"not UTF-8 text (byte {err.start})") from None
    if not rows:
        raise bad_input(
            path, "no rows, only a header; a run that never evaluated: leave its file out"
        )
    return cols, rows


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    cut = _ends_without_newline(path)
    # utf-8-sig: spreadsheets put a byte-order mark before the first column name.
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None:
                raise bad_input(path, "empty file, expected a header row")
            cols = [c.strip() for c in header]
            _check_header(path, cols)
            rows: list[tuple[int, dict[str, str]]] = []
            for cells in reader:
                line = reader.line_num
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    continue  # a blank line
                if len(cells) != len(cols):
                    # A field inserted or dropped shifts every later value into the wrong
                    # column; reading it anyway would be a silently wrong table.
                    raise bad_input(
                        path,
                        f"{len(cells)} fields, but the header has {len(cols)} columns",
                        row=line,
                        value=",".join(cells),
                    )
                rows.append((line, {c: v.strip() for c, v in zip(cols, cells, strict=True)}))
        except csv.Error as err:
            raise bad_input(path, f"not a readable CSV ({err})", row=reader.line_num) from None
    if cut and rows and rows[-1][0] == reader.line_num:
        # A write cut short (a kill, a full disk) can leave a row with the right number of
        # fields and a truncated number ("3.2" of "3.25"): reading it would be silently wrong.
        raise bad_input(
            path,
            "the last row has no newline: a write cut short (killed run, full disk)? If the row"
            " is complete, end it with a newline; if not, delete it (RunTableWriter drops it"
            " when the run resumes, laws.runtable_writer.drop_partial_row does it by hand)",
            row=rows[-1][0],
        )
    return cols, rows


def _ends_without_newline(path: Path) -> bool:
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return False
        f.seek(size - 1)
        return f.read(1) not in (b"\n", b"\r")


def _check_header(path: Path, cols: list[str]) -> None:
    unnamed = [i + 1 for i, c in enumerate(cols) if not c]
    if unnamed:
        raise bad_input(path, "header has unnamed columns at positions", row=1, value=unnamed)
    dups = sorted({c for c in cols if cols.count(c) > 1})
    if dups:
        raise bad_input(path, "duplicated column names in the header", row=1, value=dups)


def _read_jsonl(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        dups = sorted({k for k in keys if keys.count(k) > 1})
        if dups:
            raise ValueError(f"duplicated column names {dups}")
        return dict(pairs)

    columns: dict[str, None] = {}
    rows: list[tuple[int, dict[str, str]]] = []
    with path.open(encoding="utf-8-sig") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line, object_pairs_hook=no_duplicates)
            except json.JSONDecodeError as err:
                raise bad_input(path, f"not valid JSON ({err})", row=line_no) from None
            except (ValueError, RecursionError) as err:
                raise bad_input(path, f"not valid JSON ({err})", row=line_no) from None
            if not isinstance(obj, dict):
                raise bad_input(path, "expected a JSON object per line", row=line_no)
            row = {str(k).strip(): _cell(v) for k, v in obj.items()}
            _check_header(path, list(row))
            columns.update(dict.fromkeys(row))
            rows.append((line_no, row))
    if not rows:
        raise bad_input(path, "empty file, expected one JSON object per line")
    return list(columns), rows


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (dict, list, bool)):
        return json.dumps(v)  # kept as text; a numeric column then says "not a number"
    return str(v)


def load_runs(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    where: str | None = None,
    n_column: str = MODEL_SIZE,
) -> RunTable:
    """Load and validate one or more run tables (CSV or JSONL), optionally filtering rows.

    Args:
        paths: one path or several; all files must have the same ``weight_*`` columns.
        where: a row filter such as ``"model_size < 2e9 and n_tokens >= 4e9"`` (see
            :func:`parse_where`); applied after validation. It may leave no rows: callers that
            need rows check ``len(table)``.
        n_column: the column read as N (``model_size``, ``model_size_total`` or
            ``model_size_non_embedding``, or any other numeric column every file has).

    Returns:
        The rows as a :class:`RunTable`.

    Raises:
        FileNotFoundError: a path does not exist.
        FormatError: (a ValueError) a file given twice, a directory, an empty file, a missing
            or duplicated column, a row with the wrong number of fields, a negative or
            non-finite N, D, weight or loss, weights not summing to 1, or an unparsable
            value; the message names file, row and column and echoes the value.

    Example:
        >>> table = load_runs("runs.csv", where="model_size >= 3e8")  # doctest: +SKIP
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise ValueError("paths must name at least one run table, got none")
    if not isinstance(n_column, str) or not n_column:
        raise ValueError(f"n_column must name a column, got {n_column!r}")
    seen: dict[str, str] = {}
    parts: list[_FileRows] = []
    for p in paths:
        path = Path(p)
        key = os.path.realpath(path)
        if key in seen:
            raise bad_input(path, f"given twice (also as {seen[key]}); its rows would count double")
        seen[key] = str(path)
        parts.append(_read_file(path, n_column, parts[0].domains if parts else None))
    table = _assemble(parts, n_column)
    _check_repeats(table)
    if where:
        table = table.select(parse_where(where)(table))
    return table


class _FileRows:
    """The checked rows of one file."""

    def __init__(self, path: Path, columns: list[str], domains: tuple[str, ...]) -> None:
        self.path = path
        self.columns = columns
        self.domains = domains
        self.targets = [t for c in columns if (t := target_of(c))]
        self.n: list[float] = []
        self.d: list[float] = []
        self.w: list[list[float]] = []
        self.losses: list[dict[str, float]] = []
        self.rows: list[dict[str, str]] = []
        self.lines: list[int] = []
        self.units: set[str] = set()

    @property
    def unit(self) -> str:
        """What n_tokens counts in this file (one unit per file, checked)."""
        if len(self.units) > 1:
            raise bad_input(
                self.path,
                "rows count n_tokens in different units; one table, one unit",
                column=N_TOKENS_UNIT,
                value=sorted(self.units),
            )
        return next(iter(self.units), "tokens")


def _read_file(path: Path, n_column: str, domains: tuple[str, ...] | None) -> _FileRows:
    cols, rows = read_rows(path)
    file_domains = tuple(d for c in cols if (d := domain_of(c)))
    missing = [c for c in (n_column, N_TOKENS) if c not in cols]
    if not file_domains:
        missing.append("weight_<domain> (at least one)")
    if missing:
        raise bad_input(path, f"missing column(s) {', '.join(missing)}", value=cols[:12])
    if domains is not None and set(file_domains) != set(domains):
        raise bad_input(
            path,
            f"weight columns differ from the first file's {sorted(domains)}",
            value=sorted(file_domains),
        )
    others = [d for c in cols if (d := realized_domain_of(c) or val_batches_domain_of(c))]
    check_columns(
        [*file_domains, *(d for d in others if d not in file_domains)],
        [t for c in cols if (t := target_of(c))],
        path,
    )
    out = _FileRows(path, cols, domains or file_domains)
    weight_cols = [weight_column(d) for d in out.domains]
    # Other columns with a rule (step, realized_*, the other N counts) are checked too, so a
    # table that reads is a table every verb can trust.
    checked = {n_column, N_TOKENS, *weight_cols}
    other_rules = [c for c in cols if c not in checked and not target_of(c) and is_numeric(c)]
    for line, row in rows:
        for col in (n_column, N_TOKENS, *weight_cols):
            if col not in row:
                raise bad_input(path, "missing column", row=line, column=col)
        out.n.append(_positive(row[n_column], path, line, n_column))
        out.d.append(_positive(row[N_TOKENS], path, line, N_TOKENS))
        w = {c: _checked(row[c], path, line, c, allow_missing=False) for c in weight_cols}
        check_weight_sum(w, path, line)
        out.w.append(list(w.values()))
        out.losses.append(
            {t: _checked(row.get(t + "_loss", ""), path, line, t + "_loss") for t in out.targets}
        )
        for c in other_rules:
            _checked(row.get(c, ""), path, line, c)
        if N_TOKENS_UNIT in row:
            out.units.add(_unit(row[N_TOKENS_UNIT], path, line))
        out.rows.append(row)
        out.lines.append(line)
    return out


def _unit(value: str, path: Path, line: int) -> str:
    unit = value.strip().lower() or "tokens"  # empty: the default, tokens
    if unit not in N_TOKENS_UNITS:
        raise bad_input(
            path,
            f"must be one of {', '.join(N_TOKENS_UNITS)}",
            row=line,
            column=N_TOKENS_UNIT,
            value=value,
        )
    return unit


def _checked(
    value: str, path: Path, line: int, column: str, *, allow_missing: bool = True
) -> float:
    x = parse_number(value, path, line, column, allow_missing=allow_missing)
    if math.isnan(x):
        return x
    return check_value(column, x, path, line, raw=value)


def _positive(value: str, path: Path, line: int, column: str) -> float:
    x = parse_number(value, path, line, column, allow_missing=False)
    # N may be read from any column (n_column); it takes the rule of model_size.
    rule = column if column in MODEL_SIZE_COLUMNS or column == N_TOKENS else MODEL_SIZE
    try:
        return check_value(rule, x, path, line, raw=value)
    except ValueError:
        raise bad_input(
            path, "must be a finite positive number", row=line, column=column, value=value
        ) from None


def _check_repeats(table: RunTable) -> None:
    """One row per (run, step): a repeat is a resumed run that wrote its steps again."""
    if RUN not in table.columns or STEP not in table.columns:
        return
    seen: dict[tuple[str, str], tuple[str, int]] = {}
    for row, (src, line) in zip(table.rows, table.sources, strict=True):
        run, step = row.get(RUN, ""), row.get(STEP, "")
        if not run or not step:
            continue
        key = (run, str(float(step)))
        if key in seen:
            first = seen[key]
            raise bad_input(
                src,
                f"run {run!r} has step {step} twice (first at {first[0]}, row {first[1]}); a "
                "resumed run wrote it again: keep one of the rows",
                row=line,
            )
        seen[key] = (src, line)


def _assemble(parts: list[_FileRows], n_column: str) -> RunTable:
    domains = parts[0].domains
    units = {p.unit for p in parts}
    if len(units) > 1:
        odd = next(p for p in parts if p.unit != parts[0].unit)
        raise bad_input(
            odd.path,
            f"n_tokens counts {odd.unit} here but {parts[0].unit} in {parts[0].path}; a law"
            " needs one unit (a table without an n_tokens_unit column counts tokens)",
            column=N_TOKENS_UNIT,
        )
    targets = list(dict.fromkeys(t for p in parts for t in p.targets))
    columns = list(dict.fromkeys(c for p in parts for c in p.columns))
    n_rows = sum(len(p.n) for p in parts)
    weights = np.array([w for p in parts for w in p.w], dtype=float).reshape(n_rows, len(domains))
    model_size = np.array([n for p in parts for n in p.n], dtype=float)
    raw_rows = [r for p in parts for r in p.rows]
    run_ids = np.array(
        [
            r.get(RUN) or f"N={ms:.6g}|" + ",".join(f"{x:.6f}" for x in w)
            for r, ms, w in zip(raw_rows, model_size, weights, strict=True)
        ],
        dtype=object,
    )
    loss_rows = [lr for p in parts for lr in p.losses]
    return RunTable(
        domains=domains,
        targets=tuple(targets),
        model_size=model_size,
        n_tokens=np.array([d for p in parts for d in p.d], dtype=float),
        weights=weights,
        losses={t: np.array([lr.get(t, math.nan) for lr in loss_rows]) for t in targets},
        run_ids=run_ids,
        columns=columns,
        rows=raw_rows,
        sources=[(str(p.path), line) for p in parts for line in p.lines],
        n_column=n_column,
        n_tokens_unit=units.pop(),
    )
