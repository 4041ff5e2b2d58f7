"""The generic model path: a user's Flax module and data set through the same driver as the fast path."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from collapse_mc import rng
from collapse_mc.config import ConfigError, InitConfig, NetworkConfig
from collapse_mc.nets import MLP
from collapse_mc.nets.observe import hidden_report, layer_report, observed_apply
from collapse_mc.training import TrainCell, TrainConfig, train_outcomes
from collapse_mc.training.data import Dataset
from tests.user_models import ConstantPositiveLayer, ResidualMLP

EXACT = ("first_dead_layer", "born_dead", "collapsed", "diverged", "dead_after_training", "near_flat_at_init",
         "died_at_step", "trained_to_end")
FLOATS = ("collapse_value", "final_loss", "test_rel_l2", "dead_fraction")


def assert_same(a, b, rtol=1e-5, atol=1e-6):
    for f in EXACT:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    for f in FLOATS:
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=rtol, atol=atol, err_msg=f)


def test_generic_path_on_the_builtin_mlp_equals_the_fast_path_trial_for_trial():
    cell = TrainCell(NetworkConfig(3, 6), InitConfig("he_normal"), TrainConfig(steps=300))
    fast = train_outcomes(cell, 0, 64, seed=1)
    generic = train_outcomes(cell, 0, 64, seed=1, generic=True)
    assert 0 < fast.born_dead.sum() < 64 and 0 < fast.collapsed.sum() < 64  # both kinds of trial present
    assert (fast.died_at_step > 0).any()  # some died during training (the death checks agree too)
    assert_same(fast, generic)
    assert np.isnan(generic.test_accuracy).all()


def test_layer_report_tests_constancy_not_zeros():
    const = jnp.full((5, 3), 0.5)  # constant at every point, never zero
    dead, constant = layer_report(const)
    assert int(dead) == 0 and bool(constant)
    varying = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (5, 3)), jnp.float32).at[:, 1].set(0.0)
    dead, constant = layer_report(varying)
    assert int(dead) == 1 and not bool(constant)


def test_a_constant_nonzero_layer_is_born_dead():
    net = NetworkConfig(4, 2)
    params = ConstantPositiveLayer(net).init(jax.random.key(0), jnp.zeros((1, 1)))["params"]
    _, report = observed_apply(ConstantPositiveLayer(net), params, jnp.linspace(-1, 1, 9)[:, None])
    np.testing.assert_array_equal(np.asarray(report.constant), [False, True])
    np.testing.assert_array_equal(np.asarray(report.dead), [int(x) for x in np.asarray(report.dead)])
    assert int(report.dead[1]) == 0  # not a single zero neuron: a zero test would call it alive
    out = train_outcomes(TrainCell(net, train=TrainConfig(steps=20), model=ConstantPositiveLayer), 0, 8)
    np.testing.assert_array_equal(out.first_dead_layer, 2)
    assert out.born_dead.all() and out.collapsed.all()


def test_observed_layers_of_the_builtin_mlp_follow_the_depth_convention():
    net = NetworkConfig(3, 5)
    params = MLP(net).init(jax.random.key(1), jnp.zeros((1, 1)))["params"]
    x = jnp.linspace(-1, 1, 7)[:, None]
    y, state = MLP(net).apply({"params": params}, x, mutable=["intermediates"])
    report = hidden_report(state["intermediates"])
    assert report.constant.shape == (5,)  # L_h = depth hidden layers, first hidden layer first
    np.testing.assert_array_equal(np.asarray(report.units), 3)
    h1 = jax.nn.relu(x @ params["input"][:-1] + params["input"][-1])
    np.testing.assert_array_equal(np.asarray(layer_report(h1)[0]), np.asarray(report.dead[0]))


def residual_cell():
    return TrainCell(NetworkConfig(4, 5), InitConfig(), TrainConfig(steps=200), model=ResidualMLP)


def test_user_module_outcomes_are_reproducible_and_independent_of_chunking():
    cell = residual_cell()
    a = train_outcomes(cell, 0, 24, seed=3, chunk_size=8)
    b = train_outcomes(cell, 0, 24, seed=3, chunk_size=4)
    c = train_outcomes(cell, 16, 24, seed=3, chunk_size=8)  # a later range alone
    assert_same(a, b)  # classifications exact; floats up to the rounding of another vector width
    for f in EXACT:
        np.testing.assert_array_equal(getattr(a, f)[16:], getattr(c, f), err_msg=f)
    for f in FLOATS:
        np.testing.assert_allclose(getattr(a, f)[16:], getattr(c, f), rtol=1e-5, atol=1e-6, err_msg=f)
    np.testing.assert_array_equal(train_outcomes(cell, 0, 24, seed=3, chunk_size=8).final_loss, a.final_loss)
    assert a.dead_fraction.shape == (24, 5)
    assert cell.identity()["model"]["name"] == "tests.user_models:ResidualMLP"


def test_user_module_is_independent_of_the_device_count():
    code = """
import json, sys, numpy as np
from collapse_mc.config import InitConfig, NetworkConfig
from collapse_mc.training import TrainCell, TrainConfig, train_outcomes
from tests.user_models import ResidualMLP
import jax
cell = TrainCell(NetworkConfig(4, 5), InitConfig(), TrainConfig(steps=200), model=ResidualMLP)
o = train_outcomes(cell, 0, 24, seed=3, chunk_size=8)
print(json.dumps({"devices": len(jax.local_devices()), "final_loss": o.final_loss.tolist(),
                  "collapsed": o.collapsed.tolist(), "first_dead_layer": o.first_dead_layer.tolist()}))
"""
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="4", XLA_FLAGS="--xla_force_host_platform_device_count=4",
               PYTHONPATH=os.getcwd())
    res = json.loads(subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                                    text=True).stdout.strip().splitlines()[-1])
    assert res["devices"] == 4
    local = train_outcomes(residual_cell(), 0, 24, seed=3, chunk_size=8)
    np.testing.assert_allclose(np.asarray(res["final_loss"], np.float32), local.final_loss, rtol=1e-5, atol=1e-6)
    assert res["collapsed"] == local.collapsed.tolist() and res["first_dead_layer"] == local.first_dead_layer.tolist()


# -- data sets: the driver against a plain optax loop written here ------------------------------------------
def _reference(cell: TrainCell, trials: int, seed: int, loss, batch: int):
    """Trials 0..trials-1 trained by a plain optax loop (``lax.fori_loop`` over steps, vmapped over trials):
    same keys (init, minibatch), same model, same optimizer. ``(test outputs (trials, n_test, d_out), final
    full-batch losses (trials,))``."""
    d = cell.data
    model = MLP(cell.network, cell.init)
    opt = optax.adam(cell.train.lr)
    x, y = jnp.asarray(d.x_train), jnp.asarray(d.y_train)

    def one(trial):
        key = rng.trial_key(rng.cell_key(seed, cell.cell), trial)
        params = model.init(rng.stream(key, rng.TAG_INIT), jnp.zeros((1, cell.network.d_in)))["params"]

        def step(t, carry):
            params, state = carry
            idx = jax.random.randint(jax.random.fold_in(rng.stream(key, rng.TAG_BATCH), t), (batch,), 0, d.n_train)
            g = jax.grad(lambda p: loss(model.apply({"params": p}, x[idx]), y[idx]))(params)
            u, state = opt.update(g, state, params)
            return optax.apply_updates(params, u), state

        params, _ = jax.lax.fori_loop(0, cell.train.steps, step, (params, opt.init(params)))
        return model.apply({"params": params}, jnp.asarray(d.x_test)), loss(model.apply({"params": params}, x), y)

    out, final = jax.jit(jax.vmap(one))(jnp.arange(trials, dtype=jnp.int32))
    return np.asarray(out), np.asarray(final)


def test_regression_data_set_matches_a_plain_training_loop(tmp_path):
    r = np.random.default_rng(0)
    x = r.uniform(-1, 1, (200, 2)).astype(np.float32)
    xt = r.uniform(-1, 1, (50, 2)).astype(np.float32)
    f = lambda x: np.abs(x[:, 0]) - x[:, 1] ** 2  # noqa: E731
    Dataset(x, f(x), xt, f(xt)).save_npz(tmp_path / "reg.npz")
    data = Dataset.from_npz(tmp_path / "reg.npz")
    assert data.task == "regression" and data.d_out == 1 and data.name == "reg.npz"
    cell = TrainCell(NetworkConfig(3, 4, d_in=2), InitConfig("he_normal"), TrainConfig(steps=150, batch_size=32),
                     data=data)
    out = train_outcomes(cell, 0, 6, seed=2, chunk_size=4)
    mse = lambda p, t: jnp.mean(jnp.square(p - t))  # noqa: E731
    ys, finals = _reference(cell, 6, 2, mse, 32)
    for t, (y, final) in enumerate(zip(ys, finals)):
        yt = np.asarray(data.y_test)
        rel = np.sqrt(np.sum((np.asarray(y) - yt) ** 2) / np.sum(yt ** 2))
        np.testing.assert_allclose(out.final_loss[t], final, rtol=2e-4, atol=1e-6)
        np.testing.assert_allclose(out.test_rel_l2[t], rel, rtol=2e-4, atol=1e-6)
        spread = np.ptp(np.asarray(y), axis=0)
        flat = bool(np.all(spread <= 1e-2 * yt.std(axis=0)))
        assert bool(out.collapsed[t]) == (flat or bool(out.dead_after_training[t]))


def test_classification_data_set_records_accuracy_and_constant_predictions():
    r = np.random.default_rng(1)
    x = r.normal(size=(240, 3)).astype(np.float32)
    labels = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)  # 3 classes
    data = Dataset(x[:180], labels[:180], x[180:], labels[180:])
    assert data.task == "classification" and data.n_classes == 3
    cell = TrainCell(NetworkConfig(4, 3, d_in=3, d_out=3), InitConfig("he_normal"),
                     TrainConfig(loss="softmax_cross_entropy", steps=120, batch_size=30, lr=1e-2), data=data)
    out = train_outcomes(cell, 0, 8, seed=4)
    ce = lambda p, t: jnp.mean(optax.softmax_cross_entropy_with_integer_labels(p, t))  # noqa: E731
    all_logits, finals = _reference(cell, 8, 4, ce, 30)
    for t, (logits, final) in enumerate(zip(all_logits, finals)):
        pred = np.argmax(np.asarray(logits), axis=1)
        np.testing.assert_allclose(out.test_accuracy[t], np.mean(pred == labels[180:]), atol=1e-6)
        np.testing.assert_allclose(out.final_loss[t], final, rtol=2e-4, atol=1e-6)
        assert bool(out.collapsed[t]) == (bool(np.all(pred == pred[0])) or bool(out.dead_after_training[t]))
    assert np.nanmax(out.test_accuracy) > 0.6  # the task is learnable: some networks learn it


def test_data_set_validation_is_one_line_errors(tmp_path):
    x = np.zeros((10, 2), np.float32)
    with pytest.raises(ConfigError, match="points"):
        Dataset(x, np.zeros(9))
    with pytest.raises(ConfigError, match="non-negative"):
        Dataset(x, -np.ones(10, np.int64))
    data = Dataset(x, np.arange(10) % 2)
    with pytest.raises(ConfigError, match="softmax_cross_entropy"):
        TrainCell(NetworkConfig(3, 2, d_in=2, d_out=2), train=TrainConfig(batch_size=4), data=data)
    with pytest.raises(ConfigError, match="features"):
        TrainCell(NetworkConfig(3, 2, d_in=1, d_out=2), train=TrainConfig(loss="softmax_cross_entropy", batch_size=4),
                  data=data)
    with pytest.raises(ConfigError, match="larger than the data set"):
        TrainCell(NetworkConfig(3, 2, d_in=2, d_out=2), train=TrainConfig(loss="softmax_cross_entropy"), data=data)
    with pytest.raises(ConfigError, match="ignored"):
        TrainCell(NetworkConfig(3, 2, d_in=2, d_out=2),
                  train=TrainConfig(loss="softmax_cross_entropy", target_scale=2.0, batch_size=4), data=data)
    np.savez(tmp_path / "bad.npz", x_train=x, y_train=np.zeros(10), extra=x)
    with pytest.raises(ConfigError, match="unknown arrays"):
        Dataset.from_npz(tmp_path / "bad.npz")
    with pytest.raises(ConfigError, match="does not exist"):
        Dataset.from_npz(tmp_path / "missing.npz")
    assert Dataset(x, np.arange(10) % 2) == data and hash(Dataset(x, np.arange(10) % 2)) == hash(data)


USER_SPEC = """
[sweep]
kind = "trained"
trials = 8
seed = 6
block_size = 4
[grid]
lr = [1e-3, 3e-3]
[network]
width = 3
depth = 3
d_in = 3
d_out = 2
model = "tests.user_models:ResidualMLP"
[train]
data = "cls.npz"
loss = "softmax_cross_entropy"
steps = 40
batch_size = 16
"""


def test_sweep_spec_names_a_user_model_and_a_data_file_runs_and_resumes(tmp_path):
    from collapse_mc.store import Store
    from collapse_mc.sweep import load_spec, run_sweep
    r = np.random.default_rng(2)
    x = r.normal(size=(120, 3)).astype(np.float32)
    np.savez(tmp_path / "cls.npz", x_train=x[:90], y_train=(x[:90, 0] > 0).astype(np.int64), x_test=x[90:],
             y_test=(x[90:, 0] > 0).astype(np.int64))
    (tmp_path / "user.toml").write_text(USER_SPEC)
    spec = load_spec(tmp_path / "user.toml")
    assert len(spec.cells) == 2 and len(spec.groups()) == 1  # learning rates share one compilation
    assert spec.cells[0].settings["model"] == "tests.user_models:ResidualMLP"
    ident = spec.cells[0].config["identity"]
    assert ident["model"]["name"] == "tests.user_models:ResidualMLP" and ident["data"]["task"] == "classification"
    db = tmp_path / "u.sqlite"
    first = run_sweep(spec.with_trials(4), db)
    assert first["trials_computed"] == 8
    again = run_sweep(spec, db)  # resume: only the missing blocks
    assert again["trials_computed"] == 8 and again["trials_recorded"] == 8
    with Store(db, readonly=True) as st:
        for c in spec.cells:
            stored = st.outcomes(c.cell_hash)
            direct = train_outcomes(c.cell, 0, 8, spec.seed)
            np.testing.assert_array_equal(stored["collapsed"].astype(bool), direct.collapsed)
            np.testing.assert_allclose(stored["test_accuracy"], direct.test_accuracy, atol=1e-6)
            assert stored["dead_fraction"].shape == (8, 3)


def test_spec_model_path_errors_are_one_line(tmp_path):
    from collapse_mc.sweep import parse_spec_text
    from collapse_mc.sweep.spec import SpecError
    bad = USER_SPEC.replace('"tests.user_models:ResidualMLP"', '"os.path; import x:y"')
    with pytest.raises(SpecError, match="import path"):
        parse_spec_text(bad, base_dir=tmp_path)
    with pytest.raises(SpecError, match="does not exist"):
        parse_spec_text(USER_SPEC, base_dir=tmp_path)  # no cls.npz there
