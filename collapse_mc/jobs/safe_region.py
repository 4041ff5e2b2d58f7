"""The main job: the default safe-region diagram, computed (or resumed) into a store, then drawn.

Born dead: He normal, zero biases, d_in = 1 (exact +-1 test), widths 1..12, one cell per width at the largest
depth (64 hidden layers) whose per-trial first dead layers give every depth 1..64 (``analysis.safe_region``).
Trained: P(collapse after training) for He normal and RAI over the same widths and depths, measured only
where it decides a boundary (``jobs.trained_region``), with the born-dead profile of RAI too. Everything goes
through the resumable sweep runner, so a killed job loses at most one block and a second run only redraws.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Sequence

from .. import native
from ..analysis import DEFAULT_THRESHOLDS, undetermined_widths
from ..analysis.from_store import profile_grid
from ..store import Store
from ..sweep import run_sweep
from ..sweep.spec import parse_spec
from . import trained_region as tr
from .trained_region import TrainedRegion

DEFAULT_DB = "collapse_mc.sqlite"
DEFAULT_OUT = "figures"


@dataclasses.dataclass(frozen=True)
class SafeRegionJob:
    """Settings of the safe-region job. ``max_depth`` counts hidden layers."""

    widths: tuple = tuple(range(1, 13))
    max_depth: int = 64
    trials: int = 20000
    block_size: int = 5000
    seed: int = 0
    init: str = "he_normal"
    thresholds: tuple = DEFAULT_THRESHOLDS
    trained: TrainedRegion | None = TrainedRegion()

    def region(self) -> TrainedRegion | None:
        """The trained part on the job's widths, depths up to ``max_depth`` and thresholds."""
        if self.trained is None:
            return None
        depths = tuple(d for d in self.trained.depths if d <= self.max_depth) or (self.max_depth,)
        if depths[-1] != self.max_depth:
            depths += (self.max_depth,)
        return dataclasses.replace(self.trained, widths=self.widths, depths=depths, thresholds=self.thresholds,
                                   seed=self.seed)


# cells always trained (papers 1 and 2: width 2, 9 hidden layers), with more trials: the example fits and the
# comparison with `collapse-mc estimate`
ANCHOR_CELLS = ((2, 9),)
EXAMPLE_FIT = ("he_normal", 2, 9)  # the trained cell whose collapsed and best trained networks are drawn


def born_dead_spec(job: SafeRegionJob, widths: Sequence[int] | None = None, trials: int | None = None,
                   block_size: int | None = None):
    trials = trials or job.trials
    return parse_spec({
        "sweep": {"kind": "born_dead", "name": "safe_region", "trials": trials, "seed": job.seed,
                  "block_size": min(block_size or job.block_size, trials),
                  "description": f"safe region: born dead, depth profile to {job.max_depth} hidden layers"},
        "grid": {"width": list(widths or job.widths)},
        "network": {"depth": job.max_depth},
        "init": {"init": job.init, "bias": "zeros"},
    }, origin="safe-region")


def training_available() -> bool:
    try:
        from .. import training  # noqa: F401
        return hasattr(training, "train_outcomes")
    except ImportError:
        return False


def run(job: SafeRegionJob, db: str, progress_factory: Callable | None = None, adaptive: bool = False,
        initial_trials: int = 1000, budget: int | None = None) -> dict:
    """Compute (or resume) the job's cells into ``db``: the born-dead profile, then the trained region.
    Returns ``{"born_dead": {...}, "trained": {...}}`` summaries of what was computed."""
    born = {"trials_computed": 0}
    t0 = time.perf_counter()
    region = job.region()
    prewarm = None
    if region is not None:
        native.prepare_in_background()  # the trained part's CPU kernel compiles while the born-dead part runs
        if not os.path.exists(db) and training_available():
            # a fresh store: the trained programs compile in the background, overlapping the born-dead part
            # (a resumed run skips this: it may have little or nothing left to train)
            prewarm = tr.prewarm_in_background(region, first=ANCHOR_CELLS)
    try:
        return _run_parts(job, db, region, progress_factory, adaptive, initial_trials, budget, born, t0)
    finally:
        if prewarm is not None:
            prewarm.stop()


def _run_parts(job, db, region, progress_factory, adaptive, initial_trials, budget, born, t0) -> dict:
    if adaptive:
        born["adaptive"] = _adaptive(job, db, progress_factory, initial_trials,
                                     budget or job.trials * len(job.widths))
        born["trials_computed"] += born["adaptive"]["trials_computed"]
    else:
        born["trials_computed"] += _run(born_dead_spec(job), db, progress_factory, "born dead")["trials_computed"]
    out = {"born_dead": born}
    if region is not None and training_available():
        for init in region.inits:
            if init != job.init:
                spec = tr.born_dead_family_spec(region, init, region.born_dead_trials, region.born_dead_trials)
                born["trials_computed"] += _run(spec, db, progress_factory, f"born dead {init}")["trials_computed"]
        born["seconds"] = time.perf_counter() - t0
        with Store(db) as store:
            grids = tr.born_dead_grids(region, store)
        grids[job.init] = grids.get(job.init) or _grid(job, db)
        anchors = 0
        for init in region.inits:
            for w, d in ANCHOR_CELLS:
                if w in region.widths and d in region.depths:
                    anchors += _run(tr.trained_spec(region, init, w, d, region.anchor_trials), db, progress_factory,
                                    f"trained {init} N={w} L_h={d}", after_death="stop",
                                    depth_capacity=region.capacity(d, w))["trials_computed"]
        report = tr.run(region, db, grids, progress_factory)
        report["trials_computed"] += anchors
        out["trained"] = {k: v for k, v in report.items() if k != "inits"}
        from .example_fits import store_example_fits
        init, w, d = EXAMPLE_FIT
        if init in region.inits and w in region.widths and d in region.depths:
            out["example_fits"] = store_example_fits(tr.trained_spec(region, init, w, d, region.anchor_trials), db)
    else:
        born["seconds"] = time.perf_counter() - t0
    return out


def _grid(job, db):
    with Store(db) as store:
        return job_grid(job, store)


def _run(spec, db, progress_factory, label, after_death="train", depth_capacity=None):
    if progress_factory is None:
        return run_sweep(spec, db, after_death=after_death, depth_capacity=depth_capacity)
    with progress_factory(label) as bar:
        return run_sweep(spec, db, progress=bar, after_death=after_death, depth_capacity=depth_capacity)


def _adaptive(job, db, progress_factory, initial, budget) -> dict:
    """Double the trials of widths whose boundary is unresolved at some threshold until all are resolved or
    the next doubling would take the total (trials per width, summed over widths) over ``budget``."""
    if initial * len(job.widths) > budget:
        raise ValueError(f"budget {budget} is below the first round ({initial} trials x {len(job.widths)} widths)")
    trials = {w: initial for w in job.widths}
    computed = 0
    rounds = 0
    while True:
        rounds += 1
        by_count: dict[int, list[int]] = {}
        for w, n in trials.items():
            by_count.setdefault(n, []).append(w)
        for n, ws in sorted(by_count.items()):
            # one block size for every round: rounds add blocks of the same compiled chunk, no recompilation
            computed += _run(born_dead_spec(job, ws, n, block_size=min(initial, job.block_size)), db,
                             progress_factory, f"adaptive round {rounds}")["trials_computed"]
        grid = _grid(job, db)
        unresolved = undetermined_widths(grid, job.thresholds)
        grow, planned = [], sum(trials.values())
        for w in unresolved:  # each doubling counted against the budget before the next is allowed
            if planned + trials[w] <= budget:
                grow.append(w)
                planned += trials[w]
        if not grow:
            break
        for w in grow:
            trials[w] *= 2
    # what the diagram rests on: the store may hold more trials than this run asked for
    stored = {int(w): int(grid.n[i, 0]) for i, w in enumerate(grid.widths)}
    used = sum(trials.values())
    uniform = max(trials.values()) * len(trials)
    return {"rounds": rounds, "trials_per_width": trials, "trials_used": used, "stored_trials_per_width": stored,
            "uniform_grid_trials": uniform, "trials_saved": uniform - used,
            "unresolved_widths": unresolved, "budget": budget, "trials_computed": computed}


def job_grid(job: SafeRegionJob, store):
    """The profile grid of the job's born-dead cells as stored (no computation)."""
    hashes = {c.cell_hash for c in born_dead_spec(job).cells}
    cells = [r for r in store.cell_estimates(kind="born_dead") if r["cell_hash"] in hashes and r["trials"]]
    if not cells:
        return None
    return profile_grid(store, cells, job.max_depth)


def protocol_text(region: TrainedRegion, job: SafeRegionJob) -> str:
    return (f"trained: target |x| on [-\u221a3, \u221a3], MSE, Adam lr 1e-3, minibatch 64 of 3000 points, "
            f"{region.steps} steps; {region.initial}-{region.maximum} networks per trained cell "
            f"({region.anchor_trials} at N=2, L_h=9); born dead: {job.trials:,} ({job.init}) / "
            f"{region.born_dead_trials:,} (others) networks per width; He: zero biases; RAI: its own biases, "
            f"output layer He")


def draw(job: SafeRegionJob, db: str, out: str) -> dict:
    """Draw the born-dead diagram, the trained diagram and probability against depth from the store.

    Returns ``{"born_dead": {"boundaries": [...]}, "trained": {init: {"cells", "boundaries", ...}},
    "trained_cost": {...}, "files": [...]}``.
    """
    from .. import figures
    from ..figures import trained_region as tfig
    from ..figures.regenerate import example_fit_figures
    region = job.region() if training_available() else None
    with Store(db) as store:
        grid = job_grid(job, store)
        if grid is None:
            raise FileNotFoundError("no safe-region results in the store")
        fit_files = example_fit_figures(store, out)
        grids, trained, cost = {}, {}, None
        if region is not None:
            grids = tr.born_dead_grids(region, store)
            grids[job.init] = grid
            trained = tr.summarize(region, store, grids)
            cost = tr.cost(region, store, {init: tr.stored_cells(region, store, init) for init in region.inits})
    sub = (f"{job.init}, zero biases, d_in = 1 on [-\u221a3, \u221a3] (exact \u00b11 test), "
           f"{job.trials:,} networks per width; 95 % Wilson intervals")
    files = figures.safe_region(grid, os.path.join(out, "safe_region"), job.thresholds, subtitle=sub)
    if region is not None and any(t["cells"] for t in trained.values()):
        drawn = tuple(t for t in job.thresholds if tr.resolvable(t, region.maximum))
        for summary in trained.values():
            for c in summary["cells"]:
                c["undetermined"] = tr.undetermined(c, job.thresholds, region.maximum)
        text = protocol_text(region, job)
        files += tfig.trained_region(trained, grids, os.path.join(out, "trained_region"), region.depths,
                                     region.widths, drawn, text)
        files += tfig.probability_vs_depth({i: grids[i] for i in region.inits if i in grids}, trained,
                                           os.path.join(out, "p_vs_depth"), list(grid.widths), text)
    else:
        files += figures.probability_vs_depth(grid, os.path.join(out, "p_vs_depth"))
    files += fit_files
    boundaries = []
    for thr in job.thresholds:
        for b in grid.boundaries(thr):
            boundaries.append({"width": b.width, "threshold": thr, "largest_safe_depth": b.largest_safe,
                               "smallest_unsafe_depth": b.smallest_unsafe, "resolved": b.resolved,
                               "theory_depth": b.theory, "trials": int(grid.n[list(grid.widths).index(b.width)][0])})
    return {"born_dead": {"boundaries": boundaries}, "trained": trained, "trained_cost": cost, "files": files}
