"""One JSON-able record per training cell: settings, counts, probabilities with Wilson intervals, constants.

Probabilities (see ``probabilities`` for their denominators): ``p_born_dead`` (at initialization),
``p_near_flat_at_init``, ``p_dead_after_training``, ``p_collapse`` (after training; also as plain ``p``,
``ci_low``, ``ci_high``) and ``p_diverged``, each with its 95 % Wilson interval ``<name>_ci_low/_ci_high``;
``died_at_step_median`` over the trials that died in training (not born dead).
``collapse_value_median`` / ``_mean``: per output, over collapsed trials trained to the end (None when there
are none);
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
from ..nets.initializers import WEIGHT_INIT_REGISTRY
from .losses import LOSSES
from .optimizers import OPTIMIZERS, optimizer_identity
from .trainer import TrainOutcomes, train_outcomes


def _f(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _median(a: np.ndarray) -> float | None:
    a = np.asarray(a, np.float64)
    a = a[np.isfinite(a)]
    return _f(np.median(a)) if a.size else None


def trained_target_stats(cell: TrainCell) -> dict:
    """Population mean / median / std per output of the target as trained (after scaling / normalization; with
    a regression data set: of its test targets; with classification data: None)."""
    t = cell.train
    if cell.data is not None:
        if cell.data.task == "classification":
            return {"target_mean": None, "target_median": None, "target_std": None}
        y = np.asarray(cell.data.y_test, np.float64)
        return {"target_mean": y.mean(axis=0).tolist(), "target_median": np.median(y, axis=0).tolist(),
                "target_std": y.std(axis=0).tolist()}
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


def outcome_counts(o: TrainOutcomes) -> dict:
    """Counts over trials. ``decided``: trials whose collapse outcome is known, i.e. all but those that
    diverged while alive (a dead trial is collapsed whatever happens later, diverged or not)."""
    undecided = o.diverged & ~o.dead_after_training
    return {"trials": int(o.born_dead.shape[0]), "born_dead": int(o.born_dead.sum()),
            "collapsed": int(o.collapsed.sum()), "diverged": int(o.diverged.sum()),
            "dead_after_training": int(o.dead_after_training.sum()),
            "near_flat_at_init": int(o.near_flat_at_init.sum()), "decided": int((~undecided).sum())}


def probabilities(counts: dict) -> dict:
    """Wilson estimates ``p_<name>``, ``p_<name>_ci_low``, ``p_<name>_ci_high`` from ``outcome_counts``.

    Denominators: all trials for born dead, near flat at initialization and diverged; the *decided* trials
    (all but those that diverged while alive) for collapse and dead after training, so a diverged network
    counts neither as collapsed nor as not collapsed. None where the denominator is 0 (e.g. every trial
    diverged while alive).
    """
    n, decided = counts["trials"], counts["decided"]
    rec = {}
    for name, k, d in (("p_born_dead", counts["born_dead"], n), ("p_collapse", counts["collapsed"], decided),
                       ("p_dead_after_training", counts["dead_after_training"], decided),
                       ("p_near_flat_at_init", counts["near_flat_at_init"], n),
                       ("p_diverged", counts["diverged"], n)):
        w = wilson(k, d) if d else None
        rec[name], rec[f"{name}_ci_low"], rec[f"{name}_ci_high"] = (w.p, w.ci_low, w.ci_high) if w else (None,) * 3
    return rec


def summarize_training(cell: TrainCell, outcomes: TrainOutcomes, seconds: float | None = None,
                       optimizer=None) -> dict:
    """Settings, counts, Wilson intervals and per-output constants for one cell (see the module docstring).

    ``optimizer``: the optax optimizer that ran instead of the configured one, if any: it is recorded as
    ``optimizer = "custom:<name>"`` with ``optimizer_hash`` (``optimizers.optimizer_identity``), and the
    configured ``lr``, ``momentum``, ``beta1``, ``beta2`` (which did not run) as None.
    """
    n, init, t = cell.network, cell.init, cell.train
    o = outcomes
    counts = outcome_counts(o)
    trials = counts["trials"]
    alive_trained = ~o.collapsed & ~o.diverged
    rec = {
        "width": n.width, "depth": n.depth, "layers": n.layers, "d_in": n.d_in, "d_out": n.d_out,
        "activation": n.activation, "residual": n.residual, "init": WEIGHT_INIT_REGISTRY.label(init.weights),
        "init_hash": WEIGHT_INIT_REGISTRY.identity(init.weights)["hash"],
        "bias": "rai" if init.weights == "rai" else init.bias, "bias_value": init.bias_value,
        "target": target_name(t.target), "loss": LOSSES.label(t.loss), "loss_hash": LOSSES.identity(t.loss)["hash"],
        "optimizer": OPTIMIZERS.label(t.optimizer), "optimizer_hash": OPTIMIZERS.identity(t.optimizer)["hash"],
        **({"optimizer_options": dict(t.optimizer_options)} if t.optimizer_options else {}), "lr": t.lr,
        "momentum": t.momentum, "beta1": t.beta1, "beta2": t.beta2, "steps": t.steps,
        "batch_size": None if t.full_batch else t.batch_size, "n_train": t.n_train, "target_scale": t.target_scale,
        "normalize_target": t.normalize_target, "schedule": t.schedule, "half_width": t.half_width,
        "test_points": t.test_points, "collapse_rtol": t.collapse_rtol, "cell": cell.cell,
        **{k: v for k, v in cell.identity().items() if k in ("model", "data")},
        **counts, "trained": int(alive_trained.sum()),
        "fit_within_10pct": int((alive_trained & (o.test_rel_l2 <= 0.1)).sum()),
        "collapsed_not_born_dead": int((o.collapsed & ~o.born_dead).sum()),
        "died_in_training": int((o.dead_after_training & ~o.born_dead).sum()),
    }
    if optimizer is not None:
        ident = optimizer_identity(optimizer)
        rec.update(optimizer=f"custom:{ident['name']}", optimizer_hash=ident["hash"], lr=None, momentum=None,
                   beta1=None, beta2=None)
        rec.pop("optimizer_options", None)
    rec.update(probabilities(counts))
    rec["p"], rec["ci_low"], rec["ci_high"] = rec["p_collapse"], rec["p_collapse_ci_low"], rec["p_collapse_ci_high"]
    died = o.died_at_step[(o.died_at_step > 0) & ~o.born_dead]
    rec["died_at_step_median"] = _median(died) if died.size else None
    measured = o.collapsed & o.trained_to_end
    cv = o.collapse_value[measured]
    k_col = int(measured.sum())
    rec["collapse_value_median"] = [_median(cv[:, j]) for j in range(n.d_out)] if k_col else [None] * n.d_out
    rec["collapse_value_mean"] = [_f(np.nanmean(cv[:, j], dtype=np.float64)) if np.isfinite(cv[:, j]).any()
                                  else None for j in range(n.d_out)] if k_col else [None] * n.d_out
    rec["stopped_at_death"] = int((~o.trained_to_end).sum())
    rec.update(trained_target_stats(cell))
    ok = ~o.diverged & o.trained_to_end
    rec["final_loss_median"] = _median(o.final_loss[ok])
    rec["test_rel_l2_median"] = _median(o.test_rel_l2[ok])
    rec["test_rel_l2_median_trained"] = _median(o.test_rel_l2[alive_trained])
    rec["dead_fraction_per_layer"] = [
        _f(v) for v in (o.dead_fraction[ok].mean(axis=0) if ok.any() else np.full(o.dead_fraction.shape[1], np.nan))]
    if cell.data is not None:
        rec.update(target="data", n_train=cell.data.n_train, half_width=None, test_points=cell.data.n_test)
        if cell.data.task == "classification":
            acc = o.test_accuracy[~o.diverged]
            rec["test_accuracy_median"] = _median(acc)
            rec["test_accuracy_mean"] = _f(acc.mean()) if acc.size else None
            rec["test_accuracy_quartiles"] = ([_f(q) for q in np.quantile(acc, [0.25, 0.5, 0.75])] if acc.size
                                              else None)
    if seconds is not None:
        rec["seconds"] = seconds
        rec["net_steps_per_second"] = trials * t.steps / seconds if seconds > 0 else None
        rec["nets_per_second"] = trials / seconds if seconds > 0 else None
    return rec


def estimate_training(cell: TrainCell, trials: int, seed: int = 0, *, chunk_size: int | None = None, devices=None,
                      progress: Callable[[int], None] | None = None, optimizer=None, after_death: str = "train") -> dict:
    """Train trials ``0 .. trials - 1`` and summarize. ``seconds`` includes compilation; ``compile_seconds``
    and ``run_seconds`` split it."""
    t0 = time.perf_counter()
    timings: dict = {}
    out = train_outcomes(cell, 0, trials, seed, chunk_size=chunk_size, devices=devices, progress=progress,
                         optimizer=optimizer, after_death=after_death, timings=timings)
    rec = summarize_training(cell, out, time.perf_counter() - t0, optimizer=optimizer)
    rec.update(timings)
    return rec
