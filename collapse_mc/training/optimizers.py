"""Optimizers through optax, built from traced hyperparameters.

``make_optimizer(static, values)`` is called *inside* the compiled per-trial function with ``values`` (lr,
momentum, beta1, beta2) as traced scalars, so cells that differ only in those share one compilation (the
equivalent of ``optax.inject_hyperparams``, without storing the values in the optimizer state).

* ``adam``:     optax.adam(lr, b1=beta1, b2=beta2)
* ``sgd``:      optax.sgd(lr, momentum) -- heavy ball: t <- g + momentum t, theta <- theta - lr t
* ``nesterov``: optax.sgd(lr, momentum, nesterov=True)
* ``rmsprop``:  optax.rmsprop(lr, decay=beta2, momentum=momentum)

Schedules: ``constant`` or ``cosine`` (lr (1 + cos(pi min(t, steps) / steps)) / 2 at update t).
"""
from __future__ import annotations

import jax.numpy as jnp
import optax


def learning_rate(static, lr):
    """A constant (traced) learning rate or an optax schedule ``count -> lr`` built on it."""
    if static.schedule == "constant":
        return lr
    if static.schedule == "cosine":
        steps = float(static.steps)
        return lambda count: lr * 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.minimum(count, steps) / steps))
    raise ValueError(f"unknown schedule {static.schedule!r}")


def make_optimizer(static, values) -> optax.GradientTransformation:
    """The optax transformation for ``static.optimizer`` with traced hyperparameters ``values``."""
    lr = learning_rate(static, values["lr"])
    kind = static.optimizer
    if kind == "adam":
        return optax.adam(lr, b1=values["beta1"], b2=values["beta2"])
    if kind == "sgd":
        return optax.sgd(lr, momentum=values["momentum"])
    if kind == "nesterov":
        return optax.sgd(lr, momentum=values["momentum"], nesterov=True)
    if kind == "rmsprop":
        return optax.rmsprop(lr, decay=values["beta2"], momentum=values["momentum"])
    raise ValueError(f"unknown optimizer {kind!r}")
