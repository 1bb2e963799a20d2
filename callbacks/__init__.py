"""Lightning callbacks for proxy runs (DomainLossLogger) and the main run (MixtureWeights).

Example:
    >>> from callbacks import DomainLossLogger, MixtureWeights  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module; imported lazily so `import callbacks` does not pull in Lightning.
_EXPORTS: dict[str, str] = {
    "DomainLossLogger": "mixsampler.callbacks.domain_loss",
    "MixtureWeights": "mixsampler.callbacks.mixture_weights",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mixsampler.callbacks' has no attribute {name!r}")
