"""``collapse_mc.results``: a results store as a pandas DataFrame (one row per cell, or per (cell, depth)).

The store is made by running tiny sweeps (two born-dead cells, one of them also in a second sweep, and two
trained cells; each sweep one compiled program, a few seconds in all);
rows are checked against the store's own records and per-trial outcomes, intervals against the closed Wilson
formula written out here."""
import hashlib
import json
import math
import shutil
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

from collapse_mc import results  # noqa: E402
from collapse_mc.cli import main  # noqa: E402
from collapse_mc.config import ConfigError  # noqa: E402
from collapse_mc.store import Store, StoreError  # noqa: E402
from collapse_mc.sweep import parse_spec_text, run_sweep  # noqa: E402
from stores import tiny_trained_spec  # noqa: E402

BORN_DEAD = """
[sweep]
name = "{name}"
kind = "born_dead"
trials = 200
seed = 11
block_size = 64
[grid]
init = {inits}
[network]
width = 2
depth = 5
"""
TRAINED = tiny_trained_spec(name="tiny_trained")
Z = {0.95: 1.959963984540054, 0.9: 1.6448536269514722}   # standard normal quantiles 0.975 and 0.95
V1_FIXTURE = Path(__file__).parent / "data" / "store_v1.sqlite"


def closed_wilson(k, n, confidence=0.95):
    """Wilson score interval, closed form: (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)."""
    z, p = Z[confidence], k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return p, (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("results") / "store.sqlite"
    run_sweep(parse_spec_text(BORN_DEAD.format(name="tiny_born_dead", inits='["he_normal", "lecun_normal"]')), path)
    run_sweep(parse_spec_text(TRAINED), path)
    # a second sweep holding one of the born-dead cells: registered, nothing computed
    again = run_sweep(parse_spec_text(BORN_DEAD.format(name="tiny_he", inits='["he_normal"]')), path)
    assert again["trials_computed"] == 0
    return path


def _store_view(db):
    with Store(db, readonly=True) as st:
        return ({c["cell_hash"]: c for c in st.cells()},
                {c["cell_hash"]: st.outcomes(c["cell_hash"]) for c in st.cells()})


def test_one_row_per_cell_matching_the_store(db):
    cells, outcomes = _store_view(db)
    df = results.load(db)
    assert list(df["cell_hash"]) == list(cells) and len(df) == 4
    assert list(df.columns[:6]) == ["cell_hash", "kind", "sweep", "width", "depth", "layers"]
    assert list(df["kind"]) == ["born_dead", "born_dead", "trained", "trained"]
    assert list(df["init"]) == ["he_normal", "lecun_normal", "he_normal", "he_normal"]
    assert list(df["sweep"]) == ["tiny_born_dead, tiny_he", "tiny_born_dead", "tiny_trained", "tiny_trained"]
    for r in df.to_dict("records"):
        c, out = cells[r["cell_hash"]], outcomes[r["cell_hash"]]
        for k, v in c["settings"].items():       # every setting is its own column, with its stored value
            assert (r[k] is None or pd.isna(r[k])) if v is None else r[k] == v, k
        assert r["layers"] == r["depth"] + 1 and r["confidence"] == 0.95
        fdl = out["first_dead_layer"]
        assert r["trials"] == len(fdl) and r["born_dead"] == int((fdl > 0).sum())
        assert r["blocks"] == (4 if r["kind"] == "born_dead" else 2)
        if r["kind"] == "born_dead":
            assert (r["width"], r["depth"], r["trials"]) == (2, 5, 200)
            k, n = r["born_dead"], 200
            assert all(pd.isna(r[x]) for x in ("collapsed", "diverged", "decided", "lr", "target"))
        else:
            assert (r["width"], r["depth"], r["target"], r["trials"]) == (2, 3, "abs", 6)
            div = out["diverged"].astype(bool)
            decided = int((~div | out["dead_after_training"].astype(bool)).sum())
            k, n = int(out["collapsed"].sum()), decided
            assert (r["collapsed"], r["diverged"], r["decided"]) == (k, int(div.sum()), decided)
            p, lo, hi = closed_wilson(int(div.sum()), 6)
            assert (r["p_diverged"], r["p_diverged_ci_low"], r["p_diverged_ci_high"]) == \
                pytest.approx((p, lo, hi), abs=1e-12)
        assert (r["p"], r["ci_low"], r["ci_high"]) == pytest.approx(closed_wilson(k, n), abs=1e-12)
        assert (r["p_born_dead"], r["born_dead_ci_low"], r["born_dead_ci_high"]) == \
            pytest.approx(closed_wilson(r["born_dead"], r["trials"]), abs=1e-12)
    # counts stay integers; the ones a born-dead cell does not have are missing, not NaN floats
    assert df["trials"].dtype == np.int64 and str(df["collapsed"].dtype) == "Int64"
    assert df["collapsed"].isna().tolist() == [True, True, False, False]
    assert df["lr"].isna().tolist() == [True, True, False, False] and df["lr"].tolist()[2:] == [1e-3, 3e-2]


def test_records_are_the_same_rows_without_pandas(db, monkeypatch):
    df = results.load(db)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError) as e:
        results.load(db)
    msg = str(e.value)
    assert "pip install -e '.[results]'" in msg and "\n" not in msg
    recs = results.load_records(db)
    assert [list(r) for r in recs] == [list(df.columns)] * 4     # same keys, same order, in every row
    for r, row in zip(recs, df.to_dict("records")):
        for k, v in r.items():
            assert (pd.isna(row[k]) if v is None else row[k] == v), k
    json.dumps(recs, allow_nan=False)                                  # plain values only


def test_profile_rows_per_depth(db):
    cells, outcomes = _store_view(db)
    prof = results.load(db, profiles=True)
    assert len(prof) == 5 + 5 + 3 + 3
    assert list(prof.columns[:7]) == ["cell_hash", "kind", "sweep", "width", "depth", "layers", "cell_depth"]
    for h, c in cells.items():
        rows = prof[prof["cell_hash"] == h]
        fdl = outcomes[h]["first_dead_layer"]
        depth = c["settings"]["depth"]
        assert rows["depth"].tolist() == list(range(1, depth + 1)) and (rows["layers"] == rows["depth"] + 1).all()
        assert (rows["cell_depth"] == depth).all() and (rows["kind"] == c["kind"]).all()
        for r in rows.to_dict("records"):
            k = int(((fdl >= 1) & (fdl <= r["depth"])).sum())
            assert (r["trials"], r["born_dead"]) == (len(fdl), k)
            assert (r["p"], r["ci_low"], r["ci_high"]) == pytest.approx(closed_wilson(k, len(fdl)), abs=1e-12)
        assert rows["p"].is_monotonic_increasing
        # at the cell's own depth the profile is the cell's born-dead estimate
        assert rows["born_dead"].iloc[-1] == int((fdl > 0).sum())
    only = results.load(db, profiles=True, kind="born_dead")
    assert len(only) == 10 and only["sweep"].tolist() == ["tiny_born_dead, tiny_he"] * 5 + ["tiny_born_dead"] * 5
    assert results.load(db, profiles=True, sweep="tiny_he")["depth"].tolist() == [1, 2, 3, 4, 5]


def test_confidence_filters_and_bad_arguments(db):
    df = results.load(db, confidence=0.9)
    for r in df.to_dict("records"):
        n = r["trials"] if r["kind"] == "born_dead" else r["decided"]
        k = r["born_dead"] if r["kind"] == "born_dead" else r["collapsed"]
        assert (r["p"], r["ci_low"], r["ci_high"]) == pytest.approx(closed_wilson(k, n, 0.9), abs=1e-12)
        assert r["confidence"] == 0.9
    prof = results.load(db, profiles=True, kind="born_dead", confidence=0.9)
    r = prof.to_dict("records")[2]
    assert (r["ci_low"], r["ci_high"]) == pytest.approx(closed_wilson(r["born_dead"], 200, 0.9)[1:], abs=1e-12)
    assert results.load(db, kind="trained")["lr"].tolist() == [1e-3, 3e-2]
    assert results.load(db, sweep="tiny_trained")["kind"].tolist() == ["trained"] * 2
    assert results.load(db, sweep="tiny_he", kind="trained").empty
    assert results.load(db, sweep="tiny_he")["init"].tolist() == ["he_normal"]
    with Store(db, readonly=True) as st:
        prefix = next(s["sweep_hash"][:10] for s in st.sweeps() if s["name"] == "tiny_born_dead")
    assert results.load(db, sweep=prefix)["init"].tolist() == ["he_normal", "lecun_normal"]
    for kwargs, words in (({"sweep": "nosuch"}, "no sweep named"), ({"sweep": ""}, "sweep must be"),
                          ({"kind": "dead"}, "kind must be"), ({"confidence": 1.0}, "confidence must be"),
                          ({"confidence": 95}, "confidence must be")):
        with pytest.raises(ConfigError, match=words):
            results.load(db, **kwargs)


def test_cli_results_sweep_filter_gives_the_same_cells(db, capsys):
    assert main(["results", "--db", str(db), "--sweep", "tiny_trained", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["cell_hash"] for r in rows] == results.load(db, sweep="tiny_trained")["cell_hash"].tolist()


def test_read_only_no_migration_and_errors(db, tmp_path):
    before = sha(db)
    results.load(db)
    results.load(db, profiles=True)
    assert sha(db) == before
    # a schema-1 store is read as it is: not migrated, not changed; unknown outcomes stay missing
    old = tmp_path / "old.sqlite"
    shutil.copy(V1_FIXTURE, old)
    before = sha(old)
    df = results.load(old)
    assert sha(old) == before
    con = sqlite3.connect(old)
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 1
    finally:
        con.close()
    assert df["trials"].tolist() == [16, 16] and df["kind"].tolist() == ["trained"] * 2
    assert df["dead_after_training"].isna().all() and df["p_dead_after_training"].isna().all()
    wild = df[df["lr"] == 1000.0].iloc[0]
    assert (wild["diverged"], wild["p_diverged"]) == (16, 1.0)
    # a missing file: one line, and nothing is created
    missing = tmp_path / "nope.sqlite"
    with pytest.raises(StoreError, match="no collapse_mc results store") as e:
        results.load(missing)
    assert isinstance(e.value, ConfigError) and "\n" not in str(e.value) and not missing.exists()
    with pytest.raises(StoreError, match="no collapse_mc results store"):
        results.load_records(missing)
    text = tmp_path / "notes.sqlite"
    text.write_text("not a store\n" * 20)
    with pytest.raises(StoreError, match="not a collapse_mc results store"):
        results.load(text)
    # an empty store: no rows, the id columns
    Store(tmp_path / "empty.sqlite", create=True).close()
    empty = results.load(tmp_path / "empty.sqlite")
    assert empty.empty and list(empty.columns) == ["cell_hash", "kind", "sweep"]
