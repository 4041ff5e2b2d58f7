"""The training forward pass: the same function as ``nets.MLP`` on the same parameter tree, laid out for speed.

``MLP`` maps points-major ``x (P, d_in)``; here activations are **features-major** ``(features, P)`` so the
point axis is the contiguous one, and a layer with a small fan-in (<= ``SMALL_FAN_IN``) is computed as a sum
of fan_in broadcast products instead of a tiny matrix product. The scanned hidden layers carry a hand-written
backward pass (``hidden_stack``, a ``jax.custom_vjp``): it keeps only each layer's input and pre-activation
and forms the weight gradient as one small matrix product per layer, where reverse-mode autodiff of the
unrolled broadcast sums saves and reduces every row separately. Vmapped over thousands of trials, XLA's CPU
backend runs these as fused vector loops, about twice as fast as autodiff and several times faster than
batched 4x4 matrix products (see BENCHMARKS.md, W1). Equality with ``MLP.apply`` and of the gradients with
autodiff is tested (float32 rounding only).

Parameter tree (augmented matrices, last row = bias; depth = hidden layers L_h)::

    {'input': (d_in + 1, width), 'hidden': {'affine': (depth - 1, width + 1, width)}, 'output': (width + 1, d_out)}
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ..config import NetworkConfig
from ..nets.mlp import activation_fn

SMALL_FAN_IN = 8
HIGHEST = jax.lax.Precision.HIGHEST


def affine_t(h: jax.Array, a: jax.Array) -> jax.Array:
    """``h (fan_in, P)`` with augmented ``a (fan_in + 1, fan_out)`` -> ``(fan_out, P)`` = ``(h^T a[:-1] + a[-1])^T``."""
    fan_in = a.shape[0] - 1
    if fan_in <= SMALL_FAN_IN:
        out = a[-1][:, None] + a[0][:, None] * h[0][None, :]
        for i in range(1, fan_in):
            out = out + a[i][:, None] * h[i][None, :]
        return out
    return jnp.einsum("im,ip->mp", a[:-1], h, precision=HIGHEST) + a[-1][:, None]


def affine_t_backward(h: jax.Array, a: jax.Array, delta: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Gradients of ``affine_t(h, a)`` for the cotangent ``delta (fan_out, P)``: ``(d h (fan_in, P), d a)``."""
    fan_out = a.shape[1]
    grad_w = jnp.einsum("ip,mp->im", h, delta, precision=HIGHEST)
    grad_b = jnp.sum(delta, axis=-1)
    if fan_out <= SMALL_FAN_IN:
        grad_h = a[:-1, 0][:, None] * delta[0][None, :]
        for j in range(1, fan_out):
            grad_h = grad_h + a[:-1, j][:, None] * delta[j][None, :]
    else:
        grad_h = jnp.einsum("im,mp->ip", a[:-1], delta, precision=HIGHEST)
    return grad_h, jnp.concatenate([grad_w, grad_b[None]], axis=0)


def _layer(act, residual, h, a):
    z = affine_t(h, a)
    return (h + act(z) if residual else act(z)), z


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def hidden_stack(act, residual: bool, h: jax.Array, stacked: jax.Array) -> jax.Array:
    """Hidden layers 2..L_h: ``h (width, P)``, ``stacked (L_h - 1, width + 1, width)`` -> ``(width, P)``.

    Each layer is ``act(affine_t(h, a))``, or ``h + act(...)`` when ``residual``; ``lax.scan`` over layers.
    """
    return jax.lax.scan(lambda h, a: (_layer(act, residual, h, a)[0], None), h, stacked)[0]


def _hidden_stack_fwd(act, residual, h, stacked):
    def body(h, a):
        out, z = _layer(act, residual, h, a)
        return out, (h, z)

    out, saved = jax.lax.scan(body, h, stacked)
    return out, (saved, stacked)


def _hidden_stack_bwd(act, residual, res, g):
    (inputs, pre), stacked = res

    def body(g, xs):
        h, z, a = xs
        slope = jax.jvp(act, (z,), (jnp.ones_like(z),))[1]  # act'(z), elementwise
        grad_h, grad_a = affine_t_backward(h, a, g * slope)
        return (g + grad_h if residual else grad_h), grad_a

    grad_h, grad_stacked = jax.lax.scan(body, g, (inputs, pre, stacked), reverse=True)
    return grad_h, grad_stacked


hidden_stack.defvjp(_hidden_stack_fwd, _hidden_stack_bwd)


def forward_t(network: NetworkConfig, params: dict, xt: jax.Array) -> jax.Array:
    """Network output for features-major inputs: ``xt (d_in, P)`` -> ``(d_out, P)``.

    Hidden layers 2..depth go through ``hidden_stack`` (``lax.scan``: compile time independent of depth);
    with ``network.residual`` they are ``h + act(affine(h))``, as in ``MLP``.
    """
    act = activation_fn(network.activation, network.negative_slope)
    h = act(affine_t(xt, params["input"]))
    if network.depth > 1:
        h = hidden_stack(act, bool(network.residual), h, params["hidden"]["affine"])
    return affine_t(h, params["output"])


def _layer_report_t(z: jax.Array, out: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One hidden layer over P points, features-major ``z``, ``out (width, P)``: ``(dead_neurons, constant)``,
    the number of neurons with pre-activation <= 0 at every point and whether the layer's output is the same
    at every point (with a single point: whether it is all-zero), as in ``nets.mlp.layer_report``."""
    dead = jnp.sum(jnp.all(z <= 0, axis=-1)).astype(jnp.int32)
    if z.shape[-1] == 1:
        return dead, jnp.all(out == 0)
    return dead, jnp.all(jnp.max(out, axis=-1) == jnp.min(out, axis=-1))


def deadness_t(network: NetworkConfig, params: dict, xt: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The network on points ``xt (d_in, P)`` with a deadness report per hidden layer.

    Returns ``(y (d_out, P), dead_neurons (depth,) int32, constant (depth,) bool)``: per hidden layer, the
    neurons whose pre-activation is <= 0 at every point and whether the layer's output is the same at every
    point. The one deadness test of the training path (at initialization, during and after training);
    ``lax.scan`` over layers keeps memory ``O(P * width)``.
    """
    act = activation_fn(network.activation, network.negative_slope)
    z = affine_t(xt, params["input"])
    h = act(z)
    dead0, const0 = _layer_report_t(z, h)
    dead, const = dead0[None], const0[None]
    if network.depth > 1:
        residual = bool(network.residual)

        def body(h, a):
            out, z = _layer(act, residual, h, a)
            return out, _layer_report_t(z, out)

        h, (d, c) = jax.lax.scan(body, h, params["hidden"]["affine"])
        dead, const = jnp.concatenate([dead, d]), jnp.concatenate([const, c])
    return affine_t(h, params["output"]), dead, const
