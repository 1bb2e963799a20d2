"""MixtureDataModule: a LightningDataModule around MixtureDataset.

Training reads a :class:`~mixsampler.MixtureDataset` through a torchdata ``StatefulDataLoader``,
the loader kind whose state Lightning writes into checkpoints (a plain ``DataLoader`` around a
stateful dataset is silently not saved). Validation is one finite, unshuffled loader that reads
each domain in turn, in batches that never mix domains, split across ranks without padding or
duplicates: what :class:`callbacks.DomainLossLogger` needs for exact per-domain losses from a
scalar ``validation_step`` loss, and one loader, so ``validation_step`` needs no
``dataloader_idx``.

Two details make a mid-epoch resume continue with exactly the batches an uninterrupted run would
have seen:

- Lightning fetches one training batch ahead of the one the model is running (to know whether
  the epoch ends), so when a checkpoint is written the loader has already handed out a batch the
  model has not consumed. The loader here reports the state from *before* that batch.
- Lightning writes the checkpoint from rank zero only, so every rank would restore rank zero's
  loader state. With several ranks the loader's ``state_dict`` gathers every rank's state (it is
  called on every rank when saving) and each rank restores its own.

Batches are whatever ``collate_fn`` makes of the samples (a tuple of tensors, a dict, a
dataclass: what the model takes), and nothing is added to them. What the callbacks need of a
batch (each sample's domain and token count, a :class:`BatchMeta`) travels beside it: the collate,
which runs in the worker processes, returns the batch and its meta together; the loader, in the
main process, hands the batch to Lightning and queues the meta, and
:class:`callbacks.DomainLossLogger` takes one meta per batch, in order. That is exact with
workers, with Lightning's one-batch lookahead, and across a resume (a new iterator starts a new
queue).

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

import collections
import copy
import dataclasses
import importlib
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torch.utils.data import default_collate as _default_collate
from torch.utils.data._utils.pin_memory import pin_memory as _pin_memory
from torchdata.stateful_dataloader import StatefulDataLoader

from mixsampler.dataset import _EXHAUSTION, _ON_CORRUPT, _UNITS, MixtureDataset

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


@dataclasses.dataclass(frozen=True)
class BatchMeta:
    """What the callbacks need of one batch, carried beside it, never inside it.

    Attributes:
        domains: each sample's domain, in batch order.
        ntok: each sample's token count; None when the samples do not say (no ``length_fn``
            and no ``"ntok"`` field).
    """

    domains: tuple[str, ...]
    ntok: tuple[int, ...] | None

    @property
    def tokens(self) -> int | None:
        """Tokens in the batch (None when unknown)."""
        return sum(self.ntok) if self.ntok is not None else None


class _Tagged:
    """A batch and its meta on their way from the collate (maybe in a worker) to the loader."""

    __slots__ = ("batch", "meta")

    def __init__(self, batch: Any, meta: BatchMeta | None) -> None:
        self.batch = batch
        self.meta = meta

    def pin_memory(self, device: Any = None) -> _Tagged:
        # DataLoader(pin_memory=True) calls this on objects it does not know.
        return _Tagged(_pin_memory(self.batch, device), self.meta)


def _plain(sample: Any) -> Any:
    # MixtureDataset and ValidationStream wrap non-dict samples as {"sample": x, "__domain__"}.
    if isinstance(sample, Mapping) and len(sample) == 2 and "sample" in sample:
        if "__domain__" in sample:
            return sample["sample"]
    return sample


class MixtureCollate:
    """The user's collate on plain samples, with each batch's :class:`BatchMeta` beside it.

    A class rather than a closure so DataLoader workers started with ``spawn`` can pickle it.

    Example:
        >>> tagged = MixtureCollate(None, None)([{"sample": 1, "__domain__": "a"}])
        >>> tagged.batch, tagged.meta
        (tensor([1]), BatchMeta(domains=('a',), ntok=None))
    """

    def __init__(self, collate_fn: Callable | None, length_fn: Callable | None) -> None:
        self.collate_fn = collate_fn or _default_collate
        self.length_fn = length_fn

    def _length(self, sample: Any) -> int | None:
        # The same rule as MixtureDataset uses to count tokens.
        if self.length_fn is not None:
            return int(self.length_fn(sample))
        if isinstance(sample, Mapping) and "ntok" in sample:
            return int(sample["ntok"])
        return None

    def __call__(self, samples: list[Any]) -> _Tagged:
        domains = [s.get("__domain__") if isinstance(s, Mapping) else None for s in samples]
        plain = [_plain(s) for s in samples]
        lengths = [self._length(s) for s in plain]
        meta = None
        if all(isinstance(d, str) for d in domains):
            ntok = tuple(lengths) if all(n is not None for n in lengths) else None
            meta = BatchMeta(tuple(domains), ntok)  # type: ignore[arg-type]
        return _Tagged(self.collate_fn(plain), meta)


class _MetaQueue:
    """The metas of the batches a loader handed out and no callback has taken yet."""

    # Lightning is at most one batch ahead; a run without DomainLossLogger takes none, and
    # must not grow the queue without bound.
    MAXLEN = 64

    def _reset_metas(self) -> None:
        self._metas: collections.deque[BatchMeta | None] = collections.deque(maxlen=self.MAXLEN)
        self._meta_key: Any = None
        self._meta: BatchMeta | None = None

    def _unwrap(self, item: Any) -> Any:
        if isinstance(item, _Tagged):
            self._metas.append(item.meta)
            return item.batch
        return item

    def meta_for(self, key: Any) -> BatchMeta | None:
        """The meta of the batch that ``key`` names (None: not known).

        Batches are taken in the order they were handed out; ``key`` (a counter of batches
        started) makes the call idempotent, so several callbacks asking about the same batch
        get the same meta and take it once.
        """
        if key != self._meta_key:
            self._meta_key = key
            self._meta = self._metas.popleft() if self._metas else None
        return self._meta


class MixtureLoader(_MetaQueue, StatefulDataLoader):
    """A ``StatefulDataLoader`` whose checkpointed state matches what training consumed.

    Args:
        lookahead: batches the trainer fetches beyond the one it is training on (Lightning's
            fit loop: 1). ``state_dict`` reports the state from before those batches, so a
            resume hands them out again instead of skipping them.
        rank, world_size: this process's place; with ``world_size > 1`` the state holds every
            rank's loader state (gathered when saving) and each rank restores its own.

    Other arguments are those of ``StatefulDataLoader``.
    """

    def __init__(
        self, *args: Any, lookahead: int = 1, rank: int = 0, world_size: int = 1, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(lookahead, bool) or not isinstance(lookahead, int) or lookahead < 0:
            raise ValueError(f"lookahead must be a non-negative int, got {lookahead!r}")
        self.lookahead = lookahead
        self.rank = rank
        self.world_size = world_size
        self._snapshots: collections.deque[dict[str, Any]] = collections.deque(maxlen=lookahead)
        self._tracking = False
        self._reset_metas()

    def __iter__(self) -> Iterator[Any]:
        inner = super().__iter__()
        self._snapshots.clear()
        self._reset_metas()
        self._tracking = self.lookahead > 0
        return _Snapshotting(self, inner)

    def _local_state(self) -> dict[str, Any]:
        # After m fetches the deque holds the states before fetches m-L .. m-1; the oldest is the
        # state after the batches the model has consumed.
        if self._tracking and self._snapshots:
            return self._snapshots[0]
        return super().state_dict()

    def state_dict(self) -> dict[str, Any]:
        state = self._local_state()
        if self.world_size > 1 and torch.distributed.is_initialized():
            # Called on every rank when Lightning saves, so the collective is matched.
            states: list[Any] = [None] * self.world_size
            torch.distributed.all_gather_object(states, state)
            return {"mixsampler_ranks": states}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "mixsampler_ranks" in state_dict:
            states = state_dict["mixsampler_ranks"]
            if len(states) != self.world_size:
                raise ValueError(
                    f"the checkpoint's loader state was saved by {len(states)} ranks, this run"
                    f" has world_size={self.world_size}; resume with the same number of ranks"
                )
            state_dict = states[self.rank]
        elif self.world_size > 1:
            raise ValueError(
                "the checkpoint's loader state was saved by one rank, this run has"
                f" world_size={self.world_size}; resume with the same number of ranks"
            )
        saved_workers = _saved_num_workers(state_dict)
        if saved_workers is not None and saved_workers != self.num_workers:
            # torchdata would fail later with a bare AssertionError; each worker's stream state
            # belongs to one worker slot, so it cannot be dealt out to a different count.
            raise ValueError(
                f"the checkpoint's loader state was saved with num_workers={saved_workers}, this"
                f" loader has num_workers={self.num_workers}; resume with num_workers="
                f"{saved_workers}"
            )
        self._tracking = False
        self._snapshots.clear()
        super().load_state_dict(state_dict)


def _saved_num_workers(state: Mapping[str, Any]) -> int | None:
    """Worker count a StatefulDataLoader state was saved with (None: not recognisable)."""
    # torchdata's layouts: with workers the main-process snapshot records the count; without,
    # the state is the single-process iterator's, recognisable by its yield counter.
    snapshot = state.get("_snapshot")
    if isinstance(snapshot, Mapping):
        main = snapshot.get("_main_snapshot")
        if isinstance(main, Mapping) and isinstance(main.get("_num_workers"), int):
            return main["_num_workers"]
        return None
    if "_num_yielded" in state:
        return 0
    return None


class _Snapshotting:
    """Iterator that records the loader state before each batch it fetches."""

    def __init__(self, loader: MixtureLoader, inner: Any) -> None:
        self.loader = loader
        self.inner = inner

    def __iter__(self) -> _Snapshotting:
        return self

    def __next__(self) -> Any:
        if self.loader.lookahead:
            self.loader._snapshots.append(copy.deepcopy(self.inner.state_dict()))
        return self.loader._unwrap(next(self.inner))

    def __len__(self) -> int:
        return len(self.inner)


class ValidationLoader(_MetaQueue, DataLoader):
    """A ``DataLoader`` that hands out the user's batches and queues their :class:`BatchMeta`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reset_metas()

    def __iter__(self) -> Iterator[Any]:
        self._reset_metas()
        return map(self._unwrap, super().__iter__())


class ValidationStream(IterableDataset):
    """One domain's validation data: a finite, unshuffled single pass split across ranks.

    Shards are dealt to the ``world_size x num_workers`` slots when there are at least as many
    shards as slots; otherwise every slot reads every shard and keeps every ``slots``-th sample.
    Map-style datasets and iterables are split by sample index the same way. No sample is seen
    twice and none is padded in, so summed losses over ranks equal one process's.

    Example:
        >>> ds = ValidationStream("web", [{"x": i} for i in range(5)], rank=1, world_size=2)
        >>> [s["x"] for s in ds]
        [1, 3]
    """

    def __init__(self, domain: str, source: Any, *, rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        from mixsampler.sources import ShardSource, source_spec

        self.domain = domain
        self.rank = rank
        self.world_size = world_size
        # MixtureDataset's rule, from its one definition: what names shards and what is data.
        spec = source_spec(domain, source)
        self.urls: list[str] | None = spec.urls if isinstance(spec, ShardSource) else None
        self.source = source

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        slots = self.world_size * workers
        slot = self.rank * workers + worker
        for sample in self._samples(slot, slots):
            out = dict(sample) if isinstance(sample, Mapping) else {"sample": sample}
            out["__domain__"] = self.domain
            yield out

    def _samples(self, slot: int, slots: int) -> Iterator[Any]:
        if self.urls is not None:
            from mixsampler.tario import iter_tar

            def warn(url: str, message: str) -> None:
                warnings.warn(
                    f"domain {self.domain!r}: corrupt tar data in {url}: {message}; skipped",
                    stacklevel=2,
                )

            if len(self.urls) >= slots:
                for url in self.urls[slot::slots]:
                    for sample, _ in iter_tar(url, 0, warn):
                        yield sample
                return
            i = 0
            for url in self.urls:
                for sample, _ in iter_tar(url, 0, warn):
                    if i % slots == slot:
                        yield sample
                    i += 1
            return
        if (
            hasattr(self.source, "__getitem__")
            and hasattr(self.source, "__len__")
            and not (isinstance(self.source, IterableDataset))
        ):
            for i in range(slot, len(self.source), slots):
                yield self.source[i]
            return
        for i, sample in enumerate(self.source):
            if i % slots == slot:
                yield sample


class DomainBatches(IterableDataset):
    """Every domain's validation stream in turn, in collated batches that never mix domains.

    Batching happens here, inside each DataLoader worker (a stream splits itself across
    workers), so a batch never spans two domains.

    Example:
        >>> streams = {d: ValidationStream(d, [{"x": i} for i in range(3)]) for d in "ab"}
        >>> [b.meta.domains for b in DomainBatches(streams, 2, MixtureCollate(None, None))]
        [('a', 'a'), ('a',), ('b', 'b'), ('b',)]
    """

    def __init__(
        self, streams: Mapping[str, ValidationStream], batch_size: int, collate: Callable
    ) -> None:
        super().__init__()
        self.streams = dict(streams)
        self.batch_size = batch_size
        self.collate = collate

    def __iter__(self) -> Iterator[Any]:
        for stream in self.streams.values():
            buf: list[Any] = []
            for sample in stream:
                buf.append(sample)
                if len(buf) == self.batch_size:
                    yield self.collate(buf)
                    buf = []
            if buf:
                yield self.collate(buf)


def _as_is(item: Any) -> Any:
    return item


class MixtureDataModule(pl.LightningDataModule):
    """Training on a weighted mixture of domains, validation per domain.

    Args:
        train: domain name -> data (shard spec, map-style dataset or iterable; see
            :class:`~mixsampler.MixtureDataset`).
        weights: domain name -> weight; default equal weights. ``callbacks.MixtureWeights``
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
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{arg} must be an int >= {low}, got {value!r}")
        if val_batch_size is not None and (
            isinstance(val_batch_size, bool)
            or not isinstance(val_batch_size, int)
            or val_batch_size < 1
        ):
            raise ValueError(f"val_batch_size must be an int >= 1 or None, got {val_batch_size!r}")
        if unit not in _UNITS:
            raise ValueError(f"unit can be {', '.join(_UNITS)}, got {unit!r}")
        if (
            isinstance(shuffle_buffer, bool)
            or not isinstance(shuffle_buffer, int)
            or (shuffle_buffer < 1)
        ):
            raise ValueError(f"shuffle_buffer must be an int >= 1, got {shuffle_buffer!r}")
        if on_corrupt not in _ON_CORRUPT:
            raise ValueError(f"on_corrupt can be {', '.join(_ON_CORRUPT)}, got {on_corrupt!r}")
        policies = exhaustion.values() if isinstance(exhaustion, Mapping) else [exhaustion]
        for policy in policies:
            if policy not in _EXHAUSTION:
                raise ValueError(f"exhaustion can be {', '.join(_EXHAUSTION)}, got {policy!r}")
        # Missing shards, empty datasets: named now, not after the trainer has started.
        from mixsampler.sources import source_spec

        for name, data in {**dict(train), **dict(val or {})}.items():
            source_spec(name, data)
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
                rank=self.rank,
                world_size=self.world_size,
                shuffle_buffer=self.shuffle_buffer,
                exhaustion=self.exhaustion,
                on_corrupt=self.on_corrupt,
                max_workers=max(1, self.num_workers),
            )
        if stage in ("fit", "validate") and self.val and not self.val_datasets:
            self.val_datasets = {
                d: ValidationStream(d, src, rank=self.rank, world_size=self.world_size)
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
        batches = DomainBatches(self.val_datasets, self.val_batch_size, kw.pop("collate_fn"))
        # batch_size=None: DomainBatches batches (per domain) and collates itself.
        return ValidationLoader(batches, batch_size=None, collate_fn=_as_is, **kw)

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.weights}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        weights = state_dict.get("weights")
        if weights:
            self.set_weights(weights)
