"""The top-level command line: verbs register, errors are one line, not a traceback."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mixsampler import cli, threads


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


def _run_table(path: Path) -> Path:
    """A small two-domain table from a known Chinchilla-style law (36 rows)."""
    lines = ["model_size,n_tokens,weight_a,weight_b,a_loss"]
    for n in (1e7, 3e7, 1e8):
        for d in (1e8, 3e8, 1e9, 3e9):
            for h in (0.2, 0.5, 0.8):
                loss = 1.8 + 0.4 * (n / 1e9) ** -0.35 + 0.9 * (d / 1e9) ** -0.3 + 0.3 * (1 - h)
                lines.append(f"{n},{d},{h},{1 - h},{loss}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _fit_argv(tmp_path: Path, out: Path) -> list[str]:
    table = _run_table(tmp_path / "runs.csv")
    return ["fit", str(table), "--law", "chinchilla", "--target", "a", "-o", str(out)]


def test_a_full_disk_is_one_line_exit_1_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = _fit_argv(tmp_path, out_dir / "LAW.json")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)  # the write's last step: the data reached no disk
    rc = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 1, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("mixsampler fit: error:"), err
    assert str(out_dir / "LAW.json") in err and "No space left on device" in err, err
    assert "[Errno" not in err and "Traceback" not in err, err
    assert list(out_dir.iterdir()) == []  # no LAW.json, no temporary file


@pytest.mark.parametrize("errno_name", ["EIO", "ENOSPC", "EROFS"])
def test_machine_os_errors_exit_1(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    errno_name: str,
) -> None:
    from mixsampler.laws.commands import predict

    code = getattr(errno, errno_name)

    def boom(args: object) -> int:
        raise OSError(code, os.strerror(code), "/x/p.csv")

    monkeypatch.setattr(predict, "_cmd_predict", boom)
    rc = cli.main(["predict", "L.json", "r.csv", "-o", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert err == f"mixsampler predict: error: /x/p.csv: {os.strerror(code)}"


def test_bad_output_paths_are_one_line_exit_2(tmp_path: Path, cli_fails: Any) -> None:
    argv = _fit_argv(tmp_path, tmp_path / "missing" / "LAW.json")
    cli_fails(argv, "missing", "does not exist")
    cli_fails([*argv[:-1], tmp_path], str(tmp_path), "is a folder")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cli_fails([*argv[:-1], a_file / "LAW.json"], "a_file", "not a folder")
    assert not (tmp_path / "LAW.json").exists()


def test_fit_and_optimize_pin_blas_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli_fails: Any
) -> None:
    from mixsampler.laws.commands import fit, predict

    seen: list[dict[str, str | None]] = []

    def record(args: object) -> int:
        seen.append({v: os.environ.get(v) for v in threads.BLAS_THREAD_VARS})
        return 0

    monkeypatch.setattr(fit, "_cmd_fit", record)
    monkeypatch.setattr(predict, "_cmd_predict", record)
    argv = _fit_argv(tmp_path, tmp_path / "LAW.json")
    monkeypatch.setenv("OMP_NUM_THREADS", "16")
    monkeypatch.delenv(threads.BLAS_ENV, raising=False)
    assert cli.main(argv) == 0
    assert seen[-1] == dict.fromkeys(threads.BLAS_THREAD_VARS, "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "16")
    monkeypatch.setenv(threads.BLAS_ENV, "3")
    assert cli.main(argv) == 0
    assert seen[-1] == dict.fromkeys(threads.BLAS_THREAD_VARS, "3")
    monkeypatch.setenv("OMP_NUM_THREADS", "16")
    monkeypatch.setenv(threads.BLAS_ENV, "0")  # leave the environment alone
    assert cli.main(argv) == 0
    assert seen[-1]["OMP_NUM_THREADS"] == "16"
    # Other verbs are not touched.
    monkeypatch.delenv(threads.BLAS_ENV)
    assert cli.main(["predict", "L.json", "r.csv", "-o", str(tmp_path / "p.csv")]) == 0
    assert seen[-1]["OMP_NUM_THREADS"] == "16"
    monkeypatch.setenv(threads.BLAS_ENV, "two")
    cli_fails(argv, threads.BLAS_ENV, "'two'")
    monkeypatch.setenv(threads.BLAS_ENV, "-1")
    cli_fails(argv, threads.BLAS_ENV, "'-1'")


def test_the_cli_loads_no_blas_before_it_pins() -> None:
    """The variables work only if set before numpy loads: importing the CLI must not load it."""
    code = "import sys, mixsampler.cli; print('numpy' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120
    )
    assert out.stdout.split() == ["False", "False"], out.stderr
