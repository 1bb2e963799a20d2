"""The training side of DomainLossLogger: D per training domain, and the last validation.

Owns the count of the samples and tokens each training domain gave (from the batches' domains
and token counts, or, with a warning, the sampler's counters), its sum with the counts restored
from a checkpoint, and the request for one more validation at the last step. A mixin of
:class:`mixsampler.callbacks.domain_loss.DomainLossLogger`, which creates the state in ``__init__``.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from mixsampler.callbacks._batches import train_meta
from mixsampler.callbacks._common import counts_samples, find_mixture_dataset


class _TrainCounts(Callback):
    """Counts D on every rank as training batches arrive (state set by DomainLossLogger)."""

    tokens_per_sample: int | None
    validate_at_end: bool
    _train_domains: list[str]
    _train_slot: dict[str, int]
    _consumed: torch.Tensor | None
    _restored: dict[str, dict[str, float]]
    _counting: str
    _warned_no_tokens: bool
    _n_tokens_unit: str
    _sums: torch.Tensor | None

    @override
    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        self._validate_at_the_end(trainer)
        if self._consumed is None or not self._train_domains:
            return
        meta = train_meta(trainer, batch)
        if meta is None:
            if self._counting == "batches":
                self._counting = "sampler"
                rank_zero_warn(
                    "DomainLossLogger: the training batches' domains are unknown (batches from"
                    " neither MixtureDataModule nor dicts with '__domain__'); D and the realized"
                    " shares fall back to the sampler's counters, which run ahead of training by"
                    " the prefetched batches. Train with mixsampler.MixtureDataModule for exact"
                    " counts."
                )
            return
        domains, ntok = meta
        try:
            idx = [self._train_slot[d] for d in domains]
        except KeyError as err:
            raise ValueError(
                f"training batch has domain {err.args[0]!r}, not one of the training domains"
                f" {self._train_domains}"
            ) from None
        dev = self._consumed.device
        index = torch.tensor(idx, dtype=torch.long).to(dev, non_blocking=True)
        ones = torch.ones(len(idx), dtype=torch.float64, device=dev)
        self._consumed[0].index_add_(0, index, ones)
        if ntok is not None:
            self._n_tokens_unit = "tokens"
            tokens = torch.tensor(ntok, dtype=torch.float64).to(dev, non_blocking=True)
        elif self.tokens_per_sample is not None:
            self._n_tokens_unit = "tokens"
            tokens = ones * self.tokens_per_sample
        else:
            # Images, audio: D counts samples by design (unit="samples"); the run table's
            # n_tokens_unit column says so, and a warning meant for text would be noise.
            if not self._warned_no_tokens and not counts_samples(trainer):
                self._warned_no_tokens = True
                rank_zero_warn(
                    "DomainLossLogger: the training samples carry no token count ('ntok' field"
                    " or MixtureDataModule(length_fn=...)) and tokens_per_sample is not set, so"
                    " n_tokens counts samples, not tokens."
                )
            tokens = ones
        self._consumed[1].index_add_(0, index, tokens)

    def _validate_at_the_end(self, trainer: pl.Trainer) -> None:
        # Lightning validates at the last step only when it falls on val_check_interval (a run
        # of 97 steps at interval 20 would end with no row after step 80). Asking the loop to
        # stop at the step it ends anyway makes it validate once more there.
        if (
            self.validate_at_end
            and trainer.max_steps > 0
            and trainer.global_step >= trainer.max_steps
            and not trainer.should_stop
        ):
            trainer.should_stop = True

    def _sampler_counts(self, trainer: pl.Trainer) -> list[list[float]]:
        ds = find_mixture_dataset(trainer)
        counts = ds.counts() if ds is not None and hasattr(ds, "counts") else {}
        vec = torch.tensor(
            [
                [float(counts.get(unit, {}).get(d, 0)) for d in self._train_domains]
                for unit in ("samples", "tokens")
            ],
            dtype=torch.float64,
        )
        device = self._sums.device if self._sums is not None else "cpu"
        return trainer.strategy.reduce(vec.to(device), reduce_op="sum").cpu().tolist()

    def _with_restored(self, consumed: list[list[float]]) -> tuple[dict, dict]:
        samples = {
            d: self._restored["samples"].get(d, 0.0) + consumed[0][i]
            for i, d in enumerate(self._train_domains)
        }
        tokens = {
            d: self._restored["tokens"].get(d, 0.0) + consumed[1][i]
            for i, d in enumerate(self._train_domains)
        }
        return samples, tokens
