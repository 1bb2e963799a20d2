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

import functools
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
    "N_TOKENS_UNIT",
    "N_TOKENS_UNITS",
    "NAME_RULES",
    "PRED_PREFIX",
    "RESERVED_PREFIXES",
    "REALIZED_PREFIX",
    "RUN",
    "STEP",
    "VAL_BATCHES_PREFIX",
    "WEIGHT_PREFIX",
    "WEIGHT_SUM_TOL",
    "FormatError",
    "bad_input",
    "check_columns",
    "check_name",
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
    "val_batches_column",
    "val_batches_domain_of",
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
# What ``n_tokens`` counts: tokens (text) or samples (images, audio; a sample without a token
# count is one unit). Optional; a table without it counts tokens. One unit per table: a law
# fitted on samples must not be read as one on tokens.
N_TOKENS_UNIT = "n_tokens_unit"
N_TOKENS_UNITS = ("tokens", "samples")
WEIGHT_PREFIX = "weight_"
LOSS_SUFFIX = "_loss"
# The mixture actually drawn (share of samples or tokens per domain), next to the planned one.
REALIZED_PREFIX = "realized_"
# `mixsampler predict` writes its predictions next to the input rows under this prefix.
PRED_PREFIX = "pred_"
# Validation batches evaluated per domain at a row (``limit_val_batches`` split over domains),
# so a loss measured on 2 batches is not mistaken for one measured on the full split.
VAL_BATCHES_PREFIX = "val_batches_"
# Prefixes that give a column its role. A name (domain or target) may not begin with one, and
# may not end in ``_loss``: ``weight_foo_loss`` must read as the weight of ``foo_loss`` or as
# the loss of ``weight_foo``, never both (issue 21: a phantom target changed the optimum).
RESERVED_PREFIXES = (WEIGHT_PREFIX, REALIZED_PREFIX, PRED_PREFIX, VAL_BATCHES_PREFIX)
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


def val_batches_column(domain: str) -> str:
    """``val_batches_<domain>``: validation batches of a domain evaluated for that row.

    Example:
        >>> val_batches_column("c4"), val_batches_domain_of("val_batches_c4")
        ('val_batches_c4', 'c4')
    """
    return VAL_BATCHES_PREFIX + domain


def val_batches_domain_of(column: str) -> str | None:
    """The domain of a ``val_batches_<domain>`` column, else None."""
    if column.startswith(VAL_BATCHES_PREFIX) and len(column) > len(VAL_BATCHES_PREFIX):
        return column[len(VAL_BATCHES_PREFIX) :]
    return None


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
    """The target of a ``<target>_loss`` column, else None.

    A column with a role prefix (``weight_``, ``realized_``, ``pred_``, ``val_batches_``) is
    never a loss, whatever it ends in: each column has exactly one role.

    Example:
        >>> target_of("c4_loss"), target_of("weight_foo_loss"), target_of("pred_c4_loss")
        ('c4', None, None)
    """
    if column.startswith(RESERVED_PREFIXES):
        return None
    if column.endswith(LOSS_SUFFIX) and len(column) > len(LOSS_SUFFIX):
        return column[: -len(LOSS_SUFFIX)]
    return None


NAME_RULES = (
    "a domain or target name must be non-empty, without leading or trailing spaces or control"
    " characters, without '=' or ',' (--min-weight NAME=W and --objective A,B could not name"
    " it), must not end in '_loss' and must not begin with "
    + ", ".join(repr(p) for p in RESERVED_PREFIXES)
    + " (its weight or loss column would also read as another column)"
)


def check_name(name: Any, kind: str = "domain", source: Any = None) -> str:
    """Return ``name`` if a domain or target may have it, else raise naming it and the rule.

    Raises:
        FormatError: the name breaks :data:`NAME_RULES` (the message says which part).

    Example:
        >>> check_name("arxiv")
        'arxiv'
        >>> try:
        ...     check_name("foo_loss", source="runs.csv")
        ... except FormatError as err:
        ...     print(str(err)[:75])
        runs.csv: domain 'foo_loss' ends in '_loss' (its column weight_foo_loss wou
    """
    why = _name_problem(name, kind)
    if why is None:
        return name
    raise FormatError(
        f"{source}: {why}; rule: {NAME_RULES}"
        if source is not None
        else f"{why}; rule: {NAME_RULES}"
    )


def _name_problem(name: Any, kind: str) -> str | None:
    if not isinstance(name, str) or not name:
        return f"{kind} name must be a non-empty string, got {name!r}"
    if name != name.strip() or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return f"{kind} {name!r} has leading/trailing spaces or control characters"
    bad = [ch for ch in "=," if ch in name]
    if bad:
        return f"{kind} {name!r} contains {bad[0]!r}"
    if name.endswith(LOSS_SUFFIX):
        if kind == "domain":
            return (
                f"{kind} {name!r} ends in {LOSS_SUFFIX!r} (its column {weight_column(name)}"
                f" would also read as the loss of a target {weight_column(name)[:-5]!r})"
            )
        return f"{kind} {name!r} ends in {LOSS_SUFFIX!r} (its column would read as another's)"
    for prefix in RESERVED_PREFIXES:
        if name.startswith(prefix):
            return (
                f"{kind} {name!r} begins with {prefix!r} (its loss column {loss_column(name)}"
                f" would also read as a {prefix}<name> column)"
            )
    return None


def check_columns(
    domains: Any, targets: Any = (), path: str | os.PathLike[str] | None = None
) -> None:
    """Refuse domain and target names whose columns would collide (see :data:`NAME_RULES`).

    The writer and the reader both call it, so a table with a phantom column is neither
    written nor read.

    Args:
        domains: the training domains (``weight_<domain>`` columns).
        targets: the evaluated targets (``<target>_loss`` columns).
        path: the run table, named in the message.

    Raises:
        FormatError: the first bad name, naming the file, the name and the rule; also a
            domain listed twice.

    Example:
        >>> check_columns(["arxiv", "c4"], ["arxiv", "c4"])
        >>> try:
        ...     check_columns(["a,b"], [], "runs.csv")
        ... except FormatError as err:
        ...     print(str(err)[:40])
        runs.csv: domain 'a,b' contains ','; rul
    """
    domains, targets = list(domains), list(targets)
    for kind, names in (("domain", domains), ("target", targets)):
        for name in names:
            check_name(name, kind, path)
    dups = sorted({d for d in domains if domains.count(d) > 1})
    if dups:
        raise bad_input(path, "domains listed twice", value=dups)


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
    if type(value) is str:
        # The common case first (every cell of a CSV): one float() call.
        try:
            x = float(value)
        except ValueError:
            x = math.nan if value.strip().lower() in _MISSING_TEXT else None
        if x is None:
            raise bad_input(source, "not a number", row=row, column=column, value=value)
    elif value is None:
        x = math.nan
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad_input(source, "not a number", row=row, column=column, value=value)
    else:
        try:
            x = float(value)
        except OverflowError:
            raise bad_input(
                source, "beyond the float range", row=row, column=column, value=value
            ) from None
    if x == x or allow_missing:  # x != x: NaN, a missing value
        return x
    raise bad_input(source, "empty value, a number is required", row=row, column=column)


def is_numeric(column: str) -> bool:
    """Whether a column has a numeric rule in :func:`check_value` (its cells must parse)."""
    return _kind(column) is not None


def check_value(
    column: str,
    value: float,
    source: str | os.PathLike[str] | None = None,
    row: int | None = None,
    *,
    raw: Any = _UNSET,
) -> float:
    """Check one parsed number against its column's rule; return it.

    Rules: N columns and ``n_tokens`` finite and > 0; ``step`` and ``val_batches_<d>`` whole
    numbers >= 0; weights and realized shares finite and in [0, 1]; losses finite and >= 0. NaN
    (missing) is allowed for losses, realized shares and batch counts only. Columns without a
    rule are returned as they are.

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
    kind = _kind(column)
    if kind is None:
        return value
    if kind == "positive":
        ok = math.isfinite(value) and value > 0
    elif kind == "step":
        ok = math.isfinite(value) and value >= 0 and value == int(value)
    elif kind == "count":  # val_batches_<d>; NaN: not recorded at this row
        ok = value != value or (math.isfinite(value) and value >= 0 and value == int(value))
    elif kind == "share":
        ok = 0 <= value <= 1 or (value != value and realized_domain_of(column) is not None)
    else:  # a loss; NaN is a target not evaluated at this row
        ok = value != value or (value >= 0 and math.isfinite(value))
    if not ok:
        shown = value if raw is _UNSET else raw
        raise bad_input(source, _RULES[kind], row=row, column=column, value=shown)
    return value


_RULES = {
    "positive": "must be a finite positive number",
    "step": "must be a whole number >= 0",
    "count": "must be a whole number >= 0",
    "share": "must be a finite share in [0, 1]",
    "loss": "a loss must be finite and >= 0",
}


@functools.lru_cache(maxsize=4096)
def _kind(column: str) -> str | None:
    if column in MODEL_SIZE_COLUMNS or column == N_TOKENS:
        return "positive"
    if column == STEP:
        return "step"
    if domain_of(column) or realized_domain_of(column):
        return "share"
    if val_batches_domain_of(column):
        return "count"
    if target_of(column):
        return "loss"
    return None


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
