"""Classifying one network: born dead at initialization, and collapsed / diverged after training.

* **born dead** (``first_dead_layer > 0``): at initialization some hidden layer's output is the same at every
  probe point of the domain (all-zero for ReLU). Probes as in ``deadness.probes``: the exact two points
  x = +1, -1 when d_in = 1 with zero biases, else a grid of ``test_points`` points (d_in 1), a
  ceil(sqrt(test_points))^2 grid (d_in 2) or ``test_points`` samples (d_in >= 3).
* **diverged**: a non-finite training loss at some step, non-finite final parameters, loss or outputs. Its
  own category: a diverged trial is never collapsed.
* **flat**: not diverged, and for every output the spread (max - min) of the trained network's output over
  the dense test grid (``targets.dense_grid``) is at most ``collapse_rtol`` times the trained target's
  population standard deviation. The constant recorded is the output's mean over the grid. (The driver
  counts a trial as **collapsed** when it is flat or dead after training: dead implies collapsed.)

Also per trial: the final training loss, the relative L2 error on the test grid
``sqrt(sum (f_net - f)^2 / sum f^2)`` and the fraction of dead neurons per hidden layer after training (dead:
pre-activation <= 0 at every test-grid point; NaN for a diverged trial, whose activations are not numbers).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ..nets.observe import first_true_layer


def first_dead_layer(constant: jax.Array) -> jax.Array:
    """1-based index of the first hidden layer constant over the probes (``constant (L,) bool`` from
    ``forward.deadness_t``), 0 if none (int32 scalar)."""
    return first_true_layer(constant)


def all_finite(tree) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def classify_trained(y: jax.Array, dead: jax.Array, constant: jax.Array, params: dict, target_on_grid: jax.Array,
                     target_std: jax.Array, rtol: float, finite: jax.Array, units=None) -> dict:
    """Outcomes of one trained network from its output and deadness report on the test grid.

    ``y (P, d_out)``: the output on the grid; ``dead (L,)``, ``constant (L,)``: ``forward.deadness_t``'s
    report there; ``target_on_grid (P, d_out)`` (the trained, i.e. scaled, target), ``target_std (d_out,)``
    its population standard deviation, ``finite``: no non-finite loss during training, ``units``: neurons per
    hidden layer (scalar or ``(L,)``; default the built-in MLP's width). Returns ``diverged``,
    ``flat`` (bool scalars), ``collapse_value (d_out,)`` (the output's mean over the grid; NaN when diverged),
    ``test_rel_l2`` (scalar), ``dead_fraction (L,)`` (NaN when diverged) and ``dead_on_grid`` (some hidden
    layer constant on the grid).
    """
    ok = finite & all_finite(params) & jnp.all(jnp.isfinite(y))
    spread = jnp.max(y, axis=0) - jnp.min(y, axis=0)
    flat = ok & jnp.all(spread <= rtol * target_std)
    value = jnp.where(ok, jnp.mean(y, axis=0), jnp.nan)
    rel = jnp.sqrt(jnp.sum(jnp.square(y - target_on_grid)) / jnp.sum(jnp.square(target_on_grid)))
    width = params["input"].shape[-1] if units is None else units
    return {"diverged": ~ok, "flat": flat, "collapse_value": value.astype(jnp.float32),
            "test_rel_l2": rel.astype(jnp.float32),
            "dead_fraction": jnp.where(ok, dead.astype(jnp.float32) / width, jnp.nan),
            "dead_on_grid": ok & jnp.any(constant)}


def classify_labels(logits: jax.Array, dead: jax.Array, constant: jax.Array, params, labels: jax.Array,
                    units: jax.Array, finite: jax.Array) -> dict:
    """``classify_trained`` for classification: ``logits (P, C)`` and integer ``labels (P,)`` on the test set.
    ``flat``: the predicted class (argmax) is the same at every test point (a constant prediction);
    ``test_accuracy``: the fraction predicted right; ``collapse_value``: the mean logits; ``test_rel_l2``: NaN."""
    ok = finite & all_finite(params) & jnp.all(jnp.isfinite(logits))
    pred = jnp.argmax(logits, axis=-1)
    return {"diverged": ~ok, "flat": ok & jnp.all(pred == pred[0]),
            "collapse_value": jnp.where(ok, jnp.mean(logits, axis=0), jnp.nan).astype(jnp.float32),
            "test_rel_l2": jnp.float32(jnp.nan),
            "test_accuracy": jnp.where(ok, jnp.mean(pred == labels), jnp.nan).astype(jnp.float32),
            "dead_fraction": jnp.where(ok, dead.astype(jnp.float32) / units, jnp.nan),
            "dead_on_grid": ok & jnp.any(constant)}
