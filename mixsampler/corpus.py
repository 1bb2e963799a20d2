"""Documents out of a corpus on disk: text files, JSON lines (plain, gzip, zstd) and parquet.

One file format, one reader; :func:`read_documents` picks it by the file's name and checks it
against the file's content, so a file that is not what its name says is an error naming the
file, never text with the syntax of another format in it (a ``.jsonl`` read as text would
train on ``{"text": ...`` and its metadata).

========================================  ===============================================
file name                                 documents
========================================  ===============================================
``*.jsonl``, ``*.ndjson``, ``*.json``     one per line, the string in ``text_field``
... ``.gz`` / ``.zst`` after any of them  the same, decompressed while read
``*.parquet``                             one per row, the string column ``text_field``
anything else (``.txt``, ``.md``, ...)    the whole file, UTF-8 (``.gz``/``.zst`` too)
========================================  ===============================================

The ``zstandard`` and ``pyarrow`` packages (the ``corpus`` extra) are imported only for the
files that need them.

Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "part.jsonl")
    >>> with open(path, "w") as f:
    ...     _ = f.write('{"text": "hello", "id": 1}\\n{"text": "world", "id": 2}\\n')
    >>> [d.text for d in read_documents(path)]
    ['hello', 'world']
    >>> file_format(path), file_format("web/part-00001.jsonl.zst"), file_format("a.parquet")
    (('jsonl', 'none'), ('jsonl', 'zstd'), ('parquet', 'none'))
"""

from __future__ import annotations

import gzip
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal

__all__ = ["Document", "CorpusFormatError", "file_format", "read_documents"]

Format = Literal["text", "jsonl", "parquet"]
Compression = Literal["none", "gzip", "zstd"]

_JSONL = (".jsonl", ".ndjson", ".json")
_COMPRESSED: dict[str, Compression] = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
# The first bytes of each binary format we know: what a file really is, whatever its name.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"PAR1", "parquet"),
    (b"PK\x03\x04", "zip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)


class CorpusFormatError(ValueError):
    """A corpus file that cannot be read as what its name says (names the file and place)."""


@dataclass(frozen=True)
class Document:
    """One document of the corpus.

    Attributes:
        text: its text.
        path: the file it came from.
        number: its place in that file (line of a JSON lines file, counting from 1; row of
            a parquet file, from 0; 0 for a text file).
    """

    text: str
    path: str
    number: int


def file_format(path: str) -> tuple[Format, Compression]:
    """``(format, compression)`` a file's name says it has (see the module docstring)."""
    name = os.path.basename(path).lower()
    stem, ext = os.path.splitext(name)
    comp: Compression = "none"
    if ext in _COMPRESSED:
        comp = _COMPRESSED[ext]
        stem, ext = os.path.splitext(stem)
    if ext == ".parquet" and comp == "none":
        return "parquet", comp
    if ext in _JSONL:
        return "jsonl", comp
    return "text", comp


def _sniff(head: bytes) -> str | None:
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    return None


def _open(path: str, comp: Compression) -> BinaryIO:
    """The file's bytes, decompressed; a file whose content is not ``comp`` is an error."""
    with open(path, "rb") as f:
        head = f.read(8)
    found = _sniff(head)
    want = {"gzip": "gzip", "zstd": "zstd"}.get(comp)
    if want is not None and found != want:
        raise CorpusFormatError(
            f"input {path} is named as {want}-compressed but is "
            f"{'a ' + found + ' file' if found else 'not compressed'}; rename it or recompress it"
        )
    if want is None and found is not None:
        raise CorpusFormatError(
            f"input {path} is a {found} file, not text: name it by what it holds (.jsonl.gz, "
            ".jsonl.zst, .parquet, .txt.gz) so it is read as that"
        )
    if comp == "gzip":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if comp == "zstd":
        try:
            import zstandard
        except ImportError:  # pragma: no cover - the corpus extra is in dev
            raise CorpusFormatError(
                f"input {path} is zstd-compressed: install zstandard (pip install "
                "'mixsampler[corpus]')"
            ) from None
        raw = open(path, "rb")
        return zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)  # type: ignore[return-value]
    return open(path, "rb")


def _decode(data: bytes, path: str, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorpusFormatError(
            f"input {path} is not UTF-8 text: invalid byte at offset {err.start}{what}"
        ) from None


def _read_text(path: str, comp: Compression) -> Iterator[Document]:
    try:
        with _open(path, comp) as f:
            data = f.read()
    except (OSError, EOFError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise CorpusFormatError(f"input {path}: cannot decompress it: {err}") from None
    text = _decode(data, path, "")
    if text:
        yield Document(text, path, 0)


def _read_jsonl(path: str, comp: Compression, field: str) -> Iterator[Document]:
    try:
        with _open(path, comp) as raw:
            stream = io.BufferedReader(raw) if comp == "zstd" else raw  # type: ignore[arg-type]
            for number, line in enumerate(stream, 1):
                if not line.strip():
                    continue
                at = f" (line {number})"
                try:
                    record = json.loads(_decode(line, path, at))
                except json.JSONDecodeError as err:
                    raise CorpusFormatError(
                        f"input {path} line {number} is not JSON ({err.msg} at column "
                        f"{err.colno}): a JSON lines file holds one JSON object per line"
                    ) from None
                if not isinstance(record, dict):
                    raise CorpusFormatError(
                        f"input {path} line {number} is a JSON {type(record).__name__}, "
                        f"expected an object with a {field!r} field"
                    )
                yield Document(_field(record, field, path, f"line {number}"), path, number)
    except (OSError, EOFError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise CorpusFormatError(f"input {path}: cannot decompress it: {err}") from None


def _field(record: dict, field: str, path: str, where: str) -> str:
    if field not in record:
        keys = ", ".join(repr(k) for k in list(record)[:8]) or "none"
        raise CorpusFormatError(
            f"input {path} {where} has no {field!r} field (its fields: {keys}); pick the text "
            "field with --text-field (text_field=)"
        )
    value = record[field]
    if not isinstance(value, str):
        raise CorpusFormatError(
            f"input {path} {where}: field {field!r} is a {type(value).__name__}, expected a string"
        )
    return value


def _read_parquet(path: str, field: str) -> Iterator[Document]:
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PAR1":
        found = _sniff(head)
        raise CorpusFormatError(
            f"input {path} is named .parquet but is "
            f"{'a ' + found + ' file' if found else 'not a parquet file'}"
        )
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - the corpus extra is in dev
        raise CorpusFormatError(
            f"input {path} is parquet: install pyarrow (pip install 'mixsampler[corpus]')"
        ) from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises its own ArrowInvalid, an OSError, ...
        raise CorpusFormatError(f"input {path} is not a readable parquet file: {err}") from None
    names = pf.schema_arrow.names
    if field not in names:
        raise CorpusFormatError(
            f"input {path} has no column {field!r} (its columns: "
            f"{', '.join(repr(n) for n in names[:8])}); pick it with --text-field (text_field=)"
        )
    import pyarrow as pa

    kind = pf.schema_arrow.field(field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise CorpusFormatError(f"input {path}: column {field!r} is {kind}, expected strings")
    row = 0
    for batch in pf.iter_batches(columns=[field], batch_size=4096):
        for value in batch.column(0).to_pylist():
            if value is None:
                raise CorpusFormatError(f"input {path} row {row}: column {field!r} is null")
            yield Document(value, path, row)
            row += 1


def read_documents(path: str, text_field: str = "text") -> Iterator[Document]:
    """The documents of one corpus file, in file order (see the module docstring).

    Empty documents are yielded too (the caller counts them); a text file that is empty
    gives none.

    Args:
        path: the file.
        text_field: the field (JSON lines) or column (parquet) holding the text.

    Raises:
        CorpusFormatError: the file is not what its name says, a line is not a JSON object,
            the text field is missing or not a string (the file and line are named).
        FileNotFoundError: the file does not exist.
    """
    fmt, comp = file_format(path)
    if fmt == "parquet":
        return _read_parquet(path, text_field)
    if fmt == "jsonl":
        return _read_jsonl(path, comp, text_field)
    return _read_text(path, comp)
