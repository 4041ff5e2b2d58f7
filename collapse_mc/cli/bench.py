"""``collapse-mc bench``: throughput of the training Monte Carlo on a fixed workload.

Workload W1 (the same as ``shared/bench/peers.py``): M independent nets, d_in 1, width 4, 10 hidden layers,
d_out 1, He-normal weights, zero biases, a full batch of 128 points on [-sqrt 3, sqrt 3], target |x|, MSE,
Adam lr 1e-3, S steps. Reported: net-steps per second of a warm run (compilation excluded), the compile time
(first call minus a warm call) and the process's peak resident memory.
"""
from __future__ import annotations

import math

from .common import UsageError, add_json_option, int_in, one_of, print_json, CHUNK, TRIALS

WORKLOADS = {
    "W1": dict(nets=1024, width=4, depth=10, points=128, steps=100),
}


def register(sub):
    p = sub.add_parser(
        "bench",
        help="measure training throughput (net-steps per second) on a fixed workload",
        description="Time a fixed training workload. W1: 1024 nets, width 4, 10 hidden layers (depth = hidden "
                    "layers; the papers' layers = 11), full batch of 128 points on [-sqrt 3, sqrt 3], target "
                    "|x|, MSE, Adam lr 1e-3. The first call compiles and runs; the second (warm) call is timed. "
                    "Compare with shared/bench/peers.py measured in the same run (python scripts/bench_w1.py).",
    )
    p.add_argument("--workload", default="W1", type=one_of("workload", WORKLOADS), help="workload name (W1)")
    p.add_argument("--nets", type=TRIALS, default=None, help="number of independent nets M (default 1024)")
    p.add_argument("--steps", type=int_in(1, 100_000), default=None, help="training steps S, at most 100,000 (default 100)")
    p.add_argument("--repeats", type=int_in(1, 100), default=1, help="warm runs to time, 1 .. 100 (the best is reported)")
    p.add_argument("--chunk-size", type=CHUNK, default=None,
                   help="trials per compiled chunk (default: sized for the cache on CPU, for memory on GPU)")
    p.add_argument("--after-death", default="train", choices=("train", "stop", "full"),
                   help="dead networks: train = retired to the exact cheap path (default), stop = stopped, full = "
                        "trained with full steps like live ones (what the peers do)")
    add_json_option(p, "print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.workload not in WORKLOADS:
        raise UsageError(f"unknown workload {args.workload!r}; choose one of {', '.join(WORKLOADS)}")
    w = dict(WORKLOADS[args.workload])
    if args.nets is not None:
        w["nets"] = args.nets
    if args.steps is not None:
        w["steps"] = args.steps
    repeats, chunk = args.repeats, args.chunk_size
    _check_bench_size(w, repeats, chunk)
    rec = bench_w1(w["nets"], w["width"], w["depth"], w["points"], w["steps"], repeats, chunk, args.after_death)
    rec["workload"] = args.workload
    if args.json:
        print_json(rec)
    else:
        print(f"{args.workload}: {rec['nets']} nets, width {rec['width']}, depth {rec['depth']} hidden layers, "
              f"batch {rec['points']}, {rec['steps']} steps on {rec['devices']} {rec['platform']} device(s)")
        print(f"  {rec['net_steps_per_second']:,.0f} net-steps/s (warm {rec['seconds']:.3f} s), "
              f"compile {rec['compile_seconds']:.2f} s, peak RSS {rec['peak_rss_mb']:.0f} MB")
    return 0


def _check_bench_size(w: dict, repeats: int, chunk: int | None) -> None:
    """Refuse a workload beyond the shared work limit (``config.check_cost``), with the estimate."""
    from ..config import InitConfig, NetworkConfig, check_cost
    from ..training import TrainCell, TrainConfig
    cell = TrainCell(NetworkConfig(w["width"], w["depth"]), InitConfig("he_normal"),
                     TrainConfig(steps=w["steps"], batch_size=None, n_train=w["points"]))
    check_cost(f"bench {w['nets']:,} nets x {w['steps']:,} steps", cell.cost(), w["nets"] * (repeats + 1),
               chunk=chunk)


def bench_w1(nets: int, width: int, depth: int, points: int, steps: int, repeats: int = 1,
             chunk_size: int | None = None, after_death: str = "train") -> dict:
    import resource
    import time

    import jax

    from ..config import InitConfig, NetworkConfig
    from ..training import TrainCell, TrainConfig, train_outcomes

    cell = TrainCell(NetworkConfig(width, depth), InitConfig("he_normal"),
                     TrainConfig(target="abs", loss="mse", optimizer="adam", lr=1e-3, steps=steps, batch_size=None,
                                 n_train=points, half_width=math.sqrt(3.0)))
    chunk = chunk_size
    t0 = time.perf_counter()
    train_outcomes(cell, 0, nets, 0, chunk_size=chunk, after_death=after_death)
    first = time.perf_counter() - t0
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = train_outcomes(cell, 0, nets, 0, chunk_size=chunk, after_death=after_death)
        best = min(best, time.perf_counter() - t0)
    return {
        "after_death": after_death, "nets": nets, "width": width, "depth": depth, "layers": depth + 1, "points": points, "steps": steps,
        "seconds": best, "net_steps_per_second": nets * steps / best, "compile_seconds": max(0.0, first - best),
        "first_call_seconds": first, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "devices": len(jax.local_devices()), "platform": jax.local_devices()[0].platform,
        "p_collapse": float(out.collapsed.mean()), "p_born_dead": float(out.born_dead.mean()),
    }
