"""The ``--where`` row filter: a small Python-like condition, checked and evaluated without eval.

Arithmetic is in float64, so no value grows without bound (``10**10**10`` is an error, not a
billion-digit integer); the expression's length, size and depth are bounded, so no input can
hang the parser or exhaust the stack.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from mixsampler.laws.schema import bad_input

if TYPE_CHECKING:
    from mixsampler.laws.runtable.table import RunTable

__all__ = ["MAX_DEPTH", "MAX_LENGTH", "MAX_NODES", "parse_where"]

# Far above any real filter ("model_size < 2e9 and not startswith(run, 'x')" is 9 nodes deep
# 3), far below what would strain the parser or Python's stack.
MAX_LENGTH = 2000
MAX_NODES = 400
MAX_DEPTH = 32

_CMP: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}
_BIN: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.divide,
    ast.Pow: np.power,
    ast.Mod: np.mod,
}
# name -> (function, number of arguments)
_FUNCS: dict[str, tuple[Callable[..., Any], int]] = {
    "abs": (np.abs, 1),
    "log": (np.log, 1),
    "log10": (np.log10, 1),
    "exp": (np.exp, 1),
    "isnan": (np.isnan, 1),
    # String columns (``run``): startswith(run, "train-").
    "startswith": (lambda x, prefix: np.array([str(v).startswith(prefix) for v in x]), 2),
}
_ALLOWED = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.UAdd,
    ast.Compare,
    ast.BinOp,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Call,
    *_CMP,
    *_BIN,
)
_FLOAT_MAX = np.finfo(np.float64).max


def parse_where(expr: str) -> Callable[[RunTable], np.ndarray]:
    """Compile a row filter into a function ``table -> bool mask``, without ``eval``.

    The grammar is a Python expression restricted to column names, numbers, strings,
    comparisons (``< <= > >= == !=``, chained too), ``and``/``or``/``not``, arithmetic
    (``+ - * / ** %``, in float64) and the functions ``abs log log10 exp isnan startswith``.
    It must be a condition (a comparison or a boolean combination of them).

    Raises:
        FormatError: (a ValueError) naming ``--where``, the expression and what is wrong.

    Example:
        >>> mask_of = parse_where("model_size < 2e9 and not startswith(run, 'test-')")
    """
    tree = _parse(expr)
    _check(tree, expr)

    def run(table: RunTable) -> np.ndarray:
        with np.errstate(all="ignore"):
            try:
                out = _Eval(table, expr).ev(tree.body)
            except (TypeError, ValueError) as err:
                if type(err).__name__ == "FormatError":
                    raise
                raise _bad(expr, f"cannot evaluate it ({err})") from None
        if not (isinstance(out, np.ndarray) and out.dtype == bool) and not isinstance(
            out, (bool, np.bool_)
        ):
            raise _bad(expr, "must be a condition such as model_size < 2e9, not a value")
        return np.array(np.broadcast_to(out, (len(table),)))

    return run


def _bad(expr: str, problem: str) -> ValueError:
    return bad_input("--where", problem, value=expr)


def _parse(expr: str) -> ast.Expression:
    if not isinstance(expr, str) or not expr.strip():
        raise bad_input("--where", "must be a non-empty expression", value=expr)
    if len(expr) > MAX_LENGTH:
        raise _bad(expr, f"is {len(expr)} characters long, more than {MAX_LENGTH}")
    try:
        return ast.parse(expr.strip(), mode="eval")
    except SyntaxError as err:
        raise _bad(expr, f"not a valid expression ({err.msg})") from None
    except (ValueError, RecursionError, MemoryError) as err:
        raise _bad(expr, f"not a valid expression ({type(err).__name__})") from None


def _check(tree: ast.Expression, expr: str) -> None:
    """Allowed nodes only, within MAX_NODES and MAX_DEPTH; walked without recursion."""
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    n = 0
    while stack:
        node, depth = stack.pop()
        n += 1
        if n > MAX_NODES:
            raise _bad(expr, f"has more than {MAX_NODES} parts")
        if depth > MAX_DEPTH:
            raise _bad(expr, f"is nested more than {MAX_DEPTH} deep")
        if not isinstance(node, _ALLOWED):
            raise _bad(expr, f"{type(node).__name__} is not allowed")
        if isinstance(node, ast.Constant):
            _constant(node.value, expr)
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS:
                raise _bad(expr, f"only the functions {', '.join(sorted(_FUNCS))} are allowed")
            _, arity = _FUNCS[node.func.id]
            if node.keywords or len(node.args) != arity:
                raise _bad(expr, f"{node.func.id} takes {arity} positional argument(s)")
            if node.func.id == "startswith" and not (
                isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
            ):
                raise _bad(expr, "startswith's second argument must be a string")
            stack.extend((a, depth + 1) for a in node.args)
            continue
        stack.extend((c, depth + 1) for c in ast.iter_child_nodes(node))


def _constant(value: Any, expr: str) -> float | str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(expr, f"constant {value!r} is not allowed")
    try:
        x = float(value)
    except OverflowError:
        raise _bad(expr, "an integer constant is beyond the float range (about 1.8e308)") from None
    if not math.isfinite(x):
        raise _bad(expr, f"constant {value!r} is beyond the float range")
    return x


class _Eval:
    """Evaluate a checked tree over a table's columns, vectorized."""

    def __init__(self, table: RunTable, expr: str) -> None:
        self.table = table
        self.expr = expr

    def number(self, v: Any, what: str) -> Any:
        if isinstance(v, str) or (isinstance(v, np.ndarray) and v.dtype == object):
            raise _bad(self.expr, f"{what} needs numbers, not text")
        return v

    def ev(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return _constant(node.value, self.expr)
        if isinstance(node, ast.Name):
            try:
                return self.table.column(node.id)
            except ValueError as err:
                raise _bad(self.expr, str(err)) from None
        if isinstance(node, ast.BoolOp):
            op = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            vals = [np.asarray(self.ev(v), dtype=bool) for v in node.values]
            out = vals[0]
            for v in vals[1:]:
                out = op(out, v)
            return out
        if isinstance(node, ast.UnaryOp):
            v = self.ev(node.operand)
            if isinstance(node.op, ast.Not):
                return np.logical_not(np.asarray(v, dtype=bool))
            v = self.number(v, "unary minus")
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp):
            left = self.number(self.ev(node.left), "arithmetic")
            right = self.number(self.ev(node.right), "arithmetic")
            out = _BIN[type(node.op)](_floats(left), _floats(right))
            if np.ndim(out) == 0 and not np.isfinite(out):
                # Constants only: a user typo such as 10**10**10, never a row's value.
                raise _bad(self.expr, "a constant part evaluates to a non-finite number")
            return out
        if isinstance(node, ast.Compare):
            left = self.ev(node.left)
            out = np.ones(len(self.table), dtype=bool)
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = self.ev(comp)
                out &= np.asarray(_CMP[type(op)](left, right), dtype=bool)
                left = right
            return out
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)
            fn, _ = _FUNCS[node.func.id]
            args = [self.ev(a) for a in node.args]
            if node.func.id != "startswith":
                args = [_floats(self.number(a, node.func.id)) for a in args]
            return fn(*args)
        raise _bad(self.expr, f"{type(node).__name__} is not allowed")


def _floats(v: Any) -> Any:
    return np.asarray(v, dtype=np.float64) if isinstance(v, np.ndarray) else np.float64(v)
