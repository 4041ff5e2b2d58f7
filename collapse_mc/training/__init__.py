"""Training Monte Carlo: train thousands of networks at once and classify each (born dead, collapsed, diverged).

Entry points: ``TrainConfig`` / ``TrainCell`` (what to train), ``train_outcomes`` (per-trial outcomes for a
range of global trial indices), ``summarize_training`` (counts, probabilities with Wilson intervals, collapse
constants) and ``estimate_training`` (both). Depth = hidden layers L_h; the papers' layers = depth + 1.
"""
from .config import TrainCell, TrainConfig, TrainStatic
from .summary import estimate_training, summarize_training
from .targets import Target, target_stats
from .trainer import TrainOutcomes, train_outcomes

__all__ = ["Target", "TrainCell", "TrainConfig", "TrainOutcomes", "TrainStatic", "estimate_training",
           "summarize_training", "target_stats", "train_outcomes"]
