"""Every class of bad input through the command line: exit 2, one line naming it, no traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mixsampler import cli
from mixsampler.laws import save_laws


@pytest.fixture
def files(tmp_path: Path, helpers: Any) -> dict[str, Path]:
    rows = helpers.synth_rows({"a": helpers.true_law("chinchilla")}, n_mix=3, sizes=(1e8, 3e8))
    runs = helpers.write_csv(tmp_path / "runs.csv", rows)
    law = save_laws(tmp_path / "LAW.json", {"a": helpers.true_law("chinchilla")})
    return {"runs": runs, "law": law, "dir": tmp_path}


def _edit(path: Path, old: str, new: str, name: str) -> Path:
    out = path.with_name(name)
    out.write_text(path.read_text().replace(old, new, 1))
    return out


def test_bad_run_tables(files: dict[str, Path], cli_fails: Any) -> None:
    runs, law, tmp = files["runs"], files["law"], files["dir"]
    lines = runs.read_text().splitlines(keepends=True)
    cells = lines[1].rstrip("\n").split(",")
    neg = tmp / "neg.csv"
    neg.write_text(lines[0] + ",".join([*cells[:-1], "-2.5"]) + "\n")
    shifted = tmp / "shifted.csv"
    shifted.write_text(lines[0] + ",".join([cells[0], "7", *cells[1:]]) + "\n")
    dup = tmp / "dup.csv"
    dup.write_text(lines[0].rstrip("\n") + ",a_loss\n" + lines[1].rstrip("\n") + ",3\n")
    empty = tmp / "empty.csv"
    empty.write_text("")
    for verb in (
        ["fit", "--law", "chinchilla", "--target", "a", "-o", tmp / "o.json"],
        ["predict", law, "-o", tmp / "p.csv"],
        ["evaluate", law],
    ):
        head, rest = ([verb[0]], verb[1:]) if verb[0] == "fit" else (verb[:2], verb[2:])
        cli_fails([*head, neg, *rest], "neg.csv, row 2, column a_loss", "'-2.5'")
        cli_fails([*head, shifted, *rest], "shifted.csv, row 2:", "fields")
        cli_fails([*head, dup, *rest], "dup.csv, row 1: duplicated column", "a_loss")
        cli_fails([*head, empty, *rest], "empty.csv: empty file")
        cli_fails([*head, tmp, *rest], "is a directory")
        cli_fails([*head, runs, "--where", "model_size > 1e12", *rest], "no rows left")
        cli_fails([*head, runs, "--where", "10**10**10 > 1", *rest], "--where")
        cli_fails([*head, runs, "--where", "not " * 5000 + "x", *rest], "--where")


def test_bad_law_files(files: dict[str, Path], cli_fails: Any) -> None:
    runs, law, tmp = files["runs"], files["law"], files["dir"]
    cases = [
        (_edit(law, '"use_n": true', '"use_n": "false"', "s.json"), "laws.a.use_n", "'false'"),
        (_edit(law, '"n_scale": 1000000000.0', '"n_scale": 0', "z.json"), "n_scale", "> 0"),
        (_edit(law, '"E": 1.8', '"E": NaN', "n.json"), "n.json: not valid JSON", "NaN"),
        (_edit(law, '"domains": [', '"domains": "x", "d": [', "l.json"), "laws.a.domains", ""),
        (_edit(law, '"laws": {', '"laws": [], "x": {', "o.json"), "field laws: must be an o", ""),
    ]
    for path, *needles in cases:
        cli_fails(["predict", path, runs, "-o", tmp / "p.csv"], str(path.name), *needles)
        cli_fails(
            ["optimize", path, "--model-size", "1e9", "--tokens", "1e10", "-o", tmp / "w"],
            *needles,
        )
    cli_fails(["evaluate", tmp, runs], "is a directory")


def test_bad_arguments(files: dict[str, Path], cli_fails: Any) -> None:
    law, tmp = files["law"], files["dir"]
    base = ["optimize", law, "--model-size", "1e9", "--tokens", "1e10", "-o", tmp / "w.json"]
    cli_fails([*base, "--objective", "a=1,a=5"], "--objective names 'a' twice")
    cli_fails([*base, "--max-weight", "a=0.5", "--max-weight", "a=0.7"], "'a' twice")
    cli_fails([*base, "--objective", "zz=1"], "zz")
    cli_fails([*base, "--min-weight", "q=0.1"], "q")
    cli_fails([*base, "--tokens", "1e999"], "--tokens must be finite")
    cli_fails(["predict", law, files["runs"], "-o", tmp], "-o", "is a folder")
    cli_fails(["predict", law, files["runs"], "-o", tmp / "no" / "p.csv"], "does not exist")
    cli_fails(["evaluate", law, files["runs"], "--plot", tmp / "no" / "x.png"], "--plot")


def test_predict_refuses_domains_the_law_does_not_know(
    files: dict[str, Path],
    cli_fails: Any,
    helpers: Any,
    tmp_path: Path,
) -> None:
    law = helpers.true_law("chinchilla")
    law2 = type(law)("chinchilla", ("a", "b"), "a", dict(law.params))
    path = save_laws(tmp_path / "ab.json", {"a": law2})
    cli_fails(
        ["predict", path, files["runs"], "-o", tmp_path / "p.csv"],
        "runs.csv, row 2, column weight_c",
        "ab.json",
    )


def test_evaluate_report_is_strict_json_and_unscored_targets_are_said(
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    cli_fails: Any,
    helpers: Any,
    tmp_path: Path,
) -> None:
    laws_ = {"a": helpers.true_law("chinchilla"), "zz": helpers.true_law("chinchilla", "zz")}
    path = save_laws(tmp_path / "two.json", laws_)
    out = tmp_path / "rep.json"
    assert cli.main(["evaluate", str(path), str(files["runs"]), "-o", str(out)]) == 0
    rep = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(c))
    assert rep["zz"]["mre"] is None and rep["zz"]["n"] == 0 and rep["a"]["mre"] < 1
    only = save_laws(tmp_path / "zz.json", {"zz": laws_["zz"]})
    capsys.readouterr()
    cli_fails(["evaluate", only, files["runs"]], "no observed loss for any target")
