"""A traced active depth (``depth_capacity``): cells of different depths share one compiled program and get
exactly the outcomes of the program built for their own depth, trial for trial."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_mc import native
from collapse_mc.config import ConfigError, InitConfig, NetworkConfig
from collapse_mc.nets.mlp import init_params
from collapse_mc.training import trainer
from collapse_mc.training.config import TrainCell, TrainConfig
from collapse_mc.training.forward import deadness_t, forward_t, loss_and_grad_t, saved_buffers


def _init(net, seed):
    """One He network of ``net`` from ``jax.random.key(seed)``, initialized by one compiled program."""
    return jax.jit(init_params, static_argnums=(0, 1))(net, InitConfig(), jax.random.key(seed))


@pytest.mark.parametrize("width,depth,capacity,init,residual", [
    (3, 3, 8, "he_normal", False),   # some born dead, some die in training
    (2, 1, 4, "rai", False),         # no hidden stack active at all
    (3, 4, 6, "he_normal", True),    # residual blocks
])
def test_capacity_gives_the_outcomes_of_the_cells_own_program(width, depth, capacity, init, residual):
    cell = TrainCell(NetworkConfig(width=width, depth=depth, residual=residual), InitConfig(weights=init),
                     train=TrainConfig(steps=250))
    own = trainer.train_outcomes(cell, 0, 24, seed=5)
    shared = trainer.train_outcomes(cell, 0, 24, seed=5, depth_capacity=capacity)
    for field in own._fields:
        np.testing.assert_array_equal(np.asarray(getattr(shared, field)), np.asarray(getattr(own, field)),
                                      err_msg=field)
    assert own.dead_fraction.shape == (24, depth)
    # the comparison is not vacuous: the cells differ in what happens to their networks
    assert 0 < int(own.collapsed.sum()) < 24 or residual


def test_one_program_serves_every_depth_up_to_its_capacity():
    """Two depths in the same capacity build one TrainMap (one compilation), and stop=dead trials too."""
    cells = [TrainCell(NetworkConfig(width=2, depth=d), train=TrainConfig(steps=100)) for d in (2, 5)]
    maps = {id(trainer.train_map(c, trials=8, depth_capacity=8)) for c in cells}
    assert len(maps) == 1
    own = [trainer.train_map(c, trials=8) for c in cells]
    assert own[0] is not own[1]


def test_forward_and_deadness_at_a_traced_depth_equal_the_shallower_network():
    """forward_t / deadness_t / the gradient with ``depth`` = the network made of the first layers."""
    deep, shallow = NetworkConfig(width=3, depth=7), NetworkConfig(width=3, depth=4)
    params = _init(deep, 1)
    cut = {"input": params["input"], "output": params["output"],
           "hidden": {"affine": params["hidden"]["affine"][:3]}}
    x = jnp.linspace(-1.7, 1.7, 33)[None, :]

    @jax.jit  # each side one program (eagerly, every operation would compile on its own)
    def traced(p, d):
        g = jax.grad(lambda p: jnp.sum(forward_t(deep, p, x, d) ** 2))(p)
        return forward_t(deep, p, x, d), deadness_t(deep, p, x, d), g

    @jax.jit
    def own(p):
        g = jax.grad(lambda p: jnp.sum(forward_t(shallow, p, x) ** 2))(p)
        return forward_t(shallow, p, x), deadness_t(shallow, p, x), g

    (out, (y, dead, const), g), (out2, (y2, dead2, const2), g2) = traced(params, jnp.int32(4)), own(cut)
    np.testing.assert_allclose(out, out2, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(y, y2, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(dead[:4], dead2)
    np.testing.assert_array_equal(dead[4:], 0)
    assert not np.any(const[4:])
    np.testing.assert_allclose(g["hidden"]["affine"][:3], g2["hidden"]["affine"], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(g["hidden"]["affine"][3:], 0)  # skipped layers get no gradient
    np.testing.assert_allclose(g["input"], g2["input"], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("residual", [False, True])
def test_hand_gradient_with_carried_buffers_equals_autodiff(residual):
    """``loss_and_grad_t`` (the traced-depth training step) = ``jax.value_and_grad`` of the loss, bit for bit,
    whatever the carried buffers hold beforehand (NaN here: entries are written before they are read, and
    those above the active depth are never read); the returned buffers hold the active layers' activations.
    XLA's code (the native kernel returns its own buffers: tests/test_native_kernel.py)."""
    with native.override(False):
        _check_carried_buffers(residual)


def _check_carried_buffers(residual):
    net = NetworkConfig(width=3, depth=7, residual=residual)
    params = _init(net, 2)
    x = jnp.linspace(-1.7, 1.7, 16)[None, :]
    y = jnp.abs(x)
    mse = lambda out, target: jnp.mean((out - target) ** 2)  # noqa: E731
    for depth in (jnp.int32(4), jnp.int32(1), None):
        loss, grads = jax.jit(jax.value_and_grad(lambda p: mse(forward_t(net, p, x, depth), y)))(params)
        stale = tuple(jnp.full_like(b, jnp.nan) for b in saved_buffers(net, 16))
        loss2, grads2, (inputs, pre) = jax.jit(lambda p, s: loss_and_grad_t(net, p, x, y, mse, depth, s))(params,
                                                                                                      stale)
        assert float(loss2) == float(loss)
        jax.tree.map(np.testing.assert_array_equal, grads2, grads)
        active = 6 if depth is None else int(depth) - 1
        assert np.isfinite(inputs[:active]).all() and np.isfinite(pre[:active]).all()
        assert np.isnan(pre[active:]).all()  # untouched above the active depth
    assert inputs.shape == pre.shape == (6, 3, 16)


@pytest.mark.parametrize("capacity", [2, 0, 2.5, 5000])
def test_a_capacity_below_the_cells_depth_or_out_of_range_is_refused(capacity):
    cell = TrainCell(NetworkConfig(width=2, depth=3), train=TrainConfig(steps=10))
    with pytest.raises(ConfigError, match="depth_capacity"):
        trainer.train_outcomes(cell, 0, 4, depth_capacity=capacity)
