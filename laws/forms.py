"""The functional forms: each law's parameters, its value, and analytic derivatives.

Every form maps (N, D, h) to a predicted loss, vectorized over rows. It also gives the Jacobian
with respect to its parameters (for fitting) and the gradient with respect to h (for the
optimal-weights search). N and D enter through ``log(N / N_SCALE)`` and ``log(D / D_SCALE)``:
with N in billions and D in billions of tokens the fitted A and B stay near 1 whatever the
table's scale, which keeps L-BFGS well conditioned. Predictions do not depend on the choice.

Each law is defined once, in :mod:`mixsampler.laws.law_defs` (its terms, blocks, priors, bounds,
mixture groups and warm start); this module lays out its parameter vector and evaluates it.

When N (or D) is constant over the fitting rows its term cannot be told apart from E, so the
fixed-scale variant drops it (paper App. B): ``Form(law, domains, use_n=False)``.

Example:
    >>> form = Form("additive", ("a", "b"))
    >>> form.names
    ['E', 'C_a', 'C_b', 'gamma_a', 'gamma_b', 'A', 'alpha', 'B', 'beta']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mixsampler.laws.law_defs import LAWS, Law, get_law
from mixsampler.laws.law_terms import Block, Inputs

__all__ = ["LAWS", "N_SCALE", "D_SCALE", "FREE_BOUND", "Form", "uses_scale"]

N_SCALE = 1e9
D_SCALE = 1e9
# Free (signed) parameters stay inside +-FREE_BOUND.
FREE_BOUND = 200.0


def uses_scale(law: str) -> tuple[bool, bool]:
    """Whether ``law`` has an N term and a D term at all."""
    d = get_law(law)
    return d.uses_n, d.uses_d


@dataclass(frozen=True)
class Form:
    """One law's parameter layout and evaluation, read from its definition in
    :mod:`mixsampler.laws.law_defs`.

    Args:
        law: one of :data:`LAWS`.
        domains: the training domains, in the order of the weight columns.
        use_n: keep the N term (False: fixed-N variant).
        use_d: keep the D term (False: fixed-D variant).
        target_domain: the training domain that is the target (``bimix`` only).

    Example:
        With E = 1, A = 0.2, alpha = 0.3, B = 0.5, beta = 0.3 and N = D = 1e9 (one unit of
        :data:`N_SCALE` and :data:`D_SCALE`, so both power terms are 1), the loss is
        E + A + B = 1.7:

        >>> f = Form("chinchilla", ("a",))
        >>> f.names
        ['E', 'A', 'alpha', 'B', 'beta']
        >>> f.predict(np.array([1.0, 0.2, 0.3, 0.5, 0.3]), [1e9], [1e9], [[1.0]])
        array([1.7])
    """

    law: str
    domains: tuple[str, ...]
    use_n: bool = True
    use_d: bool = True
    target_domain: str | None = None

    def __post_init__(self) -> None:
        definition = get_law(self.law)
        if not self.domains:
            raise ValueError("domains must name at least one training domain, got none")
        object.__setattr__(self, "domains", tuple(self.domains))
        object.__setattr__(self, "use_n", bool(self.use_n and definition.uses_n))
        object.__setattr__(self, "use_d", bool(self.use_d and definition.uses_d))
        target = None
        if definition.needs_target:
            if self.target_domain not in self.domains:
                raise ValueError(
                    f"law {self.law} needs a target that is a training domain "
                    f"({', '.join(self.domains)}), got {self.target_domain!r}"
                )
            target = self.domains.index(self.target_domain)  # type: ignore[arg-type]
        terms = definition.active_terms(self.use_n, self.use_d)
        blocks = tuple(b for t in terms for b in t.blocks)
        names: list[str] = []
        for b in blocks:
            names += [f"{b.name}_{d}" for d in self.domains] if b.per_domain else [b.name]
        sizes = [self.k if b.per_domain else 1 for b in blocks]
        # Derived once: evaluate() runs thousands of times per fit.
        object.__setattr__(self, "_definition", definition)
        object.__setattr__(self, "_terms", terms)
        object.__setattr__(self, "_blocks", blocks)
        object.__setattr__(self, "_names", tuple(names))
        object.__setattr__(self, "_sizes", tuple(sizes))
        object.__setattr__(self, "_target", target)
        pos = np.repeat([b.positive for b in blocks], sizes).astype(bool)
        pos.setflags(write=False)
        object.__setattr__(self, "_positive", pos)

    @property
    def definition(self) -> Law:
        """The law's one definition (terms, blocks, warm start)."""
        return self._definition  # type: ignore[attr-defined,no-any-return]

    @property
    def k(self) -> int:
        return len(self.domains)

    @property
    def blocks(self) -> list[Block]:
        """The parameter blocks of this variant, in parameter order."""
        return list(self._blocks)  # type: ignore[attr-defined]

    @property
    def block_sizes(self) -> list[int]:
        return list(self._sizes)  # type: ignore[attr-defined]

    @property
    def names(self) -> list[str]:
        """Parameter names, e.g. ``C_arxiv``; the order of every parameter vector."""
        return list(self._names)  # type: ignore[attr-defined]

    @property
    def positive(self) -> np.ndarray:
        """Which parameters are positive (fitted in log space)."""
        return self._positive  # type: ignore[attr-defined,no-any-return]

    @property
    def n_params(self) -> int:
        return len(self._names)  # type: ignore[attr-defined]

    def per_param(self) -> list[Block]:
        """The block of each parameter, in parameter order."""
        return [b for b, n in zip(self._blocks, self._sizes, strict=True) for _ in range(n)]  # type: ignore[attr-defined]

    def scales(self) -> list[str | None]:
        """The scale (``"N"``, ``"D"`` or None) of the term each parameter belongs to."""
        out: list[str | None] = []
        for t in self._terms:  # type: ignore[attr-defined]
            out += [t.scale] * sum(self.k if b.per_domain else 1 for b in t.blocks)
        return out

    def groups(self) -> dict[str, list[str]]:
        """Mixture group -> its parameter names (parameters only distinct mixtures identify)."""
        out: dict[str, list[str]] = {}
        for name, b in zip(self._names, self.per_param(), strict=True):  # type: ignore[attr-defined]
            if b.group is not None:
                out.setdefault(b.group, []).append(name)
        return out

    def bounds(self, y: np.ndarray | None = None) -> list[tuple[float, float]]:
        """Bounds of each parameter in fitting space (log for positive ones).

        Args:
            y: the observed losses; E's upper bound is their maximum (default 1e3).
        """
        out: list[tuple[float, float]] = []
        for b, n in zip(self._blocks, self._sizes, strict=True):  # type: ignore[attr-defined]
            if not b.positive:
                lo, hi = -FREE_BOUND, FREE_BOUND
            else:
                top = (
                    (float(np.max(y)) if y is not None and len(y) else 1e3)
                    if (b.hi_is_max_loss)
                    else b.hi
                )
                lo, hi = float(np.log(b.lo)), float(np.log(top))
            out += [(lo, hi)] * n
        return out

    def split(self, p: np.ndarray) -> dict[str, np.ndarray | float]:
        """Cut a parameter vector into its blocks (arrays for per-domain ones)."""
        p = np.asarray(p, dtype=float)
        if p.shape != (self.n_params,):
            raise ValueError(
                f"p must have shape ({self.n_params},) (the {self.law} law's parameters), "
                f"got shape {p.shape}"
            )
        out: dict[str, np.ndarray | float] = {}
        i = 0
        for b, n in zip(self._blocks, self._sizes, strict=True):  # type: ignore[attr-defined]
            out[b.name] = p[i : i + n] if b.per_domain else float(p[i])
            i += n
        return out

    @staticmethod
    def inputs(
        model_size: np.ndarray | float, n_tokens: np.ndarray | float, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcast (N, D, h) to rows: (log N/N_SCALE, log D/D_SCALE, h of shape (n, k))."""
        h = np.asarray(weights, dtype=float)
        n = np.asarray(model_size, dtype=float)
        d = np.asarray(n_tokens, dtype=float)
        shape = np.broadcast_shapes(n.shape, d.shape, h.shape[:-1])
        ln = np.log(np.broadcast_to(n, shape) / N_SCALE).reshape(-1)
        ld = np.log(np.broadcast_to(d, shape) / D_SCALE).reshape(-1)
        hh = np.broadcast_to(h, (*shape, h.shape[-1])).reshape(-1, h.shape[-1])
        return ln, ld, hh

    def evaluate(
        self,
        p: np.ndarray,
        ln: np.ndarray,
        ld: np.ndarray,
        h: np.ndarray,
        *,
        jac: bool = False,
        grad_h: bool = False,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Predicted loss per row; optionally d/dparams (n, P) and d/dh (n, k).

        Args:
            p: natural (not log) parameters, in :attr:`names` order.
            ln: log(N / N_SCALE) per row.
            ld: log(D / D_SCALE) per row.
            h: weights, shape (n, k).
            jac: also return the Jacobian with respect to ``p``.
            grad_h: also return the gradient with respect to ``h``.
        """
        b = self.split(p)
        x = Inputs(ln, ld, h, self._target)  # type: ignore[attr-defined]
        pred = np.zeros(h.shape[0])
        dh = np.zeros_like(h) if grad_h else None
        cols: dict[str, np.ndarray] = {}
        for term in self._terms:  # type: ignore[attr-defined]
            v = term.fn(b, x, jac, grad_h)
            pred += v.value
            cols.update(v.jac)
            if grad_h and v.dh is not None:
                dh += v.dh
        jmat = np.concatenate([cols[bl.name] for bl in self._blocks], axis=1) if jac else None  # type: ignore[attr-defined]
        return pred, jmat, dh

    def predict(
        self,
        p: np.ndarray,
        model_size: np.ndarray | float | Sequence[float],
        n_tokens: np.ndarray | float | Sequence[float],
        weights: np.ndarray | Sequence[Sequence[float]],
    ) -> np.ndarray:
        """Predicted loss with (N, D, h) broadcast against each other; shape = batch shape."""
        h = np.asarray(weights, dtype=float)
        if h.shape[-1] != self.k:
            raise ValueError(
                f"weights must have {self.k} columns ({', '.join(self.domains)}), "
                f"got shape {h.shape}"
            )
        n = np.asarray(model_size, dtype=float)
        d = np.asarray(n_tokens, dtype=float)
        shape = np.broadcast_shapes(n.shape, d.shape, h.shape[:-1])
        ln, ld, hh = self.inputs(n, d, h)
        pred, _, _ = self.evaluate(np.asarray(p, dtype=float), ln, ld, hh)
        return pred.reshape(shape)
