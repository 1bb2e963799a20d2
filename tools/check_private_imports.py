#!/usr/bin/env python3
"""Fail when a module of the library uses another module's private name.

The project's rule: only public names cross module boundaries. A private name (one leading
underscore, not a dunder such as ``__version__``) is free to change with its module; a second
module that imports it couples the two invisibly, which is how size-driven splits left 30 such
imports and three import cycles behind. Flagged, in every ``.py`` file under the given folders:

- ``from mixsampler.x import _name`` (absolute or relative, ``from ._x import _name`` too), where
  ``mixsampler.x`` is another module of ours; importing a private *module*
  (``from mixsampler.callbacks import _guards``) counts as well;
- ``mod._name`` where ``mod`` was bound by ``import mixsampler.x as mod`` or
  ``from mixsampler import x`` (x a module of ours).

A module's use of its own private names, and of ``mixsampler.x._name`` inside ``mixsampler.x``'s
own package ``__init__`` re-export, is not flagged when it is the same module. Third-party
private imports are not this tool's business.

Usage:
    python tools/check_private_imports.py              # mixsampler/ callbacks/ laws/
    python tools/check_private_imports.py tests benchmarks

Exit status 0 when nothing is found, 1 otherwise (each finding printed as ``path:line: ...``),
2 on a bad argument.

Example:
    >>> import ast
    >>> tree = ast.parse("from mixsampler.laws.fit import _prepare\\n")
    >>> [f.text for f in findings_in(tree, "mixsampler.laws.evaluate", is_package=False)]
    ['from mixsampler.laws.fit import _prepare']
    >>> tree = ast.parse("from mixsampler.laws.fit import fit as _fit\\n")
    >>> findings_in(tree, "mixsampler.laws.evaluate", is_package=False)
    []
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# repository folder -> the package it installs as (mirror of pyproject's package-dir mapping)
PACKAGE_DIRS: dict[str, str] = {
    "mixsampler": "mixsampler",
    "callbacks": "mixsampler.callbacks",
    "laws": "mixsampler.laws",
}
FIRST_PARTY = ("mixsampler",)


@dataclass(frozen=True)
class Finding:
    """One private name used across modules."""

    line: int
    text: str


def is_private(name: str) -> bool:
    """One leading underscore, not a dunder.

    Example:
        >>> [is_private(n) for n in ("_x", "__version__", "x", "__x")]
        [True, False, False, True]
    """
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def module_name(path: Path) -> tuple[str, bool]:
    """The installed module name of ``path`` and whether it is a package ``__init__``."""
    rel = path.resolve().relative_to(ROOT)
    parts = list(rel.with_suffix("").parts)
    if parts and parts[0] in PACKAGE_DIRS:
        parts = [*PACKAGE_DIRS[parts[0]].split("."), *parts[1:]]
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def module_file(name: str) -> Path | None:
    """The repository file of installed module ``name`` (None: not one of ours)."""
    parts = name.split(".")
    if parts[0] not in FIRST_PARTY:
        return None
    folder = None
    # The longest mapped prefix wins (mixsampler.laws before mixsampler).
    for repo_dir, package in sorted(PACKAGE_DIRS.items(), key=lambda kv: -len(kv[1])):
        pkg_parts = package.split(".")
        if parts[: len(pkg_parts)] == pkg_parts:
            folder = (
                ROOT / repo_dir / Path(*parts[len(pkg_parts) :])
                if parts[len(pkg_parts) :]
                else ROOT / repo_dir
            )
            break
    if folder is None:
        return None
    if (folder / "__init__.py").is_file():
        return folder / "__init__.py"
    if folder.with_suffix(".py").is_file():
        return folder.with_suffix(".py")
    return None


def _is_ours(name: str) -> bool:
    return name.split(".")[0] in FIRST_PARTY


def _absolute(node: ast.ImportFrom, current: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".")
    # A package's __init__ is its own package; a module's package is its parent.
    keep = len(base) - node.level + (1 if is_package else 0)
    prefix = base[:keep]
    return ".".join([*prefix, node.module] if node.module else prefix)


def findings_in(tree: ast.AST, current: str, *, is_package: bool) -> list[Finding]:
    """Private names of other modules of ours that ``tree`` (module ``current``) uses."""
    found: list[Finding] = []
    module_aliases: dict[str, str] = {}  # local name -> our module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _absolute(node, current, is_package)
            if not _is_ours(source):
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if module_file(full) is not None and full != current:
                    module_aliases[alias.asname or alias.name] = full
                if is_private(alias.name) and source != current:
                    found.append(Finding(node.lineno, f"from {source} import {alias.name}"))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _is_ours(alias.name) and alias.asname:
                    module_aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in module_aliases
            and is_private(node.attr)
            and module_aliases[node.value.id] != current
        ):
            found.append(
                Finding(
                    node.lineno, f"{node.value.id}.{node.attr} ({module_aliases[node.value.id]})"
                )
            )
    return sorted(found, key=lambda f: f.line)


def check(paths: list[Path]) -> list[str]:
    """Every finding under ``paths`` as ``path:line: text``."""
    lines: list[str] = []
    for folder in paths:
        files = [folder] if folder.is_file() else sorted(folder.rglob("*.py"))
        for path in files:
            if ".venv" in path.parts:
                continue
            try:
                current, is_package = module_name(path)
            except ValueError:  # outside the repository: name it by its stem
                current, is_package = path.stem, False
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for f in findings_in(tree, current, is_package=is_package):
                shown = (
                    path.resolve().relative_to(ROOT)
                    if path.resolve().is_relative_to(ROOT)
                    else path
                )
                lines.append(f"{shown}:{f.line}: {f.text}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "paths", nargs="*", type=Path, help="files or folders (default: the library's three)"
    )
    args = parser.parse_args(argv)
    paths = args.paths or [ROOT / d for d in PACKAGE_DIRS]
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"check_private_imports: error: no such path: {missing[0]}", file=sys.stderr)
        return 2
    lines = check(paths)
    for line in lines:
        print(line)
    if lines:
        print(
            f"{len(lines)} private name(s) used across modules: make them public (no underscore)"
            " in their owner, or move the code that needs them into that module",
            file=sys.stderr,
        )
        return 1
    print("no private name is used across modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
