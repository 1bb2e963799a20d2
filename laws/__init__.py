"""Mixture scaling laws: fit, predict, optimize, evaluate (numpy and scipy only, no torch)."""
