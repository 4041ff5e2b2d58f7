"""``collapse-mc figures``: regenerate every figure from stored results, computing nothing."""
from __future__ import annotations

import os

from .common import UsageError, add_db_option, add_json_option, print_json, probability_list


def register(sub):
    p = sub.add_parser(
        "figures",
        help="regenerate every figure from a results store (no computation)",
        description="Draw every figure the store supports into --out (PNG and PDF): safe-region diagrams and "
                    "probability against depth for each born-dead family, initializations side by side, collapse "
                    "constants against the target mean (MSE) and median (L1), and stored example fits. Nothing is "
                    "computed, the store is opened read-only, and nothing is written outside --out.",
    )
    add_db_option(p, writes=False)
    p.add_argument("--out", default="figures", help="output folder, created if missing (default ./figures)")
    p.add_argument("--thresholds", type=probability_list, default=(0.01, 0.1, 0.5),
                   help="safe-region thresholds, each in (0, 1) (default 0.01,0.1,0.5)")
    add_json_option(p, "print the list of files as JSON")
    p.set_defaults(func=run)


def check_out_folder(out: str) -> None:
    """Create ``out`` if needed and check that it is a writable folder (``UsageError`` otherwise)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out: {out!r} exists and is not a folder")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out: cannot create the folder {out!r}: {e.strerror}") from None
    if not os.access(out, os.W_OK):
        raise UsageError(f"--out: the folder {out!r} is not writable (read-only folder or file system)")


def run(args) -> int:
    from ..figures.regenerate import regenerate
    from ..store import Store, check_store_path
    check_store_path(args.db, create=False)
    with Store(args.db, readonly=True) as store:
        check_out_folder(args.out)
        files = regenerate(store, args.out, args.thresholds)
    if args.json:
        print_json({"files": files})
    else:
        print("\n".join(files) if files else "nothing to draw: the store holds no finished cells")
    return 0
