"""The demo's training recipe: the learning-rate schedule a Trainer really applies, and the
width-scaled initialisation."""

from __future__ import annotations

import math
import warnings

import lightning.pytorch as pl
import pytest
import torch
from demo_config import FULL, scaled
from demo_model import GPTConfig, TinyGPT, TrainConfig
from demo_runs import lr_at, make_model, train_settings
from torch.utils.data import DataLoader


def test_lr_factor_warms_up_then_decays_to_the_floor_at_the_last_step() -> None:
    tc = TrainConfig(lr=1e-3, warmup_steps=5, decay_steps=50, min_lr_ratio=0.1)
    f = [tc.lr_factor(s) for s in range(50)]
    assert f[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    after = f[5:]
    assert all(a >= b for a, b in zip(after, after[1:], strict=False))  # never rises
    assert f[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 45 / 46)))
    assert tc.lr_factor(50) == pytest.approx(0.1)
    assert tc.lr_factor(500) == pytest.approx(0.1)  # stays at the floor past the planned end
    constant = TrainConfig(warmup_steps=5)
    assert [constant.lr_factor(s) for s in (4, 5, 10_000)] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"warmup_steps": 10, "decay_steps": 10}, "decay_steps"),
        ({"decay_steps": -1}, "decay_steps"),
        ({"min_lr_ratio": 1.5}, "min_lr_ratio"),
    ],
)
def test_train_config_rejects_bad_schedules(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        TrainConfig(**kwargs)


class _RecordLR(pl.Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_the_trainer_applies_the_schedule_step_by_step(tmp_path) -> None:
    steps = 12
    tc = TrainConfig(lr=1e-2, warmup_steps=3, decay_steps=steps, min_lr_ratio=0.1)
    model = TinyGPT(GPTConfig(seq_len=8, n_layer=1, n_head=1, d_model=8), tc)
    tokens = torch.randint(0, 256, (steps * 2, 9))
    loader = DataLoader([{"tokens": t} for t in tokens], batch_size=2)
    rec = _RecordLR()
    trainer = pl.Trainer(
        max_steps=steps,
        default_root_dir=str(tmp_path),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[rec],
    )
    trainer.fit(model, train_dataloaders=loader)
    assert rec.lrs == pytest.approx([1e-2 * tc.lr_factor(s) for s in range(steps)])


def test_init_std_sets_the_weights_scale() -> None:
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(seq_len=16, n_layer=2, n_head=2, d_model=64, init_std=0.1))
    block = model.blocks[0]
    assert model.tok_emb.weight.std().item() == pytest.approx(0.1, rel=0.05)
    assert block.qkv.weight.std().item() == pytest.approx(0.1, rel=0.05)
    # residual projections keep GPT-2's 1 / sqrt(2 * n_layer) on top
    assert block.fc_out.weight.std().item() == pytest.approx(0.1 / 2, rel=0.05)
    assert torch.count_nonzero(block.qkv.bias) == 0


def test_demo_init_gain_scales_with_width_and_none_is_gpt2() -> None:
    torch.manual_seed(0)
    for width in (32, 96):
        model = make_model(scaled(FULL, init_gain=0.55), width)
        expected = 0.55 / math.sqrt(width)
        assert model.cfg.init_std == pytest.approx(expected)
        assert model.blocks[0].fc.weight.std().item() == pytest.approx(expected, rel=0.05)
    assert make_model(scaled(FULL, init_gain=None), 64).cfg.init_std == 0.02


def test_demo_config_checks_the_recipe() -> None:
    with pytest.raises(ValueError, match="init_gain"):
        scaled(FULL, init_gain=0.0)
    with pytest.raises(ValueError, match="min_lr_ratio"):
        scaled(FULL, min_lr_ratio=-0.1)
    with pytest.warns(UserWarning, match="schedule no proxy ran"):
        scaled(FULL, main_tokens=2 * FULL.proxy_tokens)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scaled(FULL, main_tokens=2 * FULL.proxy_tokens, lr_decay=False)


def test_lr_ref_width_scales_the_rate_inversely_with_width() -> None:
    assert lr_at(FULL, 16) == lr_at(FULL, 48) == FULL.lr  # off by default
    cfg = scaled(FULL, lr=2e-3, lr_ref_width=48)
    assert lr_at(cfg, 48) == pytest.approx(2e-3)
    assert lr_at(cfg, 16) == pytest.approx(6e-3)
    assert train_settings(cfg, 100, 24)["lr"] == pytest.approx(4e-3)
    assert make_model(cfg, 24).train_cfg.lr == pytest.approx(4e-3)
    with pytest.raises(ValueError, match="lr_ref_width"):
        scaled(FULL, lr_ref_width=0)
