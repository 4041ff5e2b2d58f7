#!/usr/bin/env python
"""GPU check and benchmark of the born-dead kernels (run on a machine with a GPU).

    PYTHONPATH=. python scripts/gpu_check.py [--trials 10000000]

1. Per-trial outcomes on the GPU equal those on the host CPU device (same keys; both kernels).
2. Throughput of the Gaussian kernel (width 4, depth 50) and of the dense kernel, compile excluded.
Prints one JSON object.
"""
import argparse
import json
import time

import jax
import numpy as np

from collapse_mc.config import InitConfig, NetworkConfig
from collapse_mc.deadness import BornDeadCell, born_dead_outcomes


def timed(cell, trials, devices, chunk=None, repeat=2):
    born_dead_outcomes(cell, 0, trials, 0, devices=devices, chunk_size=chunk)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = born_dead_outcomes(cell, 0, trials, 0, devices=devices, chunk_size=chunk)
        best = min(best, time.perf_counter() - t)
    return trials / best, float(out.born_dead.mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=10_000_000)
    args = ap.parse_args()
    gpus = jax.devices()
    cpus = jax.devices("cpu")
    res = {"jax": jax.__version__, "device": gpus[0].device_kind, "n_devices": len(gpus)}
    for name, cell in (("gaussian", BornDeadCell(NetworkConfig(3, 20), method="gaussian")),
                       ("dense", BornDeadCell(NetworkConfig(3, 20), method="dense")),
                       ("dense_rai", BornDeadCell(NetworkConfig(3, 20), InitConfig("rai")))):
        a = born_dead_outcomes(cell, 0, 20000, 5, devices=gpus)
        b = born_dead_outcomes(cell, 0, 20000, 5, devices=cpus[:1])
        res[f"equal_gpu_cpu_{name}"] = {
            "first_dead_layer_mismatches": int(np.sum(a.first_dead_layer != b.first_dead_layer)),
            "dead_neuron_mismatches": int(np.sum(a.dead_neurons != b.dead_neurons)), "trials": 20000}
    for chunk in (1 << 18, 1 << 20, 1 << 22):
        rate, p = timed(BornDeadCell(NetworkConfig(4, 50)), args.trials, gpus, chunk)
        res[f"gaussian_w4_d50_chunk{chunk}_nets_per_s"] = rate
    res["gaussian_w4_d50_p"] = p
    rate, p = timed(BornDeadCell(NetworkConfig(4, 50), method="dense"), args.trials // 10, gpus, 1 << 18)
    res["dense_w4_d50_nets_per_s"] = rate
    rate, p = timed(BornDeadCell(NetworkConfig(12, 64)), args.trials // 10, gpus)
    res["gaussian_w12_d64_nets_per_s"] = rate
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
