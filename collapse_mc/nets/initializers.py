"""Initializers in the ``jax.nn.initializers`` style: ``init(key, shape, dtype) -> array``.

Every layer of a collapse_mc network stores its parameters as one **augmented matrix** ``A`` of shape
``(fan_in + 1, fan_out)``: rows ``0 .. fan_in - 1`` are the weights, the last row is the bias, and the layer
computes ``x @ A[:-1] + A[-1]``. Layer initializers therefore take the augmented shape; ``affine`` builds
one from a weight initializer (shape ``(fan_in, fan_out)``) and a bias initializer (shape ``(fan_out,)``).

RAI (randomized asymmetric initialization, Lu, Shin, Su & Karniadakis 2020) needs the weights and the bias
together, which the augmented form gives it directly.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from ..registry import Registry

Initializer = Callable[..., jax.Array]

RAI_SIGMA_NUMERATOR = 0.6007


def he_normal() -> Initializer:
    """Weights ~ N(0, 2 / fan_in), a plain (untruncated) normal. Shape (fan_in, fan_out).

    ``jax.nn.initializers.he_normal`` truncates at two standard deviations; the papers and the Gaussian
    born-dead kernel need the plain normal.
    """
    return jax.nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def he_uniform() -> Initializer:
    """Weights ~ U(-sqrt(6 / fan_in), sqrt(6 / fan_in)). Shape (fan_in, fan_out)."""
    return jax.nn.initializers.he_uniform()


def lecun_normal() -> Initializer:
    """Weights ~ N(0, 1 / fan_in), a plain (untruncated) normal. Shape (fan_in, fan_out)."""
    return jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal")


def glorot_uniform() -> Initializer:
    """Weights ~ U(-sqrt(6 / (fan_in + fan_out)), +...). Shape (fan_in, fan_out)."""
    return jax.nn.initializers.glorot_uniform()


def orthogonal() -> Initializer:
    """Orthogonal weights scaled by sqrt(2) (the ReLU gain). Shape (fan_in, fan_out)."""
    return jax.nn.initializers.orthogonal(scale=math.sqrt(2.0))


def zeros() -> Initializer:
    """Bias = 0. Shape (fan_out,)."""
    return jax.nn.initializers.zeros


def constant(value: float) -> Initializer:
    """Bias = value. Shape (fan_out,)."""
    return jax.nn.initializers.constant(value)


def normal(stddev: float) -> Initializer:
    """Bias ~ N(0, stddev^2). Shape (fan_out,)."""
    return jax.nn.initializers.normal(stddev)


def affine(weight_init: Initializer, bias_init: Initializer) -> Initializer:
    """Combine a weight and a bias initializer into an augmented-matrix initializer.

    Returns ``init(key, (fan_in + 1, fan_out))`` whose first ``fan_in`` rows come from ``weight_init`` and last
    row from ``bias_init``.
    """

    def init(key, shape, dtype=jnp.float32):
        fan_in, fan_out = shape[0] - 1, shape[1]
        k_w, k_b = jax.random.split(key)
        w = weight_init(k_w, (fan_in, fan_out), dtype)
        b = bias_init(k_b, (fan_out,), dtype)
        return jnp.concatenate([w, b[None, :]], axis=0)

    return init


def rai(sigma_numerator: float = RAI_SIGMA_NUMERATOR) -> Initializer:
    """Randomized asymmetric initialization (paper 2), on the augmented shape ``(fan_in + 1, fan_out)``.

    For each neuron j (column), all ``fan_in + 1`` entries (weights and bias) are drawn i.i.d.
    N(0, sigma^2) with ``sigma = sigma_numerator / sqrt(fan_in)``; then one entry, at a position chosen uniformly
    among the ``fan_in + 1``, is replaced by a Beta(2, 1) draw (density 2x on [0, 1], drawn as sqrt(U)).
    """

    def init(key, shape, dtype=jnp.float32):
        fan_in, fan_out = shape[0] - 1, shape[1]
        k_v, k_pos, k_beta = jax.random.split(key, 3)
        sigma = sigma_numerator / math.sqrt(fan_in)
        v = sigma * jax.random.normal(k_v, (fan_in + 1, fan_out), dtype)
        position = jax.random.randint(k_pos, (fan_out,), 0, fan_in + 1)
        beta = jnp.sqrt(jax.random.uniform(k_beta, (fan_out,), dtype))
        hit = jnp.arange(fan_in + 1)[:, None] == position[None, :]
        return jnp.where(hit, beta[None, :], v)

    return init


WEIGHT_INITIALIZERS: dict[str, Callable[[], Initializer]] = {
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "lecun_normal": lecun_normal,
    "glorot_uniform": glorot_uniform,
    "orthogonal": orthogonal,
}


# name -> initializer: the hidden layers' weight initializers ``init(key, (fan_in, fan_out), dtype)``, and
# ``rai``, which draws weights and bias together on the augmented shape ``(fan_in + 1, fan_out)``
WEIGHT_INIT_REGISTRY = Registry("initializer", {**{k: f() for k, f in WEIGHT_INITIALIZERS.items()}, "rai": rai()})


def bias_initializer(kind: str, value: float = 0.0) -> Initializer:
    """``zeros`` | ``constant`` (value) | ``normal`` (value = sigma_b)."""
    if kind == "zeros":
        return zeros()
    if kind == "constant":
        return constant(value)
    if kind == "normal":
        return normal(value)
    raise ValueError(f"unknown bias init {kind!r}")


def layer_initializer(weights, bias: str = "zeros", bias_value: float = 0.0) -> Initializer:
    """The augmented-matrix initializer for one layer, by name or a user's weight initializer (``rai``
    ignores the bias setting)."""
    if weights == "rai":
        return rai()
    if isinstance(weights, str) and weights not in WEIGHT_INITIALIZERS:
        raise ValueError(f"unknown initializer {weights!r}")
    weight_init = WEIGHT_INITIALIZERS[weights]() if isinstance(weights, str) else weights
    return affine(weight_init, bias_initializer(bias, bias_value))
