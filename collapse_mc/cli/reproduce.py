"""``collapse-mc reproduce NAME [--quick]``: one paper experiment end to end (its shipped sweep, then figures)."""
from __future__ import annotations

from .common import add_json_option, json_safe, print_json


def register(sub):
    from ..jobs.reproduce import EXPERIMENTS
    p = sub.add_parser(
        "reproduce",
        help="reproduce one paper experiment: run its shipped sweep into a store, then draw its figures",
        description="Run (or resume) the shipped sweep spec NAME (collapse_mc/specs/NAME.toml, whose header gives "
                    "the paper's setting) into --db and draw its figures into --out. --quick runs the same "
                    "comparison with fewer cells, trials and steps (what CI runs); quick cells never mix with "
                    "full ones. Kill it at any moment and run it again to continue.",
    )
    p.add_argument("name", choices=tuple(EXPERIMENTS), metavar="NAME", help=", ".join(EXPERIMENTS))
    p.add_argument("--quick", action="store_true", help="a small run (fewer cells, trials and steps)")
    p.add_argument("--db", default=None,
                   help="results store, created if missing (default results/NAME[_quick].sqlite)")
    p.add_argument("--out", default=None, help="figures folder, created if missing (default figures/NAME[_quick])")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (it is shown only on a terminal)")
    add_json_option(p, "print the results and the files drawn as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..jobs.reproduce import default_paths, load, reproduce
    from ..store import check_store_path
    from .figures import check_out_folder

    load(args.name, args.quick)                              # the spec is valid
    default_db, default_out = default_paths(args.name, args.quick)
    if args.db is not None:
        check_store_path(args.db, create=True)               # the store can be written
    check_out_folder(args.out or default_out)                # the figures can be written
    res = reproduce(args.name, args.quick, args.db, args.out, progress=False if args.no_progress else None)
    if args.json:
        print_json(json_safe(res))
        return 0
    results = res["results"]
    keys = [k for k in ("width", "depth", "layers", "init", "target", "loss", "d_in") if k in results[0]]
    for r in results:
        what = " ".join(f"{k}={r[k]}" for k in keys)
        line = f"{what}: trials {r['trials']}, P(born dead) {r['p_born_dead']:.3f}"
        if r.get("collapsed") is not None:
            line += f", P(collapse) {r['p']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
        print(line)
    print(f"store: {res['db']}")
    print("figures: " + ", ".join(res["files"]))
    return 0
