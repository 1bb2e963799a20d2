"""DomainLossLogger: per-domain token-weighted losses, run-table rows, crash safety."""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from tiny_lm import HERE_DIR, QUIET_TRAINER, TinyLM, samples
from torch.utils.data import DataLoader

from mixsampler import laws
from mixsampler.callbacks import DomainLossLogger

TRAINER_KW = {**QUIET_TRAINER, "devices": 1, "enable_checkpointing": False}


def _train_samples(n: int = 24) -> list[dict]:
    out = []
    for i, (sa, sb) in enumerate(zip(samples("a", n), samples("b", n), strict=True)):
        out.append(sa if i % 3 else sb)  # 2/3 a, 1/3 b
    return [s | {"__ntok__": int(s["mask"].sum())} for s in out[:n]]


def _direct(model: TinyLM, data: list[dict]) -> dict[str, float]:
    """The per-domain loss a separate evaluation of each domain gives."""
    sums: dict[str, float] = {}
    toks: dict[str, float] = {}
    model.eval()
    with torch.no_grad():
        for s in data:
            batch = {"x": s["x"][None], "mask": s["mask"][None]}
            loss_sum, n = model.token_losses(batch)
            sums[s["__domain__"]] = sums.get(s["__domain__"], 0.0) + float(loss_sum)
            toks[s["__domain__"]] = toks.get(s["__domain__"], 0.0) + float(n)
    return {d: sums[d] / toks[d] for d in sums}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_losses_equal_direct_computation_and_rows_load(tmp_path: Path) -> None:
    pl.seed_everything(0)
    train = _train_samples(24)
    val = samples("a", 7) + samples("b", 5) + samples("c", 6)  # c: a held-out target
    model = TinyLM()
    path = tmp_path / "runs.csv"
    cb = DomainLossLogger(path, run="r1", domains=["a", "b", "c"], weights={"a": 2, "b": 1})
    # The per-domain metrics are monitorable by Lightning's own callbacks.
    ck = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="val/loss/c", save_top_k=1)
    stop = EarlyStopping(monitor="val/loss/mean", patience=10)
    kw = {**TRAINER_KW, "enable_checkpointing": True}
    trainer = pl.Trainer(max_steps=6, val_check_interval=3, callbacks=[cb, ck, stop], **kw)
    trainer.fit(model, DataLoader(train, batch_size=4), DataLoader(val, batch_size=5))

    direct = _direct(model, val)
    rows = _rows(path)
    assert [r["step"] for r in rows] == ["3", "6"]
    assert float(ck.best_model_score) == pytest.approx(min(float(r["c_loss"]) for r in rows))
    last = rows[-1]
    for d in "abc":
        assert float(last[f"{d}_loss"]) == pytest.approx(direct[d], rel=1e-9)
        assert float(trainer.callback_metrics[f"val/loss/{d}"]) == pytest.approx(
            direct[d], rel=1e-6
        )
    assert float(trainer.callback_metrics["val/loss/mean"]) == pytest.approx(
        sum(direct.values()) / 3, rel=1e-6
    )
    # A mean of batch means (batches mix domains and lengths) would not be the same number.
    assert len({round(v, 6) for v in direct.values()}) == 3

    # N: non-embedding parameters (the head), D: tokens of the consumed batches.
    assert int(last["model_size"]) == 8 * 256 + 256
    assert int(last["n_tokens"]) == sum(s["__ntok__"] for s in train)
    assert int(rows[0]["n_tokens"]) == sum(s["__ntok__"] for s in train[:12])
    tok = {d: sum(s["__ntok__"] for s in train if s["__domain__"] == d) for d in "ab"}
    assert float(last["realized_a"]) == pytest.approx(tok["a"] / (tok["a"] + tok["b"]))
    assert float(last["weight_a"]) == pytest.approx(2 / 3)

    table = laws.load_runs([str(path)])
    assert table.domains == ("a", "b")
    assert set(table.targets) == {"a", "b", "c"}
    assert list(table.n_tokens) == [int(r["n_tokens"]) for r in rows]
    assert math.isclose(table.losses["c"][-1], direct["c"], rel_tol=1e-9)


def test_dict_of_validation_loaders_names_the_domain(tmp_path: Path) -> None:
    pl.seed_everything(0)
    strip = lambda ss: [{k: v for k, v in s.items() if k != "__domain__"} for s in ss]  # noqa: E731
    val = {"c": samples("c", 5), "a": samples("a", 9)}
    model = TinyLM()
    cb = DomainLossLogger(tmp_path / "r.csv", weights={"a": 1.0, "b": 0.0}, model_size="total")
    trainer = pl.Trainer(max_steps=2, callbacks=[cb], limit_val_batches=100, **TRAINER_KW)
    loaders = {d: DataLoader(strip(v), batch_size=4) for d, v in val.items()}
    trainer.fit(model, DataLoader(_train_samples(8), batch_size=4), loaders)
    direct = {d: _direct(model, v)[d] for d, v in val.items()}
    (row,) = _rows(tmp_path / "r.csv")
    assert float(row["a_loss"]) == pytest.approx(direct["a"], rel=1e-9)
    assert float(row["c_loss"]) == pytest.approx(direct["c"], rel=1e-9)
    assert int(row["model_size"]) == sum(p.numel() for p in model.parameters())


def test_appending_to_a_file_with_other_columns_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("run,step,model_size,n_tokens,weight_x,x_loss\n")
    cb = DomainLossLogger(path, domains=["a"], weights={"a": 1.0})
    trainer = pl.Trainer(max_steps=1, callbacks=[cb], **TRAINER_KW)
    with pytest.raises(ValueError, match=r"runs.csv.*weight_a"):
        trainer.fit(
            TinyLM(),
            DataLoader(_train_samples(4), batch_size=4),
            DataLoader(samples("a", 2), batch_size=2),
        )


def test_validation_step_outside_the_contract_is_named(tmp_path: Path) -> None:
    class Plain(TinyLM):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            loss_sum, n = self.token_losses(batch)
            self.log("val_loss", loss_sum.sum() / n.sum())  # logged, not returned

    cb = DomainLossLogger(None, domains=["a"])
    trainer = pl.Trainer(max_steps=1, callbacks=[cb], **TRAINER_KW)
    with pytest.raises(ValueError, match="validation_step must return its loss.*got NoneType"):
        trainer.fit(
            Plain(),
            DataLoader(_train_samples(4), batch_size=4),
            DataLoader(samples("a", 2), batch_size=2),
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"model_size": "embedding"},
            "model_size can be non_embedding, total or a positive int, got 'embedding'",
        ),
        ({"model_size": -3}, "got -3"),
        ({"weights": {"a": -1.0}}, r"weights\['a'\] must be a finite number >= 0, got -1.0"),
        ({"domains": "abc"}, "domains must be a list of domain names, got 'abc'"),
        ({"tokens_per_sample": 0}, "tokens_per_sample must be an integer >= 1 or None, got 0"),
        ({"run": ""}, "run must be a non-empty"),
    ],
)
def test_constructor_validates(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DomainLossLogger("runs.csv", **kwargs)


_KILL_SCRIPT = """
import sys, time
sys.path.insert(0, {here!r})
import lightning.pytorch as pl, torch
from torch.utils.data import DataLoader
from mixsampler.callbacks import DomainLossLogger
from tiny_lm import TinyLM, samples

class Slow(TinyLM):
    def training_step(self, batch, batch_idx):
        time.sleep(0.05)
        return super().training_step(batch, batch_idx)

torch.set_num_threads(1)
train = [s | {{"__ntok__": 12}} for s in samples("a", 10)] * 1000
cb = DomainLossLogger({path!r}, run="killed", domains=["a"], weights={{"a": 1.0}})
trainer = pl.Trainer(accelerator="cpu", max_steps=100000, val_check_interval=1, logger=False,
                     callbacks=[cb],
                     enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, num_sanity_val_steps=0)
trainer.fit(Slow(), DataLoader(train, batch_size=2), DataLoader(samples("a", 4), batch_size=2))
"""


def test_sigkill_mid_training_keeps_every_finished_row(tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    script = tmp_path / "train.py"
    script.write_text(_KILL_SCRIPT.format(here=HERE_DIR, path=str(path)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE_DIR, os.getcwd()])}
    log = open(tmp_path / "stderr.txt", "wb")
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stderr=log, stdout=log)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if path.exists() and path.read_text().count("\n") >= 6:
                break
            time.sleep(0.05)
        assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = path.read_text()
    assert text.endswith("\n")  # no half-written row
    rows = _rows(path)
    assert len(rows) >= 5
    assert [int(r["step"]) for r in rows] == list(range(1, len(rows) + 1))
    table = laws.load_runs([str(path)])
    assert len(table.n_tokens) == len(rows)
    assert list(table.n_tokens) == [12 * 2 * (i + 1) for i in range(len(rows))]
