"""The resumable sweep runner, end to end: SIGKILL at random moments and resume, two processes at once, more
trials later, block-size changes, and results/export equal to the store's records."""
import csv
import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from collapse_mc.cli import main
from collapse_mc.deadness import born_dead_outcomes
from collapse_mc.estimates import wilson
from collapse_mc.progress import Progress
from collapse_mc.store import Store
from collapse_mc.sweep import parse_spec_text, run_sweep

TRIALS, BLOCK = 400, 8
SPEC = f"""
[sweep]
kind = "born_dead"
trials = {TRIALS}
seed = 11
block_size = {BLOCK}
[grid]
init = ["he_normal", "rai"]
[network]
width = 2
depth = 3
[probe]
grid_points = 33
"""
N_CELLS = 2
N_BLOCKS = N_CELLS * TRIALS // BLOCK


@pytest.fixture(scope="module")
def cli_env():
    """Environment for `collapse-mc` subprocesses: CPU, one device (light on a busy machine; outcomes do not
    depend on the device count), and the session's persistent compilation cache (conftest), so each process
    after the first loads its compiled kernels instead of compiling them again (and those other modules'
    one-device processes compiled: the Gaussian kernel's width-2 program, the shard tests' RAI cell)."""
    return dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="1")


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("spec") / "tiny.toml"
    p.write_text(SPEC)
    return p


@pytest.fixture(scope="module")
def reference(tmp_path_factory, spec_file):
    """An uninterrupted in-process run (one device) of the same spec."""
    db = tmp_path_factory.mktemp("ref") / "ref.sqlite"
    summary = run_sweep(parse_spec_text(SPEC, origin=str(spec_file)), db)
    assert summary["blocks_computed"] == N_BLOCKS and summary["trials_recorded"] == N_CELLS * TRIALS
    return db


def _records(db):
    """Per cell: (counts, block ranges, per-trial first dead layer) straight from the store."""
    with Store(db, readonly=True) as st:
        out = {}
        for e in st.cell_estimates():
            h = e["cell_hash"]
            out[h] = ((e["trials"], e["born_dead"], e["dead_fraction"]),
                      [(b["trial_start"], b["trial_stop"]) for b in st.blocks(h)],
                      st.outcomes(h)["first_dead_layer"].tolist())
    return out


def _n_blocks(db):
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            return con.execute("SELECT COUNT(*) FROM blocks").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _cmd(spec_file, db, *extra):
    return [sys.executable, "-m", "collapse_mc", "sweep", "run", str(spec_file), "--db", str(db), *extra]


def test_reference_equals_direct_computation(reference):
    """Stored per-trial outcomes (blocks of 8) equal one direct call over all trials (the same compiled chunk of
    8, so no recompilation; chunk and device invariance themselves are tested with the born-dead kernels)."""
    spec = parse_spec_text(SPEC)
    with Store(reference, readonly=True) as st:
        for c in spec.cells:
            direct = born_dead_outcomes(c.cell, 0, TRIALS, spec.seed, chunk_size=BLOCK)
            stored = st.outcomes(c.cell_hash)
            np.testing.assert_array_equal(stored["trial"], np.arange(TRIALS))
            np.testing.assert_array_equal(stored["first_dead_layer"], direct.first_dead_layer)
            np.testing.assert_allclose(st.layer_dead_fraction(c.cell_hash),
                                       direct.dead_neurons.mean(axis=0) / c.settings["width"])
    # born-dead rates are what they should be: He N=2 L_h=3 vs the exact single-input bound, RAI far lower
    with Store(reference, readonly=True) as st:
        est = {(e["width"], e["init"]): e for e in st.cell_estimates()}
    assert est[(2, "he_normal")]["p"] <= 1 - (1 - 0.25) ** 3 + 4 * np.sqrt(0.58 * 0.42 / TRIALS)
    assert est[(2, "rai")]["p"] < est[(2, "he_normal")]["p"]


def test_sigkill_at_random_moments_then_resume(tmp_path, spec_file, cli_env, reference, capsys, monkeypatch):
    db = tmp_path / "killed.sqlite"
    rnd = random.Random(20240611)
    mid_run_kills = 0  # kills of a process that was recording blocks and had not finished
    for round_ in range(8):
        before = _n_blocks(db)
        p = subprocess.Popen(_cmd(spec_file, db, "--no-progress"), env=cli_env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        if round_ == 0:
            time.sleep(rnd.uniform(0.3, 2.5))  # anywhere: start-up, registration, compilation or blocks
        else:  # once this process is recording blocks, at a random moment (mid-block or mid-commit)
            deadline = time.time() + 90
            while p.poll() is None and _n_blocks(db) <= before and time.time() < deadline:
                time.sleep(0.005)
            time.sleep(rnd.uniform(0.0, 0.05))
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            mid_run_kills += before < _n_blocks(db) < N_BLOCKS
        p.wait()
        p.stderr.close()
        if mid_run_kills == 3 or _n_blocks(db) == N_BLOCKS:
            break
    done = _n_blocks(db)
    assert mid_run_kills == 3 and 0 < done < N_BLOCKS, (mid_run_kills, done)

    monkeypatch.setenv("JAX_NUM_CPU_DEVICES", os.environ.get("JAX_NUM_CPU_DEVICES", "1"))
    assert main(["sweep", "status", "--db", str(db), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)["sweeps"][0]
    assert status["planned"] == N_CELLS * TRIALS and status["done"] == done * BLOCK < status["planned"]

    p = subprocess.run(_cmd(spec_file, db, "--json"), env=cli_env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["blocks_computed"] == N_BLOCKS - done  # only what was missing
    assert _records(db) == _records(reference)  # counts, block ranges and per-trial outcomes
    assert main(["sweep", "status", "--db", str(db), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)["sweeps"][0]
    assert status["done"] == status["planned"] and status["cells_complete"] == N_CELLS


def test_two_processes_at_once(tmp_path, spec_file, cli_env, reference):
    db = tmp_path / "shared.sqlite"
    procs = [subprocess.Popen(_cmd(spec_file, db, "--json", "--no-progress"), env=cli_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    summaries = [json.loads(out) for out, _ in outs]
    # each block recorded exactly once, by one of the two processes
    assert sum(s["blocks_recorded"] for s in summaries) == N_BLOCKS
    assert sum(s["trials_recorded"] for s in summaries) == N_CELLS * TRIALS
    con = sqlite3.connect(db)
    rows = con.execute("SELECT cell_hash, trial_start, trial_stop FROM blocks").fetchall()
    assert con.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0  # claims released
    con.close()
    assert len(rows) == len(set(rows)) == N_BLOCKS
    for h in {r[0] for r in rows}:
        assert sorted((a, b) for c, a, b in rows if c == h) == [(k, k + BLOCK) for k in range(0, TRIALS, BLOCK)]
    assert _records(db) == _records(reference)


def test_more_trials_adds_only_missing_and_block_size_change_is_honest(tmp_path, reference):
    db = tmp_path / "grow.sqlite"
    base = parse_spec_text(SPEC)
    s1 = run_sweep(base.with_trials(40), db)
    assert s1["trials_computed"] == N_CELLS * 40
    with Store(db, readonly=True) as st:
        first = {(b["cell_hash"], b["trial_start"]): (b["id"], b["finished_at"]) for b in st.blocks()}
    s2 = run_sweep(base.with_trials(100), db)  # same cells: only trials 40..99 are computed
    assert (s2["trials_computed"], s2["trials_recorded"]) == (N_CELLS * 60, N_CELLS * 60)
    with Store(db, readonly=True) as st:
        again = {(b["cell_hash"], b["trial_start"]): (b["id"], b["finished_at"]) for b in st.blocks()}
        assert {k: again[k] for k in first} == first  # old records untouched
        assert st.status()[0]["planned"] == N_CELLS * 100
    s3 = run_sweep(base.with_trials(100), db)
    assert s3["blocks_computed"] == 0
    # another block size: only the unrecorded trials 100..TRIALS-1 are added, in pieces aligned to the new grid
    changed = parse_spec_text(SPEC.replace(f"block_size = {BLOCK}", "block_size = 30"))
    assert changed.sweep_hash == base.sweep_hash
    s4 = run_sweep(changed, db, chunk_size=BLOCK)  # chunk size: memory only (and no recompilation here)
    assert s4["trials_recorded"] == N_CELLS * (TRIALS - 100)
    with Store(db, readonly=True) as st:
        ranges = [(b["trial_start"], b["trial_stop"]) for b in st.blocks(changed.cells[0].cell_hash)]
        new = [(100, 120)] + [(a, min(a + 30, TRIALS)) for a in range(120, TRIALS, 30)]
        assert ranges[-len(new):] == new and ranges[:-len(new)] == \
            [(a, min(a + BLOCK, 100)) for a in range(0, 100, BLOCK)]
        for c in changed.cells:
            cov = st.coverage(c.cell_hash)
            assert all(b1 == a2 for (_, b1), (a2, _) in zip(cov, cov[1:])) and cov[0][0] == 0
    # the same outcomes as the uninterrupted run with blocks of 8
    assert {h: (r[0][:2], r[2]) for h, r in _records(db).items()} == \
        {h: (r[0][:2], r[2]) for h, r in _records(reference).items()}


def test_results_and_export_equal_store_records(reference, capsys, monkeypatch):
    monkeypatch.setenv("JAX_NUM_CPU_DEVICES", os.environ.get("JAX_NUM_CPU_DEVICES", "1"))
    con = sqlite3.connect(reference)
    raw = {}
    for h, settings in con.execute("SELECT cell_hash, settings FROM cells"):
        n, k = con.execute("SELECT SUM(trials), SUM(born_dead) FROM blocks WHERE cell_hash = ?", (h,)).fetchone()
        fdl = np.concatenate([np.frombuffer(d, np.dtype(t)) for d, t in con.execute(
            "SELECT a.data, a.dtype FROM block_arrays a JOIN blocks b ON a.block_id = b.id WHERE b.cell_hash = ? "
            "AND a.name = 'first_dead_layer' ORDER BY b.trial_start", (h,))])
        assert int((fdl > 0).sum()) == k and len(fdl) == n  # counts agree with the per-trial blobs
        raw[h] = (json.loads(settings), n, k, fdl)
    blocks_raw = con.execute("SELECT id, cell_hash, trial_start, trial_stop, born_dead FROM blocks "
                             "ORDER BY id").fetchall()
    con.close()

    def check(rows):
        assert len(rows) == len(raw)
        for r in rows:
            settings, n, k, _ = raw[r["cell_hash"]]
            w = wilson(k, n)
            assert (int(r["trials"]), int(r["born_dead"])) == (n, k)
            for key, val in (("p", w.p), ("ci_low", w.ci_low), ("ci_high", w.ci_high), ("p_born_dead", w.p)):
                assert float(r[key]) == pytest.approx(val, rel=1e-12, abs=1e-15)
            for key in ("width", "depth", "layers", "init", "seed"):
                assert str(r[key]) == str(settings[key])
            assert r["collapsed"] in (None, "") and r["diverged"] in (None, "")

    assert main(["results", "--db", str(reference), "--json"]) == 0
    check(json.loads(capsys.readouterr().out))
    assert main(["export", "--db", str(reference), "--format", "json"]) == 0
    check(json.loads(capsys.readouterr().out))
    assert main(["export", "--db", str(reference), "--format", "csv"]) == 0
    check(list(csv.DictReader(io.StringIO(capsys.readouterr().out))))
    assert main(["export", "--db", str(reference), "--format", "json", "--level", "blocks"]) == 0
    blocks = json.loads(capsys.readouterr().out)
    assert sorted((b["id"], b["cell_hash"], b["trial_start"], b["trial_stop"], b["born_dead"]) for b in blocks) \
        == [tuple(r) for r in blocks_raw]
    assert main(["export", "--db", str(reference), "--format", "csv", "--level", "trials"]) == 0
    trials = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    for h, (_, n, _, fdl) in raw.items():
        mine = [r for r in trials if r["cell_hash"] == h]
        assert [int(r["trial"]) for r in mine] == list(range(n))
        assert [int(r["first_dead_layer"]) for r in mine] == fdl.tolist()
    out_file = reference.parent / "cells.csv"
    assert main(["export", "--db", str(reference), "--format", "csv", "--out", str(out_file)]) == 0
    assert capsys.readouterr().out == ""
    check(list(csv.DictReader(io.StringIO(out_file.read_text()))))
    assert main(["results", "--db", str(reference)]) == 0  # the human table
    text = capsys.readouterr().out
    assert "born dead" in text and "95% high" in text and "rai" in text


def test_progress_bar_counts_missing_trials(tmp_path):
    buf = io.StringIO()
    bar = Progress(1, "sweep", enabled=True, stream=buf, min_interval=0.0)
    spec = parse_spec_text(SPEC).with_trials(24)
    run_sweep(spec, tmp_path / "p.sqlite", progress=bar)
    assert bar.total == bar.done == N_CELLS * 24
    assert "ETA" in buf.getvalue() and f"cell {N_CELLS}/{N_CELLS}" in buf.getvalue()
