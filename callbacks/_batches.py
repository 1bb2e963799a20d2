"""What DomainLossLogger reads of a batch: its domains and tokens, and the validation loss.

The batch itself is the user's (any type). Domains and token counts come from the
:class:`~mixsampler.datamodule.BatchMeta` that MixtureDataModule's loaders carry beside each
batch; a plain DataLoader whose dict batches hold ``"__domain__"`` (and ``"__ntok__"``) works too.

Example:
    >>> val_parts(torch.tensor(2.0), ("a", "a"), (3, 5), None)
    ('a', tensor(16., dtype=torch.float64), tensor(8., dtype=torch.float64))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn

__all__ = ["train_meta", "val_meta", "val_parts"]

CONTRACT = (
    "validation_step must return its loss: a scalar tensor (the batch's mean loss per token;"
    " batches are weighted by their tokens), or a dict with 'loss_sum' (Tensor[B], summed token"
    " losses per sample) and 'n_tokens' (Tensor[B]); see callbacks.domain_loss"
)

Meta = tuple[Sequence[str], Sequence[int] | None]


def _from_loader(loader: Any, key: Any) -> Meta | None:
    if not callable(getattr(loader, "meta_for", None)):
        return None
    meta = loader.meta_for(key)
    return (meta.domains, meta.ntok) if meta is not None else None


def _from_batch(batch: Any) -> Meta | None:
    if not isinstance(batch, Mapping) or batch.get("__domain__") is None:
        return None
    domains = batch["__domain__"]
    domains = [domains] if isinstance(domains, str) else list(domains)
    ntok = batch.get("__ntok__")
    if ntok is not None:
        ntok = torch.as_tensor(ntok).reshape(-1).tolist()
        if len(ntok) != len(domains):
            raise ValueError(
                f"batch['__ntok__'] has {len(ntok)} entries for {len(domains)} samples"
            )
    return domains, ntok


def train_meta(trainer: pl.Trainer, batch: Any) -> Meta | None:
    """Domains and token counts of the training batch in ``training_step`` now (None: unknown)."""
    # Started batches count across epochs and resumes: one key per batch, the same for every
    # callback that asks.
    key = trainer.fit_loop.epoch_loop.batch_progress.total.started
    return _from_loader(trainer.train_dataloader, key) or _from_batch(batch)


def val_meta(trainer: pl.Trainer, batch: Any, batch_idx: int, dataloader_idx: int) -> Meta | None:
    """Domains and token counts of a validation batch (None: unknown)."""
    loaders = trainer.val_dataloaders
    if isinstance(loaders, Mapping):
        loaders = list(loaders.values())
    if isinstance(loaders, (list, tuple)):
        loader = loaders[dataloader_idx] if dataloader_idx < len(loaders) else None
    else:
        loader = loaders
    return _from_loader(loader, batch_idx) or _from_batch(batch)


def val_parts(
    outputs: Any,
    domains: Sequence[str] | None,
    ntok: Sequence[int] | None,
    loader_domain: Any,
    warned: set[str] | None = None,
) -> tuple[str | Sequence[str], torch.Tensor, torch.Tensor]:
    """(domain or per-sample domains, loss sum(s), token count(s)) of one validation batch.

    A scalar loss is the batch's mean per token: times the batch's tokens it is the batch's
    summed loss, exactly so for fixed-length samples (every sample scores the same number of
    tokens). Variable-length samples whose loss skips padding, or a loss over other tokens than
    ``ntok`` counts, need the dict form.
    """
    if isinstance(outputs, Mapping) and "loss_sum" in outputs and "n_tokens" in outputs:
        # float64 before summing: the sums over ranks must equal one process's, not nearly.
        loss_sum = torch.as_tensor(outputs["loss_sum"]).detach().to(torch.float64)
        n_tok = torch.as_tensor(outputs["n_tokens"]).detach().to(torch.float64)
        named = outputs.get("domain")
        if named is None and domains is not None and len(set(domains)) == 1:
            named = domains[0]
        if named is None and domains is not None and loader_domain is None:
            named = list(domains)
        if named is None or isinstance(named, str):
            return (named if named is not None else loader_domain), loss_sum.sum(), n_tok.sum()
        return list(named), loss_sum.reshape(-1), n_tok.reshape(-1)
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
    if isinstance(loss, (int, float)) and not isinstance(loss, bool):
        loss = torch.tensor(float(loss))
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        got = sorted(outputs) if isinstance(outputs, Mapping) else type(outputs).__name__
        raise ValueError(f"{CONTRACT}; got {got}")
    if domains is None:
        raise ValueError(
            "validation_step returned a scalar loss, but the batch's samples and tokens are not"
            " known: validate on MixtureDataModule(val=...) loaders, or return the dict form"
            " {'loss_sum', 'n_tokens'}"
        )
    kinds = sorted(set(domains))
    if len(kinds) > 1:
        raise ValueError(
            f"validation_step returned one scalar loss for a batch of domains {kinds}: a scalar"
            " cannot be split by domain; use one validation loader per domain"
            " (MixtureDataModule(val=...)) or return the dict form {'loss_sum', 'n_tokens'}"
        )
    if ntok is None and (warned is None or "samples" not in warned):
        if warned is not None:
            warned.add("samples")
        rank_zero_warn(
            "DomainLossLogger: validation_step returns a scalar loss and the samples' token"
            " counts are unknown (no 'ntok' field, no length_fn), so batches are weighted by"
            " their samples: exact only if every sample scores the same number of tokens;"
            " otherwise return {'loss_sum', 'n_tokens'}"
        )
    weight = float(sum(ntok)) if ntok is not None else float(len(domains))
    loss = loss.detach().to(torch.float64).reshape(())
    name = kinds[0] if kinds else loader_domain
    return name, loss * weight, torch.tensor(weight, dtype=torch.float64, device=loss.device)
