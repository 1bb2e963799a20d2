"""Setting MixtureWeights' mixture on the run's sampler: now, or at exact future steps.

Owns the two ways :class:`mixsampler.callbacks.mixture_weights.MixtureWeights` reaches the sampler:
through
the datamodule's (or the dataset's) ``set_weights`` at once, and the rest of a schedule handed
to a ``MixtureDataset`` that switches at the exact sample.
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_warn

from mixsampler.callbacks._common import find_mixture_dataset


def schedule_exactly(trainer: pl.Trainer, pending: list[tuple[int, dict[str, float]]]) -> bool:
    """Hand ``pending`` schedule entries to the sampler, which switches at the exact sample.

    Without this a switch reaches training up to ``num_workers x prefetch_factor`` batches
    late (the workers' prefetched batches keep the old weights). Step ``s`` is loader batch
    ``s x accumulate_grad_batches``: the first batch trained at optimizer step ``s``. False
    when the sampler cannot schedule (no MixtureDataset, or no batch size known).
    """
    ds = find_mixture_dataset(trainer)
    batch_size = getattr(ds, "batch_size", None) or getattr(trainer.datamodule, "batch_size", None)
    if not pending or ds is None or not hasattr(ds, "scheduled") or not batch_size:
        return False
    accumulate = max(1, trainer.accumulate_grad_batches)
    for step, weights in pending:
        ds.set_weights(weights, at_step=step * accumulate, batch_size=int(batch_size))
    return True


def apply_weights(
    trainer: pl.Trainer, weights: dict[str, float] | None, *, warn_late: bool
) -> bool:
    """Set the weights on the datamodule / sampler; False when there is none yet."""
    if weights is None:
        return False
    dm = trainer.datamodule
    if dm is not None and callable(getattr(dm, "set_weights", None)):
        dm.set_weights(weights)
        return True
    ds = find_mixture_dataset(trainer)
    if ds is None:
        return False
    if warn_late:
        rank_zero_warn(
            "MixtureWeights: the mixture sampler was only found at train start, after the"
            " loader started; batches already prefetched keep the old weights"
        )
    ds.set_weights(weights)
    return True
