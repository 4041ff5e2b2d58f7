"""``Store``: the SQLite results store (schema in ``collapse_mc.store.schema``).

Durability: every finished block is one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``) in WAL mode with
``synchronous=FULL``; a process killed at any moment leaves whole blocks or nothing. Idempotence: the
inserting transaction first reads the cell's records overlapping the new range and writes only the parts not
yet recorded (``INSERT OR IGNORE`` under ``UNIQUE(cell_hash, trial_start, trial_stop)`` as a second guard), so
two processes computing the same block record it once, and records of a cell never overlap. Estimates are
sums over records.
"""
from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..config import ConfigError
from ..estimates import wilson
from .migrate import MIGRATIONS
from .schema import APPLICATION, APPLICATION_ID, DDL, SCHEMA_VERSION, TABLES

SQLITE_MAGIC = b"SQLite format 3\x00"

# How per-trial outcome arrays are stored (numpy dtype strings); others keep their own dtype.
STORED_DTYPES = {
    "first_dead_layer": "<i2",
    "born_dead": "|u1",
    "collapsed": "|u1",
    "diverged": "|u1",
    "collapse_value": "<f4",
    "final_loss": "<f4",
    "test_rel_l2": "<f4",
    "dead_fraction": "<f4",
    "dead_after_training": "|u1",
    "near_flat_at_init": "|u1",
    "trained_to_end": "|u1",
    "died_at_step": "<i4",
}
COUNT_COLUMNS = ("trials", "born_dead", "collapsed", "diverged")
# The keys ``Store.cell_estimates`` puts after a cell's settings (everything else in a row is a setting). The one
# list the CLI (results, export), the figures and rows use to tell settings from results.
RESULT_KEYS = ("trials", "born_dead", "collapsed", "diverged", "dead_after_training", "near_flat_at_init", "decided",
               "p", "ci_low", "ci_high", "p_born_dead", "born_dead_ci_low", "born_dead_ci_high",
               *(f"{p}{end}" for p in ("p_dead_after_training", "p_near_flat_at_init", "p_diverged")
                 for end in ("", "_ci_low", "_ci_high")),
               "dead_fraction", "blocks", "cell_hash")


class StoreError(ConfigError):
    """The file is not a usable collapse_mc store (one line, fit to show a user)."""


# ----------------------------------------------------------------------------------------------- intervals

def subtract_ranges(want: Iterable[tuple[int, int]], have: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The indices in ``want`` but not in ``have`` (lists of half-open ``(start, stop)``) as sorted, disjoint
    ranges."""
    have = sorted((int(a), int(b)) for a, b in have if b > a)
    merged: list[list[int]] = []
    for lo, hi in sorted((int(a), int(b)) for a, b in want if b > a):
        if merged and lo <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    out: list[tuple[int, int]] = []
    for lo, hi in merged:
        cur = lo
        for a, b in have:
            if b <= cur or a >= hi:
                continue
            if a > cur:
                out.append((cur, a))
            cur = max(cur, b)
            if cur >= hi:
                break
        if cur < hi:
            out.append((cur, hi))
    return out


def covered_count(ranges: Iterable[tuple[int, int]], upto: int | None = None) -> int:
    """Number of indices in the union of ``ranges`` (below ``upto`` if given)."""
    total, cur = 0, -1
    for a, b in sorted(ranges):
        if upto is not None:
            b = min(b, upto)
        a = max(a, cur)
        if b > a:
            total += b - a
            cur = b
    return total


# ----------------------------------------------------------------------------------------------- opening
#
# Nothing here writes to a file it has not recognized as a collapse_mc store: a foreign file is refused from its
# 100-byte header (no SQLite connection, so no -wal/-shm files appear beside it), and a store is checked with
# ``PRAGMA quick_check`` (a damaged page is refused) before anything is written to it. Reading works where
# writing cannot: in a folder that is not writable SQLite cannot create the -shm file a WAL reader needs, so a
# store without a pending -wal file is opened ``immutable`` there (nothing is written, nothing locked).

def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _folder_writable(path: Path) -> bool:
    return os.access(path.resolve().parent, os.W_OK)


def _pending_wal(path: Path) -> bool:
    wal = _sidecar(path, "-wal")
    try:
        return wal.stat().st_size > 0
    except OSError:
        return False


def connect_readonly(path, timeout: float = 30.0) -> sqlite3.Connection:
    """A read-only connection to the SQLite file at ``path`` that never changes the database file.

    ``mode=ro`` normally (it sees a concurrent writer's committed blocks); in a writable folder SQLite may then
    create the WAL side files (``-wal``, ``-shm``) next to a store in WAL mode, as any reader does: the store's
    own bytes stay the same. ``immutable=1`` when the folder is not writable and no -wal file is pending (a
    read-only folder or mount), where ``mode=ro`` would fail; that creates nothing.
    """
    path = Path(path)
    uri = path.resolve().as_uri()
    if not _folder_writable(path) and not _pending_wal(path):
        uri += "?immutable=1"
    else:
        uri += "?mode=ro"
    try:
        con = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
        con.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return con
    except sqlite3.DatabaseError as e:
        if _damaged(e):
            raise StoreError(_damaged_message(path, str(e))) from None
        raise StoreError(f"cannot open {path} for reading ({e})") from None


def _damaged(e: Exception) -> bool:
    return "malformed" in str(e) or "corrupt" in str(e) or "not a database" in str(e)


def _damaged_message(path, what: str) -> str:
    return (f"{path} is damaged ({what}); nothing was written. Restore it from a copy, or recover what is readable "
            "with the sqlite3 tool's .recover")


def _header(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(100)
    except OSError as e:
        raise StoreError(f"cannot read {path}: {e.strerror}") from None


def _check_integrity(con: sqlite3.Connection, path: Path) -> None:
    """``PRAGMA quick_check`` (every page and index readable and consistent) or ``StoreError``."""
    try:
        rows = con.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as e:
        raise StoreError(_damaged_message(path, str(e))) from None
    if [r[0] for r in rows] != ["ok"]:
        raise StoreError(_damaged_message(path, f"integrity check: {rows[0][0]}"))


def _inspect(path: Path) -> str:
    """'missing' | 'empty' | 'store' for a file at ``path``; raises StoreError for anything else (a foreign or
    damaged file, a newer schema), never writing anything."""
    if not path.exists():
        if path.is_symlink():
            raise StoreError(f"{path} is a dangling symbolic link")
        return "missing"
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a collapse_mc results store")
    if not path.is_file():
        raise StoreError(f"{path} is not a regular file")
    head = _header(path)
    if not head and not _pending_wal(path):
        return "empty"
    if head and (len(head) < 100 or head[:len(SQLITE_MAGIC)] != SQLITE_MAGIC):
        raise StoreError(f"{path} is not a collapse_mc results store (not an SQLite database)")
    app_id = int.from_bytes(head[68:72], "big") if head else 0
    if app_id not in (0, APPLICATION_ID) and not _pending_wal(path):
        raise StoreError(f"{path} is an SQLite database but not a collapse_mc results store")
    if app_id == 0 and not _pending_wal(path):
        uri = f"{path.resolve().as_uri()}?immutable=1"   # no store, no WAL: look without any side file
        try:
            con = sqlite3.connect(uri, uri=True)
            try:
                names = con.execute("SELECT name FROM sqlite_master").fetchall()
            finally:
                con.close()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{path} is not a readable collapse_mc results store ({e})") from None
        if names:
            raise StoreError(f"{path} is an SQLite database but not a collapse_mc results store")
        return "empty"
    con = connect_readonly(path)
    try:
        try:
            app_id = con.execute("PRAGMA application_id").fetchone()[0]
            version = con.execute("PRAGMA user_version").fetchone()[0]
            names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as e:
            if _damaged(e):
                raise StoreError(_damaged_message(path, str(e))) from None
            raise StoreError(f"{path} is not a readable collapse_mc results store ({e})") from None
        if not names and version == 0 and app_id == 0:
            return "empty"
        if app_id != APPLICATION_ID:
            raise StoreError(f"{path} is an SQLite database but not a collapse_mc results store")
        if version > SCHEMA_VERSION:
            raise StoreError(f"{path} has store schema version {version}, newer than this collapse_mc supports "
                             f"({SCHEMA_VERSION}); upgrade collapse_mc")
        _check_integrity(con, path)
        try:
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall()) if "meta" in names else {}
        except sqlite3.DatabaseError as e:
            raise StoreError(f"{path} is not a readable collapse_mc results store ({e})") from None
    finally:
        con.close()
    if meta.get("application") != APPLICATION:
        raise StoreError(f"{path} is an SQLite database but not a collapse_mc results store")
    if version < 1 or not set(TABLES) <= names:
        raise StoreError(f"{path} is an incomplete collapse_mc results store (schema version {version})")
    return "store"


def _cannot_write(path: Path, state: str) -> str | None:
    """Why a store at ``path`` (state from ``_inspect``) cannot be written, or None."""
    folder = path.resolve().parent
    if state == "missing":
        if not folder.exists():
            return f"the folder {folder} does not exist (create it first)"
        if not folder.is_dir():
            return f"{folder} is not a folder"
    if not os.access(folder, os.W_OK):
        return (f"the folder {folder} is not writable (the store's journal lives beside it); read-only commands "
                "(results, export, figures, sweep status) still work")
    if state != "missing" and not os.access(path, os.W_OK):
        return f"{path} is read-only; read-only commands (results, export, figures, sweep status) still work"
    return None


def check_store_path(path, create: bool = True) -> str:
    """Validate ``path`` as a store without modifying anything: 'missing', 'empty' or 'store'.

    Raises ``StoreError`` when it is not a collapse_mc store, is damaged, has a newer schema, or (``create=False``)
    is missing or empty; with ``create=True`` also when the store could not be written (a missing or read-only
    folder, a read-only file).
    """
    p = Path(path)
    state = _inspect(p)
    if state != "store" and not create:
        raise StoreError(f"no collapse_mc results store at {p}" + (" (empty file)" if state == "empty" else ""))
    if create:
        why = _cannot_write(p, state)
        if why:
            raise StoreError(f"cannot write the store {p}: {why}")
    return state


def write_error(path, e: sqlite3.Error) -> StoreError:
    """A one-line ``StoreError`` for an SQLite error met while writing ``path`` (disk full, read-only, ...)."""
    text = str(e)
    resume = "blocks already recorded are intact; run the same command again to resume"
    if "full" in text:
        return StoreError(f"disk full (or file-size limit reached) writing {path}; {resume}")
    if "disk I/O" in text:
        return StoreError(f"disk full, a file-size limit or a failing disk (disk I/O error) writing {path}; "
                          f"{resume}")
    if "readonly" in text or "read-only" in text:
        return StoreError(f"{path} is read-only; {resume}")
    if _damaged(e):
        return StoreError(_damaged_message(path, text))
    return StoreError(f"cannot write {path} ({text}); {resume}")


def _json(obj) -> str:
    return json.dumps(obj, sort_keys=False, separators=(",", ":"), default=str)


def _finite_or_none(x):
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


# ----------------------------------------------------------------------------------------------- the store

class Store:
    """A collapse_mc results store at ``path`` (SQLite).

    ``Store(path)`` opens an existing store for reading and writing; ``create=True`` also creates a new one
    (missing or empty file); ``readonly=True`` never writes (not even the journal mode). A file that is not
    a collapse_mc store, or has a newer schema, raises ``StoreError`` before anything is written.
    """

    def __init__(self, path, *, create: bool = False, readonly: bool = False, timeout: float = 120.0):
        self.path = Path(path)
        self.readonly = readonly
        state = _inspect(self.path)
        if state != "store" and not (create and not readonly):
            raise StoreError(f"no collapse_mc results store at {self.path}"
                             + (" (empty file)" if state == "empty" else ""))
        if readonly:
            self.con = connect_readonly(self.path, timeout)
        else:
            why = _cannot_write(self.path, state)
            if why:
                raise StoreError(f"cannot write the store {self.path}: {why}")
            try:
                self.con = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
                self._retry(lambda: self.con.execute("PRAGMA journal_mode=WAL").fetchone())
                self.con.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as e:
                raise write_error(self.path, e) from None
            if state != "store":
                self._create_schema()
            else:
                self._migrate()
        self.con.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        self.con.execute("PRAGMA foreign_keys=ON")

    # -- plumbing
    @staticmethod
    def _retry(fn, attempts: int = 200):
        for i in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e) or i == attempts - 1:
                    raise
                time.sleep(0.05)

    def _write(self, fn):
        """Run ``fn(con)`` in one IMMEDIATE transaction (all or nothing).

        An SQLite error (disk full, a file-size limit, a read-only file) becomes a one-line ``StoreError``; the
        rollback never masks it (SQLite may already have rolled back, e.g. after a full disk).
        """
        if self.readonly:
            raise StoreError(f"{self.path} is open read-only")
        try:
            self._retry(lambda: self.con.execute("BEGIN IMMEDIATE"))
            try:
                out = fn(self.con)
                self.con.execute("COMMIT")
                return out
            except BaseException:
                if self.con.in_transaction:
                    try:
                        self.con.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass   # the original error is the one to report
                raise
        except sqlite3.Error as e:
            raise write_error(self.path, e) from None

    def _create_schema(self) -> None:
        from .. import __version__

        def create(con):
            for stmt in DDL.split(";"):
                if stmt.strip():
                    con.execute(stmt)
            con.execute(f"PRAGMA application_id={APPLICATION_ID}")
            con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            now = str(time.time())
            for k, v in (("application", APPLICATION), ("schema_version", str(SCHEMA_VERSION)),
                         ("created_at", now), ("created_by", __version__)):
                con.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (k, v))
        self._write(create)

    def _migrate(self) -> None:
        """Upgrade an older schema in place, one version at a time, in one transaction (see ``migrate``)."""
        def upgrade(con):
            version = int(con.execute("PRAGMA user_version").fetchone()[0])
            while version < SCHEMA_VERSION:
                MIGRATIONS[version](con)
                version += 1
        if self.schema_version < SCHEMA_VERSION:
            self._write(upgrade)

    def _block_columns(self) -> set[str]:
        return {r[1] for r in self.con.execute("PRAGMA table_info(blocks)")}

    def close(self) -> None:
        self.con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def schema_version(self) -> int:
        return int(self.con.execute("PRAGMA user_version").fetchone()[0])

    def meta(self) -> dict:
        return dict(self.con.execute("SELECT key, value FROM meta").fetchall())

    # -- sweeps, cells and plans
    def register_sweep(self, sweep_hash: str, name: str, kind: str, spec: dict, source: str | None,
                       cells: Sequence[dict]) -> None:
        """Record a sweep, its cells and its plan in one transaction.

        ``cells``: dicts with ``cell_hash, kind, seed, config (dict), settings (dict), group, trials,
        block_size``. Existing cells are kept as they are; the sweep's plan is replaced.
        """
        now = time.time()

        def write(con):
            for c in cells:
                con.execute("INSERT OR IGNORE INTO cells (cell_hash, kind, seed, config, settings, grp, created_at)"
                            " VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (c["cell_hash"], c["kind"], int(c["seed"]), _json(c["config"]), _json(c["settings"]),
                             str(c["group"]), now))
            con.execute("INSERT INTO sweeps (sweep_hash, name, kind, spec, source, created_at, updated_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sweep_hash) DO UPDATE SET "
                        "name = excluded.name, spec = excluded.spec, source = excluded.source, "
                        "updated_at = excluded.updated_at",
                        (sweep_hash, name, kind, _json(spec), source, now, now))
            con.execute("DELETE FROM plan WHERE sweep_hash = ?", (sweep_hash,))
            for i, c in enumerate(cells):
                con.execute("INSERT INTO plan (sweep_hash, cell_hash, position, trials, block_size) "
                            "VALUES (?, ?, ?, ?, ?)", (sweep_hash, c["cell_hash"], i, int(c["trials"]),
                                                       int(c["block_size"])))
        self._write(write)

    def coverage(self, cell_hash: str) -> list[tuple[int, int]]:
        """The recorded trial ranges ``[(start, stop), ...]`` of a cell, sorted."""
        return [tuple(r) for r in self.con.execute(
            "SELECT trial_start, trial_stop FROM blocks WHERE cell_hash = ? ORDER BY trial_start", (cell_hash,))]

    def unrecorded(self, cell_hash: str, start: int, stop: int) -> list[tuple[int, int]]:
        """The parts of ``[start, stop)`` not yet recorded for a cell."""
        overl = self.con.execute("SELECT trial_start, trial_stop FROM blocks WHERE cell_hash = ? AND "
                                 "trial_start < ? AND trial_stop > ?", (cell_hash, stop, start)).fetchall()
        return subtract_ranges([(start, stop)], overl)

    def missing(self, cell_hash: str, trials: int, block_size: int) -> list[tuple[int, int]]:
        """Blocks still to run for trials ``[0, trials)``: the grid ``[k B, (k+1) B)`` cut at ``trials``,
        minus what is recorded (so a changed block size only ever adds the unrecorded parts)."""
        have = self.coverage(cell_hash)
        out = []
        for lo in range(0, int(trials), int(block_size)):
            out.extend(subtract_ranges([(lo, min(lo + block_size, trials))], have))
        return out

    # -- claims (advisory work sharing between concurrent processes)
    def try_claim(self, cell_hash: str, start: int, stop: int, owner: str) -> bool:
        """Mark ``[start, stop)`` as being computed by ``owner``; False when another live process holds it."""
        host, pid = socket.gethostname(), os.getpid()

        def write(con):
            row = con.execute("SELECT owner, host, pid FROM claims WHERE cell_hash = ? AND trial_start = ? AND "
                              "trial_stop = ?", (cell_hash, start, stop)).fetchone()
            if row is not None and row[0] != owner and _alive(row[1], row[2]):
                return False
            con.execute("INSERT OR REPLACE INTO claims (cell_hash, trial_start, trial_stop, owner, host, pid, "
                        "claimed_at) VALUES (?, ?, ?, ?, ?, ?, ?)", (cell_hash, start, stop, owner, host, pid,
                                                                     time.time()))
            return True
        return self._write(write)

    def release_claims(self, owner: str) -> None:
        self._write(lambda con: con.execute("DELETE FROM claims WHERE owner = ?", (owner,)))

    # -- records
    def record_block(self, cell_hash: str, start: int, stop: int, trial_arrays: dict,
                     layer_dead_fraction: np.ndarray | None = None, info: dict | None = None) -> list[tuple[int, int]]:
        """Record the outcomes of trials ``[start, stop)`` of a cell; returns the ranges newly recorded.

        ``trial_arrays``: name -> array with leading axis ``stop - start`` (stored; see ``STORED_DTYPES``;
        ``first_dead_layer`` is required). ``layer_dead_fraction (T, L_h)``: per-trial, per-hidden-layer
        fraction of dead neurons (only its sums are stored). ``info``: versions and timings (columns of
        ``blocks``). Parts of the range that are already recorded are left out, so nothing counts twice.
        """
        n = stop - start
        arrays = {k: np.asarray(v) for k, v in trial_arrays.items()}
        if "first_dead_layer" not in arrays:
            raise ValueError("trial_arrays needs 'first_dead_layer'")
        for k, v in arrays.items():
            if v.shape[:1] != (n,):
                raise ValueError(f"{k}: leading axis {v.shape[:1]} != {n} trials")
        ldf = None if layer_dead_fraction is None else np.asarray(layer_dead_fraction, np.float64)
        info = dict(info or {})

        def write(con):
            overl = con.execute("SELECT trial_start, trial_stop FROM blocks WHERE cell_hash = ? AND "
                                "trial_start < ? AND trial_stop > ?", (cell_hash, stop, start)).fetchall()
            done = []
            for a, b in subtract_ranges([(start, stop)], overl):
                sl = slice(a - start, b - start)
                part = {k: v[sl] for k, v in arrays.items()}
                counts = _counts(part, None if ldf is None else ldf[sl])
                cols = {"cell_hash": cell_hash, "trial_start": a, "trial_stop": b, **counts, **info}
                names = ", ".join(cols)
                cur = con.execute(f"INSERT OR IGNORE INTO blocks ({names}) VALUES "
                                  f"({', '.join('?' * len(cols))})", tuple(cols.values()))
                if cur.rowcount != 1:
                    continue
                bid = cur.lastrowid
                stored = {k: _stored(k, v) for k, v in part.items()}
                if ldf is not None:
                    stored["layer_dead_fraction_sum"] = np.nansum(ldf[sl], axis=0).astype("<f8")
                for k, v in stored.items():
                    con.execute("INSERT INTO block_arrays (block_id, name, dtype, shape, data) VALUES "
                                "(?, ?, ?, ?, ?)", (bid, k, v.dtype.str, _json(list(v.shape)),
                                                    np.ascontiguousarray(v).tobytes()))
                done.append((a, b))
            con.execute("DELETE FROM claims WHERE cell_hash = ? AND trial_start = ? AND trial_stop = ?",
                        (cell_hash, start, stop))
            return done
        return self._write(write)

    def blocks(self, cell_hash: str | None = None) -> list[dict]:
        """The block records (all columns), ordered by cell and trial range."""
        q = "SELECT * FROM blocks"
        args: tuple = ()
        if cell_hash is not None:
            q += " WHERE cell_hash = ?"
            args = (cell_hash,)
        cur = self.con.execute(q + " ORDER BY cell_hash, trial_start", args)
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur]

    def block_arrays(self, block_id: int) -> dict[str, np.ndarray]:
        return {name: _array(dtype, shape, data) for name, dtype, shape, data in self.con.execute(
            "SELECT name, dtype, shape, data FROM block_arrays WHERE block_id = ?", (block_id,))}

    def outcomes(self, cell_hash: str) -> dict[str, np.ndarray]:
        """Per-trial outcomes of a cell, concatenated in trial order, plus ``trial`` (the global indices)."""
        parts: dict[str, list] = {}
        trials = []
        for b in self.blocks(cell_hash):
            trials.append(np.arange(b["trial_start"], b["trial_stop"], dtype=np.int64))
            for k, v in self.block_arrays(b["id"]).items():
                if v.shape[:1] == (b["trials"],) and k != "layer_dead_fraction_sum":
                    parts.setdefault(k, []).append(v)
        out = {"trial": np.concatenate(trials) if trials else np.zeros(0, np.int64)}
        out.update({k: np.concatenate(v) for k, v in parts.items()})
        return out

    def layer_dead_fraction(self, cell_hash: str) -> np.ndarray | None:
        """Mean fraction of dead neurons per hidden layer over the recorded trials, ``(L_h,)``."""
        total, n = None, 0
        for bid, t in self.con.execute("SELECT id, trials - COALESCE(diverged, 0) FROM blocks WHERE cell_hash = ?",
                                       (cell_hash,)):
            s = self.block_arrays(bid).get("layer_dead_fraction_sum")
            if s is None:
                return None
            total = s if total is None else total + s
            n += t
        return None if total is None or n == 0 else total / n

    # -- estimates
    def cells(self) -> list[dict]:
        cur = self.con.execute("SELECT cell_hash, kind, seed, config, settings, grp FROM cells ORDER BY rowid")
        return [{"cell_hash": h, "kind": k, "seed": s, "config": json.loads(c), "settings": json.loads(st),
                 "group": g} for h, k, s, c, st, g in cur]

    def cell_estimates(self, cell_hashes: Sequence[str] | None = None, kind: str | None = None,
                       confidence: float = 0.95) -> list[dict]:
        """One dict per cell: its settings by name, then sums over its records and Wilson intervals.

        Keys after the settings: ``trials, born_dead, collapsed, diverged, dead_after_training,
        near_flat_at_init, decided`` (all but ``trials``/``born_dead`` None for born-dead cells), ``p, ci_low,
        ci_high`` (collapse probability for trained cells, born-dead probability for born-dead cells),
        ``p_born_dead, born_dead_ci_low, born_dead_ci_high``, and for trained cells ``p_dead_after_training``,
        ``p_near_flat_at_init``, ``p_diverged`` with ``_ci_low``/``_ci_high`` (denominators as in
        ``training.summary.probabilities``; None where unknown, e.g. blocks recorded by schema version 1),
        ``dead_fraction`` (mean fraction of dead hidden neurons over trials that did not diverge), ``blocks``,
        ``cell_hash``. Intervals are None with no trials.
        """
        cols = self._block_columns()
        new = [f"SUM(b.{c}), COUNT(b.{c})" if c in cols else "NULL, 0"
               for c in ("dead_after_training", "near_flat_at_init", "decided")]
        rows = self.con.execute(
            "SELECT c.cell_hash, c.kind, c.settings, COUNT(b.id), COALESCE(SUM(b.trials), 0), "
            "COALESCE(SUM(b.born_dead), 0), SUM(b.collapsed), SUM(b.diverged), SUM(b.dead_fraction_sum), "
            + ", ".join(new) + " FROM cells c LEFT JOIN blocks b ON b.cell_hash = c.cell_hash "
            "GROUP BY c.cell_hash ORDER BY c.rowid"
        ).fetchall()
        out = []
        want = None if cell_hashes is None else list(cell_hashes)
        wanted = None if want is None else set(want)
        for h, k, settings, nblocks, n, bd, col, div, dfs, dat, n_dat, nfi, n_nfi, dec, n_dec in rows:
            if wanted is not None and h not in wanted:
                continue
            if kind is not None and k != kind:
                continue
            r = dict(json.loads(settings))
            n, bd = int(n), int(bd)
            trained = k == "trained"
            bd_est = wilson(bd, n, confidence) if n else None
            r.update(trials=n, born_dead=bd)
            if trained:
                col, div = int(col or 0), int(div or 0)
                # every block counted it (schema >= 2), else unknown
                known = lambda s, cnt: int(s or 0) if cnt == nblocks else None  # noqa: E731
                dat, nfi = known(dat, n_dat), known(nfi, n_nfi)
                dec = known(dec, n_dec)
                dec = n - div if dec is None else dec  # (no version-1 block lacks it after migration)
                r.update(collapsed=col, diverged=div, dead_after_training=dat, near_flat_at_init=nfi, decided=dec)
                for name, kk, d in (("p_dead_after_training", dat, dec), ("p_near_flat_at_init", nfi, n),
                                    ("p_diverged", div, n)):
                    w = wilson(kk, d, confidence) if (kk is not None and d) else None
                    r[name], r[f"{name}_ci_low"], r[f"{name}_ci_high"] = (w.p, w.ci_low, w.ci_high) if w \
                        else (None,) * 3
                main = wilson(col, dec, confidence) if dec else None
                healthy = n - div
            else:
                r.update(collapsed=None, diverged=None, dead_after_training=None, near_flat_at_init=None,
                         decided=None)
                main, healthy = bd_est, n
            r.update(p=main.p if main else None, ci_low=main.ci_low if main else None,
                     ci_high=main.ci_high if main else None,
                     p_born_dead=bd_est.p if bd_est else None,
                     born_dead_ci_low=bd_est.ci_low if bd_est else None,
                     born_dead_ci_high=bd_est.ci_high if bd_est else None,
                     dead_fraction=_finite_or_none(dfs / healthy) if (healthy and dfs is not None) else None,
                     blocks=int(nblocks), cell_hash=h)
            out.append(r)
        if want is not None:
            order = {h: i for i, h in enumerate(want)}
            out.sort(key=lambda r: order[r["cell_hash"]])
        return out

    # -- artifacts
    def put_artifact(self, kind: str, name: str, data: dict) -> None:
        """Store (or replace) a small JSON document ``data`` under ``(kind, name)``."""
        text = json.dumps(data, allow_nan=False)

        def write(con):
            con.execute("CREATE TABLE IF NOT EXISTS artifacts (kind TEXT NOT NULL, name TEXT NOT NULL, "
                        "data TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (kind, name))")
            con.execute("INSERT OR REPLACE INTO artifacts (kind, name, data, created_at) VALUES (?, ?, ?, ?)",
                        (kind, name, text, time.time()))
        self._write(write)

    def artifacts(self, kind: str) -> list[tuple[str, dict]]:
        """``[(name, data)]`` of the artifacts of ``kind``, by name (empty when the table does not exist)."""
        try:
            rows = self.con.execute("SELECT name, data FROM artifacts WHERE kind = ? ORDER BY name",
                                    (kind,)).fetchall()
        except sqlite3.OperationalError:
            return []
        return [(n, json.loads(d)) for n, d in rows]

    def sweeps(self) -> list[dict]:
        cur = self.con.execute("SELECT sweep_hash, name, kind, spec, created_at, updated_at FROM sweeps "
                               "ORDER BY created_at, rowid")
        return [{"sweep_hash": h, "name": n, "kind": k, "spec": json.loads(s), "created_at": c, "updated_at": u}
                for h, n, k, s, c, u in cur]

    def sweep_cells(self) -> list[tuple[str, str, str | None]]:
        """``(sweep_hash, name, cell_hash)`` for every cell in every sweep's plan: sweeps in the order they were
        recorded, cells in plan order (``cell_hash`` None for a sweep with an empty plan)."""
        return [tuple(r) for r in self.con.execute(
            "SELECT s.sweep_hash, s.name, p.cell_hash FROM sweeps s LEFT JOIN plan p ON p.sweep_hash = s.sweep_hash "
            "ORDER BY s.created_at, s.rowid, p.position")]

    def status(self) -> list[dict]:
        """Per sweep: its cells with trials done (recorded within the plan) / planned."""
        out = []
        for sw in self.sweeps():
            rows = self.con.execute(
                "SELECT p.cell_hash, p.trials, p.block_size, c.settings FROM plan p JOIN cells c "
                "ON c.cell_hash = p.cell_hash WHERE p.sweep_hash = ? ORDER BY p.position",
                (sw["sweep_hash"],)).fetchall()
            cells = []
            for h, planned, bsize, settings in rows:
                cov = self.coverage(h)
                done = covered_count(cov, planned)
                cells.append({**json.loads(settings), "cell_hash": h, "done": done, "planned": planned,
                              "recorded": covered_count(cov), "block_size": bsize, "complete": done >= planned})
            out.append({"sweep_hash": sw["sweep_hash"], "name": sw["name"], "kind": sw["kind"],
                        "cells": cells, "cells_complete": sum(c["complete"] for c in cells),
                        "done": sum(c["done"] for c in cells), "planned": sum(c["planned"] for c in cells),
                        "updated_at": sw["updated_at"]})
        return out


def _alive(host: str, pid: int) -> bool:
    """Whether a claim's process may still be running (unknowable on another host: assume yes)."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stored(name: str, v: np.ndarray) -> np.ndarray:
    v = np.asarray(v)
    dt = STORED_DTYPES.get(name)
    if name == "first_dead_layer" and v.size and int(v.max()) > np.iinfo(np.int16).max:
        dt = "<i4"
    if dt is None:
        dt = v.dtype.newbyteorder("<").str if v.dtype.kind in "iuf" else v.dtype.str
        if v.dtype.kind == "b":
            dt = "|u1"
    return v.astype(dt)


def _array(dtype: str, shape: str, data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(json.loads(shape)).copy()


def _counts(part: dict, ldf: np.ndarray | None) -> dict:
    """The count columns of ``blocks`` for one block's per-trial arrays (see ``schema``)."""
    fdl = part["first_dead_layer"]
    n = int(fdl.shape[0])
    bd = part.get("born_dead")
    out = {"trials": n, "born_dead": int(np.count_nonzero(bd if bd is not None else fdl > 0))}
    for name in ("collapsed", "diverged", "dead_after_training", "near_flat_at_init"):
        out[name] = int(np.count_nonzero(part[name])) if name in part else None
    if "diverged" in part and "dead_after_training" in part:
        out["decided"] = int(np.count_nonzero(~part["diverged"].astype(bool) | part["dead_after_training"].astype(bool)))
    else:
        out["decided"] = None
    if ldf is not None and ldf.ndim == 2 and ldf.shape[1] > 0:
        means = ldf.mean(axis=1)
        out["dead_fraction_sum"] = float(means[np.isfinite(means)].sum())
    else:
        out["dead_fraction_sum"] = None
    return out
