"""The trained safe region: where P(collapse after training) crosses a threshold, found with few trained cells.

Depth = hidden layers L_h. A trained cell (width N, depth L_h) has ``collapsed`` events among ``decided`` trials
(all but those that diverged while alive); safe / unsafe / undetermined at a threshold p as in
``safe_region.classify`` (SCIENCE.md section 6).

Search (``search_width``), per initialization and width, on a coarse grid of depths:

* born dead implies collapsed, so every depth whose born-dead interval lies above p is unsafe at p without
  training (``free_unsafe[p]``, the smallest such depth; born-dead counts grow with depth, so every deeper
  cell is too);
* assuming P(collapse) grows with depth (checked afterwards by ``contradictions``, not assumed in the result),
  two binary searches over the grid depths below the born-dead bound find the shallowest depth measured
  unsafe (``hi``; a safe or undetermined cell moves it deeper) and then the deepest depth measured safe below
  it (``lo``; an undetermined or unsafe cell moves it shallower): about 2 log2(grid) cells per threshold,
  whatever the width of the undetermined band between them; thresholds from the largest down (cells
  measured for one threshold are reused by the next);
* a measured cell starts with ``initial`` trials and doubles only while it straddles the threshold being
  searched, up to ``maximum``; a cell still undetermined at ``maximum`` stays between ``lo`` and ``hi``,
  marked.

A threshold is searched only when it is *resolvable*: a cell with no collapse in ``maximum`` trials would be
safe at it (0 of 128 trials cannot show p < 1 %: the Wilson upper end is 2.9 %).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

from ..estimates import wilson
from .safe_region import SAFE, UNDETERMINED, UNSAFE, classify

# the coarse depth grid of the trained diagram: about 1.4x apart, with the papers' "10-layer" network (L_h 9)
TRAINED_DEPTHS = (1, 2, 3, 4, 6, 9, 12, 16, 24, 32, 48, 64)


class Counts(NamedTuple):
    """Collapse counts of one trained cell over its first ``trials`` trials."""

    trials: int
    collapsed: int
    decided: int
    born_dead: int


def resolvable(threshold: float, maximum: int, confidence: float = 0.95) -> bool:
    """Whether ``maximum`` trials with no collapse would show a cell safe at ``threshold``."""
    return wilson(0, maximum, confidence).ci_high < threshold


def label(c: Counts, threshold: float) -> str:
    return classify(c.collapsed, c.decided, threshold) if c.decided else UNDETERMINED


HINTED_PROBES = 2  # probes per threshold taken next to the hint before bisecting


def search_width(depths: Sequence[int], thresholds: Sequence[float], free_unsafe: dict,
                 evaluate: Callable[[int, int], Counts], initial: int, maximum: int,
                 hints: dict | None = None) -> dict[int, Counts]:
    """Measure the cells of one width needed to bracket the boundary at each resolvable threshold.

    Args:
        depths: the grid depths (ascending) that may be trained.
        thresholds: thresholds p; searched from the largest down, only where ``resolvable``.
        free_unsafe: ``{p: smallest depth unsafe at p from born dead alone, or None}``.
        evaluate: ``evaluate(depth, n)`` -> ``Counts`` of the cell's first ``n`` trials (computing as needed).
        initial, maximum: trials per cell at first and at most (doubling in between).
        hints: ``{p: depth}`` where the boundary at p probably lies (e.g. the neighbouring width's, see
            ``next_hints``): the first ``HINTED_PROBES`` probes at p take the depth nearest to it (on a log
            scale), then the search bisects. Hints change only which cells are measured, never a label.

    Returns ``{depth: Counts}`` of the measured cells (deterministic given ``evaluate``).
    """
    cells: dict[int, Counts] = {}

    def measure(d, t):
        """The label of depth ``d`` at ``t``, doubling its trials while it straddles ``t`` (up to ``maximum``)."""
        n = max(initial, cells[d].trials if d in cells else 0)
        while True:
            if d not in cells or cells[d].trials < n:
                cells[d] = evaluate(d, n)
            lab = label(cells[d], t)
            if lab != UNDETERMINED or n >= maximum:
                return lab
            n = min(2 * n, maximum)

    for t in sorted(thresholds, reverse=True):
        if not resolvable(t, maximum):
            continue
        top = free_unsafe.get(t)
        cand = [d for d in depths if top is None or d < top]
        hint = (hints or {}).get(t)
        probes = [0]

        def pick(a, b):
            if hint is not None and probes[0] < HINTED_PROBES:
                probes[0] += 1
                return min(range(a, b), key=lambda i: (abs(math.log(cand[i] / hint)), i))
            return (a + b) // 2

        # 1. the shallowest unsafe depth: binary search, "not unsafe" (safe or undetermined) moves it deeper
        a, b = 0, len(cand)
        while a < b:
            m = pick(a, b)
            if measure(cand[m], t) == UNSAFE:
                b = m
            else:
                a = m + 1
        # 2. the deepest safe depth below it: "not safe" (undetermined or unsafe) moves it shallower
        a2, b2 = 0, b
        while a2 < b2:
            m = pick(a2, b2)
            if measure(cand[m], t) == SAFE:
                a2 = m + 1
            else:
                b2 = m
    return cells


def next_hints(depths: Sequence[int], cells: dict[int, Counts], thresholds: Sequence[float],
               free_unsafe: dict) -> dict:
    """Hints for the next (wider) width from one width's measured cells: per threshold, the first grid depth
    above its deepest safe depth (wider networks collapse less, so their boundary is usually there or deeper)."""
    out = {}
    for t in thresholds:
        lo, _ = bracket(cells, t, free_unsafe.get(t))
        above = [d for d in depths if d > lo]
        if above:
            out[t] = above[0]
    return out


def bracket(cells: dict[int, Counts], threshold: float, free_unsafe: int | None) -> tuple[int, int | None]:
    """``(deepest measured safe depth or 0, shallowest measured or born-dead unsafe depth or None)``."""
    safe = [d for d, c in cells.items() if label(c, threshold) == SAFE]
    unsafe = [d for d, c in cells.items() if label(c, threshold) == UNSAFE]
    if free_unsafe is not None:
        unsafe.append(free_unsafe)
    return max(safe, default=0), min(unsafe, default=None)


def contradictions(cells: dict[int, Counts], thresholds: Sequence[float]) -> list[dict]:
    """Pairs of measured cells against P(collapse) growing with depth: a shallower cell unsafe and a deeper one
    safe at the same threshold."""
    out = []
    for t in thresholds:
        for d1, c1 in sorted(cells.items()):
            for d2, c2 in sorted(cells.items()):
                if d1 < d2 and label(c1, t) == UNSAFE and label(c2, t) == SAFE:
                    out.append({"threshold": t, "unsafe_depth": d1, "safe_depth": d2})
    return out


def width_boundary(width: int, depths: Sequence[int], cells: dict[int, Counts], threshold: float,
                   free_unsafe: int | None, maximum: int) -> dict:
    """The reported boundary of one width at one threshold.

    ``safe_up_to_depth``: the deepest measured safe depth (0: none), every shallower depth safe if P(collapse)
    grows with depth; ``unsafe_from_depth``: the shallowest depth shown unsafe (``unsafe_by`` says whether by
    training or by born dead alone; None: none up to the deepest grid depth). ``between``: the grid depths
    strictly between them (untested or undetermined); ``resolved``: there are none, or every grid depth is
    safe. ``reason`` when the threshold was not searched.
    """
    lo, hi = bracket(cells, threshold, free_unsafe)
    measured_unsafe = [d for d, c in cells.items() if label(c, threshold) == UNSAFE]
    by = None
    if hi is not None:
        by = "trained" if measured_unsafe and min(measured_unsafe) == hi else "born_dead"
    between = [d for d in depths if lo < d < (hi if hi is not None else float("inf"))]
    rec = {"width": width, "threshold": threshold, "safe_up_to_depth": lo, "unsafe_from_depth": hi,
           "unsafe_by": by, "between": between, "resolved": lo >= max(depths) or (hi is not None and not between),
           "reason": None}
    if not resolvable(threshold, maximum):
        rec["resolved"] = False
        rec["reason"] = (f"not resolvable with {maximum} trials per cell (0 collapses in {maximum} trials has a "
                         f"95 % upper end of {100 * wilson(0, maximum).ci_high:.1f} %)")
    return rec
