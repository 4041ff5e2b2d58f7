"""Sweep specs: the issue's minimal form, grid expansion, depth/layers, shipped specs, and refusal of bad input
(one line, exit status 2, before any computation, store untouched)."""
import os
import subprocess
import sys
import textwrap

import pytest

from collapse_mc.cli import main
from collapse_mc.sweep import load_spec, packaged_specs, parse_spec_text

MINIMAL = """\
[sweep]
kind = "born_dead"      # or "trained", with the training settings in [train]
trials = 4000
seed = 5
[grid]                  # every combination is a cell
width = [2, 3, 4, 5]
depth = [3, 9, 20]
init = ["he_normal", "rai"]
"""


def test_minimal_form_as_written():
    spec = parse_spec_text(MINIMAL, origin="minimal.toml")
    assert (spec.kind, spec.trials, spec.seed, spec.block_size) == ("born_dead", 4000, 5, 1000)
    assert len(spec.cells) == 4 * 3 * 2
    combos = [(c.settings["width"], c.settings["depth"], c.settings["init"]) for c in spec.cells]
    assert combos == [(w, d, i) for w in (2, 3, 4, 5) for d in (3, 9, 20) for i in ("he_normal", "rai")]
    c = spec.cells[0]
    assert c.settings["layers"] == 4 and c.settings["seed"] == 5 and c.cell.network.depth == 3
    assert c.cell.init.weights == "he_normal" and c.settings["method"] == "gaussian"
    assert spec.cells[1].settings["method"] == "dense"  # RAI has biases: the dense kernel on a grid
    assert len({c.cell_hash for c in spec.cells}) == 24
    # cells that share compiled shapes are grouped; every cell is in exactly one group
    assert sorted(c.cell_hash for g in spec.groups() for c in g) == sorted(c.cell_hash for c in spec.cells)


def test_layers_equal_depth_plus_one_and_seed_in_identity():
    a = parse_spec_text('[sweep]\nkind="born_dead"\ntrials=10\n[grid]\nwidth=[2]\nlayers=[10]\n')
    b = parse_spec_text('[sweep]\nkind="born_dead"\ntrials=99\nblock_size=7\n[grid]\nwidth=[2]\n[network]\ndepth=9')
    c = parse_spec_text('[sweep]\nkind="born_dead"\ntrials=10\nseed=1\n[grid]\nwidth=[2]\ndepth=[9]\n')
    assert a.cells[0].settings["depth"] == 9 and a.cells[0].settings["layers"] == 10
    assert a.cells[0].cell_hash == b.cells[0].cell_hash  # same cell, whatever trials / block size
    assert a.sweep_hash == b.sweep_hash
    assert c.cells[0].cell_hash != a.cells[0].cell_hash  # another seed is another random stream
    assert b.block_size == 7


def test_fixed_tables_and_value_settings():
    spec = parse_spec_text(textwrap.dedent("""
        [sweep]
        kind = "born_dead"
        trials = 50
        method = "dense"
        [grid]
        bias_value = [0.1, 0.5]
        [network]
        width = 3
        depth = 4
        d_in = 2
        [init]
        init = "he_uniform"
        bias = "normal"
        [probe]
        half_width = 2
        sample_points = 64
    """))
    assert len(spec.cells) == 2
    s = spec.cells[1].settings
    assert (s["d_in"], s["init"], s["bias"], s["bias_value"], s["half_width"], s["method"]) == \
        (2, "he_uniform", "normal", 0.5, 2.0, "dense")
    assert isinstance(s["half_width"], float)


def test_shipped_specs_parse():
    names = sorted(packaged_specs())
    for need in ("paper2_born_dead.toml", "safe_region_default.toml"):
        assert need in names
    sr = load_spec("safe_region_default")
    assert {c.settings["width"] for c in sr.cells} == set(range(1, 13))
    # one depth-64 cell per width: its per-trial first dead layers give every depth 1..64 (depth profile)
    assert {c.settings["depth"] for c in sr.cells} == {64}
    assert sr.kind == "born_dead" and len(sr.cells) == 12
    p2 = load_spec("paper2_born_dead.toml")
    assert {c.settings["layers"] for c in p2.cells} == {10}
    try:
        import collapse_mc.training  # noqa: F401
        have_training = True
    except ImportError:
        have_training = False
    trained = [n for n in names if "born_dead" not in n and n != "safe_region_default.toml"]
    assert trained, "the training experiments of SCIENCE.md section 5 ship as specs"
    for n in trained:
        if have_training:
            spec = load_spec(n)
            assert spec.kind == "trained" and spec.cells


# ---------------------------------------------------------------------------------------- bad input

GOOD = '[sweep]\nkind = "born_dead"\ntrials = 20\nseed = 1\n[grid]\nwidth = [2]\ndepth = [3]\n'
BAD_SPECS = {
    "malformed toml": "[sweep\nkind = born_dead\n",
    "missing [sweep]": "[grid]\nwidth = [2]\ndepth = [3]\n",
    "unknown kind": GOOD.replace('"born_dead"', '"born_alive"'),
    "unknown table": GOOD + "[gird]\nwidth = [3]\n",
    "unknown [sweep] key": GOOD.replace("seed = 1", "sead = 1"),
    "unknown grid key": GOOD.replace("width = [2]", "widht = [2]"),
    "string for an int": GOOD.replace("width = [2]", 'width = ["2"]'),
    "bool for an int": GOOD.replace("trials = 20", "trials = true"),
    "float for an int": GOOD.replace("depth = [3]", "depth = [3.5]"),
    "empty grid": GOOD.replace("width = [2]", "width = []"),
    "scalar grid": GOOD.replace("width = [2]", "width = 2"),
    "repeated grid values": GOOD.replace("width = [2]", "width = [2, 2]"),
    "depth < 1": GOOD.replace("depth = [3]", "depth = [3, 0]"),
    "layers < 2": GOOD.replace("depth = [3]", "layers = [1]"),
    "depth and layers": GOOD.replace("depth = [3]", "depth = [3]\nlayers = [4]"),
    "width missing": GOOD.replace("width = [2]\n", ""),
    "zero trials": GOOD.replace("trials = 20", "trials = 0"),
    "negative seed": GOOD.replace("seed = 1", "seed = -1"),
    "seed too large": GOOD.replace("seed = 1", "seed = 4294967296"),
    "zero block size": GOOD.replace("seed = 1", "seed = 1\nblock_size = 0"),
    "unknown initializer": GOOD + 'init = ["he_nromal"]\n',
    "invalid value": GOOD + "[network]\nactivation = \"sigmoidish\"\n",
    "setting in wrong table": GOOD + "[network]\nbias = \"normal\"\n",
    "grid and fixed": GOOD + "[network]\nwidth = 3\n",
    "gaussian method where it does not apply": GOOD + 'init = ["rai"]\nmethod = ["gaussian"]\n',
    "[train] in a born_dead sweep": GOOD + "[train]\nlr = 0.1\n",
    "negative bias sigma": GOOD + '[init]\nbias = "normal"\nbias_value = -1.0\n',
    "infinite float": GOOD + "[probe]\nhalf_width = inf\n",
    "trained: momentum out of range": GOOD.replace('"born_dead"', '"trained"') + "[train]\nmomentum = 1.5\n",
    "trained: string learning rate": GOOD.replace('"born_dead"', '"trained"') + '[train]\nlr = "fast"\n',
    "trained: target does not fit the network": GOOD.replace('"born_dead"', '"trained"') + '[train]\ntarget = "f4"\n',
    "trained: [probe] table": GOOD.replace('"born_dead"', '"trained"') + "[probe]\ngrid_points = 9\n",
}


def _snapshot(path):
    return path.read_bytes(), os.stat(path).st_mtime_ns


@pytest.fixture(scope="module")
def existing_store(tmp_path_factory):
    """A real store with one recorded block (a tiny born-dead run)."""
    from collapse_mc.sweep import run_sweep
    d = tmp_path_factory.mktemp("store")
    spec = parse_spec_text(GOOD, origin="good.toml")
    db = d / "results.sqlite"
    run_sweep(spec, db)
    return db


def _run_cli(argv, capsys, monkeypatch):
    monkeypatch.setenv("JAX_NUM_CPU_DEVICES", os.environ.get("JAX_NUM_CPU_DEVICES", "1"))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("what", sorted(BAD_SPECS))
def test_bad_specs_refused(what, tmp_path, existing_store, capsys, monkeypatch):
    spec = tmp_path / "bad.toml"
    spec.write_text(BAD_SPECS[what])
    before = _snapshot(existing_store)
    code, out, err = _run_cli(["sweep", "run", str(spec), "--db", str(existing_store), "--no-progress"],
                              capsys, monkeypatch)
    assert code == 2, (what, out, err)
    assert err.count("\n") == 1 and err.startswith("collapse-mc: error:"), (what, err)
    assert "Traceback" not in err and out == ""
    assert _snapshot(existing_store) == before
    fresh = tmp_path / "fresh.sqlite"
    code, _, _ = _run_cli(["sweep", "run", str(spec), "--db", str(fresh)], capsys, monkeypatch)
    assert code == 2 and not fresh.exists()  # nothing created either


def _bad_dbs(tmp_path, existing_store):
    text = tmp_path / "notes.sqlite"
    text.write_text("id,value\n1,2\n")
    import sqlite3
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE results (x)")
    con.commit()
    con.close()
    newer = tmp_path / "newer.sqlite"
    newer.write_bytes(existing_store.read_bytes())
    con = sqlite3.connect(newer)
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()
    return {"not sqlite": text, "foreign sqlite": other, "newer schema": newer, "directory": tmp_path}


def test_bad_stores_refused_untouched(tmp_path, existing_store, capsys, monkeypatch):
    spec = tmp_path / "good.toml"
    spec.write_text(GOOD)
    for what, db in _bad_dbs(tmp_path, existing_store).items():
        before = _snapshot(db) if db.is_file() else None
        for argv in (["sweep", "run", str(spec), "--db", str(db)], ["sweep", "status", "--db", str(db)],
                     ["results", "--db", str(db), "--json"], ["export", "--db", str(db), "--format", "csv"]):
            code, out, err = _run_cli(argv, capsys, monkeypatch)
            assert code == 2 and err.count("\n") == 1 and err.startswith("collapse-mc: error:"), (what, argv, err)
            assert out == ""
        if before is not None:
            assert _snapshot(db) == before, what
    missing = tmp_path / "missing.sqlite"
    for argv in (["results", "--db", str(missing)], ["sweep", "status", "--db", str(missing)]):
        code, _, err = _run_cli(argv, capsys, monkeypatch)
        assert code == 2 and "no collapse_mc results store" in err and not missing.exists()
    code, _, err = _run_cli(["sweep", "run", str(tmp_path / "nope.toml"), "--db", str(missing)], capsys,
                            monkeypatch)
    assert code == 2 and "no such spec file" in err and not missing.exists()
    code, _, err = _run_cli(["sweep", "run", str(spec), "--db", str(missing), "--trials", "0"], capsys, monkeypatch)
    assert code == 2 and not missing.exists()


def test_real_process_one_line_exit_2(tmp_path, existing_store):
    """Through the installed entry point: no traceback, one line, status 2, store bytes unchanged."""
    spec = tmp_path / "bad.toml"
    spec.write_text(BAD_SPECS["depth < 1"])
    before = _snapshot(existing_store)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    p = subprocess.run([sys.executable, "-m", "collapse_mc", "sweep", "run", str(spec), "--db",
                        str(existing_store)], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "depth" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert _snapshot(existing_store) == before
