#!/usr/bin/env python
"""Benchmark W1 (training throughput) against the peers in ``shared/bench/peers.py``, in the same run.

    python scripts/bench_w1.py [--steps 100] [--repeats 3] [--loop-nets 64] [--json]

Runs, one after another on the same machine: ``collapse-mc bench --workload W1 --json`` (1024 nets, width 4,
10 hidden layers, full batch of 128 points, |x|, MSE, Adam 1e-3; warm run, compile excluded), then the peers
``torch_func`` (torch.func.vmap ensembling), ``jax_vmap`` (plain jit(vmap(train))) and ``torch_loop`` (one net at
a time; run on --loop-nets nets since its rate per net-step does not depend on the number of nets). Prints the
net-steps per second of each and collapse_mc's ratio against each, as JSON (--json) or markdown rows.
The peers need torch (pip install torch==2.13.0, a CPU build); a missing peer is reported, not fatal.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys

PEERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "bench", "peers.py")


def peer(path: str, mode: str, nets: int, steps: int) -> dict:
    p = subprocess.run([sys.executable, path, mode, str(nets), "4", "10", "128", str(steps)],
                       capture_output=True, text=True)
    m = re.search(r"([\d,]+) net-steps/s", p.stdout)
    if p.returncode or not m:
        return {"error": (p.stderr.strip().splitlines() or ["failed"])[-1]}
    return {"net_steps_per_second": float(m.group(1).replace(",", "")), "output": p.stdout.strip()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loop-nets", type=int, default=64)
    ap.add_argument("--peers", default=PEERS, help="path to peers.py")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    cmd = [sys.executable, "-m", "collapse_mc.cli", "bench", "--workload", "W1", "--json",
           "--steps", str(args.steps), "--repeats", str(args.repeats)]
    ours = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    res = {"workload": "W1: 1024 nets, N=4, L_h=10, full batch 128, |x|, MSE, Adam 1e-3, "
                       f"{args.steps} steps",
           "machine": f"{platform.machine()} {os.cpu_count()} cores ({ours['devices']} {ours['platform']} devices)",
           "collapse_mc": ours}
    for mode, nets in (("torch_func", 1024), ("jax_vmap", 1024), ("torch_loop", args.loop_nets)):
        r = peer(args.peers, mode, nets, args.steps)
        res[mode] = r
        if "net_steps_per_second" in r:
            res[f"ratio_vs_{mode}"] = ours["net_steps_per_second"] / r["net_steps_per_second"]
    if args.json:
        print(json.dumps(res, indent=1))
        return
    print(f"| collapse_mc | {ours['net_steps_per_second']:,.0f} | 1 |")
    for mode in ("torch_func", "jax_vmap", "torch_loop"):
        r = res[mode]
        if "error" in r:
            print(f"| {mode} | {r['error']} | |")
        else:
            print(f"| {mode} | {r['net_steps_per_second']:,.0f} | {res[f'ratio_vs_{mode}']:.1f}x |")
    print(f"compile {ours['compile_seconds']:.1f} s, peak RSS {ours['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
