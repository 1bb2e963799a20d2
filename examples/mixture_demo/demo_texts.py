"""The demo's text sources: where each domain's documents come from on this installation.

Each source is a generator of ``(document name, text)`` with names stable across runs; a
``LazyText`` is read only if selected. :mod:`demo_data` selects, splits and shards
them.

Example:
    >>> from demo_texts import SOURCES
    >>> [s.name for s in SOURCES]
    ['cpp', 'licenses', 'prose', 'python', 'readme']
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import logging
import re
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("demo_data")

_LICENSE_RE = re.compile(r"^(LICEN[CS]E|COPYING)", re.IGNORECASE)
_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"}


def python_source() -> Iterator[tuple[str, LazyText]]:
    """Python files of the standard library (no tests, no site-packages)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if _SKIP_DIRS.intersection(rel.parts[:-1]):
            continue
        doc = LazyText.of(path)
        if doc.size:
            yield f"stdlib/{rel.as_posix()}", doc


def cpp_headers() -> Iterator[tuple[str, LazyText]]:
    """C++ headers shipped in torch's wheel (``torch/include``)."""
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return
    root = Path(next(iter(spec.submodule_search_locations))) / "include"
    for path in sorted(root.rglob("*")):
        if path.suffix in {".h", ".hpp"} and path.is_file():
            doc = LazyText.of(path)
            if doc.size:
                yield f"torch/include/{path.relative_to(root).as_posix()}", doc


def pydoc_topics() -> Iterator[tuple[str, str]]:
    """English prose of the language reference, as ``help()`` shows it."""
    from pydoc_data.topics import topics

    for name in sorted(topics):
        if topics[name].strip():
            yield f"pydoc/{name}", topics[name]


def _distributions() -> list[md.Distribution]:
    # One entry per project name: an editable install or a second site dir can list a
    # project twice, and the first on sys.path is the one imported.
    seen: dict[str, md.Distribution] = {}
    for dist in md.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name and name not in seen:
            seen[name] = dist
    return [seen[n] for n in sorted(seen)]


def license_texts() -> Iterator[tuple[str, str]]:
    """Licence files of the installed packages and of Python itself, deduplicated by text."""
    seen: set[str] = set()
    candidates: list[tuple[str, Path]] = []
    stdlib_license = Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt"
    if stdlib_license.is_file():
        candidates.append(("python/LICENSE.txt", stdlib_license))
    for dist in _distributions():
        for f in dist.files or []:
            if _LICENSE_RE.match(f.name):
                candidates.append((f"{dist.metadata['Name']}/{f}", Path(str(f.locate()))))
    for name, path in candidates:
        text = _read_text(path) if path.is_file() else ""
        digest = hashlib.sha1(" ".join(text.split()).encode()).hexdigest()
        if text and digest not in seen:
            seen.add(digest)
            yield name, text


def package_readmes() -> Iterator[tuple[str, str]]:
    """Long descriptions (README text) of the installed packages."""
    for dist in _distributions():
        meta = dist.metadata
        text = meta.get("Description") or meta.get_payload() or ""
        if text.strip():
            yield f"{meta['Name']}/README", text


@dataclass(frozen=True)
class _Source:
    name: str
    description: str
    docs: Callable[[], Iterator[tuple[str, str | LazyText]]]
    target: bool = False


SOURCES: tuple[_Source, ...] = (
    _Source("cpp", "C++ headers shipped with torch (torch/include/**/*.h, *.hpp)", cpp_headers),
    _Source(
        "licenses",
        "licence texts of installed packages (*.dist-info/**/LICEN[CS]E*, COPYING*) and "
        "Python's LICENSE.txt, deduplicated",
        license_texts,
    ),
    _Source("prose", "English prose of Python's reference docs (pydoc_data.topics)", pydoc_topics),
    _Source("python", "Python standard library source (stdlib/**/*.py, no tests)", python_source),
    _Source(
        "readme",
        "long descriptions (README) of installed packages (importlib.metadata); held-out "
        "target, never trained on",
        package_readmes,
        target=True,
    ),
)


@dataclass(frozen=True)
class LazyText:
    """A text file read only if selected; ``size`` (bytes on disk) counts as available."""

    path: Path
    size: int

    @classmethod
    def of(cls, path: Path) -> LazyText:
        return cls(path, path.stat().st_size)

    def read(self) -> str:
        return _read_text(self.path)


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError as err:
        log.debug("skipping %s: %s", path, err)
        return ""
