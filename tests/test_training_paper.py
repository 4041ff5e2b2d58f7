"""The training Monte Carlo reproduces papers 1 and 2 (SCIENCE.md section 5) with modest trial counts.

Settings: width 2, 9 hidden layers (the papers' "10-layer" net), 3000 training points per trial, minibatch 64,
Adam lr 1e-3 (the project defaults) but 2000 steps instead of 5000 to keep CI fast. Probabilities are checked
with margins of >= 3.5 binomial standard errors; collapse constants against the target's mean (MSE) or median
(L1) within 4 standard errors of the sample median (1.2533 sigma / sqrt(n), sigma from the IQR) plus 5 lr,
the jitter Adam's steps of size ~lr leave on a constant. Full-size runs (1000 trials, 5000 steps) are in the
README.
"""
import math

import numpy as np
import pytest

from collapse_mc.config import InitConfig, NetworkConfig
from collapse_mc.training import TrainCell, TrainConfig, train_outcomes
from collapse_mc.training.targets import target_stats

NARROW = NetworkConfig(2, 9)
STEPS = 2000
TRIALS = 128
LR = 1e-3


def cell(init="he_normal", target="abs", loss="mse", net=NARROW, steps=STEPS):
    return TrainCell(net, InitConfig(init), TrainConfig(target=target, loss=loss, optimizer="adam", lr=LR,
                                                         steps=steps, batch_size=64, n_train=3000))


def se(p, n):
    return math.sqrt(max(p * (1 - p), 1 / n) / n)


def assert_median_at(values, reference):
    v = np.asarray(values, np.float64)
    q1, q3 = np.percentile(v, [25, 75])
    se_median = 1.2533 * max((q3 - q1) / 1.349, 1e-4) / math.sqrt(len(v))
    assert abs(np.median(v) - reference) <= 4 * se_median + 5 * LR, (np.median(v), reference, se_median)


@pytest.fixture(scope="module")
def abs_he():
    return train_outcomes(cell(), 0, TRIALS, seed=11)


def test_abs_width2_depth9_he_collapses_to_the_mean(abs_he):
    o = abs_he
    p = o.collapsed.mean()
    # paper: more than 90 % collapse (issue threshold 85 %); 0.85 is > 3.5 SE below the paper's 0.919
    assert p > 0.85 and 0.919 - p < 3.5 * se(0.919, TRIALS), p
    assert not o.diverged.any()
    assert np.all(o.collapsed[o.born_dead])                  # born dead => collapsed
    mean = target_stats("abs", math.sqrt(3)).mean[0]          # 0.8660
    assert abs(mean - math.sqrt(3) / 2) < 1e-9
    assert_median_at(o.collapse_value[o.collapsed, 0], mean)


def test_rai_collapses_far_less_than_he(abs_he):
    o = train_outcomes(cell(init="rai"), 0, TRIALS, seed=11)
    p_he, p_rai = abs_he.collapsed.mean(), o.collapsed.mean()
    # paper 2: 91.9 % -> 29.2 %; we measure about 93 % -> 56 % at 5000 steps (README): a drop of 0.37. The
    # standard error of the difference at 128 trials each is about 0.05, so a drop of 0.2 is 3.5 SE below it.
    assert p_he - p_rai > 0.2, (p_he, p_rai)
    assert o.born_dead.mean() < abs_he.born_dead.mean() / 2
    mean = target_stats("abs", math.sqrt(3)).mean[0]
    assert_median_at(o.collapse_value[o.collapsed, 0], mean)


@pytest.mark.parametrize("loss", ["l1", "mse"])
def test_xsin5x_collapses_to_median_with_l1_and_mean_with_mse(loss):
    stats = target_stats("xsin5x", math.sqrt(3))
    reference = stats.median[0] if loss == "l1" else stats.mean[0]
    assert abs(stats.median[0] - 0.1305) < 5e-4 and abs(stats.mean[0] - 0.1603) < 5e-4  # SCIENCE.md table
    o = train_outcomes(cell(target="xsin5x", loss=loss), 0, TRIALS, seed=12)
    assert o.collapsed.mean() > 0.8
    values = o.collapse_value[o.collapsed, 0]
    assert_median_at(values, reference)
    other = stats.mean[0] if loss == "l1" else stats.median[0]
    assert abs(np.median(values) - other) > 0.015              # and clearly not at the other statistic


def test_wide_shallow_network_trains():
    """Width 16, 2 hidden layers on |x|: almost never collapses and fits well (the trainer really trains)."""
    o = train_outcomes(cell(net=NetworkConfig(16, 2)), 0, 64, seed=13)
    assert o.collapsed.sum() <= 2 and not o.diverged.any()
    assert np.median(o.test_rel_l2) < 0.05, np.median(o.test_rel_l2)
    assert np.all(o.final_loss[~o.collapsed] < 0.01)
