"""``collapse-mc store merge OUT PART...``: join shard stores into one (see ``collapse_mc.store.merge``)."""
from __future__ import annotations

from .common import UsageError, print_json


def register(sub):
    p = sub.add_parser("store", help="operations on results stores (merge shard stores)",
                       description="Operations on collapse_mc results stores.")
    ss = p.add_subparsers(dest="store_command", metavar="SUBCOMMAND", parser_class=type(p))
    m = ss.add_parser(
        "merge", help="copy the blocks of shard stores into one store",
        description="Copy every block of the PART stores (e.g. the stores of 'sweep run --shard I/N') into OUT "
                    "(created if missing), one transaction per part. Every part is checked first: a collapse_mc "
                    "store with OUT's schema version, the same configuration for every cell it shares with OUT, "
                    "and trial ranges that either do not overlap OUT's or equal them exactly (then skipped: "
                    "merging twice adds nothing). A conflicting part is refused and nothing is written.")
    m.add_argument("out", metavar="OUT", help="the merged store (created if missing)")
    m.add_argument("parts", metavar="PART", nargs="+", help="stores to copy from (left unchanged)")
    m.add_argument("--json", action="store_true", help="print a JSON summary")
    m.set_defaults(func=merge_cmd)
    p.set_defaults(func=_store_help)


def _store_help(args):
    raise UsageError("store: give a subcommand: merge (see collapse-mc store --help)")


def merge_cmd(args) -> int:
    import sqlite3

    from ..store.merge import merge_stores
    try:
        summary = merge_stores(args.out, args.parts)
    except (sqlite3.Error, OSError) as e:
        raise UsageError(f"store merge: {e}") from None
    if args.json:
        print_json(summary)
        return 0
    for r in summary["parts"]:
        print(f"{r['part']}: {r['blocks_copied']} blocks ({r['trials_copied']:,} trials) copied, "
              f"{r['blocks_skipped']} already present, {r['cells_added']} new cells")
    print(f"-> {summary['out']}")
    return 0
