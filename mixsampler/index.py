"""Indexes of webdataset tar shards: where each sample's members are, so a slot reads only its own.

An index lists, for every sample of a shard, its key and the byte offset and size of each
member's data (and where its first header starts, for streams that can only skip bytes). It
is built once by walking the shard (the same walk, and the same corrupt-member handling, as
:func:`mixsampler.tario.iter_tar`), and cached:

1. beside the shard, as the hidden file ``.<shard name>.idx`` (written atomically, so ranks
   that build it at the same time never see half a file);
2. if that folder is not writable, under ``$MIXSAMPLER_CACHE`` (default
   ``$XDG_CACHE_HOME/mixsampler`` or ``~/.cache/mixsampler``), with a warning;
3. if that fails too, in memory only, with a warning (every process then walks the shard).

A cached index is used only while the shard's size and modification time are the ones it
was built from; otherwise it is rebuilt. URLs without random access (``pipe:``, ``http:``,
``s3:`` ...) are indexed in memory by streaming them once per process; see
:class:`mixsampler.sources.TarReader` for what that costs.

Example:
    >>> idx = build_index("data/web-000000.tar")  # doctest: +SKIP
    >>> idx.count, idx.read(0)["__key__"]  # doctest: +SKIP
    (2000, 'web000000')
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from mixsampler.tario import _is_local, _local_path, walk_tar

__all__ = ["ShardIndex", "build_index", "load_index", "shard_info", "clear_cache"]

_VERSION = 1
# Full indexes kept per process: a slot reads one or two shards of a domain at a time, so a
# small LRU bounds memory in a domain of thousands of shards.
_FULL_CACHE_SIZE = 16
_full: OrderedDict[str, ShardIndex] = OrderedDict()
_info: dict[str, tuple[Any, int, tuple[tuple[int, str], ...]]] = {}  # url -> (stamp, count, events)
_memory_only: dict[str, ShardIndex] = {}  # indexes that could not be written anywhere
_warned: set[str] = set()


@dataclass(frozen=True)
class ShardIndex:
    """Where the samples of one shard are.

    Attributes:
        url: the shard.
        stamp: ``(size, mtime_ns)`` of the shard it was built from; None for streams.
        keys: sample keys in file order.
        first: ``count + 1`` member numbers: sample ``i`` owns members ``first[i]:first[i+1]``.
        offset: byte offset of each member's data; ``size``: its length; ``ext``: its
            extension, as a number into ``exts``.
        starts: byte offset of each sample's first header (where a stream skips to).
        events: ``(sample number, message)`` of corrupt data met while building, reported by
            the slot that reads that sample (once per pass over the whole job).
    """

    url: str
    stamp: tuple[int, int] | None
    keys: tuple[str, ...]
    first: np.ndarray
    offset: np.ndarray
    size: np.ndarray
    ext: np.ndarray
    exts: tuple[str, ...]
    starts: np.ndarray
    events: tuple[tuple[int, str], ...] = field(default=())

    @property
    def count(self) -> int:
        return len(self.keys)

    def read(self, i: int, f: BinaryIO | None = None) -> dict[str, Any]:
        """Sample ``i`` as :func:`~mixsampler.tario.iter_tar` gives it, in one read.

        Args:
            i: sample number in the shard.
            f: an open binary file of the shard (the caller keeps it open between samples).
        """
        lo_m, hi_m = int(self.first[i]), int(self.first[i + 1])
        lo = int(self.offset[lo_m])
        hi = int(self.offset[hi_m - 1] + self.size[hi_m - 1])
        if f is None:
            with open(_local_path(self.url), "rb") as g:
                g.seek(lo)
                buf = g.read(hi - lo)
        else:
            f.seek(lo)
            buf = f.read(hi - lo)
        if len(buf) != hi - lo:
            raise OSError(f"shard {self.url} is shorter than its index says: it changed")
        sample: dict[str, Any] = {"__key__": self.keys[i], "__url__": self.url}
        exts = self.exts
        for m in range(lo_m, hi_m):
            at = int(self.offset[m]) - lo
            sample[exts[self.ext[m]]] = buf[at : at + int(self.size[m])]
        return sample


def _stamp(url: str) -> tuple[int, int] | None:
    if not _is_local(url):
        return None
    try:
        st = os.stat(_local_path(url))
    except FileNotFoundError:
        raise FileNotFoundError(f"shard {url} does not exist") from None
    return (st.st_size, st.st_mtime_ns)


def _walk(url: str) -> ShardIndex:
    events: list[tuple[int, str]] = []
    keys: list[str] = []
    first, offset, size, ext, starts = [0], [], [], [], []
    exts: dict[str, int] = {}
    stamp = _stamp(url)

    def on_corrupt(_url: str, message: str) -> None:
        events.append((len(keys), message))

    for sample, start, _, members in walk_tar(url, 0, on_corrupt, read=False):
        keys.append(sample["__key__"])
        starts.append(start)
        for e, off, n in members:
            offset.append(off)
            size.append(n)
            ext.append(exts.setdefault(e, len(exts)))
        first.append(len(offset))
    # An event after the last sample belongs to the last one; a shard without intact samples
    # keeps its events at 0 and the reader reports them at the next shard's first sample.
    last = max(len(keys) - 1, 0)
    return ShardIndex(
        url=url,
        stamp=stamp,
        keys=tuple(keys),
        first=np.asarray(first, np.int64),
        offset=np.asarray(offset, np.int64),
        size=np.asarray(size, np.int64),
        ext=np.asarray(ext, np.int32),
        exts=tuple(exts),
        starts=np.asarray(starts, np.int64),
        events=tuple((min(i, last), m) for i, m in events),
    )


def sidecar_path(url: str) -> str:
    """The index file beside a local shard: ``.<name>.idx`` in the shard's folder."""
    path = os.path.abspath(_local_path(url))
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.idx")


def _cache_path(url: str) -> str:
    root = os.environ.get("MIXSAMPLER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mixsampler"
    )
    digest = hashlib.sha256(os.path.abspath(_local_path(url)).encode()).hexdigest()[:32]
    return os.path.join(root, "index", f"{digest}.idx")


def _meta(idx: ShardIndex) -> dict[str, Any]:
    return {
        "format": "mixsampler-index",
        "version": _VERSION,
        "path": os.path.abspath(_local_path(idx.url)),
        "stamp": list(idx.stamp) if idx.stamp else None,
        "count": idx.count,
        "exts": list(idx.exts),
        "events": [list(e) for e in idx.events],
    }


def _save(idx: ShardIndex, path: str) -> None:
    """Write atomically: a temporary file in the same folder, then rename over ``path``."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".idx")
    try:
        with os.fdopen(fd, "wb") as f:
            keys = "\0".join(idx.keys).encode("utf-8", "surrogateescape")
            np.savez(
                f,
                meta=np.frombuffer(json.dumps(_meta(idx)).encode(), np.uint8),
                keys=np.frombuffer(keys, np.uint8),
                first=idx.first,
                offset=idx.offset,
                size=idx.size,
                ext=idx.ext,
                starts=idx.starts,
            )
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read_meta(z: Any, url: str, stamp: tuple[int, int] | None) -> dict[str, Any] | None:
    meta = json.loads(bytes(z["meta"]).decode())
    ok = (
        meta.get("format") == "mixsampler-index"
        and meta.get("version") == _VERSION
        and meta.get("path") == os.path.abspath(_local_path(url))
        and meta.get("stamp") == (list(stamp) if stamp else None)
    )
    return meta if ok else None


def _load_file(path: str, url: str, stamp: tuple[int, int] | None, full: bool) -> Any:
    """The index (``full``) or ``(count, events)`` stored at ``path``; None if absent or stale."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = _read_meta(z, url, stamp)
            if meta is None:
                return None
            events = tuple((int(i), str(m)) for i, m in meta["events"])
            if not full:
                return int(meta["count"]), events
            blob = bytes(z["keys"]).decode("utf-8", "surrogateescape")
            keys = tuple(blob.split("\0")) if meta["count"] else ()
            return ShardIndex(
                url=url,
                stamp=stamp,
                keys=keys,
                first=z["first"],
                offset=z["offset"],
                size=z["size"],
                ext=z["ext"],
                exts=tuple(meta["exts"]),
                starts=z["starts"],
                events=events,
            )
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None  # missing, unreadable or not an index: rebuild


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, stacklevel=4)


def _store(idx: ShardIndex) -> None:
    """Cache a freshly built local index beside the shard, else in the user cache, else memory."""
    side = sidecar_path(idx.url)
    try:
        _save(idx, side)
        return
    except OSError as err:
        reason = f"{side}: {err.strerror or err}"
    cache = _cache_path(idx.url)
    try:
        _save(idx, cache)
        _warn_once(
            os.path.dirname(side),
            f"cannot write shard indexes beside the shards ({reason}); caching them under "
            f"{os.path.dirname(cache)} instead. Prebuild them where the shards are written "
            "with mixsampler.index.build_index (or `mixsampler shards`) to share them.",
        )
        return
    except OSError as err:
        _memory_only[idx.url] = idx
        _warn_once(
            os.path.dirname(side),
            f"cannot write shard indexes beside the shards ({reason}) nor under "
            f"{os.path.dirname(cache)} ({err.strerror or err}): keeping them in memory, so "
            "every process walks every shard it reads once. Set MIXSAMPLER_CACHE to a "
            "writable folder.",
        )


def _remember(idx: ShardIndex) -> ShardIndex:
    _full[idx.url] = idx
    _full.move_to_end(idx.url)
    while len(_full) > _FULL_CACHE_SIZE:
        _full.popitem(last=False)
    _info[idx.url] = (idx.stamp, idx.count, idx.events)
    return idx


def build_index(url: str, *, force: bool = False) -> ShardIndex:
    """Build (or validate) the index of one shard and cache it; return it.

    Reuses a cached index that matches the shard's size and modification time unless
    ``force``. This is what ``mixsampler shards`` calls after writing a shard, so that no
    training job has to walk the shards itself.

    Raises:
        FileNotFoundError: the shard does not exist (named).

    Example:
        >>> build_index("data/web-000000.tar").count  # doctest: +SKIP
        2000
    """
    if _is_local(url) and not os.path.isfile(_local_path(url)):
        raise FileNotFoundError(f"shard {url} does not exist")
    if not force:
        return load_index(url)
    idx = _walk(url)
    if idx.stamp is not None:
        _store(idx)
    return _remember(idx)


def load_index(url: str) -> ShardIndex:
    """The index of a shard: from memory, the sidecar, the user cache, or built now."""
    stamp = _stamp(url)
    hit = _full.get(url) or _memory_only.get(url)
    if hit is not None and hit.stamp == stamp:
        _full[url] = hit
        _full.move_to_end(url)
        return hit
    if stamp is not None:
        for path in (sidecar_path(url), _cache_path(url)):
            idx = _load_file(path, url, stamp, full=True)
            if idx is not None:
                return _remember(idx)
        idx = _walk(url)
        if _stamp(url) != idx.stamp:  # changed while we walked it: walk again
            idx = _walk(url)
        _store(idx)
        return _remember(idx)
    return _remember(_walk(url))  # a stream: memory only (see the module docstring)


def shard_info(url: str) -> tuple[int, tuple[tuple[int, str], ...]]:
    """``(sample count, corrupt events)`` of a shard, reading only the index's small header."""
    stamp = _stamp(url)
    hit = _info.get(url)
    if hit is not None and hit[0] == stamp:
        return hit[1], hit[2]
    if stamp is not None:
        for path in (sidecar_path(url), _cache_path(url)):
            got = _load_file(path, url, stamp, full=False)
            if got is not None:
                _info[url] = (stamp, *got)
                return got
    idx = load_index(url)
    return idx.count, idx.events


def clear_cache() -> None:
    """Forget the indexes held in memory (benchmarks use it to simulate a fresh process)."""
    _full.clear()
    _info.clear()
    _memory_only.clear()
