"""Lightning callbacks for proxy runs (DomainLossLogger) and the main run (MixtureWeights)."""
