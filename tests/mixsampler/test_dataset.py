"""MixtureDataset in one process: mixing, domains, policies, state, accounting, bad input.

Several ranks and workers are simulated in-process (``rank=``/``world_size=`` and
``_iter_slot``); the tests with real DataLoader worker processes are in test_loader.py.
"""

from __future__ import annotations

import itertools
import logging
import os
import tempfile
from collections import Counter

import pytest
import webdataset as wds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixsampler import MixtureDataset, schedule
from mixsampler.dataset import CorruptShardError


def take(it, n):
    return list(itertools.islice(it, n))


def ids(samples):
    return [(s["__domain__"], s.get("__key__", s.get("sample"))) for s in samples]


# -- 1. exact mixing ---------------------------------------------------------------------------


@pytest.mark.parametrize("weights", [(0.5, 0.5), (0.7, 0.2, 0.1), (0.05, 0.9, 0.05)])
def test_every_prefix_of_every_simulated_worker_is_within_two(weights):
    names = [f"d{i}" for i in range(len(weights))]
    ds = MixtureDataset(
        {d: range(50) for d in names}, dict(zip(names, weights, strict=True)), world_size=2
    )
    for worker in range(3):
        seen = Counter()
        for n, s in enumerate(take(ds._iter_slot(worker, 3), 400), 1):
            seen[s["__domain__"]] += 1
            for d, w in zip(names, weights, strict=True):
                assert abs(seen[d] - w * n) < 2, (worker, n, d)


# -- 3. within a domain --------------------------------------------------------------------


def _one_pass(make_ds, world_size, num_workers):
    """Everything all simulated slots emit with exhaustion='stop' (each slot reads one pass)."""
    out = []
    for rank in range(world_size):
        ds = make_ds(rank, world_size)
        for worker in range(num_workers):
            out.extend(ids(ds._iter_slot(worker, num_workers)))
    return out


@pytest.mark.parametrize(
    ("n_shards", "world_size", "num_workers"), [(8, 2, 2), (3, 2, 2), (1, 3, 1)]
)
def test_a_pass_over_shards_sees_every_sample_once_across_ranks_and_workers(
    shards, n_shards, world_size, num_workers
):
    # 8 shards >= 4 slots: shards are split; 3 or 1 shards < slots: samples are split.
    web = shards("web", n_shards, 10)
    code = shards("code", 2, 7)

    def make(rank, ws):
        return MixtureDataset(
            {"web": web, "code": code},
            {"web": 0.6, "code": 0.4},
            rank=rank,
            world_size=ws,
            exhaustion="stop",
            shuffle_buffer=4,
        )

    got = _one_pass(make, world_size, num_workers)
    assert len(got) == len(set(got)), "a sample repeated within a pass"
    assert Counter(d for d, _ in got) == {"web": n_shards * 10, "code": 14}


@pytest.mark.parametrize("kind", ["map", "iterable"])
def test_a_pass_over_map_and_iterable_domains_sees_every_sample_once(kind):
    def data(n):
        return list(range(n)) if kind == "map" else _Reiterable(n)

    def make(rank, ws):
        return MixtureDataset(
            {"a": data(23), "b": data(11)},
            {"a": 1, "b": 1},
            rank=rank,
            world_size=ws,
            exhaustion="stop",
            shuffle_buffer=5,
        )

    got = _one_pass(make, 2, 2)
    assert sorted(got) == sorted([("a", i) for i in range(23)] + [("b", i) for i in range(11)])


class _Reiterable:
    """An iterable (not map-style): iter() gives a fresh pass."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter(range(self.n))


def test_shuffling_is_seeded_and_each_repeat_pass_has_a_new_order(shards):
    web = shards("web", 4, 10)

    def stream(seed):
        ds = MixtureDataset({"web": web}, {"web": 1}, seed=seed, shuffle_buffer=8)
        return [key for _, key in ids(take(iter(ds), 80))]

    a, b = stream(0), stream(1)
    assert a == stream(0)
    assert a != b
    first, second = a[:40], a[40:]
    assert sorted(first) == sorted(second) == sorted(set(first)), "each pass sees each sample once"
    assert first != second
    assert first != sorted(first), "shuffled"


def test_a_webdataset_pipeline_as_a_domain_is_warned_about(shards):
    web = shards("web", 2, 3)
    with pytest.warns(UserWarning, match="Pass its shard spec"):
        MixtureDataset({"web": wds.WebDataset(web, shardshuffle=False)}, {"web": 1})


def test_webdataset_samples_keep_their_keys(shards):
    web = shards("web", 1, 3)
    plain = next(iter(wds.WebDataset(web, shardshuffle=False)))
    ours = next(iter(MixtureDataset({"web": web}, {"web": 1}, shuffle_buffer=1)))
    assert ours["__domain__"] == "web"
    assert ours["__url__"] == web[0]
    for key in ("__key__", "bin", "ntok"):
        assert ours[key] == plain[key]


def test_folder_brace_and_glob_specs_name_the_same_shards(shards, tmp_path):
    shards("web", 3, 2)
    specs = [
        str(tmp_path),
        str(tmp_path / "web-{000000..000002}.tar"),
        str(tmp_path / "web-*.tar"),
    ]
    streams = [ids(take(iter(MixtureDataset({"w": s}, {"w": 1})), 6)) for s in specs]
    assert streams[0] == streams[1] == streams[2]


def test_non_dict_samples_are_wrapped_and_dicts_are_not_mutated():
    rows = [{"x": i} for i in range(4)]
    ds = MixtureDataset({"a": rows, "b": ["t0", "t1"]}, {"a": 1, "b": 1})
    out = take(iter(ds), 4)
    assert {"__domain__": "b", "sample": "t0"} in out or {"__domain__": "b", "sample": "t1"} in out
    assert all("__domain__" not in r for r in rows)


# -- 4. exhaustion ---------------------------------------------------------------------------


def test_stop_lets_the_domain_leave_and_the_rest_renormalize(caplog):
    ds = MixtureDataset(
        {"a": range(5), "b": range(100), "c": range(100)},
        {"a": 0.5, "b": 0.25, "c": 0.25},
        exhaustion={"a": "stop"},
    )
    with caplog.at_level(logging.INFO, logger="mixsampler.dataset"):
        out = [s["__domain__"] for s in take(iter(ds), 60)]
    assert out.count("a") == 5
    tail = Counter(out[20:])
    assert tail["a"] == 0 and abs(tail["b"] - tail["c"]) <= 1
    assert "domain 'a' exhausted" in caplog.text


def test_stop_everywhere_ends_the_stream():
    ds = MixtureDataset({"a": range(3), "b": range(4)}, {"a": 1, "b": 1}, exhaustion="stop")
    assert Counter(s["__domain__"] for s in ds) == {"a": 3, "b": 4}


def test_error_policy_raises_naming_the_domain():
    ds = MixtureDataset({"a": range(3), "b": range(100)}, {"a": 1, "b": 1}, exhaustion="error")
    with pytest.raises(RuntimeError, match="domain 'a' is exhausted"):
        take(iter(ds), 20)


# -- 2. tokens -----------------------------------------------------------------------------


def test_token_shares_follow_the_weights_with_lengths_from_ntok(shards):
    short = shards("short", 2, 40, length=lambda i: 1 + i % 5)
    long = shards("long", 2, 40, length=lambda i: 20 + (7 * i) % 41)
    ds = MixtureDataset({"s": short, "l": long}, {"s": 0.3, "l": 0.7}, unit="tokens")
    tokens = Counter()
    longest = 60
    for s in take(iter(ds), 300):
        tokens[s["__domain__"]] += int(s["ntok"])
        total = sum(tokens.values())
        assert abs(tokens["s"] - 0.3 * total) <= longest
    # In samples the short domain is far above 30%: the weights are token shares.
    assert ds.counts()["samples"]["s"] > ds.counts()["samples"]["l"]
    assert ds.counts()["tokens"] == dict(tokens)


def test_tokens_unit_with_a_length_fn_and_without_a_length():
    data = {"a": ["x" * 3] * 50, "b": ["y" * 9] * 50}
    ds = MixtureDataset(data, {"a": 0.5, "b": 0.5}, unit="tokens", length_fn=lambda s: len(s))
    out = Counter()
    for s in take(iter(ds), 120):
        out[s["__domain__"]] += len(s["sample"])
    assert abs(out["a"] - out["b"]) <= 9
    bare = MixtureDataset(data, {"a": 0.5, "b": 0.5}, unit="tokens")
    with pytest.raises(ValueError, match="pass length_fn="):
        next(iter(bare))


# -- 5 and 6. weights and state ----------------------------------------------------------------


def _resume_equal(make, consumed, total, change_at=None):
    """Stream of an uninterrupted run vs one restored from a state after ``consumed`` samples."""

    def run(ds, start, stop, it=None):
        it = iter(ds) if it is None else it
        out = []
        for n in range(start, stop):
            if n == change_at:
                ds.set_weights({"a": 0.1, "b": 0.9})
            out.append(next(it))
        return out, it

    ref, _ = run(make(), 0, total)
    ds = make()
    head, _ = run(ds, 0, consumed)
    state = ds.state_dict()
    fresh = make()
    if change_at is not None and change_at < consumed:
        fresh.set_weights({"a": 0.1, "b": 0.9})  # what a callback re-applies after a restart
    fresh.load_state_dict(state)
    tail, _ = run(fresh, consumed, total)
    return ids(ref), ids(head + tail), state


def _length(sample):
    return int(sample["ntok"]) if isinstance(sample, dict) else 3


@pytest.mark.parametrize(
    ("consumed", "unit"),
    [
        (0, "samples"),
        (1, "samples"),
        (7, "samples"),
        (8, "samples"),
        (33, "tokens"),
        (61, "tokens"),
    ],
)
def test_state_round_trip_continues_the_same_stream(shards, consumed, unit):
    a = shards("a", 3, 9)
    b = _Reiterable(17)
    c = list(range(13))

    def make():
        return MixtureDataset(
            {"a": a, "b": b, "c": c},
            {"a": 0.5, "b": 0.3, "c": 0.2},
            seed=3,
            shuffle_buffer=4,
            unit=unit,
            length_fn=_length if unit == "tokens" else None,
        )

    ref, resumed, state = _resume_equal(make, consumed, 80)
    assert resumed == ref
    if consumed:
        assert isinstance(state["readers"], list) and state["n"] == consumed


def test_weight_history_is_part_of_the_state_and_the_resume_replays_it():
    def make():
        return MixtureDataset({"a": range(40), "b": range(40)}, {"a": 0.5, "b": 0.5})

    ref, resumed, state = _resume_equal(make, consumed=30, total=60, change_at=10)
    assert resumed == ref
    assert state["history"] == [[0, [0.5, 0.5]], [10, [0.1, 0.9]]]
    tail = [d for d, _ in ref[10:]]
    assert tail.count("b") >= 0.9 * 50 - 2


def test_weights_set_before_a_resume_override_the_saved_ones():
    def make():
        return MixtureDataset({"a": range(40), "b": range(40)}, {"a": 0.5, "b": 0.5})

    ds = make()
    take(iter(ds), 10)
    state = ds.state_dict()
    kept = make()  # constructor weights only: the state's weights continue
    kept.load_state_dict(state)
    assert take(iter(kept), 4) == take(iter(_loaded(make, state)), 4)
    assert kept.state_dict()["history"] == [[0, [0.5, 0.5]]]
    changed = make()
    changed.set_weights({"a": 0, "b": 1})
    changed.load_state_dict(state)
    assert {s["__domain__"] for s in take(iter(changed), 10)} == {"b"}
    assert changed.state_dict()["history"] == [[0, [0.5, 0.5]], [10, [0.0, 1.0]]]


def _loaded(make, state):
    ds = make()
    ds.load_state_dict(state)
    return ds


def test_set_weights_reaches_an_iteration_in_progress():
    ds = MixtureDataset({"a": range(50), "b": range(50)}, {"a": 1, "b": 1})
    it = iter(ds)
    take(it, 10)
    ds.set_weights({"a": 0, "b": 1})
    assert ds.weights == {"a": 0.0, "b": 1.0}
    assert {s["__domain__"] for s in take(it, 20)} == {"b"}


def test_resume_with_another_layout_is_refused():
    ds = MixtureDataset({"a": range(50), "b": range(50)}, {"a": 1, "b": 1}, world_size=2)
    take(ds._iter_slot(0, 2), 5)
    state = ds.state_dict()
    other_workers = MixtureDataset({"a": range(50), "b": range(50)}, {"a": 1, "b": 1}, world_size=2)
    other_workers.load_state_dict(state)
    with pytest.raises(ValueError, match="different layout"):
        next(other_workers._iter_slot(0, 3))
    other_world = MixtureDataset({"a": range(50), "b": range(50)}, {"a": 1, "b": 1}, world_size=4)
    other_world.load_state_dict(state)
    with pytest.raises(ValueError, match="world size 2"):
        next(iter(other_world))
    other_seed = MixtureDataset({"a": range(50), "b": range(50)}, {"a": 1, "b": 1}, seed=1)
    with pytest.raises(ValueError, match="seed=0"):
        other_seed.load_state_dict(state)


# -- 7. accounting -----------------------------------------------------------------------------


def test_counts_sum_the_workers_of_this_rank_and_are_saved(shards):
    a = shards("a", 2, 20)
    ds = MixtureDataset({"a": a, "b": range(40)}, {"a": 0.75, "b": 0.25})
    seen = Counter()
    tokens = 0
    for worker in range(2):
        for s in take(ds._iter_slot(worker, 2), 12):
            seen[s["__domain__"]] += 1
            tokens += int(s.get("ntok", b"0"))
    counts = ds.counts()
    assert counts["samples"] == {"a": seen["a"], "b": seen["b"]} == {"a": 18, "b": 6}
    assert counts["tokens"] == {"a": tokens, "b": 0}
    assert ds.state_dict()["samples"] == [9, 3]  # the last worker's own stream


# -- 9. bad input --------------------------------------------------------------------------


def test_missing_shard_is_named(shards, tmp_path):
    good = shards("web", 1, 2)
    missing = str(tmp_path / "web-000009.tar")
    with pytest.raises(FileNotFoundError, match="shard .*web-000009.tar does not exist"):
        MixtureDataset({"web": [*good, missing]}, {"web": 1})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"unit": "bytes"}, "unit can be samples, tokens, got 'bytes'"),
        ({"exhaustion": "loop"}, r"exhaustion\['a'\] can be repeat, stop, error, got 'loop'"),
        ({"exhaustion": {"z": "stop"}}, "unknown domains"),
        ({"on_corrupt": "ignore"}, "on_corrupt can be warn, raise, got 'ignore'"),
        ({"shuffle_buffer": 0}, "shuffle_buffer must be an integer >= 1, got 0"),
        ({"rank": 2, "world_size": 2}, r"rank must be an integer in \[0, 1\], got 2"),
        ({"seed": -1}, "seed must be an integer >= 0, got -1"),
    ],
)
def test_bad_options_get_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MixtureDataset({"a": range(3), "b": range(3)}, {"a": 1, "b": 1}, **kwargs)


def test_bad_weights_and_domains_get_a_clear_message():
    with pytest.raises(ValueError, match=r"no weight for domains \['b'\]"):
        MixtureDataset({"a": range(3), "b": range(3)}, {"a": 1})
    with pytest.raises(ValueError, match="got nan"):
        MixtureDataset({"a": range(3)}, {"a": float("nan")})
    with pytest.raises(ValueError, match="domain 'e' is empty"):
        MixtureDataset({"a": range(3), "e": []}, {"a": 1, "e": 1})
    with pytest.raises(ValueError, match="non-empty mapping"):
        MixtureDataset({}, {})
    ds = MixtureDataset({"a": range(3)}, {"a": 1})
    with pytest.raises(ValueError, match="unknown domains"):
        ds.set_weights({"a": 1, "x": 1})


def test_a_one_shot_iterator_cannot_repeat_and_says_so():
    ds = MixtureDataset({"g": (x for x in range(3)), "a": range(50)}, {"g": 1, "a": 1})
    with pytest.raises(ValueError, match="domain 'g' is a one-shot iterator"):
        take(iter(ds), 20)
    ok = MixtureDataset(
        {"g": (x for x in range(3)), "a": range(50)}, {"g": 1, "a": 1}, exhaustion={"g": "stop"}
    )
    assert Counter(s["__domain__"] for s in take(iter(ok), 20)) == {"g": 3, "a": 17}


def test_an_empty_domain_fails_instead_of_hanging(tmp_path):
    empty = str(tmp_path / "empty-000000.tar")
    wds.TarWriter(empty).close()
    ds = MixtureDataset({"e": empty, "a": range(5)}, {"e": 1, "a": 1})
    with pytest.raises(ValueError, match="domain 'e' gave no samples"):
        take(iter(ds), 10)
    # Fewer samples than slots: the slot that gets none says so.
    few = MixtureDataset({"a": range(2)}, {"a": 1}, world_size=3, rank=2)
    with pytest.raises(ValueError, match="fewer samples than the 3 slots"):
        take(iter(few), 2)


def _corrupt_header(path, member):
    """Overwrite the tar header of the ``member``-th regular file with garbage."""
    with open(path, "r+b") as f:
        data = f.read()
        offsets = [
            i
            for i in range(0, len(data), 512)
            if data[i + 257 : i + 262] == b"ustar" and data[i + 156 : i + 157] == b"0"
        ]
        f.seek(offsets[member])
        f.write(b"\xff" * 512)


def test_a_corrupt_member_is_skipped_counted_and_warned_once_per_shard(shards):
    # 10 samples of 2 members each (bin, ntok): member 4 is the bin of sample 2.
    web = shards("web", 1, 10)
    _corrupt_header(web[0], 4)
    ds = MixtureDataset({"web": web}, {"web": 1}, exhaustion="stop", shuffle_buffer=1)
    with pytest.warns(UserWarning, match="corrupt tar data in shard .*web-000000.tar") as rec:
        got = list(ds)
    assert len([w for w in rec if "corrupt" in str(w.message)]) == 1
    keys = sorted(s["__key__"] for s in got)
    assert keys == [f"web{i:06d}" for i in range(10) if i != 2], "only the broken sample goes"
    assert ds.counts()["corrupt"]["web"] == 1

    strict = MixtureDataset({"web": web}, {"web": 1}, on_corrupt="raise")
    with pytest.raises(CorruptShardError, match="web-000000.tar"):
        list(strict)


def test_a_truncated_shard_is_counted_not_fatal(shards):
    web = shards("web", 2, 10)
    size = os.path.getsize(web[1])
    with open(web[1], "r+b") as f:
        f.truncate(size // 2)
    ds = MixtureDataset({"web": web}, {"web": 1}, exhaustion="stop")
    with pytest.warns(UserWarning, match="web-000001.tar"):
        got = list(ds)
    assert 10 <= len(got) < 20
    assert ds.counts()["corrupt"]["web"] == 1


def test_rank_and_world_size_come_from_the_environment_when_not_given(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    streams = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        ds = MixtureDataset({"a": range(9)}, {"a": 1})
        assert (ds.rank, ds.world_size) == (rank, 3)
        streams.append([s["sample"] for s in take(iter(ds), 3)])
    assert sorted(sum(streams, [])) == list(range(9)), "ranks split the domain"


@pytest.mark.parametrize(("weights", "slots"), [((0.6, 0.3, 0.1), 1), ((0.5, 0.5, 0.0), 3)])
def test_the_dataset_follows_the_reference_schedule(weights, slots):
    # The per-sample loop inlines schedule.pick_samples and schedule.book for speed; it must
    # produce exactly the sequence of the reference functions.
    names = ("a", "b", "c")
    ds = MixtureDataset(
        {d: range(300) for d in names}, dict(zip(names, weights, strict=True)), seed=5
    )
    for worker in range(slots):
        got = [names.index(s["__domain__"]) for s in take(ds._iter_slot(worker, slots), 200)]
        assert got == schedule.simulate(weights, 200, seed=5, slot=worker)


def test_pipe_urls_are_read_and_resumed_without_seeking(shards):
    local = shards("web", 2, 6)
    piped = [f"pipe:cat {p}" for p in local]

    def make(spec):
        return MixtureDataset({"web": spec}, {"web": 1}, shuffle_buffer=4)

    assert [s["__key__"] for s in take(iter(make(piped)), 12)] == [
        s["__key__"] for s in take(iter(make(local)), 12)
    ]
    ds = make(piped)
    take(iter(ds), 5)  # inside the second block of a shard: resume skips bytes, then reads
    resumed = make(piped)
    resumed.load_state_dict(ds.state_dict())
    assert ids(take(iter(resumed), 7)) == ids(take(iter(make(piped)), 12))[5:]


@settings(
    max_examples=12,
    deadline=None,
    # write_domain is a plain function; nothing in it is shared between examples.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    n_shards=st.integers(1, 6),
    per_shard=st.integers(1, 7),
    world_size=st.integers(1, 3),
    num_workers=st.integers(1, 3),
    buffer=st.integers(1, 5),
)
def test_any_layout_reads_each_sample_once_per_pass(
    write_domain, n_shards, per_shard, world_size, num_workers, buffer
):
    # Layouts where some slot gets no sample at all are legitimate with exhaustion="stop".
    with tempfile.TemporaryDirectory() as folder:
        web = write_domain(folder, "web", n_shards, per_shard)

        def make(rank, ws):
            return MixtureDataset(
                {"web": web},
                {"web": 1},
                rank=rank,
                world_size=ws,
                exhaustion="stop",
                shuffle_buffer=buffer,
            )

        got = _one_pass(make, world_size, num_workers)
    assert sorted(k for _, k in got) == [f"web{i:06d}" for i in range(n_shards * per_shard)]


@pytest.mark.parametrize("consumed", [63, 64, 65, 150, 301])
def test_resume_while_the_next_block_is_read_in_chunks(shards, consumed):
    # Blocks larger than the 64-sample read chunk: the next block is half read at a snapshot.
    a = shards("a", 2, 170)
    b = _Reiterable(260)

    def make():
        return MixtureDataset({"a": a, "b": b}, {"a": 0.7, "b": 0.3}, shuffle_buffer=100)

    ref, resumed, _ = _resume_equal(make, consumed, consumed + 120)
    assert resumed == ref
    first_pass = [k for d, k in ref[:300] if d == "a"]
    assert len(set(first_pass)) == len(first_pass)
