"""Memory models from neuroscience (issue: the SDM-MLP and the stochastic-consolidation network)."""
