"""Observing hidden layers: the convention a model follows so collapse_mc can test it for deadness, and the one
deadness test every path uses.

**Convention.** A Flax (linen) module exposes its hidden layers by ``self.sow("intermediates", name, h)`` with
each hidden layer's output ``h`` as the next layer sees it, points first: a leaf ``(P, units)`` is one layer,
a leaf ``(K, P, units)`` is K layers stacked (as ``nn.scan`` or a stacked sow gives). Layers are counted in
the order of ``jax.tree.leaves`` of the collection: sow every layer under one name, in order (``sow`` appends
to a tuple), and the order is the call order (layer 1 = the first hidden layer). Sowing costs nothing unless
the collection is asked for (``mutable=["intermediates"]``). Flatten feature maps (``h.reshape(P, -1)``)
before sowing.

**The test** (``layer_report``): over P points a hidden layer is

* *constant* when its output is the same at every point (the network above it is then a constant function
  of the input). Constancy, not zeros: a layer can be constant without being zero (a positive bias with all
  weights' contributions zero, as RAI can give). With a single point "the same at every point" is vacuous,
  so the layer counts as constant when its output is all-zero there;
* a neuron is *dead* when its pre-activation is <= 0 at every point (when the caller has it, as the built-in
  training path does) or else its output is 0 at every point (the same for a plain ReLU layer).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

COLLECTION = "intermediates"


class HiddenReport(NamedTuple):
    """Deadness per observed hidden layer: ``dead (L,) int32`` dead neurons, ``units (L,) int32`` neurons,
    ``constant (L,) bool``."""

    dead: jax.Array
    units: jax.Array
    constant: jax.Array


def layer_report(out: jax.Array, pre: jax.Array | None = None, points_axis: int = 0) -> tuple[jax.Array, jax.Array]:
    """``(dead_neurons int32, constant bool)`` of one layer whose output ``out`` (and, if given, pre-activation
    ``pre``, same shape) has points along ``points_axis`` and neurons along the other axis (2-D arrays)."""
    zero_out = out == 0 if pre is None else pre <= 0
    dead = jnp.sum(jnp.all(zero_out, axis=points_axis)).astype(jnp.int32)
    if out.shape[points_axis] == 1:
        return dead, jnp.all(out == 0)
    return dead, jnp.all(jnp.max(out, axis=points_axis) == jnp.min(out, axis=points_axis))


def first_true_layer(flags: jax.Array) -> jax.Array:
    """``flags (..., L)`` bool -> the 1-based index of the first True along the last axis, 0 if none."""
    any_ = jnp.any(flags, axis=-1)
    return jnp.where(any_, jnp.argmax(flags, axis=-1) + 1, 0).astype(jnp.int32)


def hidden_layers(intermediates) -> list[jax.Array]:
    """The observed hidden layers, each ``(P, units)``, in order (see the module docstring)."""
    layers = []
    for leaf in jax.tree.leaves(intermediates):
        if leaf.ndim == 2:
            layers.append(leaf)
        elif leaf.ndim == 3:
            layers.extend(leaf[k] for k in range(leaf.shape[0]))
        else:
            raise ValueError(f"a sown hidden layer must be (points, units) or (layers, points, units), got shape "
                             f"{leaf.shape}; flatten feature maps before sowing")
    return layers


def hidden_report(intermediates) -> HiddenReport:
    """``layer_report`` of every layer sown into ``intermediates`` (the ``"intermediates"`` collection returned
    by ``module.apply(..., mutable=["intermediates"])``). A model that sows nothing has no hidden layer to
    test: ``L = 0``."""
    layers = hidden_layers(intermediates)
    if not layers:
        empty = jnp.zeros((0,), jnp.int32)
        return HiddenReport(empty, empty, empty.astype(bool))
    dead, constant = zip(*(layer_report(h) for h in layers))
    units = jnp.asarray([h.shape[1] for h in layers], jnp.int32)
    return HiddenReport(jnp.stack(dead), units, jnp.stack(constant))


def observed_apply(module, params, x: jax.Array) -> tuple[jax.Array, HiddenReport]:
    """``module`` on points ``x (P, d_in)``: ``(y (P, d_out), hidden_report)``."""
    y, state = module.apply({"params": params}, x, mutable=[COLLECTION])
    return y, hidden_report(state.get(COLLECTION, {}))
