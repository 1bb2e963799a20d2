"""Turn folders, globs or lists of text files into webdataset shards for one domain.

Each sample has three members: ``__key__`` (its index), ``bin`` (the raw UTF-8 bytes of the text:
byte-level tokens, vocabulary 256) and ``ntok`` (the token count as ASCII decimal), so
``MixtureDataset(unit="tokens")`` can count tokens without decoding. With ``chunk_tokens=T`` the
files are concatenated (sorted by path, joined by ``separator``) and cut into chunks of exactly
``T`` bytes, training sequences ready to use; the tail shorter than a sample is dropped and
reported. Without it every non-empty file becomes one sample.

**What one sample is.** With ``chunks_per_sample=K`` a sample holds ``K`` consecutive chunks
(``K x T`` bytes of one domain; ``ntok = K x T``): the collate reshapes ``bin`` to ``(K, T)``
and a batch of ``B`` samples trains on ``B x K`` sequences. The mixture is exact in samples, so
in units of ``K`` chunks (by tokens too, as every sample has ``K x T`` tokens). Why: a tar member
costs a 512-byte header and pads its data to 512 bytes, so one sample of two members costs at
least 2 KiB; at ``T = 129`` the shards were 16x the text, and ``K`` of a few hundred brings that
near 1x (``ShardResult.size_ratio`` reports it).

**Validation split.** ``val_fraction=F`` puts a deterministic ``round(F x n)`` of the ``n``
non-empty input files (documents) into ``out_dir/val/``: those with the smallest SHA-1 of their
content, so the split does not depend on paths or order, and identical documents land on the
same side (a duplicated document cannot leak from train into validation).

Output is deterministic: inputs are sorted, tar headers carry no time stamps or owners, and each
shard is written to a temporary name and renamed, so a crash never leaves a half-written shard
that looks complete.

Example:
    >>> result = write_shards(["corpus/"], "shards", domain="web", chunk_tokens=1024)
    ... # doctest: +SKIP
    >>> result.pattern  # doctest: +SKIP
    'shards/web-{000000..000003}.tar'
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import re
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from mixsampler.index import build_index

__all__ = ["ShardResult", "write_shards", "collect_files"]

_DOMAIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass
class ShardResult:
    """What :func:`write_shards` wrote.

    Attributes:
        domain: the domain name (shard file prefix).
        paths: the shard files, in order.
        samples: samples written.
        tokens: tokens (bytes) written.
        files: input files read.
        skipped_files: empty input files, which give no sample.
        dropped_tokens: bytes at the end that did not fill a whole sample.
        shard_bytes: size of the shards on disk.
        val: the validation split (``val_fraction``), written under ``out_dir/val``; None
            without one.
    """

    domain: str
    paths: list[str] = field(default_factory=list)
    samples: int = 0
    tokens: int = 0
    files: int = 0
    skipped_files: int = 0
    dropped_tokens: int = 0
    shard_bytes: int = 0
    val: ShardResult | None = None

    @property
    def size_ratio(self) -> float:
        """Shard bytes per text byte written (tar headers and padding are the overhead)."""
        return self.shard_bytes / self.tokens if self.tokens else float("nan")

    @property
    def pattern(self) -> str:
        """A brace pattern naming every shard, ready for ``MixtureDataset``."""
        if not self.paths:
            return ""
        folder = os.path.dirname(self.paths[0])
        last = len(self.paths) - 1
        return os.path.join(folder, f"{self.domain}-{{{0:06d}..{last:06d}}}.tar")


def collect_files(inputs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Sorted list of the files named by folders (recursively), globs or paths.

    Hidden files and folders (starting with ``.``) are skipped.

    Raises:
        FileNotFoundError: an input that does not exist or a glob that matches nothing.
        ValueError: inputs that name no file at all.
    """
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not items:
        raise ValueError("inputs must name at least one file, folder or glob, got none")
    files: set[str] = set()
    for item in items:
        item = os.fspath(item)
        if os.path.isdir(item):
            for root, dirs, names in os.walk(item):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                files.update(os.path.join(root, n) for n in names if not n.startswith("."))
        elif os.path.isfile(item):
            files.add(item)
        elif any(c in item for c in "*?["):
            found = [p for p in glob.glob(item, recursive=True) if os.path.isfile(p)]
            if not found:
                raise FileNotFoundError(f"input glob {item} matches no files")
            files.update(found)
        else:
            raise FileNotFoundError(f"input {item} does not exist")
    if not files:
        raise ValueError(f"inputs {[os.fspath(i) for i in items]} hold no files")
    return sorted(files)


def _read_text(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"input {path} is not UTF-8 text: invalid byte at offset {err.start}"
        ) from None
    return data


class _ShardWriter:
    """Rolls over to a new shard every ``samples_per_shard`` samples."""

    def __init__(self, out_dir: str, domain: str, samples_per_shard: int) -> None:
        self.out_dir = out_dir
        self.domain = domain
        self.per_shard = samples_per_shard
        self.paths: list[str] = []
        self._tar: tarfile.TarFile | None = None
        self._tmp = ""
        self._in_shard = 0
        self.samples = 0

    def _roll(self) -> None:
        self.close()
        path = os.path.join(self.out_dir, f"{self.domain}-{len(self.paths):06d}.tar")
        self.paths.append(path)
        self._tmp = path + ".tmp"
        # USTAR: no pax headers (those carry float mtimes); the bytes depend on the data only.
        self._tar = tarfile.open(self._tmp, "w", format=tarfile.USTAR_FORMAT)
        self._in_shard = 0

    def add(self, data: bytes) -> None:
        if self._tar is None or self._in_shard == self.per_shard:
            self._roll()
        key = f"{self.samples:09d}"
        for ext, value in (("bin", data), ("ntok", str(len(data)).encode("ascii"))):
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(value)
            info.mode = 0o644
            self._tar.addfile(info, io.BytesIO(value))
        self._in_shard += 1
        self.samples += 1

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            os.replace(self._tmp, self.paths[-1])
            self._tar = None
            # Indexed once here, so no rank of a training job has to walk the shard to find
            # its own members (mixsampler.index; a sidecar beside the shard).
            build_index(self.paths[-1])


def _texts(files: Iterable[str], result: ShardResult) -> Iterator[bytes]:
    """The contents of the non-empty files; counts the files read and the empty ones."""
    for path in files:
        data = _read_text(path)
        result.files += 1
        if not data:
            result.skipped_files += 1
            continue
        yield data


def _chunks(
    texts: Iterable[bytes], size: int, separator: bytes, result: ShardResult
) -> Iterator[bytes]:
    """Join the texts with ``separator`` and cut them into pieces of ``size`` bytes.

    The tail that fills no piece is counted in ``result.dropped_tokens``.
    """
    buf = bytearray()
    first = True
    for data in texts:
        if not first:
            buf += separator
        first = False
        buf += data
        start = 0
        while len(buf) - start >= size:
            yield bytes(buf[start : start + size])
            start += size
        del buf[:start]
    result.dropped_tokens = len(buf)


def write_shards(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    domain: str,
    chunk_tokens: int | None = None,
    chunks_per_sample: int = 1,
    samples_per_shard: int = 1000,
    separator: str = "\n",
    val_fraction: float = 0.0,
    overwrite: bool = False,
    progress: bool = False,
) -> ShardResult:
    """Write text files as webdataset shards ``out_dir/<domain>-000000.tar``, ... .

    Args:
        inputs: folders (read recursively), globs or files of UTF-8 text.
        out_dir: where the shards go (created if missing); a validation split goes to
            ``out_dir/val``.
        domain: the domain name, used as the shard prefix.
        chunk_tokens: cut the concatenated text into chunks of exactly this many bytes;
            None writes one sample per file.
        chunks_per_sample: chunks in one sample (``chunk_tokens`` only); see the module
            docstring for what a sample then is.
        samples_per_shard: samples in each shard (the last one may hold fewer).
        separator: inserted between files when ``chunk_tokens`` concatenates them.
        val_fraction: share of the documents (input files) held out for validation, in
            ``[0, 1)``; chosen by content hash, so deterministic.
        overwrite: replace existing ``<domain>-*.tar`` shards in ``out_dir``; without it they
            are an error (stale shards of a bigger earlier run would join the domain).
        progress: show a progress bar over the input files.

    Returns:
        A :class:`ShardResult` with the shard paths and the sample and token totals (and
        ``val``, the held-out split's).

    Raises:
        ValueError: a bad argument, a file that is not UTF-8, existing shards, ``out_dir``
            naming a file, no samples.
        FileNotFoundError: an input that does not exist.

    Example:
        >>> r = write_shards("corpus/", "shards", domain="web", chunk_tokens=129,
        ...                  chunks_per_sample=256, val_fraction=0.01)  # doctest: +SKIP
        >>> r.pattern, r.val.pattern, round(r.size_ratio, 2)  # doctest: +SKIP
        ('shards/web-{000000..000001}.tar', 'shards/val/web-{000000..000000}.tar', 1.02)
    """
    _check_args(domain, chunk_tokens, chunks_per_sample, samples_per_shard, val_fraction)
    files = collect_files(inputs)
    out = os.fspath(out_dir)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"out_dir (-o) {out} is a file, expected a folder for the shards")
    val_files: list[str] = []
    if val_fraction > 0:
        files, val_files = _split(files, val_fraction, domain)
    size = chunk_tokens * chunks_per_sample if chunk_tokens is not None else None
    result = _write_domain(
        files, out, domain, size, samples_per_shard, separator, overwrite, progress
    )
    if val_files:
        val_dir = os.path.join(out, "val")
        result.val = _write_domain(
            val_files, val_dir, domain, size, samples_per_shard, separator, overwrite, False
        )
    return result


def _check_args(
    domain: Any,
    chunk_tokens: Any,
    chunks_per_sample: Any,
    samples_per_shard: Any,
    val_fraction: Any,
) -> None:
    if not isinstance(domain, str) or not _DOMAIN.match(domain):
        raise ValueError(
            f"domain must be a name of letters, digits, '_', '-' or '.', got {domain!r}"
        )
    for name, value, allow_none in (
        ("chunk_tokens", chunk_tokens, True),
        ("chunks_per_sample", chunks_per_sample, False),
        ("samples_per_shard", samples_per_shard, False),
    ):
        if value is None and allow_none:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            extra = " or None" if allow_none else ""
            raise ValueError(f"{name} must be a positive integer{extra}, got {value!r}")
    if chunks_per_sample != 1 and chunk_tokens is None:
        raise ValueError(
            f"chunks_per_sample={chunks_per_sample} needs chunk_tokens (one sample per file"
            " has no chunks)"
        )
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, (int, float))
        or not 0 <= val_fraction < 1
    ):
        raise ValueError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}")


def _split(files: list[str], fraction: float, domain: str) -> tuple[list[str], list[str]]:
    """(train, val) files: val are the ``round(fraction x n)`` with the smallest content hash."""
    digests: dict[str, str] = {}
    for path in files:
        h = hashlib.sha1()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if os.path.getsize(path):
            digests[path] = h.hexdigest()
    n_val = round(fraction * len(digests))
    if n_val == 0 or n_val == len(digests):
        raise ValueError(
            f"domain {domain!r}: val_fraction={fraction} of {len(digests)} non-empty files holds"
            f" out {n_val}; a split needs at least one file on each side (a larger or smaller"
            " val_fraction, or more files)"
        )
    ranked = sorted(digests, key=lambda p: (digests[p], p))
    cut = digests[ranked[n_val - 1]]
    # Identical documents share a hash: all of them go to validation, none stays in training.
    val = {p for p, d in digests.items() if d <= cut}
    return [p for p in files if p not in val], sorted(val)


def _write_domain(
    files: list[str],
    out: str,
    domain: str,
    size: int | None,
    samples_per_shard: int,
    separator: str,
    overwrite: bool,
    progress: bool,
) -> ShardResult:
    os.makedirs(out, exist_ok=True)
    existing = sorted(glob.glob(os.path.join(glob.escape(out), f"{glob.escape(domain)}-*.tar")))
    if existing and not overwrite:
        raise ValueError(
            f"{out} already holds {len(existing)} shards of domain {domain!r} "
            f"({existing[0]}, ...); pass overwrite=True (--overwrite) to replace them"
        )
    for path in existing:
        os.remove(path)

    result = ShardResult(domain=domain)
    if progress:
        from tqdm import tqdm

        files_iter: Iterable[str] = tqdm(files, desc=f"shards {domain}", unit="file")
    else:
        files_iter = files
    writer = _ShardWriter(out, domain, samples_per_shard)
    try:
        samples = _texts(files_iter, result)
        if size is not None:
            samples = _chunks(samples, size, separator.encode("utf-8"), result)
        for data in samples:
            writer.add(data)
            result.tokens += len(data)
    finally:
        writer.close()
    result.paths = writer.paths
    result.samples = writer.samples
    result.shard_bytes = sum(os.path.getsize(p) for p in writer.paths)
    if result.samples == 0:
        why = (
            f"the {result.files} files hold {result.dropped_tokens} bytes, fewer than one sample"
            f" of {size}"
            if size
            else f"all {result.files} files are empty"
        )
        raise ValueError(f"domain {domain!r}: no samples written to {out}: {why}")
    return result
