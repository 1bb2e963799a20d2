"""Run tables: the CSV/JSONL interchange format that proxy runs write and the laws read.

One row per (run, evaluation point): ``model_size`` (N), ``n_tokens`` (D), ``weight_<domain>``
per training domain (summing to 1) and ``<target>_loss`` per evaluated target (empty = missing).
Other columns are kept so ``predict`` can write the input rows back out untouched.

Example:
    >>> table = load_runs(["runs.csv"], where="model_size < 2e9")  # doctest: +SKIP
    >>> table.domains, table.targets  # doctest: +SKIP
    (('arxiv', 'book'), ('arxiv', 'book', 'openhermes'))
"""

from __future__ import annotations

import ast
import csv
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["RunTable", "drop_repeated_checkpoints", "load_runs", "parse_where"]

from laws.schema import LOSS_SUFFIX, MODEL_SIZE, WEIGHT_PREFIX, WEIGHT_SUM_TOL

_ = (LOSS_SUFFIX, WEIGHT_PREFIX, WEIGHT_SUM_TOL)  # re-exported for older imports


@dataclass
class RunTable:
    """Rows of proxy runs, as arrays.

    Attributes:
        domains: training domains, in ``weight_<domain>`` column order.
        targets: evaluated targets (``<target>_loss`` columns, without the suffix).
        model_size: N per row, shape (n,).
        n_tokens: D per row, shape (n,).
        weights: domain weights per row, shape (n, k).
        losses: target -> loss per row, NaN where missing.
        run_ids: run identifier per row: the ``run`` column when present, else model size and
            weights (rows of one run share both), so bootstrap can resample whole runs.
        columns: every column name of the input, in order.
        rows: the raw rows as read (strings), for writing predictions next to them.
        sources: ``(file, line)`` of each row, for error messages.
        n_column: the column ``model_size`` was read from.
    """

    domains: tuple[str, ...]
    targets: tuple[str, ...]
    model_size: np.ndarray
    n_tokens: np.ndarray
    weights: np.ndarray
    losses: dict[str, np.ndarray]
    run_ids: np.ndarray
    columns: list[str] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)
    sources: list[tuple[str, int]] = field(default_factory=list)
    n_column: str = MODEL_SIZE

    def __len__(self) -> int:
        return int(self.model_size.shape[0])

    @property
    def files(self) -> tuple[str, ...]:
        """The files the rows came from, in order of first appearance."""
        return tuple(dict.fromkeys(src for src, _ in self.sources))

    def select(self, mask: np.ndarray | Sequence[bool] | Sequence[int]) -> RunTable:
        """Return the rows picked by a boolean mask or an index array, as a new table."""
        idx = np.asarray(mask)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(f"mask must have shape ({len(self)},), got {idx.shape}")
            idx = np.flatnonzero(idx)
        idx = idx.astype(int)
        return RunTable(
            domains=self.domains,
            targets=self.targets,
            model_size=self.model_size[idx],
            n_tokens=self.n_tokens[idx],
            weights=self.weights[idx],
            losses={t: v[idx] for t, v in self.losses.items()},
            run_ids=self.run_ids[idx],
            columns=list(self.columns),
            rows=[self.rows[i] for i in idx] if self.rows else [],
            sources=[self.sources[i] for i in idx] if self.sources else [],
            n_column=self.n_column,
        )

    def column(self, name: str) -> np.ndarray:
        """A column as floats when every value parses, else as strings."""
        if name == self.n_column:
            return self.model_size
        if name == "n_tokens":
            return self.n_tokens
        if name.startswith(WEIGHT_PREFIX) and name[len(WEIGHT_PREFIX) :] in self.domains:
            return self.weights[:, self.domains.index(name[len(WEIGHT_PREFIX) :])]
        if name.endswith(LOSS_SUFFIX) and name[: -len(LOSS_SUFFIX)] in self.losses:
            return self.losses[name[: -len(LOSS_SUFFIX)]]
        if name not in self.columns:
            raise ValueError(
                f"unknown column {name!r}; columns are {', '.join(self.columns) or '(none)'}"
            )
        raw = [row.get(name, "") for row in self.rows]
        try:
            return np.array([float(v) if v != "" else math.nan for v in raw])
        except ValueError:
            return np.array(raw, dtype=object)


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Read a CSV or JSONL file into (columns, [(line, row)]) with string values."""
    if not path.exists():
        raise FileNotFoundError(f"run table {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        columns: dict[str, None] = {}
        rows: list[tuple[int, dict[str, str]]] = []
        with path.open(encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}, line {line_no}: not valid JSON ({err})") from None
                if not isinstance(obj, dict):
                    raise ValueError(f"{path}, line {line_no}: expected a JSON object per line")
                row = {k: "" if v is None else str(v) for k, v in obj.items()}
                columns.update(dict.fromkeys(row))
                rows.append((line_no, row))
        return list(columns), rows
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            raise ValueError(f"{path}: empty file, expected a header row")
        cols = [c.strip() for c in reader.fieldnames]
        rows = []
        # Line numbers count the header as line 1, so they match what an editor shows.
        for line_no, raw in enumerate(reader, start=2):
            rows.append((line_no, {c.strip(): (v or "").strip() for c, v in raw.items() if c}))
        return cols, rows


def _parse_float(value: str, path: Path, line: int, column: str, *, allow_empty: bool) -> float:
    if value == "" or value.lower() in ("nan", "none", "null"):
        if allow_empty:
            return math.nan
        raise ValueError(f"{path}, row {line}, column {column}: empty value")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{path}, row {line}, column {column}: not a number: {value!r}") from None


def load_runs(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    where: str | None = None,
    n_column: str = MODEL_SIZE,
) -> RunTable:
    """Load and validate one or more run tables (CSV or JSONL), optionally filtering rows.

    Args:
        paths: one path or several; all files must have the same ``weight_*`` columns.
        where: a row filter such as ``"model_size < 2e9 and n_tokens >= 4e9"`` (see
            :func:`parse_where`); applied after validation.
        n_column: the column read as N (``model_size``, ``model_size_total`` or
            ``model_size_non_embedding``, or any other numeric column every file has).

    Returns:
        The rows as a :class:`RunTable`.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: a missing column, a negative weight, weights not summing to 1, a
            non-finite N or D, or an unparsable value; the message names file, row and column.

    Example:
        >>> table = load_runs("runs.csv", where="model_size >= 3e8")  # doctest: +SKIP
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise ValueError("paths must name at least one run table, got none")
    domains: tuple[str, ...] | None = None
    targets: dict[str, None] = {}
    all_columns: dict[str, None] = {}
    n_list: list[float] = []
    d_list: list[float] = []
    w_list: list[list[float]] = []
    loss_rows: list[dict[str, float]] = []
    runs: list[str] = []
    raw_rows: list[dict[str, str]] = []
    sources: list[tuple[str, int]] = []
    for p in paths:
        path = Path(p)
        cols, rows = _read_rows(path)
        file_domains = tuple(c[len(WEIGHT_PREFIX) :] for c in cols if c.startswith(WEIGHT_PREFIX))
        missing = [c for c in (n_column, "n_tokens") if c not in cols]
        if not file_domains:
            missing.append("weight_<domain> (at least one)")
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        if domains is None:
            domains = file_domains
        elif set(file_domains) != set(domains):
            raise ValueError(
                f"{path}: weight columns {sorted(file_domains)} differ from the first file's "
                f"{sorted(domains)}"
            )
        file_targets = [c[: -len(LOSS_SUFFIX)] for c in cols if c.endswith(LOSS_SUFFIX)]
        targets.update(dict.fromkeys(file_targets))
        all_columns.update(dict.fromkeys(cols))
        for line, row in rows:
            for col in (n_column, "n_tokens", *(WEIGHT_PREFIX + d for d in domains)):
                if col not in row:
                    raise ValueError(f"{path}, row {line}: missing column {col}")
            n = _parse_float(row[n_column], path, line, n_column, allow_empty=False)
            d = _parse_float(row["n_tokens"], path, line, "n_tokens", allow_empty=False)
            for col, v in ((n_column, n), ("n_tokens", d)):
                if not math.isfinite(v) or v <= 0:
                    raise ValueError(
                        f"{path}, row {line}, column {col}: must be a finite positive number, "
                        f"got {row[col]!r}"
                    )
            w = []
            for dom in domains:
                col = WEIGHT_PREFIX + dom
                v = _parse_float(row[col], path, line, col, allow_empty=False)
                if not math.isfinite(v) or v < 0:
                    raise ValueError(
                        f"{path}, row {line}, column {col}: weights must be finite and "
                        f">= 0, got {row[col]!r}"
                    )
                w.append(v)
            total = math.fsum(w)
            if abs(total - 1.0) > WEIGHT_SUM_TOL:
                raise ValueError(
                    f"{path}, row {line}, columns weight_*: weights sum to {total:.9g}, "
                    f"off by {total - 1.0:+.3g} (tolerance {WEIGHT_SUM_TOL:g})"
                )
            losses = {}
            for t in file_targets:
                col = t + LOSS_SUFFIX
                v = _parse_float(row.get(col, ""), path, line, col, allow_empty=True)
                if math.isinf(v):
                    raise ValueError(f"{path}, row {line}, column {col}: infinite loss")
                losses[t] = v
            n_list.append(n)
            d_list.append(d)
            w_list.append(w)
            loss_rows.append(losses)
            raw_rows.append(row)
            sources.append((str(path), line))
            runs.append(row.get("run", ""))
    assert domains is not None
    k = len(domains)
    n_rows = len(n_list)
    weights = np.array(w_list, dtype=float).reshape(n_rows, k)
    model_size = np.array(n_list, dtype=float)
    run_ids = np.array(
        [
            r if r else f"N={ms:.6g}|" + ",".join(f"{x:.6f}" for x in w)
            for r, ms, w in zip(runs, model_size, weights, strict=True)
        ],
        dtype=object,
    )
    table = RunTable(
        domains=domains,
        targets=tuple(targets),
        model_size=model_size,
        n_tokens=np.array(d_list, dtype=float),
        weights=weights,
        losses={t: np.array([lr.get(t, math.nan) for lr in loss_rows]) for t in targets},
        run_ids=run_ids,
        columns=list(all_columns),
        rows=raw_rows,
        sources=sources,
        n_column=n_column,
    )
    if where:
        table = table.select(parse_where(where)(table))
    return table


def drop_repeated_checkpoints(table: RunTable) -> tuple[RunTable, int]:
    """Drop rows that repeat the previous checkpoint of their run (same losses, later D).

    The public SlimPajama table lists each run's last checkpoint twice (D = 19.998e9 and
    20e9, identical losses); counting it twice would weigh the end of every run double.

    Returns:
        The table without the repeats, and how many rows were dropped.
    """
    if not table.losses:
        return table, 0
    losses = np.stack([table.losses[t] for t in table.targets], axis=1)
    keep = np.ones(len(table), dtype=bool)
    runs = table.run_ids.astype(str)
    for run in np.unique(runs):
        idx = np.flatnonzero(runs == run)
        idx = idx[np.argsort(table.n_tokens[idx], kind="stable")]
        for a, b in zip(idx[:-1], idx[1:], strict=True):
            same = np.array_equal(losses[a], losses[b], equal_nan=True)
            if same and table.model_size[a] == table.model_size[b]:
                keep[b] = False
    return table.select(keep), int((~keep).sum())


# --- the --where filter -----------------------------------------------------------------------

_CMP: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}
_BIN: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.divide,
    ast.Pow: np.power,
    ast.Mod: np.mod,
}
_FUNCS: dict[str, Callable[..., np.ndarray]] = {
    "abs": np.abs,
    "log": np.log,
    "log10": np.log10,
    "exp": np.exp,
    "isnan": lambda x: np.isnan(np.asarray(x, dtype=float)),
    # String columns (``run``): startswith(run, "train-").
    "startswith": lambda x, prefix: np.array([str(v).startswith(prefix) for v in x]),
}


def parse_where(expr: str) -> Callable[[RunTable], np.ndarray]:
    """Compile a row filter into a function ``table -> bool mask``, without ``eval``.

    The grammar is a Python expression restricted to column names, numbers, strings,
    comparisons (``< <= > >= == !=``, chained too), ``and``/``or``/``not``, arithmetic
    (``+ - * / ** %``) and the functions ``abs log log10 exp isnan startswith``.

    Example:
        >>> mask_of = parse_where("model_size < 2e9 and not startswith(run, 'test-')")
    """
    if not isinstance(expr, str) or not expr.strip():
        raise ValueError(f"where must be a non-empty expression, got {expr!r}")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as err:
        raise ValueError(f"where {expr!r}: not a valid expression ({err.msg})") from None

    def check(node: ast.AST) -> None:
        allowed = (
            ast.Expression,
            ast.BoolOp,
            ast.And,
            ast.Or,
            ast.UnaryOp,
            ast.Not,
            ast.USub,
            ast.UAdd,
            ast.Compare,
            ast.BinOp,
            ast.Name,
            ast.Load,
            ast.Constant,
            ast.Call,
            *_CMP,
            *_BIN,
        )
        if not isinstance(node, allowed):
            raise ValueError(f"where {expr!r}: {type(node).__name__} is not allowed")
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float, str)):
            raise ValueError(f"where {expr!r}: constant {node.value!r} is not allowed")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS:
                raise ValueError(
                    f"where {expr!r}: only the functions {', '.join(sorted(_FUNCS))} are allowed"
                )
            if node.keywords:
                raise ValueError(f"where {expr!r}: keyword arguments are not allowed")
            for a in node.args:
                check(a)
            return
        for child in ast.iter_child_nodes(node):
            check(child)

    check(tree)

    def run(table: RunTable) -> np.ndarray:
        def ev(node: ast.AST) -> np.ndarray:
            if isinstance(node, ast.Expression):
                return ev(node.body)
            if isinstance(node, ast.Constant):
                return node.value  # type: ignore[return-value]
            if isinstance(node, ast.Name):
                return table.column(node.id)
            if isinstance(node, ast.BoolOp):
                vals = [np.asarray(ev(v), dtype=bool) for v in node.values]
                op = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
                out = vals[0]
                for v in vals[1:]:
                    out = op(out, v)
                return out
            if isinstance(node, ast.UnaryOp):
                v = ev(node.operand)
                if isinstance(node.op, ast.Not):
                    return np.logical_not(np.asarray(v, dtype=bool))
                return -v if isinstance(node.op, ast.USub) else v
            if isinstance(node, ast.BinOp):
                return _BIN[type(node.op)](ev(node.left), ev(node.right))
            if isinstance(node, ast.Compare):
                left = ev(node.left)
                out = np.ones(len(table), dtype=bool)
                for op, comp in zip(node.ops, node.comparators, strict=True):
                    right = ev(comp)
                    out &= np.asarray(_CMP[type(op)](left, right), dtype=bool)
                    left = right
                return out
            if isinstance(node, ast.Call):
                assert isinstance(node.func, ast.Name)
                return _FUNCS[node.func.id](*(ev(a) for a in node.args))
            raise ValueError(f"where {expr!r}: {type(node).__name__} is not allowed")

        with np.errstate(all="ignore"):
            try:
                mask = np.broadcast_to(np.asarray(ev(tree), dtype=bool), (len(table),))
            except TypeError as err:
                raise ValueError(f"where {expr!r}: {err}") from None
        return np.array(mask)

    return run
