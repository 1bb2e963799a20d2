"""Scheduled weight switches: ``set_weights(..., at_sample=n)`` lands exactly at sample n.

n counts the samples of this rank's stream in the order the DataLoader delivers them; with
workers the loader deals whole batches in turn, so each worker places the switch in its own
stream from the batch size. One-hot weights make "exactly" visible: every sample before n comes
from one domain, every sample from n on from the other.
"""

from __future__ import annotations

import itertools
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torchdata.stateful_dataloader import StatefulDataLoader

from mixsampler import MixtureDataset, schedule

BATCH = 5
AT = 37  # inside batch 7, which worker 1 of 2 produces


def collate(batch):
    return [s["__domain__"] for s in batch]


def _dataset(**kwargs):
    return MixtureDataset(
        {"a": range(500), "b": range(500)}, {"a": 1, "b": 0}, seed=1, batch_size=BATCH, **kwargs
    )


def _loader(ds, workers):
    return StatefulDataLoader(ds, batch_size=BATCH, num_workers=workers, collate_fn=collate)


def _flat(batches):
    return [d for b in batches for d in b]


def _switched_at(stream):
    assert set(stream[: stream.index("b")]) == {"a"} and set(stream[stream.index("b") :]) == {"b"}
    return stream.index("b")


@pytest.mark.parametrize("workers", [0, 2])
def test_a_scheduled_switch_lands_exactly_at_its_sample(workers):
    ds = _dataset()
    ds.set_weights({"a": 0, "b": 1}, at_sample=AT)
    stream = _flat(itertools.islice(_loader(ds, workers), 12))
    assert _switched_at(stream) == AT
    assert ds.scheduled == [(AT, {"a": 0.0, "b": 1.0})]


@pytest.mark.parametrize("reapply", [False, True])
def test_a_scheduled_switch_lands_exactly_across_a_resume_with_workers(reapply):
    first = _dataset()
    first.set_weights({"a": 0, "b": 1}, at_step=AT // BATCH)  # sample 35, a batch boundary
    first.set_weights({"a": 0.5, "b": 0.5}, at_sample=AT + 30)
    loader = _loader(first, 2)
    it = iter(loader)
    head = [next(it) for _ in range(3)]  # the switches lie ahead of the checkpoint
    state = loader.state_dict()
    del it

    second = _dataset()
    if reapply:  # a callback that schedules again after a restart changes nothing
        second.set_weights({"a": 0, "b": 1}, at_sample=35)
        second.set_weights({"a": 0.5, "b": 0.5}, at_sample=AT + 30)
    resumed = _loader(second, 2)
    resumed.load_state_dict(state)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "late" warning
        tail = list(itertools.islice(resumed, 17))
    stream = _flat(head + tail)
    assert _switched_at(stream[: AT + 30]) == 35
    last = stream[AT + 30 :]
    assert abs(last.count("a") - last.count("b")) <= 2, "the second switch landed too"
    snapshots = resumed.state_dict()["_snapshot"]["_worker_snapshots"]
    for snap in snapshots.values():
        state = snap["dataset_state"]
        local = schedule.local_index(35, BATCH, state["slot"], 2)  # rank 0: slot = worker
        assert [local, [0.0, 1.0]] in state["history"]


def test_a_switch_scheduled_before_a_restore_of_a_later_state_is_not_applied_twice():
    ds = _dataset()
    ds.set_weights({"a": 0, "b": 1}, at_sample=10)
    it = iter(ds)
    stream = [s["__domain__"] for s in itertools.islice(it, 20)]
    state = ds.state_dict()
    again = _dataset()
    again.set_weights({"a": 0, "b": 1}, at_sample=10)  # in the past, and already in force
    again.load_state_dict(state)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        more = [s["__domain__"] for s in itertools.islice(iter(again), 5)]
    assert _switched_at(stream + more) == 10
    assert again.state_dict()["history"] == [[0, [1.0, 0.0]], [10, [0.0, 1.0]]]


def test_a_late_switch_is_adopted_at_once_and_warned_about():
    ds = _dataset()
    it = iter(ds)
    head = [s["__domain__"] for s in itertools.islice(it, 10)]
    ds.set_weights({"a": 0, "b": 1}, at_sample=4)
    with pytest.warns(UserWarning, match=r"at_sample=4\) came late .*it is at 10"):
        tail = [s["__domain__"] for s in itertools.islice(it, 5)]
    assert head == ["a"] * 10 and tail == ["b"] * 5


def test_workers_without_a_batch_size_refuse_a_scheduled_switch():
    ds = MixtureDataset({"a": range(50), "b": range(50)}, {"a": 1, "b": 1})
    ds.set_weights({"a": 0, "b": 1}, at_sample=10)
    with pytest.raises(ValueError, match="needs the loader's batch size"):
        next(ds._iter_slot(0, 2))
    assert next(ds._iter_slot(0, 1))["__domain__"] in {"a", "b"}  # one worker needs none


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"at_sample": -1}, "at_sample must be an integer >= 0, got -1"),
        ({"at_sample": 2.5}, "at_sample must be an integer >= 0, got 2.5"),
        ({"at_sample": 1, "at_step": 1}, "not both"),
        ({"at_step": 3}, r"at_step=3\) needs the loader's batch size"),
        ({"at_step": 3, "batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ],
)
def test_bad_schedules_get_a_clear_message(kwargs, message):
    ds = MixtureDataset({"a": range(5), "b": range(5)}, {"a": 1, "b": 1})
    with pytest.raises(ValueError, match=message):
        ds.set_weights({"a": 0, "b": 1}, **kwargs)
    assert ds.scheduled == []


@settings(max_examples=60, deadline=None)
@given(
    at=st.integers(0, 400),
    batch=st.integers(1, 9),
    workers=st.integers(1, 5),
)
def test_local_index_is_the_first_sample_of_a_worker_at_or_after_the_rank_sample(
    at, batch, workers
):
    # The loader's order: batch b of the rank comes from worker b % workers.
    order = [
        (b % workers, (b // workers) * batch + j)
        for b in range(at // batch + workers + 1)
        for j in range(batch)
    ]
    for worker in range(workers):
        first = next(m for g, (w, m) in enumerate(order) if w == worker and g >= at)
        assert schedule.local_index(at, batch, worker, workers) == first


def _reference(weights_before, weights_after, at, n, slot):
    """One slot's domain sequence with the weights changed before its sample ``at``."""
    rank = schedule.priority(0, slot, len(weights_before))
    state = schedule.new_state(weights_before)
    out = []
    for m in range(n):
        w = weights_before if m < at else weights_after
        i = schedule.pick_samples(state, w, rank)
        schedule.book(state, w, i, 0, tokens=False)
        out.append(i)
    return out


@pytest.mark.parametrize("workers", [1, 3])
def test_each_worker_follows_the_reference_schedule_through_a_switch(workers):
    before, after = (0.6, 0.3, 0.1), (0.2, 0.2, 0.6)
    names = ("a", "b", "c")
    ds = MixtureDataset(
        {d: range(400) for d in names}, dict(zip(names, before, strict=True)), batch_size=4
    )
    ds.set_weights(dict(zip(names, after, strict=True)), at_sample=41)
    for worker in range(workers):
        got = [
            names.index(s["__domain__"])
            for s in itertools.islice(ds._iter_slot(worker, workers), 60)
        ]
        at = schedule.local_index(41, 4, worker, workers)
        assert got == _reference(before, after, at, 60, worker)
