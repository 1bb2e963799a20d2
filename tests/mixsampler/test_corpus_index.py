"""Issue 21 point 5 (read side): a stale or damaged index never yields wrong samples silently."""

from __future__ import annotations

import io
import json
import os
import tarfile
import warnings

import pytest

from mixsampler import MixtureDataset, index
from mixsampler.index import StaleIndexError


@pytest.fixture(autouse=True)
def _fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("MIXSAMPLER_CACHE", str(tmp_path / "cache"))
    index.clear_cache()
    yield
    index.clear_cache()


def _tar(path, samples):
    """A shard of ``(key, bin)`` samples, written like ``mixsampler shards`` (USTAR, no times)."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, data in samples:
            for ext, value in (("bin", data), ("ntok", str(len(data)).encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
    return str(path)


def _rewrite_keeping_stamp(path, samples):
    st = os.stat(path)
    _tar(path, samples)
    assert os.path.getsize(path) == st.st_size, "the test needs a rewrite of the same size"
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _samples(tag, sizes):
    return [(f"{tag}{i:04d}", bytes([65 + i % 26]) * n) for i, n in enumerate(sizes)]


def test_a_rewrite_with_size_and_mtime_restored_is_reindexed(tmp_path):
    url = _tar(tmp_path / "d-000000.tar", _samples("old", [100] * 12))
    assert index.load_index(url).read(0)["__key__"] == "old0000"  # sidecar written
    _rewrite_keeping_stamp(url, _samples("new", [100] * 12))
    # From the memory cache and, in a fresh process, from the sidecar: both see the change.
    assert index.load_index(url).read(3)["__key__"] == "new0003"
    index.clear_cache()
    assert [index.load_index(url).read(i)["__key__"] for i in (0, 11)] == ["new0000", "new0011"]
    assert index.shard_info(url)[0] == 12


def test_a_change_the_fingerprint_misses_is_refused_on_read(tmp_path):
    # 40 samples of ~2 KiB: the fingerprint covers the first and last 4 KiB, and the rewrite
    # swaps the sizes of two samples in the middle (both pad to the same blocks, so the shard
    # keeps its size): the stale index would cut sample 20's 'bin' short.
    sizes = [2000] * 40
    url = _tar(tmp_path / "d-000000.tar", _samples("k", sizes))
    idx = index.load_index(url)
    sizes[20], sizes[21] = 1600, 1900
    _rewrite_keeping_stamp(url, _samples("k", sizes))
    assert index._fingerprint(url) == idx.fingerprint  # the case the header checks are for
    assert idx.read(19)["bin"] == b"T" * 2000  # untouched samples read fine
    with pytest.raises(StaleIndexError, match=r"d-000000.tar does not match its index at sam"):
        idx.read(20)
    ds = MixtureDataset({"d": [url]}, {"d": 1.0}, shuffle_buffer=40)
    with pytest.raises(StaleIndexError, match="sample 2[01] .key 'k002[01]'.*build_index"):
        for _ in zip(range(40), ds, strict=False):
            pass


def test_a_bit_flip_in_the_index_offsets_is_detected_and_rebuilt(tmp_path):
    url = _tar(tmp_path / "d-000000.tar", _samples("k", [300 + 7 * i for i in range(30)]))
    want = [index.load_index(url).read(i) for i in range(30)]
    side = index.sidecar_path(url)
    raw = bytearray(open(side, "rb").read())
    n = int.from_bytes(raw[8:16], "little")
    meta = json.loads(raw[16 : 16 + n])
    dtype, at, length = meta["arrays"]["offset"]
    pos = 16 + n + at + 8 * 5  # the 6th member's offset, little-endian int64
    raw[pos + 1] ^= 0x02  # +512 bytes: the next member's data
    open(side, "wb").write(bytes(raw))
    index.clear_cache()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        idx = index.load_index(url)
    assert any("is damaged (its checksum does not match)" in str(w.message) for w in caught)
    assert [idx.read(i) for i in range(30)] == want
