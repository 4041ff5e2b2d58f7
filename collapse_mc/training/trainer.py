"""Training thousands of networks at once: one pure per-trial program, vmapped, chunked, sharded, blocked.

``TrainProgram`` holds the pure per-trial functions for one static configuration (network, init,
``TrainStatic``, optional custom optax optimizer). For a trial key and the traced ``values`` (lr, momentum,
beta1, beta2, target_scale):

1. ``init``: parameters from ``MLP(network, init).init(stream(key, TAG_INIT))`` (augmented matrices), the
   optimizer state, and ``first_dead_layer`` at initialization;
2. ``run(state, key, values, step0, length)``: ``lax.scan`` over global steps ``step0 .. step0 + length - 1``.
   The training set (``n_train`` points uniform on [-a, a]^d_in from ``stream(key, TAG_DATA)``) is
   regenerated from the key, and the minibatch of step t is ``batch_size`` indices drawn with replacement
   from ``fold_in(stream(key, TAG_BATCH), t)``, so nothing depends on how steps are blocked;
3. ``finish``: classification (``classify``).

``train(key, values)`` is the whole trial in one scan. ``train_outcomes`` runs it for global trial indices
``start .. stop - 1`` with ``jit(shard_map(vmap(...)))`` over fixed-size chunks of trials (trial keys are
``rng.trial_key(cell_key(seed, cell), trial)``) and a host loop over blocks of steps, carrying the state, so
the progress bar moves; outcomes equal the unblocked ``train`` (tested) and do not depend on the chunk size or
the device count. Compiled programs are cached on the static part only: the cell id, seed and traced values
are arguments. Born-dead trials are trained like every other trial (no skipping).
"""
from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from .. import rng
from ..config import ConfigError, InitConfig, NetworkConfig, ProbeConfig
from ..deadness.probes import probe_points
from ..devices import AXIS, round_up, trial_mesh
from ..nets.mlp import MLP
from . import classify
from .config import TrainCell, TrainStatic, VALUE_FIELDS
from .forward import forward_t
from .losses import get_loss
from .optimizers import make_optimizer
from .targets import get_target, target_stats, dense_grid

MAX_BLOCKS = 32
MIN_BLOCK = 50
CHUNK_MEMORY_BYTES = 256 << 20
CPU_CACHE_BYTES = 256 << 10
# init runs once per chunk and is cheap to run but slow to compile (random-number generation): on CPU, compile
# it without LLVM's optimizations (about 3x faster to compile). Training and classification keep the default
# (measured: compiling classification unoptimized cost 20-30 % of W1's throughput).
ONCE_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


class TrainOutcomes(NamedTuple):
    """Per-trial outcomes, trial axis first (T trials, L_h = depth hidden layers, d_out outputs).

    ``first_dead_layer (T,) int32``: at initialization, the 1-based first hidden layer constant on the domain,
    0 = alive. ``born_dead (T,) bool``. ``collapsed (T,) bool``: trained output constant on the test grid (see
    ``classify``). ``diverged (T,) bool``: non-finite loss or parameters (never collapsed). ``collapse_value
    (T, d_out) float32``: the constant, NaN where not collapsed. ``final_loss (T,)``: training loss on the
    whole training set after training. ``test_rel_l2 (T,)``: relative L2 error on the test grid.
    ``dead_fraction (T, L_h)``: fraction of dead neurons per hidden layer after training.
    """

    first_dead_layer: np.ndarray
    born_dead: np.ndarray
    collapsed: np.ndarray
    diverged: np.ndarray
    collapse_value: np.ndarray
    final_loss: np.ndarray
    test_rel_l2: np.ndarray
    dead_fraction: np.ndarray


class TrainState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    finite: jax.Array            # bool: every training loss so far was finite
    first_dead_layer: jax.Array  # int32, at initialization


class TrainProgram:
    """Pure per-trial functions for one static configuration (see the module docstring)."""

    def __init__(self, network: NetworkConfig, init: InitConfig, static: TrainStatic,
                 optimizer: optax.GradientTransformation | None = None):
        self.network, self.init_config, self.static = network, init, static
        self.model = MLP(network, init)
        self.target = get_target(static.target)
        self.stats = target_stats(static.target, static.half_width)
        self.loss_fn = get_loss(static.loss)
        self.custom_optimizer = optimizer
        probe = ProbeConfig(static.half_width, static.test_points, static.test_points)
        self.probes = np.asarray(probe_points(network, init, probe), np.float32)
        self.grid = dense_grid(network.d_in, static.half_width, static.test_points)
        self.target_grid = np.asarray(self.target(jnp.asarray(self.grid)), np.float32).reshape(
            len(self.grid), network.d_out)

    # -- targets -------------------------------------------------------------------------------------------
    def transform(self, values) -> tuple[jax.Array, jax.Array]:
        """``(shift, factor)``, each ``(d_out,)``: the trained target is ``(f - shift) * factor``."""
        st, mean, std = self.static, jnp.asarray(self.stats.mean), jnp.asarray(self.stats.std)
        s = jnp.asarray(values["target_scale"], jnp.float32)
        if st.normalize_target:
            return mean, s / std
        if st.scaled:
            return jnp.zeros_like(mean), s / std
        return jnp.zeros_like(mean), jnp.ones_like(mean)

    def data(self, key, values) -> tuple[jax.Array, jax.Array]:
        """The trial's training set, features-major: ``xt (d_in, n_train)``, ``yt (d_out, n_train)``."""
        st, a = self.static, self.static.half_width
        x = jax.random.uniform(rng.stream(key, rng.TAG_DATA), (st.n_train, self.network.d_in), jnp.float32, -a, a)
        shift, factor = self.transform(values)
        y = (self.target(x).reshape(st.n_train, self.network.d_out) - shift) * factor
        return x.T, y.T

    def optimizer(self, values) -> optax.GradientTransformation:
        if self.custom_optimizer is not None:
            return self.custom_optimizer
        return make_optimizer(self.static, values)

    # -- the three phases ----------------------------------------------------------------------------------
    def init(self, key, values) -> TrainState:
        params = self.model.init(rng.stream(key, rng.TAG_INIT), jnp.zeros((1, self.network.d_in)))["params"]
        first = classify.first_dead_layer(self.model, params, jnp.asarray(self.probes))
        return TrainState(params, self.optimizer(values).init(params), jnp.array(True), first)

    def loss(self, params, xt, yt) -> jax.Array:
        return self.loss_fn(forward_t(self.network, params, xt), yt)

    def run(self, state: TrainState, key, values, step0, length: int, masked: bool = False) -> TrainState:
        """Train ``length`` steps from global step ``step0``; with ``masked``, steps >= ``static.steps`` are
        skipped."""
        st = self.static
        xt, yt = self.data(key, values)
        opt = self.optimizer(values)
        batch_key = rng.stream(key, rng.TAG_BATCH)

        def step(carry, t):
            params, opt_state, finite = carry
            if st.batch_size is None:
                xb, yb = xt, yt
            else:
                idx = jax.random.randint(jax.random.fold_in(batch_key, t), (st.batch_size,), 0, st.n_train)
                xb, yb = xt[:, idx], yt[:, idx]
            value, grads = jax.value_and_grad(self.loss)(params, xb, yb)
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state, finite & jnp.isfinite(value))

        def body(carry, i):
            t = step0 + i
            if masked:
                return jax.lax.cond(t < st.steps, step, lambda c, _: c, carry, t), None
            return step(carry, t), None

        carry = (state.params, state.opt_state, state.finite)
        params, opt_state, finite = jax.lax.scan(body, carry, jnp.arange(length, dtype=jnp.int32))[0]
        return TrainState(params, opt_state, finite, state.first_dead_layer)

    def finish(self, state: TrainState, key, values) -> dict:
        xt, yt = self.data(key, values)
        final_loss = self.loss(state.params, xt, yt)
        shift, factor = self.transform(values)
        target_grid = (jnp.asarray(self.target_grid) - shift) * factor
        target_std = jnp.asarray(self.stats.std) * jnp.abs(factor)
        out = classify.classify_trained(self.model, state.params, jnp.asarray(self.grid), target_grid, target_std,
                                        self.static.collapse_rtol, state.finite & jnp.isfinite(final_loss))
        out["first_dead_layer"] = state.first_dead_layer
        out["final_loss"] = final_loss.astype(jnp.float32)
        return out

    def train(self, key, values) -> dict:
        """One whole trial in a single scan over all steps (the reference for the blocked driver)."""
        state = self.init(key, values)
        return self.finish(self.run(state, key, values, jnp.int32(0), self.static.steps), key, values)

    @functools.cached_property
    def train_jit(self):
        return jax.jit(self.train)


def block_plan(steps: int, max_blocks: int = MAX_BLOCKS, min_block: int = MIN_BLOCK) -> tuple[int, int, bool]:
    """``(block_length, n_blocks, masked)`` for the host loop: up to ``max_blocks`` blocks of at least
    ``min_block`` steps; a divisor of ``steps`` when one is within a factor 2 of the target length, else the
    target length with the overrun of the last block masked (skipped)."""
    n = max(1, min(max_blocks, steps // min_block))
    if n == 1:
        return steps, 1, False
    lo = math.ceil(steps / n)
    for k in range(lo, 2 * lo + 1):
        if steps % k == 0:
            return k, steps // k, False
    return lo, math.ceil(steps / lo), True


def _keys(trials, root):
    key_of_cell = jax.random.fold_in(jax.random.key(root[0]), root[1])
    return rng.trial_keys(key_of_cell, trials)


class TrainMap:
    """The compiled, sharded phases of a ``TrainProgram`` for one chunk size and device set.

    Each phase is ``jit(shard_map(vmap(phase)))`` over the trial axis (the ``'trials'`` mesh axis of
    ``devices.trial_mesh``); the state stays on the devices between blocks of steps.
    """

    def __init__(self, program: TrainProgram, chunk_size: int, mesh, block: int, masked: bool):
        self.program, self.mesh, self.block, self.masked = program, mesh, block, masked
        self.chunk_size = round_up(max(1, int(chunk_size)), mesh.devices.size)
        self._sharding = NamedSharding(mesh, P(AXIS))
        prog = program

        def init_chunk(trials, root, values):
            return jax.vmap(prog.init, in_axes=(0, None))(_keys(trials, root), values)

        def run_chunk(state, trials, root, values, step0):
            return jax.vmap(lambda s, k: prog.run(s, k, values, step0, block, masked))(state, _keys(trials, root))

        def finish_chunk(state, trials, root, values):
            return jax.vmap(prog.finish, in_axes=(0, 0, None))(state, _keys(trials, root), values)

        cpu = mesh.devices.flat[0].platform == "cpu"

        def sharded(fn, specs_in, once=False):
            options = ONCE_COMPILER_OPTIONS if (once and cpu) else None
            return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=specs_in, out_specs=P(AXIS), check_vma=False),
                           compiler_options=options)

        self._init = sharded(init_chunk, (P(AXIS), P(), P()), once=True)
        self._run = sharded(run_chunk, (P(AXIS), P(AXIS), P(), P(), P()))
        self._finish = sharded(finish_chunk, (P(AXIS), P(AXIS), P(), P()))

    def __call__(self, start: int, stop: int, root, values, progress: Callable[[int], None] | None = None) -> dict:
        """Outcomes (numpy, trial axis first) for global trials ``start .. stop - 1``."""
        if stop <= start:
            raise ValueError("empty trial range")
        steps = self.program.static.steps
        n_blocks = math.ceil(steps / self.block)
        c = self.chunk_size
        pieces = []
        for lo in range(start, stop, c):
            n = min(c, stop - lo)
            idx = np.arange(lo, lo + c, dtype=np.int64)
            idx[n:] = lo  # padding: recomputes a real trial, result dropped
            trials = jax.device_put(idx.astype(np.int32), self._sharding)
            state = self._init(trials, root, values)
            reported = 0
            for b in range(n_blocks):
                state = self._run(state, trials, root, values, jnp.int32(b * self.block))
                if progress:
                    jax.block_until_ready(state)
                    done = n * (b + 1) // n_blocks
                    if done > reported:
                        progress(done - reported)
                        reported = done
            out = self._finish(state, trials, root, values)
            pieces.append(jax.tree.map(lambda x: np.asarray(x)[:n], out))
        return jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *pieces)


def default_chunk_size(cell: TrainCell, n_devices: int, platform: str = "cpu") -> int:
    """Trials per chunk (a multiple of ``n_devices``).

    On CPU the chunk is sized for the cache: each device's slice of one layer's activations, ``trials x width x
    batch`` float32, is about ``CPU_CACHE_BYTES`` (measured best on W1, see BENCHMARKS.md); elsewhere the
    largest chunk whose intermediates stay within roughly ``CHUNK_MEMORY_BYTES``.
    """
    n, t = cell.network, cell.train
    b = t.effective_batch
    if platform == "cpu":
        per_device = max(8, min(4096, CPU_CACHE_BYTES // (4 * n.width * b)))
        chunk = n_devices * (1 << (per_device.bit_length() - 1))
        return chunk
    n_params = (n.d_in + 1) * n.width + (n.depth - 1) * (n.width + 1) * n.width + (n.width + 1) * n.d_out
    per_trial = 4 * (4 * n.depth * n.width * b + 8 * n_params + 3 * (n.d_in + n.d_out) * t.n_train
                     + 4 * t.test_points * (n.width + n.d_out))
    chunk = max(n_devices, min(1 << 16, CHUNK_MEMORY_BYTES // per_trial))
    return 1 << (chunk.bit_length() - 1)


@functools.lru_cache(maxsize=32)
def _program(network, init, static, optimizer) -> TrainProgram:
    return TrainProgram(network, init, static, optimizer)


@functools.lru_cache(maxsize=32)
def _train_map(network, init, static, optimizer, chunk_size, devices, block, masked) -> TrainMap:
    return TrainMap(_program(network, init, static, optimizer), chunk_size, trial_mesh(devices), block, masked)


def train_map(cell: TrainCell, chunk_size: int | None = None, devices=None, trials: int | None = None,
              optimizer=None, block_steps: int | None = None) -> TrainMap:
    """The cached ``TrainMap`` for a cell's static part (shared by cells differing only in traced values).

    Without ``chunk_size`` the memory-bounded default is capped at the power of two >= ``trials``.
    ``block_steps``: steps per host block (default: ``block_plan``).
    """
    devices = tuple(devices) if devices is not None else tuple(jax.devices())
    chunk = chunk_size or default_chunk_size(cell, len(devices), devices[0].platform)
    if chunk_size is None and trials is not None:
        chunk = min(chunk, max(len(devices), 1 << max(0, (int(trials) - 1).bit_length())))
    steps = cell.train.steps
    if block_steps is None:
        block, _, masked = block_plan(steps)
    else:
        if int(block_steps) < 1:
            raise ConfigError(f"block_steps must be >= 1, got {block_steps}")
        block = min(int(block_steps), steps)
        masked = steps % block != 0
    return _train_map(cell.network, cell.init, cell.train.static_part(), optimizer, chunk, devices, block, masked)


def root_array(seed: int, cell: TrainCell) -> jax.Array:
    """``[seed, cell id]`` as uint32: trial keys are ``fold_in(fold_in(key(seed), cell), trial)``."""
    return jnp.array([seed & 0xFFFFFFFF, cell.cell], jnp.uint32)


def values_array(cell: TrainCell) -> dict:
    """The cell's traced values as float32 scalars."""
    return {k: jnp.float32(v) for k, v in cell.train.values().items()}


def train_outcomes(cell: TrainCell, start: int, stop: int, seed: int = 0, *, chunk_size: int | None = None,
                   devices=None, progress: Callable[[int], None] | None = None,
                   optimizer: optax.GradientTransformation | None = None,
                   block_steps: int | None = None) -> TrainOutcomes:
    """Train and classify trials ``start .. stop - 1`` (global indices) of ``cell`` under root ``seed``.

    ``progress(n)`` is called with the number of newly finished trials (fractions of a chunk as blocks of
    steps finish). ``optimizer``: any optax ``GradientTransformation`` to use instead of the configured one
    (its hyperparameters are then fixed, not traced; the trial keys stay those of the cell).
    """
    tm = train_map(cell, chunk_size, devices, trials=stop - start, optimizer=optimizer, block_steps=block_steps)
    out = tm(start, stop, root_array(seed, cell), values_array(cell), progress=progress)
    first = out["first_dead_layer"].astype(np.int32)
    return TrainOutcomes(
        first_dead_layer=first, born_dead=first > 0, collapsed=out["collapsed"].astype(bool),
        diverged=out["diverged"].astype(bool), collapse_value=out["collapse_value"].astype(np.float32),
        final_loss=out["final_loss"].astype(np.float32), test_rel_l2=out["test_rel_l2"].astype(np.float32),
        dead_fraction=out["dead_fraction"].astype(np.float32))


def train_single(cell: TrainCell, trial: int, seed: int = 0, optimizer=None) -> dict:
    """One trial trained alone (no vmap, one unblocked scan): the reference ``train_outcomes`` must match."""
    prog = _program(cell.network, cell.init, cell.train.static_part(), optimizer)
    key = rng.trial_key(rng.cell_key(seed, cell.cell), jnp.int32(trial))
    out = prog.train_jit(key, values_array(cell))
    return {k: np.asarray(v) for k, v in out.items()}

