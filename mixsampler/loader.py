"""The loaders of MixtureDataModule, and the batch meta they carry beside each batch.

Training reads through :class:`MixtureLoader`, a torchdata ``StatefulDataLoader`` (the loader
kind whose state Lightning writes into checkpoints). Validation reads :class:`DomainBatches`
(every domain's :class:`ValidationStream` in turn, in batches that never mix domains) through
:class:`ValidationLoader`.

Two details make a mid-epoch resume continue with exactly the batches an uninterrupted run would
have seen:

- Lightning fetches one training batch ahead of the one the model is running (to know whether
  the epoch ends), so when a checkpoint is written the loader has already handed out a batch the
  model has not consumed. The loader here reports the state from *before* that batch.
- Lightning writes the checkpoint from rank zero only, so every rank would restore rank zero's
  loader state. With several ranks the loader's ``state_dict`` gathers every rank's state (it is
  called on every rank when saving) and each rank restores its own.

What the callbacks need of a batch (each sample's domain and token count, a :class:`BatchMeta`)
travels beside it: :class:`MixtureCollate`, which runs in the worker processes, returns the
batch and its meta together; the loader, in the main process, hands the batch to Lightning and
queues the meta, and :class:`mixsampler.callbacks.DomainLossLogger` takes one meta per batch, in
order.
That is exact with workers, with Lightning's one-batch lookahead, and across a resume (a new
iterator starts a new queue).
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torch.utils.data import default_collate as _default_collate
from torch.utils.data._utils.pin_memory import pin_memory as _pin_memory
from torchdata.stateful_dataloader import StatefulDataLoader

from mixsampler.checks import check_int
from mixsampler.transforms import sample_seed, with_seed

__all__ = [
    "BatchMeta",
    "DomainBatches",
    "MixtureCollate",
    "MixtureLoader",
    "ValidationLoader",
    "ValidationStream",
]


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
        check_int("lookahead", lookahead, low=0)
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

    def __init__(
        self,
        domain: str,
        source: Any,
        *,
        rank: int = 0,
        world_size: int = 1,
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        super().__init__()
        if transform is not None and not callable(transform):
            raise ValueError(f"transform must be callable or None, got {transform!r}")
        self.transform = transform
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
        for n, sample in enumerate(self._samples(slot, slots)):
            if self.transform is not None:
                # Validation is a fixed pass: seeded by the sample's place in it (slot, index).
                sample = with_seed(self.transform, sample, sample_seed(0, slot, 0, n))
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
        self,
        streams: Mapping[str, ValidationStream],
        batch_size: int,
        collate: Callable,
        *,
        limit: int | float | None = None,
    ) -> None:
        super().__init__()
        if limit is not None and (
            isinstance(limit, bool)
            or not isinstance(limit, (int, float))
            or not (limit > 0)
            or (isinstance(limit, float) and limit > 1.0)
        ):
            raise ValueError(
                f"limit must be None, an int >= 1 (batches per domain) or a float in (0, 1]"
                f" (share of each domain's batches), got {limit!r}"
            )
        self.streams = dict(streams)
        self.batch_size = batch_size
        self.collate = collate
        self.limit = limit

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        for stream in self.streams.values():
            cap = self._cap(stream, workers, worker)
            if cap == 0:
                continue
            buf: list[Any] = []
            made = 0
            for sample in stream:
                buf.append(sample)
                if len(buf) == self.batch_size:
                    yield self.collate(buf)
                    buf = []
                    made += 1
                    if made == cap:
                        break
            if buf and made != cap:
                yield self.collate(buf)

    def _cap(self, stream: ValidationStream, workers: int, worker: int) -> int | None:
        """This worker's batch limit for ``stream`` (None: all of it).

        An int limit is per domain and per rank, dealt over the workers so that their batches
        add up to it; a fraction is of this worker's own batches of the domain (counted by one
        extra pass: validation sets are small), at least one.
        """
        if self.limit is None or (isinstance(self.limit, float) and self.limit == 1.0):
            return None
        if isinstance(self.limit, int):
            return self.limit // workers + (1 if worker < self.limit % workers else 0)
        n = sum(1 for _ in stream)
        batches = -(-n // self.batch_size)
        return min(batches, max(1, int(batches * self.limit)))
