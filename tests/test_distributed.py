"""One cell over two processes on localhost under jax.distributed (gloo CPU collectives, a free port): the
`--distributed` CLI and the Python API equal a single-process run trial for trial, process 0 alone prints,
and a result spanning the other process's devices (a mesh over ``jax.devices()``) can be fetched."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from collapse_mc.config import NetworkConfig
from collapse_mc.deadness import BornDeadCell, born_dead_outcomes, estimate_born_dead
from collapse_mc.training import TrainCell, TrainConfig, estimate_training, train_outcomes

TIMEOUT = 240  # a hung collective fails the test instead of blocking CI
BORN_DEAD = ["born-dead", "--width", "3", "--depth", "5", "--trials", "37", "--seed", "2"]
TRAINED = ["estimate", "--width", "2", "--depth", "2", "--steps", "20", "--n-train", "32", "--batch-size", "8",
           "--test-points", "33", "--trials", "10", "--seed", "4"]
TIMING = ("seconds", "nets_per_second", "net_steps_per_second", "compile_seconds", "run_seconds")

WORKER = """
import sys
import numpy as np
from collapse_mc import distributed
from collapse_mc.cli import main
port, pid, out, born_dead, trained = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
opts = ["--json", "--no-progress", "--distributed", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
        "--process-id", pid]
for args in (born_dead, trained):  # the CLI (its first --distributed joins the cluster), one JSON line each
    assert main(args.split() + opts) == 0
import os
sys.stdout.flush()
os.dup2(2, 1)  # below, gloo's connection reports (native code, file descriptor 1) go to stderr
import jax
from collapse_mc.config import NetworkConfig
from collapse_mc.deadness import BornDeadCell, born_dead_outcomes
from collapse_mc.training import TrainCell, TrainConfig, train_outcomes
assert len(jax.devices()) == 2 * len(jax.local_devices())
bd = BornDeadCell(NetworkConfig(3, 5))
tc = TrainCell(NetworkConfig(2, 2), train=TrainConfig(target="abs", steps=20, n_train=32, batch_size=8,
                                                      test_points=33))
res = {}
for name, o in (("bd", distributed.distributed_outcomes(born_dead_outcomes, bd, 37, 2)),
                ("global", born_dead_outcomes(bd, 0, 37, 2, devices=jax.devices())),  # one mesh over both
                ("tr", distributed.distributed_outcomes(train_outcomes, tc, 10, 4))):
    res.update({f"{name}_{k}": np.asarray(v) for k, v in o._asdict().items()})
if distributed.is_main():
    np.savez(out, **res)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def env():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="2",
                PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))


def two_processes(argv_of, env):
    """Start processes 0 and 1 (``argv_of(i)``); their (returncode, stdout, stderr)."""
    procs = [subprocess.Popen(argv_of(i), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    out = []
    try:
        for p in procs:
            o, e = p.communicate(timeout=TIMEOUT)
            out.append((p.returncode, o, e))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return out


def single_device_count():
    import jax
    return len(jax.local_devices())


def strip(rec):
    return {k: v for k, v in rec.items() if k not in TIMING}


def test_distributed_equals_single_process(env, tmp_path):
    """Processes 0 and 1 run `born-dead` and `estimate` with --distributed, then the Python API; process 0's
    output equals a single-process run (same device count per process) trial for trial."""
    script, out = tmp_path / "worker.py", tmp_path / "out.npz"
    script.write_text(WORKER)
    port = free_port()
    res = two_processes(lambda i: [sys.executable, str(script), str(port), str(i), str(out), " ".join(BORN_DEAD),
                                   " ".join(TRAINED)], env)
    for rc, _, err in res:
        assert rc == 0, err[-3000:]
    assert res[1][1] == ""  # process 0 alone prints
    got_bd, got_tr = map(json.loads, res[0][1].splitlines())
    assert single_device_count() == 2
    cell_bd = BornDeadCell(NetworkConfig(3, 5))
    cell_tr = TrainCell(NetworkConfig(2, 2), train=TrainConfig(target="abs", steps=20, n_train=32, batch_size=8,
                                                               test_points=33))
    ref = json.loads(json.dumps([strip(estimate_born_dead(cell_bd, 37, 2)), strip(estimate_training(cell_tr, 10, 4))]))
    assert [strip(got_bd[0]), strip(got_tr)] == ref

    got = np.load(out)
    bd, tr = born_dead_outcomes(cell_bd, 0, 37, 2), train_outcomes(cell_tr, 0, 10, 4)
    for prefix, ref in (("bd", bd), ("global", bd), ("tr", tr)):
        for k, v in ref._asdict().items():
            np.testing.assert_array_equal(got[f"{prefix}_{k}"], np.asarray(v), err_msg=f"{prefix}_{k}")


def test_distributed_outside_a_cluster_is_one_line(env):
    r = subprocess.run([sys.executable, "-m", "collapse_mc", "born-dead", "--trials", "4", "--distributed"],
                       env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--coordinator HOST:PORT" in r.stderr, r.stderr
