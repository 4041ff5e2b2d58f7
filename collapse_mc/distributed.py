"""One cell's trials over several processes (hosts) with ``jax.distributed``.

Design: process r of P computes the contiguous slice ``[r T / P, (r+1) T / P)`` of the trial range on its own
devices (``jax.local_devices()``); the per-trial outcome arrays (padded to equal length) are then gathered on
every process with ``jax.experimental.multihost_utils.process_allgather`` and cut back in process order. A
trial's key depends only on (seed, cell, global trial index), so the result equals a single-process run trial
for trial. The compiled programs run without collectives (each process's devices work alone, like shards),
and only the final gather crosses hosts. Process 0 (``is_main()``) alone prints or writes.

Start: ``initialize(coordinator, num_processes, process_id)`` (each None where JAX detects the cluster itself,
e.g. under SLURM), before anything else uses JAX. CPU processes use gloo collectives for the gather.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from typing import Callable

import numpy as np

from .config import ConfigError


class DistributedError(ConfigError):
    """Bad multi-process settings, or a cluster that could not be joined (one line)."""


# ----------------------------------------------------------------------------------------------- start-up

def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout_s: int = 300) -> None:
    """Join the ``jax.distributed`` cluster (idempotent). ``coordinator``: ``HOST:PORT`` of process 0."""
    import jax
    from jax._src import distributed as _state

    if getattr(_state.global_state, "client", None) is not None:
        return
    if coordinator is not None:
        _host_port(coordinator)
    if num_processes is not None and num_processes < 1:
        raise DistributedError(f"--num-processes: must be >= 1, got {num_processes}")
    if process_id is not None and (process_id < 0 or (num_processes is not None and process_id >= num_processes)):
        raise DistributedError(f"--process-id: must be in 0 .. num-processes - 1, got {process_id}")
    try:
        if jax.config.jax_cpu_collectives_implementation in (None, "none"):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except AttributeError:  # an older jax without the option: its default
        pass
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id, initialization_timeout=timeout_s)
    except (ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DistributedError(f"--distributed: cannot join the cluster ({first}); outside a cluster JAX "
                               "detects (SLURM, ...) give --coordinator HOST:PORT --num-processes N "
                               "--process-id I") from None


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = str(text).rpartition(":")
    try:
        p = int(port)
        if not sep or not host or not 0 < p < 65536:
            raise ValueError
    except ValueError:
        raise DistributedError(f"--coordinator: expected HOST:PORT (port 1-65535), got {text!r}") from None
    return host, p


def is_main() -> bool:
    """Whether this is process 0 (always true without ``jax.distributed``): the one that prints and writes."""
    import jax
    return jax.process_index() == 0


# ----------------------------------------------------------------------------------------------- outcomes

def process_slice(trials: int, index: int, count: int) -> tuple[int, int]:
    """The contiguous trials ``[lo, hi)`` of process ``index`` of ``count`` among ``0 .. trials - 1``."""
    return trials * index // count, trials * (index + 1) // count


def distributed_outcomes(outcomes_fn: Callable, cell, trials: int, seed: int = 0, *,
                         progress: Callable[[int], None] | None = None, **kwargs):
    """``outcomes_fn(cell, 0, trials, seed, ...)`` computed over all processes; every process gets the whole
    result (a pytree of numpy arrays, trial axis first), equal to a single-process call.

    ``outcomes_fn``: ``born_dead_outcomes`` or ``train_outcomes`` (or alike: ``(cell, start, stop, seed, *,
    devices, progress, **kwargs)``). Each process runs its slice on ``jax.local_devices()``.
    """
    import jax
    from jax.experimental import multihost_utils

    count, index = jax.process_count(), jax.process_index()
    bounds = [process_slice(trials, r, count) for r in range(count)]
    lo, hi = bounds[index]
    longest = max(b - a for a, b in bounds)
    run = lambda a, b, prog: outcomes_fn(cell, a, b, seed, devices=jax.local_devices(), progress=prog,  # noqa: E731
                                         **kwargs)
    local = run(lo, hi, progress) if hi > lo else jax.tree.map(lambda x: x[:0], run(0, 1, None))
    if progress is not None:
        progress(trials - (hi - lo))  # the other processes' trials, so the bar ends at its total
    if count == 1:
        return local

    def pad(x):
        x = np.asarray(x)
        x = x.view(np.uint8) if x.dtype == bool else x
        return np.concatenate([x, np.zeros((longest - x.shape[0],) + x.shape[1:], x.dtype)])

    dtypes = jax.tree.map(lambda x: np.asarray(x).dtype, local)
    with _stdout_to_stderr():  # gloo reports its connections on stdout, which is for results (--json)
        gathered = multihost_utils.process_allgather(jax.tree.map(pad, local), tiled=False)  # (P, longest, ...)
    return jax.tree.map(lambda g, dt: np.concatenate([np.asarray(g)[r, :b - a] for r, (a, b) in enumerate(bounds)])
                        .astype(dt), gathered, dtypes)


@contextlib.contextmanager
def _stdout_to_stderr():
    """Send what native code writes to file descriptor 1 to descriptor 2 meanwhile."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no stdout
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def estimate_born_dead(cell, trials: int, seed: int = 0, *, chunk_size: int | None = None,
                       devices=None, progress: Callable[[int], None] | None = None) -> dict:
    """``deadness.estimate_born_dead`` over all processes (``devices`` is ignored: each process uses its own)."""
    from .deadness import born_dead_outcomes
    from .deadness.born_dead import summarize
    t0 = time.perf_counter()
    out = distributed_outcomes(born_dead_outcomes, cell, trials, seed, progress=progress, chunk_size=chunk_size)
    return summarize(cell, out, time.perf_counter() - t0)


def estimate_training(cell, trials: int, seed: int = 0, *, chunk_size: int | None = None, devices=None,
                      progress: Callable[[int], None] | None = None, optimizer=None,
                      after_death: str = "train") -> dict:
    """``training.estimate_training`` over all processes (``devices`` is ignored: each process uses its own);
    ``compile_seconds``/``run_seconds`` are this process's."""
    from .training import summarize_training, train_outcomes
    t0 = time.perf_counter()
    timings: dict = {}
    out = distributed_outcomes(train_outcomes, cell, trials, seed, progress=progress, chunk_size=chunk_size,
                               optimizer=optimizer, after_death=after_death, timings=timings)
    rec = summarize_training(cell, out, time.perf_counter() - t0, optimizer=optimizer)
    rec["compile_seconds"] = timings.get("compile_seconds", 0.0)
    rec["run_seconds"] = time.perf_counter() - t0 - rec["compile_seconds"]
    return rec


DISTRIBUTED_ESTIMATORS = {"estimate_born_dead": estimate_born_dead, "estimate_training": estimate_training}


# ----------------------------------------------------------------------------------------------- CLI

def add_distributed_options(p: argparse.ArgumentParser) -> None:
    """``--distributed --coordinator HOST:PORT --num-processes N --process-id I``."""
    g = p.add_argument_group("many processes (jax.distributed)")
    g.add_argument("--distributed", action="store_true",
                   help="run this cell's trials over all processes of a jax.distributed cluster (each computes a "
                        "slice on its own devices; process 0 prints). Start one process per host (or per GPU)")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="address of process 0 (optional where JAX detects the cluster, e.g. SLURM)")
    g.add_argument("--num-processes", default=None, metavar="N", help="number of processes (optional likewise)")
    g.add_argument("--process-id", default=None, metavar="I", help="this process's index 0 .. N-1 (optional likewise)")


def distributed_estimator(args, estimator: Callable) -> Callable:
    """With ``--distributed``: join the cluster and return the multi-process version of ``estimator``
    (``estimate_born_dead`` or ``estimate_training``); without it, ``estimator`` unchanged (the other options
    are then refused)."""
    from .cli.common import UsageError, positive_int
    if not getattr(args, "distributed", False):
        given = [o for o, v in (("--coordinator", args.coordinator), ("--num-processes", args.num_processes),
                                ("--process-id", args.process_id)) if v is not None]
        if given:
            raise UsageError(f"{given[0]} needs --distributed")
        return estimator
    n = None if args.num_processes is None else positive_int("num-processes", args.num_processes)
    i = None if args.process_id is None else positive_int("process-id", args.process_id, minimum=0)
    if i is not None and n is not None and i >= n:
        raise UsageError(f"--process-id: must be < --num-processes ({n}), got {i}")
    initialize(args.coordinator, n, i)
    return DISTRIBUTED_ESTIMATORS[estimator.__name__]
