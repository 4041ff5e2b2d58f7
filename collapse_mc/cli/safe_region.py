"""``collapse-mc safe-region``: the main job (compute or resume the default grid, then draw the diagram)."""
from __future__ import annotations

import os
import time

from .common import UsageError, float_list, int_list, positive_int, print_json, table


def register(sub):
    p = sub.add_parser(
        "safe-region",
        help="the main job: compute (or resume) the default safe-region grid and draw the diagram",
        description="Run or resume the default safe-region study into the store (born dead: He normal, zero "
                    "biases, d_in=1, widths 1..12, depths 1..64 hidden layers, 20000 trials per width; trained: "
                    "P(collapse after training) for he_normal and rai on abs(x) with the estimate defaults, "
                    "searched along depth per width on a coarse depth grid, trials spent only where they "
                    "decide a boundary), then draw figures/safe_region, figures/trained_region and "
                    "figures/p_vs_depth (.png, .pdf). A second run reuses the store and only redraws. A cell "
                    "is safe at threshold p when its 95%% Wilson upper end is below p, unsafe when the lower "
                    "end is above p, else undetermined. Depth = hidden layers L_h (papers' layers = L_h + 1).",
    )
    p.add_argument("--db", default="collapse_mc.sqlite", help="results store (default ./collapse_mc.sqlite)")
    p.add_argument("--out", default="figures", help="folder for the figures (default ./figures)")
    p.add_argument("--widths", default="1-12", help="widths (default 1-12)")
    p.add_argument("--max-depth", default="64", help="largest depth in hidden layers (default 64)")
    p.add_argument("--trials", default="20000", help="trials per width (default 20000)")
    p.add_argument("--seed", type=int, default=0, help="root seed")
    p.add_argument("--init", default="he_normal", help="weight initializer (default he_normal)")
    p.add_argument("--thresholds", default="0.01,0.1,0.5", help="thresholds p (default 0.01,0.1,0.5)")
    p.add_argument("--adaptive", action="store_true",
                   help="spend trials only on widths whose boundary is unresolved: start at --initial-trials "
                        "and double until every boundary is resolved or --budget total trials are spent")
    p.add_argument("--initial-trials", default="1000", help="adaptive: starting trials per width")
    p.add_argument("--budget", default=None, help="adaptive: total trial budget (default widths x --trials)")
    p.add_argument("--no-trained", "--no-spot-checks", dest="no_trained", action="store_true",
                   help="skip the trained diagram (born dead only)")
    p.add_argument("--trained-initial", default="20",
                   help="trained: networks per measured cell at first (default 20; also the stored block size)")
    p.add_argument("--trained-max", default="40",
                   help="trained: at most this many networks per cell, doubling only while a cell straddles the "
                        "threshold searched (default 40, the fewest that can show a cell safe at 10%%; 1%% is searched only when >= 381)")
    p.add_argument("--trained-steps", default="5000", help="trained: optimizer steps (default 5000, the estimate "
                                                           "default; fewer only for quick checks)")
    p.add_argument("--json", action="store_true", help="print the summary and boundaries as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it is shown only on a terminal)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..config import WEIGHT_INITS
    from ..jobs.safe_region import SafeRegionJob, draw, run as run_job
    from ..jobs.trained_region import TrainedRegion
    from ..progress import Progress
    from ..store import check_store_path

    widths = tuple(int_list(args.widths, "widths"))
    thresholds = tuple(float_list(args.thresholds, "thresholds"))
    if any(not 0 < t < 1 for t in thresholds):
        raise UsageError("--thresholds: each must be in (0, 1)")
    if args.init not in WEIGHT_INITS:
        raise UsageError(f"--init: unknown initializer {args.init!r}; choose one of {', '.join(WEIGHT_INITS)}")
    t_initial = positive_int("trained-initial", args.trained_initial)
    t_max = positive_int("trained-max", args.trained_max)
    if t_max < t_initial:
        raise UsageError("--trained-max: must be >= --trained-initial")
    trained = None if args.no_trained else TrainedRegion(initial=t_initial, maximum=t_max, block_size=t_initial,
                                                         steps=positive_int("trained-steps", args.trained_steps))
    job = SafeRegionJob(widths=widths, max_depth=positive_int("max-depth", args.max_depth),
                        trials=positive_int("trials", args.trials), seed=args.seed, init=args.init,
                        thresholds=thresholds, trained=trained)
    initial = positive_int("initial-trials", args.initial_trials)
    budget = positive_int("budget", args.budget) if args.budget is not None else None
    if args.adaptive and budget is not None and budget < initial * len(widths):
        raise UsageError(f"--budget: {budget} is below the first round ({initial} x {len(widths)} widths)")
    check_store_path(args.db, create=True)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out: {args.out!r} exists and is not a folder")

    def bar(label):
        return Progress(1, f"safe-region {label}", enabled=False if args.no_progress else None)

    t0 = time.perf_counter()
    summary = run_job(job, args.db, bar, adaptive=args.adaptive, initial_trials=initial, budget=budget)
    drawn = draw(job, args.db, args.out)
    summary["born_dead"].update(drawn["born_dead"])
    summary["trained_run"] = summary.pop("trained", None)
    summary["trained"] = drawn["trained"]
    summary["trained_cost"] = drawn["trained_cost"]
    summary["files"] = drawn["files"]
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print_json(summary)
        return 0
    bd = summary["born_dead"]
    tr_run = summary["trained_run"] or {}
    print(f"store: {args.db} ({bd['trials_computed']:,} born-dead and {tr_run.get('trials_computed', 0):,} trained "
          f"networks computed in {summary['seconds']:.0f} s; 0 = only redrawn)")
    if "adaptive" in bd:
        a = bd["adaptive"]
        print(f"adaptive: {a['trials_used']:,} trials over {len(widths)} widths in {a['rounds']} rounds "
              f"({a['trials_computed']:,} computed now); a uniform grid resolving the same boundaries needs "
              f"{a['uniform_grid_trials']:,} (saved {a['trials_saved']:,}); unresolved widths: "
              f"{a['unresolved_widths'] or 'none'}")
    rows = []
    for w in widths:
        row = {"width": w}
        for b in bd["boundaries"]:
            if b["width"] == w:
                key = f"{100 * b['threshold']:g}%"
                hi = b["smallest_unsafe_depth"]
                if b["largest_safe_depth"] >= job.max_depth:
                    rng = f">={job.max_depth}"
                elif b["resolved"]:
                    rng = f"{b['largest_safe_depth']}"
                else:
                    rng = f"{b['largest_safe_depth']}..{hi - 1 if hi else '>=' + str(job.max_depth)}"
                row[key] = rng
                row["t" + key] = b["theory_depth"]
                row["trials"] = b["trials"]
        rows.append(row)
    cols = [("width", "width", "d"), ("trials", "trials", ",d")]
    for t in thresholds:
        k = f"{100 * t:g}%"
        cols += [(k, f"safe depth p<{k}", "s"), ("t" + k, "theory", "d")]
    print("born dead: largest safe depth (hidden layers L_h) per width: measured (a range when undetermined) and "
          "the single-input theory bound")
    print(table(rows, cols))
    for init, part in (summary["trained"] or {}).items():
        rows = []
        for w in widths:
            row = {"width": w}
            for b in part["boundaries"]:
                if b["width"] == w:
                    k = f"{100 * b['threshold']:g}%"
                    if b["reason"]:
                        row[k] = "n/r"
                        continue
                    hi = b["unsafe_from_depth"]
                    row[k] = (f"{b['safe_up_to_depth']}|" + (f"{hi}{'*' if b['unsafe_by'] == 'born_dead' else ''}"
                                                             if hi else "-"))
            row["cells"] = sum(1 for c in part["cells"] if c["width"] == w)
            rows.append(row)
        cols = [("width", "width", "d"), ("cells", "cells", "d")] + [
            (f"{100 * t:g}%", f"p<{100 * t:g}%", "s") for t in thresholds]
        print(f"trained {init}: safe up to | unsafe from (L_h; * = unsafe from born dead alone, - = none up to "
              f"{job.max_depth}, n/r = not resolvable with {job.trained.maximum if job.trained else 0} trials)")
        print(table(rows, cols))
        for c in part["contradictions"]:
            print(f"  against monotonicity: {c}")
        for c in part["below_born_dead"]:
            print(f"  P(collapse) interval below the born-dead interval: {c}")
    cost = summary["trained_cost"]
    if cost:
        u = cost["uniform_grid"]
        print(f"trained cost: {cost['cells_trained']} cells ({cost['distinct_width_depth']} distinct width x depth "
              f"shapes), {cost['trials']:,} networks, {cost['net_steps']:,} net-steps; a uniform grid resolving the "
              f"same boundaries: {u['cells']} cells x {u['trials_per_cell']} = {u['trials']:,} networks, "
              f"{u['net_steps']:,} net-steps")
    print("figures: " + ", ".join(summary["files"]))
    return 0
