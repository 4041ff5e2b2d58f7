"""``collapse-mc figures``: regenerate every figure from stored results, computing nothing."""
from __future__ import annotations

import os

from .common import UsageError, float_list, print_json


def register(sub):
    p = sub.add_parser(
        "figures",
        help="regenerate every figure from a results store (no computation)",
        description="Draw every figure the store supports into --out (PNG and PDF): safe-region diagrams and "
                    "probability against depth for each born-dead family, initializations side by side, collapse "
                    "constants against the target mean (MSE) and median (L1), and stored example fits. Nothing is "
                    "computed and the store is opened read-only.",
    )
    p.add_argument("--db", default="collapse_mc.sqlite", help="results store (default ./collapse_mc.sqlite)")
    p.add_argument("--out", default="figures", help="output folder (default ./figures)")
    p.add_argument("--thresholds", default="0.01,0.1,0.5", help="safe-region thresholds")
    p.add_argument("--json", action="store_true", help="print the list of files as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..figures.regenerate import regenerate
    from ..store import Store, check_store_path
    thresholds = tuple(float_list(args.thresholds, "thresholds"))
    if any(not 0 < t < 1 for t in thresholds):
        raise UsageError("--thresholds: each must be in (0, 1)")
    if not os.path.exists(args.db):
        raise UsageError(f"--db: no store at {args.db!r}")
    check_store_path(args.db, create=False)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out: {args.out!r} exists and is not a folder")
    with Store(args.db, readonly=True) as store:
        files = regenerate(store, args.out, thresholds)
    if args.json:
        print_json({"files": files})
    else:
        print("\n".join(files) if files else "nothing to draw: the store holds no finished cells")
    return 0
