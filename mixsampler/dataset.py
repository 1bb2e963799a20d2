"""MixtureDataset: an exact, resumable, rank-aware weighted mixture of data domains.

Each DataLoader worker on each rank (a *slot*) runs its own largest-deficit schedule over the
full weight vector (:mod:`mixsampler.schedule`) and reads its own disjoint part of every domain
(:mod:`mixsampler.sources`). Weights and consumption counters live in shared-memory tensors
created in ``__init__``, so ``set_weights`` in the main process reaches worker processes and
``counts()`` in the main process sees what the workers produced.

How it fits torchdata's ``StatefulDataLoader`` (the loader Lightning checkpoints): with workers,
the loader calls ``state_dict()`` inside each worker after each batch and keeps, per worker, the
state that came with the last batch it handed out; on resume it gives each worker its own state
back through ``load_state_dict`` before calling ``iter``. Prefetched batches therefore never leak
into a checkpoint. ``counts()`` is different: workers update the shared counters when they
produce a sample, so during training it runs ahead of what the model consumed by at most
``prefetch_factor * num_workers`` batches; the counts inside the saved state are exact.

The per-slot stream and its design are in :mod:`mixsampler.slot`, the shared-memory layout in
:mod:`mixsampler.shared`.

Example:
    >>> import itertools
    >>> ds = MixtureDataset(
    ...     {"code": [{"x": 1}] * 10, "web": [{"x": 2}] * 10}, {"code": 0.25, "web": 0.75}
    ... )
    >>> [s["__domain__"] for s in itertools.islice(ds, 4)]
    ['web', 'web', 'code', 'web']
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from mixsampler import schedule
from mixsampler.shared import _MAX_SCHEDULED, _W, _check_count, _SharedState
from mixsampler.slot import _FORMAT, _Run
from mixsampler.sources import Source, source_spec
from mixsampler.tario import CorruptShardError

log = logging.getLogger(__name__)

__all__ = ["MixtureDataset", "CorruptShardError"]

# The valid option values, also checked early by MixtureDataModule.
_UNITS = ("samples", "tokens")
_EXHAUSTION = ("repeat", "stop", "error")
_ON_CORRUPT = ("warn", "raise")


def _default_rank() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if "RANK" not in os.environ and world_size > 1:
        warnings.warn(
            f"WORLD_SIZE={world_size} but RANK is not set and torch.distributed is not "
            "initialized: MixtureDataset assumes rank 0, so every rank would read the same data. "
            "Create the dataset after the process group is up, or pass rank= and world_size=.",
            stacklevel=3,
        )
    return int(os.environ.get("RANK", "0")), world_size


class MixtureDataset(_SharedState, IterableDataset):
    """Samples from several domains in exact, changeable proportions, resumably.

    Args:
        domains: domain name -> data. Data is a webdataset shard spec (a brace pattern such as
            ``"web-{000000..000031}.tar"``, a glob, a folder of ``.tar`` files, or a list of
            ``.tar`` paths or URLs), a map-style ``Dataset`` (``__len__`` + ``__getitem__``;
            a list of texts counts as one), or any other iterable or ``IterableDataset``
            (re-iterated for each pass).
        weights: domain name -> non-negative weight for every domain; normalized, and a zero
            switches a domain off.
        seed: seeds shard order, shuffles and tie-breaking; identical seeds give identical
            streams.
        unit: ``"samples"``: weights are shares of samples; ``"tokens"``: shares of tokens.
        length_fn: tokens in a sample, called on the sample as the domain gives it (before it
            is wrapped or tagged). Without it the length is the ``ntok`` field written by
            :func:`mixsampler.write_shards`; required for ``unit="tokens"`` on other data.
            Counted in ``counts()["tokens"]`` in either unit when available.
        transform: called on each sample after its length is counted, in the worker,
            with the global RNGs seeded from the sample's place in the stream (exact on
            resume; see :mod:`mixsampler.transforms`). May return any object.
        rank: this process's rank; default torch.distributed, then ``RANK``, then 0. Captured
            here, not in workers (Lightning's launcher sets WORLD_SIZE but not RANK there).
        world_size: number of ranks; default torch.distributed, then ``WORLD_SIZE``, then 1.
        shuffle_buffer: samples per shuffled block of shard and iterable domains; a resume
            re-reads at most one block per domain. Map-style domains are fully permuted.
        exhaustion: what a slot does at the end of a pass over a domain: ``"repeat"`` (a new
            pass in a new seeded order), ``"stop"`` (the domain leaves, the rest renormalize;
            the stream ends when no domain is left) or ``"error"``. One policy, or a mapping
            domain -> policy.
        on_corrupt: ``"warn"``: skip a corrupt tar member, count it and warn once per shard;
            ``"raise"``: raise :class:`CorruptShardError`.
        max_workers: DataLoader workers per rank the shared counters have room for.
        check_shards: check at construction that every local shard file exists.
        batch_size: the DataLoader's batch size. Needed only to place a scheduled switch
            (``set_weights(..., at_sample=n)``) exactly when the loader has more than one
            worker, because the loader deals whole batches to its workers in turn.

    Raises:
        ValueError: bad weights (negative, NaN, all zero, unknown or missing domains), an empty
            domain, or an invalid option (the message lists the valid ones).
        FileNotFoundError: a missing shard, named.

    Example:
        >>> import itertools
        >>> ds = MixtureDataset({"a": range(100), "b": range(100)}, {"a": 1, "b": 1}, seed=0)
        >>> sorted(s["__domain__"] for s in itertools.islice(ds, 4))
        ['a', 'a', 'b', 'b']
    """

    def __init__(
        self,
        domains: Mapping[str, Any],
        weights: Mapping[str, float],
        *,
        seed: int = 0,
        unit: str = "samples",
        length_fn: Callable[[Any], int] | None = None,
        transform: Callable[[Any], Any] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        shuffle_buffer: int = 1000,
        exhaustion: str | Mapping[str, str] = "repeat",
        on_corrupt: str = "warn",
        max_workers: int = 64,
        check_shards: bool = True,
        batch_size: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(domains, Mapping) or not domains:
            raise ValueError(f"domains must be a non-empty mapping name -> data, got {domains!r}")
        for name in domains:
            if not isinstance(name, str) or not name:
                raise ValueError(f"domain names must be non-empty strings, got {name!r}")
        self.domain_names: tuple[str, ...] = tuple(domains)
        self._initial = schedule.normalize_weights(weights, self.domain_names)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if unit not in _UNITS:
            raise ValueError(f"unit can be {', '.join(_UNITS)}, got {unit!r}")
        if length_fn is not None and not callable(length_fn):
            raise ValueError(f"length_fn must be callable or None, got {length_fn!r}")
        if transform is not None and not callable(transform):
            raise ValueError(f"transform must be callable or None, got {transform!r}")
        if (
            isinstance(shuffle_buffer, bool)
            or not isinstance(shuffle_buffer, int)
            or shuffle_buffer < 1
        ):
            raise ValueError(f"shuffle_buffer must be an integer >= 1, got {shuffle_buffer!r}")
        if on_corrupt not in _ON_CORRUPT:
            raise ValueError(f"on_corrupt can be {', '.join(_ON_CORRUPT)}, got {on_corrupt!r}")
        if not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be an integer >= 1, got {max_workers!r}")
        if batch_size is not None:
            _check_count("batch_size", batch_size, 1)
        self._exhaustion = self._parse_exhaustion(exhaustion)
        if rank is None or world_size is None:
            default_rank, default_world = _default_rank()
            rank = default_rank if rank is None else rank
            world_size = default_world if world_size is None else world_size
        if not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size must be an integer >= 1, got {world_size!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be an integer in [0, {world_size}), got {rank!r}")

        self.seed = seed
        self.unit = unit
        self.length_fn = length_fn
        self.transform = transform
        self.rank = rank
        self.world_size = world_size
        self.shuffle_buffer = shuffle_buffer
        self.on_corrupt = on_corrupt
        self.max_workers = max_workers
        self.batch_size = batch_size
        self._sources: tuple[Source, ...] = tuple(
            source_spec(name, data, check=check_shards) for name, data in domains.items()
        )

        k = len(self.domain_names)
        self._shared_weights = torch.zeros(_W + k, dtype=torch.float64).share_memory_()
        self._shared_weights[_W:] = torch.tensor(self._initial, dtype=torch.float64)
        # Scheduled switches: [count, then rows of (at_sample, batch_size, w_1..w_k)], appended
        # by the main process only; a row is complete before the count (and the tick) moves.
        self._shared_schedule = torch.zeros(
            1 + _MAX_SCHEDULED * (2 + k), dtype=torch.float64
        ).share_memory_()
        # One row per worker of this rank, each written only by its worker.
        self._shared_counts = torch.zeros(max_workers, 3, k, dtype=torch.int64).share_memory_()
        self._views: tuple[Any, Any] | None = None
        self._run: _Run | None = None
        self._pending: dict[str, Any] | None = None  # loaded, not yet iterated
        self._starting: dict[str, Any] | None = None  # iterated, first sample not yet drawn

    def _parse_exhaustion(self, exhaustion: str | Mapping[str, str]) -> tuple[str, ...]:
        if isinstance(exhaustion, str):
            exhaustion = dict.fromkeys(self.domain_names, exhaustion)
        if not isinstance(exhaustion, Mapping):
            raise ValueError(f"exhaustion must be a policy or a mapping, got {exhaustion!r}")
        unknown = sorted(set(exhaustion) - set(self.domain_names))
        if unknown:
            raise ValueError(
                f"exhaustion names unknown domains {unknown}; the domains are "
                f"{list(self.domain_names)}"
            )
        out = []
        for name in self.domain_names:
            policy = exhaustion.get(name, "repeat")
            if policy not in _EXHAUSTION:
                raise ValueError(
                    f"exhaustion[{name!r}] can be {', '.join(_EXHAUSTION)}, got {policy!r}"
                )
            out.append(policy)
        return tuple(out)

    # -- shared memory (its methods are in mixsampler.shared._SharedState) ------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_views"] = None  # numpy views would be pickled as copies
        state["_run"] = state["_starting"] = None
        return state

    # -- state ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The state of this process's stream as plain numbers, strings and lists.

        Inside a DataLoader worker this is the worker's own stream; StatefulDataLoader collects
        one per worker. Before any iteration it marks a fresh start.
        """
        if self._run is not None:
            return self._run.state()
        if self._starting is not None:
            return dict(self._starting)  # iter() called, first sample not yet drawn
        if self._pending is not None:
            return dict(self._pending)
        return {
            "format": _FORMAT,
            "fresh": True,
            "domains": list(self.domain_names),
            "unit": self.unit,
            "seed": self.seed,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` at the next ``iter()`` (checked against this dataset then).

        The stream continues with the weights saved in the state, unless ``set_weights`` has
        been called on this dataset since it was created: those weights then take effect at
        once (and enter the history), so a callback that re-applies its schedule on resume
        is obeyed.

        Raises:
            ValueError: a state of another format, domain list, unit or seed.
        """
        if not isinstance(state, Mapping) or state.get("format") != _FORMAT:
            raise ValueError(
                f"not a MixtureDataset state (format {_FORMAT}): "
                f"{state.get('format') if isinstance(state, Mapping) else state!r}"
            )
        for key, mine in (
            ("domains", list(self.domain_names)),
            ("unit", self.unit),
            ("seed", self.seed),
        ):
            if state.get(key) != mine:
                raise ValueError(
                    f"cannot resume: the state has {key}={state.get(key)!r}, this dataset "
                    f"has {key}={mine!r}"
                )
        self._run = self._starting = None
        self._pending = None if state.get("fresh") else dict(state)

    # -- iteration -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        if info is None:
            return self._iter_slot(0, 1, in_main=True)
        return self._iter_slot(info.id, info.num_workers, in_main=False)

    def _iter_slot(
        self, worker: int, num_workers: int, *, in_main: bool = False
    ) -> Iterator[dict[str, Any]]:
        """The stream of DataLoader worker ``worker`` of ``num_workers`` on this rank.

        ``__iter__`` calls it with the real worker; tests call it directly to simulate workers
        without starting processes.
        """
        if not 0 <= worker < num_workers:
            raise ValueError(f"worker must be in [0, {num_workers}), got {worker}")
        if num_workers > self.max_workers:
            raise ValueError(
                f"num_workers={num_workers} exceeds max_workers={self.max_workers}; "
                "raise max_workers"
            )
        pending, self._pending = self._pending, None
        self._run = None
        self._starting = pending
        return self._generate(worker, num_workers, pending, in_main)

    def _generate(
        self, worker: int, num_workers: int, pending: dict[str, Any] | None, in_main: bool
    ) -> Iterator[dict[str, Any]]:
        # Built at the first next(), not in iter(): StatefulDataLoader calls iter() while it
        # starts a worker, and an error raised there leaves workers it takes seconds to reap;
        # raised from next(), a bad resume reaches the caller through the normal path.
        run = _Run(self, worker, num_workers, pending, in_main=in_main)
        self._run, self._starting = run, None
        yield from run.generate()

    def __repr__(self) -> str:
        w = ", ".join(f"{d}={x:.4g}" for d, x in self.weights.items())
        return (
            f"MixtureDataset({w}; unit={self.unit}, seed={self.seed}, "
            f"rank={self.rank}/{self.world_size})"
        )
