"""Faults: a damaged page, a full disk (a small file-size limit), a read-only store file or folder, a missing
folder, a foreign WAL-mode file, a crafted store. Each is one line and exit status 2 (or, for reading a
read-only store, works), and committed data stays intact. Where the tests run as root (which ignores file
permissions) the read-only cases also make ``os.access`` report what a read-only mount would, so the code path
that opens a store without writing is exercised either way."""
import errno
import json
import os
import sqlite3
import subprocess
import sys

import pytest

from collapse_mc.cli import main
from collapse_mc.store import Store, StoreError
from stores import GOOD_SPEC, make_store, sha256

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, out, err, fragment):
    assert code == 2 and out == "", (code, out, err)
    assert err.startswith("collapse-mc: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert fragment in err, err


def content(db):
    """Everything a store holds that results are made of (cells, blocks, arrays), as plain data."""
    with Store(db, readonly=True) as st:
        cells = st.cell_estimates()
        arrays = {c["cell_hash"]: {k: v.tolist() for k, v in st.outcomes(c["cell_hash"]).items()} for c in cells}
    return cells, arrays


@pytest.fixture
def store(tmp_path):
    db = tmp_path / "s.sqlite"
    make_store(db)
    (tmp_path / "good.toml").write_text(GOOD_SPEC)
    return db


def _read_commands(db, out):
    return [["results", "--db", db, "--json"], ["export", "--db", db, "--format", "json", "--level", "trials"],
            ["sweep", "status", "--db", db, "--json"], ["figures", "--db", db, "--out", out, "--json"]]


# ----------------------------------------------------------------------------------------------- damaged page

def test_damaged_page_is_refused_before_anything_is_written(store, tmp_path, capsys):
    con = sqlite3.connect(store)
    root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'blocks'").fetchone()[0]
    page = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    with open(store, "r+b") as f:            # overwrite the root page of the blocks table
        f.seek((root - 1) * page)
        f.write(b"\xab" * page)
    before = sha256(store)
    for argv in [["sweep", "run", tmp_path / "good.toml", "--db", store], *_read_commands(store, tmp_path / "f")]:
        one_line_error(*run(capsys, *argv), "is damaged")
        assert sha256(store) == before
    assert not (tmp_path / "f").exists()
    with pytest.raises(StoreError, match="damaged"):
        Store(store, create=True)


# ----------------------------------------------------------------------------------------------- foreign WAL file

def test_refusing_a_foreign_wal_file_creates_no_side_files(tmp_path, capsys):
    db = tmp_path / "foreign.sqlite"
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t (x)")
    con.execute("INSERT INTO t VALUES (1)")
    con.commit()
    con.close()
    assert sorted(os.listdir(tmp_path)) == ["foreign.sqlite"]
    before = sha256(db)
    (tmp_path / "good.toml").write_text(GOOD_SPEC)
    for argv in (["sweep", "run", tmp_path / "good.toml", "--db", db], ["results", "--db", db],
                 ["export", "--db", db], ["figures", "--db", db, "--out", tmp_path / "f"]):
        one_line_error(*run(capsys, *argv), "not a collapse_mc results store")
    assert sorted(os.listdir(tmp_path)) == ["foreign.sqlite", "good.toml"] and sha256(db) == before


# ----------------------------------------------------------------------------------------------- rollback

def test_a_failed_write_reports_its_own_error_not_the_rollback(store):
    """SQLite rolls back by itself after some errors (a full disk); the store must not then issue a ROLLBACK that
    fails with 'cannot rollback - no transaction is active' and hides the real error."""
    before = content(store)
    with Store(store) as st:
        def fails_after_sqlite_rolled_back(con):
            con.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')")
            con.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        with pytest.raises(StoreError, match="disk full") as e:
            st._write(fails_after_sqlite_rolled_back)
        assert "rollback" not in str(e.value)
        assert "x" not in st.meta()
    assert content(store) == before


# ----------------------------------------------------------------------------------------------- disk full

# the child sets its own file-size limit before anything else (as a preexec_fn would, without forking a
# multithreaded JAX process); Python ignores SIGXFSZ, so writes past the limit fail with EFBIG
CHILD = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]),) * 2); "
         "from collapse_mc.cli import main; sys.exit(main(sys.argv[2:]))")


def test_disk_full_is_one_line_and_resume_is_identical(tmp_path, capsys):
    """A file-size limit (what a full disk looks like to SQLite) stops a run with one line naming it; committed
    blocks survive and a resumed run ends identical to an uninterrupted one."""
    spec = tmp_path / "s.toml"
    spec.write_text(GOOD_SPEC.replace("trials = 64", "trials = 4096").replace("block_size = 32", "block_size = 64")
                    .replace("depth = [4]", "depth = [40]").replace("width = [2, 3]", "width = [3]"))
    db, ref = tmp_path / "a.sqlite", tmp_path / "ref.sqlite"
    assert run(capsys, "sweep", "run", spec, "--db", db, "--trials", "128", "--no-progress")[0] == 0
    committed = content(db)
    limit = os.path.getsize(db) + 16 * 1024
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}   # the cache is a file too
    p = subprocess.run([sys.executable, "-c", CHILD, str(limit), "sweep", "run", str(spec), "--db", str(db),
                        "--no-progress"], capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env=dict(env, PYTHONPATH=ROOT))
    assert p.returncode == 2 and p.stdout == "", (p.returncode, p.stdout, p.stderr[-3000:])
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert "disk full" in p.stderr or "disk I/O error" in p.stderr, p.stderr
    assert "cannot rollback" not in p.stderr
    partial = content(db)
    for c0, c1 in zip(committed[0], partial[0]):
        assert c1["trials"] >= c0["trials"]                                 # nothing committed was lost
        h = c0["cell_hash"]
        n = len(committed[1][h]["trial"])
        assert {k: v[:n] for k, v in partial[1][h].items()} == committed[1][h]
    assert sum(c["trials"] for c in partial[0]) < 4096                       # the limit did stop it
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert run(capsys, "sweep", "run", spec, "--db", db, "--no-progress")[0] == 0
    assert run(capsys, "sweep", "run", spec, "--db", ref, "--no-progress")[0] == 0
    resumed, reference = content(db), content(ref)
    strip = [{k: v for k, v in c.items() if k != "blocks"} for c in resumed[0]]
    assert strip == [{k: v for k, v in c.items() if k != "blocks"} for c in reference[0]]
    assert resumed[1] == reference[1]


# ----------------------------------------------------------------------------------------------- read-only

@pytest.fixture
def read_only(monkeypatch):
    """Make paths read-only: chmod, and (as root, where chmod does not bind) ``os.access`` reports it too."""
    paths, modes = [], []
    real_access = os.access

    def make(path, mode):
        paths.append(os.path.realpath(path))
        modes.append(os.stat(path).st_mode)
        os.chmod(path, mode)

    def access(path, how, *a, **k):
        if how & os.W_OK and os.path.realpath(path) in paths:
            return False
        return real_access(path, how, *a, **k)

    if IS_ROOT:
        monkeypatch.setattr(os, "access", access)
    yield make
    for p, m in zip(paths, modes):
        os.chmod(p, m)


def test_read_only_store_file_refuses_writes_and_still_reads(store, tmp_path, read_only, capsys):
    before, expect = sha256(store), content(store)
    read_only(store, 0o444)
    one_line_error(*run(capsys, "sweep", "run", tmp_path / "good.toml", "--db", store), "read-only")
    for argv in _read_commands(store, tmp_path / "figs"):
        code, out, err = run(capsys, *argv)
        assert code == 0 and err == "", err
    assert content(store) == expect and sha256(store) == before


def test_read_only_folder_still_reads_without_writing(store, tmp_path, read_only, capsys):
    expect = content(store)
    for side in ("-wal", "-shm"):
        if os.path.exists(str(store) + side):
            os.remove(str(store) + side)
    before = sorted(os.listdir(tmp_path))
    out_dir = tmp_path.parent / (tmp_path.name + "_figs")
    read_only(tmp_path, 0o555)
    one_line_error(*run(capsys, "sweep", "run", tmp_path / "good.toml", "--db", store), "not writable")
    one_line_error(*run(capsys, "sweep", "run", tmp_path / "good.toml", "--db", tmp_path / "new.sqlite"),
                   "not writable")
    rows = {}
    for argv in _read_commands(store, out_dir):
        code, out, err = run(capsys, *argv)
        assert code == 0 and err == "", err
        rows[argv[0]] = json.loads(out)
    assert [r["trials"] for r in rows["results"]] == [c["trials"] for c in expect[0]] == [64, 64]
    assert len(rows["export"]) == 128 and rows["figures"]["files"]
    assert all(f.startswith(str(out_dir)) for f in rows["figures"]["files"])
    assert sorted(os.listdir(tmp_path)) == before            # not even a -wal or -shm file
    assert content(store) == expect


def test_output_folder_that_cannot_be_written(store, tmp_path, read_only, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    read_only(out, 0o555)
    one_line_error(*run(capsys, "figures", "--db", store, "--out", out), "not writable")
    one_line_error(*run(capsys, "export", "--db", store, "--out", out / "x.csv"), "cannot write")
    one_line_error(*run(capsys, "figures", "--db", store, "--out", tmp_path / "good.toml" / "sub"),
                   "cannot create the folder")
    assert os.listdir(out) == []


def test_os_errors_met_while_writing_are_one_line(store, tmp_path, monkeypatch, capsys):
    """A read-only or full file system met while drawing (after the checks) is one line, not a traceback."""
    import matplotlib.figure

    def savefig(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "f" / "x.png"))
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    one_line_error(*run(capsys, "figures", "--db", store, "--out", tmp_path / "f"), "read-only file system")


def test_missing_folder_is_refused_and_not_created(tmp_path, capsys):
    (tmp_path / "good.toml").write_text(GOOD_SPEC)
    one_line_error(*run(capsys, "sweep", "run", tmp_path / "good.toml", "--db", tmp_path / "no" / "s.sqlite"),
                   "does not exist")
    assert sorted(os.listdir(tmp_path)) == ["good.toml"]


# ----------------------------------------------------------------------------------------------- crafted store

def _snapshot(root):
    return {os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs}


def test_crafted_store_cannot_make_a_command_write_outside_its_paths(tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    db = work / "crafted.sqlite"
    make_store(db)
    fit = {"x": [0.0, 1.0], "target": [0.0, 1.0], "fits": [["net", [0.0, 1.0]]], "title": "t"}
    with Store(db) as st:
        for name in ("a/../../../escaped", "../../escaped2", "/tmp/escaped3", "..", "b\\..\\c", "nul\x00x",
                     "x" * 5000):
            st.put_artifact("example_fit", name, fit)
    monkeypatch.chdir(work)
    out = work / "out"
    before = _snapshot(tmp_path)
    code, text, err = run(capsys, "figures", "--db", db, "--out", out, "--json")
    assert code == 0, err
    files = json.loads(text)["files"]
    assert len([f for f in files if "example_fits" in f]) == 2 * 7
    for f in files:
        assert os.path.dirname(os.path.realpath(f)) == os.path.realpath(out), f
    for argv in (["results", "--db", db], ["export", "--db", db, "--level", "trials"], ["sweep", "status", "--db", db],
                 ["export", "--db", db, "--out", work / "e.csv"]):
        assert run(capsys, *argv)[0] == 0
    new = _snapshot(tmp_path) - before
    allowed = {str(db) + "-wal", str(db) + "-shm", str(work / "e.csv")}
    assert all(f.startswith(str(out) + os.sep) or f in allowed for f in new), sorted(new - allowed)
    for where in (tmp_path.parent / "escaped.png", tmp_path / "escaped2.png", "/tmp/escaped3.png"):
        assert not os.path.exists(where)


def test_a_symbolic_link_in_the_output_folder_is_not_followed(tmp_path, capsys):
    db = tmp_path / "s.sqlite"
    make_store(db)
    with Store(db) as st:
        st.put_artifact("example_fit", "n", {"x": [0.0, 1.0], "target": [0.0, 1.0], "fits": [["a", [0.0, 1.0]]]})
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"keep")
    os.symlink(victim, out / "example_fits_n.png")
    one_line_error(*run(capsys, "figures", "--db", db, "--out", out), "would leave the output folder")
    assert victim.read_bytes() == b"keep"
