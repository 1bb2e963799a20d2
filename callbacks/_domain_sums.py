"""The validation side of DomainLossLogger: per-domain loss sums in fixed slots.

Owns the slots (one per validation domain, the same on every rank so the one all-reduce has
one shape), and the sums of loss and scored tokens per slot, from each batch's loss in either
form ``validation_step`` may return (a scalar, or the dict of per-sample sums; see
``callbacks._batches.val_parts``). A mixin of
:class:`mixsampler.callbacks.domain_loss.DomainLossLogger`,
which creates the state in ``__init__`` and reduces the sums at the end of the epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from mixsampler.callbacks._batches import val_meta, val_parts
from mixsampler.callbacks._common import counts_samples


class _ValidationSums(Callback):
    """Sums each validation batch's loss into its domain's slot (state set by DomainLossLogger)."""

    _val_domains: list[str]
    _val_slot: dict[str, int]
    _loader_domains: list[str] | None
    _sums: torch.Tensor | None
    _counts: torch.Tensor | None
    _batches: torch.Tensor | None
    _warned: set[str]

    @override
    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loaders = trainer.val_dataloaders
        self._loader_domains = list(loaders) if isinstance(loaders, Mapping) else None
        if self._loader_domains:
            # Every rank holds the same dict, so every rank adds the same slots in the same order.
            for d in self._loader_domains:
                if d not in self._val_slot:
                    self._val_slot[d] = len(self._val_domains)
                    self._val_domains.append(d)
        if counts_samples(trainer):
            # unit="samples" (images, audio): a sample is the unit a loss is averaged over,
            # so weighting batches by their samples is exact; no warning meant for text.
            self._warned.add("samples")
        n = len(self._val_domains)
        self._sums = torch.zeros(n, dtype=torch.float64, device=pl_module.device)
        self._counts = torch.zeros(n, dtype=torch.float64, device=pl_module.device)
        # Batches per domain: the run table says how many each loss is the mean over.
        self._batches = torch.zeros(n, dtype=torch.float64, device=pl_module.device)

    @override
    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._sums is None or self._counts is None:
            return
        meta = val_meta(trainer, batch, batch_idx, dataloader_idx)
        domains, ntok = meta if meta is not None else (None, None)
        loader_domain = (
            self._loader_domains[dataloader_idx]
            if self._loader_domains and dataloader_idx < len(self._loader_domains)
            else None
        )
        name, loss_sum, n_tok = val_parts(outputs, domains, ntok, loader_domain, self._warned)
        if name is None:
            raise ValueError(
                "cannot tell the domain of a validation batch: use MixtureDataModule(val=...),"
                " a dict of validation loaders keyed by domain, or return 'domain' from"
                " validation_step"
            )
        if isinstance(name, str):
            slot = self._slot(name)
            self._sums[slot] += loss_sum.to(self._sums.device, torch.float64).sum()
            self._counts[slot] += n_tok.to(self._counts.device, torch.float64).sum()
            if self._batches is not None:
                self._batches[slot] += 1
            return
        if not (len(name) == loss_sum.numel() == n_tok.numel()):
            raise ValueError(
                f"validation_step returned {loss_sum.numel()} loss_sum, {n_tok.numel()} n_tokens"
                f" and {len(name)} domains; they must have one entry per sample"
            )
        index = torch.tensor([self._slot(d) for d in name], dtype=torch.long)
        index = index.to(self._sums.device, non_blocking=True)
        self._sums.index_add_(0, index, loss_sum.to(self._sums.device, torch.float64))
        self._counts.index_add_(0, index, n_tok.to(self._counts.device, torch.float64))
        if self._batches is not None:
            for d in set(name):
                self._batches[self._slot(d)] += 1

    def _slot(self, domain: str) -> int:
        slot = self._val_slot.get(domain)
        if slot is None:
            # Slots are fixed so the one collective has the same shape on every rank.
            raise ValueError(
                f"validation batch has domain {domain!r}, not one of {self._val_domains};"
                " list every validation domain in DomainLossLogger(domains=...)"
            )
        return slot
