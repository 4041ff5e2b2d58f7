"""Read a results store into analysis objects (no computation, no writes).

Born-dead cells that differ only in depth form a *family*; the deepest cell of each width gives the whole
depth profile from its per-trial first dead layers (see ``safe_region`` for why this is exact).
"""
from __future__ import annotations

import json
from typing import Sequence

import numpy as np

from .safe_region import Grid, depth_profile

# settings that do not distinguish families of born-dead cells
_PER_CELL = {"depth", "layers", "width", "cell_hash", "trials", "born_dead", "collapsed", "diverged", "p",
             "ci_low", "ci_high", "p_born_dead", "born_dead_ci_low", "born_dead_ci_high", "dead_fraction",
             "blocks"}


def family_key(settings: dict) -> str:
    """What a born-dead family shares: every setting except width and depth."""
    return json.dumps({k: v for k, v in sorted(settings.items()) if k not in _PER_CELL}, sort_keys=True,
                      default=str)


def born_dead_families(store) -> dict[str, list[dict]]:
    """``{family key: [cell estimate dicts]}`` for the born-dead cells that have trials."""
    fams: dict[str, list[dict]] = {}
    for r in store.cell_estimates(kind="born_dead"):
        if r["trials"]:
            fams.setdefault(family_key(r), []).append(r)
    return fams


def profile_grid(store, cells: Sequence[dict], max_depth: int | None = None) -> Grid:
    """The width x depth grid of one family from per-trial outcomes of its deepest cell per width.

    Widths whose deepest cell has fewer trials than another cell of the same width still use the deepest
    one (its depth profile is the only one covering all depths).
    """
    deepest: dict[int, dict] = {}
    for r in cells:
        w = int(r["width"])
        if w not in deepest or int(r["depth"]) > int(deepest[w]["depth"]):
            deepest[w] = r
    top = max_depth or max(int(r["depth"]) for r in deepest.values())
    widths = np.array(sorted(deepest))
    depths = np.arange(1, top + 1)
    k = np.zeros((len(widths), top), np.int64)
    n = np.zeros_like(k)
    for i, w in enumerate(widths):
        r = deepest[int(w)]
        first = store.outcomes(r["cell_hash"])["first_dead_layer"]
        d = min(int(r["depth"]), top)
        k[i, :d] = depth_profile(first, d)
        n[i, :d] = len(first)
    return Grid(widths, depths, k, n)


def trained_cells(store, **match) -> list[dict]:
    """Trained cell estimates whose settings equal every ``match`` item."""
    return [r for r in store.cell_estimates(kind="trained")
            if r["trials"] and all(r.get(k) == v for k, v in match.items())]
