"""One JSON-able record per training cell: settings, counts, probabilities with Wilson intervals, constants.

Probabilities: ``p_born_dead`` (at initialization), ``p_collapse`` (after training; also as plain ``p``,
``ci_low``, ``ci_high``) and ``p_diverged``, each with its 95 % Wilson interval ``<name>_ci_low/_ci_high``.
``collapse_value_median`` / ``_mean``: per output, over collapsed trials (None when there are none);
``target_mean`` / ``target_median`` / ``target_std``: per output, population values of the trained (possibly
scaled) target, which MSE / L1 collapse to. Lists always have d_out entries. No NaN appears (None instead).
"""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np

from ..estimates import wilson
from .config import TrainCell
from .targets import target_name, target_stats
from .trainer import TrainOutcomes, train_outcomes


def _f(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _median(a: np.ndarray) -> float | None:
    a = np.asarray(a, np.float64)
    a = a[np.isfinite(a)]
    return _f(np.median(a)) if a.size else None


def trained_target_stats(cell: TrainCell) -> dict:
    """Population mean / median / std per output of the target as trained (after scaling / normalization)."""
    t = cell.train
    s = target_stats(t.target, t.half_width)
    mean, med, std = (np.asarray(v, np.float64) for v in (s.mean, s.median, s.std))
    shift = mean if t.normalize_target else np.zeros_like(mean)
    if t.normalize_target or t.target_scale is not None:
        scale = 1.0 if t.target_scale is None else t.target_scale
        factor = scale / std
    else:
        factor = np.ones_like(mean)
    return {"target_mean": ((mean - shift) * factor).tolist(), "target_median": ((med - shift) * factor).tolist(),
            "target_std": (std * np.abs(factor)).tolist()}


def summarize_training(cell: TrainCell, outcomes: TrainOutcomes, seconds: float | None = None) -> dict:
    """Settings, counts, Wilson intervals and per-output constants for one cell (see the module docstring)."""
    n, init, t = cell.network, cell.init, cell.train
    o = outcomes
    trials = int(o.collapsed.shape[0])
    k_dead, k_col, k_div = int(o.born_dead.sum()), int(o.collapsed.sum()), int(o.diverged.sum())
    alive_trained = ~o.collapsed & ~o.diverged
    rec = {
        "width": n.width, "depth": n.depth, "layers": n.layers, "d_in": n.d_in, "d_out": n.d_out,
        "activation": n.activation, "residual": n.residual, "init": init.weights,
        "bias": "rai" if init.weights == "rai" else init.bias, "bias_value": init.bias_value,
        "target": target_name(t.target), "loss": t.loss, "optimizer": t.optimizer, "lr": t.lr,
        "momentum": t.momentum, "beta1": t.beta1, "beta2": t.beta2, "steps": t.steps,
        "batch_size": None if t.full_batch else t.batch_size, "n_train": t.n_train, "target_scale": t.target_scale,
        "normalize_target": t.normalize_target, "schedule": t.schedule, "half_width": t.half_width,
        "test_points": t.test_points, "collapse_rtol": t.collapse_rtol, "cell": cell.cell,
        "trials": trials, "born_dead": k_dead, "collapsed": k_col, "diverged": k_div,
        "trained": int(alive_trained.sum()),
        "collapsed_not_born_dead": int((o.collapsed & ~o.born_dead).sum()),
    }
    for name, k in (("p_born_dead", k_dead), ("p_collapse", k_col), ("p_diverged", k_div)):
        w = wilson(k, trials)
        rec[name], rec[f"{name}_ci_low"], rec[f"{name}_ci_high"] = w.p, w.ci_low, w.ci_high
    rec["p"], rec["ci_low"], rec["ci_high"] = rec["p_collapse"], rec["p_collapse_ci_low"], rec["p_collapse_ci_high"]
    cv = o.collapse_value[o.collapsed]
    rec["collapse_value_median"] = [_median(cv[:, j]) for j in range(n.d_out)] if k_col else [None] * n.d_out
    rec["collapse_value_mean"] = [_f(np.mean(cv[:, j], dtype=np.float64)) for j in range(n.d_out)] if k_col \
        else [None] * n.d_out
    rec.update(trained_target_stats(cell))
    ok = ~o.diverged
    rec["final_loss_median"] = _median(o.final_loss[ok])
    rec["test_rel_l2_median"] = _median(o.test_rel_l2[ok])
    rec["test_rel_l2_median_trained"] = _median(o.test_rel_l2[alive_trained])
    rec["dead_fraction_per_layer"] = [
        _f(v) for v in (o.dead_fraction[ok].mean(axis=0) if ok.any() else np.full(n.depth, np.nan))]
    if seconds is not None:
        rec["seconds"] = seconds
        rec["net_steps_per_second"] = trials * t.steps / seconds if seconds > 0 else None
        rec["nets_per_second"] = trials / seconds if seconds > 0 else None
    return rec


def estimate_training(cell: TrainCell, trials: int, seed: int = 0, *, chunk_size: int | None = None, devices=None,
                      progress: Callable[[int], None] | None = None, optimizer=None) -> dict:
    """Train trials ``0 .. trials - 1`` and summarize (``seconds`` includes compilation)."""
    t0 = time.perf_counter()
    out = train_outcomes(cell, 0, trials, seed, chunk_size=chunk_size, devices=devices, progress=progress,
                         optimizer=optimizer)
    return summarize_training(cell, out, time.perf_counter() - t0)
