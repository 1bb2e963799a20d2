"""Token ids: the tokenizers ``mixsampler shards`` uses, and how a shard sample stores its ids.

**Storage.** A sample's ``bin`` member holds its token ids as a little-endian array of the
smallest unsigned type that fits the vocabulary (``uint8`` for byte-level tokens, whose
``bin`` is then the text's UTF-8 bytes; ``uint16`` for a vocabulary up to 65,536; else
``uint32``), and its ``ntok`` member the count as ASCII digits. The width is therefore
``len(bin) / ntok`` bytes: a sample describes itself, no third member (a tar member costs at
least 1 KiB) and no side file are needed. :func:`token_ids` reads it back.

**Tokenizers.** :class:`ByteTokenizer` (the default, vocabulary 256) or :class:`HFTokenizer`,
a Hugging Face ``tokenizer.json`` read by the ``tokenizers`` library (a local pretrained
folder holding one works too, and its ``tokenizer_config.json`` names the end-of-text token).
Nothing is downloaded. Both are small picklable descriptions that load the real tokenizer
lazily, so each worker process of ``--workers N`` loads its own.

Example:
    >>> import numpy as np
    >>> ids = np.array([5, 300, 7], np.uint16)
    >>> token_ids({"bin": ids.tobytes(), "ntok": b"3"}).tolist()
    [5, 300, 7]
    >>> ByteTokenizer().encode_batch(["hé"])[0].tolist()
    [104, 195, 169]
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "ByteTokenizer",
    "HFTokenizer",
    "Tokenizer",
    "load_tokenizer",
    "id_dtype",
    "token_ids",
]

# End-of-text tokens of common tokenizers, tried in order when none is named (GPT-2/NeoX,
# Llama 3, Llama 2/T5/Mistral, others).
_EOS_NAMES = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|eos|>", "[EOS]")
_DTYPES = {1: np.dtype("u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4")}


def id_dtype(vocab_size: int) -> np.dtype:
    """The storage type of ids below ``vocab_size``: uint8, uint16 or uint32.

    Example:
        >>> [id_dtype(n).name for n in (256, 4096, 65536, 65537)]
        ['uint8', 'uint16', 'uint16', 'uint32']
    """
    if vocab_size <= 256:
        return _DTYPES[1]
    if vocab_size <= 1 << 16:
        return _DTYPES[2]
    if vocab_size <= 1 << 32:
        return _DTYPES[4]
    raise ValueError(f"vocab_size {vocab_size} does not fit uint32 token ids")


class ByteTokenizer:
    """Byte-level tokens: the UTF-8 bytes of the text (vocabulary 256, no end-of-text token)."""

    name = "bytes"
    vocab_size = 256
    eos_id: int | None = None

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [np.frombuffer(t.encode("utf-8"), np.uint8) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(bytearray(int(i) for i in ids)).decode("utf-8", "replace")


class HFTokenizer:
    """A Hugging Face ``tokenizers`` tokenizer from a local ``tokenizer.json`` or folder.

    Args:
        path: a ``tokenizer.json`` file, or a folder holding one (a saved pretrained
            tokenizer).
        eos: the token appended after every document: a token string (``"<|endoftext|>"``),
            an id, or None for the tokenizer's own end-of-text token (the folder's
            ``tokenizer_config.json`` ``eos_token``, else the first of ``<|endoftext|>``,
            ``<|end_of_text|>``, ``</s>``, ``<eos>`` in the vocabulary).

    Raises:
        FileNotFoundError: no ``tokenizer.json`` at ``path``.
        ValueError: a file ``tokenizers`` cannot load, an ``eos`` not in the vocabulary, or
            no end-of-text token to default to (all named).
    """

    def __init__(self, path: str | os.PathLike, eos: str | int | None = None) -> None:
        path = os.fspath(path)
        folder = path if os.path.isdir(path) else None
        file = os.path.join(path, "tokenizer.json") if folder else path
        if not os.path.isfile(file):
            where = f"folder {path} holds no tokenizer.json" if folder else f"{path} does not exist"
            raise FileNotFoundError(
                f"tokenizer (--tokenizer): {where}; pass a Hugging Face tokenizer.json or a "
                "folder with one (save_pretrained writes it)"
            )
        self.path = file
        self.name = file
        tok = self._load()
        self.vocab_size = int(tok.get_vocab_size(with_added_tokens=True))
        self.eos_id = self._eos_id(tok, eos, folder)
        self._tok: Any = tok  # not pickled: each worker process loads its own (__getstate__)

    def _load(self) -> Any:
        try:
            from tokenizers import Tokenizer as _HF
        except ImportError:  # pragma: no cover - the corpus extra is in dev
            raise ValueError(
                "--tokenizer needs the tokenizers package: pip install 'mixsampler[corpus]'"
            ) from None
        try:
            return _HF.from_file(self.path)
        except Exception as err:  # tokenizers raises a bare Exception on a bad file
            raise ValueError(
                f"tokenizer (--tokenizer) {self.path} cannot be loaded by tokenizers: {err}"
            ) from None

    def _eos_id(self, tok: Any, eos: str | int | None, folder: str | None) -> int:
        if isinstance(eos, bool):
            raise ValueError(f"eos (--eos) must be a token or an id, got {eos!r}")
        if isinstance(eos, int) or (isinstance(eos, str) and eos.isdigit()):
            eos_int = int(eos)
            if not 0 <= eos_int < self.vocab_size:
                raise ValueError(
                    f"eos (--eos) id {eos_int} is outside the vocabulary of {self.path} "
                    f"(0 .. {self.vocab_size - 1})"
                )
            return eos_int
        if eos is not None:
            found = tok.token_to_id(eos)
            if found is None:
                raise ValueError(
                    f"eos (--eos) token {eos!r} is not in the vocabulary of {self.path}"
                )
            return int(found)
        names = list(_EOS_NAMES)
        if folder is not None:
            named = _config_eos(os.path.join(folder, "tokenizer_config.json"))
            if named:
                names.insert(0, named)
        for name in names:
            found = tok.token_to_id(name)
            if found is not None:
                return int(found)
        raise ValueError(
            f"tokenizer {self.path} has none of the end-of-text tokens {', '.join(names)}; "
            "name the token to put after every document with --eos (eos=)"
        )

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_tok": None}

    def _tokenizer(self) -> Any:
        if self._tok is None:
            self._tok = self._load()
        return self._tok

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """The ids of each text, without special tokens (the caller adds the EOS)."""
        encs = self._tokenizer().encode_batch(list(texts), add_special_tokens=False)
        return [np.asarray(e.ids, np.uint32) for e in encs]

    def decode(self, ids: Sequence[int]) -> str:
        return self._tokenizer().decode([int(i) for i in ids], skip_special_tokens=False)


Tokenizer = ByteTokenizer | HFTokenizer


def _config_eos(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f).get("eos_token")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def load_tokenizer(path: str | os.PathLike | None, eos: str | int | None = None) -> Tokenizer:
    """:class:`ByteTokenizer` for None, else :class:`HFTokenizer` ``(path, eos)``."""
    if path is None:
        if eos is not None:
            raise ValueError(
                f"eos (--eos) {eos!r} needs a tokenizer (--tokenizer); byte-level tokens put "
                "the separator text between documents instead"
            )
        return ByteTokenizer()
    return HFTokenizer(path, eos)


def token_ids(sample: Mapping[str, Any]) -> np.ndarray:
    """The token ids of a shard sample (its ``bin`` and ``ntok`` members), without a copy.

    Raises:
        ValueError: a sample without ``bin`` or ``ntok``, or whose sizes disagree (names the
            shard and the sample's key).
    """
    where = f"sample {sample.get('__key__', '?')!r} of shard {sample.get('__url__', '?')}"
    if "bin" not in sample or "ntok" not in sample:
        missing = " and ".join(m for m in ("bin", "ntok") if m not in sample)
        raise ValueError(
            f"{where} has no {missing!r} member; token shards (mixsampler shards) hold 'bin' "
            f"and 'ntok', this one holds {sorted(k for k in sample if not k.startswith('__'))}"
        )
    data = sample["bin"]
    try:
        n = int(sample["ntok"])
    except (TypeError, ValueError):
        raise ValueError(f"{where}: ntok {sample['ntok']!r} is not an integer") from None
    width = len(data) // n if n > 0 else 0
    if n <= 0 or width not in _DTYPES or width * n != len(data):
        raise ValueError(
            f"{where}: {len(data)} bytes of 'bin' for ntok={n} tokens is not 1, 2 or 4 bytes "
            "per token"
        )
    return np.frombuffer(data, _DTYPES[width])
