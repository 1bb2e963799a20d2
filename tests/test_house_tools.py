"""tools/check_private_imports.py: what counts as a private name crossing a module boundary."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location(
    "check_private_imports", ROOT / "tools" / "check_private_imports.py"
)
assert _spec is not None and _spec.loader is not None
tool = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = tool  # dataclasses look their module up there
_spec.loader.exec_module(tool)


def _texts(code: str, current: str, is_package: bool = False) -> list[str]:
    return [f.text for f in tool.findings_in(ast.parse(code), current, is_package=is_package)]


def test_absolute_and_relative_private_imports_are_found() -> None:
    code = "from mixsampler.laws.fit import _prepare, fit\nfrom .io import _tmp\n"
    assert _texts(code, "mixsampler.laws.evaluate") == [
        "from mixsampler.laws.fit import _prepare",
        "from mixsampler.laws.io import _tmp",
    ]
    # In a package __init__, one dot is the package itself.
    assert _texts("from ._guards import _x\n", "mixsampler.callbacks", is_package=True) == [
        "from mixsampler.callbacks._guards import _x"
    ]


def test_private_modules_and_attributes_of_our_modules_are_found() -> None:
    code = (
        "from mixsampler.callbacks import _guards\n"
        "from mixsampler.laws import fit\n"
        "import mixsampler.laws.io as lio\n"
        "fit._search(1)\nlio._tmp\n"
    )
    assert _texts(code, "mixsampler.callbacks.domain_loss") == [
        "from mixsampler.callbacks import _guards",
        "fit._search (mixsampler.laws.fit)",
        "lio._tmp (mixsampler.laws.io)",
    ]


def test_public_dunder_own_and_third_party_names_pass() -> None:
    code = (
        "from mixsampler import __version__\n"
        "from mixsampler.laws.fit import fit as _fit\n"  # a private alias of a public name
        "from numpy.linalg import _umath_linalg\n"  # not ours
        "from mixsampler.laws.fit import _own\n"
    )
    assert _texts(code, "mixsampler.laws.fit") == []


def test_exit_status_and_listing(tmp_path: Path) -> None:
    clean = tmp_path / "clean.py"
    clean.write_text("from mixsampler.laws import fit\n")
    dirty = tmp_path / "dirty.py"
    dirty.write_text("\n\nfrom mixsampler.laws.fit import _prepare\n")
    script = str(ROOT / "tools" / "check_private_imports.py")
    ok = subprocess.run([sys.executable, script, str(clean)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, script, str(dirty)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "dirty.py:3: from mixsampler.laws.fit import _prepare" in bad.stdout
    gone = subprocess.run(
        [sys.executable, script, str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert gone.returncode == 2 and "nope" in gone.stderr


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_typecheck_lays_out_the_installed_package(tmp_path: Path) -> None:
    typecheck = _load("typecheck")
    pkg = typecheck.lay_out(tmp_path)
    # mypy sees the names users import: mixsampler.laws.fit, mixsampler.callbacks.
    assert (pkg / "laws" / "fit.py").resolve() == ROOT / "laws" / "fit.py"
    assert (pkg / "callbacks" / "__init__.py").resolve() == ROOT / "callbacks" / "__init__.py"
    assert (pkg / "cli.py").resolve() == ROOT / "mixsampler" / "cli.py"
    assert not (tmp_path / "laws").exists()  # no top-level `laws` for mypy to find
    # Findings point at the repository's files.
    assert typecheck.to_repo_path("mixsampler/laws/io.py:1: error: e") == "laws/io.py:1: error: e"
    assert typecheck.to_repo_path("mixsampler/callbacks/x.py:2: e") == "callbacks/x.py:2: e"
    assert typecheck.to_repo_path("mixsampler/plan.py:3: e") == "mixsampler/plan.py:3: e"


def test_public_table_finds_or_skips_saying_where(
    public_table, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MIXSAMPLER_PUBLIC_DATA", str(tmp_path))
    with pytest.raises(pytest.skip.Exception, match=f"dmsl_slimpajama.csv not found in {tmp_path}"):
        public_table("dmsl_slimpajama")
    (tmp_path / "regmix_1m.csv").write_text("model_size\n1\n")
    assert public_table("regmix_1m") == tmp_path / "regmix_1m.csv"
    assert public_table("regmix_1m.csv") == tmp_path / "regmix_1m.csv"


def test_doctests_import_the_installed_modules() -> None:
    """The root conftest makes `--doctest-modules laws` import mixsampler.laws.*, not `laws`."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "--doctest-modules",
            "laws/forms.py",
            "callbacks/__init__.py",
            "mixsampler/atomic.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode in (0, 5), out.stdout + out.stderr  # 5: nothing collected
    assert "laws/forms.py::mixsampler.laws.forms.Form" in out.stdout, out.stdout
    assert "mixsampler/atomic.py::mixsampler.atomic" in out.stdout, out.stdout
    assert "::laws." not in out.stdout and "::callbacks." not in out.stdout, out.stdout
