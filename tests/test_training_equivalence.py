"""Reproducibility of the training Monte Carlo: a vmapped trial equals the trial trained alone, retiring dead
networks changes no outcome, and outcomes do not depend on chunk size, waves, trial range or device count."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

from collapse_mc.config import InitConfig, NetworkConfig
from collapse_mc.training import TrainCell, TrainConfig, summarize_training, train_outcomes, trainer
from collapse_mc.nets.observe import observed_apply
from collapse_mc.training.trainer import train_single

NET = NetworkConfig(3, 3)
TRAIN = TrainConfig(optimizer="sgd", lr=0.05, momentum=0.5, steps=60, batch_size=8, n_train=64, test_points=65)
CELL = TrainCell(NET, InitConfig(), TRAIN)
T = 12
FLOATS = ("collapse_value", "final_loss", "test_rel_l2", "dead_fraction")
EXACT = ("first_dead_layer", "born_dead", "collapsed", "diverged", "dead_after_training", "near_flat_at_init",
         "died_at_step", "trained_to_end")
# a cell where networks also die *during* training (several death checks: 250 steps = 3 blocks, last partial)
DYING = TrainCell(NetworkConfig(2, 6), InitConfig(),
                  TrainConfig(lr=3e-2, steps=250, batch_size=8, n_train=64, test_points=65))


@pytest.fixture(scope="module")
def reference():
    import jax
    return train_outcomes(CELL, 0, T, seed=5, chunk_size=4, devices=jax.devices()[:1])   # one device


def assert_same(a, b, rtol=1e-6):
    for f in EXACT:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    for f in FLOATS:
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=rtol, atol=1e-6, err_msg=f)


def test_outcomes_shapes_and_logic(reference):
    o = reference
    assert o.first_dead_layer.shape == (T,) and o.first_dead_layer.dtype == np.int32
    assert o.collapse_value.shape == (T, 1) and o.collapse_value.dtype == np.float32
    assert o.dead_fraction.shape == (T, NET.depth)
    assert np.array_equal(o.born_dead, o.first_dead_layer > 0)
    assert 0 < o.collapsed.sum() < T and not o.diverged.any()  # the cell mixes both outcomes
    assert np.all(o.collapsed[o.born_dead])                      # born dead implies collapsed
    assert np.all(o.dead_after_training[o.born_dead]) and np.all(o.died_at_step[o.born_dead] == 0)
    assert np.all(o.collapsed[o.dead_after_training])            # dead implies collapsed
    assert np.array_equal(o.died_at_step >= 0, o.dead_after_training) and o.trained_to_end.all()
    assert np.all(np.isnan(o.collapse_value[~o.collapsed])) and np.all(np.isfinite(o.collapse_value[o.collapsed]))
    # a born-dead trial is dead from its first dead layer on: that layer's neurons are all dead after training
    for i in np.flatnonzero(o.born_dead):
        assert o.dead_fraction[i, o.first_dead_layer[i] - 1] == 1.0


def test_chunk_size_waves_and_range_do_not_matter(reference, monkeypatch):
    assert_same(reference, train_outcomes(CELL, 0, T, seed=5, chunk_size=8))
    part = train_outcomes(CELL, 3, 9, seed=5, chunk_size=4)
    assert_same(trainer.TrainOutcomes(*(x[3:9] for x in reference)), part)
    monkeypatch.setattr(trainer, "WAVE_MEMORY_BYTES", 1)  # one chunk per wave: three waves
    assert_same(reference, train_outcomes(CELL, 0, T, seed=5, chunk_size=4))


@pytest.fixture(scope="module")
def dying_full():
    return train_outcomes(DYING, 0, 32, seed=2, chunk_size=8, after_death="full")


def test_retired_networks_have_the_outcomes_of_full_training(dying_full):
    """Retiring dead networks to the cheap path changes no classification; the constants of dead networks
    (still trained through the layers above the dead one) agree up to float rounding."""
    full = dying_full
    died_in_training = full.dead_after_training & ~full.born_dead
    assert full.born_dead.any() and died_in_training.any() and (~full.dead_after_training).any()
    assert set(full.died_at_step[died_in_training]) <= {100, 200, 250}
    cheap = train_outcomes(DYING, 0, 32, seed=2, chunk_size=8)
    assert_same(full, cheap, rtol=1e-5)
    stopped = train_outcomes(DYING, 0, 32, seed=2, chunk_size=8, after_death="stop")
    for f in ("first_dead_layer", "born_dead", "collapsed", "diverged", "dead_after_training", "died_at_step"):
        np.testing.assert_array_equal(getattr(full, f), getattr(stopped, f), err_msg=f)
    np.testing.assert_array_equal(stopped.trained_to_end, ~full.dead_after_training)
    alive = ~full.dead_after_training  # trained to the end either way: identical
    np.testing.assert_allclose(stopped.final_loss[alive], full.final_loss[alive], rtol=1e-6)
    rec = summarize_training(DYING, stopped)
    assert rec["stopped_at_death"] == int(full.dead_after_training.sum())
    assert rec["p_collapse"] == summarize_training(DYING, full)["p_collapse"]


def test_live_networks_repacked_into_full_and_tail_chunks_give_the_same_outcomes(dying_full, monkeypatch):
    """The default driver trains live networks in full chunks while enough remain and the rest in small tail
    chunks (as networks die the mix changes every block): outcomes equal those of one fixed chunk size."""
    monkeypatch.setattr(trainer, "TAIL_CHUNK_PER_DEVICE", 1)
    monkeypatch.setattr(trainer, "call_overhead", lambda width, depth: 0.0)  # calls free: tails, never padding
    tm = trainer.train_map(DYING, trials=32)
    assert tm.full_chunk == 32 and tm.tail_chunk == len(jax.local_devices())
    for after_death in ("stop", "full"):
        fixed = (dying_full if after_death == "full" else
                 train_outcomes(DYING, 0, 32, seed=2, chunk_size=8, after_death=after_death))
        assert_same(fixed, train_outcomes(DYING, 0, 32, seed=2, after_death=after_death))
    ran = set(tm._full.compiled) | set(tm._window[True].compiled) | set(tm._window[False].compiled)
    assert ran == {32, tm.tail_chunk}  # both sizes ran (one call per block, or ten: ``TrainMap.windowed``)


def test_live_chunk_plan_weighs_padding_against_calls():
    """Full chunks while they fill; the rest in tail chunks unless one padded full chunk costs less, a call
    costing ``overhead`` networks' work (c tail calls: c (overhead + tail); a full chunk: overhead + full)."""
    plan = trainer.plan_live_chunks
    assert plan(20, 16, 4, 1.4) == [16, 4]
    assert plan(32, 16, 4, 1.4) == [16, 16]
    assert plan(9, 16, 4, 1.4) == [4, 4, 4]        # 3 x 5.4 = 16.2 < 17.4
    assert plan(9, 16, 4, 2.1) == [16]             # 3 x 6.1 = 18.3 > 18.1
    assert plan(13, 16, 4, 0.5) == [16]            # 4 x 4.5 = 18 > 16.5
    assert plan(13, 16, 4, 0.0) == [16]            # equal cost (16 rows either way): one call
    assert plan(3, 16, 4, 0.0) == [4] and plan(0, 16, 4, 1.0) == []
    assert sum(plan(37, 8, 2, 3.0)) >= 37
    # the fit it uses: a deep wide network costs less than 2 networks per call, a tiny one many
    assert trainer.call_overhead(12, 64) < 1.0 < 5.0 < trainer.call_overhead(4, 9)


def test_dead_after_training_agrees_with_the_reference_deadness_test(dying_full):
    """Trials never found dead in training have no hidden layer constant on the test grid after training
    (the Flax MLP's own layer report, independent of the training path's features-major check)."""
    from collapse_mc.training.trainer import _program
    prog = _program(DYING.network, DYING.init, DYING.train.static_part(), None)
    key = lambda t: trainer.rng.trial_key(trainer.rng.cell_key(2, DYING.cell), jax.numpy.int32(t))  # noqa: E731
    for t in range(8):
        state = jax.jit(prog.trained)(key(t), trainer.values_array(DYING))[0]
        _, report = observed_apply(prog.model, state.params, jax.numpy.asarray(prog.grid))
        constant = report.constant
        if not dying_full.born_dead[t]:
            assert bool(np.any(constant)) == bool(dying_full.dead_after_training[t]), t


def test_vmapped_trial_equals_trial_trained_alone(reference):
    for trial in (0, 5, 7):
        alone = train_single(CELL, trial, seed=5)
        for f in EXACT:
            if f != "died_at_step":  # checked every block in the driver, only at the start and end here
                assert alone[f] == getattr(reference, f)[trial], f
        for f in FLOATS:
            np.testing.assert_allclose(alone[f], getattr(reference, f)[trial], rtol=1e-4, atol=1e-6, err_msg=f)


def test_progress_moves_with_blocks_and_counts_trials():
    calls = []
    train_outcomes(DYING, 0, T, seed=5, chunk_size=8, progress=calls.append)
    assert sum(calls) == T and len(calls) == 3  # one call per block of steps


def test_traced_values_share_compilation_and_divergence_is_a_category(reference):
    misses = trainer._train_map.cache_info().misses
    wild = TrainCell(NET, InitConfig(), TrainConfig(**{**TRAIN.identity(), "lr": 1e3, "momentum": 0.9}))
    out = train_outcomes(wild, 0, T, seed=5, chunk_size=4, devices=jax.devices()[:1])  # as the reference
    assert trainer._train_map.cache_info().misses == misses  # same static part: no new program
    assert out.diverged.all() and np.all(np.isnan(out.collapse_value))
    # born dead implies collapsed and dead after training, diverged or not; no other diverged trial is either
    np.testing.assert_array_equal(out.collapsed, out.born_dead)
    np.testing.assert_array_equal(out.dead_after_training, out.born_dead)
    rec = summarize_training(wild, out)
    json.dumps(rec, allow_nan=False)
    k = int(out.born_dead.sum())
    assert rec["diverged"] == T and rec["p_diverged"] == 1.0 and rec["decided"] == k
    assert rec["p_collapse"] == (1.0 if k else None) and rec["collapse_value_median"] == [None]
    # every trial diverged while alive: no collapse estimate at all (not a misleading 0)
    alive = trainer.TrainOutcomes(*(x[~out.born_dead] for x in out))
    rec = summarize_training(wild, alive)
    assert rec["p_collapse"] is None and rec["p_dead_after_training"] is None and rec["p_diverged"] == 1.0


def test_custom_optax_optimizer_equals_configured(reference):
    custom = train_outcomes(CELL, 0, 4, seed=5, chunk_size=4, optimizer=optax.sgd(0.05, momentum=0.5))
    assert_same(trainer.TrainOutcomes(*(x[:4] for x in reference)), custom, rtol=1e-4)
    # recorded as what ran, not as the configured optimizer
    rec = summarize_training(CELL, custom, optimizer=optax.sgd(0.05, momentum=0.5))
    assert rec["optimizer"] == "custom:trace+scale" and rec["lr"] is None and rec["momentum"] is None
    other = summarize_training(CELL, custom, optimizer=optax.sgd(0.05, momentum=0.9))
    assert other["optimizer_hash"] != rec["optimizer_hash"]
    assert summarize_training(CELL, custom, optimizer=optax.sgd(0.05, momentum=0.5))["optimizer_hash"] == \
        rec["optimizer_hash"]


SCRIPT = """
import json, sys, numpy as np, jax
from collapse_mc.config import InitConfig, NetworkConfig
from collapse_mc.training import TrainCell, TrainConfig, train_outcomes
assert jax.device_count() == 8, jax.device_count()
cell = TrainCell(NetworkConfig(3, 3), InitConfig(), TrainConfig(**json.loads(sys.argv[1])))
o = train_outcomes(cell, 0, 12, seed=5, chunk_size=8)
np.savez(sys.argv[2], **o._asdict())
"""


def test_device_count_does_not_matter(reference, tmp_path):
    path = tmp_path / "o.npz"
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="8", JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(TRAIN.identity()), str(path)], env=env, check=True,
                   timeout=300)
    with np.load(path) as z:
        other = trainer.TrainOutcomes(**{k: z[k] for k in z.files})
    assert_same(reference, other)


def test_example_fits_are_the_classified_networks(reference):
    """Re-trained example trials reproduce the Monte Carlo's classification and test error on the same grid."""
    from collapse_mc.training.fits import choose_examples, trained_predictions
    from collapse_mc.training.targets import dense_grid

    outcomes = {"trial": np.arange(T), **{f: getattr(reference, f) for f in ("collapsed", "diverged", "test_rel_l2")}}
    chosen = choose_examples(outcomes)
    c, t = chosen["collapsed"], chosen["trained"]
    assert reference.collapsed[c] and not reference.collapsed[t]
    assert reference.test_rel_l2[t] == reference.test_rel_l2[~reference.collapsed].min()
    x, target, y = trained_predictions(CELL, [c, t], seed=5, points=TRAIN.test_points)
    np.testing.assert_array_equal(x, dense_grid(1, TRAIN.half_width, TRAIN.test_points))
    np.testing.assert_allclose(target[:, 0], np.abs(x[:, 0]), rtol=1e-6)
    # the collapsed network is constant at its recorded constant
    assert np.ptp(y[0]) <= TRAIN.collapse_rtol * 0.5
    np.testing.assert_allclose(y[0].mean(), reference.collapse_value[c, 0], rtol=1e-4)
    # the trained network's relative L2 error on the test grid is the recorded one
    rel = np.linalg.norm(y[1] - target) / np.linalg.norm(target)
    np.testing.assert_allclose(rel, reference.test_rel_l2[t], rtol=1e-4)
