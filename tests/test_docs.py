"""The README and docs/ stay true: short README, links that resolve, examples and commands that run.

- The README stays a page a new user reads (at most 250 lines); the rest lives under docs/.
- Every relative link in README.md and docs/*.md points at a file that exists, and an anchor
  (``page.md#section``) at a heading of that page.
- The README's Python examples marked ``<!-- docs-test: run -->`` run on a CPU, from an empty
  folder, and the run table the first one prints has the header and (step, D) the README shows.
- Every ``mixsampler ...`` command line in the README and the pages house owns parses with the
  real command-line parser (options that exist, values of the right kind).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mixsampler import cli

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_README_LINES = 250
# Pages whose command lines are checked against the parser.
COMMAND_PAGES = [README, *(ROOT / "docs" / n for n in ("cluster.md", "formats.md", "index.md"))]

_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_RUN_MARK = "<!-- docs-test: run -->"


def _prose(text: str) -> str:
    """The text without fenced code blocks (a link inside code is not a link)."""
    return _FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.

    Example:
        >>> slug("The demo end to end (`examples/mixture_demo/`, 2026-12-02)")
        'the-demo-end-to-end-examplesmixture_demo-2026-12-02'
    """
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _prose(page.read_text()).splitlines():
        m = re.match(r"^#{1,6}\s+(.*)$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def _links() -> list[tuple[Path, str]]:
    out = []
    for page in [README, *DOCS]:
        for target in _LINK.findall(_prose(page.read_text())):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            out.append((page, target))
    return out


def test_readme_is_short() -> None:
    n = len(README.read_text().splitlines())
    assert n <= MAX_README_LINES, (
        f"README.md has {n} lines (limit {MAX_README_LINES}): move detail to docs/"
    )


def test_the_docs_have_links_to_check() -> None:
    # Guards the link test below against a regex that silently finds nothing.
    assert len(_links()) >= 20
    assert {p.name for p in DOCS} >= {"index.md", "formats.md", "cluster.md", "benchmarks.md"}


@pytest.mark.parametrize(
    ("page", "target"), _links(), ids=lambda v: v.name if isinstance(v, Path) else str(v)
)
def test_relative_links_resolve(page: Path, target: str) -> None:
    path_part, _, anchor = target.partition("#")
    dest = (page.parent / path_part).resolve() if path_part else page
    assert dest.exists(), f"{page.relative_to(ROOT)}: link {target!r}: {dest} does not exist"
    if anchor and dest.suffix == ".md":
        assert anchor in _anchors(dest), (
            f"{page.relative_to(ROOT)}: link {target!r}: no heading with anchor #{anchor} in"
            f" {dest.relative_to(ROOT)} (has: {sorted(_anchors(dest))})"
        )


def _runnable_examples() -> list[str]:
    text = README.read_text()
    blocks = re.findall(re.escape(_RUN_MARK) + r"\s*```python\n(.*?)^```", text, re.M | re.S)
    return blocks


def test_readme_marks_its_examples() -> None:
    assert len(_runnable_examples()) == README.read_text().count(_RUN_MARK) == 2


@pytest.mark.parametrize("index", range(2))
def test_readme_examples_run(index: int, tmp_path: Path) -> None:
    code = _runnable_examples()[index]
    script = tmp_path / "example.py"
    script.write_text(code)
    # -P: the checkout's folder is not on the path; the example imports what is installed.
    out = subprocess.run(
        [sys.executable, "-P", str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    if index == 0:
        shown = _shown_run_table()
        produced = (tmp_path / "runs.csv").read_text().splitlines()
        assert produced[0] == shown[0], "the README shows another header than the run writes"
        cols = shown[0].split(",")
        key = [cols.index(c) for c in ("run", "step", "n_tokens", "weight_prose")]
        assert [[r.split(",")[i] for i in key] for r in produced[1:]] == [
            [r.split(",")[i] for i in key] for r in shown[1:]
        ]


def _shown_run_table() -> list[str]:
    text = README.read_text()
    after = text.split(_RUN_MARK)[1].split("`runs.csv` gets one row", 1)[1]
    block = re.search(r"```\n(.*?)```", after, re.S)
    assert block is not None
    return block.group(1).strip().splitlines()


def _commands(page: Path) -> list[str]:
    out = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith("mixsampler "):
                out.append(line)
    return out


def test_pages_have_commands() -> None:
    assert len(_commands(README)) >= 7


@pytest.mark.parametrize(
    "command",
    [c for page in COMMAND_PAGES if page.exists() for c in _commands(page)],
)
def test_documented_commands_parse(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = shlex.split(command)[1:]
    parser = cli.build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{command!r} does not parse: {capsys.readouterr().err.strip()} ({exc})")
    assert getattr(args, "func", None) is not None, command
