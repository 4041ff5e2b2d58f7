"""Time trained cells of the main job (``collapse-mc safe-region``), compile excluded, as JSON.

Each cell is trained as the job trains it: through the sweep runner into a fresh store (blocks of the job's
20 trials), the ``estimate`` protocol (|x|, MSE, Adam 1e-3, minibatch 64 of 3000 points), its own depth traced
in the job's depth capacity, dead networks stopped (``after_death="stop"``), every CPU core an XLA device.
Every cell runs once to compile, then ``--repeats`` times; the best is kept (store writes included).
Compare two versions of the code by running this file with ``PYTHONPATH`` pointing at each checkout.

    python scripts/bench_trained_cells.py --steps 1000 --repeats 3
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

DEFAULT_CELLS = ("he_normal:12:48:20", "rai:8:32:40", "rai:4:16:40", "he_normal:2:9:20")


def cell_arg(text: str) -> tuple[str, int, int, int]:
    """``INIT:WIDTH:DEPTH:TRIALS`` -> ``(init, width, depth, trials)``, positive integers."""
    parts = text.split(":")
    try:
        init, numbers = parts[0], tuple(int(p) for p in parts[1:])
    except ValueError:
        numbers = ()
    if len(parts) != 4 or len(numbers) != 3 or min(numbers) < 1 or not init:
        raise argparse.ArgumentTypeError(f"expected INIT:WIDTH:DEPTH:TRIALS with positive integers, got {text!r}")
    return (init, *numbers)


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", type=cell_arg, default=[cell_arg(c) for c in DEFAULT_CELLS],
                        help="INIT:WIDTH:DEPTH:TRIALS (depth = hidden layers L_h)")
    parser.add_argument("--steps", type=positive, default=1000, help="optimizer steps (the job trains 5000)")
    parser.add_argument("--repeats", type=positive, default=3)
    args = parser.parse_args(argv)
    os.environ.setdefault("JAX_NUM_CPU_DEVICES", str(os.cpu_count() or 1))
    import jax
    import collapse_mc

    from collapse_mc.jobs.trained_region import TrainedRegion, trained_spec
    from collapse_mc.store import Store
    from collapse_mc.sweep import run_sweep

    from collapse_mc.config import ConfigError

    region = TrainedRegion(steps=args.steps)
    try:  # every cell checked before anything runs
        specs = [trained_spec(region, *cell) for cell in args.cells]
    except ConfigError as e:
        parser.error(str(e))
    rows = []
    for (init, width, depth, trials), spec in zip(args.cells, specs):

        def run():
            with tempfile.TemporaryDirectory() as tmp:
                db = os.path.join(tmp, "bench.sqlite")
                run_sweep(spec, db, after_death="stop", depth_capacity=region.capacity(depth, width))
                with Store(db) as store:
                    return store.outcomes(spec.cells[0].cell_hash)

        run()
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = run()
            times.append(time.perf_counter() - t0)
        alive = int((out["died_at_step"] < 0).sum())
        rows.append({"init": init, "width": width, "depth": depth, "trials": trials, "alive_at_end": alive,
                     "seconds_best": round(min(times), 3), "seconds": [round(t, 3) for t in times],
                     "net_steps_per_s": round(trials * args.steps / min(times))})
    print(json.dumps({"collapse_mc": os.path.dirname(collapse_mc.__file__), "devices": jax.device_count(),
                      "steps": args.steps, "cells": rows}, indent=1))


if __name__ == "__main__":
    main()
