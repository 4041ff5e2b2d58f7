"""Closed-form theory and binomial intervals, against formulas computed independently here."""
import math

import pytest

from collapse_mc import theory
from collapse_mc.estimates import betainc, clopper_pearson, wilson


@pytest.mark.parametrize("n,l", [(1, 1), (2, 9), (3, 9), (5, 9), (10, 9), (4, 50), (12, 64)])
def test_single_input_formula(n, l):
    assert theory.p_dead_single_input(n, l) == pytest.approx(1 - (1 - 2.0 ** -n) ** l, rel=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6, 8, 10, 12])
@pytest.mark.parametrize("p", [0.01, 0.1, 0.5])
def test_max_depth_is_the_inverse(n, p):
    d = theory.max_depth_below(n, p)
    assert d == math.floor(math.log(1 - p) / math.log(1 - 2.0 ** -n))
    if d >= 1:
        assert theory.p_dead_single_input(n, d) <= p + 1e-12
    assert theory.p_dead_single_input(n, d + 1) > p


def test_max_depth_grows_like_2_to_the_n():
    # about 2^N * (-ln(1 - p)) for large N
    assert theory.max_depth_below(20, 0.1) == pytest.approx(2 ** 20 * -math.log(0.9), rel=1e-4)


def test_min_width_grows_like_log2_depth_over_delta():
    for depth in (10, 100, 1000, 10000):
        n = theory.min_width_for(depth, 0.01)
        assert theory.p_dead_single_input(n, depth) <= 0.01 < theory.p_dead_single_input(n - 1, depth)
        assert abs(n - math.log2(depth / 0.01)) <= 1.0


def test_limit_is_the_deep_limit_of_the_single_input_probability():
    # p_dead_limit(N) is lim_{L -> inf} of 1 - (1 - 2^-N)^L: check it against the formula far out in depth,
    # where the gap to 1 is (1 - 2^-N)^L (about e^-16 at L = 16 * 2^N), and that the approach is monotone
    for width in (1, 3, 6, 10):
        depths = [2 ** width * k for k in (1, 4, 16)]
        ps = [theory.p_dead_single_input(width, d) for d in depths]
        assert ps == sorted(ps) and ps[0] < theory.p_dead_limit(width)
        assert abs(theory.p_dead_limit(width) - ps[-1]) == pytest.approx((1 - 2.0 ** -width) ** depths[-1],
                                                                         rel=1e-6, abs=1e-12)
        assert abs(theory.p_dead_limit(width) - ps[-1]) < 2e-7
    with pytest.raises(ValueError):
        theory.p_dead_limit(0)


def _binom_cdf(k, n, p):
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))


@pytest.mark.parametrize("k,n", [(0, 10), (1, 10), (5, 10), (10, 10), (3, 40), (37, 40), (120, 1000)])
def test_clopper_pearson_solves_the_binomial_tails(k, n):
    e = clopper_pearson(k, n)
    if k > 0:   # P(X >= k | p_low) = 0.025
        assert 1 - _binom_cdf(k - 1, n, e.ci_low) == pytest.approx(0.025, abs=1e-7)
    else:
        assert e.ci_low == 0.0
    if k < n:   # P(X <= k | p_high) = 0.025
        assert _binom_cdf(k, n, e.ci_high) == pytest.approx(0.025, abs=1e-7)
    else:
        assert e.ci_high == 1.0


def test_betainc_matches_closed_forms():
    # I_x(a, 1) = x^a ; I_x(1, b) = 1 - (1 - x)^b
    for x in (0.1, 0.37, 0.9):
        assert betainc(2.5, 1, x) == pytest.approx(x ** 2.5, rel=1e-10)
        assert betainc(1, 3.0, x) == pytest.approx(1 - (1 - x) ** 3, rel=1e-10)


def test_wilson_formula_and_coverage_of_cp():
    z = 1.959963984540054
    k, n = 30, 200
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    e = wilson(k, n)
    assert (e.ci_low, e.ci_high) == pytest.approx((centre - half, centre + half), rel=1e-12)
    cp = clopper_pearson(k, n)
    assert cp.ci_low < e.ci_low and cp.ci_high > e.ci_high   # CP is the conservative one
    assert wilson(0, 50).ci_low == 0.0 and wilson(50, 50).ci_high == 1.0


def test_bad_counts_raise():
    with pytest.raises(ValueError):
        wilson(5, 3)
    with pytest.raises(ValueError):
        clopper_pearson(0, 0)


def test_no_theory_where_it_does_not_apply_and_trial_range_is_checked():
    """RAI (and biases, residual, non-ReLU) get no single-input 'theory' next to a measured value; trial
    indices beyond int32 are refused instead of silently repeating earlier trials."""
    import pytest
    from collapse_mc.config import ConfigError, InitConfig, NetworkConfig
    from collapse_mc.deadness import BornDeadCell, born_dead_outcomes, estimate_born_dead
    from collapse_mc.theory import p_dead_single_input
    from collapse_mc.training import TrainCell, train_outcomes
    assert estimate_born_dead(BornDeadCell(NetworkConfig(2, 3), InitConfig("rai")), 64)["theory_single_input"] is None
    he = estimate_born_dead(BornDeadCell(NetworkConfig(2, 3)), 64)["theory_single_input"]
    assert he == p_dead_single_input(2, 3) == 1 - (1 - 0.25) ** 3
    for fn, cell in ((born_dead_outcomes, BornDeadCell(NetworkConfig(2, 3))), (train_outcomes, TrainCell(NetworkConfig(2, 3)))):
        with pytest.raises(ConfigError, match="2\\^31"):
            fn(cell, 2 ** 32, 2 ** 32 + 64)
