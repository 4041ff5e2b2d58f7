"""Figures (matplotlib): probability against depth, the safe-region diagram, initializations side by side,
example fits and collapse constants. Each writes PNG and PDF."""
from .plots import collapse_constants, example_fits, init_comparison, probability_vs_depth, safe_region

__all__ = ["collapse_constants", "example_fits", "init_comparison", "probability_vs_depth", "safe_region"]
