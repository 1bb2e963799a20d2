"""Turn a corpus (text, JSON lines, parquet) into webdataset shards of token ids for one domain.

Documents are read by :mod:`mixsampler.corpus` (one per text file, per JSON line, per parquet
row), tokenized (a Hugging Face ``tokenizer.json``, or byte-level tokens by default; see
:mod:`mixsampler.tokens`) and stored as samples of three members: ``__key__`` (its index),
``bin`` (the token ids, little-endian ``uint8``/``uint16``/``uint32`` by vocabulary size) and
``ntok`` (the exact token count as ASCII decimal), so ``MixtureDataset(unit="tokens")``
counts the tokenizer's tokens without decoding and D in the run table is the D of the run.

**Packing.** With a tokenizer every document is followed by the end-of-text token and the
stream is cut into samples of ``DEFAULT_SAMPLE_TOKENS`` (16,385) tokens, or of
``chunk_tokens x chunks_per_sample``. A sample is a block of tokens, and the sequence length
is chosen at train time: :class:`mixsampler.collate.TokenWindows` cuts it into ``seq_len + 1``
windows (16,385 = 16 x 1024 + 1 = 8 x 2048 + 1 ... so every power-of-two length up to 16,384
uses every token), as Megatron's GPT dataset and litdata's ``TokensLoader`` do. Why blocks
this large: a tar member costs a 512-byte header and pads its data to 512 bytes, about
1.8 KiB a sample; at 16,385 uint16 tokens that is 0.11 byte a token (2.11 bytes/token in
all, ``ShardResult.bytes_per_token``), where a sample per 129-token sequence costs 16 bytes a
token. The tail shorter than a sample is dropped and reported. Without a tokenizer and
``chunk_tokens`` each document is one sample of its UTF-8 bytes (the original behaviour).

**Validation split.** ``val_fraction=F`` holds out each document whose SHA-1 (of its text)
falls in the lowest share ``F`` of the hash space, into ``out_dir/val/``: a split by document,
inside files too, that depends on the text only (not on paths, order or workers), and
identical documents land on the same side (a duplicate cannot leak from training into
validation). The held-out count is about ``F x n`` (a hash decides each document).

**Workers.** ``workers=N`` tokenizes in ``N`` processes; the results are written in input
order, so the shards are the same bytes for any ``N``.

**Nothing half-done.** Inputs are sorted, tar headers carry no time stamps or owners, and the
whole domain (training and validation shards) is written to a hidden staging folder and
moved into place only when it all succeeded: a bad line in the last file leaves the earlier
shards of the domain untouched and no new shard that looks complete. ``overwrite`` then
removes every earlier shard of the domain, validation shards included.

Example:
    >>> result = write_shards(["corpus/"], "shards", domain="web",
    ...                       tokenizer="tokenizer.json")  # doctest: +SKIP
    >>> result.pattern  # doctest: +SKIP
    'shards/web-{000000..000003}.tar'
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixsampler.checks import check_int
from mixsampler.corpus import read_documents
from mixsampler.index import build_index, sidecar_path
from mixsampler.tokens import Tokenizer, id_dtype, load_tokenizer

__all__ = [
    "ShardResult",
    "WorkerError",
    "write_shards",
    "collect_files",
    "DEFAULT_SAMPLE_TOKENS",
]

_DOMAIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

# Tokens per sample with a tokenizer: 16 x 1024 + 1, so windows of any power-of-two length up
# to 16,384 (plus the one-token shift of the targets) use every token, and the tar overhead
# (about 1.8 KiB a sample) stays near 0.1 byte a token.
DEFAULT_SAMPLE_TOKENS = 16385


class WorkerError(ChildProcessError, RuntimeError):
    """A tokenizer worker process died or could not start.

    The machine, not the input (killed for memory, or a main module a worker cannot import
    again): an ``OSError``, so ``mixsampler shards`` prints it as one line and exits 1, and a
    ``RuntimeError`` as it always was to code that catches that.
    """


@dataclass
class ShardResult:
    """What :func:`write_shards` wrote (one split of one domain).

    Attributes:
        domain: the domain name (shard file prefix).
        paths: the shard files, in order.
        samples: samples written.
        tokens: tokens written (the sum of the samples' ``ntok``).
        files: input files read.
        skipped_files: input files that gave no document (empty).
        documents: non-empty documents in this split.
        skipped_documents: empty documents (an empty JSON text, an empty file), not written.
        dropped_tokens: tokens at the end that did not fill a whole sample.
        shard_bytes: size of the shards on disk.
        dtype: how the ids are stored (``uint8``, ``uint16`` or ``uint32``).
        val: the validation split (``val_fraction``), written under ``out_dir/val``; None
            without one.
    """

    domain: str
    paths: list[str] = field(default_factory=list)
    samples: int = 0
    tokens: int = 0
    files: int = 0
    skipped_files: int = 0
    documents: int = 0
    skipped_documents: int = 0
    dropped_tokens: int = 0
    shard_bytes: int = 0
    dtype: str = "uint8"
    val: ShardResult | None = None

    @property
    def bytes_per_token(self) -> float:
        """Shard bytes per token written (tar headers and padding are the overhead)."""
        return self.shard_bytes / self.tokens if self.tokens else float("nan")

    @property
    def size_ratio(self) -> float:
        """Shard bytes per byte of ids written: 1.0 would be a bare array of the ids."""
        width = np.dtype(self.dtype).itemsize
        return self.shard_bytes / (self.tokens * width) if self.tokens else float("nan")

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


class _ShardWriter:
    """Rolls over to a new shard every ``samples_per_shard`` samples."""

    def __init__(self, out_dir: str, domain: str, samples_per_shard: int) -> None:
        self.out_dir = out_dir
        self.domain = domain
        self.per_shard = samples_per_shard
        self.paths: list[str] = []
        self._tar: tarfile.TarFile | None = None
        self._in_shard = 0
        self.samples = 0
        self.tokens = 0

    def _roll(self) -> None:
        self.close()
        os.makedirs(self.out_dir, exist_ok=True)
        path = os.path.join(self.out_dir, f"{self.domain}-{len(self.paths):06d}.tar")
        self.paths.append(path)
        # USTAR: no pax headers (those carry float mtimes and cost 1 KiB a member); the bytes
        # depend on the data only.
        self._tar = tarfile.open(path, "w", format=tarfile.USTAR_FORMAT)
        self._in_shard = 0

    def add(self, ids: np.ndarray) -> None:
        if self._tar is None or self._in_shard == self.per_shard:
            self._roll()
        key = f"{self.samples:09d}"
        data = ids.tobytes()  # the dtype is little-endian already (mixsampler.tokens)
        for ext, value in (("bin", data), ("ntok", str(len(ids)).encode("ascii"))):
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(value)
            info.mode = 0o644
            self._tar.addfile(info, io.BytesIO(value))
        self._in_shard += 1
        self.samples += 1
        self.tokens += len(ids)

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None


class _Packer:
    """Joins documents into one token stream and cuts it into samples of ``size`` tokens.

    With an ``eos`` every document is followed by it (what a language model trains on);
    without, ``separator`` goes between documents (byte-level text, as before tokenizers).
    ``size=None`` makes each document one sample.
    """

    def __init__(
        self,
        writer: _ShardWriter,
        size: int | None,
        dtype: np.dtype,
        eos: int | None,
        separator: np.ndarray,
    ) -> None:
        self.writer = writer
        self.size = size
        self.dtype = dtype
        self.eos = np.asarray([eos], dtype) if eos is not None else None
        self.separator = separator.astype(dtype)
        self.parts: list[np.ndarray] = []
        self.pending = 0
        self.documents = 0

    def add(self, part: _Part) -> None:
        """Add one job's documents of this split (joined by the worker, see :func:`_join`)."""
        stream, ndocs, docs = part
        if docs is not None:
            for ids in docs:
                self.writer.add(ids)
            self.documents += len(docs)
            return
        if not ndocs:
            return
        if self.eos is None and self.documents and len(self.separator):
            self._push(self.separator)  # between the last job's last document and this one
        self._push(stream)
        self.documents += ndocs

    def _push(self, ids: np.ndarray) -> None:
        size = self.size
        self.parts.append(ids)
        self.pending += len(ids)
        if self.pending < size:
            return
        stream = np.concatenate(self.parts) if len(self.parts) > 1 else self.parts[0]
        full = len(stream) // size * size
        for at in range(0, full, size):
            self.writer.add(stream[at : at + size])
        rest = stream[full:]
        self.parts = [rest] if len(rest) else []
        self.pending = len(rest)


# Documents per job sent to a worker: large enough that pickling and scheduling cost little
# next to tokenizing them, small enough to keep every worker busy and memory flat.
_JOB_CHARS = 1 << 20
_JOB_DOCS = 2048


def _is_val(text: str, fraction: float) -> bool:
    """Whether a document is held out: the first 8 bytes of its SHA-1 as a number in [0, 1).

    A pure function of the text: deterministic, independent of files, order and workers,
    and identical documents land on the same side.
    """
    if fraction <= 0:
        return False
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2.0**64


# One split's share of a job: its documents joined into one stream (each followed by the EOS,
# or separated by the separator), their count, and the documents themselves when each is to
# be one sample (else None).
_Part = tuple[np.ndarray, int, list[np.ndarray] | None]


@dataclass(frozen=True)
class _Job:
    """How a worker turns texts into ids: what it needs besides the texts (pickled once a job)."""

    tokenizer: Tokenizer
    fraction: float
    dtype: np.dtype
    eos: int | None
    separator: np.ndarray
    whole_documents: bool


def _join(job: _Job, docs: list[np.ndarray]) -> _Part:
    if job.whole_documents:
        return np.empty(0, job.dtype), len(docs), [d.astype(job.dtype) for d in docs]
    if not docs:
        return np.empty(0, job.dtype), 0, None
    glue = np.asarray([job.eos], job.dtype) if job.eos is not None else job.separator
    pieces = []
    for i, ids in enumerate(docs):
        if job.eos is None and i and len(glue):
            pieces.append(glue)
        pieces.append(ids)
        if job.eos is not None:
            pieces.append(glue)
    return np.concatenate(pieces).astype(job.dtype, copy=False), len(docs), None


def _encode_job(job: _Job, texts: list[str]) -> tuple[_Part, _Part]:
    """Tokenize one job of documents, split them and join each split (runs in a worker).

    Joined here, so the main process gets two arrays a job instead of one per document:
    it only packs and writes, and more workers are not held back by it.
    """
    ids = job.tokenizer.encode_batch(texts)
    held = [_is_val(t, job.fraction) for t in texts]
    train = _join(job, [a for a, h in zip(ids, held, strict=True) if not h])
    val = _join(job, [a for a, h in zip(ids, held, strict=True) if h])
    return train, val


def _jobs(docs: Iterable[str]) -> Iterator[list[str]]:
    job: list[str] = []
    chars = 0
    for text in docs:
        job.append(text)
        chars += len(text)
        if chars >= _JOB_CHARS or len(job) >= _JOB_DOCS:
            yield job
            job, chars = [], 0
    if job:
        yield job


def _encoded(job: _Job, docs: Iterable[str], workers: int) -> Iterator[tuple[_Part, _Part]]:
    """The jobs' results in input order, whatever the number of workers.

    Workers get at most ``2 x workers`` jobs ahead of the writer, so memory stays flat on a
    corpus of any size (``Pool.imap`` would read the whole input ahead).
    """
    if workers == 1:
        for texts in _jobs(docs):
            yield _encode_job(job, texts)
        return
    import multiprocessing as mp
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    # forkserver: no fork of a process that already runs threads (torch's, the tokenizer's).
    # An executor, not a Pool: a worker that dies (or cannot start) is an error here, where a
    # Pool would start a new one and wait for the lost job forever.
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("forkserver"))
    try:
        queue: deque = deque()
        for texts in _jobs(docs):
            queue.append(pool.submit(_encode_job, job, texts))
            if len(queue) >= 2 * workers:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()
    except BrokenProcessPool:
        raise WorkerError(
            f"a tokenizer worker process (workers={workers}) died or could not start (killed "
            "for memory, or a main module that cannot be imported again, such as code piped "
            "to python's stdin; see the worker's traceback above). Run from a script file, "
            "or with workers=1 (--workers 1)"
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def write_shards(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    domain: str,
    tokenizer: str | os.PathLike | None = None,
    eos: str | int | None = None,
    text_field: str = "text",
    chunk_tokens: int | None = None,
    chunks_per_sample: int = 1,
    samples_per_shard: int = 1000,
    separator: str = "\n",
    val_fraction: float = 0.0,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = False,
) -> ShardResult:
    """Write a corpus as webdataset shards ``out_dir/<domain>-000000.tar``, ... .

    Args:
        inputs: folders (read recursively), globs or files: text, JSON lines (plain, ``.gz``,
            ``.zst``) or parquet (:mod:`mixsampler.corpus`).
        out_dir: where the shards go (created if missing); a validation split goes to
            ``out_dir/val``.
        domain: the domain name, used as the shard prefix.
        tokenizer: a Hugging Face ``tokenizer.json`` or a folder holding one; None stores
            byte-level tokens (the UTF-8 bytes).
        eos: the token (string or id) after every document; None: the tokenizer's
            end-of-text token. Only with ``tokenizer``.
        text_field: the field (JSON lines) or column (parquet) holding the text.
        chunk_tokens: cut the token stream into chunks of exactly this many tokens; None:
            with a tokenizer, ``DEFAULT_SAMPLE_TOKENS`` tokens per sample, else one sample per
            document.
        chunks_per_sample: chunks in one sample (``chunk_tokens`` only); see the module
            docstring for what a sample then is.
        samples_per_shard: samples in each shard (the last one may hold fewer).
        separator: byte-level tokens only: inserted between documents when they are joined.
        val_fraction: share of the documents held out for validation, in ``[0, 1)``, chosen
            by a hash of each document's text (deterministic, inside files too).
        workers: processes that tokenize; the output is the same bytes for any number.
        overwrite: replace this domain's shards in ``out_dir`` and ``out_dir/val``; without
            it they are an error (stale shards of a bigger earlier run would join the domain).
        progress: show a progress bar in tokens.

    Returns:
        A :class:`ShardResult` with the shard paths and the sample and token totals (and
        ``val``, the held-out split's).

    Raises:
        ValueError: a bad argument (named), existing shards, ``out_dir`` naming a file, no
            samples, a split with an empty side.
        mixsampler.corpus.CorpusFormatError: a file that is not what its name says (named).
        FileNotFoundError: an input or the tokenizer does not exist.
        WorkerError: a tokenizer worker process died or could not start (``workers > 1``).

    Example:
        >>> r = write_shards("corpus/", "shards", domain="web", tokenizer="tokenizer.json",
        ...                  val_fraction=0.01, workers=4)  # doctest: +SKIP
        >>> r.pattern, r.val.pattern, round(r.bytes_per_token, 2)  # doctest: +SKIP
        ('shards/web-{000000..000001}.tar', 'shards/val/web-{000000..000000}.tar', 2.11)
    """
    _check_args(domain, chunk_tokens, chunks_per_sample, samples_per_shard, val_fraction, workers)
    if not isinstance(text_field, str) or not text_field:
        raise ValueError(f"text_field (--text-field) must be a field name, got {text_field!r}")
    files = collect_files(inputs)
    out = os.fspath(out_dir)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"out_dir (-o) {out} is a file, expected a folder for the shards")
    tok = load_tokenizer(tokenizer, eos)
    existing = _existing(out, domain)
    if existing and not overwrite:
        raise ValueError(
            f"{out} already holds {len(existing)} shards of domain {domain!r} "
            f"({existing[0]}, ...); pass overwrite=True (--overwrite) to replace them"
        )
    if chunk_tokens is not None:
        size: int | None = chunk_tokens * chunks_per_sample
    else:
        size = DEFAULT_SAMPLE_TOKENS if tokenizer is not None else None
    os.makedirs(out, exist_ok=True)
    # Everything is written under a staging folder and moved into place only when the whole
    # domain succeeded: a failure part-way (a bad line in the last file) leaves the earlier
    # shards as they were and no new shard that looks complete.
    staging = tempfile.mkdtemp(prefix=f".staging-{domain}-", dir=out)
    try:
        train, val = _write_splits(
            files,
            staging,
            domain,
            tok,
            text_field,
            size,
            samples_per_shard,
            separator,
            val_fraction,
            workers,
            progress,
        )
        _check_split(domain, train, val, val_fraction, size)
        for old in _existing(out, domain):
            _remove_shard(old)
        train.paths = _move(train.paths, out)
        if val is not None:
            val.paths = _move(val.paths, os.path.join(out, "val"))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for part in (train, val):
        if part is not None:
            for path in part.paths:
                # Indexed once here, so no rank of a training job has to walk the shard to
                # find its own members (mixsampler.index; a sidecar beside the shard).
                build_index(path)
            part.shard_bytes = sum(os.path.getsize(p) for p in part.paths)
    train.val = val
    return train


def _existing(out: str, domain: str) -> list[str]:
    """This domain's shards in ``out`` and ``out/val``."""
    # Exactly <domain>-NNNNNN.tar: the glob alone would take domain "web-code" for "web".
    own = re.compile(re.escape(domain) + r"-\d{6,}\.tar")
    found = []
    for folder in (out, os.path.join(out, "val")):
        pattern = os.path.join(glob.escape(folder), f"{glob.escape(domain)}-*.tar")
        found += sorted(p for p in glob.glob(pattern) if own.fullmatch(os.path.basename(p)))
    return found


def _remove_shard(path: str) -> None:
    os.remove(path)
    side = sidecar_path(path)
    if os.path.exists(side):
        os.remove(side)


def _move(paths: list[str], folder: str) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    moved = []
    for path in paths:
        dest = os.path.join(folder, os.path.basename(path))
        os.replace(path, dest)
        moved.append(dest)
    return moved


def _write_splits(
    files: list[str],
    staging: str,
    domain: str,
    tok: Tokenizer,
    text_field: str,
    size: int | None,
    samples_per_shard: int,
    separator: str,
    val_fraction: float,
    workers: int,
    progress: bool,
) -> tuple[ShardResult, ShardResult | None]:
    dtype = id_dtype(tok.vocab_size)
    sep = np.frombuffer(separator.encode("utf-8"), np.uint8)
    train = ShardResult(domain=domain, dtype=dtype.name)
    val = ShardResult(domain=domain, dtype=dtype.name) if val_fraction > 0 else None
    writer = _ShardWriter(staging, domain, samples_per_shard)
    parts = [(train, _Packer(writer, size, dtype, tok.eos_id, sep))]
    if val is not None:
        writer = _ShardWriter(os.path.join(staging, "val"), domain, samples_per_shard)
        parts.append((val, _Packer(writer, size, dtype, tok.eos_id, sep)))

    def documents() -> Iterator[str]:
        for path in files:
            got = 0
            for doc in read_documents(path, text_field):
                if doc.text:
                    got += 1
                    yield doc.text
                else:
                    train.skipped_documents += 1
            train.files += 1
            if not got:
                train.skipped_files += 1

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc=f"shards {domain}", unit="tok", unit_scale=True)
    try:
        job = _Job(tok, val_fraction, dtype, tok.eos_id, sep.astype(dtype), size is None)
        for done in _encoded(job, documents(), workers):
            for (_, packer), part in zip(parts, done, strict=False):
                packer.add(part)
            if bar is not None:
                bar.update(sum(len(p[0]) + sum(map(len, p[2] or ())) for p in done))
    finally:
        if bar is not None:
            bar.close()
        for _, packer in parts:
            packer.writer.close()
    for result, packer in parts:
        result.paths = packer.writer.paths
        result.samples = packer.writer.samples
        result.tokens = packer.writer.tokens
        result.documents = packer.documents
        result.dropped_tokens = packer.pending
    if val is not None:
        val.files = train.files
    return train, val


def _check_split(
    domain: str, train: ShardResult, val: ShardResult | None, fraction: float, size: int | None
) -> None:
    for name, part in (("training", train), ("validation", val)):
        if part is None or part.samples:
            continue
        if part.documents:
            why = (
                f"its {part.documents} documents hold {part.dropped_tokens} tokens, fewer than "
                f"one sample of {size} (a smaller --chunk-tokens, or more data)"
            )
        elif name == "validation":
            why = (
                f"val_fraction={fraction} held out none of the {train.documents} documents "
                "(documents are held out by a hash of their text: a larger val_fraction, or "
                "more documents)"
            )
        elif val is not None and val.documents:
            why = f"val_fraction={fraction} held out all {val.documents} documents"
        else:
            why = f"all {train.files} files are empty"
        raise ValueError(f"domain {domain!r}: no {name} samples: {why}")


def _check_args(
    domain: Any,
    chunk_tokens: Any,
    chunks_per_sample: Any,
    samples_per_shard: Any,
    val_fraction: Any,
    workers: Any,
) -> None:
    if not isinstance(domain, str) or not _DOMAIN.match(domain):
        raise ValueError(
            f"domain must be a name of letters, digits, '_', '-' or '.', got {domain!r}"
        )
    for name, value, allow_none in (
        ("chunk_tokens", chunk_tokens, True),
        ("chunks_per_sample", chunks_per_sample, False),
        ("samples_per_shard", samples_per_shard, False),
        ("workers", workers, False),
    ):
        check_int(name, value, low=1, allow_none=allow_none)
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
