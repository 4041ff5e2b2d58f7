"""Optimizers through optax, built from traced hyperparameters.

``make_optimizer(static, values)`` is called *inside* the compiled per-trial function with ``values`` (lr,
momentum, beta1, beta2 and the float ``optimizer_options``) as traced scalars, so cells that differ only in
those share one compilation (the equivalent of ``optax.inject_hyperparams``, without storing the values in
the optimizer state).

The registry ``OPTIMIZERS`` (name -> optax alias) holds four built-in names with their own settings:

* ``adam``:     optax.adam(lr, b1=beta1, b2=beta2)
* ``sgd``:      optax.sgd(lr, momentum) -- heavy ball: t <- g + momentum t, theta <- theta - lr t
* ``nesterov``: optax.sgd(lr, momentum, nesterov=True)
* ``rmsprop``:  optax.rmsprop(lr, decay=beta2, momentum=momentum)

and every other optax alias by its optax name (``adamw``, ``lion``, ``lamb``, ``adagrad``, ...; not
``lbfgs``, whose update needs the loss function): ``optax.<name>(lr, **optimizer_options)``. A Python
callable ``factory(learning_rate, **optimizer_options) -> GradientTransformation`` is accepted too.
``optimizer_options`` are the alias's keyword arguments (``weight_decay = 1e-4``); float options are traced,
integer, boolean and string options are part of the compiled program.

Schedules: ``constant`` or ``cosine`` (lr (1 + cos(pi min(t, steps) / steps)) / 2 at update t).
"""
from __future__ import annotations

import inspect

import jax.numpy as jnp
import optax

from ..registry import Registry

# the built-in names: which TrainConfig values each reads, and the optax keywords those fill
BUILTIN_VALUES = {"adam": ("lr", "beta1", "beta2"), "sgd": ("lr", "momentum"), "nesterov": ("lr", "momentum"),
                  "rmsprop": ("lr", "beta2", "momentum")}
BUILTIN_KEYWORDS = {"adam": ("b1", "b2"), "sgd": ("momentum", "nesterov"), "nesterov": ("momentum", "nesterov"),
                    "rmsprop": ("decay", "momentum")}
NOT_SUPPORTED = ("lbfgs",)  # its update needs the loss value and function (optax's extra arguments)
NOT_OPTIONS = ("mask",)  # takes a pytree or a function, which a spec or the command line cannot give
TRACED = "<traced>"  # stands for a float option's value in the static (compiled) part


def _optax_aliases() -> dict:
    """Every optax alias ``name(learning_rate, ...) -> GradientTransformation`` by its name."""
    out = {}
    for name in sorted(dir(optax)):
        fn = getattr(optax, name)
        if (name.startswith("_") or name in NOT_SUPPORTED or not inspect.isfunction(fn)
                or not fn.__module__.startswith("optax._src.alias")):
            continue
        params = list(inspect.signature(fn).parameters)
        if params and params[0] == "learning_rate":
            out[name] = fn
    return out


OPTIMIZERS = Registry("optimizer", {**_optax_aliases(), "nesterov": optax.sgd})


def option_names(optimizer) -> tuple[str, ...] | None:
    """The keyword options ``optimizer`` (a name or a factory) accepts besides the learning rate and the
    built-in names' own settings; None when it takes ``**kwargs`` (anything goes)."""
    fn = OPTIMIZERS.resolve(optimizer)
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    taken = ("learning_rate",) + (BUILTIN_KEYWORDS.get(optimizer, ()) if isinstance(optimizer, str) else ())
    return tuple(n for n, p in params.items() if n not in taken and n not in NOT_OPTIONS
                 and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))


def static_options(options: tuple) -> tuple:
    """The compiled part of ``optimizer_options``: float values replaced by ``TRACED``."""
    return tuple((k, TRACED if isinstance(v, float) else v) for k, v in options)


def option_values(options: tuple) -> dict[str, float]:
    """The traced part of ``optimizer_options``: ``{"opt:<name>": value}`` for the float options."""
    return {f"opt:{k}": v for k, v in options if isinstance(v, float)}


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
    options = {k: values[f"opt:{k}"] if v == TRACED else v for k, v in getattr(static, "optimizer_options", ())}
    if kind == "adam":
        return optax.adam(lr, b1=values["beta1"], b2=values["beta2"], **options)
    if kind == "sgd":
        return optax.sgd(lr, momentum=values["momentum"], **options)
    if kind == "nesterov":
        return optax.sgd(lr, momentum=values["momentum"], nesterov=True, **options)
    if kind == "rmsprop":
        return optax.rmsprop(lr, decay=values["beta2"], momentum=values["momentum"], **options)
    return OPTIMIZERS.resolve(kind)(lr, **options)


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
