"""Upgrading older stores in place (one transaction; refused stores are never touched).

Version 1 -> 2 (training outcomes made consistent, see ``training.TrainOutcomes``):

* ``blocks`` gains ``dead_after_training``, ``near_flat_at_init`` and ``decided``. Version 1 did not record
  the first two: they stay NULL for its blocks, and estimates of them are reported as unknown for cells that
  have such blocks (``sweep run`` with more trials records them for the new trials only).
* Born dead implies collapsed: a trial born dead that diverged was not counted as collapsed by version 1;
  its per-trial ``collapsed`` flag and the block's count are corrected. ``decided`` = trials that did not
  diverge while alive (the denominator of P(collapse)).
* A diverged trial's dead fractions were computed from non-finite activations (counted as alive): they become
  NaN, and the block's sums are recomputed over the trials that did not diverge.
"""
from __future__ import annotations

import json
import sqlite3

import numpy as np

NEW_BLOCK_COLUMNS = ("dead_after_training INTEGER", "near_flat_at_init INTEGER", "decided INTEGER")


def _arrays(con, block_id: int) -> dict[str, np.ndarray]:
    rows = con.execute("SELECT name, dtype, shape, data FROM block_arrays WHERE block_id = ?", (block_id,))
    return {n: np.frombuffer(d, dtype=np.dtype(t)).reshape(json.loads(s)).copy() for n, t, s, d in rows}


def _put(con, block_id: int, name: str, v: np.ndarray) -> None:
    con.execute("UPDATE block_arrays SET data = ? WHERE block_id = ? AND name = ?",
                (np.ascontiguousarray(v).tobytes(), block_id, name))


def migrate_1_to_2(con: sqlite3.Connection) -> int:
    """Upgrade a version-1 store inside the caller's transaction; returns the number of trained blocks fixed."""
    have = {r[1] for r in con.execute("PRAGMA table_info(blocks)")}
    for col in NEW_BLOCK_COLUMNS:
        if col.split()[0] not in have:
            con.execute(f"ALTER TABLE blocks ADD COLUMN {col}")
    fixed = 0
    for (bid,) in con.execute("SELECT id FROM blocks WHERE collapsed IS NOT NULL").fetchall():
        a = _arrays(con, bid)
        if not {"born_dead", "collapsed", "diverged"} <= set(a):
            continue
        born, div = a["born_dead"].astype(bool), a["diverged"].astype(bool)
        collapsed = a["collapsed"].astype(bool) | born
        _put(con, bid, "collapsed", collapsed.astype(a["collapsed"].dtype))
        sets = {"collapsed": int(collapsed.sum()), "decided": int((~div | born).sum())}
        if "dead_fraction" in a:
            df = a["dead_fraction"].copy()
            df[div] = np.nan
            _put(con, bid, "dead_fraction", df.astype(a["dead_fraction"].dtype))
            ok = df[~div]
            sets["dead_fraction_sum"] = float(ok.mean(axis=1).sum()) if ok.size else None
            if "layer_dead_fraction_sum" in a:
                _put(con, bid, "layer_dead_fraction_sum", ok.astype("<f8").sum(axis=0))
        names = ", ".join(f"{k} = ?" for k in sets)
        con.execute(f"UPDATE blocks SET {names} WHERE id = ?", (*sets.values(), bid))
        fixed += 1
    con.execute("PRAGMA user_version = 2")
    con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', '2')")
    con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('migrated_from', '1')")
    return fixed


MIGRATIONS = {1: migrate_1_to_2}  # from version -> function upgrading to the next
