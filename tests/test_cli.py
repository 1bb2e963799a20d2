"""The top-level command line: verbs register, errors are one line, not a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mixsampler import cli


def test_no_verb_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: mixsampler" in capsys.readouterr().out


def test_every_verb_is_registered() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    verbs = set(sub.choices)
    assert {"plan", "shards", "fit", "predict", "optimize", "evaluate"} <= verbs


def test_unknown_verb_is_rejected() -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["frobnicate"])
    assert exc.value.code == 2


def test_plan_bad_inputs_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli_fails: Any
) -> None:
    base = ["plan", "--domains", "a,b", "--tokens", "1e6"]
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    cli_fails([*base, "-o", a_file], "-o", "f.txt", "is a file")
    cli_fails([*base, "-o", a_file / "sub"], "is a file, not a folder")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("trainer: [1, 2\nmodel: 3\n")
    cli_fails([*base, "--config", bad_yaml, "-o", tmp_path / "o1"], "bad.yaml", "line 2")
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    cli_fails([*base, "--config", listy, "-o", tmp_path / "o2"], "must hold a YAML mapping")
    cli_fails([*base, "--config", tmp_path, "-o", tmp_path / "o3"], "is a folder")
    cli_fails([*base, "--config", tmp_path / "nope.yaml", "-o", tmp_path / "o4"], "nope")
    cli_fails(["plan", "--domains", "a,a", "--tokens", "1e6", "-o", tmp_path / "o5"], "a,a")
    cli_fails([*base[:-1], "-5", "-o", tmp_path / "o6"], "--tokens", "-5")
    cli_fails([*base[:-1], "lots", "-o", tmp_path / "o6"], "--tokens", "'lots'")
    out = tmp_path / "sweep"
    assert cli.main([*base, "--tokens", "50M", "-o", str(out)]) == 0
    assert (out / "plan.csv").exists()
    capsys.readouterr()
    # A second plan into the same folder would mix its configs with the first one's.
    cli_fails([*base, "-o", out], "already holds a plan")


@pytest.mark.parametrize(
    ("exc", "needle"),
    [
        (IsADirectoryError(21, "Is a directory", "/x/out"), "/x/out: Is a directory"),
        (PermissionError(13, "Permission denied", "/x/f"), "/x/f: Permission denied"),
        (KeyError("c4"), "unknown name 'c4'"),
        (ValueError("two\nlines"), "two lines"),
    ],
)
def test_user_errors_become_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    cli_fails: Any,
    exc: BaseException,
    needle: str,
    tmp_path: Path,
) -> None:
    from mixsampler.laws.commands import predict

    def boom(args: object) -> int:
        raise exc

    monkeypatch.setattr(predict, "_cmd_predict", boom)
    cli_fails(["predict", "L.json", "r.csv", "-o", tmp_path / "p.csv"], needle)


def test_bugs_still_trace(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mixsampler.laws.commands import predict

    def boom(args: object) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(predict, "_cmd_predict", boom)
    with pytest.raises(ZeroDivisionError):
        cli.main(["predict", "L.json", "r.csv", "-o", str(tmp_path / "p.csv")])
