"""Issue 21, run-table side: nothing lost on a cut write, no column read in two roles."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mixsampler.laws.runtable import check_run_tables, load_runs
from mixsampler.laws.runtable_writer import PartialRowWarning, RunTableWriter, drop_partial_row
from mixsampler.laws.schema import (
    RESERVED_PREFIXES,
    FormatError,
    check_columns,
    check_name,
    domain_of,
    loss_column,
    realized_domain_of,
    target_of,
    val_batches_column,
    val_batches_domain_of,
    weight_column,
)

COLS = ["run", "step", "model_size", "n_tokens", "weight_a", "weight_b", "a_loss", "b_loss"]


def _row(run: str, step: int, loss: float = 3.25) -> dict:
    return {
        "run": run,
        "step": step,
        "model_size": 8,
        "n_tokens": 4352 * step,
        "weight_a": 0.25,
        "weight_b": 0.75,
        "a_loss": loss,
        "b_loss": 2.5,
    }


# --- partial rows -------------------------------------------------------------------------


def test_partial_row_from_a_killed_writer_is_dropped_before_the_next_append(tmp_path):
    path = tmp_path / "runs.csv"
    w = RunTableWriter(path, COLS)
    w.append(_row("r1", 1))
    with open(path, "a") as f:  # what a SIGKILL mid-write leaves: half a row, no newline
        f.write("r2,8,4352,4352,0.25,0.75,0.")
    with pytest.warns(PartialRowWarning, match=r"runs.csv, row 3: dropped a partial last row"):
        w2 = RunTableWriter(path, COLS)
    w2.append(_row("r2", 1))
    lines = path.read_text().splitlines()
    assert lines[2].startswith("r2,1,8,4352,0.25,0.75,3.25")  # not glued onto the cut row
    assert len(load_runs(path)) == 2


def test_partial_row_appearing_after_open_is_dropped_at_append(tmp_path):
    path = tmp_path / "runs.csv"
    w = RunTableWriter(path, COLS)
    w.append(_row("r1", 1))
    with open(path, "a") as f:  # another (killed) attempt of the run wrote half a row since
        f.write("r1,2,8,87")
    with pytest.warns(PartialRowWarning):
        w.append(_row("r1", 2))
    assert [r["step"] for r in load_runs(path).rows] == ["1", "2"]


def test_truncate_after_drops_a_partial_row_first(tmp_path):
    path = tmp_path / "runs.csv"
    w = RunTableWriter(path, COLS)
    w.append_many([_row("r1", 1), _row("r1", 2)])
    with open(path, "a") as f:
        f.write("r1,3,8,1305")
    with pytest.warns(PartialRowWarning):
        assert w.truncate_after("r1", 1) == 1
    assert path.read_text().endswith("\n")
    assert [r["step"] for r in load_runs(path).rows] == ["1"]


def test_reader_refuses_a_row_without_newline_that_parses(tmp_path):
    # "3.2" cut from "3.25": the right field count and a number, silently wrong if read.
    path = tmp_path / "runs.csv"
    RunTableWriter(path, COLS).append(_row("r1", 1))
    with open(path, "a") as f:
        f.write("r1,2,8,8704,0.25,0.75,3.2,2.")
    with pytest.raises(FormatError, match=r"runs.csv, row 3: the last row has no newline"):
        load_runs(path)
    problems = check_run_tables({path: "r1"})
    assert len(problems) == 1 and "row 3" in problems[0]


def test_drop_partial_row_leaves_complete_files_alone(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("run,step\nr1,1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert drop_partial_row(path) is None
    assert path.read_text() == "run,step\nr1,1\n"
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert drop_partial_row(empty) is None


def test_drop_partial_row_on_a_long_row_without_any_newline_in_the_last_block(tmp_path):
    path = tmp_path / "runs.csv"
    head = "run,step\nr1,1\n"
    path.write_text(head + "x" * 200_000)
    with pytest.warns(PartialRowWarning, match="row 3"):
        assert len(drop_partial_row(path)) == 200_000
    assert path.read_text() == head


_FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys, warnings
    from mixsampler.laws.runtable_writer import RunTableWriter
    cols = {cols!r}
    path = sys.argv[1]
    w = RunTableWriter(path, cols)
    w.append({row1!r})
    size = len(open(path, "rb").read())
    # A real short write: the file-size limit lets part of the next row through, then EFBIG,
    # as a disk that fills up mid-row does (ENOSPC).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 20, resource.RLIM_INFINITY))
    try:
        w.append({row2!r})
    except OSError as err:
        print("ERROR", err)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE short writes: Linux")
def test_full_disk_mid_row_leaves_no_partial_row(tmp_path):
    path = tmp_path / "runs.csv"
    code = _FULL_DISK.format(cols=COLS, row1=_row("r1", 1), row2=_row("r2", 1))
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("ERROR") and "cannot append to run table" in out.stdout
    assert str(path) in out.stdout and "earlier rows are intact" in out.stdout
    text = path.read_text()
    assert text.endswith("\n") and text.count("\n") == 2  # header + r1, nothing of r2
    # The next append (the run resumed after space was freed) is a whole row.
    RunTableWriter(path, COLS).append(_row("r2", 1))
    assert len(load_runs(path)) == 2


# --- column roles -------------------------------------------------------------------------


def test_domain_named_foo_loss_is_refused_by_writer_and_reader(tmp_path):
    cols = ["run", "step", "model_size", "n_tokens", "weight_a", "weight_foo_loss", "a_loss"]
    with pytest.raises(FormatError, match=r"domain 'foo_loss' ends in '_loss'.*weight_foo"):
        RunTableWriter(tmp_path / "w.csv", cols)
    path = tmp_path / "r.csv"
    path.write_text(",".join(cols) + "\nr1,1,8,100,0.5,0.5,3.0\n")
    with pytest.raises(FormatError, match=rf"{path}: domain 'foo_loss'"):
        load_runs(path)
    assert "domain 'foo_loss'" in check_run_tables([path])[0]


def test_domain_named_weight_x_is_refused_naming_it(tmp_path):
    # The logger writes a loss column per domain: weight_x_loss also reads as a weight.
    cols = ["run", "step", "model_size", "n_tokens", "weight_a", "weight_weight_x", "a_loss"]
    with pytest.raises(FormatError, match=r"domain 'weight_x' begins with 'weight_'"):
        RunTableWriter(tmp_path / "w.csv", [*cols, "weight_x_loss"])
    path = tmp_path / "r.csv"
    path.write_text(",".join([*cols, "weight_x_loss"]) + "\nr1,1,8,100,0.5,0.5,3.0,2.0\n")
    with pytest.raises(FormatError, match="weight_x"):
        load_runs(path)


@pytest.mark.parametrize("name", ["a=b", "a,b", " a", "a\tb", "", "realized_x", "pred_y"])
def test_unaddressable_or_colliding_names_are_refused(name):
    with pytest.raises(FormatError, match="rule: a domain or target name must"):
        check_columns(["ok", name], [])


def test_target_of_is_unambiguous():
    assert target_of("weight_foo_loss") is None
    assert target_of("val_batches_foo_loss") is None
    assert target_of("foo_loss") == "foo"
    assert val_batches_domain_of(val_batches_column("c4")) == "c4"


names = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@given(names)
def test_every_accepted_name_has_one_role_per_column(name):
    try:
        check_name(name)
    except FormatError:
        return
    w, loss = weight_column(name), loss_column(name)
    assert domain_of(w) == name and target_of(w) is None
    assert target_of(loss) == name
    assert domain_of(loss) is None and realized_domain_of(loss) is None
    assert val_batches_domain_of(loss) is None
    assert not name.startswith(RESERVED_PREFIXES) and "=" not in name and "," not in name


# --- new columns: n_tokens_unit, val_batches_<d> -------------------------------------------


def _table(path, extra_cols="", extra=""):
    path.write_text(
        f"run,step,model_size,n_tokens,weight_a,a_loss{extra_cols}\nr1,1,8,100,1.0,3.0{extra}\n"
    )
    return path


def test_n_tokens_unit_is_read_and_checked(tmp_path):
    assert load_runs(_table(tmp_path / "t.csv")).n_tokens_unit == "tokens"
    samples = _table(tmp_path / "s.csv", ",n_tokens_unit", ",samples")
    assert load_runs(samples).n_tokens_unit == "samples"
    with pytest.raises(FormatError, match=r"column n_tokens_unit: must be one of tokens, samples"):
        load_runs(_table(tmp_path / "b.csv", ",n_tokens_unit", ",bytes"))
    with pytest.raises(FormatError, match="n_tokens counts tokens here but samples"):
        load_runs([samples, tmp_path / "t.csv"])


def test_val_batches_column_must_be_a_count(tmp_path):
    ok = _table(tmp_path / "ok.csv", ",val_batches_a", ",4")
    assert load_runs(ok).rows[0]["val_batches_a"] == "4"
    with pytest.raises(FormatError, match=r"row 2, column val_batches_a: must be a whole number"):
        load_runs(_table(tmp_path / "bad.csv", ",val_batches_a", ",2.5"))
    with pytest.raises(FormatError, match="val_batches_a"):
        RunTableWriter(tmp_path / "w.csv", ["run", "step", "weight_a", "val_batches_a"]).append(
            {"run": "r", "step": 1, "weight_a": 1.0, "val_batches_a": -1}
        )


def test_law_json_with_a_colliding_domain_name_is_refused_naming_the_file(tmp_path):
    import json

    from mixsampler.laws.io import load_laws

    good = tmp_path / "LAW.json"
    # The header of a LAW.json as save_laws writes it; the domain check comes before the rest.
    doc = {
        "format": "mixsampler-laws",
        "version": 1,
        "laws": {
            "a": {
                "law": "additive",
                "target": "a",
                "domains": ["a", "b_loss"],
                "parameters": {},
            }
        },
    }
    good.write_text(json.dumps(doc))
    with pytest.raises(FormatError, match=rf"{good}, field laws.a.domains: domain 'b_loss'"):
        load_laws(good)


def test_writer_checks_the_unit(tmp_path):
    cols = ["run", "step", "weight_a", "n_tokens_unit"]
    w = RunTableWriter(tmp_path / "w.csv", cols)
    w.append({"run": "r", "step": 1, "weight_a": 1.0, "n_tokens_unit": "samples"})
    with pytest.raises(FormatError, match="column n_tokens_unit: must be one of tokens, samples"):
        w.append({"run": "r", "step": 2, "weight_a": 1.0, "n_tokens_unit": "images"})
