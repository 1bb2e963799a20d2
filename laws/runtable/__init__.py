"""Run tables: the CSV/JSONL interchange format that proxy runs write and the laws read.

One row per (run, evaluation point): ``model_size`` (N), ``n_tokens`` (D), ``weight_<domain>``
per training domain (summing to 1) and ``<target>_loss`` per evaluated target (empty = missing);
the column names and value rules are :mod:`laws.schema`'s, the writer is
:class:`laws.runtable_writer.RunTableWriter`. Other columns are kept so ``predict`` can write
the input rows back out untouched.

Example:
    >>> table = load_runs(["runs.csv"], where="model_size < 2e9")  # doctest: +SKIP
    >>> table.domains, table.targets  # doctest: +SKIP
    (('arxiv', 'book'), ('arxiv', 'book', 'openhermes'))
"""

from mixsampler.laws.runtable.check import check_run_tables
from mixsampler.laws.runtable.reader import load_runs, read_rows
from mixsampler.laws.runtable.table import RunTable, drop_repeated_checkpoints
from mixsampler.laws.runtable.where import parse_where

# Older spellings, kept importable; new code imports them from laws.schema.
from mixsampler.laws.schema import LOSS_SUFFIX, WEIGHT_PREFIX, WEIGHT_SUM_TOL

__all__ = [
    "LOSS_SUFFIX",
    "WEIGHT_PREFIX",
    "WEIGHT_SUM_TOL",
    "RunTable",
    "check_run_tables",
    "drop_repeated_checkpoints",
    "load_runs",
    "parse_where",
    "read_rows",
]
