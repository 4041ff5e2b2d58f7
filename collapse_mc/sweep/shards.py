"""Shards: a fixed, deterministic share of a sweep's work for each of N independent workers.

A sweep's *units* are its (cell, block) pairs: block k of a cell is trials ``[k B, (k+1) B)`` (cut at
``trials``), as in the runner. ``assign(spec, n)`` splits the units, in compiled-group order (``SweepSpec.groups()``),
into ``n`` contiguous runs of roughly equal estimated cost, each cut placed on a group boundary when one lies
within a quarter of a share of the ideal cut, else between two blocks. So a worker compiles the shapes of its
own groups only, and at most ``n - 1`` groups are split between two workers. The assignment depends only on the
spec (cells, trials, block size) and ``n``, never on a store: a shard run again (after a failure or a kill)
does the same share, and computes only the blocks its store misses. Workers never talk to each other; their
stores are joined by ``collapse_mc.store.merge``.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Mapping, NamedTuple

from ..config import ConfigError
from .spec import SweepCell, SweepSpec


class ShardError(ConfigError):
    """A bad shard selection (one line)."""


@dataclasses.dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based)."""

    index: int
    count: int

    def __post_init__(self):
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ShardError(f"shard {self.index}/{self.count}: need 0 <= I < N")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


class Unit(NamedTuple):
    """One block of one cell: trials ``[start, stop)``."""

    cell: SweepCell
    start: int
    stop: int


def parse_shard(text: str, env: Mapping[str, str] | None = None) -> Shard:
    """``'I/N'`` (0 <= I < N), or ``'auto'``: the SLURM array task (``SLURM_ARRAY_TASK_ID`` - ``_MIN``, over
    ``_STEP``, of ``SLURM_ARRAY_TASK_COUNT``), else the process index and count under ``jax.distributed``."""
    text = str(text).strip()
    env = os.environ if env is None else env
    if text == "auto":
        return _auto_shard(env)
    parts = text.split("/")
    try:
        if len(parts) != 2:
            raise ValueError
        index, count = int(parts[0]), int(parts[1])
    except ValueError:
        raise ShardError(f"--shard: expected I/N (e.g. 0/3) or auto, got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ShardError(f"--shard {text}: need N >= 1 and 0 <= I < N")
    return Shard(index, count)


def _auto_shard(env: Mapping[str, str]) -> Shard:
    if "SLURM_ARRAY_TASK_ID" in env:
        try:
            task = int(env["SLURM_ARRAY_TASK_ID"])
            count = int(env.get("SLURM_ARRAY_TASK_COUNT", ""))
            lo = int(env.get("SLURM_ARRAY_TASK_MIN", 0))
            step = int(env.get("SLURM_ARRAY_TASK_STEP", 1)) or 1
        except ValueError:
            raise ShardError("--shard auto: SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT must be integers") \
                from None
        index = (task - lo) // step
        if count < 1 or not 0 <= index < count:
            raise ShardError(f"--shard auto: SLURM array task {task} is not one of {count} tasks counted from "
                             f"{lo}; submit a contiguous array (--array=0-{max(count, 1) - 1})")
        return Shard(index, count)
    import jax
    if jax.process_count() > 1:
        return Shard(jax.process_index(), jax.process_count())
    raise ShardError("--shard auto: not a SLURM array task (SLURM_ARRAY_TASK_ID unset) and not under "
                     "jax.distributed; give --shard I/N")


def units(spec: SweepSpec) -> list[Unit]:
    """Every (cell, block) of the sweep, cells in group order, blocks in trial order."""
    return [Unit(c, lo, min(lo + spec.block_size, spec.trials))
            for g in spec.groups() for c in g for lo in range(0, spec.trials, spec.block_size)]


def cost_per_trial(c: SweepCell) -> float:
    """A rough relative cost of one trial (only ratios matter): hidden-layer work per network, times the
    training steps and batch for trained cells."""
    n = c.cell.network
    layer = n.width * (n.width + 1) * max(n.depth, 1) + n.width * (n.d_in + n.d_out)
    if c.kind == "born_dead":
        if c.cell.resolved_method == "gaussian":
            return 4.0 * n.width * max(n.depth, 1) + 1.0
        probes = c.cell.probe.grid_points if n.d_in == 1 else c.cell.probe.sample_points
        return 2.0 * probes * layer + 1.0
    t = c.cell.train
    return float(layer) * t.effective_batch * t.steps + 1.0


def assign(spec: SweepSpec, count: int) -> list[list[Unit]]:
    """The units of each of ``count`` shards (see the module docstring); some may be empty when the sweep has
    fewer units than shards."""
    if count < 1:
        raise ShardError(f"shard count must be >= 1, got {count}")
    us = units(spec)
    costs = [(u.stop - u.start) * cost_per_trial(u.cell) for u in us]
    cum = [0.0]
    for w in costs:
        cum.append(cum[-1] + w)
    total, share = cum[-1], cum[-1] / count
    group_cuts = [j for j in range(len(us) + 1)
                  if j in (0, len(us)) or us[j].cell.group != us[j - 1].cell.group]
    cuts = [0]
    for k in range(1, count):
        ideal = k * total / count
        near = [j for j in group_cuts if abs(cum[j] - ideal) <= share / 4 and j >= cuts[-1]]
        pool = near or range(cuts[-1], len(us) + 1)
        cuts.append(min(pool, key=lambda j: (abs(cum[j] - ideal), j)))
    cuts.append(len(us))
    return [us[cuts[k]:cuts[k + 1]] for k in range(count)]


def shard_units(spec: SweepSpec, shard: Shard) -> list[Unit]:
    """The units of one shard."""
    return assign(spec, shard.count)[shard.index]


def missing_by_shard(spec: SweepSpec, count: int, store) -> list[dict]:
    """Per shard of ``count``: ``{"shard", "units", "missing_blocks", "missing_trials", "cells"}`` (cells: the
    labels of cells with missing blocks), from what ``store`` (a ``Store``) records."""
    out = []
    for i, us in enumerate(assign(spec, count)):
        miss = [(u, store.unrecorded(u.cell.cell_hash, u.start, u.stop)) for u in us]
        miss = [(u, r) for u, r in miss if r]
        out.append({"shard": f"{i}/{count}", "units": len(us), "missing_blocks": len(miss),
                    "missing_trials": sum(b - a for _, r in miss for a, b in r),
                    "cells": list(dict.fromkeys(u.cell.label() for u, _ in miss))})
    return out
