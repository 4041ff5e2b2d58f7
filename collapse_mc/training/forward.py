"""The training forward pass: the same function as ``nets.MLP`` on the same parameter tree, laid out for speed.

``MLP`` maps points-major ``x (P, d_in)``; here activations are **features-major** ``(features, P)`` so the
point axis is the contiguous one, and a layer with a small fan-in (<= ``SMALL_FAN_IN``) is computed as a sum
of fan_in broadcast products instead of a tiny matrix product. The scanned hidden layers carry a hand-written
backward pass (``hidden_stack``, a ``jax.custom_vjp``): it keeps only each layer's input and pre-activation
and forms the weight gradient as one small matrix product per layer, where reverse-mode autodiff of the
unrolled broadcast sums saves and reduces every row separately. Vmapped over thousands of trials, XLA's CPU
backend runs these as fused vector loops, about twice as fast as autodiff and several times faster than
batched 4x4 matrix products (see BENCHMARKS.md, W1). Equality with ``MLP.apply`` and of the gradients with
autodiff is tested (float32 rounding only). With a traced depth, training takes its gradient from
``loss_and_grad_t`` (the same arithmetic, bit for bit), which keeps the activations in buffers carried from
step to step instead of allocating and zero-filling the capacity's buffers at every step.

On a CPU, for ReLU and leaky ReLU networks of width <= 16, the hidden stack's forward, backward and deadness
report run in the native kernel (``collapse_mc.native``, C++ through XLA's FFI; ``native_spec``): the same
functions, several times faster, equal to this module's XLA code to float32 rounding (tested in
tests/test_native_kernel.py). Elsewhere (GPUs, other activations, no compiler) the XLA code below runs.

Parameter tree (augmented matrices, last row = bias; depth = hidden layers L_h)::

    {'input': (d_in + 1, width), 'hidden': {'affine': (depth - 1, width + 1, width)}, 'output': (width + 1, d_out)}
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from .. import native
from ..config import NetworkConfig
from ..nets.mlp import activation_fn
from ..nets.observe import layer_report

SMALL_FAN_IN = 16  # widths 9-12 train 1.4x faster as broadcast sums than as batched matmuls; 16 breaks even
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
    fan_in, fan_out = a.shape[0] - 1, a.shape[1]
    if fan_in <= SMALL_FAN_IN and fan_out <= SMALL_FAN_IN:  # a fused multiply-sum over the points
        grad_w = jnp.sum(h[:, None, :] * delta[None, :, :], axis=-1)
    else:
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


def active_stacked(network: NetworkConfig, depth) -> jax.Array | None:
    """How many stacked hidden layers (hidden layers 2 .. network.depth) lie within the active ``depth``
    (traced int32 scalar): ``depth - 1`` clipped to ``0 .. network.depth - 1``; None when ``depth`` is None
    (all of them, a static count)."""
    if depth is None:
        return None
    return jnp.clip(jnp.asarray(depth, jnp.int32) - 1, 0, network.depth - 1)


def _run_layers(n, body, carry):
    """``body(i, carry)`` for ``i = 0 .. n - 1`` with a traced ``n``: a while loop, so with ``n`` shared by every
    vmapped trial (the active depth is a per-call value) the layers above it cost nothing."""
    return jax.lax.fori_loop(0, n, body, carry)


def native_spec(network: NetworkConfig, dtype=jnp.float32) -> tuple | None:
    """``(activation, negative_slope)`` when the native CPU kernel (``collapse_mc.native``) runs this network's
    hidden stack (CPU backend, width <= 16, ReLU or leaky ReLU, float32, the kernel built), else None."""
    if native.usable(network.width, network.activation, dtype):
        return network.activation, float(network.negative_slope)
    return None


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def hidden_stack(act, residual: bool, kernel, h: jax.Array, stacked: jax.Array, n: jax.Array | None) -> jax.Array:
    """Hidden layers 2..L_h: ``h (width, P)``, ``stacked (L_h - 1, width + 1, width)`` -> ``(width, P)``.

    Each layer is ``act(affine_t(h, a))``, or ``h + act(...)`` when residual; ``lax.scan`` over layers.
    ``n`` (traced int32, or None: all ``L_h - 1``): only the first ``n`` stacked layers run (a while loop);
    the rest are skipped with zero gradient, so one compiled program serves every depth up to its capacity
    (``active_stacked``). ``kernel``: ``native_spec`` (forward and backward in the native CPU kernel) or None.
    """
    if kernel is not None:
        return native.stack_forward(h, stacked, _active(stacked, n), *kernel, residual)[0]
    if n is None:
        return jax.lax.scan(lambda h, a: (_layer(act, residual, h, a)[0], None), h, stacked)[0]
    return _run_layers(n, lambda i, h: _layer(act, residual, h, stacked[i])[0], h)


def _active(stacked, n):
    return stacked.shape[0] if n is None else n


def _hidden_stack_fwd(act, residual, kernel, h, stacked, n):
    if kernel is not None:
        out, inputs, pre = native.stack_forward(h, stacked, _active(stacked, n), *kernel, residual)
        return out, ((out, inputs, pre), stacked, n)
    if n is None:
        def body(h, a):
            out, z = _layer(act, residual, h, a)
            return out, (h, z)

        out, saved = jax.lax.scan(body, h, stacked)
        return out, (saved, stacked, n)

    empty = jnp.zeros((stacked.shape[0],) + h.shape, h.dtype)
    out, saved = _forward_saving(act, residual, h, stacked, n, (empty, empty))
    return out, (saved, stacked, n)


def _forward_saving(act, residual, h, stacked, n, buffers):
    """The first ``n`` stacked layers from ``h``, each layer's input and pre-activation written into ``buffers``
    ``(inputs, pre)`` at its index: ``(out, (inputs, pre))``."""
    def body(i, carry):
        h, inputs, pre = carry
        out, z = _layer(act, residual, h, stacked[i])
        return out, inputs.at[i].set(h), pre.at[i].set(z)

    out, inputs, pre = _run_layers(n, body, (h, *buffers))
    return out, (inputs, pre)


def _hidden_stack_bwd(act, residual, kernel, res, g):
    if kernel is not None:
        (out, inputs, pre), stacked, n = res
        grad_h, grad_stacked = native.stack_backward(g, out, inputs, pre, stacked, _active(stacked, n), *kernel,
                                                     residual)
        return grad_h, grad_stacked, None
    (inputs, pre), stacked, n = res

    def layer_grad(g, h, z, a):
        slope = jax.jvp(act, (z,), (jnp.ones_like(z),))[1]  # act'(z), elementwise
        grad_h, grad_a = affine_t_backward(h, a, g * slope)
        return (g + grad_h if residual else grad_h), grad_a

    if n is None:
        grad_h, grad_stacked = jax.lax.scan(lambda g, xs: layer_grad(g, *xs), g, (inputs, pre, stacked),
                                            reverse=True)
        return grad_h, grad_stacked, None

    def body_n(j, carry):
        g, grads = carry
        i = n - 1 - j
        g, grad_a = layer_grad(g, inputs[i], pre[i], stacked[i])
        return g, grads.at[i].set(grad_a)

    grad_h, grad_stacked = _run_layers(n, body_n, (g, jnp.zeros_like(stacked)))
    return grad_h, grad_stacked, None


hidden_stack.defvjp(_hidden_stack_fwd, _hidden_stack_bwd)


def saved_buffers(network: NetworkConfig, points: int) -> tuple[jax.Array, jax.Array]:
    """Zeroed ``(inputs, pre)`` buffers for ``loss_and_grad_t``, each ``(network.depth - 1, width, points)``:
    the stacked hidden layers' inputs and pre-activations of one forward pass (empty when the native kernel
    runs the stack: it returns its own)."""
    if native_spec(network) is not None:
        return jnp.zeros((0,), jnp.float32), jnp.zeros((0,), jnp.float32)
    shape = (max(network.depth - 1, 0), network.width, points)
    return jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32)


def loss_and_grad_t(network: NetworkConfig, params: dict, xt: jax.Array, yt: jax.Array, loss_fn, depth,
                    saved: tuple[jax.Array, jax.Array]):
    """``(loss, grads, saved)``: ``loss_fn(forward_t(network, params, xt, depth), yt)``, its gradient with
    respect to ``params`` (same tree) and the buffers ``saved`` (``saved_buffers``) written by this pass.

    The same arithmetic as ``jax.value_and_grad`` of that loss (input and output layers by ``jax.vjp``, the
    hidden stack by ``hidden_stack``'s backward pass), but the stacked layers' activations go into ``saved``,
    which the caller carries from step to step: written in place, they are not allocated and zero-filled at
    every step, which was most of the cost of a shallow cell trained in a deep program (``depth`` traced, the
    buffers sized for the capacity). Entries above the active depth are never read.
    """
    act = activation_fn(network.activation, network.negative_slope)
    residual = bool(network.residual)
    h, bottom_vjp = jax.vjp(lambda a: act(affine_t(xt, a)), params["input"])
    grads = {}
    kernel = native_spec(network, h.dtype)
    if network.depth > 1:
        stacked = params["hidden"]["affine"]
        n = active_stacked(network, depth)
        n = stacked.shape[0] if n is None else n
        if kernel is not None:  # the kernel returns what its backward pass needs; ``saved`` stays as it is
            h, res = _hidden_stack_fwd(act, residual, kernel, h, stacked, n)
        else:
            h, saved = _forward_saving(act, residual, h, stacked, n, saved)
            res = (saved, stacked, n)
    loss, top_vjp = jax.vjp(lambda h, a: loss_fn(affine_t(h, a), yt), h, params["output"])
    g, grads["output"] = top_vjp(jnp.ones_like(loss))
    if network.depth > 1:
        g, grad_stacked, _ = _hidden_stack_bwd(act, residual, kernel, res, g)
        grads["hidden"] = {"affine": grad_stacked}
    (grads["input"],) = bottom_vjp(g)
    return loss, grads, saved


def forward_t(network: NetworkConfig, params: dict, xt: jax.Array, depth=None) -> jax.Array:
    """Network output for features-major inputs: ``xt (d_in, P)`` -> ``(d_out, P)``.

    Hidden layers 2..depth go through ``hidden_stack`` (``lax.scan``: compile time independent of depth);
    with ``network.residual`` they are ``h + act(affine(h))``, as in ``MLP``. ``depth`` (traced int32, or None
    = ``network.depth``): the active number of hidden layers; the layers above it are skipped, so the output
    equals that of the ``depth``-layer network made of the first layers (``network.depth`` is the capacity).
    """
    act = activation_fn(network.activation, network.negative_slope)
    h = act(affine_t(xt, params["input"]))
    if network.depth > 1:
        h = hidden_stack(act, bool(network.residual), native_spec(network, h.dtype), h, params["hidden"]["affine"],
                         active_stacked(network, depth))
    return affine_t(h, params["output"])


def _layer_report_t(z: jax.Array, out: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``observe.layer_report`` of one hidden layer over P points, features-major ``z``, ``out (width, P)``."""
    return layer_report(out, z, points_axis=-1)


def any_dead_t(network: NetworkConfig, params: dict, xt: jax.Array, depth=None) -> jax.Array:
    """Whether some hidden layer is dead on the points ``xt (d_in, P)``: every neuron's pre-activation <= 0 at
    every point and the layer's output the same at every point (bool scalar): ``deadness_t``'s
    ``any(constant & (dead_neurons == width))``, the same answer. In the native kernel
    (``native.stack_any_dead``) the stacked layers are first checked on the first points only, since a layer
    dead on every point is dead on those: the death check of a live network costs a fraction of a report."""
    kernel = native_spec(network, xt.dtype)
    if kernel is None or network.depth < 2:
        _, dead, constant = deadness_t(network, params, xt, depth)
        return jnp.any(constant & (dead == network.width))
    act = activation_fn(network.activation, network.negative_slope)
    z = affine_t(xt, params["input"])
    h = act(z)
    dead0, const0 = _layer_report_t(z, h)
    stacked = params["hidden"]["affine"]
    rest = native.stack_any_dead(h, stacked, _active(stacked, active_stacked(network, depth)), *kernel,
                                 bool(network.residual))
    return (const0 & (dead0 == network.width)) | rest


def deadness_t(network: NetworkConfig, params: dict, xt: jax.Array,
               depth=None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The network on points ``xt (d_in, P)`` with a deadness report per hidden layer.

    Returns ``(y (d_out, P), dead_neurons (L,) int32, constant (L,) bool)``, ``L = network.depth``: per hidden
    layer, the neurons whose pre-activation is <= 0 at every point and whether the layer's output is the same
    at every point. The one deadness test of the training path (born dead on the probes, the death checks on
    the training set, the classification on the test grid); ``lax.scan`` over layers keeps memory
    ``O(P * width)``. ``depth`` (traced int32 or None) as in ``forward_t``: layers above it are
    skipped and report ``(0, False)``.
    """
    act = activation_fn(network.activation, network.negative_slope)
    z = affine_t(xt, params["input"])
    h = act(z)
    dead0, const0 = _layer_report_t(z, h)
    dead, const = dead0[None], const0[None]
    if network.depth > 1:
        residual = bool(network.residual)

        stacked = params["hidden"]["affine"]
        n = active_stacked(network, depth)
        kernel = native_spec(network, h.dtype)
        if kernel is not None:
            h, d, c = native.stack_report(h, stacked, _active(stacked, n), *kernel, residual)
        elif n is None:
            def body(h, a):
                out, z = _layer(act, residual, h, a)
                return out, _layer_report_t(z, out)

            h, (d, c) = jax.lax.scan(body, h, stacked)
        else:
            def body_n(i, carry):
                h, d, c = carry
                out, z = _layer(act, residual, h, stacked[i])
                di, ci = _layer_report_t(z, out)
                return out, d.at[i].set(di), c.at[i].set(ci)

            zeros = jnp.zeros(stacked.shape[0], jnp.int32)
            h, d, c = _run_layers(n, body_n, (h, zeros, zeros.astype(bool)))
        dead, const = jnp.concatenate([dead, d]), jnp.concatenate([const, c])
    return affine_t(h, params["output"]), dead, const
