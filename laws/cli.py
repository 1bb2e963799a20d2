"""The ``fit``, ``predict``, ``optimize`` and ``evaluate`` verbs of ``mixsampler``.

Outputs are files scripts can rely on: LAW.json (fit), a CSV of the input rows plus
``pred_<target>_loss`` columns (predict), WEIGHTS.json (optimize), and an MRE table (evaluate,
JSON with ``-o``). Summaries go to stdout. Each verb lives in its own module under
``laws.commands``.

Example:
    $ mixsampler fit runs.csv --law joint --target all -o LAW.json
    $ mixsampler optimize LAW.json --model-size 7e9 --tokens 1.5e11 --min-weight 0.01 \\
        -o WEIGHTS.json
    $ mixsampler optimize LAW.json --model-size 7e9 --tokens 1.5e11 --runs runs.csv \\
        --bootstrap 50 --confidence 0.9 -o WEIGHTS.json   # adds "intervals"
"""

from __future__ import annotations

import argparse

from mixsampler.laws.commands import evaluate, fit, optimize, predict


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the four verbs to the ``mixsampler`` parser."""
    for verb in (fit, predict, optimize, evaluate):
        verb.register(subparsers)
