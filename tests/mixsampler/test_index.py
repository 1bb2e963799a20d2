"""Shard indexes: agree with webdataset's own reading, cached, validated, rebuilt, fallbacks."""

from __future__ import annotations

import io
import os
import tarfile

import pytest
import webdataset as wds

from mixsampler import index
from mixsampler.shards import write_shards
from mixsampler.tario import iter_tar


@pytest.fixture(autouse=True)
def _fresh(tmp_path, monkeypatch):
    # Each test starts with an empty memory cache and its own user cache folder.
    monkeypatch.setenv("MIXSAMPLER_CACHE", str(tmp_path / "cache"))
    index.clear_cache()
    yield
    index.clear_cache()


def _wds_samples(url):
    """The reference: webdataset's own tar reading, undecoded."""
    return list(wds.WebDataset(url, shardshuffle=False))


def test_the_index_reads_every_sample_as_webdataset_does(shards):
    (url,) = shards("web", 1, 23)
    idx = index.build_index(url)
    ref = _wds_samples(url)
    assert idx.count == len(ref) == 23
    for i in reversed(range(idx.count)):  # random access: any order
        got = idx.read(i)
        want = {k: v for k, v in ref[i].items() if k != "__local_path__"}
        assert got == want
    assert os.path.isfile(index.sidecar_path(url))


def test_the_sidecar_is_reused_and_rebuilt_when_the_shard_changes(
    shards, write_domain, monkeypatch
):
    (url,) = shards("web", 1, 5)
    walks = []
    real = index._walk
    monkeypatch.setattr(index, "_walk", lambda u: walks.append(u) or real(u))
    assert index.load_index(url).count == 5 and len(walks) == 1
    index.clear_cache()
    assert index.load_index(url).count == 5 and len(walks) == 1, "read from the sidecar"

    # Rewritten with other content (the writer names shards by index, so same path).
    write_domain(os.path.dirname(url), "web", 1, 8)
    index.clear_cache()
    idx = index.load_index(url)
    assert idx.count == 8 and len(walks) == 2
    assert [idx.read(i)["__key__"] for i in range(8)] == [f"web{i:06d}" for i in range(8)]
    # Same size, new mtime: still rebuilt (mtime is part of the stamp).
    st = os.stat(url)
    os.utime(url, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert index.shard_info(url)[0] == 8 and len(walks) == 3
    # Without clearing the memory cache: the stamp is checked there too.
    os.utime(url, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    index.load_index(url)
    assert len(walks) == 4


def test_a_damaged_sidecar_is_rebuilt(shards):
    (url,) = shards("web", 1, 4)
    index.build_index(url)
    for garbage in (b"", b"MIXIDX1\n" + b"\xff" * 40, b"not an index at all"):
        with open(index.sidecar_path(url), "wb") as f:
            f.write(garbage)
        index.clear_cache()
        assert index.load_index(url).count == 4
        assert index.load_index(url).read(3)["__key__"] == "web000003"


def test_an_unwritable_folder_falls_back_to_the_user_cache_then_memory(
    shards, tmp_path, monkeypatch
):
    (url,) = shards("web", 1, 3)
    real_save = index._save
    side = index.sidecar_path(url)

    def save(idx, path):
        if path == side:  # root ignores chmod, so refuse the sidecar here
            raise PermissionError(13, "Permission denied")
        real_save(idx, path)

    monkeypatch.setattr(index, "_save", save)
    with pytest.warns(UserWarning, match="cannot write shard indexes beside the shards"):
        assert index.load_index(url).count == 3
    assert not os.path.exists(side)
    assert os.path.isfile(index._cache_path(url))
    index.clear_cache()
    assert index.shard_info(url)[0] == 3, "found in the user cache"

    # Neither place writable: memory only, with its own warning.
    monkeypatch.setattr(index, "_save", lambda idx, path: (_ for _ in ()).throw(OSError(30, "ro")))
    index._warned.clear()
    os.unlink(index._cache_path(url))
    index.clear_cache()
    with pytest.warns(UserWarning, match="keeping them in memory"):
        assert index.load_index(url).count == 3
    assert index.load_index(url).read(0)["__key__"] == "web000000"


def test_a_missing_shard_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope-000000.tar does not exist"):
        index.build_index(str(tmp_path / "nope-000000.tar"))


def test_a_stream_is_indexed_in_memory_with_its_skip_offsets(shards):
    (url,) = shards("web", 1, 6)
    piped = f"pipe:cat {url}"
    idx = index.load_index(piped)
    assert idx.stamp is None and idx.count == 6
    assert not any(p.endswith(".idx") for p in os.listdir(os.path.dirname(url)))
    # Streaming from a sample's start offset gives that sample first.
    start = int(idx.arrays["starts"][4])
    sample, _ = next(iter_tar(piped, start, lambda u, m: None))
    assert sample["__key__"] == "web000004"


def test_corrupt_data_is_recorded_with_the_sample_after_it(shards):
    (url,) = shards("web", 1, 10)
    with open(url, "r+b") as f:  # the header of sample 2's first member
        data = f.read()
        headers = [  # regular-file headers (webdataset also writes pax headers)
            i
            for i in range(0, len(data), 512)
            if data[i + 257 : i + 262] == b"ustar" and data[i + 156 : i + 157] == b"0"
        ]
        f.seek(headers[4])
        f.write(b"\xff" * 512)
    idx = index.build_index(url)
    assert [idx.key(i) for i in range(idx.count)] == [f"web{i:06d}" for i in range(10) if i != 2]
    assert len(idx.events) == 1 and idx.events[0][0] in (1, 2)
    index.clear_cache()
    assert index.shard_info(url)[1] == idx.events, "events survive the sidecar"


def test_a_sidecar_moves_with_its_folder(shards, tmp_path, monkeypatch):
    # Shards prebuilt on one machine and mounted elsewhere keep their indexes.
    (url,) = shards("web", 1, 4)
    index.build_index(url)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    new_url = str(moved / os.path.basename(url))
    os.rename(url, new_url)  # keeps the mtime, as rsync -a and a remount do
    os.rename(index.sidecar_path(url), index.sidecar_path(new_url))
    index.clear_cache()
    monkeypatch.setattr(index, "_walk", lambda u: pytest.fail("walked the shard again"))
    assert index.load_index(new_url).read(2)["__key__"] == "web000002"


def _slow(url, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(index, "_fast_layout", lambda u: None)
        return index._walk(url)


def _same(a, b):
    assert a.exts == b.exts and a.events == b.events
    assert set(a.arrays) == set(b.arrays)
    for name in a.arrays:
        assert a.arrays[name].tolist() == b.arrays[name].tolist(), name


def test_the_fast_header_walk_agrees_with_tarfiles_walk(shards, tmp_path, monkeypatch):
    (pax,) = shards("web", 1, 30)  # webdataset's writer: pax headers before each member
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("some text " * 400)
    # mixsampler's own writer: plain ustar headers
    ustar = write_shards(str(corpus), tmp_path / "out", domain="code", chunk_tokens=64).paths
    odd = str(tmp_path / "odd-000000.tar")  # GNU long names and a folder
    with tarfile.open(odd, "w", format=tarfile.GNU_FORMAT) as tf:
        long = "d/" + "x" * 120
        for name, data in [
            (f"{long}.a.txt", b"1"),
            (f"{long}.b.bin", b"22"),
            ("s2.txt", b"333"),
            ("s2.cls", b""),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        folder = tarfile.TarInfo("dir")
        folder.type = tarfile.DIRTYPE
        tf.addfile(folder)
    urls = [pax, odd, *ustar]
    for url in urls:
        fast = index._walk(url)
        assert index._fast_layout(url) is not None, url
        _same(fast, _slow(url, monkeypatch))
    odd_idx = index._walk(odd)
    assert [odd_idx.key(i) for i in range(odd_idx.count)] == ["d/" + "x" * 120, "s2"]
    assert odd_idx.read(0) == {
        "__key__": "d/" + "x" * 120,
        "__url__": odd,
        "a.txt": b"1",
        "b.bin": b"22",
    }


def test_damaged_shards_are_left_to_tarfiles_walk(shards):
    (url,) = shards("web", 1, 6)
    size = os.path.getsize(url)
    with open(url, "r+b") as f:
        f.truncate(size // 2 + 100)
    assert index._fast_layout(url) is None
    idx = index._walk(url)
    assert idx.events and 0 < idx.count < 6
