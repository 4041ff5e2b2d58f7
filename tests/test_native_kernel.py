"""The native CPU kernel of the hidden stack (collapse_mc/native) against XLA's code for the same arithmetic.

Reports (dead neurons, constant layers) must agree exactly; outputs and gradients to float32 rounding (the
kernel sums the weight gradients in another order); the kernel's Adam with optax's to float32 rounding;
training outcomes of a short run exactly. Where no C++
compiler is found, training falls back to XLA's code with one warning (tested in a subprocess)."""
import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from collapse_mc import native
from collapse_mc.config import InitConfig, NetworkConfig
from collapse_mc.nets.mlp import init_params
from collapse_mc.training import TrainCell, TrainConfig, train_outcomes
from collapse_mc.training.forward import any_dead_t, deadness_t, forward_t, loss_and_grad_t, native_spec, saved_buffers

pytestmark = pytest.mark.skipif(not native.available(), reason=f"native kernel unavailable: {native.status()}")

# (width, activation, residual): every code path of the kernel (ReLU reads its derivative off the output;
# leaky ReLU and residual layers save pre-activations), widths 1 and 16 at the ends of the compiled range
NETS = [(1, "relu", False), (5, "relu", False), (12, "relu", False), (16, "relu", False), (3, "leaky_relu", False),
        (12, "leaky_relu", True), (4, "relu", True)]


POINTS = (1, 37, 64)  # one point (a report's special case), a tail of 5 after two 16-lane blocks, whole blocks
# nets that run every point count; the others run the general case only (two blocks and a tail), which keeps
# the compilations down while every edge case still meets a ReLU net and a leaky residual one
EVERY_POINT_COUNT = ((5, "relu", False), (12, "leaky_relu", True))
DEPTHS = (None, 5)  # the network's own depth, and a traced depth below it


def _both(fn):
    """``fn()`` traced with the kernel and with XLA's code: ``(native, xla)``."""
    with native.override(True):
        a = fn()
    with native.override(False):
        b = fn()
    return a, b


def _both_compiled(fn, *args):
    """``fn(*args)`` traced once with the kernel and once with XLA's code inside one compiled program (the
    choice is made at trace time; one compilation covers all of a test's cases): ``(native, xla)``."""
    return jax.jit(lambda *args: _both(lambda: fn(*args)))(*args)


def _points(net, counts=POINTS, general=37):
    """The point counts a test runs on ``net``: all of ``counts`` on the ``EVERY_POINT_COUNT`` nets."""
    return counts if net in EVERY_POINT_COUNT else (general,)


def _grid(points):
    """``points`` evenly spaced inputs on [-1.7, 1.7], shape ``(1, points)`` (NumPy: no program compiled)."""
    return jnp.asarray(np.linspace(-1.7, 1.7, points, dtype=np.float32)[None, :])


def _traced(depth):
    return None if depth is None else jnp.int32(depth)


def _net(width, activation, residual, depth=9):
    return NetworkConfig(width=width, depth=depth, activation=activation, residual=residual)


def test_kernel_runs_the_stack_only_where_it_applies():
    assert native_spec(_net(12, "relu", False)) == ("relu", 0.01)
    assert native_spec(_net(17, "relu", False)) is None  # wider than the compiled widths
    assert native_spec(_net(4, "tanh", False)) is None
    with native.override(False):
        assert native_spec(_net(4, "relu", False)) is None


def _networks(net, count, seed=0):
    """``count`` He networks of ``net`` (weights N(0, 2 / fan_in), zero biases) stacked on a leading axis (the
    kernel's calls are then batched, as in training). Drawn with NumPy into ``init_params``'s tree: the same
    distribution, without compiling an initialization program (or its eager pieces) for every shape."""
    rng = np.random.default_rng(seed)
    tree = jax.eval_shape(lambda k: init_params(net, InitConfig(), k), jax.random.key(0))

    def draw(leaf):  # an augmented matrix (..., fan_in + 1, fan_out), last row the bias
        w = rng.normal(0.0, np.sqrt(2.0 / (leaf.shape[-2] - 1)), (count, *leaf.shape)).astype(np.float32)
        w[..., -1, :] = 0.0
        return jnp.asarray(w)

    return jax.tree.map(draw, tree)


@pytest.mark.parametrize("width,activation,residual", NETS)
def test_report_equals_xla(width, activation, residual):
    """``deadness_t`` (born dead, death checks, classification): the same dead-neuron counts and constant
    layers, exactly, and the same outputs to rounding, own depth and traced depth, on He networks of which
    many have dead layers (so the counts are exercised); every ``POINTS`` case on the ``EVERY_POINT_COUNT``
    nets."""
    net = _net(width, activation, residual)
    params = _networks(net, 6)
    xs = [_grid(points) for points in _points((width, activation, residual))]

    def reports(params, xs):
        return [jax.vmap(lambda p, x=x, depth=depth: deadness_t(net, p, x, _traced(depth)))(params)
                for x in xs for depth in DEPTHS]

    dead_layers = 0
    for (y1, d1, c1), (y0, d0, c0) in zip(*_both_compiled(reports, params, xs)):
        np.testing.assert_array_equal(d1, d0)
        np.testing.assert_array_equal(c1, c0)
        np.testing.assert_allclose(y1, y0, rtol=1e-5, atol=1e-6)
        dead_layers += int(np.sum(d0 > 0))
    if width <= 5 and not residual:
        assert dead_layers > 0


@pytest.mark.parametrize("width,activation,residual", NETS)
def test_death_check_equals_the_report(width, activation, residual):
    """``any_dead_t`` (the death check: a first pass over the first points, the whole set only where a layer
    is dead there) gives exactly ``deadness_t``'s ``any(constant & (dead == width))``, own and traced depth,
    on a point set longer than the first pass, and on the ``EVERY_POINT_COUNT`` nets shorter ones too (one
    point, 37)."""
    net = _net(width, activation, residual)
    params = _networks(net, 16, seed=1)
    xs = [jnp.asarray(np.random.default_rng(100 + points).uniform(-1.7, 1.7, (1, points)), jnp.float32)
          for points in _points((width, activation, residual), (1, 37, 300), 300)]
    cases = [(x, depth) for x in xs for depth in DEPTHS]

    def checks_and_reports(params, xs):
        with native.override(True):
            checks = [jax.vmap(lambda p, x=x, depth=depth: any_dead_t(net, p, x, _traced(depth)))(params)
                      for x, depth in cases]
        with native.override(False):
            reports = [jax.vmap(lambda p, x=x, depth=depth: deadness_t(net, p, x, _traced(depth))[1:])(params)
                       for x, depth in cases]
        return checks, reports

    seen = set()
    for (x, depth), fast, (d, c) in zip(cases, *jax.jit(checks_and_reports)(params, xs)):
        fast = np.asarray(fast)
        np.testing.assert_array_equal(fast, np.any(np.asarray(c) & (np.asarray(d) == width), axis=1),
                                      err_msg=f"{x.shape[1]} points, depth {depth}")
        seen.update(fast.tolist())
    if activation == "relu" and not residual and width <= 5:
        assert True in seen  # narrow He networks: dead ones are checked too (wider ones are mostly alive)
    if width >= 12:
        assert False in seen


def test_death_check_looks_past_the_first_points():
    """A stacked layer dead on the first points (x < 1 of a sorted set) but alive beyond them is not dead:
    the check must run the whole set (its second pass); and with the live points removed it is dead."""
    net = _net(1, "relu", False, depth=3)
    params = {"input": jnp.array([[1.0], [-1.0]]),  # h = relu(x - 1): zero unless x > 1
              "hidden": {"affine": jnp.array([[[1.0], [0.0]], [[1.0], [0.0]]])},  # relu(h): alive only where x > 1
              "output": jnp.array([[1.0], [0.0]])}
    x = _grid(3000)
    with native.override(True):
        assert not bool(jax.jit(lambda p: any_dead_t(net, p, x))(params))
        params_dead = {**params, "input": jnp.array([[1.0], [-2.0]])}  # relu(x - 2) = 0 on [-1.7, 1.7]
        assert bool(jax.jit(lambda p: any_dead_t(net, p, x))(params_dead))
    with native.override(False):
        _, d, c = deadness_t(net, params, x)
        assert not bool(jnp.any(c & (d == 1)))


def test_report_sees_nan_as_neither_dead_nor_constant():
    net = _net(3, "relu", False, depth=4)
    params = jax.tree.map(lambda leaf: leaf[0], _networks(net, 1))
    params = {**params, "hidden": {"affine": params["hidden"]["affine"].at[1, 0, 0].set(jnp.nan)}}
    x = _grid(40)
    (y1, d1, c1), (y0, d0, c0) = _both(lambda: jax.jit(lambda p: deadness_t(net, p, x))(params))
    np.testing.assert_array_equal(d1, d0)
    np.testing.assert_array_equal(c1, c0)
    assert np.isnan(y1).all() == np.isnan(y0).all()


@pytest.mark.parametrize("width,activation,residual", NETS)
def test_gradients_equal_xla(width, activation, residual):
    """The training step's loss and gradients as training computes them (``loss_and_grad_t`` at a traced
    depth; autodiff through ``forward_t`` at the network's own depth) agree with XLA's code to float32
    rounding, network by network; layers above the traced depth get zero (every ``POINTS`` case on the
    ``EVERY_POINT_COUNT`` nets)."""
    net = _net(width, activation, residual, depth=7)
    mse = lambda out, target: jnp.mean((out - target) ** 2)  # noqa: E731
    params = _networks(net, 3, seed=2)
    xs = [_grid(points) for points in _points((width, activation, residual))]

    def gradients(params, xs):
        out = []
        for x in xs:
            y, points = jnp.abs(x), x.shape[1]
            step = jax.vmap(lambda p: loss_and_grad_t(net, p, x, y, mse, jnp.int32(4), saved_buffers(net, points))[:2])
            auto = jax.vmap(jax.value_and_grad(lambda p: mse(forward_t(net, p, x), y)))
            out.append((step(params), auto(params)))
        return out

    for mine, xla in zip(*_both_compiled(gradients, params, xs)):
        for u, v in zip(jax.tree.leaves(mine), jax.tree.leaves(xla)):
            for k in range(3):
                scale = float(np.max(np.abs(v[k]))) or 1.0
                np.testing.assert_allclose(u[k], v[k], rtol=0, atol=2e-5 * scale)
        np.testing.assert_array_equal(mine[0][1]["hidden"]["affine"][:, 3:], 0)


def test_adam_equals_optax():
    """``native.adam_update`` against ``optax.adam`` + ``apply_updates`` over several updates, vmapped over
    networks: every leaf to float32 rounding; rows at and above ``rows`` (zero gradient, zero moments: layers
    above a trial's depth) exactly unchanged, as optax leaves them."""
    import optax
    b1, b2, lr = 0.8, 0.95, 3e-2
    opt = optax.adam(lr, b1=b1, b2=b2)
    rng = np.random.default_rng(5)
    normal = lambda shape, scale=1: jnp.asarray(rng.normal(size=shape) * scale, jnp.float32)  # noqa: E731
    params = {"a": normal((3, 6, 5, 4)), "b": normal((3, 2, 4)), "c": normal((3,))}
    rows = 4  # of a's 6
    state = jax.vmap(opt.init)(params)
    mine = (params, state[0].mu, state[0].nu)

    @jax.jit
    def step(mine, state, params, g, t):
        g = {**g, "a": g["a"].at[:, rows:].set(0.0)}
        updates, state = jax.vmap(opt.update)(g, state, params)
        params = optax.apply_updates(params, updates)
        hyper = jnp.array([lr, b1, b2, 1e-8, 0.0, 1 - b1 ** t, 1 - b2 ** t], jnp.float32)
        p, m, v = mine
        out = {k: jax.vmap(lambda *a, k=k: native.adam_update(*a, rows if k == "a" else a[0].shape[0] if a[0].ndim
                                                              else 1, hyper))(p[k], g[k], m[k], v[k]) for k in p}
        return tuple({k: out[k][i] for k in out} for i in range(3)), state, params

    for t in range(1, 6):
        g = jax.tree.map(lambda x: normal(x.shape, t), params)
        mine, state, params = step(mine, state, params, g, jnp.int32(t))
        for ours, theirs in ((mine[0], params), (mine[1], state[0].mu), (mine[2], state[0].nu)):
            for k in ours:
                np.testing.assert_allclose(ours[k], theirs[k], rtol=2e-6, atol=1e-7, err_msg=f"{k} update {t}")
    np.testing.assert_array_equal(mine[0]["a"][:, rows:], params["a"][:, rows:])
    assert not np.any(np.asarray(mine[1]["a"][:, rows:])) and not np.any(np.asarray(mine[2]["a"][:, rows:]))


def test_training_outcomes_equal_xla():
    """A short trained cell (He, width 4, L_h 6, Adam, 300 steps, networks dying along the way): every
    classification and death step the same with the kernel as with XLA's code, losses to rounding."""
    cell = TrainCell(NetworkConfig(4, 6), InitConfig(),
                     TrainConfig(lr=1e-2, steps=300, batch_size=16, n_train=128, test_points=65))

    def run():
        jax.clear_caches()
        from collapse_mc.training import trainer
        trainer._train_map.cache_clear()
        return train_outcomes(cell, 0, 24, seed=3, after_death="stop")

    a, b = _both(run)
    for f in ("born_dead", "collapsed", "diverged", "dead_after_training", "died_at_step", "trained_to_end"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    # rounding differences grow over 300 steps at lr 1e-2 (0.5 % seen in one of 24 losses); classifications are exact
    np.testing.assert_allclose(a.final_loss, b.final_loss, rtol=2e-2, atol=1e-6)
    assert 0 < int(np.sum(b.dead_after_training & ~b.born_dead)) < 24  # some die in training, not all


@pytest.mark.parametrize("points,batch,step0", [(3000, 64, 0), (1, 5, 7), (7, 16, 4900), (65536, 33, 123456),
                                                 (100000, 8, 0), (2 ** 31 - 1, 3, 9), (1000, 1, 2)])
def test_minibatch_indices_equal_jax(points, batch, step0):
    """The fused steps' minibatch draws are ``jax.random.randint(fold_in(key, t), (batch,), 0, points)`` bit
    for bit (threefry, the multiply-and-remainder of randint; spans that are and are not powers of two, one
    point, one index, whole and partial vector blocks, large step counters), vmapped over keys."""
    keys = jax.random.split(jax.random.key(points % 1000), 3)
    mine = jax.jit(jax.vmap(lambda k: native.minibatch_indices(jax.random.key_data(k), step0, 40, batch, points)))(keys)
    ref = jax.jit(jax.vmap(lambda k: jax.vmap(lambda t: jax.random.randint(jax.random.fold_in(k, t), (batch,), 0,
                                                                         points))(step0 + jnp.arange(40))))(keys)
    np.testing.assert_array_equal(np.asarray(mine), np.asarray(ref))


def _program_and_state(cell, n, depth_capacity=None):
    from collapse_mc.training.trainer import _program, values_array
    from collapse_mc import rng
    net = cell.network if depth_capacity is None else NetworkConfig(cell.network.width, depth_capacity)
    prog = _program(net, cell.init, cell.train.static_part(), None, traced_depth=depth_capacity is not None)
    values = values_array(cell, traced_depth=depth_capacity is not None)
    keys = rng.root_keys(jnp.array([0, cell.cell], jnp.uint32), jnp.arange(n, dtype=jnp.int32))
    state, data, _ = jax.jit(jax.vmap(prog.init, in_axes=(0, None)))(keys, values)
    return prog, values, keys, state, data


@pytest.mark.parametrize("width,depth,capacity,batch", [(5, 4, None, 16), (12, 6, 16, 16), (1, 1, 8, 16),
                                                       (3, 5, None, None)])
def test_fused_steps_equal_step_by_step(width, depth, capacity, batch):
    """One block of whole steps in the kernel (``native.train_steps``) against the step-by-step program (the
    kernel's stack and Adam inside XLA's step), from the same state: parameters and Adam moments to float32
    rounding, the step count and the finite flag exactly, layers above the depth untouched; the block runs
    past the last step (steps 137, block 100 from step 100: 37 steps) and from its start; minibatches and the
    full batch."""
    cell = TrainCell(NetworkConfig(width, depth), InitConfig(),
                     TrainConfig(lr=1e-2, steps=137, batch_size=batch, n_train=96, test_points=33))
    prog, values, keys, state, data = _program_and_state(cell, 4, capacity)
    assert prog.fused_steps

    def block(s, d, k, step0):
        return prog.full_steps(s, d, k, values, step0, 100)

    # two jitted functions (each traced at its first call, under its own setting), the start step traced
    fused_block, plain_block = (jax.jit(jax.vmap(block, in_axes=(0, 0, 0, None))) for _ in range(2))
    for step0 in (0, 100):
        with native.override_fused(True):
            fused = fused_block(state, data, keys, jnp.int32(step0))
        with native.override_fused(False):
            plain = plain_block(state, data, keys, jnp.int32(step0))
        np.testing.assert_array_equal(fused.opt_state[0].count, plain.opt_state[0].count)
        assert int(fused.opt_state[0].count[0]) == int(state.opt_state[0].count[0]) + (100 if step0 == 0 else 37)
        np.testing.assert_array_equal(fused.finite, plain.finite)
        for a, b in zip(jax.tree.leaves((fused.params, fused.opt_state)), jax.tree.leaves((plain.params, plain.opt_state))):
            scale = float(np.max(np.abs(b))) or 1.0
            np.testing.assert_allclose(a, b, rtol=0, atol=2e-4 * scale)
        if capacity is not None:
            top = fused.params["hidden"]["affine"][:, depth - 1:]
            np.testing.assert_array_equal(top, state.params["hidden"]["affine"][:, depth - 1:])


def test_fused_steps_only_where_they_apply():
    """Whole steps run in the kernel for ReLU networks trained with plain Adam on the MSE, in minibatches or
    the full batch (a single hidden layer too); not for leaky ReLU, residual blocks, another loss or another
    optimizer (those keep the step-by-step program), nor when turned off."""
    from collapse_mc.training.trainer import _program
    base = TrainConfig(steps=10, batch_size=16, n_train=96, test_points=33)

    def fused(net=NetworkConfig(4, 5), **kw):
        cell = TrainCell(net, InitConfig(), dataclasses.replace(base, **kw))
        return _program(cell.network, cell.init, cell.train.static_part(), None).fused_steps

    assert fused()
    assert not fused(NetworkConfig(4, 5, activation="leaky_relu"))
    assert not fused(NetworkConfig(4, 5, residual=True))
    assert fused(NetworkConfig(4, 1))
    assert not fused(loss="l1")
    assert not fused(optimizer="sgd")
    assert fused(batch_size=None)  # the full batch: every point, in order
    with native.override_fused(False):
        assert not fused()


def test_fused_training_outcomes_equal_step_by_step():
    """The short trained cell of ``test_training_outcomes_equal_xla`` with whole steps in the kernel and step
    by step: every classification and death step the same, losses to rounding."""
    cell = TrainCell(NetworkConfig(4, 6), InitConfig(),
                     TrainConfig(lr=1e-2, steps=300, batch_size=16, n_train=128, test_points=65))

    def run(use):
        jax.clear_caches()
        from collapse_mc.training import trainer
        trainer._train_map.cache_clear()
        with native.override_fused(use):
            return train_outcomes(cell, 0, 24, seed=3, after_death="stop", depth_capacity=16)

    a, b = run(True), run(False)
    for f in ("born_dead", "collapsed", "diverged", "dead_after_training", "died_at_step", "trained_to_end"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    np.testing.assert_allclose(a.final_loss, b.final_loss, rtol=1e-3, atol=1e-7)
    assert 0 < int(np.sum(b.dead_after_training & ~b.born_dead)) < 24


@pytest.mark.parametrize("after_death,steps,capacity", [("stop", 1250, 16), ("full", 700, None)])
def test_windowed_blocks_equal_block_by_block(monkeypatch, after_death, steps, capacity):
    """Whole steps run ``WINDOW_BLOCKS`` blocks per call (death checks inside, dead networks frozen under
    "stop"): every outcome, death step and final loss bit for bit those of one call per block (the same
    arithmetic), including a last window that runs past the last step (1250 steps: 13 blocks)."""
    from collapse_mc.training import trainer
    cell = TrainCell(NetworkConfig(4, 6), InitConfig(),
                     TrainConfig(lr=1e-2, steps=steps, batch_size=16, n_train=128, test_points=65))

    def run():
        jax.clear_caches()
        trainer._train_map.cache_clear()
        return train_outcomes(cell, 0, 24, seed=3, after_death=after_death, depth_capacity=capacity)

    windowed = run()
    monkeypatch.setattr(trainer.TrainMap, "windowed", lambda self, after_death: False)
    blocked = run()
    for f in windowed._fields:
        a, b = getattr(windowed, f), getattr(blocked, f)
        if a is not None:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=f)
    died = blocked.died_at_step
    assert np.any(died == 0) and np.any(died > 0) and np.any(died < 0)  # dead at init, in training, never


_FALLBACK = """
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from collapse_mc import native
    from collapse_mc.config import InitConfig, NetworkConfig
    from collapse_mc.training import TrainCell, TrainConfig, train_outcomes
    out = train_outcomes(TrainCell(NetworkConfig(3, 3), InitConfig(), TrainConfig(steps=20, n_train=32,
                         batch_size=8, test_points=33)), 0, 4)
print(json.dumps({"status": native.status(), "trials": int(out.collapsed.shape[0]),
                  "warnings": [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]}))
"""


def _run(env_extra, tmp_path):
    env = dict(os.environ, COLLAPSE_MC_NATIVE_DIR=str(tmp_path / "native"), **env_extra)
    p = subprocess.run([sys.executable, "-c", _FALLBACK], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_without_a_compiler_training_falls_back_with_one_warning(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    res = _run({"PATH": str(empty), "CXX": ""}, tmp_path)
    assert res["status"]["available"] is False and "no C++ compiler" in res["status"]["reason"]
    assert res["trials"] == 4
    assert len([w for w in res["warnings"] if "native CPU kernel is unavailable" in w]) == 1
    assert not (tmp_path / "native").exists() or not list((tmp_path / "native").glob("*.so"))


def test_disabled_by_environment_without_a_warning(tmp_path):
    res = _run({native.DISABLE_ENV: "1"}, tmp_path)
    assert res["status"] == {"enabled": False, "available": False, "reason": f"disabled by {native.DISABLE_ENV}=1",
                             "path": None}
    assert res["warnings"] == [] and res["trials"] == 4


def test_command_line_no_native_never_builds_the_kernel(tmp_path):
    """``collapse-mc --no-native`` (anywhere on the line) trains in XLA's code: the kernel is not even built
    into an empty cache folder, and the command's results come out as usual."""
    env = dict(os.environ, COLLAPSE_MC_NATIVE_DIR=str(tmp_path / "native"))
    env.pop(native.DISABLE_ENV, None)
    cmd = [sys.executable, "-c", "from collapse_mc.cli import main; raise SystemExit(main())", "estimate",
           "--width", "3", "--depth", "3", "--trials", "4", "--steps", "20", "--no-progress", "--json", "--no-native"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout)
    assert out["trials"] == 4
    assert not (tmp_path / "native").exists() or not list((tmp_path / "native").glob("*.so"))
