"""Safe-region analysis: per-cell estimates -> safe / unsafe / undetermined, boundaries, theory line.

A cell (width N, depth L_h) with k events out of n trials is **safe** at threshold p when the upper end of its
95 % Wilson interval is below p, **unsafe** when the lower end is above p, and **undetermined** otherwise
(SCIENCE.md section 6). Depth = hidden layers L_h throughout.

Depth profiles. Born-dead outcomes are nested in depth: the first d hidden layers of a depth-D network are a
depth-d network, so one run at the largest depth D gives every depth d <= D at once (born dead at depth d
iff the first dead layer is <= d). The cells of one width then share trials (common random numbers): each
cell's estimate and interval is exact on its own, and the curve over depth is monotone by construction.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from ..estimates import wilson
from ..theory import max_depth_below

SAFE, UNSAFE, UNDETERMINED = "safe", "unsafe", "undetermined"
DEFAULT_THRESHOLDS = (0.01, 0.10, 0.50)


def classify(k: int, n: int, threshold: float, confidence: float = 0.95) -> str:
    """safe | unsafe | undetermined for k events in n trials at ``threshold``."""
    e = wilson(int(k), int(n), confidence)
    if e.ci_high < threshold:
        return SAFE
    if e.ci_low > threshold:
        return UNSAFE
    return UNDETERMINED


def depth_profile(first_dead_layer: np.ndarray, max_depth: int) -> np.ndarray:
    """Per-trial first dead layers ``(T,)`` (0 = never) -> born-dead counts ``k[d - 1]`` for d = 1..max_depth."""
    f = np.asarray(first_dead_layer)
    hist = np.bincount(f[(f > 0) & (f <= max_depth)], minlength=max_depth + 1)[1:]
    return np.cumsum(hist)


class Boundary(NamedTuple):
    """Where a width's safe region ends at one threshold.

    ``largest_safe``: the largest depth d such that every depth <= d is safe (0 if depth 1 is not safe).
    ``smallest_unsafe``: the smallest unsafe depth (None if no depth is unsafe). The true boundary (largest
    depth with p below the threshold, p increasing in depth) lies in ``[largest_safe, smallest_unsafe - 1]``;
    ``resolved`` when that range is a single depth, i.e. ``smallest_unsafe == largest_safe + 1``.
    """

    width: int
    threshold: float
    largest_safe: int
    smallest_unsafe: int | None
    resolved: bool
    theory: int


def boundary(width: int, depths: Sequence[int], ks: Sequence[int], ns: Sequence[int] | int, threshold: float,
             confidence: float = 0.95) -> Boundary:
    """The measured boundary of one width from its cells (``depths`` ascending, consecutive from 1 ideally)."""
    depths = list(depths)
    ns = [ns] * len(depths) if np.isscalar(ns) else list(ns)
    labels = [classify(k, n, threshold, confidence) for k, n in zip(ks, ns)]
    largest_safe = 0
    for d, lab in zip(depths, labels):
        if lab != SAFE:
            break
        largest_safe = d
    unsafe = [d for d, lab in zip(depths, labels) if lab == UNSAFE]
    smallest_unsafe = min(unsafe) if unsafe else None
    resolved = smallest_unsafe is not None and smallest_unsafe == largest_safe + 1
    return Boundary(width, threshold, largest_safe, smallest_unsafe, resolved, max_depth_below(width, threshold))


class Grid(NamedTuple):
    """Counts on a width x depth grid: ``k[i, j]``, ``n[i, j]`` for ``widths[i]``, ``depths[j]`` (n = 0: no data)."""

    widths: np.ndarray
    depths: np.ndarray
    k: np.ndarray
    n: np.ndarray

    @property
    def p(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n > 0, self.k / np.maximum(self.n, 1), np.nan)

    def intervals(self, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        lo = np.full(self.k.shape, np.nan)
        hi = np.full(self.k.shape, np.nan)
        for idx in np.ndindex(self.k.shape):
            if self.n[idx] > 0:
                e = wilson(int(self.k[idx]), int(self.n[idx]), confidence)
                lo[idx], hi[idx] = e.ci_low, e.ci_high
        return lo, hi

    def labels(self, threshold: float, confidence: float = 0.95) -> np.ndarray:
        """Array of 'safe'/'unsafe'/'undetermined' ('' where there is no data)."""
        out = np.full(self.k.shape, "", dtype=object)
        for idx in np.ndindex(self.k.shape):
            if self.n[idx] > 0:
                out[idx] = classify(int(self.k[idx]), int(self.n[idx]), threshold, confidence)
        return out

    def boundaries(self, threshold: float, confidence: float = 0.95) -> list[Boundary]:
        res = []
        for i, w in enumerate(self.widths):
            has = self.n[i] > 0
            res.append(boundary(int(w), self.depths[has], self.k[i, has], self.n[i, has], threshold, confidence))
        return res


def grid_from_profiles(profiles: dict[int, np.ndarray], max_depth: int) -> Grid:
    """``{width: first_dead_layer (T,)}`` from depth-``max_depth`` runs -> the full width x depth grid."""
    widths = np.array(sorted(profiles))
    depths = np.arange(1, max_depth + 1)
    k = np.stack([depth_profile(profiles[w], max_depth) for w in widths])
    n = np.stack([np.full(max_depth, len(profiles[w])) for w in widths])
    return Grid(widths, depths, k, n)


def grid_from_cells(cells: Sequence[dict], event: str = "born_dead") -> Grid:
    """Records with ``width``, ``depth``, ``trials`` and the ``event`` count -> a grid (cells summed)."""
    widths = np.array(sorted({int(c["width"]) for c in cells}))
    depths = np.array(sorted({int(c["depth"]) for c in cells}))
    k = np.zeros((len(widths), len(depths)), np.int64)
    n = np.zeros_like(k)
    wi = {w: i for i, w in enumerate(widths)}
    di = {d: j for j, d in enumerate(depths)}
    for c in cells:
        i, j = wi[int(c["width"])], di[int(c["depth"])]
        k[i, j] += int(c[event])
        n[i, j] += int(c["trials"])
    return Grid(widths, depths, k, n)


def undetermined_widths(grid: Grid, thresholds: Sequence[float], confidence: float = 0.95) -> list[int]:
    """Widths whose boundary is not yet resolved at some threshold (candidates for more trials).

    A boundary beyond the largest depth of the grid (every depth safe) counts as resolved.
    """
    out = []
    for thr in thresholds:
        for b in grid.boundaries(thr, confidence):
            all_safe = b.largest_safe == int(grid.depths.max())
            if not (b.resolved or all_safe):
                if b.width not in out:
                    out.append(b.width)
    return sorted(out)
