"""The top-level command line: verbs register, errors are one line, not a traceback."""

from __future__ import annotations

import pytest

from mixsampler import cli


def test_no_verb_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: mixsampler" in capsys.readouterr().out


def test_every_verb_is_registered() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    verbs = set(sub.choices)
    assert {"plan", "shards", "fit", "predict", "optimize", "evaluate", "demo"} <= verbs


def test_unknown_verb_is_rejected() -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["frobnicate"])
    assert exc.value.code == 2
