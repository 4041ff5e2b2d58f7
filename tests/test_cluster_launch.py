"""Launch recipes run end to end on this machine: `sweep submit --executor local` (submitit) and
`scripts/slurm_sweep.sh` with a stub `sbatch` that runs the array tasks and the merge job locally; both give
the store of one uninterrupted run."""
import importlib.util
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from collapse_mc.store import Store
from collapse_mc.sweep import parse_spec_text, run_sweep

ROOT = Path(__file__).resolve().parent.parent
SPEC = """
[sweep]
kind = "born_dead"
trials = 24
seed = 9
block_size = 6
[grid]
width = [2, 3]
[network]
depth = 4
"""
STUB_SBATCH = r'''#!/usr/bin/env python3
"""sbatch stand-in: runs the job (each array task, at once) here, logs its arguments, prints a job id."""
import os, subprocess, sys
args = sys.argv[1:]
i = 0
while args[i].startswith("-"):
    i += 1
opts, script, rest = args[:i], args[i], args[i + 1:]
with open(os.environ["SBATCH_STUB_LOG"], "a") as f:
    f.write(" ".join(args) + "\n")
array = next((o.split("=", 1)[1] for o in opts if o.startswith("--array=")), None)
tasks = [None] if array is None else list(range(int(array.split("-")[0]), int(array.split("-")[1]) + 1))
procs = []
for t in tasks:
    env = dict(os.environ)
    if t is not None:
        env.update(SLURM_ARRAY_TASK_ID=str(t), SLURM_ARRAY_TASK_COUNT=str(len(tasks)), SLURM_ARRAY_TASK_MIN="0")
    procs.append(subprocess.Popen(["bash", script, *rest], env=env, stdout=sys.stderr))
if any(p.wait() for p in procs):
    sys.exit(1)
n = sum(1 for _ in open(os.environ["SBATCH_STUB_LOG"]))
print(f"{1000 + n};cluster")
'''


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("spec") / "tiny.toml"
    p.write_text(SPEC)
    return p


@pytest.fixture(scope="module")
def reference(tmp_path_factory, spec_file):
    db = tmp_path_factory.mktemp("ref") / "ref.sqlite"
    run_sweep(parse_spec_text(SPEC, origin=str(spec_file)), db)
    return view(db)


def view(db):
    """Per cell: its estimate (no timings in it) and its per-trial outcomes."""
    with Store(db, readonly=True) as st:
        return [(e, {k: v.tolist() for k, v in st.outcomes(e["cell_hash"]).items()}) for e in st.cell_estimates()]


def cli_env():
    return dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="1",
                PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


@pytest.mark.skipif(importlib.util.find_spec("submitit") is None,
                    reason="sweep submit needs submitit (pip install 'collapse_mc[cluster]')")
def test_submit_local(spec_file, reference, tmp_path):
    """Run as a process of its own: submitit configures logging on the streams it finds at import."""
    out = tmp_path / "out.sqlite"
    cmd = [sys.executable, "-m", "collapse_mc", "sweep", "submit", str(spec_file), "--workers", "2", "--executor",
           "local", "--db", str(out), "--json"]
    r = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    assert [s["shard"] for s in summary["shards"]] == ["0/2", "1/2"]
    assert all(s["blocks_computed"] > 0 for s in summary["shards"])
    assert sum(p["blocks_copied"] for p in summary["merge"]["parts"]) == 8
    assert view(out) == reference
    r = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=600)  # nothing left to do
    assert r.returncode == 0, r.stderr[-3000:]
    again = json.loads(r.stdout)
    assert sum(s["blocks_computed"] for s in again["shards"]) == 0
    assert sum(p["blocks_copied"] for p in again["merge"]["parts"]) == 0 and view(out) == reference


def test_slurm_script_with_stub_sbatch(spec_file, reference, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "sbatch"
    stub.write_text(STUB_SBATCH.replace("#!/usr/bin/env python3", f"#!{sys.executable}", 1))
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "sbatch.log"
    env = dict(cli_env(), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", SBATCH_STUB_LOG=str(log),
               COLLAPSE_MC=f"{sys.executable} -m collapse_mc")
    out = tmp_path / "out.sqlite"
    r = subprocess.run(["bash", str(ROOT / "scripts" / "slurm_sweep.sh"), str(spec_file), str(out), "3",
                        "--time=10"], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    calls = log.read_text().splitlines()
    assert len(calls) == 2 and "--array=0-2" in calls[0] and "--dependency=afterok:1001" in calls[1]
    assert all("--time=10" in c for c in calls)
    assert "every shard's blocks are recorded" in r.stderr  # the merge job's `sweep status --spec`
    assert view(out) == reference
    bad = subprocess.run(["bash", str(ROOT / "scripts" / "slurm_sweep.sh"), str(spec_file), str(out), "x"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
