"""The resumable sweep runner.

``run_sweep(spec, db_path)`` records every cell's trials ``[0, trials)`` in blocks of ``block_size`` global
trial indices (block k = ``[k B, (k+1) B)``, the last one cut at ``trials``). Before computing it asks the
store what is recorded, so a re-run (after a kill, or with more trials) computes only the missing blocks; a
block whose range is partly recorded (e.g. after a change of block size) is computed whole and only its
unrecorded parts are stored. Each finished block is one transaction. Because a trial's key depends only on
(seed, cell, trial index), the outcomes do not depend on block boundaries, chunk size, device count,
interruptions or how many processes share the work.

Several processes may run the same sweep on the same store: each first takes blocks no live process has
claimed, then the rest; the store records each block once. With ``shard=Shard(i, n)`` a run computes only its
fixed share of the blocks (``sweep.shards``), typically into its own store, joined later by
``store.merge``. Computation uses this process's devices (``jax.local_devices()``), also under
``jax.distributed``.
"""
from __future__ import annotations

import os
import socket
import time
import uuid
from typing import Callable

import numpy as np

from ..store import Store, check_store_path
from .shards import Shard, shard_units
from .spec import SweepCell, SweepSpec, load_spec


def environment_info() -> dict:
    """Package, JAX and device versions stored with every block."""
    import jax
    import jaxlib

    from .. import __version__
    devs = jax.local_devices()
    return {"package_version": __version__, "jax_version": jax.__version__,
            "jaxlib_version": getattr(jaxlib, "__version__", None), "backend": jax.default_backend(),
            "device_kind": devs[0].device_kind if devs else None, "device_count": len(devs),
            "host": socket.gethostname(), "pid": os.getpid()}


def compute_block(sc: SweepCell, start: int, stop: int, chunk_size: int | None = None,
                  progress: Callable[[int], None] | None = None,
                  after_death: str = "train", depth_capacity: int | None = None,
                  block_size: int | None = None) -> tuple[dict, np.ndarray]:
    """Outcomes of trials ``[start, stop)`` of a cell on this process's devices: (per-trial arrays to store,
    per-layer dead fractions ``(T, L_h)``). ``after_death``, ``depth_capacity``: for trained cells, passed to
    ``train_outcomes`` (neither changes a probability). ``block_size``: a trained cell without ``chunk_size``
    takes ``train_outcomes``' default chunks sized for this many trials (so a shorter last block shares them)."""
    import jax
    devices = jax.local_devices()
    if sc.kind == "born_dead":
        from ..deadness import born_dead_outcomes
        out = born_dead_outcomes(sc.cell, start, stop, sc.seed, chunk_size=chunk_size, devices=devices,
                                 progress=progress)
        arrays = {"first_dead_layer": np.asarray(out.first_dead_layer)}
        ldf = np.asarray(out.dead_neurons, np.float64) / sc.cell.network.width
        return arrays, ldf
    from ..training import train_outcomes
    out = train_outcomes(sc.cell, start, stop, sc.seed, chunk_size=chunk_size, devices=devices,
                         progress=progress, after_death=after_death, depth_capacity=depth_capacity,
                         chunk_trials=block_size)
    arrays = {k: np.asarray(v) for k, v in out._asdict().items()}
    if sc.cell.data is None or sc.cell.data.task != "classification":
        arrays.pop("test_accuracy")  # NaN: stored for classification cells only
    return arrays, np.asarray(out.dead_fraction, np.float64)


def block_chunk(sc: SweepCell, block_size: int) -> int:
    """One chunk size per born-dead cell: the memory-bounded default capped at the power of two >= the block
    size, so the last, shorter block is padded rather than recompiled, and cells of a group share a program."""
    import jax
    from ..deadness.born_dead import chunk_for_trials
    return chunk_for_trials(sc.cell, len(jax.local_devices()), block_size)


def run_sweep(spec: SweepSpec | str | os.PathLike, db_path, progress=None, *, chunk_size: int | None = None,
              cell_callback: Callable[[SweepCell, int, int, list], None] | None = None,
              shard: Shard | None = None, after_death: str = "train", depth_capacity: int | None = None) -> dict:
    """Run (or resume) a sweep into the store at ``db_path``; returns a summary dict.

    ``spec``: a ``SweepSpec`` or a path / shipped spec name. ``progress``: a callable taking the number of
    newly finished trials (e.g. ``collapse_mc.progress.Progress``), with optional ``set_label``; its
    ``total`` is set to the trials still missing when it has that attribute. ``cell_callback(cell, start,
    stop, recorded)`` is called after each block. ``shard``: compute only this shard's blocks (all cells
    are still registered, so every shard's store describes the whole sweep). ``after_death``: what trained
    networks found dead do (``training.train_outcomes``; "stop" leaves every probability unchanged);
    ``depth_capacity``: trained cells run in a program of that many hidden layers with their depth traced, so
    cells of different depths share one compilation (outcomes identical). The
    summary has ``results``: ``Store.cell_estimates`` for the sweep's cells.
    """
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec)
    check_store_path(db_path, create=True)
    t0 = time.perf_counter()
    chunk = chunk_size or spec.chunk_size
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    summary = {"db": str(db_path), "sweep": spec.sweep_hash, "name": spec.name, "kind": spec.kind,
               "cells": len(spec.cells), "trials_per_cell": spec.trials, "block_size": spec.block_size,
               "seed": spec.seed, "blocks_computed": 0, "blocks_recorded": 0, "trials_computed": 0,
               "trials_recorded": 0, "blocks_done_elsewhere": 0, "shard": None if shard is None else str(shard)}
    with Store(db_path, create=True) as store:
        store.register_sweep(spec.sweep_hash, spec.name, spec.kind, spec.to_dict(), spec.source,
                             [{"cell_hash": c.cell_hash, "kind": c.kind, "seed": c.seed, "config": c.config,
                               "settings": c.settings, "group": c.group, "trials": spec.trials,
                               "block_size": spec.block_size} for c in spec.cells])
        if shard is not None:  # lets 'sweep status --spec' list the shards still missing blocks
            store.put_artifact("shards", spec.sweep_hash, {"count": shard.count})
        order = [c for g in spec.groups() for c in g]
        todo = [(i, c, store.missing(c.cell_hash, spec.trials, spec.block_size)) for i, c in enumerate(order)]
        if shard is not None:
            todo = _shard_todo(store, order, shard_units(spec, shard))
        missing_total = sum(b - a for _, _, blocks in todo for a, b in blocks)
        summary["trials_missing_at_start"] = missing_total
        summary["blocks_missing_at_start"] = sum(len(bl) for _, _, bl in todo)
        if progress is not None and hasattr(progress, "total"):
            progress.total = max(missing_total, 1)
        info = environment_info() if missing_total else {}

        def label(i, c):
            if progress is not None and hasattr(progress, "set_label"):
                progress.set_label(f"sweep {spec.name}: cell {i + 1}/{len(order)} {c.label()}")

        def run_block(i, c, a, b):
            if not _still_missing(store, c.cell_hash, a, b):
                summary["blocks_done_elsewhere"] += 1
                if progress is not None:
                    progress(b - a)
                return
            label(i, c)
            # born dead: one chunk size per cell; trained: None unless the spec or caller sets one, so that
            # the live networks of a block are re-packed into full and tail chunks as they die (an explicit
            # chunk size is the only one a trained cell uses, padding every block to it)
            ch = chunk or (block_chunk(c, spec.block_size) if c.kind == "born_dead" else None)
            started = time.time()
            t = time.perf_counter()
            arrays, ldf = compute_block(c, a, b, chunk_size=ch, progress=progress, after_death=after_death,
                                        depth_capacity=depth_capacity, block_size=spec.block_size)
            seconds = time.perf_counter() - t
            rec = store.record_block(c.cell_hash, a, b, arrays, ldf,
                                     {**info, "started_at": started, "finished_at": time.time(),
                                      "seconds": seconds})
            summary["blocks_computed"] += 1
            summary["trials_computed"] += b - a
            summary["blocks_recorded"] += len(rec)
            summary["trials_recorded"] += sum(y - x for x, y in rec)
            if cell_callback is not None:
                cell_callback(c, a, b, rec)

        try:
            deferred = []
            for i, c, blocks in todo:
                for a, b in blocks:
                    if not _still_missing(store, c.cell_hash, a, b):
                        summary["blocks_done_elsewhere"] += 1
                        if progress is not None:
                            progress(b - a)
                        continue
                    if not store.try_claim(c.cell_hash, a, b, owner):
                        deferred.append((i, c, a, b))
                        continue
                    run_block(i, c, a, b)
            for i, c, a, b in deferred:  # blocks another live process claimed: done by now, or do them too
                run_block(i, c, a, b)
        finally:
            try:
                store.release_claims(owner)
            except Exception:  # noqa: BLE001 (never mask the original error)
                pass
        summary["seconds"] = time.perf_counter() - t0
        summary["results"] = store.cell_estimates([c.cell_hash for c in spec.cells])
    return summary


def _shard_todo(store: Store, order: list[SweepCell], mine) -> list:
    """``(position, cell, unrecorded ranges)`` for the cells of a shard's units, in run order."""
    ranges: dict[str, list] = {}
    for u in mine:
        ranges.setdefault(u.cell.cell_hash, []).extend(store.unrecorded(u.cell.cell_hash, u.start, u.stop))
    return [(i, c, ranges[c.cell_hash]) for i, c in enumerate(order) if c.cell_hash in ranges]


def _still_missing(store: Store, cell_hash: str, a: int, b: int) -> bool:
    return bool(store.unrecorded(cell_hash, a, b))
