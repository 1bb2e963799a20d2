"""One import root: a user's own `callbacks`, `laws` or `mixsampler` folder shadows nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mixsampler.sweep.launchers import train_command


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_user_callbacks_and_laws_do_not_shadow_ours(tmp_path: Path) -> None:
    (tmp_path / "callbacks.py").write_text(
        "raise SystemExit('the user callbacks.py was imported')\n"
    )
    (tmp_path / "laws").mkdir()
    (tmp_path / "laws" / "__init__.py").write_text(
        "raise SystemExit('the user laws/ was imported')\n"
    )
    out = _run(
        "import sys\n"
        "from mixsampler.callbacks import DomainLossLogger, MixtureWeights\n"
        "from mixsampler import laws\n"
        "import callbacks\n"  # the user's own module still imports as itself
        "print(DomainLossLogger.__module__, laws.fit.__module__)\n",
        tmp_path,
    )
    assert "the user callbacks.py was imported" in out.stderr  # the last import, theirs
    assert "mixsampler.callbacks.domain_loss" not in out.stderr
    out = _run(
        "from mixsampler.callbacks import DomainLossLogger\n"
        "from mixsampler import laws\n"
        "print(DomainLossLogger.__module__, laws.fit.__module__)\n",
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["mixsampler.callbacks.domain_loss", "mixsampler.laws.fit"]


def test_laws_import_no_torch(tmp_path: Path) -> None:
    out = _run("import sys, mixsampler.laws\nprint('torch' in sys.modules)\n", tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_trainer_subprocess_ignores_a_mixsampler_folder_in_the_working_directory(
    tmp_path: Path,
) -> None:
    # A clone of this repository, or any folder named mixsampler, where the sweep is started.
    (tmp_path / "mixsampler").mkdir()
    (tmp_path / "mixsampler" / "__init__.py").write_text("raise SystemExit('shadowed')\n")

    class _Run:
        config = tmp_path / "missing.yaml"

    cmd = train_command(_Run())  # type: ignore[arg-type]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "shadowed" not in out.stderr + out.stdout
    assert "missing.yaml" in out.stderr + out.stdout  # the installed CLI ran and named the file
