"""Paper 3 (Arnekvist et al. 2020): dead ReLUs against target scale, momentum, depth and residual blocks.

The study trains width-``width`` ReLU networks on the normalized |x| target rescaled to standard deviation
``target_std`` (``TrainConfig(normalize_target=True, target_scale=std)``), MSE, He normal weights, zero
biases, and records per cell (all numbers with 95 % intervals):

* ``p_dead_after_training`` (Wilson): some hidden layer constant on the domain after training (the output is
  then constant for good); denominator: trials that did not diverge while alive (``training.summary``);
* ``dead_fraction_mean``: the fraction of dead ReLUs (pre-activation <= 0 on the whole test grid) over all
  hidden layers, averaged over the non-diverged trials; interval mean +- 1.96 sd / sqrt(n) (trials are
  independent);
* ``p_some_block_dead`` (Wilson, residual networks): some residual block (hidden layer >= 2) has all its ReLUs
  dead. Such a block is the identity, so the output need not be constant: this differs from dead after
  training. For plain networks it is reported too (a plain layer with every ReLU dead is a dead network);
* ``p_diverged``, ``p_born_dead``, ``p_collapse``.

Optimizer *arms*: SGD with heavy-ball momentum beta at learning rate eta (``optax.sgd``: the step on a steady
gradient is eta / (1 - beta)), the **step-matched** control eta (1 - beta) (same steady step as beta = 0 at
eta), a second learning rate, and Adam with beta1 in {0, 0.9}. The main grid crosses the SGD momenta with
every depth, plain and residual; the controls run at ``control_depths`` (plain). Cells that share a static
shape (depth, residual, optimizer kind) share one compilation and run consecutively.

``after_death``: the full run uses ``"stop"`` (a network stops training at the death check, every 100 steps,
that finds it dead; probabilities are unaffected, see ``training.trainer``). Consequence for the dead-ReLU
fraction: for a network that died, it is the fraction at that check; the layers at and below its dead layer
get no gradient afterwards and cannot change, only units above it could.

Every trial's randomness derives from its cell (``rng``): cells are independent samples, so intervals of two
cells can be compared directly.
"""
from __future__ import annotations

import dataclasses
import math
import os
import platform
import subprocess
import time
from typing import Callable, Sequence

import numpy as np

from ..config import InitConfig, NetworkConfig
from ..estimates import wilson

MAIN = "sgd"                 # arm families
MATCHED = "sgd_step_matched"
LR2 = "sgd_lr2"
ADAM = "adam"


@dataclasses.dataclass(frozen=True)
class Arm:
    """One optimizer setting: ``family`` (MAIN / MATCHED / LR2 / ADAM), kind, lr and momentum or beta1."""

    family: str
    optimizer: str
    lr: float
    momentum: float = 0.0
    beta1: float = 0.9

    @property
    def label(self) -> str:
        if self.optimizer == "adam":
            return f"Adam beta1={self.beta1:g}, lr={self.lr:g}"
        tail = " (step-matched)" if self.family == MATCHED else ""
        return f"SGD beta={self.momentum:g}, lr={self.lr:.3g}{tail}"

    @property
    def effective_step(self) -> float:
        """Steady-state step per unit gradient: lr / (1 - momentum) for SGD, lr for Adam (per coordinate)."""
        return self.lr / (1.0 - self.momentum) if self.optimizer == "sgd" else self.lr


def sgd_arms(momenta: Sequence[float], lr: float, family: str = MAIN) -> tuple[Arm, ...]:
    return tuple(Arm(family, "sgd", lr, float(b)) for b in momenta)


def matched_arms(momenta: Sequence[float], lr: float) -> tuple[Arm, ...]:
    """SGD at lr (1 - beta): the same steady step as plain SGD at ``lr`` (beta = 0 is the main arm)."""
    return tuple(Arm(MATCHED, "sgd", lr * (1.0 - b), float(b)) for b in momenta if b > 0)


def adam_arms(beta1s: Sequence[float], lrs: Sequence[float]) -> tuple[Arm, ...]:
    return tuple(Arm(ADAM, "adam", float(lr), 0.0, float(b)) for lr in lrs for b in beta1s)


@dataclasses.dataclass(frozen=True)
class StudyGrid:
    """What the study trains. Depth = hidden layers L_h (the papers' layers = L_h + 1)."""

    width: int = 8
    depths: tuple[int, ...] = (2, 4, 8, 16)
    residual: tuple[bool, ...] = (False, True)
    target_stds: tuple[float, ...] = (1e-4, 1e-2, 1.0, 1e2)
    main_arms: tuple[Arm, ...] = sgd_arms((0.0, 0.5, 0.9, 0.99), 1e-2)
    control_depths: tuple[int, ...] = (4,)
    control_residual: tuple[bool, ...] = (False,)
    control_arms: tuple[Arm, ...] = (matched_arms((0.5, 0.9, 0.99), 1e-2) + sgd_arms((0.0, 0.5, 0.9, 0.99), 1e-3, LR2)
                                     + adam_arms((0.0, 0.9), (1e-3, 1e-2)))
    trials: int = 64
    steps: int = 300
    batch_size: int = 64
    n_train: int = 512
    target: str = "abs"
    seed: int = 2005
    after_death: str = "stop"

    def cells(self) -> list[tuple[dict, "object"]]:
        """``(labels, TrainCell)`` for every cell, grouped by static shape (depth, residual, optimizer kind)."""
        from ..training import TrainCell, TrainConfig
        todo = []
        for depth in self.depths:
            for res in self.residual:
                arms = list(self.main_arms)
                if depth in self.control_depths and res in self.control_residual:
                    arms += list(self.control_arms)
                for kind in sorted({a.optimizer for a in arms}, key=lambda k: k != "sgd"):
                    for arm in (a for a in arms if a.optimizer == kind):
                        for std in self.target_stds:
                            train = TrainConfig(target=self.target, normalize_target=True, target_scale=float(std),
                                                optimizer=arm.optimizer, lr=arm.lr, momentum=arm.momentum,
                                                beta1=arm.beta1, steps=self.steps, batch_size=self.batch_size,
                                                n_train=self.n_train)
                            cell = TrainCell(NetworkConfig(self.width, depth, residual=res), InitConfig(), train)
                            todo.append(({"depth": depth, "layers": depth + 1, "residual": res,
                                          "family": arm.family, "arm": arm.label, "optimizer": arm.optimizer,
                                          "lr": arm.lr, "momentum": arm.momentum, "beta1": arm.beta1,
                                          "effective_step": arm.effective_step, "target_std": float(std)}, cell))
        return todo

    def describe(self) -> dict:
        d = dataclasses.asdict(self)
        d["main_arms"] = [a.label for a in self.main_arms]
        d["control_arms"] = [a.label for a in self.control_arms]
        return d


FULL = StudyGrid()
QUICK = StudyGrid(depths=(4,), residual=(False,), target_stds=(1e-4, 1.0),
                  main_arms=sgd_arms((0.0, 0.99), 1e-2), control_depths=(), control_arms=(),
                  trials=64, steps=200)


# ---- one cell's record ---------------------------------------------------------------------------------


def mean_interval(x: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """Mean of the finite entries with a normal 95 % interval (mean +- 1.96 sd / sqrt n); Nones if empty."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    if not x.size:
        return None, None, None
    m = float(x.mean())
    half = 1.96 * float(x.std(ddof=1)) / math.sqrt(x.size) if x.size > 1 else float("inf")
    return m, max(0.0, m - half), min(1.0, m + half)


def _wilson_fields(name: str, k: int, n: int) -> dict:
    if n == 0:
        return {f"{name}_k": k, f"{name}_n": n, name: None, f"{name}_ci_low": None, f"{name}_ci_high": None}
    w = wilson(int(k), int(n))
    return {f"{name}_k": int(k), f"{name}_n": int(n), name: w.p, f"{name}_ci_low": w.ci_low,
            f"{name}_ci_high": w.ci_high}


def cell_record(labels: dict, cell, outcomes) -> dict:
    """The JSON record of one cell from its ``TrainOutcomes`` (see the module docstring)."""
    from ..training import summarize_training
    s = summarize_training(cell, outcomes)
    o = outcomes
    ok = ~o.diverged
    df = o.dead_fraction                                   # (T, L_h), NaN where diverged
    with np.errstate(invalid="ignore"):
        per_trial = np.where(ok, np.nanmean(np.where(ok[:, None], df, 0.0), axis=1), np.nan)
    m, lo, hi = mean_interval(per_trial[ok])
    blocks = df[:, 1:] if df.shape[1] > 1 else np.zeros((len(df), 0))
    some_block = ok & (blocks >= 1.0).any(axis=1) if blocks.shape[1] else np.zeros(len(df), bool)
    rec = {**labels, "width": cell.network.width, "trials": int(len(o.born_dead)), "steps": cell.train.steps,
           "born_dead": s["born_dead"], "dead_after_training": s["dead_after_training"],
           "collapsed": s["collapsed"], "diverged": s["diverged"], "decided": s["decided"]}
    for key in ("p_dead_after_training", "p_collapse", "p_diverged", "p_born_dead"):
        rec[key], rec[f"{key}_ci_low"], rec[f"{key}_ci_high"] = s[key], s[f"{key}_ci_low"], s[f"{key}_ci_high"]
    rec.update(_wilson_fields("p_some_block_dead", int(some_block.sum()), int(ok.sum())))
    rec["dead_fraction_mean"], rec["dead_fraction_ci_low"], rec["dead_fraction_ci_high"] = m, lo, hi
    rec["dead_fraction_per_layer"] = [None if not np.isfinite(v) else float(v)
                                      for v in (np.nanmean(df[ok], axis=0) if ok.any() else np.full(df.shape[1], np.nan))]
    rec["died_at_step_median"] = s["died_at_step_median"]
    rec["test_rel_l2_median_trained"] = s["test_rel_l2_median_trained"]
    return rec


# ---- the study ---------------------------------------------------------------------------------------------


def run_study(grid: StudyGrid, progress: Callable[[int], None] | None = None) -> dict:
    """Train every cell of ``grid`` (``grid.trials`` each) and return ``{"settings", "cells", "timing"}``."""
    from ..training import train_outcomes
    records = []
    compile_s = 0.0
    t0 = time.perf_counter()
    for labels, cell in grid.cells():
        timings: dict = {}
        t = time.perf_counter()
        out = train_outcomes(cell, 0, grid.trials, grid.seed, after_death=grid.after_death, timings=timings)
        rec = cell_record(labels, cell, out)
        rec["seconds"] = time.perf_counter() - t
        rec["compile_seconds"] = timings.get("compile_seconds", 0.0)
        compile_s += rec["compile_seconds"]
        records.append(rec)
        if progress:
            progress(1)
    return {"settings": grid.describe(), "cells": records,
            "timing": {"seconds": time.perf_counter() - t0, "compile_seconds": compile_s}}


def machine() -> dict:
    """Where it ran: CPU model (lscpu), core count, JAX version and devices."""
    import jax
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), model)
    except (OSError, subprocess.SubprocessError):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "jax": jax.__version__,
            "devices": [str(d) for d in jax.devices()], "load_average": list(os.getloadavg())}


# ---- reading the results ----------------------------------------------------------------------------------


def select(cells: Sequence[dict], **match) -> list[dict]:
    """The records whose fields equal every ``match`` value (floats compared with a relative 1e-9)."""
    def same(a, b):
        if isinstance(b, float) or isinstance(a, float):
            return a is not None and math.isclose(float(a), float(b), rel_tol=1e-9)
        return a == b
    return [c for c in cells if all(same(c.get(k), v) for k, v in match.items())]


def one(cells: Sequence[dict], **match) -> dict | None:
    found = select(cells, **match)
    return found[0] if found else None


def separated(a: dict, b: dict, key: str) -> int:
    """+1 if ``a``'s interval for ``key`` lies above ``b``'s, -1 if below, 0 if they overlap (or a value is
    missing). Intervals are ``key_ci_low/_ci_high`` (for ``dead_fraction``: ``dead_fraction_ci_*``)."""
    lo_key, hi_key = (("dead_fraction_ci_low", "dead_fraction_ci_high") if key == "dead_fraction_mean"
                      else (f"{key}_ci_low", f"{key}_ci_high"))
    if None in (a.get(lo_key), b.get(hi_key), a.get(hi_key), b.get(lo_key)):
        return 0
    if a[lo_key] > b[hi_key]:
        return 1
    if a[hi_key] < b[lo_key]:
        return -1
    return 0


def fmt(rec: dict | None, key: str = "p_dead_after_training", pct: bool = True) -> str:
    """``p [lo, hi]`` of ``key`` in a record (percent by default)."""
    if rec is None:
        return "-"
    lo_key, hi_key = (("dead_fraction_ci_low", "dead_fraction_ci_high") if key == "dead_fraction_mean"
                      else (f"{key}_ci_low", f"{key}_ci_high"))
    if rec.get(key) is None:
        return "n/a"
    f = 100.0 if pct else 1.0
    return f"{f * rec[key]:.0f} [{f * rec[lo_key]:.0f}, {f * rec[hi_key]:.0f}]"


def comparisons(cells: Sequence[dict], small: float, unit: float = 1.0) -> dict:
    """The three claims, as lists of paired comparisons (each with both records' values and ``separated``).

    * ``target``: for every (depth, residual, arm), std ``small`` against std ``unit``;
    * ``momentum``: for every (depth, residual) of the main arms and each std in {small, unit}, the largest
      momentum against momentum 0; and at equal steady step (step-matched arms against SGD beta = 0);
    * ``depth``: for every (residual, arm, std), the deepest against the shallowest network, and residual
      against plain at each (depth, arm, std).
    """
    keys = ("p_dead_after_training", "dead_fraction_mean", "p_some_block_dead")

    def pair(name, a, b, **labels):
        return {"what": name, **labels, "a": _short(a), "b": _short(b),
                **{f"sep_{k}": separated(a, b, k) for k in keys}}

    out = {"target": [], "momentum": [], "depth": [], "residual": []}
    shapes = sorted({(c["depth"], c["residual"], c["arm"]) for c in cells})
    for depth, res, arm in shapes:
        a, b = one(cells, depth=depth, residual=res, arm=arm, target_std=small), one(
            cells, depth=depth, residual=res, arm=arm, target_std=unit)
        if a and b:
            out["target"].append(pair(f"std {small:g} vs {unit:g}", a, b, depth=depth, residual=res, arm=arm))
    main = [c for c in cells if c["family"] == MAIN]
    for depth, res in sorted({(c["depth"], c["residual"]) for c in main}):
        moms = sorted({c["momentum"] for c in main if c["depth"] == depth and c["residual"] == res})
        for std in (small, unit):
            a = one(main, depth=depth, residual=res, momentum=moms[-1], target_std=std)
            b = one(main, depth=depth, residual=res, momentum=0.0, target_std=std)
            if a and b and moms[-1] > 0:
                out["momentum"].append(pair(f"beta {moms[-1]:g} vs 0", a, b, depth=depth, residual=res,
                                            target_std=std))
            for m in (c for c in cells if c["family"] == MATCHED and c["depth"] == depth
                      and c["residual"] == res and math.isclose(c["target_std"], std)):
                if b:
                    out["momentum"].append(pair(f"beta {m['momentum']:g} step-matched vs 0", m, b, depth=depth,
                                                residual=res, target_std=std))
    for res, arm, std in sorted({(c["residual"], c["arm"], c["target_std"]) for c in main}):
        depths = sorted(c["depth"] for c in select(main, residual=res, arm=arm, target_std=std))
        if len(depths) > 1:
            a, b = (one(main, residual=res, arm=arm, target_std=std, depth=d) for d in (depths[-1], depths[0]))
            out["depth"].append(pair(f"L_h {depths[-1]} vs {depths[0]}", a, b, residual=res, arm=arm,
                                     target_std=std))
    for depth, arm, std in sorted({(c["depth"], c["arm"], c["target_std"]) for c in main}):
        a, b = one(main, depth=depth, arm=arm, target_std=std, residual=True), one(
            main, depth=depth, arm=arm, target_std=std, residual=False)
        if a and b:
            out["residual"].append(pair("residual vs plain", a, b, depth=depth, arm=arm, target_std=std))
    return out


def _short(rec: dict) -> dict:
    keep = ("depth", "residual", "arm", "target_std", "p_dead_after_training", "p_dead_after_training_ci_low",
            "p_dead_after_training_ci_high", "dead_fraction_mean", "dead_fraction_ci_low", "dead_fraction_ci_high",
            "p_some_block_dead", "p_some_block_dead_ci_low", "p_some_block_dead_ci_high", "p_diverged")
    return {k: rec.get(k) for k in keep}


def tally(pairs: Sequence[dict], key: str) -> dict:
    """How many comparisons have ``a`` above ``b`` / below / overlapping for ``key``."""
    s = [p[f"sep_{key}"] for p in pairs]
    return {"above": s.count(1), "below": s.count(-1), "overlap": s.count(0), "n": len(s)}


def text_table(cells: Sequence[dict]) -> str:
    """One line per cell: P(dead after training), dead fraction, P(some block dead), P(diverged), percent."""
    lines = [f"{'L_h':>3} {'res':>3} {'arm':<42} {'std':>7}  {'P(dead) %':>14} {'dead ReLUs %':>14} "
             f"{'block dead %':>14} {'div %':>5}"]
    for c in cells:
        lines.append(f"{c['depth']:>3} {'yes' if c['residual'] else 'no':>3} {c['arm']:<42} {c['target_std']:>7g}  "
                     f"{fmt(c):>14} {fmt(c, 'dead_fraction_mean'):>14} {fmt(c, 'p_some_block_dead'):>14} "
                     f"{100 * (c['p_diverged'] or 0):>5.0f}")
    return "\n".join(lines)


# ---- the command line ---------------------------------------------------------------------------------------

# single-ReLU maps (``single_relu.run_study`` arguments)
SINGLE_RELU_FULL = {"scales": (0.01, 0.1, 1.0, 10.0), "momenta": (0.0, 0.5, 0.9, 0.99), "eta": 0.05, "steps": 1000,
                    "n": 41, "lim": 2.0}
SINGLE_RELU_QUICK = {"scales": (0.01, 1.0), "momenta": (0.0, 0.99), "eta": 0.05, "steps": 300, "n": 9, "lim": 2.0,
                     "matched": False}
NAME = "paper3_target_momentum"


def summarize(results: dict) -> dict:
    """Tallies of the claims' comparisons (see ``comparisons``) at the smallest std against std 1."""
    stds = sorted({c["target_std"] for c in results["cells"]})
    if not stds or 1.0 not in stds:
        return {}
    comp = comparisons(results["cells"], stds[0], 1.0)
    tallies = {name: {k: tally(pairs, k) for k in ("p_dead_after_training", "dead_fraction_mean",
                                                    "p_some_block_dead")} for name, pairs in comp.items()}
    return {"small_std": stds[0], "comparisons": comp, "tallies": tallies}


def main(argv: list[str] | None = None) -> int:
    """``paper3_target_momentum.py [--quick] [--out DIR] [--results PATH] [--json] [--from-json PATH]``."""
    import argparse
    import json
    import sys
    os.environ.setdefault("JAX_NUM_CPU_DEVICES", str(os.cpu_count() or 1))
    ap = argparse.ArgumentParser(description="Paper 3 (Arnekvist et al. 2020): dead ReLUs against target std, "
                                             "momentum, depth, plain vs residual; and the single-ReLU model.")
    ap.add_argument("--quick", action="store_true", help="a small run for CI (one shape, few cells and steps)")
    ap.add_argument("--out", default=None, help="figures folder (default figures/paper3[_quick])")
    ap.add_argument("--results", default=None, help=f"results JSON (default results/{NAME}[_quick].json)")
    ap.add_argument("--from-json", default=None, metavar="PATH", help="redraw the figures from a results JSON")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    args = ap.parse_args(argv)
    suffix = "_quick" if args.quick else ""
    out = args.out or os.path.join("figures", "paper3" + suffix)

    from ..figures.paper3 import draw_all
    if args.from_json:
        with open(args.from_json) as f:
            results = json.load(f)
        results["summary"] = summarize(results)
    else:
        from ..progress import Progress
        from . import single_relu
        grid = QUICK if args.quick else FULL
        t0 = time.perf_counter()
        with Progress(len(grid.cells()), "paper 3 cells", unit="cells") as bar:
            results = run_study(grid, progress=bar)
        t1 = time.perf_counter()
        results["single_relu"] = single_relu.run_study(**(SINGLE_RELU_QUICK if args.quick else SINGLE_RELU_FULL))
        results["timing"]["single_relu_seconds"] = time.perf_counter() - t1
        results["timing"]["total_seconds"] = time.perf_counter() - t0
        results.update({"name": NAME, "quick": args.quick, "machine": machine()})
        results["summary"] = summarize(results)
        path = args.results or os.path.join("results", f"{NAME}{suffix}.json")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(results, f)
        results["results_file"] = path
    results["figures"] = draw_all(results, out)
    if args.json:
        json.dump(results, sys.stdout)
        print()
        return 0
    print(text_table(results["cells"]))
    for name, per_key in results.get("summary", {}).get("tallies", {}).items():
        print(f"{name}: " + "; ".join(f"{k}: a above b {t['above']}, below {t['below']}, overlap {t['overlap']}"
                                      for k, t in per_key.items()))
    for m in results.get("single_relu", {}).get("maps", []):
        print(f"single ReLU s={m['target_std']:g} {m['label']}: died {100 * m['p_died_of_alive_starts']:.1f} % of "
              f"live starts (oscillating at optimum: {_pct(m['p_died_where_oscillating'])}, not: "
              f"{_pct(m['p_died_where_not_oscillating'])}); median eta*lam_b1 {m['eta_lam_b1_median_alive_starts']:.3g}")
    t = results.get("timing", {})
    if t:
        print(f"time: {t.get('total_seconds', t['seconds']):.0f} s (compile {t['compile_seconds']:.0f} s, single ReLU "
              f"{t.get('single_relu_seconds', 0):.0f} s)")
    print("figures: " + ", ".join(p for p in results["figures"] if p.endswith(".png")))
    return 0


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"
