"""The training forward pass: the same function as ``nets.MLP`` on the same parameter tree, laid out for speed.

``MLP`` maps points-major ``x (P, d_in)``; here activations are **features-major** ``(features, P)`` so the
point axis is the contiguous one, and a layer with a small fan-in (<= ``SMALL_FAN_IN``) is computed as a sum
of fan_in broadcast products instead of a tiny matrix product. Vmapped over thousands of trials, XLA's CPU
backend runs these as fused vector loops, where batched 4x4 matrix products would be thousands of tiny
library calls (see BENCHMARKS.md, W1). Equality with ``MLP.apply`` is tested (float32 rounding only).

Parameter tree (augmented matrices, last row = bias; depth = hidden layers L_h)::

    {'input': (d_in + 1, width), 'hidden': {'affine': (depth - 1, width + 1, width)}, 'output': (width + 1, d_out)}
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ..config import NetworkConfig
from ..nets.mlp import activation_fn

SMALL_FAN_IN = 8


def affine_t(h: jax.Array, a: jax.Array) -> jax.Array:
    """``h (fan_in, P)`` with augmented ``a (fan_in + 1, fan_out)`` -> ``(fan_out, P)`` = ``(h^T a[:-1] + a[-1])^T``."""
    fan_in = a.shape[0] - 1
    if fan_in <= SMALL_FAN_IN:
        out = a[-1][:, None] + a[0][:, None] * h[0][None, :]
        for i in range(1, fan_in):
            out = out + a[i][:, None] * h[i][None, :]
        return out
    return jnp.einsum("im,ip->mp", a[:-1], h) + a[-1][:, None]


def forward_t(network: NetworkConfig, params: dict, xt: jax.Array, unroll: int = 1) -> jax.Array:
    """Network output for features-major inputs: ``xt (d_in, P)`` -> ``(d_out, P)``.

    Hidden layers 2..depth are applied with ``lax.scan`` (compile time independent of depth); with
    ``network.residual`` they are ``h + act(affine(h))``, as in ``MLP``.
    """
    act = activation_fn(network.activation, network.negative_slope)
    h = act(affine_t(xt, params["input"]))
    if network.depth > 1:
        def body(h, a):
            post = act(affine_t(h, a))
            return (h + post if network.residual else post), None

        h, _ = jax.lax.scan(body, h, params["hidden"]["affine"], unroll=unroll)
    return affine_t(h, params["output"])
