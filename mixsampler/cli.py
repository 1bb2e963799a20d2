"""The ``mixsampler`` command line.

Each verb lives in its own module that exposes ``register(subparsers)``. Those modules keep
their heavy imports (torch, Lightning) inside the handlers, so ``mixsampler fit`` starts in
the time numpy and scipy take to import, not torch.

Example:
    $ mixsampler fit runs.csv --law joint --target all -o law.json
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mixsampler`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
    )
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except _USER_ERRORS as err:
        # User errors: one readable line, no traceback. Bugs (other types) still trace.
        print(f"mixsampler {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mixsampler {args.command}: interrupted", file=sys.stderr)
        return 130


# Errors that mean "the input was wrong", not "mixsampler has a bug". Verbs check their inputs
# and raise ValueError naming the argument or file; the OSError kinds below are the ones a
# user's path causes (a folder where a file belongs, a missing folder, no permission) when a
# check at the source missed it. Other OSErrors (a full disk, an I/O error) still trace.
_USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    KeyError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename is not None:
        text = f"{err.filename}: {err.strerror or err}"
    elif isinstance(err, KeyError) and len(err.args) == 1:
        # str(KeyError("x")) is "'x'": say what it is, unless it already carries a sentence.
        key = err.args[0]
        text = key if isinstance(key, str) and " " in key else f"unknown name {key!r}"
    else:
        text = str(err)
    return " ".join(text.split()) or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
