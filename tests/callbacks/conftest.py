"""One torch thread per test. The tiny test models are in tests/helpers (on pytest's path)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # 2 cores shared by several test areas: one intra-op thread each keeps tiny models fast.
    torch.set_num_threads(1)
