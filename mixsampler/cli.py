"""The ``mixsampler`` command line.

Each verb lives in its own module that exposes ``register(subparsers)``. Those modules keep
their heavy imports (torch, Lightning) inside the handlers, so ``mixsampler fit`` starts in
the time numpy and scipy take to import, not torch.

Errors: a user error (a bad argument, a missing file, a folder given as a file, no permission)
is one line on stderr and exit status 2; any other operating-system error (a full disk, an I/O
error) is one line and exit status 1; anything else is a bug and keeps its traceback.

Threads: ``fit`` and ``optimize`` work on small dense matrices, where BLAS threads only contend
(an additive fit took 1.5 s of CPU with one thread and 6.8 to 9.9 s with OpenBLAS's default on
2 cores, for a byte-identical LAW.json), so they run with one BLAS thread per process, their
worker processes included. ``MIXSAMPLER_BLAS_THREADS=N`` sets N threads instead, and
``MIXSAMPLER_BLAS_THREADS=0`` leaves the environment's own settings alone (see
:mod:`mixsampler.threads`).

Example:
    $ mixsampler fit runs.csv --law joint --target all -o law.json
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import MutableMapping, Sequence

from mixsampler.atomic import OutputPathError
from mixsampler.threads import BLAS_ENV, requested_blas_threads, set_blas_threads

__all__ = ["BLAS_VERBS", "build_parser", "main", "pin_blas_threads"]

log = logging.getLogger(__name__)

# Verbs whose work is many small matrix operations (law fits, the weights search); see
# mixsampler.threads for why they run with one BLAS thread.
BLAS_VERBS: frozenset[str] = frozenset({"fit", "optimize"})

# Modules that add verbs. Order is the order of ``mixsampler --help``.
_REGISTRARS: tuple[str, ...] = (
    "mixsampler.commands.plan",
    "mixsampler.commands.shards",
    "mixsampler.commands.train",
    "mixsampler.commands.sweep",
    "mixsampler.laws.cli",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered verb."""
    parser = argparse.ArgumentParser(
        prog="mixsampler",
        description="Pick the data mixture of a large run from small proxy runs.",
        epilog=(
            f"fit and optimize run with one BLAS thread per process (their matrices are small;"
            f" more threads only contend): {BLAS_ENV}=N sets N, {BLAS_ENV}=0 leaves the"
            " environment's OMP/OPENBLAS/MKL settings alone."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _REGISTRARS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            # A verb whose module is absent must not take the others down with it.
            if err.name == name:
                continue
            raise
        module.register(sub)
    return parser


def pin_blas_threads(
    argv: Sequence[str], environ: MutableMapping[str, str] | None = None
) -> int | None:
    """Set the BLAS thread variables for the verb in ``argv``; return the count set.

    ``fit`` and ``optimize`` get one thread per process unless ``MIXSAMPLER_BLAS_THREADS``
    says otherwise (0: leave the environment alone). Other verbs are left alone (None).

    Args:
        argv: the command line after ``mixsampler`` (options before the verb are skipped).
        environ: the environment to change (default ``os.environ``).

    Raises:
        ValueError: ``MIXSAMPLER_BLAS_THREADS`` is not an integer >= 0.

    Example:
        >>> env = {"OMP_NUM_THREADS": "16"}
        >>> pin_blas_threads(["-v", "fit", "runs.csv"], env), env["OMP_NUM_THREADS"]
        (1, '1')
        >>> env = {"MIXSAMPLER_BLAS_THREADS": "0", "OMP_NUM_THREADS": "16"}
        >>> pin_blas_threads(["optimize", "LAW.json"], env), env["OMP_NUM_THREADS"]
        (None, '16')
        >>> pin_blas_threads(["plan"], {}) is None
        True
    """
    verb = next((a for a in argv if not a.startswith("-")), None)
    if verb not in BLAS_VERBS:
        return None
    count = requested_blas_threads(environ)
    if count is not None:
        set_blas_threads(count, environ)
    return count


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mixsampler`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # Before build_parser: the verbs' modules import numpy, which loads BLAS.
        threads = pin_blas_threads(argv)
    except ValueError as err:
        print(f"mixsampler: error: {err}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
    )
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    if threads is not None:
        # DEBUG (`mixsampler -v`): the verbs' stderr carries one line per error, nothing else.
        log.debug(
            "mixsampler %s: %d BLAS thread%s per process (small matrices; %s=N to change,"
            " 0 to leave the environment's setting)",
            args.command,
            threads,
            "" if threads == 1 else "s",
            BLAS_ENV,
        )
    try:
        return int(args.func(args) or 0)
    except _USER_ERRORS as err:
        # User errors: one readable line, no traceback. Bugs (other types) still trace.
        print(f"mixsampler {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:
        # The machine, not the input: a full disk, an I/O error, a lost network mount. One
        # line saying which file and why (the writers clean up their temporary files).
        print(f"mixsampler {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mixsampler {args.command}: interrupted", file=sys.stderr)
        return 130


# Errors that mean "the input was wrong", not "mixsampler has a bug". Verbs check their inputs
# and raise ValueError naming the argument or file; the OSError kinds below are the ones a
# user's path causes (a folder where a file belongs, a missing folder, no permission) when a
# check at the source missed it. Other OSErrors (a full disk, an I/O error) exit 1.
_USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    KeyError,
    OutputPathError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename is not None:
        text = f"{err.filename}: {err.strerror or err}"
    elif isinstance(err, OSError) and err.strerror:
        text = err.strerror  # str() would prefix "[Errno 28] "
    elif isinstance(err, KeyError) and len(err.args) == 1:
        # str(KeyError("x")) is "'x'": say what it is, unless it already carries a sentence.
        key = err.args[0]
        text = key if isinstance(key, str) and " " in key else f"unknown name {key!r}"
    else:
        text = str(err)
    return " ".join(text.split()) or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
