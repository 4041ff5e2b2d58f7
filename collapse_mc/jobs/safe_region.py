"""The main job: the default safe-region diagram, computed (or resumed) into a store, then drawn.

Born dead: He normal, zero biases, d_in = 1 (exact +-1 test), widths 1..12, one cell per width at the largest
depth (64 hidden layers) whose per-trial first dead layers give every depth 1..64 (``analysis.safe_region``).
Trained spot checks: a few cells trained on abs(x) (``SPOT_CHECKS``), drawn on the probability-vs-depth
figure. Everything goes through the resumable sweep runner, so a killed job loses at most one block and a
second run only redraws.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Sequence

from ..analysis import DEFAULT_THRESHOLDS, undetermined_widths
from ..analysis.from_store import profile_grid
from ..store import Store
from ..sweep import run_sweep
from ..sweep.spec import parse_spec

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
    spot_checks: bool = True
    spot_trials: int = 200
    spot_steps: int = 2000


# trained spot checks: (width, depth) cells on abs(x), MSE, Adam -- papers 1 and 2's setting at depth 9
SPOT_CHECKS = ((2, 9), (3, 9), (4, 9), (5, 9), (8, 9))
EXAMPLE_FIT_WIDTH = 2  # the spot check whose collapsed and best trained networks are drawn


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


def spot_check_spec(job: SafeRegionJob, widths: Sequence[int] | None = None):
    widths = sorted(widths or {w for w, _ in SPOT_CHECKS})
    depths = sorted({d for _, d in SPOT_CHECKS})
    return parse_spec({
        "sweep": {"kind": "trained", "name": "safe_region_spot_checks", "trials": job.spot_trials,
                  "seed": job.seed, "block_size": job.spot_trials,
                  "description": "safe region: trained spot checks on abs(x)"},
        "grid": {"width": widths, "depth": depths},
        "init": {"init": job.init, "bias": "zeros"},
        "train": {"target": "abs", "loss": "mse", "optimizer": "adam", "lr": 1e-3, "steps": job.spot_steps},
    }, origin="safe-region spot checks")


def training_available() -> bool:
    try:
        from .. import training  # noqa: F401
        return hasattr(training, "train_outcomes")
    except ImportError:
        return False


def run(job: SafeRegionJob, db: str, progress_factory: Callable | None = None, adaptive: bool = False,
        initial_trials: int = 1000, budget: int | None = None) -> dict:
    """Compute (or resume) the job's cells into ``db``. Returns a summary (trials computed, adaptive report)."""
    summary = {"db": db, "trials_computed": 0}
    if adaptive:
        summary["adaptive"] = _adaptive(job, db, progress_factory, initial_trials,
                                        budget or job.trials * len(job.widths))
        summary["trials_computed"] += summary["adaptive"]["trials_computed"]
    else:
        spec = born_dead_spec(job)
        res = _run(spec, db, progress_factory, "born dead")
        summary["trials_computed"] += res["trials_computed"]
    if job.spot_checks and training_available():
        res = _run(spot_check_spec(job), db, progress_factory, "spot checks")
        summary["spot_check_trials_computed"] = res["trials_computed"]
        from .example_fits import store_example_fits
        summary["example_fits"] = store_example_fits(spot_check_spec(job, [EXAMPLE_FIT_WIDTH]), db)
    return summary


def _run(spec, db, progress_factory, label):
    if progress_factory is None:
        return run_sweep(spec, db)
    with progress_factory(label) as bar:
        return run_sweep(spec, db, progress=bar)


def _adaptive(job, db, progress_factory, initial, budget) -> dict:
    """Double the trials of widths whose boundary is unresolved at some threshold until all are resolved or
    the budget (total trials over widths) is spent."""
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
        with Store(db) as store:
            grid = profile_grid(store, [r for r in store.cell_estimates(kind="born_dead")
                                        if r["cell_hash"] in {c.cell_hash for c in born_dead_spec(job).cells}])
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
    used = sum(trials.values())
    uniform = max(trials.values()) * len(trials)
    return {"rounds": rounds, "trials_per_width": trials, "trials_used": used,
            "uniform_grid_trials": uniform, "trials_saved": uniform - used,
            "unresolved_widths": unresolved, "budget": budget, "trials_computed": computed}


def job_grid(job: SafeRegionJob, store):
    """The profile grid of the job's born-dead cells as stored (no computation)."""
    hashes = {c.cell_hash for c in born_dead_spec(job).cells}
    cells = [r for r in store.cell_estimates(kind="born_dead") if r["cell_hash"] in hashes and r["trials"]]
    if not cells:
        return None
    return profile_grid(store, cells, job.max_depth)


def spot_check_records(job: SafeRegionJob, store) -> list[dict]:
    if not training_available():
        return []
    hashes = {c.cell_hash for c in spot_check_spec(job).cells}
    out = []
    for r in store.cell_estimates(kind="trained"):
        if r["cell_hash"] in hashes and r["trials"]:
            out.append({**r, "p_collapse": r["p"]})
    return out


def draw(job: SafeRegionJob, db: str, out: str) -> dict:
    """Draw the safe-region diagram and the probability-vs-depth figure from the store; return boundaries."""
    from .. import figures
    from ..figures.regenerate import example_fit_figures
    with Store(db) as store:
        grid = job_grid(job, store)
        spots = spot_check_records(job, store)
        fit_files = example_fit_figures(store, out)
    if grid is None:
        raise FileNotFoundError("no safe-region results in the store")
    files = figures.safe_region(grid, os.path.join(out, "safe_region"), job.thresholds)
    files += figures.probability_vs_depth(grid, os.path.join(out, "p_vs_depth"),
                                          widths=[w for w in (1, 2, 3, 4, 5, 6, 8, 10, 12) if w in grid.widths],
                                          trained=spots)
    files += fit_files
    boundaries = []
    for thr in job.thresholds:
        for b in grid.boundaries(thr):
            boundaries.append({"width": b.width, "threshold": thr, "largest_safe_depth": b.largest_safe,
                               "smallest_unsafe_depth": b.smallest_unsafe, "resolved": b.resolved,
                               "theory_depth": b.theory, "trials": int(grid.n[list(grid.widths).index(b.width)][0])})
    return {"files": files, "boundaries": boundaries, "spot_checks": spots}
