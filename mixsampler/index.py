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

A cached index is used only while the shard's size, modification time and *fingerprint* (a
SHA-1 of its size and its first and last 4 KiB, two page reads) are the ones it was built
from; otherwise it is rebuilt. So a shard rewritten in place with its size and mtime restored
is caught when its index is loaded, and a bit flip in the index file is caught by the CRC-32
of its arrays stored in its header (the index is rebuilt). Every sample read through an index
also checks the tar header of each of its members (one read, 512 bytes more a sample): a name
or size that disagrees with the index raises :class:`StaleIndexError` naming the shard and
sample, rather than handing training bytes from the wrong place.

URLs without random access (``pipe:``, ``http:``, ``s3:`` ...) are indexed in memory by
streaming them once per process; see :class:`mixsampler.tarreader.TarReader` for what that
costs.

Example:
    >>> idx = build_index("data/web-000000.tar")  # doctest: +SKIP
    >>> idx.count, idx.read(0)["__key__"]  # doctest: +SKIP
    (2000, 'web000000')
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import tarfile
import tempfile
import warnings
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from mixsampler.tario import MEMBER_NAME, META_MEMBER, ZERO_BLOCK, is_local, local_path, walk_tar

__all__ = [
    "ShardIndex",
    "StaleIndexError",
    "build_index",
    "load_index",
    "shard_info",
    "clear_cache",
    "sidecar_path",
]

# 2: the header holds the shard's fingerprint and the arrays' CRC-32.
_VERSION = 2
_PRINT_BLOCK = 4096
_MAGIC = b"MIXIDX1\n"
# Header types the fast walk understands: extended headers naming the next member, and the
# plain ones (files, directories, links; only files become members).
_EXTENDED = (tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME)
_PLAIN = (*tarfile.REGULAR_TYPES, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE)
# Full indexes kept per process: a slot reads one or two shards of a domain at a time, so a
# small LRU bounds memory in a domain of thousands of shards.
_FULL_CACHE_SIZE = 16
_full: OrderedDict[str, ShardIndex] = OrderedDict()
_info: dict[str, tuple[Any, int, tuple[tuple[int, str], ...]]] = {}  # url -> (stamp, count, events)
_memory_only: dict[str, ShardIndex] = {}  # indexes that could not be written anywhere
_warned: set[str] = set()


class StaleIndexError(RuntimeError):
    """A shard does not match its index: it was rewritten after it was indexed, or damaged."""


@dataclass(frozen=True)
class ShardIndex:
    """Where the samples of one shard are (arrays, memory-mapped when loaded from a file).

    Attributes:
        url: the shard.
        stamp: ``(size, mtime_ns)`` of the shard it was built from; None for streams.
        fingerprint: SHA-1 of the shard's size and first and last 4 KiB; None for streams.
        arrays: ``first`` (``count + 1`` member numbers: sample ``i`` owns members
            ``first[i]:first[i+1]``), per member ``offset`` and ``size`` of its data and
            ``ext`` (a number into ``exts``), per sample ``starts`` (byte offset of its first
            header, where a stream skips to), and the keys as ``keyblob`` cut at ``keyoff``.
        exts: the extensions met in the shard.
        events: ``(sample number, message)`` of corrupt data met while building, reported by
            the slot that reads that sample (once per pass over the whole job).
    """

    url: str
    stamp: tuple[int, int] | None
    arrays: dict[str, np.ndarray]
    exts: tuple[str, ...]
    events: tuple[tuple[int, str], ...] = field(default=())
    fingerprint: str | None = None

    @property
    def count(self) -> int:
        return len(self.arrays["starts"])

    def key(self, i: int) -> str:
        off = self.arrays["keyoff"]
        raw = self.arrays["keyblob"][int(off[i]) : int(off[i + 1])]
        return raw.tobytes().decode("utf-8", "surrogateescape")

    def span(self, i: int) -> tuple[int, int]:
        """Byte range ``[lo, hi)`` holding sample ``i``'s member data (one read)."""
        first, offset, size = self.arrays["first"], self.arrays["offset"], self.arrays["size"]
        last = int(first[i + 1]) - 1
        return int(offset[int(first[i])]), int(offset[last] + size[last])

    def read_counted(self, i: int, f: BinaryIO | None = None) -> tuple[dict[str, Any], int]:
        """:meth:`read`, and the bytes it read.

        Args:
            i: sample number in the shard.
            f: an open binary file of the shard (the caller keeps it open between samples;
                unbuffered, so a read costs the sample's bytes, not a buffer's).
        """
        arrays = self.arrays
        lo_m, hi_m = arrays["first"][i : i + 2].tolist()
        # One slice per array and sample: numpy scalar indexing costs ~100 ns per element.
        offsets = arrays["offset"][lo_m:hi_m].tolist()
        sizes = arrays["size"][lo_m:hi_m].tolist()
        # From the first member's own tar header on: each member's header is checked below.
        lo, hi = offsets[0] - 512, offsets[-1] + sizes[-1]
        if f is None:
            with open(local_path(self.url), "rb", buffering=0) as g:
                g.seek(lo)
                buf = g.read(hi - lo)
        else:
            f.seek(lo)
            buf = f.read(hi - lo)
        k0, k1 = arrays["keyoff"][i : i + 2].tolist()
        key = arrays["keyblob"][k0:k1].tobytes().decode("utf-8", "surrogateescape")
        if len(buf) != hi - lo:
            self._stale(i, key, f"it ends at byte {lo + len(buf)}, before the sample's end {hi}")
        sample: dict[str, Any] = {"__key__": key, "__url__": self.url}
        exts = self.exts
        for e, at, size in zip(arrays["ext"][lo_m:hi_m].tolist(), offsets, sizes, strict=True):
            at -= lo
            ext = exts[e]
            head = _header(buf[at - 512 : at])
            if head is None or head.size != size or not _names(head.name, key, ext):
                got = "no valid tar header" if head is None else f"{head.name!r} ({head.size} B)"
                self._stale(i, key, f"member {key}.{ext} ({size} B) is {got} in the shard")
            sample[ext] = buf[at : at + size]
        return sample, hi - lo

    def _stale(self, i: int, key: str, why: str) -> None:
        raise StaleIndexError(
            f"shard {self.url} does not match its index at sample {i} (key {key!r}): {why}. "
            "The shard was rewritten after it was indexed (with its size and modification "
            "time kept) or one of the two is damaged; rebuild the index with "
            f"mixsampler.index.build_index({self.url!r}, force=True) once the shard is final"
        )

    def read(self, i: int, f: BinaryIO | None = None) -> dict[str, Any]:
        """Sample ``i`` as :func:`~mixsampler.tario.iter_tar` gives it, in one read.

        Args:
            i: sample number in the shard.
            f: an open binary file of the shard (the caller keeps it open between samples;
                unbuffered, so a read costs the sample's bytes, not a buffer's).
        """
        return self.read_counted(i, f)[0]


def _names(name: str, key: str, ext: str) -> bool:
    """Whether a header's name is the member ``key.ext`` (a name cut at 100 bytes passes)."""
    if len(name.encode("utf-8", "surrogateescape")) >= 99:
        return True  # a long name lives in a pax or GNU header before this one
    return name.lower() == f"{key}.{ext}".lower()


def _fingerprint(url: str) -> str | None:
    """SHA-1 of the shard's size and its first and last 4 KiB (two reads); None for streams."""
    if not is_local(url):
        return None
    h = hashlib.sha1()
    with open(local_path(url), "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        h.update(size.to_bytes(8, "little"))
        h.update(f.read(_PRINT_BLOCK))
        if size > _PRINT_BLOCK:
            f.seek(max(_PRINT_BLOCK, size - _PRINT_BLOCK))
            h.update(f.read(_PRINT_BLOCK))
    return h.hexdigest()


def _stamp(url: str) -> tuple[int, int] | None:
    if not is_local(url):
        return None
    try:
        st = os.stat(local_path(url))
    except FileNotFoundError:
        raise FileNotFoundError(f"shard {url} does not exist") from None
    return (st.st_size, st.st_mtime_ns)


def _pax(data: bytes) -> dict[str, str] | None:
    """The records of a pax extended header, or None for one we leave to tarfile."""
    out, pos = {}, 0
    while pos < len(data) and data[pos] != 0:
        space = data.index(b" ", pos)
        n = int(data[pos:space])
        key, _, value = data[space + 1 : pos + n - 1].partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += n
    if any(k.startswith("GNU.sparse") or k == "hdrcharset" for k in out):
        return None
    return out


class _Header:
    __slots__ = ("name", "size", "type")

    def __init__(self, name: str, size: int, type_: bytes) -> None:
        self.name, self.size, self.type = name, size, type_

    def isfile(self) -> bool:
        return self.type in tarfile.REGULAR_TYPES


def _octal(field: bytes) -> int:
    return int(field.split(b"\0", 1)[0].strip() or b"0", 8)


def _header(buf: bytes) -> _Header | None:
    """Name, size and type of a 512-byte header as tarfile reads them; None if unusual."""
    if buf[124] & 0x80:
        return None  # a base-256 size: leave it to tarfile
    try:
        size, chksum = _octal(buf[124:136]), _octal(buf[148:156])
    except ValueError:
        return None
    if chksum != sum(buf) - sum(buf[148:156]) + 256:
        return None  # damaged (or a signed checksum, which tarfile also accepts)
    name = buf[:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    type_ = buf[156:157]
    if type_ == tarfile.AREGTYPE and name.endswith("/"):
        type_ = tarfile.DIRTYPE
    if type_ == tarfile.DIRTYPE:
        name = name.rstrip("/")
    prefix = buf[345:500].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    if prefix and type_ not in tarfile.GNU_TYPES:
        name = prefix + "/" + name
    return _Header(name, size, type_)


def _fast_layout(url: str) -> list[tuple[str, int, list[tuple[str, int, int]]]] | None:
    """``(key, start, members)`` per sample from the headers alone, or None to use tarfile.

    Parses the 512-byte headers in a memory map and skips member data, about ten times faster
    than tarfile's stream walk. It covers what webdataset and ``mixsampler shards`` write
    (ustar, pax ``path``/``size`` records, GNU long names) and gives up on anything else,
    including every kind of damage, so damaged shards get tarfile's walk and its reports.
    """
    with open(local_path(url), "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 512:
            return None
        mm = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
    with mm:
        out: list[tuple[str, int, list[tuple[str, int, int]]]] = []
        pos, head, name, length = 0, -1, None, None
        while pos < size:
            buf = mm[pos : pos + 512]
            if buf == ZERO_BLOCK or len(buf) < 512:
                return out if buf == ZERO_BLOCK and head < 0 else None
            info = _header(buf)
            if info is None:
                return None
            data = pos + 512
            n = info.size if length is None or info.type in _EXTENDED else length
            nxt = data + -(-n // 512) * 512
            if nxt > size:
                return None
            if info.type in _EXTENDED:
                head = pos if head < 0 else head
                if info.type == tarfile.GNUTYPE_LONGNAME:
                    name = mm[data : data + n].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                else:
                    pax = _pax(mm[data : data + n])
                    if pax is None:
                        return None
                    name = pax["path"].rstrip("/") if "path" in pax else name
                    length = int(pax["size"]) if "size" in pax else length
                pos = nxt
                continue
            if info.type not in _PLAIN:
                return None
            member = name if name is not None else info.name
            first = head if head >= 0 else pos
            head, name, length = -1, None, None
            pos = nxt
            if not info.isfile():
                continue
            m = MEMBER_NAME.match(member)
            if m is None or ("__" in member and META_MEMBER.search(member)):
                continue
            key, ext = m.group(1), m.group(2).lower()
            if not out or out[-1][0] != key:
                out.append((key, first, []))
            out[-1][2].append((ext, data, n))
        return out if head < 0 else None  # the end of the file, without end-of-archive blocks


def _walk(url: str) -> ShardIndex:
    if is_local(url):
        stamp, fingerprint = _stamp(url), _fingerprint(url)
        layout = _fast_layout(url)
        if layout is not None:
            return _build(url, stamp, layout, [], fingerprint)
    events: list[tuple[int, str]] = []
    layout = []

    def on_corrupt(_url: str, message: str) -> None:
        events.append((len(layout), message))

    stamp, fingerprint = _stamp(url), _fingerprint(url)
    for sample, start, _, members in walk_tar(url, 0, on_corrupt, read=False):
        layout.append((sample["__key__"], start, members))
    return _build(url, stamp, layout, events, fingerprint)


def _build(
    url: str,
    stamp: tuple[int, int] | None,
    layout: list[tuple[str, int, list[tuple[str, int, int]]]],
    events: list[tuple[int, str]],
    fingerprint: str | None,
) -> ShardIndex:
    keys: list[bytes] = []
    first, offset, size, ext, starts = [0], [], [], [], []
    exts: dict[str, int] = {}
    for key, start, members in layout:
        keys.append(key.encode("utf-8", "surrogateescape"))
        starts.append(start)
        for e, off, n in members:
            offset.append(off)
            size.append(n)
            ext.append(exts.setdefault(e, len(exts)))
        first.append(len(offset))
    # An event after the last sample belongs to the last one; the reader reports the events
    # of a shard without intact samples at the next shard's first sample.
    last = max(len(keys) - 1, 0)
    arrays = {
        "first": np.asarray(first, np.int64),
        "offset": np.asarray(offset, np.int64),
        "size": np.asarray(size, np.int64),
        "ext": np.asarray(ext, np.int32),
        "starts": np.asarray(starts, np.int64),
        "keyoff": np.cumsum([0] + [len(k) for k in keys], dtype=np.int64),
        "keyblob": np.frombuffer(b"".join(keys), np.uint8),
    }
    events_ = tuple((min(i, last), m) for i, m in events)
    return ShardIndex(url, stamp, arrays, tuple(exts), events_, fingerprint)


def _abs(url: str) -> str:
    return os.path.abspath(local_path(url))


def sidecar_path(url: str) -> str:
    """The index file beside a local shard: ``.<name>.idx`` in the shard's folder."""
    path = os.path.abspath(local_path(url))
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.idx")


def _cache_path(url: str) -> str:
    root = os.environ.get("MIXSAMPLER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mixsampler"
    )
    digest = hashlib.sha256(os.path.abspath(local_path(url)).encode()).hexdigest()[:32]
    return os.path.join(root, "index", f"{digest}.idx")


def _meta(idx: ShardIndex) -> dict[str, Any]:
    return {
        "format": "mixsampler-index",
        "version": _VERSION,
        "path": os.path.abspath(local_path(idx.url)),
        "stamp": list(idx.stamp) if idx.stamp else None,
        "fingerprint": idx.fingerprint,
        "count": idx.count,
        "exts": list(idx.exts),
        "events": [list(e) for e in idx.events],
    }


def _save(idx: ShardIndex, path: str) -> None:
    """Write atomically: a temporary file in the same folder, then rename over ``path``.

    Layout: ``_MAGIC``, the header's length (8 bytes, little-endian), a JSON header (the
    metadata, and each array's dtype, offset and length), then the raw arrays, so a reader
    gets the sample count from the first few hundred bytes and maps the rest.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    table, at = {}, 0
    blobs = []
    for name, arr in idx.arrays.items():
        table[name] = [arr.dtype.str, at, len(arr)]
        data = np.ascontiguousarray(arr).tobytes()
        blobs.append(data + bytes(-len(data) % 8))
        at += len(blobs[-1])
    body = b"".join(blobs)
    header = json.dumps({**_meta(idx), "arrays": table, "crc32": zlib.crc32(body)}).encode()
    header += b" " * (-(len(_MAGIC) + 8 + len(header)) % 8)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".idx")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC + len(header).to_bytes(8, "little") + header + body)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _load_file(
    path: str, url: str, stamp: tuple[int, int] | None, full: bool, fingerprint: str | None
) -> Any:
    """The index (``full``) or ``(count, events)`` stored at ``path``; None if absent or stale.

    Stale: another size, mtime or fingerprint than the shard's. A full load also checks the
    CRC-32 of the arrays (a bit flip in an offset would shift samples).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(len(_MAGIC) + 8)
            if len(head) != len(_MAGIC) + 8 or not head.startswith(_MAGIC):
                return None
            n = int.from_bytes(head[len(_MAGIC) :], "little")
            size = os.fstat(f.fileno()).st_size
            if n > size:
                return None
            meta = json.loads(f.read(n))
            ok = (
                meta.get("format") == "mixsampler-index"
                and meta.get("version") == _VERSION
                # A sidecar belongs to the shard beside it, wherever the folder is mounted;
                # the user cache is keyed by path, so there the path has to match.
                and (path == sidecar_path(url) or meta.get("path") == _abs(url))
                and meta.get("stamp") == (list(stamp) if stamp else None)
                and meta.get("fingerprint") == fingerprint
            )
            if not ok:
                return None
            events = tuple((int(i), str(m)) for i, m in meta["events"])
            if not full:
                return int(meta["count"]), events
            base = len(_MAGIC) + 8 + n
            mm = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) if size > base else b""
        if zlib.crc32(memoryview(mm)[base:]) != meta.get("crc32"):
            _warn_once(
                path,
                f"shard index {path} is damaged (its checksum does not match): rebuilding it "
                f"from {url}",
            )
            return None
        arrays = {}
        for name, (dtype, at, length) in meta["arrays"].items():
            arrays[name] = np.frombuffer(mm, np.dtype(dtype), length, base + at)
        if len(arrays["starts"]) != meta["count"]:
            return None
        return ShardIndex(url, stamp, arrays, tuple(meta["exts"]), events, fingerprint)
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
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
    if is_local(url) and not os.path.isfile(local_path(url)):
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
    fingerprint = _fingerprint(url)
    hit = _full.get(url) or _memory_only.get(url)
    if hit is not None and hit.stamp == stamp and hit.fingerprint == fingerprint:
        _full[url] = hit
        _full.move_to_end(url)
        return hit
    if stamp is not None:
        for path in (sidecar_path(url), _cache_path(url)):
            idx = _load_file(path, url, stamp, True, fingerprint)
            if idx is not None:
                return _remember(idx)
        idx = _walk(url)
        if (_stamp(url), _fingerprint(url)) != (idx.stamp, idx.fingerprint):
            idx = _walk(url)  # changed while we walked it: walk again
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
        fingerprint = _fingerprint(url)
        for path in (sidecar_path(url), _cache_path(url)):
            got = _load_file(path, url, stamp, False, fingerprint)
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
