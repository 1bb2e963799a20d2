"""Per-domain validation loss, logged and appended to a run table at every validation.

The model stays as it is. ``validation_step`` returns its loss, in either form:

- a scalar (the common way: ``return F.cross_entropy(logits, target)``), the batch's mean loss
  per token. With one validation loader per domain (``MixtureDataModule(val=...)``), each batch
  mean is weighted by the batch's tokens (from the samples' ``ntok``, or by its samples when the
  length is unknown): exact when every sample scores the same number of tokens (fixed-length
  sequences, as ``mixsampler shards --chunk-tokens`` cuts them).
- the dict form, needed for variable-length samples (padding), a loss over other tokens than
  ``ntok`` counts, or batches that mix domains::

      return {"loss_sum": (token_loss * mask).sum(1),   # Tensor[B]: summed loss per sample
              "n_tokens": mask.sum(1),                  # Tensor[B]: tokens scored per sample
              "domain": [...]}                          # optional: list[str] of length B

The loss of a domain is the token-weighted mean over its whole validation set, what a separate
evaluation of that domain gives, not a mean of batch means. Sums and counts accumulate on the
module's device in fixed-size tensors (one slot per domain) and are all-reduced **once** per
validation epoch, so a rank without a batch of some domain cannot hang the others.

Each validation of a fit appends one row to ``path`` (the run table ``laws`` reads, through
``RunTableWriter``): run, step, model_size (per ``model_size``), model_size_total,
model_size_non_embedding, n_tokens, weight_<d>, <d>_loss, realized_<d>; by rank zero, flushed and
fsynced. On resume from a checkpoint older than the last row, the run's rows after the
checkpoint's step are dropped (training measures them again). A validation is added at the last
step when ``max_steps`` is not a multiple of ``val_check_interval``.

D (``n_tokens``) counts the tokens of the training batches that reached ``training_step``, summed
over ranks, from each batch's domains and token counts, which MixtureDataModule's loaders carry
beside the batch (the batch itself may be a tuple: nothing is added to it). The sampler's own
counters run ahead of training (workers and Lightning's lookahead prefetch), and are used only,
with a warning, when batches come from elsewhere.

Silent failures are errors: no validation data, a model without ``validation_step``, an endless
training loader without ``val_check_interval`` (zero rows), a fresh run under a name the table
already holds.

This module owns the callback whole: arguments, setup, counting D per training domain
(``_TrainCounter``), summing the validation losses per domain slot (``_ValidationSums``), the
one reduction, the rows and its state. The logger holds one counter and one set of sums and
its hooks delegate to them.

Example:
    >>> trainer = Trainer(callbacks=[DomainLossLogger("runs.csv", run="s-m03")])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from mixsampler.callbacks._batches import train_meta, val_meta, val_parts
from mixsampler.callbacks._common import (
    check_model_size,
    check_weights,
    count_parameters,
    counts_samples,
    find_mixture_dataset,
)
from mixsampler.callbacks._guards import (
    check_every_domain_validated,
    check_same_table,
    check_validation_runs,
)
from mixsampler.callbacks._runtable import (
    N_TOKENS,
    N_TOKENS_UNIT,
    RunTableWriter,
    make_row,
    reconcile_rows,
    row_columns,
    val_batches_column,
)
from mixsampler.checks import check_int

__all__ = ["DomainLossLogger"]

log = logging.getLogger(__name__)


# DomainLossLogger's state, in two parts it holds and its hooks delegate to: the training side
# (D per training domain) and the validation side (the loss sums per validation domain slot).
# Each part creates and owns its state; the logger alone meets the Trainer: it reduces once,
# logs, writes the rows and saves the state.


class _TrainCounter:
    """D per training domain, counted on this rank as training batches reach ``training_step``.

    Args:
        tokens_per_sample: tokens of each training sample when batches carry no token counts.
    """

    def __init__(self, tokens_per_sample: int | None) -> None:
        self.tokens_per_sample = tokens_per_sample
        self.domains: list[str] = []
        self.slots: dict[str, int] = {}
        # (2, k) float64: samples and tokens consumed on this rank since fit start / the restore
        self.consumed: torch.Tensor | None = None
        # The checkpoint's counts (global: rank zero saved them summed over ranks).
        self.restored: dict[str, dict[str, float]] = {"samples": {}, "tokens": {}}
        # "batches": from each batch's domains and tokens (exact); "sampler": the sampler's
        # counters, which run ahead of training, when the batches' domains are unknown.
        self.counting: Literal["batches", "sampler"] = "batches"
        # What n_tokens counts: "tokens" once a batch carried token counts, else "samples".
        self.unit: Literal["tokens", "samples"] = "samples"
        self.warned_no_tokens = False

    def set_domains(self, domains: Sequence[str]) -> None:
        """Give each training domain its slot, in this order."""
        self.domains = list(domains)
        self.slots = {d: i for i, d in enumerate(self.domains)}

    def start(self, device: torch.device) -> None:
        """Count from zero on ``device``: the module's, where batches arrive (no GPU sync)."""
        self.consumed = torch.zeros(2, len(self.domains), dtype=torch.float64, device=device)

    def batch(self, trainer: pl.Trainer, batch: Any) -> None:
        """Add a training batch's samples and tokens to its domains' slots."""
        if self.consumed is None or not self.domains:
            return
        meta = train_meta(trainer, batch)
        if meta is None:
            if self.counting == "batches":
                self.counting = "sampler"
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
            idx = [self.slots[d] for d in domains]
        except KeyError as err:
            raise ValueError(
                f"training batch has domain {err.args[0]!r}, not one of the training domains"
                f" {self.domains}"
            ) from None
        dev = self.consumed.device
        index = torch.tensor(idx, dtype=torch.long).to(dev, non_blocking=True)
        ones = torch.ones(len(idx), dtype=torch.float64, device=dev)
        self.consumed[0].index_add_(0, index, ones)
        if ntok is not None:
            self.unit = "tokens"
            tokens = torch.tensor(ntok, dtype=torch.float64).to(dev, non_blocking=True)
        elif self.tokens_per_sample is not None:
            self.unit = "tokens"
            tokens = ones * self.tokens_per_sample
        else:
            # Images, audio: D counts samples by design (unit="samples"); the run table's
            # n_tokens_unit column says so, and a warning meant for text would be noise.
            if not self.warned_no_tokens and not counts_samples(trainer):
                self.warned_no_tokens = True
                rank_zero_warn(
                    "DomainLossLogger: the training samples carry no token count ('ntok' field"
                    " or MixtureDataModule(length_fn=...)) and tokens_per_sample is not set, so"
                    " n_tokens counts samples, not tokens."
                )
            tokens = ones
        self.consumed[1].index_add_(0, index, tokens)

    def sampler_counts(self, trainer: pl.Trainer, device: torch.device | str) -> list[list[float]]:
        """The sampler's samples and tokens per domain, summed over ranks (the fallback)."""
        ds = find_mixture_dataset(trainer)
        counts = ds.counts() if ds is not None and hasattr(ds, "counts") else {}
        vec = torch.tensor(
            [
                [float(counts.get(unit, {}).get(d, 0)) for d in self.domains]
                for unit in ("samples", "tokens")
            ],
            dtype=torch.float64,
        )
        return trainer.strategy.reduce(vec.to(device), reduce_op="sum").cpu().tolist()

    def with_restored(
        self, consumed: list[list[float]]
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Samples and tokens per domain: the checkpoint's plus ``consumed`` (2 rows, k each)."""
        samples = {
            d: self.restored["samples"].get(d, 0.0) + consumed[0][i]
            for i, d in enumerate(self.domains)
        }
        tokens = {
            d: self.restored["tokens"].get(d, 0.0) + consumed[1][i]
            for i, d in enumerate(self.domains)
        }
        return samples, tokens

    def restore(self, samples: Mapping[str, Any], tokens: Mapping[str, Any]) -> None:
        """Count on from a checkpoint's totals; this rank's own counts start again at zero."""
        self.restored = {
            "samples": {str(k): float(v) for k, v in samples.items()},
            "tokens": {str(k): float(v) for k, v in tokens.items()},
        }
        if self.consumed is not None:
            self.consumed.zero_()


class _ValidationSums:
    """Each validation domain's loss sum, scored tokens and batches, on this rank."""

    def __init__(self) -> None:
        self.domains: list[str] = []
        self.slots: dict[str, int] = {}
        # The domains of a dict of validation loaders, by dataloader_idx; else None.
        self.loader_domains: list[str] | None = None
        self.sums: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None
        # Batches per domain: the run table says how many each loss is the mean over.
        self.batches: torch.Tensor | None = None
        # The warnings of val_parts already given (it adds their keys).
        self.warned: set[str] = set()

    def set_domains(self, domains: Sequence[str]) -> None:
        """Give each validation domain its slot, in this order (the columns' order)."""
        self.domains = list(domains)
        self.slots = {d: i for i, d in enumerate(self.domains)}

    def epoch_start(self, trainer: pl.Trainer, device: torch.device) -> None:
        """Add the loaders' new domains, then sum from zero on ``device``."""
        loaders = trainer.val_dataloaders
        self.loader_domains = list(loaders) if isinstance(loaders, Mapping) else None
        if self.loader_domains:
            # Every rank holds the same dict, so every rank adds the same slots in the same order.
            for d in self.loader_domains:
                if d not in self.slots:
                    self.slots[d] = len(self.domains)
                    self.domains.append(d)
        if counts_samples(trainer):
            # unit="samples" (images, audio): a sample is the unit a loss is averaged over,
            # so weighting batches by their samples is exact; no warning meant for text.
            self.warned.add("samples")
        n = len(self.domains)
        self.sums = torch.zeros(n, dtype=torch.float64, device=device)
        self.counts = torch.zeros(n, dtype=torch.float64, device=device)
        self.batches = torch.zeros(n, dtype=torch.float64, device=device)

    def batch(
        self,
        trainer: pl.Trainer,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Add a validation batch's loss sum and tokens to its domain's slot (or slots)."""
        if self.sums is None or self.counts is None:
            return
        meta = val_meta(trainer, batch, batch_idx, dataloader_idx)
        domains, ntok = meta if meta is not None else (None, None)
        loader_domain = (
            self.loader_domains[dataloader_idx]
            if self.loader_domains and dataloader_idx < len(self.loader_domains)
            else None
        )
        name, loss_sum, n_tok = val_parts(outputs, domains, ntok, loader_domain, self.warned)
        if name is None:
            raise ValueError(
                "cannot tell the domain of a validation batch: use MixtureDataModule(val=...),"
                " a dict of validation loaders keyed by domain, or return 'domain' from"
                " validation_step"
            )
        if isinstance(name, str):
            slot = self.slot(name)
            self.sums[slot] += loss_sum.to(self.sums.device, torch.float64).sum()
            self.counts[slot] += n_tok.to(self.counts.device, torch.float64).sum()
            if self.batches is not None:
                self.batches[slot] += 1
            return
        if not (len(name) == loss_sum.numel() == n_tok.numel()):
            raise ValueError(
                f"validation_step returned {loss_sum.numel()} loss_sum, {n_tok.numel()} n_tokens"
                f" and {len(name)} domains; they must have one entry per sample"
            )
        index = torch.tensor([self.slot(d) for d in name], dtype=torch.long)
        index = index.to(self.sums.device, non_blocking=True)
        self.sums.index_add_(0, index, loss_sum.to(self.sums.device, torch.float64))
        self.counts.index_add_(0, index, n_tok.to(self.counts.device, torch.float64))
        if self.batches is not None:
            for d in set(name):
                self.batches[self.slot(d)] += 1

    def slot(self, domain: str) -> int:
        """The slot of ``domain``; a domain without one is an error."""
        slot = self.slots.get(domain)
        if slot is None:
            # Slots are fixed so the one collective has the same shape on every rank.
            raise ValueError(
                f"validation batch has domain {domain!r}, not one of {self.domains};"
                " list every validation domain in DomainLossLogger(domains=...)"
            )
        return slot


class DomainLossLogger(Callback):
    """Log the validation loss of every domain and append run-table rows for the law fit.

    Args:
        path: CSV file the rows are appended to (created with a header; an existing file must
            have the same columns). None: log the metrics only, write no rows.
        run: the run's name in the ``run`` column; default: the logger's name and version. It is
            saved in the checkpoint, so a resumed run keeps writing under the same name.
        domains: validation domains, in column order; default: the datamodule's ``val_domains``
            or the keys of a dict of validation loaders. Domains listed here but without data
            get an empty loss cell.
        model_size: N in the rows: ``"non_embedding"`` (default, as in the paper's table),
            ``"total"``, or an explicit parameter count.
        weights: the training mixture written as ``weight_<domain>``; default: the mixture
            sampler's current weights.
        tokens_per_sample: tokens of each training sample when batches carry no ``"__ntok__"``
            (fixed-length sequences), used to count D.
        prefix: metric names are ``<prefix>/<domain>`` and ``<prefix>/mean``.
        log_mean: also log the mean over domains (equal weight per domain).
        validate_at_end: validate once more at the last step when ``max_steps`` does not fall
            on ``val_check_interval``, so the run's final D has a row.

    Example:
        >>> cb = DomainLossLogger("runs.csv", model_size="total")
        >>> cb.state_dict()
        {'run': None, 'samples': {}, 'tokens': {}}
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = "runs.csv",
        *,
        run: str | None = None,
        domains: Sequence[str] | None = None,
        model_size: int | str = "non_embedding",
        weights: Mapping[str, float] | None = None,
        tokens_per_sample: int | None = None,
        prefix: str = "val/loss",
        log_mean: bool = True,
        validate_at_end: bool = True,
    ) -> None:
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise ValueError(f"path must be a file path or None, got {path!r}")
        if run is not None and (not isinstance(run, str) or not run or "\n" in run):
            raise ValueError(f"run must be a non-empty one-line string or None, got {run!r}")
        if domains is not None:
            if isinstance(domains, str) or not all(isinstance(d, str) and d for d in domains):
                raise ValueError(f"domains must be a list of domain names, got {domains!r}")
            if len(set(domains)) != len(domains):
                raise ValueError(f"domains must be distinct, got {list(domains)}")
        if weights is not None:
            check_weights(weights, "weights")
        check_int("tokens_per_sample", tokens_per_sample, low=1, allow_none=True)
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"prefix must be a non-empty string, got {prefix!r}")
        self.path = Path(path) if path is not None else None
        self.run = run
        self.domains = list(domains) if domains is not None else None
        self.model_size = check_model_size(model_size)
        self.weights = dict(weights) if weights is not None else None
        self.prefix = prefix
        self.log_mean = bool(log_mean)
        self.validate_at_end = bool(validate_at_end)

        self._train = _TrainCounter(tokens_per_sample)
        self._val = _ValidationSums()
        self._n: int | None = None
        self._n_total: int | None = None
        self._n_non_embedding: int | None = None
        self._writer: RunTableWriter | None = None
        self._rows_written = 0
        self._resumed = False
        self._trainer: pl.Trainer | None = None

    @property
    def tokens_per_sample(self) -> int | None:
        """Tokens of each training sample when batches carry none (the counter's, one copy)."""
        return self._train.tokens_per_sample

    @tokens_per_sample.setter
    def tokens_per_sample(self, value: int | None) -> None:
        self._train.tokens_per_sample = value

    @property
    @override
    def state_key(self) -> str:
        # Two loggers in one Trainer log under two prefixes, and keep separate states. Not the
        # path: a resume writing to another table must still find its D.
        return self._generate_state_key(prefix=self.prefix)

    # ---------------------------------------------------------------- setup

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        dm = trainer.datamodule
        if self.domains is not None:
            self._val.set_domains(self.domains)
        elif dm is not None and getattr(dm, "val_domains", None):
            self._val.set_domains(dm.val_domains)
        else:
            # Keep the domains a dict of loaders added at an earlier validation.
            self._val.set_domains(self._val.domains)
        self._train.set_domains(self._find_train_domains(trainer))
        if self.log_mean and "mean" in self._val.domains:
            raise ValueError(
                f"a validation domain named 'mean' collides with the mean's metric"
                f" {self.prefix}/mean; rename the domain or set log_mean=False, got domains"
                f" {self._val.domains}"
            )
        if trainer.world_size > 1:
            # The values are reduced here already; Lightning's advice to sync them again does
            # not apply to these keys.
            warnings.filterwarnings(
                "ignore",
                message=rf"It is recommended to use `self\.log\('{re.escape(self.prefix)}/",
            )
        if self.run is None:
            self.run = _default_run_name(trainer)
        check_same_table(self, trainer)
        self._trainer = trainer
        self._n = None
        if stage == "fit":
            self._count_n(pl_module)
        known = self._val.domains and self._train.domains
        if self.path is not None and known and trainer.is_global_zero:
            # Fail before training, not at the first validation, on a file of another sweep.
            self._table()

    def _count_n(self, pl_module: pl.LightningModule) -> None:
        self._n_total = count_parameters(pl_module, "total")
        self._n_non_embedding = count_parameters(pl_module, "non_embedding")
        self._n = count_parameters(pl_module, self.model_size)
        if self._n_total == 0:
            # configure_model() builds the layers after setup; count again at fit start.
            self._n = self._n_total = self._n_non_embedding = None

    def _find_train_domains(self, trainer: pl.Trainer) -> list[str]:
        if self.weights is not None:
            return list(self.weights)
        dm = trainer.datamodule
        names = getattr(dm, "train_domains", None) if dm is not None else None
        if names:
            return list(names)
        ds = find_mixture_dataset(trainer)
        if ds is not None:
            return list(getattr(ds, "domain_names", ds.weights))
        return []

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._n is None:
            self._count_n(pl_module)
        if not self._train.domains:
            # A train loader passed to fit() directly is known only now.
            self._train.set_domains(self._find_train_domains(trainer))
        # On the module's device: batches arrive there, and counting must not sync the GPU.
        self._train.start(pl_module.device)

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
        self._train.batch(trainer, batch)

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

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.path is None:
            return
        check_validation_runs(trainer, pl_module)
        # Here, not at fit start: the loops (and so global_step) are restored only now.
        if trainer.is_global_zero:
            assert self.run is not None
            step = trainer.global_step
            dropped = reconcile_rows(self.path, self.run, step, resumed=self._resumed)
            if dropped:
                log.warning(
                    "DomainLossLogger: resumed run %r at step %d: dropped its %d rows after that"
                    " step from %s; they are written again as training repeats them",
                    self.run,
                    step,
                    dropped,
                    self.path,
                )

    # ---------------------------------------------------------------- validation: sum, reduce, log

    @override
    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val.epoch_start(trainer, pl_module.device)

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
        self._val.batch(trainer, outputs, batch, batch_idx, dataloader_idx)

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        val, train = self._val, self._train
        if val.sums is None or val.counts is None or trainer.sanity_checking:
            return
        k = len(val.domains)
        batches = val.batches if val.batches is not None else torch.zeros_like(val.counts)
        parts = [val.sums, val.counts, batches]
        fitting = trainer.state.fn == "fit" and train.consumed is not None
        if fitting and train.counting == "batches":
            assert train.consumed is not None
            parts.append(train.consumed.reshape(-1).to(val.sums.device))
        # The only collective of this callback: one all-reduce per validation epoch.
        total = trainer.strategy.reduce(torch.cat(parts), reduce_op="sum").to("cpu")
        sums, counts = total[:k], total[k : 2 * k]
        n_batches = {d: int(total[2 * k + i]) for i, d in enumerate(val.domains)}
        check_every_domain_validated(trainer, val.domains, counts.tolist())
        losses = {
            d: (float(sums[i] / counts[i]) if counts[i] > 0 else math.nan)
            for i, d in enumerate(val.domains)
        }
        for d, value in losses.items():
            if not math.isnan(value):
                pl_module.log(f"{self.prefix}/{d}", value, sync_dist=False)
        finite = [v for v in losses.values() if not math.isnan(v)]
        if self.log_mean and finite:
            pl_module.log(f"{self.prefix}/mean", sum(finite) / len(finite), sync_dist=False)
        if not fitting or self.path is None:
            return
        if train.counting == "batches":
            consumed = total[3 * k :].reshape(2, -1).tolist()
        else:
            consumed = train.sampler_counts(trainer, val.sums.device)
        samples, tokens = train.with_restored(consumed)
        if trainer.is_global_zero:
            self._write_row(trainer, losses, samples, tokens, n_batches)

    # ---------------------------------------------------------------- the run table

    def _table(self) -> RunTableWriter:
        """The writer of ``path`` (created with its header, or its header checked)."""
        assert self.path is not None
        columns = row_columns(self._train.domains, self._val.domains)
        if self._writer is None or set(self._writer.columns) != set(columns):
            self._writer = RunTableWriter(self.path, columns)
        return self._writer

    def _write_row(
        self,
        trainer: pl.Trainer,
        losses: dict[str, float],
        samples: dict[str, float],
        tokens: dict[str, float],
        n_batches: dict[str, int],
    ) -> None:
        weights = self._current_weights(trainer)
        if self._train.domains and weights is None:
            raise ValueError(
                "DomainLossLogger cannot tell the training weights: train on a MixtureDataset /"
                " MixtureDataModule or pass weights={domain: share}"
            )
        dataset = find_mixture_dataset(trainer)
        # Shares in the sampler's unit: samples unless it mixes by tokens.
        by_samples = getattr(dataset, "unit", "tokens") == "samples" or all(
            tokens[d] == samples[d] for d in tokens
        )
        sizes = (self._n, self._n_total, self._n_non_embedding)
        row = make_row(
            self.run, trainer.global_step, sizes, weights, losses, samples if by_samples else tokens
        )
        row[N_TOKENS] = int(round(sum(tokens.values())))
        row.update({val_batches_column(d): n for d, n in n_batches.items()})
        row[N_TOKENS_UNIT] = self._train.unit
        self._table().append(row)
        self._rows_written += 1

    def _current_weights(self, trainer: pl.Trainer) -> dict[str, float] | None:
        if self.weights is not None:
            raw = self.weights
        else:
            ds = find_mixture_dataset(trainer)
            raw = dict(ds.weights) if ds is not None else None
            if raw is None:
                raw = getattr(trainer.datamodule, "weights", None)
        if raw is None:
            return None
        total = float(sum(raw.values()))
        return {d: float(raw.get(d, 0.0)) / total for d in self._train.domains}

    # ---------------------------------------------------------------- state

    @override
    def state_dict(self) -> dict[str, Any]:
        train = self._train
        samples: dict[str, float] = dict(train.restored["samples"])
        tokens: dict[str, float] = dict(train.restored["tokens"])
        if train.consumed is not None and train.domains and train.counting == "batches":
            consumed = train.consumed
            trainer = self._trainer
            if trainer is not None and trainer.world_size > 1:
                # Lightning calls state_dict on every rank when saving (and barriers around it),
                # so this collective is matched; rank zero's checkpoint then holds global counts.
                # clone: the all-reduce works in place and must not touch this rank's counts
                consumed = trainer.strategy.reduce(
                    consumed.to(trainer.strategy.root_device, copy=True), reduce_op="sum"
                ).cpu()
            samples, tokens = train.with_restored(consumed.tolist())
        return {"run": self.run, "samples": samples, "tokens": tokens}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.run = state_dict.get("run", self.run)
        self._resumed = True
        self._train.restore(state_dict.get("samples", {}), state_dict.get("tokens", {}))


def _default_run_name(trainer: pl.Trainer) -> str:
    logger = trainer.logger
    if logger is not None:
        version = logger.version
        version = f"version_{version}" if isinstance(version, int) else str(version)
        return f"{logger.name}/{version}" if logger.name else version
    return Path(trainer.default_root_dir).resolve().name or "run"
