"""Thin argparse front ends for the ``mixsampler`` verbs (see :mod:`mixsampler.cli`)."""
