"""DomainLossLogger's D when batches carry no token counts, or no domains at all.

The training side counts D per domain from each batch's domains and ``__ntok__``; without
``__ntok__`` it uses ``tokens_per_sample`` or counts samples (and says so), and without domains
it falls back, with a warning, to the sampler's own counters.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
from tiny_lm import QUIET_TRAINER, TinyLM, collate_bytes, samples, write_domain_shards
from torch.utils.data import DataLoader

from mixsampler import MixtureDataset
from mixsampler.callbacks import DomainLossLogger

TRAINER_KW = {**QUIET_TRAINER, "devices": 1, "enable_checkpointing": False}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _train(n: int) -> list[dict]:
    # 2 of 3 samples from a, 1 from b; no "__ntok__": the batches say their domains only.
    return [s for i, s in enumerate(samples("a", n) + samples("b", n)) if i % 2 == 0][:n]


@pytest.mark.parametrize("tokens_per_sample", [None, 10])
def test_batches_without_token_counts(tmp_path: Path, tokens_per_sample: int | None) -> None:
    pl.seed_everything(0)
    train = _train(12)
    path = tmp_path / "runs.csv"
    cb = DomainLossLogger(
        path, run="r", domains=["a"], weights={"a": 1, "b": 1}, tokens_per_sample=tokens_per_sample
    )
    assert cb.tokens_per_sample == tokens_per_sample
    trainer = pl.Trainer(max_steps=3, val_check_interval=3, callbacks=[cb], **TRAINER_KW)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer.fit(TinyLM(), DataLoader(train, batch_size=4), DataLoader(samples("a", 3)))
    said = [str(w.message) for w in record if "carry no token count" in str(w.message)]
    (row,) = _rows(path)
    per = {d: sum(s["__domain__"] == d for s in train) for d in "ab"}
    if tokens_per_sample is None:
        assert len(said) == 1  # once per fit, not once per batch
        assert row["n_tokens_unit"] == "samples"
        assert int(row["n_tokens"]) == len(train)
    else:
        assert said == []
        assert row["n_tokens_unit"] == "tokens"
        assert int(row["n_tokens"]) == 10 * len(train)
    assert float(row["realized_a"]) == pytest.approx(per["a"] / len(train))
    assert cb.state_dict()["samples"] == {d: float(n) for d, n in per.items()}


class _NoDomains(TinyLM):
    def training_step(self, batch, batch_idx):
        loss_sum, n = self.token_losses(batch)
        return loss_sum.sum() / n.sum()


def _strip_domains(batch: list[dict]) -> dict:
    out = collate_bytes(batch)
    out.pop("__domain__", None)
    return out


def test_batches_without_domains_fall_back_to_the_sampler(tmp_path: Path) -> None:
    pl.seed_everything(0)
    shards = write_domain_shards(tmp_path / "data", 24)
    ds = MixtureDataset(shards, {"a": 0.75, "b": 0.25}, shuffle_buffer=4)
    path = tmp_path / "runs.csv"
    cb = DomainLossLogger(path, run="r", domains=["a"])
    trainer = pl.Trainer(max_steps=2, val_check_interval=2, callbacks=[cb], **TRAINER_KW)
    train = DataLoader(ds, batch_size=4, collate_fn=_strip_domains)
    with pytest.warns(UserWarning, match="fall back to the sampler's counters"):
        trainer.fit(_NoDomains(), train, DataLoader(samples("a", 3)))
    (row,) = _rows(path)
    # The sampler's counters, summed over ranks: at least the trained batches (16 tokens per
    # sample), and more by what Lightning fetched ahead; nothing is fetched after the row.
    counts = ds.counts()
    assert int(row["n_tokens"]) == sum(counts["tokens"].values()) >= 2 * 4 * 16
    assert float(row["realized_a"]) == pytest.approx(
        counts["samples"]["a"] / sum(counts["samples"].values())
    )
    # The state follows the sampler too: no counts from batches were kept.
    assert cb.state_dict()["samples"] == {}
