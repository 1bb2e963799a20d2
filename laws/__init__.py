"""Mixture scaling laws: fit, predict, optimize, evaluate (numpy and scipy only, no torch).

Example:
    >>> import laws
    >>> table = laws.load_runs("runs.csv")  # doctest: +SKIP
    >>> fitted = {t: laws.fit(table, "joint", t).law for t in table.targets}  # doctest: +SKIP
    >>> laws.save_laws("LAW.json", fitted)  # doctest: +SKIP
    >>> laws.optimize(fitted, model_size=7e9, n_tokens=1.5e11).weights  # doctest: +SKIP
"""

from mixsampler.laws.bootstrap import BootstrapResult, bootstrap, resample_runs
from mixsampler.laws.decision import (
    Decision,
    UnconvergedOptimumError,
    UntrustedLawError,
    decide,
)
from mixsampler.laws.evaluate import evaluate, mre, parity_plot, predict_table
from mixsampler.laws.fit import FitResult, FitSettings, fit
from mixsampler.laws.fitted import FittedLaw
from mixsampler.laws.forms import LAWS, Form
from mixsampler.laws.heldout import CheckedFit, choose_law, fit_checked
from mixsampler.laws.io import load_laws, save_laws
from mixsampler.laws.optimize import (
    OptimizeResult,
    feasible_bounds,
    optimize,
    project_capped_simplex,
)
from mixsampler.laws.runtable import RunTable, drop_repeated_checkpoints, load_runs, parse_where
from mixsampler.laws.runtable_writer import (
    PartialRowWarning,
    RunTableWriter,
    drop_partial_row,
    write_runs,
)
from mixsampler.laws.schema import FormatError
from mixsampler.laws.weightsfile import (
    UnconvergedWeightsError,
    WeightsFile,
    read_weights,
    write_weights,
)

__all__ = [
    "LAWS",
    "BootstrapResult",
    "CheckedFit",
    "Decision",
    "UnconvergedOptimumError",
    "UntrustedLawError",
    "decide",
    "FitResult",
    "FitSettings",
    "FittedLaw",
    "FormatError",
    "Form",
    "OptimizeResult",
    "PartialRowWarning",
    "RunTable",
    "RunTableWriter",
    "UnconvergedWeightsError",
    "WeightsFile",
    "bootstrap",
    "choose_law",
    "drop_partial_row",
    "drop_repeated_checkpoints",
    "evaluate",
    "feasible_bounds",
    "fit",
    "fit_checked",
    "load_laws",
    "load_runs",
    "mre",
    "optimize",
    "parity_plot",
    "parse_where",
    "predict_table",
    "read_weights",
    "project_capped_simplex",
    "resample_runs",
    "save_laws",
    "write_runs",
    "write_weights",
]
