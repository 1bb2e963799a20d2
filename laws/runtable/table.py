"""The in-memory run table: rows of proxy runs as arrays, and row selection."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mixsampler.laws.schema import MODEL_SIZE, N_TOKENS, domain_of, target_of

__all__ = ["RunTable", "drop_repeated_checkpoints"]


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
        n_tokens_unit: what ``n_tokens`` counts, ``"tokens"`` or ``"samples"`` (the
            ``n_tokens_unit`` column; ``"tokens"`` when the table has none).
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
    n_tokens_unit: str = "tokens"

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
            n_tokens_unit=self.n_tokens_unit,
        )

    def last_per_run(self) -> RunTable:
        """The last evaluation (largest D) of every run, one row per run, in run-id order.

        What a main run ended at, or the end point of each proxy curve. Among rows of one run
        with the same largest D, the later row wins (a resumed run rewrites its end point).

        Example:
            >>> t = RunTable(("a",), ("a",), np.array([1.0, 1.0, 2.0]), np.array([10.0, 20.0, 5.0]),
            ...              np.ones((3, 1)), {"a": np.array([3.0, 2.0, 4.0])},
            ...              np.array(["r1", "r1", "r2"]))
            >>> t.last_per_run().losses["a"].tolist()
            [2.0, 4.0]
        """
        last: dict[str, int] = {}
        for i, run in enumerate(self.run_ids.astype(str).tolist()):
            if run not in last or self.n_tokens[i] >= self.n_tokens[last[run]]:
                last[run] = i
        return self.select([last[r] for r in sorted(last)])

    def column(self, name: str) -> np.ndarray:
        """A column as floats when every value parses, else as strings."""
        if name == self.n_column:
            return self.model_size
        if name == N_TOKENS:
            return self.n_tokens
        if domain_of(name) in self.domains:
            return self.weights[:, self.domains.index(domain_of(name))]
        if target_of(name) in self.losses:
            return self.losses[target_of(name)]
        if name not in self.columns:
            raise ValueError(
                f"unknown column {name!r}; columns are {', '.join(self.columns) or '(none)'}"
            )
        raw = [row.get(name, "") for row in self.rows]
        try:
            return np.array([float(v) if v != "" else math.nan for v in raw])
        except ValueError:
            return np.array(raw, dtype=object)


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
