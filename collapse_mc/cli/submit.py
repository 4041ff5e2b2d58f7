"""Sharded sweeps on the command line: ``sweep run --shard I/N|auto``, ``sweep status --spec SPEC``, and
``sweep submit SPEC --workers N --executor local|slurm`` (submitit, then ``store merge``)."""
from __future__ import annotations

from .common import UsageError, positive_int, print_json, table


# ----------------------------------------------------------------------------------------------- sweep run --shard

def add_shard_option(p) -> None:
    p.add_argument("--shard", default=None, metavar="I/N|auto",
                   help="compute only shard I of N (0-based) of the sweep's blocks: a fixed share, whole "
                        "compiled-shape groups where possible; give each shard its own --db and join them with "
                        "'collapse-mc store merge'. auto: SLURM_ARRAY_TASK_ID of SLURM_ARRAY_TASK_COUNT (or the "
                        "process index and count under jax.distributed)")


def shard_from_args(args):
    """The ``Shard`` of ``--shard`` (None without it); warns when shards would share a store on a network
    filesystem."""
    if args.shard is None:
        return None
    from ..store.netfs import warn_shared_network_store
    from ..sweep.shards import parse_shard
    shard = parse_shard(args.shard)
    if shard.count > 1:
        warn_shared_network_store(args.db, f"{shard.count} shards")
    return shard


# ----------------------------------------------------------------------------------------------- sweep status --spec

def add_status_spec_options(p) -> None:
    p.add_argument("--spec", default=None, help="with this spec: list the shards whose blocks the store misses")
    p.add_argument("--shards", default=None, metavar="N",
                   help="with --spec: the number of shards (default: the count the shard runs recorded)")
    p.add_argument("--trials", default=None, help="with --spec: the trials per cell the shards ran (if overridden)")


def shard_status_cmd(args) -> int:
    from ..store import Store
    from ..sweep import load_spec
    from ..sweep.shards import missing_by_shard

    if args.spec is None:
        raise UsageError("--shards/--trials need --spec")
    spec = load_spec(args.spec)
    if args.trials is not None:
        spec = spec.with_trials(positive_int("trials", args.trials))
    with Store(args.db, readonly=True) as st:
        count = _shard_count(args, st, spec)
        rows = missing_by_shard(spec, count, st)
    todo = [r for r in rows if r["missing_blocks"]]
    if args.json:
        print_json({"db": args.db, "sweep": spec.sweep_hash, "name": spec.name, "shards": count, "per_shard": rows,
                    "incomplete": [r["shard"] for r in todo]})
        return 0
    print(f"sweep {spec.name} [{spec.sweep_hash[:12]}] in {args.db}, {count} shards: "
          + ("every shard's blocks are recorded" if not todo else
             f"{len(todo)} shard(s) miss blocks: {', '.join(r['shard'] for r in todo)} (run them again)"))
    if todo:
        shown = [dict(r, cells=", ".join(r["cells"][:3]) + (" ..." if len(r["cells"]) > 3 else "")) for r in todo]
        print(table(shown, [("shard", "shard", ""), ("missing_blocks", "missing blocks", ",d"),
                            ("missing_trials", "missing trials", ",d"), ("cells", "cells", "")]))
    return 0


def _shard_count(args, store, spec) -> int:
    if args.shards is not None:
        return positive_int("shards", args.shards)
    recorded = dict(store.artifacts("shards")).get(spec.sweep_hash)
    if not recorded:
        raise UsageError(f"{args.db} records no shard count for this sweep; give --shards N")
    return int(recorded["count"])


# ----------------------------------------------------------------------------------------------- sweep submit

def register_submit(ss) -> None:
    from ..sweep.submit import EXECUTORS
    p = ss.add_parser(
        "submit", help="run a sweep as N shards with submitit (local or SLURM), then merge",
        description="Start --workers jobs with submitit (--executor local: processes on this machine; slurm: a "
                    "SLURM job array), job I running 'sweep run SPEC --shard I/N' into its own store "
                    "PARTS/part-I.sqlite, wait for them, and merge the parts into --db. Run the same command "
                    "again after a failure: finished blocks are kept. Needs submitit: pip install "
                    "'collapse_mc[cluster]'.")
    p.add_argument("spec", help="TOML spec file, or a shipped spec name")
    p.add_argument("--workers", default="2", help="number of shards / jobs (default 2)")
    p.add_argument("--executor", default="local", metavar="EXEC", help=f"{' | '.join(EXECUTORS)} (default local)")
    p.add_argument("--db", default="collapse_mc.sqlite", help="the merged store (default collapse_mc.sqlite)")
    p.add_argument("--parts", default=None, metavar="DIR",
                   help="directory of the shards' stores and job logs (default: DB.parts beside --db)")
    p.add_argument("--trials", default=None, help="override the spec's trials per cell")
    p.add_argument("--chunk-size", default=None, help="trials per compiled chunk (memory; outcomes unchanged)")
    p.add_argument("--time-min", default="1440", help="time limit per job in minutes (default 1440)")
    p.add_argument("--partition", default=None, help="slurm: partition")
    p.add_argument("--cpus-per-task", default=None, help="slurm: CPU cores per job")
    p.add_argument("--gpus-per-node", default=None, help="slurm: GPUs per job")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=submit_cmd)


def submit_cmd(args) -> int:
    from ..store import check_store_path
    from ..sweep import load_spec
    from ..sweep.submit import submit_sweep
    from .common import json_safe
    from .sweep import _results_table

    spec = load_spec(args.spec)
    if args.trials is not None:
        spec = spec.with_trials(positive_int("trials", args.trials))
    workers = positive_int("workers", args.workers)
    chunk = positive_int("chunk-size", args.chunk_size) if args.chunk_size is not None else None
    check_store_path(args.db, create=True)
    slurm = {"slurm_partition": args.partition,
             "cpus_per_task": None if args.cpus_per_task is None else positive_int("cpus-per-task", args.cpus_per_task),
             "gpus_per_node": None if args.gpus_per_node is None else positive_int("gpus-per-node", args.gpus_per_node,
                                                                                   minimum=0)}
    summary = submit_sweep(spec, args.db, workers, args.executor, args.parts, chunk_size=chunk,
                           timeout_min=positive_int("time-min", args.time_min), slurm=slurm)
    from ..store import Store
    with Store(args.db, readonly=True) as st:
        summary["results"] = st.cell_estimates([c.cell_hash for c in spec.cells])
    if args.json:
        print_json(json_safe(summary))
        return 0
    computed = sum(s["blocks_computed"] for s in summary["shards"])
    copied = sum(p["blocks_copied"] for p in summary["merge"]["parts"])
    print(f"sweep {spec.name}: {workers} shards ({args.executor}) computed {computed} blocks; merged {copied} new "
          f"blocks into {args.db} (parts and logs in {summary['logs'].rsplit('/', 1)[0]})")
    print(_results_table(summary["results"]))
    return 0
