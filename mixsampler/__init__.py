"""mixsampler: exact, resumable weighted mixing of data domains, and the tools around it.

Public names are imported lazily so that the command line and ``laws`` users do not pay for
importing torch.

Example:
    >>> from mixsampler import MixtureDataset  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "MixtureDataset": "mixsampler.dataset",
    "CorruptShardError": "mixsampler.dataset",
    "write_shards": "mixsampler.shards",
    "ShardResult": "mixsampler.shards",
    "TokenWindows": "mixsampler.collate",
    "token_ids": "mixsampler.tokens",
    "MixtureDataModule": "mixsampler.datamodule",
    "MixtureLoader": "mixsampler.loader",
    "make_plan": "mixsampler.plan",
    "Plan": "mixsampler.plan",
    "run_sweep": "mixsampler.sweep",
    "SweepResult": "mixsampler.sweep",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mixsampler' has no attribute {name!r}")
