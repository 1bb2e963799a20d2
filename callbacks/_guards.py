"""DomainLossLogger's checks at train start: set-ups that would write no row, or wrong rows.

Each is an error with the way out in its message; a test in tests/callbacks/test_dropin_guards.py
proves each.

Example:
    >>> check_validation_runs(trainer, model)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities.model_helpers import is_overridden

__all__ = ["check_every_domain_validated", "check_same_table", "check_validation_runs"]

_NO_ROWS = "; DomainLossLogger writes one row per validation, so this run would write none"


def check_validation_runs(trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
    """Refuse the set-ups that would write no row at all, silently."""
    if not is_overridden("validation_step", pl_module):
        raise ValueError(
            f"{type(pl_module).__name__} has no validation_step{_NO_ROWS}. Add one returning"
            " the loss (a scalar, or {'loss_sum', 'n_tokens'}; see callbacks.domain_loss)"
        )
    # Lightning's own record of where validation loaders come from (val_dataloaders is empty
    # until the first validation builds them).
    source = trainer.fit_loop.epoch_loop.val_loop._data_source
    dm = trainer.datamodule
    no_data = not source.is_defined() or (
        source.instance is dm and hasattr(dm, "val_domains") and not dm.val_domains
    )
    if no_data or trainer.limit_val_batches == 0:
        raise ValueError(
            f"no validation data{_NO_ROWS}. Give MixtureDataModule(val={{domain: data}}) or"
            " validation loaders, and limit_val_batches > 0"
        )
    if trainer.val_check_batch == float("inf") and not isinstance(trainer.limit_train_batches, int):
        raise ValueError(
            "the training loader is endless (a mixture never runs out) and val_check_interval"
            f" is not a number of steps, so Lightning never validates{_NO_ROWS}. Set"
            " Trainer(val_check_interval=N) (steps between rows)"
        )


def check_same_table(me: Any, trainer: pl.Trainer) -> None:
    """Refuse a second DomainLossLogger writing the same table (every row would be doubled)."""
    if me.path is None:
        return
    mine = Path(me.path).resolve()
    for cb in trainer.callbacks:
        if cb is not me and type(cb) is type(me) and cb.path is not None:
            if Path(cb.path).resolve() == mine:
                raise ValueError(
                    f"two DomainLossLoggers write {str(me.path)!r}: each would add its own row"
                    " for every (run, step); give each its own path="
                )


def check_every_domain_validated(
    trainer: pl.Trainer, domains: Sequence[str], counts: Sequence[float]
) -> None:
    """Refuse a validation that skipped whole domains of the datamodule's validation data.

    MixtureDataModule spreads ``limit_val_batches`` over its domains, so a domain without a
    batch had no data on any rank (or a loader other than MixtureDataModule's was limited);
    its cells would be empty.
    """
    given = getattr(trainer.datamodule, "val_domains", ()) or ()
    missed = [d for d, n in zip(domains, counts, strict=True) if n <= 0 and d in given]
    if missed:
        raise ValueError(
            f"validation domains {missed} got no batch (limit_val_batches="
            f"{trainer.limit_val_batches!r}): their validation data gave no sample on any"
            " rank; check those domains' validation sets (MixtureDataModule gives each domain"
            " its share of limit_val_batches)"
        )
