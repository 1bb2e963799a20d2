"""Collates for token shards: ``(input_ids, targets)`` for a language model, no glue code.

A sample of ``mixsampler shards`` is a block of token ids (:mod:`mixsampler.tokens`); the
sequence length is chosen here, at train time, as in Megatron's GPT dataset and litdata's
``TokensLoader``: :class:`TokenWindows` cuts each sample into windows of ``seq_len + 1``
tokens that overlap by one (window ``w`` is ``ids[w * seq_len : (w + 1) * seq_len + 1]``),
so a block of ``k * seq_len + 1`` tokens (the default 16,385 for any power-of-two
``seq_len`` up to 16,384) gives ``k`` windows and wastes no token. Inputs are the first
``seq_len`` tokens of a window and targets the last ``seq_len``.

A batch of ``B`` samples holds ``B x windows`` sequences: the mixture stays exact in samples,
and all samples of a domain have the same token count, so it is exact in tokens too.

Example:
    >>> import numpy as np
    >>> sample = {"bin": np.arange(9, dtype=np.uint16).tobytes(), "ntok": b"9"}
    >>> x, y = TokenWindows(seq_len=4)([sample])
    >>> x.tolist(), y.tolist()
    ([[0, 1, 2, 3], [4, 5, 6, 7]], [[1, 2, 3, 4], [5, 6, 7, 8]])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mixsampler.checks import check_int
from mixsampler.tokens import token_ids

__all__ = ["TokenWindows"]


class TokenWindows:
    """Collate token-shard samples into ``(input_ids, targets)`` LongTensors ``(N, seq_len)``.

    Args:
        seq_len: tokens a model sees per sequence.
        max_windows: take at most this many windows of each sample (the first ones); None
            takes all ``(ntok - 1) // seq_len``. Fewer windows make smaller batches from the
            same shards.

    Raises:
        ValueError: a ``seq_len`` that is not a positive int (in ``__init__``); at collate
            time, a sample shorter than ``seq_len + 1`` tokens or without ``bin``/``ntok``
            (naming the shard and key).
    """

    def __init__(self, seq_len: int, max_windows: int | None = None) -> None:
        check_int("seq_len", seq_len, low=1)
        check_int("max_windows", max_windows, low=1, allow_none=True)
        self.seq_len = seq_len
        self.max_windows = max_windows

    def windows(self, ntok: int) -> int:
        """How many windows a sample of ``ntok`` tokens gives."""
        n = (ntok - 1) // self.seq_len
        return n if self.max_windows is None else min(n, self.max_windows)

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        if not samples:
            raise ValueError("TokenWindows got an empty batch")
        seq = self.seq_len
        rows = []
        for sample in samples:
            ids = token_ids(sample)
            n = self.windows(len(ids))
            if n < 1:
                raise ValueError(
                    f"sample {sample.get('__key__', '?')!r} of shard {sample.get('__url__', '?')}"
                    f" holds {len(ids)} tokens, fewer than seq_len + 1 = {seq + 1}: write the "
                    "shards with larger samples (--chunk-tokens) or pick a smaller seq_len"
                )
            # Overlapping windows without a copy per window: strides over the block.
            view = np.lib.stride_tricks.sliding_window_view(ids[: n * seq + 1], seq + 1)
            rows.append(view[::seq][:n])
        block = torch.from_numpy(np.concatenate(rows).astype(np.int64))
        return block[:, :-1], block[:, 1:]

    def __repr__(self) -> str:
        return f"TokenWindows(seq_len={self.seq_len}, max_windows={self.max_windows})"
