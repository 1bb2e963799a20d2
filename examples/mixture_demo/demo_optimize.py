"""The main runs' mixtures: optimized per objective at the main run's (N, D) with
``laws.optimize``, plus uniform and natural, each written as WEIGHTS.json
(``laws.weightsfile``) with a fingerprint.

Example:
    >>> from demo_optimize import weights_fingerprint
    >>> len(weights_fingerprint({"a": 1.0}))
    12
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

from demo_config import DemoConfig
from demo_data import DemoData
from demo_fit import FitStage
from demo_results import Mixture

log = logging.getLogger(__name__)


def weights_fingerprint(weights: Mapping[str, float]) -> str:
    """SHA-256 (12 hex digits) of a mixture as exact JSON: equal fingerprints, equal weights
    to the last bit, so equal sample order for a given seed.

    Example:
        >>> weights_fingerprint({"a": 0.5, "b": 0.5}) == weights_fingerprint({"b": 0.5, "a": 0.5})
        True
    """
    import hashlib

    text = json.dumps({k: float(v) for k, v in sorted(weights.items())}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def optimize_stage(
    cfg: DemoConfig,
    data: DemoData,
    fit: FitStage,
    n_main: float,
    out: Path,
    *,
    n_tokens: float | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, Mixture]]:
    """The objectives (fixed here, before any main run) and the four mixtures of the runs at
    (``n_main``, ``n_tokens``; default ``cfg.main_tokens``), each written to
    ``out/<mixture>.json``; returns ``(objectives, mixtures)``.

    ``objectives`` maps "avg" (the mean over the training domains) and, when there are
    held-out targets, "target" (their mean) to target -> weight; ``mixtures`` maps
    "optimized-<objective>", "uniform" and "natural" to their :class:`Mixture`.

    An optimum ``laws.optimize`` could not certify is kept (the report shows it) but logged as
    a warning: its main runs test a mixture that may not be the law's optimum.
    """
    from mixsampler import laws
    from mixsampler.laws import WeightsFile, write_weights

    out.mkdir(parents=True, exist_ok=True)
    n_tokens = float(cfg.main_tokens if n_tokens is None else n_tokens)
    domains = list(data.train_domains)
    targets = list(data.targets)
    available = {d: float(data.domains[d].train_bytes) for d in domains}
    objectives: dict[str, dict[str, float]] = {"avg": {d: 1.0 / len(domains) for d in domains}}
    if targets:
        objectives["target"] = {t: 1.0 / len(targets) for t in targets}
    mixtures: dict[str, Mixture] = {}
    for obj_name, objective in objectives.items():
        res = laws.optimize(
            fit.fitted,
            model_size=float(n_main),
            n_tokens=n_tokens,
            objective=objective,
            min_weight=cfg.min_weight,
            available=available,
            max_repeat=cfg.max_repeat,
            seed=cfg.seed,
        )
        if not res.success:
            log.warning(
                "optimized-%s: laws.optimize did not certify the optimum (%s); its main runs "
                "test these weights anyway and the report marks them unconverged",
                obj_name,
                res.message,
            )
        name = f"optimized-{obj_name}"
        path = out / f"{name}.json"
        write_weights(
            path,
            WeightsFile.from_result(res, law_file=str(fit.report[fit.chosen].path), source=name),
        )
        mixtures[name] = Mixture(
            name=name,
            weights=dict(res.weights),
            file=str(path),
            fingerprint=weights_fingerprint(res.weights),
            objective=objective,
            success=bool(res.success),
            message=str(res.message),
            gap=float(res.gap),
            predicted=float(res.fun),
        )
    for name, w in (
        ("uniform", {d: 1.0 / len(domains) for d in domains}),
        ("natural", data.natural_weights()),
    ):
        path = out / f"{name}.json"
        write_weights(path, WeightsFile(weights=w, source=name))
        mixtures[name] = Mixture(
            name=name, weights=w, file=str(path), fingerprint=weights_fingerprint(w)
        )
    return objectives, mixtures
