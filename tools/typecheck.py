#!/usr/bin/env python3
"""Type-check the package as it installs: mixsampler, mixsampler.callbacks, mixsampler.laws.

The repository keeps ``callbacks/`` and ``laws/`` at its top level and maps them into
``mixsampler`` at install time (pyproject's ``package-dir``). mypy reads folders, not that
mapping, and does not run the import hooks an editable install uses, so pointed at the
repository it would check ``laws`` as a top-level package, a name no user imports. This script
lays the installed tree out in a temporary folder from symbolic links (``mixsampler/*`` plus
``mixsampler/callbacks -> callbacks/`` and ``mixsampler/laws -> laws/``), runs mypy on
``-p mixsampler`` there with the settings of ``[tool.mypy]`` in pyproject.toml, and prints each
finding with its repository path (``laws/fit.py:12: error: ...``).

Usage:
    python tools/typecheck.py [extra mypy arguments]

Exit status: mypy's (0 clean, 1 findings, 2 a usage error).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# repository folder -> where it sits inside the installed `mixsampler` package ("" = the root)
MAPPED: dict[str, str] = {"callbacks": "callbacks", "laws": "laws"}


def lay_out(tree: Path) -> Path:
    """Build ``tree/mixsampler`` as the installed package, from links; returns it."""
    pkg = tree / "mixsampler"
    pkg.mkdir()
    for item in (ROOT / "mixsampler").iterdir():
        if item.name == "__pycache__":
            continue
        (pkg / item.name).symlink_to(item)
    for repo_dir, inside in MAPPED.items():
        (pkg / inside).symlink_to(ROOT / repo_dir)
    return pkg


def to_repo_path(line: str) -> str:
    """Rewrite a mypy line's installed path (``mixsampler/laws/x.py``) to the repository's.

    Example:
        >>> to_repo_path("mixsampler/laws/fit.py:3: error: x")
        'laws/fit.py:3: error: x'
        >>> to_repo_path("mixsampler/cli.py:3: note: y")
        'mixsampler/cli.py:3: note: y'
    """
    for repo_dir, inside in MAPPED.items():
        line = re.sub(rf"^mixsampler/{re.escape(inside)}/", f"{repo_dir}/", line)
    return line


def main(argv: list[str] | None = None) -> int:
    extra = sys.argv[1:] if argv is None else argv
    with tempfile.TemporaryDirectory(prefix="mixsampler-typecheck-") as tmp:
        lay_out(Path(tmp))
        env = dict(os.environ, MYPYPATH=tmp)
        cmd = [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            *extra,
            "-p",
            "mixsampler",
        ]
        try:
            out = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        except FileNotFoundError:
            print(
                "typecheck: error: mypy is not installed (pip install -e .[dev])", file=sys.stderr
            )
            return 2
        if "No module named mypy" in out.stderr:
            print(
                "typecheck: error: mypy is not installed (pip install -e .[dev])", file=sys.stderr
            )
            return 2
        for line in out.stdout.splitlines():
            print(to_repo_path(line))
        if out.stderr.strip():
            print(out.stderr.strip(), file=sys.stderr)
        return out.returncode


if __name__ == "__main__":
    sys.exit(main())
