"""Training thousands of networks at once: ``TrainProgram``'s phases vmapped, chunked, sharded and blocked,
with dead networks retired to a cheap path.

``train_outcomes(cell, start, stop, seed)`` trains global trials ``start .. stop - 1`` (trial keys are
``fold_in(fold_in(key(seed), cell), trial)``). Trials are processed in *waves* (as many as memory allows);
within a wave the driver runs blocks of ``CHECK_EVERY`` steps:

* every trial still alive runs a block of full steps in fixed-size chunks (``jit(shard_map(vmap(...)))`` over
  the ``'trials'`` mesh axis), and is then checked: is some hidden layer dead on its whole training set?
* a trial found dead (at initialization or after a block) is **retired**: its classification as dead is
  final (no gradient can reach below a dead layer), so from then on it runs ``TrainProgram.cheap_block``,
  which trains only what can still move (the constant output, through the layers above the dead one) at the
  cost of one point instead of a minibatch. Alive trials are re-packed every block into full chunks and, for
  the few left over, small tail chunks (``TAIL_CHUNK_PER_DEVICE``) or one more padded full chunk, whichever
  costs less (``plan_live_chunks``), so the full-step work follows the number of live networks.

``after_death`` chooses what a retired trial does: ``"train"`` (default) the cheap path to the last step;
``"stop"``: nothing more (its collapse constant, final loss, test error and dead fractions are then those at
retirement, and ``trained_to_end`` is False for it: whether it is dead, collapsed or diverged does not change,
so probabilities are the same); ``"full"``: no retirement, every trial runs full steps (the reference).
Outcomes of ``"train"`` equal ``"full"`` trial for trial (tested) in every field except those a dead network
can still change, the collapse constant and the final loss, which agree up to float rounding (the cheap path
sums the minibatch in another order). Trial keys never depend on the chunk size, wave size or device count;
floating-point results can, in the last bit (XLA's per-shape programs and YNNPACK sums; see README,
"Reproducible randomness"), and over long training a classification rarely with them. Compiled
programs are cached on the static part only: the cell id, seed and traced values are arguments.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import threading
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from .. import rng
from ..config import ConfigError, check_trial_range
from ..devices import AXIS, cap_chunk, padded_chunks, round_up, sharded as shard_trials, trial_mesh
from .config import TrainCell
from .generic import ModelProgram
from .program import TrainProgram

CHECK_EVERY = 100                 # steps between death checks (and the host's block of steps)
CHUNK_MEMORY_BYTES = 256 << 20
WAVE_MEMORY_BYTES = 512 << 20     # host memory for one wave's states and training sets
CPU_CACHE_BYTES = 256 << 10
MAX_DEPTH_CAPACITY = 1024        # the deepest program a traced depth may run in
FULL_CHUNK_PER_DEVICE = 64        # full steps run on few live trials: smaller chunks waste less padding
# live trials left over after the full chunks train in chunks of this many per device: a full step costs nearly
# the same per network at every chunk size down to a few per device (measured, widths 4-12, L_h 16-48), so
# padding a few live networks up to a full chunk is waste (a 20-trial cell in a 32-chunk wasted 37 %, more as
# its networks died); but each call has a fixed cost (``call_overhead``), so ``plan_live_chunks`` weighs both
TAIL_CHUNK_PER_DEVICE = 2
# init, the checks at initialization and the classification run once per trial: on CPU they are compiled without
# LLVM's optimizations (init about 3x, the others about 2x faster to compile), except the checks and the
# classification of networks with depth x width^2 >= ONCE_OPTIMIZED_MIN_WORK: unvectorized, their forward passes
# over the 3,000 training and 1,025 grid points run 5x longer (0.8 s per block of 20 networks of width 12,
# L_h 64, against 0.4 s more compilation per program; at width 2, L_h 9 the compilation is what counts)
ONCE_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}
WINDOW_BLOCKS = 10  # blocks of full steps per call where whole steps run in the kernel (``TrainMap.windowed``)
ONCE_OPTIMIZED_MIN_WORK = 512


class TrainOutcomes(NamedTuple):
    """Per-trial outcomes, trial axis first (T trials, L_h = depth hidden layers, d_out outputs).

    ``first_dead_layer (T,) int32``: at initialization, the 1-based first hidden layer constant on the probe
    set, 0 = alive. ``born_dead (T,) bool`` = ``first_dead_layer > 0``. ``near_flat_at_init (T,) bool``: the
    output at initialization is flat on the test grid (as ``collapsed`` tests after training).
    ``died_at_step (T,) int32``: the first death check at which some hidden layer was dead on the trial's
    training set (checks at step 0 and every ``CHECK_EVERY`` steps; born dead = 0), -1 = never.
    ``dead_after_training (T,) bool``: born dead, or died in training, or some hidden layer constant on the
    test grid after training. ``collapsed (T,) bool``: dead after training, or not diverged and the trained
    output flat on the test grid (max - min <= collapse_rtol x the target's std, per output).
    ``diverged (T,) bool``: a non-finite loss, parameter or output. ``collapse_value (T, d_out)``: the
    constant (mean output over the grid), NaN where not collapsed or diverged. ``final_loss (T,)``: training
    loss on the whole training set after training. ``test_rel_l2 (T,)``: relative L2 error on the test grid.
    ``dead_fraction (T, L_h)``: fraction of dead neurons per hidden layer after training, NaN if diverged.
    ``trained_to_end (T,) bool``: False for a trial stopped when it died (``after_death="stop"``): its
    collapse constant, final loss, test error and dead fractions are those at its death.
    ``test_accuracy (T,)``: classification on a ``Dataset`` only (the fraction of test points predicted right),
    else NaN. With a user's model (``TrainCell.model``) ``L_h`` is the number of hidden layers it sows.
    """

    first_dead_layer: np.ndarray
    born_dead: np.ndarray
    collapsed: np.ndarray
    diverged: np.ndarray
    collapse_value: np.ndarray
    final_loss: np.ndarray
    test_rel_l2: np.ndarray
    dead_fraction: np.ndarray
    dead_after_training: np.ndarray
    near_flat_at_init: np.ndarray
    died_at_step: np.ndarray
    trained_to_end: np.ndarray
    test_accuracy: np.ndarray | None = None


AFTER_DEATH = ("train", "stop", "full")
OUTCOME_FIELDS = TrainOutcomes._fields  # the per-trial arrays stored for a trained block


class _Timed:
    """A jitted function compiled ahead of time at its first call for each chunk size (the leading axis of its
    first argument's first leaf), or before it by ``prepare`` (from another thread: ``TrainMap.prewarm``);
    ``clock[0]`` accumulates the time calls spent compiling or waiting for a compilation under way."""

    def __init__(self, jitted, clock: list):
        self.jitted, self.compiled, self.clock = jitted, {}, clock
        self._lock = threading.Lock()

    def prepare(self, *args):
        """Compile for these (abstract or concrete) arguments unless done: the compiled program."""
        size = jax.tree.leaves(args[0])[0].shape[0]
        with self._lock:
            if size not in self.compiled:
                self.compiled[size] = self.jitted.lower(*args).compile()
            return self.compiled[size]

    def __call__(self, *args):
        size = jax.tree.leaves(args[0])[0].shape[0]
        compiled = self.compiled.get(size)
        if compiled is None:
            t0 = time.perf_counter()
            compiled = self.prepare(*args)
            self.clock[0] += time.perf_counter() - t0
        return compiled(*args)


class TrainMap:
    """The compiled, sharded phases of a ``TrainProgram`` for one device set and its chunk sizes: ``chunk_size``
    (initialization, checks, classification, retired trials), ``full_chunk`` and ``tail_chunk`` (live trials'
    full steps; each compiled at its first use).

    Each phase is ``jit(shard_map(vmap(phase)))`` over the trial axis (the ``'trials'`` mesh axis of
    ``devices.trial_mesh``). ``compile_seconds``: time spent compiling so far (a persistent compilation cache
    makes it small; see ``collapse_mc.cache``).
    """

    def __init__(self, program: TrainProgram, chunk_size: int, mesh, block: int = CHECK_EVERY,
                 full_chunk: int | None = None, tail_chunk: int | None = None):
        self.program, self.mesh, self.block = program, mesh, block
        self.chunk_size = round_up(max(1, int(chunk_size)), mesh.devices.size)
        self.full_chunk = round_up(max(1, int(full_chunk or chunk_size)), mesh.devices.size)
        self.tail_chunk = round_up(max(1, int(tail_chunk or self.full_chunk)), mesh.devices.size)
        self._sharding = NamedSharding(mesh, P(AXIS))
        self._replicated = NamedSharding(mesh, P())
        self._clock = [0.0]
        prog = program

        def init_chunk(trials, root, values):
            return jax.vmap(prog.init, in_axes=(0, None))(rng.root_keys(root, trials), values)

        def checks_fn(state, data, values):
            return jax.vmap(prog.init_checks, in_axes=(0, 0, None))(state, data, values)

        def full_fn(state, data, trials, root, values, step0):
            return jax.vmap(lambda s, d, k: prog.full_block(s, d, k, values, step0, block))(
                state, data, rng.root_keys(root, trials))

        def window_fn(stop):
            def fn(state, data, trials, root, values, step0):
                return jax.vmap(lambda s, d, k: prog.full_window(s, d, k, values, step0, WINDOW_BLOCKS, block, stop))(
                    state, data, rng.root_keys(root, trials))
            return fn

        def cheap_chunk(state, data, trials, root, values, step0):
            return jax.vmap(lambda s, d, k: prog.cheap_block(s, d, k, values, step0, block))(
                state, data, rng.root_keys(root, trials))

        def finish_chunk(state, data, values):
            return jax.vmap(prog.finish, in_axes=(0, 0, None))(state, data, values)

        cpu = mesh.devices.flat[0].platform == "cpu"

        def sharded(fn, n_sharded, n_replicated, once=False):
            options = ONCE_COMPILER_OPTIONS if (once and cpu) else None
            return _Timed(shard_trials(fn, mesh, n_sharded, n_replicated, options), self._clock)

        net = program.network
        small = net.depth * net.width ** 2 < ONCE_OPTIMIZED_MIN_WORK
        self._init = sharded(init_chunk, 1, 2, once=True)
        self._checks = sharded(checks_fn, 2, 1, once=small)
        self._full = sharded(full_fn, 3, 3)
        self._cheap = sharded(cheap_chunk, 3, 3)
        self._window = {stop: sharded(window_fn(stop), 3, 3) for stop in (True, False)}
        self._finish = sharded(finish_chunk, 2, 1, once=small)

    @property
    def compile_seconds(self) -> float:
        return self._clock[0]

    def prewarm(self, root, values, after_death: str = "train") -> None:
        """Compile every phase a run with these traced ``values`` (and ``root``'s shape) will call, at every
        chunk size it may use, before it is called: a caller that knows which cells come next runs this in a
        background thread so compiling overlaps other work (a later call waits for a compilation under way
        rather than starting its own)."""
        root = jax.device_put(root, self._replicated)
        values = jax.device_put(values, self._replicated)
        step0 = jnp.int32(0)

        def spec(tree, size):  # the chunk's arrays as the driver passes them: host copies put on the devices
            return jax.tree.map(lambda a: jax.ShapeDtypeStruct((size,) + tuple(a.shape[1:]), a.dtype,
                                                               sharding=self._sharding), tree)

        trials = jax.ShapeDtypeStruct((self.chunk_size,), jnp.int32, sharding=self._sharding)
        state, data, _ = self._init.prepare(trials, root, values).out_info
        self._checks.prepare(spec(state, self.chunk_size), spec(data, self.chunk_size), values)
        full = self._window[after_death == "stop"] if self.windowed(after_death) else self._full
        for size in sorted({self.full_chunk, self.tail_chunk}):
            t = jax.ShapeDtypeStruct((size,), jnp.int32, sharding=self._sharding)
            full.prepare(spec(state, size), spec(data, size), t, root, values, step0)
        if after_death == "train" and self.program.has_cheap_path:
            self._cheap.prepare(spec(state, self.chunk_size), spec(data, self.chunk_size), trials, root, values,
                                step0)
        self._finish.prepare(spec(state, self.chunk_size), spec(data, self.chunk_size), values)

    def windowed(self, after_death: str) -> bool:
        """Whether full steps run ``WINDOW_BLOCKS`` blocks per call (``TrainProgram.full_window``): whole steps
        in the native kernel, dead networks stopped or trained fully (not retired to the cheap path)."""
        return bool(getattr(self.program, "fused_steps", False)) and after_death in ("stop", "full")

    def wave_size(self) -> int:
        """Trials held at once (host memory for their states and training sets within ``WAVE_MEMORY_BYTES``)."""
        n, prog = self.program.network, self.program
        n_params = (n.d_in + 1) * n.width + (n.depth - 1) * (n.width + 1) * n.width + (n.width + 1) * n.d_out
        own_points = 0 if getattr(prog, "dataset", None) is not None else prog.n_train  # a data set is shared
        per_trial = 4 * (4 * n_params + own_points * (n.d_in + n.d_out))
        return max(1, WAVE_MEMORY_BYTES // per_trial // self.chunk_size) * self.chunk_size

    def _put(self, tree):
        return jax.device_put(tree, self._sharding)

    def _chunks(self, idx: np.ndarray, c: int | None = None):
        """``(rows (c,), n)`` per chunk of the positions ``idx`` (``devices.padded_chunks``)."""
        return padded_chunks(idx, c or self.chunk_size)

    def _live_chunks(self, idx: np.ndarray, depth: int):
        """``(rows, n)`` for the full steps of the live positions ``idx`` of networks of ``depth`` hidden layers
        (``plan_live_chunks``)."""
        n_dev = self.mesh.devices.size
        overhead = n_dev * call_overhead(self.program.network.width, depth)
        lo = 0
        for size in plan_live_chunks(len(idx), self.full_chunk, self.tail_chunk, overhead):
            yield from padded_chunks(idx[lo:lo + size], size)
            lo += size

    def __call__(self, start: int, stop: int, root, values, progress: Callable[[int], None] | None = None,
                 after_death: str = "train") -> dict:
        """Outcomes (numpy, trial axis first) for global trials ``start .. stop - 1``."""
        if stop <= start:
            raise ValueError("empty trial range")
        depth = int(values["depth"]) if "depth" in values else self.program.network.depth
        root = jax.device_put(root, self._replicated)
        values = jax.device_put(values, self._replicated)
        wave = self.wave_size()
        pieces = [self._wave(lo, min(lo + wave, stop), root, values, progress, after_death, depth)
                  for lo in range(start, stop, wave)]
        return {k: np.concatenate([p[k] for p in pieces], axis=0) for k in pieces[0]}

    def _wave(self, start, stop, root, values, progress, after_death, depth) -> dict:
        steps = self.program.static.steps
        if after_death == "train" and not self.program.has_cheap_path:
            after_death = "full"  # nothing cheaper to run a dead network on: train it fully
        trials = np.arange(start, stop, dtype=np.int32)
        w = len(trials)
        every = np.arange(w)
        gather = lambda tree, rows: jax.tree.map(lambda a: a[rows], tree)  # noqa: E731

        # initialization and its checks, chunk by chunk, into host arrays
        parts = []
        for rows, n in self._chunks(every):
            state, data, first = self._init(self._put(trials[rows]), root, values)
            checks = self._checks(state, data, values)
            parts.append(jax.tree.map(lambda a: np.asarray(a)[:n], (state, data, {"first_dead_layer": first,
                                                                                  **checks})))
        state, data, checks = jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *parts)
        state = jax.tree.map(np.array, state)  # writable copies
        died_at = np.where(checks["dead_on_train"] | (checks["first_dead_layer"] > 0), 0, -1).astype(np.int32)

        n_blocks = math.ceil(steps / self.block)
        reported = 0
        if self.windowed(after_death):
            self._windows(state, data, trials, root, values, progress, after_death, depth, died_at, n_blocks)
            n_blocks = 0  # done
        for b in range(n_blocks):
            step0 = jnp.int32(b * self.block)
            retired = (died_at >= 0) if after_death != "full" else np.zeros(w, bool)
            groups = [(False, every[~retired])] + ([(True, every[retired])] if after_death == "train" else [])
            if not any(len(rows) for _, rows in groups):
                break  # every trial stopped at its death
            # every chunk of the block is dispatched before any result is fetched (the chunks hold disjoint
            # trials), so the host's gathering and copying overlaps the devices' work
            pending = []
            for cheap, rows_all in groups:
                for rows, n in (self._chunks(rows_all) if cheap else self._live_chunks(rows_all, depth)):
                    args = (self._put(gather(state, rows)), self._put(gather(data, rows)),
                            self._put(trials[rows]), root, values, step0)
                    pending.append((cheap, rows, n, (self._cheap if cheap else self._full)(*args)))
            for cheap, rows, n, out in pending:
                if cheap:
                    new = out
                else:
                    new, now_dead = out
                    now = rows[:n][np.asarray(now_dead)[:n]]
                    died_at[now[died_at[now] < 0]] = min((b + 1) * self.block, steps)
                for leaf, part in zip(jax.tree.leaves(state), jax.tree.leaves(new)):
                    leaf[rows[:n]] = np.asarray(part)[:n]
            if progress:
                done = w * (b + 1) // n_blocks
                if done > reported:
                    progress(done - reported)
                    reported = done

        parts = []
        for rows, n in self._chunks(every):
            out = self._finish(self._put(gather(state, rows)), self._put(gather(data, rows)), values)
            parts.append(jax.tree.map(lambda a: np.asarray(a)[:n], out))
        out = jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *parts)
        stopped = (died_at >= 0) if after_death == "stop" else np.zeros(w, bool)
        died_at = np.where((died_at < 0) & out["dead_on_train"], steps, died_at)
        return _outcomes(checks, out, died_at, ~stopped)


    def _windows(self, state, data, trials, root, values, progress, after_death, depth, died_at, n_blocks):
        """The full steps of a wave in calls of ``WINDOW_BLOCKS`` blocks (``windowed``): ``state`` (host
        arrays) and ``died_at`` updated in place. A trial found dead after block b (global) gets
        ``died_at = min((b + 1) * block, steps)``, as in the block-by-block loop."""
        steps = self.program.static.steps
        stop = after_death == "stop"
        call = self._window[stop]
        every = np.arange(len(trials))
        gather = lambda tree, rows: jax.tree.map(lambda a: a[rows], tree)  # noqa: E731
        reported = 0
        for b0 in range(0, n_blocks, WINDOW_BLOCKS):
            rows_all = every[died_at < 0] if stop else every
            if not len(rows_all):
                break
            step0 = jnp.int32(b0 * self.block)
            pending = []
            for rows, n in self._live_chunks(rows_all, depth):
                args = (self._put(gather(state, rows)), self._put(gather(data, rows)), self._put(trials[rows]), root,
                        values, step0)
                pending.append((rows, n, call(*args)))
            for rows, n, (new, dead_at) in pending:
                dead_at = np.asarray(dead_at)[:n]
                first = (dead_at >= 0) & (died_at[rows[:n]] < 0)
                died_at[rows[:n][first]] = np.minimum((b0 + dead_at[first] + 1) * self.block, steps)
                for leaf, part in zip(jax.tree.leaves(state), jax.tree.leaves(new)):
                    leaf[rows[:n]] = np.asarray(part)[:n]
            if progress:
                done = len(trials) * min(b0 + WINDOW_BLOCKS, n_blocks) // n_blocks
                if done > reported:
                    progress(done - reported)
                    reported = done
        if progress and reported < len(trials):
            progress(len(trials) - reported)


def call_overhead(width: int, depth: int) -> float:
    """The fixed cost of one call of a block of full steps, in networks' worth of work per device: the work a
    call's fixed part (dispatching a program of ``depth`` hidden layers, whatever its chunk size) could have
    spent on that many more networks of this ``width``. A fit to block timings on a 2-core Intel Xeon (2
    devices, widths 2-12, L_h 2-64; 100 steps): per call ``1.5 + 0.2 L_h`` ms, per network and device
    ``L_h (0.002 width^2 + 0.03)`` ms. It only weighs padding against calls; outcomes never depend on it."""
    depth = max(int(depth), 1)
    return (1.5 + 0.2 * depth) / (depth * (0.002 * width * width + 0.03))


def plan_live_chunks(n: int, full: int, tail: int, overhead: float) -> list[int]:
    """Chunk sizes for ``n`` live networks: full chunks while ``full`` remain; the rest in tail chunks, or in
    one more (padded) full chunk when that costs less, a call costing ``overhead`` networks' work
    (``call_overhead`` times the device count): ``c`` tail calls cost ``c (overhead + tail)`` against
    ``overhead + full``."""
    whole, rest = divmod(int(n), full)
    sizes = [full] * whole
    if rest:
        calls = -(-rest // tail)
        sizes += [full] if full - calls * tail <= (calls - 1) * overhead else [tail] * calls
    return sizes


def _outcomes(checks: dict, out: dict, died_at: np.ndarray, trained_to_end: np.ndarray) -> dict:
    """The ``TrainOutcomes`` fields from the init checks, the finish outputs and the death steps."""
    first = np.asarray(checks["first_dead_layer"], np.int32)
    born_dead = first > 0
    diverged = np.asarray(out["diverged"], bool)
    dead_after = born_dead | (died_at >= 0) | np.asarray(out["dead_on_grid"], bool)
    collapsed = dead_after | np.asarray(out["flat"], bool)
    value = np.where(collapsed[:, None], np.asarray(out["collapse_value"], np.float32), np.nan)
    return {"first_dead_layer": first, "born_dead": born_dead, "collapsed": collapsed, "diverged": diverged,
            "collapse_value": value.astype(np.float32), "final_loss": np.asarray(out["final_loss"], np.float32),
            "test_rel_l2": np.asarray(out["test_rel_l2"], np.float32),
            "dead_fraction": np.asarray(out["dead_fraction"], np.float32), "dead_after_training": dead_after,
            "near_flat_at_init": np.asarray(checks["near_flat_at_init"], bool),
            "died_at_step": np.where(born_dead, 0, died_at).astype(np.int32), "trained_to_end": trained_to_end,
            "test_accuracy": np.asarray(out["test_accuracy"], np.float32)}


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
        return n_devices * (1 << (per_device.bit_length() - 1))
    n_params = (n.d_in + 1) * n.width + (n.depth - 1) * (n.width + 1) * n.width + (n.width + 1) * n.d_out
    per_trial = 4 * (4 * n.depth * n.width * b + 8 * n_params + 3 * (n.d_in + n.d_out) * t.n_train
                     + 4 * t.test_points * (n.width + n.d_out))
    chunk = max(n_devices, min(1 << 16, CHUNK_MEMORY_BYTES // per_trial))
    return 1 << (chunk.bit_length() - 1)


@functools.lru_cache(maxsize=32)
def _program(network, init, static, optimizer, traced_depth=False, model=None, data=None,
             generic=False) -> TrainProgram:
    """The fast path (built-in MLP, uniform domain) unless a model, a data set or ``generic`` asks for the
    generic one (``generic.ModelProgram``)."""
    if model is None and data is None and not generic:
        return TrainProgram(network, init, static, optimizer, traced_depth)
    return ModelProgram(network, init, static, model, data, optimizer, traced_depth)


@functools.lru_cache(maxsize=32)
def _train_map(network, init, static, optimizer, chunk_size, devices, block, full_chunk, tail_chunk,
               traced_depth=False, model=None, data=None, generic=False) -> TrainMap:
    return TrainMap(_program(network, init, static, optimizer, traced_depth, model, data, generic), chunk_size,
                    trial_mesh(devices), block, full_chunk, tail_chunk)


def check_depth_capacity(cell: TrainCell, depth_capacity: int | None) -> None:
    integer = isinstance(depth_capacity, (int, np.integer)) and not isinstance(depth_capacity, bool)
    if depth_capacity is not None and not (integer and cell.network.depth <= depth_capacity <= MAX_DEPTH_CAPACITY):
        raise ConfigError(f"depth_capacity must be an integer in {cell.network.depth} .. {MAX_DEPTH_CAPACITY} "
                          f"(the cell's depth .. the largest capacity), got {depth_capacity!r}")


def train_map(cell: TrainCell, chunk_size: int | None = None, devices=None, trials: int | None = None,
              optimizer=None, depth_capacity: int | None = None, generic: bool = False) -> TrainMap:
    """The cached ``TrainMap`` for a cell's static part (shared by cells differing only in traced values).

    Without ``chunk_size`` the memory-bounded default is capped at the power of two >= ``trials``.
    ``devices``: default ``jax.local_devices()``. ``depth_capacity``: build the program for that many hidden
    layers with the cell's depth traced (``TrainProgram``'s ``traced_depth``), so cells of every depth up to
    it share one compilation; None: the cell's own depth, static. ``generic``: train the built-in MLP on the
    generic model path (as a user's model is trained; for testing it against the fast path).
    """
    check_depth_capacity(cell, depth_capacity)
    if depth_capacity is not None and (generic or cell.model is not None or cell.data is not None):
        raise ConfigError("depth_capacity applies to the built-in MLP on the uniform domain only")
    if depth_capacity is not None:
        cell = dataclasses.replace(cell, network=dataclasses.replace(cell.network, depth=depth_capacity))
    devices = tuple(devices) if devices is not None else tuple(jax.local_devices())
    chunk = chunk_size or default_chunk_size(cell, len(devices), devices[0].platform)
    if chunk_size is None and trials is not None:
        chunk = cap_chunk(chunk, trials, len(devices))
    full = tail = chunk  # an explicit chunk size is the only one used
    if not chunk_size:
        n_dev = len(devices)
        full = min(chunk, FULL_CHUNK_PER_DEVICE * n_dev)
        if trials is not None:  # the largest power of two per device that the trials fill
            full = min(full, n_dev * (1 << (max(1, int(trials) // n_dev).bit_length() - 1)))
        tail = min(full, TAIL_CHUNK_PER_DEVICE * n_dev)
    block = min(CHECK_EVERY, cell.train.steps)
    return _train_map(cell.network, cell.init, cell.train.static_part(), optimizer, chunk, devices, block, full,
                      tail, depth_capacity is not None, cell.model, cell.data, generic)


def prewarm(cell: TrainCell, trials: int, seed: int = 0, after_death: str = "train",
            depth_capacity: int | None = None) -> None:
    """``TrainMap.prewarm`` for the programs ``train_outcomes(cell, ..., chunk_trials=trials, after_death=...,
    depth_capacity=...)`` will run with default chunking on the local devices (how a sweep runs a block of
    ``trials``)."""
    tm = train_map(cell, None, None, trials=trials, depth_capacity=depth_capacity)
    tm.prewarm(root_array(seed, cell), values_array(cell, depth_capacity is not None), after_death)


def root_array(seed: int, cell: TrainCell) -> jax.Array:
    """``[seed, cell id]`` as uint32: trial keys are ``fold_in(fold_in(key(seed), cell), trial)``."""
    return jnp.array([seed & 0xFFFFFFFF, cell.cell], jnp.uint32)


def values_array(cell: TrainCell, traced_depth: bool = False) -> dict:
    """The cell's traced values as float32 scalars (plus ``depth``, int32, with ``traced_depth``)."""
    values = {k: jnp.float32(v) for k, v in cell.train.values().items()}
    if traced_depth:
        values["depth"] = jnp.int32(cell.network.depth)
    if cell.data is not None:  # the data set, features-major, shared by every trial (replicated)
        values.update({k: jnp.asarray(v) for k, v in cell.data.arrays().items()})
    return values


def train_outcomes(cell: TrainCell, start: int, stop: int, seed: int = 0, *, chunk_size: int | None = None,
                   devices=None, progress: Callable[[int], None] | None = None,
                   optimizer: optax.GradientTransformation | None = None, after_death: str = "train",
                   depth_capacity: int | None = None, timings: dict | None = None,
                   generic: bool = False, chunk_trials: int | None = None) -> TrainOutcomes:
    """Train and classify trials ``start .. stop - 1`` (global indices) of ``cell`` under root ``seed``.

    ``progress(n)`` is called with the number of newly finished trials (fractions of a wave as blocks of
    steps finish). ``optimizer``: any optax ``GradientTransformation`` to use instead of the configured one
    (its hyperparameters are then fixed, not traced; the trial keys stay those of the cell). ``after_death``:
    ``"train"`` | ``"stop"`` | ``"full"`` (see the module docstring). ``depth_capacity``: share one
    compilation between depths up to it (see ``train_map``; outcomes are the same). ``timings``: if given,
    receives ``compile_seconds`` and ``run_seconds``. ``generic``: the built-in MLP on the generic model path
    (see ``train_map``). A cell with a ``model`` or ``data`` always takes the generic path. ``chunk_trials``:
    without ``chunk_size``, size the default chunks for this many trials instead of ``stop - start`` (a sweep
    passes its block size, so its last, shorter block reuses the compiled chunks).
    """
    check_trial_range(start, stop)
    if optimizer is not None and cell.train.optimizer_options:
        raise ConfigError("optimizer_options configure the named optimizer; they would be ignored with an optax "
                          "optimizer passed in (set its options where you build it)")
    if after_death not in AFTER_DEATH:
        raise ConfigError(f"after_death must be one of {', '.join(AFTER_DEATH)}, got {after_death!r}")
    t0 = time.perf_counter()
    if chunk_trials is not None and not (isinstance(chunk_trials, (int, np.integer)) and chunk_trials >= 1):
        raise ConfigError(f"chunk_trials must be a positive integer, got {chunk_trials!r}")
    tm = train_map(cell, chunk_size, devices, trials=chunk_trials or (stop - start), optimizer=optimizer,
                   depth_capacity=depth_capacity, generic=generic)
    compiled_before = tm.compile_seconds
    out = tm(start, stop, root_array(seed, cell), values_array(cell, depth_capacity is not None),
             progress=progress, after_death=after_death)
    if depth_capacity is not None:
        out["dead_fraction"] = out["dead_fraction"][:, :cell.network.depth]  # the layers above it were skipped
    if timings is not None:
        timings["compile_seconds"] = tm.compile_seconds - compiled_before
        timings["run_seconds"] = time.perf_counter() - t0 - timings["compile_seconds"]
    return TrainOutcomes(**out)


@functools.lru_cache(maxsize=32)
def _jitted_train(prog):
    """``prog.train`` jitted once per program, so every trial ``train_single`` trains reuses its trace."""
    return jax.jit(prog.train)


def train_single(cell: TrainCell, trial: int, seed: int = 0, optimizer=None, generic: bool = False) -> dict:
    """One trial trained alone (no vmap, no retirement, one unblocked scan, death checked only at the start and
    the end): the reference ``train_outcomes`` must match. Returns the ``TrainOutcomes`` fields (scalars, and
    ``(d_out,)`` / ``(L_h,)`` arrays); ``died_at_step`` is 0, ``steps`` or -1 here."""
    prog = _program(cell.network, cell.init, cell.train.static_part(), optimizer, False, cell.model, cell.data,
                    generic)
    key = rng.trial_key(rng.cell_key(seed, cell.cell), jnp.int32(trial))
    out = jax.tree.map(lambda a: np.asarray(a)[None], _jitted_train(prog)(key, values_array(cell)))
    died_at = np.where(out["dead_on_train_at_init"], 0, np.where(out["dead_on_train"], cell.train.steps, -1))
    checks = {"first_dead_layer": out["first_dead_layer"], "near_flat_at_init": out["near_flat_at_init"]}
    return {k: v[0] for k, v in _outcomes(checks, out, died_at, np.ones(1, bool)).items()}
