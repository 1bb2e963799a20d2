"""The run-table schema: column names, value rules, and the one shape of a bad-input message.

Everything that writes or reads run-table columns (the reader, the writer DomainLossLogger
uses, plan, the demo) spells them through these names, so the schema lives in one place.

A run table has one row per (run, evaluation point)::

    run, step, model_size, n_tokens, weight_<domain>..., <target>_loss..., realized_<domain>...

Example:
    >>> weight_column("arxiv"), loss_column("c4"), realized_column("arxiv")
    ('weight_arxiv', 'c4_loss', 'realized_arxiv')
    >>> domain_of("weight_arxiv"), target_of("c4_loss"), target_of("step")
    ('arxiv', 'c4', None)
"""

from __future__ import annotations

import math
import os
from typing import Any

__all__ = [
    "LOSS_SUFFIX",
    "MODEL_SIZE",
    "MODEL_SIZE_COLUMNS",
    "MODEL_SIZE_NON_EMBEDDING",
    "MODEL_SIZE_TOTAL",
    "N_TOKENS",
    "PRED_PREFIX",
    "REALIZED_PREFIX",
    "RUN",
    "STEP",
    "WEIGHT_PREFIX",
    "WEIGHT_SUM_TOL",
    "FormatError",
    "bad_input",
    "check_value",
    "check_weight_sum",
    "domain_of",
    "is_numeric",
    "loss_column",
    "parse_number",
    "pred_column",
    "realized_column",
    "realized_domain_of",
    "target_of",
    "weight_column",
]

RUN = "run"
STEP = "step"
# N as the law reads it; which count it holds is the writer's choice (DomainLossLogger's
# ``model_size`` argument), so both counts are written too and ``load_runs(n_column=...)`` can
# pick the other one without rerunning anything.
MODEL_SIZE = "model_size"
MODEL_SIZE_TOTAL = "model_size_total"
MODEL_SIZE_NON_EMBEDDING = "model_size_non_embedding"
MODEL_SIZE_COLUMNS = (MODEL_SIZE, MODEL_SIZE_TOTAL, MODEL_SIZE_NON_EMBEDDING)
N_TOKENS = "n_tokens"
WEIGHT_PREFIX = "weight_"
LOSS_SUFFIX = "_loss"
# The mixture actually drawn (share of samples or tokens per domain), next to the planned one.
REALIZED_PREFIX = "realized_"
# `mixsampler predict` writes its predictions next to the input rows under this prefix.
PRED_PREFIX = "pred_"
# Weights are written with limited precision by some tools; 1e-6 is tight enough to catch a
# wrong column and loose enough for a CSV round trip.
WEIGHT_SUM_TOL = 1e-6


def weight_column(domain: str) -> str:
    """``weight_<domain>``: the planned share of a training domain."""
    return WEIGHT_PREFIX + domain


def loss_column(target: str) -> str:
    """``<target>_loss``: the validation loss of a target."""
    return target + LOSS_SUFFIX


def realized_column(domain: str) -> str:
    """``realized_<domain>``: the share of a domain actually drawn so far."""
    return REALIZED_PREFIX + domain


def pred_column(target: str) -> str:
    """``pred_<target>_loss``: a loss predicted by ``mixsampler predict``."""
    return PRED_PREFIX + loss_column(target)


def domain_of(column: str) -> str | None:
    """The domain of a ``weight_<domain>`` column, else None."""
    if column.startswith(WEIGHT_PREFIX) and len(column) > len(WEIGHT_PREFIX):
        return column[len(WEIGHT_PREFIX) :]
    return None


def realized_domain_of(column: str) -> str | None:
    """The domain of a ``realized_<domain>`` column, else None."""
    if column.startswith(REALIZED_PREFIX) and len(column) > len(REALIZED_PREFIX):
        return column[len(REALIZED_PREFIX) :]
    return None


def target_of(column: str) -> str | None:
    """The target of a ``<target>_loss`` column (not a ``pred_`` one), else None."""
    if column.startswith(PRED_PREFIX):
        return None
    if column.endswith(LOSS_SUFFIX) and len(column) > len(LOSS_SUFFIX):
        return column[: -len(LOSS_SUFFIX)]
    return None


# --- bad-input messages -----------------------------------------------------------------------

_UNSET: Any = object()


class FormatError(ValueError):
    """Bad content in a file (run table, LAW.json, WEIGHTS.json); the message locates it.

    A ValueError, so the command line turns it into one line and exit status 2.
    """


def bad_input(
    source: str | os.PathLike[str] | None,
    problem: str,
    *,
    row: int | None = None,
    column: str | None = None,
    field: str | None = None,
    value: Any = _UNSET,
) -> FormatError:
    """The one shape of every reader's error: ``file, row R, column C: problem, got 'v'``.

    Args:
        source: the file (or argument, such as ``--where``) holding the bad input.
        problem: what is wrong and, where it helps, what is expected.
        row: the line number an editor shows (the CSV header is line 1).
        column: the run-table column.
        field: a JSON field path such as ``laws.c4.parameters.E``.
        value: the offending value, echoed with ``repr`` (omit when there is none).

    Example:
        >>> str(bad_input("runs.csv", "must be >= 0", row=3, column="c4_loss", value="-1"))
        "runs.csv, row 3, column c4_loss: must be >= 0, got '-1'"
    """
    where = [str(source)] if source is not None else []
    if row is not None:
        where.append(f"row {row}")
    if column is not None:
        where.append(f"column {column}")
    if field is not None:
        where.append(f"field {field}")
    text = f"{', '.join(where)}: {problem}" if where else problem
    if value is not _UNSET:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        text += f", got {shown}"
    return FormatError(text)


# --- value rules (shared by the reader and the writer) ----------------------------------------

_MISSING_TEXT = ("", "nan", "none", "null")


def parse_number(
    value: Any,
    source: str | os.PathLike[str] | None,
    row: int | None,
    column: str,
    *,
    allow_missing: bool,
) -> float:
    """A cell as a float; NaN for a missing one (empty, ``nan``, None) when ``allow_missing``.

    Raises:
        FormatError: not a number, or missing where a value is required.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        text = ""
    elif isinstance(value, bool):
        raise bad_input(source, "not a number", row=row, column=column, value=value)
    elif isinstance(value, (int, float)):
        return float(value)
    else:
        text = str(value).strip()
    if text.lower() in _MISSING_TEXT:
        if allow_missing:
            return math.nan
        raise bad_input(source, "empty value, a number is required", row=row, column=column)
    try:
        return float(text)
    except (ValueError, OverflowError):
        raise bad_input(source, "not a number", row=row, column=column, value=value) from None


def is_numeric(column: str) -> bool:
    """Whether a column has a numeric rule in :func:`check_value` (its cells must parse)."""
    return (
        column in MODEL_SIZE_COLUMNS
        or column in (N_TOKENS, STEP)
        or bool(domain_of(column) or realized_domain_of(column) or target_of(column))
    )


def check_value(
    column: str,
    value: float,
    source: str | os.PathLike[str] | None = None,
    row: int | None = None,
    *,
    raw: Any = _UNSET,
) -> float:
    """Check one parsed number against its column's rule; return it.

    Rules: N columns and ``n_tokens`` finite and > 0; ``step`` a whole number >= 0; weights and
    realized shares finite and in [0, 1]; losses finite and >= 0. NaN (missing) is allowed for
    losses and realized shares only. Columns without a rule are returned as they are.

    Raises:
        FormatError: naming the source, row, column and the raw value.

    Example:
        >>> check_value("c4_loss", 3.25)
        3.25
        >>> try:
        ...     check_value("c4_loss", -1.0, "runs.csv", 3)
        ... except FormatError as err:
        ...     print(err)
        runs.csv, row 3, column c4_loss: a loss must be finite and >= 0, got -1.0
    """
    shown = value if raw is _UNSET else raw
    if math.isnan(value) and (target_of(column) or realized_domain_of(column)):
        return value  # missing: a target not evaluated at this row
    if column in MODEL_SIZE_COLUMNS or column == N_TOKENS:
        ok, rule = math.isfinite(value) and value > 0, "must be a finite positive number"
    elif column == STEP:
        ok = math.isfinite(value) and value >= 0 and value == int(value)
        rule = "must be a whole number >= 0"
    elif domain_of(column) or realized_domain_of(column):
        ok, rule = math.isfinite(value) and 0 <= value <= 1, "must be a finite share in [0, 1]"
    elif target_of(column):
        ok, rule = math.isfinite(value) and value >= 0, "a loss must be finite and >= 0"
    else:
        return value
    if not ok:
        raise bad_input(source, rule, row=row, column=column, value=shown)
    return value


def check_weight_sum(
    weights: dict[str, float], source: str | os.PathLike[str] | None, row: int | None
) -> None:
    """Raise unless the weights of one row sum to 1 within :data:`WEIGHT_SUM_TOL`."""
    total = math.fsum(weights.values())
    if abs(total - 1.0) > WEIGHT_SUM_TOL:
        raise bad_input(
            source,
            f"weights sum to {total:.9g}, off by {total - 1.0:+.3g} (tolerance {WEIGHT_SUM_TOL:g})",
            row=row,
            column=WEIGHT_PREFIX + "*",
        )
