"""Every law, each defined once: its terms (hence blocks, priors, bounds, mixture groups) and
how a fitted smaller law embeds into it for a warm start.

Everything else reads :data:`REGISTRY`: :class:`laws.forms.Form` (names, evaluation),
:mod:`mixsampler.laws.fit` (priors, bounds, warm starts, identifiability), :mod:`mixsampler.plan`
(how
many distinct mixtures a law needs). Adding a law is one :class:`Law` entry below.

Example:
    >>> law = REGISTRY["joint"]
    >>> law.warm_from, law.uses_n, law.uses_d
    ('additive', True, True)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mixsampler.laws import law_terms as T

__all__ = ["Law", "REGISTRY", "LAWS", "get_law"]

# embed(source params, domains, use_n, use_d) -> params of the larger law (None: cannot).
Embed = Callable[[Mapping[str, float], tuple[str, ...], bool, bool], "dict[str, float] | None"]


@dataclass(frozen=True)
class Law:
    """One law.

    Attributes:
        name: its name on the command line and in LAW.json.
        formula: one line for docs and help.
        terms: the additive terms, in parameter order.
        warm_from: a smaller law this one contains as a special case; :func:`mixsampler.laws.fit`
        fits
            that first and starts from it, so the larger law's training objective can never
            end above the smaller one's.
        embed: maps the fitted ``warm_from`` law's parameters into this law's.
        needs_target: the law reads the target's own training weight (BiMix).
        nested_blocks: the per-domain blocks that are all equal in ``warm_from`` (joint's
            CA and CB: equal CA_i make (sum_i CA_i h_i)^gammaA a constant, the additive law's
            A); ``FitSettings.shrink`` pulls them toward their common value.
    """

    name: str
    formula: str
    terms: tuple[T.Term, ...]
    warm_from: str | None = None
    embed: Embed | None = None
    needs_target: bool = False
    nested_blocks: tuple[str, ...] = ()

    @property
    def uses_n(self) -> bool:
        return any(t.scale == "N" for t in self.terms)

    @property
    def uses_d(self) -> bool:
        return any(t.scale == "D" for t in self.terms)

    def active_terms(self, use_n: bool, use_d: bool) -> tuple[T.Term, ...]:
        """The terms of the variant: a scale term is dropped when its scale is not used."""
        keep = {None, *(["N"] if use_n else []), *(["D"] if use_d else [])}
        return tuple(t for t in self.terms if t.scale in keep)


def _mix_params(p: Mapping[str, float], domains: tuple[str, ...]) -> dict[str, float]:
    out = {"E": p["E"]}
    out.update({f"C_{d}": p[f"C_{d}"] for d in domains})
    out.update({f"gamma_{d}": p[f"gamma_{d}"] for d in domains})
    return out


def _additive_to_joint(
    p: Mapping[str, float], domains: tuple[str, ...], use_n: bool, use_d: bool
) -> dict[str, float] | None:
    # CA_i = A with gammaA = 1 gives A_h = A for every mixture: the additive law exactly.
    out = _mix_params(p, domains)
    for use, a, e, c, g in (
        (use_n, "A", "alpha", "CA", "gammaA"),
        (use_d, "B", "beta", "CB", "gammaB"),
    ):
        if use:
            if a not in p:
                return None
            out.update({f"{c}_{d}": p[a] for d in domains})
            out[g], out[e] = 1.0, p[e]
    return out


def _joint_to_full(
    p: Mapping[str, float], domains: tuple[str, ...], use_n: bool, use_d: bool
) -> dict[str, float] | None:
    # Calpha_i = alpha with gamma_alpha = 1 gives alpha_h = alpha: the joint law exactly.
    out = _mix_params(p, domains)
    for use, c, g, e, ce, ge in (
        (use_n, "CA", "gammaA", "alpha", "Calpha", "gamma_alpha"),
        (use_d, "CB", "gammaB", "beta", "Cbeta", "gamma_beta"),
    ):
        if use:
            if e not in p:
                return None
            out.update({f"{c}_{d}": p[f"{c}_{d}"] for d in domains})
            out[g] = p[g]
            out.update({f"{ce}_{d}": p[e] for d in domains})
            out[ge] = 1.0
    return out


_LAWS = (
    Law(
        "chinchilla",
        "E + A/N^alpha + B/D^beta",
        (T.constant_term(group=None), T.power_term("N"), T.power_term("D")),
    ),
    Law(
        "additive",
        "E + 1/(sum_i C_i h_i^gamma_i) + A/N^alpha + B/D^beta (paper eq. 2.4)",
        (T.constant_term(), T.mix_inverse_term(), T.power_term("N"), T.power_term("D")),
    ),
    Law(
        "joint",
        "E + 1/(sum_i C_i h_i^gamma_i) + (sum_i CA_i h_i)^gammaA/N^alpha "
        "+ (sum_i CB_i h_i)^gammaB/D^beta (paper eq. 2.5)",
        (T.constant_term(), T.mix_inverse_term(), T.joint_power_term("N"), T.joint_power_term("D")),
        warm_from="additive",
        embed=_additive_to_joint,
        nested_blocks=("CA", "CB"),
    ),
    Law(
        "simple",
        "E + (sum_i C_i h_i)^(-gamma) + A/N^alpha + B/D^beta (paper sec. 6.1)",
        (T.constant_term(), T.simple_mix_term(), T.power_term("N"), T.power_term("D")),
    ),
    Law(
        "full",
        "joint with alpha_h = (sum_i Calpha_i h_i)^gamma_alpha, beta_h likewise (paper sec. 6.2)",
        (T.constant_term(), T.mix_inverse_term(), T.full_power_term("N"), T.full_power_term("D")),
        warm_from="joint",
        embed=_joint_to_full,
        nested_blocks=("Calpha", "Cbeta"),
    ),
    Law(
        "ye_m1",
        "E + sum_i C_i exp(g_i h_i) (Ye et al. M1; one scale)",
        (T.constant_term(), T.ye_term("m1")),
    ),
    Law(
        "ye_m2",
        "E + C sum_i exp(g_i h_i) (Ye et al. M2; one scale)",
        (T.constant_term(), T.ye_term("m2")),
    ),
    Law(
        "ye_m4",
        "E + C exp(sum_i g_i h_i) (Ye et al. M4; one scale)",
        (T.constant_term(), T.ye_term("m4")),
    ),
    Law("linear", "sum_i C_i h_i (RegMix's linear model; one scale)", (T.linear_term(),)),
    Law(
        "bimix",
        "E + C/h_t^gamma + B/D^beta, h_t the target's own weight (BiMix; one N)",
        (T.constant_term(), T.own_weight_term(), T.power_term("D")),
        needs_target=True,
    ),
)

REGISTRY: dict[str, Law] = {law.name: law for law in _LAWS}
LAWS: tuple[str, ...] = tuple(REGISTRY)


def get_law(name: str) -> Law:
    """The law called ``name``; a ValueError listing the laws otherwise."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"law can be {', '.join(LAWS)}, got {name!r}") from None
