"""Registries of losses, initializers and optimizers: names and Python callables, optax aliases by name with
their options (traced floats), what each cell records, and old cell ids unchanged."""
import numpy as np
import optax
import pytest

from collapse_mc import InitConfig, NetworkConfig
from collapse_mc.config import WEIGHT_INITS, ConfigError
from collapse_mc.nets.initializers import WEIGHT_INIT_REGISTRY
from collapse_mc.registry import callable_hash
from collapse_mc.training import TrainCell, TrainConfig, train_outcomes
from collapse_mc.training.losses import LOSSES
from collapse_mc.training.optimizers import OPTIMIZERS
from collapse_mc.training.summary import summarize_training

NET = NetworkConfig(3, 3)
SHORT = dict(steps=60, batch_size=16, n_train=64, test_points=65)


def test_registries_hold_the_names_validation_and_the_cli_read():
    assert set(WEIGHT_INIT_REGISTRY) == set(WEIGHT_INITS)
    assert {"mse", "l1", "softmax_cross_entropy"} == set(LOSSES)
    assert {"adam", "sgd", "nesterov", "rmsprop", "adamw", "lion", "lamb", "adagrad"} <= set(OPTIMIZERS)
    assert "lbfgs" not in OPTIMIZERS  # its update needs the loss function
    with pytest.raises(ConfigError, match="unknown optimizer 'adamx'"):
        TrainConfig(optimizer="adamx")
    with pytest.raises(ConfigError, match="unknown loss"):
        TrainConfig(loss="hinge")
    with pytest.raises(ConfigError, match="unknown initializer"):
        InitConfig("he_normall")


def test_default_cell_ids_do_not_change():
    # pinned: the ids that seed every stored cell's random stream (computed before the registries existed)
    assert TrainCell(NetworkConfig(2, 9), InitConfig(), TrainConfig()).cell == 343633156
    assert "optimizer_options" not in TrainConfig().identity()


def test_optax_alias_by_name_with_traced_option_equals_optax_built_by_hand():
    """adamw by name with weight_decay (a traced value) trains exactly like optax.adamw(lr, weight_decay=...)
    given as the optimizer for the same cell (same trial keys)."""
    from collapse_mc.training.trainer import train_single
    cell = TrainCell(NET, InitConfig(), TrainConfig(optimizer="adamw", optimizer_options={"weight_decay": 0.05},
                                                    lr=0.01, **SHORT))
    decay, no_decay_opt = optax.adamw(0.01, weight_decay=0.05), optax.adamw(0.01, weight_decay=0.0)  # one program each
    for trial in range(3):
        named = train_single(cell, trial, seed=4)
        by_hand = train_single(cell, trial, seed=4, optimizer=decay)
        np.testing.assert_allclose(named["final_loss"], by_hand["final_loss"], rtol=1e-5)
        assert named["collapsed"] == by_hand["collapsed"]
        no_decay = train_single(cell, trial, seed=4, optimizer=no_decay_opt)
        assert not np.isclose(named["final_loss"], no_decay["final_loss"], rtol=1e-6)  # the option is used


def test_float_options_share_one_compilation_and_are_recorded():
    from collapse_mc.training.trainer import train_map
    cells = [TrainCell(NET, InitConfig(), TrainConfig(optimizer="adamw", optimizer_options={"weight_decay": wd},
                                                      lr=0.01, **SHORT)) for wd in (1e-4, 0.5)]
    assert cells[0].train.static_part() == cells[1].train.static_part()
    assert train_map(cells[0], None, None, trials=8) is train_map(cells[1], None, None, trials=8)
    assert cells[0].cell != cells[1].cell  # different settings, different random streams
    rec = summarize_training(cells[0], train_outcomes(cells[0], 0, 8, seed=1))
    assert rec["optimizer"] == "adamw" and rec["optimizer_options"] == {"weight_decay": 1e-4}
    assert rec["optimizer_hash"] == callable_hash(optax.adamw)
    assert rec["loss"] == "mse" and rec["init"] == "he_normal"


def test_option_errors_are_one_line():
    with pytest.raises(ConfigError, match="wd is not an option of optimizer 'adamw'"):
        TrainConfig(optimizer="adamw", optimizer_options={"wd": 1e-4})
    with pytest.raises(ConfigError, match="use beta1, beta2"):
        TrainConfig(optimizer="adam", optimizer_options={"b1": 0.5})
    with pytest.raises(ConfigError, match="momentum is not used by optimizer 'adamw'"):
        TrainConfig(optimizer="adamw", momentum=0.5)
    with pytest.raises(ConfigError, match="must be finite"):
        TrainConfig(optimizer="adamw", optimizer_options={"weight_decay": float("nan")})
    with pytest.raises(ConfigError, match="would be ignored"):
        train_outcomes(TrainCell(NET, InitConfig(), TrainConfig(optimizer="adamw", optimizer_options={
            "weight_decay": 0.1}, **SHORT)), 0, 2, optimizer=optax.sgd(0.1))


def my_loss(pred, target):
    return jax_mean_abs_cubed(pred - target)


def jax_mean_abs_cubed(d):
    import jax.numpy as jnp
    return jnp.mean(jnp.abs(d) ** 3)


def my_factory(learning_rate, *, weight_decay=0.0):
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(learning_rate))


def my_weights(key, shape, dtype=np.float32):
    import jax
    return jax.random.normal(key, shape, dtype) * np.sqrt(2.0 / shape[0])


def test_python_callables_wherever_a_name_is_recorded_by_name_and_hash():
    import jax.numpy as jnp
    cell = TrainCell(NET, InitConfig(my_weights), TrainConfig(loss=my_loss, optimizer=my_factory,
                                                              optimizer_options={"weight_decay": 0.01}, **SHORT))
    ident = cell.identity()
    assert ident["train"]["loss"] == f"custom:{__name__}.my_loss#{callable_hash(my_loss)}"
    assert ident["train"]["optimizer"].startswith(f"custom:{__name__}.my_factory#")
    assert ident["init"]["weights"] == f"custom:{__name__}.my_weights#{callable_hash(my_weights)}"
    assert cell.cell == TrainCell(NET, InitConfig(my_weights), TrainConfig(
        loss=my_loss, optimizer=my_factory, optimizer_options={"weight_decay": 0.01}, **SHORT)).cell
    out = train_outcomes(cell, 0, 6, seed=2)
    rec = summarize_training(cell, out)
    assert rec["loss"] == f"custom:{__name__}.my_loss" and rec["loss_hash"] == callable_hash(my_loss)
    assert rec["optimizer"] == f"custom:{__name__}.my_factory" and rec["optimizer_hash"] == callable_hash(my_factory)
    assert rec["init"] == f"custom:{__name__}.my_weights" and rec["init_hash"] == callable_hash(my_weights)
    assert out.final_loss.shape == (6,)


def mse_by_hand(pred, target):
    import jax.numpy as jnp
    return jnp.mean((pred - target) ** 2)


def test_a_callable_loss_is_what_is_trained():
    """Under the same trial key, a hand-written MSE trains exactly like the registered mse, and L1 differs."""
    import jax
    from collapse_mc import rng
    from collapse_mc.training.trainer import _program, values_array
    key = rng.trial_key(rng.cell_key(3, 12345), jax.numpy.int32(0))
    outs = {}
    for name, loss in (("mse", "mse"), ("by_hand", mse_by_hand), ("l1", "l1")):
        cell = TrainCell(NET, InitConfig(), TrainConfig(loss=loss, **SHORT))
        prog = _program(NET, cell.init, cell.train.static_part(), None, False, None, None, False)
        outs[name] = jax.jit(prog.train)(key, values_array(cell))
    np.testing.assert_allclose(outs["by_hand"]["final_loss"], outs["mse"]["final_loss"], rtol=1e-6)
    np.testing.assert_allclose(outs["by_hand"]["collapse_value"], outs["mse"]["collapse_value"], rtol=1e-6)
    assert not np.allclose(outs["l1"]["final_loss"], outs["mse"]["final_loss"])


def test_a_callable_initializer_draws_the_weights_and_the_bias_setting_the_bias():
    import jax
    import jax.numpy as jnp
    from collapse_mc.nets.initializers import layer_initializer
    a = layer_initializer(my_weights)(jax.random.key(0), (4, 3))
    np.testing.assert_array_equal(a[-1], jnp.zeros(3))  # bias from the bias setting (zeros)
    np.testing.assert_allclose(a[:-1], my_weights(jax.random.split(jax.random.key(0))[0], (3, 3)), rtol=1e-6)


def test_a_callable_hash_is_the_same_in_another_process():
    """Captured objects whose repr holds a memory address must not change the hash (or a cell's id) between
    runs: hash a closure over such an object here and in a fresh interpreter."""
    import subprocess
    import sys
    code = ("from collapse_mc.registry import callable_hash\n"
            "from tests.test_registry import make_closure\n"
            "print(callable_hash(make_closure()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == callable_hash(make_closure())


def make_closure():
    marker = object()  # repr '<object object at 0x...>'

    def scaled(key, shape, dtype=np.float32):
        return marker is not None
    return scaled


def test_different_callables_with_the_same_name_get_different_hashes():
    def f(pred, target):
        return (pred - target).mean()
    g_src = f

    def f(pred, target):  # noqa: F811 - same name, other code
        return ((pred - target) ** 2).mean()
    assert callable_hash(g_src) != callable_hash(f)
    assert callable_hash(optax.adamw) != callable_hash(optax.adam)


ADAMW_SPEC = """
[sweep]
kind = "trained"
trials = 8
seed = 3
block_size = 4
[grid]
weight_decay = [1e-4, 0.5]
[network]
width = 3
depth = 3
[train]
optimizer = "adamw"
eps = 1e-7
steps = 60
batch_size = 16
n_train = 64
test_points = 65
"""


def test_spec_with_adamw_and_weight_decay_runs_resumes_and_records_its_hyperparameters(tmp_path):
    from collapse_mc.store import Store
    from collapse_mc.sweep import parse_spec_text, run_sweep
    spec = parse_spec_text(ADAMW_SPEC)
    assert len(spec.cells) == 2 and len(spec.groups()) == 1  # the traced option shares one compilation
    db = tmp_path / "adamw.sqlite"
    assert run_sweep(spec.with_trials(4), db)["trials_computed"] == 8
    again = run_sweep(spec, db)  # resume: only the missing blocks
    assert again["trials_computed"] == 8 and again["trials_recorded"] == 8
    by_wd = {r["weight_decay"]: r for r in again["results"]}
    assert set(by_wd) == {1e-4, 0.5}
    for wd, r in by_wd.items():
        assert (r["optimizer"], r["eps"], r["trials"]) == ("adamw", 1e-7, 8)
        assert r["optimizer_hash"] == callable_hash(optax.adamw)
        c = next(c for c in spec.cells if c.settings["weight_decay"] == wd)
        assert c.cell.train.optimizer_options == (("eps", 1e-7), ("weight_decay", wd))
        with Store(db, readonly=True) as st:
            stored = st.outcomes(c.cell_hash)
        direct = train_outcomes(c.cell, 0, 8, spec.seed)
        np.testing.assert_array_equal(stored["collapsed"].astype(bool), direct.collapsed)
        assert r["collapsed"] == int(direct.collapsed.sum())


def test_spec_option_errors_name_the_optimizer():
    from collapse_mc.sweep import parse_spec_text
    from collapse_mc.sweep.spec import SpecError
    with pytest.raises(SpecError, match="wd is not an option of optimizer 'adamw'"):
        parse_spec_text(ADAMW_SPEC.replace("eps = 1e-7", "wd = 1e-7"))
    with pytest.raises(SpecError, match="weight_decay is not an option of optimizer 'adam'"):
        parse_spec_text(ADAMW_SPEC.replace('optimizer = "adamw"', 'optimizer = "adam"').replace("eps = 1e-7\n", ""))


def test_born_dead_with_a_callable_initializer_matches_the_named_one():
    """my_weights is He normal written by hand: its born-dead estimate equals he_normal's on the same keys."""
    from collapse_mc.deadness import BornDeadCell, born_dead_outcomes
    net = NetworkConfig(2, 6)
    named = BornDeadCell(net, InitConfig("he_normal"), method="dense")
    mine = BornDeadCell(net, InitConfig(my_weights), method="dense")
    assert mine.identity()["init"]["weights"].startswith("custom:")
    a = born_dead_outcomes(named, 0, 400, seed=1)
    b = born_dead_outcomes(mine, 0, 400, seed=1)
    # different cells, different keys: the rates agree within binomial error
    pa, pb = a.born_dead.mean(), b.born_dead.mean()
    se = np.sqrt(pa * (1 - pa) / 400 * 2)
    assert abs(pa - pb) < 4 * se + 1e-9
