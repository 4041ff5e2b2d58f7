"""Merging stores: copy the blocks of shard stores (parts) into one store.

``merge_stores(out, parts)`` checks every part before anything is written: each must be a collapse_mc store
(application id, ``meta``) with the same schema version as ``out`` (a new ``out`` gets this package's version),
every cell it shares with ``out`` or an earlier part must have the same kind, seed and configuration, and
each of its blocks must either not overlap the trial ranges already held for its cell, or equal one of them
exactly (same range, counts and per-trial arrays): such a block is skipped, so merging is idempotent. Any
conflict raises ``MergeError`` (one line) and nothing is written. Then each part is copied in one
transaction (checked again inside it, against concurrent writers): new cells, sweeps and plans (a sweep
already present is updated only from a part whose sweep row is newer), artifacts not yet present, and every
new block, its ``blocks`` row column by column (by the names both files share: versions, hosts and timings are
kept as the part recorded them) with all its ``block_arrays`` rows. Claims are not copied.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Sequence

from .schema import APPLICATION, APPLICATION_ID, SCHEMA_VERSION
from .store import Store, StoreError, check_store_path

COUNT_COLUMNS = ("trials", "born_dead", "collapsed", "diverged", "dead_fraction_sum")


class MergeError(StoreError):
    """A part cannot be merged (one line); nothing was written."""


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    if readonly:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=120.0, isolation_level=None)
    else:
        con = sqlite3.connect(str(path), timeout=120.0, isolation_level=None)
    con.execute("PRAGMA busy_timeout=120000")
    return con


def _version(con: sqlite3.Connection, path: Path) -> int:
    app_id = con.execute("PRAGMA application_id").fetchone()[0]
    meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    if app_id != APPLICATION_ID or meta.get("application") != APPLICATION:
        raise MergeError(f"{path} is not a collapse_mc results store")
    return int(con.execute("PRAGMA user_version").fetchone()[0])


def _columns(con: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in con.execute(f"PRAGMA table_info({table})")]


def _has_table(con: sqlite3.Connection, table: str) -> bool:
    return con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone() \
        is not None


def _fingerprint(con: sqlite3.Connection, block_id: int) -> str:
    """A digest of a block's outcomes: its counts and every array (name, dtype, shape, bytes)."""
    cols = [c for c in COUNT_COLUMNS if c in _columns(con, "blocks")]
    h = hashlib.sha256(repr(con.execute(f"SELECT {', '.join(cols)} FROM blocks WHERE id = ?",
                                        (block_id,)).fetchone()).encode())
    for name, dtype, shape, data in con.execute("SELECT name, dtype, shape, data FROM block_arrays "
                                                "WHERE block_id = ? ORDER BY name", (block_id,)):
        h.update(f"{name}|{dtype}|{json.loads(shape)}|".encode())
        h.update(bytes(data))
    return h.hexdigest()


class _Held:
    """What a store holds (plus what earlier parts will add): cells and block ranges, each block with the
    connection and id to read its outcomes from."""

    def __init__(self, con: sqlite3.Connection | None):
        self.cells: dict[str, tuple] = {}
        self.blocks: dict[str, list[tuple[int, int, sqlite3.Connection, int]]] = {}
        if con is not None:
            self.add_from(con, None)

    def add_from(self, con, only: set | None):
        for h, kind, seed, config in con.execute("SELECT cell_hash, kind, seed, config FROM cells"):
            self.cells.setdefault(h, (kind, int(seed), json.loads(config)))
        for bid, h, a, b in con.execute("SELECT id, cell_hash, trial_start, trial_stop FROM blocks"):
            if only is None or bid in only:
                self.blocks.setdefault(h, []).append((int(a), int(b), con, int(bid)))

    def plan(self, con: sqlite3.Connection, path: Path) -> dict:
        """Check a part against what is held; returns ``{"cells": new hashes, "blocks": new block ids,
        "skipped": identical blocks}`` and adds the part to what is held. Raises ``MergeError``."""
        new_cells = []
        for h, kind, seed, config in con.execute("SELECT cell_hash, kind, seed, config FROM cells"):
            mine = (kind, int(seed), json.loads(config))
            if h not in self.cells:
                new_cells.append(h)
            elif self.cells[h] != mine:
                raise MergeError(f"{path}: cell {h[:12]} has a different configuration (kind, seed or settings) "
                                 "than the store it is merged into; not merged, nothing written")
        new_blocks, skipped = [], 0
        for bid, h, a, b in con.execute("SELECT id, cell_hash, trial_start, trial_stop FROM blocks "
                                        "ORDER BY cell_hash, trial_start"):
            same = None
            for x, y, c2, b2 in self.blocks.get(h, ()):
                if x < b and y > a:
                    if (x, y) != (a, b):
                        raise MergeError(f"{path}: trials [{a}, {b}) of cell {h[:12]} overlap the recorded "
                                         f"trials [{x}, {y}); not merged, nothing written")
                    same = (c2, b2)
            if same is None:
                new_blocks.append(int(bid))
            elif _fingerprint(con, bid) != _fingerprint(*same):
                raise MergeError(f"{path}: trials [{a}, {b}) of cell {h[:12]} are recorded with different "
                                 "outcomes; not merged, nothing written")
            else:
                skipped += 1
        self.add_from(con, set(new_blocks))
        return {"cells": new_cells, "blocks": new_blocks, "skipped": skipped}


def _open_parts(out: Path, parts: Sequence) -> list[tuple[Path, sqlite3.Connection]]:
    opened = []
    for p in map(Path, parts):
        if p.exists() and out.exists() and os.path.samefile(p, out):
            raise MergeError(f"{p} is the output store itself")
        try:
            check_store_path(p, create=False)
            con = _connect(p, readonly=True)
        except (StoreError, sqlite3.Error) as e:
            for _, c in opened:
                c.close()
            raise MergeError(str(e).splitlines()[0]) from None
        opened.append((p, con))
    return opened


def merge_stores(out, parts: Sequence) -> dict:
    """Merge the stores ``parts`` into ``out`` (created if missing); see the module docstring.

    Returns ``{"out", "parts": [{"part", "cells_added", "blocks_copied", "blocks_skipped", "trials_copied"}]}``.
    """
    out = Path(out)
    if not parts:
        raise MergeError("give at least one part store to merge")
    check_store_path(out, create=True)
    opened = _open_parts(out, parts)
    try:
        versions = {p: _version(c, p) for p, c in opened}
        exists = check_store_path(out, create=True) == "store"
        ocon = _connect(out, readonly=True) if exists else None
        try:
            want = _version(ocon, out) if ocon else SCHEMA_VERSION
            for p, v in versions.items():
                if v != want:
                    raise MergeError(f"{p} has store schema version {v}, {out} has {want}; open both with the same "
                                     "collapse_mc (it upgrades a store when it writes to it) and merge again")
            held = _Held(ocon)
            for p, c in opened:  # every check before anything is written
                held.plan(c, p)
        finally:
            if ocon is not None:
                ocon.close()
        Store(out, create=True).close()
        report = []
        wcon = _connect(out, readonly=False)
        try:
            for p, c in opened:
                report.append(_copy_part(wcon, c, p))
        finally:
            wcon.close()
    finally:
        for _, c in opened:
            c.close()
    return {"out": str(out), "parts": report}


def _copy_part(wcon: sqlite3.Connection, pcon: sqlite3.Connection, path: Path) -> dict:
    """Copy one part in one transaction (its checks repeated inside it)."""
    wcon.execute("BEGIN IMMEDIATE")
    try:
        plan = _Held(wcon).plan(pcon, path)
        cell_cols = [c for c in _columns(pcon, "cells") if c in set(_columns(wcon, "cells"))]
        for h in plan["cells"]:
            _copy_rows(wcon, pcon, "cells", cell_cols, "cell_hash = ?", (h,))
        _copy_sweeps(wcon, pcon)
        if _has_table(pcon, "artifacts"):
            cols = _columns(pcon, "artifacts")
            for row in pcon.execute(f"SELECT {', '.join(cols)} FROM artifacts"):
                wcon.execute(f"INSERT OR IGNORE INTO artifacts ({', '.join(cols)}) VALUES "
                             f"({', '.join('?' * len(cols))})", row)
        shared = set(_columns(wcon, "blocks"))
        block_cols = [c for c in _columns(pcon, "blocks") if c in shared and c != "id"]
        array_cols = [c for c in _columns(pcon, "block_arrays") if c != "block_id"]
        trials = 0
        for bid in plan["blocks"]:
            row = pcon.execute(f"SELECT {', '.join(block_cols)} FROM blocks WHERE id = ?", (bid,)).fetchone()
            new_id = wcon.execute(f"INSERT INTO blocks ({', '.join(block_cols)}) VALUES "
                                  f"({', '.join('?' * len(block_cols))})", row).lastrowid
            trials += int(row[block_cols.index("trials")])
            for arow in pcon.execute(f"SELECT {', '.join(array_cols)} FROM block_arrays WHERE block_id = ?",
                                     (bid,)):
                wcon.execute(f"INSERT INTO block_arrays (block_id, {', '.join(array_cols)}) VALUES "
                             f"(?, {', '.join('?' * len(array_cols))})", (new_id, *arow))
        wcon.execute("COMMIT")
    except BaseException:
        wcon.execute("ROLLBACK")
        raise
    return {"part": str(path), "cells_added": len(plan["cells"]), "blocks_copied": len(plan["blocks"]),
            "blocks_skipped": plan["skipped"], "trials_copied": trials}


def _copy_rows(wcon, pcon, table: str, cols: list[str], where: str, args: tuple) -> None:
    for row in pcon.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE {where}", args):
        wcon.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", row)


def _copy_sweeps(wcon, pcon) -> None:
    """Sweeps and their plans: added when absent, replaced from a part whose sweep row is newer."""
    cols = [c for c in _columns(pcon, "sweeps") if c in set(_columns(wcon, "sweeps"))]
    plan_cols = [c for c in _columns(pcon, "plan") if c in set(_columns(wcon, "plan"))]
    for (h, updated) in pcon.execute("SELECT sweep_hash, updated_at FROM sweeps").fetchall():
        mine = wcon.execute("SELECT updated_at FROM sweeps WHERE sweep_hash = ?", (h,)).fetchone()
        if mine is not None and mine[0] >= updated:
            continue
        wcon.execute("DELETE FROM plan WHERE sweep_hash = ?", (h,))
        wcon.execute("DELETE FROM sweeps WHERE sweep_hash = ?", (h,))
        _copy_rows(wcon, pcon, "sweeps", cols, "sweep_hash = ?", (h,))
        _copy_rows(wcon, pcon, "plan", plan_cols, "sweep_hash = ?", (h,))
