"""A results store as flat rows: one dict per cell, per (cell, depth) or per trial, each row self-describing
(its cell's settings by name: width, depth, layers, init, ...). Made for ``pandas.DataFrame(rows)`` (pandas is
optional: nothing here imports it) and for ``collapse-mc results`` / ``collapse-mc export``.

    from collapse_mc.store import load_rows
    import pandas as pd
    cells = pd.DataFrame(load_rows("collapse_mc.sqlite"))                    # one row per cell
    depths = pd.DataFrame(load_rows("collapse_mc.sqlite", level="depths"))   # P(born dead) at every depth
    trials = pd.DataFrame(load_rows("collapse_mc.sqlite", level="trials"))   # one row per trial

Depth convention: ``depth`` = hidden layers L_h; ``layers`` = depth + 1 (the papers' count).
"""
from __future__ import annotations

import math

import numpy as np

from ..estimates import wilson
from .store import Store

LEVELS = ("cells", "depths", "blocks", "trials")


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def cell_rows(store: Store, kind: str | None = None, cell_hashes=None, confidence: float = 0.95) -> list[dict]:
    """One row per cell: its settings, then ``RESULT_KEYS`` (counts, p with its Wilson interval at ``confidence``,
    ...)."""
    return [{k: _clean(v) for k, v in r.items()}
            for r in store.cell_estimates(cell_hashes, kind=kind, confidence=confidence)]


def sweep_cell_hashes(store: Store, sweep: str) -> list[str] | None:
    """The cells of the sweeps named ``sweep`` (or whose hash starts with it), in plan order; None if none match."""
    members = store.sweep_cells()
    chosen = {h for h, name, _ in members if name == sweep or (sweep and h.startswith(sweep))}
    if not chosen:
        return None
    return list(dict.fromkeys(c for h, _, c in members if h in chosen and c is not None))


def depth_rows(store: Store, cell_hashes=None, confidence: float = 0.95) -> list[dict]:
    """P(born dead) at every depth d = 1 .. the cell's depth, for every born-dead or trained cell with trials.

    A network is born dead at depth d when one of its first d hidden layers is constant on the domain, so one
    cell's per-trial first dead layers give the probability at every smaller depth (the same networks, cut
    after d layers). Row: the cell's settings with ``depth`` = d and ``layers`` = d + 1, ``cell_depth`` (the
    depth of the cell the trials come from), ``trials``, ``born_dead`` (count at depth d), ``p``, ``ci_low``,
    ``ci_high`` (Wilson, at ``confidence``), ``cell_hash``.
    """
    want = None if cell_hashes is None else set(cell_hashes)
    out = []
    for c in store.cells():
        if want is not None and c["cell_hash"] not in want:
            continue
        first = store.outcomes(c["cell_hash"]).get("first_dead_layer")
        if first is None or not len(first):
            continue
        s = c["settings"]
        depth = int(s["depth"])
        f = np.asarray(first)
        k = np.cumsum(np.bincount(f[(f > 0) & (f <= depth)], minlength=depth + 1)[1:])
        n = len(f)
        for d in range(1, depth + 1):
            e = wilson(int(k[d - 1]), n, confidence)
            out.append({**s, "depth": d, "layers": d + 1, "cell_depth": depth, "trials": n,
                        "born_dead": int(k[d - 1]), "p": e.p, "ci_low": e.ci_low, "ci_high": e.ci_high,
                        "cell_hash": c["cell_hash"]})
    return out


def block_rows(store: Store, kind: str | None = None) -> list[dict]:
    """One row per stored block: its cell's settings, then the block record (counts, versions, timings)."""
    out = []
    for c in store.cells():
        if kind not in (None, c["kind"]):
            continue
        for b in store.blocks(c["cell_hash"]):
            out.append({**c["settings"], **{k: _clean(v) for k, v in b.items()}})
    return out


def trial_rows(store: Store, kind: str | None = None) -> list[dict]:
    """One row per trial: its cell's settings, ``cell_hash``, ``trial`` (the global index), then its stored
    outcomes by name (``first_dead_layer``; for trained cells also ``born_dead``, ``collapsed``, ``diverged``,
    ``collapse_value``, ``final_loss``, ``test_rel_l2``, ``dead_fraction``; vectors as lists)."""
    out = []
    for c in store.cells():
        if kind not in (None, c["kind"]):
            continue
        outcomes = store.outcomes(c["cell_hash"])
        names = [k for k in outcomes if k != "trial"]
        for i, t in enumerate(outcomes["trial"]):
            row = {**c["settings"], "cell_hash": c["cell_hash"], "trial": int(t)}
            for k in names:
                row[k] = _clean(outcomes[k][i].tolist())
            out.append(row)
    return out


def load_rows(db, level: str = "cells", kind: str | None = None) -> list[dict]:
    """Rows of the store at ``db`` (opened read-only) for ``pandas.DataFrame(rows)`` or ``csv.DictWriter``.

    Args:
      db: path of a results store.
      level: ``cells`` (``cell_rows``), ``depths`` (``depth_rows``: P(born dead) at every depth),
        ``blocks`` (``block_rows``) or ``trials`` (``trial_rows``).
      kind: only cells of this kind (``born_dead`` or ``trained``).
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    with Store(db, readonly=True) as st:
        if level == "cells":
            return cell_rows(st, kind)
        if level == "depths":
            hashes = None if kind is None else [c["cell_hash"] for c in st.cells() if c["kind"] == kind]
            return depth_rows(st, hashes)
        if level == "blocks":
            return block_rows(st, kind)
        return trial_rows(st, kind)


__all__ = ["LEVELS", "block_rows", "cell_rows", "depth_rows", "load_rows", "sweep_cell_hashes", "trial_rows"]
