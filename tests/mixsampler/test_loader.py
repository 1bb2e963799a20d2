"""MixtureDataset behind real DataLoader worker processes and torchdata's StatefulDataLoader.

Worker processes are slow to start on 2 cores, so each test here checks several things.
"""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from torchdata.stateful_dataloader import StatefulDataLoader

from mixsampler import MixtureDataset


def collate(batch):
    return [(s["__domain__"], s["__key__"]) for s in batch]


def _dataset(web, code, **kwargs):
    return MixtureDataset(
        {"web": web, "code": code}, {"web": 0.5, "code": 0.5}, seed=7, shuffle_buffer=4, **kwargs
    )


@pytest.mark.parametrize(
    ("num_workers", "rank", "world_size"), [(0, 0, 1), (0, 1, 3), (2, 0, 1), (2, 1, 2)]
)
def test_stateful_dataloader_resume_gives_the_batches_of_an_uninterrupted_run(
    shards, num_workers, rank, world_size
):
    web = shards("web", 6, 9)
    code = shards("code", 2, 5)  # fewer shards than slots in some layouts: samples are split
    k, more = 5, 6

    def loader():
        ds = _dataset(web, code, rank=rank, world_size=world_size)
        return StatefulDataLoader(ds, batch_size=4, num_workers=num_workers, collate_fn=collate)

    ref = list(itertools.islice(loader(), k + more))

    first = loader()
    it = iter(first)
    head = [next(it) for _ in range(k)]
    state = first.state_dict()
    del it

    second = loader()
    second.load_state_dict(state)
    tail = list(itertools.islice(second, more))
    assert head + tail == ref

    if num_workers:
        # Each batch comes from one worker: both domains in every one, no aliasing.
        assert all(Counter(d for d, _ in b) == {"web": 2, "code": 2} for b in ref)
        # Restoring into another world size must fail loudly, not duplicate samples. (Another
        # worker count is refused by StatefulDataLoader itself, with an AssertionError.)
        third = StatefulDataLoader(
            _dataset(web, code, rank=rank, world_size=world_size + 1),
            batch_size=4,
            num_workers=num_workers,
            collate_fn=collate,
        )
        third.load_state_dict(state)
        with pytest.raises(ValueError, match="different layout"):
            next(iter(third))


def test_no_sample_repeats_within_a_pass_across_ranks_and_workers(shards):
    web = shards("web", 5, 6)  # 5 shards >= 4 slots: shards split
    code = shards("code", 3, 4)  # 3 shards < 4 slots: samples split
    seen = []
    for rank in range(2):
        ds = MixtureDataset(
            {"web": web, "code": code},
            {"web": 0.5, "code": 0.5},
            rank=rank,
            world_size=2,
            exhaustion="stop",
        )
        loader = StatefulDataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate)
        seen.extend(x for batch in loader for x in batch)
    assert len(seen) == len(set(seen)) == 5 * 6 + 3 * 4


def test_set_weights_reaches_spawned_workers_and_counts_are_read_in_the_main_process(shards):
    web = shards("web", 4, 30)
    code = shards("code", 4, 30)
    ds = _dataset(web, code)
    loader = StatefulDataLoader(
        ds,
        batch_size=5,
        num_workers=2,
        collate_fn=collate,
        multiprocessing_context="spawn",
        prefetch_factor=1,
        persistent_workers=True,
    )
    it = iter(loader)
    before = [next(it) for _ in range(4)]
    assert Counter(d for b in before for d, _ in b) == {"web": 10, "code": 10}
    ds.set_weights({"web": 1, "code": 0})
    after = [next(it) for _ in range(8)]
    # Batches already prefetched (prefetch_factor * num_workers = 2) keep the old weights.
    assert all(d == "web" for b in after[2:] for d, _ in b)
    counts = ds.counts()
    produced = sum(counts["samples"].values())
    consumed = 5 * len(before + after)
    assert consumed <= produced <= consumed + 5 * 2
    assert counts["samples"]["code"] == sum(d == "code" for b in before + after for d, _ in b)
    assert counts["tokens"]["web"] > 0
    # Where each worker adopted the weights is in its state, saved by the loader.
    states = loader.state_dict()["_snapshot"]["_worker_snapshots"]
    for worker_state in states.values():
        history = worker_state["dataset_state"]["history"]
        assert history[0][1] == [0.5, 0.5] and history[-1][1] == [1.0, 0.0]
