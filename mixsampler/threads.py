"""BLAS threads: one definition of the variables, the user's setting, and pinning them.

Law fits and the weights search are many small dense matrix operations. OpenBLAS and MKL start
one thread per core for each, and on a shared node those threads only contend: an additive fit
of the public table took 1.5 s of CPU with one thread and 6.8 to 9.9 s with OpenBLAS's default
on 2 cores, for a byte-identical LAW.json. So ``mixsampler fit`` and ``optimize``, and the
processes they start, run with one BLAS thread unless the user says otherwise through
``MIXSAMPLER_BLAS_THREADS`` (``N`` threads; ``0`` leaves the environment's own settings).

BLAS reads its variables once, when the library loads, so they must be set before numpy is
first imported in a process; worker processes inherit them. Standard library only, so the
command line and ``mixsampler.laws`` can use it before anything heavy loads.

Example:
    >>> env = {"OMP_NUM_THREADS": "16"}
    >>> requested_blas_threads(env)
    1
    >>> set_blas_threads(1, env)["OMP_NUM_THREADS"]  # returns what was there before
    '16'
    >>> env["OPENBLAS_NUM_THREADS"], env["OMP_NUM_THREADS"]
    ('1', '1')
    >>> requested_blas_threads({"MIXSAMPLER_BLAS_THREADS": "0"}) is None
    True
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, MutableMapping

from mixsampler.checks import check_int

__all__ = [
    "BLAS_ENV",
    "BLAS_THREAD_VARS",
    "blas_threads",
    "requested_blas_threads",
    "restore_blas_threads",
    "set_blas_threads",
]

# The variables OpenBLAS, MKL and OpenMP-built BLAS libraries read when they load.
BLAS_THREAD_VARS: tuple[str, ...] = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
# The user's setting: N threads per process; 0 leaves BLAS_THREAD_VARS as they are.
BLAS_ENV = "MIXSAMPLER_BLAS_THREADS"


def requested_blas_threads(environ: Mapping[str, str] | None = None) -> int | None:
    """Threads per process the user asks for (default 1); None for "leave them alone".

    Raises:
        ValueError: ``MIXSAMPLER_BLAS_THREADS`` is not an integer >= 0 (named, value echoed).
    """
    env = os.environ if environ is None else environ
    raw = env.get(BLAS_ENV, "1").strip()
    try:
        count = int(raw)
    except ValueError:
        count = -1
    if count < 0:
        raise ValueError(
            f"environment variable {BLAS_ENV} must be an integer >= 0 (0: leave the BLAS"
            f" settings alone), got {raw!r}"
        )
    return count or None


def set_blas_threads(
    count: int, environ: MutableMapping[str, str] | None = None
) -> dict[str, str | None]:
    """Set every BLAS variable to ``count``; return the previous values (None: unset)."""
    check_int("count", count, low=1)
    env = os.environ if environ is None else environ
    saved = {var: env.get(var) for var in BLAS_THREAD_VARS}
    env.update(dict.fromkeys(BLAS_THREAD_VARS, str(count)))
    return saved


def restore_blas_threads(
    saved: Mapping[str, str | None], environ: MutableMapping[str, str] | None = None
) -> None:
    """Put back what :func:`set_blas_threads` returned."""
    env = os.environ if environ is None else environ
    for var, value in saved.items():
        if value is None:
            env.pop(var, None)
        else:
            env[var] = value


@contextlib.contextmanager
def blas_threads(count: int | None) -> Iterator[None]:
    """Within the block, processes started get ``count`` BLAS threads (None: unchanged).

    For pools of worker processes: the parent's own BLAS is already loaded and keeps its
    threads; the children load theirs with these variables.

    Example:
        >>> with blas_threads(2):
        ...     os.environ["MKL_NUM_THREADS"]
        '2'
    """
    if count is None:
        yield
        return
    saved = set_blas_threads(count)
    try:
        yield
    finally:
        restore_blas_threads(saved)
