"""Example fits: what chosen trials of a trained cell compute after training, on a grid of the domain.

Re-trains the chosen trials from their keys (the same ``TrainProgram`` and ``fold_in(seed, cell, trial)`` keys
as ``train_outcomes``, so they are the same networks the Monte Carlo classified) and evaluates them on a grid.
Used for the example-fits figure (a collapsed and a successful network against the target).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .. import rng
from .config import TrainCell
from .targets import dense_grid
from .trainer import ONCE_COMPILER_OPTIONS, _program, values_array


def trained_predictions(cell: TrainCell, trials, seed: int = 0, points: int = 401, optimizer=None):
    """``(x (P, d_in), target (P, d_out), outputs (len(trials), P, d_out))``: the trained networks of the given
    global trial indices evaluated on ``dense_grid(d_in, half_width, points)``; the target is as trained
    (after any scaling)."""
    prog = _program(cell.network, cell.init, cell.train.static_part(), optimizer)
    grid = jnp.asarray(dense_grid(cell.network.d_in, cell.train.half_width, points))
    values = values_array(cell)
    root = rng.cell_key(seed, cell.cell)

    def one(trial):
        key = rng.trial_key(root, trial)
        state = prog.trained(key, values)[0]
        return prog.model.apply({"params": state.params}, grid)

    options = ONCE_COMPILER_OPTIONS if jax.local_devices()[0].platform == "cpu" else None  # a few trials: compile fast
    outputs = jax.jit(jax.vmap(one), compiler_options=options)(jnp.asarray(np.asarray(trials, np.int32)))
    shift, factor = prog.transform(values)
    target = (prog.target(grid).reshape(len(grid), cell.network.d_out) - shift) * factor
    return np.asarray(grid), np.asarray(target), np.asarray(outputs)


def choose_examples(outcomes: dict) -> dict[str, int]:
    """Global trial indices of one collapsed trial (the first) and one trained trial (the lowest test error),
    from per-trial outcomes with ``trial``, ``collapsed``, ``diverged``, ``test_rel_l2``; missing kinds are
    left out."""
    trial = np.asarray(outcomes["trial"])
    collapsed = np.asarray(outcomes["collapsed"]).astype(bool)
    ok = ~collapsed & ~np.asarray(outcomes.get("diverged", np.zeros_like(collapsed))).astype(bool)
    chosen = {}
    if collapsed.any():
        chosen["collapsed"] = int(trial[np.flatnonzero(collapsed)[0]])
    if ok.any():
        err = np.where(ok, np.asarray(outcomes["test_rel_l2"], np.float64), np.inf)
        chosen["trained"] = int(trial[np.argmin(err)])
    return chosen


def example_fit(cell: TrainCell, outcomes: dict, seed: int, title: str | None = None, points: int = 401) -> dict | None:
    """The JSON-able example-fit artifact of a 1-D cell (``None`` when d_in != 1 or no trial qualifies):
    ``{"x", "target", "fits": [[label, y], ...], "title"}`` for output 1."""
    if cell.network.d_in != 1:
        return None
    chosen = choose_examples(outcomes)
    if not chosen:
        return None
    x, target, outputs = trained_predictions(cell, list(chosen.values()), seed, points)
    err = dict(zip(np.asarray(outcomes["trial"]).tolist(), np.asarray(outcomes["test_rel_l2"]).tolist()))
    fits = []
    for (kind, trial), y in zip(chosen.items(), outputs):
        label = (f"collapsed (trial {trial})" if kind == "collapsed"
                 else f"trained (trial {trial}, relative L2 error {err[trial]:.2g})")
        fits.append([label, y[:, 0].tolist()])
    n, t = cell.network, cell.train
    return {"x": x[:, 0].tolist(), "target": target[:, 0].tolist(), "fits": fits,
            "title": title or (f"{n.width} wide, {n.depth} hidden layers (= {n.layers} layers), {cell.init.weights}, "
                               f"{t.loss.upper()}, {t.steps} steps")}
