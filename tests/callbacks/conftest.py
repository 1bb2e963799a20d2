"""Make the tiny test models importable as ``tiny_lm`` (also by subprocesses and LightningCLI)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # 2 cores shared by several test areas: one intra-op thread each keeps tiny models fast.
    torch.set_num_threads(1)
