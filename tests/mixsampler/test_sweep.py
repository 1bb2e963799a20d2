"""`mixsampler sweep`: a planned sweep runs to the end across a SIGKILL, with either launcher."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train import TEST_PATH, planned  # noqa: E402

from mixsampler import cli as mixsampler_cli  # noqa: E402
from mixsampler.laws.runtable import check_run_tables  # noqa: E402
from mixsampler.sweep.runs import SweepRun, read_plan_dir  # noqa: E402

MAX_STEPS = 8  # validations (and checkpoints) at steps 2, 4, 6, 8
CKPT = "checkpoints/last.ckpt"
HEADER = "=== mixsampler sweep:"


def _sweep_cmd(plan: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mixsampler.cli", "sweep", str(plan), "--jobs", "2", *extra]


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [TEST_PATH, os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")


def _attempts(run: SweepRun) -> int:
    return run.log.read_text().count(HEADER) if run.log.is_file() else 0


def _kill_mid_sweep(plan: Path, extra: list[str], out: Path) -> None:
    """Start a sweep and SIGKILL its process group once one run finished and one is half done."""
    runs = read_plan_dir(plan)
    with open(out, "w") as log:
        proc = subprocess.Popen(
            _sweep_cmd(plan, *extra), stdout=log, stderr=subprocess.STDOUT, env=_env(),
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = [r for r in runs if r.done_path.exists()]
            half = [r for r in runs if r.run_dir.joinpath(CKPT).exists()]
            if done and len(half) > len(done):
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and every trainer it started
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, out.read_text()[-2000:]


@pytest.mark.parametrize(
    "extra",
    [[], ["--launcher", "slurm", "--slurm-cluster", "local"]],
    ids=["local", "submitit-local"],
)
def test_sweep_survives_sigkill(tmp_path: Path, extra: list[str]) -> None:
    plan = planned(tmp_path, n_mixtures=6, max_steps=MAX_STEPS, step_s=0.1)
    runs = read_plan_dir(plan)
    assert len(runs) == 6
    _kill_mid_sweep(plan, extra, tmp_path / "first.log")

    # What the kill left: finished runs (never to be trained again) and half-done ones.
    finished = {r.name: r.done_path.stat().st_mtime_ns for r in runs if r.done_path.exists()}
    half = [r.name for r in runs if r.name not in finished and r.run_dir.joinpath(CKPT).exists()]
    assert finished and half, (finished, half)
    listed = subprocess.run(_sweep_cmd(plan, "--status"), capture_output=True, text=True).stdout
    assert f"{len(finished)} done" in listed and f"{len(half)} partial" in listed, listed

    again = subprocess.run(
        _sweep_cmd(plan, *extra), capture_output=True, text=True, env=_env(), timeout=300
    )
    assert again.returncode == 0, again.stdout + again.stderr[-3000:]
    assert f"6 runs: {len(finished)} already finished, {6 - len(finished)} trained, 0 failed" in (
        again.stdout
    )
    assert f"next: mixsampler fit {plan}/runs/*.csv" in again.stdout
    for r in runs:
        done = json.loads(r.done_path.read_text())
        assert done["step"] == MAX_STEPS, r.name
        if r.name in finished:
            assert r.done_path.stat().st_mtime_ns == finished[r.name], r.name
            assert _attempts(r) == 1, r.name
        elif r.name in half:
            assert done["resumed_from"] == str(r.run_dir / "checkpoints" / "last.ckpt"), r.name
            assert _attempts(r) == 2, r.name
        with open(r.table, newline="") as f:
            steps = [int(row["step"]) for row in csv.DictReader(f)]
        assert steps == [2, 4, 6, 8], (r.name, steps)  # every validation once, none twice

    # A third sweep has nothing to do, and --status says so without training.
    status = subprocess.run(
        _sweep_cmd(plan, "--status"), capture_output=True, text=True, env=_env()
    )
    assert status.stdout.splitlines()[-1] == "6 done", status.stdout
    third = subprocess.run(_sweep_cmd(plan, *extra), capture_output=True, text=True, env=_env())
    assert third.returncode == 0 and "6 runs: 6 already finished, 0 trained" in third.stdout


def _live_members(pgid: int) -> list[int]:
    """Processes of a process group that still run (zombies excluded), from /proc."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_killing_the_sweep_alone_stops_its_trainers(tmp_path: Path) -> None:
    plan = planned(tmp_path, n_mixtures=2, max_steps=MAX_STEPS, step_s=1.0)
    runs = read_plan_dir(plan)
    proc = subprocess.Popen(
        _sweep_cmd(plan), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(),
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_live_members(proc.pid)) < 3:
        time.sleep(0.05)  # the sweep and its two trainers
    assert len(_live_members(proc.pid)) == 3
    proc.kill()  # the sweep only, not its group
    proc.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _live_members(proc.pid):
        time.sleep(0.1)
    left = _live_members(proc.pid)
    if left:
        os.killpg(proc.pid, signal.SIGKILL)
    assert not left, "trainers outlived their sweep"
    assert not any(r.done_path.exists() for r in runs)


def test_a_usage_error_is_reported_with_its_log_and_not_retried(tmp_path: Path) -> None:
    plan = planned(tmp_path, n_mixtures=1, max_steps=2)
    (run,) = read_plan_dir(plan)
    cfg = yaml.safe_load(run.config.read_text())
    cfg["data"]["init_args"]["train"]["a"] = str(tmp_path / "missing")
    run.config.write_text(yaml.safe_dump(cfg))
    res = subprocess.run(
        _sweep_cmd(plan, "--retries", "1"), capture_output=True, text=True, env=_env()
    )
    assert res.returncode == 1
    # Exit status 2 (a bad config value) would repeat on every attempt: one attempt only.
    # (A crash is retried: tests/test_faults_sweep.py.)
    assert f"FAILED {run.name} after 1 attempt(s)" in res.stdout and str(run.log) in res.stdout
    assert "usage error: not retried" in res.stdout
    assert "missing" in res.stdout  # the log's last line: the error itself
    assert _attempts(run) == 1 and not run.done_path.exists()


def test_bad_input_is_one_line_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    def error(*args: str) -> str:
        assert mixsampler_cli.main(["sweep", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        return err

    assert f"plan folder {str(tmp_path / 'nope')!r} does not exist" in error(str(tmp_path / "nope"))
    assert "has no plan.csv" in error(str(tmp_path))
    plan = planned(tmp_path, n_mixtures=2, max_steps=2)
    p = str(plan)
    assert "--jobs must be an integer >= 1, got 0" in error(p, "--jobs", "0")
    assert "--retries must be an integer >= 0, got -1" in error(p, "--retries", "-1")
    assert "--partition is a SLURM option" in error(p, "--partition", "gpu")
    assert "--slurm-cluster is a SLURM option" in error(p, "--slurm-cluster", "local")
    assert "on SLURM use --gpus" in error(p, "--launcher", "slurm", "--gpus-per-run", "2")
    if not any(Path(d, "sbatch").exists() for d in os.environ.get("PATH", "").split(os.pathsep)):
        assert "sbatch is not on PATH" in error(p, "--launcher", "slurm")
    assert "--sbatch expects KEY=VALUE, got 'qos'" in error(
        p, "--launcher", "slurm", "--slurm-cluster", "local", "--sbatch", "qos"
    )

    runs = read_plan_dir(plan)
    # A run marked finished for another version of its config: neither skipped nor retrained.
    runs[0].run_dir.mkdir(parents=True)
    marker = {"format": "mixsampler-train-done", "config_sha256": "0" * 64, "step": 2}
    runs[0].done_path.write_text(json.dumps(marker))
    assert "finished under another version" in error(p)
    runs[0].done_path.write_text("{")
    assert "DONE.json: not valid JSON" in error(p)

    runs[1].config.unlink()
    err = error(p)
    assert "plan.csv, line 3" in err and runs[1].config.name in err


def test_duplicated_or_empty_run_tables_fail_the_sweep(tmp_path: Path) -> None:
    # The check is the fit's own reader (laws.runtable.check_run_tables), so the tables are
    # whole run tables now; the messages are the reader's.
    head = "run,step,model_size,n_tokens,weight_a,a_loss\n"
    table = tmp_path / "r.csv"
    table.write_text(head + "r,2,8,64,1.0,1.0\nr,4,8,128,1.0,0.9\nr,4,8,128,1.0,0.8\n")
    (problem,) = check_run_tables({table: "r"})
    assert "run 'r' has step 4 twice" in problem and str(table) in problem
    table.write_text(head + "other,2,8,64,1.0,1.0\n")
    (problem,) = check_run_tables({table: "r"})
    assert "no rows for run r" in problem and "val_check_interval" in problem
    table.write_text(head)
    (problem,) = check_run_tables({table: "r"})
    assert "no rows" in problem and str(table) in problem
    table.unlink()
    assert "wrote no run table" in check_run_tables({table: "r"})[0]
