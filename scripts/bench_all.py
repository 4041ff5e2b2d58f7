#!/usr/bin/env python
"""Benchmarks W0, W1, W2 against the peers of ``shared/bench/peers.py``, in the same run, as JSON.

    python scripts/bench_all.py [--repeats 3] [--peer-python PATH] [--only W0,W1,W2,peak]     (prints JSON)

* machine: CPU model (``lscpu``), cores, JAX version, devices; **peak**: the machine's fp32 FMA rate measured
  by a jitted chain of fused multiply-adds (8 independent chains per element, sharded over every CPU device).
* **W0** (born dead): ``collapse-mc born-dead --width 4 --depth 50 --trials 1000000`` as a command (wall time
  of the whole process: start, compilation, run) with a cold and a warm compilation cache, against
  ``peers.py numpy_born_dead 1000000 4 50``.
* **W1** (training throughput): ``collapse-mc bench --workload W1`` (1024 nets, width 4, 10 hidden layers,
  full batch 128, Adam, 100 steps; warm, compile excluded), with dead networks retired (default) and trained
  with full steps (``--after-death full``), against ``torch_bmm``, ``torch_func`` and ``jax_vmap``; fraction
  of the fp32 peak at 140 kFLOP per net-step (forward + backward, counted from the layer sizes).
* **W2** (the papers' cell end to end): ``collapse-mc estimate --width 2 --depth 9 --target abs --loss mse
  --trials 1000`` as a command with a cold and a warm cache, against ``peers.py w2 1000 5000`` (its own
  printed time and its process's wall time).

Every number is the best of ``--repeats`` runs. The peers need torch (a CPU build of torch 2.13): pass the
Python that has it with ``--peer-python``; a missing peer is reported, not fatal.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "..", "..", "shared", "bench", "peers.py")
W1_FLOP_PER_NET_STEP = 2 * 3 * 128 * (1 * 4 + 9 * 4 * 4 + 4 * 1)  # (fwd + 2 x fwd backward) MACs x 2 flops

PEAK_SCRIPT = r"""
import time, jax, jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P
import numpy as np
devs = jax.local_devices(); n = len(devs); E = 2048; CH = 8; IT = 20000
mesh = Mesh(np.array(devs), ("d",))
def chain(x):
    a, b = jnp.float32(0.999), jnp.float32(1e-3)
    return jax.lax.fori_loop(0, IT, lambda i, x: x * a + b, x)
f = jax.jit(jax.shard_map(chain, mesh=mesh, in_specs=P("d"), out_specs=P("d")))
x = jnp.ones((n * CH, E), jnp.float32)
f(x).block_until_ready(); best = 1e9
for _ in range(3):
    t = time.perf_counter(); f(x).block_until_ready(); best = min(best, time.perf_counter() - t)
print(2.0 * n * CH * E * IT / best)
"""


def machine() -> dict:
    model = platform.processor()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        m = re.search(r"Model name:\s*(.+)", out)
        model = m.group(1).strip() if m else model
    except OSError:
        pass
    import jax
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(), "jax": jax.__version__,
            "load_average_at_start": os.getloadavg()}


def timed(cmd, env=None) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}")
    return dt, p.stdout


def ours(args_list, cache: str | None, repeats: int) -> dict:
    """Best wall time of ``collapse-mc ARGS --json`` and its last JSON, with the given cache dir (None: off)."""
    env = dict(os.environ)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    if cache is None:
        env["COLLAPSE_MC_NO_CACHE"] = "1"
    else:
        env["COLLAPSE_MC_CACHE_DIR"] = cache
    best, rec = float("inf"), None
    for _ in range(repeats):
        dt, out = timed([sys.executable, "-m", "collapse_mc", *args_list, "--json"], env)
        if dt < best:
            best, rec = dt, json.loads(out)
    return {"wall_seconds": best, "result": rec}


def peer(py: str, path: str, argv: list[str], repeats: int) -> dict:
    best = None
    for _ in range(repeats):
        try:
            dt, out = timed([py, path, *argv])
        except (RuntimeError, OSError) as e:
            return {"error": str(e)}
        rate = re.search(r"([\d,]+) (net-steps|nets)/s", out)
        secs = re.search(r"([\d.]+)\s*s\b", out)
        r = {"wall_seconds": dt, "output": out.strip(),
             "rate": float(rate.group(1).replace(",", "")) if rate else None,
             "seconds": float(secs.group(1)) if secs else None}
        if best is None or dt < best["wall_seconds"]:
            best = r
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peer-python", default=sys.executable, help="a Python with torch for the peers")
    ap.add_argument("--peers", default=PEERS)
    ap.add_argument("--only", default="peak,W0,W1,W2")
    args = ap.parse_args()
    only = set(args.only.split(","))
    res = {"machine": machine()}
    r = args.repeats
    if "peak" in only:
        _, out = timed([sys.executable, "-c", PEAK_SCRIPT],
                       dict(os.environ, JAX_NUM_CPU_DEVICES=str(os.cpu_count() or 1)))
        res["peak_fp32_flops"] = float(out.strip().splitlines()[-1])
    with tempfile.TemporaryDirectory() as tmp:
        if "W0" in only:
            argv = ["born-dead", "--width", "4", "--depth", "50", "--trials", "1000000", "--no-progress"]
            cold = ours(argv, os.path.join(tmp, "w0"), 1)
            warm = ours(argv, os.path.join(tmp, "w0"), r)
            p = peer(args.peer_python, args.peers, ["numpy_born_dead", "1000000", "4", "50"], r)
            res["W0"] = {"cold_cache": cold, "warm_cache": warm, "numpy_born_dead": p}
            if p.get("seconds"):
                res["W0"]["ratio_warm_vs_numpy"] = p["seconds"] / warm["wall_seconds"]
                res["W0"]["ratio_cold_vs_numpy"] = p["seconds"] / cold["wall_seconds"]
        if "W1" in only:
            w1 = {}
            for mode in ("train", "full"):
                _, out = timed([sys.executable, "-m", "collapse_mc", "bench", "--workload", "W1", "--json",
                                "--repeats", str(r), "--after-death", mode], dict(os.environ, COLLAPSE_MC_NO_CACHE="1"))
                w1[f"collapse_mc_{mode}"] = json.loads(out)
            for mode in ("torch_bmm", "torch_func", "jax_vmap"):
                w1[mode] = peer(args.peer_python, args.peers, [mode, "1024", "4", "10", "128", "100"], r)
                for ours_mode in ("train", "full"):
                    if w1[mode].get("rate"):
                        w1[f"ratio_{ours_mode}_vs_{mode}"] = (w1[f"collapse_mc_{ours_mode}"]["net_steps_per_second"]
                                                              / w1[mode]["rate"])
            if "peak_fp32_flops" in res:
                for ours_mode in ("train", "full"):
                    w1[f"fraction_of_peak_{ours_mode}"] = (w1[f"collapse_mc_{ours_mode}"]["net_steps_per_second"]
                                                           * W1_FLOP_PER_NET_STEP / res["peak_fp32_flops"])
            res["W1"] = w1
        if "W2" in only:
            argv = ["estimate", "--width", "2", "--depth", "9", "--target", "abs", "--loss", "mse", "--trials",
                    "1000", "--no-progress"]
            cold = ours(argv, None, r)
            ours(argv, os.path.join(tmp, "w2"), 1)  # fills the cache
            warm = ours(argv, os.path.join(tmp, "w2"), r)
            p = peer(args.peer_python, args.peers, ["w2", "1000", "5000"], r)
            res["W2"] = {"cold_cache": cold, "warm_cache": warm, "w2": p}
            if p.get("seconds"):
                res["W2"]["ratio_warm_vs_w2"] = p["seconds"] / warm["wall_seconds"]
                res["W2"]["ratio_cold_vs_w2"] = p["seconds"] / cold["wall_seconds"]
                res["W2"]["ratio_warm_vs_w2_wall"] = p["wall_seconds"] / warm["wall_seconds"]
    res["machine"]["load_average_at_end"] = os.getloadavg()
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
