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


def optimizer_identity(opt: optax.GradientTransformation) -> dict:
    """What a user-supplied optax optimizer is, for the record: ``{"name", "hash"}``. The name is the optax
    transformation that built it, a chain by its links (``optax.sgd(lr, momentum)`` is
    ``trace+scale``); the hash is SHA-256 (16 hex digits) of the qualified
    names and captured constants of its ``init``/``update`` closures, so two optimizers with different
    hyperparameters get different hashes."""
    import hashlib

    def describe(fn, depth=0):
        parts = [getattr(fn, "__module__", ""), getattr(fn, "__qualname__", type(fn).__name__)]
        for cell in getattr(fn, "__closure__", None) or ():
            try:
                v = cell.cell_contents
            except ValueError:
                continue
            if callable(v) and depth < 4:
                parts.append(describe(v, depth + 1))
            elif isinstance(v, (tuple, list)) and depth < 4:
                parts.append("[" + ",".join(describe(x, depth + 1) if callable(x) else repr(x) for x in v) + "]")
            else:
                parts.append(repr(v))
        return "(" + ";".join(parts) + ")"

    def name_of(update) -> str:
        base = getattr(update, "__qualname__", "custom").split(".<locals>")[0]
        inner = [c.cell_contents for c in getattr(update, "__closure__", None) or ()]
        if base == "chain":  # optax aliases are chains: name their links
            links = next((v for v in inner if isinstance(v, (tuple, list)) and v and all(map(callable, v))), ())
            return "+".join(name_of(getattr(t, "update", t)) for t in links) or base
        if base.startswith("with_extra_args"):  # optax's wrapper around a link's update
            return next((name_of(getattr(v, "update", v)) for v in inner if hasattr(v, "update") or callable(v)),
                        base)
        return base

    name = name_of(opt.update)
    text = describe(opt.init) + describe(opt.update)
    return {"name": name, "hash": hashlib.sha256(text.encode()).hexdigest()[:16]}
