"""Atomic file writes: a reader sees the old file or the whole new one, never a part.

Every file mixsampler writes whole (LAW.json, WEIGHTS.json, shard indexes, plan files, sweep
markers, run-table rewrites) goes through :func:`atomic_write` or :func:`atomic_open`, so the
guarantees are the same everywhere:

- the data goes to a uniquely named temporary file *in the target folder* (a rename is atomic
  only within one file system, and two writers never share a temporary name);
- the file is flushed and fsynced before the rename, and the folder after it, so a power loss
  leaves the old file or the new one;
- on any error (full disk, a kill, an exception while writing) the temporary file is removed
  and the target is untouched;
- the new file gets the permissions an ordinary ``open(path, "w")`` would (0666 less the
  umask), not ``mkstemp``'s 0600, which would hide it from the user's group;
- an ``OSError`` names the target path, so "No space left on device" says which file it was.

This module imports only the standard library: ``mixsampler.laws`` uses it without torch.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write(folder / "a.json", '{"x": 1}\\n').name
    'a.json'
    >>> (folder / "a.json").read_text()
    '{"x": 1}\\n'
    >>> with atomic_open(folder / "b.bin", "wb") as f:
    ...     _ = f.write(b"\\x00\\x01")
    >>> (folder / "b.bin").read_bytes()
    b'\\x00\\x01'
    >>> sorted(p.name for p in folder.iterdir())  # no temporary file left behind
    ['a.json', 'b.bin']
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

__all__ = ["atomic_open", "atomic_write", "fsync_dir", "OutputPathError", "check_output_path"]

_TMP_PREFIX = ".tmp-"


class OutputPathError(OSError):
    """An output path that cannot be written (missing folder, read-only, a directory).

    An ``OSError`` so callers that already catch OS errors keep working; its message names the
    path and the reason in one line.
    """


def _umask() -> int:
    # os.umask can only be read by setting it; put it back at once.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Fsync a folder so a rename or a new file in it survives a power loss (POSIX only)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows, or a folder we may list but not open: the rename still happened
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the data itself is synced
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: Literal["w", "wb"] = "w", **kwargs: Any
) -> Iterator[IO[Any]]:
    """Open ``path`` for writing so that it appears whole when the ``with`` block ends.

    Args:
        path: the file to write; its folder must exist.
        mode: ``"w"`` (text, UTF-8 unless ``encoding`` is given) or ``"wb"``.
        **kwargs: passed to :func:`open` for the temporary file (``newline``, ``encoding``).

    Raises:
        OutputPathError: the folder is missing or not writable, or ``path`` is a directory.
        OSError: a write failed (full disk); the message names ``path``. The target is
            unchanged and no temporary file is left.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    check_output_path(path)
    if mode == "w":
        kwargs.setdefault("encoding", "utf-8")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX + path.name + ".")
    except OSError as err:
        raise OutputPathError(err.errno, f"cannot write {path}: {err.strerror}") from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OutputPathError) or str(path) in str(err):
            raise
        raise OSError(err.errno, f"cannot write {path}: {err.strerror or err}") from err
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically; returns the path."""
    mode: Literal["w", "wb"] = "wb" if isinstance(data, bytes) else "w"
    with atomic_open(path, mode) as f:
        f.write(data)
    return Path(path)


def check_output_path(path: str | os.PathLike[str], *, what: str = "output") -> Path:
    """Check before any work that ``path`` can be written; returns it as a :class:`Path`.

    Callers run this on every ``-o`` before a long fit or sweep, so that a typo fails in a
    second with the path named, not after the work with an internal temporary name.

    Raises:
        OutputPathError: ``path`` is a directory, its folder does not exist or is not a
            folder, or the folder is not writable.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a directory; name a file to write")
    parent = path.parent
    if not parent.exists():
        raise OutputPathError(f"{what} {path}: folder {parent} does not exist")
    if not parent.is_dir():
        raise OutputPathError(f"{what} {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what} {path}: folder {parent} is not writable")
    if path.exists() and not os.access(path, os.W_OK) and not os.access(parent, os.W_OK):
        raise OutputPathError(f"{what} {path} is read-only")
    return path
