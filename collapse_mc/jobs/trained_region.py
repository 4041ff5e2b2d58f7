"""The trained safe region of the main job: P(collapse after training) over widths x depths, He and RAI.

Protocol (the ``estimate`` defaults): target |x| on [-sqrt 3, sqrt 3], MSE, Adam lr 1e-3, minibatch 64 of
3000 points drawn per trial, 5000 steps. Each trained cell is a one-cell sweep (resumable, in the same store),
trained with ``after_death="stop"``: a network found dead (checked at step 0 and every 100 steps on its
training set) stops training, which leaves P(collapse) unchanged (a dead network stays collapsed).

Which cells are trained: ``analysis.trained.search_width`` per initialization and width, on the coarse depth
grid ``TRAINED_DEPTHS``, given the born-dead depth profile of the same initialization (cells born-dead unsafe
at a threshold are unsafe without training). Every decision reads the counts of a cell's first ``n`` trials
from the store, so a second run replays the same decisions, finds every trial recorded and only redraws; a
killed run resumes.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np

from ..analysis.from_store import profile_grid
from ..analysis.safe_region import SAFE, UNDETERMINED, UNSAFE, Grid
from ..analysis.trained import (TRAINED_DEPTHS, Counts, bracket, contradictions, label, next_hints, resolvable,
                                search_width, width_boundary)
from ..estimates import wilson
from ..store import Store
from ..sweep import run_sweep
from ..sweep.spec import parse_spec

TRAINED_INITS = ("he_normal", "rai")
# cells train in programs of these depths with their own depth traced (``training.train_outcomes``'s
# ``depth_capacity``): each width compiles twice, not once per depth; in XLA's code a shallow cell in a deep
# program pays for its unused saved-activation buffers and optimizer state, hence two capacities rather than
# one (see README, "The main job"). The native CPU kernel skips layers above the depth in every pass (forward,
# backward, Adam, death checks): a width-4, L_h 9 cell trains as fast in capacity 64 as in 16 (README), so
# where it runs a width compiles once
DEPTH_CAPACITIES = (16, 64)
NATIVE_DEPTH_CAPACITIES = (64,)
PROTOCOL = {"target": "abs", "loss": "mse", "optimizer": "adam", "lr": 1e-3, "batch_size": 64, "n_train": 3000}


@dataclasses.dataclass(frozen=True)
class TrainedRegion:
    """Settings of the trained diagram (depths in hidden layers).

    ``initial`` / ``maximum``: trials per measured cell at first / at most (doubling while the cell straddles
    the threshold searched); ``block_size``: trials per stored block (one compiled chunk size for every cell
    of a width and depth, whatever its trial count); ``born_dead_trials``: trials per width of the born-dead
    profile of initializations other than the main job's (RAI: dense kernel on the 1025-point test grid);
    ``anchor_trials``: trials of the cells always trained (``ANCHOR_CELLS``), the papers' width 2, L_h 9.
    """

    inits: tuple = TRAINED_INITS
    widths: tuple = tuple(range(1, 13))
    depths: tuple = TRAINED_DEPTHS
    thresholds: tuple = (0.01, 0.10, 0.50)
    initial: int = 20
    maximum: int = 40
    block_size: int = 20
    steps: int = 5000
    seed: int = 0
    born_dead_trials: int = 1000
    anchor_trials: int = 128
    depth_capacities: tuple | None = None  # None: NATIVE_DEPTH_CAPACITIES where the native kernel trains the
    # width, else DEPTH_CAPACITIES

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    def capacities(self, width: int | None = None) -> tuple:
        if self.depth_capacities is not None:
            return tuple(self.depth_capacities)
        from ..config import NetworkConfig
        from ..training.forward import native_spec
        if width is not None and native_spec(NetworkConfig(width=width, depth=1)) is not None:
            return NATIVE_DEPTH_CAPACITIES
        return DEPTH_CAPACITIES

    def capacity(self, depth: int, width: int | None = None) -> int | None:
        """The compiled depth a cell of ``depth`` hidden layers (and ``width``) trains in: the smallest of
        ``capacities(width)`` >= depth (None: its own depth)."""
        return min((c for c in self.capacities(width) if c >= depth), default=None)


class Prewarm:
    """A running ``prewarm_in_background``: ``stop()`` ends it after the compilations under way and waits."""

    def __init__(self, threads, event):
        self.threads, self.event = threads, event

    def stop(self) -> None:
        self.event.set()
        for t in self.threads:
            t.join()


def prewarm_in_background(region: TrainedRegion, first: tuple = (), workers: int = 1) -> Prewarm:
    """Compile the trained diagram's programs in ``workers`` daemon threads, in the order the job needs them
    (the ``(width, depth)`` cells ``first``, then every width of every initialization in the search's order,
    each at its capacities), so that compiling overlaps the born-dead part and the training of earlier widths
    (XLA compiles each program on one core; the job trains on all). The job's calls wait for a compilation
    under way instead of starting their own; nothing here changes a result. Best effort: a failure ends that
    thread and the job compiles what is missing as it would have."""
    import threading
    stop = threading.Event()
    take = threading.Lock()
    queue = []

    def program_sets():  # (in a worker: the capacities wait for the native kernel's build)
        order = [(init, w, d) for w, d in first for init in region.inits]
        order += [(init, w, c) for init in region.inits for w in sorted(region.widths) for c in region.capacities(w)]
        seen = set()
        for init, w, d in order:
            cap = region.capacity(d, w)
            if cap is not None and (init, w, cap) not in seen:
                seen.add((init, w, cap))
                yield init, w, min(d, cap), cap

    def work():
        from ..training import trainer
        try:
            while not stop.is_set():
                with take:
                    if not queue:
                        queue.append(program_sets())
                    item = next(queue[0], None)
                if item is None:
                    return
                init, w, d, cap = item
                cell = trained_spec(region, init, w, d, region.block_size).cells[0].cell
                trainer.prewarm(cell, region.block_size, region.seed, after_death="stop", depth_capacity=cap)
        except Exception:  # noqa: BLE001 - the job compiles what is missing itself
            return

    threads = [threading.Thread(target=work, name=f"collapse_mc-prewarm-{k}", daemon=True)
               for k in range(max(1, workers))]
    for t in threads:
        t.start()
    return Prewarm(threads, stop)


def trained_spec(region: TrainedRegion, init: str, width: int, depth: int, trials: int):
    return parse_spec({
        "sweep": {"kind": "trained", "name": "safe_region_trained", "trials": trials, "seed": region.seed,
                  "block_size": region.block_size,
                  "description": "safe region: collapse after training on abs(x), estimate defaults"},
        "grid": {"width": [width], "depth": [depth]},
        "init": {"init": init, "bias": "zeros"},
        "train": {**PROTOCOL, "steps": region.steps},
    }, origin="safe-region trained")


def born_dead_family_spec(region: TrainedRegion, init: str, trials: int, block_size: int):
    """The born-dead depth profile of ``init`` (widths x depth ``max_depth``) on the training's probe set."""
    return parse_spec({
        "sweep": {"kind": "born_dead", "name": "safe_region" if init == "he_normal" else f"safe_region_{init}",
                  "trials": trials, "seed": region.seed, "block_size": min(block_size, trials),
                  "description": f"safe region: born dead ({init}), depth profile to {region.max_depth}"},
        "grid": {"width": list(region.widths)},
        "network": {"depth": region.max_depth},
        "init": {"init": init, "bias": "zeros"},
    }, origin="safe-region born dead")


def _first_n(store: Store, cell_hash: str, n: int | None, steps: int) -> tuple[Counts, int]:
    """Counts over trials ``0 .. n - 1`` (None: all) of a trained cell, and the net-steps they trained (a
    trial stopped at its death counts the steps up to it)."""
    o = store.outcomes(cell_hash)
    keep = o["trial"] < (n if n is not None else np.inf)
    col, div, dead, bd, to_end = (np.asarray(o[k])[keep].astype(bool) for k in
                                  ("collapsed", "diverged", "dead_after_training", "born_dead", "trained_to_end"))
    decided = ~(div & ~dead)
    net_steps = int(np.where(to_end, steps, np.maximum(np.asarray(o["died_at_step"])[keep], 0)).sum())
    return Counts(int(keep.sum()), int((col & decided).sum()), int(decided.sum()), int(bd.sum())), net_steps


def free_unsafe_depths(grid: Grid, width: int, thresholds) -> dict:
    """``{p: smallest depth whose born-dead interval lies above p, or None}`` for one width of a profile grid."""
    i = list(grid.widths).index(width)
    lo, _ = grid.intervals()
    out = {}
    for t in thresholds:
        above = [int(d) for d, v in zip(grid.depths, lo[i]) if grid.n[i, int(d) - 1] > 0 and v > t]
        out[t] = min(above) if above else None
    return out


def run(region: TrainedRegion, db: str, born_dead: dict, progress_factory: Callable | None = None) -> dict:
    """Search and train every (init, width) into ``db``. ``born_dead``: ``{init: profile Grid}``.

    Returns per init the measured cells and boundaries, plus the cost (trials, net-steps, compilations)
    against a uniform grid resolving the same boundaries.
    """
    from ..training import trainer
    t0 = time.perf_counter()
    builds0 = trainer._train_map.cache_info().misses
    xla = _xla_counter()
    report = {"inits": {}, "trials_computed": 0}
    for init in region.inits:
        per_width, hints = {}, None
        for w in sorted(region.widths):
            free = free_unsafe_depths(born_dead[init], w, region.thresholds)

            def evaluate(depth, n, init=init, w=w):
                spec = trained_spec(region, init, w, depth, n)
                res = _run(spec, db, progress_factory, f"trained {init} N={w} L_h={depth}",
                           region.capacity(depth, w))
                report["trials_computed"] += res["trials_computed"]
                with Store(db) as store:
                    counts, _ = _first_n(store, spec.cells[0].cell_hash, n, region.steps)
                return counts

            cells = search_width(region.depths, region.thresholds, free, evaluate, region.initial, region.maximum,
                                 hints)
            hints = next_hints(region.depths, cells, region.thresholds, free)
            per_width[w] = {"cells": cells, "free_unsafe": free}
        report["inits"][init] = per_width
    report["seconds"] = time.perf_counter() - t0
    report["train_program_sets_built"] = trainer._train_map.cache_info().misses - builds0
    report["xla"] = xla.stop()
    return report


def _run(spec, db, progress_factory, label_, depth_capacity=None):
    if progress_factory is None:
        return run_sweep(spec, db, after_death="stop", depth_capacity=depth_capacity)
    with progress_factory(label_) as bar:
        return run_sweep(spec, db, progress=bar, after_death="stop", depth_capacity=depth_capacity)


class _xla_counter:
    """Counts XLA compilations (backend compile events longer than 0.2 s) and persistent-cache hits."""

    def __init__(self):
        import jax
        self.compiles, self.hits, self.seconds, self.on = 0, 0, 0.0, True

        def on_duration(event, duration, **_):
            if self.on and event == "/jax/core/compile/backend_compile_duration" and duration > 0.2:
                self.compiles += 1
                self.seconds += duration

        def on_event(event, **_):
            if self.on and event == "/jax/compilation_cache/cache_hits":
                self.hits += 1

        jax.monitoring.register_event_duration_secs_listener(on_duration)
        jax.monitoring.register_event_listener(on_event)

    def stop(self) -> dict:
        self.on = False
        return {"backend_compiles_over_0.2s": self.compiles, "persistent_cache_hits": self.hits,
                "compile_seconds": round(self.seconds, 1)}


# -- reading the store (no computation) ------------------------------------------------------------------------
def stored_cells(region: TrainedRegion, store, init: str) -> dict[int, dict[int, Counts]]:
    """``{width: {depth: Counts}}`` of the trained cells of ``init`` recorded in the store (all their trials)."""
    out: dict[int, dict[int, Counts]] = {}
    for w in region.widths:
        for d in region.depths:
            h = trained_spec(region, init, w, d, region.block_size).cells[0].cell_hash
            rows = store.cell_estimates([h])
            if rows and rows[0]["trials"]:
                r = rows[0]
                out.setdefault(w, {})[d] = Counts(int(r["trials"]), int(r["collapsed"]), int(r["decided"]),
                                                  int(r["born_dead"]))
    return out


def cost(region: TrainedRegion, store, cells_by_init: dict) -> dict:
    """Trials and net-steps in the store for the measured cells, against a uniform grid resolving the same
    boundaries: every grid cell (inits x widths x grid depths) at the largest trial count a searched cell
    needed, trained to the last step; and against the full width x depth grid (every depth 1..max)."""
    trials = net_steps = n_cells = 0
    top = 0
    shapes = set()
    for init, by_width in cells_by_init.items():
        for w, cells in by_width.items():
            for d, c in cells.items():
                h = trained_spec(region, init, w, d, region.block_size).cells[0].cell_hash
                trials += c.trials
                net_steps += _first_n(store, h, None, region.steps)[1]
                n_cells += 1
                top = max(top, c.trials)
                shapes.add((w, d))
    top = min(top, region.maximum)  # the anchor cells' extra trials decide no boundary
    grid_cells = len(cells_by_init) * len(region.widths) * len(region.depths)
    full_cells = len(cells_by_init) * len(region.widths) * region.max_depth
    return {"cells_trained": n_cells, "distinct_width_depth": len(shapes), "trials": trials,
            "net_steps": net_steps, "uniform_grid": {
                "cells": grid_cells, "trials_per_cell": top, "trials": grid_cells * top,
                "net_steps": grid_cells * top * region.steps},
            "uniform_full_grid": {"cells": full_cells, "trials": full_cells * top,
                                  "net_steps": full_cells * top * region.steps, "compilations": full_cells}}


def summarize(region: TrainedRegion, store, born_dead: dict) -> dict:
    """``{init: {"cells": [...], "boundaries": [...], "contradictions": [...]}}`` from the store."""
    out = {}
    for init in region.inits:
        by_width = stored_cells(region, store, init)
        grid = born_dead.get(init)
        cells, bounds, contra = [], [], []
        for w in region.widths:
            measured = by_width.get(w, {})
            free = free_unsafe_depths(grid, w, region.thresholds) if grid is not None else {}
            for d, c in sorted(measured.items()):
                e = wilson(c.collapsed, c.decided) if c.decided else None
                bd_lo = bd_hi = None
                if grid is not None:
                    i = list(grid.widths).index(w)
                    b = wilson(int(grid.k[i, d - 1]), int(grid.n[i, d - 1]))
                    bd_lo, bd_hi = b.ci_low, b.ci_high
                cells.append({
                    "width": w, "depth": d, "layers": d + 1, "trials": c.trials, "collapsed": c.collapsed,
                    "decided": c.decided, "p": e.p if e else None, "ci_low": e.ci_low if e else None,
                    "ci_high": e.ci_high if e else None,
                    "status": {f"{t:g}": label(c, t) for t in region.thresholds},
                    "p_born_dead_profile_ci": [bd_lo, bd_hi],
                    "below_born_dead": bool(e is not None and bd_lo is not None and e.ci_high < bd_lo)})
            for t in region.thresholds:
                bounds.append(width_boundary(w, region.depths, measured, t, free.get(t), region.maximum))
            for c in contradictions(measured, region.thresholds):
                contra.append({"width": w, **c})
        out[init] = {"cells": cells, "boundaries": bounds, "contradictions": contra,
                     "below_born_dead": [{"width": c["width"], "depth": c["depth"]} for c in cells
                                         if c["below_born_dead"]]}
    return out


def undetermined(cell: dict, thresholds, maximum: int) -> bool:
    """Whether a summarized cell straddles a threshold that could be resolved with ``maximum`` trials."""
    return any(cell["status"][f"{t:g}"] == UNDETERMINED for t in thresholds if resolvable(t, maximum))


def born_dead_grids(region: TrainedRegion, store) -> dict:
    """``{init: profile Grid}`` of the stored born-dead families of the trained initializations."""
    out = {}
    for init in region.inits:
        hashes = {c.cell_hash for c in born_dead_family_spec(region, init, 1, 1).cells}
        rows = [r for r in store.cell_estimates(kind="born_dead") if r["cell_hash"] in hashes and r["trials"]]
        if rows:
            out[init] = profile_grid(store, rows, region.max_depth)
    return out


# -- the search against a uniform grid (tests at reduced steps; scripts/trained_subgrid_check.py at full size) --
def uniform_agreement(widths=(2, 3, 4, 5), depths=(1, 2, 3, 4, 6, 9, 12, 16), trials: int = 400,
                      steps: int = 5000, init: str = "he_normal", thresholds=(0.1, 0.5), initial: int = 25,
                      seed: int = 0, progress: Callable | None = None) -> dict:
    """Train a uniform grid (every width x depth, ``trials`` networks each, the main job's protocol and trial
    keys, dead networks stopped) and run the depth search on the same networks (a searched cell of ``n``
    trials reads the grid's first ``n``, exactly what the job would compute). Per width and threshold:
    the uniform boundary (deepest depth with every shallower cell safe, shallowest unsafe), the search's
    bracket, whether they are consistent (no depth safe in one and unsafe in the other), and the trials each
    spent. Born dead is not used to skip cells here, so the comparison is of the search alone."""
    from ..training import train_outcomes
    region = TrainedRegion(inits=(init,), widths=tuple(widths), depths=tuple(depths), steps=steps, seed=seed,
                           initial=initial, maximum=trials, block_size=trials)
    rows, spent, uniform = [], 0, 0
    for w in widths:
        events = {}
        for d in depths:
            cell = trained_spec(region, init, w, d, trials).cells[0].cell
            o = train_outcomes(cell, 0, trials, seed, after_death="stop", depth_capacity=region.capacity(d, w))
            decided = ~(np.asarray(o.diverged) & ~np.asarray(o.dead_after_training))
            events[d] = (np.asarray(o.collapsed) & decided, decided, np.asarray(o.born_dead))
            if progress:
                progress(1)

        def counts(d, n):
            col, dec, bd = (e[:n] for e in events[d])
            return Counts(n, int(col.sum()), int(dec.sum()), int(bd.sum()))

        cells = search_width(depths, thresholds, {}, counts, initial, trials)
        full = {d: counts(d, trials) for d in depths}
        for t in thresholds:
            labels = [label(full[d], t) for d in depths]
            safe = 0
            for d, lab in zip(depths, labels):
                if lab != SAFE:
                    break
                safe = d
            unsafe = min((d for d, lab in zip(depths, labels) if lab == UNSAFE), default=None)
            lo, hi = bracket(cells, t, None)
            consistent = (unsafe is None or lo < unsafe) and (hi is None or safe < hi)
            rows.append({"width": w, "threshold": t, "uniform_safe_up_to": safe, "uniform_unsafe_from": unsafe,
                         "search_safe_up_to": lo, "search_unsafe_from": hi, "consistent": consistent,
                         "uniform_p": {d: round(full[d].collapsed / max(full[d].decided, 1), 4) for d in depths}})
        spent += sum(c.trials for c in cells.values())
        uniform += trials * len(depths)
    return {"rows": rows, "trials_search": spent, "trials_uniform": uniform, "steps": steps, "init": init,
            "widths": list(widths), "depths": list(depths), "trials_per_cell": trials,
            "all_consistent": all(r["consistent"] for r in rows)}
