"""The fully connected network family, as a Flax (linen) module with scanned hidden layers.

Depth convention: ``depth`` = number of hidden layers L_h; the papers' layer count is ``depth + 1``.

Layout: an input layer ``d_in -> width`` (hidden layer 1), then ``depth - 1`` identical hidden layers
``width -> width`` whose parameters are stacked on a leading axis and applied with ``nn.scan`` (so compile
time does not grow with depth), then a linear output layer ``width -> d_out``. Every layer's parameters are one
augmented matrix ``affine`` of shape ``(fan_in + 1, fan_out)`` (last row = bias), see ``initializers``.

Parameter tree::

    {'input':  {'affine': (d_in + 1, width)},
     'hidden': {'affine': (depth - 1, width + 1, width)},   # absent when depth == 1
     'output': {'affine': (width + 1, d_out)}}
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from ..config import InitConfig, NetworkConfig
from . import initializers


def activation_fn(name: str, negative_slope: float = 0.01) -> Callable[[jax.Array], jax.Array]:
    """relu | leaky_relu (with ``negative_slope``) | tanh | selu | swish."""
    if name == "relu":
        return jax.nn.relu
    if name == "leaky_relu":
        return lambda z: jax.nn.leaky_relu(z, negative_slope)
    if name == "tanh":
        return jnp.tanh
    if name == "selu":
        return jax.nn.selu
    if name == "swish":
        return jax.nn.swish
    raise ValueError(f"unknown activation {name!r}")


def affine_apply(x: jax.Array, a: jax.Array) -> jax.Array:
    """``x (..., fan_in)`` with augmented ``a (fan_in + 1, fan_out)`` -> ``(..., fan_out)``.

    Full float32 precision (``Precision.HIGHEST``): on GPUs the default would round products to TF32, which
    erases the small variations of a deep layer's output across inputs and makes outcomes backend-dependent.
    """
    return jnp.matmul(x, a[:-1], precision=jax.lax.Precision.HIGHEST) + a[-1]


def layer_report(pre: jax.Array, post: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Deadness of one hidden layer over a probe set.

    ``pre``, ``post``: ``(P, width)`` pre- and post-activations at P probe points. Returns
    ``(dead_neurons, constant)``: the number of neurons whose pre-activation is <= 0 at every probe (int32
    scalar), and whether the layer is dead (bool scalar): its output is the same at every probe, so the network
    is a constant from here on (for ReLU: the layer is all-zero). With a single probe, "the same at every probe"
    is vacuous, so the layer counts as dead when its output is all-zero there.
    """
    dead = jnp.sum(jnp.all(pre <= 0, axis=0)).astype(jnp.int32)
    if pre.shape[0] == 1:
        return dead, jnp.all(post == 0)
    constant = jnp.all(jnp.max(post, axis=0) == jnp.min(post, axis=0))
    return dead, constant


class _Hidden(nn.Module):
    """One hidden layer ``width -> width`` as a scan body: ``(h, None) -> (h', report)``."""

    width: int
    activation: str
    negative_slope: float
    residual: bool
    kernel_init: Callable[..., Any]
    report: str  # 'none' | 'activations' | 'deadness'

    @nn.compact
    def __call__(self, h, _):
        a = self.param("affine", self.kernel_init, (h.shape[-1] + 1, self.width))
        pre = affine_apply(h, a)
        post = activation_fn(self.activation, self.negative_slope)(pre)
        out = h + post if self.residual else post
        if self.report == "activations":
            return out, (pre, out)
        if self.report == "deadness":
            return out, layer_report(pre, out)
        return out, None


class MLP(nn.Module):
    """``d_in -> [width] * depth -> d_out`` (``depth`` = hidden layers; the papers' layers = depth + 1).

    ``__call__(x)`` maps ``x (..., d_in)`` to ``(..., d_out)``. With ``report='activations'`` it also returns
    ``(pre, post)``, each ``(depth, ..., width)``: the hidden pre- and post-activations layer by layer. With
    ``report='deadness'`` (``x`` must be ``(P, d_in)``, a probe set) it returns ``(dead_neurons (depth,) int32,
    constant (depth,) bool)`` per hidden layer instead, computed inside the scan so memory stays
    ``O(P * width)``.
    """

    network: NetworkConfig
    init_config: InitConfig = InitConfig()
    unroll: int = 1

    def _init_for(self, layer: str):
        return initializers.layer_initializer(self.init_config.layer_init_name(layer), self.init_config.bias,
                                              self.init_config.bias_value)

    @nn.compact
    def __call__(self, x, report: str = "none"):
        net = self.network
        act = activation_fn(net.activation, net.negative_slope)
        a0 = self.param("input", self._init_for("first"), (net.d_in + 1, net.width))
        pre0 = affine_apply(x, a0)
        h = act(pre0)
        reports = []
        if report == "activations":
            reports.append((pre0[None], h[None]))
        elif report == "deadness":
            d, c = layer_report(pre0, h)
            reports.append((d[None], c[None]))
        if net.depth > 1:
            body = nn.scan(
                _Hidden,
                variable_axes={"params": 0},
                split_rngs={"params": True},
                length=net.depth - 1,
                unroll=self.unroll,
            )
            h, ys = body(net.width, net.activation, net.negative_slope, net.residual, self._init_for("hidden"),
                         report, name="hidden")(h, None)
            if report != "none":
                reports.append(ys)
        a_out = self.param("output", self._init_for("output"), (net.width + 1, net.d_out))
        y = affine_apply(h, a_out)
        if report == "none":
            return y
        first = jnp.concatenate([r[0] for r in reports], axis=0)
        second = jnp.concatenate([r[1] for r in reports], axis=0)
        return y, (first, second)


def init_params(network: NetworkConfig, init: InitConfig, key: jax.Array) -> dict:
    """Parameters of one network drawn from ``key`` (see the module docstring for the tree)."""
    model = MLP(network, init)
    return model.init(key, jnp.zeros((1, network.d_in)))["params"]
