#!/usr/bin/env python
"""Benchmark W0 (born dead at initialization) against the numpy peer, in the same run.

    python scripts/bench_born_dead.py [--trials 1000000] [--width 4] [--depth 50] [--json]

Measures (1) collapse_mc's born-dead throughput in nets/s (compile excluded; best of --repeat runs) with all
devices (on CPU the script exposes one XLA device per core, as the CLI does), (2) the peer
``../shared/bench/peers.py numpy_born_dead`` on the same workload, and (3) compile time of both kernels at
depth 10 and depth 100. Prints a JSON object with --json, else a markdown table for BENCHMARKS.md.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

os.environ.setdefault("JAX_NUM_CPU_DEVICES", str(os.cpu_count() or 1))

PEERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "bench", "peers.py")


def compile_seconds(method: str, depth: int, width: int = 4) -> float:
    from collapse_mc.config import NetworkConfig
    from collapse_mc.deadness.born_dead import BornDeadCell, born_dead_args, born_dead_map
    cell = BornDeadCell(NetworkConfig(width, depth), method=method)
    tm = born_dead_map(cell, chunk_size=1 << 14)
    t = time.perf_counter()
    tm.lower(*born_dead_args(cell, 0)).compile()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=1_000_000)
    ap.add_argument("--width", type=int, default=4)
    ap.add_argument("--depth", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--peers", default=PEERS, help="path to peers.py")
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import jax
    from collapse_mc.config import NetworkConfig
    from collapse_mc.deadness import BornDeadCell, born_dead_outcomes

    cell = BornDeadCell(NetworkConfig(args.width, args.depth))
    born_dead_outcomes(cell, 0, args.trials, 0)   # compile + warm up
    best = float("inf")
    for r in range(args.repeat):
        t = time.perf_counter()
        out = born_dead_outcomes(cell, 0, args.trials, 0)
        best = min(best, time.perf_counter() - t)
    ours = args.trials / best
    res = {
        "workload": f"W0 born dead: M={args.trials} N={args.width} L_h={args.depth} d_in=1 zero biases",
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {jax.devices()[0].device_kind}",
        "devices": len(jax.devices()),
        "method": cell.resolved_method,
        "collapse_mc_nets_per_second": ours,
        "p_born_dead": float(out.born_dead.mean()),
    }
    if not args.skip_peer:
        p = subprocess.run([sys.executable, args.peers, "numpy_born_dead", str(args.trials), str(args.width),
                            str(args.depth)], capture_output=True, text=True, check=True)
        m = re.search(r"([\d,]+) nets/s", p.stdout)
        res["peer_numpy_nets_per_second"] = float(m.group(1).replace(",", ""))
        res["peer_output"] = p.stdout.strip()
        res["ratio_vs_numpy"] = ours / res["peer_numpy_nets_per_second"]
    for method in ("gaussian", "dense"):
        c10, c100 = compile_seconds(method, 10, args.width), compile_seconds(method, 100, args.width)
        res[f"compile_seconds_{method}_depth10"] = c10
        res[f"compile_seconds_{method}_depth100"] = c100
        res[f"compile_ratio_{method}_100_over_10"] = c100 / c10
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        for k, v in res.items():
            print(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |")


if __name__ == "__main__":
    main()
