"""The end-of-sweep check of run tables: would ``mixsampler fit`` read each one, and rightly?

A sweep that reports success over a table the fit then refuses (a partial row, a phantom
column, a step twice) sends the user back hours later; one that reports success over a table
the fit *accepts* wrongly is worse. So the check is the reader itself (:func:`load_runs`, the
code the fit runs), plus what only the sweep knows: which run must have rows in which file.

Example:
    >>> check_run_tables({"sweep/runs/r1.csv": "r1"})  # doctest: +SKIP
    ['sweep/runs/r1.csv: no rows for run r1 (no validation ran: ...)']
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from mixsampler.laws.runtable.reader import load_runs
from mixsampler.laws.schema import RUN

__all__ = ["check_run_tables"]


def check_run_tables(
    tables: Mapping[str | os.PathLike[str], str | Iterable[str] | None]
    | Iterable[str | os.PathLike[str]],
) -> list[str]:
    r"""One line per problem found in the given run tables; an empty list when all are usable.

    Each table is read by :func:`laws.runtable.load_runs`, the fit's own reader, so every rule
    it enforces (header, cell values, weights summing to 1, column roles, a cut last row, one
    row per run and step, one ``n_tokens`` unit) is checked here too. Then each run expected in
    a table must have rows there.

    Args:
        tables: paths, or a mapping from path to the run name (or names) that must have rows
            in it (None: any rows).

    Returns:
        Problems as ``"<path>: <what is wrong>"`` lines, in the order of ``tables``.

    Example:
        >>> import pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "r1.csv"
        >>> _ = p.write_text("run,step,model_size,n_tokens,weight_a,a_loss\nr1,1,1e6,1e8,1.0,3.2")
        >>> print(check_run_tables({p: "r1"})[0].replace(str(p), "r1.csv")[:47])
        r1.csv, row 2: the last row has no newline: a w
        >>> _ = p.write_text("run,step,model_size,n_tokens,weight_a,a_loss\nr1,1,1e6,1e8,1.0,3.2\n")
        >>> check_run_tables({p: "r1"})
        []
    """
    expected = (
        dict(tables) if isinstance(tables, Mapping) else dict.fromkeys(tables)  # type: ignore[arg-type]
    )
    problems: list[str] = []
    for path, runs in expected.items():
        path = Path(path)
        if not path.is_file():
            problems.append(f"{path}: missing (the run wrote no run table)")
            continue
        try:
            table = load_runs(path)
        except (ValueError, OSError) as err:
            text = " ".join(str(err).split())
            problems.append(text if text.startswith(str(path)) else f"{path}: {text}")
            continue
        names = [runs] if isinstance(runs, str) else list(runs or ())
        present = {row.get(RUN, "") for row in table.rows}
        for name in names:
            if name not in present:
                problems.append(
                    f"{path}: no rows for run {name} (no validation ran: set"
                    " trainer.val_check_interval, or check limit_val_batches)"
                )
    return problems
