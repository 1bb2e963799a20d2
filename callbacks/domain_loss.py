"""Per-domain validation loss, logged and appended to a run table at every validation.

The ``validation_step`` contract (what the LightningModule returns) is minimal::

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        token_loss = ...                        # (B, T) per-token cross-entropy
        mask = ...                              # (B, T) 1 where a token is scored
        return {
            "loss_sum": (token_loss * mask).sum(1),   # Tensor[B]: summed loss of each sample
            "n_tokens": mask.sum(1),                  # Tensor[B]: tokens scored per sample
            "domain": batch["__domain__"],            # list[str] of length B (optional)
        }

``"domain"`` may be left out when the batch itself carries ``"__domain__"`` (MixtureDataset and
MixtureDataModule batches do) or when the validation loaders are a dict keyed by domain name (then
``dataloader_idx`` names the domain, and the tensors may have any shape: they are summed).

The loss of a domain is ``sum(loss_sum) / sum(n_tokens)`` over its whole validation set: the
token-weighted mean that a separate evaluation of that domain would give, not a mean of batch
means. Sums and counts accumulate on the module's device in fixed-size tensors (one slot per
domain, known at setup) and are all-reduced **once** per validation epoch: a rank that has no
batch of some domain takes part in the same single collective, so nothing can hang.

Each validation of a fit appends one row to ``path`` (CSV, the run-table format ``laws`` reads):
``run, step, model_size, n_tokens, weight_<d>..., <d>_loss..., realized_<d>...``, written by rank
zero, flushed and fsynced before training goes on, so a run killed at any moment keeps every row
it finished.

D (``n_tokens``) counts the tokens of the training batches that reached ``training_step``
(``on_train_batch_end``), from each batch's ``"__domain__"`` and ``"__ntok__"`` (MixtureDataModule
adds both), summed over ranks. The sampler's own counters are not used: DataLoader workers and
Lightning's one-batch lookahead draw samples before the model sees them, so those counters run
ahead of training by ``num_workers x prefetch_factor + 1`` batches at any moment.

Example:
    >>> trainer = Trainer(callbacks=[DomainLossLogger("runs.csv", run="s-m03")])  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from callbacks._common import (
    check_model_size,
    check_weights,
    count_parameters,
    find_mixture_dataset,
)
from callbacks._runtable import (
    MODEL_SIZE,
    MODEL_SIZE_NON_EMBEDDING,
    MODEL_SIZE_TOTAL,
    N_TOKENS,
    RUN,
    STEP,
    RunTableWriter,
    loss_column,
    realized_column,
    run_steps,
    weight_column,
)

__all__ = ["DomainLossLogger"]

log = logging.getLogger(__name__)

_CONTRACT = (
    "validation_step must return a dict with 'loss_sum' (Tensor[B], summed token losses per "
    "sample) and 'n_tokens' (Tensor[B]); see callbacks.domain_loss"
)


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
        if tokens_per_sample is not None and (
            isinstance(tokens_per_sample, bool)
            or not isinstance(tokens_per_sample, int)
            or tokens_per_sample <= 0
        ):
            raise ValueError(f"tokens_per_sample must be a positive int, got {tokens_per_sample!r}")
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"prefix must be a non-empty string, got {prefix!r}")
        self.path = Path(path) if path is not None else None
        self.run = run
        self.domains = list(domains) if domains is not None else None
        self.model_size = check_model_size(model_size)
        self.weights = dict(weights) if weights is not None else None
        self.tokens_per_sample = tokens_per_sample
        self.prefix = prefix
        self.log_mean = bool(log_mean)

        self._val_domains: list[str] = []
        self._val_slot: dict[str, int] = {}
        self._loader_domains: list[str] | None = None
        self._sums: torch.Tensor | None = None
        self._counts: torch.Tensor | None = None
        self._train_domains: list[str] = []
        self._train_slot: dict[str, int] = {}
        # (2, k) float64: samples and tokens consumed on this rank since setup / the restore
        self._consumed: torch.Tensor | None = None
        self._restored: dict[str, dict[str, float]] = {"samples": {}, "tokens": {}}
        self._counting = "batches"
        self._n: int | None = None
        self._n_total: int | None = None
        self._n_non_embedding: int | None = None
        self._writer: RunTableWriter | None = None
        self._rows_written = 0
        self._resumed = False
        self._warned_no_tokens = False
        self._trainer: pl.Trainer | None = None

    # ---------------------------------------------------------------- setup

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        dm = trainer.datamodule
        if self.domains is not None:
            self._val_domains = list(self.domains)
        elif dm is not None and getattr(dm, "val_domains", None):
            self._val_domains = list(dm.val_domains)
        self._val_slot = {d: i for i, d in enumerate(self._val_domains)}
        self._train_domains = self._find_train_domains(trainer)
        self._train_slot = {d: i for i, d in enumerate(self._train_domains)}
        if self.log_mean and "mean" in self._val_domains:
            raise ValueError(
                f"a validation domain named 'mean' collides with the mean's metric"
                f" {self.prefix}/mean; rename the domain or set log_mean=False, got domains"
                f" {self._val_domains}"
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
        self._trainer = trainer
        self._n = None
        if stage == "fit":
            self._count_n(pl_module)
        known = self._val_domains and self._train_domains
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
        if not self._train_domains:
            # A train loader passed to fit() directly is known only now.
            self._train_domains = self._find_train_domains(trainer)
            self._train_slot = {d: i for i, d in enumerate(self._train_domains)}
        # On the module's device: batches arrive there, and counting must not sync the GPU.
        self._consumed = torch.zeros(
            2, len(self._train_domains), dtype=torch.float64, device=pl_module.device
        )

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Here, not at fit start: the loops (and so global_step) are restored only now.
        if self.path is not None and trainer.is_global_zero:
            self._reconcile_rows(trainer.global_step)

    def _reconcile_rows(self, step: int) -> None:
        """Drop this run's rows after ``step`` on resume; refuse to mix two runs' rows."""
        assert self.path is not None and self.run is not None
        if self._resumed:
            # A resume from a checkpoint older than the last row: training repeats those steps,
            # and two rows for one (run, step) would both enter the fit.
            if self.path.exists() and self.path.stat().st_size > 0:
                dropped = self._table_for_truncation().truncate_after(self.run, step)
                if dropped:
                    log.warning(
                        "DomainLossLogger: resumed run %r at step %d: dropped its %d rows after"
                        " that step from %s; they are written again as training repeats them",
                        self.run,
                        step,
                        dropped,
                        self.path,
                    )
            return
        steps = run_steps(self.path, self.run)
        if steps:
            raise ValueError(
                f"run table {str(self.path)!r} already holds {len(steps)} rows of run"
                f" {self.run!r} (steps {steps[0]}..{steps[-1]}), and this run starts from"
                " scratch; resume it with ckpt_path=..., give DomainLossLogger another run=, or"
                " delete those rows"
            )

    def _table_for_truncation(self) -> RunTableWriter:
        if self._writer is not None:
            return self._writer
        with open(self.path, newline="") as f:  # type: ignore[arg-type]
            header = next(csv.reader(f), [])
        # The file's own columns: the domains may be known only at the first validation.
        return RunTableWriter(self.path, header)

    # ---------------------------------------------------------------- training: count D

    @override
    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self._consumed is None or not self._train_domains:
            return
        domains = batch.get("__domain__") if isinstance(batch, Mapping) else None
        if domains is None:
            if self._counting == "batches":
                self._counting = "sampler"
                rank_zero_warn(
                    "DomainLossLogger: training batches carry no '__domain__'; D and the realized"
                    " shares fall back to the sampler's counters, which include samples that"
                    " workers prefetched but training has not consumed yet."
                )
            return
        if isinstance(domains, str):
            domains = [domains]
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
        ntok = batch.get("__ntok__")
        if ntok is not None:
            ntok = torch.as_tensor(ntok).detach().to(dev, torch.float64).reshape(-1)
            if ntok.numel() != len(idx):
                raise ValueError(
                    f"batch['__ntok__'] has {ntok.numel()} entries for {len(idx)} samples"
                )
            self._consumed[1].index_add_(0, index, ntok)
        elif self.tokens_per_sample is not None:
            self._consumed[1].index_add_(0, index, ones * self.tokens_per_sample)
        elif not self._warned_no_tokens:
            self._warned_no_tokens = True
            rank_zero_warn(
                "DomainLossLogger: training batches carry no '__ntok__' and tokens_per_sample is"
                " not set, so n_tokens counts samples, not tokens."
            )
            self._consumed[1].index_add_(0, index, ones)
        else:
            self._consumed[1].index_add_(0, index, ones)

    # ---------------------------------------------------------------- validation: sum losses

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
        n = len(self._val_domains)
        self._sums = torch.zeros(n, dtype=torch.float64, device=pl_module.device)
        self._counts = torch.zeros(n, dtype=torch.float64, device=pl_module.device)

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
        if (
            not isinstance(outputs, Mapping)
            or "loss_sum" not in outputs
            or ("n_tokens" not in outputs)
        ):
            got = sorted(outputs) if isinstance(outputs, Mapping) else type(outputs).__name__
            raise ValueError(f"{_CONTRACT}; got {got}")
        loss_sum = torch.as_tensor(outputs["loss_sum"]).detach()
        n_tok = torch.as_tensor(outputs["n_tokens"]).detach()
        domains = outputs.get("domain")
        if domains is None and isinstance(batch, Mapping):
            domains = batch.get("__domain__")
        if domains is None or isinstance(domains, str):
            name = domains if isinstance(domains, str) else self._loader_domain(dataloader_idx)
            slot = self._slot(name)
            self._sums[slot] += loss_sum.to(self._sums.device, torch.float64).sum()
            self._counts[slot] += n_tok.to(self._counts.device, torch.float64).sum()
            return
        loss_sum = loss_sum.reshape(-1)
        n_tok = n_tok.reshape(-1)
        if not (len(domains) == loss_sum.numel() == n_tok.numel()):
            raise ValueError(
                f"validation_step returned {loss_sum.numel()} loss_sum, {n_tok.numel()} n_tokens"
                f" and {len(domains)} domains; they must have one entry per sample"
            )
        index = torch.tensor([self._slot(d) for d in domains], dtype=torch.long)
        index = index.to(self._sums.device, non_blocking=True)
        self._sums.index_add_(0, index, loss_sum.to(self._sums.device, torch.float64))
        self._counts.index_add_(0, index, n_tok.to(self._counts.device, torch.float64))

    def _loader_domain(self, dataloader_idx: int) -> str:
        if not self._loader_domains:
            raise ValueError(
                "cannot tell the domain of a validation batch: return 'domain' from"
                " validation_step, give batches a '__domain__', or use a dict of validation"
                " loaders keyed by domain"
            )
        return self._loader_domains[dataloader_idx]

    def _slot(self, domain: str) -> int:
        slot = self._val_slot.get(domain)
        if slot is None:
            # Slots are fixed so the one collective has the same shape on every rank.
            raise ValueError(
                f"validation batch has domain {domain!r}, not one of {self._val_domains};"
                " list every validation domain in DomainLossLogger(domains=...)"
            )
        return slot

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._sums is None or self._counts is None or trainer.sanity_checking:
            return
        k = len(self._val_domains)
        parts = [self._sums, self._counts]
        fitting = trainer.state.fn == "fit" and self._consumed is not None
        if fitting and self._counting == "batches":
            parts.append(self._consumed.reshape(-1).to(self._sums.device))
        # The only collective of this callback: one all-reduce per validation epoch.
        total = trainer.strategy.reduce(torch.cat(parts), reduce_op="sum").to("cpu")
        sums, counts = total[:k], total[k : 2 * k]
        losses = {
            d: (float(sums[i] / counts[i]) if counts[i] > 0 else math.nan)
            for i, d in enumerate(self._val_domains)
        }
        for d, value in losses.items():
            if not math.isnan(value):
                pl_module.log(f"{self.prefix}/{d}", value, sync_dist=False)
        finite = [v for v in losses.values() if not math.isnan(v)]
        if self.log_mean and finite:
            pl_module.log(f"{self.prefix}/mean", sum(finite) / len(finite), sync_dist=False)
        if not fitting or self.path is None:
            return
        if self._counting == "batches":
            consumed = total[2 * k :].reshape(2, -1).tolist()
        else:
            consumed = self._sampler_counts(trainer)
        samples, tokens = self._with_restored(consumed)
        if trainer.is_global_zero:
            self._write_row(trainer, losses, samples, tokens)

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

    # ---------------------------------------------------------------- the run table

    def _row_columns(self) -> list[str]:
        return (
            [RUN, STEP, MODEL_SIZE, MODEL_SIZE_TOTAL, MODEL_SIZE_NON_EMBEDDING, N_TOKENS]
            + [weight_column(d) for d in self._train_domains]
            + [loss_column(d) for d in self._val_domains]
            + [realized_column(d) for d in self._train_domains]
        )

    def _table(self) -> RunTableWriter:
        """The writer of ``path`` (created with its header, or its header checked)."""
        assert self.path is not None
        columns = self._row_columns()
        if self._writer is None or set(self._writer.columns) != set(columns):
            self._writer = RunTableWriter(self.path, columns)
        return self._writer

    def _write_row(
        self,
        trainer: pl.Trainer,
        losses: dict[str, float],
        samples: dict[str, float],
        tokens: dict[str, float],
    ) -> None:
        weights = self._current_weights(trainer)
        if self._train_domains and weights is None:
            raise ValueError(
                "DomainLossLogger cannot tell the training weights: train on a MixtureDataset /"
                " MixtureDataModule or pass weights={domain: share}"
            )
        total_tokens = sum(tokens.values())
        dataset = find_mixture_dataset(trainer)
        by_samples = getattr(dataset, "unit", "tokens") == "samples" or all(
            tokens[d] == samples[d] for d in tokens
        )
        realized_base = samples if by_samples else tokens
        denom = sum(realized_base.values())
        row: dict[str, Any] = {
            RUN: self.run,
            STEP: trainer.global_step,
            MODEL_SIZE: self._n,
            MODEL_SIZE_TOTAL: self._n_total,
            MODEL_SIZE_NON_EMBEDDING: self._n_non_embedding,
            N_TOKENS: int(round(total_tokens)),
        }
        for d in self._train_domains:
            row[weight_column(d)] = weights[d] if weights else ""
            row[realized_column(d)] = realized_base[d] / denom if denom > 0 else ""
        for d, value in losses.items():
            row[loss_column(d)] = "" if math.isnan(value) else value
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
        return {d: float(raw.get(d, 0.0)) / total for d in self._train_domains}

    # ---------------------------------------------------------------- state

    @override
    def state_dict(self) -> dict[str, Any]:
        samples: dict[str, float] = dict(self._restored["samples"])
        tokens: dict[str, float] = dict(self._restored["tokens"])
        if self._consumed is not None and self._train_domains and self._counting == "batches":
            consumed = self._consumed
            trainer = self._trainer
            if trainer is not None and trainer.world_size > 1:
                # Lightning calls state_dict on every rank when saving (and barriers around it),
                # so this collective is matched; rank zero's checkpoint then holds global counts.
                # clone: the all-reduce works in place and must not touch this rank's counts
                consumed = trainer.strategy.reduce(
                    consumed.to(trainer.strategy.root_device, copy=True), reduce_op="sum"
                ).cpu()
            samples, tokens = self._with_restored(consumed.tolist())
        return {"run": self.run, "samples": samples, "tokens": tokens}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.run = state_dict.get("run", self.run)
        self._resumed = True
        self._restored = {
            "samples": {str(k): float(v) for k, v in state_dict.get("samples", {}).items()},
            "tokens": {str(k): float(v) for k, v in state_dict.get("tokens", {}).items()},
        }
        if self._consumed is not None:
            self._consumed.zero_()


def _default_run_name(trainer: pl.Trainer) -> str:
    logger = trainer.logger
    if logger is not None:
        version = logger.version
        version = f"version_{version}" if isinstance(version, int) else str(version)
        return f"{logger.name}/{version}" if logger.name else version
    return Path(trainer.default_root_dir).resolve().name or "run"
