"""Born-dead Monte Carlo against theory, paper 2's read-outs and an independent numpy implementation."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from collapse_mc.config import InitConfig, NetworkConfig, ProbeConfig
from collapse_mc.deadness import BornDeadCell, born_dead_outcomes
from collapse_mc.theory import p_dead_single_input

from reference import binom_se, born_dead_numpy

T = 6000


def p_of(cell, trials=T, seed=0):
    out = born_dead_outcomes(cell, 0, trials, seed)
    return out.born_dead.mean(), out


@pytest.mark.parametrize("n,l", [(1, 3), (2, 4), (2, 9), (3, 9), (4, 20), (5, 9), (6, 30)])
def test_single_input_death_matches_theory(n, l):
    """One probe point: P(some layer all-zero at x0) = 1 - (1 - 2^-N)^L_h, within 4 standard errors."""
    cell = BornDeadCell(NetworkConfig(n, l), probe=ProbeConfig(points=((0.7,),)))
    assert cell.resolved_method == "dense"
    p, _ = p_of(cell, 4000)
    q = p_dead_single_input(n, l)
    assert abs(p - q) < 4 * binom_se(q, 4000), (p, q)


def test_paper2_readouts_nine_hidden_layers():
    """Paper 2: 'L=10' He-normal nets are born dead ~60 % at width 3, >10 % at width 5, <1 % at width 10."""
    p3, _ = p_of(BornDeadCell(NetworkConfig(3, 9)), 20000)
    p5, _ = p_of(BornDeadCell(NetworkConfig(5, 9)), 20000)
    p10, _ = p_of(BornDeadCell(NetworkConfig(10, 9)), 20000)
    assert 0.55 < p3 < 0.65
    assert p5 > 0.10
    assert p10 < 0.01


@pytest.mark.parametrize("method", ["gaussian", "dense"])
@pytest.mark.parametrize("n,l", [(2, 5), (3, 9), (4, 50), (6, 20)])
def test_both_kernels_match_numpy_reference(method, n, l):
    p, out = p_of(BornDeadCell(NetworkConfig(n, l), method=method))
    ref = born_dead_numpy(n, l, T, seed=1)
    q = (ref > 0).mean()
    assert abs(p - q) < 4 * binom_se(p, T, q, T), (p, q)
    # the first dead layer's distribution agrees too (mean, 4 standard errors)
    a, b = out.first_dead_layer[out.born_dead], ref[ref > 0]
    if len(a) > 50 and len(b) > 50:
        se = np.sqrt(a.var() / len(a) + b.var() / len(b))
        assert abs(a.mean() - b.mean()) < 4 * se


def test_dense_kernel_with_bias_grid_matches_numpy():
    """Normal biases, a 65-point grid on [-sqrt3, sqrt3]: same probability as numpy on the same grid."""
    grid = ProbeConfig(grid_points=65)
    cell = BornDeadCell(NetworkConfig(3, 8), InitConfig("he_normal", "normal", 0.3), grid)
    p, _ = p_of(cell, 4000)
    ref = born_dead_numpy(3, 8, 4000, seed=2, probes=np.linspace(-3 ** 0.5, 3 ** 0.5, 65), bias_std=0.3)
    q = (ref > 0).mean()
    assert abs(p - q) < 4 * binom_se(p, 4000, q, 4000)


def test_gaussian_kernel_dead_fractions_match_dense():
    """Per-layer dead-neuron fractions agree between the two kernels (each within 4 standard errors)."""
    net = NetworkConfig(3, 12)
    _, g = p_of(BornDeadCell(net, method="gaussian"))
    _, d = p_of(BornDeadCell(net, method="dense"))
    fg, fd = g.dead_neurons / 3.0, d.dead_neurons / 3.0
    se = np.sqrt(fg.var(0) / T + fd.var(0) / T) + 1e-9
    assert np.all(np.abs(fg.mean(0) - fd.mean(0)) < 4 * se)
    # after the first dead layer every neuron is dead
    for out in (g, d):
        rows = np.nonzero(out.born_dead)[0][:200]
        for r in rows:
            assert np.all(out.dead_neurons[r, out.first_dead_layer[r] - 1:] == 3)


def test_monotone_in_depth_and_width():
    p = {}
    for n in (2, 4):   # a depth-3 net is the first 3 layers of a depth-20 one: read both from one profile
        first = p_of(BornDeadCell(NetworkConfig(n, 20)), 4000)[1].first_dead_layer
        p[(n, 3)], p[(n, 20)] = np.mean((first > 0) & (first <= 3)), np.mean(first > 0)
    assert p[(2, 3)] < p[(2, 20)] and p[(4, 3)] < p[(4, 20)]
    assert p[(4, 3)] < p[(2, 3)] and p[(4, 20)] < p[(2, 20)]
    # the single-input bound is an upper bound on the domain probability
    for (n, l), v in p.items():
        assert v <= p_dead_single_input(n, l) + 4 * binom_se(v, 4000)


@pytest.mark.parametrize("method", ["gaussian", "dense"])
def test_outcomes_do_not_depend_on_chunk_size_or_range_split(method):
    cell = BornDeadCell(NetworkConfig(3, 10), method=method)
    a = born_dead_outcomes(cell, 0, 1000, 7, chunk_size=128)
    b = born_dead_outcomes(cell, 0, 1000, 7, chunk_size=256)
    c1 = born_dead_outcomes(cell, 0, 300, 7, chunk_size=256)
    c2 = born_dead_outcomes(cell, 300, 1000, 7, chunk_size=256)
    for x in (b, (np.concatenate([c1[0], c2[0]]), np.concatenate([c1[1], c2[1]]))):
        np.testing.assert_array_equal(a[0], x[0])
        np.testing.assert_array_equal(a[1], x[1])
    # and they do depend on the seed
    assert not np.array_equal(a[0], born_dead_outcomes(cell, 0, 1000, 8, chunk_size=256)[0])


def test_gaussian_cells_of_one_depth_capacity_share_a_program_without_changing_an_outcome():
    """Gaussian cells of one width whose depths round up to the same multiple of 16 run in one compiled program
    (the depth traced); every cell's outcomes equal those of the kernel built for its own depth, trial by
    trial. Without the partitionable threefry (a shorter draw of bits is then no prefix of a longer one) each
    depth keeps its own program."""
    import jax
    from collapse_mc.deadness.born_dead import born_dead_map, gaussian_capacity, root_array
    from collapse_mc.deadness.gaussian_kernel import gaussian_chunk_fn
    from collapse_mc.devices import TrialMap
    cells = [BornDeadCell(NetworkConfig(3, d)) for d in (4, 9, 16)]
    assert [gaussian_capacity(c.network.depth) for c in cells] == [16, 16, 16] and gaussian_capacity(17) == 32
    assert len({id(born_dead_map(c, trials=700)) for c in cells}) == 1
    for c in cells[:2]:
        shared = born_dead_outcomes(c, 0, 700, 5)
        assert shared.dead_neurons.shape == (700, c.network.depth)
        own = TrialMap(gaussian_chunk_fn(3, c.network.depth, pool_size=64), 512)(0, 700, root_array(5, c))
        np.testing.assert_array_equal(shared.first_dead_layer, own["first_dead_layer"])
        np.testing.assert_array_equal(shared.dead_neurons, own["dead_neurons"])
        assert 0 < shared.born_dead.mean() < 1  # not vacuous
    was = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", False)
    try:
        assert gaussian_capacity(9) == 9
    finally:
        jax.config.update("jax_threefry_partitionable", was)


_DEVICE_SCRIPT = r"""
import json, sys, jax, numpy as np
from collapse_mc.config import NetworkConfig, InitConfig
from collapse_mc.deadness import BornDeadCell, born_dead_outcomes
res = {"devices": len(jax.devices())}
for method, init in (("gaussian", "he_normal"), ("dense", "rai")):
    cell = BornDeadCell(NetworkConfig(3, 10), InitConfig(init), method=method)
    out = born_dead_outcomes(cell, 0, 1000, 3, chunk_size=256)
    res[method + init] = [out.first_dead_layer.tolist(), out.dead_neurons.tolist()]
print(json.dumps(res))
"""


def test_outcomes_identical_on_1_and_8_devices():
    procs = []
    for n in ("1", "8"):   # both subprocesses at once
        env = dict(os.environ, JAX_NUM_CPU_DEVICES=n, JAX_PLATFORMS="cpu")
        env.pop("XLA_FLAGS", None)
        procs.append(subprocess.Popen([sys.executable, "-c", _DEVICE_SCRIPT], env=env, stdout=subprocess.PIPE,
                                      text=True))
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0
        results.append(json.loads(out))
    one, eight = results
    assert one.pop("devices") == 1 and eight.pop("devices") == 8
    assert one == eight


def test_compiled_program_does_not_grow_with_depth():
    """Hidden layers are scanned: the jaxpr of the dense kernel has the same size at depth 10 and 100."""
    import jax
    import jax.numpy as jnp
    from collapse_mc.deadness.dense_kernel import dense_chunk_fn
    sizes = []
    for depth in (10, 100):
        fn = dense_chunk_fn(NetworkConfig(4, depth), InitConfig(), np.array([[1.0], [-1.0]], np.float32))
        jaxpr = jax.make_jaxpr(fn)(jnp.arange(8, dtype=jnp.int32), jnp.array([0, 1], jnp.uint32))
        sizes.append(len(str(jaxpr).splitlines()))
    assert sizes[0] == sizes[1]
