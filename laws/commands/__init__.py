"""One module per law verb (fit, predict, optimize, evaluate); ``mixsampler.laws.cli`` registers
them."""
