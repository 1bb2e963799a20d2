"""The shard reader at cluster scale: disjoint, complete, balanced shares; reads only its own."""

from __future__ import annotations

import io
import itertools
import os
from collections import Counter

import pytest

from mixsampler import MixtureDataset, index, tarreader
from mixsampler.sources import END, ReaderContext, source_spec


@pytest.fixture(autouse=True)
def _fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("MIXSAMPLER_CACHE", str(tmp_path / "cache"))
    index.clear_cache()
    yield
    index.clear_cache()


def _reader(spec, slot, slots, buffer=4, on_corrupt=None):
    ctx = ReaderContext(
        seed=3,
        domain=0,
        slot=slot,
        slots=slots,
        shuffle_buffer=buffer,
        on_corrupt=on_corrupt or (lambda url, message: None),
    )
    return spec.reader(ctx)


def _read_pass(reader):
    out = []
    while (s := reader.next()) is not END:
        out.append(s["__key__"])
    return out


def test_8192_slots_read_disjoint_members_that_cover_each_pass_once(shards):
    # Far fewer shards (8) than a 1,000-GPU job has slots (8,192), and barely more samples:
    # checked on the assignment, from the indexes alone, for two passes.
    spec = source_spec("web", shards("web", 8, 1100))
    total = 8 * 1100
    readers = [_reader(spec, s, 8192, buffer=1000) for s in range(8192)]
    for p in range(2):
        plans = [r.pass_plan() for r in readers]
        got = Counter(itertools.chain.from_iterable(plans))
        assert len(got) == total and set(got.values()) == {1}, f"pass {p}"
        assert {len(x) for x in plans} == {total // 8192, total // 8192 + 1}
        for r in readers:
            r.pass_ += 1
            r._start_pass()
    # What a slot really emits is its plan (checked on a few slots, the last ones included).
    for slot in (0, 4321, 8191):
        r = _reader(spec, slot, 8192, buffer=1000)
        plan = [index.load_index(url).key(i) for url, i in r.pass_plan()]
        assert _read_pass(r) == plan
        assert r.samples_read == len(plan), "read only its own samples"


@pytest.mark.parametrize(("n_shards", "slots"), [(12, 8), (3, 8), (5, 2), (1, 7)])
def test_uneven_shard_counts_keep_every_slots_passes_aligned(shards, n_shards, slots):
    # 12 shards over 8 slots used to give slots 0 to 3 two shards and 4 to 7 one: half the
    # slots started a second pass while the others were halfway through the first.
    spec = source_spec("web", shards("web", n_shards, 10))
    total = n_shards * 10
    readers = [_reader(spec, s, slots) for s in range(slots)]
    for p in range(2):
        lengths = [len(_read_pass(r)) for r in readers]
        assert max(lengths) - min(lengths) <= 1, (p, lengths)
        assert sum(lengths) == total
        assert all(r.pass_ == p + 1 for r in readers)


def test_each_repeat_pass_splits_the_shards_anew(shards):
    spec = source_spec("web", shards("web", 4, 6))
    r = _reader(spec, 1, 3)
    first, second = sorted(_read_pass(r)), sorted(_read_pass(r))
    assert len(first) == len(second) == 8
    assert first != second, "a new shard order each pass moves the slot's share"


class _Counting(io.FileIO):
    """A shard file that counts the bytes it returns (the independent check of what is read)."""

    total = 0

    def read(self, n=-1):
        data = super().read(n)
        _Counting.total += len(data)
        return data


def _counting_open(path, mode="rb", buffering=-1):
    assert mode == "rb"
    return _Counting(path, "rb")


def test_the_first_sample_needs_one_read_not_a_whole_block(shards, monkeypatch):
    a = shards("a", 2, 300, length=lambda i: 1000)
    b = shards("b", 1, 300, length=lambda i: 1000)
    for url in a + b:
        index.build_index(url)
    monkeypatch.setattr(tarreader, "open", _counting_open, raising=False)

    def make():
        return MixtureDataset({"a": a, "b": b}, {"a": 0.5, "b": 0.5}, shuffle_buffer=200)

    ds = make()
    it = iter(ds)
    _Counting.total = 0
    next(it)
    readers = ds._run.readers
    # One sample of 1,000 bytes and its tar headers (each member's own header is read too,
    # to check it against the index) is under 3.5 kB; a block is 200 samples.
    assert sum(r.samples_read for r in readers) == 1
    assert _Counting.total < 3.5 * 1024, "one sample's bytes, not a block"
    for _ in range(9):
        next(it)
    assert sum(r.samples_read for r in readers) == 10
    assert _Counting.total < 10 * 3.5 * 1024

    # After a restore: the same, from the middle of a block.
    state = ds.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    it2 = iter(resumed)
    _Counting.total = 0
    s = next(it2)
    assert sum(r.samples_read for r in resumed._run.readers) == 1
    assert _Counting.total < 3.5 * 1024
    assert s["__key__"] == next(it)["__key__"], "and it is the sample the run would have seen"


def test_bytes_read_per_slot_do_not_grow_with_the_job(shards):
    spec = source_spec("web", shards("web", 4, 256, length=lambda i: 2048))
    for slots in (1, 64, 512):
        r = _reader(spec, 0, slots, buffer=100)
        n = len(_read_pass(r))
        assert n == 1024 // slots
        # A sample, its headers and the header checked before its first member.
        assert r.bytes_read <= n * (2048 + 2560), slots


def test_resume_anywhere_in_a_pass_is_exact_for_several_slots(shards):
    spec = source_spec("web", shards("web", 3, 11))
    for slot in range(3):
        ref = _reader(spec, slot, 3, buffer=4)
        keys = _read_pass(ref) + _read_pass(ref)
        for cut in range(len(keys)):
            r = _reader(spec, slot, 3, buffer=4)
            for _ in range(cut):
                if r.next() is END:
                    r.next()
            resumed = _reader(spec, slot, 3, buffer=4)
            resumed.load(r.state())
            got = []
            while len(got) < len(keys) - cut:
                s = resumed.next()
                if s is not END:
                    got.append(s["__key__"])
            assert got == keys[cut:], (slot, cut)
            assert resumed.samples_read == len(got), "no replay"


def test_states_of_the_old_layout_and_of_changed_data_are_refused(shards, write_domain):
    urls = shards("web", 2, 5)
    spec = source_spec("web", urls)
    r = _reader(spec, 0, 1)
    with pytest.raises(ValueError, match="older mixsampler that split passes by whole shards"):
        r.load({"pass": 0, "emitted": 0, "shard": 0, "block": 0, "block_at": 0, "offset": 0})
    state = r.state()
    write_domain(os.path.dirname(urls[0]), "web", 2, 6)  # the data grew under the checkpoint
    again = _reader(source_spec("web", urls), 0, 1)
    with pytest.raises(ValueError, match="held 10 samples when the state was saved and hold 12"):
        again.load(state)


def test_corrupt_data_is_reported_once_per_pass_by_the_slot_that_owns_it(shards):
    (url,) = shards("web", 1, 12)
    with open(url, "r+b") as f:
        data = f.read()
        headers = [
            i
            for i in range(0, len(data), 512)
            if data[i + 257 : i + 262] == b"ustar" and data[i + 156 : i + 157] == b"0"
        ]
        f.seek(headers[6])  # sample 3's first member
        f.write(b"\xff" * 512)
    spec = source_spec("web", [url])
    reports = []
    readers = [
        _reader(spec, s, 4, on_corrupt=lambda u, m, s=s: reports.append(s)) for s in range(4)
    ]
    keys = [k for r in readers for k in _read_pass(r)]
    assert sorted(keys) == [f"web{i:06d}" for i in range(12) if i != 3]
    assert len(reports) == 1


def test_pipe_urls_give_the_same_shares_as_local_files(shards):
    local = shards("web", 3, 7)
    with pytest.warns(UserWarning, match="cannot seek .* streams each of these shards once"):
        piped = source_spec("web", [f"pipe:cat {u}" for u in local])
    spec = source_spec("web", local)
    for slot in range(4):
        assert _read_pass(_reader(piped, slot, 4)) == _read_pass(_reader(spec, slot, 4))


def test_a_shard_rewritten_during_a_run_is_caught_within_a_block(shards, write_domain):
    (url,) = shards("web", 1, 12)
    r = _reader(source_spec("web", [url]), 0, 1, buffer=4)
    for _ in range(3):
        r.next()
    write_domain(os.path.dirname(url), "web", 1, 9)  # same path, fewer samples
    st = os.stat(url)
    os.utime(url, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a coarse clock may not tick
    r.next()  # the rest of the current block
    with pytest.raises(ValueError, match=r"web-000000.tar changed while it was read .* 12 .* 9"):
        r.next()
