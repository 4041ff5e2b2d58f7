"""``collapse-mc safe-region``: the main job (compute or resume the default grid, then draw the diagram)."""
from __future__ import annotations

import os

from .common import UsageError, float_list, int_list, positive_int, print_json, table


def register(sub):
    p = sub.add_parser(
        "safe-region",
        help="the main job: compute (or resume) the default safe-region grid and draw the diagram",
        description="Run or resume the default safe-region study into the store (born dead: He normal, zero "
                    "biases, d_in=1, widths 1..12, depths 1..64 hidden layers, 20000 trials per width; plus "
                    "trained spot checks on abs(x)), then draw figures/safe_region.{png,pdf} and "
                    "figures/p_vs_depth.{png,pdf}. A second run reuses the store and only redraws. A cell is "
                    "safe at threshold p when its 95% Wilson upper end is below p, unsafe when the lower end "
                    "is above p, else undetermined. Depth = hidden layers L_h (papers' layers = L_h + 1).",
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
    p.add_argument("--no-spot-checks", action="store_true", help="skip the trained spot checks")
    p.add_argument("--json", action="store_true", help="print the summary and boundaries as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it is shown only on a terminal)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..config import WEIGHT_INITS
    from ..jobs.safe_region import SafeRegionJob, draw, run as run_job
    from ..progress import Progress
    from ..store import check_store_path

    widths = tuple(int_list(args.widths, "widths"))
    thresholds = tuple(float_list(args.thresholds, "thresholds"))
    if any(not 0 < t < 1 for t in thresholds):
        raise UsageError("--thresholds: each must be in (0, 1)")
    if args.init not in WEIGHT_INITS:
        raise UsageError(f"--init: unknown initializer {args.init!r}; choose one of {', '.join(WEIGHT_INITS)}")
    job = SafeRegionJob(widths=widths, max_depth=positive_int("max-depth", args.max_depth),
                        trials=positive_int("trials", args.trials), seed=args.seed, init=args.init,
                        thresholds=thresholds, spot_checks=not args.no_spot_checks)
    initial = positive_int("initial-trials", args.initial_trials)
    budget = positive_int("budget", args.budget) if args.budget is not None else None
    check_store_path(args.db, create=True)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out: {args.out!r} exists and is not a folder")

    def bar(label):
        return Progress(1, f"safe-region {label}", enabled=False if args.no_progress else None)

    summary = run_job(job, args.db, bar, adaptive=args.adaptive, initial_trials=initial, budget=budget)
    drawn = draw(job, args.db, args.out)
    summary.update(drawn)
    if args.json:
        print_json(summary)
        return 0
    print(f"store: {args.db} ({summary['trials_computed']:,} new born-dead trials computed; 0 = only redrawn)")
    if "adaptive" in summary:
        a = summary["adaptive"]
        print(f"adaptive: {a['trials_used']:,} trials used over {len(widths)} widths ({a['trials_computed']:,} computed "
              f"by this run, the rest already in the store) in {a['rounds']} rounds; a uniform "
              f"grid resolving the same boundaries needs {a['uniform_grid_trials']:,} (saved "
              f"{a['trials_saved']:,}); unresolved widths: {a['unresolved_widths'] or 'none'}")
    rows = []
    for w in widths:
        row = {"width": w}
        for b in summary["boundaries"]:
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
    print("largest safe depth (hidden layers L_h) per width: measured (a range when undetermined) and the "
          "single-input theory bound")
    print(table(rows, cols))
    for s in summary["spot_checks"]:
        print(f"spot check: N={s['width']} L_h={s['depth']} trained on abs(x): P(collapse) = {s['p']:.3f} "
              f"[{s['ci_low']:.3f}, {s['ci_high']:.3f}], P(born dead) = {s['p_born_dead']:.3f} "
              f"({s['trials']} trials)")
    print("figures: " + ", ".join(summary["files"]))
    return 0
