"""Deadness at initialization: probe sets, the two born-dead kernels and the Monte Carlo driver."""
from .born_dead import BornDeadCell, BornDeadOutcomes, born_dead_outcomes, estimate_born_dead, summarize

__all__ = ["BornDeadCell", "BornDeadOutcomes", "born_dead_outcomes", "estimate_born_dead", "summarize"]
