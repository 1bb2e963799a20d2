"""Issue 21, sweep side: copied plans, corrupt checkpoints, exit statuses, signals, OS errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "mixsampler"))
from test_train import TEST_PATH, planned  # noqa: E402

from mixsampler import cli as mixsampler_cli  # noqa: E402
from mixsampler.sweep.launchers import PLAN_DIR_ENV, trainer_env  # noqa: E402
from mixsampler.sweep.runner import run_sweep  # noqa: E402
from mixsampler.sweep.runs import plan_law, read_plan_dir  # noqa: E402
from mixsampler.sweep.train import (  # noqa: E402
    ClassPathError,
    check_class_paths,
    newest_good_checkpoint,
)


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [TEST_PATH, os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")


def _one_line_error(capsys, argv: list[str], status: int) -> str:
    assert mixsampler_cli.main(argv) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# --- a copied plan folder -----------------------------------------------------------------


def test_a_copied_plan_folder_is_refused_naming_the_original(tmp_path, capsys):
    plan = planned(tmp_path, n_mixtures=2, max_steps=2)
    copy = tmp_path / "plan2"
    shutil.copytree(plan, copy)
    with pytest.raises(ValueError, match=r"lies in the plan folder .*plan'.* not in .*plan2"):
        read_plan_dir(copy)
    err = _one_line_error(capsys, ["sweep", str(copy)], 2)
    assert "a copied plan folder would train" in err
    # Nothing was written into the original by the refused sweep.
    assert not any(r.run_dir.exists() for r in read_plan_dir(plan))
    # The original itself is fine.
    assert len(read_plan_dir(plan)) == 2


# --- corrupt checkpoints ------------------------------------------------------------------


def _ckpt(path: Path, step: int) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": step, "w": torch.arange(1000.0)}, path)


def test_a_truncated_last_checkpoint_falls_back_to_the_newest_good_one(tmp_path):
    ck = tmp_path / "run" / "checkpoints"
    _ckpt(ck / "step=2.ckpt", 2)
    _ckpt(ck / "step=4.ckpt", 4)
    _ckpt(ck / "last.ckpt", 4)
    data = (ck / "last.ckpt").read_bytes()
    (ck / "last.ckpt").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.warns(RuntimeWarning, match=r"last.ckpt: not a readable checkpoint.*step=4.ckpt"):
        assert newest_good_checkpoint(tmp_path / "run") == ck / "step=4.ckpt"
    assert (ck / "last.ckpt.corrupt").is_file() and not (ck / "last.ckpt").exists()


def test_random_bytes_and_a_flipped_bit_are_caught_too(tmp_path):
    ck = tmp_path / "run" / "checkpoints"
    _ckpt(ck / "step=2.ckpt", 2)
    _ckpt(ck / "step=10.ckpt", 10)  # newer by number, not by name order
    data = bytearray((ck / "step=10.ckpt").read_bytes())
    data[len(data) // 3] ^= 0x10  # one bit inside the tensor data: a CRC mismatch
    (ck / "step=10.ckpt").write_bytes(bytes(data))
    (ck / "last.ckpt").write_bytes(os.urandom(5000))
    with pytest.warns(RuntimeWarning) as record:
        assert newest_good_checkpoint(tmp_path / "run") == ck / "step=2.ckpt"
    text = str(record[0].message)
    assert "last.ckpt" in text and "step=10.ckpt" in text and "CRC" in text
    # Nothing good left: start over, say so.
    (ck / "step=2.ckpt").write_bytes(b"")
    with pytest.warns(RuntimeWarning, match="no good checkpoint left: the run starts over"):
        assert newest_good_checkpoint(tmp_path / "run") is None


def test_good_checkpoints_are_used_silently_and_other_ranks_rename_nothing(tmp_path):
    ck = tmp_path / "run" / "checkpoints"
    _ckpt(ck / "last.ckpt", 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert newest_good_checkpoint(tmp_path / "run") == ck / "last.ckpt"
    (ck / "last.ckpt").write_bytes(b"junk")
    _ckpt(ck / "step=4.ckpt", 4)
    assert newest_good_checkpoint(tmp_path / "run", rename=False) == ck / "step=4.ckpt"
    assert (ck / "last.ckpt").exists()


# --- class paths and PYTHONPATH -------------------------------------------------------------


def test_a_class_path_that_does_not_import_is_exit_3_in_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "model": {"class_path": "no_such_module_xyz.Model"},
                "trainer": {"default_root_dir": str(tmp_path / "run")},
            }
        )
    )
    with pytest.raises(ClassPathError, match=r"model: class_path 'no_such_module_xyz.Model'"):
        check_class_paths(cfg)
    err = _one_line_error(capsys, ["train", str(cfg)], 3)
    assert "No module named 'no_such_module_xyz'" in err and "PYTHONPATH" in err
    cfg.write_text(yaml.safe_dump({"model": {"class_path": "json.NoSuchThing"}}))
    with pytest.raises(ClassPathError, match="module 'json' has no 'NoSuchThing'"):
        check_class_paths(cfg)
    cfg.write_text(yaml.safe_dump({"model": {"class_path": "json.JSONDecoder"}}))
    assert check_class_paths(cfg) == ["json.JSONDecoder"]


def test_trainers_get_the_plan_folder_last_on_pythonpath(tmp_path):
    env = trainer_env(tmp_path, {"PYTHONPATH": "/a"})
    assert env["PYTHONPATH"].split(os.pathsep) == ["/a", str(tmp_path.resolve())]
    assert env[PLAN_DIR_ENV] == str(tmp_path.resolve())
    assert trainer_env(tmp_path, {})["PYTHONPATH"] == str(tmp_path.resolve())


# --- exit statuses, with a scripted launcher ------------------------------------------------


class _Handle:
    def __init__(self, run, attempt, rc):
        self.run, self.attempt, self._rc = run, attempt, rc

    def poll(self):
        return self._rc

    def stop(self, wait=True):
        pass


class _Scripted:
    """Runs one at a time; each attempt ends at once with the status ``script`` gives it."""

    capacity = 1

    def __init__(self, script):
        self.script = script
        self.started: list[tuple[str, int]] = []

    def start(self, runs, attempt):
        out = []
        for r in runs:
            self.started.append((r.name, attempt))
            r.log.parent.mkdir(parents=True, exist_ok=True)
            with open(r.log, "a") as f:
                f.write(f"mixsampler train: error: attempt {attempt} of {r.name}\n")
            out.append(_Handle(r, attempt, self.script(r.name, attempt)))
        return out


def _sweep(plan, script, retries=1):
    launcher = _Scripted(script)
    result = run_sweep(plan, launcher=launcher, retries=retries, poll_s=0, progress=False)
    return result, launcher.started


def test_a_retry_runs_next_as_announced(tmp_path):
    plan = planned(tmp_path, n_mixtures=3, max_steps=2)
    names = [r.name for r in read_plan_dir(plan)]
    result, started = _sweep(plan, lambda name, attempt: 1)
    assert started == [(n, a) for n in names for a in (1, 2)]
    assert [f.attempts for f in result.failed] == [2, 2, 2] and not result.success


def test_usage_errors_are_not_retried_and_show_their_message(tmp_path):
    plan = planned(tmp_path, n_mixtures=2, max_steps=2)
    first, second = (r.name for r in read_plan_dir(plan))
    result, started = _sweep(plan, lambda name, attempt: 2 if name == first else 1)
    assert started == [(first, 1), (second, 1), (second, 2)]
    f = result.failed[0]
    assert (f.run, f.attempts, f.exit_status) == (first, 1, 2)
    assert f.last_line == f"mixsampler train: error: attempt 1 of {first}"
    assert f"FAILED {first} after 1 attempt(s), exit status 2, a usage error: not retried" in (
        result.summary()
    )
    assert f"FAILED {second} after 2 attempt(s), exit status 1: " in result.summary()


def test_exit_3_stops_the_sweep_with_its_cause(tmp_path):
    plan = planned(tmp_path, n_mixtures=3, max_steps=2)
    names = [r.name for r in read_plan_dir(plan)]
    result, started = _sweep(plan, lambda name, attempt: 3)
    assert started == [(names[0], 1)]
    assert result.not_started == names[1:] and not result.success
    summary = result.summary()
    assert f"STOPPED: {names[0]}: mixsampler train: error: attempt 1" in summary
    assert "2 not started" in summary


def test_next_command_names_the_law_the_plan_was_sized_for(tmp_path):
    plan = planned(tmp_path, n_mixtures=1, max_steps=2)
    text = (plan / "plan.csv").read_text().splitlines()
    if "law" not in text[0].split(","):  # plan may not write the column yet (dropin adds it)
        text = [text[0] + ",law"] + [line + ",additive" for line in text[1:]]
        (plan / "plan.csv").write_text("\n".join(text) + "\n")
    law = plan_law(plan)
    result, _ = _sweep(plan, lambda name, attempt: 1, retries=0)
    assert f"--law {law} " in result.next_command


# --- OS errors ----------------------------------------------------------------------------


def _unwritable_folder(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    # root writes through file modes; /sys refuses new files even to root in most containers.
    try:
        with tempfile.TemporaryFile(dir="/sys"):
            pytest.skip("no folder here refuses writes to this user")
    except OSError:
        return Path("/sys")


def test_an_unwritable_run_folder_is_one_line_before_anything_starts(tmp_path, capsys):
    plan = planned(tmp_path, n_mixtures=1, max_steps=2)
    (run,) = read_plan_dir(plan)
    cfg = yaml.safe_load(run.config.read_text())
    ro = _unwritable_folder(tmp_path)
    cfg["trainer"]["default_root_dir"] = str(ro / "logs" / run.name)
    run.config.write_text(yaml.safe_dump(cfg))
    err = _one_line_error(capsys, ["sweep", str(plan), "--no-progress"], 1)
    assert f"run {run.name}: cannot write its trainer.default_root_dir in {ro}" in err


def test_corrupt_train_json_is_named(tmp_path):
    from mixsampler.sweep.runs import read_json_marker

    p = tmp_path / "TRAIN.json"
    p.write_text('{"config_sha256": ')
    with pytest.raises(ValueError, match=rf"{p}: not valid JSON.*delete it"):
        read_json_marker(p)
    assert read_json_marker(tmp_path / "none.json") == {}


# --- real trainers (slow) -------------------------------------------------------------------

_CRASH_ONCE = textwrap.dedent(
    """
    from pathlib import Path

    from test_train import SlowLM


    class CrashOnceLM(SlowLM):
        '''Crashes (a bug, exit 1) at step 3 of its first attempt; the retry resumes.'''

        def training_step(self, batch, batch_idx):
            flag = Path(__file__).with_name("crashed")
            if self.global_step == 3 and not flag.exists():
                flag.write_text("x")
                raise RuntimeError("simulated crash")
            return super().training_step(batch, batch_idx)
    """
)


@pytest.mark.slow
def test_a_crash_is_retried_and_resumes_with_a_model_from_the_plan_folder(tmp_path):
    plan = planned(tmp_path, n_mixtures=1, max_steps=6)
    (plan / "crash_once.py").write_text(_CRASH_ONCE)  # imported through the plan folder
    (run,) = read_plan_dir(plan)
    cfg = yaml.safe_load(run.config.read_text())
    cfg["model"]["class_path"] = "crash_once.CrashOnceLM"
    run.config.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "mixsampler.cli", "sweep", str(plan), "--no-progress"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"retry   {run.name}: exit status 1" in res.stdout
    log = run.log.read_text()
    assert "simulated crash" in log and log.count("=== mixsampler sweep:") == 2
    assert json.loads(run.done_path.read_text())["resumed_from"].endswith(".ckpt")
    steps = [line.split(",")[1] for line in run.table.read_text().splitlines()[1:]]
    assert steps == ["2", "4", "6"]  # each evaluation once, across the crash


@pytest.mark.slow
def test_a_missing_module_stops_the_sweep_after_one_run(tmp_path):
    plan = planned(tmp_path, n_mixtures=3, max_steps=2)
    runs = read_plan_dir(plan)
    for r in runs:
        cfg = yaml.safe_load(r.config.read_text())
        cfg["model"]["class_path"] = "my_models_not_installed.LM"
        r.config.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "mixsampler.cli", "sweep", str(plan), "--no-progress"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert res.returncode == 1
    assert "STOPPED:" in res.stdout and "my_models_not_installed" in res.stdout
    assert "2 not started" in res.stdout
    assert [r.log.exists() for r in runs] == [True, False, False]


@pytest.mark.slow
def test_train_resumes_from_the_newest_good_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(HERE / "mixsampler"))
    monkeypatch.syspath_prepend(str(HERE / "callbacks"))
    plan = planned(tmp_path, n_mixtures=1, max_steps=4)
    (run,) = read_plan_dir(plan)
    assert mixsampler_cli.main(["train", str(run.config)]) == 0
    run.done_path.unlink()  # killed after its last checkpoint, before the marker
    last = run.run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.warns(RuntimeWarning, match="last.ckpt: not a readable checkpoint"):
        assert mixsampler_cli.main(["train", str(run.config)]) == 0
    done = json.loads(run.done_path.read_text())
    assert done["resumed_from"].endswith("step=4.ckpt") and done["step"] == 4
    assert (run.run_dir / "checkpoints" / "last.ckpt.corrupt").is_file()


@pytest.mark.slow
def test_sigterm_to_the_sweep_reaches_its_trainers(tmp_path):
    plan = planned(tmp_path, n_mixtures=2, max_steps=40, step_s=0.2)
    runs = read_plan_dir(plan)
    cmd = [sys.executable, "-m", "mixsampler.cli", "sweep", str(plan), "--jobs", "2"]
    with open(tmp_path / "out.log", "w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=_env(), start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(
            (r.run_dir / "checkpoints" / "last.ckpt").exists() for r in runs
        ):
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGTERM)  # the sweep alone, as a scheduler or `kill` does
        assert proc.wait(90) == 130
        time.sleep(0.5)
        left = subprocess.run(
            ["pgrep", "-g", str(proc.pid)], capture_output=True, text=True
        ).stdout.split()
        assert not left, f"trainers outlived the SIGTERM: {left}"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not any(r.done_path.exists() for r in runs)
    assert all((r.run_dir / "checkpoints" / "last.ckpt").exists() for r in runs)
    assert "interrupted" in (tmp_path / "out.log").read_text()


def test_an_os_error_during_the_sweep_is_one_line_exit_1(tmp_path, capsys, monkeypatch):
    import errno

    import mixsampler.sweep.runner as runner

    plan = planned(tmp_path, n_mixtures=1, max_steps=2)

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(plan / "logs" / "x.log"))

    monkeypatch.setattr(runner, "run_sweep", full_disk)
    err = _one_line_error(capsys, ["sweep", str(plan), "--no-progress"], 1)
    assert f"{plan / 'logs' / 'x.log'}: No space left on device" in err


@pytest.mark.slow
def test_trainers_import_the_installed_package_first_and_the_users_modules_too(tmp_path):
    from mixsampler.sweep.launchers import train_command
    from mixsampler.sweep.runs import SweepRun

    # A clone named `mixsampler` in the working directory must not shadow the installed one.
    (tmp_path / "mixsampler").mkdir()
    (tmp_path / "mixsampler" / "__init__.py").write_text("raise SystemExit('shadowed')\n")
    # A module of the user's beside it must still import (after the installed packages).
    (tmp_path / "usermod.py").write_text("class Model:\n    pass\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"class_path": "usermod.Model"}}))
    cmd = train_command(SweepRun("r", cfg, tmp_path / "run", None))
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "shadowed" not in res.stderr
    assert res.returncode != 3 and "does not import" not in res.stderr, res.stderr[-500:]
    assert "mixsampler train: error:" in res.stderr  # it got as far as LightningCLI's check
