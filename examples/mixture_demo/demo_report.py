"""The demo's report: ``report.md`` with its tables, four figures, and a terminal summary.

Every number comes from the :class:`~demo_results.DemoResults` that
:func:`demo_pipeline.run_demo` computed from the run files; the verdict is computed,
never written by hand.

Example:
    >>> write_report(results, Path("demo_out"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from demo_config import DemoConfig
from demo_results import DemoResults
from demo_tables import (
    check_table,
    commands,
    data_table,
    extrapolation_table,
    fingerprint_lines,
    fit_table,
    fmt_int,
    main_table,
    objective_label,
    per_domain_table,
    reading_lines,
    summary_lines,
    weights_table,
    why_domains,
)

log = logging.getLogger(__name__)


def render_markdown(results: DemoResults, out: Path) -> str:
    """The text of report.md: the verdict first, then how it was reached.

    Example:
        >>> results = DemoResults.load("demo_out/results.json")  # doctest: +SKIP
        >>> render_markdown(results, Path("demo_out")).splitlines()[0]  # doctest: +SKIP
        '# mixsampler demo report'
    """
    lines = [*_verdict_part(results), *_method_part(results), *_runs_part(results, out), ""]
    return "\n".join(lines)


def _verdict_part(results: DemoResults) -> list[str]:
    """Title, what ran, fingerprints, the verdict and what the main runs show."""
    t = results.timings
    n_proxy = sum(1 for r in results.runs if r.stage == "proxy")
    n_main = sum(1 for r in results.runs if r.stage == "main")
    n_check = sum(1 for r in results.runs if r.stage == "check")
    total = t.total if t.total is not None else t.total_before_report
    return [
        "# mixsampler demo report",
        "",
        f"Proxy sweep of {n_proxy} runs -> {', '.join(results.laws)} laws -> optimized "
        f"mixtures -> {n_check} check runs at the largest proxy size -> {n_main} main runs "
        f"(main runs: {t.main_runs:.0f} s), on {results.data.origin} data, device "
        f"{results.device}, {results.jobs} run(s) side by side with "
        f"{results.threads} thread(s) each, in {total:.0f} s. Losses are in nats "
        "per byte (byte-level models, vocabulary 256).",
        "",
        *fingerprint_lines(results),
        "",
        "## Summary",
        "",
        *summary_lines(results),
        "",
        "![main runs](main_runs.png)",
        "",
        "## (a) The mixture law at the proxies' scale",
        "",
        *check_table(results),
        "",
        "![check](check.png)",
        "",
        "## (b) The extrapolation in N, per target",
        "",
        *extrapolation_table(results),
        "",
        "## What the main runs show",
        "",
        *reading_lines(results),
        "",
    ]


def _method_part(results: DemoResults) -> list[str]:
    """The data, the proxy sweep, the fitted laws and the main runs' mixtures."""
    cfg = results.config
    sizes = ", ".join(fmt_int(n) for n in results.proxy_sizes)
    return [
        "## Data",
        "",
        f"Origin: {results.data.origin}. Training text is split from validation text by "
        "document (no validation document is ever trained on); the held-out target is only "
        "evaluated, never trained on. The natural mixture is proportional to each training "
        "domain's training text.",
        "",
        *data_table(results),
        "",
        *why_domains(results),
        "",
        "## Proxy sweep",
        "",
        f"{cfg.n_mixtures} mixtures (the paper's evenly spaced simplex grid, minimum weight "
        f"{cfg.min_weight}) x {len(results.proxy_sizes)} model sizes (non-embedding N = "
        f"{sizes}; width {', '.join(map(str, cfg.proxy_widths))}, {cfg.n_layer} layers) at "
        f"{fmt_int(cfg.proxy_tokens)} tokens each, learning rate {cfg.lr} after "
        f"{cfg.warmup_steps} warm-up steps, {_schedule(cfg)}, {_init(cfg)}, "
        f"{cfg.evals_per_run} validations per run (each one run-table row). "
        f"Took {results.timings.proxy_sweep:.0f} s.",
        "",
        "## Fitted laws",
        "",
        "MRE = mean |predicted - measured| / measured. The held-out column is the honest one: "
        "those laws never saw the largest proxy size.",
        "",
        *fit_table(results),
        "",
        f"Law used for the optimum and the predictions: **{results.chosen_law}** (lower "
        "held-out-scale MRE).",
        "",
        "## Mixtures of the main runs",
        "",
        f"Optimized at the main runs' N = {fmt_int(results.main_model_size)} and D = "
        f"{fmt_int(cfg.main_tokens)}, each weight at least {cfg.min_weight} (the plan's "
        f"minimum: the law saw no mixture below it) and at most {cfg.max_repeat} epochs of a "
        "domain's text.",
        "",
        *weights_table(results),
        "",
        "![weights](weights.png)",
        "",
    ]


def _runs_part(results: DemoResults, out: Path) -> list[str]:
    """The main runs, the figures, the equivalent commands and the timings."""
    cfg = results.config
    seconds = {k: v for k, v in results.timings.to_json().items() if v is not None}
    return [
        "## Main runs",
        "",
        f"Width {cfg.main_width} (N = {fmt_int(results.main_model_size)}), "
        f"{fmt_int(cfg.main_tokens)} tokens, seeds {', '.join(map(str, cfg.seeds))}. "
        "Measured = the final validation; predicted = the law at each run's recorded N, D and "
        "weights.",
        "",
        *main_table(results),
        "",
        "Per domain, measured (predicted), final validation:",
        "",
        *per_domain_table(results),
        "",
        "## Figures",
        "",
        "![parity](parity.png)",
        "",
        "![loss vs tokens](curves.png)",
        "",
        "## The same with the command line",
        "",
        "The demo calls the same functions as these commands (`laws.load_runs`, `laws.fit`, "
        "`laws.save_laws`, `laws.optimize`):",
        "",
        *commands(results, out),
        "",
        "## Timings (s)",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {val:.1f} |" for k, val in seconds.items()],
    ]


def write_report(results: DemoResults, out: Path) -> Path:
    """Write the figures and report.md under ``out``; returns the report's path.

    Example:
        >>> results = DemoResults.load("demo_out/results.json")  # doctest: +SKIP
        >>> write_report(results, Path("demo_out"))  # doctest: +SKIP
        PosixPath('demo_out/report.md')
    """
    from demo_figures import plot_check, plot_curves, plot_main, plot_parity, plot_weights

    for plot in (plot_parity, plot_curves, plot_weights, plot_main, plot_check):
        try:
            plot(results, out)
        except Exception as err:  # a figure must never cost the user the report's numbers
            log.warning("could not draw %s: %s", plot.__name__, err)
    path = out / "report.md"
    path.write_text(render_markdown(results, out))
    return path


def summary(results: DemoResults, out: Path) -> str:
    """The terminal summary printed at the end of ``examples/mixture_demo/run.py``.

    Example:
        >>> results = DemoResults.load("demo_out/results.json")  # doctest: +SKIP
        >>> print(summary(results, Path("demo_out")))  # doctest: +SKIP
    """
    lines = ["", f"mixsampler demo: report in {out / 'report.md'}", ""]
    for law, rep in results.laws.items():
        held = np.mean(list(rep.heldout_mre.values()))
        train = np.mean(list(rep.train_mre.values()))
        mark = "  <- used" if law == results.chosen_law else ""
        lines.append(f"  {law:<9} MRE proxy {train:.2f}%   held-out largest size {held:.2f}%{mark}")
    lines.append("")
    domains = results.domains
    lines.append("  mixture            " + " ".join(f"{d:>9}" for d in domains))
    for mix, m in results.mixtures.items():
        lines.append(f"  {mix:<18} " + " ".join(f"{m.weights[d]:9.3f}" for d in domains))
    lines.append("")
    for obj in results.objectives:
        lines.append(f"  main runs, {objective_label(results, obj)}:")
        for mix, entry in results.main.mixtures.items():
            e = entry.objective[obj]
            lines.append(
                f"    {mix:<18} measured {e.mean:.4f} (spread {e.spread:.4f})  "
                f"predicted {e.predicted:.4f} ({e.rel_error_pct:.2f}% off)"
            )
    lines.append("")
    lines += ["  " + ln.replace("**", "") for ln in summary_lines(results)]
    return "\n".join(lines)


def _schedule(cfg: DemoConfig) -> str:
    if not cfg.lr_decay:
        return "then constant (the paper's fitting runs)"
    return (
        f"then a cosine decay to {cfg.min_lr_ratio:g} x at the last step (main runs train as "
        f"long as the proxies, so each of their validations sits where a proxy's does)"
    )


def _init(cfg: DemoConfig) -> str:
    if cfg.init_gain is None:
        return "weights initialised with GPT-2's standard deviation 0.02"
    return f"weights initialised with standard deviation {cfg.init_gain:g} / sqrt(width)"
