"""Repository-wide pytest configuration: doctests import the installed package's modules.

The repository keeps ``callbacks/`` and ``laws/`` at its top level, but they install as
``mixsampler.callbacks`` and ``mixsampler.laws`` (setuptools' ``package-dir`` mapping in
pyproject.toml). ``pytest --doctest-modules mixsampler callbacks laws`` would import
``laws/forms.py`` as a top-level module ``laws.forms``: a second copy of the module, with its
own classes and its own module state, and a name no user can import. Here every doctest module
under those three folders is imported by its installed name instead, so a docstring example
runs against exactly the module a user gets.
"""

from __future__ import annotations

import importlib
from collections.abc import Generator
from pathlib import Path
from types import ModuleType

import pytest
from _pytest.doctest import DoctestModule

ROOT = Path(__file__).resolve().parent

# repository folder -> the package it installs as (mirror of [tool.setuptools] package-dir)
PACKAGE_DIRS: dict[str, str] = {
    "mixsampler": "mixsampler",
    "callbacks": "mixsampler.callbacks",
    "laws": "mixsampler.laws",
}


def installed_name(path: Path) -> str | None:
    """The module name ``path`` installs as, or None when it is outside the three packages.

    Example:
        >>> installed_name(ROOT / "laws" / "forms.py")
        'mixsampler.laws.forms'
        >>> installed_name(ROOT / "callbacks" / "__init__.py")
        'mixsampler.callbacks'
        >>> installed_name(ROOT / "benchmarks" / "bench_laws.py") is None
        True
    """
    try:
        rel = path.resolve().relative_to(ROOT)
    except ValueError:
        return None
    if len(rel.parts) < 2 or rel.parts[0] not in PACKAGE_DIRS or rel.suffix != ".py":
        return None
    parts = [PACKAGE_DIRS[rel.parts[0]], *rel.with_suffix("").parts[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


class InstalledDoctestModule(DoctestModule):
    """A doctest module imported by its installed name (``mixsampler.laws.forms``)."""

    def _getobj(self) -> ModuleType:
        name = installed_name(self.path)
        assert name is not None  # only built for paths installed_name maps
        return importlib.import_module(name)


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(
    file_path: Path, parent: pytest.Collector
) -> Generator[None, list[pytest.Collector], list[pytest.Collector]]:
    """Swap pytest's own doctest collector for ours on the package's files."""
    collected = yield
    if installed_name(file_path) is None:
        return collected
    return [
        InstalledDoctestModule.from_parent(parent, path=file_path)
        if type(item) is DoctestModule
        else item
        for item in collected
    ]
