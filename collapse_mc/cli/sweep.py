"""``collapse-mc sweep run|status|check``, ``collapse-mc results`` and ``collapse-mc export``.

A sweep is a TOML spec (see ``collapse_mc.sweep.spec``) run into an SQLite results store (``--db``). Runs are
resumable: kill one at any moment and run the same command again; it computes only what is missing.
"""
from __future__ import annotations

import csv
import io
import json
import sys

from .common import UsageError, add_db_option, add_json_option, add_run_options, json_safe, print_json, table
from .submit import add_shard_option, add_status_spec_options, register_submit, shard_from_args, shard_status_cmd

SETTING_ORDER = ("kind", "width", "depth", "layers", "d_in", "d_out", "activation", "residual", "init", "bias",
                 "bias_value", "method")


def register(sub):
    p = sub.add_parser(
        "sweep", help="run resumable parameter sweeps from a TOML spec into a results store",
        description="Parameter sweeps over widths, depths, initializations and training settings. 'sweep run "
                    "SPEC.toml --db results.sqlite' runs every cell's trials in blocks, each block stored in one "
                    "transaction; kill it at any moment and run it again to continue (nothing is counted "
                    "twice). Several processes may run the same spec on the same store at once. Depth "
                    "convention: depth = hidden layers L_h; layers = depth + 1 (the papers' count).")
    ss = p.add_subparsers(dest="sweep_command", metavar="SUBCOMMAND", parser_class=type(p))
    r = ss.add_parser("run", help="run or resume a sweep",
                      description="Run (or resume) the sweep in SPEC (a TOML file, or the name of a spec shipped "
                                  "with collapse_mc, e.g. paper2_born_dead) into --db. The spec and the store "
                                  "are checked before anything is computed or written.")
    r.add_argument("spec", help="TOML spec file, or a shipped spec name (see 'sweep check --list')")
    add_db_option(r, writes=True)
    add_run_options(r, trials=None, trials_help="override the spec's trials per cell", seed=False)
    add_json_option(r, "print a JSON summary (with per-cell results) at the end")
    add_shard_option(r)
    r.set_defaults(func=run_cmd)

    s = ss.add_parser("status", help="per cell: trials done / planned",
                      description="Show every sweep recorded in the store and, per cell, the trials recorded "
                                  "within the plan (done) and the trials planned by the latest run.")
    add_db_option(s, writes=False)
    add_json_option(s)
    add_status_spec_options(s)
    s.set_defaults(func=status_cmd)

    c = ss.add_parser("check", help="validate a spec and list its cells (no store is touched)",
                      description="Parse and validate SPEC, print its cells and compiled-shape groups. With "
                                  "--list, list the specs shipped with collapse_mc.")
    c.add_argument("spec", nargs="?", help="TOML spec file or shipped spec name")
    c.add_argument("--list", action="store_true", help="list the shipped specs")
    add_json_option(c)
    c.set_defaults(func=check_cmd)
    register_submit(ss)
    p.set_defaults(func=lambda args: _sweep_help(p))

    q = sub.add_parser("results", help="per-cell estimates from a results store",
                       description="One row per cell: its settings, then the counts over all recorded trials "
                                   "(trials, born_dead, collapsed, diverged) and p with its 95% Wilson interval "
                                   "(ci_low, ci_high). p is the collapse probability for trained cells and the "
                                   "born-dead probability for born-dead cells; p_born_dead is always given. "
                                   "With --per-depth: P(born dead) at every depth up to each cell's depth (the "
                                   "numbers behind a safe-region diagram). depth = hidden layers; layers = "
                                   "depth + 1. The store is opened read-only.")
    add_db_option(q, writes=False)
    q.add_argument("--kind", choices=("born_dead", "trained"), default=None, help="only cells of this kind")
    q.add_argument("--sweep", default=None, help="only the cells of this sweep (name or hash prefix)")
    q.add_argument("--per-depth", action="store_true",
                   help="one row per (cell, depth d <= the cell's depth): P(born dead) at depth d")
    add_json_option(q, "print one JSON array, one object per row")
    q.set_defaults(func=results_cmd)

    e = sub.add_parser("export", help="export a results store as CSV or JSON",
                       description="Export per-cell results (--level cells, as 'results'), P(born dead) at every "
                                   "depth (--level depths, as 'results --per-depth'), the block records (--level "
                                   "blocks) or the per-trial outcomes (--level trials). Every row starts with its "
                                   "cell's settings (width, depth, layers, init, ...), so no join is needed. The "
                                   "store is opened read-only. In Python: collapse_mc.store.load_rows(db, level).")
    add_db_option(e, writes=False)
    e.add_argument("--format", choices=("csv", "json"), default="csv", help="csv (default) or json")
    e.add_argument("--level", choices=("cells", "depths", "blocks", "trials"), default="cells",
                   help="cells (default), depths, blocks or trials")
    e.add_argument("--kind", choices=("born_dead", "trained"), default=None, help="only cells of this kind")
    e.add_argument("--out", default=None, help="write to this file instead of stdout")
    e.set_defaults(func=export_cmd)


def _sweep_help(p):
    raise UsageError("sweep: give a subcommand: run, status, check or submit (see collapse-mc sweep --help)")


# ----------------------------------------------------------------------------------------------- sweep run

def run_cmd(args) -> int:
    from ..progress import Progress
    from ..store import check_store_path
    from ..sweep import load_spec, run_sweep

    spec = load_spec(args.spec)
    if args.trials is not None:
        spec = spec.with_trials(args.trials)
    spec = spec.with_chunk_size(args.chunk_size)
    chunk = spec.chunk_size
    check_store_path(args.db, create=True)
    shard = shard_from_args(args)
    with Progress(1, f"sweep {spec.name}", enabled=False if args.no_progress else None) as bar:
        summary = run_sweep(spec, args.db, progress=bar, chunk_size=chunk, shard=shard)
    if args.json:
        print_json(json_safe(summary))
        return 0
    print(f"sweep {spec.name} ({spec.kind}, {len(spec.cells)} cells, {spec.trials:,} trials per cell, seed "
          f"{spec.seed}) -> {args.db}: computed {summary['blocks_computed']} blocks "
          f"({summary['trials_computed']:,} trials) in {summary['seconds']:.1f} s")
    print(_results_table(summary["results"]))
    return 0


# ----------------------------------------------------------------------------------------------- status

def status_cmd(args) -> int:
    if args.spec is not None or args.shards is not None or args.trials is not None:
        return shard_status_cmd(args)
    from ..store import Store
    with Store(args.db, readonly=True) as st:
        sweeps = st.status()
    if args.json:
        print_json(json_safe({"db": args.db, "sweeps": sweeps}))
        return 0
    if not sweeps:
        print(f"{args.db}: no sweeps recorded")
    for sw in sweeps:
        print(f"sweep {sw['name']} [{sw['sweep_hash'][:12]}] ({sw['kind']}): {sw['cells_complete']}/"
              f"{len(sw['cells'])} cells complete, {sw['done']:,}/{sw['planned']:,} trials")
        rows = [dict(c, pct=100.0 * c["done"] / c["planned"]) for c in sw["cells"]]
        cols = _setting_columns(rows) + [("done", "done", ",d"), ("planned", "planned", ",d"),
                                         ("pct", "%", ".1f")]
        print(table(rows, cols))
    return 0


# ----------------------------------------------------------------------------------------------- check

def check_cmd(args) -> int:
    from ..sweep import load_spec, packaged_specs
    if args.list or args.spec is None:
        names = sorted(packaged_specs())
        if args.json:
            print_json(names)
        else:
            print("\n".join(names))
        return 0
    spec = load_spec(args.spec)
    if args.json:
        print_json(json_safe({**spec.to_dict(), "sweep": spec.sweep_hash, "groups": len(spec.groups()),
                           "cells": [c.settings for c in spec.cells]}))
        return 0
    print(f"{spec.name}: {spec.kind}, {len(spec.cells)} cells in {len(spec.groups())} compiled-shape groups, "
          f"{spec.trials:,} trials per cell in blocks of {spec.block_size:,}, seed {spec.seed}")
    rows = [c.settings for c in spec.cells]
    print(table(rows, _setting_columns(rows)))
    return 0


# ----------------------------------------------------------------------------------------------- results

def _sweep_hashes(st, args):
    """The cell hashes of ``--sweep`` (None: every cell)."""
    from ..store.rows import sweep_cell_hashes
    if not getattr(args, "sweep", None):
        return None
    hashes = sweep_cell_hashes(st, args.sweep)
    if hashes is None:
        raise UsageError(f"--sweep: no sweep named {args.sweep!r} in {args.db}")
    return hashes


def _rows(args, level: str) -> list[dict]:
    from ..store import Store
    from ..store.rows import block_rows, cell_rows, depth_rows, trial_rows
    with Store(args.db, readonly=True) as st:
        hashes = _sweep_hashes(st, args)
        if level == "cells":
            return cell_rows(st, args.kind, hashes)
        if level == "depths":
            if args.kind is not None:
                kinds = [c["cell_hash"] for c in st.cells() if c["kind"] == args.kind]
                hashes = kinds if hashes is None else [h for h in hashes if h in set(kinds)]
            return depth_rows(st, hashes)
        if level == "blocks":
            return block_rows(st, args.kind)
        return trial_rows(st, args.kind)


def results_cmd(args) -> int:
    rows = _rows(args, "depths" if args.per_depth else "cells")
    if args.json:
        print_json(json_safe(rows))
    elif not rows:
        print(f"{args.db}: no cells" + (" with trials" if args.per_depth else ""))
    elif args.per_depth:
        print(_depth_table(rows))
    else:
        print(_results_table(rows))
    return 0


def _results_table(rows) -> str:
    """One table per kind of cell (born-dead, trained), each showing only the settings that vary in it."""
    parts = []
    kinds = list(dict.fromkeys(r.get("kind") for r in rows))
    for kind in kinds:
        sub = [r for r in rows if r.get("kind") == kind]
        cols = _setting_columns(sub) + [("trials", "trials", ",d"), ("born_dead", "born dead", ",d")]
        if any(r.get("collapsed") is not None for r in sub):
            cols += [("collapsed", "collapsed", ",d"), ("diverged", "diverged", ",d")]
        cols += [("p", "p", ".4f"), ("ci_low", "95% low", ".4f"), ("ci_high", "95% high", ".4f")]
        if len(kinds) > 1:
            parts.append(f"{kind} cells:")
        parts.append(table(sub, cols))
    note = ("p: collapse probability (trained cells) or born-dead probability (born-dead cells), 95% Wilson "
            "interval.\ndepth = hidden layers; layers = depth + 1.")
    return "\n".join(parts) + "\n" + note


def _depth_table(rows) -> str:
    cols = [c for c in _setting_columns(rows, extra_skip=("cell_depth",)) if c[0] not in ("depth", "layers")]
    cols += [("cell_depth", "of depth", "d"), ("depth", "depth(L_h)", "d"), ("layers", "layers", "d"),
             ("trials", "trials", ",d"), ("born_dead", "born dead", ",d"), ("p", "P(born dead)", ".4f"),
             ("ci_low", "95% low", ".4f"), ("ci_high", "95% high", ".4f")]
    note = ("P(born dead) at depth d, from the first dead layers of the trials of one cell ('of depth': its depth).\n"
            "depth = hidden layers; layers = depth + 1; 95% Wilson intervals.")
    return table(rows, cols) + "\n" + note


def _setting_columns(rows, extra_skip=()) -> list:
    """width, depth, layers always; other settings only where they vary."""
    from ..store import RESULT_KEYS
    keys = ["width", "depth", "layers"]
    skip = set(RESULT_KEYS) | {"done", "planned", "recorded", "complete", "block_size", "pct"} | set(extra_skip)
    seen = []
    for r in rows:
        for k in r:
            if k not in seen and k not in skip and k not in keys:
                seen.append(k)
    varying = [k for k in seen if len({json.dumps(r.get(k), default=str) for r in rows}) > 1]
    varying.sort(key=lambda k: SETTING_ORDER.index(k) if k in SETTING_ORDER else len(SETTING_ORDER))
    cols = [("width", "width", "d"), ("depth", "depth(L_h)", "d"), ("layers", "layers", "d")]
    for k in varying:
        isfloat = any(isinstance(r.get(k), float) for r in rows)
        cols.append((k, k, "g" if isfloat else ""))
    return cols


# ----------------------------------------------------------------------------------------------- export

def export_cmd(args) -> int:
    from ..store import RESULT_KEYS
    if args.out is not None:
        _check_out_file(args.out)
    data = json_safe(_rows(args, args.level))
    if args.format == "json":
        text = json.dumps(data, allow_nan=False) + "\n"
    else:
        text = _csv(data, tail=RESULT_KEYS if args.level == "cells" else ())
    if args.out:
        try:
            with open(args.out, "w", newline="") as f:
                f.write(text)
        except OSError as e:
            raise UsageError(f"--out: cannot write {args.out}: {e.strerror}") from None
    else:
        sys.stdout.write(text)
    return 0


def _check_out_file(path: str) -> None:
    """``--out`` must name a file in an existing, writable folder (checked before the store is read)."""
    import os
    if os.path.isdir(path):
        raise UsageError(f"--out: {path} is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"--out: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise UsageError(f"--out: cannot write {path} (read-only file, folder or file system)")


def _csv(rows, tail=()) -> str:
    flat = []
    for r in rows:
        fr = {}
        for k, v in r.items():
            if isinstance(v, list):
                for i, x in enumerate(_flatten(v)):
                    fr[f"{k}_{i}"] = x
            else:
                fr[k] = v
        flat.append(fr)
    cols: list = []
    for r in flat:
        for k in r:
            if k not in cols:
                cols.append(k)
    tail = [k for k in tail if k in cols]
    cols = [k for k in cols if k not in tail] + tail
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in flat:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


def _flatten(v):
    out = []
    for x in v:
        out.extend(_flatten(x) if isinstance(x, list) else [x])
    return out
