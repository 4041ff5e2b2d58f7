"""Born-dead Monte Carlo: how many of T freshly initialized networks are dead on the domain.

Entry points: ``BornDeadCell`` (what to estimate), ``born_dead_outcomes`` (per-trial outcomes for a range of
trial indices) and ``estimate_born_dead`` (counts, probability, intervals and theory).

Method ``auto`` picks the fast Gaussian kernel when it is exact for the cell (d_in 1, zero biases, relu,
Gaussian weights, no residual blocks) and the dense kernel otherwise. The two are equal in distribution, not
trial by trial: the method is part of the cell's identity (and of its random stream).
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import rng
from ..config import (GAUSSIAN_WEIGHT_INITS, ConfigError, InitConfig, NetworkConfig, ProbeConfig, cell_id,
                      check_trial_range, to_dict)
from ..devices import TrialMap, cap_chunk, trial_mesh
from ..estimates import clopper_pearson, wilson
from ..nets.initializers import WEIGHT_INIT_REGISTRY
from ..theory import p_dead_single_input, single_input_applies
from . import probes as probes_mod
from .dense_kernel import dense_chunk_fn
from .gaussian_kernel import gaussian_chunk_fn

METHODS = ("auto", "gaussian", "dense")


@dataclasses.dataclass(frozen=True)
class BornDeadCell:
    """One cell of a born-dead study. ``network.depth`` counts hidden layers."""

    network: NetworkConfig
    init: InitConfig = InitConfig()
    probe: ProbeConfig = ProbeConfig()
    method: str = "auto"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.method == "gaussian" and not gaussian_applies(self.network, self.init):
            raise ConfigError("method 'gaussian' needs d_in=1, zero biases, relu, no residual blocks and "
                              f"Gaussian weights ({', '.join(GAUSSIAN_WEIGHT_INITS)})")

    @property
    def resolved_method(self) -> str:
        if self.method != "auto":
            return self.method
        exact = gaussian_applies(self.network, self.init) and self.probe.points is None
        return "gaussian" if exact else "dense"

    def identity(self) -> dict:
        """The settings that determine the outcomes (hashed into the cell's random stream)."""
        d = {"kind": "born_dead", "network": to_dict(self.network), "init": to_dict(self.init),
             "method": self.resolved_method}
        if self.resolved_method == "dense":
            d["probe"] = to_dict(self.probe)
        return d

    @property
    def cell(self) -> int:
        return cell_id(self.identity())


def gaussian_applies(network: NetworkConfig, init: InitConfig) -> bool:
    return (network.d_in == 1 and network.activation == "relu" and not network.residual and init.zero_bias
            and init.layer_init_name("first") in GAUSSIAN_WEIGHT_INITS
            and init.layer_init_name("hidden") in GAUSSIAN_WEIGHT_INITS)


class BornDeadOutcomes(NamedTuple):
    """Per-trial outcomes, trial axis first.

    ``first_dead_layer (T,) int32``: 1-based index of the first hidden layer whose output is constant over the
    domain (all-zero for ReLU), 0 when the network is not born dead. ``dead_neurons (T, L_h)``: per hidden
    layer, the number of neurons whose pre-activation is <= 0 on the whole domain (divide by width for the
    fraction).
    """

    first_dead_layer: np.ndarray
    dead_neurons: np.ndarray

    @property
    def born_dead(self) -> np.ndarray:
        return self.first_dead_layer > 0


# The Gaussian kernel's programs are shared: one per width, depth capacity (the depth rounded up to a multiple
# of GAUSSIAN_DEPTH_STEP) and chunk size, with the chunk size at least GAUSSIAN_MIN_CHUNK (a chunk of 4,096 such
# trials takes milliseconds, a compilation seconds). Neither changes an outcome.
GAUSSIAN_DEPTH_STEP = 16
GAUSSIAN_MIN_CHUNK = 4096


def default_chunk_size(cell: BornDeadCell, n_devices: int) -> int:
    """Trials per chunk, bounding memory to roughly 256 MB of intermediates."""
    n = cell.network
    if cell.resolved_method == "gaussian":
        per_trial = 4 * gaussian_capacity(n.depth) * n.width + 64
    else:
        p = len(probes_mod.probe_points(n, cell.init, cell.probe))
        per_trial = 4 * (3 * p * n.width + n.depth * (n.width + 1) * n.width)
    chunk = max(n_devices, min(1 << 18, (256 << 20) // per_trial))
    return 1 << (chunk.bit_length() - 1)


def chunk_for_trials(cell: BornDeadCell, n_devices: int, trials: int) -> int:
    """The default chunk size capped at the power of two >= ``trials`` (``devices.cap_chunk``: a small run is
    not padded to a large chunk, and nearby sizes share one compiled shape); for the Gaussian kernel at least
    ``GAUSSIAN_MIN_CHUNK``."""
    default = default_chunk_size(cell, n_devices)
    chunk = cap_chunk(default, trials, n_devices)
    if cell.resolved_method == "gaussian":
        chunk = max(chunk, min(default, GAUSSIAN_MIN_CHUNK))
    return chunk


def gaussian_capacity(depth: int) -> int:
    """The hidden layers of the Gaussian kernel's program for a cell of ``depth`` hidden layers: ``depth``
    rounded up to a multiple of ``GAUSSIAN_DEPTH_STEP`` (the depth itself traced, see
    ``gaussian_kernel.gaussian_chunk_fn``), or ``depth`` where ``jax.random`` is not the partitionable threefry
    (only that one makes a shorter draw of bits a prefix of a longer one, which sharing needs)."""
    if not rng.threefry_partitionable():
        return depth
    return -(-depth // GAUSSIAN_DEPTH_STEP) * GAUSSIAN_DEPTH_STEP


@functools.lru_cache(maxsize=64)
def _gaussian_map(width: int, capacity: int, chunk_size: int, devices: tuple) -> TrialMap:
    per_device = max(1, chunk_size // len(devices))
    pool = max(min(per_device, 256), per_device // 16)
    return TrialMap(gaussian_chunk_fn(width, capacity, pool_size=pool), chunk_size, trial_mesh(devices))


@functools.lru_cache(maxsize=64)
def _dense_map(cell: BornDeadCell, chunk_size: int, devices: tuple) -> TrialMap:
    pts = probes_mod.probe_points(cell.network, cell.init, cell.probe)
    return TrialMap(dense_chunk_fn(cell.network, cell.init, pts), chunk_size, trial_mesh(devices))


def born_dead_map(cell: BornDeadCell, chunk_size: int | None = None, devices=None,
                  trials: int | None = None) -> TrialMap:
    """The compiled-on-first-use ``TrialMap`` for a cell (cached per program, chunk size and devices). Call it
    with ``born_dead_args(cell, seed)``.

    Without ``chunk_size``: ``chunk_for_trials`` when ``trials`` is given, else the default. The Gaussian
    kernel's map is shared by every cell of the same width and depth capacity (``gaussian_capacity``): its
    ``dead_neurons`` have ``gaussian_capacity(depth)`` columns, of which the first ``depth`` count.
    """
    devices = tuple(devices) if devices is not None else tuple(jax.local_devices())
    if chunk_size is not None:
        chunk = chunk_size
    elif trials is not None:
        chunk = chunk_for_trials(cell, len(devices), trials)
    else:
        chunk = default_chunk_size(cell, len(devices))
    if cell.resolved_method == "gaussian":
        return _gaussian_map(cell.network.width, gaussian_capacity(cell.network.depth), chunk, devices)
    return _dense_map(cell, chunk, devices)


def root_array(seed: int, cell: BornDeadCell) -> jax.Array:
    return jnp.array([seed & 0xFFFFFFFF, cell.cell], jnp.uint32)


def born_dead_args(cell: BornDeadCell, seed: int) -> tuple:
    """The traced arguments of ``born_dead_map(cell)``: the root ``[seed, cell]`` and, for the Gaussian kernel,
    the depth."""
    root = root_array(seed, cell)
    return (root, jnp.int32(cell.network.depth)) if cell.resolved_method == "gaussian" else (root,)


def born_dead_outcomes(cell: BornDeadCell, start: int, stop: int, seed: int = 0, *, chunk_size: int | None = None,
                       devices=None, progress: Callable[[int], None] | None = None) -> BornDeadOutcomes:
    """Outcomes of trials ``start .. stop - 1`` (global indices) of ``cell`` under root ``seed``."""
    check_trial_range(start, stop)
    tm = born_dead_map(cell, chunk_size, devices, trials=stop - start)
    out = tm(start, stop, *born_dead_args(cell, seed), progress=progress)
    return BornDeadOutcomes(out["first_dead_layer"], out["dead_neurons"][:, :cell.network.depth])


def summarize(cell: BornDeadCell, outcomes: BornDeadOutcomes, seconds: float | None = None) -> dict:
    """One JSON-able record: settings, counts, Wilson and Clopper-Pearson intervals, theory."""
    n = cell.network
    trials = int(outcomes.first_dead_layer.shape[0])
    k = int(np.sum(outcomes.born_dead))
    w = wilson(k, trials)
    cp = clopper_pearson(k, trials)
    rec = {
        "width": n.width, "depth": n.depth, "layers": n.layers, "d_in": n.d_in, "activation": n.activation,
        "residual": n.residual, "init": WEIGHT_INIT_REGISTRY.label(cell.init.weights),
        **({} if isinstance(cell.init.weights, str) else
           {"init_hash": WEIGHT_INIT_REGISTRY.identity(cell.init.weights)["hash"]}),
        "bias": "rai" if cell.init.weights == "rai" else cell.init.bias,
        "bias_value": cell.init.bias_value, "method": cell.resolved_method,
        "probes": probes_mod.describe(n, cell.init, cell.probe),
        "trials": trials, "born_dead": k, "p": w.p, "ci_low": w.ci_low, "ci_high": w.ci_high,
        "cp_low": cp.ci_low, "cp_high": cp.ci_high,
        "theory_single_input": (p_dead_single_input(n.width, n.depth)
                                if single_input_applies(n, cell.init) else None),
        "dead_fraction_per_layer": (outcomes.dead_neurons.mean(axis=0) / n.width).round(6).tolist(),
    }
    if seconds is not None:
        rec["seconds"] = seconds
        rec["nets_per_second"] = trials / seconds if seconds > 0 else None
    return rec


def estimate_born_dead(cell: BornDeadCell, trials: int, seed: int = 0, *, chunk_size: int | None = None,
                       devices=None, progress: Callable[[int], None] | None = None) -> dict:
    """Run ``trials`` trials (indices 0 .. trials-1) and summarize (see ``summarize``)."""
    t0 = time.perf_counter()
    out = born_dead_outcomes(cell, 0, trials, seed, chunk_size=chunk_size, devices=devices, progress=progress)
    return summarize(cell, out, time.perf_counter() - t0)
