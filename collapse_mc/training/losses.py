"""Training losses (the registry ``LOSSES``): regression losses take predictions and targets of one shape
(``(d_out, B)`` on the built-in MLP's path, ``(B, d_out)`` on the generic model path; a mean over both axes,
as here, works on both); classification losses take ``logits (B, C)`` and integer ``labels (B,)``. A Python
callable with the same signature is accepted wherever a loss name is.

With MSE a constant network's best constant is the mean of the training targets; with L1 it is a median
(per output).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ..registry import Registry


def mse(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Mean squared error, a scalar."""
    return jnp.mean(jnp.square(pred - target))


def l1(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Mean absolute error, a scalar."""
    return jnp.mean(jnp.abs(pred - target))


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of ``logits (B, C)`` against integer ``labels (B,)``."""
    import optax
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


LOSSES = Registry("loss", {"mse": mse, "l1": l1, "softmax_cross_entropy": softmax_cross_entropy})
CLASSIFICATION_LOSSES = ("softmax_cross_entropy",)


def get_loss(loss):
    """The loss function for a registered name or a callable."""
    return LOSSES.resolve(loss)
