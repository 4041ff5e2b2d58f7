"""Paper 3: the single-ReLU model (exact checks) and the study's --quick run (directions established by the
full run, asserted with the quick run's own 95 % intervals)."""
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_mc.jobs import paper3
from collapse_mc.jobs import single_relu as sr
from collapse_mc.training import TrainOutcomes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
A = sr.HALF_WIDTH


def unit(*v):
    return sr.Unit(*(jnp.float32(x) for x in v))


# ---- the oscillation condition ----------------------------------------------------------------------------


def test_oscillation_condition_matches_characteristic_roots():
    rng = np.random.default_rng(0)
    etas = 10 ** rng.uniform(-4, 0, 400)
    betas = np.concatenate([[0.0, 0.5, 0.9, 0.99], rng.uniform(0, 0.999, 396)])
    lams = 10 ** rng.uniform(-3, 1.5, 400)
    n_complex = 0
    for eta, beta, lam in zip(etas, betas, lams):
        z = sr.characteristic_roots(eta, beta, lam)
        disc = (1 + beta - eta * lam) ** 2 - 4 * beta
        if abs(disc) < 1e-9:
            continue                                   # a double root: either answer is rounding
        complex_roots = bool(np.abs(z.imag).max() > 0)
        assert bool(sr.oscillates(eta, beta, lam)) == complex_roots
        lo, hi = sr.oscillation_band(beta)
        assert (lo < eta * lam < hi) == complex_roots
        if complex_roots:
            n_complex += 1
            np.testing.assert_allclose(np.abs(z), math.sqrt(beta), rtol=1e-9)
    assert 50 < n_complex < 350                        # both regimes were exercised
    assert not sr.oscillates(0.1, 0.0, 3.0)            # no momentum: never complex
    assert sr.oscillates(0.05, 0.99, 1e-3) and not sr.oscillates(0.05, 0.9, 1e-3)


# ---- the exact population loss ----------------------------------------------------------------------------


def numeric_loss(p, s, n=400001):
    x = np.linspace(-A, A, n)
    mu, sigma = sr.target_moments(A)
    y = p[2] * np.maximum(p[0] * x + p[1], 0.0) + p[3]
    t = s * (np.maximum(x, 0.0) - mu) / sigma
    return np.trapezoid((y - t) ** 2, x) / (2 * A)


def test_population_loss_equals_numeric_integral_and_gradient_finite_differences():
    rng = np.random.default_rng(1)
    for _ in range(6):
        p = rng.normal(size=4)
        s = float(10 ** rng.uniform(-2, 1))
        got = float(sr.population_loss(unit(*p), s))
        np.testing.assert_allclose(got, numeric_loss(p, s), rtol=2e-5, atol=1e-9)
        g = np.array(jax.grad(sr.population_loss)(unit(*p), s))
        h = 1e-4
        fd = np.array([(numeric_loss(p + h * e, s) - numeric_loss(p - h * e, s)) / (2 * h) for e in np.eye(4)])
        np.testing.assert_allclose(g, fd, rtol=2e-3, atol=2e-4)


def test_live_optimum_is_a_zero_of_the_loss_with_the_closed_form_hessian():
    for s, start in ((0.3, (1.0, 0.0, 1.0)), (2.0, (0.4, 0.7, 1.5)), (0.01, (1.5, -0.5, 1.0))):
        opt = sr.live_optimum(*start, s)
        mu, sigma = sr.target_moments(A)
        assert math.isclose(float(opt.w1 * opt.w2), s / sigma, rel_tol=1e-12)
        d = start[0] ** 2 + start[1] ** 2 - start[2] ** 2
        assert math.isclose(float(opt.w1 ** 2 - opt.w2 ** 2), d, rel_tol=1e-9, abs_tol=1e-12)
        v = jnp.array([float(x) for x in opt], jnp.float32)
        assert float(sr.population_loss(sr.Unit(*v), s)) < 1e-10 * max(1.0, s * s)
        hess = np.array(jax.hessian(lambda q: sr.population_loss(sr.Unit(*q), s))(v))
        closed = sr.optimum_hessian(float(opt.w1), float(opt.w2))
        np.testing.assert_allclose(hess, closed, rtol=1e-4, atol=1e-6 * np.abs(closed).max())
        assert math.isclose(closed[1, 1], float(sr.bias_curvature(opt.w2)), rel_tol=1e-12)


# ---- trajectories -------------------------------------------------------------------------------------------


def test_a_unit_started_dead_stays_dead_with_zero_gradient():
    p0 = (0.5, -1.0, 1.3, 0.2)                       # b1 + |w1| sqrt 3 = -0.13 <= 0: dead on [-a, a]
    assert bool(sr.is_dead(unit(*p0)))
    g = jax.grad(sr.population_loss)(unit(*p0), 0.5)
    assert float(g.w1) == 0.0 and float(g.b1) == 0.0 and float(g.w2) == 0.0 and float(g.b2) != 0.0
    p, died, _ = sr.heavy_ball(p0, 0.5, 0.1, 0.9, 300)
    assert int(died) == 0
    assert float(p.w1) == np.float32(0.5) and float(p.b1) == np.float32(-1.0) and float(p.w2) == np.float32(1.3)
    # a live start right beside it is not dead and gets a gradient on b1
    g = jax.grad(sr.population_loss)(unit(0.5, -0.8, 1.3, 0.2), 0.5)
    assert not bool(sr.is_dead(unit(0.5, -0.8, 1.3, 0.2))) and float(g.b1) != 0.0


def _closed_form_error(eta, beta, lam, n):
    """e_t = c1 z1^t + c2 z2^t solving e_{t+1} = (1 + beta - eta lam) e_t - beta e_{t-1}, e_0 = 1, e_1 = 1 - eta lam."""
    z1, z2 = sr.characteristic_roots(eta, beta, lam)
    c = np.linalg.solve(np.array([[1, 1], [z1, z2]]), np.array([1.0, 1 - eta * lam], complex))
    return np.real(c[0] * z1 ** np.arange(n) + c[1] * z2 ** np.arange(n))


def test_dead_unit_output_follows_the_hand_computed_heavy_ball_recursion():
    """Dead unit: y = b2, loss b2^2 + s^2 (normalized target, mean 0), curvature lam = 2 along b2."""
    s, eta, beta = 0.5, 0.1, 0.5
    start = (0.5, -2.0, 1.0, 1.0)
    # by hand: v1 = 2, b2 = 0.8; v2 = 1.6 + 0.5 * 2 = 2.6, b2 = 0.54; v3 = 1.08 + 1.3 = 2.38, b2 = 0.302
    for steps, b2 in ((1, 0.8), (2, 0.54), (3, 0.302)):
        p, _, _ = sr.heavy_ball(start, s, eta, beta, steps)
        assert math.isclose(float(p.b2), b2, rel_tol=1e-6)
    e = _closed_form_error(eta, beta, 2.0, 61)
    p, died, losses = sr.heavy_ball(start, s, eta, beta, 60)
    assert int(died) == 0
    np.testing.assert_allclose(np.asarray(losses), e[:60] ** 2 + s * s, rtol=1e-5)
    # inside the band (1 - sqrt beta)^2 < eta lam = 0.2 < (1 + sqrt beta)^2 the error changes sign
    assert sr.oscillates(eta, beta, 2.0) and e[12] < 0 < e[0]
    p, _, _ = sr.heavy_ball(start, s, eta, beta, 12)
    assert math.isclose(float(p.b2), e[12], rel_tol=1e-4)
    # outside it (eta lam = 0.05 < (1 - sqrt 0.5)^2 = 0.086) the error decays without changing sign
    assert not sr.oscillates(0.025, beta, 2.0)
    e = _closed_form_error(0.025, beta, 2.0, 200)
    assert (e > 0).all()
    _, _, losses = sr.heavy_ball(start, s, 0.025, beta, 200)
    np.testing.assert_allclose(np.asarray(losses), e ** 2 + s * s, rtol=1e-5)


def test_small_steps_conserve_the_gradient_flow_invariant():
    p0 = (0.8, 0.3, 1.2, 0.0)
    p, _, _ = sr.heavy_ball(p0, 1.0, 1e-3, 0.0, 2000)
    inv = lambda q: float(q[2]) ** 2 - float(q[0]) ** 2 - float(q[1]) ** 2  # noqa: E731
    assert abs(inv(p) - inv(p0)) < 5e-3
    assert abs(float(p.w2) - p0[2]) > 0.05          # while the parameters did move


def test_run_map_codes_dead_starts_and_agrees_with_single_runs():
    w1 = np.array([0.5, 1.0, -0.7, 0.0, 1.2])
    b1 = np.array([-1.0, 0.2, 0.1, 0.0, -0.5])
    r = sr.run_map(w1, b1, s=0.01, eta=0.05, beta=0.99, steps=200)
    assert r["outcome"][0] == sr.BORN_DEAD and r["outcome"][3] == sr.BORN_DEAD   # w1 = b1 = 0 is dead too
    for i in (1, 2, 4):
        p, died, _ = sr.heavy_ball((w1[i], b1[i], 1.0, 0.0), 0.01, 0.05, 0.99, 200)
        assert int(died) == int(r["died_at"][i])
        assert r["outcome"][i] == (sr.DIED if int(died) > 0 else sr.ALIVE)
        np.testing.assert_allclose(float(p.w1), r["w1"][i], rtol=1e-3, atol=1e-6)   # float32, 200 momentum steps


# ---- the study's records ------------------------------------------------------------------------------------


def test_cell_record_counts_dead_blocks_and_dead_fraction():
    from collapse_mc.config import InitConfig, NetworkConfig
    from collapse_mc.training import TrainCell, TrainConfig
    cell = TrainCell(NetworkConfig(4, 3, residual=True), InitConfig(),
                     TrainConfig(normalize_target=True, target_scale=0.1, optimizer="sgd", steps=10))
    t = 5
    df = np.array([[0.0, 1.0, 0.25],                # block 2 dead, output alive
                   [0.5, 0.5, 0.5],
                   [1.0, 0.0, 0.0],                 # first layer dead: dead network, no block dead
                   [np.nan] * 3,                    # diverged
                   [0.25, 0.0, 1.0]], np.float32)   # block 3 dead
    f = np.zeros(t, bool)
    o = TrainOutcomes(first_dead_layer=np.zeros(t, np.int32), born_dead=f, collapsed=np.array([0, 0, 1, 0, 0], bool),
                      diverged=np.array([0, 0, 0, 1, 0], bool), collapse_value=np.full((t, 1), np.nan, np.float32),
                      final_loss=np.zeros(t, np.float32), test_rel_l2=np.zeros(t, np.float32), dead_fraction=df,
                      dead_after_training=np.array([0, 0, 1, 0, 0], bool), near_flat_at_init=f,
                      died_at_step=np.array([-1, -1, 5, -1, -1], np.int32), trained_to_end=np.ones(t, bool))
    rec = paper3.cell_record({"depth": 3, "residual": True}, cell, o)
    assert rec["p_some_block_dead_k"] == 2 and rec["p_some_block_dead_n"] == 4
    assert rec["p_dead_after_training"] == 0.25                       # 1 of the 4 decided trials
    per_trial = np.array([1.25 / 3, 0.5, 1 / 3, 1.25 / 3])
    assert math.isclose(rec["dead_fraction_mean"], per_trial.mean(), rel_tol=1e-6)
    half = 1.96 * per_trial.std(ddof=1) / 2
    assert math.isclose(rec["dead_fraction_ci_high"] - rec["dead_fraction_mean"], half, rel_tol=1e-5)
    np.testing.assert_allclose(rec["dead_fraction_per_layer"], [0.4375, 0.375, 0.4375], rtol=1e-6)


def test_separated_reads_interval_order():
    a = {"p_dead_after_training": 0.5, "p_dead_after_training_ci_low": 0.4, "p_dead_after_training_ci_high": 0.6}
    b = {"p_dead_after_training": 0.1, "p_dead_after_training_ci_low": 0.05, "p_dead_after_training_ci_high": 0.2}
    c = {"p_dead_after_training": 0.3, "p_dead_after_training_ci_low": 0.15, "p_dead_after_training_ci_high": 0.45}
    assert paper3.separated(a, b, "p_dead_after_training") == 1
    assert paper3.separated(b, a, "p_dead_after_training") == -1
    assert paper3.separated(a, c, "p_dead_after_training") == 0


# ---- the --quick study ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("paper3")
    p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "paper3_target_momentum.py"), "--quick",
                        "--out", str(tmp / "fig"), "--results", str(tmp / "r.json"), "--json"],
                       capture_output=True, text=True, timeout=600, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout), tmp


def test_quick_run_writes_results_and_figures(quick):
    res, tmp = quick
    with open(tmp / "r.json") as f:
        saved = json.load(f)
    assert len(saved["cells"]) == len(paper3.QUICK.cells()) == 4
    for c in saved["cells"]:
        assert c["trials"] == paper3.QUICK.trials and 0 <= c["dead_fraction_mean"] <= 1
        assert c["p_dead_after_training_ci_low"] <= c["p_dead_after_training"] <= c["p_dead_after_training_ci_high"]
    names = {os.path.basename(p) for p in res["figures"]}
    assert {"dead_fraction_vs_target_std.png", "p_dead_vs_target_std.png", "single_relu_map.png"} <= names
    assert all(os.path.getsize(p) > 10_000 for p in res["figures"] if p.endswith(".png"))


def test_quick_run_momentum_and_small_targets_kill_more(quick):
    """Directions the full run established with non-overlapping intervals at L_h 4, plain (README, paper 3):
    SGD momentum 0.99 kills more networks than momentum 0 at target std 1e-4, and more at std 1e-4 than at std
    1. Asserted with the quick run's own Wilson intervals (64 networks, 200 steps)."""
    cells = quick[0]["cells"]
    hi_small = paper3.one(cells, momentum=0.99, target_std=1e-4)
    zero_small = paper3.one(cells, momentum=0.0, target_std=1e-4)
    hi_unit = paper3.one(cells, momentum=0.99, target_std=1.0)
    assert paper3.separated(hi_small, zero_small, "p_dead_after_training") == 1
    assert paper3.separated(hi_small, hi_unit, "p_dead_after_training") == 1
    assert paper3.separated(hi_small, zero_small, "dead_fraction_mean") == 1


def test_quick_single_relu_momentum_kills_live_starts(quick):
    """Full run (41 x 41 starts, 1000 steps): at target std 0.01, eta 0.05, beta 0.99 kills 99 % of the live
    starts and beta 0 none."""
    maps = {(m["target_std"], m["beta"]): m for m in quick[0]["single_relu"]["maps"]}
    assert maps[(0.01, 0.99)]["p_died_of_alive_starts"] > 0.9
    assert maps[(0.01, 0.0)]["p_died_of_alive_starts"] < 0.1
    out = np.array(maps[(0.01, 0.0)]["outcome"])
    g = np.array(quick[0]["single_relu"]["grid"]["w1"])
    w1, b1 = np.meshgrid(g, g, indexing="xy")
    np.testing.assert_array_equal(out == sr.BORN_DEAD, b1 + np.abs(w1) * A <= 0)
