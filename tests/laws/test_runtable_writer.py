"""RunTableWriter: validated, durable rows; header checks; truncate_after for resumes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mixsampler.laws import load_runs
from mixsampler.laws.runtable_writer import RunTableWriter
from mixsampler.laws.schema import (
    MODEL_SIZE,
    N_TOKENS,
    RUN,
    STEP,
    FormatError,
    loss_column,
    realized_column,
    weight_column,
)

COLUMNS = [
    RUN,
    STEP,
    MODEL_SIZE,
    N_TOKENS,
    weight_column("a"),
    weight_column("b"),
    loss_column("a"),
    realized_column("a"),
]


def _row(run: str = "r1", step: int = 10, **over: object) -> dict[str, object]:
    row: dict[str, object] = {
        RUN: run,
        STEP: step,
        MODEL_SIZE: 1000,
        N_TOKENS: 1e6 * (step + 1),
        "weight_a": 0.3,
        "weight_b": 0.7,
        "a_loss": 3.0 - step / 100,
        "realized_a": 0.31,
    }
    row.update(over)
    return row


def test_rows_round_trip_through_the_reader_bit_exactly(tmp_path: Path) -> None:
    p = tmp_path / "runs.csv"
    w = RunTableWriter(p, COLUMNS)
    w.append(_row(step=1, a_loss=1 / 3))
    w.append(_row(step=2, a_loss=math.nan, realized_a=""))
    t = load_runs(p)
    assert t.losses["a"][0] == 1 / 3 and np.isnan(t.losses["a"][1])
    assert t.weights.tolist() == [[0.3, 0.7], [0.3, 0.7]]
    assert p.read_text().splitlines()[0] == ",".join(COLUMNS)


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"a_loss": -0.5}, r"column a_loss: a loss must be finite and >= 0, got -0\.5"),
        ({"a_loss": math.inf}, r"column a_loss: a loss must be finite and >= 0, got inf"),
        ({"weight_a": 0.2}, r"column weight_\*: weights sum to 0\.9"),
        ({"weight_a": math.nan}, r"column weight_a: must be a finite share in \[0, 1\]"),
        ({N_TOKENS: 0}, r"column n_tokens: must be a finite positive number, got 0"),
        ({MODEL_SIZE: "big"}, r"column model_size: not a number, got 'big'"),
        ({STEP: -1}, r"column step: must be a whole number >= 0"),
        ({"extra": 1}, r"unknown columns.*got \['extra'\]"),
    ],
)
def test_bad_rows_are_refused_and_not_written(
    tmp_path: Path, over: dict[str, object], match: str
) -> None:
    p = tmp_path / "runs.csv"
    w = RunTableWriter(p, COLUMNS)
    before = p.read_bytes()
    with pytest.raises(FormatError, match=match):
        w.append(_row(**over))
    assert p.read_bytes() == before


def test_existing_file_keeps_its_order_and_a_different_header_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "runs.csv"
    RunTableWriter(p, COLUMNS).append(_row(step=1))
    w = RunTableWriter(p, list(reversed(COLUMNS)))  # same set, other order
    assert w.columns == COLUMNS
    w.append(_row(step=2))
    assert len(load_runs(p)) == 2
    with pytest.raises(FormatError, match=r"runs\.csv: its header differs.*missing there: \['c_"):
        RunTableWriter(p, [*COLUMNS, loss_column("c")])
    with pytest.raises(FormatError, match=r"duplicated column names, got \['a_loss'\]"):
        RunTableWriter(tmp_path / "new.csv", [*COLUMNS, "a_loss"])
    with pytest.raises(FormatError, match="is a directory"):
        RunTableWriter(tmp_path, COLUMNS)


def test_truncate_after_drops_only_that_runs_later_steps(tmp_path: Path) -> None:
    p = tmp_path / "runs.csv"
    w = RunTableWriter(p, COLUMNS)
    for step in (10, 20, 30):
        w.append(_row("r1", step))
        w.append(_row("r2", step))
    assert w.truncate_after("r1", 15) == 2
    assert w.truncate_after("r1", 15) == 0
    t = load_runs(p)
    kept = sorted(zip(t.column(RUN), t.column(STEP).tolist(), strict=True))
    assert kept == [("r1", 10.0), ("r2", 10.0), ("r2", 20.0), ("r2", 30.0)]
    # The resumed run appends after the truncation, and nothing is duplicated.
    w.append(_row("r1", 20))
    assert len(load_runs(p)) == 5
    assert not list(tmp_path.glob("*.tmp"))
