"""A model written the common way through `mixsampler plan` + `mixsampler sweep`, with the
Trainer settings users already have (limit_val_batches), and a model module that is missing."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny_lm import HERE_DIR, write_tar_shards

from mixsampler import cli as mixsampler_cli

pytestmark = pytest.mark.slow


def _plan(tmp_path: Path, model: str) -> Path:
    root = tmp_path / "data"
    for d in "ab":
        write_tar_shards(root / d, d, 32, per_shard=8)
        write_tar_shards(root / f"val_{d}", d, 12, per_shard=4)
    base = {
        "seed_everything": 0,
        "model": {"class_path": model},
        "data": {
            "class_path": "mixsampler.MixtureDataModule",
            "init_args": {
                "train": {d: str(root / d) for d in "ab"},
                "val": {d: str(root / f"val_{d}") for d in "ab"},
                "batch_size": 4,
                "collate_fn": "plain_lm.collate",
            },
        },
        "trainer": {
            "accelerator": "cpu",
            "val_check_interval": 2,
            "limit_val_batches": 2,  # one batch per validation domain
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
        },
    }
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    out = tmp_path / "plan"
    args = ["plan", "--config", str(tmp_path / "base.yaml"), "--samples", "16"]
    args += ["--n-mixtures", "2", "-o", str(out)]
    assert mixsampler_cli.main(args) == 0  # 4 samples per step: max_steps 4
    return out


def _sweep(plan: Path) -> subprocess.CompletedProcess:
    path = os.pathsep.join(filter(None, [HERE_DIR, os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "mixsampler.cli", "sweep", str(plan), "--jobs", "2"]
    return subprocess.run(cmd + ["--retries", "0"], capture_output=True, text=True, env=env)


def test_limit_val_batches_through_a_sweep(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "plain_lm.PlainLM")
    res = _sweep(plan)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    tables = sorted((plan / "runs").glob("*.csv"))
    assert len(tables) == 2
    for table in tables:
        rows = list(csv.DictReader(open(table, newline="")))
        assert [int(r["step"]) for r in rows] == [2, 4]
        for r in rows:
            assert (r["val_batches_a"], r["val_batches_b"]) == ("1", "1")
            assert float(r["a_loss"]) > 0 and float(r["b_loss"]) > 0
            assert r["n_tokens_unit"] == "tokens"  # the shards carry ntok


def test_a_model_module_that_does_not_import_fails_the_sweep(tmp_path: Path, capsys) -> None:
    plan = _plan(tmp_path, "absent_user_pkg.models.Net")
    assert "absent_user_pkg" in capsys.readouterr().err  # plan warned already
    res = _sweep(plan)
    assert res.returncode != 0
    # The cause, in the first run's log. (Failing the sweep at once, with the import error on
    # its own output, is the sweep's part: mixsampler/sweep/, owned by "faults".)
    first = sorted((plan / "logs").glob("*/train.log"))[0]
    assert "absent_user_pkg" in first.read_text()
