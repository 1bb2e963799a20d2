"""One module per law verb (fit, predict, optimize, evaluate); ``laws.cli`` registers them."""
