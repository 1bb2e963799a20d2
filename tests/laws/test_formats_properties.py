"""Property tests: any run table or LAW.json, valid or mutated, either loads and round-trips
(load -> write -> load gives the same) or fails with a ValueError naming the file.

No other outcome is allowed: a traceback of another type, a hang, or a file that loads but
reads back differently is a bug.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixsampler.laws import FittedLaw, load_laws, load_runs, save_laws
from mixsampler.laws.forms import LAWS, Form
from mixsampler.laws.runtable import RunTable
from mixsampler.laws.runtable_writer import write_runs
from mixsampler.laws.schema import loss_column, weight_column

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
NAMES = st.sampled_from(["a", "b", "c4", "arxiv", "x y"])
POSITIVE = st.floats(1e-3, 1e12, allow_nan=False, allow_infinity=False)


@st.composite
def run_tables(draw: st.DrawFn) -> str:
    """A valid run table as CSV text."""
    domains = draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))
    targets = draw(st.lists(NAMES, min_size=0, max_size=2, unique=True))
    with_run = draw(st.booleans())
    cols = (["run"] if with_run else []) + ["model_size", "n_tokens"]
    cols += [weight_column(d) for d in domains] + [loss_column(t) for t in targets]
    lines = [",".join(f'"{c}"' if " " in c else c for c in cols)]
    for i in range(draw(st.integers(1, 4))):
        raw = draw(st.lists(st.floats(0.01, 10), min_size=len(domains), max_size=len(domains)))
        w = np.array(raw) / sum(raw)
        cells = ([f"r{i % 2}"] if with_run else []) + [repr(draw(POSITIVE)), repr(draw(POSITIVE))]
        cells += [repr(float(x)) for x in w]
        cells += [draw(st.one_of(st.just(""), st.floats(0, 20).map(repr))) for _ in targets]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[str]) -> str:
    """A valid text with one edit: a slice replaced by random text, or a line changed."""
    text = draw(valid)
    kind = draw(st.sampled_from(["slice", "cell", "line", "none"]))
    if kind == "none":
        return text
    if kind == "slice":
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 8)))
        junk = draw(st.text(st.sampled_from(',"\n-.e0123456789naNinf: x'), max_size=6))
        return text[:i] + junk + text[j:]
    lines = text.splitlines()
    k = draw(st.integers(0, len(lines) - 1))
    cells = lines[k].split(",")
    if kind == "cell":
        c = draw(st.integers(0, len(cells) - 1))
        cells[c] = draw(st.sampled_from(["-1", "nan", "inf", "", "1e400", "abc", "0", "2"]))
    else:
        cells.insert(draw(st.integers(0, len(cells))), draw(st.sampled_from(["1", "", "a_loss"])))
    lines[k] = ",".join(cells)
    return "\n".join(lines) + "\n"


def _same(a: RunTable, b: RunTable) -> None:
    assert a.domains == b.domains and a.targets == b.targets and a.columns == b.columns
    np.testing.assert_array_equal(a.model_size, b.model_size)
    np.testing.assert_array_equal(a.n_tokens, b.n_tokens)
    np.testing.assert_array_equal(a.weights, b.weights)
    for t in a.targets:
        np.testing.assert_array_equal(a.losses[t], b.losses[t])
    assert list(a.run_ids) == list(b.run_ids)


@SETTINGS
@given(text=mutated(run_tables()))
def test_run_tables_load_and_round_trip_or_fail_cleanly(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "runs.csv"
        path.write_text(text, encoding="utf-8")
        try:
            table = load_runs(path)
        except ValueError as err:
            assert "runs.csv" in str(err) and "\n" not in str(err), str(err)
            return
        again = load_runs(write_runs(Path(d) / "again.csv", table))
        _same(table, again)
        # Every value that loaded obeys the rules a law relies on.
        assert (table.model_size > 0).all() and (table.n_tokens > 0).all()
        assert np.allclose(table.weights.sum(axis=1), 1, atol=1e-6)
        for v in table.losses.values():
            assert np.all(np.isnan(v) | ((v >= 0) & np.isfinite(v)))


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2)
    ),
    max_leaves=4,
)


@st.composite
def law_docs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid LAW.json document over 1-3 targets."""
    domains = tuple(
        draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3, unique=True))
    )
    laws = {}
    for t in draw(st.lists(st.sampled_from(["a", "b", "z"]), min_size=1, max_size=3, unique=True)):
        law = draw(st.sampled_from([x for x in LAWS if x != "bimix" or t in domains]))
        form = Form(law, domains, True, True, t if law == "bimix" else None)
        params = {
            n: draw(st.floats(0.01, 5) if pos else st.floats(-5, 5))
            for n, pos in zip(form.names, form.positive, strict=True)
        }
        laws[t] = FittedLaw(law, domains, t, params, fit={"seed": draw(st.integers(0, 9))})
    return {
        "format": "mixsampler-laws",
        "version": 1,
        "laws": {t: law.to_dict() for t, law in laws.items()},
    }


def _paths(obj: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*at, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*at, i))
    return out


@st.composite
def mutated_law_docs(draw: st.DrawFn) -> str:
    doc = draw(law_docs())
    kind = draw(st.sampled_from(["replace", "delete", "text", "none"]))
    if kind == "text":
        text = json.dumps(doc)
        i = draw(st.integers(0, len(text)))
        junk = draw(st.sampled_from(["NaN", "-", '"', "}", "1e999", "true", ",", "0"]))
        return text[:i] + junk + text[i + draw(st.integers(0, 3)) :]
    if kind != "none":
        # Deepest fields first: hypothesis favours the first choice, which would otherwise
        # be "format" (and every such file fails the same way).
        paths = sorted(_paths(doc)[1:], key=len, reverse=True)
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if kind == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON_VALUES)
    return json.dumps(doc)


@SETTINGS
@given(text=mutated_law_docs())
def test_law_files_load_and_round_trip_or_fail_cleanly(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "LAW.json"
        path.write_text(text, encoding="utf-8")
        try:
            fitted = load_laws(path)
        except ValueError as err:
            assert "LAW.json" in str(err) and "\n" not in str(err), str(err)
            return
        p2 = save_laws(Path(d) / "again.json", fitted)
        back = load_laws(p2)
        assert {t: x.to_dict() for t, x in back.items()} == {
            t: x.to_dict() for t, x in fitted.items()
        }
        assert save_laws(Path(d) / "third.json", back).read_bytes() == p2.read_bytes()
        for law in fitted.values():
            assert all(math.isfinite(v) for v in law.params.values())
            assert isinstance(law.use_n, bool) and isinstance(law.use_d, bool)
