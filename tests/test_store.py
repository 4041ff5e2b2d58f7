"""The SQLite results store: intervals, transactional block records, idempotence under concurrent writers,
refusal of foreign or newer files, and estimates as sums over records (no JAX needed)."""
import json
import multiprocessing as mp
import os
import random
import sqlite3

import numpy as np
import pytest

from collapse_mc.estimates import wilson
from collapse_mc.store import SCHEMA_VERSION, Store, StoreError, check_store_path, covered_count, subtract_ranges


def test_subtract_and_cover_match_sets():
    rnd = random.Random(0)
    for _ in range(300):
        want = [(a, a + rnd.randint(1, 20)) for a in rnd.sample(range(60), 3)]
        have = [(a, a + rnd.randint(1, 20)) for a in rnd.sample(range(60), 4)]
        got = subtract_ranges(want, have)
        ref = set().union(*(range(a, b) for a, b in want)) - set().union(*(range(a, b) for a, b in have))
        assert set().union(*(range(a, b) for a, b in got)) == ref
        assert sum(b - a for a, b in got) == len(ref)  # pieces are disjoint
        assert covered_count(have) == len(set().union(*(range(a, b) for a, b in have)))
        assert covered_count(have, 30) == len({i for a, b in have for i in range(a, b) if i < 30})


def _cell(h="c1", kind="born_dead", seed=3):
    return {"cell_hash": h, "kind": kind, "seed": seed, "config": {"k": h}, "group": "g", "trials": 100,
            "block_size": 10, "settings": {"kind": kind, "width": 2, "depth": 3, "layers": 4, "init": "he_normal",
                                           "seed": seed}}


def _arrays(start, stop, depth=3):
    """Deterministic synthetic per-trial outcomes of trials [start, stop) (a function of the index only)."""
    t = np.arange(start, stop)
    fdl = ((t * 7919) % 5).astype(np.int32)  # 0 = alive, 1..4 = first dead layer
    fdl[fdl > depth] = 0
    ldf = ((t[:, None] * 31 + np.arange(depth)[None]) % 3) / 2.0
    return {"first_dead_layer": fdl}, ldf


def _new_store(path, cells=("c1",)):
    st = Store(path, create=True)
    st.register_sweep("sw", "test", "born_dead", {"x": 1}, "[sweep]", [_cell(h) for h in cells])
    return st


def test_records_roundtrip_and_estimates(tmp_path):
    db = tmp_path / "s.sqlite"
    with _new_store(db) as st:
        assert st.schema_version == SCHEMA_VERSION
        for a in range(0, 100, 10):
            assert st.record_block("c1", a, a + 10, *_arrays(a, a + 10), info={"seconds": 0.5}) == [(a, a + 10)]
        fdl_all, ldf_all = _arrays(0, 100)
        out = st.outcomes("c1")
        np.testing.assert_array_equal(out["trial"], np.arange(100))
        np.testing.assert_array_equal(out["first_dead_layer"], fdl_all["first_dead_layer"])
        assert out["first_dead_layer"].dtype == np.int16
        est = st.cell_estimates()[0]
        k = int((fdl_all["first_dead_layer"] > 0).sum())
        w = wilson(k, 100)
        assert (est["trials"], est["born_dead"], est["collapsed"], est["diverged"]) == (100, k, None, None)
        assert (est["p"], est["ci_low"], est["ci_high"]) == (w.p, w.ci_low, w.ci_high)
        assert est["p_born_dead"] == w.p and est["width"] == 2 and est["layers"] == 4 and est["blocks"] == 10
        assert est["dead_fraction"] == pytest.approx(ldf_all.mean())
        np.testing.assert_allclose(st.layer_dead_fraction("c1"), ldf_all.mean(axis=0))
        stat = st.status()[0]["cells"][0]
        assert (stat["done"], stat["planned"], stat["complete"]) == (100, 100, True)


def test_overlaps_are_never_counted_twice(tmp_path):
    with _new_store(tmp_path / "s.sqlite") as st:
        assert st.record_block("c1", 0, 10, *_arrays(0, 10)) == [(0, 10)]
        assert st.record_block("c1", 0, 10, *_arrays(0, 10)) == []          # same block again: ignored
        assert st.record_block("c1", 5, 25, *_arrays(5, 25)) == [(10, 25)]  # other block size: only the new part
        assert st.record_block("c1", 30, 40, *_arrays(30, 40)) == [(30, 40)]
        assert st.record_block("c1", 20, 35, *_arrays(20, 35)) == [(25, 30)]
        assert st.coverage("c1") == [(0, 10), (10, 25), (25, 30), (30, 40)]
        assert st.missing("c1", 60, 16) == [(40, 48), (48, 60)]
        assert st.unrecorded("c1", 38, 50) == [(40, 50)]
        out = st.outcomes("c1")
        np.testing.assert_array_equal(out["trial"], np.arange(40))
        np.testing.assert_array_equal(out["first_dead_layer"], _arrays(0, 40)[0]["first_dead_layer"])
        assert st.cell_estimates()[0]["born_dead"] == int((_arrays(0, 40)[0]["first_dead_layer"] > 0).sum())


def test_trained_counts_and_arrays(tmp_path):
    with Store(tmp_path / "t.sqlite", create=True) as st:
        st.register_sweep("sw", "t", "trained", {}, None, [_cell("t1", "trained")])
        n = 12
        col = np.arange(n) % 3 == 0
        arrays = {"first_dead_layer": np.where(np.arange(n) % 4 == 0, 2, 0), "born_dead": np.arange(n) % 4 == 0,
                  "collapsed": col, "diverged": np.arange(n) == 5, "collapse_value": np.ones((n, 2)) * 0.5,
                  "final_loss": np.full(n, np.nan), "test_rel_l2": np.linspace(0, 1, n),
                  "dead_fraction": np.zeros((n, 3))}
        dead = np.arange(n) % 6 == 0
        arrays.update(dead_after_training=dead, near_flat_at_init=np.arange(n) < 7)
        st.record_block("t1", 0, n, arrays, np.zeros((n, 3)))
        e = st.cell_estimates()[0]
        assert (e["trials"], e["born_dead"], e["collapsed"], e["diverged"]) == (12, 3, 4, 1)
        assert (e["dead_after_training"], e["near_flat_at_init"], e["decided"]) == (2, 7, 11)
        # the trial that diverged while alive (5) is in no collapse denominator; the others are
        assert e["p"] == 4 / 11 and e["p_dead_after_training"] == 2 / 11
        assert e["p_born_dead"] == 3 / 12 and e["p_near_flat_at_init"] == 7 / 12 and e["p_diverged"] == 1 / 12
        out = st.outcomes("t1")
        assert out["collapse_value"].shape == (12, 2) and out["collapse_value"].dtype == np.float32
        np.testing.assert_array_equal(out["collapsed"].astype(bool), col)
        assert np.isnan(out["final_loss"]).all()


def _writer(path, order, q):
    st = Store(path)
    got = []
    for a in order:
        got += st.record_block("c1", a, a + 5, *_arrays(a, a + 5), info={"pid": os.getpid()})
    st.close()
    q.put(got)


def test_concurrent_writers_record_each_block_once(tmp_path):
    db = tmp_path / "s.sqlite"
    _new_store(db).close()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    starts = list(range(0, 200, 5))
    procs = []
    for seed in range(4):
        order = starts[:]
        random.Random(seed).shuffle(order)
        procs.append(ctx.Process(target=_writer, args=(str(db), order, q)))
    for p in procs:
        p.start()
    results = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    recorded = sorted(r for res in results for r in res)
    assert recorded == [(a, a + 5) for a in starts]  # every block recorded by exactly one writer
    with Store(db, readonly=True) as st:
        assert [(b["trial_start"], b["trial_stop"]) for b in st.blocks()] == recorded
        assert st.cell_estimates()[0]["trials"] == 200
        assert st.cell_estimates()[0]["born_dead"] == int((_arrays(0, 200)[0]["first_dead_layer"] > 0).sum())


def _snapshot(path):
    return path.read_bytes(), os.stat(path).st_mtime_ns


def test_refuses_foreign_and_newer_files_untouched(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 20)
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    newer = tmp_path / "newer.sqlite"
    _new_store(newer).close()
    con = sqlite3.connect(newer)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    for path, words in ((text, "not an SQLite database"), (other, "not a collapse_mc results store"),
                        (newer, "newer than this collapse_mc supports")):
        before = _snapshot(path)
        for kw in ({}, {"create": True}, {"readonly": True}):
            with pytest.raises(StoreError, match=words) as e:
                Store(path, **kw)
            assert "\n" not in str(e.value)
        assert _snapshot(path) == before
    with pytest.raises(StoreError, match="no collapse_mc results store"):
        Store(tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()
    assert check_store_path(tmp_path / "missing.sqlite") == "missing"


def test_schema_is_versioned_and_identified(tmp_path):
    db = tmp_path / "s.sqlite"
    _new_store(db).close()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA application_id").fetchone()[0] == 0x434D4353
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    meta = dict(con.execute("SELECT key, value FROM meta"))
    assert meta["application"] == "collapse_mc" and meta["schema_version"] == str(SCHEMA_VERSION)
    with pytest.raises(sqlite3.IntegrityError):  # the UNIQUE guard below the overlap check
        for _ in range(2):
            con.execute("INSERT INTO blocks (cell_hash, trial_start, trial_stop, trials, born_dead) "
                        "VALUES ('c1', 0, 5, 5, 0)")
    con.close()
    with Store(db, readonly=True) as st:
        assert st.cells()[0]["config"] == {"k": "c1"}
        assert json.loads(json.dumps(st.cells()[0]["settings"]))["layers"] == 4
