"""Run tables: loading, validation errors that name file/row/column, the --where filter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mixsampler.laws import load_runs, parse_where
from mixsampler.laws.runtable import drop_repeated_checkpoints

HEADER = "run,model_size,n_tokens,weight_a,weight_b,x_loss,y_loss\n"


def _write(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    p = tmp_path / "runs.csv"
    p.write_text(header + body)
    return p


def test_loads_arrays_and_keeps_extra_columns(tmp_path: Path) -> None:
    p = _write(tmp_path, "r1,1e8,1e9,0.25,0.75,3.0,\nr1,1e8,2e9,0.25,0.75,2.9,4.1\n")
    t = load_runs(p)
    assert t.domains == ("a", "b") and t.targets == ("x", "y")
    assert np.allclose(t.weights, [[0.25, 0.75]] * 2)
    assert np.isnan(t.losses["y"][0]) and t.losses["y"][1] == 4.1
    assert list(t.run_ids) == ["r1", "r1"] and t.rows[0]["run"] == "r1"
    assert t.sources == [(str(p), 2), (str(p), 3)]


def test_jsonl_and_several_files(tmp_path: Path) -> None:
    p = tmp_path / "runs.jsonl"
    rows = [
        {"model_size": 1e8, "n_tokens": 1e9, "weight_a": 0.5, "weight_b": 0.5, "x_loss": 3.0},
        {"model_size": 2e8, "n_tokens": 1e9, "weight_a": 1.0, "weight_b": 0.0, "x_loss": None},
    ]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    csv_path = _write(tmp_path, "r,1e8,1e9,0.5,0.5,3.1,2\n")
    t = load_runs([p, csv_path])
    assert len(t) == 3 and np.isnan(t.losses["x"][1]) and t.targets == ("x", "y")
    # Without a run column, rows of one run share model size and weights.
    assert t.run_ids[0] != t.run_ids[1]


@pytest.mark.parametrize(
    ("body", "header", "match"),
    [
        ("1e8,1e9,0.5,0.5,3\n", "model_size,n_tokens,weight_a,weight_c,x_loss\n", None),
        (
            "r,1e9,0.5,0.5,3,3\n",
            "run,n_tokens,weight_a,weight_b,x_loss,y_loss\n",
            r"runs\.csv: missing column\(s\) model_size",
        ),
        (
            "r,1e8,1e9,3,3\n",
            "run,model_size,n_tokens,x_loss,y_loss\n",
            r"missing column\(s\) weight_<domain>",
        ),
        (
            "r,1e8,1e9,0.5,0.5,3,3\nr,1e8,1e9,-0.1,1.1,3,3\n",
            HEADER,
            r"runs\.csv, row 3, column weight_a: must be a finite share in \[0, 1\], got '-0\.1'",
        ),
        (
            "r,1e8,1e9,0.5,0.4,3,3\n",
            HEADER,
            r"runs\.csv, row 2, column weight_\*: weights sum to 0\.9, off by -0\.1",
        ),
        ("r,1e8,1e9,0.5,0.5000001,3,3\n", HEADER, None),
        ("r,1e8,1e9,0.5,0.50001,3,3\n", HEADER, r"off by \+1e-05"),
        (
            "r,inf,1e9,0.5,0.5,3,3\n",
            HEADER,
            r"runs\.csv, row 2, column model_size: must be a finite positive number, got 'inf'",
        ),
        ("r,1e8,nan,0.5,0.5,3,3\n", HEADER, r"row 2, column n_tokens: empty value"),
        ("r,1e8,abc,0.5,0.5,3,3\n", HEADER, r"row 2, column n_tokens: not a number, got 'abc'"),
        # Losses: negative or non-finite ones are refused; empty / nan is "missing".
        ("r,1e8,1e9,0.5,0.5,3,inf\n", HEADER, r"row 2, column y_loss: a loss must be finite"),
        ("r,1e8,1e9,0.5,0.5,-3,1\n", HEADER, r"row 2, column x_loss: .*>= 0, got '-3'"),
        ("r,1e8,1e9,0.5,0.5,nan,\n", HEADER, None),
        # A field inserted in the middle, extra trailing fields, a field dropped.
        ("r,1e8,7,1e9,0.5,0.5,3,3\n", HEADER, r"row 2: 8 fields, but the header has 7 columns"),
        ("r,1e8,1e9,0.5,0.5,3,3,,\n", HEADER, r"row 2: 9 fields, but the header has 7"),
        ("r,1e8,1e9,0.5,0.5,3\n", HEADER, r"row 2: 6 fields, but the header has 7"),
        # Duplicated or unnamed columns.
        (
            "r,1e8,1e9,0.5,0.5,3,3\n",
            "run,model_size,n_tokens,weight_a,weight_b,x_loss,x_loss\n",
            r"row 1: duplicated column names in the header, got \['x_loss'\]",
        ),
        (
            "r,1e8,1e9,0.5,0.5,0.5,3\n",
            "run,model_size,n_tokens,weight_a,weight_b,weight_a,x_loss\n",
            r"duplicated column names in the header, got \['weight_a'\]",
        ),
        (
            "r,1e8,1e9,0.5,0.5,3,\n",
            "run,model_size,n_tokens,weight_a,weight_b,x_loss,\n",
            "unnamed",
        ),
        # The other numeric columns follow their rules too.
        ("r,-4,1e8,1e9,1,0,3\n", "run,step,model_size,n_tokens,weight_a,weight_b,x_loss\n", "step"),
        ("", HEADER, r"runs\.csv: no rows, only a header"),
        ("", "", r"runs\.csv: empty file"),
    ],
)
def test_bad_input_names_file_row_and_column(
    tmp_path: Path, body: str, header: str, match: str | None
) -> None:
    p = _write(tmp_path, body, header)
    if match is None:
        load_runs(p)  # accepted
    else:
        with pytest.raises(ValueError, match=match):
            load_runs(p)


def test_missing_file_and_mismatched_domains(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.csv does not exist"):
        load_runs(tmp_path / "nope.csv")
    a = _write(tmp_path, "r,1e8,1e9,0.5,0.5,3,3\n")
    b = tmp_path / "b.csv"
    b.write_text("model_size,n_tokens,weight_a,weight_z\n1e8,1e9,0.5,0.5\n")
    with pytest.raises(ValueError, match=r"b\.csv: weight columns differ .*, got \['a', 'z'\]"):
        load_runs([a, b])
    with pytest.raises(ValueError, match=r"runs\.csv: given twice"):
        load_runs([a, tmp_path / "." / "runs.csv"])
    with pytest.raises(ValueError, match=r"is a directory, expected a run table"):
        load_runs(tmp_path)


def test_where_filter(tmp_path: Path) -> None:
    body = "".join(
        f"{'train' if i % 2 else 'test'}-{i},{n},{d},0.5,0.5,{3 + i / 10},\n"
        for i, (n, d) in enumerate([(1e8, 1e9), (1e8, 2e9), (3e9, 1e9), (3e9, 4e9)])
    )
    p = _write(tmp_path, body)
    assert len(load_runs(p, where="model_size < 2e9")) == 2
    assert len(load_runs(p, where="model_size > 2e9 and n_tokens >= 2e9")) == 1
    assert len(load_runs(p, where="not (model_size < 2e9) or x_loss < 3.05")) == 3
    assert len(load_runs(p, where="1e9 <= n_tokens < 3e9")) == 3
    assert len(load_runs(p, where="n_tokens / model_size > 5")) == 2
    assert len(load_runs(p, where="startswith(run, 'train-')")) == 2
    assert len(load_runs(p, where="isnan(y_loss) and weight_a == 0.5")) == 4


@pytest.mark.parametrize(
    ("expr", "match"),
    [
        ("__import__('os').system('true')", "only the functions"),
        ("model_size.real > 1", "Attribute is not allowed"),
        ("[1, 2]", "List is not allowed"),
        ("model_size <", "not a valid expression"),
        ("lambda: 1", "Lambda is not allowed"),
        ("", "non-empty"),
    ],
)
def test_where_rejects_anything_but_the_grammar(expr: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_where(expr)


def test_where_unknown_column(tmp_path: Path) -> None:
    p = _write(tmp_path, "r,1e8,1e9,0.5,0.5,3,3\n")
    with pytest.raises(ValueError, match="unknown column 'size'; columns are run, model_size"):
        load_runs(p, where="size < 3")


def test_drop_repeated_checkpoints(helpers: Any, tmp_path: Path) -> None:
    rows = helpers.synth_rows({"a": helpers.true_law("chinchilla")}, n_mix=2, sizes=(1e8,))
    last = dict(rows[3])
    last["n_tokens"] = 8.001e9  # the same checkpoint listed again under a rounder D
    rows.insert(4, last)
    t = load_runs(helpers.write_csv(tmp_path / "d.csv", rows))
    kept, n = drop_repeated_checkpoints(t)
    assert n == 1 and len(kept) == len(rows) - 1 and 8.001e9 not in kept.n_tokens


def test_n_column_picks_which_parameter_count_is_n(tmp_path: Path) -> None:
    header = "model_size,model_size_total,n_tokens,weight_a,weight_b,x_loss\n"
    p = _write(tmp_path, "1e8,1.5e8,1e9,0.5,0.5,3\n", header=header)
    assert load_runs(p).model_size.tolist() == [1e8]
    t = load_runs(p, n_column="model_size_total", where="model_size_total > 1.2e8")
    assert t.model_size.tolist() == [1.5e8] and t.n_column == "model_size_total"
    assert t.column("model_size").tolist() == [1e8]
    with pytest.raises(ValueError, match=r"runs\.csv: missing column\(s\) model_size_non_emb"):
        load_runs(p, n_column="model_size_non_embedding")


@pytest.mark.parametrize(
    ("expr", "match"),
    [
        ("10**10**10 > 1", r"--where: a constant part evaluates to a non-finite number"),
        ("model_size < 10**400", r"constant part evaluates to a non-finite number"),
        ("model_size < 1" + "0" * 400, r"integer constant is beyond the float range"),
        ("model_size < 1e999", r"beyond the float range"),
        ("not " * 5000 + "model_size > 1", r"characters long, more than 2000"),
        ("not " * 100 + "model_size > 1", r"nested more than 32 deep"),
        ("-" * 100 + "1 < model_size", r"nested more than 32 deep"),
        (" + ".join(["1"] * 300) + " < model_size", r"nested more than 32 deep"),
        (" and ".join(["x > 1"] * 150), r"more than 400 parts"),
        ("'a' * 1000000000 == run", r"arithmetic needs numbers, not text"),
        ("model_size + 1", r"must be a condition"),
        ("log(model_size, 2) > 1", r"log takes 1 positional argument"),
        ("startswith(run, run)", r"second argument must be a string"),
        ("model_size < True", r"constant True is not allowed"),
    ],
)
def test_where_is_bounded(tmp_path: Path, expr: str, match: str) -> None:
    p = _write(tmp_path, "r,1e8,1e9,0.5,0.5,3,3\n")
    with pytest.raises(ValueError, match=match) as err:
        load_runs(p, where=expr)
    assert len(str(err.value)) < 400 and "\n" not in str(err.value)


def test_where_computes_in_floats(tmp_path: Path) -> None:
    p = _write(tmp_path, "r,1e8,1e9,0.5,0.5,3,3\nq,2e8,1e9,0.5,0.5,3,3\n")
    # 2**1000 is an exact integer in Python, a finite float here; exp of a column may overflow
    # to inf like any float computation, and compares as inf.
    assert len(load_runs(p, where="model_size < 2**1000")) == 2
    assert len(load_runs(p, where="exp(model_size) > 1e300")) == 2
    assert len(load_runs(p, where="2 ** 0.5 * model_size > 2e8")) == 1


def test_a_step_written_twice_is_refused(tmp_path: Path) -> None:
    header = "run,step,model_size,n_tokens,weight_a,weight_b,x_loss\n"
    body = "r,10,1e8,1e9,0.5,0.5,3\nr,20,1e8,2e9,0.5,0.5,2.9\nq,10,1e8,1e9,0.5,0.5,3\n"
    p = _write(tmp_path, body, header)
    assert len(load_runs(p)) == 3
    p.write_text(header + body + "r,10.0,1e8,1e9,0.5,0.5,3.01\n")
    with pytest.raises(ValueError, match=r"runs\.csv, row 5: run 'r' has step 10\.0 twice .*row 2"):
        load_runs(p)


def test_last_per_run_takes_each_runs_largest_d_and_a_rewritten_end_point(tmp_path: Path) -> None:
    # r2's rows arrive before r1's and out of D order; r1 was resumed and rewrote its end.
    p = _write(
        tmp_path,
        "r2,2e8,2e9,0.5,0.5,2.5,3.5\n"
        "r2,2e8,1e9,0.5,0.5,2.8,3.8\n"
        "r1,1e8,1e9,0.25,0.75,3.0,4.0\n"
        "r1,1e8,2e9,0.25,0.75,2.9,4.1\n"
        "r1,1e8,2e9,0.25,0.75,2.7,3.9\n",
    )
    last = load_runs(p).last_per_run()
    assert list(last.run_ids) == ["r1", "r2"]
    assert last.n_tokens.tolist() == [2e9, 2e9]
    assert last.losses["x"].tolist() == [2.7, 2.5]
    assert last.sources == [(str(p), 6), (str(p), 2)]
