"""A store written by schema version 1 (``tests/data/store_v1.sqlite``, made by collapse_mc 0.1.0 before the
training outcomes were made consistent: a trained sweep of two cells, 16 trials each, width 2, 4 hidden
layers, SGD momentum 0.9 with lr 0.01 and lr 1000, where every lr-1000 trial diverged) is upgraded in place
by any writing open, and read as it is by a read-only open."""
import hashlib
import shutil
import sqlite3
from pathlib import Path

import numpy as np

from collapse_mc.store import Store
from collapse_mc.store.schema import SCHEMA_VERSION

FIXTURE = Path(__file__).parent / "data" / "store_v1.sqlite"


def _sha(p):
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def _version(p):
    con = sqlite3.connect(p)
    try:
        return con.execute("PRAGMA user_version").fetchone()[0]
    finally:
        con.close()


def test_version_1_store_is_migrated_in_place(tmp_path):
    db = tmp_path / "old.sqlite"
    shutil.copy(FIXTURE, db)
    assert _version(db) == 1
    with Store(db) as st:
        assert st.schema_version == SCHEMA_VERSION == 2 and st.meta()["migrated_from"] == "1"
        by_lr = {e["lr"]: e for e in st.cell_estimates()}
        wild, tame = by_lr[1000.0], by_lr[0.01]
        outcomes = st.outcomes(wild["cell_hash"])
        born = outcomes["born_dead"].astype(bool)
        # version 1 counted no diverged trial as collapsed; born dead implies collapsed, diverged or not
        assert wild["diverged"] == 16 and born.sum() == wild["born_dead"] == 8
        np.testing.assert_array_equal(outcomes["collapsed"].astype(bool), born)
        assert wild["collapsed"] == wild["decided"] == 8 and wild["p"] == 1.0 and wild["p_diverged"] == 1.0
        assert np.isnan(outcomes["dead_fraction"]).all() and wild["dead_fraction"] is None
        # not recorded by version 1: unknown, never a number that looks measured
        assert wild["p_dead_after_training"] is None and wild["p_near_flat_at_init"] is None
        assert tame["diverged"] == 0 and tame["decided"] == 16 and tame["p"] == tame["collapsed"] / 16
        assert tame["collapsed"] >= tame["born_dead"]
    sha = _sha(db)
    with Store(db) as st:  # already current: opening again changes nothing
        assert st.schema_version == 2
    assert _sha(db) == sha


def test_version_1_store_is_readable_without_writing(tmp_path):
    db = tmp_path / "old.sqlite"
    shutil.copy(FIXTURE, db)
    sha = _sha(db)
    with Store(db, readonly=True) as st:
        rows = st.cell_estimates()
        assert {r["trials"] for r in rows} == {16} and all(r["p_dead_after_training"] is None for r in rows)
    assert _sha(db) == sha and _version(db) == 1
