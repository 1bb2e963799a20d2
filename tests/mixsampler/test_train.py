"""`mixsampler train`: planned configs run as they are, checkpoint, resume, and mark completion."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

HERE = Path(__file__).resolve().parent
TINY = HERE.parent / "helpers"
from tiny_lm import TinyLM, write_domain_shards  # noqa: E402

from mixsampler import cli as mixsampler_cli  # noqa: E402

# Subprocesses (the sweep's trainers) import the test models from these folders.
TEST_PATH = os.pathsep.join([str(HERE), str(TINY)])


class SlowLM(TinyLM):
    """TinyLM whose steps take a while, so a test can kill a sweep between two checkpoints."""

    def __init__(self, dim: int = 8, step_s: float = 0.0) -> None:
        super().__init__(dim=dim)
        self.step_s = step_s

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Any:
        time.sleep(self.step_s)
        return super().training_step(batch, batch_idx)


def planned(tmp_path: Path, *, n_mixtures: int, max_steps: int, step_s: float = 0.0) -> Path:
    """A plan folder of tiny runs (written by `mixsampler plan`), validated every 2 steps."""
    train = write_domain_shards(tmp_path / "shards", 24, per_shard=6)
    base = {
        "seed_everything": 0,
        "model": {"class_path": "test_train.SlowLM", "init_args": {"dim": 8, "step_s": step_s}},
        "data": {
            "class_path": "mixsampler.MixtureDataModule",
            "init_args": {
                "train": train,
                "val": train,
                "batch_size": 2,
                "collate_fn": "tiny_lm.collate_bytes",
            },
        },
        "trainer": {
            "accelerator": "cpu",
            "val_check_interval": 2,
            "logger": False,
            "enable_checkpointing": False,  # what a test config says; train must override it
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
            "callbacks": [
                {
                    "class_path": "mixsampler.callbacks.DomainLossLogger",
                    "init_args": {"model_size": "total"},
                }
            ],
        },
    }
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    out = tmp_path / "plan"
    args = ["plan", "--config", str(tmp_path / "base.yaml"), "--tokens", str(32 * max_steps)]
    args += ["--n-mixtures", str(n_mixtures), "--tokens-per-step", "32", "-o", str(out)]
    args += ["--no-count"]  # D is nominal here: a run reads 2 samples a step, not 32
    assert mixsampler_cli.main(args) == 0
    return out


def _rows(path: Path) -> list[tuple[str, int]]:
    import csv

    with open(path, newline="") as f:
        return [(r["run"], int(r["step"])) for r in csv.DictReader(f)]


@pytest.fixture
def one_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(HERE))
    plan = planned(tmp_path, n_mixtures=1, max_steps=4)
    return next((plan / "configs").glob("*.yaml"))


def test_train_runs_a_planned_config_checkpoints_and_marks_done(
    one_run: Path, capsys: pytest.CaptureFixture
) -> None:
    assert mixsampler_cli.main(["train", str(one_run)]) == 0
    cfg = yaml.safe_load(one_run.read_text())
    run_dir = Path(cfg["trainer"]["default_root_dir"])
    done = json.loads((run_dir / "DONE.json").read_text())
    assert done["step"] == done["max_steps"] == 4 and done["resumed_from"] is None
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert not list(run_dir.rglob("*.partial"))
    table = Path(cfg["trainer"]["callbacks"][0]["init_args"]["path"])
    assert [s for _, s in _rows(table)] == [2, 4]
    assert "finished at step 4" in capsys.readouterr().out

    # A finished run is not trained again: same marker, same rows.
    mtime = (run_dir / "DONE.json").stat().st_mtime_ns
    assert mixsampler_cli.main(["train", str(one_run)]) == 0
    assert "already finished" in capsys.readouterr().out
    assert (run_dir / "DONE.json").stat().st_mtime_ns == mtime
    assert [s for _, s in _rows(table)] == [2, 4]

    # Without its marker (killed after the last checkpoint) it resumes instead of restarting.
    (run_dir / "DONE.json").unlink()
    assert mixsampler_cli.main(["train", str(one_run)]) == 0
    done = json.loads((run_dir / "DONE.json").read_text())
    assert done["resumed_from"] == str(run_dir / "checkpoints" / "last.ckpt")
    assert [s for _, s in _rows(table)] == [2, 4]

    # Killed after a row but before any checkpoint: this config's rows are measured again.
    import shutil

    (run_dir / "DONE.json").unlink()
    shutil.rmtree(run_dir / "checkpoints")
    assert mixsampler_cli.main(["train", str(one_run)]) == 0
    assert json.loads((run_dir / "DONE.json").read_text())["resumed_from"] is None
    assert [s for _, s in _rows(table)] == [2, 4]


def test_train_refuses_a_changed_config(one_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert mixsampler_cli.main(["train", str(one_run)]) == 0
    capsys.readouterr()
    # Finished under other settings: neither skipped nor retrained silently.
    assert mixsampler_cli.main(["train", str(one_run), "--trainer.max_steps=6"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "finished under another config" in err and str(one_run) in err

    # Killed, then resumed under other settings: refused, naming the checkpoint.
    run_dir = Path(yaml.safe_load(one_run.read_text())["trainer"]["default_root_dir"])
    (run_dir / "DONE.json").unlink()
    assert mixsampler_cli.main(["train", str(one_run), "--trainer.max_steps=6"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "last.ckpt was written under another config" in err


def test_train_bad_input_is_one_line(tmp_path: Path, one_run: Path, capsys) -> None:
    assert mixsampler_cli.main(["train", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.yaml' does not exist" in err
    assert mixsampler_cli.main(["train", str(one_run), "--trainer.no_such_key=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(one_run) in err and "no_such_key" in err
    assert mixsampler_cli.main(["train", str(one_run), "max_steps=3"]) == 2
    assert "--key=value, got 'max_steps=3'" in capsys.readouterr().err


def test_two_trainers_never_share_a_run(one_run: Path) -> None:
    import fcntl

    run_dir = Path(yaml.safe_load(one_run.read_text())["trainer"]["default_root_dir"])
    run_dir.mkdir(parents=True)
    with open(run_dir / "train.lock", "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        with pytest.raises(ValueError, match="being trained by another process"):
            from mixsampler.sweep.train import train

            train(one_run)
    assert not (run_dir / "DONE.json").exists()
