"""plan reads what it can from the user's config: D per step, D's unit, schedules, imports."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from mixsampler import cli


def _base(tmp_path: Path, data: dict, model: dict | None = None, trainer: dict | None = None):
    cfg = {
        "model": model or {"class_path": "torch.nn.Identity"},
        "data": {
            "class_path": "mixsampler.MixtureDataModule",
            "init_args": {"train": {"cats": "c/", "dogs": "d/"}, **data},
        },
        "trainer": trainer or {"devices": 1, "accumulate_grad_batches": 2},
    }
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _plan(tmp_path: Path, base: Path, *extra: str) -> list[dict]:
    out = tmp_path / "sweep"
    argv = ["plan", "--config", str(base), "-o", str(out), "--n-mixtures", "3", *extra]
    assert cli.main(argv) == 0
    with open(out / "plan.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_samples_per_step_derived_for_images(tmp_path: Path, capsys) -> None:
    base = _base(tmp_path, {"batch_size": 4, "unit": "samples"})
    rows = _plan(tmp_path, base, "--samples", "80", "--law", "simple")
    # 4 samples x 1 device x 2 accumulation = 8 per step; 80 samples -> 10 steps.
    assert "D per optimizer step, derived from --config: 8 (samples)" in capsys.readouterr().out
    assert {r["max_steps"] for r in rows} == {"10"}
    assert {r["n_tokens_unit"] for r in rows} == {"samples"}
    assert {r["law"] for r in rows} == {"simple"}
    for r in rows:
        assert yaml.safe_load(open(r["config"]))["trainer"]["max_steps"] == 10


def test_tokens_per_step_needs_the_sequence_length(tmp_path: Path, capsys) -> None:
    base = _base(tmp_path, {"batch_size": 4, "unit": "tokens"})
    rows = _plan(tmp_path, base, "--tokens", "1280", "--seq-len", "16")
    assert {r["max_steps"] for r in rows} == {"10"}  # 4 x 2 x 16 = 128 tokens per step
    assert {r["n_tokens_unit"] for r in rows} == {"tokens"}
    rows = _plan(tmp_path / "b", base, "--tokens", "1280")
    assert {r["max_steps"] for r in rows} == {""}
    assert "give --seq-len" in capsys.readouterr().err


def test_given_tokens_per_step_wins(tmp_path: Path) -> None:
    base = _base(tmp_path, {"batch_size": 4})
    rows = _plan(tmp_path, base, "--samples", "80", "--samples-per-step", "40")
    assert {r["max_steps"] for r in rows} == {"2"}


def test_a_models_own_step_count_is_warned(tmp_path: Path, capsys) -> None:
    model = {"class_path": "torch.nn.Identity", "init_args": {"lr_decay_iters": 600}}
    _plan(tmp_path, _base(tmp_path, {"batch_size": 4}, model=model), "--samples", "80")
    err = capsys.readouterr().err
    assert "model.init_args.lr_decay_iters is set in --config" in err
    assert "--model NAME:model.init_args.lr_decay_iters=STEPS" in err


def test_an_unimportable_class_path_is_named_with_the_way_out(tmp_path: Path, capsys) -> None:
    base = _base(tmp_path, {"batch_size": 4, "collate_fn": "mypkg_absent.data.collate"})
    _plan(tmp_path, base, "--samples", "80")
    err = capsys.readouterr().err
    assert "data.init_args.collate_fn='mypkg_absent.data.collate' cannot be imported" in err
    assert "No module named 'mypkg_absent'" in err and "PYTHONPATH" in err


def test_a_module_in_the_plan_folder_counts_as_importable(tmp_path: Path, capsys) -> None:
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "my_collate_mod.py").write_text("def collate(x):\n    return x\n")
    base = _base(tmp_path, {"batch_size": 4, "collate_fn": "my_collate_mod.collate"})
    _plan(tmp_path, base, "--samples", "80")
    assert "cannot be imported" not in capsys.readouterr().err


@pytest.mark.parametrize("devices", ["auto", [0, 1]])
def test_devices_unknown_at_plan_time_leaves_max_steps_alone(tmp_path: Path, devices) -> None:
    base = _base(tmp_path, {"batch_size": 4}, trainer={"devices": devices})
    rows = _plan(tmp_path, base, "--samples", "80")
    assert {r["max_steps"] for r in rows} == {""}
