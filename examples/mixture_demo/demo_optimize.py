"""The main runs' mixtures: optimized per objective at the main run's (N, D) with
``laws.decide`` (the optimum and the tool's decision on it, as ``mixsampler optimize``
makes them), plus uniform and natural, each written as WEIGHTS.json (``laws.weightsfile``)
with a fingerprint.

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
from typing import TYPE_CHECKING

from demo_config import DemoConfig
from demo_data import DemoData
from demo_fit import FitStage
from demo_results import Mixture

if TYPE_CHECKING:
    from mixsampler.laws import Decision

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
) -> tuple[dict[str, dict[str, float]], dict[str, Mixture], dict[str, Decision]]:
    """The objectives (fixed here, before any main run), the four mixtures of the runs at
    (``n_main``, ``n_tokens``; default ``cfg.main_tokens``), each written to
    ``out/<mixture>.json``, and the tool's decision on each optimum; returns
    ``(objectives, mixtures, decisions)``.

    ``objectives`` maps "avg" (the mean over the training domains) and, when there are
    held-out targets, "target" (their mean) to target -> weight; ``mixtures`` maps
    "optimized-<objective>", "uniform" and "natural" to their :class:`Mixture`;
    ``decisions`` maps each objective to what ``laws.decide`` (the path of ``mixsampler
    optimize``) says of its optimum against uniform and natural.

    The demo tests the tool, so it asks for the decision even where a user would be refused
    (``allow_untrusted_law``, ``allow_unconverged``): the refusal is in ``Decision.issues``
    and ``result.success``, and the claims count a refused decision as no claim. An optimum
    the optimizer could not certify is kept (the report shows it) but logged as a warning: its
    main runs test a mixture that may not be the law's optimum.
    """
    from mixsampler import laws
    from mixsampler.laws import WeightsFile, write_weights

    out.mkdir(parents=True, exist_ok=True)
    n_tokens = float(cfg.main_tokens if n_tokens is None else n_tokens)
    domains = list(data.train_domains)
    targets = list(data.targets)
    available = data.train_sizes()
    natural = data.natural_weights()
    objectives: dict[str, dict[str, float]] = {"avg": {d: 1.0 / len(domains) for d in domains}}
    if targets:
        objectives["target"] = {t: 1.0 / len(targets) for t in targets}
    law_file = str(fit.report[fit.chosen].path)
    mixtures: dict[str, Mixture] = {}
    decisions: dict[str, Decision] = {}
    for obj_name, objective in objectives.items():
        dec = laws.decide(
            fit.fitted,
            model_size=float(n_main),
            n_tokens=n_tokens,
            objective=objective,
            natural=natural,
            allow_untrusted_law=True,
            allow_unconverged=True,
            where=law_file,
            options=("allow_untrusted_law", "allow_unconverged"),
            min_weight=cfg.min_weight,
            available=available,
            max_repeat=cfg.max_repeat,
            seed=cfg.seed,
        )
        res = dec.result
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
            WeightsFile.from_result(res, law_file=law_file, source=name, decision=dec.to_json()),
        )
        decisions[obj_name] = dec
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
    for name, w in (("uniform", {d: 1.0 / len(domains) for d in domains}), ("natural", natural)):
        path = out / f"{name}.json"
        write_weights(path, WeightsFile(weights=w, source=name))
        mixtures[name] = Mixture(
            name=name, weights=w, file=str(path), fingerprint=weights_fingerprint(w)
        )
    return objectives, mixtures, decisions
