"""LightningCLI: a sweep planned by `mixsampler plan` runs from its YAML configs as they are."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from tiny_lm import write_tar_shards

from mixsampler import cli as mixsampler_cli
from mixsampler import laws

pytest.importorskip("jsonargparse", reason="LightningCLI needs jsonargparse[signatures]")
from lightning.pytorch.cli import LightningCLI  # noqa: E402


def test_planned_configs_run_under_lightningcli(tmp_path: Path) -> None:
    for d in "ab":
        write_tar_shards(tmp_path / d, d, 24, per_shard=6)
    write_tar_shards(tmp_path / "val_c", "c", 5, per_shard=5)
    weights_file = tmp_path / "WEIGHTS.json"
    base = {
        "seed_everything": 0,
        "model": {"class_path": "tiny_lm.TinyLM", "init_args": {"dim": 8}},
        "data": {
            "class_path": "mixsampler.MixtureDataModule",
            "init_args": {
                "train": {"a": str(tmp_path / "a"), "b": str(tmp_path / "b")},
                "val": {"a": str(tmp_path / "a"), "c": str(tmp_path / "val_c")},
                "batch_size": 2,
                "collate_fn": "tiny_lm.collate_bytes",
            },
        },
        "trainer": {
            "accelerator": "cpu",
            "val_check_interval": 2,
            "logger": False,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
            "callbacks": [
                {
                    "class_path": "mixsampler.callbacks.DomainLossLogger",
                    "init_args": {"model_size": "total"},
                },
            ],
        },
    }
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    out = tmp_path / "sweep"
    assert (
        mixsampler_cli.main(
            [
                "plan",
                "--config",
                str(tmp_path / "base.yaml"),
                "--tokens",
                "128",
                "--n-mixtures",
                "2",
                "--tokens-per-step",
                "32",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    plan = list(csv.DictReader(open(out / "plan.csv")))
    assert len(plan) == 2
    for row in plan:
        LightningCLI(args=["fit", "--config", row["config"]], save_config_callback=None)
    table = laws.load_runs(sorted(str(p) for p in (out / "runs").glob("*.csv")))
    assert table.targets == ("a", "c") and table.domains == ("a", "b")
    assert list(table.n_tokens) == [64, 128, 64, 128]  # 2 samples x 16 tokens per step
    for i, row in enumerate(plan):
        assert table.weights[2 * i, 0] == pytest.approx(float(row["weight_a"]))
    # ... and fitted as they are (a short search: only acceptance is checked here).
    quick = laws.FitSettings(n_random=20, n_starts=1, niter=0, maxiter=20)
    result = laws.fit(table, "chinchilla", "c", settings=quick)
    assert result.n_rows == 4 and result.n_missing == 0

    # The main run: the optimized weights from a WEIGHTS.json through trainer.callbacks.
    weights_file.write_text(json.dumps({"weights": {"a": 0.0, "b": 1.0}}))
    main = yaml.safe_load(open(plan[0]["config"]))
    main["trainer"]["callbacks"].append(
        {
            "class_path": "mixsampler.callbacks.MixtureWeights",
            "init_args": {"weights_file": str(weights_file)},
        }
    )
    main["trainer"]["default_root_dir"] = str(tmp_path / "main")
    # The main run's rows go to a table of its own: appending to the proxy's under the proxy's
    # run name is refused (it would add rows to that run).
    for cb in main["trainer"]["callbacks"]:
        if cb["class_path"].endswith("DomainLossLogger"):
            cb["init_args"].update(path=str(tmp_path / "main" / "runs.csv"), run="main")
    (tmp_path / "main.yaml").write_text(yaml.safe_dump(main))
    run = LightningCLI(
        args=["fit", "--config", str(tmp_path / "main.yaml")], save_config_callback=None
    )
    assert run.model.train_domains[0] == ["b", "b"]
    assert json.loads((tmp_path / "main" / "mixture_weights.json").read_text())["weights"] == {
        "a": 0.0,
        "b": 1.0,
    }


def test_bad_init_args_name_the_argument(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = {
        "model": {"class_path": "tiny_lm.TinyLM"},
        "data": {
            "class_path": "mixsampler.MixtureDataModule",
            "init_args": {"train": {"a": [1, 2]}, "batch_size": 2},
        },
        "trainer": {
            "accelerator": "cpu",
            "max_steps": 1,
            "logger": False,
            "callbacks": [
                {
                    "class_path": "mixsampler.callbacks.DomainLossLogger",
                    "init_args": {"model_size": "everything"},
                }
            ],
        },
    }
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises((ValueError, SystemExit)) as exc:
        LightningCLI(
            args=["fit", "--config", str(tmp_path / "bad.yaml")], save_config_callback=None
        )
    message = str(exc.value) + capsys.readouterr().err
    assert "model_size can be non_embedding, total or a positive int, got 'everything'" in message
