"""Reading webdataset tar shards: shard specs, and samples with resumable byte offsets.

:func:`iter_tar` groups tar members into webdataset samples (``__key__``, ``__url__`` and one
key per extension, values undecoded bytes, as ``wds.WebDataset`` yields them) and reports, for
each sample, the byte offset where the next one starts, so a reader can seek back there on
resume instead of replaying the shard. Corrupt members are reported and skipped.

Example:
    >>> expand_shards("data/web-{000000..000002}.tar", "web")
    ['data/web-000000.tar', 'data/web-000001.tar', 'data/web-000002.tar']
"""

from __future__ import annotations

import glob
import io
import os
import re
import tarfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = [
    "CorruptShardError",
    "expand_shards",
    "check_shards",
    "iter_tar",
    "walk_tar",
    "is_local",
    "local_path",
    "MEMBER_NAME",
    "META_MEMBER",
    "ZERO_BLOCK",
]

# How webdataset groups members into samples (its base_plus_ext): key, then extension.
MEMBER_NAME = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")
# Members webdataset skips, such as __meta__.json.
META_MEMBER = re.compile(r"__[^/]*__($|/)")
# A tar end-of-archive block (and the padding after it).
ZERO_BLOCK = bytes(512)
_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|pipe:)", re.IGNORECASE)


class CorruptShardError(RuntimeError):
    """A tar shard could not be parsed (raised when ``on_corrupt="raise"``)."""


def is_local(url: str) -> bool:
    """Whether a shard URL is a file that can seek (a path, ``file:``, or an existing name)."""
    return url.startswith("file:") or not _REMOTE.match(url) or os.path.exists(url)


def local_path(url: str) -> str:
    """The file path of a local shard URL (without ``file:``)."""
    return url[len("file:") :] if url.startswith("file:") else url


def expand_shards(spec: str | os.PathLike | Sequence[str | os.PathLike], name: str) -> list[str]:
    """Expand a shard spec into a list of URLs (brace pattern, glob, folder or list).

    Raises:
        FileNotFoundError: a local shard, folder or glob that does not exist (named).
        ValueError: a spec that expands to no shards.
    """
    from braceexpand import braceexpand  # webdataset's own dependency

    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    urls: list[str] = []
    for item in items:
        item = os.fspath(item)
        if os.path.isdir(item):
            found = sorted(glob.glob(os.path.join(item, "*.tar")))
            if not found:
                raise ValueError(f"domain {name!r}: folder {item} holds no .tar shards")
            urls.extend(found)
            continue
        for url in braceexpand(item):
            if _REMOTE.match(url) and not url.startswith("file:") and not os.path.exists(url):
                urls.append(url)  # pipe:, http:, s3: ... opened by webdataset's gopen
            elif any(c in url for c in "*?["):
                found = sorted(glob.glob(url))
                if not found:
                    raise FileNotFoundError(f"domain {name!r}: glob {url} matches no shards")
                urls.extend(found)
            else:
                urls.append(url)
    if not urls:
        raise ValueError(f"domain {name!r}: shard spec {spec!r} names no shards")
    return urls


def check_shards(urls: Sequence[str], name: str) -> None:
    """Raise FileNotFoundError naming the first missing local shard."""
    for url in urls:
        if is_local(url) and not os.path.isfile(local_path(url)):
            raise FileNotFoundError(f"domain {name!r}: shard {url} does not exist")


def _open(url: str) -> io.BufferedIOBase:
    if is_local(url):
        return open(local_path(url), "rb")
    from webdataset.gopen import gopen

    return gopen(url, "rb")


def iter_tar(
    url: str, start: int, on_corrupt: Callable[[str, str], None]
) -> Iterator[tuple[dict[str, Any], int]]:
    """Yield ``(sample, end_offset)`` for the webdataset samples of a tar file from ``start``.

    ``end_offset`` is the byte offset where the next sample begins, so reading can resume there.
    A corrupt member (bad header, truncated data) is reported through ``on_corrupt`` and skipped:
    for local files the reader scans forward to the next valid header. Python's tarfile treats a
    bad header after the first one as the end of the archive, silently dropping the rest; the
    check for non-zero bytes after the end catches that.
    """
    for sample, _, end, _ in walk_tar(url, start, on_corrupt):
        yield sample, end


def walk_tar(
    url: str, start: int, on_corrupt: Callable[[str, str], None], *, read: bool = True
) -> Iterator[tuple[dict[str, Any], int, int, list[tuple[str, int, int]]]]:
    """:func:`iter_tar` with each sample's layout: ``(sample, start, end, members)``.

    ``start`` is the byte offset of the sample's first header, ``members`` lists ``(extension,
    data offset, data size)`` in file order, which is all :mod:`mixsampler.index` needs to read
    the sample again without parsing headers. With ``read=False`` member data is skipped and
    the sample's values are None (building an index needs only the layout).
    """
    try:
        stream = _open(url)
    except FileNotFoundError:
        raise FileNotFoundError(f"shard {url} does not exist") from None
    seekable = is_local(url)
    with stream:
        if start:
            if seekable:
                stream.seek(start)
            else:
                _discard(stream, start)
        base = start
        # After corruption the member that was lost may have belonged to the sample before it
        # or to the one after it. Both are *suspect* and only pass if they have the same fields
        # as the last intact sample of the shard, so no half sample reaches training.
        current: dict[str, Any] | None = None
        first = 0  # byte offset of the current sample's first header
        members: list[tuple[str, int, int]] = []
        suspect = False  # the pending sample touches corrupt data
        suspect_next = False  # the next new sample follows corrupt data
        fields: frozenset[str] | None = None  # fields of the last intact sample

        def intact(sample: dict[str, Any], is_suspect: bool) -> bool:
            nonlocal fields
            have = frozenset(k for k in sample if not k.startswith("__"))
            if is_suspect and have != fields:
                return False
            fields = have
            return True

        while True:
            tf = None
            try:
                tf = tarfile.open(fileobj=stream, mode="r|")
                for info in tf:
                    offset = base + info.offset
                    if not info.isfile():
                        continue
                    name = info.name
                    m = MEMBER_NAME.match(name)
                    if m is None or ("__" in name and META_MEMBER.search(name)):
                        continue
                    key, ext = m.group(1), m.group(2).lower()
                    data = tf.extractfile(info).read() if read else None
                    if current is not None and current["__key__"] != key:
                        if intact(current, suspect):
                            yield current, first, offset, members
                        current = None
                    if current is None:
                        current = {"__key__": key, "__url__": url}
                        first, members = offset, []
                        suspect, suspect_next = suspect_next, False
                    current[ext] = data
                    members.append((ext, base + info.offset_data, info.size))
                end = base + tf.offset
                if seekable:
                    stream.seek(end)
                    tail = stream.read(512)
                    if tail not in (b"", ZERO_BLOCK):
                        raise tarfile.ReadError(f"invalid tar header at byte {end}")
                if current is not None and intact(current, suspect):
                    yield current, first, end, members
                return
            except (tarfile.TarError, EOFError) as err:
                bad = base + (tf.offset if tf is not None else 0)
                on_corrupt(url, f"{err} (near byte {bad})")
                suspect = suspect_next = True
            if not seekable:
                return  # a stream cannot be searched for the next good header
            nxt = _resync(stream, bad + 512)
            if nxt is None:
                return
            stream.seek(nxt)
            base = nxt


def _resync(stream: io.BufferedIOBase, offset: int) -> int | None:
    """Offset of the next 512-byte block that parses as a tar header, or None."""
    stream.seek(offset)
    while True:
        buf = stream.read(512)
        if len(buf) < 512:
            return None
        if buf != ZERO_BLOCK:
            try:
                tarfile.TarInfo.frombuf(buf, "utf-8", "surrogateescape")
                return offset
            except tarfile.HeaderError:
                pass
        offset += 512


def _discard(stream: io.BufferedIOBase, n: int) -> None:
    while n > 0:
        chunk = stream.read(min(n, 1 << 20))
        if not chunk:
            return
        n -= len(chunk)
