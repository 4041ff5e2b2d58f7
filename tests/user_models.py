"""Models a user might bring, for the generic-path tests (imported by path: ``tests.user_models:Name``)."""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from collapse_mc.config import InitConfig, NetworkConfig

HE = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


class ResidualMLP(nn.Module):
    """``d_in -> width``, then ``depth - 1`` residual blocks ``h + relu(W h + b)``, then ``width -> d_out``;
    every hidden layer's output sown under one name, in order."""

    network: NetworkConfig
    init_config: InitConfig = InitConfig()

    @nn.compact
    def __call__(self, x):
        n = self.network
        h = nn.relu(nn.Dense(n.width, kernel_init=HE)(x))
        self.sow("intermediates", "hidden", h)
        for _ in range(n.depth - 1):
            h = h + nn.relu(nn.Dense(n.width, kernel_init=HE)(h))
            self.sow("intermediates", "hidden", h)
        return nn.Dense(n.d_out, kernel_init=HE)(h)


class ConstantPositiveLayer(nn.Module):
    """A plain ReLU MLP whose second hidden layer ignores its input (zero kernel) and has bias 0.5: constant
    on every domain but never zero."""

    network: NetworkConfig
    init_config: InitConfig = InitConfig()

    @nn.compact
    def __call__(self, x):
        n = self.network
        h = nn.relu(nn.Dense(n.width, kernel_init=HE)(x))
        self.sow("intermediates", "hidden", h)
        h = nn.relu(nn.Dense(n.width, kernel_init=nn.initializers.zeros,
                             bias_init=nn.initializers.constant(0.5))(h))
        self.sow("intermediates", "hidden", h)
        return nn.Dense(n.d_out, kernel_init=HE)(h) + 0.0 * jnp.sum(x)
