"""The report's tables and computed sentences (verdict, reading, data, fits, mixtures, main
runs, commands), each a list of markdown lines built from the demo's
:class:`~demo_results.DemoResults`.

Example:
    >>> from demo_tables import fmt_int
    >>> fmt_int(224_000)
    '224,000'
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from demo_results import BASELINES, DemoResults, ErrorByTokens

MIX_COLORS = {
    "optimized-avg": "tab:green",
    "optimized-target": "tab:purple",
    "uniform": "tab:gray",
    "natural": "tab:orange",
}


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit, scale in (("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def fmt_int(n: float) -> str:
    return f"{int(round(n)):,d}"


def objective_label(results: DemoResults, obj: str) -> str:
    """Words for an objective: 'avg' is the mean over training domains, 'target' the
    held-out target(s)."""
    if obj == "avg":
        return "average loss over the training domains"
    return "held-out target " + ", ".join(results.targets)


def summary_lines(results: DemoResults) -> list[str]:
    """The one-screen summary: the three parts of the claim, their numbers and verdicts."""
    c = results.claims
    lines = [
        "Three parts of the claim, each tested on its own with the rules in `analysis_plan.md`, "
        "written before any run trained (one-sided tests at 5 %; losses in nats/byte).",
        "",
        "| part | tested on | result | verdict |",
        "|---|---|---|---|",
    ]
    seeds = len(results.config.seeds)
    a = c.mixtures
    if a is None:
        lines.append("| (a) mixture law at the proxies' scale | not run (check_mixtures=0) | | |")
    else:
        k = sum(1 for m in a.mixtures if m.startswith("rand"))
        objs = "; ".join(
            f"{o}: Spearman {v.spearman:.2f}, regret {v.regret:+.4f} (noise {v.regret_noise:.4f})"
            for o, v in a.objectives.items()
        )
        lines.append(
            f"| (a) mixture law at the proxies' scale | {k} unseen + {len(a.mixtures) - k} "
            f"other mixtures x {seeds} seeds at N = {fmt_int(a.model_size)}, D = "
            f"{fmt_int(a.n_tokens)} | MRE {a.mre:.2f} % (goal <= 2); {objs} (goals: Spearman "
            f">= 0.9, regret within noise) | **{'PASS' if a.passes else 'FAIL'}** |"
        )
    ext = c.extrapolation
    worst = max(ext, key=lambda t: abs(ext[t].main_bias))
    mean_bias = float(np.mean([e.main_bias for e in ext.values()]))
    held = float(np.mean([e.heldout_n_mre for e in ext.values()]))
    ratio = results.main_model_size / max(results.proxy_sizes)
    lines.append(
        f"| (b) extrapolation in N ({ratio:.1f}x the largest proxy) | main runs, {seeds} seeds "
        f"per mixture | mean signed error {mean_bias:+.2f} %, worst {worst} "
        f"{ext[worst].main_bias:+.2f} %; held-out N on the proxies {held:.2f} % | reported |"
    )
    parts = []
    for o, per in c.decision.items():
        for base, d in per.items():
            mark = d.outcome
            if d.outcome == "not judged":
                mark = "refused by the tool" if d.statement.refused else "within the law's error"
            parts.append(f"{o} vs {base} {d.test.mean:+.4f} (p {d.test.t_p:.3f}, {mark})")
    lines.append(
        f"| (c) the decision | paired gains over {seeds} seeds | {'; '.join(parts)} | "
        f"**{c.decision_verdict}** |"
    )
    lines += [
        "",
        "The decision, seed by seed (the tool's statement was printed before the main "
        "runs, `decision.md`):",
        "",
    ]
    for o, per in c.decision.items():
        for base, d in per.items():
            t = d.test
            gains = ", ".join(f"{g:+.4f}" for g in t.gains)
            need = (
                f"{t.seeds_needed} seeds would reach p < 0.05 at this mean and spread"
                if t.seeds_needed
                else "no number of seeds makes a non-positive mean a win"
            )
            st = d.statement
            res = f"{st.resolution:.4f}" if st.resolution is not None else "an unknown gain"
            if st.distinguishable:
                said = "distinguishable"
            elif st.refused:
                said = "no claim: the tool refuses this decision without an override"
            else:
                said = "within its error"
            lines.append(
                f"- optimized-{o} vs {base}: said {st.predicted_gain:+.4f} "
                f"({st.predicted_gain_pct:+.2f} %) predicted, the law resolving {res} "
                f"({said}); "
                f"measured gains {gains} (mean {t.mean:+.4f}, t-test p {t.t_p:.3f}, sign test "
                f"p {t.sign_p:.3f}; {need}): **{d.outcome}**."
            )
    for mix, m in results.mixtures.items():
        if m.success is False:
            lines.append(
                f"- **WARNING**: the optimizer did not certify the optimum of {mix}: "
                f"{m.message or ''}; its runs test these weights, not necessarily the "
                "law's optimum."
            )
    return lines


def extrapolation_table(results: DemoResults) -> list[str]:
    """Part (b) per target: the main runs' error beside the proxies' held-out-N error."""
    lines = [
        "| target | main runs: MRE % | main runs: signed % | proxies, held-out N: MRE % |",
        "|---|---|---|---|",
    ]
    for t, e in results.claims.extrapolation.items():
        lines.append(f"| {t} | {e.main_mre:.2f} | {e.main_bias:+.2f} | {e.heldout_n_mre:.2f} |")
    return lines


def check_table(results: DemoResults) -> list[str]:
    """Part (a) per mixture: measured and predicted mean objective at the proxies' scale."""
    a = results.claims.mixtures
    if a is None:
        return []
    objs = list(results.objectives)
    head = " | ".join(f"{o} measured | {o} predicted" for o in objs)
    lines = [f"| mixture | {head} |", "|---|" + "---|" * (2 * len(objs))]
    for mix, m in a.mixtures.items():
        cells = " | ".join(
            f"{np.mean(m.measured[o]):.4f} | {np.mean(m.predicted[o]):.4f}" for o in objs
        )
        lines.append(f"| {mix} | {cells} |")
    lines += [
        "",
        "MRE per target: "
        + ", ".join(f"{t} {v:.2f} %" for t, v in a.mre_by_target.items())
        + ". Best measured: "
        + ", ".join(f"{o}: {v.best}" for o, v in a.objectives.items())
        + ".",
    ]
    return lines


def reading_lines(results: DemoResults) -> list[str]:
    """Facts computed from the main runs that explain the verdict: paired seeds, the law's
    common offset, and whether it ranks the mixtures in the measured order."""
    by_mix = results.main.mixtures
    lines = []
    for obj in results.objectives:
        opt = by_mix[f"optimized-{obj}"].objective[obj].measured
        for base in BASELINES:
            other = by_mix[base].objective[obj].measured
            diffs = [o - b for o, b in zip(opt, other, strict=True)]
            lower = sum(d < 0 for d in diffs)
            lines.append(
                f"- {obj}: optimized-{obj} minus {base}, seed by seed (same seed = same "
                f"initialisation and data order): {', '.join(f'{d:+.4f}' for d in diffs)}; "
                f"lower on {lower} of {len(diffs)} seeds."
            )
    for obj in results.objectives:
        mixes = list(by_mix)
        meas = [by_mix[m].objective[obj].mean for m in mixes]
        pred = [by_mix[m].objective[obj].predicted for m in mixes]
        signed = [(p - m) / m * 100 for p, m in zip(pred, meas, strict=True)]
        order_m = [mixes[i] for i in np.argsort(meas)]
        order_p = [mixes[i] for i in np.argsort(pred)]
        same = (
            "the measured order"
            if order_m == order_p
            else "an order different from the measured one"
        )
        lines.append(
            f"- {obj}: the law's predictions are off by {min(signed):+.2f}% to "
            f"{max(signed):+.2f}% (predicted minus measured); it ranks the mixtures in {same} "
            f"(measured best to worst: {', '.join(order_m)}; predicted: "
            f"{', '.join(order_p)})."
        )
    lines += _by_tokens_lines(results.main.by_tokens)
    for law, rep in results.laws.items():
        bias_d = float(np.mean(list(rep.heldout_d_bias.values())))
        lines.append(
            f"- Extrapolation in D on the proxies themselves ({law} law fitted on D <= "
            f"{fmt_int(rep.d_half)}, scored on the rest, up to 2x D): MRE "
            f"{np.mean(list(rep.heldout_d_mre.values())):.2f}%, mean signed error "
            f"{bias_d:+.2f}%"
            + (" (too high: the curves fall faster than E + B/D^beta)." if bias_d > 1 else ".")
        )
    return lines


def _by_tokens_lines(bt: ErrorByTokens) -> list[str]:
    """The law's error on the main runs' validations within and beyond the proxies' D."""
    d = fmt_int(bt.proxy_tokens_max)
    w, b = bt.within, bt.beyond
    line = (
        f"- On every main-run validation up to D = {d} (the proxies' longest run; only N is "
        f"extrapolated) the law's MRE is {_pct(w.mre, '.2f')}% (mean signed error "
        f"{_pct(w.bias, '+.2f')}%, {w.rows} validations)"
    )
    if b.rows:
        line += (
            f"; beyond it (N and D extrapolated) {_pct(b.mre, '.2f')}% "
            f"({_pct(b.bias, '+.2f')}%, {b.rows} validations)"
        )
    lines = [line + "."]
    if w.mre is not None and b.mre is not None and b.bias is not None:
        if b.mre > 2 * w.mre and b.bias > 0:
            lines.append(
                "- The main runs' loss keeps falling faster with D than the power law fitted "
                "on the proxies: the law over-predicts more the further it extrapolates in D. "
                "The proxies' curves have not reached the regime where L(D) bends like "
                "E + B/D^beta, so their fit cannot foresee the main runs' later drop."
            )
    return lines


def _pct(x: float | None, spec: str) -> str:
    """``x`` formatted with ``spec``; "n/a" when there is no number (no rows)."""
    return "n/a" if x is None else format(x, spec)


def data_table(results: DemoResults) -> list[str]:
    """One row per domain: role, source, documents, bytes, natural weight, hashes."""
    natural = results.mixtures["natural"].weights
    lines = [
        "| domain | role | source | documents train / val | train text | val text | "
        "available | natural weight | sha256 train / val |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, d in results.data.domains.items():
        role = "training" if d.train else "held-out target"
        nat = f"{natural[name]:.3f}" if name in natural else "-"
        lines.append(
            f"| {name} | {role} | {d.source} | {len(d.train_docs)} / {len(d.val_docs)} "
            f"| {fmt_bytes(d.train_bytes)} | {fmt_bytes(d.val_bytes)} | "
            f"{fmt_bytes(d.available_bytes)} | {nat} | "
            f"{(d.train_sha256 or '-')[:12]} / {(d.val_sha256 or '-')[:12]} |"
        )
    return lines


def why_domains(results: DemoResults) -> list[str]:
    """Why these objectives, with the natural mixture's largest share and what the law made of
    that domain computed from the results, not assumed."""
    mixes = results.mixtures
    natural = mixes["natural"].weights
    big = max(natural, key=natural.__getitem__)
    given = ", ".join(
        f"{m} gives it {mixes[m].weights[big]:.2f}" for m in mixes if m.startswith("optimized")
    )
    return [
        "Why these objectives (fixed before any run): the held-out target is text no run "
        "trains on, as the paper's OpenHermes, so only transfer can lower it; the average over "
        f"the training domains is taken where the natural mixture is dominated by one large "
        f"domain ({big}: {natural[big]:.0%} of the training text, as CommonCrawl's 52 % of "
        "SlimPajama). With the embedded data that is torch's C++ headers, the largest source "
        "by far and mostly boilerplate (licence headers, includes, macros), so training on the "
        "natural mixture is the default a user would take. How much that domain is worth is "
        f"the law's to say, not ours: {given}."
    ]


def fingerprint_lines(results: DemoResults) -> list[str]:
    """Two reports with the same fingerprints trained on the same bytes with the same
    mixtures; a difference in the weights' fingerprint explains a difference in sample order."""
    mixes = results.mixtures
    return [
        f"Fingerprints: data `{results.data.fingerprint()}`; weights "
        + ", ".join(f"{m} `{mixes[m].fingerprint}`" for m in mixes)
        + " (SHA-256 of the bytes, and of the weights as exact JSON)."
    ]


def fit_table(results: DemoResults) -> list[str]:
    """Per law and target: MRE on the proxies, held out in N and in D, and convergence."""
    targets = [*results.domains, *results.targets]
    n_max = fmt_int(results.proxy_sizes[-1])
    lines = [
        f"| law | target | MRE % proxy (fit on all) | MRE % held-out scale (fit on N < {n_max}, "
        f"evaluated at N = {n_max}) | MRE % held-out D (fit on D <= "
        f"{fmt_int(next(iter(results.laws.values())).d_half)}, evaluated beyond; mean "
        "signed error) | fit converged |",
        "|---|---|---|---|---|---|",
    ]
    for law, rep in results.laws.items():
        for t in targets:
            conv = []
            for label, fits in (("all", rep.fit), ("held-out", rep.heldout_fit)):
                f = fits[t]
                conv.append(f"{label}: " + ("yes" if f.success else f"no ({f.message})"))
            lines.append(
                f"| {law} | {t} | {rep.train_mre[t]:.3f} | {rep.heldout_mre[t]:.3f} | "
                f"{rep.heldout_d_mre[t]:.3f} ({rep.heldout_d_bias[t]:+.2f}) | "
                f"{'; '.join(conv)} |"
            )
        lines.append(
            f"| {law} | **mean** | {np.mean([rep.train_mre[t] for t in targets]):.3f} | "
            f"{np.mean([rep.heldout_mre[t] for t in targets]):.3f} | "
            f"{np.mean([rep.heldout_d_mre[t] for t in targets]):.3f} "
            f"({np.mean([rep.heldout_d_bias[t] for t in targets]):+.2f}) | |"
        )
    return lines


def weights_table(results: DemoResults) -> list[str]:
    """One row per training domain, one column per mixture."""
    mixes = list(results.mixtures)
    lines = ["| domain | " + " | ".join(mixes) + " |", "|---" * (len(mixes) + 1) + "|"]
    for d in results.domains:
        cells = [f"{results.mixtures[m].weights[d]:.3f}" for m in mixes]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return lines


def main_table(results: DemoResults) -> list[str]:
    """Per objective and mixture: measured per seed, mean, spread, predicted, worst error."""
    lines = [
        "| objective | mixture | measured per seed | mean | spread (max - min) | "
        "predicted | worst seed's prediction error % |",
        "|---|---|---|---|---|---|---|",
    ]
    for obj in results.objectives:
        for mix, entry in results.main.mixtures.items():
            e = entry.objective[obj]
            seeds = ", ".join(f"{x:.4f}" for x in e.measured)
            lines.append(
                f"| {obj} | {mix} | {seeds} | {e.mean:.4f} | {e.spread:.4f} | "
                f"{e.predicted:.4f} | {e.max_rel_error_pct:.2f} |"
            )
    return lines


def per_domain_table(results: DemoResults) -> list[str]:
    """Per main run and target: measured (predicted) final loss."""
    cols = [*results.domains, *results.targets]
    lines = ["| run | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for run, r in results.main.runs.items():
        cells = [f"{r.loss[c]:.4f} ({r.pred[c]:.4f})" for c in cols]
        lines.append(f"| {run} | " + " | ".join(cells) + " |")
    return lines


def commands(results: DemoResults, out: Path) -> list[str]:
    """The command lines that redo the fits, held-out checks and optima by hand."""
    proxy = results.files.proxy_rows
    n_max = fmt_sci(results.proxy_sizes[-1])
    lines = ["```"]
    for law, rep in results.laws.items():
        lines.append(f"mixsampler fit {proxy} --law {law} --target all -o {out}/laws/{law}.json")
        lines.append(
            f'mixsampler fit {proxy} --law {law} --target all --where "model_size < {n_max}" '
            f"-o {out}/laws/{law}.heldout.json"
        )
        lines.append(
            f"mixsampler evaluate {out}/laws/{law}.heldout.json {proxy} "
            f'--where "model_size >= {n_max}"'
        )
        half = fmt_sci(rep.d_half)
        lines.append(
            f'mixsampler fit {proxy} --law {law} --target all --where "n_tokens <= {half}" '
            f"-o {out}/laws/{law}.early.json"
        )
        lines.append(
            f'mixsampler evaluate {out}/laws/{law}.early.json {proxy} --where "n_tokens > {half}"'
        )
    chosen = results.chosen_law
    cfg = results.config
    n, d = results.main_model_size, cfg.main_tokens
    avail = " ".join(
        f"--available {dom}={results.data.domains[dom].train_bytes}" for dom in results.domains
    )
    for obj, objective in results.objectives.items():
        spec = ",".join(f"{t}={w:.6g}" for t, w in objective.items())
        lines.append(
            f"mixsampler optimize {out}/laws/{chosen}.json --model-size {n} --tokens {d} "
            f"--objective {spec} --min-weight {cfg.min_weight} {avail} "
            f"--max-repeat {cfg.max_repeat} -o {out}/weights/optimized-{obj}.json"
        )
    lines.append(f"mixsampler evaluate {out}/laws/{chosen}.json {results.files.main_rows}")
    lines.append("```")
    return lines


def fmt_sci(x: float) -> str:
    return f"{float(x):.6g}"
