"""Sharded sweeps and store merge: shards run as separate processes and merged equal one uninterrupted run
(results and per-trial export), merging is idempotent, conflicting parts are refused with OUT untouched, a
SIGKILLed shard resumes, results do not depend on the shard count, the shard assignment is a deterministic
partition that keeps compiled-shape groups whole, and every bad input is one line with exit status 2."""
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from collapse_mc.cli import main
from collapse_mc.store import Store
from collapse_mc.store.merge import MergeError, merge_stores
from collapse_mc.store.netfs import network_filesystem, warn_shared_network_store
from collapse_mc.sweep import parse_spec_text, run_sweep
from collapse_mc.sweep.shards import Shard, ShardError, assign, parse_shard, units
from stores import tiny_trained_spec

BORN_DEAD = """
[sweep]
kind = "born_dead"
trials = 40
seed = 3
block_size = 8
[grid]
width = [2, 3]
init = ["he_normal", "rai"]
[network]
depth = 3
[probe]
grid_points = 33
"""
TRAINED = tiny_trained_spec(trials=12, seed=4, depth=2)
SPECS = {"born_dead": BORN_DEAD, "trained": TRAINED}
GAUSSIAN = BORN_DEAD.replace('init = ["he_normal", "rai"]', 'init = ["he_normal"]')  # quick to compile in-process


def cli(args, env, timeout=300, check=True):
    r = subprocess.run([sys.executable, "-m", "collapse_mc", *map(str, args)], env=env, capture_output=True,
                       text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, r.stderr[-2000:]
    return r


@pytest.fixture(scope="module")
def env():
    """CLI subprocesses: CPU, one device each (outcomes do not depend on it), this checkout importable, the
    session's persistent compilation cache (conftest) shared."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="1",
                PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    d = tmp_path_factory.mktemp("specs")
    out = {}
    for kind, text in SPECS.items():
        (d / f"{kind}.toml").write_text(text)
        out[kind] = d / f"{kind}.toml"
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, specs, env):
    """Each spec run uninterrupted by one `sweep run` process, then as shards 0/3, 1/3, 2/3: separate `sweep
    run --shard` processes (at once, loading what the first compiled from the cache), each into its own store.
    The same device count everywhere: trained outcomes on CPU are equal bit for bit only then."""
    out = {}
    for k in SPECS:
        d = tmp_path_factory.mktemp(k)
        cli(["sweep", "run", specs[k], "--db", d / "single.sqlite", "--no-progress"], env)
        out[k] = (d / "single.sqlite", run_shards(specs[k], 3, d, env))
    return out


@pytest.fixture(scope="module")
def single(runs):
    return {k: v[0] for k, v in runs.items()}


@pytest.fixture(scope="module")
def shard_parts(runs):
    return {k: v[1] for k, v in runs.items()}


def run_main(capsys, args):
    """``collapse-mc ARGS`` in this process (commands that only read or merge stores): (status, stdout)."""
    capsys.readouterr()
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().out


def view(db, capsys):
    """`results --json` and the trial-level `export` (neither holds timings, hosts or pids)."""
    res = json.loads(run_main(capsys, ["results", "--db", db, "--json"])[1])
    exp = json.loads(run_main(capsys, ["export", "--db", db, "--level", "trials", "--format", "json"])[1])
    return res, exp


def dump(db):
    con = sqlite3.connect(db)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def run_shards(spec, n, tmp, env, which=None):
    """Shards ``which`` (default all) of ``n``, each a `sweep run --shard I/N` process into its own store."""
    parts = [tmp / f"part-{i}.sqlite" for i in range(n)]
    procs = [subprocess.Popen([sys.executable, "-m", "collapse_mc", "sweep", "run", spec, "--db", parts[i],
                               "--shard", f"{i}/{n}", "--no-progress"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for i in (range(n) if which is None else which)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()[-2000:]
    return parts


@pytest.mark.parametrize("kind", list(SPECS))
def test_shards_merged_equal_single_run(kind, specs, single, shard_parts, tmp_path, capsys):
    parts = shard_parts[kind]
    rc, text = run_main(capsys, ["sweep", "status", "--db", parts[0], "--spec", specs[kind], "--json"])
    status = json.loads(text)
    assert status["shards"] == 3 and status["incomplete"] == ["1/3", "2/3"]  # part 0 holds shard 0 only
    out = tmp_path / "out.sqlite"
    rc, text = run_main(capsys, ["store", "merge", out, *parts, "--json"])
    n_units = len(units(parse_spec_text(SPECS[kind])))
    assert rc == 0 and sum(p["blocks_copied"] for p in json.loads(text)["parts"]) == n_units
    assert view(out, capsys) == view(single[kind], capsys)
    status = json.loads(run_main(capsys, ["sweep", "status", "--db", out, "--spec", specs[kind], "--json"])[1])
    assert status["incomplete"] == []

    before = dump(out)  # merging again changes nothing
    rc, text = run_main(capsys, ["store", "merge", out, *parts, "--json"])
    assert rc == 0 and all(p["blocks_copied"] == 0 for p in json.loads(text)["parts"])
    assert dump(out) == before

    bad = tmp_path / "bad.sqlite"  # a part whose cell has another configuration under the same hash
    shutil.copy(parts[1], bad)
    con = sqlite3.connect(bad)
    con.execute("UPDATE cells SET config = replace(config, '\"width\":2', '\"width\":7')")
    con.commit()
    assert con.total_changes > 0
    con.close()
    digest = sha(out)
    capsys.readouterr()
    assert main(["store", "merge", str(out), str(parts[2]), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different configuration" in err, err
    assert sha(out) == digest and dump(out) == before


def test_sigkilled_shard_resumes(specs, single, shard_parts, env, tmp_path, capsys):
    spec, n = specs["born_dead"], 3
    part = tmp_path / "part-0.sqlite"
    cmd = [sys.executable, "-m", "collapse_mc", "sweep", "run", spec, "--db", part, "--shard", f"0/{n}",
           "--no-progress", "--chunk-size", "1"]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        try:
            with sqlite3.connect(part) as con:
                if con.execute("SELECT COUNT(*) FROM blocks").fetchone()[0] >= 1:
                    break
        except sqlite3.Error:
            pass
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    assert p.wait(timeout=30) == -signal.SIGKILL
    status = json.loads(run_main(capsys, ["sweep", "status", "--db", part, "--spec", spec, "--json"])[1])
    assert "0/3" in status["incomplete"]  # killed mid-run: its shard misses blocks
    cli(cmd[3:], env)  # run again: only the missing blocks
    out = tmp_path / "out.sqlite"
    assert run_main(capsys, ["store", "merge", out, part, *shard_parts["born_dead"][1:]])[0] == 0
    assert view(out, capsys) == view(single["born_dead"], capsys)


def test_results_independent_of_shard_count(tmp_path):
    spec = parse_spec_text(GAUSSIAN)
    views = []
    for n in (1, 2, 5):
        parts = [tmp_path / f"n{n}-{i}.sqlite" for i in range(n)]
        for i in range(n):
            run_sweep(spec, parts[i], shard=Shard(i, n))
        merge_stores(tmp_path / f"n{n}.sqlite", parts)
        with Store(tmp_path / f"n{n}.sqlite", readonly=True) as st:
            views.append([(e, {k: v.tolist() for k, v in st.outcomes(e["cell_hash"]).items()})
                          for e in st.cell_estimates()])
    assert views[0] == views[1] == views[2]


def test_assignment_partitions_units_and_keeps_groups():
    for text in SPECS.values():
        spec = parse_spec_text(text)
        everything = units(spec)
        for n in range(1, 7):
            shards = assign(spec, n)
            assert len(shards) == n and [u for s in shards for u in s] == everything  # a partition, in order
            assert assign(spec, n) == shards  # deterministic
            split = {g for g in {u.cell.group for u in everything}
                     if sum(any(u.cell.group == g for u in s) for s in shards) > 1}
            assert len(split) <= n - 1
            if n <= len(spec.groups()):
                assert all(shards)
    spec = parse_spec_text(TRAINED.replace("lr = [1e-3, 3e-2]", 'init = ["he_normal", "rai", "lecun_normal", '
                                                                 '"he_uniform"]'))
    assert len(spec.groups()) == 4  # 4 groups of equal cost: 2 or 4 shards never split one
    for n in (2, 4):
        groups = [{u.cell.group for u in s} for s in assign(spec, n)]
        assert all(g for g in groups) and sum(len(g) for g in groups) == len(spec.groups())


def test_parse_shard():
    assert parse_shard("1/3") == Shard(1, 3)
    env = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1",
           "SLURM_ARRAY_TASK_STEP": "2"}
    assert parse_shard("auto", env) == Shard(2, 3)
    assert parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4"}) == Shard(0, 4)
    for bad in ("3/3", "-1/2", "1/0", "a/b", "1", "1/2/3"):
        with pytest.raises(ShardError):
            parse_shard(bad)
    with pytest.raises(ShardError):
        parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "3"})
    with pytest.raises(ShardError, match="not a SLURM array task"):
        parse_shard("auto", {})


def test_merge_refuses_overlaps_and_other_outcomes(tmp_path):
    spec = parse_spec_text(GAUSSIAN)
    a, b, out = tmp_path / "a.sqlite", tmp_path / "b.sqlite", tmp_path / "out.sqlite"
    run_sweep(spec.with_trials(16), a)
    run_sweep(parse_spec_text(GAUSSIAN.replace("block_size = 8", "block_size = 5")).with_trials(16), b)
    merge_stores(out, [a])
    before = dump(out)
    with pytest.raises(MergeError, match="overlap"):
        merge_stores(out, [b])
    with pytest.raises(MergeError, match="overlap"):  # every part is checked before anything is written
        merge_stores(tmp_path / "fresh.sqlite", [a, b])
    assert not (tmp_path / "fresh.sqlite").exists()
    c = tmp_path / "c.sqlite"
    shutil.copy(a, c)
    with sqlite3.connect(c) as con:
        con.execute("UPDATE block_arrays SET data = zeroblob(length(data)) WHERE rowid = 1")
    with pytest.raises(MergeError, match="different outcomes"):
        merge_stores(out, [c])
    assert dump(out) == before


def test_merge_copies_new_columns_and_arrays(tmp_path):
    """Blocks are copied by the column names both files share, with every block_arrays row (names are free)."""
    spec = parse_spec_text(GAUSSIAN).with_trials(8)
    a, out = tmp_path / "a.sqlite", tmp_path / "out.sqlite"
    run_sweep(spec, a)
    Store(out, create=True).close()
    for db in (a, out):
        with sqlite3.connect(db) as con:
            con.execute("ALTER TABLE blocks ADD COLUMN extra_count INTEGER")
    with sqlite3.connect(a) as con:
        con.execute("UPDATE blocks SET extra_count = id + 100")
        con.execute("INSERT INTO block_arrays SELECT block_id, 'new_array', dtype, shape, data FROM block_arrays "
                    "WHERE name = 'first_dead_layer'")
    merge_stores(out, [a])
    with Store(a, readonly=True) as sa, Store(out, readonly=True) as so:
        for h in [c["cell_hash"] for c in sa.cells()]:
            ba, bo = sa.blocks(h), so.blocks(h)
            assert [x["extra_count"] for x in ba] == [x["extra_count"] for x in bo]
            for x, y in zip(ba, bo):
                xa, ya = sa.block_arrays(x["id"]), so.block_arrays(y["id"])
                assert sorted(xa) == sorted(ya) and "new_array" in ya
                assert all((xa[k] == ya[k]).all() for k in xa)


def test_network_filesystem_warning(tmp_path, capsys):
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nserver:/export {tmp_path}/nfs nfs4 rw 0 0\n")
    assert network_filesystem(tmp_path / "nfs" / "sub" / "x.sqlite", str(mounts)) == "nfs4"
    assert network_filesystem(tmp_path / "nfsx.sqlite", str(mounts)) is None
    assert warn_shared_network_store(tmp_path / "nfs" / "x.sqlite", "3 shards", str(mounts))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nfs4" in err and "store merge" in err
    assert not warn_shared_network_store(tmp_path / "local.sqlite", "3 shards", str(mounts))


def test_bad_inputs_one_line(tmp_path, capsys, specs, single):
    junk = tmp_path / "junk.txt"
    junk.write_text("not a store")
    out = tmp_path / "out.sqlite"
    cases = [
        ["sweep", "run", specs["born_dead"], "--db", out, "--shard", "3/3"],
        ["sweep", "run", specs["born_dead"], "--db", out, "--shard", "x"],
        ["sweep", "run", specs["born_dead"], "--db", out, "--shard", "auto"],
        ["store"],
        ["store", "merge", out],
        ["store", "merge", out, tmp_path / "missing.sqlite"],
        ["store", "merge", out, junk],
        ["store", "merge", junk, single["born_dead"]],
        ["store", "merge", single["born_dead"], single["born_dead"]],
        ["sweep", "status", "--db", single["born_dead"], "--shards", "2"],
        ["sweep", "status", "--db", single["born_dead"], "--spec", specs["born_dead"]],
        ["sweep", "status", "--db", single["born_dead"], "--spec", specs["born_dead"], "--shards", "0"],
        ["sweep", "status", "--db", single["born_dead"], "--spec", tmp_path / "nope.toml", "--shards", "2"],
        ["sweep", "submit", specs["born_dead"], "--db", out, "--workers", "0"],
        ["sweep", "submit", specs["born_dead"], "--db", out, "--executor", "pbs"],
        ["sweep", "submit", specs["born_dead"], "--db", out, "--executor", "slurm"],  # no SLURM here
        ["sweep", "submit", specs["born_dead"], "--db", junk],
        ["born-dead", "--trials", "4", "--coordinator", "127.0.0.1:1"],
        ["born-dead", "--trials", "4", "--distributed", "--coordinator", "nohost", "--num-processes", "2",
         "--process-id", "0"],
        ["estimate", "--trials", "4", "--distributed", "--coordinator", "127.0.0.1:99999", "--num-processes", "2",
         "--process-id", "0"],
        ["estimate", "--trials", "4", "--distributed", "--num-processes", "2", "--process-id", "2"],
        ["estimate", "--trials", "4", "--distributed", "--num-processes", "0"],
        ["born-dead", "--trials", "4", "--distributed", "--num-processes", "2", "--process-id", "x"],
    ]
    for args in cases:
        assert main([str(a) for a in args]) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("collapse-mc: error:") and "Traceback" not in err, (args, err)
    assert not out.exists()
