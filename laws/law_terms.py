"""The building blocks of every law: parameter blocks and the additive terms made of them.

A law (see :mod:`laws.law_defs`) is a sum of :class:`Term`s. A term owns its parameter
:class:`Block`s, each of which carries everything the rest of the package needs to know about
it: per domain or scalar, positive (fitted in log space) or free, the prior of the random
search, the bounds of the local search, and which *mixture group* it belongs to (the map from
the weights h to one term: parameters only distinct mixtures identify). A term also gives its
value, its Jacobian per block, and its gradient in h, vectorized over rows.

Example:
    >>> t = power_term("N")
    >>> [b.name for b in t.blocks], t.scale
    (['A', 'alpha'], 'N')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["Block", "Inputs", "Prior", "Term", "TermValue"]

Params = Mapping[str, "np.ndarray | float"]


@dataclass(frozen=True)
class Prior:
    """Where the random search draws a block's starting values (in fitting space).

    Attributes:
        kind: ``log_uniform`` (lo, hi natural), ``normal`` (lo = mean, hi = sd, free
            parameters), ``below_min_loss`` (a fraction in [lo, hi] of the lowest observed
            loss: the irreducible loss sits below every loss) or ``around_loss`` (normal around
            the mean loss, for intercept-like free coefficients).
    """

    kind: str
    lo: float = 0.0
    hi: float = 1.0

    def draw(self, rng: np.random.Generator, m: int, size: int, y: np.ndarray) -> np.ndarray:
        if self.kind == "log_uniform":
            return rng.uniform(np.log(self.lo), np.log(self.hi), (m, size))
        if self.kind == "normal":
            return rng.normal(self.lo, self.hi, (m, size))
        if self.kind == "below_min_loss":
            return np.log(rng.uniform(self.lo, self.hi, (m, size)) * float(np.min(y)))
        if self.kind == "around_loss":
            return rng.normal(float(np.mean(y)), float(np.std(y)) + 0.1, (m, size))
        raise ValueError(f"prior kind {self.kind!r} is not one of log_uniform, normal, ...")


@dataclass(frozen=True)
class Block:
    """One named group of parameters (``C`` -> ``C_arxiv``, ``C_book``, ...).

    Attributes:
        name: the block's name; per-domain parameters are ``{name}_{domain}``.
        per_domain: one value per training domain (else one scalar).
        positive: fitted in log space (else free, bounded by +-``FREE_BOUND``).
        prior: the random search's distribution.
        lo: lower bound (natural scale). The bounds exclude degenerate plateaus a local search
            otherwise slides into (C_i -> 1e10 with gamma_i -> 0 turns a domain's term into a
            constant that E absorbs).
        hi: upper bound (natural scale); ignored when ``hi_is_max_loss``.
        hi_is_max_loss: the upper bound is the largest observed loss (E).
        group: the mixture group: the parameters of one map from h to a term, which only
            distinct mixtures identify (None: identified by N or D, or a constant).
    """

    name: str
    per_domain: bool
    prior: Prior
    positive: bool = True
    lo: float = 1e-6
    hi: float = 1e6
    hi_is_max_loss: bool = False
    group: str | None = None


@dataclass(frozen=True)
class Inputs:
    """Rows a law is evaluated on: log(N / N_SCALE), log(D / D_SCALE), h (n, k), target index."""

    ln: np.ndarray
    ld: np.ndarray
    h: np.ndarray
    target: int | None = None


@dataclass
class TermValue:
    """A term's value per row, its Jacobian columns by block name, its gradient in h.

    ``dh`` is None when the term does not depend on h (or was not asked for).
    """

    value: np.ndarray
    jac: dict[str, np.ndarray]
    dh: np.ndarray | None


TermFn = Callable[[Params, Inputs, bool, bool], TermValue]


@dataclass(frozen=True)
class Term:
    """One additive term of a law: its blocks, the scale it needs, and its evaluation.

    Attributes:
        blocks: its parameter blocks, in the order of the parameter vector.
        fn: ``fn(params, inputs, want_jac, want_h) -> TermValue``.
        scale: ``"N"`` or ``"D"`` when the term models that scale (dropped by the fixed-N or
            fixed-D variant), else None.
    """

    blocks: tuple[Block, ...]
    fn: TermFn
    scale: str | None = None


# ---------------------------------------------------------------------------------------------
# Priors and blocks shared by several laws.
COEF = Prior("log_uniform", 0.01, 20.0)
EXPONENT = Prior("log_uniform", 0.05, 3.0)
SCALE_EXPONENT = Prior("log_uniform", 0.05, 1.5)


def e_block(group: str | None) -> Block:
    return Block(
        "E", False, Prior("below_min_loss", 0.05, 0.95), lo=1e-4, hi_is_max_loss=True, group=group
    )


def _col(a: np.ndarray) -> np.ndarray:
    return a if a.ndim == 2 else a[:, None]


def constant_term(group: str | None = "mix") -> Term:
    """E: the irreducible loss."""

    def fn(b: Params, x: Inputs, jac: bool, grad_h: bool) -> TermValue:
        n = x.h.shape[0]
        return TermValue(np.full(n, float(b["E"])), {"E": np.ones((n, 1))} if jac else {}, None)

    return Term((e_block(group),), fn)


def mix_inverse_term() -> Term:
    """1 / sum_i C_i h_i^gamma_i (paper eq. 2.4); a zero weight contributes 0."""
    blocks = (
        Block("C", True, COEF, group="mix"),
        Block("gamma", True, EXPONENT, lo=1e-3, hi=30.0, group="mix"),
    )

    def fn(b: Params, x: Inputs, jac: bool, grad_h: bool) -> TermValue:
        h, c, g = x.h, b["C"], b["gamma"]
        pos = h > 0
        lh = np.log(np.where(pos, h, 1.0))
        hg = np.where(pos, np.exp(g * lh), 0.0)
        m = 1.0 / (hg @ c)
        cols: dict[str, np.ndarray] = {}
        if jac:
            f = -(m * m)[:, None]
            cols = {"C": f * hg, "gamma": f * (c * hg * lh)}
        dh = None
        if grad_h:
            # h -> 0 with gamma < 1 has an infinite slope; a floor keeps mirror descent finite.
            hf = np.maximum(h, 1e-12)
            dh = -(m * m)[:, None] * (c * g * np.exp((g - 1.0) * np.log(hf)))
        return TermValue(m, cols, dh)

    return Term(blocks, fn)


def power_of_linear(
    h: np.ndarray, c: np.ndarray, g: float, want_jac: bool, want_h: bool
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray | None]:
    """P = (sum_i c_i h_i)^g with its derivatives in (c, g) and in h."""
    u = h @ c
    lu = np.log(u)
    p = np.exp(g * lu)
    dpu = g * p / u
    jac = [dpu[:, None] * h, (p * lu)[:, None]] if want_jac else []
    dh = dpu[:, None] * c if want_h else None
    return p, jac, dh


def simple_mix_term() -> Term:
    """(sum_i C_i h_i)^(-gamma) (paper sec. 6.1)."""
    blocks = (
        Block("C", True, COEF, group="mix"),
        Block("gamma", False, EXPONENT, lo=1e-3, hi=30.0, group="mix"),
    )

    def fn(b: Params, x: Inputs, jac: bool, grad_h: bool) -> TermValue:
        u = x.h @ b["C"]
        g = float(b["gamma"])
        m = np.exp(-g * np.log(u))
        cols = {"C": (-g * m / u)[:, None] * x.h, "gamma": _col(-m * np.log(u))} if jac else {}
        dh = (-g * m / u)[:, None] * b["C"] if grad_h else None
        return TermValue(m, cols, dh)

    return Term(blocks, fn)


_SCALE_NAMES = {
    "N": ("A", "alpha", "CA", "gammaA", "Calpha", "gamma_alpha"),
    "D": ("B", "beta", "CB", "gammaB", "Cbeta", "gamma_beta"),
}


def _lx(x: Inputs, scale: str) -> np.ndarray:
    return x.ln if scale == "N" else x.ld


def power_term(scale: str) -> Term:
    """A / N^alpha (or B / D^beta): Chinchilla's scale term."""
    a, e = _SCALE_NAMES[scale][:2]
    blocks = (Block(a, False, COEF), Block(e, False, SCALE_EXPONENT, lo=1e-3, hi=3.0))

    def fn(b: Params, x: Inputs, jac: bool, grad_h: bool) -> TermValue:
        lx = _lx(x, scale)
        t = b[a] * np.exp(-b[e] * lx)
        cols = {a: _col(t / b[a]), e: _col(-lx * t)} if jac else {}
        return TermValue(t, cols, None)

    return Term(blocks, fn, scale)


# Large exponents are legitimate: (sum_i CA_i h_i)^gammaA with CA_i near 1 and gammaA -> inf
# tends to exp(sum_i a_i h_i), which some targets prefer (wikipedia).
def _linear_power_blocks(
    c: str, g: str, group: str, c_prior: Prior = COEF, c_lo: float = 1e-6, c_hi: float = 1e6
) -> tuple[Block, Block]:
    return (
        Block(c, True, c_prior, lo=c_lo, hi=c_hi, group=group),
        Block(g, False, EXPONENT, lo=1e-2, hi=1e4, group=group),
    )


def joint_power_term(scale: str) -> Term:
    """(sum_i CA_i h_i)^gammaA / N^alpha (paper eq. 2.5), or its D counterpart."""
    _, e, c, g = _SCALE_NAMES[scale][:4]
    blocks = (*_linear_power_blocks(c, g, c), Block(e, False, SCALE_EXPONENT, lo=1e-3, hi=3.0))

    def fn(b: Params, x: Inputs, jac: bool, grad_h: bool) -> TermValue:
        lx = _lx(x, scale)
        pa, jpa, dpa = power_of_linear(x.h, b[c], b[g], jac, grad_h)
        s = np.exp(-b[e] * lx)
        t = pa * s
        cols = {c: s[:, None] * jpa[0], g: s[:, None] * jpa[1], e: _col(-lx * t)} if jac else {}
        return TermValue(t, cols, s[:, None] * dpa if grad_h else None)

    return Term(blocks, fn, scale)


def full_power_term(scale: str) -> Term:
    """(sum_i CA_i h_i)^gammaA / N^alpha_h, alpha_h = (sum_i Calpha_i h_i)^gamma_alpha."""
    _, _, c, g, ce, ge = _SCALE_NAMES[scale]
    blocks = (
        *_linear_power_blocks(c, g, c),
        *_linear_power_blocks(ce, ge, ce, SCALE_EXPONENT, 1e-4, 10.0),
    )

    def fn(b: Params, x: Inputs, jac: bool, grad_h: bool) -> TermValue:
        lx = _lx(x, scale)
        pa, jpa, dpa = power_of_linear(x.h, b[c], b[g], jac, grad_h)
        ex, jex, dex = power_of_linear(x.h, b[ce], b[ge], jac, grad_h)
        s = np.exp(-ex * lx)
        t = pa * s
        cols: dict[str, np.ndarray] = {}
        if jac:
            f = (-lx * t)[:, None]
            cols = {c: s[:, None] * jpa[0], g: s[:, None] * jpa[1], ce: f * jex[0], ge: f * jex[1]}
        dh = s[:, None] * dpa + (-lx * t)[:, None] * dex if grad_h else None
        return TermValue(t, cols, dh)

    return Term(blocks, fn, scale)


G_FREE = Prior("normal", 0.0, 2.0)


def ye_term(variant: str) -> Term:
    """Ye et al.'s mixing laws without E: M1 sum_i C_i exp(g_i h_i), M2 C sum_i exp(g_i h_i),
    M4 C exp(sum_i g_i h_i); g_i of either sign."""
    per_c = variant == "m1"
    blocks = (
        Block("C", per_c, COEF, group="mix"),
        Block("g", True, G_FREE, positive=False, group="mix"),
    )

    def fn(b: Params, x: Inputs, jac: bool, grad_h: bool) -> TermValue:
        h, c, g = x.h, b["C"], b["g"]
        if variant == "m4":
            e = np.exp(h @ g)
            cols = {"C": _col(e), "g": (c * e)[:, None] * h} if jac else {}
            return TermValue(c * e, cols, (c * e)[:, None] * g if grad_h else None)
        e = np.exp(g * h)
        if variant == "m1":
            cols = {"C": e, "g": c * h * e} if jac else {}
            return TermValue(e @ c, cols, c * g * e if grad_h else None)
        s = e.sum(axis=1)
        cols = {"C": _col(s), "g": c * h * e} if jac else {}
        return TermValue(c * s, cols, c * g * e if grad_h else None)

    return Term(blocks, fn)


def linear_term() -> Term:
    """sum_i C_i h_i (RegMix's linear model; its intercept is absorbed since sum_i h_i = 1)."""
    blocks = (Block("C", True, Prior("around_loss"), positive=False, group="mix"),)

    def fn(b: Params, x: Inputs, jac: bool, grad_h: bool) -> TermValue:
        dh = np.broadcast_to(b["C"], x.h.shape).copy() if grad_h else None
        return TermValue(x.h @ b["C"], {"C": x.h} if jac else {}, dh)

    return Term(blocks, fn)


def own_weight_term() -> Term:
    """C / h_t^gamma, h_t the target's own training weight (BiMix)."""
    blocks = (
        Block("C", False, COEF, group="mix"),
        Block("gamma", False, EXPONENT, lo=1e-3, hi=30.0, group="mix"),
    )

    def fn(b: Params, x: Inputs, jac: bool, grad_h: bool) -> TermValue:
        assert x.target is not None
        ht = x.h[:, x.target]
        with np.errstate(divide="ignore"):
            lt = np.log(ht)
        v = b["C"] * np.exp(-b["gamma"] * lt)
        cols = {"C": _col(v / b["C"]), "gamma": _col(-v * lt)} if jac else {}
        dh = None
        if grad_h:
            dh = np.zeros_like(x.h)
            dh[:, x.target] = -b["gamma"] * v / np.maximum(ht, 1e-12)
        return TermValue(v, cols, dh)

    return Term(blocks, fn)
