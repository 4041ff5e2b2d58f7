"""Targets, losses, optimizers and the training forward pass against independent references."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_mc.config import InitConfig, NetworkConfig
from collapse_mc.nets.mlp import MLP
from collapse_mc.training import TrainConfig
from collapse_mc.training.forward import forward_t
from collapse_mc.training.losses import l1, mse
from collapse_mc.training.optimizers import make_optimizer
from collapse_mc.training.targets import BUILTIN, target_stats, dense_grid

S3, S7 = math.sqrt(3), math.sqrt(7)


@pytest.mark.parametrize("name, a, mean, median, var", [
    # SCIENCE.md section 5, the constants table (4 decimals)
    ("abs", S3, 0.8660, 0.8660, 0.2500), ("abs", S7, 1.3229, 1.3229, 0.5833),
    ("xsin5x", S3, 0.1603, 0.1305, 0.5598), ("xsin5x", S7, -0.1484, 0.0155, 1.0143),
    ("step", S3, 0.5, None, 0.3109), ("step", S7, 0.5, None, 0.2725),
])
def test_target_stats_match_science_table(name, a, mean, median, var):
    s = target_stats(name, a)
    assert s.mean[0] == pytest.approx(mean, abs=6e-5)
    assert s.var[0] == pytest.approx(var, abs=6e-5)
    if median is not None:
        assert s.median[0] == pytest.approx(median, abs=6e-5)
    else:  # every value in [0.2, 0.8] is a median of 1{x>0} + 0.2 sin 5x
        assert 0.2 <= s.median[0] <= 0.8


def test_target_stats_closed_forms():
    a = S3
    s = target_stats("xsin5x", a)
    # (1/2a) int_{-a}^{a} x sin 5x dx = (1/a) [sin(5a)/25 - a cos(5a)/5]
    assert s.mean[0] == pytest.approx((math.sin(5 * a) / 25 - a * math.cos(5 * a) / 5) / a, abs=1e-6)
    f4 = target_stats("f4", a)
    # x1 + x2 is triangular on [-2a, 2a]: E|s| = 2a/3, E s^2 = 2a^2/3
    assert f4.mean == pytest.approx((2 * a / 3,) * 2, abs=1e-5)
    assert f4.var == pytest.approx((2 * a * a / 3 - (2 * a / 3) ** 2,) * 2, abs=1e-5)


def test_targets_values():
    x = jnp.array([[-1.0], [0.5], [2.0]])
    np.testing.assert_allclose(BUILTIN["abs"](x)[:, 0], [1.0, 0.5, 2.0])
    np.testing.assert_allclose(BUILTIN["xsin5x"](x)[:, 0], [-math.sin(-5.0), 0.5 * math.sin(2.5), 2 * math.sin(10)],
                               rtol=1e-6)
    np.testing.assert_allclose(BUILTIN["step"](x)[:, 0],
                               [0.2 * math.sin(-5), 1 + 0.2 * math.sin(2.5), 1 + 0.2 * math.sin(10)], rtol=1e-6)
    np.testing.assert_allclose(BUILTIN["f4"](jnp.array([[1.0, -3.0]])), [[2.0, 4.0]])


def test_test_grid():
    g = dense_grid(1, S3, 1025)
    assert g.shape == (1025, 1) and g[0, 0] == pytest.approx(-S3) and g[-1, 0] == pytest.approx(S3)
    g2 = dense_grid(2, 1.0, 1000)
    assert g2.shape == (32 * 32, 2) and g2.min() == -1.0 and g2.max() == 1.0
    g3 = dense_grid(3, 1.0, 100)
    assert g3.shape == (100, 3) and np.all(np.abs(g3) <= 1.0) and np.sum(np.all(np.abs(g3) == 1.0, axis=1)) == 8


def test_losses():
    p, t = jnp.array([[1.0, 2.0, 4.0]]), jnp.array([[0.0, 2.0, 1.0]])
    assert float(mse(p, t)) == pytest.approx((1 + 0 + 9) / 3)
    assert float(l1(p, t)) == pytest.approx((1 + 0 + 3) / 3)


def test_heavy_ball_and_adam_with_traced_values():
    """Optimizers built from traced values follow their textbook updates."""
    g1, g2 = 0.5, -0.25

    def two_steps(kind, values):
        static = TrainConfig(optimizer=kind, steps=10).static_part()

        @jax.jit
        def f(v):
            opt = make_optimizer(static, v)
            p = jnp.array(1.0)
            st = opt.init(p)
            out = []
            for g in (g1, g2):
                u, st = opt.update(jnp.array(g), st, p)
                p = p + u
                out.append(p)
            return jnp.stack(out)
        return np.asarray(f({k: jnp.float32(x) for k, x in values.items()}))

    v = dict(lr=0.1, momentum=0.9, beta1=0.8, beta2=0.99, target_scale=1.0)
    # heavy ball: t1 = g1, p1 = 1 - lr g1; t2 = g2 + m t1, p2 = p1 - lr t2
    p1 = 1 - 0.1 * g1
    np.testing.assert_allclose(two_steps("sgd", v), [p1, p1 - 0.1 * (g2 + 0.9 * g1)], rtol=1e-6)
    # nesterov: update uses g + m * (g + m * t_prev)
    t1 = g1
    n1 = 1 - 0.1 * (g1 + 0.9 * t1)
    t2 = g2 + 0.9 * t1
    np.testing.assert_allclose(two_steps("nesterov", v), [n1, n1 - 0.1 * (g2 + 0.9 * t2)], rtol=1e-6)
    # adam with bias correction, eps 1e-8
    m, s, p, ref = 0.0, 0.0, 1.0, []
    for k, g in enumerate((g1, g2), start=1):
        m = 0.8 * m + 0.2 * g
        s = 0.99 * s + 0.01 * g * g
        p -= 0.1 * (m / (1 - 0.8 ** k)) / (math.sqrt(s / (1 - 0.99 ** k)) + 1e-8)
        ref.append(p)
    np.testing.assert_allclose(two_steps("adam", v), ref, rtol=1e-5)
    # a different traced lr changes the result (no constant folding of the first value)
    assert not np.allclose(two_steps("sgd", dict(v, lr=0.2)), two_steps("sgd", v))


@pytest.mark.parametrize("net", [
    NetworkConfig(12, 3),                                   # fan-in > SMALL_FAN_IN: matrix-product path
    NetworkConfig(4, 3, residual=True, activation="leaky_relu"),
    NetworkConfig(5, 1, d_in=2, d_out=2),
])
def test_forward_equals_flax_mlp(net):
    model = MLP(net, InitConfig("he_normal", "normal", 0.3))
    x = np.random.default_rng(0).uniform(-2, 2, (50, net.d_in)).astype(np.float32)

    @jax.jit
    def both(key):
        params = model.init(key, jnp.zeros((1, net.d_in)))["params"]
        return model.apply({"params": params}, x), forward_t(net, params, x.T).T

    ref, out = both(jax.random.key(1))
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("net", [
    NetworkConfig(4, 6),
    NetworkConfig(12, 3),
    NetworkConfig(4, 3, residual=True, activation="leaky_relu", negative_slope=0.2),
    NetworkConfig(3, 4, activation="tanh", d_in=2, d_out=2),
])
def test_hand_written_backward_equals_autodiff_of_flax_mlp(net):
    """``forward_t``'s custom VJP over the hidden layers gives autodiff's gradients of the reference MLP."""
    model = MLP(net, InitConfig("he_normal", "normal", 0.3))
    rng = np.random.default_rng(1)
    x = rng.uniform(-2, 2, (40, net.d_in)).astype(np.float32)
    y = rng.normal(size=(40, net.d_out)).astype(np.float32)
    params = jax.jit(lambda k: model.init(k, jnp.zeros((1, net.d_in)))["params"])(jax.random.key(3))
    ref = jax.jit(jax.grad(lambda p: jnp.mean((model.apply({"params": p}, x) - y) ** 2)))(params)
    ours = jax.jit(jax.grad(lambda p: jnp.mean((forward_t(net, p, x.T).T - y) ** 2)))(params)
    for path, a in jax.tree_util.tree_leaves_with_path(ref):
        b = ours
        for k in path:
            b = b[k.key]
        assert float(jnp.max(jnp.abs(a))) > 0, path
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6, err_msg=str(path))


def test_median_interval_of_targets():
    """Every value between the lower and upper median is an L1 optimum: a point for |x|, [0.2, 0.8] for the step
    target 1{x>0} + 0.2 sin(5x) on [-sqrt 3, sqrt 3] (SCIENCE.md section 5: 'any value in [0.2, 0.8]')."""
    a = math.sqrt(3)
    s = target_stats("abs", a)
    assert abs(s.median_low[0] - a / 2) < 1e-4 and abs(s.median_high[0] - a / 2) < 1e-4
    s = target_stats("step", a)
    assert abs(s.median_low[0] - 0.2) < 1e-4 and abs(s.median_high[0] - 0.8) < 1e-4
