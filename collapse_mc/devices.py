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


def cap_chunk(chunk: int, trials: int, n_devices: int) -> int:
    """``chunk`` capped at the power of two >= ``trials`` (at least ``n_devices``): a small run is not padded to
    a large chunk, and runs of nearby sizes share one compiled shape."""
    return min(chunk, max(n_devices, 1 << max(0, (int(trials) - 1).bit_length())))


def padded_chunks(items: np.ndarray, c: int):
    """``(rows (c,), n)`` for each consecutive chunk of ``items``: the last one padded to ``c`` by repeating
    its first row (the padding recomputes a real row; callers keep the first ``n`` results)."""
    for lo in range(0, len(items), c):
        rows = items[lo:lo + c]
        n = len(rows)
        if n < c:
            rows = np.concatenate([rows, np.full(c - n, rows[0], rows.dtype)])
        yield rows, n


def sharded(fn: Callable[..., Any], mesh: Mesh, n_sharded: int, n_replicated: int, compiler_options=None):
    """``jit(shard_map(fn))``: the first ``n_sharded`` arguments split along the ``'trials'`` axis over the mesh,
    the next ``n_replicated`` replicated; every output split along it. The one way work is put on devices."""
    specs = (P(AXIS),) * n_sharded + (P(),) * n_replicated
    return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=P(AXIS), check_vma=False),
                   compiler_options=compiler_options)


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
            self._compiled[n_args] = sharded(self._fn, self.mesh, 1, n_args)
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
        pieces: list[Any] = []
        pending = None
        for rows, n in padded_chunks(np.arange(start, stop, dtype=np.int32), self.chunk_size):
            trials = jax.device_put(rows, self._sharding)
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
