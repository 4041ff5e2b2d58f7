"""Chunking the trial axis and sharding it over every device.

Work is expressed as a *chunk function* ``fn(trials, *args) -> pytree`` where ``trials`` is an int32 vector of
global trial indices ``(c,)`` and every leaf of the result has leading axis ``c``. ``TrialMap`` compiles it
once with ``jax.shard_map`` over a one-axis mesh (``'trials'``) of this process's devices (``jax.local_devices()``;
a mesh over every process's devices may be passed under ``jax.distributed``), so each device runs ``fn`` on
its contiguous slice of the chunk, and feeds it fixed-size chunks (the last one padded), keeping one chunk in
flight while the previous one is copied back. Memory is bounded by the chunk size. Because trial keys depend
only on the global index, results do not depend on the chunk size or the device count.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "trials"


def trial_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named ``'trials'`` over ``devices`` (default: this process's, ``jax.local_devices()``)."""
    devices = list(devices) if devices is not None else jax.local_devices()
    return Mesh(np.array(devices), (AXIS,))


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


class TrialMap:
    """Run a chunk function over a range of trials, chunked and sharded.

    ``fn(trials (c,), *args)``: ``args`` are replicated on every device (traced values: changing them does not
    recompile). ``chunk_size`` is rounded up to a multiple of the device count.
    """

    def __init__(self, fn: Callable[..., Any], chunk_size: int, mesh: Mesh | None = None):
        self.mesh = mesh if mesh is not None else trial_mesh()
        n_dev = self.mesh.devices.size
        self.chunk_size = round_up(max(1, int(chunk_size)), n_dev)
        self._sharding = NamedSharding(self.mesh, P(AXIS))
        self._fn = fn
        self._compiled: dict[int, Callable] = {}

    def _compiled_for(self, n_args: int):
        if n_args not in self._compiled:
            mapped = jax.shard_map(
                self._fn,
                mesh=self.mesh,
                in_specs=(P(AXIS),) + (P(),) * n_args,
                out_specs=P(AXIS),
                check_vma=False,
            )
            self._compiled[n_args] = jax.jit(mapped)
        return self._compiled[n_args]

    def lower(self, *args):
        """Lower (trace) for the current chunk size; ``.compile()`` on the result compiles."""
        trials = jax.ShapeDtypeStruct((self.chunk_size,), jnp.int32, sharding=self._sharding)
        return self._compiled_for(len(args)).lower(trials, *args)

    def __call__(self, start: int, stop: int, *args, progress: Callable[[int], None] | None = None):
        """Results for trials ``start .. stop - 1`` as a numpy pytree with leading axis ``stop - start``."""
        if stop <= start:
            raise ValueError("empty trial range")
        fn = self._compiled_for(len(args))
        c = self.chunk_size
        pieces: list[Any] = []
        pending = None
        for lo in range(start, stop, c):
            n = min(c, stop - lo)
            idx = np.arange(lo, lo + c, dtype=np.int64)
            idx[n:] = lo  # padding: recomputes a real trial, result dropped
            trials = jax.device_put(idx.astype(np.int32), self._sharding)
            out = fn(trials, *args)
            if pending is not None:
                pieces.append(_fetch(*pending))
                if progress:
                    progress(pending[1])
            pending = (out, n)
        pieces.append(_fetch(*pending))
        if progress:
            progress(pending[1])
        return jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *pieces)


def _fetch(out, n):
    """The first ``n`` rows of every leaf as numpy. A leaf spanning other processes' devices (a mesh over
    ``jax.devices()`` under ``jax.distributed``) is gathered with ``process_allgather``: a collective, so every
    process must fetch the same results in the same order (``TrialMap`` does)."""
    return jax.tree.map(lambda x: _to_numpy(x)[:n], out)


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
