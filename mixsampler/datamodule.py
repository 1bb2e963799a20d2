"""MixtureDataModule: a LightningDataModule around MixtureDataset.

Training reads a :class:`~mixsampler.MixtureDataset` through a torchdata ``StatefulDataLoader``,
the loader kind whose state Lightning writes into checkpoints (a plain ``DataLoader`` around a
stateful dataset is silently not saved). Validation is one finite, unshuffled loader that reads
each domain in turn, in batches that never mix domains, split across ranks without padding or
duplicates: what :class:`mixsampler.callbacks.DomainLossLogger` needs for exact per-domain losses
from a
scalar ``validation_step`` loss, and one loader, so ``validation_step`` needs no
``dataloader_idx``. The loaders, and how they resume mid-epoch exactly, are in
:mod:`mixsampler.loader` (their names are importable from here too).

Batches are whatever ``collate_fn`` makes of the samples (a tuple of tensors, a dict, a
dataclass: what the model takes), and nothing is added to them. What the callbacks need of a
batch (a :class:`~mixsampler.loader.BatchMeta`) travels beside it.

What ``collate_fn`` receives, one item per sample:

- from shards (``mixsampler shards`` or any webdataset tar): a dict of the sample's tar members
  by extension, as raw bytes (``"bin"``: the text's UTF-8 bytes, ``"ntok"``: its token count as
  ASCII digits), plus ``"__key__"`` (the member name without extension), ``"__url__"`` (the
  shard) and ``"__domain__"`` (the domain name);
- from a map-style dataset or an iterable of dicts: the dict, plus ``"__domain__"``;
- from one of anything else (a tuple ``(x, y)``, a tensor, a string): the item itself, unchanged.

A sample's token count is ``length_fn(sample)`` when given, else its ``"ntok"`` field; without
either, D counts samples (DomainLossLogger says so).

Example:
    >>> dm = MixtureDataModule(
    ...     train={"web": "data/web-{000000..000007}.tar", "code": "data/code/"},
    ...     weights={"web": 0.7, "code": 0.3},
    ...     val={"web": "val/web.tar", "code": "val/code.tar"},
    ...     batch_size=16, collate_fn="mypkg.data.collate",
    ... )  # doctest: +SKIP
    >>> trainer.fit(model, datamodule=dm)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import lightning.pytorch as pl

from mixsampler.checks import check_int
from mixsampler.dataset import EXHAUSTION_MODES, ON_CORRUPT_MODES, UNITS, MixtureDataset
from mixsampler.loader import (
    BatchMeta,
    DomainBatches,
    MixtureCollate,
    MixtureLoader,
    ValidationLoader,
    ValidationStream,
)

__all__ = [
    "BatchMeta",
    "MixtureDataModule",
    "MixtureLoader",
    "ValidationLoader",
    "ValidationStream",
    "resolve_callable",
]

log = logging.getLogger(__name__)


def resolve_callable(value: Callable | str | None, name: str) -> Callable | None:
    """A callable, or one named by an importable dotted path (``pkg.mod.fn`` or ``pkg.mod:fn``).

    Dotted paths let LightningCLI YAML files name a collate or length function.

    Example:
        >>> resolve_callable("torch.utils.data.default_collate", "collate_fn").__name__
        'default_collate'
    """
    if value is None or callable(value):
        return value
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a callable or a dotted import path, got {value!r}")
    module_name, sep, attr = value.partition(":")
    if not sep:
        module_name, _, attr = value.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"{name}={value!r} cannot be imported: {err}") from None
    if not callable(obj):
        raise ValueError(f"{name}={value!r} names {obj!r}, which is not callable")
    return obj


def _as_is(item: Any) -> Any:
    return item


class MixtureDataModule(pl.LightningDataModule):
    """Training on a weighted mixture of domains, validation per domain.

    Args:
        train: domain name -> data (shard spec, map-style dataset or iterable; see
            :class:`~mixsampler.MixtureDataset`).
        weights: domain name -> weight; default equal weights.
        ``mixsampler.callbacks.MixtureWeights``
            replaces them before the first batch.
        val: domain name -> validation data; may name domains that are not trained on
            (held-out targets). None: no validation.
        batch_size: training samples per batch per rank.
        val_batch_size: validation batch size (default ``batch_size``).
        num_workers: DataLoader worker processes (training and validation).
        seed: the sampler's seed (shard order, shuffles).
        unit: ``"samples"`` or ``"tokens"``: what the weights are shares of.
        collate_fn: callable or dotted import path turning a list of samples into a batch;
            default ``torch.utils.data.default_collate``.
        length_fn: callable or dotted path giving a sample's token count (default: the
            shards' ``ntok`` field).
        transform: callable or dotted path run on each training sample in the worker before
            ``collate_fn`` (decode, augment; :mod:`mixsampler.transforms`), with the random
            generators seeded per sample so that a resume repeats the same augmentations.
        val_transform: the same for validation samples (default: none).
        shuffle_buffer: the sampler's shuffle block size.
        exhaustion: the sampler's policy at the end of a domain (``repeat``, ``stop``,
            ``error``).
        on_corrupt: ``warn`` or ``raise`` on a corrupt tar member.
        prefetch_factor: batches each worker loads ahead (DataLoader's; workers only).
        pin_memory: DataLoader's ``pin_memory``.

    Example:
        >>> dm = MixtureDataModule({"a": list(range(10)), "b": list(range(10))}, batch_size=2)
        >>> dm.train_domains, dm.weights
        (('a', 'b'), {'a': 0.5, 'b': 0.5})
    """

    def __init__(
        self,
        train: Mapping[str, Any],
        weights: Mapping[str, float] | None = None,
        val: Mapping[str, Any] | None = None,
        *,
        batch_size: int = 8,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        unit: str = "samples",
        collate_fn: Callable | str | None = None,
        length_fn: Callable | str | None = None,
        transform: Callable | str | None = None,
        val_transform: Callable | str | None = None,
        shuffle_buffer: int = 1000,
        exhaustion: str | Mapping[str, str] = "repeat",
        on_corrupt: str = "warn",
        prefetch_factor: int | None = None,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(train, Mapping) or not train:
            raise ValueError(f"train must map domain names to data, got {train!r}")
        if val is not None and not isinstance(val, Mapping):
            raise ValueError(f"val must map domain names to data or be None, got {val!r}")
        for arg, value, low in (
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
            ("seed", seed, 0),
        ):
            check_int(arg, value, low=low)
        check_int("val_batch_size", val_batch_size, low=1, allow_none=True)
        if unit not in UNITS:
            raise ValueError(f"unit can be {', '.join(UNITS)}, got {unit!r}")
        check_int("shuffle_buffer", shuffle_buffer, low=1)
        if on_corrupt not in ON_CORRUPT_MODES:
            raise ValueError(f"on_corrupt can be {', '.join(ON_CORRUPT_MODES)}, got {on_corrupt!r}")
        policies = exhaustion.values() if isinstance(exhaustion, Mapping) else [exhaustion]
        for policy in policies:
            if policy not in EXHAUSTION_MODES:
                raise ValueError(f"exhaustion can be {', '.join(EXHAUSTION_MODES)}, got {policy!r}")
        # Missing shards, empty datasets: named now, not after the trainer has started.
        from mixsampler.sources import source_spec

        for name, data in {**dict(train), **dict(val or {})}.items():
            source_spec(name, data)
        check_int("prefetch_factor", prefetch_factor, low=1, allow_none=True)
        if prefetch_factor is not None and num_workers == 0:
            raise ValueError(
                f"prefetch_factor={prefetch_factor!r} needs num_workers > 0, got num_workers=0"
            )
        self.train = dict(train)
        self.val = dict(val) if val is not None else None
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.unit = unit
        self.collate_fn = resolve_callable(collate_fn, "collate_fn")
        self.length_fn = resolve_callable(length_fn, "length_fn")
        self.transform = resolve_callable(transform, "transform")
        self.val_transform = resolve_callable(val_transform, "val_transform")
        self.shuffle_buffer = shuffle_buffer
        self.exhaustion = exhaustion
        self.on_corrupt = on_corrupt
        self.prefetch_factor = prefetch_factor
        self.pin_memory = pin_memory
        self._weights = self._check_weights(weights)
        self.train_dataset: MixtureDataset | None = None
        self.val_datasets: dict[str, ValidationStream] = {}
        self.rank = 0
        self.world_size = 1
        # limit_val_batches as applied per domain (see _val_limit_per_domain).
        self._val_limit: int | float | None = None

    def _check_weights(self, weights: Mapping[str, float] | None) -> dict[str, float]:
        from mixsampler.schedule import normalize_weights

        if weights is None:
            weights = dict.fromkeys(self.train, 1.0)
        if not isinstance(weights, Mapping):
            raise ValueError(f"weights must map domain names to numbers, got {weights!r}")
        values = normalize_weights(weights, tuple(self.train))
        return dict(zip(self.train, (float(v) for v in values), strict=True))

    @property
    def train_domains(self) -> tuple[str, ...]:
        return tuple(self.train)

    @property
    def val_domains(self) -> tuple[str, ...]:
        return tuple(self.val) if self.val else ()

    @property
    def weights(self) -> dict[str, float]:
        """The training weights in force (the sampler's, once it is built)."""
        if self.train_dataset is not None:
            return self.train_dataset.weights
        return dict(self._weights)

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Set the training mixture; reaches DataLoader workers through shared memory."""
        self._weights = self._check_weights(weights)
        if self.train_dataset is not None:
            self.train_dataset.set_weights(self._weights)

    def setup(self, stage: str) -> None:
        # The rank is captured here, in the main process, once the trainer knows it; a dataset
        # built inside a spawned worker would see WORLD_SIZE without RANK.
        if self.trainer is not None:
            self.rank, self.world_size = self.trainer.global_rank, self.trainer.world_size
        if stage == "fit" and self.train_dataset is None:
            self.train_dataset = MixtureDataset(
                self.train,
                self._weights,
                seed=self.seed,
                unit=self.unit,
                length_fn=self.length_fn,
                transform=self.transform,
                rank=self.rank,
                world_size=self.world_size,
                shuffle_buffer=self.shuffle_buffer,
                exhaustion=self.exhaustion,
                on_corrupt=self.on_corrupt,
                max_workers=max(1, self.num_workers),
                # Workers deliver whole batches in turn: a switch scheduled at a sample or step
                # lands exactly only if each worker knows the batch size.
                batch_size=self.batch_size,
            )
        if stage in ("fit", "validate") and self.val:
            # Checked here, not in val_dataloader: Lightning builds loaders inside a context
            # that patches DataLoader.__init__ and is not undone when an error passes through.
            self._check_val_limit()
        if stage in ("fit", "validate") and self.val and not self.val_datasets:
            self.val_datasets = {
                d: ValidationStream(
                    d, src, rank=self.rank, world_size=self.world_size, transform=self.val_transform
                )
                for d, src in self.val.items()
            }

    def _loader_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "num_workers": self.num_workers,
            "collate_fn": MixtureCollate(self.collate_fn, self.length_fn),
            "pin_memory": self.pin_memory,
        }
        if self.prefetch_factor is not None:
            kw["prefetch_factor"] = self.prefetch_factor
        return kw

    def train_dataloader(self) -> MixtureLoader:
        if self.train_dataset is None:
            self.setup("fit")
        return MixtureLoader(
            self.train_dataset,
            batch_size=self.batch_size,
            rank=self.rank,
            world_size=self.world_size,
            **self._loader_kwargs(),
        )

    def val_dataloader(self) -> ValidationLoader | list:
        if not self.val:
            return []
        if not self.val_datasets:
            self.setup("validate")
        kw = self._loader_kwargs()
        batches = DomainBatches(
            self.val_datasets,
            self.val_batch_size,
            kw.pop("collate_fn"),
            limit=self._val_limit_per_domain(),
        )
        # batch_size=None: DomainBatches batches (per domain) and collates itself.
        return ValidationLoader(batches, batch_size=None, collate_fn=_as_is, **kw)

    def _check_val_limit(self) -> None:
        """Refuse an int ``limit_val_batches`` smaller than the number of validation domains."""
        limit = getattr(self.trainer, "limit_val_batches", None) if self.trainer else None
        k = len(self.val or ())
        if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit < k:
            raise ValueError(
                f"limit_val_batches={limit!r} is fewer than the {k} validation domains"
                f" {list(self.val or ())}: MixtureDataModule gives each domain"
                f" limit_val_batches // {k} batches, so every domain is validated on the"
                f" same number; set limit_val_batches >= {k} (a multiple of {k}), a"
                " fraction, or validate fewer domains"
            )

    def _val_limit_per_domain(self) -> int | float | None:
        """The Trainer's ``limit_val_batches`` as each validation domain's share of it.

        One loader reads the domains in turn, so Lightning's own cut (the first L batches)
        would validate the first domains only. The limit is applied here instead, per domain:
        an int L gives each of the k domains L // k batches (k x (L // k) <= L, so Lightning's
        cut never bites); a fraction f gives each domain f of its own batches (at least one).
        Lightning refuses a fraction for a loader without a length, so the Trainer's setting
        becomes 1.0 once it is taken over here (and is logged).
        """
        trainer = self.trainer
        if trainer is None:
            return self._val_limit
        limit = trainer.limit_val_batches
        if isinstance(limit, float) and 0.0 < limit < 1.0:
            self._val_limit = limit
            log.info(
                "MixtureDataModule applies limit_val_batches=%r per validation domain;"
                " the Trainer's own limit is set to 1.0",
                limit,
            )
            trainer.limit_val_batches = 1.0
            return limit
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            self._check_val_limit()
            self._val_limit = limit // len(self.val_datasets)
            return self._val_limit
        # 1.0 after a fraction was taken over (a reload): keep the fraction.
        return self._val_limit

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.weights}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        weights = state_dict.get("weights")
        if weights:
            self.set_weights(weights)
