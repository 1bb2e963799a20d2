"""A fitted law: the object users predict with, optimize over and save to LAW.json.

Example:
    >>> law = FittedLaw("chinchilla", ("a",), "a", {"E": 1.0, "A": 0.2, "alpha": 0.3,
    ...                 "B": 0.5, "beta": 0.3})
    >>> float(law.predict(1e9, 1e9, [1.0]))
    1.7
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from mixsampler.laws.forms import D_SCALE, N_SCALE, Form
from mixsampler.laws.law_defs import get_law

__all__ = ["FittedLaw"]


def _freeze(obj: Any) -> Any:
    """Read-only copy of JSON-like content: mappings become MappingProxyType, lists tuples."""
    if isinstance(obj, Mapping):
        return MappingProxyType({str(k): _freeze(v) for k, v in obj.items()})
    if isinstance(obj, (list, tuple)):
        return tuple(_freeze(v) for v in obj)
    return obj


def _thaw(obj: Any) -> Any:
    """Plain dicts and lists again, for JSON."""
    if isinstance(obj, Mapping):
        return {k: _thaw(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return [_thaw(v) for v in obj]
    return obj


@dataclass(frozen=True)
class FittedLaw:
    """A law with its parameters, for one target; immutable.

    ``params`` is a read-only mapping and the vector :meth:`predict` uses is derived from it
    once, so what is saved (:meth:`to_dict`) is always what predicts. To change something, make
    a new law: ``dataclasses.replace(law, params={...})`` or :meth:`with_fit_info`.

    Args:
        law: the law's name (see :data:`laws.forms.LAWS`).
        domains: training domains, the column order of ``weights`` in :meth:`predict`.
        target: the target whose loss it predicts (``arxiv`` for ``arxiv_loss``).
        params: parameter values by name (natural scale, N in units of ``n_scale``).
        use_n: whether the N term is present (False: fixed-N variant).
        use_d: whether the D term is present (False: fixed-D variant).
        target_domain: for ``bimix``, the training domain whose weight enters the law.
        n_scale: the unit of N inside the law (predictions do not depend on it).
        d_scale: the unit of D inside the law.
        fit: how it was fitted (settings and results), kept in LAW.json.
        fingerprint: a hash of the rows it was fitted on.
        warnings: identifiability problems found by the fit (see :mod:`laws.law_checks`),
            one line each; kept in LAW.json and repeated by ``optimize`` and the bootstrap.
    """

    law: str
    domains: tuple[str, ...]
    target: str
    params: Mapping[str, float]
    use_n: bool = True
    use_d: bool = True
    target_domain: str | None = None
    n_scale: float = N_SCALE
    d_scale: float = D_SCALE
    fit: Mapping[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "domains", tuple(self.domains))
        target_domain = self.target_domain
        if (
            get_law(self.law).needs_target
            and target_domain is None
            and (self.target in self.domains)
        ):
            target_domain = self.target
        set_(self, "target_domain", target_domain)
        form = Form(self.law, self.domains, self.use_n, self.use_d, target_domain)
        set_(self, "use_n", form.use_n)
        set_(self, "use_d", form.use_d)
        names = form.names
        if set(self.params) != set(names):
            missing = sorted(set(names) - set(self.params))
            extra = sorted(set(self.params) - set(names))
            raise ValueError(
                f"params of a {self.law} law over {', '.join(self.domains)} must be "
                f"{', '.join(names)}; missing {missing}, unexpected {extra}"
            )
        params = {n: float(self.params[n]) for n in names}
        p = np.array([params[n] for n in names], dtype=float)
        p.setflags(write=False)
        set_(self, "params", MappingProxyType(params))
        set_(self, "_p", p)
        set_(self, "form", form)
        set_(self, "fit", _freeze(self.fit))
        if isinstance(self.warnings, str) or not all(isinstance(w, str) for w in self.warnings):
            raise ValueError(f"warnings must be a sequence of strings, got {self.warnings!r}")
        set_(self, "warnings", tuple(self.warnings))
        set_(self, "n_scale", float(self.n_scale))
        set_(self, "d_scale", float(self.d_scale))

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        # Read-only mappings do not pickle; the JSON content does, exactly (worker processes).
        return (type(self).from_dict, (self.to_dict(),))

    def with_fit_info(self, **info: Any) -> FittedLaw:
        """A copy with entries added to :attr:`fit` (e.g. the ``where`` filter of the rows).

        Example:
            >>> law.with_fit_info(where="model_size < 2e9").fit["where"]  # doctest: +SKIP
            'model_size < 2e9'
        """
        return dataclasses.replace(self, fit={**_thaw(self.fit), **info})

    @property
    def evidence(self) -> Mapping[str, Any] | None:
        """What the law was fitted on, for trust regions and extrapolation warnings.

        ``fit["evidence"]`` as :func:`laws.fit` records it: ``model_size`` and ``n_tokens`` as
        ``[min, max]`` over the fitting rows, ``weights`` as ``{domain: [min, max]}`` and
        ``mixtures`` as the distinct fitting mixtures (lists in domain order). None for a law
        saved before this was recorded.
        """
        ev = self.fit.get("evidence")
        return ev if isinstance(ev, Mapping) else None

    def trust_issues(self, *, max_heldout_ratio: float = 3.0) -> tuple[str, ...]:
        """Reasons not to let this law decide a mixture; empty when none were recorded.

        A law is untrusted when its fit did not converge (``fit["converged"]`` False), when
        runs it was fitted on never learned (``fit["never_learned"]``), when it predicts a
        non-finite loss on its own rows (``fit["nonfinite_rows"]``), or when a held-out
        check (``fit["heldout"][kind]["mre"]``, kind ``n``, ``d`` or ``mixture``, fractions)
        is more than ``max_heldout_ratio`` times its training error and above 1 %: it fits
        noise. ``optimize`` and :class:`MixtureWeights` refuse such a law unless allowed.

        Example:
            >>> law = FittedLaw("chinchilla", ("a",), "a", {"E": 1.0, "A": 0.2, "alpha": 0.3,
            ...                 "B": 0.5, "beta": 0.3}, fit={"converged": False})
            >>> law.trust_issues()
            ('a: the chinchilla fit did not converge',)
        """
        out: list[str] = []
        if self.fit.get("converged") is False:
            out.append(f"{self.target}: the {self.law} fit did not converge")
        dead = self.fit.get("never_learned") or ()
        if dead:
            names = ", ".join(str(r.get("run")) for r in dead[:5] if isinstance(r, Mapping))
            out.append(
                f"{self.target}: {len(dead)} fitting run(s) never learned ({names}"
                f"{' ...' if len(dead) > 5 else ''}); refit without them"
            )
        bad = self.fit.get("nonfinite_rows")
        if isinstance(bad, int) and bad > 0:
            out.append(f"{self.target}: non-finite predictions on {bad} of its fitting rows")
        train = self.fit.get("train_mre")
        for kind, check in (self.fit.get("heldout") or {}).items():
            mre = check.get("mre") if isinstance(check, Mapping) else None
            if not isinstance(mre, (int, float)) or not isinstance(train, (int, float)):
                continue
            if not np.isfinite(mre):
                out.append(f"{self.target}: non-finite predictions on held-out {kind} rows")
            elif mre > 0.01 and mre > max_heldout_ratio * max(train, 1e-4):
                out.append(
                    f"{self.target}: held-out {kind} error {100 * mre:.2g} % is "
                    f"{mre / max(train, 1e-4):.0f}x the training error {100 * train:.2g} %"
                )
        return tuple(out)

    @property
    def x(self) -> np.ndarray:
        """Parameters as a vector, in :attr:`Form.names` order (a copy)."""
        return self._p.copy()  # type: ignore[attr-defined,no-any-return]

    def _unscale(
        self, model_size: np.ndarray | float, n_tokens: np.ndarray | float
    ) -> tuple[np.ndarray, np.ndarray]:
        # The form works in units of N_SCALE / D_SCALE; a law saved with other units is
        # rescaled here so its predictions stay the same.
        n = np.asarray(model_size, dtype=float) * (N_SCALE / self.n_scale)
        d = np.asarray(n_tokens, dtype=float) * (D_SCALE / self.d_scale)
        return n, d

    def predict(
        self,
        model_size: np.ndarray | float | Sequence[float],
        n_tokens: np.ndarray | float | Sequence[float],
        weights: np.ndarray | Sequence[float] | Sequence[Sequence[float]],
    ) -> np.ndarray:
        """Predicted loss; (N, D, h) broadcast, ``weights`` shape (..., k) in domain order.

        Example:
            >>> law.predict([3e8, 1e9], 2e10, [0.5, 0.5])  # doctest: +SKIP
        """
        n, d = self._unscale(np.asarray(model_size), np.asarray(n_tokens))
        return self.form.predict(
            self._p,  # type: ignore[attr-defined]
            n,
            d,
            weights,
        )

    def value_and_grad_h(
        self, model_size: float, n_tokens: float, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Loss and its gradient in h for weights of shape (m, k) at one (N, D)."""
        h = np.atleast_2d(np.asarray(weights, dtype=float))
        n, d = self._unscale(model_size, n_tokens)
        ln, ld, hh = self.form.inputs(n, d, h)
        pred, _, g = self.form.evaluate(self._p, ln, ld, hh, grad_h=True)
        assert g is not None
        return pred, g

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able content (floats kept exact: JSON writes Python's repr)."""
        return {
            "law": self.law,
            "target": self.target,
            "domains": list(self.domains),
            "parameters": dict(self.params),
            "use_n": self.use_n,
            "use_d": self.use_d,
            "target_domain": self.target_domain,
            "n_scale": self.n_scale,
            "d_scale": self.d_scale,
            "fit": _thaw(self.fit),
            "fingerprint": self.fingerprint,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> FittedLaw:
        """Inverse of :meth:`to_dict`."""
        for key in ("law", "target", "domains", "parameters"):
            if key not in obj:
                raise ValueError(f"a saved law needs the key {key!r}; got {sorted(obj)}")
        return cls(
            law=str(obj["law"]),
            domains=tuple(obj["domains"]),
            target=str(obj["target"]),
            params={str(k): float(v) for k, v in obj["parameters"].items()},
            use_n=bool(obj.get("use_n", True)),
            use_d=bool(obj.get("use_d", True)),
            target_domain=obj.get("target_domain"),
            n_scale=float(obj.get("n_scale", N_SCALE)),
            d_scale=float(obj.get("d_scale", D_SCALE)),
            fit=dict(obj.get("fit", {})),
            fingerprint=str(obj.get("fingerprint", "")),
            warnings=tuple(obj.get("warnings", ())),
        )
