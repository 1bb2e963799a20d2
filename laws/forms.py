"""The functional forms: each law's parameters, its value, and analytic derivatives.

Every form maps (N, D, h) to a predicted loss, vectorized over rows. It also gives the Jacobian
with respect to its parameters (for fitting) and the gradient with respect to h (for the
optimal-weights search). N and D enter through ``log(N / N_SCALE)`` and ``log(D / D_SCALE)``:
with N in billions and D in billions of tokens the fitted A and B stay near 1 whatever the
table's scale, which keeps L-BFGS well conditioned. Predictions do not depend on the choice.

Laws (k training domains, all C, A, B and exponents positive):

- ``chinchilla``: E + A/N^alpha + B/D^beta
- ``additive`` (paper eq. 2.4): E + 1/(sum_i C_i h_i^gamma_i) + A/N^alpha + B/D^beta
- ``joint`` (eq. 2.5): E + 1/(sum_i C_i h_i^gamma_i) + A_h/N^alpha + B_h/D^beta with
  A_h = (sum_i CA_i h_i)^gammaA, B_h = (sum_i CB_i h_i)^gammaB
- ``simple`` (sec. 6.1): E + (sum_i C_i h_i)^(-gamma) + A/N^alpha + B/D^beta
- ``full`` (sec. 6.2): joint with alpha_h = (sum_i Calpha_i h_i)^gamma_alpha, beta_h likewise
- ``ye_m1``: E + sum_i C_i exp(g_i h_i); ``ye_m2``: E + C sum_i exp(g_i h_i);
  ``ye_m4``: E + C exp(sum_i g_i h_i) (Ye et al.'s data mixing laws; g_i of either sign)
- ``linear`` (RegMix): sum_i C_i h_i, the intercept E absorbed since sum_i h_i = 1
- ``bimix``: E + C/h_t^gamma + B/D^beta, h_t the target's own weight

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

__all__ = ["LAWS", "N_SCALE", "D_SCALE", "Form", "uses_scale"]

N_SCALE = 1e9
D_SCALE = 1e9

LAWS: tuple[str, ...] = (
    "chinchilla",
    "additive",
    "joint",
    "simple",
    "full",
    "ye_m1",
    "ye_m2",
    "ye_m4",
    "linear",
    "bimix",
)

# Laws without an N or D term: they describe one scale, as the paper's App. B baselines.
_NO_N = frozenset({"ye_m1", "ye_m2", "ye_m4", "linear", "bimix"})
_NO_D = frozenset({"ye_m1", "ye_m2", "ye_m4", "linear"})


def uses_scale(law: str) -> tuple[bool, bool]:
    """Whether ``law`` has an N term and a D term at all."""
    return law not in _NO_N, law not in _NO_D


@dataclass(frozen=True)
class _Block:
    name: str
    per_domain: bool
    positive: bool = True


def _blocks(law: str, use_n: bool, use_d: bool) -> list[_Block]:
    mix = [_Block("C", True), _Block("gamma", True)]
    n_term = [_Block("A", False), _Block("alpha", False)]
    d_term = [_Block("B", False), _Block("beta", False)]
    if law == "chinchilla":
        out = [_Block("E", False)]
    elif law == "additive":
        out = [_Block("E", False), *mix]
    elif law == "simple":
        out = [_Block("E", False), _Block("C", True), _Block("gamma", False)]
    elif law in ("joint", "full"):
        out = [_Block("E", False), *mix]
        n_term = [_Block("CA", True), _Block("gammaA", False)]
        d_term = [_Block("CB", True), _Block("gammaB", False)]
        if law == "joint":
            n_term.append(_Block("alpha", False))
            d_term.append(_Block("beta", False))
        else:
            n_term += [_Block("Calpha", True), _Block("gamma_alpha", False)]
            d_term += [_Block("Cbeta", True), _Block("gamma_beta", False)]
    elif law == "ye_m1":
        return [_Block("E", False), _Block("C", True), _Block("g", True, positive=False)]
    elif law in ("ye_m2", "ye_m4"):
        return [_Block("E", False), _Block("C", False), _Block("g", True, positive=False)]
    elif law == "linear":
        return [_Block("C", True, positive=False)]
    elif law == "bimix":
        out = [_Block("E", False), _Block("C", False), _Block("gamma", False)]
        return out + (d_term if use_d else [])
    else:
        raise ValueError(f"law can be {', '.join(LAWS)}, got {law!r}")
    return out + (n_term if use_n else []) + (d_term if use_d else [])


def _mix_inverse(
    h: np.ndarray, c: np.ndarray, g: np.ndarray, want_jac: bool, want_h: bool
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray | None]:
    """M = 1/sum_i C_i h_i^g_i; a zero weight contributes 0 (its derivative in g too)."""
    pos = h > 0
    hs = np.where(pos, h, 1.0)
    lh = np.log(hs)
    hg = np.where(pos, np.exp(g * lh), 0.0)
    s = hg @ c
    m = 1.0 / s
    jac: list[np.ndarray] = []
    if want_jac:
        f = -(m * m)[:, None]
        jac = [f * hg, f * (c * hg * lh)]
    dh = None
    if want_h:
        # h -> 0 with gamma < 1 has an infinite slope; a floor keeps mirror descent finite.
        hf = np.maximum(h, 1e-12)
        dh = -(m * m)[:, None] * (c * g * np.exp((g - 1.0) * np.log(hf)))
    return m, jac, dh


def _power_of_linear(
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


@dataclass(frozen=True)
class Form:
    """One law's parameter layout and evaluation.

    Args:
        law: one of :data:`LAWS`.
        domains: the training domains, in the order of the weight columns.
        use_n: keep the N term (False: fixed-N variant).
        use_d: keep the D term (False: fixed-D variant).
        target_domain: the training domain that is the target (``bimix`` only).

    Example:
        >>> f = Form("chinchilla", ("a",))
        >>> f.predict(np.array([1.0, 0.2, 0.3, 0.5, 0.3]), [1e9], [1e9], [[1.0]])
        array([2.7])
    """

    law: str
    domains: tuple[str, ...]
    use_n: bool = True
    use_d: bool = True
    target_domain: str | None = None

    def __post_init__(self) -> None:
        if self.law not in LAWS:
            raise ValueError(f"law can be {', '.join(LAWS)}, got {self.law!r}")
        if not self.domains:
            raise ValueError("domains must name at least one training domain, got none")
        has_n, has_d = uses_scale(self.law)
        object.__setattr__(self, "use_n", bool(self.use_n and has_n))
        object.__setattr__(self, "use_d", bool(self.use_d and has_d))
        if self.law == "bimix" and self.target_domain not in self.domains:
            raise ValueError(
                f"law bimix needs a target that is a training domain ({', '.join(self.domains)})"
                f", got {self.target_domain!r}"
            )

    @property
    def k(self) -> int:
        return len(self.domains)

    @property
    def blocks(self) -> list[_Block]:
        return _blocks(self.law, self.use_n, self.use_d)

    @property
    def names(self) -> list[str]:
        """Parameter names, e.g. ``C_arxiv``; the order of every parameter vector."""
        out: list[str] = []
        for b in self.blocks:
            out += [f"{b.name}_{d}" for d in self.domains] if b.per_domain else [b.name]
        return out

    @property
    def positive(self) -> np.ndarray:
        """Which parameters are positive (fitted in log space)."""
        out: list[bool] = []
        for b in self.blocks:
            out += [b.positive] * (self.k if b.per_domain else 1)
        return np.array(out, dtype=bool)

    @property
    def n_params(self) -> int:
        return len(self.names)

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
        for b in self.blocks:
            if b.per_domain:
                out[b.name] = p[i : i + self.k]
                i += self.k
            else:
                out[b.name] = float(p[i])
                i += 1
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
        law = self.law
        n = h.shape[0]
        cols: list[np.ndarray] = []
        dh = np.zeros_like(h) if grad_h else None
        one = np.ones((n, 1))
        pred = np.zeros(n)

        def add_col(*arrs: np.ndarray) -> None:
            for a in arrs:
                cols.append(a if a.ndim == 2 else a[:, None])

        if law in ("chinchilla", "additive", "joint", "simple", "full", "bimix", "ye_m1"):
            pred += b["E"]
            if jac:
                add_col(one)
        if law in ("additive", "joint", "full"):
            m, jm, dm = _mix_inverse(h, b["C"], b["gamma"], jac, grad_h)
            pred += m
            add_col(*jm)
            if grad_h:
                dh += dm
        elif law == "simple":
            u = h @ b["C"]
            g = b["gamma"]
            m = np.exp(-g * np.log(u))
            pred += m
            if jac:
                add_col((-g * m / u)[:, None] * h, -m * np.log(u))
            if grad_h:
                dh += (-g * m / u)[:, None] * b["C"]
        elif law == "ye_m1":
            e = np.exp(b["g"] * h)
            pred += e @ b["C"]
            if jac:
                add_col(e, b["C"] * h * e)
            if grad_h:
                dh += b["C"] * b["g"] * e
        elif law in ("ye_m2", "ye_m4"):
            pred += b["E"]
            if jac:
                add_col(one)
            c = b["C"]
            if law == "ye_m2":
                e = np.exp(b["g"] * h)
                s = e.sum(axis=1)
                pred += c * s
                if jac:
                    add_col(s, c * h * e)
                if grad_h:
                    dh += c * b["g"] * e
            else:
                e = np.exp(h @ b["g"])
                pred += c * e
                if jac:
                    add_col(e, (c * e)[:, None] * h)
                if grad_h:
                    dh += (c * e)[:, None] * b["g"]
        elif law == "linear":
            pred += h @ b["C"]
            if jac:
                add_col(h)
            if grad_h:
                dh += b["C"]
        elif law == "bimix":
            t = self.domains.index(self.target_domain)  # type: ignore[arg-type]
            ht = h[:, t]
            with np.errstate(divide="ignore"):
                lt = np.log(ht)
            v = b["C"] * np.exp(-b["gamma"] * lt)
            pred += v
            if jac:
                add_col(v / b["C"], -v * lt)
            if grad_h:
                dh[:, t] += -b["gamma"] * v / np.maximum(ht, 1e-12)

        # Scale terms, in block order: N then D.
        for use, lx, pre in ((self.use_n, ln, "N"), (self.use_d, ld, "D")):
            if not use:
                continue
            a_name, e_name = ("A", "alpha") if pre == "N" else ("B", "beta")
            if law in ("chinchilla", "additive", "simple", "bimix"):
                t = b[a_name] * np.exp(-b[e_name] * lx)
                pred += t
                if jac:
                    add_col(t / b[a_name], -lx * t)
            elif law == "joint":
                cn, gn = ("CA", "gammaA") if pre == "N" else ("CB", "gammaB")
                pa, jpa, dpa = _power_of_linear(h, b[cn], b[gn], jac, grad_h)
                s = np.exp(-b[e_name] * lx)
                t = pa * s
                pred += t
                if jac:
                    add_col(s[:, None] * jpa[0], s[:, None] * jpa[1], -lx * t)
                if grad_h:
                    dh += s[:, None] * dpa
            else:  # full
                cn, gn = ("CA", "gammaA") if pre == "N" else ("CB", "gammaB")
                ce, ge = ("Calpha", "gamma_alpha") if pre == "N" else ("Cbeta", "gamma_beta")
                pa, jpa, dpa = _power_of_linear(h, b[cn], b[gn], jac, grad_h)
                ex, jex, dex = _power_of_linear(h, b[ce], b[ge], jac, grad_h)
                s = np.exp(-ex * lx)
                t = pa * s
                pred += t
                if jac:
                    f = (-lx * t)[:, None]
                    add_col(s[:, None] * jpa[0], s[:, None] * jpa[1], f * jex[0], f * jex[1])
                if grad_h:
                    dh += s[:, None] * dpa + (-lx * t)[:, None] * dex
        jmat = np.concatenate(cols, axis=1) if jac else None
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
